# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""A delivery that commits while the channel's apply job runs, on real cursors.

The other tests share one transaction; here a delivery and a run are two
transactions of their own, as in a server: the delivery commits after the
run took its snapshot, and the run must still give its event a job. The
rows are committed, so the test deletes them afterwards.
"""

from odoo import SUPERUSER_ID, api
from odoo.tests import TransactionCase, tagged
from odoo.tools import SQL

from ..lib import signatures
from ..lib.adapters import InboundEvent, LiveLevel
from ..models.sync_event import DELIVERY_LOCK


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

    def _deliver(self, cr, key, enqueue=True):
        env = api.Environment(cr, SUPERUSER_ID, {})
        event = InboundEvent(
            kind="inventory",
            idempotency_key=key,
            levels=[LiveLevel(sku="RACE-1", quantity=3)],
        )
        return env["sync.event"]._scs_record_inbound(
            env["sync.channel"].browse(self.channel_id),
            [event],
            b"{}",
            "inventory.updated",
            enqueue=enqueue,
            own_transaction=True,
        )

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
                delivery_cr.execute("SHOW transaction_isolation")
                self.assertEqual(delivery_cr.fetchone()[0], "read committed")
                # in flight, the delivery holds the lock the run ends with
                with self.registry.cursor() as probe_cr:
                    self.assertFalse(self._try_delivery_lock(probe_cr))
            # committed now, after the run's snapshot: the run cannot see it
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
