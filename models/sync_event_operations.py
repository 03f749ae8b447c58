# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Operations on the event log: dead letters, replay and retention."""

import logging
import math
import time

import psycopg2.errors

from odoo import _, api, fields, models
from odoo.exceptions import UserError
from odoo.tools import SQL

from .sync_event import APPLY_KINDS, FINAL_STATES, like_prefix

_logger = logging.getLogger(__name__)

#: the longest retention honoured (days)
MAX_RETENTION_DAYS = 36500


#: rows one retention call deletes, per kind (final, problems)
GC_CHUNK = 10000

#: an order's applied events are its history: what applying a later state
#: of it, or a retried dead letter of it, compares with (a newer state, the
#: refunds taken out). They are kept while the order still holds an open
#: transfer or has an event not done with (queued, failed, dead, attention)
ORDER_HISTORY_KEPT = SQL(
    """
    AND NOT (e.direction = 'in' AND e.kind IN ('order', 'cancel')
             AND e.external_ref IS NOT NULL
             AND (EXISTS (SELECT 1 FROM stock_picking p
                           WHERE p.scs_channel_id = e.channel_id
                             AND p.scs_external_order_id = e.external_ref
                             AND p.state NOT IN ('done', 'cancel'))
                  OR EXISTS (SELECT 1 FROM sync_event o
                              WHERE o.channel_id = e.channel_id
                                AND o.direction = 'in'
                                AND o.kind IN ('order', 'cancel')
                                AND o.external_ref = e.external_ref
                                AND o.state NOT IN %s
                                -- replayed: the replay is what counts
                                AND NOT EXISTS (
                                    SELECT 1 FROM sync_event r
                                     WHERE r.replay_of_id = o.id))))
    """,
    FINAL_STATES,
)


