# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Inbound side of a channel: find it from its webhook token, apply its events.

The webhook route records an event and leaves it *queued*; one job per
channel applies the channel's queued events, grouped by subject (the SKU
when an event concerns one item, else the external order) and oldest first
within a subject. Per-SKU order and serialisation are kept inside the job,
and across channels by the bindings' row locks; what the job key buys is
cost. queue_job dispatches every job through an HTTP request to the same
workers that answer webhooks (measured: about 13 ms of worker time per job
before any work), so a job per busy SKU would spend more on dispatching
than the webhooks cost to receive.

Burst window: a channel whose apply job is running when an event arrives
gets its next job at the next second (``stock_channel_sync.min_apply_interval``,
1 s; 0 turns the window off). A quiet channel's event is applied at once;
under a flash sale a channel costs about one job a second, whatever the
number of webhooks.

No event is left behind, and no delivery locks a job row: a delivery that
finds the channel's job waiting or running counts on it, and holds the
channel's delivery lock (shared) until it commits; a run that enqueues no
follow-up ends by taking that lock exclusively and looking, on a fresh
snapshot, for queued events it did not see (``_scs_follow_late_deliveries``).
A delivery to an idle channel commits its event, then starts the job in a
second transaction; if the worker dies in between, the sender's retry (a
duplicate) starts it. The reconciliation pass gives a job to queued events
that are somehow left without one (``_scs_requeue_orphans``).

