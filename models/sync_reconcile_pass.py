# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""One finished reconciliation pass of a channel: what the dashboard's
correction rate counts over a period.

The channel keeps only its last pass (``last_reconcile_*``), which a one-off
dry run also overwrites; the dashboard asks how often the channels drifted
over the chosen period, so each real pass is kept here when it closes. A
dry run is kept too, marked, and never counted. Retention follows the event
log's (``stock_channel_sync.event_retention_days``).
"""

from datetime import datetime, timezone

from odoo import api, fields, models
from odoo.tools import SQL


class SyncReconcilePass(models.Model):
    _name = "sync.reconcile.pass"
    _description = "Reconciliation Pass"
    _order = "finished_at desc, id desc"

    channel_id = fields.Many2one(
        "sync.channel", required=True, ondelete="cascade", index=True, readonly=True
    )
    company_id = fields.Many2one(
        related="channel_id.company_id", store=True, readonly=True
    )
    started_at = fields.Datetime(readonly=True)
    finished_at = fields.Datetime(required=True, index=True, readonly=True)
    checked = fields.Integer("Bindings Checked", readonly=True)
    drift = fields.Integer("Drift Found", readonly=True)
    corrections = fields.Integer(readonly=True)
    limited = fields.Integer("Batches Held by Safety Limit", readonly=True)
    dry_run = fields.Boolean(readonly=True)
    duration = fields.Float("Duration (s)", digits=(16, 2), readonly=True)

    @api.model
    def _scs_record(self, channel):
        """Keep the pass ``channel`` just closed (its ``last_reconcile_*``)."""
        return self.sudo().create(
            {
                "channel_id": channel.id,
                # the pass's own start (a one-off dry run leaves the
                # channel's reconcile_started_at to its scheduled passes)
                "started_at": datetime.fromtimestamp(
                    channel.reconcile_started_ts, tz=timezone.utc
                ).replace(tzinfo=None, microsecond=0)
                if (channel.reconcile_started_ts or 0.0) > 0
                else False,
                "finished_at": channel.last_reconcile_at or fields.Datetime.now(),
                "checked": channel.last_reconcile_checked,
                "drift": channel.last_reconcile_drift,
                "corrections": channel.last_reconcile_corrections,
                "limited": channel.last_reconcile_limited,
                "dry_run": channel.last_reconcile_dry_run,
                "duration": channel.last_reconcile_duration,
            }
        )

    @api.autovacuum
    def _gc_reconcile_passes(self):
        # read as the event log reads it: a value that is no number of days
        # (or below 1) keeps the default, one over a century is a century
        days = self.env["sync.event"]._scs_retention_days("event_retention_days", 30)
        limit = fields.Datetime.subtract(fields.Datetime.now(), days=days)
        self.env.cr.execute(
            SQL("DELETE FROM sync_reconcile_pass WHERE finished_at < %s", limit)
        )
        self.invalidate_model()
        return self.env.cr.rowcount
