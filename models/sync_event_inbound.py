# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Inbound events: a webhook recorded at once, applied later by a job.

The webhook route records each event with a few statements of its own
(``_scs_record_inbound``): it runs on every delivery, and the ORM's
``create`` would cost more than the rest of the request. The channel's apply
job then applies the queued events (``_scs_job_apply``); what an order does
to Odoo's stock is in ``sync_event_order``.
"""

import json
import time
from collections.abc import Collection

import psycopg2.errors
from psycopg2.extensions import TRANSACTION_STATUS_IDLE

from odoo import _, api, fields, models, sql_db
from odoo.exceptions import UserError
from odoo.tools import SQL
from odoo.tools.sql import escape_psql

from ..lib.ordering import bounded_event_ts, is_stale, to_timestamp
from .job_store import (
    hold_pending_jobs,
    run_again_after_lost_connection,
)
from .sync_event import APPLY_KINDS, KIND_VALUES, _scs_log_line, like_prefix

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
#: the rows of the channel's apply run while it waits or runs; the method
#: too, as in ``sync.channel._scs_live_apply_job``: an event's own job had
#: the channel's key before its key was renamed (jobs from before an upgrade)
#: seconds after its start an apply run still *started* is taken for one
#: whose worker died: a run applies for ``APPLY_SECONDS`` at most, then
#: commits; queue_job's runner requeues a dead one only at the next turn of
#: its loop (up to a minute), and every delivery meanwhile would count on it
RUN_PRESUMED_DEAD = 30
LIVE_RUN = (
    " AND method_name = '_scs_job_apply_inbound'"
    " AND (state IN ('pending', 'enqueued') OR (state = 'started'"
    " AND (date_started IS NULL OR date_started > (now() AT TIME ZONE 'UTC')"
    f" - interval '{RUN_PRESUMED_DEAD} seconds')))"
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
#: ``INSERT_INBOUND``, and whether the channel has an apply job waiting or
#: running, in one statement (the webhook route, see ``_scs_insert_delivered``)
INSERT_AND_CHECK = (
    "WITH ins AS (" + INSERT_INBOUND + ")"
    " SELECT (SELECT id FROM ins), EXISTS (SELECT 1 FROM queue_job"
    " WHERE identity_key = %s" + LIVE_RUN + ")"
)
#: the webhook route's whole write in one message, on a connection in
#: autocommit mode (``_scs_deliver_at_once``). The statements of one message
#: run as one transaction of their own, committed when the last one is done
#: and before the message is answered (PostgreSQL's implicit transaction
#: block); the answer is the last statement's result: the new ids by key
#: (kept for it in a setting local to the transaction) and whether the
#: channel's apply job is waiting or running. The insert comes before the
#: delivery lock: a redelivery of an event that a run is applying waits for
#: that run's row, and must not hold the lock meanwhile, which the run's
#: end takes exclusively (a deadlock)
DELIVER_AT_ONCE = (
    "SET TRANSACTION ISOLATION LEVEL READ COMMITTED;"
    " WITH ins AS (INSERT INTO sync_event ("
    + ", ".join(INSERT_COLUMNS)
    + ", create_uid, write_uid, create_date, write_date) VALUES {rows}"
    " ON CONFLICT (channel_id, direction, idempotency_key) DO NOTHING"
    " RETURNING id, idempotency_key)"
    " SELECT set_config('stock_channel_sync.delivered',"
    " COALESCE((SELECT json_object_agg(idempotency_key, id) FROM ins)::text, ''),"
    " true);"
    " SELECT pg_advisory_xact_lock_shared(%s, %s);"
    " SELECT current_setting('stock_channel_sync.delivered'),"
    " EXISTS (SELECT 1 FROM queue_job WHERE identity_key = %s" + LIVE_RUN + ")"
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


def _location_key(value):
    """A location id as text, gid or number alike (``gid://shopify/Location/7``
    and ``7`` name the same location)."""
    return str(value).strip().rsplit("/", 1)[-1]


def _line_skus(data):
    """The SKUs an event's data (JSON text) names in its order's lines."""
    try:
        order = (json.loads(data) or {}).get("order") or {}
        lines = order.get("lines") or []
    except (ValueError, TypeError, AttributeError):
        return []
    if not isinstance(lines, list):
        return []
    return [
        line["sku"]
        for line in lines
        if isinstance(line, dict) and isinstance(line.get("sku"), str)
    ]


def _jsonable(value):
    """Dataclasses from the adapters -> JSON-ready dicts (datetimes as ISO)."""
    if value is None or type(value) in (str, int, float, bool):
        # most values: answered before the attribute probes below, which
        # cost an exception each on a str (the route runs this per field)
        return value
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
        "Normalised Event",
        readonly=True,
        help="What the job applies (JSON).",
        # the channel's order as it sent it, personal data included
        groups="stock_channel_sync.group_sync_manager",
    )

    line_skus = fields.Char(
        "Order Line SKUs",
        compute="_compute_line_skus",
        search="_search_line_skus",
        help="Searches the SKUs an order's lines name.",
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
        self._scs_onto_channel_clock(channel, rows)
        job_key = (
            channel._scs_inbound_identity()
            if enqueue and any(vals["state"] == "queued" for vals in rows)
            else None
        )
        at_once = own_transaction and isinstance(self.env.cr, sql_db.Cursor)
        if not at_once:
            # a delivery at once is a transaction of its own, and the
            # caller's holds nothing: there is nothing to flush then
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

    def _compute_line_skus(self):
        self.line_skus = False

    def _search_line_skus(self, operator, value):
        """Orders whose lines name ``value``: the event log's SKU search, for
        every sync user, though the order itself (``data``, with the
        customer's details) is for managers only. The events found are then
        filtered by the caller's own rights, as any search.

        ``ilike`` finds the SKUs holding ``value``, ``=`` and ``in`` the SKUs
        equal to it (or to one of them); Odoo answers the negative operators
        (``not ilike``, ``!=``, ``not in``) as the opposite of these."""
        if operator == "ilike" and isinstance(value, str) and value:
            wanted = value.lower()
            return [
                (
                    "id",
                    "in",
                    self._scs_line_sku_match(
                        [value], lambda sku: wanted in sku.lower()
                    ),
                )
            ]
        if operator in ("=", "in"):
            values = [value] if operator == "=" else value
            if (
                isinstance(values, Collection)
                and not isinstance(values, str)
                and values
                and all(isinstance(v, str) and v for v in values)
            ):
                wanted = set(values)
                return [
                    ("id", "in", self._scs_line_sku_match(wanted, wanted.__contains__))
                ]
        if operator in ("not ilike", "!=", "not in"):
            return NotImplemented
        raise UserError(
            _("Order line SKUs are searched with 'contains' or 'is equal to' a SKU.")
        )

    def _scs_line_sku_match(self, values, match):
        """Ids of the order events one of whose lines' SKUs ``match``;
        ``values``: what is searched, for the prefilter."""
        self.env["sync.event"].flush_model(["data", "kind"])
        # a SKU stored as written (ASCII, nothing JSON escapes) is in the
        # text: only the events holding it are read, not the whole log
        plain = all(
            v.isascii() and v.isprintable() and not set('"\\') & set(v) for v in values
        )
        prefilter = (
            SQL(
                " AND (%s)",
                SQL(" OR ").join(
                    SQL("data ILIKE %s", f"%{escape_psql(v)}%") for v in values
                ),
            )
            if plain
            else SQL()
        )
        self.env.cr.execute(
            SQL(
                "SELECT id, data FROM sync_event"
                " WHERE kind IN ('order', 'cancel') AND data IS NOT NULL%s",
                prefilter,
            )
        )
        # parsed here: an event whose data is no JSON (written by hand) is
        # no match, not an error for every search of the log
        found = []
        while rows := self.env.cr.fetchmany(1000):
            for event_id, data in rows:
                # the lines' SKUs only: the rest of the order (the customer)
                # must not answer a search, or it could be read a character
                # at a time
                if any(match(sku) for sku in _line_skus(data)):
                    found.append(event_id)
        return found

    @api.model
    def _scs_onto_channel_clock(self, channel, rows):
        """Move the order states ordered by their arrival (Odoo's clock) onto
        the channel's clock (``sync.channel.clock_offset``), so that a shop
        whose clock runs ahead does not see its deletion taken for older
        than the order it deletes. Rare (WooCommerce's order.deleted, a
        generic event without a time): one query, on those deliveries only.
        """
        if not any(vals["_by_arrival"] for vals in rows):
            return
        offset = channel._scs_clock_offset()
        if not offset:
            return
        for vals in rows:
            if vals["_by_arrival"]:
                vals["event_ts"] = round(vals["event_ts"] + offset, 3)

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
        own_ts = to_timestamp(item.event_time)
        ordering_ts = bounded_event_ts(own_ts, received_ts)
        # stamped by the channel's clock, not by its arrival here
        own_time = bool(ordering_ts) and ordering_ts == own_ts
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
                    "own_time": own_time,
                }
            ),
            # an order state without a time of its own (WooCommerce's
            # order.deleted, a generic event without "timestamp") is ordered
            # by its arrival, or it could never be newer than anything
            # to the millisecond, as the field stores it: a copy (a replay)
            # written by the ORM must not come out older than its original
            "event_ts": round(
                ordering_ts or (received_ts if kind in ("order", "cancel") else 0.0),
                3,
            ),
            # an order state ordered by its arrival, on Odoo's clock: moved
            # onto the channel's clock before it is stored (not a column)
            "_by_arrival": not own_time and kind in ("order", "cancel"),
            "change_ts": received_ts,
            "enqueue_ts": time.time(),
            "state": "queued" if kind in APPLY_KINDS else "skipped",
            "subject": _subject(key, order, levels)[:255],
        }

    @api.model
    def _scs_insert_inbound(self, rows, hold_key=None, savepoints=True):
        """Insert inbound events: ``([id, or None when the key is taken], hold)``.

        For callers inside a transaction of their own (a poll of orders, a
        test): ``hold_key`` then finds the channel's waiting apply job, which
        the new events may be left to (see ``job_store``); ``hold`` is what
        that found. With
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
            hold = hold_pending_jobs(self.env, [hold_key])
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
        then inserts nothing. The lock comes after the insert: a run ending
        between the two finds the new rows uncommitted, so it does not
        count them, and this delivery, granted the lock once the run has
        committed, finds its job done and starts the next one. When the
        message returns, the events are committed.
        """
        cr = self.env.cr
        first = {}
        for vals in rows:
            # a key twice in one delivery is one event
            first.setdefault(vals["idempotency_key"], vals)
        # rows in key order: two deliveries that share keys wait for each
        # other's keys in the same order, so they cannot deadlock
        # a plain query and its parameters: composed once per delivery, the
        # SQL wrapper would cost more than the rest of this method
        params = []
        for _key, vals in sorted(first.items()):
            params.extend(_insert_args(vals))
            params.extend((self.env.uid, self.env.uid))
        params.extend((DELIVERY_LOCK, channel.id, job_key or ""))
        query = DELIVER_AT_ONCE.replace("{rows}", ", ".join([DELIVER_ROW] * len(first)))
        cnx = cr._cnx
        if cnx.get_transaction_status() != TRANSACTION_STATUS_IDLE:
            # whatever the request read so far is not part of the delivery
            cr.rollback()
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
            cr.execute(query, params, log_exceptions=False)
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
            result = event._scs_apply_order(data.get("order") or {}, bindings, defer)
        elif event.kind == "inventory":
            result = event._scs_apply_inventory(
                data.get("levels") or [], bindings, corrections, published
            )
        else:
            event._scs_set_state("skipped", reason=_("nothing to apply"))
            return "skipped"
        if event.replay_of_id and event.state == "applied":
            event._scs_resolve_replayed()
        return result

    def _scs_resolve_replayed(self):
        """A replay applied: what its original needed attention for is
        done. The original itself, and each of its unknown SKUs that is
        bound now and held by the order, are closed as resolved, instead of
        waiting in *Needs Attention* for the problem retention."""
        original = self.replay_of_id
        prefix = f"{original.idempotency_key}:unknown:"
        children = self.search(
            [
                ("channel_id", "=", self.channel_id.id),
                ("direction", "=", "in"),
                ("kind", "=", "unknown_sku"),
                ("state", "=", "attention"),
                ("idempotency_key", "=like", like_prefix(prefix)),
            ]
        )
        # a line bound since, and held by the order now: a line bound since
        # that the replay did not reserve (the order shipped meanwhile) is
        # still a sale Odoo does not hold
        held = (
            self.env["stock.picking"]
            .sudo()
            .search(
                [
                    ("scs_channel_id", "=", self.channel_id.id),
                    ("scs_external_order_id", "=", self.external_ref),
                    ("state", "!=", "cancel"),
                ]
            )
            .move_ids.filtered(lambda m: m.state != "cancel")
            .product_id
        )
        resolved = children.filtered(
            lambda c: (
                self._scs_find_binding(
                    c.sku,
                    *([None, c.idempotency_key[len(prefix) :]] if not c.sku else []),
                ).product_id
                & held
            )
        )
        if original.state == "attention":
            resolved |= original
        resolved._scs_discard(_("resolved by its replay %s", self.idempotency_key))

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
        self._scs_enqueue_apply(eta=2)

    def _scs_apply_identity(self):
        """The key of this event's own apply job. Not ``...in.<id>``: that
        is a channel's apply run (``sync.channel._scs_inbound_identity``),
        and an event whose id is a channel's would share its job."""
        return f"stock_channel_sync.event.{self.id}"

    def _scs_enqueue_apply(self, eta):
        self.ensure_one()
        self.with_delay(
            eta=eta,
            identity_key=self._scs_apply_identity(),
            description=f"Retry {self.kind} {self.external_ref or ''}",
        )._scs_job_apply()

    def _scs_on_apply_failed(self, exc_name=None, exc_message=None, **kw):
        """queue_job ``on_fail`` hook: the event's retries are spent, it is a
        dead letter; unless the job only lost its database connection."""
        for event in self.sudo():
            if event.state not in ("received", "queued", "failed"):
                # applied, or closed by hand, since (a job found dead is
                # handled late)
                continue
            delay = run_again_after_lost_connection(
                event.env, event._scs_apply_identity(), exc_name
            )
            if delay:
                event._scs_enqueue_apply(eta=delay)
                continue
            event._scs_set_state(
                "dead", error=exc_message or exc_name, attempts=event.attempts + 1
            )
            event.channel_id._scs_notify_dead_letter(event)

    def _scs_find_binding(
        self, sku=None, external_id=None, external_variant_id=None, bindings=None
    ):
        """The channel's binding for a line or level: variant id, SKU, then
        product id.

        Marketplaces name an item in several ways (Shopify: variant id in
        orders, inventory item id in levels), so an external reference
        matches either external id of a binding. A line that names a variant
        is that variant or nothing: its product id is the parent's
        (WooCommerce), shared by every variant, so a variant not bound here
        would otherwise reserve a sibling. The SKU comes before the product
        id, which some shops fill with ids of their own (a line's id).
        ``bindings`` is an index built for many events at once; what it does
        not know is searched.
        """
        Binding = self.env["channel.binding"].sudo()
        refs = [str(external_variant_id or "")]
        if not refs[0]:
            refs = ["", str(external_id or "")]
        keys = (("ref", refs[0]), ("sku", str(sku or "")), ("ref", refs[-1]))
        channel = self.channel_id
        for field, value in keys:
            if not value:
                continue
            if bindings and (field, value) in bindings:
                return Binding.browse(bindings[(field, value)])
            if field == "sku":
                domain = [("sku", "=", value)]
            else:
                domain = [
                    "|",
                    ("external_variant_id", "=", value),
                    ("external_id", "=", value),
                ]
            binding = Binding.search(
                [("channel_id", "=", channel.id), *domain], limit=1
            )
            if binding:
                return binding
        return Binding.browse()

    def _scs_unknown_sku(self, item, ref, error):
        """Log ``item`` (an order line or a level) that no binding sells as an
        event needing attention, once: ``ref`` names it when it has no SKU."""
        return self._scs_child(
            "unknown_sku",
            f"unknown:{item.get('sku') or ref}",
            "attention",
            sku=item.get("sku"),
            quantity=float(item.get("quantity") or 0),
            error=error,
        )

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

    def _scs_correct(self, binding, corrections=None):
        """Have Odoo's number pushed back to a channel that shows another.

        Into the run's ``corrections`` (pushed in one round at its end), or,
        for an event applied alone (a replay), by a job enqueued now: never
        an HTTP call here, under the binding's lock, inside the transaction.
        """
        if corrections is None:
            self.channel_id._scs_push_corrections([binding.id])
        else:
            corrections.append(binding.id)

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
                self._scs_unknown_sku(
                    level,
                    level.get("external_variant_id"),
                    _("No binding for this SKU on the channel."),
                )
                worst = "attention"
                continue
            ours = binding.external_location_id or self.channel_id.external_location_id
            theirs = level.get("external_location_id")
            if ours and theirs and _location_key(ours) != _location_key(theirs):
                # a shop keeps a level per location; the channel is offered
                # (and compared with) its own location's only
                results.append(f"{binding.sku}: level of another location ({theirs})")
                continue
            binding._scs_lock()
            seen = int(float(level.get("quantity") or 0))
            if is_stale(self.event_ts or None, binding.last_event_ts or None):
                results.append(f"{binding.sku}: stale")
                worst = "stale" if worst == "applied" else worst
                if (
                    binding.push_state == "ok"
                    and seen != binding.last_pushed_qty
                    and not self.replay_of_id
                ):
                    # an older level is not applied, but one that disagrees
                    # with our last push may be the channel's number (a
                    # clock that ran ahead made the newer ones "older"):
                    # Odoo's number is pushed again, which is right either
                    # way. Not for a replay: the level is history, already
                    # answered when it came, and replaying a day of them
                    # would spend the channel's rate limit on pushes of the
                    # number it holds
                    self._scs_correct(binding, corrections)
                continue
            # what Odoo knew the channel held: its last push as the channel
            # kept it (a stale compare-and-set may set less than Odoo's
            # number), less the channel's own orders applied since
            known = binding.last_seen_qty if binding.last_seen_at else None
            binding.write(
                {
                    "last_seen_qty": seen,
                    "last_seen_at": fields.Datetime.now(),
                    "last_event_ts": max(
                        self.event_ts or 0.0, binding.last_event_ts or 0.0
                    ),
                }
            )
            if binding.push_state == "ok" and seen in (binding.last_pushed_qty, known):
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
            self._scs_correct(binding, corrections)
        reason = "; ".join(results) or _("nothing to apply")
        if worst == "stale":
            self._scs_set_state("stale", reason=reason)
        elif worst == "attention" and not results:
            self._scs_set_state("attention", reason=reason)
        else:
            self._scs_set_state("applied", ack_ts=time.time(), reason=reason)
        return reason
