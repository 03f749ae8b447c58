# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""A channel that does not answer is paused, so that it holds back no other.

A 5xx or a 429 answers at once; a timeout holds the job that sent it for the
channel's whole HTTP timeout, with the locks of the bindings it was pushing,
and a job runner slot (queue_job runs jobs in the HTTP workers). Tried again
on every stock change, a channel that hangs would keep the SKU jobs of every
other channel waiting behind its bindings' locks, and the workers busy.

So a timeout or a connection error pauses the channel: for 30 s, doubling
with each failure in a row up to 10 min. While it is paused, pushes to it
are not sent: each binding's push is recorded as failed and handed to its
retry job, due when the pause ends; the SKU job goes on with the other
channels. When the pause ends, one job tries the channel (it claims the
probe); the others wait for its answer. An answer closes the circuit; no
answer pauses it again, longer. The retries still count: a channel that
stays down turns its pushes into dead letters with an alert, as any failure.

The pause is written in a transaction of its own, so that the jobs running
meanwhile see it at once, and a job that rolls back (a retry) keeps it.
"""

import logging
import time
from contextlib import contextmanager
from datetime import timedelta

import psycopg2

from odoo import _, fields, models
from odoo.tools import SQL

from ..lib.adapters import RateLimitedError, RetryableChannelError, UnreachableError
from ..lib.fanout import NotStarted

_logger = logging.getLogger(__name__)

#: first pause after a channel did not answer (seconds), doubled each time
PAUSE_BASE = 30.0
#: longest pause
PAUSE_MAX = 600.0
#: how long the other jobs wait for the answer of the job that probes
PROBE_MARGIN = 5.0


class SyncChannel(models.Model):
    _inherit = "sync.channel"

    paused_until = fields.Float(
        "Paused Until (Unix Time)",
        readonly=True,
        copy=False,
        digits=(16, 3),
        help="Unix time until which pushes to the channel are held back, "
        "after it did not answer (timeout, connection refused).",
    )
    pause_count = fields.Integer(
        "Unanswered Attempts",
        readonly=True,
        copy=False,
        help="Attempts in a row the channel did not answer; 0 when it answers.",
    )
    paused_until_at = fields.Datetime(
        "Paused Until", compute="_compute_paused_until_at"
    )

    def _compute_paused_until_at(self):
        now = time.time()
        for channel in self:
            until = channel.paused_until or 0.0
            channel.paused_until_at = (
                fields.Datetime.now() + timedelta(seconds=until - now)
                if until > now
                else False
            )

    def _scs_pause_state(self):
        """``{channel id: (pause_count, paused_until)}`` as committed now.

        Read on a snapshot of now, not the job's, which was taken before a
        pause another job wrote meanwhile. A channel created in this
        transaction (not visible there) is read here.
        """
        if not self:
            return {}
        query = SQL(
            "SELECT id, pause_count, paused_until FROM sync_channel WHERE id = ANY(%s)",
            self.ids,
        )
        with self.env.registry.cursor() as cr:
            cr.execute(query)
            state = {row[0]: (row[1] or 0, row[2] or 0.0) for row in cr.fetchall()}
        if len(state) < len(self):
            self.env.cr.execute(query)
            for row in self.env.cr.fetchall():
                state.setdefault(row[0], (row[1] or 0, row[2] or 0.0))
        return state

    def _scs_may_send(self, probe=False):
        """``({channel id: seconds to wait}, {channel id claimed})``.

        The first: the channels that may not be tried now, paused or lately
        unanswered. Without ``probe`` (the SKU jobs, batches), a channel
        that did not answer lately is not tried even once its pause has
        ended: its pushes go to their retry jobs (in a second, when the
        pause is over), which lock only their own binding, so that no job
        holding many bindings waits on it. With ``probe`` (a retry job), a
        channel whose pause has ended is claimed for this job to try (the
        second set); another job trying it means waiting for its answer.
        """
        blocked, claimed = {}, set()
        now = time.time()
        for channel_id, (count, until) in self._scs_pause_state().items():
            if not count:
                if until > now:
                    # it answered, asking to wait (a Retry-After): no call
                    # before then, from any job (``_scs_throttle``)
                    blocked[channel_id] = until - now
                continue
            channel = self.browse(channel_id)
            if until > now:
                blocked[channel_id] = until - now
            elif not probe:
                blocked[channel_id] = 1.0
            elif channel._scs_claim_probe(now):
                claimed.add(channel_id)
            else:
                blocked[channel_id] = channel._scs_probe_window()
        return blocked, claimed

    @contextmanager
    def _scs_own_cursor(self):
        """A transaction of its own, that waits at most 2 s for the channel's
        row (a job that holds it commits within its run)."""
        with self.env.registry.cursor() as cr:
            cr.execute("SET LOCAL lock_timeout = '2s'")
            yield cr

    def _scs_probe_window(self):
        return (self.timeout or 10.0) + PROBE_MARGIN

    def _scs_claim_probe(self, now):
        """The pause has ended: whether this job is the one to try."""
        self.ensure_one()
        try:
            with self._scs_own_cursor() as cr:
                cr.execute(
                    SQL(
                        "UPDATE sync_channel SET paused_until = %s"
                        " WHERE id = %s AND COALESCE(pause_count, 0) > 0"
                        " AND COALESCE(paused_until, 0) <= %s RETURNING id",
                        now + self._scs_probe_window(),
                        self.id,
                        now,
                    )
                )
                if cr.fetchone():
                    return True
                cr.execute(
                    SQL("SELECT pause_count FROM sync_channel WHERE id = %s", self.id)
                )
                row = cr.fetchone()
                # answered since: nothing to claim
                return not (row and row[0])
        except psycopg2.errors.LockNotAvailable:
            return False

    def _scs_pause(self, error):
        """The channel did not answer: pause it (a transaction of its own).

        Returns the seconds paused (0 when the pause could not be written),
        which the failed push's retry job waits: an earlier try would find
        the channel paused, and spend an attempt for nothing.
        """
        self.ensure_one()
        now = time.time()
        try:
            with self._scs_own_cursor() as cr:
                cr.execute(
                    SQL(
                        "UPDATE sync_channel"
                        " SET pause_count = COALESCE(pause_count, 0) + 1,"
                        " paused_until = %s + GREATEST(%s,"
                        " LEAST(%s, %s * power(2, COALESCE(pause_count, 0))))"
                        " WHERE id = %s RETURNING paused_until, pause_count",
                        now,
                        # a call given up on goes on within the channel's
                        # timeout: no push is sent before it has ended
                        self._scs_probe_window(),
                        PAUSE_MAX,
                        PAUSE_BASE,
                        self.id,
                    ),
                    log_exceptions=False,
                )
                row = cr.fetchone()
        except psycopg2.errors.LockNotAvailable:
            _logger.info("channel %s: not answering; pause not recorded", self.id)
            return 0.0
        if not row:
            return 0.0  # not committed yet (created in this transaction)
        until, count = row
        _logger.warning(
            "channel %s did not answer (%s): pushes paused for %.0f s (%s in a row)",
            self.id,
            error,
            until - now,
            count,
        )
        if isinstance(error, UnreachableError) and not error.retry_after:
            error.retry_after = until - now
        return until - now

    def _scs_answered(self):
        """The channel answered after a pause: close its circuit (in a
        transaction of its own, as the pause was written: the job's own
        snapshot predates the probe's claim, and its update would fail).
        Whether it closed (another job holding the channel's row: later)."""
        if not self:
            return True
        try:
            with self._scs_own_cursor() as cr:
                cr.execute(
                    SQL(
                        "UPDATE sync_channel SET pause_count = 0, paused_until = 0"
                        " WHERE id = ANY(%s) AND pause_count > 0",
                        self.ids,
                    )
                )
        except psycopg2.errors.LockNotAvailable:
            _logger.info("channels %s answered; circuit closed later", self.ids)
            return False
        _logger.info("channels %s answered again: pushes resume", self.ids)
        return True

    def _scs_outcome(self, results, error, wait=None):
        """``(results, error)`` of a push to this channel, the circuit kept.

        A wait given up on (``TimeoutError``) is a channel that did not
        answer. A channel that did not answer is paused, and each of its
        failed pushes waits for the pause to end before its retry.
        """
        self.ensure_one()
        if isinstance(error, NotStarted):
            # never sent: the server had no free thread for it in time (a
            # SKU on more channels than the pool holds); the channel is not
            # to blame, and its push is retried in a second
            error = RetryableChannelError(
                _(
                    "not sent within %s s: the server's calls to channels were"
                    " all busy; tried again",
                    wait,
                ),
                retry_after=1,
            )
        elif isinstance(error, TimeoutError):
            error = UnreachableError(
                _("no answer within %s s; the call goes on in the background", wait)
            )
        errors = [error] if error is not None else [r.error for r in results]
        unanswered = next((e for e in errors if isinstance(e, UnreachableError)), None)
        if unanswered is not None:
            paused = self._scs_pause(unanswered)
            for item_error in errors:
                if isinstance(item_error, UnreachableError) and paused:
                    item_error.retry_after = item_error.retry_after or paused
        return results, error

    def _scs_told_to_wait(self, error):
        """An answer of the channel that asks to wait (a 429, or a 5xx with
        Retry-After) holds every call to it until then (``_scs_throttle``);
        not a wait this module imposed itself (``held_back``)."""
        delay = getattr(error, "retry_after", None)
        if (
            delay
            and (
                isinstance(error, RateLimitedError)
                or (getattr(error, "status", None) or 0) >= 500
            )
            and not getattr(error, "held_back", False)
        ):
            self._scs_throttle(delay)

    def _scs_throttle(self, seconds):
        """The channel answered asking to wait ``seconds`` (a 429 or 503
        with Retry-After, mostly a limit of the whole account): no job calls
        it before then, not only the retry of the push that was told so.
        Not a pause (it answered): the count of calls unanswered stays."""
        self.ensure_one()
        until = time.time() + seconds
        # a batch call refused whole fails each of its bindings: one write
        # per channel and answer, not one per binding
        noted = self.env.cr.cache.setdefault("scs_throttled", {})
        if noted.get(self.id, 0.0) >= until - 1.0:
            return
        noted[self.id] = until
        try:
            with self._scs_own_cursor() as cr:
                cr.execute(
                    SQL(
                        "UPDATE sync_channel SET paused_until = %s WHERE id = %s"
                        " AND COALESCE(paused_until, 0) < %s",
                        until,
                        self.id,
                        until,
                    ),
                    log_exceptions=False,
                )
        except psycopg2.errors.LockNotAvailable:
            _logger.info("channel %s: asked to wait; not recorded", self.id)

    def _scs_paused_error(self, seconds):
        """What a push held back by the pause records (it is retried then)."""
        if not self.pause_count:
            error = RateLimitedError(
                _(
                    "not sent: the channel asked to wait; pushes resume in"
                    " %(seconds).0f s",
                    seconds=seconds,
                ),
                retry_after=max(1.0, seconds),
            )
        else:
            error = UnreachableError(
                _(
                    "not sent: the channel did not answer %(count)s time(s) in a"
                    " row; pushes are paused for %(seconds).0f s",
                    count=max(1, self.pause_count),
                    seconds=seconds,
                ),
                retry_after=max(1.0, seconds),
            )
        # held back here, not answered so by the channel
        error.held_back = True
        return error
