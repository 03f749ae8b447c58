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

In a job's transaction (an apply run, a push, a poll: short, and ending
with the enqueue), a waiting job absorbs a change while this transaction
holds a share lock on its row (``FOR SHARE``): the runner cannot start it
before the commit, so it runs on a snapshot that holds the change, and not
beside the job that counts on it; one that changed since this
transaction's snapshot (a serialization failure) gets a new job instead.

In a user's transaction, a change is left to a waiting job as queue_job
would (the job is *pending* in this transaction's snapshot), and checked
again once the transaction has committed (``_follow_held_jobs``, a
post-commit hook on a cursor of its own): a job that is still pending then
has not taken its snapshot yet, so it will see the change; one that has
started meanwhile (or before, unknown to a stale snapshot) may not, and the
change gets a new job. Nothing is locked there: a job never waits for a
user's transaction that counts on it, and neither does the job runner (Odoo
runs the pre-commit hooks at every flushing savepoint, so a lock taken there
would last until the commit, and queue_job's runner marks the jobs it
starts with an ``UPDATE`` in one loop for the whole server). A spare job
costs a little work; a missing one would lose an update. A change whose
transaction committed while its job started, in a worker that died before
the post-commit hook ran, waits for the next change of the SKU or the
reconciliation pass.

The webhook route does not use this: it counts on the channel's job under a
lock of its own, within its one message to the database (see
``sync.event._scs_insert_delivered``).