Within one run, an inventory level that a newer level of the same item
supersedes is recorded as stale without being applied (last write wins, as
it would be if they came one by one), and so is an order state that a newer
state of the same order supersedes (each carries the whole order), unless
the order is cancelled or refunded in the run, or has a state there that can
only follow a reservation (Shopify's orders/updated). A run applies its events in one
savepoint, and event by event only when that fails (``_scs_apply_at_once``).
Orders are checked one by one, in order; the new ones (an order with no
other event in the run) are then reserved together, one create,
confirmation and reservation for all, and order by order if that batch
fails. An event that fails for a reason of its own goes to a job of its
own, with the retry pattern and dead-letter hook of event jobs, and does
not hold back the others. A subject whose rows are locked by another job
(or that meets a serialization failure) is left queued, with its later
events, for a follow-up run a moment later (``CONTENTION_RETRY``).
"""

import dataclasses
import json
import logging
import math
import time
from collections import Counter, OrderedDict
from datetime import datetime, timedelta, timezone

import psycopg2

from odoo import _, api, fields, models, tools
from odoo.tools import SQL

from odoo.addons.queue_job.controllers.main import PG_CONCURRENCY_ERRORS_TO_RETRY
from odoo.addons.queue_job.exception import RetryableJobError
from odoo.addons.queue_job.utils import must_run_without_delay

from ..lib.ordering import MAX_AHEAD
from .job_store import (
    connection_lost,
    fail_dead_jobs,
    lock_rows_or_retry,
    run_again_after_lost_connection,
    store_jobs,
)
from .sync_event import (
    DEFERRED,
    _scs_log_line,
    buffered_log_lines,
    log_lines,
)
from .sync_event_inbound import DELIVERY_LOCK, LIVE_RUN
from .sync_event_order import NoReserveSource

_logger = logging.getLogger(__name__)

#: how long a run's end waits for the deliveries in flight (see
#: ``_scs_follow_late_deliveries``); a delivery's message takes a few ms
LATE_LOCK_WAIT_MS = 200
#: advisory lock class of "a run applies this channel's inbound events"
INBOUND_LOCK = 0x5C5
#: advisory lock class of "a delivery starts the channel's apply job"
START_LOCK = 0x5C7
#: events with a time of their own that ``_scs_learn_clock`` reads
CLOCK_SAMPLE = 50
#: events needed before a lead behind Odoo's clock is believed
CLOCK_SAMPLE_BEHIND = 10
#: events applied by one run of the job; the rest go to a follow-up job
APPLY_BATCH = 200
#: a run starts no new subject after this many seconds (short transactions)
APPLY_SECONDS = 5.0
#: default burst window of a channel's apply job (seconds)
DEFAULT_APPLY_INTERVAL = 1.0
#: seconds before the follow-up run of events whose SKU another job held:
#: the holder is mostly a push, which takes a fraction of a second
CONTENTION_RETRY = 0.25
#: the webhook body size limit when ``stock_channel_sync.webhook_max_bytes``
#: is not set
DEFAULT_MAX_BYTES = 1024 * 1024
#: seconds after which the minute cron gives a queued inbound event without
#: a live apply job one (see ``_scs_cron_requeue_orphans``)
ORPHAN_AGE = 60
#: seconds after its start a run whose worker is gone counts as dead (the
#: job runner's own margin)
DEAD_RUN_AGE = 10
#: channel fields the webhook route needs; a change of one clears the cache
WEBHOOK_FIELDS = (
    "active",
    "channel_type",
    "company_id",
    "webhook_token",
    "webhook_secret",
    "webhook_secret_previous",
    "webhook_secret_previous_expiry",
    "webhook_public_key",
    "webhook_tolerance",
)


def named_items(data):
    """``(field, value)`` for every name an inbound event's parsed ``data``
    gives its items (levels and order lines): ``sku``, ``external_id``,
    ``external_variant_id``, as text."""
    items = list(data.get("levels") or [])
    items += list((data.get("order") or {}).get("lines") or [])
    for item in items:
        if isinstance(item, dict):
            for field in ("sku", "external_id", "external_variant_id"):
                if item.get(field):
                    yield field, str(item[field])


def item_keys(data):
    """For each item (level or order line) of an inbound event's ``data``,
    the keys it names its binding by, as ``sync.event._scs_find_binding``
    reads them: ``("ref", variant id)``, else ``("ref", product id)``, and
    ``("sku", sku)``. A line that names a variant does not name its parent's
    id, which every variant of a WooCommerce product (or an eBay item)
    shares."""
    items = list(data.get("levels") or [])
    items += list((data.get("order") or {}).get("lines") or [])
    for item in items:
        if not isinstance(item, dict):
            continue
        keys = set()
        ref = item.get("external_variant_id") or item.get("external_id")
        if ref:
            keys.add(("ref", str(ref)))
        if item.get("sku"):
            keys.add(("sku", str(item["sku"])))
        if keys:
            yield keys


class RunQuantities:
    """The quantities Odoo publishes for a run's bindings, read once.

    A level that disagrees with our last push is compared with what Odoo
    publishes now. In a run that reserves nothing (levels only) stock does
    not move under the run's snapshot, so one query on first need answers
    every level of the run, instead of one query per level.
    """

    def __init__(self, bindings):
        self._bindings = bindings
        self._values = None

    def get(self, binding):
        if self._values is None:
            self._values = self._bindings._scs_quantities()
        return self._values.get(binding.id)


@dataclasses.dataclass
class ApplyRun:
    """What one run of the apply job shares between its events.

    ``bindings``: index of the run's bindings (``_scs_binding_index``);
    ``batchable``: ids of the order events reserved together after the
    groups, into ``deferred``; ``corrections``: bindings whose channel holds
    an edited level; ``published``: the run's ``RunQuantities`` (levels only).
    """

    counts: dict
    bindings: dict
    batchable: set
    published: RunQuantities | None
    started: float
    deferred: list = dataclasses.field(default_factory=list)
    corrections: list = dataclasses.field(default_factory=list)


class SyncChannel(models.Model):
    _inherit = "sync.channel"

    order_cutoff = fields.Datetime(
        "Ignore Orders Placed Before",
        help="Orders placed on the channel before this moment are never "
        "reserved: set it when connecting a shop that already has orders, "
        "whose later updates (a note, a status, a refund) would otherwise "
        "reserve goods long shipped. Orders the channel gives no placing "
        "date for are reserved as usual. Empty: every order counts.",
    )

    clock_offset = fields.Float(
        "Channel Clock Ahead (s)",
        readonly=True,
        digits=(16, 3),
        help="How far the channel's clock runs ahead of Odoo's, learned from "
        "the times its events carry against their arrival. An order state "
        "that carries no time of its own (WooCommerce's order.deleted) is "
        "ordered by its arrival moved onto the channel's clock, so that it "
        "is not taken for older than the order it follows.",
    )

    # -- the webhook route's lookup --
    @api.model
    @tools.ormcache()
    def _scs_webhook_channels(self):
        """``{token: values}`` of the active channels, cached per worker.

        The webhook route runs this on every delivery: one dictionary lookup
        instead of a query, and an unknown token costs the same as a known
        one. The cache is cleared when a channel's webhook settings change.
        """
        self.env.cr.execute(
            SQL(
                "SELECT %s FROM sync_channel"
                " WHERE active AND webhook_token IS NOT NULL",
                SQL(", ").join(
                    SQL.identifier(name) for name in ("id",) + WEBHOOK_FIELDS[1:]
                ),
            )
        )
        return {row["webhook_token"]: row for row in self.env.cr.dictfetchall()}

    @api.model
    @tools.ormcache(cache="stable")
    def _scs_webhook_max_bytes(self):
        """The webhook body size limit, cached per worker as Odoo caches the
        system parameters (the same cache, cleared when one changes): the
        route reads it on every delivery."""
        value = (
            self.env["ir.config_parameter"]
            .sudo()
            .get_param("stock_channel_sync.webhook_max_bytes", DEFAULT_MAX_BYTES)
        )
        try:
            return int(value)
        except (TypeError, ValueError):
            _logger.error("invalid stock_channel_sync.webhook_max_bytes %r", value)
            return DEFAULT_MAX_BYTES

    @api.model_create_multi
    def create(self, vals_list):
        channels = super().create(vals_list)
        self.env.registry.clear_cache()
        return channels

    def write(self, vals):
        """A new webhook secret, generated or pasted, leaves the one it
        replaces valid for a grace period (system parameter
        ``stock_channel_sync.secret_rotation_grace_hours``, 24 by default):
        marketplaces switch with some delay (Shopify: up to an hour), and
        deliveries signed meanwhile must not be refused. One previous secret
        is kept: a second change within the grace period ends the first
        secret's. Clearing the secret stops every delivery signed with a
        secret at once, the previous secret's too (Ed25519 signatures, ``v1a``,
        rest on the public key, which is cleared on its own)."""
        if "webhook_secret" in vals and not vals["webhook_secret"]:
            vals = dict(
                {
                    "webhook_secret_previous": False,
                    "webhook_secret_previous_expiry": False,
                },
                **vals,
            )
        if vals.get("webhook_secret") and not {
            "webhook_secret_previous",
            "webhook_secret_previous_expiry",
        }.intersection(vals):
            replaced = self.filtered(
                lambda c: (
                    c.sudo().webhook_secret
                    and c.sudo().webhook_secret != vals["webhook_secret"]
                )
            )
            if replaced:
                expiry = fields.Datetime.add(
                    fields.Datetime.now(), hours=self._scs_rotation_grace_hours()
                )
                for channel in replaced:
                    channel.write(
                        dict(
                            vals,
                            webhook_secret_previous=channel.sudo().webhook_secret,
                            webhook_secret_previous_expiry=expiry,
                        )
                    )
                rest = self - replaced
                return rest.write(vals) if rest else True
        res = super().write(vals)
        if not set(vals).isdisjoint(WEBHOOK_FIELDS):
            self.env.registry.clear_cache()
        return res

    @api.model
    def _scs_rotation_grace_hours(self):
        """The grace period in hours (fractions allowed); 24 when the
        parameter is no number, a year at most (a longer one is no
        rotation)."""
        value = (
            self.env["ir.config_parameter"]
            .sudo()
            .get_param("stock_channel_sync.secret_rotation_grace_hours", 24)
        )
        try:
            hours = float(value)
        except (TypeError, ValueError):
            hours = float("nan")
        if math.isnan(hours):
            _logger.error(
                "invalid stock_channel_sync.secret_rotation_grace_hours %r", value
            )
            return 24.0
        return min(max(0.0, hours), 24.0 * 366)

    def unlink(self):
        res = super().unlink()
        self.env.registry.clear_cache()
        return res

    def _scs_clock_offset(self):
        """The learned ``clock_offset``, read afresh (the apply job keeps it)."""
        self.ensure_one()
        self.env.cr.execute(
            SQL("SELECT clock_offset FROM sync_channel WHERE id = %s", self.id)
        )
        row = self.env.cr.fetchone()
        return (row and row[0]) or 0.0

    def _scs_learn_clock(self):
        """Keep ``clock_offset`` from the channel's recent events that carry
        a time of their own.

        An event's time less its arrival is the channel's lead less the
        delivery's delay; the largest of the last ``CLOCK_SAMPLE`` such
        events (the quickest delivery) is the closest to the lead, ahead or
        behind. A deletion by arrival moved by it is then never placed
        before the order state it follows: its arrival, less at most the
        quickest delay, is after that state on the channel's clock. Over a
        window of events, one late delivery (a retry, a queue) moves
        nothing; a lead behind is believed from ``CLOCK_SAMPLE_BEHIND``
        events on, as fewer could all be late deliveries. Written only when
        it moves by a second or more.
        """
        self.ensure_one()
        self.env.cr.execute(
            SQL(
                """
                SELECT max(event_ts - change_ts), count(*) FROM (
                    SELECT event_ts, change_ts FROM sync_event
                     WHERE channel_id = %s AND direction = 'in'
                       AND create_date > now() AT TIME ZONE 'UTC' - interval '1 day'
                       AND event_ts > 0 AND change_ts > 0
                       AND data LIKE %s
                  ORDER BY create_date DESC LIMIT %s) recent
                """,
                self.id,
                '%"own_time": true%',
                CLOCK_SAMPLE,
            )
        )
        lead, sample = self.env.cr.fetchone()
        if lead is None:
            return
        if sample < CLOCK_SAMPLE_BEHIND:
            # a few late deliveries look like a clock behind: too few to
            # tell, the arrival counts as it is (a lead ahead is no delay)
            lead = max(lead, 0.0)
        lead = min(max(-MAX_AHEAD, lead), MAX_AHEAD)
        if abs(lead - (self.clock_offset or 0.0)) >= 1.0:
            # in a transaction of its own: the run's snapshot may predate a
            # change of the channel's row (a push job pausing it), which
            # would make this run's whole work fail to commit
            try:
                with self._scs_own_cursor() as cr:
                    cr.execute(
                        SQL(
                            "UPDATE sync_channel SET clock_offset = %s WHERE id = %s",
                            round(lead, 3),
                            self.id,
                        )
                    )
            except psycopg2.errors.LockNotAvailable:
                # the next run learns it again; said, not silent
                _logger.info(
                    "channel %s: clock lead %.1f s not written (row busy)",
                    self.id,
                    lead,
                )
                return
            self.invalidate_recordset(["clock_offset"])

    # -- applying queued events --
    def _scs_inbound_identity(self):
        return f"stock_channel_sync.in.{self.id}"

    def _scs_enqueue_inbound(self, eta=None, hold=None):
        """The channel's apply job: a new one, or the pending one (see above)."""
        self.ensure_one()
        if must_run_without_delay(self.env):
            self._scs_job_apply_inbound()
            return []
        interval = float(
            self.env["ir.config_parameter"]
            .sudo()
            .get_param("stock_channel_sync.min_apply_interval", DEFAULT_APPLY_INTERVAL)
        )
        running_eta = None
        if interval > 0:
            # the next whole second, so a busy channel costs about a job a
            # second, and a burst's tail waits half a second on average
            running_eta = datetime.fromtimestamp(
                math.floor(time.time()) + max(1, math.ceil(interval)), tz=timezone.utc
            ).replace(tzinfo=None)
        return store_jobs(
            self.env,
            [
                (
                    self._scs_job_apply_inbound,
                    {},
                    self._scs_inbound_identity(),
                    f"Apply inbound events of channel {self.id}",
                    eta,
                )
            ],
            running_eta=running_eta,
            hold=hold,
        )

    def _scs_start_inbound_job(self):
        """A delivery found no apply job of the channel: start one, at once.

        Deliveries that find none at the same moment take turns (a lock held
        until their commit); the next one then finds the first one's job.
        Under load this is rare: a busy channel always has a job waiting or
        running, and the deliveries count on it (see
        ``sync.event._scs_insert_delivered``).
        """
        self.ensure_one()
        if must_run_without_delay(self.env):
            return self._scs_enqueue_inbound()
        self.env.cr.execute(
            SQL("SELECT pg_advisory_xact_lock(%s, %s)", START_LOCK, self.id)
        )
        if self._scs_live_apply_job():
            return []
        return store_jobs(
            self.env,
            [
                (
                    self._scs_job_apply_inbound,
                    {},
                    self._scs_inbound_identity(),
                    f"Apply inbound events of channel {self.id}",
                    None,
                )
            ],
            hold=(set(), set()),
        )

    def _scs_live_apply_job(self):
        """Whether the channel's apply job waits or runs (a run started
        longer ago than ``RUN_PRESUMED_DEAD`` is taken for dead)."""
        self.env["queue.job"].flush_model(["identity_key", "state", "date_started"])
        self.env.cr.execute(
            SQL(
                # the method too: an event's own job had the same key
                # before its key was renamed (jobs from before an upgrade)
                "SELECT 1 FROM queue_job WHERE identity_key = %s"
                + LIVE_RUN
                + " LIMIT 1",
                self._scs_inbound_identity(),
            )
        )
        return bool(self.env.cr.fetchone())

    def _scs_follow_late_deliveries(self, seen_ids):
        """Give a follow-up run to the events this run could not see.

        A delivery counts on a waiting or running job to apply its event
        and holds the channel's delivery lock until it commits. A run that
        enqueues no follow-up therefore ends here: it takes that lock
        exclusively (waiting for the deliveries in flight; the next ones
        wait for this commit, then find this run done), and looks, on a
        fresh snapshot, for queued events that its own snapshot did not
        hold. Finding one, it enqueues the channel's next run (at the next
        second, the burst window). Returns whether it found one.

        The wait is bounded (``LATE_LOCK_WAIT_MS``). A delivery takes the
        lock after its insert, so a redelivery of an event this run applied,
        which waits for the run's row, does not hold it meanwhile; should a
        delivery ever hold it while waiting for this run, the two would
        deadlock (PostgreSQL fails one after a second). Past the bound the
        run gives up looking and enqueues the next run: no event is left
        behind, and the delivery goes on once this run commits.
        """
        self.ensure_one()
        try:
            with self.env.cr.savepoint(flush=False):
                self.env.cr.execute(
                    SQL("SET LOCAL lock_timeout = %s", f"{LATE_LOCK_WAIT_MS}ms")
                )
                self.env.cr.execute(
                    SQL("SELECT pg_advisory_xact_lock(%s, %s)", DELIVERY_LOCK, self.id),
                    log_exceptions=False,
                )
                self.env.cr.execute("SET LOCAL lock_timeout TO DEFAULT")
        except psycopg2.errors.LockNotAvailable:
            _logger.info(
                "channel %s: deliveries still in flight after %s ms at the end of"
                " a run: next run enqueued",
                self.id,
                LATE_LOCK_WAIT_MS,
            )
            self._scs_enqueue_inbound()
            return True
        # another cursor: a snapshot taken now, not at the start of the run
        # (never a read-only one, which may read a replica that lags)
        with self.env.registry.cursor() as cr:
            cr.execute(
                SQL(
                    "SELECT EXISTS (SELECT 1 FROM sync_event WHERE channel_id = %s"
                    " AND direction = 'in' AND state = 'queued' AND id != ALL(%s))",
                    self.id,
                    list(seen_ids),
                )
            )
            late = cr.fetchone()[0]
        if late:
            self._scs_enqueue_inbound()
        return late

    def _scs_queued_events(self, limit=None):
        return (
            self.env["sync.event"]
            .sudo()
            .search(
                [
                    ("channel_id", "=", self.id),
                    ("direction", "=", "in"),
                    ("state", "=", "queued"),
                ],
                order="event_ts, id",
                limit=limit,
            )
        )

    def _scs_job_apply_inbound(self):
        """Apply the channel's queued inbound events, per subject, oldest first."""
        self.ensure_one()
        events = self._scs_take_queued_events()
        more = len(events) > APPLY_BATCH
        events = events[:APPLY_BATCH]
        seen_ids = events.ids
        datas, unreadable = self._scs_read_event_data(events)
        if unreadable:
            self._scs_dead_unreadable(unreadable)
            events = events - events.browse(list(unreadable))
        self._scs_learn_clock()
        groups = OrderedDict()
        for event in events:
            groups.setdefault(event.subject or event.idempotency_key, []).append(event)
        counts = {"applied": 0, "stale": 0, "handed_over": 0, "waiting": 0}
        superseded = {}
        for group in groups.values():
            superseded.update(
                events.browse([e.id for e in group])._scs_superseded_levels()
            )
        self._scs_mark_superseded(superseded)
        counts["stale"] = len(superseded)
        todo = events.browse([e.id for e in events if e not in superseded])
        bindings = self._scs_binding_index(datas.values())
        # an order whose only event in this run is its creation is reserved
        # with the others, in one batch, after the groups; a later state that
        # can only follow a reservation (Shopify's orders/updated) does not
        # count: it is applied after the batch (``after``)
        follow_only = {
            e.id
            for e in todo
            if e.kind == "order" and (datas[e.id].get("order") or {}).get("follow_only")
        }
        older_states = self._scs_superseded_orders(todo, follow_only)
        if older_states:
            self._scs_mark_superseded(
                older_states,
                _("superseded by a newer state of the same order, in the same run"),
            )
            counts["stale"] += len(older_states)
            superseded.update(older_states)
            todo = todo.browse([e.id for e in todo if e not in older_states])
        per_order = Counter(
            e.external_ref
            for e in todo
            if e.kind in ("order", "cancel") and e.id not in follow_only
        )
        batchable = {
            e.id
            for e in todo
            if e.kind == "order"
            and e.external_ref
            and e.id not in follow_only
            and per_order[e.external_ref] == 1
        }
        batched = {e.external_ref for e in todo if e.id in batchable}
        after = [e for e in todo if e.id in follow_only and e.external_ref in batched]
        after_ids = {e.id for e in after}
        published = None
        if not per_order:
            published = RunQuantities(
                self.env["channel.binding"]
                .sudo()
                .browse(sorted(set(bindings.values())))
            )
        run = ApplyRun(counts, bindings, batchable, published, time.monotonic())
        todo_groups = [
            [
                event
                for event in group
                if event not in superseded and event.id not in after_ids
            ]
            for group in groups.values()
        ]
        todo_groups = [group for group in todo_groups if group]
        done, late_groups = self._scs_apply_at_once(todo_groups, run)
        if not done:
            for group in todo_groups:
                if time.monotonic() - run.started > APPLY_SECONDS:
                    late_groups = True
                    break
                self._scs_apply_group(group, run)
        # a short transaction: what was not reached, in the next run
        more = more or late_groups
        self._scs_reserve_deferred(run.deferred, counts)
        for event in after:
            # its order is reserved now, or its creation will take this later
            # state when it is (``sync.event._scs_later_state``)
            self._scs_apply_group([event], run)
        self._scs_push_corrections(run.corrections)
        if more or counts["waiting"]:
            # contention: a moment later; a backlog: at once
            self._scs_enqueue_inbound(
                eta=timedelta(seconds=CONTENTION_RETRY) if counts["waiting"] else 0
            )
            late = False
        else:
            late = self._scs_follow_late_deliveries(seen_ids)
        return (
            "{applied} applied, {stale} superseded, {handed_over} handed over,"
            " {waiting} left for a follow-up run".format(**counts)
            + (", a follow-up run for deliveries made meanwhile" if late else "")
        )

    @staticmethod
    def _scs_read_event_data(events):
        """``({id: data}, {id: error})``: each event's normal form, read.

        The route writes it as JSON; a row that does not hold a JSON object
        (edited in the database, cut by a restore) must not fail the run,
        which would hold back every queued event of the channel with it.
        """
        datas, unreadable = {}, {}
        for event in events:
            try:
                data = json.loads(event.data or "{}")
            except ValueError as err:
                unreadable[event.id] = str(err)
                continue
            if not isinstance(data, dict):
                unreadable[event.id] = f"a JSON {type(data).__name__}, not an object"
                continue
            datas[event.id] = data
        return datas, unreadable

    def _scs_dead_unreadable(self, unreadable):
        """Dead letters, with an alert: no retry can read them either."""
        for event in self.env["sync.event"].sudo().browse(list(unreadable)):
            event._scs_set_state(
                "dead",
                error=_("Normalised event is not readable: %s", unreadable[event.id]),
                attempts=event.attempts + 1,
            )
            self._scs_notify_dead_letter(event)

    @staticmethod
    def _scs_superseded_orders(events, follow_only):
        """``{event: newer event}``: order states that a later state of the
        same order in the run overrides.

        ``events`` are sorted oldest first. Each state of an order carries
        the whole order (its lines), so, as with item levels, only the newest
        one is worth applying: one by one, the older ones would be applied
        and at once edited by it, order by order, instead of the newest being
        reserved in the run's batch (measured: a redelivery storm of 100
        orders took seconds). An order with a cancellation, a refund or a
        state that can only follow a reservation in the run keeps each of
        its events, applied in order.
        """
        states, kept_whole = {}, set()
        for event in events:
            ref = event.external_ref
            if not ref or event.kind not in ("order", "cancel"):
                continue
            if event.kind == "cancel" or event.id in follow_only:
                kept_whole.add(ref)
            else:
                states.setdefault(ref, []).append(event)
        return {
            older: newer[-1]
            for ref, newer in states.items()
            if ref not in kept_whole
            for older in newer[:-1]
        }

    def _scs_mark_superseded(self, superseded, reason=None):
        """Record superseded events as stale: one UPDATE, one log line each.

        Under a burst most of a run's events end here (a busy item reports a
        level many times a second), so this skips the ORM's write: the rows
        are locked by this run, and the cache is invalidated afterwards.
        """
        if not superseded:
            return
        events = self.env["sync.event"].sudo().browse([e.id for e in superseded])
        reason = reason or _(
            "superseded by a newer level of the same item, applied in the same run"
        )
        events.flush_recordset()
        self.env.cr.execute(
            SQL(
                "UPDATE sync_event SET state = 'stale', reason = %s,"
                " write_uid = %s, write_date = now() AT TIME ZONE 'UTC'"
                " WHERE id = ANY(%s)",
                reason,
                self.env.uid,
                events.ids,
            )
        )
        events.invalidate_recordset(["state", "reason", "write_uid", "write_date"])
        for event in events:
            _scs_log_line(
                self.env.cr.dbname,
                event.id,
                {
                    "channel_id": self.id,
                    "direction": "in",
                    "sku": event.sku,
                    "kind": event.kind,
                    "state": "stale",
                    "idempotency_key": event.idempotency_key,
                    "quantity": event.quantity,
                    "attempts": event.attempts,
                },
            )

    def _scs_binding_index(self, datas):
        """``{(field, value): binding id}`` for every item the events' parsed
        ``data`` name.

        One query for the whole run instead of one or two per event; the
        apply code still searches an item this index does not know.
        """
        skus, refs = set(), set()
        for data in datas:
            for field, value in named_items(data):
                (skus if field == "sku" else refs).add(value)
        if not skus and not refs:
            return {}
        bindings = (
            self.env["channel.binding"]
            .sudo()
            .search_fetch(
                [
                    ("channel_id", "=", self.id),
                    "|",
                    "|",
                    ("sku", "in", list(skus)),
                    ("external_id", "in", list(refs)),
                    ("external_variant_id", "in", list(refs)),
                ],
                ["sku", "external_id", "external_variant_id"],
            )
        )
        index = {}
        for binding in bindings:
            for field, value in (
                ("ref", binding.external_variant_id),
                ("ref", binding.external_id),
                ("sku", binding.sku),
            ):
                if value:
                    index.setdefault((field, value), binding.id)
        return index

    def _scs_take_queued_events(self):
        """The queued events this run applies, locked; one run per channel.

        A run that finds another one applying the channel's events, or finds
        that events of its snapshot were applied since, retries a second
        later (without spending a retry) on a fresh snapshot.
        """
        self.env.cr.execute(
            SQL("SELECT pg_try_advisory_xact_lock(%s, %s)", INBOUND_LOCK, self.id)
        )
        if not self.env.cr.fetchone()[0]:
            raise RetryableJobError(
                "another run applies this channel's events",
                seconds=1,
                ignore_retry=True,
            )
        events = self._scs_queued_events(limit=APPLY_BATCH + 1)
        if events:
            lock_rows_or_retry(
                self.env,
                "sync_event",
                events.ids,
                "events applied by another run since this one started",
            )
        return events

    def _scs_apply_at_once(self, groups, run):
        """Apply the run's groups in one savepoint: ``(done, time ran out)``.

        Most runs meet no contention and no error. They then cost one
        savepoint and one flush in all, instead of one per event (measured:
        about half of a run's time under a burst, time during which an HTTP
        worker serves no webhook). The run's bindings are locked first, in
        one statement. If another job holds one of them, or an event fails,
        nothing of this pass is kept (nor logged), ``done`` is false, and
        the caller applies event by event, each in a savepoint of its own.
        """
        binding_ids = frozenset(run.bindings.values())
        applied, run_deferred, run_corrections, late = 0, [], [], False
        try:
            with buffered_log_lines() as lines, self.env.cr.savepoint():
                run_bindings = (
                    self.env["channel.binding"].sudo().browse(sorted(binding_ids))
                )
                run_bindings._scs_lock()
                # one query for the run's bindings, not one per event
                run_bindings.fetch()
                locked = self.with_context(scs_locked_binding_ids=binding_ids)
                for group in groups:
                    if time.monotonic() - run.started > APPLY_SECONDS:
                        late = True
                        break
                    for event in group:
                        result = event.with_env(locked.env)._scs_job_apply(
                            bindings=run.bindings,
                            defer=run_deferred if event.id in run.batchable else None,
                            corrections=run_corrections,
                            published=run.published,
                        )
                        applied += result != DEFERRED
        except Exception as err:  # applied event by event instead
            if connection_lost(err):
                raise
            _logger.debug("channel %s: run applied event by event: %s", self.id, err)
            return False, False
        log_lines(lines)
        run.counts["applied"] += applied
        run.deferred.extend(run_deferred)
        run.corrections.extend(run_corrections)
        return True, late

    def _scs_apply_group(self, todo, run):
        """Apply one subject's events in order; stop the subject at contention."""
        counts = run.counts
        for index, event in enumerate(todo):
            try:
                with self.env.cr.savepoint():
                    result = event._scs_job_apply(
                        bindings=run.bindings,
                        defer=run.deferred if event.id in run.batchable else None,
                        corrections=run.corrections,
                        published=run.published,
                    )
            except RetryableJobError:
                # another job holds this SKU: its events wait, in order
                counts["waiting"] += len(todo) - index
                return
            except psycopg2.OperationalError as err:
                if connection_lost(err):
                    raise
                if err.pgcode not in PG_CONCURRENCY_ERRORS_TO_RETRY:
                    event._scs_hand_over(err)
                    counts["handed_over"] += 1
                    continue
                counts["waiting"] += len(todo) - index
                return
            except Exception as err:  # retried by a job of its own
                if connection_lost(err):
                    raise
                event._scs_hand_over(err)
                counts["handed_over"] += 1
            else:
                counts["applied"] += result != DEFERRED

    def _scs_push_corrections(self, binding_ids):
        """Give the channel edits of the run one job that pushes Odoo's number.

        The run holds its events, its bindings and the channel's inbound
        lock: a network call there would make every job that needs one of
        them wait for the channel's answer (up to its timeout). The job,
        committed with the run, pushes all the run's corrections in one
        concurrent round, under the locks of those bindings only; a failing
        channel gets its retry job, as any push.
        """
        bindings = (
            self.env["channel.binding"]
            .sudo()
            .browse(sorted(set(binding_ids)))
            .filtered(
                lambda b: b.active and b.channel_id.active and b.channel_id.sync_enabled
            )
        )
        if bindings:
            bindings.with_delay(
                description=f"Correct {len(bindings)} channel edit(s) on {self.name}",
            )._scs_job_push_corrections()

    def _scs_reserve_deferred(self, deferred, counts):
        """Reserve the run's deferred orders together; one by one on failure.

        The events' checks (bindings, locks, order) are done; each keeps its
        own outcome: a batch that fails is retried order by order, so one
        bad order is handed over alone.
        """
        if not deferred:
            return
        try:
            with self.env.cr.savepoint():
                pickings = self.env["sync.event"]._scs_reserve_many(
                    self, [(order_id, known) for _e, order_id, known in deferred]
                )
                # the batch's transfers all exist now: what the channel sold
                # since its offers is bounded once for the batch, not asked
                # order by order (see ``sync.event._scs_sold_bounds``)
                bounds = self.env["sync.event"]._scs_sold_bounds(
                    [binding for _e, _o, known in deferred for _line, binding in known]
                )
                for (event, _order_id, known), picking in zip(
                    deferred, pickings, strict=True
                ):
                    event._scs_finish_order(picking, known, sold_bounds=bounds)
            counts["applied"] += len(deferred)
            return
        except RetryableJobError:
            counts["waiting"] += len(deferred)
            return
        except psycopg2.OperationalError as err:
            if connection_lost(err):
                raise
            if err.pgcode in PG_CONCURRENCY_ERRORS_TO_RETRY:
                counts["waiting"] += len(deferred)
                return
        except Exception as err:  # each order is tried alone below
            if connection_lost(err):
                raise
            _logger.info(
                "channel %s: batch reservation of %s orders failed (%s);"
                " reserving order by order",
                self.id,
                len(deferred),
                err,
            )
        self._scs_reserve_one_by_one(deferred, counts)

    def _scs_reserve_one_by_one(self, deferred, counts):
        for event, order_id, known in deferred:
            try:
                with self.env.cr.savepoint():
                    picking = event._scs_reserve(self, order_id, known)
                    event._scs_finish_order(picking, known)
            except NoReserveSource as err:
                event._scs_set_state("attention", error=str(err))
                counts["handed_over"] += 1
            except RetryableJobError:
                counts["waiting"] += 1
            except psycopg2.OperationalError as err:
                if connection_lost(err):
                    raise
                if err.pgcode not in PG_CONCURRENCY_ERRORS_TO_RETRY:
                    event._scs_hand_over(err)
                    counts["handed_over"] += 1
                else:
                    counts["waiting"] += 1
            except Exception as err:  # retried by a job of its own
                if connection_lost(err):
                    raise
                event._scs_hand_over(err)
                counts["handed_over"] += 1
            else:
                counts["applied"] += 1

    def _scs_on_apply_inbound_failed(self, exc_name=None, exc_message=None, **kw):
        """queue_job ``on_fail`` hook: no queued event is left without a job.

        When the channel's apply job has failed for good and no other one is
        waiting or running, the channel's queued inbound events become dead
        letters (visible, retryable, with an activity for the responsible
        user) instead of waiting for a job that will not come. A run that
        lost its database connection failed no event: it is run again
        (``run_again_after_lost_connection``).
        """
        for channel in self.sudo():
            delay = run_again_after_lost_connection(
                channel.env, channel._scs_inbound_identity(), exc_name
            )
            if delay:
                channel._scs_enqueue_inbound(eta=delay)
                continue
            channel._scs_dead_orphans(exc_message or exc_name)

    def _scs_dead_orphans(self, error):
        self.ensure_one()
        # deliveries in flight counted on the failed job: let them commit
        # first (a bounded wait; what is still missed, the reconciliation
        # pass finds, see ``_scs_requeue_orphans``)
        deadline = time.monotonic() + 5
        while True:
            self.env.cr.execute(
                SQL("SELECT pg_try_advisory_xact_lock(%s, %s)", DELIVERY_LOCK, self.id)
            )
            if self.env.cr.fetchone()[0] or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if self._scs_live_apply_job():
            return self.env["sync.event"]
        orphans = self._scs_queued_events()
        for event in orphans:
            event._scs_set_state("dead", error=error, attempts=event.attempts + 1)
            self._scs_notify_dead_letter(event)
        return orphans

    def _scs_requeue_orphans(self, age=300):
        """Safety net: queued events older than ``age`` seconds get a job.

        Every queued event has a job that will apply it, by construction;
        this catches what a crash or a bug may still leave behind (the
        reconciliation pass runs it). Returns whether a job was enqueued.
        """
        self.ensure_one()
        self.env["sync.event"].flush_model(["state", "enqueue_ts"])
        self.env.cr.execute(
            SQL(
                "SELECT 1 FROM sync_event WHERE channel_id = %s AND direction = 'in'"
                " AND state = 'queued' AND enqueue_ts < %s LIMIT 1",
                self.id,
                time.time() - age,
            )
        )
        if not self.env.cr.fetchone():
            return False
        if self._scs_live_apply_job() and not self._scs_apply_job_died():
            return False
        _logger.warning(
            "channel %s: queued inbound events had no live apply job; one is enqueued",
            self.id,
        )
        self._scs_enqueue_inbound()
        return True

    def _scs_apply_job_died(self):
        """Whether the channel's apply job is *started* by a worker that died.

        A running job holds its ``queue_job_lock`` row until it ends; a
        killed worker's row is free. queue_job's runner finds such jobs at
        the next turn of its loop, which, when nothing happens, waits until
        the earliest eta of the pending jobs: one retry a day out, and the
        channel's events wait that long. Taking the free row says the worker
        is gone; the lock is given back at once (the savepoint is rolled
        back), so that the runner can still requeue the job.
        """
        self.ensure_one()
        cr = self.env.cr
        cr.execute("SAVEPOINT scs_dead_run")
        try:
            cr.execute(
                SQL(
                    "SELECT lk.id FROM queue_job qj JOIN queue_job_lock lk"
                    " ON lk.queue_job_id = qj.id"
                    " WHERE qj.identity_key = %s AND qj.state = 'started'"
                    " AND qj.method_name = '_scs_job_apply_inbound'"
                    " AND qj.date_started < (now() AT TIME ZONE 'UTC')"
                    " - make_interval(secs => %s)"
                    " FOR NO KEY UPDATE OF lk SKIP LOCKED",
                    self._scs_inbound_identity(),
                    DEAD_RUN_AGE,
                )
            )
            return bool(cr.fetchall())
        finally:
            cr.execute("ROLLBACK TO SAVEPOINT scs_dead_run")
            cr.execute("RELEASE SAVEPOINT scs_dead_run")

    @api.model
    def _scs_cron_requeue_orphans(self):
        """Every minute: the safety net above, for every channel at once.

        A worker killed in the middle of an apply run leaves its job
        *started*, and the channel's deliveries count on it: queue_job's
        runner puts it back in the queue at a later turn of its loop (see
        ``_scs_apply_job_died``), and once the job's retries are spent it
        marks it failed (``JobFoundDead``) without calling its failure
        hook. Their events would wait for the hourly reconciliation pass;
        here they wait a minute or two. One query when nothing is left
        behind. Returns the channels that got a job.

        Any job of this module so found dead first gets its failure hook
        (``fail_dead_jobs``): a push job's SKU becomes dead letters and an
        activity, not a channel left with its old figure and no trace.
        """
        fail_dead_jobs(self.env)
        self.env["sync.event"].flush_model(["channel_id", "state", "enqueue_ts"])
        self.env.cr.execute(
            SQL(
                "SELECT DISTINCT channel_id FROM sync_event WHERE direction = 'in'"
                " AND state = 'queued' AND enqueue_ts < %s",
                time.time() - ORPHAN_AGE,
            )
        )
        ids = [row[0] for row in self.env.cr.fetchall()]
        channels = self.sudo().search([("id", "in", ids)]) if ids else self
        return channels.filtered(lambda c: c._scs_requeue_orphans(age=ORPHAN_AGE))
