# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Monitoring figures against the targets, per channel and overall.

Every figure is one SQL aggregate over the event log (``percentile_cont``,
``count(*) FILTER``), so the dashboard costs the same at ten events or ten
million: nothing is loaded row by row.

Targets (system parameters ``stock_channel_sync.target_*``):

- sync latency p95 under 5 s (stock change to the channel's acknowledgement);
- success rate over 99.5 % (events that reached a final good state among all
  finished events: pushes acknowledged, inbound events applied, duplicates
  and stale events answered correctly; failures are dead letters and events
  still failing);
  A dead letter discarded by hand stays a failure: it never reached the
  channel. An event needing attention (an unknown SKU, an oversell) is an
  incident, not a failure of the sync, and counts as neither, discarded
  or not;
- reconciliation correction rate under 1 % (drift found / bindings checked,
  over the real passes finished in the period: ``sync.reconcile.pass``; a
  dry run is not counted);
- oversell rate under 0.1 % (oversell incidents / orders received, each
  order once however many of its states came).
"""

from odoo import _, api, fields, models
from odoo.tools import SQL

GOOD = ("applied", "duplicate", "stale", "skipped")
BAD = ("dead", "failed")
TARGETS = {
    "latency_p95_ms": 5000.0,
    "success_rate": 99.5,
    "correction_rate": 1.0,
    "oversell_rate": 0.1,
}


class SyncDashboard(models.TransientModel):
    _name = "sync.dashboard"
    _description = "Stock Sync Dashboard"

    period = fields.Selection(
        [("1", "Last 24 hours"), ("7", "Last 7 days"), ("30", "Last 30 days")],
        default="1",
        required=True,
    )
    channel_id = fields.Many2one("sync.channel", help="Empty: every channel.")
    date_from = fields.Datetime(compute="_compute_figures")
    latency_p50_ms = fields.Float("Latency p50 (ms)", compute="_compute_figures")
    latency_p95_ms = fields.Float("Latency p95 (ms)", compute="_compute_figures")
    pushes = fields.Integer(compute="_compute_figures")
    events_finished = fields.Integer("Finished Events", compute="_compute_figures")
    events_failed = fields.Integer("Failed Events", compute="_compute_figures")
    success_rate = fields.Float("Success Rate (%)", compute="_compute_figures")
    orders = fields.Integer("Orders Received", compute="_compute_figures")
    oversells = fields.Integer("Oversell Incidents", compute="_compute_figures")
    oversell_rate = fields.Float("Oversell Rate (%)", compute="_compute_figures")
    bindings_checked = fields.Integer(compute="_compute_figures")
    corrections = fields.Integer(compute="_compute_figures")
    correction_rate = fields.Float("Correction Rate (%)", compute="_compute_figures")
    dead_letters = fields.Integer("Open Dead Letters", compute="_compute_figures")
    latency_ok = fields.Boolean(compute="_compute_figures")
    success_ok = fields.Boolean(compute="_compute_figures")
    correction_ok = fields.Boolean(compute="_compute_figures")
    oversell_ok = fields.Boolean(compute="_compute_figures")
    target_latency_ms = fields.Float(compute="_compute_figures")
    target_success_rate = fields.Float(compute="_compute_figures")
    target_correction_rate = fields.Float(compute="_compute_figures")
    target_oversell_rate = fields.Float(compute="_compute_figures")

    def _scs_check_channels(self, vals_list):
        """A dashboard of a channel the user may not read is refused (its
        figures are counted in SQL; constraints would run as the superuser)."""
        self.env["sync.channel"].browse(
            {vals["channel_id"] for vals in vals_list if vals.get("channel_id")}
        ).check_access("read")

    @api.model_create_multi
    def create(self, vals_list):
        self._scs_check_channels(vals_list)
        return super().create(vals_list)

    def write(self, vals):
        self._scs_check_channels([vals])
        return super().write(vals)

    @api.depends("channel_id")
    def _compute_display_name(self):
        for board in self:
            board.display_name = (
                _("Sync dashboard: %s", board.channel_id.name)
                if board.channel_id
                else _("Sync dashboard: all channels")
            )

    @api.depends("period", "channel_id")
    def _compute_figures(self):
        targets = self._scs_targets()
        for board in self:
            date_from = fields.Datetime.subtract(
                fields.Datetime.now(), days=int(board.period or 1)
            )
            # every channel the user may see (record rules apply); a channel
            # given by id counts only when the user may read it: the figures
            # are counted in SQL, which applies no rule
            if board.channel_id:
                channels = board.channel_id._filtered_access("read")
            else:
                channels = self.env["sync.channel"].search(
                    [("active", "in", (True, False))]
                )
            figures = self._scs_figures(channels.ids, date_from)
            board.date_from = date_from
            board.update(figures)
            board.target_latency_ms = targets["latency_p95_ms"]
            board.target_success_rate = targets["success_rate"]
            board.target_correction_rate = targets["correction_rate"]
            board.target_oversell_rate = targets["oversell_rate"]
            board.latency_ok = figures["latency_p95_ms"] <= targets["latency_p95_ms"]
            board.success_ok = figures["success_rate"] >= targets["success_rate"]
            board.correction_ok = (
                figures["correction_rate"] <= targets["correction_rate"]
            )
            board.oversell_ok = figures["oversell_rate"] <= targets["oversell_rate"]

    @api.model
    def _scs_targets(self):
        params = self.env["ir.config_parameter"].sudo()
        return {
            key: float(params.get_param(f"stock_channel_sync.target_{key}", default))
            for key, default in TARGETS.items()
        }

    @api.model
    def _scs_figures(self, channel_ids, date_from):
        """All figures for these channels since ``date_from``, in two queries."""
        Event = self.env["sync.event"]
        Event.flush_model()
        self.env.cr.execute(
            SQL(
                """
                SELECT
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms)
                    FILTER (WHERE direction = 'out' AND state = 'applied'
                            AND latency_ms > 0),
                  percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms)
                    FILTER (WHERE direction = 'out' AND state = 'applied'
                            AND latency_ms > 0),
                  count(*) FILTER (WHERE direction = 'out' AND state = 'applied'),
                  count(*) FILTER (WHERE state = ANY(%(good)s)
                                     OR (state = 'discarded'
                                         AND discarded_from IS NULL)),
                  count(*) FILTER (WHERE state = ANY(%(bad)s)
                                     OR (state = 'discarded'
                                         AND discarded_from = ANY(%(bad)s))),
                  count(DISTINCT channel_id::text || ':' || external_ref)
                    FILTER (WHERE direction = 'in' AND kind = 'order'
                            AND external_ref IS NOT NULL),
                  count(*) FILTER (WHERE kind = 'oversell'),
                  count(*) FILTER (WHERE state = 'dead')
                  FROM sync_event
                 WHERE channel_id = ANY(%(channels)s)
                   AND create_date >= %(date_from)s
                """,
                good=list(GOOD),
                bad=list(BAD),
                channels=list(channel_ids),
                date_from=date_from,
            )
        )
        p50, p95, pushes, good, bad, orders, oversells, _dead = self.env.cr.fetchone()
        # open dead letters are counted whatever their age
        self.env.cr.execute(
            SQL(
                "SELECT count(*) FROM sync_event"
                " WHERE channel_id = ANY(%s) AND state = 'dead'",
                list(channel_ids),
            )
        )
        dead = self.env.cr.fetchone()[0]
        self.env["sync.reconcile.pass"].flush_model()
        self.env.cr.execute(
            SQL(
                "SELECT COALESCE(SUM(checked), 0), COALESCE(SUM(drift), 0)"
                " FROM sync_reconcile_pass WHERE channel_id = ANY(%s)"
                " AND finished_at >= %s AND NOT dry_run",
                list(channel_ids),
                date_from,
            )
        )
        checked, corrections = self.env.cr.fetchone()
        finished = good + bad
        return {
            "latency_p50_ms": p50 or 0.0,
            "latency_p95_ms": p95 or 0.0,
            "pushes": pushes,
            "events_finished": finished,
            "events_failed": bad,
            "success_rate": 100.0 * good / finished if finished else 100.0,
            "orders": orders,
            "oversells": oversells,
            "oversell_rate": 100.0 * oversells / orders if orders else 0.0,
            "bindings_checked": checked,
            "corrections": corrections,
            "correction_rate": 100.0 * corrections / checked if checked else 0.0,
            "dead_letters": dead,
        }

    @api.model
    def _scs_cron_check_targets(self):
        """Alert a channel's responsible user when it breaks a target.

        Looks at the last hour; one open activity per channel and target.
        """
        date_from = fields.Datetime.subtract(fields.Datetime.now(), hours=1)
        targets = self._scs_targets()
        breaches = []
        for channel in self.env["sync.channel"].search([("active", "=", True)]):
            figures = self._scs_figures(channel.ids, date_from)
            if figures["latency_p95_ms"] > targets["latency_p95_ms"]:
                breaches.append(
                    (
                        channel,
                        _("Sync latency above target"),
                        _(
                            "p95 latency %(p95).0f ms over the last hour (target "
                            "%(target).0f ms).",
                            p95=figures["latency_p95_ms"],
                            target=targets["latency_p95_ms"],
                        ),
                    )
                )
            if figures["events_finished"] and (
                figures["success_rate"] < targets["success_rate"]
            ):
                breaches.append(
                    (
                        channel,
                        _("Sync failure rate above target"),
                        _(
                            "%(rate).2f%% of events succeeded over the last hour "
                            "(target %(target).2f%%).",
                            rate=figures["success_rate"],
                            target=targets["success_rate"],
                        ),
                    )
                )
        for channel, summary, note in breaches:
            channel._scs_notify(summary, note, key=summary)
        return breaches

    def action_refresh(self):
        return {
            "type": "ir.actions.act_window",
            "res_model": self._name,
            "res_id": self.id,
            "view_mode": "form",
            "target": "current",
        }
