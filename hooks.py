# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Install hooks."""

from odoo.tools import SQL

#: every job method of the module starts so (``_scs_job_*``)
JOB_METHODS = r"\_scs\_job\_%"


def uninstall_hook(env):
    """Leave no job of the module behind, nor its push sequence and send marks.

    Odoo removes the module's models and job functions, not the queue_job
    rows of its jobs: the job runner would run a waiting one against a model
    or a method that is gone (an error and a traceback for each).
    """
    env.cr.execute(SQL("DELETE FROM queue_job WHERE method_name LIKE %s", JOB_METHODS))
    env.cr.execute("DROP SEQUENCE IF EXISTS stock_channel_sync_push_seq")
    env.cr.execute("DROP TABLE IF EXISTS stock_channel_sync_sent")
