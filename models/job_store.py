# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Store queue_job jobs in bulk, coalesced with a job that is still waiting.

Both job kinds of this module (the push of a SKU, the application of a
channel's inbound events) read the database when they run. A change may
therefore be left to a job that is already waiting, but only if that job is
certain to run after the change commits. queue_job's own ``identity_key``
check (a search, then an insert) does not give that: under PostgreSQL's
repeatable read, the transaction that finds the job *pending* in its
snapshot may commit after the job has been started and has taken its own
snapshot, and the change is then never seen by any job.

Here a waiting job absorbs a change only while this transaction holds that
job in a shared advisory lock (``HOLD_LOCK``, until it ends), and the job,
when it starts, claims its lock exclusively without waiting (``claim_job``):
held by a transaction that has not committed, the job is put off for a
second, so it always runs on a snapshot that holds the change. The lock is
shared: transactions adding to the same waiting job do not wait for each
other. A job that is already enqueued or running, or that changed since
this transaction's snapshot (a serialization failure on a share lock of
its row, released at once), gets a new job instead: a spare job costs a
little work, a missing one loses an update.

The lock is not one on the job's row: queue_job's runner marks the jobs it
starts with an ``UPDATE`` in its single loop, and a transaction that held a
row lock until it ended would stall every job of the server meanwhile (Odoo
runs the pre-commit hooks at every flushing savepoint, not only at the
commit, so the hold may come long before the commit). The row's share
lock, which tells whether the job changed since this transaction's
snapshot, is taken in a savepoint and released with it at once.

The webhook route does not use this lock: a delivery per request would
write the job's row each time. It counts on the channel's job under a lock
of its own (see ``sync.event._scs_insert_delivered``).

