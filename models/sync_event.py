# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""The event log: every inbound and outbound event, append-only.

Each event carries an idempotency key, unique per channel and direction, so
a redelivered webhook or a replayed push can never produce a second row.
States::

    received -> queued -> applied | stale | duplicate | skipped
                       -> failed (retrying) -> applied | dead
    dead -> (retry) queued ...   dead -> discarded

Latency is a stored figure: ``change_ts`` (the stock change, unix seconds
with sub-second precision, which ``fields.Datetime`` would truncate),
``enqueue_ts``, ``sent_ts`` and ``ack_ts`` give ``latency_ms``.

Every state an event reaches is also written to the server log as one JSON
line (logger ``odoo.addons.stock_channel_sync.events``) so that operators can
keep the full history in their own log store while the database keeps a
short window.
"""

import json
import logging
import time

from odoo import _, api, fields, models

_logger = logging.getLogger(__name__)
_event_logger = logging.getLogger("odoo.addons.stock_channel_sync.events")

DIRECTIONS = [("in", "Inbound"), ("out", "Outbound")]
KINDS = [
    ("push", "Stock push"),
    ("correction", "Reconciliation correction"),
    ("order", "Order"),
    ("cancel", "Cancellation / refund"),
    ("inventory", "Channel inventory level"),
    ("unknown_sku", "Unknown SKU"),
    ("oversell", "Oversell incident"),
    ("ping", "Ping"),
    ("ignored", "Ignored"),
]
STATES = [
    ("received", "Received"),
    ("queued", "Queued"),
    ("applied", "Applied"),
    ("stale", "Stale"),
    ("duplicate", "Duplicate"),
    ("skipped", "Skipped"),
    ("attention", "Needs attention"),
    ("failed", "Failed (retrying)"),
    ("dead", "Dead letter"),
    ("discarded", "Discarded"),
]
FINAL_STATES = ("applied", "stale", "duplicate", "skipped", "discarded")


class SyncEvent(models.Model):
    _name = "sync.event"
    _description = "Stock Sync Event"
    _order = "id desc"
    _rec_name = "idempotency_key"

    direction = fields.Selection(DIRECTIONS, required=True, index=True, readonly=True)
    channel_id = fields.Many2one(
        "sync.channel", required=True, index=True, ondelete="cascade", readonly=True
    )
    company_id = fields.Many2one(
        related="channel_id.company_id", store=True, index=True, precompute=True
    )
    binding_id = fields.Many2one(
        "channel.binding", index="btree_not_null", ondelete="set null", readonly=True
    )
    product_id = fields.Many2one(
        "product.product", index="btree_not_null", ondelete="set null", readonly=True
    )
    sku = fields.Char(index="btree_not_null", readonly=True)
    kind = fields.Selection(KINDS, required=True, index=True, readonly=True)
    idempotency_key = fields.Char(required=True, readonly=True)
    external_ref = fields.Char(
        "External Reference", index="btree_not_null", readonly=True,
        help="External order id, listing id... the channel's name for the subject.",
    )
    quantity = fields.Float(readonly=True, digits="Product Unit")
    sequence = fields.Integer(readonly=True)
    payload = fields.Text(readonly=True)
    response = fields.Text(readonly=True)
    state = fields.Selection(
        STATES, required=True, default="received", index=True, readonly=True
    )
    attempts = fields.Integer(readonly=True)
    error = fields.Text(readonly=True)
    reason = fields.Char(readonly=True, help="Why a correction or a discard happened.")
    job_uuid = fields.Char("Job UUID", readonly=True, index="btree_not_null")
    replay_of_id = fields.Many2one("sync.event", readonly=True, ondelete="set null")
    event_ts = fields.Float(
        "Event Time (unix)", digits=(16, 3), readonly=True,
        help="When the channel says the event happened (ordering).",
    )
    change_ts = fields.Float("Stock Change (unix)", digits=(16, 3), readonly=True)
    enqueue_ts = fields.Float("Enqueued (unix)", digits=(16, 3), readonly=True)
    sent_ts = fields.Float("Sent (unix)", digits=(16, 3), readonly=True)
    ack_ts = fields.Float("Acknowledged (unix)", digits=(16, 3), readonly=True)
    latency_ms = fields.Float(
        "Latency (ms)", readonly=True, aggregator="avg",
        help="From the stock change (or reception) to the channel's acknowledgement.",
    )

    _idempotency_uniq = models.UniqueIndex(
        "(channel_id, direction, idempotency_key)",
        "This event was already recorded (same channel, direction and key).",
    )
    _dead_idx = models.Index("(channel_id, create_date) WHERE state IN ('dead', 'failed')")
    _channel_date_idx = models.Index("(channel_id, create_date DESC)")

    # -- creation helpers -----------------------------------------------------
    @api.model
    def _scs_create_outbound(self, items, changed_ts, now):
        """One outbound event per ``(binding, qty, kind)``, bumping sequences.

        The key ``out-<binding>-<sequence>`` is what the channel sees as the
        delivery id: a retry of the same number reuses it, a new number gets
        a new one.
        """
        vals_list = []
        for binding, qty, kind in items:
            sequence = binding.sequence + 1
            binding.sequence = sequence
            vals_list.append(
                {
                    "direction": "out",
                    "channel_id": binding.channel_id.id,
                    "binding_id": binding.id,
                    "product_id": binding.product_id.id,
                    "sku": binding.sku,
                    "kind": kind,
                    "idempotency_key": f"out-{binding.id}-{sequence}",
                    "external_ref": binding.external_id or False,
                    "quantity": qty,
                    "sequence": sequence,
                    "state": "received",
                    "change_ts": changed_ts or now,
                    "enqueue_ts": now,
                    "job_uuid": self.env.context.get("job_uuid"),
                }
            )
        return self.sudo().create(vals_list)

    def _scs_set_state(self, state, **vals):
        """Move to ``state``; computes the latency on acknowledgement."""
        vals["state"] = state
        for event in self:
            values = dict(vals)
            if values.get("ack_ts") and (event.change_ts or event.enqueue_ts):
                start = event.change_ts or event.enqueue_ts
                values["latency_ms"] = max(0.0, (values["ack_ts"] - start) * 1000.0)
            if "response" in values and values["response"]:
                values["response"] = str(values["response"])[:4000]
            event.write(values)
        return True

    def _scs_supersede(self):
        for event in self.filtered(lambda e: e.state not in FINAL_STATES + ("dead",)):
            event._scs_set_state("skipped", reason=_("superseded by a newer push"))

    # -- CRUD ------------------------------------------------------------------
    @api.model_create_multi
    def create(self, vals_list):
        events = super().create(vals_list)
        events._scs_log()
        return events

    def write(self, vals):
        res = super().write(vals)
        if "state" in vals:
            self._scs_log()
        return res

    def _scs_log(self):
        """One structured JSON line per event state, for log shipping."""
        if not _event_logger.isEnabledFor(logging.INFO):
            return
        for event in self:
            _event_logger.info(
                json.dumps(
                    {
                        "db": self.env.cr.dbname,
                        "event": event.id,
                        "channel": event.channel_id.id,
                        "direction": event.direction,
                        "sku": event.sku,
                        "kind": event.kind,
                        "state": event.state,
                        "key": event.idempotency_key,
                        "quantity": event.quantity,
                        "attempts": event.attempts,
                        "latency_ms": round(event.latency_ms, 1)
                        if event.latency_ms
                        else None,
                        "error": (event.error or "")[:200] or None,
                        "ts": round(time.time(), 3),
                    },
                    sort_keys=True,
                )
            )
