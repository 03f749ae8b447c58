# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""A delivery that commits while the channel's apply job runs, on real cursors.

The other tests share one transaction; here a delivery and a run are two
transactions of their own, as in a server: the delivery commits after the
run took its snapshot, and the run must still give its event a job. The
rows are committed, so the test deletes them afterwards.
"""

import threading
import time

import psycopg2

from odoo import SUPERUSER_ID, api
from odoo.tests import TransactionCase, tagged
from odoo.tools import SQL

from ..lib import signatures
from ..lib.adapters import InboundEvent, LiveLevel
from ..models.sync_event_inbound import DELIVERY_LOCK


@tagged("post_install", "-at_install")
class TestDeliveryRace(TransactionCase):
    def setUp(self):
        super().setUp()
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            channel = env["sync.channel"].create(
                {
                    "name": "Race channel",
                    "channel_type": "generic",
                    "webhook_secret": signatures.generate_standard_secret(),
                    "base_url": "http://127.0.0.1:9",
                    "sync_enabled": False,
                }
            )
            self.channel_id = channel.id
        self.addCleanup(self._delete_committed_rows)

    def _delete_committed_rows(self):
        with self.registry.cursor() as cr:
            cr.execute(
                "DELETE FROM queue_job WHERE identity_key = %s",
                [f"stock_channel_sync.in.{self.channel_id}"],
            )
            cr.execute(
                "DELETE FROM sync_event WHERE channel_id = %s", [self.channel_id]
            )
            cr.execute("DELETE FROM sync_channel WHERE id = %s", [self.channel_id])

    def _deliver(self, cr, key, enqueue=True, keys=None, channel_id=None, **kw):
        env = api.Environment(cr, SUPERUSER_ID, {})
        events = [
            InboundEvent(
                kind="inventory",
                idempotency_key=one,
                levels=[LiveLevel(sku="RACE-1", quantity=3)],
            )
            for one in keys or [key]
        ]
        return env["sync.event"]._scs_record_inbound(
            env["sync.channel"].browse(channel_id or self.channel_id),
            events,
            b"{}",
            "inventory.updated",
            enqueue=enqueue,
            own_transaction=True,
            **kw,
        )

    def _states(self, *keys):
        with self.registry.cursor() as cr:
            cr.execute(
                "SELECT state FROM sync_event WHERE channel_id = %s"
                " AND idempotency_key = ANY(%s) ORDER BY id",
                [self.channel_id, list(keys)],
            )
            return [row[0] for row in cr.fetchall()]

    def _jobs(self):
        with self.registry.cursor() as cr:
            cr.execute(
                "SELECT state FROM queue_job WHERE identity_key = %s",
                [f"stock_channel_sync.in.{self.channel_id}"],
            )
            return [row[0] for row in cr.fetchall()]

    def _try_delivery_lock(self, cr):
        cr.execute(
            SQL(
                "SELECT pg_try_advisory_xact_lock(%s, %s)",
                DELIVERY_LOCK,
                self.channel_id,
            )
        )
        return cr.fetchone()[0]

    def test_run_gives_a_job_to_a_delivery_it_did_not_see(self):
        with self.registry.cursor() as run_cr:
            run_env = api.Environment(run_cr, SUPERUSER_ID, {})
            channel = run_env["sync.channel"].browse(self.channel_id)
            # the run's snapshot is taken: no queued event yet
            self.assertFalse(channel._scs_queued_events())
            with self.registry.cursor() as delivery_cr:
                out = self._deliver(delivery_cr, "race-late", enqueue=False)
                self.assertEqual(out[0]["state"], "queued")
                # the delivery committed in its message, and left the
                # connection as Odoo expects it: no transaction, no autocommit
                self.assertEqual(self._states("race-late"), ["queued"])
                self.assertFalse(delivery_cr._cnx.autocommit)
                self.assertEqual(
                    delivery_cr._cnx.get_transaction_status(),
                    psycopg2.extensions.TRANSACTION_STATUS_IDLE,
                )
                # its next transaction is Odoo's again: repeatable read, and
                # read/write
                self.assertEqual(
                    delivery_cr._cnx.isolation_level,
                    psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ,
                )
                delivery_cr.execute(
                    "SELECT current_setting('transaction_isolation'),"
                    " current_setting('transaction_read_only')"
                )
                self.assertEqual(delivery_cr.fetchone(), ("repeatable read", "off"))
                delivery_cr.rollback()
                # nor does it hold the lock the run ends with
                with self.registry.cursor() as probe_cr:
                    self.assertTrue(self._try_delivery_lock(probe_cr))
            # committed after the run's snapshot: the run cannot see it
            self.assertFalse(channel._scs_queued_events())
            # but the run's end finds it and enqueues the channel's next run
            self.assertTrue(channel._scs_follow_late_deliveries([]))
            run_env["queue.job"].flush_model()
            self.assertEqual(
                run_env["queue.job"].search_count(
                    [("identity_key", "=", f"stock_channel_sync.in.{self.channel_id}")]
                ),
                1,
            )
            run_cr.commit()
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            jobs = env["queue.job"].search(
                [("identity_key", "=", f"stock_channel_sync.in.{self.channel_id}")]
            )
            self.assertEqual(jobs.state, "pending")
            # a run that saw every queued event finds nothing late
            channel = env["sync.channel"].browse(self.channel_id)
            seen = channel._scs_queued_events()
            self.assertEqual(len(seen), 1)
            self.assertFalse(channel._scs_follow_late_deliveries(seen.ids))

    def test_delivery_starts_one_job_and_then_counts_on_it(self):
        """Deliveries to an idle channel: the first starts its job, the next
        ones (committed or not) find it and add no job."""
        for n in range(3):
            with self.registry.cursor() as cr:
                out = self._deliver(cr, f"race-start-{n}")
                self.assertEqual(out[0]["state"], "queued")
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            jobs = env["queue.job"].search(
                [("identity_key", "=", f"stock_channel_sync.in.{self.channel_id}")]
            )
            self.assertEqual(len(jobs), 1)
            self.assertEqual(
                env["sync.event"].search_count(
                    [("channel_id", "=", self.channel_id), ("state", "=", "queued")]
                ),
                3,
            )

    def _end_run_in_thread(self, mark_job_done=False):
        """A run's end in a thread: the delivery lock, held exclusively until a
        delivery waits for it (``seen['waiter']``), then released by the
        commit. The run's side is plain SQL (an environment there would wait
        for the registry, which the test runner holds). Returns the started
        thread, an event set once the lock is held, and what the run saw."""
        locked = threading.Event()
        seen = {"waiter": False}

        def run_end():
            with self.registry.cursor() as run_cr:
                run_cr.execute(
                    SQL(
                        "SELECT pg_advisory_xact_lock(%s, %s)",
                        DELIVERY_LOCK,
                        self.channel_id,
                    )
                )
                if mark_job_done:
                    run_cr.execute(
                        "UPDATE queue_job SET state = 'done' WHERE identity_key = %s",
                        [f"stock_channel_sync.in.{self.channel_id}"],
                    )
                locked.set()
                for _i in range(400):
                    run_cr.execute(
                        "SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"
                        " AND NOT granted AND classid = %s AND objid = %s",
                        [DELIVERY_LOCK, self.channel_id],
                    )
                    if run_cr.fetchone():
                        seen["waiter"] = True
                        break
                    time.sleep(0.025)
                run_cr.execute(
                    "SELECT count(*) FROM sync_event WHERE channel_id = %s",
                    [self.channel_id],
                )
                seen["events_before_release"] = run_cr.fetchone()[0]

        thread = threading.Thread(target=run_end)
        thread.start()
        self.assertTrue(locked.wait(30))
        return thread, seen

    def test_delivery_waits_while_a_run_ends(self):
        """A run ending holds the delivery lock exclusively: a delivery waits
        for it, inserts after it, and then starts the channel's next job."""
        thread, seen = self._end_run_in_thread()
        with self.registry.cursor() as cr:
            out = self._deliver(cr, "race-wait")
        thread.join(30)
        self.assertTrue(seen["waiter"], "the delivery waited for the run's end")
        self.assertEqual(seen["events_before_release"], 0)
        self.assertEqual(out[0]["state"], "queued")
        self.assertEqual(self._states("race-wait"), ["queued"])
        self.assertEqual(self._jobs(), ["pending"])

    def test_delivery_that_waited_sees_the_run_done(self):
        """The delivery looks for the channel's job only once it holds the
        delivery lock, on a fresh snapshot, even when the session's default
        isolation is repeatable read: a run that marks its job done and ends
        while the delivery waits must not be counted on to apply the event."""
        with self.registry.cursor() as cr:
            self._deliver(cr, "race-first")
        self.assertEqual(self._jobs(), ["pending"])
        with self.registry.cursor() as cr:
            # a session default set outside any transaction, so that it holds
            # when the delivery starts (a rollback would undo it otherwise)
            cr._cnx.autocommit = True
            cr.execute("SET SESSION default_transaction_isolation = 'repeatable read'")
            cr.execute("SHOW default_transaction_isolation")
            self.assertEqual(cr.fetchone()[0], "repeatable read")
            thread, seen = self._end_run_in_thread(mark_job_done=True)
            out = self._deliver(cr, "race-after-run")
            thread.join(30)
        self.assertTrue(seen["waiter"], "the delivery waited for the run's end")
        self.assertTrue(out[0]["new"])
        # the job it saw while waiting is done: the delivery started the next
        self.assertEqual(sorted(self._jobs()), ["done", "pending"])
        self.assertEqual(self._states("race-after-run"), ["queued"])

    def test_redelivery_starts_the_job_a_crash_left_out(self):
        """The event commits before its job: if the job's transaction is
        lost, the sender's retry (a duplicate) starts the job."""
        with self.registry.cursor() as cr:
            out = self._deliver(cr, "race-crash")
            self.assertTrue(out[0]["new"])
            cr.rollback()  # the worker dies before the job commits
        self.assertEqual(self._states("race-crash"), ["queued"])
        self.assertEqual(self._jobs(), [])
        with self.registry.cursor() as cr:
            out = self._deliver(cr, "race-crash")
            self.assertFalse(out[0]["new"])
        self.assertEqual(self._jobs(), ["pending"])
        # with the job there, a further duplicate adds nothing
        with self.registry.cursor() as cr:
            self._deliver(cr, "race-crash")
        self.assertEqual(self._jobs(), ["pending"])

    def test_duplicate_while_a_run_applies_its_event_never_deadlocks(self):
        """A run applies an event (its row updated, not committed), then
        ends, taking the delivery lock exclusively; a redelivery of that
        event, arrived in between, waits for the run's row. Were it holding
        the lock shared meanwhile, the two would deadlock (PostgreSQL fails
        one after a second): it takes the lock after its insert, so the run
        ends at once, and the redelivery then inserts nothing."""
        with self.registry.cursor() as cr:
            self._deliver(cr, "race-dup", enqueue=False)
        seen = {}
        with self.registry.cursor() as run, self.registry.cursor() as cr:
            run.execute(
                "UPDATE sync_event SET state = 'applied'"
                " WHERE channel_id = %s AND idempotency_key = 'race-dup'",
                [self.channel_id],
            )
            # made here: a thread making one would wait for the registry,
            # which the test runner holds
            env = api.Environment(cr, SUPERUSER_ID, {})
            run_env = api.Environment(run, SUPERUSER_ID, {})
            event = InboundEvent(
                kind="inventory",
                idempotency_key="race-dup",
                levels=[LiveLevel(sku="RACE-1", quantity=3)],
            )

            def duplicate():
                try:
                    seen["out"] = env["sync.event"]._scs_record_inbound(
                        env["sync.channel"].browse(self.channel_id),
                        [event],
                        b"{}",
                        "inventory.updated",
                        enqueue=False,
                        own_transaction=True,
                        company_id=1,
                    )
                except psycopg2.Error as err:
                    seen["error"] = type(err).__name__

            thread = threading.Thread(target=duplicate)
            thread.start()
            # the redelivery waits for the run's row
            for _n in range(100):
                with self.registry.cursor() as probe:
                    probe.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type"
                        " = 'Lock' AND query LIKE '%%INSERT INTO sync_event%%'"
                    )
                    if probe.fetchone()[0]:
                        seen["waited"] = True
                        probe.execute(
                            "SELECT count(*) FROM pg_locks WHERE locktype ="
                            " 'advisory' AND classid = %s AND objid = %s",
                            [DELIVERY_LOCK, self.channel_id],
                        )
                        seen["held"] = probe.fetchone()[0]
                        break
                time.sleep(0.05)
            try:
                channel = run_env["sync.channel"].browse(self.channel_id)
                run.execute(
                    "SELECT id FROM sync_event WHERE channel_id = %s"
                    " AND idempotency_key = 'race-dup'",
                    [self.channel_id],
                )
                seen["late"] = channel._scs_follow_late_deliveries(
                    [row[0] for row in run.fetchall()]
                )
                run_env.flush_all()
                run.commit()
            except psycopg2.Error as err:
                seen["run_error"] = type(err).__name__
                run.rollback()
            thread.join(30)
        self.assertTrue(seen.get("waited"), "the redelivery waited for the run's row")
        self.assertNotIn("run_error", seen)
        self.assertNotIn("error", seen)
        self.assertEqual(seen["held"], 0, "no delivery lock while waiting")
        self.assertFalse(seen["late"], "the event was applied: nothing late")
        self.assertEqual(self._jobs(), [])
        self.assertFalse(seen["out"][0]["new"])
        self.assertEqual(self._states("race-dup"), ["applied"])

    def test_one_delivery_with_a_key_twice_records_one_event(self):
        with self.registry.cursor() as cr:
            out = self._deliver(cr, None, keys=["race-twice", "race-twice", "race-b"])
        self.assertEqual([e["new"] for e in out], [True, False, True])
        self.assertEqual(self._states("race-twice", "race-b"), ["queued", "queued"])
        self.assertEqual(self._jobs(), ["pending"])

    def test_failed_delivery_leaves_the_cursor_usable(self):
        """A statement that fails inside the message (here the channel is
        gone) raises, writes nothing and leaves the cursor as it found it."""
        with self.registry.cursor() as cr:
            with self.assertRaises(psycopg2.errors.ForeignKeyViolation):
                self._deliver(
                    cr, "race-gone", channel_id=self.channel_id + 100000, company_id=1
                )
            self.assertFalse(cr._cnx.autocommit)
            cr.execute("SELECT 1")
            self.assertEqual(cr.fetchone(), (1,))
            cr.rollback()
        self.assertEqual(self._states("race-gone"), [])
        with self.registry.cursor() as cr:
            cr.execute(
                "SELECT count(*) FROM sync_event WHERE idempotency_key = 'race-gone'"
            )
            self.assertEqual(cr.fetchone()[0], 0)

    def test_deliveries_sharing_keys_in_another_order_never_deadlock(self):
        """Two deliveries of the same events listed in opposite orders, at
        the same moment, many times: no deadlock (each would be a 5xx to
        the sender), and every key is recorded once."""
        failures = []
        rounds = 30

        def deliver(env, keys, barrier, company_id):
            events = [InboundEvent("ignored", key) for key in keys]
            barrier.wait()
            try:
                env["sync.event"]._scs_record_inbound(
                    env["sync.channel"].browse(self.channel_id),
                    events,
                    b"{}",
                    "race",
                    company_id=company_id,
                    own_transaction=True,
                )
            except psycopg2.Error as err:
                failures.append(type(err).__name__)

        for n in range(rounds):
            keys = [f"race-order-{n}-{i:02d}" for i in range(20)]
            barrier = threading.Barrier(2)
            # environments are made here: a thread making one would wait
            # for the registry, which the test runner holds
            with self.registry.cursor() as cr1, self.registry.cursor() as cr2:
                env1 = api.Environment(cr1, SUPERUSER_ID, {})
                env2 = api.Environment(cr2, SUPERUSER_ID, {})
                company_id = env1.company.id
                threads = [
                    threading.Thread(
                        target=deliver, args=(env1, keys, barrier, company_id)
                    ),
                    threading.Thread(
                        target=deliver, args=(env2, keys[::-1], barrier, company_id)
                    ),
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(60)
        self.assertEqual(failures, [])
        with self.registry.cursor() as cr:
            cr.execute(
                "SELECT count(*), count(DISTINCT idempotency_key) FROM sync_event"
                " WHERE channel_id = %s AND idempotency_key LIKE 'race-order-%%'",
                [self.channel_id],
            )
            self.assertEqual(cr.fetchone(), (rounds * 20, rounds * 20))
