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

import contextlib
import contextvars
import json
import logging
import time

from odoo import _, api, fields, models
from odoo.exceptions import AccessError
from odoo.tools import SQL

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
#: what ``_scs_job_apply`` answers for an order left to a batch reservation
DEFERRED = "deferred"
KIND_VALUES = frozenset(kind for kind, _label in KINDS)
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
#: inbound kinds that a job applies; the others are only logged
APPLY_KINDS = ("order", "cancel", "inventory")


def like_prefix(prefix):
    """A ``=like`` pattern of the values that begin with ``prefix``."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


class SyncEvent(models.Model):
    _name = "sync.event"
    _description = "Stock Sync Event"
    _order = "id desc"
    _rec_name = "idempotency_key"

    # Indexes are chosen for the webhook route, which inserts a row per
    # delivery: the channel is the first column of three composite indexes,
    # and direction, kind and company have too few values to be worth one.
    direction = fields.Selection(DIRECTIONS, required=True, readonly=True)
    channel_id = fields.Many2one(
        "sync.channel", required=True, ondelete="cascade", readonly=True
    )
    company_id = fields.Many2one(
        related="channel_id.company_id", store=True, precompute=True
    )
    binding_id = fields.Many2one(
        "channel.binding", index="btree_not_null", ondelete="set null", readonly=True
    )
    product_id = fields.Many2one(
        "product.product", index="btree_not_null", ondelete="set null", readonly=True
    )
    sku = fields.Char(index="btree_not_null", readonly=True)
    kind = fields.Selection(KINDS, required=True, readonly=True)
    idempotency_key = fields.Char(required=True, readonly=True)
    external_ref = fields.Char(
        "External Reference",
        index="btree_not_null",
        readonly=True,
        help="External order id, listing id... the channel's name for the subject.",
    )
    quantity = fields.Float(readonly=True, digits="Product Unit")
    sequence = fields.Integer(readonly=True)
    # what the channel sent, customers' names and addresses included (an
    # order): for those who configure the channels, not every sync user
    payload = fields.Text(readonly=True, groups="stock_channel_sync.group_sync_manager")
    response = fields.Text(readonly=True)
    state = fields.Selection(
        STATES, required=True, default="received", index=True, readonly=True
    )
    attempts = fields.Integer(readonly=True)
    error = fields.Text(readonly=True)
    reason = fields.Char(readonly=True, help="Why a correction or a discard happened.")
    job_uuid = fields.Char("Job UUID", readonly=True, index="btree_not_null")
    # indexed: deleting an event (retention) looks up the events replaying it
    replay_of_id = fields.Many2one(
        "sync.event", readonly=True, ondelete="set null", index="btree_not_null"
    )
    event_ts = fields.Float(
        "Event Time (unix)",
        digits=(16, 3),
        readonly=True,
        help="When the channel says the event happened (ordering).",
    )
    change_ts = fields.Float("Stock Change (unix)", digits=(16, 3), readonly=True)
    enqueue_ts = fields.Float("Enqueued (unix)", digits=(16, 3), readonly=True)
    sent_ts = fields.Float("Sent (unix)", digits=(16, 3), readonly=True)
    ack_ts = fields.Float("Acknowledged (unix)", digits=(16, 3), readonly=True)
    latency_ms = fields.Float(
        "Latency (ms)",
        readonly=True,
        aggregator="avg",
        help="From the stock change (or reception) to the channel's acknowledgement.",
    )

    _idempotency_uniq = models.UniqueIndex(
        "(channel_id, direction, idempotency_key)",
        "This event was already recorded (same channel, direction and key).",
    )

    def init(self):
        """Create the push sequence; never below a sequence already used.

        (A database whose events were numbered before the sequence existed
        would otherwise hand out delivery ids that are already taken.)
        """
        self.env.cr.execute("CREATE SEQUENCE IF NOT EXISTS stock_channel_sync_push_seq")
        self.env.cr.execute(
            """
            SELECT setval('stock_channel_sync_push_seq', GREATEST(
                (SELECT last_value FROM stock_channel_sync_push_seq),
                (SELECT COALESCE(MAX(sequence), 0) FROM sync_event),
                (SELECT COALESCE(MAX(sequence), 0) FROM channel_binding),
                1))
            """
        )

    _dead_idx = models.Index(
        "(channel_id, create_date) WHERE state IN ('dead', 'failed')"
    )
    _channel_date_idx = models.Index("(channel_id, create_date DESC)")

    # -- creation helpers --
    @api.model
    def _scs_create_outbound(self, items, changed_ts, now, reasons=None):
        """One outbound event per ``(binding, qty, kind)``, with a new sequence.

        The key ``out-<binding>-<sequence>`` is what the channel sees as the
        delivery id: a retry of the same number reuses it, a new number gets
        a new one. Sequences come from a PostgreSQL sequence, which a
        rollback does not rewind: a job that pushed and then failed to commit
        can never hand the same delivery id to a different quantity later
        (the channel would drop it as a duplicate). They only grow, so a
        channel can also order deliveries by them.
        """
        if not items:
            return self.browse()
        self.env.cr.execute(
            SQL(
                "SELECT nextval('stock_channel_sync_push_seq')"
                " FROM generate_series(1, %s)",
                len(items),
            )
        )
        sequences = [row[0] for row in self.env.cr.fetchall()]
        vals_list = []
        for (binding, qty, kind), sequence in zip(items, sequences, strict=True):
            binding.sequence = sequence
            key = f"out-{binding.id}-{sequence}"
            # what the adapter is handed (it writes it in the channel's own
            # call): shown in the event log as the event's payload
            payload = {
                "sku": binding.sku or None,
                "quantity": qty,
                "sequence": sequence,
                "idempotency_key": key,
                "external_id": binding.external_id or None,
                "external_variant_id": binding.external_variant_id or None,
                "external_location_id": binding.external_location_id or None,
            }
            vals_list.append(
                {
                    "direction": "out",
                    "channel_id": binding.channel_id.id,
                    "binding_id": binding.id,
                    "product_id": binding.product_id.id,
                    "sku": binding.sku,
                    "kind": kind,
                    "idempotency_key": key,
                    "payload": json.dumps(payload),
                    "external_ref": binding.external_id or False,
                    "quantity": qty,
                    "sequence": sequence,
                    "state": "received",
                    "change_ts": changed_ts or now,
                    "enqueue_ts": now,
                    "job_uuid": self.env.context.get("job_uuid"),
                    "reason": (reasons or {}).get(binding.id) or False,
                }
            )
        return self.sudo().create(vals_list)

    def _scs_set_state(self, state, **vals):
        """Move to ``state``; computes the latency on acknowledgement."""
        vals["state"] = state
        for event in self:
            values = dict(vals)
            if event.discarded_from == "dead" and "discarded_from" not in vals:
                # a dead letter retried by hand (see ``action_retry``)
                if state == "skipped":
                    # closed unsent: still a failure, as a dead letter
                    # closed without a retry is
                    values["state"] = "discarded"
                elif state == "applied":
                    values["discarded_from"] = False
            if values.get("ack_ts") and (event.change_ts or event.enqueue_ts):
                start = event.change_ts or event.enqueue_ts
                values["latency_ms"] = max(0.0, (values["ack_ts"] - start) * 1000.0)
            if values.get("response"):
                values["response"] = str(values["response"])[:4000]
            # the synchronisation's own writing, whoever's action led here
            event.sudo().write(values)
        return True

    def _scs_supersede(self):
        for event in self.filtered(lambda e: e.state not in FINAL_STATES + ("dead",)):
            event._scs_set_state("skipped", reason=_("superseded by a newer push"))

    # -- CRUD --
    @api.model_create_multi
    def create(self, vals_list):
        events = super().create(vals_list)
        events._scs_log()
        return events

    def write(self, vals):
        """An event is a record of what happened, written by the
        synchronisation only (as the superuser). Sync managers have the
        write right, which Retry, Replay and Discard check, but a direct
        write could move an event to another channel or company, rewrite
        the order it carries, or set a state that makes Retry apply a
        refund twice."""
        if not self.env.su:
            raise AccessError(
                _(
                    "Events are written by the synchronisation only: use "
                    "Retry, Replay or Discard."
                )
            )
        was_dead = (
            self.filtered(lambda e: e.state == "dead")
            if vals.get("state", "dead") != "dead"
            else self.browse()
        )
        res = super().write(vals)
        if "state" in vals:
            self._scs_log()
        # the channel's dead-letter alert is about the past once the last
        # one is retried, superseded or discarded
        was_dead.channel_id._scs_dead_letters_gone()
        return res

    def _scs_log(self):
        """One structured JSON line per event state, for log shipping."""
        if not _event_logger.isEnabledFor(logging.INFO):
            return
        for event in self:
            _scs_log_line(
                self.env.cr.dbname,
                event.id,
                {
                    "channel_id": event.channel_id.id,
                    "direction": event.direction,
                    "sku": event.sku,
                    "kind": event.kind,
                    "state": event.state,
                    "idempotency_key": event.idempotency_key,
                    "quantity": event.quantity,
                    "attempts": event.attempts,
                    "latency_ms": event.latency_ms,
                    "error": event.error,
                    "reason": event.reason,
                    "binding_id": event.binding_id.id,
                    "external_ref": event.external_ref,
                },
            )


#: while set (a list), the event log lines of this context are kept there
#: instead of logged: a pass whose work may be rolled back logs them after
_LOG_BUFFER = contextvars.ContextVar("stock_channel_sync_log_buffer", default=None)


@contextlib.contextmanager
def buffered_log_lines():
    """Keep the event log lines written inside; the caller logs them or not."""
    lines = []
    token = _LOG_BUFFER.set(lines)
    try:
        yield lines
    finally:
        _LOG_BUFFER.reset(token)


def log_lines(lines):
    for line in lines:
        _event_logger.info(line)


def _scs_log_line(dbname, event_id, vals):
    if not _event_logger.isEnabledFor(logging.INFO):
        # the webhook route writes one per delivery: no line to build when
        # the log level drops it
        return
    line = json.dumps(
        {
            "db": dbname,
            "event": event_id,
            "channel": vals.get("channel_id"),
            "direction": vals.get("direction"),
            "sku": vals.get("sku") or False,
            "kind": vals.get("kind"),
            "state": vals.get("state"),
            "key": vals.get("idempotency_key"),
            "quantity": vals.get("quantity") or 0.0,
            "attempts": vals.get("attempts") or 0,
            "latency_ms": round(vals["latency_ms"], 1)
            if vals.get("latency_ms")
            else None,
            "error": (vals.get("error") or "")[:200] or None,
            "reason": (vals.get("reason") or "")[:200] or None,
            "binding": vals.get("binding_id") or None,
            "ref": vals.get("external_ref") or None,
            "ts": round(time.time(), 3),
        },
        sort_keys=True,
    )
    buffer = _LOG_BUFFER.get()
    if buffer is None:
        _event_logger.info(line)
    else:
        buffer.append(line)
