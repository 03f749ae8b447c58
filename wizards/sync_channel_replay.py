# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import fields, models


class SyncChannelReplay(models.TransientModel):
    """Replay a time window of a channel's inbound events.

    For the day a bug or an outage made Odoo apply events wrongly: every
    inbound event of the window is applied again as a new attempt; the apply
    is idempotent, so what was right stays right.
    """

    _name = "sync.channel.replay"
    _description = "Replay Channel Events"

    channel_id = fields.Many2one("sync.channel", required=True)
    date_from = fields.Datetime(required=True, default=fields.Datetime.now)
    date_to = fields.Datetime(required=True, default=fields.Datetime.now)
    replayed_count = fields.Integer(readonly=True)

    def action_replay(self):
        self.ensure_one()
        events = self.env["sync.event"].search(
            [
                ("channel_id", "=", self.channel_id.id),
                ("direction", "=", "in"),
                ("replay_of_id", "=", False),
                ("create_date", ">=", self.date_from),
                ("create_date", "<=", self.date_to),
            ],
            order="id",
        )
        replays = events.action_replay()
        self.replayed_count = len(replays)
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("Replayed Events"),
            "res_model": "sync.event",
            "view_mode": "list,form",
            "domain": [("id", "in", replays.ids)],
        }
