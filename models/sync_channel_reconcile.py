# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Reconciliation: the backstop that makes every channel converge.

Webhooks get lost, WooCommerce never retries, Amazon cannot call us at all,
and people edit stock by hand on both sides. An ``ir.cron`` (hourly) starts a
pass for every channel that is due. A pass is a chain of queue_job jobs, never
one long transaction:

1. a *start* job fetches the orders the channel reports since the last pass
   (with an overlap) and feeds them through the same idempotent intake as
   webhooks, applying them at once, so that a sold unit whose webhook was
   lost is reserved *before* the comparison (otherwise the pass would relist
   it). For the same reason nothing is compared when the fetch fails: the
   job is retried, or the pass closes with the error. An order that cannot
   be applied becomes a dead letter on its own;
2. one *batch* job per 500 bindings reads the live quantities in bulk through
   the adapter, compares each with the number Odoo would publish now, and
   pushes the drifted ones, each correction recorded with its reason.

Every binding is compared in every pass: no "changed since" cursor can skip
a SKU. A dry run fetches no order, records what it would correct and
changes nothing; a safety limit refuses to correct a batch whose drift
exceeds a share of the bindings and alerts the responsible user instead (a
wrong location or a broken channel should not rewrite a catalogue).
"""

import json
import logging
import math
import time
from datetime import timedelta, timezone

import psycopg2

from odoo import _, api, fields, models
from odoo.exceptions import UserError
from odoo.tools import SQL

from odoo.addons.queue_job.controllers.main import PG_CONCURRENCY_ERRORS_TO_RETRY
from odoo.addons.queue_job.exception import RetryableJobError

from ..lib.adapters import (
    ChannelError,
    InboundEvent,
    RateLimitedError,
    UnreachableError,
    check_inbound,
    woocommerce,
)
from .job_store import RECONCILE_PRIORITY, retry_later
from .sync_channel_inbound import item_keys

_logger = logging.getLogger(__name__)

#: seconds before a batch began from which an inbound event is taken as
#: arrived during its read of the channel (see _scs_bindings_awaiting_inbound)
RECENT_MARGIN = 10
#: queued inbound events a pass reads for the items they name
AWAITING_LIMIT = 5000

REASONS = [
    ("missed_webhook", "Missed update (Odoo's number never reached the channel)"),
    ("failed_push", "Failed push"),
    ("channel_edit", "Edit on the channel"),
    ("unknown", "Unknown"),
    ("not_applied_yet", "Accepted by the channel, not applied yet"),
]
#: times a batch is compared again after its order re-read reserved missed
#: orders, before a lower figure is left to the next pass
MAX_REREADS = 2
#: a level showing the number before a push the channel accepted moments
#: ago (see ``_scs_not_applied_yet``)
NOT_APPLIED_YET = "not_applied_yet"
#: bindings below this count are too few for the safety share to mean much
SAFETY_MIN_BINDINGS = 20
#: a pass not closed after this long (its jobs lost) no longer keeps the
#: next one from starting
PASS_TIMEOUT_HOURS = 6
#: minutes between two polls of the orders of the channel types that send
#: this module no webhook, not left to the hourly pass; Amazon's
#: ``searchOrders`` refills one call per 179 s (burst 20): every 4 minutes,
#: with the hourly pass's fetch, stays within it
POLL_MINUTES = {"amazon": 4, "ebay": 2}


class ReadOn(str):
    """The message of an order fetch that stopped at the channel's rate
    limit, having kept what it read: shown, but no failure to alert of."""


class IncompleteFetch(Exception):
    """An order fetch the channel stopped at its rate limit after some
    pages: what was read is recorded, the next fetch reads the rest."""

    def __init__(self, recorded, read, error):
        self.recorded = recorded
        self.read = read
        self.error = error
        super().__init__(
            f"{read} order(s) read, the rest at the next fetch, as the channel"
            f" allows it ({error})"
        )


class SyncChannel(models.Model):
    _inherit = "sync.channel"

    reconcile_interval = fields.Integer(
        "Reconcile Every (hours)",
        default=1,
        help="0 disables the scheduled pass for this channel.",
    )
    reconcile_batch_size = fields.Integer("Bindings per Job", default=500)
    reconcile_dry_run = fields.Boolean(
        "Dry Run",
        help="Passes report the drift and correct nothing; they fetch no order.",
    )
    reconcile_max_share = fields.Float(
        "Safety Limit (%)",
        default=20.0,
        help="A batch whose drift exceeds this share of its bindings is not "
        "corrected; the responsible user gets an activity instead.",
    )
    fetch_orders = fields.Boolean(
        "Fetch Orders in Passes",
        default=True,
        help="Each pass also reads the orders updated since the last one and "
        "applies the missing ones (for channels whose webhooks are unreliable "
        "or absent, such as Amazon).",
    )
    order_fetch_overlap = fields.Integer("Order Fetch Overlap (min)", default=15)
    order_poll_interval = fields.Integer(
        "Poll Orders Every (min)",
        compute="_compute_order_poll_interval",
        store=True,
        readonly=False,
        precompute=True,
        help="Between passes, the channel's new orders are fetched this often "
        "and reserved, so that a sale reaches the other channels within "
        "minutes, not at the next pass (channels that send no webhooks: "
        "Amazon every 4 minutes, eBay every 2, by default). 0: at the passes "
        "only. A channel in dry run, or whose passes are off, is not polled.",
    )
    last_order_fetch_at = fields.Datetime(readonly=True)
    # where an order fetch stopped at the channel's rate limit, to go on from
    # (JSON: the page token, the window's start and end); see
    # ``_scs_fetch_orders``
    order_fetch_resume = fields.Char(readonly=True, copy=False)
    last_order_poll_at = fields.Datetime("Last Order Poll", readonly=True)
    reconcile_started_at = fields.Datetime("Last Pass Started", readonly=True)
    reconcile_started_ts = fields.Float(readonly=True, digits=(16, 3))
    last_reconcile_at = fields.Datetime("Last Pass Finished", readonly=True)
    reconcile_pending = fields.Integer("Batches Running", readonly=True)
    last_reconcile_checked = fields.Integer("Bindings Checked", readonly=True)
    last_reconcile_drift = fields.Integer(
        "Drift Found", readonly=True, help="Bindings that differed from Odoo."
    )
    last_reconcile_corrections = fields.Integer(
        "Corrections", readonly=True, help="Drifted bindings pushed again."
    )
    last_reconcile_limited = fields.Integer(
        "Batches Held by Safety Limit", readonly=True
    )
    last_reconcile_duration = fields.Float(
        "Duration (s)", readonly=True, digits=(16, 2)
    )
    last_reconcile_dry_run = fields.Boolean(readonly=True)
    last_reconcile_rate = fields.Float(
        "Correction Rate (%)", compute="_compute_last_reconcile_rate", digits=(16, 3)
    )
    last_reconcile_error = fields.Text(readonly=True)

    @api.depends("last_reconcile_checked", "last_reconcile_drift")
    def _compute_last_reconcile_rate(self):
        """Drift found over bindings checked (what the target watches)."""
        for channel in self:
            checked = channel.last_reconcile_checked
            channel.last_reconcile_rate = (
                100.0 * channel.last_reconcile_drift / checked if checked else 0.0
            )

    @api.depends("channel_type")
    def _compute_order_poll_interval(self):
        """Channels that send no webhooks are polled, the others not (a
        default by type, which the user may change)."""
        for channel in self:
            channel.order_poll_interval = POLL_MINUTES.get(channel.channel_type, 0)

    # -- entry points --
    @api.model
    def _scs_cron_reconcile(self):
        """Start a pass on every active channel that is due."""
        now = fields.Datetime.now()
        for channel in self.search([("reconcile_interval", ">", 0)]):
            last = channel.reconcile_started_at
            if last and last + timedelta(hours=channel.reconcile_interval) > now:
                continue
            if channel._scs_pass_running():
                continue  # the next tick, once it has closed
            channel._scs_start_reconcile()
        return True

    @api.model
    def _scs_cron_poll_orders(self):
        """Every minute: a poll of its orders for each channel that is due.

        Amazon and eBay send this module no webhook: a sale there would
        otherwise reach Odoo, and the other channels, at the next pass, and
        any push of the SKU meanwhile would offer the sold units again on
        that marketplace. One job per channel (its identity key keeps one
        waiting), none while a pass reads the orders (its start job): the
        pass's batches may take long (a retry waits minutes), and a sale
        made meanwhile must still be reserved at once; a batch looks for
        the orders recorded while it read the channel.
        Returns the channels polled.
        """
        now = fields.Datetime.now()
        channels = self.search(
            [
                ("order_poll_interval", ">", 0),
                ("fetch_orders", "=", True),
                # a dry run changes nothing; passes off take no order either
                ("reconcile_dry_run", "=", False),
                ("reconcile_interval", ">", 0),
            ]
        )
        polled = self.browse()
        for channel in channels:
            # the last attempt too: a poll that fails for good is not sent
            # again every minute
            tried = [channel.last_order_fetch_at, channel.last_order_poll_at]
            last = max((t for t in tried if t), default=None)
            due = not last or last + timedelta(
                minutes=channel.order_poll_interval
            ) <= now + timedelta(seconds=5)
            if not due or channel._scs_pass_jobs_alive("start"):
                continue
            channel.with_delay(
                identity_key=f"stock_channel_sync.poll.{channel.id}",
                description=f"Poll the orders of {channel.name}",
            )._scs_job_poll_orders()
            polled |= channel
        return polled

    def _scs_job_poll_orders(self):
        """Fetch and apply the channel's new orders (between passes).

        A paused channel is asked no sooner than its pushes would be; a
        retryable error (5xx, 429, a timeout) is retried with backoff, the
        next minute's poll waiting for this one; an error for good is shown
        on the channel, as a pass shows it.
        """
        self.ensure_one()
        if (
            not self.active
            or not self.fetch_orders
            or self.reconcile_dry_run
            or self.reconcile_interval <= 0
            or self._scs_pass_jobs_alive("start")
        ):
            return (
                "not polled: archived, not fetching, dry run, passes off or a"
                " pass reading the orders"
            )
        self.last_order_poll_at = fields.Datetime.now()
        unread = _("the channel's orders could not be read: %s", "")
        fetched, error = self._scs_fetch_orders_watched("poll")
        if error:
            self.last_reconcile_error = error
            if isinstance(error, ReadOn):
                # a backlog read at the channel's rate: progress, no alert
                return f"{fetched} order event(s) fetched, more at the next poll"
            self._scs_notify(_("Orders not polled"), error, key="poll")
            return f"not polled: {error}"
        if (self.last_reconcile_error or "").startswith(unread):
            # read again: the error shown on the channel is over
            self.last_reconcile_error = False
        self._scs_resolve_activity(
            _("Orders not polled"), _("The channel's orders were read again.")
        )
        return f"{fetched} order event(s) fetched"

    def _scs_on_poll_failed(self, exc_name=None, exc_message=None, **kw):
        """queue_job ``on_fail`` hook: the poll's retries are spent (a
        channel that kept answering 5xx or 429). Never a silent failure: the
        channel shows why and its responsible user gets an activity; the
        next minute's cron polls again. A poll found dead is handled late:
        one of the channel's polls that read its orders since says nothing
        is wrong any more."""
        for channel in self:
            job_created = kw.get("job_created")
            if (
                kw.get("found_dead")
                and job_created
                and channel.last_order_fetch_at
                and channel.last_order_fetch_at.replace(tzinfo=timezone.utc).timestamp()
                > job_created + 1
            ):
                continue
            error = _(
                "the channel's orders could not be read: %s",
                exc_message or exc_name or _("failed"),
            )
            channel.last_reconcile_error = error
            channel._scs_notify(_("Orders not polled"), error, key="poll")

    def _scs_fetch_orders_watched(self, what, retry=True, keys=None):
        """``_scs_fetch_orders`` as a pass or a poll runs it: ``(fetched,
        error)``; ``keys``, a list, gets the new events' idempotency keys.
        A paused channel is asked no sooner than its pushes would be; a
        channel that does not answer is paused; a retryable error
        (5xx, 429, a timeout) retries the job after the channel's
        Retry-After or the job's retry pattern (with ``retry`` false, it is
        answered as an error is, for a caller that can do without); an
        error for good is answered, for the caller to show on the
        channel."""
        try:
            probing = self._scs_wait_for_pause()
        except RetryableJobError as err:
            if retry:
                raise
            return 0, _("the channel's orders could not be read: %s", err)
        try:
            fetched = self._scs_fetch_orders(keys=keys)
            probing._scs_answered()
        except IncompleteFetch as stop:
            # what was read is kept (this job commits); the next poll or
            # pass goes on from where the channel stopped
            probing._scs_answered()
            _logger.info("channel %s: order fetch stopped, %s: %s", self.id, what, stop)
            return stop.recorded, ReadOn(
                _("the channel's orders could not be read: %s", str(stop))
            )
        except ChannelError as err:
            if isinstance(err, UnreachableError) and retry:
                # not for a caller that does without (a batch's re-read,
                # which just read the levels): the pause is committed on
                # the channel's row, which that caller's transaction, older,
                # then could not write: its whole batch would be retried
                self._scs_pause(err)
            if err.retryable and retry:
                _logger.info(
                    "channel %s: order fetch failed, %s retried: %s", self.id, what, err
                )
                raise retry_later(err) from err
            return 0, _("the channel's orders could not be read: %s", err)
        return fetched, None

    def _scs_pass_running(self):
        """Whether a pass of this channel (real or dry) started and has not
        closed yet. Passes share the channel's figures: one started over a
        running one would reset them under its batches, and both would add
        to them. A pass older than ``PASS_TIMEOUT_HOURS`` does not count
        (its jobs were lost)."""
        self.ensure_one()
        started = self.reconcile_started_ts
        if (
            not started
            or started < 0  # closed unfinished (``_scs_close_abandoned_pass``)
            or time.time() - started > PASS_TIMEOUT_HOURS * 3600
        ):
            return False
        finished = self.last_reconcile_at
        # the close is stored to the second: a pass that closed within the
        # second it started is closed
        open_ = (
            not finished
            or finished.replace(tzinfo=timezone.utc).timestamp() < started - 1
        )
        if open_ and not self._scs_pass_jobs_alive():
            # its jobs were cancelled or set done by hand (or lost): nothing
            # will close it, and while open it would refuse a new pass and
            # hold the channel's order polling for hours
            self._scs_close_abandoned_pass()
            return False
        return open_

    def _scs_pass_jobs_alive(self, which=""):
        """Whether a job of the channel's pass is waiting or running: its
        start or a batch, or only ``which`` ("start", "batch")."""
        self.env["queue.job"].flush_model(["state", "func_string"])
        self.env.cr.execute(
            SQL(
                "SELECT 1 FROM queue_job WHERE func_string LIKE %s"
                " AND state IN ('pending', 'enqueued', 'started',"
                " 'wait_dependencies') LIMIT 1",
                f"sync.channel({self.id},)._scs_job_reconcile_{which}%",
            )
        )
        return bool(self.env.cr.fetchone())

    def _scs_close_abandoned_pass(self):
        """Close a pass none of whose jobs is left, saying so on the channel;
        the bindings it did not compare wait for the next pass."""
        self.ensure_one()
        _logger.warning(
            "channel %s: reconciliation pass closed, none of its jobs is left"
            " (%s batch(es) never reported)",
            self.id,
            self.reconcile_pending,
        )
        self.sudo().write(
            {
                "reconcile_pending": 0,
                "last_reconcile_at": fields.Datetime.now(),
                # negated: no batch of that pass (one of its cancelled jobs
                # run again from the Jobs menu) takes it for its own (see
                # ``_scs_job_reconcile_batch``), and it counts as no pass
                # running (``_scs_pass_running``)
                "reconcile_started_ts": -abs(self.reconcile_started_ts or 0.0),
                "last_reconcile_error": _(
                    "The last reconciliation pass was closed unfinished: its"
                    " jobs were cancelled or lost (%s batch(es) never reported)."
                    " The next pass compares every binding.",
                    self.reconcile_pending,
                ),
            }
        )

    def _scs_refuse_if_running(self):
        for channel in self:
            if channel._scs_pass_running():
                raise UserError(
                    _(
                        "A reconciliation pass of %s is still running: its"
                        " figures would be mixed with this one's. Run it"
                        " again once the pass has closed.",
                        channel.name,
                    )
                )

    def action_reconcile_now(self):
        self._scs_check_configure()
        self._scs_refuse_if_running()
        for channel in self:
            channel._scs_start_reconcile()
        return self._scs_notification(
            _("Reconciliation started"),
            _(
                "The pass runs in the background; the channel shows its figures"
                " (checked, drift, corrections) when it ends."
            ),
        )

    def action_reconcile_dry_run(self):
        self._scs_check_configure()
        self._scs_refuse_if_running()
        for channel in self:
            channel._scs_start_reconcile(dry_run=True)
        return self._scs_notification(
            _("Dry run started"),
            _(
                "The pass compares in the background and corrects nothing; the"
                " channel shows the drift it found when it ends."
            ),
        )

    def _scs_start_reconcile(self, dry_run=None):
        """Reset the pass figures and enqueue the pass's start job.

        ``reconcile_started_at`` is what the cron schedules by, so it records
        the channel's own kind of pass only: a one-off dry run (the button)
        on a channel whose passes are real leaves it alone, or the cron would
        put the real pass off for a whole interval; on a channel set to Dry
        Run, dry passes are its scheduled passes and keep their interval. A
        dry run's job has an identity of its own, so that a waiting dry run
        does not absorb the real pass the cron asks for (nor the reverse).

        The safety net for queued inbound events left without a job runs
        here rather than in the start job: a start job that waits for the
        channel's Retry-After is rolled back, and would take it along for as
        long as the channel's orders cannot be read.
        """
        self.ensure_one()
        dry_run = self.reconcile_dry_run if dry_run is None else dry_run
        values = {
            "reconcile_started_ts": time.time(),
            "reconcile_pending": 0,
            "last_reconcile_checked": 0,
            "last_reconcile_drift": 0,
            "last_reconcile_corrections": 0,
            "last_reconcile_limited": 0,
            "last_reconcile_dry_run": dry_run,
            "last_reconcile_error": False,
        }
        if not dry_run or self.reconcile_dry_run:
            values["reconcile_started_at"] = fields.Datetime.now()
        self.write(values)
        if not dry_run:
            self._scs_requeue_orphans()
        key = f"stock_channel_sync.reconcile.{self.id}"
        self.with_delay(
            priority=RECONCILE_PRIORITY,
            identity_key=f"{key}.dry" if dry_run else key,
            description=f"Reconcile {self.name}" + (" (dry run)" if dry_run else ""),
        )._scs_job_reconcile_start(dry_run=dry_run)

    # -- refunds that only the channel's API tells --
    def _scs_follow_refunds(self, order_id, order):
        """Fetch the refunds a WooCommerce order lists and no event holds yet.

        A WooCommerce order, in a webhook or fetched, lists its refunds by id
        and total and keeps its lines at the quantities first ordered: a
        partial refund changes nothing an order event can see. Its lines are
        read in a job of their own (an outbound call has no place in the
        apply run), once per refund: each becomes an inbound event keyed by
        the refund's id, applied as a line refund.
        """
        self.ensure_one()
        raw = order.get("raw") or {}
        ids = woocommerce.refund_ids(raw)
        if self.channel_type != "woocommerce" or not ids:
            return False
        keys = [f"refund:{order_id}:{refund_id}" for refund_id in ids]
        known = self.env["sync.event"].search_count(
            [
                ("channel_id", "=", self.id),
                ("direction", "=", "in"),
                ("idempotency_key", "in", keys),
            ]
        )
        if known >= len(keys):
            return False
        self.with_delay(
            identity_key=f"stock_channel_sync.refunds.{self.id}.{order_id}",
            description=f"Read the refunds of order {order_id} on {self.name}",
        )._scs_job_fetch_refunds(order_id)
        return True

    def _scs_job_fetch_refunds(self, order_id):
        """Record the line refunds of one WooCommerce order as inbound events
        (a refund already recorded is a duplicate, as a redelivery is)."""
        self.ensure_one()
        try:
            refunds = list(self._scs_adapter().fetch_refunds(order_id))
        except ChannelError as err:
            if err.retryable:
                raise retry_later(err) from err
            self._scs_notify(
                _("Refunds of order %s not read", order_id),
                _(
                    "The channel refused to give the refunds of order %(order)s:"
                    " %(error)s. Units they took back stay reserved until the"
                    " order is cancelled or the refunds can be read.",
                    order=order_id,
                    error=err,
                ),
                key=f"refunds:{order_id}",
            )
            return f"not read: {err}"
        events = [
            # a refund of an amount only is recorded too (skipped), so that
            # the order's next state does not read it again
            InboundEvent(
                kind="cancel" if refund.lines else "ignored",
                idempotency_key=f"refund:{order_id}:{refund.raw['id']}",
                event_time=refund.updated_at,
                order=refund,
            )
            for refund in refunds
        ]
        check_inbound(events)
        recorded = self.env["sync.event"]._scs_record_inbound(
            self, events, b"", "refunds"
        )
        new = sum(1 for item in recorded if item["new"])
        return f"{len(events)} line refund(s), {new} new"

    def _scs_on_refunds_failed(self, exc_name=None, exc_message=None, **kw):
        """queue_job ``on_fail`` hook: an order's refunds were not read, the
        retries are spent. Never a silent failure: the channel's user is
        told; the order's next event reads them again."""
        for channel in self:
            channel._scs_notify(
                _("Refunds not read"),
                _(
                    "The refunds of a WooCommerce order could not be read after"
                    " several tries (%s). Units they took back stay reserved"
                    " until the order is cancelled, or its next update reads"
                    " them again.",
                    exc_message or exc_name or _("failed"),
                ),
                key="refunds",
            )

    # -- jobs --
    def _scs_job_reconcile_start(self, dry_run=False):
        """Fetch and apply missed orders, then enqueue the comparison batches.

        The comparison needs the orders first. A sale whose webhook was lost
        shows as the channel holding less than Odoo: compared before the
        sale is reserved, it reads as an edit on the channel, and the
        correction pushes Odoo's higher number, putting the sold units back
        on sale. So when the order fetch fails nothing is compared: a
        retryable error (5xx, 429, a timeout) retries this job after the
        channel's Retry-After or the job's retry pattern (when the retries
        run out, ``_scs_on_reconcile_start_failed`` closes the pass); an
        error for good (credentials, configuration) closes the pass at once,
        with the error on the channel and an activity.

        A dry run changes nothing, so it fetches no order (applying one
        reserves stock and pushes every channel) and leaves the order cursor
        and the queued inbound events to the next real pass; the channel
        says so, since the drift it reports may hold sales a real pass
        reserves before comparing.
        """
        self.ensure_one()
        fetched = 0
        if dry_run:
            if self.fetch_orders:
                self.last_reconcile_error = _(
                    "Dry run: the channel's orders were not fetched (applying"
                    " them reserves stock). Drift on an SKU sold since the last"
                    " pass may be a sale that a real pass reserves before"
                    " comparing."
                )
        elif self.fetch_orders:
            fetched, error = self._scs_fetch_orders_watched("pass")
            if isinstance(error, ReadOn):
                # a backlog read at the channel's rate: the pass cannot
                # compare yet, which is progress, not a failure to alert of
                self._scs_finish_batch(0, 0, 0, False)
                self.last_reconcile_error = _(
                    "Reconciliation waits for the channel's orders: %s", error
                )
                return f"not compared yet: {error}"
            if error:
                self._scs_reconcile_not_run(error)
                return f"not compared: {error}"
        bindings = self.env["channel.binding"].search(
            [("channel_id", "=", self.id)], order="id"
        )
        size = max(1, self.reconcile_batch_size or 500)
        batches = [bindings.ids[i : i + size] for i in range(0, len(bindings), size)]
        self.reconcile_pending = len(batches)
        for index, ids in enumerate(batches):
            self.with_delay(
                priority=RECONCILE_PRIORITY,
                description=f"Reconcile {self.name} batch {index + 1}/{len(batches)}",
            )._scs_job_reconcile_batch(
                ids, dry_run=dry_run, pass_ts=self.reconcile_started_ts
            )
        if not batches:
            self._scs_finish_batch(0, 0, 0, False)
        if dry_run:
            return f"dry run: orders not fetched, {len(batches)} batch(es)"
        return f"{fetched} order event(s) fetched, {len(batches)} batch(es)"

    def _scs_fetch_orders(self, keys=None):
        """Orders updated since the last fetch, through the webhook intake:
        how many events it recorded (``keys``, a list, gets their
        idempotency keys).

        A channel that stops a long fetch at its rate limit (Amazon: a burst
        of 20 pages, then one every three minutes) keeps what it read: the
        orders are recorded and applied, the page to go on from is kept
        (``order_fetch_resume``), and the fetch is answered as incomplete
        (``IncompleteFetch``) rather than retried, which would undo them and
        read page 1 again. The next fetch goes on from that page; the window
        closes (``last_order_fetch_at``) once its last page is read.
        """
        now = fields.Datetime.now()
        since = self.last_order_fetch_at or fields.Datetime.subtract(now, days=1)
        since = fields.Datetime.subtract(since, minutes=self.order_fetch_overlap or 0)
        adapter = self._scs_adapter()
        token = None
        if adapter.resumes_orders and self.order_fetch_resume:
            try:
                state = json.loads(self.order_fetch_resume)
                token = state["token"]
                since = fields.Datetime.to_datetime(state["since"])
                now = fields.Datetime.to_datetime(state["until"])
            except (ValueError, KeyError, TypeError) as err:
                # no page to go on from: the window is read from its start
                _logger.warning(
                    "channel %s: order fetch progress unreadable (%s), read again",
                    self.id,
                    err,
                )
                token = None
        orders, stopped = [], None
        try:
            fetched = (
                adapter.fetch_orders(since, resume=token)
                if adapter.resumes_orders
                else adapter.fetch_orders(since)
            )
            # one by one: the orders read before a page fails are kept
            for order in fetched:
                orders.append(order)  # noqa: PERF402
        except NotImplementedError:
            return 0
        except ChannelError as err:
            # only the channel's rate limit stops a fetch that keeps what it
            # read; any other error retries it (or refuses it) as before
            if not (isinstance(err, RateLimitedError) and err.resume and orders):
                if token and not err.retryable:
                    # the page token is no longer taken: the window again
                    self.sudo().order_fetch_resume = False
                raise
            stopped = err
        parsed, refused = self._scs_fetched_events(orders)
        problems = []
        if refused:
            _logger.warning(
                "channel %s: fetched orders refused: %s", self.id, "; ".join(refused)
            )
            problems.append(
                _(
                    "%(count)s fetched order(s) refused: %(orders)s",
                    count=len(refused),
                    orders="; ".join(refused),
                )
            )
        Event = self.env["sync.event"]
        recorded = Event._scs_record_inbound(self, parsed, b"", "poll", enqueue=False)
        new_keys = [r["key"] for r in recorded if r["new"]]
        if keys is not None:
            keys.extend(new_keys)
        failed = []
        for event in Event.search(
            [
                ("channel_id", "=", self.id),
                ("direction", "=", "in"),
                ("idempotency_key", "in", new_keys),
            ],
            order="event_ts, id",
        ):
            # applied now, in this job: the comparison must see the reservation
            if not self._scs_apply_fetched(event):
                failed.append(f"{event.external_ref!r}: {event.error}")
        if failed:
            problems.append(
                _(
                    "%(count)s fetched order(s) not applied (dead letters): %(orders)s",
                    count=len(failed),
                    orders="; ".join(failed),
                )
            )
        if problems:
            self.last_reconcile_error = "\n".join(problems)
        if stopped:
            self.sudo().order_fetch_resume = json.dumps(
                {
                    "token": stopped.resume,
                    "since": fields.Datetime.to_string(since),
                    "until": fields.Datetime.to_string(now),
                }
            )
            raise IncompleteFetch(len(new_keys), len(orders), stopped)
        self.sudo().order_fetch_resume = False
        self.last_order_fetch_at = now
        return len(new_keys)

    @staticmethod
    def _scs_fetched_events(orders):
        """``(events, refused)``: the fetched orders as inbound events, and
        the orders the webhook route would refuse with a 400, each with its
        reason: one such order must not stop the others (nor the
        comparison)."""
        parsed = []
        refused = []
        for order in orders:
            kind = "cancel" if order.status in ("cancelled", "refunded") else "order"
            stamp = order.updated_at.isoformat() if order.updated_at else ""
            event = InboundEvent(
                kind=kind,
                idempotency_key=f"poll:{order.external_id}:{order.status}:{stamp}",
                event_time=order.updated_at,
                order=order,
            )
            try:
                check_inbound([event])
            except (ValueError, TypeError) as err:
                refused.append(f"{order.external_id!r}: {err}")
                continue
            parsed.append(event)
        return parsed, refused

    def _scs_apply_fetched(self, event):
        """Apply one fetched order event in a savepoint; whether it applied.

        One order that cannot be applied (a line's product moved to another
        company, ...) must not stop the others, the comparison, nor the
        order cursor: every later pass would fail on it again. It becomes a
        dead letter with its error, and the channel's responsible user gets
        the activity an event gets when it fails to apply from a webhook
        (``sync.event._scs_on_apply_failed``). Not a job of its own with
        retries, as a webhook's event gets: contention and serialization
        failures are not caught here, they retry the whole start job; what
        is left comes from the order or the configuration, which retrying
        minutes later would not change. Once it is fixed, the dead letter's
        Retry applies the order.
        """
        try:
            with self.env.cr.savepoint():
                event._scs_job_apply()
        except RetryableJobError:
            raise
        except psycopg2.OperationalError as err:
            if err.pgcode in PG_CONCURRENCY_ERRORS_TO_RETRY:
                raise
            self._scs_fetched_failed(event, err)
            return False
        except Exception as err:  # noqa: BLE001 - a dead letter, with its error
            self._scs_fetched_failed(event, err)
            return False
        return True

    def _scs_fetched_failed(self, event, err):
        _logger.warning(
            "channel %s: fetched order %s not applied: %s",
            self.id,
            event.external_ref,
            err,
        )
        message = str(err)[:2000] or type(err).__name__
        event._scs_on_apply_failed(exc_name=type(err).__name__, exc_message=message)

    def _scs_job_reconcile_batch(
        self, binding_ids, dry_run=False, rereads=0, pass_ts=None
    ):
        """Compare a batch of bindings with the channel, correct the drift.

        ``rereads``: how many times this batch was compared again after its
        order re-read found missed orders (see below); at ``MAX_REREADS``
        the orders are not read again, and a lower figure is left to the
        next pass: a channel whose orders keep coming would else keep the
        batch, and the pass, from ever ending.

        ``pass_ts``: when its pass began. A batch of a pass closed since
        (its jobs cancelled, one of them set to run again from the Jobs
        menu) does nothing: its figures would count in the next pass, and
        could close it before its own batches ran."""
        self.ensure_one()
        if self._scs_not_this_pass(pass_ts):
            return "not compared: its pass was closed; the next pass compares them"
        # this job's snapshot was taken before it began: events recorded
        # since are looked for on a fresh one (a margin for the job's start)
        started = fields.Datetime.subtract(fields.Datetime.now(), seconds=RECENT_MARGIN)
        bindings = (
            self.env["channel.binding"]
            .browse(binding_ids)
            .exists()
            .filtered(lambda b: b.active)
        )
        adapter = self._scs_adapter()
        updates = [b._scs_update(0) for b in bindings]
        probing = self._scs_wait_for_pause()
        try:
            levels = list(adapter.read_quantities(updates))
            probing._scs_answered()
        except ChannelError as err:
            if isinstance(err, UnreachableError):
                self._scs_pause(err)
            if err.retryable:
                # 5xx, 429, a timeout: the batch again, after the channel's
                # Retry-After or the job's retry pattern; when the retries
                # run out, _scs_on_reconcile_batch_failed says so
                raise retry_later(err) from err
            # refused for good (credentials, configuration): retrying cannot
            # help, the channel shows why and the pass closes
            self._scs_reconcile_batch_unread(str(err))
            return f"not compared: {err}"
        seen_of = bindings._scs_levels_seen(levels)
        drift = self._scs_compare(bindings, seen_of)
        # the orders were read when the pass began, the levels just now: a
        # sale made in between, whose webhook is late or lost, shows as the
        # channel holding less than Odoo. The orders are read again, after
        # the levels, before anything is put back on sale; when they cannot
        # be, such drift is left to the next pass (it keeps units off sale,
        # it never sells them twice)
        unsold = {}
        after_commit = False
        if (
            self._scs_lower_on_channel(drift)
            and not dry_run
            and self.fetch_orders
            and rereads >= MAX_REREADS
        ):
            unsold = {b: drift.pop(b) for b in self._scs_lower_on_channel(drift)}
            self.last_reconcile_error = _(
                "%(count)s binding(s) show less on the channel than Odoo"
                " publishes and were not corrected: orders kept coming while"
                " the batch compared them. The next pass compares them.",
                count=len(unsold),
            )
        elif self._scs_lower_on_channel(drift) and not dry_run and self.fetch_orders:
            # not retried when it fails: the rest of the batch (a channel
            # showing more than Odoo, an oversell risk) is corrected now
            keys = []
            fetched, error = self._scs_fetch_orders_watched(
                "pass", retry=False, keys=keys
            )
            if (
                fetched
                and not error
                and not self._scs_bindings_named(
                    self._scs_lower_on_channel(drift), self._scs_inbound_data_of(keys)
                )
            ):
                # orders of other SKUs only (a busy shop's sales, its orders'
                # updates): no lower figure is a sale Odoo has missed, the
                # batch is corrected as read, not compared again for orders
                # that never touched it. Its pushes wait for this job's
                # commit (see below), not to call the channel while this
                # transaction holds the stock those orders reserved.
                after_commit = True
            elif fetched:
                # the orders were reserved in this job (all of them, or
                # those read before the channel's rate limit stopped the
                # read): they are committed first, and the batch compared
                # again in a job of its own (correcting now would call the
                # channel while this transaction holds the reserved stock's
                # rows)
                self.with_delay(
                    priority=RECONCILE_PRIORITY,
                    description=f"Reconcile {self.name}: batch compared again"
                    " after missed orders",
                )._scs_job_reconcile_batch(
                    binding_ids, dry_run=dry_run, rereads=rereads + 1, pass_ts=pass_ts
                )
                return f"{fetched} missed order event(s) applied; compared again next"
            if error:
                unsold = {b: drift.pop(b) for b in self._scs_lower_on_channel(drift)}
                self.last_reconcile_error = _(
                    "%(count)s binding(s) show less on the channel than Odoo"
                    " publishes and were not corrected: the orders could not be"
                    " read again after their levels (%(error)s). The next pass"
                    " compares them.",
                    count=len(unsold),
                    error=error,
                )
        # Known causes do not count against the safety limit: a failed push
        # is already a visible dead letter or retry, and a SKU whose push job
        # is waiting (e.g. orders this pass just reserved) is in flight. What
        # is left is unexplained drift, the sign of a misconfiguration.
        # a sale (or a level) the channel sent and this channel's apply job
        # has not applied yet explains the channel's lower figure: pushing
        # Odoo's number now would offer the sold units again until the job
        # runs; the job pushes once it has reserved them. Only a lower
        # figure: a channel that shows more than Odoo publishes is corrected
        # whatever it sent (it could sell units Odoo does not have)
        awaiting = self._scs_bindings_awaiting_inbound(
            [
                b
                for b, (seen, pub, _r) in drift.items()
                if seen is not None and seen < pub
            ],
            since=started,
        )
        for binding in awaiting:
            del drift[binding]
        in_flight = self._scs_skus_in_flight([b.product_id.id for b in drift])
        unexplained = [
            b
            for b, (_seen, _pub, reason) in drift.items()
            if reason not in ("failed_push", NOT_APPLIED_YET)
            and b.product_id.id not in in_flight
        ]
        limited = self._scs_over_safety_limit(len(unexplained), len(bindings))
        # a channel with Push Stock off is compared, never corrected
        off = not self.sync_enabled
        correct = bool(drift) and not dry_run and not limited and not off
        # the pass figures are written before any HTTP call: a conflict on
        # the channel row retries the batch before anything was sent
        self._scs_finish_batch(
            len(bindings),
            len(drift) + len(unsold),
            len(drift) if correct else 0,
            limited,
        )
        if unsold:
            self._scs_record_drift(unsold, "orders not read after the level")
        if limited:
            self._scs_notify(
                _("Reconciliation held by its safety limit"),
                _(
                    "%(drift)s of %(total)s bindings of %(channel)s differ from "
                    "Odoo for no known reason (limit %(limit)s%%). Nothing was "
                    "corrected: check the channel's locations and listings, then "
                    "run the pass again.",
                    drift=len(unexplained),
                    total=len(bindings),
                    channel=self.name,
                    limit=self.reconcile_max_share,
                ),
            )
        if drift and (dry_run or limited or off):
            why = "dry run" if dry_run else "safety limit" if limited else "push off"
            self._scs_record_drift(drift, why)
        if correct:
            self._scs_note_levels_read(drift)
            reasons = {b.id: reason for b, (_s, _p, reason) in drift.items()}
            drifting = self.env["channel.binding"].union(*drift)
            if after_commit:
                drifting.with_delay(
                    priority=RECONCILE_PRIORITY,
                    description=f"Reconcile {self.name}: correct"
                    f" {len(drifting)} binding(s) after missed orders",
                )._scs_job_push_corrections(
                    reasons={str(b): reason for b, reason in reasons.items()}
                )
            else:
                drifting._scs_push(force=True, kind="correction", reasons=reasons)
        notes = [
            n
            for n, on in (("dry run", dry_run), ("held", limited), ("push off", off))
            if on
        ]
        return f"checked {len(bindings)}, drift {len(drift)} {' '.join(notes)}"

    def _scs_not_this_pass(self, pass_ts):
        """Whether a job of the pass begun at ``pass_ts`` belongs to no pass
        running now (None: a job enqueued before passes were named)."""
        if pass_ts is None:
            return False
        started = self.reconcile_started_ts or 0.0
        return pass_ts <= 0 or started <= 0 or round(pass_ts, 3) != round(started, 3)

    def _scs_compare(self, bindings, seen_of):
        """``{binding: (seen, published, reason)}`` of the bindings whose
        level on the channel (``seen_of``) is not what Odoo publishes,
        those whose last push the channel may not have applied yet aside
        (``_scs_not_applied_yet``)."""
        quantities = bindings._scs_quantities()
        drift = {}
        for binding in bindings:
            seen = seen_of.get(binding)
            published = quantities[binding.id].published
            if seen != published:
                drift[binding] = (
                    seen,
                    published,
                    self._scs_drift_reason(binding, seen),
                )
        for binding in self._scs_not_applied_yet(self._scs_adapter(), drift):
            seen, published, _reason = drift[binding]
            if seen < published:
                del drift[binding]
            else:
                # more than Odoo publishes is corrected whatever its cause
                # (it could sell units Odoo does not have): the push is sent
                # again, a known cause, not counted against the safety limit
                drift[binding] = (seen, published, NOT_APPLIED_YET)
        return drift

    @staticmethod
    def _scs_lower_on_channel(drift):
        """The bindings of ``drift`` whose channel shows less than Odoo
        publishes: what a sale Odoo does not know of yet looks like, a
        failed push's too (it may have landed, its answer lost)."""
        return [
            binding
            for binding, (seen, published, reason) in drift.items()
            if seen is not None and seen < published
        ]

    def _scs_note_levels_read(self, drift):
        """Record what the channel holds, as the pass just read it, before
        correcting it: the correction compares against it (Shopify's
        compare-and-set), as a level webhook's does, so that a hand edit is
        not taken for units sold there and kept; a sale made since the read
        still fails the compare and is not offered again."""
        now = fields.Datetime.now()
        for binding, (seen, _published, _reason) in drift.items():
            if seen is not None and (
                seen != binding.last_seen_qty or not binding.last_seen_at
            ):
                binding.write({"last_seen_qty": seen, "last_seen_at": now})

    def _scs_over_safety_limit(self, unexplained, batch_size):
        """Whether a batch's unexplained drift exceeds the safety share.

        The share is of the batch, but counted over at least
        ``SAFETY_MIN_BINDINGS``: a pass of many small batches (a batch size
        under 20, or its last batch) is held as a pass of one batch would
        be, and a small last batch is not held for one or two drifts. A
        channel with fewer bindings in all has too few for a share to mean
        much.
        """
        total = self.env["channel.binding"].search_count([("channel_id", "=", self.id)])
        if total < SAFETY_MIN_BINDINGS or not unexplained:
            return False
        share = 100.0 * unexplained / max(batch_size, SAFETY_MIN_BINDINGS)
        return share > (self.reconcile_max_share or 100.0)

    def _scs_bindings_awaiting_inbound(self, bindings, since=None):
        """Those of ``bindings`` that a queued inbound event of the channel
        names (an order line or a level not applied yet), or an order that
        failed to apply (a dead letter until it is retried or discarded):
        its units are sold on the channel and not reserved in Odoo, so the
        channel's lower figure is right, and a correction would put them
        back on sale.

        ``since``: also those an inbound event recorded since then names,
        whatever its state, read on a snapshot of now. The batch's own
        snapshot predates its read of the channel: a sale that arrived and
        was reserved while the channel answered is in neither that snapshot
        nor its quantities, and correcting it would offer the sold units
        again until the sale's own push. Such a SKU is left to that push.
        """
        if not bindings:
            return []
        recent = self._scs_inbound_data_since(since) if since else []
        self.env["sync.event"].flush_model(["state", "data", "kind"])
        self.env.cr.execute(
            SQL(
                "(SELECT data FROM sync_event WHERE channel_id = %s"
                " AND direction = 'in' AND state = 'queued' LIMIT %s)"
                " UNION ALL"
                " (SELECT data FROM sync_event WHERE channel_id = %s"
                " AND direction = 'in' AND kind = 'order'"
                " AND state IN ('dead', 'failed') LIMIT %s)",
                self.id,
                AWAITING_LIMIT,
                self.id,
                AWAITING_LIMIT,
            )
        )
        return self._scs_bindings_named(bindings, self.env.cr.fetchall() + recent)

    @staticmethod
    def _scs_bindings_named(bindings, rows):
        """Those of ``bindings`` that an item of the inbound events' data
        ``rows`` (``[(data,)]``, JSON) names, by SKU or listing id."""
        named = set()
        for (data,) in rows:
            try:
                data = json.loads(data or "{}")
            except ValueError:
                continue
            if not isinstance(data, dict):
                continue
            for keys in item_keys(data):
                named.update(keys)
        return [
            binding
            for binding in bindings
            if named.intersection({("sku", str(binding.sku))} if binding.sku else set())
            or named.intersection(
                ("ref", str(value))
                for value in (binding.external_variant_id, binding.external_id)
                if value
            )
        ]

    def _scs_inbound_data_of(self, keys):
        """``[(data,)]`` of the channel's inbound events of ``keys``."""
        if not keys:
            return []
        self.env["sync.event"].flush_model(["data"])
        self.env.cr.execute(
            SQL(
                "SELECT data FROM sync_event WHERE channel_id = %s"
                " AND direction = 'in' AND idempotency_key = ANY(%s)",
                self.id,
                list(keys),
            )
        )
        return self.env.cr.fetchall()

    def _scs_inbound_data_since(self, since):
        """``[(data,)]`` of the channel's inbound events recorded since
        ``since`` (a datetime), on a transaction of its own: a snapshot of
        now, not of the job's start."""
        with self.env.registry.cursor() as cr:
            cr.execute(
                SQL(
                    "SELECT data FROM sync_event WHERE channel_id = %s"
                    " AND direction = 'in' AND create_date >= %s"
                    " ORDER BY create_date DESC LIMIT %s",
                    self.id,
                    since,
                    AWAITING_LIMIT,
                )
            )
            return cr.fetchall()

    def _scs_skus_in_flight(self, product_ids):
        """Variants with a push job waiting to run."""
        if not product_ids:
            return set()
        keys = [f"stock_channel_sync.sku.{pid}" for pid in product_ids]
        keys += [f"{key}.force" for key in keys]
        self.env["queue.job"].flush_model(["identity_key", "state"])
        self.env.cr.execute(
            SQL(
                "SELECT identity_key FROM queue_job WHERE identity_key = ANY(%s)"
                " AND state IN ('pending', 'enqueued', 'wait_dependencies')",
                keys,
            )
        )
        return {int(key.split(".")[2]) for (key,) in self.env.cr.fetchall()}

    def _scs_not_applied_yet(self, adapter, drift):
        """Bindings whose last push the channel accepted so recently that it
        may not have applied it yet (Amazon applies a submission after it
        answered), and whose level still shows the number pushed before
        it: they publish exactly what that push sent, and that level is no
        sign of an edit, nor of a sale. Any other level (a hand edit, a
        sale) is drift as usual. ``_scs_compare`` leaves a lower one to the
        next pass, and sends a higher one again (it may be a hand edit back
        to that number: the channel could sell units Odoo does not have)."""
        lag = adapter.applies_within
        if not lag:
            return []
        since = time.time() - lag
        recent = {
            binding: seen
            for binding, (seen, published, _reason) in drift.items()
            if binding.push_state == "ok"
            and binding.last_pushed_qty == published
            and (binding.last_push_ts or 0.0) > since
        }
        if not recent:
            return []
        self.env["sync.event"].flush_model(["binding_id", "quantity", "state"])
        # the number each sent before its last push: the second newest push
        # the channel took
        self.env.cr.execute(
            SQL(
                "SELECT binding_id, quantity FROM ("
                " SELECT binding_id, quantity, row_number() OVER"
                " (PARTITION BY binding_id ORDER BY id DESC) AS n"
                " FROM sync_event WHERE binding_id = ANY(%s)"
                " AND direction = 'out' AND state = 'applied') pushes"
                " WHERE n = 2",
                [b.id for b in recent],
            )
        )
        before = dict(self.env.cr.fetchall())
        return [
            binding
            for binding, seen in recent.items()
            if binding.id in before
            and seen is not None
            and int(before[binding.id]) == seen
        ]

    @staticmethod
    def _scs_drift_reason(binding, seen):
        if binding.push_state == "failed":
            return "failed_push"
        if binding.push_state == "new" or seen is None:
            return "unknown"
        if seen != binding.last_pushed_qty:
            return "channel_edit"
        return "missed_webhook"

    def _scs_record_drift(self, drift, why):
        """Report drift that is not corrected (dry run, safety limit)."""
        stamp = time.time()
        self.env["sync.event"].sudo().create(
            [
                {
                    "direction": "out",
                    "channel_id": self.id,
                    "binding_id": binding.id,
                    "product_id": binding.product_id.id,
                    "sku": binding.sku,
                    "kind": "correction",
                    "idempotency_key": f"drift-{binding.id}-{stamp:.3f}",
                    "quantity": published,
                    "state": "skipped",
                    "reason": f"{why}: {reason}, channel has {seen}",
                    "change_ts": stamp,
                    "enqueue_ts": stamp,
                }
                for binding, (seen, published, reason) in drift.items()
            ]
        )

    def _scs_reconcile_batch_unread(self, error):
        """A batch that could not read the channel: the pass counts it as done,
        the channel shows the error, its responsible user gets an activity."""
        self._scs_reconcile_failed(
            _("Reconciliation could not read the channel: %s", error),
            _(
                "The reconciliation pass of %(channel)s could not read the "
                "channel's quantities: %(error)s.",
                channel=self.name,
                error=error,
            ),
        )

    def _scs_reconcile_failed(self, status, detail):
        """Close this batch of the pass (the last one closes the pass) with
        ``status`` on the channel and an activity saying ``detail``."""
        _logger.warning("channel %s: %s", self.id, status)
        self._scs_finish_batch(0, 0, 0, False)
        self.last_reconcile_error = status
        self._scs_notify(
            _("Reconciliation failed"),
            _(
                "%s Check the channel's settings, then run the pass again.",
                detail,
            ),
            key="reconcile_failed",
        )

    def _scs_on_reconcile_batch_failed(
        self, exc_name=None, exc_message=None, job_kwargs=None, **kw
    ):
        """queue_job ``on_fail`` hook: the batch's retries are spent. A batch
        found dead is handled late (see ``job_store.fail_dead_jobs``): one of
        a pass closed since closes nothing of the next one."""
        for channel in self:
            if job_kwargs is not None and channel._scs_not_this_pass(
                job_kwargs.get("pass_ts")
            ):
                continue
            channel._scs_reconcile_batch_unread(exc_message or exc_name or _("failed"))

    def _scs_reconcile_not_run(self, error):
        """A pass whose start job could not run (the order fetch failed for
        good, or its retries are spent): it closes without comparing, the
        channel shows why, its responsible user gets an activity."""
        self._scs_reconcile_failed(
            _("Reconciliation did not run, nothing was compared: %s", error),
            _(
                "The reconciliation pass of %(channel)s did not run: %(error)s."
                " Nothing was compared or corrected (comparing without the"
                " orders sold since the last pass would put their units back on"
                " sale).",
                channel=self.name,
                error=error,
            ),
        )

    def _scs_wait_for_pause(self):
        """A pass reads a paused channel no sooner than its pushes would:
        a read that times out holds a job slot (an HTTP worker) for the
        whole timeout. The attempt counts: a channel that stays down ends
        the pass with its error and an activity. Returns the channel when
        this job claimed its probe (see ``_scs_may_send``)."""
        blocked, claimed = self._scs_may_send(probe=True)
        if self.id in blocked:
            seconds = blocked[self.id]
            raise RetryableJobError(
                str(self._scs_paused_error(seconds)),
                seconds=max(1, math.ceil(seconds)),
            )
        # a pass may be the one to try the channel after its pause (it was
        # paused by a read, and no push waits for it): an answer closes it
        return self.browse(list(claimed))

    def _scs_on_reconcile_start_failed(
        self, exc_name=None, exc_message=None, job_created=None, **kw
    ):
        """queue_job ``on_fail`` hook: the start job's retries are spent (most
        often an order fetch that kept failing). Never a silent failure. A
        start job found dead is handled late: a pass closed since, or begun
        after the job, is not its pass."""
        for channel in self:
            started = channel.reconcile_started_ts or 0.0
            if job_created is not None and (started <= 0 or started > job_created + 1):
                continue
            channel._scs_reconcile_not_run(exc_message or exc_name or _("failed"))

    def _scs_finish_batch(self, checked, drift, corrections, limited):
        """Add a batch's figures to the pass; the last batch closes it.

        One atomic UPDATE per batch: concurrent batches of the same pass
        never lose each other's counts.
        """
        self.flush_recordset()
        self.env.cr.execute(
            SQL(
                """
                UPDATE sync_channel
                   SET last_reconcile_checked = last_reconcile_checked + %s,
                       last_reconcile_drift = last_reconcile_drift + %s,
                       last_reconcile_corrections = last_reconcile_corrections + %s,
                       last_reconcile_limited = last_reconcile_limited + %s,
                       reconcile_pending = GREATEST(reconcile_pending - 1, 0)
                 WHERE id = %s
             RETURNING reconcile_pending, reconcile_started_ts
                """,
                checked,
                drift,
                corrections,
                1 if limited else 0,
                self.id,
            ),
            # concurrent batches of a pass may meet a serialization failure
            # here, which queue_job retries: not an error for the log
            log_exceptions=False,
        )
        pending, started = self.env.cr.fetchone()
        self.invalidate_recordset(
            [
                "last_reconcile_checked",
                "last_reconcile_drift",
                "last_reconcile_corrections",
                "last_reconcile_limited",
                "reconcile_pending",
            ]
        )
        if pending == 0:
            self.write(
                {
                    "last_reconcile_at": fields.Datetime.now(),
                    "last_reconcile_duration": time.time() - started
                    if started and started > 0
                    else 0.0,
                }
            )
            self.invalidate_recordset(["last_reconcile_error"])
            if not self.last_reconcile_error:
                # a pass ran through: an earlier pass's failure is over (a
                # batch failing now raises its own activity after this)
                self._scs_resolve_activity(
                    _("Reconciliation failed"), _("A later pass ran through.")
                )
            # the dashboard counts passes over its period, not the last one
            self.env["sync.reconcile.pass"]._scs_record(self)
