# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import fields, models


class SyncEventDiscard(models.TransientModel):
    """Close dead letters on purpose, with a reason kept on each event."""

    _name = "sync.event.discard"
    _description = "Discard Sync Events"

    reason = fields.Char(required=True)

    def action_discard(self):
        events = self.env["sync.event"].browse(self.env.context.get("active_ids", []))
        # the ids come from the caller: the events are discarded as the
        # superuser, so the caller must be allowed to change each of them
        events.check_access("write")
        events._scs_discard(self.reason)
        return {"type": "ir.actions.act_window_close"}