The jobs are built by queue_job's own ``Job`` class and written with one
``INSERT`` (see ``insert_jobs``), as ``with_delay`` would write them one by
one.
"""

import logging
from datetime import timedelta, timezone

import psycopg2.errors

from odoo import api, fields
from odoo.tools import SQL

from odoo.addons.queue_job.exception import RetryableJobError
from odoo.addons.queue_job.job import Job

_logger = logging.getLogger(__name__)


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


#: post-commit data: the waiting jobs a transaction counted on
HELD_JOBS = "stock_channel_sync.held_jobs"
#: queue_job priority of bulk work: a pass's batch jobs (one per 500
#: bindings of every channel), Push All Now's and a settings change's push
#: batches. Lower runs first: pushes and inbound applies keep queue_job's
#: default 10, so when a slot frees, a push or an order waiting behind them
#: goes first. Their own channel, ``root.channel_sync.reconcile``, can also
#: be given a capacity below ``root.channel_sync``'s, so that bulk work never
#: takes every slot (see the README)
RECONCILE_PRIORITY = 20


def hold_pending_jobs(env, keys):
    """The waiting jobs of ``keys``; which keys have a running job.

    Returns ``(held, running)``: ``{identity key: uuid}`` of the pending job
    a change may be left to, and the keys whose job is enqueued or started.
    One query.

    Inside a job (an apply run, a push, a poll: short transactions that end
    with this call), the pending job's row is share-locked until the commit
    (``FOR SHARE``): the runner cannot start that job before, so it sees the
    change, and it does not run beside the job that counts on it; a job
    changed since our snapshot (a serialization failure) is not held. In a
    user's transaction, which may stay open long after Odoo ran the
    pre-commit hooks at a flushing savepoint, nothing is locked (the runner
    would wait for it, and every job of the server with it): ``store_jobs``
    checks the job again after the commit instead.
    """
    if not keys:
        return {}, set()
    env["queue.job"].flush_model(["identity_key", "state"])
    keys = sorted(set(keys))
    # a job enqueueing its own follow-up must not count itself as waiting
    own = env.context.get("job_uuid") or ""
    lock = SQL("FOR SHARE") if own else SQL()
    query = SQL(
        """
        WITH pending AS (
            SELECT identity_key, uuid FROM queue_job
             WHERE identity_key = ANY(%s) AND state = 'pending' AND uuid != %s
             ORDER BY id %s
        )
        SELECT identity_key, uuid, 'pending' FROM pending
        UNION ALL
        SELECT identity_key, uuid, state FROM queue_job
         WHERE identity_key = ANY(%s) AND state IN ('enqueued', 'started')
        """,
        keys,
        own,
        lock,
        keys,
    )
    if not own:
        # nothing locked: nothing to fail, no savepoint (two round trips)
        env.cr.execute(query)
        rows = env.cr.fetchall()
    else:
        try:
            with env.cr.savepoint(flush=False):
                # an expected serialization failure is not a "bad query" in
                # the log
                env.cr.execute(query, log_exceptions=False)
                rows = env.cr.fetchall()
        except psycopg2.errors.SerializationFailure:
            # the runner took a job since our snapshot: new jobs
            return {}, set(keys)
    held, running = {}, set()
    for key, uuid, state in rows:
        if state == "pending":
            held.setdefault(key, uuid)
        else:
            running.add(key)
    return held, running


def _follow_held_jobs(env, specs, held, running_eta):
    """Check, once this transaction has committed, the waiting jobs its
    changes were left to; give a new job to those that started meanwhile.

    Registered once per transaction; the check runs on a cursor of its own
    (the committed transaction's cursor may be closed right after).
    """
    data = env.cr.postcommit.data
    followed = data.get(HELD_JOBS)
    if followed is None:
        followed = data[HELD_JOBS] = {}
        registry, uid, context = env.registry, env.uid, dict(env.context)

        def check():
            todo = data.pop(HELD_JOBS, None)
            if not todo:
                return
            try:
                with registry.cursor() as cr:
                    _check_held_jobs(api.Environment(cr, uid, context), todo)
            except Exception:
                # after the commit: raised, it would turn a saved change into
                # an error for its user; the job it counted on may have
                # missed it, so it is said, with what the next pass corrects
                _logger.exception(
                    "could not check the waiting jobs %s after a commit: their"
                    " SKUs are corrected by their next change or the"
                    " reconciliation pass",
                    sorted(spec[4] for spec in todo.values()),
                )

        env.cr.postcommit.add(check)
    for method, kwargs, key, description, _eta in specs:
        records = method.__self__
        followed.setdefault(
            held[key],
            (
                records._name,
                records.ids,
                method.__name__,
                kwargs,
                key,
                description,
                running_eta,
            ),
        )


def _check_held_jobs(env, followed):
    """``followed``: ``{uuid: spec}`` of the waiting jobs a committed
    transaction counted on. A job still pending will see that transaction;
    the others get a new job of their key (one, shared with a job that is
    pending now)."""
    env.cr.execute(
        SQL(
            "SELECT uuid FROM queue_job WHERE uuid = ANY(%s) AND state = 'pending'",
            list(followed),
        )
    )
    waiting = {row[0] for row in env.cr.fetchall()}
    specs = [
        (
            getattr(env[model].browse(ids), method_name),
            kwargs,
            key,
            description,
            running_eta,
        )
        for uuid, (model, ids, method_name, kwargs, key, description, running_eta) in (
            followed.items()
        )
        if uuid not in waiting
    ]
    if specs:
        # nothing of this transaction is left to commit: a job pending now
        # will see everything, so it is counted on without a check
        held, running = hold_pending_jobs(env, [spec[2] for spec in specs])
        store_jobs(env, specs, hold=(held, running), follow=False)


def store_jobs(env, specs, running_eta=None, hold=None, follow=True):
    """Create the jobs of ``specs`` that no pending job covers.

    ``specs``: ``(method, kwargs, identity_key, description, eta)`` tuples,
    ``method`` a bound method of a recordset. ``running_eta``, when given,
    is the eta of a job created while the key's job is running (a burst
    window); an ``eta`` of 0 means at once, whatever runs. ``hold`` is the
    result of ``hold_pending_jobs`` when the caller took it already. A key
    left to a pending job is checked again after the commit (``follow``).
    Returns the new ``Job`` objects.
    """
    specs = list(specs)
    held, running = hold or hold_pending_jobs(env, [spec[2] for spec in specs])
    todo = [spec for spec in specs if spec[2] not in held]
    if follow and not env.context.get("job_uuid"):
        left = [spec for spec in specs if spec[2] in held]
        if left:
            _follow_held_jobs(env, left, held, running_eta)
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


#: ``exc_name`` of a job that failed because its database connection went
#: away (a restart, a failover, a killed backend). queue_job retries only
#: serialization failures: any other database error fails the job at its
#: first try and calls its ``on_fail`` hook, though the job did nothing
#: wrong and its transaction was simply rolled back. A plain
#: ``OperationalError`` is one that carries no SQLSTATE: the connection's.
LOST_CONNECTION_ERRORS = (
    "psycopg2.InterfaceError",
    "psycopg2.OperationalError",
    "psycopg2.errors.AdminShutdown",
    "psycopg2.errors.CrashShutdown",
    "psycopg2.errors.CannotConnectNow",
)
#: how many times in a row a job key is run again after a lost connection
#: (no run of the key done in between, all within ``LOST_CONNECTION_WINDOW``
#: seconds) before its hook handles the failure as any other
LOST_CONNECTION_RUNS = 5
LOST_CONNECTION_WINDOW = 900
#: seconds the first run again waits, doubled for each next one in a row
#: (5, 10, 20, 40, 80: a restarting database is not back at once)
LOST_CONNECTION_ETA = 5


#: ``exc_name`` queue_job's runner gives a job whose worker died on more
#: tries than the job's retries (killed by a memory or time limit, say): it
#: marks the job failed without calling its ``on_fail`` hook
FOUND_DEAD = "JobFoundDead"
#: a found-dead job's ``exc_message`` ends so once handled (see
#: ``fail_dead_jobs``; queue_job writes ``result`` at each postponed try)
FOUND_DEAD_HANDLED = "found dead: handled"
#: found-dead jobs handled per call
FOUND_DEAD_BATCH = 100
#: seconds after its last start a found-dead job is still handled (older
#: ones, from before this module handled them, are left as they are)
FOUND_DEAD_WINDOW = 86400


def fail_dead_jobs(env):
    """Run the ``on_fail`` hook of this module's jobs found dead.

    A push job whose worker is killed on each try ends *failed* with no
    dead letter, no activity and no job left: the channels it had to set
    would keep their old figure, more than Odoo may sell, with nothing to
    show for it. Its hook makes the failure what a job failing any other
    way makes it (dead letters to retry, an activity; a closed pass batch).
    A binding job with no hook (a batch of pushes or corrections) gets its
    SKUs pushed again, forced, by their own jobs. The hook is told the
    job's arguments and creation (``job_kwargs``, ``job_created``), with
    ``found_dead``: it runs up to a minute late, and must not close what
    came after the job (a newer pass, a newer push). Each job once, its
    message says so; a hook that fails is tried again the next minute.
    Returns the jobs handled.
    """
    dead = (
        env["queue.job"]
        .sudo()
        .search(
            [
                ("state", "=", "failed"),
                ("exc_name", "=", FOUND_DEAD),
                "|",
                ("exc_message", "=", False),
                ("exc_message", "not like", FOUND_DEAD_HANDLED),
                ("method_name", "=like", "\\_scs\\_job\\_%"),
                # a channel's apply job gets a new one instead (see
                # ``sync.channel._scs_cron_requeue_orphans``): its hook would
                # make dead letters of sales not reserved yet
                ("method_name", "!=", "_scs_job_apply_inbound"),
                (
                    "date_started",
                    ">",
                    fields.Datetime.now() - timedelta(seconds=FOUND_DEAD_WINDOW),
                ),
            ],
            order="id",
            limit=FOUND_DEAD_BATCH,
        )
    )
    for record in dead:
        message = (
            f"its worker died on each of its {record.retry or 0} tries"
            " (killed, or past a time or memory limit)"
        )
        try:
            with env.cr.savepoint():
                job = Job.load(env, record.uuid)
                job.recordset = job.recordset.with_context(job_uuid=record.uuid)
                if job.on_fail_method_name:
                    job.on_fail(
                        {
                            "exc_name": FOUND_DEAD,
                            "exc_message": message,
                            "exc_info": record.exc_info,
                            "found_dead": True,
                            "job_kwargs": job.kwargs,
                            "job_created": record.date_created.replace(
                                tzinfo=timezone.utc
                            ).timestamp(),
                        }
                    )
                elif job.recordset._name == "channel.binding":
                    job.recordset.exists().product_id._scs_enqueue_push(force=True)
        except Exception:
            _logger.exception(
                "job %s found dead: its failure hook failed, tried again later",
                record.uuid,
            )
            continue
        record.exc_message = f"{message}; {FOUND_DEAD_HANDLED}"
    return dead


def connection_lost(err):
    """Whether ``err`` says the job's database connection is gone.

    Nothing can be written on that cursor any more (handing an event over
    to a job of its own would fail too): the run must end, and is run
    again (see ``run_again_after_lost_connection``).
    """
    if isinstance(err, psycopg2.InterfaceError):
        return True
    if isinstance(err, psycopg2.OperationalError):
        return err.pgcode is None or err.pgcode.startswith("57P")
    return False


def run_again_after_lost_connection(env, identity_key, exc_name):
    """``on_fail``: in how many seconds the failed job should simply run
    again (0: it should not).

    Non-zero when it failed on a lost connection (``LOST_CONNECTION_ERRORS``)
    and its key has not failed so more than ``LOST_CONNECTION_RUNS`` times
    in a row (since the key's last run that was done, within
    ``LOST_CONNECTION_WINDOW`` seconds): the hook then enqueues the job again
    instead of making dead letters of what the job had to do. Outages apart
    from each other each get their runs; a connection lost on every run is
    no passing outage, and the hook's own handling (dead letters,
    activities) takes over.
    """
    if exc_name not in LOST_CONNECTION_ERRORS:
        return 0
    env["queue.job"].flush_model(["identity_key", "state", "exc_name"])
    env.cr.execute(
        SQL(
            "SELECT count(*) FROM queue_job WHERE identity_key = %s"
            " AND state = 'failed' AND exc_name IN %s"
            " AND date_created > (now() AT TIME ZONE 'UTC')"
            " - make_interval(secs => %s)"
            # after the key's last job done (ids follow the order of creation)
            " AND id > COALESCE((SELECT max(id) FROM queue_job"
            " WHERE identity_key = %s AND state = 'done'), 0)",
            identity_key,
            LOST_CONNECTION_ERRORS,
            LOST_CONNECTION_WINDOW,
            identity_key,
        )
    )
    failed = env.cr.fetchone()[0]
    if failed > LOST_CONNECTION_RUNS:
        _logger.error(
            "job %s lost its database connection %s times in a row: not run again",
            identity_key,
            failed,
        )
        return 0
    delay = LOST_CONNECTION_ETA * 2 ** max(0, failed - 1)
    _logger.warning(
        "job %s lost its database connection (%s): run again in %s s",
        identity_key,
        exc_name,
        delay,
    )
    return delay
