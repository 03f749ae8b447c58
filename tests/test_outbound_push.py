# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Outbound push: every stock change reaches every bound channel, once, async."""

import json
import socket
import time
from datetime import datetime, timedelta, timezone
from unittest.mock import patch

from odoo import Command, api, fields
from odoo.tests import tagged

from odoo.addons.queue_job.exception import FailedJobError, RetryableJobError
from odoo.addons.queue_job.job import Job
from odoo.addons.queue_job.tests.common import trap_jobs

from ..hooks import uninstall_hook
from ..lib import fanout
from ..models import channel_binding, product_product
from ..models.job_store import store_jobs
from .common import SyncCase

PUSH_SKU = "_scs_job_push_sku"
PUSH_BINDING = "_scs_job_push_binding"


@tagged("post_install", "-at_install")
class TestOutboundEnqueue(SyncCase):
    """What a stock change enqueues (queue.job rows; nothing is sent)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.channel = cls.env["sync.channel"].create(
            {
                "name": "Shop",
                "channel_type": "generic",
                "base_url": "http://127.0.0.1:9",
            }
        )
        cls.env["channel.binding"].create(
            [
                {"channel_id": cls.channel.id, "product_id": cls.product_a.id},
                {"channel_id": cls.channel.id, "product_id": cls.product_b.id},
            ]
        )
        cls.env.cr.flush()
        cls.env["queue.job"].search([]).unlink()

    def test_one_job_per_sku_at_commit_coalesced(self):
        for _i in range(5):
            self.move_stock(self.product_a, 1)
        self.move_stock(self.product_b, -1)
        self.env["queue.job"].flush_model()
        self.assertFalse(self.sync_jobs(), "nothing is enqueued before commit")
        self.commit_point()
        jobs = self.sync_jobs(PUSH_SKU)
        self.assertEqual(len(jobs), 2)
        self.assertEqual(
            {job.records.id for job in jobs}, {self.product_a.id, self.product_b.id}
        )
        self.assertEqual(
            set(jobs.mapped("identity_key")),
            {
                f"stock_channel_sync.sku.{self.product_a.id}",
                f"stock_channel_sync.sku.{self.product_b.id}",
            },
        )
        self.assertEqual(set(jobs.mapped("channel")), {"root.channel_sync"})
        self.assertFalse(any(jobs.mapped("eta")), "a quiet SKU is pushed at once")
        # a second transaction while the job is pending adds no job
        self.move_stock(self.product_a, 1)
        self.commit_point()
        self.assertEqual(len(self.sync_jobs(PUSH_SKU)), 2)

    def test_change_never_left_to_a_job_the_runner_took(self):
        """A job that is enqueued or running may have read the stock already:
        a change committed now gets a job of its own, a pending job absorbs it."""
        self.move_stock(self.product_a, 1)
        self.commit_point()
        self.assertEqual(len(self.sync_jobs(PUSH_SKU)), 1)
        for state in ("enqueued", "started"):
            self.env.cr.execute(
                "UPDATE queue_job SET state = %s WHERE state = 'pending'"
                " AND method_name = %s",
                (state, PUSH_SKU),
            )
            self.env.invalidate_all()
            self.move_stock(self.product_a, 1)
            self.commit_point()
            self.assertEqual(
                len(self.sync_jobs(PUSH_SKU)), 1, f"a new job beside the {state} one"
            )
        self.move_stock(self.product_a, 1)
        self.commit_point()
        self.assertEqual(
            self.env["queue.job"].search_count([("method_name", "=", PUSH_SKU)]), 3
        )

    def test_pushes_asked_mid_transaction_are_enqueued_at_commit(self):
        """Push Now, binding edits and oversells enqueue at pre-commit, like
        stock changes: the waiting job's lock is then held only for the
        commit, never for the rest of a transaction (the runner waits on it)."""
        binding = self.channel.binding_ids.filtered(
            lambda b: b.product_id == self.product_a
        )
        binding.action_push_now()
        binding.write({"buffer_override": True, "buffer_qty": 2})
        self.env["queue.job"].flush_model()
        self.assertFalse(self.sync_jobs(PUSH_SKU), "nothing before the commit")
        self.commit_point()
        jobs = self.sync_jobs(PUSH_SKU)
        self.assertEqual(
            sorted(jobs.mapped("identity_key")),
            [
                f"stock_channel_sync.sku.{self.product_a.id}",
                f"stock_channel_sync.sku.{self.product_a.id}.force",
            ],
        )

    def test_job_rows_are_written_as_queue_job_writes_them(self):
        """The one-INSERT path stores exactly what ``with_delay`` stores."""
        product = self.product_a.sudo()
        kwargs = {"changed_ts": 1.5, "force": False}
        product.with_delay(identity_key="scs-orm", description="X")._scs_job_push_sku(
            **kwargs
        )
        store_jobs(
            self.env, [(product._scs_job_push_sku, kwargs, "scs-raw", "X", None)]
        )
        self.env.flush_all()
        self.env.cr.execute(
            "SELECT * FROM queue_job WHERE identity_key IN ('scs-orm', 'scs-raw')"
            " ORDER BY identity_key"
        )
        columns = [d[0] for d in self.env.cr.description]
        orm, raw = (
            dict(zip(columns, row, strict=True)) for row in self.env.cr.fetchall()
        )
        differing = {
            column
            for column in columns
            if orm[column] != raw[column]
            and column not in ("id", "uuid", "identity_key", "date_created")
        }
        self.assertFalse(differing, {c: (orm[c], raw[c]) for c in differing})
        job = Job.load(self.env, raw["uuid"])
        self.assertEqual(job.kwargs, kwargs)
        self.assertEqual(job.recordset, product)

    def test_recently_pushed_sku_waits_for_the_interval(self):
        self.env["ir.config_parameter"].set_param(
            "stock_channel_sync.min_push_interval", "1"
        )
        binding = self.channel.binding_ids.filtered(
            lambda b: b.product_id == self.product_a
        )
        pushed = time.time() - 0.25
        binding.last_push_ts = pushed
        self.move_stock(self.product_a, 1)
        self.commit_point()
        job = self.sync_jobs(PUSH_SKU)
        self.assertEqual(len(job), 1)
        self.assertTrue(job.eta, "burst throttle delays the next push")
        # exactly one interval after the last push, not the next whole second
        # (the runner compares the eta to the microsecond)
        self.assertAlmostEqual(
            job.eta.replace(tzinfo=timezone.utc).timestamp(), pushed + 1, delta=0.001
        )
        # everything changed meanwhile coalesces into that job
        for _i in range(20):
            self.move_stock(self.product_a, -1)
            self.commit_point()
        self.assertEqual(len(self.sync_jobs(PUSH_SKU)), 1)
        # a forced push is not throttled
        self.product_a._scs_enqueue_push(force=True)
        forced = self.sync_jobs(PUSH_SKU) - job
        self.assertEqual(len(forced), 1)
        self.assertFalse(forced.eta)

    def test_reservation_enqueues(self):
        picking = self.env["stock.picking"].create(
            {
                "picking_type_id": self.warehouse.out_type_id.id,
                "location_id": self.stock.id,
                "location_dest_id": self.customers.id,
                "move_ids": [
                    Command.create(
                        {
                            "product_id": self.product_a.id,
                            "product_uom_qty": 2,
                            "product_uom": self.product_a.uom_id.id,
                            "location_id": self.stock.id,
                            "location_dest_id": self.customers.id,
                        }
                    )
                ],
            }
        )
        picking.action_confirm()
        picking.action_assign()
        self.commit_point()
        self.assertEqual(self.sync_jobs(PUSH_SKU).records, self.product_a)
        self.discard_jobs()
        picking.do_unreserve()
        self.commit_point()
        self.assertEqual(len(self.sync_jobs(PUSH_SKU)), 1, "unreserve is pushed too")

    def test_unbound_or_disabled_enqueue_nothing(self):
        self.move_stock(self.unbound, 3)
        self.commit_point()
        self.assertFalse(self.sync_jobs())
        self.channel.sync_enabled = False
        self.move_stock(self.product_a, 3)
        self.commit_point()
        self.assertFalse(self.sync_jobs())

    def test_non_internal_locations_ignored(self):
        self.move_stock(self.product_a, 3, location=self.customers)
        self.commit_point()
        self.assertFalse(self.sync_jobs())

    def test_rolled_back_transaction_leaves_no_job(self):
        Job = self.env["queue.job"]
        before = Job.search_count([])
        with self.enter_registry_test_mode(), self.registry.cursor() as cr:
            env = api.Environment(cr, self.env.uid, {})
            env["stock.quant"]._update_available_quantity(
                env["product.product"].browse(self.product_a.id),
                env["stock.location"].browse(self.stock.id),
                4,
            )
            cr.rollback()
        self.assertEqual(Job.search_count([]), before)
        # the same change committed does enqueue (the test above can fail)
        self.move_stock(self.product_a, 4)
        self.commit_point()
        self.assertEqual(Job.search_count([]), before + 1)


@tagged("post_install", "-at_install")
class TestOutboundPush(SyncCase):
    """Jobs run against local simulators over real HTTP on loopback."""

    def test_every_channel_gets_its_quantity(self):
        sims = [self.start_simulator() for _i in range(3)]
        plain = self.make_channel(sims[0], name="Plain")
        buffered = self.make_channel(sims[1], name="Buffered", buffer_qty=2)
        capped = self.make_channel(sims[2], name="Capped")
        self.bind(plain, self.product_a)
        self.bind(buffered, self.product_a)
        self.bind(
            capped, self.product_a, use_max_qty=True, max_qty=8, allocation_pct=50
        )
        self.move_stock(self.product_a, 2)  # 12 on hand
        self.commit_point()
        self.assertEqual(len(self.sync_jobs(PUSH_SKU)), 1, "one job for 3 channels")
        self.run_jobs()
        self.assertEqual(sims[0].quantity("SCS-MUG"), 12)
        self.assertEqual(sims[1].quantity("SCS-MUG"), 10)
        self.assertEqual(sims[2].quantity("SCS-MUG"), 4)  # min(12, 8) * 50 %
        events = self.env["sync.event"].search(
            [("sku", "=", "SCS-MUG"), ("direction", "=", "out")]
        )
        self.assertEqual(len(events), 3)
        self.assertEqual(set(events.mapped("state")), {"applied"})
        for event in events:
            self.assertGreaterEqual(event.ack_ts, event.sent_ts)
            self.assertGreaterEqual(event.sent_ts, event.change_ts)
            self.assertGreater(event.latency_ms, 0)

    def test_a_change_made_while_modules_load_counts_latency_from_its_push(self):
        """An install's demo stock or an update's data is pushed once the
        server runs jobs, after the install: its latency counts from the
        push, not from a change made before anything could run it. A change
        made on a running server counts from the change."""
        sim = self.start_simulator()
        self.bind(self.make_channel(sim), self.product_a)
        with patch.object(self.env.registry, "ready", False):
            self.move_stock(self.product_a, 2)
            self.commit_point()
        job = self.sync_jobs(PUSH_SKU)
        self.assertIsNone(Job.load(self.env, job.uuid).kwargs["changed_ts"])
        before_run = time.time()
        self.run_jobs()
        self.assertEqual(sim.quantity("SCS-MUG"), 12)
        Event = self.env["sync.event"]
        first = Event.search([("sku", "=", "SCS-MUG"), ("direction", "=", "out")])
        self.assertEqual(first.state, "applied")
        self.assertGreaterEqual(first.change_ts, before_run)
        self.move_stock(self.product_a, -1)
        self.commit_point()
        after_change = time.time()
        self.run_jobs()
        second = (
            Event.search([("sku", "=", "SCS-MUG"), ("direction", "=", "out")]) - first
        )
        self.assertEqual(sim.quantity("SCS-MUG"), 11)
        self.assertLessEqual(second.change_ts, after_change)

    def channel_of_two_pushed(self):
        """A channel selling the mug and the cap, each pushed once."""
        sim = self.start_simulator()
        channel = self.make_channel(sim)
        self.bind(channel, self.product_a)
        self.bind(channel, self.product_b)
        self.product_a._scs_job_push_sku()
        self.product_b._scs_job_push_sku()
        self.assertEqual(sim.quantity("SCS-MUG"), 10)
        return sim, channel

    def test_channel_rule_changes_are_pushed(self):
        """The channel's buffer, what it sells and Push Stock are part of the
        figure it is offered: a change is pushed at commit, as a binding's."""
        sim, channel = self.channel_of_two_pushed()
        # another channel selling the same products: its numbers did not move
        other_sim = self.start_simulator()
        other = self.make_channel(other_sim)
        self.bind(other, self.product_a)
        self.product_a._scs_job_push_sku(force=True)
        other_pushes = len(other_sim.history)
        channel.reconcile_batch_size = 1
        # batches of more bindings than a live one holds (a large catalogue)
        with patch.object(channel_binding, "LIVE_BATCH_BINDINGS", 0):
            channel.buffer_qty = 3
            self.commit_point()
        self.assertFalse(self.sync_jobs(PUSH_SKU), "not one job per SKU")
        batches = self.sync_jobs("_scs_job_push_batch")
        self.assertEqual(len(batches), 2, "one job per batch")
        # bulk work: a sale meanwhile is pushed first, and the batches never
        # take every slot (queue_job's scheduler, configured as the README
        # advises)
        self.move_stock(self.product_b, -1)
        self.commit_point()
        push = self.sync_jobs(PUSH_SKU)
        self.assertEqual(
            set(batches.mapped("channel")), {"root.channel_sync.reconcile"}
        )
        # the batches came first
        running = self.runner_starts(batches | push)
        self.assertEqual(running[0], push.uuid, "the push goes first")
        self.assertEqual(len(running), 2, "one batch at a time, beside the push")
        self.run_jobs()
        self.assertEqual(sim.quantity("SCS-MUG"), 7)
        self.assertEqual(sim.quantity("SCS-CAP"), 1)
        self.assertEqual(len(other_sim.history), other_pushes)
        # off, a sale, back on: the sale is pushed when the channel is on again
        channel.sync_enabled = False
        self.commit_point()
        self.assertFalse(
            self.sync_jobs(PUSH_SKU) | self.sync_jobs("_scs_job_push_batch"),
            "nothing to push to a channel off",
        )
        self.move_stock(self.product_a, -4)
        self.commit_point()
        self.run_jobs()
        self.assertEqual(sim.quantity("SCS-MUG"), 7)
        channel.sync_enabled = True
        self.commit_point()
        # a few bindings: live work, pushed at once beside the SKU pushes
        self.assertEqual(
            set(self.sync_jobs("_scs_job_push_batch").mapped("channel")),
            {"root.channel_sync"},
        )
        self.run_jobs()
        self.assertEqual(sim.quantity("SCS-MUG"), 3)
        # a warehouse that holds nothing of it: nothing left to sell
        other = self.env["stock.warehouse"].create({"name": "Empty", "code": "EMP"})
        channel.warehouse_ids = other
        self.commit_point()
        self.run_jobs()
        self.assertEqual(sim.quantity("SCS-MUG"), 0)
        # that warehouse archived: still nothing, not every warehouse of the
        # company (which a channel that chose none sells)
        other.active = False
        self.move_stock(self.product_a, 5)
        self.commit_point()
        self.run_jobs()
        self.assertEqual(sim.quantity("SCS-MUG"), 0)
        self.assertFalse(channel._scs_stock_locations())

    def test_a_location_inside_a_chosen_warehouse_counts_once(self):
        """A channel that sells a warehouse and also names a shelf inside
        it: the shelf's stock is the warehouse's, one source; as a second
        one, an order split between them would count it twice."""
        shelf = self.env["stock.location"].create(
            {"name": "Shelf", "location_id": self.warehouse.lot_stock_id.id}
        )
        outside = self.env["stock.location"].create(
            {"name": "Annex", "location_id": self.warehouse.view_location_id.id}
        )
        sim = self.start_simulator()
        channel = self.make_channel(sim, location_ids=[(6, 0, (shelf | outside).ids)])
        self.assertEqual(
            channel._scs_stock_locations(), self.warehouse.lot_stock_id | outside
        )
        binding = self.bind(channel, self.product_a)
        free = self.product_a.with_context(warehouse_id=self.warehouse.id).free_qty
        self.assertEqual(binding.published_qty, int(free))

    def test_a_channel_holding_a_newer_sequence_is_pushed_above_it(self):
        """After Odoo's database is restored from a backup, its sequences are
        behind what a channel already holds: the refused push is not recorded
        as delivered; Odoo's sequence moves above the channel's and the
        binding is pushed again."""
        sim = self.start_simulator()
        channel = self.make_channel(sim)
        binding = self.bind(channel, self.product_a)
        # (the sequence is not rolled back with a test: ahead of where it is)
        self.env.cr.execute("SELECT last_value FROM stock_channel_sync_push_seq")
        ahead = self.env.cr.fetchone()[0] + 10**6
        sim.sequences["SCS-MUG"] = ahead
        sim.quantities["SCS-MUG"] = 3
        self.product_a._scs_job_push_sku()
        self.assertEqual(sim.quantity("SCS-MUG"), 3, "refused by the shop")
        refused = self.env["sync.event"].search(
            [("binding_id", "=", binding.id), ("direction", "=", "out")]
        )
        self.assertEqual(refused.state, "skipped")
        self.assertIn("newer sequence", refused.reason)
        self.assertEqual(binding.push_state, "failed")
        self.run_jobs()
        self.assertEqual(sim.quantity("SCS-MUG"), 10)
        self.assertEqual(binding.push_state, "ok")
        pushed = self.env["sync.event"].search(
            [("binding_id", "=", binding.id), ("state", "=", "applied")]
        )
        self.assertGreater(pushed.sequence, ahead)

    def test_a_binding_moved_to_another_listing_is_pushed_its_number(self):
        """Another channel, or another SKU on the same one, is a listing that
        was never pushed: the figure goes out even though it did not change."""
        sim = self.start_simulator()
        channel = self.make_channel(sim)
        binding = self.bind(channel, self.product_a)
        self.product_a._scs_job_push_sku()
        self.assertEqual(sim.quantity("SCS-MUG"), 10)
        self.assertEqual(binding.push_state, "ok")
        other_sim = self.start_simulator()
        other = self.make_channel(other_sim, name="Other")
        binding.channel_id = other
        self.assertEqual(binding.push_state, "new")
        self.assertFalse(binding.last_pushed_at)
        self.commit_point()
        self.run_jobs()
        self.assertEqual(other_sim.quantity("SCS-MUG"), 10)
        self.assertEqual(binding.push_state, "ok")
        # renamed on that channel: the new SKU gets the number too
        binding.sku = "SCS-MUG-2"
        self.commit_point()
        self.run_jobs()
        self.assertEqual(other_sim.quantity("SCS-MUG-2"), 10)
        # a write that changes nothing of the listing pushes nothing
        pushes = len(other_sim.history)
        binding.write({"sku": "SCS-MUG-2", "channel_id": other.id})
        self.commit_point()
        self.run_jobs()
        self.assertEqual(len(other_sim.history), pushes)

    def test_batch_push_leaves_a_busy_binding_to_a_batch_of_its_own(self):
        """A binding another job holds is not waited for: the rest of the
        batch is pushed, the busy one gets a batch of its own a second
        later."""
        sim = self.start_simulator()
        channel = self.make_channel(sim)
        mug = self.bind(channel, self.product_a)
        self.bind(channel, self.product_b)
        module = "odoo.addons.stock_channel_sync.models.channel_binding"
        real = channel_binding.lock_rows_or_retry

        def mug_held(env, table, ids, reason, **kw):
            locked = real(env, table, ids, reason, **kw)
            return (
                [i for i in locked if i != mug.id] if kw.get("skip_locked") else locked
            )

        channel.buffer_qty = 1
        self.commit_point()
        with patch(f"{module}.lock_rows_or_retry", mug_held):
            self.run_jobs("_scs_job_push_batch", rounds=1)
        self.assertEqual(sim.quantity("SCS-CAP"), 4)
        self.assertIsNone(sim.quantity("SCS-MUG"))
        again = self.sync_jobs("_scs_job_push_batch")
        self.assertEqual(len(again), 1)
        self.assertTrue(again.eta, "a second later")
        self.assertEqual(again.records, mug)
        self.run_jobs("_scs_job_push_batch")
        self.assertEqual(sim.quantity("SCS-MUG"), 9)

    def test_push_all_now_sends_every_number_whatever_odoo_recorded(self):
        """A shop edited by hand, or restored from a backup, shows another
        number than the one Odoo recorded as pushed: *Push All Now* sends
        each binding's number again, while a settings change that moves no
        number skips the bindings it did not move."""
        sim, channel = self.channel_of_two_pushed()
        sim.set_stock("SCS-MUG", 40)
        sim.set_stock("SCS-CAP", 41)
        pushes = len(sim.history)
        # what a settings change asks for: the numbers it moved only
        channel.action_push_all(force=False)
        self.run_jobs("_scs_job_push_batch")
        self.assertEqual(len(sim.history), pushes)
        self.assertEqual(sim.quantity("SCS-MUG"), 40)
        res = channel.action_push_all()
        self.assertIn("whatever the channel shows", str(res))
        self.run_jobs("_scs_job_push_batch")
        self.assertEqual(sim.quantity("SCS-MUG"), 10)
        self.assertEqual(sim.quantity("SCS-CAP"), 5)

    def test_delivery_return_scrap_adjustment(self):
        sim = self.start_simulator()
        channel = self.make_channel(sim)
        self.bind(channel, self.product_a)
        self.bind(channel, self.product_b)
        picking = self.env["stock.picking"].create(
            {
                "picking_type_id": self.warehouse.out_type_id.id,
                "location_id": self.stock.id,
                "location_dest_id": self.customers.id,
                "move_ids": [
                    Command.create(
                        {
                            "product_id": product.id,
                            "product_uom_qty": qty,
                            "product_uom": product.uom_id.id,
                            "location_id": self.stock.id,
                            "location_dest_id": self.customers.id,
                        }
                    )
                    for product, qty in ((self.product_a, 3), (self.product_b, 2))
                ],
            }
        )
        picking.action_confirm()
        picking.action_assign()
        self.commit_point()
        self.run_jobs()
        # reserved units are not sellable any more
        self.assertEqual(sim.quantity("SCS-MUG"), 7)
        self.assertEqual(sim.quantity("SCS-CAP"), 3)
        picking.button_validate()
        self.commit_point()
        self.run_jobs()
        self.assertEqual(picking.state, "done")
        self.assertEqual(sim.quantity("SCS-MUG"), 7)
        # return of one mug
        wizard = (
            self.env["stock.return.picking"]
            .with_context(active_id=picking.id, active_model="stock.picking")
            .create({})
        )
        for line in wizard.product_return_moves:
            line.quantity = 1 if line.product_id == self.product_a else 0
        action = wizard.action_create_returns()
        returned = self.env["stock.picking"].browse(action["res_id"])
        returned.button_validate()
        self.commit_point()
        self.run_jobs()
        self.assertEqual(sim.quantity("SCS-MUG"), 8)
        # scrap two caps
        scrap = self.env["stock.scrap"].create(
            {
                "product_id": self.product_b.id,
                "scrap_qty": 2,
                "location_id": self.stock.id,
            }
        )
        scrap.action_validate()
        self.commit_point()
        self.run_jobs()
        self.assertEqual(sim.quantity("SCS-CAP"), 1)
        # inventory adjustment counts 20 mugs
        quant = (
            self.env["stock.quant"]
            .with_context(inventory_mode=True)
            .create(
                {
                    "product_id": self.product_a.id,
                    "location_id": self.stock.id,
                    "inventory_quantity": 20,
                }
            )
        )
        quant.action_apply_inventory()
        self.commit_point()
        self.run_jobs()
        self.assertEqual(sim.quantity("SCS-MUG"), 20)
        self.assertEqual(self.product_a.free_qty, 20)

    def test_a_count_alone_pushes_nothing_its_application_does(self):
        """Counting (a quant's inventory quantity, in a new quant or not)
        changes no stock: no push. Pushed for nothing, it would hold the
        count's application back by the burst interval."""
        sim = self.start_simulator()
        channel = self.make_channel(sim)
        self.bind(channel, self.product_a)
        self.bind(channel, self.unbound)
        shelf = self.env["stock.location"].create(
            {"name": "Count shelf", "location_id": self.stock.id}
        )
        Quant = self.env["stock.quant"].with_context(inventory_mode=True)
        counts = Quant.create(
            [
                {  # a quant of its own: quantity 0 until applied
                    "product_id": self.product_a.id,
                    "location_id": shelf.id,
                    "inventory_quantity": 4,
                },
                {  # the quant that holds the stock: counted, not changed
                    "product_id": self.unbound.id,
                    "location_id": self.stock.id,
                    "inventory_quantity": 9,
                },
            ]
        )
        self.commit_point()
        self.assertFalse(
            [job.records.default_code for job in self.sync_jobs("_scs_job_push_sku")]
        )
        counts.action_apply_inventory()
        self.commit_point()
        self.assertEqual(
            sorted(
                job.records.default_code for job in self.sync_jobs("_scs_job_push_sku")
            ),
            ["SCS-MUG", "SCS-NONE"],
        )
        self.run_jobs()
        self.assertEqual(sim.quantity("SCS-MUG"), 14)
        self.assertEqual(sim.quantity("SCS-NONE"), 9)
        # a count applied as it is created (imports, the API) moves stock
        Quant.create(
            {
                "product_id": self.unbound.id,
                "location_id": self.stock.id,
                "inventory_quantity_auto_apply": 6,
            }
        )
        self.commit_point()
        self.run_jobs()
        self.assertEqual(sim.quantity("SCS-NONE"), 6)

    def test_duplicate_job_within_the_interval_waits(self):
        """Two jobs created by racing commits push at least an interval apart."""
        self.env["ir.config_parameter"].set_param(
            "stock_channel_sync.min_push_interval", "2"
        )
        sim = self.start_simulator()
        channel = self.make_channel(sim)
        self.bind(channel, self.product_a)
        self.product_a._scs_job_push_sku()
        self.assertEqual(len(sim.requests), 1)
        self.move_stock(self.product_a, -1)
        binding = channel.binding_ids
        binding.last_push_ts -= 0.5
        with self.assertRaises(RetryableJobError) as caught:
            self.product_a._scs_job_push_sku()
        self.assertTrue(caught.exception.ignore_retry)
        # the rest of the interval, not rounded up to whole seconds
        self.assertAlmostEqual(caught.exception.seconds, 1.5, delta=0.2)
        self.assertEqual(len(sim.requests), 1, "nothing sent within the interval")
        # a forced push is not held back
        self.product_a._scs_job_push_sku(force=True)
        self.assertEqual(sim.quantity("SCS-MUG"), 9)

    def test_unchanged_quantity_sends_nothing(self):
        sim = self.start_simulator()
        channel = self.make_channel(sim)
        binding = self.bind(channel, self.product_a)
        binding._scs_push()
        self.assertEqual(sim.quantity("SCS-MUG"), 10)
        sent = len(sim.requests)
        summary = binding._scs_push()
        self.assertEqual(summary, {"pushed": 0, "skipped": 1, "failed": 0})
        self.assertEqual(len(sim.requests), sent)
        binding.product_id._scs_job_push_sku(force=True)
        self.assertEqual(len(sim.requests), sent + 1, "a forced push sends anyway")

    def test_sequence_and_idempotency_key(self):
        sim = self.start_simulator()
        channel = self.make_channel(sim)
        binding = self.bind(channel, self.product_a)
        binding._scs_push()
        first = binding.sequence
        self.move_stock(self.product_a, -4)
        binding._scs_push()
        self.assertGreater(binding.sequence, first)
        keys = [r.headers.get("webhook-id") for r in sim.requests]
        self.assertEqual(len(set(keys)), 2)
        self.assertEqual(sim.sequences["SCS-MUG"], binding.sequence)
        self.assertEqual(sim.quantity("SCS-MUG"), 6)

    def test_rolled_back_push_never_reuses_its_delivery_id(self):
        """A job that pushed, then failed to commit, leaves no key to reuse."""
        sim = self.start_simulator()
        channel = self.make_channel(sim)
        binding = self.bind(channel, self.product_a)
        with self.assertRaises(RuntimeError), self.env.cr.savepoint():
            binding._scs_push()
            raise RuntimeError("serialization failure after the HTTP call")
        self.assertEqual(sim.quantity("SCS-MUG"), 10, "the channel applied it")
        binding.invalidate_recordset()
        self.move_stock(self.product_a, -1)
        binding._scs_push(force=True)
        keys = [r.headers.get("webhook-id") for r in sim.requests]
        self.assertEqual(len(set(keys)), 2, "the second push has a new key")
        self.assertEqual(sim.quantity("SCS-MUG"), 9, "and is not dropped")

    def test_server_error_gets_retry_job_then_succeeds(self):
        sim = self.start_simulator()
        ok_sim = self.start_simulator()
        channel = self.make_channel(sim, name="Flaky")
        good = self.make_channel(ok_sim, name="Good")
        binding = self.bind(channel, self.product_a)
        self.bind(good, self.product_a)
        sim.queue_response(503, {"error": "maintenance"})
        with trap_jobs() as trap:
            self.product_a._scs_job_push_sku()
            retries = self.jobs_of(trap, PUSH_BINDING)
            self.assertEqual(len(retries), 1)
            self.assertEqual(retries[0].recordset, binding)
            self.assertEqual(
                retries[0].identity_key, f"stock_channel_sync.binding.{binding.id}"
            )
        self.assertEqual(
            ok_sim.quantity("SCS-MUG"), 10, "healthy channel is not held up"
        )
        self.assertIsNone(sim.quantity("SCS-MUG"))
        event = binding.pending_event_id
        self.assertEqual(event.state, "failed")
        self.assertIn("503", event.error)
        self.assertEqual(binding.push_state, "failed")
        ok_requests = len(ok_sim.requests)
        # the retry job pushes only the failed channel
        binding._scs_job_push_binding()
        self.assertEqual(sim.quantity("SCS-MUG"), 10)
        self.assertEqual(len(ok_sim.requests), ok_requests)
        self.assertEqual(event.state, "applied")
        self.assertEqual(event.attempts, 2)
        self.assertFalse(event.error, "a delivered push shows no error")
        self.assertIn("delivered on attempt 2", event.reason)
        self.assertIn("503", event.reason)
        # the event log shows what was sent
        sent = json.loads(event.payload)
        self.assertEqual(
            (sent["sku"], sent["quantity"], sent["idempotency_key"]),
            ("SCS-MUG", 10, event.idempotency_key),
        )
        self.assertEqual(sent["sequence"], event.sequence)
        self.assertEqual(binding.push_state, "ok")
        # the redelivery reused the same idempotency key: same event, same quantity
        ids = [r.headers.get("webhook-id") for r in sim.requests]
        self.assertEqual(len(set(ids)), 1)

    def test_retry_job_counts_each_attempt(self):
        """A push delivered by the third run of its retry job says so: the
        SKU job's send and two failed runs came first."""
        sim = self.start_simulator()
        channel = self.make_channel(sim, name="Flaky")
        binding = self.bind(channel, self.product_a)
        for _n in range(3):
            sim.queue_response(503, {"error": "maintenance"})
        self.product_a._scs_job_push_sku()
        event = binding.pending_event_id
        self.assertEqual((event.state, event.attempts), ("failed", 1))
        record = self.sync_jobs("_scs_job_push_binding")
        self.assertEqual(len(record), 1)
        for run in (1, 2):
            job = Job.load(self.env, record.uuid)
            # as the runner does: the failed run's transaction is rolled back
            with self.assertRaises(RetryableJobError), self.env.cr.savepoint():
                job.perform()
            job.postpone(seconds=0)
            job.set_pending(reset_retry=False)
            job.store()
            record.invalidate_recordset()
            self.assertEqual(record.retry, run)
        job = Job.load(self.env, record.uuid)
        job.perform()
        event.invalidate_recordset()
        self.assertEqual(sim.quantity("SCS-MUG"), 10)
        self.assertEqual(event.state, "applied")
        self.assertEqual(event.attempts, 4)
        self.assertIn("delivered on attempt 4", event.reason)
        self.assertEqual(len(sim.requests), 4)

    def test_retry_after_is_honoured(self):
        sim = self.start_simulator()
        channel = self.make_channel(sim)
        binding = self.bind(channel, self.product_a)
        sim.queue_response(429, {"error": "slow down"}, {"Retry-After": "30"})
        with trap_jobs() as trap:
            binding._scs_push()
            retry = self.jobs_of(trap, PUSH_BINDING)[0]
            self.assertGreaterEqual(
                (retry.eta - retry.date_created).total_seconds(), 29
            )
        sim.queue_response(429, {"error": "slow down"}, {"Retry-After": "7"})
        with self.assertRaises(RetryableJobError) as caught:
            binding._scs_job_push_binding()
        self.assertEqual(caught.exception.seconds, 7)

    def test_retry_after_moves_a_retry_job_already_waiting(self):
        """A failure of a binding whose retry job already waits is merged into
        that job (one per binding): a Retry-After moves it, later or earlier,
        to when the channel takes the next call; Retry moves it to now."""
        sim = self.start_simulator()
        channel = self.make_channel(sim)
        binding = self.bind(channel, self.product_a)
        sim.queue_response(500, {"error": "boom"})
        binding._scs_push()
        retry = self.sync_jobs(PUSH_BINDING)
        self.assertEqual(len(retry), 1)

        def wait():
            retry.invalidate_recordset(["eta"])
            return (retry.eta - fields.Datetime.now()).total_seconds()

        self.assertLess(wait(), 5)
        sim.queue_response(429, {"error": "slow down"}, {"Retry-After": "60"})
        binding._scs_push(force=True)
        self.assertEqual(self.sync_jobs(PUSH_BINDING), retry, "one retry job")
        self.assertGreater(wait(), 55, "not before the channel's Retry-After")
        # parked far out (a pause that ended since): a 429 of 20 s brings it,
        # never a fraction of a second before the channel's time
        retry.eta = fields.Datetime.now() + timedelta(minutes=3)
        sim.queue_response(429, {"error": "slow down"}, {"Retry-After": "20"})
        sent = datetime.now(timezone.utc).replace(tzinfo=None)
        binding._scs_push(force=True)
        self.assertLess(wait(), 25)
        self.assertGreaterEqual(retry.eta, sent + timedelta(seconds=20))
        # Retry of the failed push: now
        retry.eta = fields.Datetime.now() + timedelta(minutes=3)
        failed = self.env["sync.event"].search(
            [("binding_id", "=", binding.id), ("state", "=", "failed")],
            order="id desc",
            limit=1,
        )
        failed.action_retry()
        self.assertLess(wait(), 3)
        self.assertEqual(self.sync_jobs(PUSH_BINDING), retry)

    def test_retry_after_holds_every_push_to_the_channel(self):
        """A 429 with Retry-After is mostly a limit of the whole account:
        no job calls the channel before that time, not only the retry of
        the push that was told so; other SKUs' pushes wait in their retry
        jobs, due when it ends, and go out then."""
        sim = self.start_simulator()
        channel = self.make_channel(sim)
        b_a = self.bind(channel, self.product_a)
        b_b = self.bind(channel, self.product_b)
        with self.enter_registry_test_mode():
            sim.queue_response(429, {"error": "slow down"}, {"Retry-After": "30"})
            b_a._scs_push()
            calls = len(sim.requests)
            self.move_stock(self.product_b, -1)
            b_b._scs_push()
        self.assertEqual(len(sim.requests), calls, "not called within the 30 s")
        held = b_b.pending_event_id
        self.assertEqual(held.state, "failed")
        self.assertIn("asked to wait", held.error)
        retry = self.env["queue.job"].search(
            [("identity_key", "=", f"stock_channel_sync.binding.{b_b.id}")]
        )
        self.assertGreater((retry.eta - fields.Datetime.now()).total_seconds(), 25)
        # the time has come: the retry goes out
        self.env.cr.execute(
            "UPDATE sync_channel SET paused_until = 0 WHERE id = %s", (channel.id,)
        )
        with self.enter_registry_test_mode():
            b_b._scs_job_push_binding()
        self.assertEqual(sim.quantity("SCS-CAP"), 4)
        # a retry job told to wait holds the channel too (the wait is written
        # in a transaction of its own, which the job's rollback leaves)
        sim.queue_response(429, {"error": "slow down"}, {"Retry-After": "40"})
        with (
            self.enter_registry_test_mode(),
            patch.object(type(channel), "_scs_throttle") as throttle,
            self.assertRaises(RetryableJobError) as caught,
        ):
            b_a._scs_job_push_binding()
        self.assertIn("429", str(caught.exception))
        throttle.assert_called_once_with(40.0)

    def test_channel_wait_is_written_once_per_answer_not_per_binding(self):
        """A batch call refused whole fails each of its bindings, and each
        reports the channel's wait: the wait is written once per channel
        and transaction (a write of its own, which may wait for a lock),
        again only when an answer asks for a later time."""
        sim = self.start_simulator()
        channel = self.make_channel(sim)
        other = self.make_channel(sim, name="Other channel")
        Channel = type(channel)
        real = Channel._scs_own_cursor
        writes = []

        def counted(records):
            writes.append(records.id)
            return real(records)

        with (
            self.enter_registry_test_mode(),
            patch.object(Channel, "_scs_own_cursor", counted),
        ):
            for _binding in range(3):
                channel._scs_throttle(30)
            other._scs_throttle(30)
            self.assertEqual(writes, [channel.id, other.id])
            channel._scs_throttle(30.5)  # the same answer, a moment later
            self.assertEqual(len(writes), 2)
            channel._scs_throttle(60)
            self.assertEqual(writes, [channel.id, other.id, channel.id])
        channel.invalidate_recordset(["paused_until"])
        self.assertGreater(channel.paused_until, time.time() + 55)

    def test_retry_after_of_a_year_waits_a_day(self):
        """A job parked a year out is out of sight (and past what queue_job's
        runner can wait for): the wait is bounded, the retries still count."""
        sim = self.start_simulator()
        channel = self.make_channel(sim)
        binding = self.bind(channel, self.product_a)
        sim.queue_response(429, {"error": "slow down"}, {"Retry-After": "31536000"})
        with trap_jobs() as trap:
            binding._scs_push()
            retry = self.jobs_of(trap, PUSH_BINDING)[0]
            wait = (retry.eta - retry.date_created).total_seconds()
            self.assertGreaterEqual(wait, 86400 - 1)
            self.assertLessEqual(wait, 86400 + 1)
        sim.queue_response(429, {"error": "slow down"}, {"Retry-After": "31536000"})
        with self.assertRaises(RetryableJobError) as caught:
            binding._scs_job_push_binding()
        self.assertEqual(caught.exception.seconds, 86400)

    def test_client_error_is_dead_at_once_with_message(self):
        sim = self.start_simulator()
        channel = self.make_channel(sim)
        binding = self.bind(channel, self.product_a)
        sim.queue_response(422, {"error": "sku is archived on the shop"})
        with trap_jobs() as trap:
            binding._scs_push()
            self.assertEqual(trap.jobs_count(), 0, "a 4xx is not retried")
        event = self.env["sync.event"].search([("binding_id", "=", binding.id)])
        self.assertEqual(event.state, "dead")
        self.assertIn("sku is archived on the shop", event.error)
        activity = self.env["mail.activity"].search(
            [("res_model", "=", "sync.channel"), ("res_id", "=", channel.id)]
        )
        self.assertEqual(len(activity), 1)
        # the retry job also fails at once on a 4xx
        sim.queue_response(400, {"error": "bad sku"})
        binding.push_state = "failed"
        with self.assertRaises(FailedJobError):
            binding._scs_job_push_binding()

    def test_dead_letter_alert_names_the_newest_and_ends_with_the_last(self):
        """One alert while the channel has dead letters: a later one updates
        its note instead of hiding behind the first; once the last dead
        letter is discarded or superseded by a push that lands, the alert is
        marked done, not left about the past."""
        sim = self.start_simulator()
        channel = self.make_channel(sim)
        b_a = self.bind(channel, self.product_a)
        b_b = self.bind(channel, self.product_b)
        sim.queue_response(422, {"error": "sku A archived"})
        b_a._scs_push()
        sim.queue_response(422, {"error": "sku B archived"})
        b_b._scs_push()
        Activity = self.env["mail.activity"].with_context(active_test=False)
        alert = Activity.search(
            [
                ("res_model", "=", "sync.channel"),
                ("res_id", "=", channel.id),
                ("summary", "=", "Stock sync dead letters"),
            ]
        )
        self.assertEqual(len(alert), 1)
        self.assertIn("sku B archived", str(alert.note))
        dead = self.env["sync.event"].search(
            [("channel_id", "=", channel.id), ("state", "=", "dead")]
        )
        self.assertEqual(len(dead), 2)
        # the first one superseded by a push that lands: one is left
        b_a._scs_push(force=True)
        self.assertTrue(alert.exists() and alert.active)
        # the last one discarded: the alert is done
        left = dead.filtered(lambda e: e.state == "dead")
        self.assertEqual(len(left), 1)
        self.env["sync.event.discard"].with_context(active_ids=left.ids).create(
            {"reason": "archived on purpose"}
        ).action_discard()
        self.assertFalse(
            alert.exists() and alert.active, "no dead letter left: alert done"
        )

    def test_dead_letter_gone_by_retention_ends_its_alert(self):
        """Retention deletes a dead letter past its period: the channel's
        alert about it is marked done, not left about nothing."""
        sim = self.start_simulator()
        channel = self.make_channel(sim)
        binding = self.bind(channel, self.product_a)
        sim.queue_response(422, {"error": "sku archived"})
        binding._scs_push()
        dead = self.env["sync.event"].search(
            [("binding_id", "=", binding.id), ("state", "=", "dead")]
        )
        self.assertEqual(len(dead), 1)
        binding.pending_event_id = False
        self.env.flush_all()
        self.env.cr.execute(
            "UPDATE sync_event SET write_date = now() - interval '400 days'"
            " WHERE id = %s",
            (dead.id,),
        )
        alert = self.env["mail.activity"].search(
            [
                ("res_model", "=", "sync.channel"),
                ("res_id", "=", channel.id),
                ("summary", "=", "Stock sync dead letters"),
            ]
        )
        self.assertEqual(len(alert), 1)
        self.gc_events()
        self.assertFalse(dead.exists())
        self.assertFalse(alert.exists() and alert.active)

    def test_exhausted_retries_make_a_dead_letter(self):
        sim = self.start_simulator()
        channel = self.make_channel(sim)
        binding = self.bind(channel, self.product_a)
        sim.queue_response(500)
        binding._scs_push()
        event = binding.pending_event_id
        self.assertEqual(event.state, "failed")
        binding._scs_on_push_failed(exc_message="Max. retries (3) reached: [500]")
        self.assertEqual(event.state, "dead")
        self.assertIn("Max. retries", event.error)
        self.assertEqual(channel.dead_count, 1)
        # retried by hand once the binding is archived: closed, not left
        # queued with nothing to send it
        binding.active = False
        event.action_retry()
        self.run_jobs()
        # a failure still, in the figures
        self.assertEqual((event.state, event.discarded_from), ("discarded", "dead"))
        self.assertIn("not sent", event.reason)

    def test_push_jobs_that_lost_their_connection_run_again(self):
        """A job that failed because its database connection went away
        pushed nothing wrong: its hook gives it a new job, no dead letter."""
        sim = self.start_simulator()
        channel = self.make_channel(sim)
        binding = self.bind(channel, self.product_a)
        self.run_jobs()
        lost = {
            "exc_name": "psycopg2.OperationalError",
            "exc_message": "server closed the connection unexpectedly",
        }
        self.product_a._scs_on_push_failed(**lost)
        self.assertFalse(
            self.env["sync.event"].search(
                [("binding_id", "=", binding.id), ("state", "=", "dead")]
            )
        )
        self.assertEqual(len(self.sync_jobs("_scs_job_push_sku")), 1)
        self.run_jobs()
        # a forced push (Push Now) runs again forced: the edit on the channel
        # is overwritten though Odoo's figure did not change
        sim.set_stock("SCS-MUG", 5)
        self.product_a._scs_enqueue_push(force=True)
        forced = self.sync_jobs("_scs_job_push_sku")
        key = f"stock_channel_sync.sku.{self.product_a.id}.force"
        self.assertEqual(forced.identity_key, key)
        forced.sudo().write({"state": "failed", "exc_name": lost["exc_name"]})
        # an ordinary push of the SKU failed after it: the hook of the forced
        # job still reruns the forced one (the job's uuid is in its context)
        self.product_a._scs_enqueue_push()
        newer = self.sync_jobs("_scs_job_push_sku")
        newer.sudo().write({"state": "failed", "exc_name": "ValueError"})
        self.product_a.with_context(job_uuid=forced.uuid)._scs_on_push_failed(**lost)
        rerun = self.sync_jobs("_scs_job_push_sku")
        self.assertEqual(rerun.identity_key, key)
        self.run_jobs()
        self.assertEqual(sim.quantity("SCS-MUG"), 10)
        sim.queue_response(500)
        binding._scs_push(force=True)
        event = binding.pending_event_id
        self.assertEqual(event.state, "failed")
        retries = self.sync_jobs("_scs_job_push_binding")
        self.assertEqual(len(retries), 1)
        retries.sudo().write({"state": "failed", "exc_name": lost["exc_name"]})
        binding._scs_on_push_failed(**lost)
        self.assertEqual(event.state, "failed", "not a dead letter")
        self.assertEqual(len(self.sync_jobs("_scs_job_push_binding")), 1)
        self.run_jobs()
        self.assertEqual(sim.quantity("SCS-MUG"), 10)
        self.assertEqual(event.state, "applied")
        # any other failure stays a dead letter
        self.product_a._scs_on_push_failed(exc_message="database went away")
        self.assertEqual(channel.dead_count, 1)

    def test_outcome_unknown_follows_the_unknown_outcome_patterns(self):
        """Which failed pushes may have landed all the same: the same list
        the event log is read with (``UNKNOWN_OUTCOME_ERRORS``)."""
        unknown = channel_binding._outcome_unknown
        for text, expected in (
            ("no answer within 3.0 s; the call goes on", True),
            ("timeout: read timed out", True),
            ("connection error: the answer ended early", True),
            ("[503] service unavailable", False),
            ("connection refused", False),
            ("a timeout of the other side, in words", False),
        ):
            with self.subTest(text=text):
                self.assertEqual(unknown(Exception(text)), expected)
        self.assertTrue(unknown(TimeoutError()))

    def test_push_job_found_dead_becomes_dead_letters(self):
        """A SKU's push job whose worker is killed on each try: queue_job's
        runner marks it failed (found dead) without its failure hook. The
        minute's safety net runs the hook, once per job: the SKU is pushed
        again, forced; that forced push found dead in turn makes each
        binding of the SKU a dead letter, its channel an activity."""
        sim = self.start_simulator()
        channel = self.make_channel(sim)
        binding = self.bind(channel, self.product_a)
        self.product_a._scs_enqueue_push()
        job = self.sync_jobs("_scs_job_push_sku")
        self.assertEqual(len(job), 1)
        Channel = self.env["sync.channel"]

        def found_dead(jobs):
            # what the runner writes (``requeue_dead_jobs``)
            jobs.sudo().write(
                {
                    "state": "failed",
                    "retry": 6,
                    "date_started": fields.Datetime.now(),
                    # queue_job writes a postponed try's message there
                    "result": "[503] service unavailable",
                    "exc_name": "JobFoundDead",
                    "exc_info": "Job found dead after too many retries",
                }
            )
            Channel._scs_cron_requeue_orphans()

        def dead_letters():
            return self.env["sync.event"].search(
                [("binding_id", "=", binding.id), ("state", "=", "dead")]
            )

        found_dead(job)
        self.assertIn("found dead: handled", job.exc_message)
        self.assertFalse(dead_letters())
        again = self.sync_jobs("_scs_job_push_sku")
        self.assertEqual(
            again.identity_key, f"stock_channel_sync.sku.{self.product_a.id}.force"
        )
        found_dead(again)
        dead = dead_letters()
        self.assertEqual(len(dead), 1)
        self.assertIn("its worker died on each of its 6 tries", dead.error)
        self.assertFalse(self.sync_jobs("_scs_job_push_sku"), "no loop")
        activities = self.env["mail.activity"].search(
            [("res_model", "=", "sync.channel"), ("res_id", "=", channel.id)]
        )
        self.assertTrue(activities)
        Channel._scs_cron_requeue_orphans()
        self.assertEqual(len(dead_letters()), 1, "once per job")
        # the dead letter's Retry pushes today's number
        sim.set_stock("SCS-MUG", 99)
        dead.action_retry()
        self.run_jobs()
        self.assertEqual(sim.quantity("SCS-MUG"), binding.published_qty)
        # a forced SKU job found dead after a later push set the channel:
        # that push carried a newer number, no dead letter is made of it
        self.product_a._scs_enqueue_push(force=True)
        late = self.sync_jobs("_scs_job_push_sku")
        binding._scs_push(force=True)
        late.sudo().write(
            {
                "state": "failed",
                "date_started": fields.Datetime.now(),
                "exc_name": "JobFoundDead",
            }
        )
        Channel._scs_cron_requeue_orphans()
        self.assertIn("found dead: handled", late.exc_message)
        self.assertEqual(
            self.env["sync.event"].search_count(
                [("binding_id", "=", binding.id), ("state", "=", "dead")]
            ),
            0,
        )
        # a binding's retry job found dead: its event (made by the SKU job,
        # before the retry job) becomes the dead letter
        sim.queue_response(503)
        binding._scs_push(force=True)
        event = binding.pending_event_id
        self.assertEqual(event.state, "failed")
        # as in production: the event names the SKU job that sent it first
        event.sudo().job_uuid = "the-sku-job"
        retry = self.sync_jobs("_scs_job_push_binding")
        # a newer push failed too while it waited: merged into that job
        self.env.flush_all()
        self.env.cr.execute(
            "UPDATE queue_job SET date_created = date_created - interval '1 minute'"
            " WHERE id = %s",
            (retry.id,),
        )
        retry.invalidate_recordset()
        sim.queue_response(503)
        binding._scs_push(force=True)
        event = binding.pending_event_id
        self.assertEqual(self.sync_jobs("_scs_job_push_binding"), retry)
        retry.sudo().write(
            {
                "state": "failed",
                "date_started": fields.Datetime.now(),
                "exc_name": "JobFoundDead",
            }
        )
        Channel._scs_cron_requeue_orphans()
        self.assertEqual(event.state, "dead")
        # a job with no hook (the corrections of an apply run) found dead:
        # its SKUs are pushed again, forced, by their own job
        sim.set_stock("SCS-MUG", 99)
        binding.with_delay()._scs_job_push_corrections()
        corrections = self.sync_jobs("_scs_job_push_corrections")
        corrections.sudo().write(
            {
                "state": "failed",
                "date_started": fields.Datetime.now(),
                "exc_name": "JobFoundDead",
            }
        )
        Channel._scs_cron_requeue_orphans()
        forced = self.sync_jobs("_scs_job_push_sku")
        self.assertTrue(forced.identity_key.endswith(".force"))
        self.run_jobs()
        self.assertEqual(sim.quantity("SCS-MUG"), binding.published_qty)

    def test_failed_sku_job_is_a_dead_letter(self):
        sim = self.start_simulator()
        channel = self.make_channel(sim)
        binding = self.bind(channel, self.product_a)
        function = self.env["queue.job.function"].search(
            [("method", "=", "_scs_job_push_sku")]
        )
        self.assertEqual(function.on_fail_method, "_scs_on_push_failed")
        self.product_a._scs_on_push_failed(exc_message="database went away")
        dead = self.env["sync.event"].search([("binding_id", "=", binding.id)])
        self.assertEqual(dead.state, "dead")
        self.assertEqual(dead.error, "database went away")
        self.assertEqual(channel.dead_count, 1)
        applied = dead.copy({"state": "applied", "idempotency_key": "not-dead"})
        answer = (dead | applied).action_retry()
        self.assertIn("1 event(s) retried", answer["params"]["message"])
        self.assertIn("1 left as they were", answer["params"]["message"])
        self.run_jobs()
        self.assertEqual(sim.quantity("SCS-MUG"), 10, "retrying pushes today's number")

    def test_dead_letters_of_one_binding_retried_together(self):
        """Two dead letters of a binding retried together: one push of
        today's number, the older letter closed (still a failure in the
        figures: it never reached the channel), none left queued. A
        binding deleted while its retry waits: the job ends, the push is
        closed."""
        sim = self.start_simulator()
        channel = self.make_channel(sim)
        binding = self.bind(channel, self.product_a)
        self.product_a._scs_on_push_failed(exc_message="first")
        self.product_a._scs_on_push_failed(exc_message="second")
        dead = self.env["sync.event"].search(
            [("binding_id", "=", binding.id), ("state", "=", "dead")], order="id"
        )
        self.assertEqual(len(dead), 2)
        dead.action_retry()
        self.run_jobs()
        self.assertEqual((dead[0].state, dead[0].discarded_from), ("discarded", "dead"))
        self.assertIn("retry of a newer push", dead[0].reason)
        board = self.env["sync.dashboard"].create(
            {"period": "1", "channel_id": channel.id}
        )
        # the newer one is sent, or closed as a failure still when the
        # channel holds the number already (that push never reached it)
        self.assertIn(dead[1].state, ("applied", "discarded"))
        self.assertEqual(board.events_failed, 1 + (dead[1].state == "discarded"))
        self.assertFalse(
            self.env["sync.event"].search(
                [("binding_id", "=", binding.id), ("state", "=", "queued")]
            )
        )
        self.assertEqual(sim.quantity("SCS-MUG"), 10)
        self.product_a._scs_on_push_failed(exc_message="third")
        third = self.env["sync.event"].search(
            [("binding_id", "=", binding.id), ("state", "=", "dead")]
        )
        third.action_retry()
        self.assertEqual(third.state, "queued")
        [job] = self.sync_jobs("_scs_job_push_binding")
        binding.unlink()
        self.assertEqual((third.state, third.discarded_from), ("discarded", "dead"))
        self.assertIn("binding was deleted", third.reason)
        self.assertEqual(Job.load(self.env, job.uuid).perform(), "binding deleted")

    def test_a_retried_dead_letter_that_sends_nothing_stays_a_failure(self):
        """Retry of a dead letter while Push Stock is off, or overtaken by
        another push that lands first: nothing reached the channel for it,
        so it is no success on the dashboard (not "skipped"). One whose
        retry lands is applied, a dead letter no more."""
        sim = self.start_simulator()
        channel = self.make_channel(sim)
        binding = self.bind(channel, self.product_a)
        board = self.env["sync.dashboard"].create(
            {"period": "1", "channel_id": channel.id}
        )

        def dead_letter():
            self.product_a._scs_on_push_failed(exc_message="down")
            return self.env["sync.event"].search(
                [("binding_id", "=", binding.id), ("state", "=", "dead")]
            )

        off = dead_letter()
        channel.sync_enabled = False
        off.action_retry()
        self.run_jobs()
        self.assertEqual((off.state, off.discarded_from), ("discarded", "dead"))
        self.assertIn("Push Stock is off", off.reason)
        channel.sync_enabled = True
        overtaken = dead_letter()
        # as after a push that failed for good
        binding.push_state = "failed"
        overtaken.action_retry()
        self.assertEqual(overtaken.state, "queued")
        # a push of the binding lands before the retry job runs
        binding._scs_push(force=True)
        self.assertEqual(
            (overtaken.state, overtaken.discarded_from), ("discarded", "dead")
        )
        board.invalidate_recordset()
        self.assertEqual(board.events_failed, 2)
        # a push that failed for good, retried: its own number lands
        self.env["stock.quant"]._update_available_quantity(
            self.product_a, self.stock, 1
        )
        self.discard_jobs()
        sim.queue_response(500)
        binding._scs_push()
        landed = binding.pending_event_id
        binding._scs_on_push_failed(exc_message="Max. retries (3) reached: [500]")
        self.assertEqual(landed.state, "dead")
        landed.action_retry()
        self.run_jobs()
        self.assertEqual((landed.state, landed.discarded_from), ("applied", False))
        self.assertEqual(sim.quantity("SCS-MUG"), 11)
        board.invalidate_recordset()
        self.assertEqual(board.events_failed, 2)

    def test_a_dead_letter_superseded_by_a_later_push_stays_a_failure(self):
        """A later push lands: the binding's dead letter is closed, but that
        push never reached the channel, so the dashboard still counts it as
        a failure (as a dead letter discarded by hand)."""
        sim = self.start_simulator()
        channel = self.make_channel(sim)
        binding = self.bind(channel, self.product_a)
        sim.queue_response(503)
        binding._scs_push()
        self.assertEqual(binding.push_state, "failed")
        self.product_a._scs_on_push_failed(exc_message="channel down")
        dead = self.env["sync.event"].search(
            [("binding_id", "=", binding.id), ("state", "=", "dead")]
        )
        self.assertEqual(len(dead), 1)
        self.move_stock(self.product_a, 1)
        self.commit_point()
        self.run_jobs()
        self.assertEqual(sim.quantity("SCS-MUG"), 11)
        self.assertEqual((dead.state, dead.discarded_from), ("discarded", "dead"))
        self.assertIn("superseded", dead.reason)
        board = self.env["sync.dashboard"].create(
            {"period": "1", "channel_id": channel.id}
        )
        self.assertEqual(board.events_failed, 1)
        self.assertLess(board.success_rate, 100.0)

    def test_uninstall_leaves_no_job_behind(self):
        """Uninstalling removes the module's waiting jobs (the runner would
        run them against a model that is gone) and its push sequence."""
        sim = self.start_simulator()
        self.bind(self.make_channel(sim), self.product_a)
        self.move_stock(self.product_a, 1)
        self.commit_point()
        self.assertTrue(self.sync_jobs())
        uninstall_hook(self.env)
        self.env.invalidate_all()
        self.assertFalse(
            self.env["queue.job"].search([("method_name", "like", "_scs_job_")])
        )
        self.env.cr.execute("SELECT to_regclass('stock_channel_sync_push_seq')")
        self.assertIsNone(self.env.cr.fetchone()[0])

    def test_retried_dead_letter_of_a_channel_already_in_sync_is_closed(self):
        """A dead letter retried while the channel already holds Odoo's
        number sends nothing, and is closed, not left queued; one whose
        binding was deleted is closed too."""
        sim = self.start_simulator()
        channel = self.make_channel(sim)
        binding = self.bind(channel, self.product_a)
        binding._scs_push()
        self.assertEqual(sim.quantity("SCS-MUG"), 10)
        self.product_a._scs_on_push_failed(exc_message="worker lost")
        dead = self.env["sync.event"].search(
            [("binding_id", "=", binding.id), ("state", "=", "dead")]
        )
        pushes = len(sim.requests)
        dead.action_retry()
        self.run_jobs()
        self.assertEqual(len(sim.requests), pushes, "nothing to send")
        self.assertEqual((dead.state, dead.discarded_from), ("discarded", "dead"))
        self.assertIn("already in sync", dead.reason)
        self.assertFalse(binding.pending_event_id)
        self.product_a._scs_on_push_failed(exc_message="worker lost")
        orphan = self.env["sync.event"].search(
            [("binding_id", "=", binding.id), ("state", "=", "dead")]
        )
        binding.unlink()
        orphan.action_retry()
        self.assertEqual((orphan.state, orphan.discarded_from), ("discarded", "dead"))
        self.assertIn("binding was deleted", orphan.reason)

    def test_a_deleted_variant_closes_its_bindings_pushes(self):
        """A variant never moved is deleted outright: its bindings go
        through their own deletion, so their push still being retried is
        closed, not left failing with no binding to send it."""
        sim = self.start_simulator()
        channel = self.make_channel(sim)
        # deleted as a variant, and from its product form (the template)
        for n, deleted in enumerate((lambda t: t.product_variant_id, lambda t: t)):
            template = self.env["product.template"].create(
                {
                    "name": f"Gone {n}",
                    "default_code": f"SCS-GONE-{n}",
                    "is_storable": True,
                }
            )
            binding = self.bind(channel, template.product_variant_id)
            sim.queue_response(503)
            binding._scs_push()
            failed = self.env["sync.event"].search([("binding_id", "=", binding.id)])
            self.assertEqual(failed.state, "failed")
            deleted(template).unlink()
            self.assertFalse(binding.exists())
            self.assertEqual(failed.state, "skipped")
            self.assertIn("binding was deleted", failed.reason)

    def test_channel_that_does_not_answer_is_paused_and_holds_back_no_other(self):
        """A channel does not answer (nothing listens at its address): it is
        paused, so the next stock change reaches the other channel without
        trying it again; its retry job does not try it while paused; once
        the pause ends, one job tries it, it answers, and the circuit
        closes. (A timeout is the same error; Odoo's test mode stretches
        HTTP timeouts to 10 s, so this test uses a refused connection.)"""
        good, later = self.start_simulator(), self.start_simulator()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            closed = probe.getsockname()[1]
        slow = self.make_channel(
            name="Silent",
            base_url=f"http://127.0.0.1:{closed}/",
            signing_secret=good.secret,
        )
        fine = self.make_channel(good, name="Fine")
        b_slow = self.bind(slow, self.product_a)
        self.bind(fine, self.product_a)
        with self.enter_registry_test_mode():
            self.product_a._scs_job_push_sku()
        self.assertEqual(good.quantity("SCS-MUG"), 10)
        self.assertIn("connection error", b_slow.pending_event_id.error)
        slow.invalidate_recordset()
        self.assertEqual(slow.pause_count, 1)
        self.assertGreater(slow.paused_until, time.time() + 20)
        self.assertTrue(slow.paused_until_at)
        # the next change: the fine channel at once, the paused one untried
        # (were it tried, the adapter would count a call)
        calls = slow._scs_adapter().calls
        self.move_stock(self.product_a, -1)
        with self.enter_registry_test_mode():
            self.product_a._scs_job_push_sku()
        self.assertEqual(good.quantity("SCS-MUG"), 9)
        self.assertEqual(slow._scs_adapter().calls, calls)
        event = b_slow.pending_event_id
        self.assertEqual((event.state, event.quantity), ("failed", 9))
        self.assertIn("paused", event.error)
        (retry,) = self.sync_jobs(PUSH_BINDING).filtered(
            lambda j: j.identity_key == f"stock_channel_sync.binding.{b_slow.id}"
        )
        self.assertGreater(retry.eta, fields.Datetime.now() + timedelta(seconds=20))
        # its retry job does not try it either while paused (the try counts)
        with self.assertRaises(RetryableJobError) as caught:
            b_slow._scs_job_push_binding()
        self.assertFalse(caught.exception.ignore_retry)
        self.assertEqual(slow._scs_adapter().calls, calls)
        # the pause ends and the channel is back: one job tries, it answers
        slow.base_url = later.endpoint
        slow.signing_secret = later.secret
        self.env.cr.execute(
            "UPDATE sync_channel SET paused_until = %s WHERE id = %s",
            [time.time() - 1, slow.id],
        )
        slow.invalidate_recordset()
        # the circuit is written in transactions of their own, never in the
        # job's: its snapshot predates the claim, so an update there fails
        on_job_cursor = []
        execute = self.env.cr.execute

        def spy(query, *args, **kwargs):
            on_job_cursor.append(str(query))
            return execute(query, *args, **kwargs)

        with self.enter_registry_test_mode(), patch.object(self.env.cr, "execute", spy):
            b_slow._scs_job_push_binding()
        # (in test mode those transactions run on the test's connection: each
        # is recognised by the lock timeout that opens it)
        updates = [i for i, q in enumerate(on_job_cursor) if "UPDATE sync_channel" in q]
        self.assertEqual(len(updates), 2, "the probe's claim, then the close")
        for index in updates:
            self.assertIn("lock_timeout", on_job_cursor[index - 1])
        self.assertEqual(later.quantity("SCS-MUG"), 9)
        slow.invalidate_recordset()
        self.assertEqual((slow.pause_count, slow.paused_until), (0, 0.0))
        self.assertEqual(event.state, "applied")

    def test_sku_job_does_not_wait_for_a_channel_past_its_budget(self):
        """A channel slow to answer (its first time: not paused yet) holds
        the SKU job, and the locks of every channel's binding, no longer
        than ``push_wait_seconds``: it then counts as not answering."""
        slow, good = self.start_simulator(), self.start_simulator()
        c_slow = self.make_channel(slow, name="Slow")
        b_slow = self.bind(c_slow, self.product_a)
        self.bind(self.make_channel(good, name="Good"), self.product_a)
        self.env["ir.config_parameter"].sudo().set_param(
            "stock_channel_sync.push_wait_seconds", "0.5"
        )
        slow.queue_hang(3.0)
        with self.enter_registry_test_mode():
            result = self.product_a._scs_job_push_sku()
        self.assertIn("failed 1", result)
        self.assertEqual(good.quantity("SCS-MUG"), 10)
        event = b_slow.pending_event_id
        self.assertEqual(event.state, "failed")
        self.assertIn("no answer within 0.5 s", event.error)
        c_slow.invalidate_recordset()
        self.assertEqual(c_slow.pause_count, 1)
        # the pause outlasts the call left running (the channel's timeout)
        self.assertGreater(c_slow.paused_until, time.time() + c_slow.timeout)

    def test_an_archived_variant_is_offered_none(self):
        """Archiving a variant (or its product) takes it off every channel;
        restoring it offers its stock again."""
        sim = self.start_simulator()
        binding = self.bind(self.make_channel(sim), self.product_b)
        self.product_b._scs_job_push_sku()
        self.assertEqual(sim.quantity("SCS-CAP"), 5)
        self.product_b.product_tmpl_id.active = False
        self.commit_point()
        self.run_jobs()
        self.assertEqual(sim.quantity("SCS-CAP"), 0)
        self.assertIn("archived", binding.quantity_explanation)
        self.product_b.product_tmpl_id.active = True
        self.commit_point()
        self.run_jobs()
        self.assertEqual(sim.quantity("SCS-CAP"), 5)

    def test_a_location_moved_with_its_stock_is_pushed(self):
        """Re-parenting a location moves its stock from one channel's scope
        into another's, with no quant changing."""
        sim_wh, sim_extra = self.start_simulator(), self.start_simulator()
        extra = self.env["stock.location"].create(
            {"name": "Extra", "location_id": self.warehouse.view_location_id.id}
        )
        by_wh = self.make_channel(sim_wh, name="Warehouse")
        by_extra = self.make_channel(
            sim_extra,
            name="Extra",
            warehouse_ids=[(5,)],
            location_ids=[(6, 0, extra.ids)],
        )
        self.bind(by_wh, self.product_b)
        self.bind(by_extra, self.product_b)
        shelf = self.env["stock.location"].create(
            {"name": "Shelf", "location_id": self.stock.id}
        )
        self.move_stock(self.product_b, 3, shelf)
        self.commit_point()
        self.run_jobs()
        self.assertEqual(sim_wh.quantity("SCS-CAP"), 8)
        self.assertEqual(sim_extra.quantity("SCS-CAP"), 0)
        shelf.location_id = extra
        self.commit_point()
        self.run_jobs()
        self.assertEqual(sim_wh.quantity("SCS-CAP"), 5)
        self.assertEqual(sim_extra.quantity("SCS-CAP"), 3)
        shelf.name = "Shelf 2"  # not a move: nothing to push
        self.commit_point()
        self.assertFalse(self.sync_jobs("_scs_job_push_sku"))

    def test_channel_never_asked_in_time_is_not_paused(self):
        """A SKU sold on more channels than the server's pool of calls: the
        channels no thread reached within the wait were never asked, so
        they are neither sent an old number later nor paused as silent;
        their pushes are tried again a second later."""
        slow, queued = self.start_simulator(), self.start_simulator()
        c_slow = self.make_channel(slow, name="Slow")
        self.bind(c_slow, self.product_a)
        c_queued = self.make_channel(queued, name="Queued")
        b_queued = self.bind(c_queued, self.product_a)
        self.env["ir.config_parameter"].sudo().set_param(
            "stock_channel_sync.push_wait_seconds", "0.5"
        )
        slow.queue_hang(2.0)
        with (
            patch.object(fanout, "DEFAULT_WORKERS", 1),
            self.enter_registry_test_mode(),
        ):
            self.product_a._scs_job_push_sku()
        time.sleep(2.2)
        self.assertIsNone(queued.quantity("SCS-MUG"), "never sent, not even late")
        c_slow.invalidate_recordset()
        c_queued.invalidate_recordset()
        self.assertEqual(c_slow.pause_count, 1)
        self.assertEqual((c_queued.pause_count, c_queued.paused_until), (0, 0.0))
        event = b_queued.pending_event_id
        self.assertEqual(event.state, "failed")
        self.assertIn("all busy", event.error)
        (retry,) = self.sync_jobs(PUSH_BINDING).filtered(
            lambda j: j.records == b_queued
        )
        self.assertLessEqual(
            (retry.eta - retry.date_created).total_seconds(), 3, "a second later"
        )
        Job.load(self.env, retry.uuid).perform()
        self.assertEqual(queued.quantity("SCS-MUG"), 10)

    def test_binding_held_by_another_job_does_not_hold_back_its_sku(self):
        """The SKU job pushes the bindings it can lock and gives the one
        another job holds (a retry waiting on a slow channel) a push of its
        own, instead of waiting for it."""
        sim_a, sim_b = self.start_simulator(), self.start_simulator()
        held = self.bind(self.make_channel(sim_a, name="Held"), self.product_a)
        self.bind(self.make_channel(sim_b, name="Free"), self.product_a)
        real_lock = product_product.lock_rows_or_retry

        def lock(env, table, ids, reason, **kw):
            self.assertTrue(kw.get("skip_locked"), "locked rows are skipped")
            locked = real_lock(env, table, ids, reason, **kw)
            return [i for i in locked if i != held.id]

        with patch.object(product_product, "lock_rows_or_retry", side_effect=lock):
            self.product_a._scs_job_push_sku()
        self.assertEqual(sim_b.quantity("SCS-MUG"), 10)
        self.assertIsNone(sim_a.quantity("SCS-MUG"))
        (follow_up,) = self.sync_jobs(PUSH_BINDING)
        self.assertEqual(follow_up.records, held)
        # a moment later: the holder is mostly a push of a fraction of a second
        wait = (follow_up.eta - follow_up.date_created).total_seconds()
        self.assertTrue(0 < wait < 0.9, wait)
        self.run_jobs(PUSH_BINDING)
        self.assertEqual(sim_a.quantity("SCS-MUG"), 10)

    def test_timeout_is_retryable(self):
        sim = self.start_simulator()
        channel = self.make_channel(sim, timeout=0.3)
        binding = self.bind(channel, self.product_a)
        sim.queue_hang(1.0)
        with trap_jobs() as trap:
            binding._scs_push()
            self.assertEqual(len(self.jobs_of(trap, PUSH_BINDING)), 1)
        self.assertIn("timeout", binding.pending_event_id.error.lower())
