# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Applying a channel's inbound events: one job per channel and subject.

The webhook route records an event and leaves it *queued*; a job keyed by
the channel and the event's subject (the SKU when the event concerns one
item, else the external order) applies every queued event of that subject,
oldest first. While that job waits, further events of the subject join it
instead of costing a job each (``job_store`` makes sure none is left
behind). Under a flash sale the job runner therefore dispatches one job per
busy SKU, not one per webhook, and it shares its HTTP workers with the
webhook route.

Within one run, an inventory level that a newer level of the same item
supersedes is recorded as stale without being applied (last write wins, as
it would be if they came one by one). Orders are all applied, one by one.
An event whose application fails for a reason of its own goes to a job of
its own, with the retry pattern and the dead-letter hook of event jobs; the
others are not held back by it. Lock contention and serialization failures
retry the whole run.
"""

import psycopg2

from odoo import _, models
from odoo.tools import SQL

from odoo.addons.queue_job.controllers.main import PG_CONCURRENCY_ERRORS_TO_RETRY
from odoo.addons.queue_job.exception import RetryableJobError
from odoo.addons.queue_job.utils import must_run_without_delay

from .job_store import store_jobs

#: events applied by one run of the job; the rest go to a follow-up job
APPLY_BATCH = 200


class SyncChannel(models.Model):
    _inherit = "sync.channel"

    def _scs_inbound_identity(self, subject):
        return f"stock_channel_sync.in.{self.id}.{subject}"

    def _scs_enqueue_inbound(self, events_vals):
        """One apply job per subject of ``events_vals`` (coalesced, see above)."""
        self.ensure_one()
        subjects = {}
        for vals in events_vals:
            subjects.setdefault(vals["subject"], vals)
        if must_run_without_delay(self.env):
            for subject in subjects:
                self._scs_job_apply_inbound(subject)
            return []
        return store_jobs(
            self.env,
            [
                (
                    self._scs_job_apply_inbound,
                    {"subject": subject},
                    self._scs_inbound_identity(subject),
                    f"Apply {vals['kind']} {subject} ({self.name})",
                    None,
                )
                for subject, vals in subjects.items()
            ],
        )

    def _scs_queued_events(self, subject, limit=APPLY_BATCH):
        return (
            self.env["sync.event"]
            .sudo()
            .search(
                [
                    ("channel_id", "=", self.id),
                    ("direction", "=", "in"),
                    ("state", "=", "queued"),
                    ("subject", "=", subject),
                ],
                order="event_ts, id",
                limit=limit,
            )
        )

    def _scs_job_apply_inbound(self, subject):
        """Apply the queued inbound events of one subject, oldest first."""
        self.ensure_one()
        events = self._scs_queued_events(subject, limit=APPLY_BATCH + 1)
        follow_up = len(events) > APPLY_BATCH
        events = events[:APPLY_BATCH]
        superseded = events._scs_superseded_levels()
        if superseded:
            newer = next(iter(superseded.values()))
            events.browse([event.id for event in superseded]).write(
                {
                    "state": "stale",
                    "reason": _(
                        "superseded by a newer level (%s)", newer.idempotency_key
                    ),
                }
            )
        counts = {"applied": 0, "stale": len(superseded), "handed_over": 0}
        for event in events:
            if event in superseded:
                continue
            try:
                with self.env.cr.savepoint():
                    event._scs_job_apply()
            except RetryableJobError:
                raise
            except psycopg2.OperationalError as err:
                if err.pgcode in PG_CONCURRENCY_ERRORS_TO_RETRY:
                    raise
                event._scs_hand_over(err)
                counts["handed_over"] += 1
            except Exception as err:  # noqa: BLE001 - retried by a job of its own
                event._scs_hand_over(err)
                counts["handed_over"] += 1
            else:
                counts["applied"] += 1
        if follow_up:
            self._scs_enqueue_inbound([{"subject": subject, "kind": "events"}])
        return (
            "{applied} applied, {stale} superseded, {handed_over} handed over".format(
                **counts
            )
            + (", more to come" if follow_up else "")
        )

    def _scs_on_apply_inbound_failed(self, exc_name=None, exc_message=None, **kw):
        """queue_job ``on_fail`` hook: no queued event is left without a job.

        queue_job hands the hook the error, not the job's arguments, so it
        turns into dead letters (visible, retryable, with an activity) every
        queued inbound event of the channel whose subject has no job waiting
        or running any more: the failed job's events, and any orphan.
        """
        for channel in self.sudo():
            channel._scs_dead_orphans(exc_message or exc_name)

    def _scs_dead_orphans(self, error):
        self.ensure_one()
        queued = self._scs_queued_events_all()
        if not queued:
            return queued
        keys = {self._scs_inbound_identity(s): s for s in set(queued.mapped("subject"))}
        self.env["queue.job"].flush_model(["identity_key", "state"])
        self.env.cr.execute(
            SQL(
                "SELECT DISTINCT identity_key FROM queue_job"
                " WHERE identity_key = ANY(%s)"
                " AND state IN ('wait_dependencies', 'pending', 'enqueued', 'started')",
                list(keys),
            )
        )
        live = {keys[row[0]] for row in self.env.cr.fetchall()}
        orphans = queued.filtered(lambda e: e.subject not in live)
        for event in orphans:
            event._scs_set_state("dead", error=error, attempts=event.attempts + 1)
            self._scs_notify_dead_letter(event)
        return orphans

    def _scs_queued_events_all(self):
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
            )
        )
