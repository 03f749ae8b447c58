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

import psycopg2.errors

from odoo import _, api, fields, models, sql_db
from odoo.tools import SQL

from ..lib.ordering import bounded_event_ts, is_stale, to_timestamp
from .job_store import hold_pending_jobs

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


#: what the webhook route writes of an inbound event, in one INSERT
INSERT_COLUMNS = (
    "direction",
    "channel_id",
    "company_id",
    "kind",
    "idempotency_key",
    "external_ref",
    "sku",
    "quantity",
    "payload",
    "data",
    "event_ts",
    "change_ts",
    "enqueue_ts",
    "state",
    "subject",
)
INSERT_INBOUND = (
    "INSERT INTO sync_event ("
    + ", ".join(INSERT_COLUMNS)
    + ", create_uid, write_uid, create_date, write_date) VALUES ("
    + ", ".join(["%s"] * len(INSERT_COLUMNS))
    + ", %s, %s, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC')"
    " ON CONFLICT (channel_id, direction, idempotency_key) DO NOTHING"
    " RETURNING id"
)
#: the same, and whether the channel has an apply job waiting or running, in
#: one statement (the webhook route, see ``_scs_insert_delivered``)
INSERT_AND_CHECK = (
    "WITH ins AS (" + INSERT_INBOUND + ")"
    " SELECT (SELECT id FROM ins), EXISTS (SELECT 1 FROM queue_job"
    " WHERE identity_key = %s AND state IN ('pending', 'enqueued', 'started'))"
)
#: the webhook route's whole write in one message, on a connection in
#: autocommit mode (``_scs_deliver_at_once``). The statements of one message
#: run as one transaction of their own, committed when the last one is done
#: and before the message is answered (PostgreSQL's implicit transaction
#: block); the answer is the last statement's result: the new ids by key and
#: whether the channel's apply job is waiting or running
DELIVER_AT_ONCE = (
    "SET TRANSACTION ISOLATION LEVEL READ COMMITTED;"
    " SELECT pg_advisory_xact_lock_shared(%s, %s);"
    " WITH ins AS (INSERT INTO sync_event ("
    + ", ".join(INSERT_COLUMNS)
    + ", create_uid, write_uid, create_date, write_date) VALUES %s"
    " ON CONFLICT (channel_id, direction, idempotency_key) DO NOTHING"
    " RETURNING id, idempotency_key)"
    " SELECT (SELECT json_object_agg(idempotency_key, id) FROM ins)::text,"
    " EXISTS (SELECT 1 FROM queue_job WHERE identity_key = %s"
    " AND state IN ('pending', 'enqueued', 'started'))"
)
DELIVER_ROW = (
    "("
    + ", ".join(["%s"] * len(INSERT_COLUMNS))
    + ", %s, %s, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC')"
)
#: advisory lock class of "a delivery of this channel is being recorded":
#: shared by the webhook route until its commit, taken exclusively by the
#: apply job at the end of a run (``sync.channel._scs_follow_late_deliveries``)
DELIVERY_LOCK = 0x5C6


def _insert_args(vals):
    """``vals`` in ``INSERT_COLUMNS`` order; the ORM's False is SQL's NULL.

    (PostgreSQL would store the text 'false' in a varchar column.)
    """
    return tuple(
        None if vals[column] is False else vals[column] for column in INSERT_COLUMNS
    )


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
    payload = fields.Text(readonly=True)
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
                    "reason": (reasons or {}).get(binding.id) or False,
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
            if values.get("response"):
                values["response"] = str(values["response"])[:4000]
            event.write(values)
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
        res = super().write(vals)
        if "state" in vals:
            self._scs_log()
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
            "ts": round(time.time(), 3),
        },
        sort_keys=True,
    )
    buffer = _LOG_BUFFER.get()
    if buffer is None:
        _event_logger.info(line)
    else:
        buffer.append(line)


def _per_binding(known):
    """An order's known lines summed per binding, in order of appearance.

    A SKU on several lines of one order (a marketplace splits lines by
    price, gift wrap or bundle) is one move to reserve, and one quantity to
    hold against what the channel was offered: line by line, two lines of 3
    would each pass an offer of 5.
    """
    totals = {}
    for line, binding in known:
        totals[binding] = totals.get(binding, 0.0) + float(line.get("quantity") or 0)
    return list(totals.items())


def _qty_label(binding, qty):
    """``"2 SKU"``: a quantity of a binding, as reasons name it."""
    return f"{qty:g} {binding.sku or binding.product_id.display_name}"


def _is_line_refund(order):
    """A refund that names the lines it restocks: it adds to the order's
    other events (each releases its own lines, once) instead of replacing
    them."""
    return order.get("status") == "refunded" and bool(order.get("lines"))


def _jsonable(value):
    """Dataclasses from the adapters -> JSON-ready dicts (datetimes as ISO)."""
    if hasattr(value, "__dataclass_fields__"):
        return {k: _jsonable(getattr(value, k)) for k in value.__dataclass_fields__}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, Exception):
        return str(value)
    return value


def _subject(key, order, levels):
    """The subject of an inbound event: one item, else the order, else itself."""
    if len(levels) == 1:
        level = levels[0]
        ref = level.sku or level.external_variant_id or level.external_id
        if ref:
            return f"item:{ref}"
    if order is not None:
        refs = {
            line.sku or line.external_variant_id or line.external_id
            for line in order.lines or []
        }
        if len(refs) == 1 and None not in refs and "" not in refs:
            return f"item:{refs.pop()}"
        if order.external_id:
            return f"order:{order.external_id}"
    return f"key:{key}"


