# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""A transaction that counts on a waiting job, on real cursors.

A stock change left to the SKU's waiting job must reach the channels even
when that job starts before the change commits, and the transaction must
hold back neither the job nor the job runner (which marks the jobs it
starts in one loop for the whole server): Odoo runs the pre-commit hooks at
every flushing savepoint, long before the commit. The rows are committed,
so the test deletes them afterwards.
"""

from unittest.mock import patch

import psycopg2.errors

from odoo import SUPERUSER_ID, api
from odoo.tests import TransactionCase, tagged

from ..models import job_store


@tagged("post_install", "-at_install")
class TestJobHold(TransactionCase):
    def setUp(self):
        super().setUp()
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            product = env["product.product"].create(
                {"name": "Hold Mug", "default_code": "SCS-HOLD", "is_storable": True}
            )
            channel = env["sync.channel"].create(
                {
                    "name": "Hold channel",
                    "channel_type": "generic",
                    "base_url": "http://127.0.0.1:9",
                }
            )
            binding = env["channel.binding"].create(
                {"channel_id": channel.id, "product_id": product.id}
            )
            self.ids = (product.id, channel.id, binding.id)
        self.key = f"stock_channel_sync.sku.{self.ids[0]}"
        self.addCleanup(self._delete_committed_rows)

    def _delete_committed_rows(self):
        product_id, channel_id, binding_id = self.ids
        with self.registry.cursor() as cr:
            cr.execute(
                "DELETE FROM queue_job WHERE identity_key LIKE 'stock_channel_sync.%%'"
                " AND (identity_key LIKE %s OR identity_key LIKE %s)",
                [f"%.sku.{product_id}%", f"%.binding.{binding_id}%"],
            )
            cr.execute("DELETE FROM sync_event WHERE channel_id = %s", [channel_id])
            cr.execute("DELETE FROM channel_binding WHERE id = %s", [binding_id])
            cr.execute("DELETE FROM sync_channel WHERE id = %s", [channel_id])
            env = api.Environment(cr, SUPERUSER_ID, {})
            env["product.product"].browse(product_id).product_tmpl_id.unlink()

    def _jobs(self, cr):
        cr.execute(
            "SELECT state, uuid FROM queue_job WHERE identity_key = %s ORDER BY id",
            [self.key],
        )
        return cr.fetchall()

    def _enqueue(self, cr):
        env = api.Environment(cr, SUPERUSER_ID, {})
        env["product.product"].browse(self.ids[0])._scs_enqueue_push()

    def _waiting_job(self):
        """A fresh waiting job of the SKU, committed: its uuid."""
        with self.registry.cursor() as cr:
            cr.execute("DELETE FROM queue_job WHERE identity_key = %s", [self.key])
            self._enqueue(cr)
        with self.registry.cursor() as cr:
            [(state, uuid)] = self._jobs(cr)
        self.assertEqual(state, "pending")
        return uuid

    def _start(self, cr, uuid, state):
        cr.execute("SET LOCAL lock_timeout = '3s'")
        cr.execute("UPDATE queue_job SET state = %s WHERE uuid = %s", [state, uuid])
        self.assertEqual(cr.rowcount, 1)

    def test_the_runner_and_the_job_do_not_wait_for_an_open_transaction(self):
        uuid = self._waiting_job()
        holder = self.registry.cursor()
        try:
            # a second change, left to the waiting job (as at a savepoint)
            self._enqueue(holder)
            self.assertEqual(self._jobs(holder), [("pending", uuid)], "coalesced")
            with self.registry.cursor() as runner:
                self._start(runner, uuid, "enqueued")
            with self.registry.cursor() as runner:
                self._start(runner, uuid, "started")
                # nor does the job itself lock anything the holder holds
                runner.execute(
                    "SELECT 1 FROM queue_job WHERE uuid = %s FOR UPDATE NOWAIT",
                    [uuid],
                )
            # the job started before the change committed: it may not see
            # it, so the commit gives the change a job of its own
            holder.commit()
        finally:
            holder.close()
        with self.registry.cursor() as cr:
            self.assertEqual([s for s, _u in self._jobs(cr)], ["started", "pending"])

    def test_a_change_committed_while_its_job_waits_is_left_to_it(self):
        self._waiting_job()
        for _change in range(3):
            with self.registry.cursor() as cr:
                self._enqueue(cr)
        with self.registry.cursor() as cr:
            self.assertEqual([s for s, _u in self._jobs(cr)], ["pending"])

    def test_a_job_started_since_the_snapshot_is_not_counted_on(self):
        """A transaction whose snapshot shows the job waiting, while the job
        has started since (and may have read the stock): the change gets a
        job of its own. The same while the job runs."""
        uuid = self._waiting_job()
        late = self.registry.cursor()
        try:
            self.assertEqual(len(self._jobs(late)), 1)  # the snapshot
            with self.registry.cursor() as runner:
                self._start(runner, uuid, "enqueued")
            self._enqueue(late)
            late.commit()
        finally:
            late.close()
        with self.registry.cursor() as cr:
            self.assertEqual([s for s, _u in self._jobs(cr)], ["enqueued", "pending"])
            self._start(cr, uuid, "started")
        # the job runs: the changes made meanwhile share the new job
        for _change in range(3):
            with self.registry.cursor() as cr:
                self._enqueue(cr)
        with self.registry.cursor() as cr:
            self.assertEqual([s for s, _u in self._jobs(cr)], ["started", "pending"])

    def test_inside_a_job_the_waiting_job_is_held_until_the_commit(self):
        """A job's own transaction is short and ends with the enqueue: the
        waiting job is held there (the runner starts it after the commit),
        so it neither misses the change nor runs beside the job."""
        uuid = self._waiting_job()
        job_cr = self.registry.cursor()
        try:
            env = api.Environment(job_cr, SUPERUSER_ID, {"job_uuid": "another-job"})
            env["product.product"].browse(self.ids[0])._scs_enqueue_push()
            with self.registry.cursor() as runner:
                runner.execute("SET LOCAL lock_timeout = '300ms'")
                with self.assertRaises(psycopg2.errors.LockNotAvailable):
                    runner.execute(
                        "UPDATE queue_job SET state = 'enqueued' WHERE uuid = %s",
                        [uuid],
                        log_exceptions=False,
                    )
            job_cr.commit()
        finally:
            job_cr.close()
        with self.registry.cursor() as cr:
            self.assertEqual(self._jobs(cr), [("pending", uuid)], "left to it")
            self._start(cr, uuid, "enqueued")

    def test_a_failing_check_after_the_commit_is_logged_not_raised(self):
        """The check runs after the commit: raised, it would turn a saved
        change into an error for its user. It is logged, with the SKU."""
        uuid = self._waiting_job()
        holder = self.registry.cursor()
        try:
            self._enqueue(holder)
            with self.registry.cursor() as runner:
                self._start(runner, uuid, "started")
            with (
                patch.object(
                    job_store, "_check_held_jobs", side_effect=RuntimeError("down")
                ),
                self.assertLogs(job_store.__name__, "ERROR") as logs,
            ):
                holder.commit()
        finally:
            holder.close()
        self.assertIn(self.key, logs.output[0])
        with self.registry.cursor() as cr:
            self.assertEqual([s for s, _u in self._jobs(cr)], ["started"])
