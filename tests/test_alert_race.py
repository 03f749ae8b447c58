# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Two alerts on one channel at the same moment, on real cursors.

Scheduling an activity makes its user a follower of the channel; two jobs
alerting together both add that follower, and the second insert fails on the
followers' unique key once the first commits. Neither job may fail for it,
and neither alert may be lost. The rows are committed, so the test deletes
them afterwards.
"""

import threading
import time
from unittest.mock import patch

from odoo import SUPERUSER_ID, api
from odoo.modules.registry import DummyRLock, Registry
from odoo.tests import TransactionCase, tagged
from odoo.tools import SQL, mute_logger


@tagged("post_install", "-at_install")
class TestAlertRace(TransactionCase):
    def setUp(self):
        super().setUp()
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            channel = env["sync.channel"].create(
                {
                    "name": "Alert race channel",
                    "channel_type": "generic",
                    "base_url": "http://127.0.0.1:9",
                    "sync_enabled": False,
                }
            )
            self.channel_id = channel.id
            # the responsible user (the admin, as no user is set) does not
            # follow the channel yet
            self.partner_id = env.ref("base.user_admin").partner_id.id
            cr.execute(
                "DELETE FROM mail_followers WHERE res_model = 'sync.channel'"
                " AND res_id = %s AND partner_id = %s",
                [self.channel_id, self.partner_id],
            )
        self.addCleanup(self._delete_committed_rows)

    def _delete_committed_rows(self):
        with self.registry.cursor() as cr:
            for table, model, res_id in (
                ("mail_activity", "res_model", "res_id"),
                ("mail_followers", "res_model", "res_id"),
                ("mail_message", "model", "res_id"),
            ):
                cr.execute(
                    SQL(
                        "DELETE FROM %s WHERE %s = 'sync.channel' AND %s = %s",
                        SQL.identifier(table),
                        SQL.identifier(model),
                        SQL.identifier(res_id),
                        self.channel_id,
                    )
                )
            cr.execute("DELETE FROM sync_channel WHERE id = %s", [self.channel_id])

    def _channel(self, cr):
        # made in the test's thread: a new environment looks its registry up
        # under a lock that the test runner holds (see below)
        return api.Environment(cr, SUPERUSER_ID, {})["sync.channel"].browse(
            self.channel_id
        )

    @mute_logger("odoo.sql_db")  # the second follower insert, as it fails
    def test_two_alerts_at_once_both_raised_and_no_job_fails(self):
        errors = []
        first = self.registry.cursor()
        second_cr = self.registry.cursor()
        second_channel = self._channel(second_cr)
        try:
            # the first alert's transaction adds the follower, uncommitted
            self._channel(first)._scs_notify("Dead letters of SKU one", "1", key="one")

            def second():
                try:
                    with second_cr:
                        second_channel._scs_notify(
                            "Dead letters of SKU two", "2", key="two"
                        )
                except Exception as err:  # noqa: BLE001 - reported below
                    errors.append(err)

            # the alert raised apart opens a cursor of its own in the thread;
            # the test runner holds the registries' lock (as in Odoo's own
            # test mode, the lookup needs none here)
            with patch.object(Registry, "_lock", DummyRLock()):
                thread = threading.Thread(target=second)
                thread.start()
                # the second alert waits for the first one's follower row
                waiting = False
                for _n in range(200):
                    with self.registry.cursor() as probe:
                        probe.execute(
                            "SELECT count(*) FROM pg_stat_activity WHERE"
                            " wait_event_type = 'Lock'"
                            " AND query LIKE '%%mail_followers%%'"
                        )
                        waiting = bool(probe.fetchone()[0])
                    if waiting or not thread.is_alive():
                        break
                    time.sleep(0.05)
                self.assertTrue(waiting, "the second alert never met the first")
                first.commit()
                thread.join(60)
        finally:
            first.close()
        self.assertFalse(thread.is_alive())
        self.assertEqual(errors, [])
        with self.registry.cursor() as cr:
            cr.execute(
                "SELECT summary FROM mail_activity WHERE res_model = 'sync.channel'"
                " AND res_id = %s ORDER BY summary",
                [self.channel_id],
            )
            self.assertEqual(
                [row[0] for row in cr.fetchall()],
                ["Dead letters of SKU one", "Dead letters of SKU two"],
            )
            cr.execute(
                "SELECT partner_id, count(*) FROM mail_followers"
                " WHERE res_model = 'sync.channel' AND res_id = %s"
                " GROUP BY partner_id HAVING count(*) > 1",
                [self.channel_id],
            )
            self.assertEqual(cr.fetchall(), [])