class SyncEventInbound(models.Model):
    """Inbound half of the event log: record a webhook, apply it in a job."""

    _inherit = "sync.event"

    data = fields.Text(
        "Normalised Event", readonly=True, help="What the job applies (JSON)."
    )

    subject = fields.Char(
        readonly=True,
        help="What the event is about: the SKU (or the channel's item id) when "
        "the event concerns one item, else the external order. The apply job "
        "applies a subject's queued events in their order.",
    )

    _queued_idx = models.Index(
        "(channel_id, event_ts, id) WHERE state = 'queued' AND direction = 'in'"
    )

    @api.model
    def _scs_record_inbound(
        self,
        channel,
        parsed,
        body,
        topic,
        received_ts=None,
        enqueue=True,
        company_id=None,
        own_transaction=False,
    ):
        """Insert one row per parsed event; duplicates are answered, not stored.

        Each row is one ``INSERT ... ON CONFLICT DO NOTHING`` on the unique
        index (channel, direction, key): a redelivery inserts nothing, and a
        concurrent delivery of the same event waits for the first to commit,
        then inserts nothing (under repeatable read PostgreSQL reports that
        as a serialization failure, see ``own_transaction``). The webhook
        route runs this on every delivery, so it stays at a few statements:
        the ORM's ``create`` would cost more than the rest of the request.

        New events to apply get the channel's apply job (a new one or the
        one waiting, see ``sync_channel_inbound``), unless ``enqueue`` is
        false (the caller applies them).

        ``own_transaction``: the caller's transaction holds nothing else (the
        webhook route); see ``_scs_insert_delivered``.
        """
        received_ts = received_ts or time.time()
        raw = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        rows = []
        for item in parsed:
            vals = self._scs_inbound_vals(channel, item, raw, topic, received_ts)
            vals["company_id"] = company_id or channel.company_id.id
            rows.append(vals)
        job_key = (
            channel._scs_inbound_identity()
            if enqueue and any(vals["state"] == "queued" for vals in rows)
            else None
        )
        at_once = own_transaction and isinstance(self.env.cr, sql_db.Cursor)
        if not at_once:
            # a delivery at once starts with a rollback (the caller's
            # transaction holds nothing): there is nothing to flush then
            self.flush_model()
        hold = job_found = None
        if own_transaction:
            for attempt in range(1, 4):
                try:
                    ids, job_found = self._scs_insert_delivered(rows, channel, job_key)
                    break
                except psycopg2.errors.SerializationFailure:
                    # not expected at read committed; a test cursor keeps
                    # repeatable read: start again, at once
                    if attempt == 3:
                        raise
                    self.env.cr.rollback()
        else:
            ids, hold = self._scs_insert_inbound(rows, job_key, True)
        out = []
        to_apply = False
        for vals, event_id in zip(rows, ids, strict=True):
            if not event_id:
                out.append(
                    {"key": vals["idempotency_key"], "state": "duplicate", "new": False}
                )
                continue
            _scs_log_line(self.env.cr.dbname, event_id, vals)
            to_apply = to_apply or vals["state"] == "queued"
            out.append(
                {
                    "key": vals["idempotency_key"],
                    "state": vals["state"],
                    "new": True,
                    "id": event_id,
                }
            )
        if job_key and own_transaction:
            waiting = [
                vals["idempotency_key"]
                for vals, event_id in zip(rows, ids, strict=True)
                if not event_id and vals["state"] == "queued"
            ]
            if not job_found and (to_apply or waiting):
                if isinstance(self.env.cr, sql_db.Cursor):
                    # the delivery committed; the job's transaction looks
                    # for a live job after its lock, on a fresh snapshot
                    self.env.cr.execute(
                        "SET TRANSACTION ISOLATION LEVEL READ COMMITTED"
                    )
                if to_apply or self._scs_still_queued(channel, waiting):
                    channel._scs_start_inbound_job()
        elif to_apply and job_key:
            channel._scs_enqueue_inbound(hold=hold)
        return out

    @api.model
    def _scs_still_queued(self, channel, keys):
        """Whether a redelivered event still waits for its apply job.

        The route commits a new event before it starts the channel's job (in
        a second transaction); if the worker died in between, the sender,
        which got no answer, delivers again: that duplicate starts the job.
        """
        self.env.cr.execute(
            SQL(
                "SELECT 1 FROM sync_event WHERE channel_id = %s AND direction = 'in'"
                " AND idempotency_key = ANY(%s) AND state = 'queued' LIMIT 1",
                channel.id,
                keys,
            )
        )
        return bool(self.env.cr.fetchone())

    @api.model
    def _scs_inbound_vals(self, channel, item, raw, topic, received_ts):
        key = str(item.idempotency_key or "")[:255]
        if not key:
            raise ValueError("event without idempotency key")
        kind = item.kind if item.kind in KIND_VALUES else "ignored"
        order = item.order
        levels = item.levels or []
        return {
            "direction": "in",
            "channel_id": channel.id,
            "kind": kind,
            "idempotency_key": key,
            "external_ref": order.external_id
            if order
            else (levels[0].sku if levels else False),
            "sku": levels[0].sku if len(levels) == 1 else False,
            "quantity": levels[0].quantity if len(levels) == 1 else 0.0,
            "payload": raw[:65536],
            "data": json.dumps(
                {
                    "topic": topic,
                    "order": _jsonable(order),
                    "levels": _jsonable(levels),
                }
            ),
            "event_ts": bounded_event_ts(to_timestamp(item.event_time), received_ts)
            or 0.0,
            "change_ts": received_ts,
            "enqueue_ts": time.time(),
            "state": "queued" if kind in APPLY_KINDS else "skipped",
            "subject": _subject(key, order, levels)[:255],
        }

    @api.model
    def _scs_insert_inbound(self, rows, hold_key=None, savepoints=True):
        """Insert inbound events: ``([id, or None when the key is taken], hold)``.

        For callers inside a transaction of their own (a poll of orders, a
        test): ``hold_key`` then takes the channel's waiting apply job (see
        ``job_store.hold_pending_jobs``); ``hold`` is what that found. With
        ``savepoints``, each serialization failure is absorbed here (the
        event is a duplicate; the job is not held); without, it is raised.
        """
        ids = []
        for vals in rows:
            query = SQL(INSERT_INBOUND, *_insert_args(vals), self.env.uid, self.env.uid)
            if not savepoints:
                self.env.cr.execute(query, log_exceptions=False)
                row = self.env.cr.fetchone()
            else:
                try:
                    with self.env.cr.savepoint(flush=False):
                        self.env.cr.execute(query, log_exceptions=False)
                        row = self.env.cr.fetchone()
                except psycopg2.errors.SerializationFailure:
                    row = None  # a concurrent delivery committed it first
            ids.append(row[0] if row else None)
        hold = None
        if hold_key and any(ids):
            # last, so that the job's row stays locked only for the commit
            hold = hold_pending_jobs(self.env, [hold_key], savepoint=savepoints)
        return ids, hold

    @api.model
    def _scs_insert_delivered(self, rows, channel, job_key=None):
        """The webhook route's insert: ``([id or None], job_found)``.

        ``job_found``: the channel's apply job is waiting or running, so that
        the new events need no job of their own. That needs no lock on the
        job: the delivery holds the channel's ``DELIVERY_LOCK`` (shared, so
        deliveries never wait for each other) until it commits, and a run
        that enqueues no follow-up takes that lock exclusively when it is
        done, then looks for events it did not see (see
        ``sync.channel._scs_follow_late_deliveries``). A share lock on the
        job's row (``job_store``) would do too, but costs a write of the row
        per delivery and makes the job runner wait: measured, about a tenth
        of the route's throughput under load.

        On a server's cursor the delivery is its own read committed
        transaction, sent and committed in one message
        (``_scs_deliver_at_once``): the job is looked for on a snapshot taken
        after the lock is granted, so a delivery that had to wait for a
        finishing run finds that run done, and a concurrent delivery of the
        same key waits for the first to commit and then inserts nothing,
        with no serialization failure. A test cursor cannot commit: it keeps
        the test's transaction, at repeatable read, and the same statements.
        """
        cr = self.env.cr
        if not rows:
            return [], False
        if isinstance(cr, sql_db.Cursor):
            return self._scs_deliver_at_once(rows, channel, job_key)
        self.env["queue.job"].flush_model(["identity_key", "state"])
        # the lock travels with the first insert, in one round trip
        lock = SQL(
            "SELECT pg_advisory_xact_lock_shared(%s, %s);", DELIVERY_LOCK, channel.id
        )
        ids, job_found = [], False
        for index, vals in enumerate(rows):
            args = (*_insert_args(vals), self.env.uid, self.env.uid)
            if job_key and index == len(rows) - 1:
                query = SQL(INSERT_AND_CHECK, *args, job_key)
            else:
                query = SQL(INSERT_INBOUND, *args)
            cr.execute(SQL("%s %s", lock, query), log_exceptions=False)
            lock = SQL()
            row = cr.fetchone()
            if job_key and index == len(rows) - 1:
                event_id, job_found = row
            else:
                event_id = row[0] if row else None
            ids.append(event_id)
        return ids, job_found

    @api.model
    def _scs_deliver_at_once(self, rows, channel, job_key):
        """Record a delivery in one round trip to PostgreSQL, commit included.

        On a server the route costs a handful of round trips that Odoo makes
        for any request; psycopg2 would add three of its own for the write
        (``BEGIN``, the statements, ``COMMIT``), each one a wait for the
        database process to be scheduled: measured under load, this message
        raises the route's throughput by about a third. The connection is in
        autocommit mode while the message runs, so that psycopg2 opens no
        transaction around it: the message's statements are one transaction,
        which PostgreSQL commits before it answers, or rolls back whole when
        a statement fails. The caller's transaction holds nothing
        (``own_transaction``). Fewer statements cost less to plan than an
        explicit ``BEGIN`` ... ``COMMIT`` that would need the outcome kept in
        a session setting across the commit: measured, about a fifth of the
        message's time in PostgreSQL.

        Each statement of the message takes its own snapshot after the one
        before has finished, so the apply job is looked for after the
        delivery lock is granted (see ``_scs_insert_delivered``), and a
        concurrent delivery of the same key waits for the first to commit,
        then inserts nothing. When the message returns, the events are
        committed.
        """
        cr = self.env.cr
        first = {}
        for vals in rows:
            # a key twice in one delivery is one event
            first.setdefault(vals["idempotency_key"], vals)
        # rows in key order: two deliveries that share keys wait for each
        # other's keys in the same order, so they cannot deadlock
        values = [
            SQL(DELIVER_ROW, *_insert_args(vals), self.env.uid, self.env.uid)
            for _key, vals in sorted(first.items())
        ]
        query = SQL(
            DELIVER_AT_ONCE,
            DELIVERY_LOCK,
            channel.id,
            SQL(", ").join(values),
            job_key or "",
        )
        cr.rollback()
        cnx = cr._cnx
        # Odoo's connection keeps its isolation level and read/write mode as
        # session characteristics, and psycopg2 answers a switch back from
        # autocommit with a SET ... TO DEFAULT for each: two more round trips
        # per delivery. Cleared for the message and put back afterwards (no
        # statement either way outside autocommit), they cost nothing.
        session = None
        if not cnx.autocommit:
            session = (cnx.isolation_level, cnx.readonly)
            cnx.set_session(isolation_level="DEFAULT", readonly="DEFAULT")
        try:
            cnx.autocommit = True
            cr.execute(query, log_exceptions=False)
            new_ids, job_found = cr.fetchone()
        finally:
            if not cnx.closed:
                cnx.autocommit = False
                if session:
                    cnx.set_session(isolation_level=session[0], readonly=session[1])
        new_ids = json.loads(new_ids) if new_ids else {}
        ids = []
        for vals in rows:
            key = vals["idempotency_key"]
            ids.append(new_ids.get(key) if first.get(key) is vals else None)
        return ids, bool(job_found)

    # -- the apply job --
    def _scs_job_apply(
        self, bindings=None, defer=None, corrections=None, published=None
    ):
        """Apply one inbound event; idempotent, so a replay changes nothing.

        ``bindings``: an index of the channel's bindings built by the caller
        for many events at once (see ``sync.channel._scs_binding_index``).
        ``defer``: a list that collects an order to reserve instead of
        reserving it (the caller reserves the run's orders together and
        finishes each with ``_scs_finish_order``); returns ``DEFERRED``.
        ``corrections``: a list that collects the bindings whose channel
        holds an edited level, instead of pushing each at once (the caller
        gives them one job, after its commit: no HTTP call inside the run).
        ``published``: the run's ``RunQuantities`` (levels only), read once.
        """
        self.ensure_one()
        event = self.sudo()
        if event.state not in ("received", "queued", "failed"):
            return f"nothing to do: event is {event.state}"
        data = json.loads(event.data or "{}")
        if event.kind in ("order", "cancel"):
            return event._scs_apply_order(data.get("order") or {}, bindings, defer)
        if event.kind == "inventory":
            return event._scs_apply_inventory(
                data.get("levels") or [], bindings, corrections, published
            )
        event._scs_set_state("skipped", reason=_("nothing to apply"))
        return "skipped"

    def _scs_superseded_levels(self):
        """``{event: newer event}``: item levels that a later level overrides.

        ``self`` is sorted oldest first and shares one subject. Only the
        newest level of an item is worth applying; the older ones would be
        stale the moment it is applied, so they are recorded stale at once.
        """
        levels = [
            e
            for e in self
            if e.kind == "inventory" and (e.subject or "").startswith("item:")
        ]
        return {event: levels[-1] for event in levels[:-1]}

    def _scs_hand_over(self, error):
        """This event failed on its own: give it a job with retries and hook."""
        self.ensure_one()
        self._scs_set_state(
            "failed", error=str(error)[:2000], attempts=self.attempts + 1
        )
        self.with_delay(
            eta=2,
            identity_key=f"stock_channel_sync.in.{self.id}",
            description=f"Retry {self.kind} {self.external_ref or ''}",
        )._scs_job_apply()

    def _scs_on_apply_failed(self, exc_name=None, exc_message=None, **kw):
        for event in self.sudo():
            event._scs_set_state(
                "dead", error=exc_message or exc_name, attempts=event.attempts + 1
            )
            event.channel_id._scs_notify_dead_letter(event)

    def _scs_find_binding(
        self, sku=None, external_id=None, external_variant_id=None, bindings=None
    ):
        """The channel's binding for a line or level: external ids, then SKU.

        Marketplaces name an item in several ways (Shopify: variant id in
        orders, inventory item id in levels), so an external reference
        matches either external id of a binding. ``bindings`` is an index
        built for many events at once; what it does not know is searched.
        """
        Binding = self.env["channel.binding"].sudo()
        if bindings:
            for key in (
                ("ref", str(external_variant_id or "")),
                ("ref", str(external_id or "")),
                ("sku", str(sku or "")),
            ):
                if key[1] and key in bindings:
                    return Binding.browse(bindings[key])
        channel = self.channel_id
        for ref in (external_variant_id, external_id):
            if not ref:
                continue
            binding = Binding.search(
                [
                    ("channel_id", "=", channel.id),
                    "|",
                    ("external_variant_id", "=", str(ref)),
                    ("external_id", "=", str(ref)),
                ],
                limit=1,
            )
            if binding:
                return binding
        if sku:
            return Binding.search(
                [("channel_id", "=", channel.id), ("sku", "=", str(sku))], limit=1
            )
        return Binding.browse()

    def _scs_child(self, kind, suffix, state, **vals):
        """A follow-up event (unknown SKU, oversell) with a derived key."""
        self.ensure_one()
        key = f"{self.idempotency_key}:{suffix}"[:255]
        existing = self.search(
            [
                ("channel_id", "=", self.channel_id.id),
                ("direction", "=", "in"),
                ("idempotency_key", "=", key),
            ],
            limit=1,
        )
        if existing:
            return existing
        return self.create(
            {
                "direction": "in",
                "channel_id": self.channel_id.id,
                "kind": kind,
                "idempotency_key": key,
                "external_ref": self.external_ref,
                "state": state,
                "event_ts": self.event_ts,
                "change_ts": self.change_ts,
                **vals,
            }
        )

    def _scs_order_lines(self, order, bindings=None):
        """``[(line, binding or an empty recordset)]`` for an order's lines."""
        return [
            (
                line,
                self._scs_find_binding(
                    line.get("sku"),
                    line.get("external_id"),
                    line.get("external_variant_id"),
                    bindings,
                ),
            )
            for line in order.get("lines") or []
        ]

    def _scs_order_history(self, order_id):
        """``[(event, order data)]``: the other applied events of this
        event's order, and its later states that found nothing to follow
        (skipped), oldest first (one query for the checks below)."""
        events = self.search_fetch(
            [
                ("id", "!=", self.id),
                ("channel_id", "=", self.channel_id.id),
                ("direction", "=", "in"),
                ("kind", "in", ("order", "cancel")),
                ("external_ref", "=", order_id),
                ("state", "in", ("applied", "skipped")),
            ],
            ["data", "event_ts", "state", "idempotency_key"],
            order="event_ts, id",
        )
        return [
            (event, json.loads(event.data or "{}").get("order") or {})
            for event in events
        ]

    def _scs_later_state(self, history):
        """The newest later state of this order that came before it and
        found no reservation to follow (Shopify's ``orders/updated`` delivered
        before ``orders/create``): ``(event, order data)`` or ``None``."""
        if not self.event_ts:
            return None
        later = [
            (event, order)
            for event, order in history
            if event.state == "skipped"
            and order.get("follow_only")
            and event.event_ts
            and event.event_ts > self.event_ts
        ]
        return later[-1] if later else None

    def _scs_newer_applied(self, applied):
        """Is an event of the same order in ``applied`` with a later time?

        A refund of lines does not count: it takes its lines out of the
        order, whatever came before, so an order delivered after it is still
        reserved (less those lines, see ``_scs_less_refunded``).
        """
        if not self.event_ts:
            return False
        return any(
            event.event_ts > self.event_ts and not _is_line_refund(order)
            for event, order in applied
        )

    def _scs_less_refunded(self, applied, known, bindings=None):
        """``known`` less the lines that the restocking refunds in ``applied``
        took out before anything was reserved: ``(lines, refunded)``.

        Called only when the order holds no transfer. A refund delivered
        before its order (or an order delivered late) found nothing to
        release; reserving the whole order then would hold units that are
        back in stock, and one that is never reserved would offer units that
        are sold. A refund that did release from a transfer since cancelled
        (every line refunded) is counted the same way, and leaves nothing to
        reserve. ``refunded`` names what was taken out.
        """
        refund_lines = [
            (line, binding)
            for _event, order in applied
            if _is_line_refund(order) and order.get("restock") is not False
            for line, binding in self._scs_order_lines(order, bindings)
            if binding
        ]
        if not refund_lines:
            return known, ""
        refunded = dict(_per_binding(refund_lines))
        lines = []
        for binding, qty in _per_binding(known):
            rest = qty - refunded.get(binding, 0.0)
            if binding.product_id.uom_id.compare(rest, 0) > 0:
                lines.append(({"sku": binding.sku, "quantity": rest}, binding))
        taken = ", ".join(_qty_label(binding, qty) for binding, qty in refunded.items())
        return lines, taken

    def _scs_apply_order(self, order, bindings=None, defer=None):
        channel = self.channel_id
        order_id = str(order.get("external_id") or self.external_ref or "")
        if not order_id:
            raise ValueError("order event without an external order id")
        lines = self._scs_order_lines(order, bindings)
        found = self.env["channel.binding"].union(*(b for _line, b in lines))
        # serialise with every other job touching these SKUs
        found._scs_lock()
        # a refund of lines adds to what came before instead of replacing
        # it (each releases its own lines, once): never stale
        line_refund = _is_line_refund(order)
        history = [] if line_refund else self._scs_order_history(order_id)
        applied = [(e, data) for e, data in history if e.state == "applied"]
        if self._scs_newer_applied(applied):
            self._scs_set_state(
                "stale", reason=_("a newer event of this order was applied")
            )
            return "stale"
        Picking = self.env["stock.picking"].sudo()
        existing = Picking.search(
            [
                ("scs_channel_id", "=", channel.id),
                ("scs_external_order_id", "=", order_id),
                ("state", "!=", "cancel"),
            ]
        )
        if self.kind == "cancel" or order.get("status") in ("cancelled", "refunded"):
            if order.get("restock") is False:
                self._scs_set_state(
                    "applied", reason=_("refund without restock: nothing released")
                )
                return "no restock"
            return self._scs_release(existing, order, [(ln, b) for ln, b in lines if b])
        if existing:
            return self._scs_follow_order(existing, lines, applied, bindings)
        if order.get("follow_only"):
            self._scs_set_state(
                "skipped",
                reason=_(
                    "a later state of an order that holds no reservation here:"
                    " only its creation or payment reserves it"
                ),
            )
            return "not held"
        as_of = ""
        later = self._scs_later_state(history)
        if later:
            # the order is reserved as it is now, not as it was created
            lines = self._scs_order_lines(later[1], bindings)
            self.env["channel.binding"].union(*(b for _ln, b in lines))._scs_lock()
            as_of = later[0].idempotency_key
        known = [(line, b) for line, b in lines if b]
        for line, binding in lines:
            if not binding:
                self._scs_child(
                    "unknown_sku",
                    f"unknown:{line.get('sku') or line.get('external_id')}",
                    "attention",
                    sku=line.get("sku"),
                    quantity=float(line.get("quantity") or 0),
                    error=_(
                        "No binding for this SKU on the channel: line not reserved."
                    ),
                )
        if not known:
            self._scs_set_state("attention", reason=_("no line of the order is bound"))
            return "no known line"
        known, refunded = self._scs_less_refunded(applied, known, bindings)
        if refunded and not known:
            self._scs_set_state(
                "applied",
                ack_ts=time.time(),
                reason=_("nothing to reserve: refunded before (%s)", refunded),
            )
            return "nothing to reserve"
        if defer is not None and not refunded and not as_of:
            # reserved together with the other orders of the run (one create,
            # one confirmation, one reservation for all of them)
            defer.append((self, order_id, known))
            return DEFERRED
        picking = self._scs_reserve(channel, order_id, known)
        result = self._scs_finish_order(picking, known, refunded, as_of)
        if later:
            # applied now, through the creation: an update older than it and
            # delivered after it is stale
            later[0]._scs_set_state(
                "applied",
                ack_ts=time.time(),
                reason=_("reserved with its order (%s)", picking.name),
            )
        return result

    def _scs_finish_order(self, picking, known, refunded="", as_of=""):
        """After the reservation: oversell check, applied state."""
        self.write({"binding_id": known[0][1].id if len(known) == 1 else False})
        self._scs_check_oversell(picking, known)
        reason = _("reserved in %s", picking.name)
        if as_of:
            reason += _("; as of the order's later update %s", as_of)
        if refunded:
            reason += _("; less what was refunded before: %s", refunded)
        self._scs_set_state("applied", ack_ts=time.time(), reason=reason)
        return f"reserved {picking.name}"

    def _scs_follow_order(self, pickings, lines, applied, bindings=None):
        """An order already reserved: its reservation follows its newest lines.

        WooCommerce and generic shops send the whole order again when it is
        edited (a line added or removed, a quantity changed), and a later
        event may name a SKU bound since the order was reserved. The open
        transfer is brought to what this event sells, less what restocking
        refunds took out (as for a first reservation): units added are
        reserved (and checked against what the channel was offered), units
        taken out are released, so that the other channels neither sell units
        that are gone nor miss units that are back. An event that names no
        line, or a line whose SKU has no binding, releases nothing: it cannot
        say what the order no longer holds. Once part of the order has
        shipped, the transfer is left as it is: Odoo's shipment is not undone.
        """
        names = ", ".join(pickings.mapped("name"))
        unchanged = _("order already reserved (%s)", pickings[0].name)
        if any(picking.state == "done" for picking in pickings):
            self._scs_set_state(
                "applied",
                reason=_(
                    "order already shipped (%s): its lines are not followed", names
                ),
            )
            return "already shipped"
        known = [(line, binding) for line, binding in lines if binding]
        if not lines:
            self._scs_set_state("applied", reason=unchanged)
            return "already reserved"
        wanted, _refunded = self._scs_less_refunded(applied, known, bindings)
        want = {
            binding.product_id: (binding, qty) for binding, qty in _per_binding(wanted)
        }
        moves = pickings.move_ids.filtered(lambda m: m.state != "cancel")
        held = {}
        for move in moves:
            held[move.product_id] = (
                held.get(move.product_id, 0.0) + move.product_uom_qty
            )
        Binding = self.env["channel.binding"].sudo()
        gone = Binding
        if len(known) == len(lines):
            # a product the order holds but no longer names, and that a
            # binding of this channel sells (one the channel did not put
            # there is left as it is)
            removed = [product.id for product in held if product not in want]
            if removed:
                gone = Binding.search(
                    [
                        ("channel_id", "=", self.channel_id.id),
                        ("product_id", "in", removed),
                    ]
                )
        gone._scs_lock()
        less, more = [], {}
        for product, (binding, qty) in want.items():
            delta = qty - held.get(product, 0.0)
            if product.uom_id.compare(delta, 0) > 0:
                more[binding] = delta
            elif product.uom_id.compare(delta, 0) < 0:
                less.append((binding, -delta))
        less += [(binding, held[binding.product_id]) for binding in gone]
        unbound = [
            str(line.get("sku") or line.get("external_id") or "?")
            for line, binding in lines
            if not binding
        ]
        if unbound:
            unchanged += _("; no binding for %s: nothing released", ", ".join(unbound))
        if not more and not less:
            self._scs_set_state("applied", reason=unchanged)
            return "already reserved"
        released, _unheld = self._scs_take_out(pickings, less)
        if more:
            self._scs_reserve_more(pickings, more)
            totals = [({"quantity": want[b.product_id][1]}, b) for b in more]
            self._scs_check_oversell(pickings, totals, more)
        added = [_qty_label(binding, qty) for binding, qty in more.items()]
        reason = _(
            "order changed (%(pickings)s): reserved %(added)s more,"
            " released %(released)s",
            pickings=names,
            added=", ".join(added) or _("nothing"),
            released=", ".join(released) or _("nothing"),
        )
        if unbound:
            reason += _("; no binding for %s: nothing released", ", ".join(unbound))
        self._scs_set_state("applied", ack_ts=time.time(), reason=reason)
        return "changed"

    def _scs_reserve_more(self, pickings, more):
        """Add ``{binding: qty}`` to the order's open transfer, reserved: to
        the product's open move, else in a new move (created together)."""
        picking = pickings.filtered(lambda p: p.state not in ("done", "cancel"))[:1]
        moves = self.env["stock.move"]
        new_moves = []
        for binding, qty in more.items():
            product = binding.product_id
            move = picking.move_ids.filtered(
                lambda m, p=product: (
                    m.product_id == p and m.state not in ("done", "cancel")
                )
            )[:1]
            if move:
                move.write({"product_uom_qty": move.product_uom_qty + qty})
                moves |= move
                continue
            new_moves.append(
                {
                    "picking_id": picking.id,
                    "product_id": product.id,
                    "product_uom_qty": qty,
                    "product_uom": product.uom_id.id,
                    "location_id": picking.location_id.id,
                    "location_dest_id": picking.location_dest_id.id,
                    "company_id": picking.company_id.id,
                }
            )
        if new_moves:
            created = self.env["stock.move"].sudo().create(new_moves)
            created._action_confirm()
            moves |= created
        moves._action_assign()

    def _scs_reserve(self, channel, order_id, known):
        return self._scs_reserve_many(channel, [(order_id, known)])

    @api.model
    def _scs_reserve_many(self, channel, orders):
        """One reserved outgoing transfer per ``(order_id, known lines)``.

        Created, confirmed and reserved together: Odoo's stock operations
        cost much less per transfer on a batch than one by one.
        """
        warehouse = channel.warehouse_ids[:1] or self.env[
            "stock.warehouse"
        ].sudo().search([("company_id", "=", channel.company_id.id)], limit=1)
        picking_type = warehouse.out_type_id
        src = picking_type.default_location_src_id or warehouse.lot_stock_id
        dest = picking_type.default_location_dest_id or self.env.ref(
            "stock.stock_location_customers"
        )
        vals_list = []
        for order_id, known in orders:
            moves = []
            for binding, qty in _per_binding(known):
                product = binding.product_id
                moves.append(
                    fields.Command.create(
                        {
                            "product_id": product.id,
                            "product_uom_qty": qty,
                            "product_uom": product.uom_id.id,
                            "location_id": src.id,
                            "location_dest_id": dest.id,
                        }
                    )
                )
            vals_list.append(
                {
                    "picking_type_id": picking_type.id,
                    "location_id": src.id,
                    "location_dest_id": dest.id,
                    "origin": f"{channel.name} {order_id}",
                    "scs_channel_id": channel.id,
                    "scs_external_order_id": order_id,
                    "move_ids": moves,
                }
            )
        pickings = (
            self.env["stock.picking"]
            .sudo()
            .with_company(channel.company_id)
            .create(vals_list)
        )
        pickings.action_confirm()
        pickings.action_assign()
        return pickings

    def _scs_check_oversell(self, picking, known, added=None):
        """An order beyond what the channel was offered is an incident.

        ``added``: ``{binding: qty}`` an edited order added to its lines,
        the part of them that the channel's last offer must cover (the rest
        was checked when it was reserved).
        """
        for binding, qty in _per_binding(known):
            move = picking.move_ids.filtered(
                lambda m, b=binding: (
                    m.product_id == b.product_id and m.state != "cancel"
                )
            )
            reserved = sum(move.mapped("quantity"))
            offered = binding.last_pushed_qty if binding.last_pushed_at else None
            short = reserved < qty - 1e-6
            asked = added[binding] if added else qty
            if not short and (offered is None or asked <= offered):
                continue
            error = _(
                "Order %(order)s asks %(qty)s of %(sku)s; the channel was offered "
                "%(offered)s and %(reserved)s could be reserved.",
                order=picking[:1].scs_external_order_id,
                qty=qty,
                sku=binding.sku,
                offered=offered if offered is not None else "?",
                reserved=reserved,
            )
            if added:
                error += " " + _("An edit of the order added %s.", f"{asked:g}")
            self._scs_child(
                "oversell",
                f"oversell:{binding.sku}",
                "attention",
                binding_id=binding.id,
                product_id=binding.product_id.id,
                sku=binding.sku,
                quantity=qty,
                error=error,
            )
            self.channel_id._scs_notify(
                _("Oversell on %s", binding.sku),
                _(
                    "Order %(order)s sold %(qty)s of %(sku)s beyond what was "
                    "available. "
                    "Every channel is being pushed the new quantity.",
                    order=picking[:1].scs_external_order_id,
                    qty=qty,
                    sku=binding.sku,
                ),
            )
            binding.product_id._scs_push_at_commit(force=True)

    def _scs_release(self, pickings, order, known=()):
        """Release what a cancelled or refunded order holds.

        A cancellation releases the whole order. A refund that names its
        lines (Shopify's restocked refund lines, a generic refund's lines)
        releases only their quantities: the rest of the order is still sold,
        and releasing it would offer those units again on every channel.
        """
        open_pickings = pickings.filtered(lambda p: p.state not in ("done", "cancel"))
        if open_pickings and _is_line_refund(order):
            reason = self._scs_release_lines(open_pickings, known)
        elif open_pickings:
            open_pickings.action_cancel()
            reason = _(
                "reservation released (%s)", ", ".join(open_pickings.mapped("name"))
            )
        elif pickings:
            reason = _("order already shipped: nothing reserved to release")
        elif _is_line_refund(order):
            reason = _(
                "no reservation for this order yet: these lines are left out"
                " when it is reserved"
            )
        else:
            reason = _("no reservation for this order")
        self._scs_set_state("applied", ack_ts=time.time(), reason=reason)
        return reason

    def _scs_release_lines(self, pickings, known):
        """Take the refunded quantities out of the order's open moves."""
        released, unheld = self._scs_take_out(pickings, _per_binding(known))
        reason = _(
            "refund: released %(lines)s (%(pickings)s)",
            lines=", ".join(released) or _("nothing"),
            pickings=", ".join(pickings.mapped("name")),
        )
        if unheld:
            reason += _("; not held by this order: %s", ", ".join(unheld))
        return reason

    def _scs_take_out(self, pickings, quantities):
        """Take ``[(binding, qty)]`` out of the open moves of ``pickings``:
        ``(released, unheld)``, each a list of labels."""
        released, unheld = [], []
        to_assign = to_cancel = self.env["stock.move"]
        for binding, qty in quantities:
            moves = pickings.move_ids.filtered(
                lambda m, p=binding.product_id: (
                    m.product_id == p and m.state not in ("done", "cancel")
                )
            )
            left = qty
            for move in moves:
                if move.product_uom.compare(left, 0) <= 0:
                    break
                take = min(left, move.product_uom_qty)
                left -= take
                if move.product_uom.compare(move.product_uom_qty, take) <= 0:
                    to_cancel |= move
                else:
                    # below its reservation, Odoo unreserves the move: reserved
                    # again below, for what is still sold
                    move.write({"product_uom_qty": move.product_uom_qty - take})
                    to_assign |= move
                released.append(_qty_label(binding, take))
            if binding.product_id.uom_id.compare(left, 0) > 0:
                # more taken out than the order still holds: said, not hidden
                unheld.append(_qty_label(binding, left))
        to_cancel._action_cancel()
        to_assign._action_assign()
        return released, unheld

    def _scs_apply_inventory(
        self, levels, bindings=None, corrections=None, published=None
    ):
        """A level reported by the channel: echo, or an edit to correct."""
        results = []
        worst = "applied"
        for level in levels:
            binding = self._scs_find_binding(
                level.get("sku"),
                level.get("external_id"),
                level.get("external_variant_id"),
                bindings,
            )
            if not binding:
                self._scs_child(
                    "unknown_sku",
                    f"unknown:{level.get('sku') or level.get('external_variant_id')}",
                    "attention",
                    sku=level.get("sku"),
                    quantity=float(level.get("quantity") or 0),
                    error=_("No binding for this SKU on the channel."),
                )
                worst = "attention"
                continue
            binding._scs_lock()
            if is_stale(self.event_ts or None, binding.last_event_ts or None):
                results.append(f"{binding.sku}: stale")
                worst = "stale" if worst == "applied" else worst
                continue
            seen = int(float(level.get("quantity") or 0))
            binding.write(
                {
                    "last_seen_qty": seen,
                    "last_seen_at": fields.Datetime.now(),
                    "last_event_ts": max(
                        self.event_ts or 0.0, binding.last_event_ts or 0.0
                    ),
                }
            )
            if binding.push_state == "ok" and seen == binding.last_pushed_qty:
                results.append(f"{binding.sku}: echo of our push")
                continue
            quantities = published.get(binding) if published else None
            if quantities is None:
                quantities = binding._scs_quantities()[binding.id]
            published_qty = quantities.published
            if seen == published_qty:
                results.append(f"{binding.sku}: channel already right")
                continue
            results.append(
                f"{binding.sku}: edit on the channel ({seen}), "
                f"Odoo publishes {published_qty}"
            )
            if corrections is None:
                binding._scs_push(force=True, kind="correction")
            else:
                corrections.append(binding.id)
        reason = "; ".join(results) or _("nothing to apply")
        if worst == "stale":
            self._scs_set_state("stale", reason=reason)
        elif worst == "attention" and not results:
            self._scs_set_state("attention", reason=reason)
        else:
            self._scs_set_state("applied", ack_ts=time.time(), reason=reason)
        return reason