class SyncEventOperations(models.Model):
    """Dead letters, replay and retention."""

    _inherit = "sync.event"

    discarded_from = fields.Selection(
        [("dead", "Dead letter"), ("failed", "Failed"), ("attention", "Attention")],
        readonly=True,
        help="What a discarded event was: a discarded dead letter still counts "
        "as a failure on the dashboard. Set too on a dead letter retried by "
        "hand until its push lands: a retry that sends nothing closes it as a "
        "discarded dead letter, not as skipped.",
    )

    # -- actions --
    def action_retry(self):
        """Try dead or failed events again (one or many).

        Outbound: the binding is pushed again with today's number (a retry
        never resends a stale quantity). Inbound: the event is applied again
        by a new job; applying is idempotent.

        The work is done as the superuser, so the caller's right to change
        these events (sync managers of their company) is checked first.
        """
        self.check_access("write")
        events = self.sudo().filtered(lambda e: e.state in ("dead", "failed"))
        # one push per binding carries today's number: of several dead
        # letters of a binding, the newest is retried, the others close
        newest = {}
        for event in events.filtered(lambda e: e.direction == "out" and e.binding_id):
            if event.id > newest.get(event.binding_id, event).id:
                newest[event.binding_id] = event
            newest.setdefault(event.binding_id, event)
        for event in events:
            if (
                event.direction == "out"
                and event.binding_id
                and newest[event.binding_id] != event
            ):
                event._scs_close_unsent(_("superseded by the retry of a newer push"))
                continue
            if event.direction == "out":
                binding = event.binding_id
                if not binding:
                    event._scs_close_unsent(_("not sent: its binding was deleted"))
                    continue
                binding.pending_event_id = event
                # now, not when a retry job already waiting was due
                binding._scs_enqueue_retry(reschedule=True)
                event._scs_set_state(
                    "queued",
                    error=False,
                    discarded_from="dead" if event.state == "dead" else False,
                )
            else:
                event._scs_set_state("queued", error=False)
                event.with_delay(
                    identity_key=event._scs_apply_identity(),
                    description=f"Retry {event.kind} {event.external_ref or ''}",
                )._scs_job_apply()
        message = _("%s event(s) retried in the background.", len(events))
        channels = events.filtered(lambda e: e.direction == "out").channel_id
        message += channels._scs_paused_note()
        return self._scs_answer(
            _("Retry"),
            message,
            len(self) - len(events),
            _(
                "%s left as they were: only dead and failed events are retried"
                " (a push is sent again by the binding's Push Now)."
            ),
        )

    def _scs_answer(self, title, message, left, left_message):
        """A button's notification: what it did, then (``left_message``, with
        ``%s`` for how many) why it did nothing to the ``left`` others."""
        if left:
            message += " " + left_message % left
        return self.env["sync.channel"]._scs_notification(title, message)

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
        """Close events on purpose, with the reason. A binding waiting on a
        discarded push lets it go: its next push sends a new number (it is
        still marked failing until one lands), and retention may then
        remove the event."""
        events = self.sudo().filtered(
            lambda e: e.state in ("dead", "failed", "attention")
        )
        for event in events:
            event._scs_set_state("discarded", reason=reason, discarded_from=event.state)
        if events:
            self.env["channel.binding"].sudo().search(
                [("pending_event_id", "in", events.ids)]
            ).pending_event_id = False
        return True

    def _scs_close_unsent(self, reason):
        """Close a dead or failed push that Retry does not send (another
        push of its binding carries today's number, or its binding is gone).
        A dead letter stays a failure in the figures (discarded from dead),
        as when a later push closes it; a push still being retried is
        skipped."""
        for event in self:
            if event.state == "dead":
                event._scs_set_state("discarded", reason=reason, discarded_from="dead")
            else:
                event._scs_set_state("skipped", reason=reason, error=False)

    def action_replay(self):
        """Apply inbound events again, as new attempts (history is kept).

        Each replay is a new event (key ``<key>:replay:<n>``) pointing to the
        original; applying is idempotent, so replaying an applied order
        reserves nothing twice. Sync managers only (checked: the replays are
        written as the superuser).
        """
        self.check_access("write")
        replays = self.browse()
        for event in self.sudo().filtered(lambda e: e.direction == "in"):
            if event.kind not in APPLY_KINDS:
                continue
            replay = event._scs_copy_as_replay()
            replay.with_delay(
                identity_key=replay._scs_apply_identity(),
                description=f"Replay {event.kind} {event.external_ref or ''}",
            )._scs_job_apply()
            replays |= replay
        return replays

    def action_replay_selected(self):
        """The Replay button: replays, and says how many and why not the
        others (only inbound orders, cancellations and levels replay; a
        push is sent again by Retry or Push Now)."""
        replays = self.action_replay()
        return self._scs_answer(
            _("Replay"),
            _(
                "%s event(s) replayed in the background: applying is idempotent,"
                " what was applied changes nothing.",
                len(replays),
            ),
            len(self) - len(replays),
            _(
                "%s not replayed: only inbound orders, cancellations and levels"
                " are (a push is sent again by Retry or the binding's Push Now)."
            ),
        )

    def _scs_copy_as_replay(self):
        """A new event replaying this one, keyed ``<key>:replay:<n>``.

        ``n`` follows the highest replay number in the log, not their
        count: retention may have deleted earlier replays, and a count
        would give a number still in use. A replay recorded at the same
        moment by someone else takes the number: the next one is tried.
        """
        self.ensure_one()
        prefix = f"{self.idempotency_key}:replay:"
        keys = self.search(
            [
                ("channel_id", "=", self.channel_id.id),
                ("direction", "=", self.direction),
                (
                    "idempotency_key",
                    "=like",
                    like_prefix(prefix),
                ),
            ]
        ).mapped("idempotency_key")
        numbers = [int(k[len(prefix) :]) for k in keys if k[len(prefix) :].isdigit()]
        number = max(numbers, default=0) + 1
        for _attempt in range(5):
            try:
                with self.env.cr.savepoint():
                    return self.copy(
                        {
                            "idempotency_key": f"{prefix}{number}",
                            "replay_of_id": self.id,
                            "state": "queued",
                            "error": False,
                            "reason": False,
                            "attempts": 0,
                            "enqueue_ts": time.time(),
                            "change_ts": time.time(),
                        }
                    )
            except psycopg2.errors.UniqueViolation:
                number += 1
        raise UserError(
            _("Too many replays of %s at once: try again.", self.display_name)
        )

    # -- retention --
    @api.model
    def _scs_retention_days(self, name, default):
        """A retention parameter in days. A value that is no number of days
        (``"7.5"`` is read as 7; ``"a week"``, or below 1) keeps the
        default, with an error in the log, and one over a century is a
        century: retention never stops on it."""
        key = f"stock_channel_sync.{name}"
        value = self.env["ir.config_parameter"].sudo().get_param(key, default)
        try:
            number = float(value)
            # a number too large to count ("1e400") means everything kept
            days = MAX_RETENTION_DAYS if number == math.inf else int(number)
        except (TypeError, ValueError, OverflowError):
            days = 0
        if days < 1:
            _logger.error("invalid %s %r: %s days kept", key, value, default)
            return default
        # a century keeps everything: more would overflow the date it counts
        # back to, and the error would stop retention
        return min(days, MAX_RETENTION_DAYS)

    @api.autovacuum
    def _gc_sync_events(self):
        """Delete processed events past their retention; keep problems longer.

        An event's age counts from its last change, not its creation: a dead
        letter retried or discarded today is today's news. An event still
        pointed to is kept: the original of a replay (the replay says what
        it replays) and the failed push a binding still waits on; so is the
        history of an order still open here (``ORDER_HISTORY_KEPT``).

        One call deletes one chunk (``GC_CHUNK`` rows) of each kind and
        answers ``(deleted, remaining)``: Odoo's autovacuum commits after
        each call and calls again while something remains, within the
        cron's time, so a first run over millions of rows makes progress
        that a timeout cannot undo (an original goes once its replays have
        gone, in a later call). The server log keeps the full history (one
        JSON line per event state, with its reason).
        """
        days = self._scs_retention_days("event_retention_days", 30)
        problem_days = self._scs_retention_days("problem_retention_days", 180)
        self.flush_model()
        self.env["channel.binding"].flush_model(["pending_event_id"])
        self.env["stock.picking"].flush_model(
            ["scs_channel_id", "scs_external_order_id", "state"]
        )
        deleted, dead_of = 0, set()
        for states, age, history in (
            (list(FINAL_STATES), days, ORDER_HISTORY_KEPT),
            (["dead", "failed", "attention"], problem_days, SQL()),
        ):
            limit = fields.Datetime.subtract(fields.Datetime.now(), days=age)
            self.env.cr.execute(
                SQL(
                    """
                    DELETE FROM sync_event WHERE id IN (
                        SELECT e.id FROM sync_event e
                         WHERE e.state = ANY(%s)
                           AND COALESCE(e.write_date, e.create_date) < %s
                           AND NOT EXISTS (
                               SELECT 1 FROM sync_event r
                                WHERE r.replay_of_id = e.id)
                           AND NOT EXISTS (
                               SELECT 1 FROM channel_binding b
                                WHERE b.pending_event_id = e.id)
                           %s
                         LIMIT %s)
                    RETURNING channel_id, state
                    """,
                    states,
                    limit,
                    history,
                    GC_CHUNK,
                )
            )
            rows = self.env.cr.fetchall()
            deleted += len(rows)
            dead_of.update(channel for channel, state in rows if state == "dead")
        # sends marked by jobs rolled back since (see
        # ``channel.binding._scs_mark_sent``): read for a day at most
        self.env.cr.execute(
            SQL(
                "DELETE FROM stock_channel_sync_sent WHERE sent_ts < %s",
                time.time() - 86400,
            )
        )
        if deleted:
            self.invalidate_model()
            # a dead letter gone by age: its channel's alert may be about
            # nothing now
            self.env["sync.channel"].browse(dead_of - {None})._scs_dead_letters_gone()
            _logger.info("sync events: %s deleted by retention", deleted)
        # anything deleted may have freed an original: look again
        return deleted, 1 if deleted else 0