The jobs are built by queue_job's own ``Job`` class and written with one
``INSERT`` (see ``insert_jobs``), as ``with_delay`` would write them one by
one.
"""

import psycopg2.errors

from odoo.tools import SQL

from odoo.addons.queue_job.exception import RetryableJobError
from odoo.addons.queue_job.job import Job


class NewJob(Job):
    """A job created here, which depends on no other job.

    queue_job's ``_store_values`` asks a job for its dependencies, and a job
    without any answers with two searches (about 40 µs each, 5 % of a
    50-line delivery's enqueue). A new job of this module has none.
    """

    @property
    def depends_on(self):
        return set()

    @property
    def reverse_depends_on(self):
        return set()


#: advisory lock class of "a transaction counts on this waiting job"
#: (shared, until it ends) and "this job runs" (exclusive, taken by the job
#: when it starts); the key is ``hashtext(uuid)`` of the job
HOLD_LOCK = 0x5C7


def hold_pending_jobs(env, keys, savepoint=True):
    """Hold the pending jobs of ``keys``; tell which keys have a running job.

    Returns ``(held, running)``: the identity keys whose pending job this
    transaction now holds (until it ends: the job cannot start before), and
    those whose job is enqueued or started. A serialization failure (a job
    changed since our snapshot) means that no key is held; with
    ``savepoint=False`` it is raised, for a caller that handles it.
    """
    if not keys:
        return set(), set()
    env["queue.job"].flush_model(["identity_key", "state"])
    keys = sorted(set(keys))
    # a job enqueueing its own follow-up must not count itself as waiting
    own = env.context.get("job_uuid") or ""
    # first the lock, so that the job, if it starts from now on, waits for
    # this transaction; then its row, which tells whether it changed since
    # our snapshot (it may have started, read and ended meanwhile). A job
    # whose lock cannot be shared has started: it gets no hold
    env.cr.execute(
        SQL(
            """
            WITH pending AS MATERIALIZED (
                SELECT identity_key, uuid FROM queue_job
                 WHERE identity_key = ANY(%s) AND state = 'pending' AND uuid != %s
                 ORDER BY id
            )
            SELECT identity_key, uuid FROM pending
             WHERE pg_try_advisory_xact_lock_shared(%s, hashtext(uuid))
            """,
            keys,
            own,
            HOLD_LOCK,
        )
    )
    locked = dict(env.cr.fetchall())
    query = SQL(
        """
        WITH held AS (
            SELECT identity_key FROM queue_job
             WHERE uuid = ANY(%s) AND state = 'pending'
             ORDER BY id FOR SHARE
        )
        SELECT identity_key, 'held' FROM held
        UNION ALL
        SELECT identity_key, state FROM queue_job
         WHERE identity_key = ANY(%s) AND state IN ('enqueued', 'started')
        """,
        list(locked.values()),
        keys,
    )
    try:
        with env.cr.savepoint(flush=False):
            # an expected serialization failure is not a "bad query" in the log
            env.cr.execute(query, log_exceptions=False)
            # the share lock only tells whether the row changed since our
            # snapshot; kept, it would make the runner wait for our commit
            raise _ReleaseRowLocks(env.cr.fetchall())
    except _ReleaseRowLocks as released:
        rows = released.rows
    except psycopg2.errors.SerializationFailure:
        if not savepoint:
            raise
        # the runner took a job since our snapshot: new jobs
        return set(), set(keys)
    held = {key for key, state in rows if state == "held"}
    return held, {key for key, state in rows if state != "held"}


class _ReleaseRowLocks(Exception):
    """Rolls back to the savepoint, which releases the row locks taken in
    it, and carries the rows read under them out of it."""

    def __init__(self, rows):
        super().__init__("row locks released")
        self.rows = rows


def claim_job(env):
    """Start the running job: put it off while a transaction that counts on
    it (``hold_pending_jobs``) has not ended.

    Without waiting: the job goes back to waiting for a second (not counted
    as a try), and its worker serves other jobs meanwhile. Nothing to claim
    outside a job (a method called directly).
    """
    uuid = env.context.get("job_uuid")
    if not uuid:
        return
    env.cr.execute(
        SQL("SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))", HOLD_LOCK, uuid)
    )
    if not env.cr.fetchone()[0]:
        raise RetryableJobError(
            "a transaction that counts on this job has not committed yet",
            seconds=1,
            ignore_retry=True,
        )


def store_jobs(env, specs, running_eta=None, hold=None):
    """Create the jobs of ``specs`` that no held pending job covers.

    ``specs``: ``(method, kwargs, identity_key, description, eta)`` tuples,
    ``method`` a bound method of a recordset. ``running_eta``, when given,
    is the eta of a job created while the key's job is running (a burst
    window); an ``eta`` of 0 means at once, whatever runs. ``hold`` is the
    result of ``hold_pending_jobs`` when the caller took it already.
    Returns the new ``Job`` objects.
    """
    specs = list(specs)
    held, running = hold or hold_pending_jobs(env, [spec[2] for spec in specs])
    todo = [spec for spec in specs if spec[2] not in held]
    jobs = []
    seen = set()
    for method, kwargs, key, description, eta in todo:
        if key in seen:
            continue
        seen.add(key)
        jobs.append(
            NewJob(
                method,
                kwargs=kwargs,
                eta=eta if eta is not None else running_eta if key in running else None,
                identity_key=key,
                description=description,
            )
        )
    if jobs:
        insert_jobs(env, jobs)
    return jobs


def insert_jobs(env, jobs):
    """Write ``jobs`` as queue_job rows with one ``INSERT``.

    The values are queue_job's own (``Job._store_values``), converted by
    each field as the ORM's ``_create`` converts them; ``queue.job`` has no
    default, no stored computed field and, created with queue_job's own
    context, logs no message, so the ORM's ``create`` would add nothing but
    its cost: measured, about 10 ms for the 50 jobs of a 50-line delivery,
    inside the user's transaction. The runner is notified by queue_job's
    trigger on the table, as for any insert.
    """
    QueueJob = env["queue.job"].sudo()
    rows = [job._store_values(create=True) for job in jobs]
    names = sorted({name for row in rows for name in row})
    model_fields = [QueueJob._fields[name] for name in names]
    values = [
        tuple(
            field.convert_to_column_insert(row[field.name], QueueJob, row)
            if field.name in row
            else None
            for field in model_fields
        )
        for row in rows
    ]
    # queue.job keeps no create/write log columns (_log_access = False)
    env.cr.execute(
        SQL(
            "INSERT INTO queue_job (%s) VALUES %s",
            SQL(", ").join(SQL.identifier(name) for name in names),
            SQL(", ").join(values),
        )
    )


def lock_rows_or_retry(
    env, table, ids, reason, nowait=False, seconds=1, skip_locked=False
):
    """Lock rows of ``table`` (``FOR NO KEY UPDATE``), or retry the job.

    A serialization failure (the rows changed since this transaction's
    snapshot, so what it read may be old) or, with ``nowait``, a row that
    another transaction holds, raises ``RetryableJobError``: the job runs
    again ``seconds`` later on a fresh snapshot, without spending a retry.
    Expected contention, so not logged as a bad query. With
    ``skip_locked``, rows another transaction holds are left out instead:
    returns the ids locked.
    """
    if skip_locked:
        mode = SQL(" SKIP LOCKED")
    else:
        mode = SQL(" NOWAIT") if nowait else SQL()
    try:
        with env.cr.savepoint(flush=False):
            env.cr.execute(
                SQL(
                    "SELECT id FROM %s WHERE id = ANY(%s)"
                    " ORDER BY id FOR NO KEY UPDATE%s",
                    SQL.identifier(table),
                    list(ids),
                    mode,
                ),
                log_exceptions=False,
            )
            return [row[0] for row in env.cr.fetchall()]
    except (
        psycopg2.errors.LockNotAvailable,
        psycopg2.errors.SerializationFailure,
    ) as err:
        raise RetryableJobError(
            f"{reason}: {type(err).__name__}", seconds=seconds, ignore_retry=True
        ) from err


def retry_later(err):
    """The ``RetryableJobError`` for a retryable ``ChannelError``.

    The channel's Retry-After, when it gave one, is the wait; otherwise the
    job function's ``retry_pattern`` decides (exponential, with jitter).
    """
    seconds = max(1, round(err.retry_after)) if err.retry_after else None
    return RetryableJobError(str(err), seconds=seconds)