class SyncEventOperations(models.Model):
    """Dead letters, replay and retention."""

    _inherit = "sync.event"

    # -- actions --
    def action_retry(self):
        """Try dead or failed events again (one or many).

        Outbound: the binding is pushed again with today's number (a retry
        never resends a stale quantity). Inbound: the event is applied again
        by a new job; applying is idempotent.
        """
        for event in self.sudo().filtered(lambda e: e.state in ("dead", "failed")):
            if event.direction == "out":
                binding = event.binding_id
                if binding:
                    binding.pending_event_id = event
                    binding._scs_enqueue_retry()
                event._scs_set_state("queued", error=False)
            else:
                event._scs_set_state("queued", error=False)
                event.with_delay(
                    identity_key=f"stock_channel_sync.in.{event.id}",
                    description=f"Retry {event.kind} {event.external_ref or ''}",
                )._scs_job_apply()
        return True

    def action_discard(self):
        return {
            "type": "ir.actions.act_window",
            "name": _("Discard Events"),
            "res_model": "sync.event.discard",
            "view_mode": "form",
            "target": "new",
            "context": {"active_ids": self.ids, "active_model": "sync.event"},
        }

    def _scs_discard(self, reason):
        for event in self.sudo().filtered(
            lambda e: e.state in ("dead", "failed", "attention")
        ):
            event._scs_set_state("discarded", reason=reason)
        return True

    def action_replay(self):
        """Apply inbound events again, as new attempts (history is kept).

        Each replay is a new event (key ``<key>:replay:<n>``) pointing to the
        original; applying is idempotent, so replaying an applied order
        reserves nothing twice.
        """
        replays = self.browse()
        for event in self.sudo().filtered(lambda e: e.direction == "in"):
            if event.kind not in APPLY_KINDS:
                continue
            count = self.sudo().search_count([("replay_of_id", "=", event.id)])
            replay = event.copy(
                {
                    "idempotency_key": f"{event.idempotency_key}:replay:{count + 1}",
                    "replay_of_id": event.id,
                    "state": "queued",
                    "error": False,
                    "reason": False,
                    "attempts": 0,
                    "enqueue_ts": time.time(),
                    "change_ts": time.time(),
                }
            )
            replay.with_delay(
                identity_key=f"stock_channel_sync.in.{replay.id}",
                description=f"Replay {event.kind} {event.external_ref or ''}",
            )._scs_job_apply()
            replays |= replay
        return replays

    # -- retention --
    @api.autovacuum
    def _gc_sync_events(self):
        """Delete processed events past their retention; keep problems longer.

        Deleted in chunks so that a first run over millions of rows never
        holds one huge transaction; the server log keeps the full history
        (one JSON line per event state).
        """
        params = self.env["ir.config_parameter"].sudo()
        days = int(params.get_param("stock_channel_sync.event_retention_days", 30))
        problem_days = int(
            params.get_param("stock_channel_sync.problem_retention_days", 180)
        )
        deleted = 0
        for states, age in (
            (list(FINAL_STATES), days),
            (["dead", "failed", "attention"], problem_days),
        ):
            limit = fields.Datetime.subtract(fields.Datetime.now(), days=age)
            while True:
                self.env.cr.execute(
                    SQL(
                        """
                        DELETE FROM sync_event WHERE id IN (
                            SELECT id FROM sync_event
                             WHERE state = ANY(%s) AND create_date < %s
                             LIMIT 10000)
                        """,
                        states,
                        limit,
                    )
                )
                deleted += self.env.cr.rowcount
                if self.env.cr.rowcount < 10000:
                    break
        if deleted:
            self.invalidate_model()
            _logger.info("sync events: %s deleted by retention", deleted)
        return deleted
