# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Reconciliation, dead letters, replay and retention."""

import json
import time
from datetime import timedelta
from unittest.mock import patch

import psycopg2
from lxml import etree

from odoo import fields
from odoo.exceptions import UserError, ValidationError
from odoo.tests import tagged
from odoo.tools import SQL, mute_logger
from odoo.tools.safe_eval import safe_eval

from odoo.addons.queue_job.exception import RetryableJobError

from ..lib.adapters import ChannelOrder, InboundEvent, LiveLevel, OrderLine
from ..lib.adapters.base import (
    PermanentChannelError,
    RateLimitedError,
    UnreachableError,
)
from ..lib.adapters.generic import GenericAdapter
from ..models import sync_event_operations
from ..models.sync_channel_reconcile import ReadOn
from .common import SyncCase


@tagged("post_install", "-at_install")
class TestReconcile(SyncCase):
    def setUp(self):
        super().setUp()
        self.sim = self.start_simulator()
        self.channel = self.make_channel(self.sim)
        self.b_a = self.bind(self.channel, self.product_a)
        self.b_b = self.bind(self.channel, self.product_b)

    def only_this_channel_due(self):
        """The cron looks at every channel: keep those of the demo data out."""
        self.env["sync.channel"].search([("id", "!=", self.channel.id)]).write(
            {"reconcile_interval": 0}
        )

    def pass_(self, **kw):
        self.channel._scs_start_reconcile(**kw)
        self.run_jobs()
        self.channel.invalidate_recordset()

    def recorded_now(self, event):
        """``event`` recorded now, as by a transaction of its own: a test's
        rows carry the time its class's transaction began, which under load
        may be longer before than the margin the pass looks back."""
        event.flush_recordset()
        self.env.cr.execute(
            "UPDATE sync_event SET create_date = %s WHERE id = %s",
            (fields.Datetime.now(), event.id),
        )
        event.invalidate_recordset(["create_date"])

    def record_queued_order(self, order_id, key, qty):
        """A webhook's order of ``qty`` mugs, recorded, its job not run."""
        order = ChannelOrder(order_id, "open", [OrderLine("SCS-MUG", qty)])
        self.env["sync.event"]._scs_record_inbound(
            self.channel,
            [InboundEvent("order", key, order=order)],
            b"{}",
            "order.created",
            enqueue=False,
        )

    def corrections(self):
        return self.env["sync.event"].search(
            [("channel_id", "=", self.channel.id), ("kind", "=", "correction")]
        )

    def test_drift_corrected_with_reason(self):
        product_c = self.env["product.product"].create(
            {"name": "C", "default_code": "SCS-C", "type": "consu", "is_storable": True}
        )
        self.move_stock(product_c, 4)
        self.commit_point()
        self.discard_jobs()
        b_c = self.bind(self.channel, product_c)
        (self.b_a | self.b_b | b_c)._scs_push()
        self.assertEqual(self.sim.quantity("SCS-MUG"), 10)
        # A: Odoo changed and the push never happened (job lost)
        self.move_stock(self.product_a, 2)
        self.commit_point()
        self.discard_jobs()
        # B: someone edited the quantity on the channel
        self.sim.set_stock("SCS-CAP", 1)
        # C: its last push failed
        b_c.push_state = "failed"
        self.move_stock(product_c, -1)
        self.commit_point()
        self.discard_jobs()
        self.pass_()
        self.assertEqual(self.sim.quantity("SCS-MUG"), 12)
        self.assertEqual(self.sim.quantity("SCS-CAP"), 5)
        self.assertEqual(self.sim.quantity("SCS-C"), 3)
        reasons = {e.sku: e.reason for e in self.corrections()}
        self.assertEqual(
            reasons,
            {
                "SCS-MUG": "missed_webhook",
                "SCS-CAP": "channel_edit",
                "SCS-C": "failed_push",
            },
        )
        self.assertEqual(set(self.corrections().mapped("state")), {"applied"})
        self.assertEqual(self.channel.last_reconcile_checked, 3)
        self.assertEqual(self.channel.last_reconcile_drift, 3)
        self.assertEqual(self.channel.last_reconcile_corrections, 3)
        self.assertAlmostEqual(self.channel.last_reconcile_rate, 100.0)
        self.assertTrue(self.channel.last_reconcile_at)
        # a second pass finds nothing
        self.pass_()
        self.assertEqual(self.channel.last_reconcile_corrections, 0)
        self.assertEqual(len(self.corrections()), 3)
        # each pass is kept for the dashboard's period, newest first
        passes = self.env["sync.reconcile.pass"].search(
            [("channel_id", "=", self.channel.id)]
        )
        self.assertEqual(
            [(p.checked, p.drift, p.corrections, p.dry_run) for p in passes],
            [(3, 0, 0, False), (3, 3, 3, False)],
        )

    def test_order_of_a_company_without_warehouse_needs_attention(self):
        """A company without a warehouse (a new one, before its first, or
        its only one archived): its channel's order needs attention, with
        why, instead of failing its retries into a dead letter; a run's
        other orders are reserved."""
        company = self.env["res.company"].create({"name": "No Warehouse Co"})
        self.env["stock.warehouse"].search([("company_id", "=", company.id)]).write(
            {"active": False}
        )
        channel = self.make_channel(
            self.sim, name="Bare", company_id=company.id, warehouse_ids=[]
        )
        self.bind(channel, self.product_a)
        events = self.env["sync.event"]
        for key, target in (("msg_bare", channel), ("msg_ok", self.channel)):
            order = ChannelOrder(key.upper(), "open", [OrderLine("SCS-MUG", 1)])
            self.env["sync.event"]._scs_record_inbound(
                target,
                [InboundEvent("order", key, order=order)],
                b"{}",
                "order.created",
            )
            events |= self.env["sync.event"].search([("idempotency_key", "=", key)])
        self.run_jobs("_scs_job_apply_inbound")
        bare, ok = events
        self.assertEqual(bare.state, "attention")
        self.assertIn("has no stock location to reserve orders from", bare.error)
        self.assertEqual(ok.state, "applied", ok.error)
        self.assertFalse(self.sync_jobs("_scs_job_apply"), "no retry job")

    def test_sale_awaiting_its_apply_job_is_not_overwritten(self):
        """The shop sold 2 and lowered its figure; the order's webhook is
        recorded but its apply job has not run yet. The pass leaves that SKU
        alone (pushing Odoo's number would offer the sold units again) and
        corrects the rest; the apply job then reserves and pushes."""
        (self.b_a | self.b_b)._scs_push()
        self.sim.set_stock("SCS-MUG", 8)
        self.sim.set_stock("SCS-CAP", 1)
        self.record_queued_order("W-1", "msg_awaiting", 2)
        event = self.env["sync.event"].search(
            [("idempotency_key", "=", "msg_awaiting")]
        )
        self.pass_()
        self.assertEqual(self.sim.quantity("SCS-MUG"), 8, "the sale stays off sale")
        self.assertEqual(self.sim.quantity("SCS-CAP"), 5)
        self.assertEqual(self.corrections().mapped("sku"), ["SCS-CAP"])
        self.assertEqual(event.state, "queued")
        self.channel._scs_enqueue_inbound()
        self.run_jobs()
        self.assertEqual(event.state, "applied", event.error)
        self.assertEqual(self.sim.quantity("SCS-MUG"), 8)
        self.product_a.invalidate_recordset()
        self.assertEqual(self.product_a.free_qty, 8)

    def test_sale_recorded_during_the_read_is_not_put_back_on_sale(self):
        """The shop sold 2 while the batch read its levels, and the sale was
        recorded (and reserved) meanwhile: the batch's snapshot, older than
        its read, does not hold it (emulated: nothing reserved). The SKU is
        left to the sale's own push; the rest is corrected."""
        (self.b_a | self.b_b)._scs_push()
        self.sim.set_stock("SCS-MUG", 8)
        self.sim.set_stock("SCS-CAP", 1)
        sale = self.env["sync.event"].create(
            {
                "direction": "in",
                "channel_id": self.channel.id,
                "kind": "order",
                "idempotency_key": "sold-during-the-read",
                "external_ref": "W-9",
                "state": "applied",
                "data": json.dumps(
                    {"order": {"external_id": "W-9", "lines": [{"sku": "SCS-MUG"}]}}
                ),
            }
        )
        self.recorded_now(sale)
        with self.enter_registry_test_mode():
            self.pass_()
        self.assertEqual(self.sim.quantity("SCS-MUG"), 8, "the sale stays off sale")
        self.assertEqual(self.sim.quantity("SCS-CAP"), 5)
        self.assertEqual(self.corrections().mapped("sku"), ["SCS-CAP"])

    def test_recent_sale_hides_neither_a_higher_figure_nor_a_sibling(self):
        """A sale recorded during the read explains only a lower figure of
        its own variant: a channel showing more than Odoo publishes is
        corrected, and so is a sibling variant that shares the sold one's
        product id (WooCommerce variations, eBay items)."""
        self.b_a.write({"external_id": "300", "external_variant_id": "301"})
        self.b_b.write({"external_id": "300", "external_variant_id": "302"})
        (self.b_a | self.b_b)._scs_push()
        self.sim.set_stock("SCS-MUG", 99)  # more than Odoo's 10
        self.sim.set_stock("SCS-CAP", 1)  # the sibling, edited down
        sale = self.env["sync.event"].create(
            {
                "direction": "in",
                "channel_id": self.channel.id,
                "kind": "order",
                "idempotency_key": "sold-a-sibling",
                "external_ref": "W-10",
                "state": "applied",
                "data": json.dumps(
                    {
                        "order": {
                            "external_id": "W-10",
                            "lines": [
                                {"external_id": "300", "external_variant_id": "301"}
                            ],
                        }
                    }
                ),
            }
        )
        self.recorded_now(sale)
        with self.enter_registry_test_mode():
            self.pass_()
        self.assertEqual(self.sim.quantity("SCS-MUG"), 10)
        self.assertEqual(self.sim.quantity("SCS-CAP"), 5)
        self.assertEqual(
            sorted(self.corrections().mapped("sku")), ["SCS-CAP", "SCS-MUG"]
        )

    def test_test_connection_resumes_a_paused_channel_that_answers(self):
        """A channel paused after it did not answer, and back: Test
        Connection closes its circuit and pushes what it missed at once (the
        pause could last 10 minutes, selling units sold elsewhere); Push
        All Now on a paused channel says its pushes wait."""
        (self.b_a | self.b_b)._scs_push()
        self.move_stock(self.product_a, -3)
        self.commit_point()
        self.discard_jobs()
        self.env.cr.execute(
            "UPDATE sync_channel SET pause_count = 4, paused_until = %s WHERE id = %s",
            [time.time() + 480, self.channel.id],
        )
        self.channel.invalidate_recordset()
        with self.enter_registry_test_mode():
            answer = self.channel.action_push_all()
            self.assertIn("whatever the channel shows", answer["params"]["message"])
            self.assertIn("paused", answer["params"]["message"])
            answer = self.channel.action_push_all(force=False)
            self.assertIn("are skipped", answer["params"]["message"])
            self.assertIn("paused", answer["params"]["message"])
            # Retry of a dead push says the same
            dead = self.env["sync.event"].create(
                {
                    "direction": "out",
                    "channel_id": self.channel.id,
                    "binding_id": self.b_a.id,
                    "kind": "push",
                    "idempotency_key": "dead-while-paused",
                    "state": "dead",
                }
            )
            answer = dead.action_retry()
            self.assertIn("1 event(s) retried", answer["params"]["message"])
            self.assertIn("paused", answer["params"]["message"])
            # a setting of a paused channel is saved (it pushes its numbers)
            self.channel.buffer_qty = 1
            self.assertEqual(self.channel.buffer_qty, 1)
            self.channel.buffer_qty = 0
            self.discard_jobs()
            # another job holds the channel's row: not resumed, and said so
            Channel = type(self.channel)
            with patch.object(Channel, "_scs_answered", return_value=False):
                answer = self.channel.action_test_connection()
            self.assertIn("try again", answer["params"]["message"])
            self.assertFalse(self.sync_jobs("_scs_job_push_batch"))
            answer = self.channel.action_test_connection()
            self.assertIn("resume", answer["params"]["message"])
            self.channel.invalidate_recordset()
            self.assertEqual(
                (self.channel.pause_count, self.channel.paused_until), (0, 0.0)
            )
            self.assertEqual(len(self.sync_jobs("_scs_job_push_batch")), 1)
            self.run_jobs("_scs_job_push_batch")
        self.assertEqual(self.sim.quantity("SCS-MUG"), 7)

    def test_pass_waits_for_a_paused_channel_then_closes_its_circuit(self):
        """A channel paused after it did not answer is not read by a pass
        until its pause ends (the attempt counts); then the pass is the one
        to try it, and its answer closes the circuit."""
        (self.b_a | self.b_b)._scs_push()
        self.sim.set_stock("SCS-CAP", 1)
        self.env.cr.execute(
            "UPDATE sync_channel SET pause_count = 1, paused_until = %s WHERE id = %s",
            [time.time() + 30, self.channel.id],
        )
        self.channel.invalidate_recordset()
        reads = len(self.sim.requests)
        with (
            self.enter_registry_test_mode(),
            self.assertRaises(RetryableJobError) as caught,
        ):
            self.channel._scs_job_reconcile_start()
        self.assertFalse(caught.exception.ignore_retry)
        self.assertEqual(len(self.sim.requests), reads, "not read while paused")
        self.env.cr.execute(
            "UPDATE sync_channel SET paused_until = %s WHERE id = %s",
            [time.time() - 1, self.channel.id],
        )
        self.channel.invalidate_recordset()
        with self.enter_registry_test_mode():
            self.pass_()
        self.assertEqual(self.sim.quantity("SCS-CAP"), 5, "compared and corrected")
        self.assertEqual(
            (self.channel.pause_count, self.channel.paused_until), (0, 0.0)
        )

    def test_dry_run_changes_nothing(self):
        (self.b_a | self.b_b)._scs_push()
        self.sim.set_stock("SCS-MUG", 99)
        sent = len([r for r in self.sim.requests if r.method == "POST"])
        self.pass_(dry_run=True)
        self.assertEqual(self.sim.quantity("SCS-MUG"), 99)
        self.assertEqual(
            len([r for r in self.sim.requests if r.method == "POST"]), sent
        )
        report = self.corrections()
        self.assertEqual(len(report), 1)
        self.assertEqual(report.state, "skipped")
        self.assertIn("dry run", report.reason)
        self.assertEqual(self.channel.last_reconcile_drift, 1)
        self.assertEqual(self.channel.last_reconcile_corrections, 0)
        self.assertTrue(self.channel.last_reconcile_dry_run)
        # kept as a dry run: the dashboard does not count it
        kept = self.env["sync.reconcile.pass"].search(
            [("channel_id", "=", self.channel.id)]
        )
        self.assertEqual((kept.drift, kept.dry_run), (1, True))
        # its own start, not that of the channel's last scheduled pass
        self.assertTrue(kept.started_at)
        self.assertLessEqual(kept.started_at, kept.finished_at)
        self.assertLess((kept.finished_at - kept.started_at).total_seconds(), 60)
        board = self.env["sync.dashboard"].create({"channel_id": self.channel.id})
        self.assertEqual((board.bindings_checked, board.correction_rate), (0, 0.0))

    def test_dry_run_reserves_no_order_and_does_not_delay_the_pass(self):
        """A dry run with a sale whose webhook was lost: the order is not
        fetched (applying it would reserve stock and push every channel), no
        binding moves, the order cursor stays, and the next scheduled pass is
        not put off by it: the cron starts the real pass, which reserves
        the sale before comparing."""
        (self.b_a | self.b_b)._scs_push()
        self.sim.add_order("SIM-DRY", [("SCS-MUG", 3)])
        self.sim.set_stock("SCS-MUG", 7)
        self.product_a.invalidate_recordset()
        free = self.product_a.free_qty
        posts = len(self.sim.requests_for("POST", "/"))
        figures = [(b.last_pushed_qty, b.push_state) for b in self.b_a | self.b_b]
        self.pass_(dry_run=True)
        self.assertFalse(self.sim.requests_for("GET", "/orders"), "not fetched")
        self.assertFalse(
            self.env["stock.picking"].search([("scs_channel_id", "=", self.channel.id)])
        )
        self.product_a.invalidate_recordset()
        self.assertEqual(self.product_a.free_qty, free)
        self.assertEqual(len(self.sim.requests_for("POST", "/")), posts)
        self.assertEqual(self.sim.quantity("SCS-MUG"), 7)
        (self.b_a | self.b_b).invalidate_recordset()
        self.assertEqual(
            [(b.last_pushed_qty, b.push_state) for b in self.b_a | self.b_b], figures
        )
        self.assertFalse(self.channel.last_order_fetch_at)
        self.assertFalse(self.channel.reconcile_started_at)
        self.assertTrue(self.channel.last_reconcile_dry_run)
        self.assertIn("orders were not fetched", self.channel.last_reconcile_error)
        self.assertEqual(self.corrections().state, "skipped")
        # the cron does not count the dry run as the channel's pass
        self.only_this_channel_due()
        self.channel._scs_cron_reconcile()
        self.channel.invalidate_recordset()
        self.assertTrue(self.channel.reconcile_started_at)
        self.assertFalse(self.channel.last_reconcile_dry_run)
        self.run_jobs()
        self.channel.invalidate_recordset()
        self.product_a.invalidate_recordset()
        self.assertEqual(self.product_a.free_qty, free - 3)
        self.assertEqual(self.sim.quantity("SCS-MUG"), 7, "the sale stays off sale")
        self.assertTrue(self.channel.last_order_fetch_at)

    def test_a_pass_waits_for_the_one_running(self):
        """Passes share the channel's figures: while one runs (here a dry run
        asked for by hand), the cron leaves the channel for its next tick and
        the buttons refuse; once it has closed, the real pass starts."""
        self.channel._scs_start_reconcile(dry_run=True)
        self.only_this_channel_due()
        self.channel._scs_cron_reconcile()
        jobs = self.sync_jobs("_scs_job_reconcile_start")
        self.assertEqual([job.kwargs.get("dry_run") for job in jobs], [True])
        with self.assertRaises(UserError):
            self.channel.action_reconcile_now()
        with self.assertRaises(UserError):
            self.channel.action_reconcile_dry_run()
        self.run_jobs()
        self.channel.invalidate_recordset()
        self.assertFalse(self.channel._scs_pass_running())
        self.channel._scs_cron_reconcile()
        jobs = self.sync_jobs("_scs_job_reconcile_start")
        self.assertEqual([job.kwargs.get("dry_run") for job in jobs], [False])
        # a pass whose jobs were lost does not block the next one for good
        self.channel.reconcile_started_ts = time.time() - 7 * 3600
        self.assertFalse(self.channel._scs_pass_running())

    def test_channel_in_dry_run_mode_keeps_its_interval(self):
        """A channel whose passes are all dry runs (its Dry Run setting):
        those are its scheduled passes, the cron waits its interval."""
        self.channel.reconcile_dry_run = True
        self.only_this_channel_due()
        self.channel._scs_cron_reconcile()
        self.run_jobs()
        self.channel.invalidate_recordset()
        self.assertTrue(self.channel.reconcile_started_at)
        self.assertTrue(self.channel.last_reconcile_dry_run)
        self.channel._scs_cron_reconcile()
        self.assertFalse(self.sync_jobs("_scs_job_reconcile_start"))

    def test_channel_with_push_off_is_compared_not_corrected(self):
        """Push Stock off: the pass reports the drift and counts no
        correction, since none is sent."""
        (self.b_a | self.b_b)._scs_push()
        self.sim.set_stock("SCS-MUG", 99)
        self.channel.sync_enabled = False
        self.discard_jobs()
        sent = len([r for r in self.sim.requests if r.method == "POST"])
        self.pass_()
        self.assertEqual(self.sim.quantity("SCS-MUG"), 99)
        self.assertEqual(
            len([r for r in self.sim.requests if r.method == "POST"]), sent
        )
        report = self.corrections()
        self.assertEqual(report.state, "skipped")
        self.assertIn("push off", report.reason)
        self.assertEqual(self.channel.last_reconcile_drift, 1)
        self.assertEqual(self.channel.last_reconcile_corrections, 0)

    def test_safety_limit_holds(self):
        products = self.env["product.product"].create(
            [
                {
                    "name": f"Bulk {i}",
                    "default_code": f"SCS-BULK-{i}",
                    "type": "consu",
                    "is_storable": True,
                }
                for i in range(22)
            ]
        )
        for product in products:
            self.bind(self.channel, product)
        # the channel holds numbers for none of them: 22 of 24 drift (> 20 %)
        self.channel.reconcile_max_share = 20
        self.pass_()
        self.assertFalse(self.corrections().filtered(lambda e: e.state == "applied"))
        self.assertIsNone(self.sim.quantity("SCS-BULK-0"))
        self.assertEqual(self.channel.last_reconcile_limited, 1)
        activity = self.env["mail.activity"].search(
            [("res_model", "=", "sync.channel"), ("res_id", "=", self.channel.id)]
        )
        self.assertIn("safety limit", activity.summary)
        # in batches under 20 bindings: held all the same
        self.channel.reconcile_batch_size = 12
        self.pass_()
        self.assertFalse(self.corrections().filtered(lambda e: e.state == "applied"))
        self.assertIsNone(self.sim.quantity("SCS-BULK-0"))
        self.assertEqual(self.channel.last_reconcile_limited, 2)
        # with a higher limit the same pass corrects
        self.channel.reconcile_max_share = 100
        self.pass_()
        self.assertEqual(self.sim.quantity("SCS-BULK-0"), 0)
        self.assertEqual(self.sim.quantity("SCS-MUG"), 10)

    def test_known_causes_do_not_trip_the_safety_limit(self):
        products = self.env["product.product"].create(
            [
                {
                    "name": f"Failing {i}",
                    "default_code": f"SCS-FAIL-{i}",
                    "type": "consu",
                    "is_storable": True,
                }
                for i in range(22)
            ]
        )
        bindings = self.env["channel.binding"]
        for product in products:
            bindings |= self.bind(self.channel, product)
        # every one of them has a failed push (a visible retry/dead letter)
        bindings.write({"push_state": "failed"})
        self.channel.reconcile_max_share = 20
        self.pass_()
        self.assertEqual(self.channel.last_reconcile_limited, 0)
        self.assertEqual(self.sim.quantity("SCS-FAIL-0"), 0, "corrected")
        self.assertEqual(
            set(self.corrections().mapped("reason")), {"failed_push", "unknown"}
        )

    def test_missed_order_webhook_recovered(self):
        (self.b_a | self.b_b)._scs_push()
        # the channel sold 3 mugs; its webhook never arrived
        self.sim.add_order("SIM-1", [("SCS-MUG", 3)])
        self.sim.set_stock("SCS-MUG", 7)
        free = self.product_a.free_qty
        before = len(self.sim.history)
        self.pass_()
        picking = self.env["stock.picking"].search(
            [
                ("scs_channel_id", "=", self.channel.id),
                ("scs_external_order_id", "=", "SIM-1"),
            ]
        )
        self.assertEqual(len(picking), 1)
        self.product_a.invalidate_recordset()
        self.assertEqual(self.product_a.free_qty, free - 3)
        # the pass saw the reservation: the channel keeps 7, it was not relisted at 10
        self.assertEqual(self.sim.quantity("SCS-MUG"), 7)
        relisted = [h for h in self.sim.history[before:] if h["quantity"] == 10]
        self.assertEqual(relisted, [], "the sold unit was never offered again")
        # the next pass fetches the same order again (overlap): nothing twice
        self.pass_()
        self.assertEqual(
            self.env["stock.picking"].search_count(
                [("scs_external_order_id", "=", "SIM-1"), ("state", "!=", "cancel")]
            ),
            1,
        )

    def test_sale_after_the_passs_order_fetch_is_not_put_back_on_sale(self):
        """The pass read the orders, then the shop sold 3 mugs (their
        webhook lost) before the batch read the levels: the batch reads the
        orders again before it puts anything back on sale, reserves the
        sale and leaves the channel at 7. When the orders cannot be read
        again, such drift waits for the next pass; a channel showing more
        than Odoo is corrected all the same."""
        (self.b_a | self.b_b)._scs_push()
        self.channel._scs_start_reconcile()
        self.run_jobs("_scs_job_reconcile_start")
        [batch] = self.sync_jobs("_scs_job_reconcile_batch")
        self.sim.add_order("SIM-LATE", [("SCS-MUG", 3)])
        self.sim.set_stock("SCS-MUG", 7)
        before = len(self.sim.history)
        self.run_jobs("_scs_job_reconcile_batch", rounds=1)
        self.assertEqual(batch.state, "done")
        # the sale reserved and committed; the batch compared again in a
        # job of its own, nothing sent meanwhile
        again = self.sync_jobs("_scs_job_reconcile_batch")
        self.assertEqual(len(again), 1)
        self.assertEqual(len(self.sim.history), before)
        self.run_jobs("_scs_job_reconcile_batch")
        self.channel.invalidate_recordset()
        self.assertEqual(
            (self.channel.last_reconcile_checked, self.channel.reconcile_pending),
            (2, 0),
        )
        self.assertEqual(
            self.env["stock.picking"].search_count(
                [("scs_external_order_id", "=", "SIM-LATE")]
            ),
            1,
        )
        self.assertEqual(self.sim.quantity("SCS-MUG"), 7)
        relisted = [h for h in self.sim.history[before:] if h["quantity"] == 10]
        self.assertEqual(relisted, [], "the sold units were never offered again")
        self.assertFalse(self.corrections())
        # the same, the second fetch refused for good or throttled: the
        # lower figure is left alone (recorded as drift), the higher one
        # corrected now, the batch not retried for the orders' sake
        for sold, refused in (
            (2, PermanentChannelError("orders scope revoked", status=403)),
            (1, RateLimitedError("slow down", status=429, retry_after=30)),
            # the channel just answered the levels: a timeout on the orders
            # pauses nothing (a pause, committed on the channel's row, would
            # make this batch's own writes fail and the batch start over)
            (1, UnreachableError("timeout: read timed out")),
        ):
            with self.subTest(refused=type(refused).__name__):
                self.discard_jobs()
                self.sim.set_stock("SCS-CAP", 5)
                self.channel._scs_start_reconcile()
                self.run_jobs("_scs_job_reconcile_start")
                mug_now = self.sim.quantity("SCS-MUG")
                self.sim.add_order(f"SIM-LATER-{sold}", [("SCS-MUG", sold)])
                self.sim.set_stock("SCS-MUG", mug_now - sold)
                self.sim.set_stock("SCS-CAP", 9)
                skipped_before = self.corrections().filtered(
                    lambda e: e.state == "skipped"
                )
                with (
                    patch.object(GenericAdapter, "fetch_orders", side_effect=refused),
                    patch.object(
                        type(self.channel), "_scs_pause", return_value=30.0
                    ) as pause,
                ):
                    self.run_jobs("_scs_job_reconcile_batch", rounds=1)
                pause.assert_not_called()
                self.assertFalse(self.sync_jobs("_scs_job_reconcile_batch"))
                self.assertEqual(self.sim.quantity("SCS-MUG"), mug_now - sold)
                self.assertEqual(self.sim.quantity("SCS-CAP"), 5)
                mug = (self.corrections() - skipped_before).filtered(
                    lambda e: e.sku == "SCS-MUG"
                )
                self.assertEqual(mug.state, "skipped")
                self.assertIn("orders not read after the level", mug.reason)
                self.channel.invalidate_recordset()
                self.assertIn(
                    "could not be read again", self.channel.last_reconcile_error
                )

    def test_a_sale_below_a_failed_push_is_read_before_correcting(self):
        """A push of the mug failed, though the channel took it (its answer
        lost), then the shop sold one, its webhook lost: the channel shows
        less than Odoo, which the failed push does not explain. The batch
        reads the orders again and reserves the sale before it corrects."""
        (self.b_a | self.b_b)._scs_push()
        self.assertEqual(self.sim.quantity("SCS-MUG"), 10)
        # as after a push whose answer was lost (the channel took it) and
        # whose retries then failed: the last number known taken is older
        self.b_a.write({"push_state": "failed", "last_pushed_qty": 5})
        self.channel._scs_start_reconcile()
        self.run_jobs("_scs_job_reconcile_start")
        self.sim.add_order("SIM-LOST", [("SCS-MUG", 1)])
        self.sim.set_stock("SCS-MUG", 9)
        before = len(self.sim.history)
        self.run_jobs("_scs_job_reconcile_batch")
        self.assertEqual(
            self.env["stock.picking"].search_count(
                [("scs_external_order_id", "=", "SIM-LOST")]
            ),
            1,
        )
        relisted = [h for h in self.sim.history[before:] if h["quantity"] == 10]
        self.assertEqual(relisted, [], "the sold unit was never offered again")
        self.assertEqual(self.sim.quantity("SCS-MUG"), 9)

    def test_orders_that_keep_coming_end_the_batch_all_the_same(self):
        """Each re-read of the orders finds a new sale: the batch is
        compared again twice, then leaves the lower figure to the next pass
        (recorded, not corrected) and corrects the rest, instead of being
        compared again for as long as the shop sells."""
        (self.b_a | self.b_b)._scs_push()
        self.channel._scs_start_reconcile()
        self.run_jobs("_scs_job_reconcile_start")
        mug = self.sim.quantity("SCS-MUG")
        for n in range(1, 5):
            if not self.sync_jobs("_scs_job_reconcile_batch"):
                break
            # a sale (webhook lost) before each compare of the batch
            self.sim.add_order(f"SIM-RUSH-{n}", [("SCS-MUG", 1)])
            self.sim.set_stock("SCS-MUG", mug - n)
            self.sim.set_stock("SCS-CAP", 99)
            self.run_jobs("_scs_job_reconcile_batch", rounds=1)
        self.assertEqual(n, 4, "three compares, then the batch ended")
        self.assertFalse(self.sync_jobs("_scs_job_reconcile_batch"))
        self.channel.invalidate_recordset()
        self.assertEqual(self.channel.reconcile_pending, 0)
        self.assertIn("orders kept coming", self.channel.last_reconcile_error)
        # the sales read: reserved; the one after the last read: left alone
        self.assertEqual(
            self.env["stock.picking"].search_count(
                [("scs_external_order_id", "like", "SIM-RUSH-")]
            ),
            2,
        )
        self.assertEqual(self.sim.quantity("SCS-MUG"), mug - 3)
        self.assertEqual(self.sim.quantity("SCS-CAP"), self.b_b.published_qty)

    def test_orders_of_other_skus_do_not_hold_back_a_lower_figure(self):
        """A busy shop: each re-read of the orders finds a sale, always of
        another SKU than the one showing less (a hand edit on the channel).
        The batch corrects that figure once the re-read shows no sale of
        it, after committing the orders it reserved; it is not compared
        again, nor left to the next pass, for orders that never touch it."""
        (self.b_a | self.b_b)._scs_push()
        self.channel._scs_start_reconcile()
        self.run_jobs("_scs_job_reconcile_start")
        published = self.b_a.published_qty
        self.sim.set_stock("SCS-MUG", 3)
        [batch] = self.sync_jobs("_scs_job_reconcile_batch")
        for n in range(1, 5):
            if not self.sync_jobs("_scs_job_reconcile_batch"):
                break
            # a sale of the cap (webhook lost) before each compare
            self.sim.add_order(f"SIM-BUSY-{n}", [("SCS-CAP", 1)])
            before = len(self.sim.history)
            self.run_jobs("_scs_job_reconcile_batch", rounds=1)
            self.assertEqual(len(self.sim.history), before, "nothing sent in it")
        self.assertEqual(n, 2, "one compare, not compared again")
        self.assertEqual(batch.result.strip(), "checked 2, drift 1")
        self.assertEqual(self.sim.quantity("SCS-MUG"), 3)
        self.run_jobs()
        self.channel.invalidate_recordset()
        self.assertEqual(self.channel.reconcile_pending, 0)
        self.assertFalse(self.channel.last_reconcile_error)
        self.assertEqual(self.channel.last_reconcile_corrections, 1)
        self.assertEqual(
            self.env["stock.picking"].search_count(
                [("scs_external_order_id", "like", "SIM-BUSY-")]
            ),
            1,
        )
        self.assertEqual(self.sim.quantity("SCS-MUG"), published)
        self.assertEqual(self.sim.quantity("SCS-CAP"), self.b_b.published_qty)
        mug = self.corrections().filtered(lambda e: e.sku == "SCS-MUG")
        self.assertEqual(mug.mapped("state"), ["applied"])
        self.assertEqual(mug.reason, "channel_edit")

    def test_a_correction_after_the_commit_leaves_a_sale_since_alone(self):
        """The batch's re-read found orders of other SKUs only: the mug's
        hand edit is corrected in a job after the batch commits. A sale of
        the mug recorded in between, its apply job not run yet, is not put
        back on sale by that job: the sale's own push sets the mug."""
        (self.b_a | self.b_b)._scs_push()
        published = self.b_a.published_qty
        self.sim.set_stock("SCS-MUG", 3)
        self.channel._scs_start_reconcile()
        self.run_jobs("_scs_job_reconcile_start")
        self.sim.add_order("SIM-OTHER", [("SCS-CAP", 1)])
        self.run_jobs("_scs_job_reconcile_batch")
        self.assertEqual(len(self.sync_jobs("_scs_job_push_corrections")), 1)
        self.record_queued_order("W-LATE", "msg_sold_since", 1)
        self.sim.set_stock("SCS-MUG", 2)
        [job] = self.sync_jobs("_scs_job_push_corrections")
        self.run_jobs("_scs_job_push_corrections")
        self.assertEqual(self.sim.quantity("SCS-MUG"), 2, "the sale stays off sale")
        self.assertIn("left to the push of a sale since: SCS-MUG", job.result)
        self.assertFalse(self.corrections().filtered(lambda e: e.sku == "SCS-MUG"))
        self.channel._scs_enqueue_inbound()
        self.run_jobs()
        self.assertEqual(self.sim.quantity("SCS-MUG"), published - 1)
        # with no such sale, the job corrects it
        self.sim.set_stock("SCS-MUG", 3)
        self.channel._scs_start_reconcile()
        self.run_jobs("_scs_job_reconcile_start")
        self.sim.add_order("SIM-OTHER-2", [("SCS-CAP", 1)])
        self.run_jobs("_scs_job_reconcile_batch")
        self.run_jobs("_scs_job_push_corrections")
        self.assertEqual(self.sim.quantity("SCS-MUG"), published - 1)

    def test_a_numeric_sku_never_reads_another_listings_level(self):
        """Listing ids and SKUs are apart: a binding whose listing the read
        does not hold, and whose SKU happens to be another listing's id,
        reads no level (drift to correct), not that listing's."""
        self.b_a.write({"sku": "123", "external_id": "555"})
        self.b_b.write({"sku": "CAP-1", "external_id": "123"})
        levels = [LiveLevel(sku="CAP-1", quantity=9, external_id="123")]
        seen = (self.b_a | self.b_b)._scs_levels_seen(levels)
        self.assertEqual(seen, {self.b_b: 9})
        # by its SKU when the level names no id it knows
        levels.append(LiveLevel(sku="123", quantity=4, external_id="999"))
        seen = (self.b_a | self.b_b)._scs_levels_seen(levels)
        self.assertEqual(seen, {self.b_a: 4, self.b_b: 9})

    def test_pass_whose_jobs_were_cancelled_closes_and_lets_the_next_run(self):
        """A batch job cancelled from the Jobs menu never reports: the pass
        is not left open for hours (refusing Reconcile Now and holding the
        order polling); it is closed, saying so, and the next pass runs."""
        self.channel._scs_start_reconcile()
        self.run_jobs("_scs_job_reconcile_start")
        batch = self.sync_jobs("_scs_job_reconcile_batch")
        self.assertTrue(self.channel._scs_pass_running())
        with self.assertRaises(UserError):
            self.channel.action_reconcile_now()
        batch.button_cancelled()
        self.assertFalse(self.channel._scs_pass_running())
        self.channel.invalidate_recordset()
        self.assertEqual(self.channel.reconcile_pending, 0)
        self.assertIn("closed unfinished", self.channel.last_reconcile_error)
        # run again from the Jobs menu before any other pass: its pass is
        # closed, it adds nothing to it
        batch.requeue()
        self.run_jobs("_scs_job_reconcile_batch")
        self.assertIn("its pass was closed", batch.result)
        self.channel.invalidate_recordset()
        self.assertEqual(self.channel.last_reconcile_checked, 0)
        self.assertIn("closed unfinished", self.channel.last_reconcile_error)
        # its start job run again too: the batches it enqueues name no pass
        # running, and do nothing
        [start] = self.env["queue.job"].search(
            [("func_string", "like", "._scs_job_reconcile_start(")]
        )
        start.requeue()
        self.run_jobs("_scs_job_reconcile_start")
        self.run_jobs("_scs_job_reconcile_batch")
        self.channel.invalidate_recordset()
        self.assertEqual(self.channel.last_reconcile_checked, 0)
        self.assertEqual(self.channel.last_reconcile_duration, 0)
        self.channel.action_reconcile_now()
        self.run_jobs()
        self.channel.invalidate_recordset()
        self.assertFalse(self.channel._scs_pass_running())
        self.assertEqual(self.channel.last_reconcile_checked, 2)
        # the cancelled batch set to run again from the Jobs menu: its pass
        # is closed, it counts in no other
        batch.requeue()
        self.sim.set_stock("SCS-MUG", 1)
        self.run_jobs("_scs_job_reconcile_batch")
        self.assertIn("its pass was closed", batch.result)
        self.channel.invalidate_recordset()
        self.assertEqual(self.channel.last_reconcile_checked, 2)
        self.assertEqual(self.sim.quantity("SCS-MUG"), 1)

    def found_dead(self, jobs):
        """``jobs`` as queue_job's runner leaves a job killed past its retries."""
        jobs.sudo().write(
            {
                "state": "failed",
                "date_started": fields.Datetime.now(),
                "exc_name": "JobFoundDead",
            }
        )
        self.env["sync.channel"]._scs_cron_requeue_orphans()

    def test_a_batch_found_dead_closes_its_own_pass_only(self):
        """A batch whose worker was killed past its retries is handled up to a
        minute late: one of a pass closed since leaves the next pass alone;
        one of the running pass closes it, saying why."""
        self.channel._scs_start_reconcile()
        self.run_jobs("_scs_job_reconcile_start")
        old = self.sync_jobs("_scs_job_reconcile_batch")
        self.channel._scs_start_reconcile()
        self.run_jobs("_scs_job_reconcile_start")
        batch = self.sync_jobs("_scs_job_reconcile_batch") - old
        self.found_dead(old)
        self.channel.invalidate_recordset()
        self.assertEqual(self.channel.reconcile_pending, 1)
        self.assertFalse(self.channel.last_reconcile_error)
        self.found_dead(batch)
        self.channel.invalidate_recordset()
        self.assertEqual(self.channel.reconcile_pending, 0)
        self.assertIn("its worker died", self.channel.last_reconcile_error)

    def test_a_poll_found_dead_after_a_newer_poll_raises_nothing(self):
        """A poll whose worker was killed past its retries is handled up to
        a minute late: when a newer poll has read the orders since, nothing
        is wrong any more; otherwise the channel says why."""
        self.channel.fetch_orders = True
        for newer, expected in ((True, False), (False, True)):
            self.channel.last_reconcile_error = False
            self.channel.with_delay()._scs_job_poll_orders()
            poll = self.sync_jobs("_scs_job_poll_orders")
            self.channel.last_order_fetch_at = (
                fields.Datetime.now() + timedelta(seconds=5) if newer else False
            )
            self.found_dead(poll)
            self.channel.invalidate_recordset()
            self.assertEqual(bool(self.channel.last_reconcile_error), expected)

    def test_a_reread_stopped_by_the_rate_limit_sends_nothing_with_its_orders(self):
        """The batch's order re-read reserved some orders, then the channel's
        rate limit stopped it: those are committed and the batch compared
        again in a job of its own; nothing is sent to the channel from the
        transaction that holds the reserved stock."""
        (self.b_a | self.b_b)._scs_push()
        self.channel._scs_start_reconcile()
        self.run_jobs("_scs_job_reconcile_start")
        self.sim.set_stock("SCS-MUG", 7)
        self.sim.set_stock("SCS-CAP", 99)
        before = len(self.sim.history)
        stopped = (1, ReadOn("the channel's orders could not be read: 429"))
        with patch.object(
            type(self.channel), "_scs_fetch_orders_watched", return_value=stopped
        ):
            self.run_jobs("_scs_job_reconcile_batch", rounds=1)
        self.assertEqual(len(self.sim.history), before, "nothing sent")
        [again] = self.sync_jobs("_scs_job_reconcile_batch")
        self.assertIn("rereads=1", again.func_string)

    def test_fetched_orders_no_channel_sends_are_refused_alone(self):
        """A fetched order the webhook route would answer with 400 (a NUL
        character, a negative quantity) is refused and shown; the other
        orders are still reserved."""
        (self.b_a | self.b_b)._scs_push()
        self.sim.add_order("SIM-OK", [("SCS-MUG", 2)])
        self.sim.add_order("SIM-NUL", [("SCS-\x00MUG", 1)])
        self.sim.add_order("SIM-NEG", [("SCS-MUG", -4)])
        free = self.product_a.free_qty
        self.pass_()
        for order_id, count in (("SIM-OK", 1), ("SIM-NUL", 0), ("SIM-NEG", 0)):
            self.assertEqual(
                self.env["stock.picking"].search_count(
                    [
                        ("scs_channel_id", "=", self.channel.id),
                        ("scs_external_order_id", "=", order_id),
                    ]
                ),
                count,
                order_id,
            )
        self.product_a.invalidate_recordset()
        self.assertEqual(self.product_a.free_qty, free - 2)
        error = self.channel.last_reconcile_error
        self.assertIn("2 fetched order(s) refused", error)
        self.assertIn("SIM-NUL", error)
        self.assertIn("SIM-NEG", error)

    def test_poison_fetched_order_fails_alone(self):
        """A fetched order that cannot be applied (here it names a product
        that now belongs to another company) becomes a dead letter with its
        error and an activity; the order next to it is reserved, the
        comparison runs and the order cursor moves on (otherwise every later
        pass would fail on it again)."""
        other = self.env["res.company"].create({"name": "Other Co"})
        product_x = self.env["product.product"].create(
            {
                "name": "Moved",
                "default_code": "SCS-MOVED",
                "type": "consu",
                "is_storable": True,
            }
        )
        self.bind(self.channel, product_x)
        product_x.product_tmpl_id.company_id = other
        (self.b_a | self.b_b)._scs_push()
        earlier = fields.Datetime.subtract(fields.Datetime.now(), minutes=5)
        self.sim.add_order("SIM-BAD", [("SCS-MOVED", 1)], updated_at=earlier)
        self.sim.add_order("SIM-GOOD", [("SCS-MUG", 2)])
        self.product_a.invalidate_recordset()
        free = self.product_a.free_qty
        self.pass_()
        good = self.env["stock.picking"].search(
            [
                ("scs_channel_id", "=", self.channel.id),
                ("scs_external_order_id", "=", "SIM-GOOD"),
            ]
        )
        self.assertEqual(len(good), 1)
        self.product_a.invalidate_recordset()
        self.assertEqual(self.product_a.free_qty, free - 2)
        bad = self.env["sync.event"].search(
            [
                ("channel_id", "=", self.channel.id),
                ("external_ref", "=", "SIM-BAD"),
            ]
        )
        self.assertEqual(bad.state, "dead")
        self.assertTrue(bad.error)
        self.assertEqual(
            self.env["mail.activity"].search_count(
                [
                    ("res_model", "=", "sync.channel"),
                    ("res_id", "=", self.channel.id),
                    ("summary", "=", "Stock sync dead letters"),
                ]
            ),
            1,
        )
        self.assertIn("SIM-BAD", self.channel.last_reconcile_error)
        self.assertEqual(self.channel.last_reconcile_checked, 3, "compared")
        self.assertEqual(self.channel.reconcile_pending, 0)
        self.assertTrue(self.channel.last_order_fetch_at)
        self.assertFalse(self.sync_jobs(states=("failed",)))

    def test_sku_of_an_order_that_failed_to_apply_is_not_relisted(self):
        """An order that could not be applied is sold on the channel and not
        reserved in Odoo: the channel's lower figure is right until the dead
        letter is retried or discarded; correcting it would relist the
        units."""
        (self.b_a | self.b_b)._scs_push()
        order = ChannelOrder("D-1", "open", [OrderLine("SCS-MUG", 3)])
        self.env["sync.event"]._scs_record_inbound(
            self.channel,
            [InboundEvent("order", "key-d1", order=order)],
            b"{}",
            "test",
            enqueue=False,
        )
        dead = self.env["sync.event"].search([("idempotency_key", "=", "key-d1")])
        dead._scs_set_state("dead", error="could not be applied")
        self.sim.quantities["SCS-MUG"] = 7  # the shop sold 3
        self.pass_()
        self.assertEqual(self.sim.quantity("SCS-MUG"), 7)
        self.assertFalse(self.corrections().filtered(lambda e: e.sku == "SCS-MUG"))
        # discarded: the drift is the pass's to correct again
        dead._scs_discard("sold elsewhere, stock counted")
        self.pass_()
        self.assertEqual(self.sim.quantity("SCS-MUG"), 10)

    def test_replay_of_applied_event_changes_nothing(self):
        order = ChannelOrder("R-1", "open", [OrderLine("SCS-MUG", 2)])
        self.env["sync.event"]._scs_record_inbound(
            self.channel, [InboundEvent("order", "key-r1", order=order)], b"{}", "test"
        )
        self.run_jobs()
        event = self.env["sync.event"].search([("idempotency_key", "=", "key-r1")])
        self.assertEqual(event.state, "applied")
        self.product_a.invalidate_recordset()
        free = self.product_a.free_qty
        replay = event.action_replay()
        self.run_jobs()
        self.assertEqual(replay.replay_of_id, event)
        self.assertEqual(replay.state, "applied")
        self.assertIn("already reserved", replay.reason)
        self.product_a.invalidate_recordset()
        self.assertEqual(self.product_a.free_qty, free)
        self.assertEqual(event.state, "applied", "history is not edited")
        # a window replay goes through the same path
        wizard = self.env["sync.channel.replay"].create(
            {
                "channel_id": self.channel.id,
                "date_from": fields.Datetime.subtract(fields.Datetime.now(), hours=1),
                "date_to": fields.Datetime.add(fields.Datetime.now(), hours=1),
            }
        )
        wizard.action_replay()
        self.run_jobs()
        self.assertEqual(wizard.replayed_count, 1)
        self.product_a.invalidate_recordset()
        self.assertEqual(self.product_a.free_qty, free)
        # retention took the first replay: the next one takes a new number
        replay.unlink()
        again = event.action_replay()
        self.assertEqual(again.idempotency_key, "key-r1:replay:3")
        # the button says what it did, and why not for an outbound event
        pushed = self.env["sync.event"].search(
            [("direction", "=", "out"), ("channel_id", "=", self.channel.id)], limit=1
        )
        self.assertTrue(pushed)
        answer = (event | pushed).action_replay_selected()
        self.assertIn("1 event(s) replayed", answer["params"]["message"])
        self.assertIn("1 not replayed", answer["params"]["message"])
        self.run_jobs()

    def reconcile_activities(self):
        return self.env["mail.activity"].search(
            [
                ("res_model", "=", "sync.channel"),
                ("res_id", "=", self.channel.id),
                ("summary", "=", "Reconciliation failed"),
            ]
        )

    def test_unreadable_channel_retries_then_says_so(self):
        """A channel that answers 503 to the comparison's read: the batch is
        retried (queue_job), and when its retries are spent the pass closes
        with the error on the channel and one activity."""
        (self.b_a | self.b_b)._scs_push()
        self.channel._scs_start_reconcile()
        self.run_jobs("_scs_job_reconcile_start")
        self.channel.invalidate_recordset()
        self.assertEqual(self.channel.reconcile_pending, 1)
        self.sim.down = True
        with self.assertRaises(RetryableJobError):
            self.channel._scs_job_reconcile_batch((self.b_a | self.b_b).ids)
        self.channel.invalidate_recordset()
        self.assertEqual(self.channel.reconcile_pending, 1)
        self.assertFalse(self.channel.last_reconcile_error)
        # queue_job's on_fail hook, once the retries are spent
        self.channel._scs_on_reconcile_batch_failed(
            exc_name="FailedJobError", exc_message="[503] channel is down"
        )
        self.channel.invalidate_recordset()
        self.assertEqual(self.channel.reconcile_pending, 0)
        self.assertIn("[503] channel is down", self.channel.last_reconcile_error)
        self.assertEqual(len(self.reconcile_activities()), 1)
        function = self.env["queue.job.function"].search(
            [("name", "=", "<sync.channel>._scs_job_reconcile_batch")]
        )
        self.assertEqual(function.on_fail_method, "_scs_on_reconcile_batch_failed")

    def test_pass_jobs_wait_behind_pushes_in_a_channel_of_their_own(self):
        """A pass over a large catalogue queues a batch job per 500 bindings
        of every channel. Its jobs run in root.channel_sync.reconcile at a
        lower priority: the runner gives a freed slot to a waiting push
        first, and a capacity of 1 on that channel keeps a slot free."""
        self.channel.reconcile_batch_size = 1
        self.discard_jobs()
        self.channel._scs_start_reconcile()
        start = self.sync_jobs("_scs_job_reconcile_start")
        self.run_jobs("_scs_job_reconcile_start")
        batches = self.sync_jobs("_scs_job_reconcile_batch")
        self.assertEqual(len(batches), 2)
        # a sale in Odoo while the batches wait
        self.move_stock(self.product_a, -1)
        self.commit_point()
        push = self.sync_jobs("_scs_job_push_sku")
        self.assertEqual(len(push), 1)
        self.assertEqual(
            set((start | batches).mapped("channel")), {"root.channel_sync.reconcile"}
        )
        self.assertEqual(push.channel, "root.channel_sync")
        self.assertGreater(min(batches.mapped("priority")), push.priority)

        # queue_job's own scheduler, configured as the README advises
        # the batches came first
        running = self.runner_starts(batches | push)
        self.assertEqual(running[0], push.uuid, "the push goes first")
        self.assertEqual(len(running), 2, "one batch at a time, beside the push")

    def test_passes_follow_the_event_logs_retention_whatever_its_value(self):
        """Passes are pruned with the event log's retention, read as the
        event log reads it: "7.5" is 7 days, a value below 1 keeps the
        default (30), a huge one is a century; none stops the pruning or
        deletes today's passes."""
        Pass = self.env["sync.reconcile.pass"].sudo()
        Param = self.env["ir.config_parameter"].sudo()
        now = fields.Datetime.now()
        for value, kept_ages in (
            ("7.5", [0, 5]),
            ("0", [0, 5, 10]),
            ("-5", [0, 5, 10]),
            ("1000000", [0, 5, 10, 40]),
            ("1e400", [0, 5, 10, 40]),
        ):
            Pass.search([]).unlink()
            for age in (0, 5, 10, 40):
                Pass.create(
                    {
                        "channel_id": self.channel.id,
                        "finished_at": fields.Datetime.subtract(now, days=age, hours=1)
                        if age
                        else now,
                        "checked": age,
                    }
                )
            Param.set_param("stock_channel_sync.event_retention_days", value)
            Pass._gc_reconcile_passes()
            self.assertEqual(
                sorted(Pass.search([]).mapped("checked")), kept_ages, value
            )

    def test_buttons_say_what_they_started(self):
        """Push All Now and Reconcile only enqueue jobs: the user is told so,
        rather than shown nothing."""
        for action, title in (
            (self.channel.action_reconcile_dry_run, "Dry run started"),
            (self.channel.action_reconcile_now, "Reconciliation started"),
            (self.channel.action_push_all, "Push queued"),
        ):
            answer = action()
            self.assertEqual(answer["tag"], "display_notification")
            self.assertEqual(answer["params"]["title"], title)
            self.run_jobs()
            self.channel.invalidate_recordset()
        self.assertIn("2 binding(s)", answer["params"]["message"])

    def test_channel_refusing_the_read_closes_the_pass(self):
        """Refused for good (here: no base URL): no retry, no failed job; the
        pass closes, the channel shows why, its responsible user is told
        (once, however many passes fail)."""
        self.channel.base_url = False
        for _pass in range(2):
            self.pass_()
            self.assertEqual(self.channel.reconcile_pending, 0)
            self.assertIn("base_url", self.channel.last_reconcile_error)
            self.assertEqual(self.channel.last_reconcile_checked, 0)
        self.assertEqual(len(self.reconcile_activities()), 1)
        self.assertFalse(self.sync_jobs(states=("failed",)))

    def lost_sale(self):
        """The channel sold 3 mugs and lowered its figure; the order's
        webhook never came."""
        (self.b_a | self.b_b)._scs_push()
        self.sim.add_order("SIM-LOST", [("SCS-MUG", 3)])
        self.sim.set_stock("SCS-MUG", 7)

    def test_order_fetch_throttled_retries_without_comparing(self):
        """A 429 on the order fetch: the start job is retried after the
        channel's Retry-After, and nothing is compared meanwhile (comparing
        without the lost sale would put the sold units back on sale). The
        retry reserves the sale, then compares."""
        self.lost_sale()
        self.sim.queue_response(429, {"error": "slow down"}, {"Retry-After": "120"})
        with self.assertRaises(RetryableJobError) as caught:
            self.channel._scs_job_reconcile_start()
        self.assertEqual(caught.exception.seconds, 120)
        self.assertFalse(self.sync_jobs("_scs_job_reconcile_batch"))
        self.assertEqual(self.sim.quantity("SCS-MUG"), 7)
        self.assertFalse(self.corrections())
        self.channel.invalidate_recordset()
        self.assertFalse(self.channel.last_order_fetch_at)
        # the retry, once the channel answers
        self.channel._scs_job_reconcile_start()
        self.run_jobs()
        self.assertEqual(self.sim.quantity("SCS-MUG"), 7, "never relisted")
        self.assertFalse(self.corrections())
        self.assertEqual(
            self.env["stock.picking"].search_count(
                [("scs_external_order_id", "=", "SIM-LOST")]
            ),
            1,
        )

    def test_order_fetch_refused_closes_the_pass_without_comparing(self):
        """The order fetch refused for good (403): the pass closes with the
        error on the channel and an activity, and corrects nothing."""
        self.lost_sale()
        self.sim.queue_response(403, {"error": "no access to orders"})
        self.pass_()
        self.assertEqual(self.sim.quantity("SCS-MUG"), 7, "never relisted")
        self.assertFalse(self.corrections())
        self.assertFalse(
            self.sync_jobs("_scs_job_reconcile_batch", states=("pending", "done"))
        )
        self.assertIn("403", self.channel.last_reconcile_error)
        self.assertEqual(self.channel.last_reconcile_checked, 0)
        self.assertEqual(self.channel.reconcile_pending, 0)
        self.assertTrue(self.channel.last_reconcile_at)
        self.assertFalse(self.channel.last_order_fetch_at)
        self.assertEqual(len(self.reconcile_activities()), 1)
        self.assertFalse(self.sync_jobs(states=("failed",)))

    def test_start_job_out_of_retries_says_so(self):
        """The start job's retries are spent (a channel down for its whole
        retry pattern): its ``on_fail`` hook closes the pass with the error
        on the channel and one activity."""
        self.channel._scs_start_reconcile()
        self.channel._scs_on_reconcile_start_failed(
            exc_name="FailedJobError", exc_message="[503] channel is down"
        )
        self.channel.invalidate_recordset()
        self.assertIn("[503] channel is down", self.channel.last_reconcile_error)
        self.assertEqual(self.channel.reconcile_pending, 0)
        self.assertTrue(self.channel.last_reconcile_at)
        self.assertEqual(len(self.reconcile_activities()), 1)
        function = self.env["queue.job.function"].search(
            [("name", "=", "<sync.channel>._scs_job_reconcile_start")]
        )
        self.assertEqual(function.on_fail_method, "_scs_on_reconcile_start_failed")
        # the channel is back: the next pass runs through, and the alert of
        # the failed one is marked done
        self.pass_()
        self.assertFalse(self.channel.last_reconcile_error)
        self.assertFalse(self.reconcile_activities())

    def test_poll_out_of_retries_says_so(self):
        """An order poll whose retries are spent (a channel answering 429 or
        5xx for the whole retry pattern) is no silent failure: its
        ``on_fail`` hook shows the error on the channel, with one activity,
        however many polls fail."""
        for _attempt in range(2):
            self.channel._scs_on_poll_failed(
                exc_name="FailedJobError", exc_message="[429] quota exceeded"
            )
        self.channel.invalidate_recordset()
        self.assertIn("[429] quota exceeded", self.channel.last_reconcile_error)
        activities = self.env["mail.activity"].search(
            [
                ("res_model", "=", "sync.channel"),
                ("res_id", "=", self.channel.id),
                ("summary", "=", "Orders not polled"),
            ]
        )
        self.assertEqual(len(activities), 1)
        function = self.env["queue.job.function"].search(
            [("name", "=", "<sync.channel>._scs_job_poll_orders")]
        )
        self.assertEqual(function.on_fail_method, "_scs_on_poll_failed")

    def test_dead_letter_retry_and_discard(self):
        self.sim.queue_response(400, {"error": "listing closed"})
        self.b_a._scs_push()
        dead = self.env["sync.event"].search([("state", "=", "dead")])
        self.assertEqual(len(dead), 1)
        dead.action_retry()
        self.assertEqual(dead.state, "queued")
        self.run_jobs()
        self.assertEqual(self.sim.quantity("SCS-MUG"), 10)
        self.sim.queue_response(400, {"error": "listing closed"})
        self.b_b._scs_push()
        dead = self.env["sync.event"].search([("state", "=", "dead")])
        wizard = (
            self.env["sync.event.discard"]
            .with_context(active_ids=dead.ids)
            .create({"reason": "listing removed"})
        )
        self.assertEqual(self.b_b.pending_event_id, dead)
        wizard.action_discard()
        self.assertEqual(dead.state, "discarded")
        self.assertEqual(dead.reason, "listing removed")
        self.assertFalse(self.b_b.pending_event_id, "the binding lets it go")
        self.assertEqual(self.b_b.push_state, "failed")

    def _aged_event(self, key, state, age_days, changed_days=None, **vals):
        """An outbound event created ``age_days`` ago, last changed
        ``changed_days`` ago (the same by default)."""
        event = self.env["sync.event"].create(
            {
                "direction": "out",
                "channel_id": self.channel.id,
                "kind": "push",
                "idempotency_key": key,
                "state": state,
                "change_ts": time.time(),
                **vals,
            }
        )
        self.env.flush_all()
        self.env.cr.execute(
            SQL(
                "UPDATE sync_event"
                " SET create_date = now() - make_interval(days => %s),"
                " write_date = now() - make_interval(days => %s)"
                " WHERE id = %s",
                age_days,
                age_days if changed_days is None else changed_days,
                event.id,
            )
        )
        event.invalidate_recordset()
        return event

    def test_retention_removes_only_what_it_should(self):
        Event = self.env["sync.event"]
        make = self._aged_event
        old_applied = make("old-applied", "applied", 40)
        new_applied = make("new-applied", "applied", 5)
        old_dead = make("old-dead", "dead", 40)
        ancient_dead = make("ancient-dead", "dead", 400)
        old_failed = make("old-failed", "failed", 40)
        # a dead letter of long ago, retried (or discarded) this week: its
        # age counts from then
        retried = make("retried", "applied", 400, changed_days=2)
        discarded = make("discarded", "discarded", 400, changed_days=2)
        # still pointed to: by a replay of it, by a binding waiting on it
        replayed = make("replayed", "applied", 40)
        replay = make("replayed:replay:1", "applied", 5, replay_of_id=replayed.id)
        waited = make("waited", "failed", 400)
        binding = self.env["channel.binding"].search(
            [("channel_id", "=", self.channel.id)], limit=1
        )
        binding.pending_event_id = waited
        self.env.flush_all()
        kept = new_applied | old_dead | old_failed | retried | discarded
        kept |= replayed | replay | waited
        deleted = self.gc_events()
        self.assertEqual(deleted, 2)
        events = old_applied | ancient_dead | kept
        self.assertEqual(Event.search([("id", "in", events.ids)]), kept)
        self.assertEqual(replay.replay_of_id, replayed)
        self.assertEqual(binding.pending_event_id, waited)

    def test_event_log_search_by_sku_finds_orders_of_several_skus(self):
        """The event log's SKU search finds an order of several SKUs (its
        subject names the order, its lines the SKUs), and no other order."""
        Event = self.env["sync.event"]
        for key, lines in (
            ("key-two", [OrderLine("SCS-MUG", 1), OrderLine("SCS-CAP", 2)]),
            ("key-mug", [OrderLine("SCS-MUG", 1)]),
        ):
            Event._scs_record_inbound(
                self.channel,
                [InboundEvent("order", key, order=ChannelOrder(key, "open", lines))],
                b"{}",
                "test",
                enqueue=False,
            )
        arch = self.env.ref("stock_channel_sync.sync_event_view_search").arch
        node = etree.fromstring(arch).xpath("//field[@name='sku']")[0]
        domain = safe_eval(node.get("filter_domain"), {"self": "SCS-CAP"})
        found = Event.search(domain + [("channel_id", "=", self.channel.id)])
        self.assertEqual(found.mapped("idempotency_key"), ["key-two"])
        # a SKU the stored JSON escapes is found too; an event whose data is
        # no JSON (written by hand) does not break a search it has no part in
        Event._scs_record_inbound(
            self.channel,
            [
                InboundEvent(
                    "order",
                    "key-tasse",
                    order=ChannelOrder("key-tasse", "open", [OrderLine("TÄSSE-1", 1)]),
                )
            ],
            b"{}",
            "test",
            enqueue=False,
        )
        broken = Event.search([("idempotency_key", "=", "key-mug")])
        self.env.cr.execute(
            "UPDATE sync_event SET data = 'not json' WHERE id = %s", (broken.id,)
        )
        self.env.invalidate_all()
        domain = safe_eval(node.get("filter_domain"), {"self": "tässe"})
        found = Event.search(domain + [("channel_id", "=", self.channel.id)])
        self.assertEqual(found.mapped("idempotency_key"), ["key-tasse"])
        domain = safe_eval(node.get("filter_domain"), {"self": "SCS-CAP"})
        found = Event.search(domain + [("channel_id", "=", self.channel.id)])
        self.assertEqual(found.mapped("idempotency_key"), ["key-two"])
        # equal to a SKU, one of several, and the opposites (what the
        # search view's "does not contain" and "is not equal to" send)
        orders = [("channel_id", "=", self.channel.id), ("kind", "=", "order")]
        for condition, keys in (
            (("line_skus", "=", "SCS-MUG"), ["key-two"]),
            (("line_skus", "=", "SCS-MU"), []),
            (("line_skus", "in", ["SCS-CAP", "TÄSSE-1"]), ["key-tasse", "key-two"]),
            (("line_skus", "not ilike", "cap"), ["key-mug", "key-tasse"]),
            (("line_skus", "!=", "SCS-MUG"), ["key-mug", "key-tasse"]),
            (("line_skus", "not in", ["SCS-MUG", "TÄSSE-1"]), ["key-mug"]),
        ):
            with self.subTest(condition=condition):
                found = Event.search([*orders, condition])
                self.assertEqual(sorted(found.mapped("idempotency_key")), keys)
        with self.assertRaisesRegex(UserError, "contains"):
            Event.search([*orders, ("line_skus", "=like", "SCS%")])

    def test_retention_days_that_are_no_number_keep_the_default(self):
        """A retention of "7.5" days is 7; one that is no number of days
        ("a week", 0) keeps the default instead of stopping retention."""
        make = self._aged_event
        params = self.env["ir.config_parameter"]
        params.set_param("stock_channel_sync.event_retention_days", "7.5")
        eight = make("eight-days", "applied", 8)
        six = make("six-days", "applied", 6)
        self.env.flush_all()
        self.gc_events()
        self.assertFalse(eight.exists())
        self.assertTrue(six.exists())
        params.set_param("stock_channel_sync.event_retention_days", "99999999999")
        params.set_param("stock_channel_sync.problem_retention_days", "1000000")
        self.env.flush_all()
        self.gc_events()  # a century: nothing of this test is that old
        self.assertTrue(six.exists())
        params.set_param("stock_channel_sync.problem_retention_days", "180")
        for wrong in ("a week", "0"):
            params.set_param("stock_channel_sync.event_retention_days", wrong)
            month = make(f"month-{wrong}", "applied", 31)
            fortnight = make(f"fortnight-{wrong}", "applied", 14)
            self.env.flush_all()
            with self.assertLogs(
                "odoo.addons.stock_channel_sync.models.sync_event_operations", "ERROR"
            ):
                self.gc_events()
            self.assertFalse(month.exists(), wrong)
            self.assertTrue(fortnight.exists(), wrong)

    def test_retention_lets_a_replayed_order_go(self):
        """A dead order replayed (applied): the original is done with, so
        neither keeps the other once both are past their retention."""
        order = {"direction": "in", "kind": "order", "external_ref": "R-GONE"}
        original = self._aged_event("r-gone", "dead", 400, **order)
        replay = self._aged_event(
            "r-gone:replay:1", "applied", 400, replay_of_id=original.id, **order
        )
        self.assertEqual(self.gc_events(), 2)
        self.assertFalse((original | replay).exists())

    def test_retention_goes_a_chunk_a_call(self):
        """One call deletes a chunk of each kind and says whether to call
        again: Odoo's autovacuum commits between calls, so a run cut by
        the cron's time limit keeps what it deleted."""
        for index in range(3):
            self._aged_event(f"old-{index}", "applied", 40)
        self._aged_event("old-dead", "dead", 400)
        Event = self.env["sync.event"]
        with patch.object(sync_event_operations, "GC_CHUNK", 1):
            self.assertEqual(Event._gc_sync_events(), (2, 1))
            self.assertEqual(Event._gc_sync_events(), (1, 1))
            self.assertEqual(Event._gc_sync_events(), (1, 1))
            self.assertEqual(Event._gc_sync_events(), (0, 0))

    def test_retention_unlinks_replays_through_an_index(self):
        """An original goes with its replays, after them, in one run; the
        foreign key's lookup on delete is served by an index: without one
        PostgreSQL scans the whole log once per deleted row, which turns a
        retention chunk of 10,000 rows into hours on a big log."""
        original = self._aged_event("replayed", "applied", 40)
        replay = self._aged_event(
            "replayed:replay:1", "applied", 5, replay_of_id=original.id
        )
        self.assertEqual(self.gc_events(), 0)
        self.env.cr.execute(
            "UPDATE sync_event SET write_date = now() - interval '40 days'"
            " WHERE id = %s",
            [replay.id],
        )
        self.assertEqual(self.gc_events(), 2)
        self.assertFalse((original | replay).exists())
        # the lookup the foreign key runs on delete, planned with table
        # scans priced out: only an index on the column can serve it
        self.env.cr.execute("SET LOCAL enable_seqscan = off")
        self.env.cr.execute(
            "EXPLAIN UPDATE sync_event SET replay_of_id = NULL WHERE replay_of_id = %s",
            [replay.id],
        )
        plan = "\n".join(row[0] for row in self.env.cr.fetchall())
        self.env.cr.execute("SET LOCAL enable_seqscan = on")
        self.assertIn("sync_event__replay_of_id_index", plan)


@tagged("post_install", "-at_install")
class TestBindingTools(SyncCase):
    def test_only_a_product_that_tracks_its_stock_is_bound(self):
        """A consumable has no quantity in Odoo: bound, its channels would
        be told 0 and show it sold out. Refused over RPC too (the form's
        domain is no check), and a bound product keeps tracking its stock."""
        sim = self.start_simulator()
        channel = self.make_channel(sim)
        untracked = self.env["product.product"].create(
            {"name": "Gift wrap", "default_code": "SCS-WRAP", "is_storable": False}
        )
        with self.assertRaises(ValidationError), self.env.cr.savepoint():
            self.env["channel.binding"].create(
                {"channel_id": channel.id, "product_id": untracked.id}
            )
        bound = self.bind(channel, self.product_a)
        with self.assertRaises(ValidationError), self.env.cr.savepoint():
            bound.product_id = untracked
        with self.assertRaises(ValidationError), self.env.cr.savepoint():
            self.product_a.is_storable = False
        self.assertTrue(self.product_a.is_storable)
        # archived bindings hold nothing back, and an archived binding of a
        # consumable cannot be restored
        bound.active = False
        self.product_a.is_storable = False
        with self.assertRaises(ValidationError), self.env.cr.savepoint():
            bound.active = True
        self.assertFalse(
            self.env["channel.binding"].search(
                [
                    ("channel_id", "=", channel.id),
                    ("product_id.is_storable", "=", False),
                ]
            )
        )

    def test_match_listings_leaves_shared_references_unbound(self):
        """Two variants with one reference are not both bound to its listing
        (their pushes would overwrite each other); a variant bound by hand
        under another SKU keeps its one binding."""
        Product = self.env["product.product"]
        twins = Product.create(
            [
                {"name": n, "default_code": "SCS-TWIN", "is_storable": True}
                for n in ("Twin 1", "Twin 2")
            ]
        )
        sim = self.start_simulator()
        channel = self.make_channel(sim)
        for sku in ("SCS-MUG", "SCS-CAP", "SCS-TWIN"):
            sim.set_stock(sku, 3)
        by_hand = self.bind(channel, self.product_b, sku="HAND-CAP")
        answer = channel.action_match_listings()
        self.assertEqual(answer["params"]["type"], "warning")
        self.assertIn("SCS-TWIN", answer["params"]["message"])
        self.assertIn("1 binding(s) created", answer["params"]["message"])
        self.assertEqual(
            sorted(channel.binding_ids.mapped("sku")), ["HAND-CAP", "SCS-MUG"]
        )
        self.assertEqual(
            channel.binding_ids.filtered(lambda b: b.product_id == self.product_b),
            by_hand,
        )
        self.assertFalse(channel.binding_ids.product_id & twins)
        # by hand: a SKU-only binding beside one of the same SKU is refused
        self.bind(channel, twins[0], sku="SCS-TWIN", external_id="gid-1")
        with self.assertRaises(ValidationError), self.env.cr.savepoint():
            self.bind(channel, twins[1], sku="SCS-TWIN")
        # two SKU-only bindings created at once would both pass that check
        # (each transaction sees neither the other's row): the database
        # refuses the second one, as two concurrent inserts would meet it
        third = Product.create(
            {"name": "Twin 3", "default_code": "SCS-TWIN", "is_storable": True}
        )
        insert = (
            "INSERT INTO channel_binding (channel_id, product_id, company_id, sku,"
            " active, allocation_pct, push_state, sequence)"
            " VALUES (%s, %s, %s, 'SCS-TWIN', true, 100, 'new', 0)"
        )
        self.env.flush_all()
        self.env.cr.execute(insert, [channel.id, twins[1].id, channel.company_id.id])
        with (
            mute_logger("odoo.sql_db"),
            self.assertRaises(psycopg2.IntegrityError),
            self.env.cr.savepoint(),
        ):
            self.env.cr.execute(insert, [channel.id, third.id, channel.company_id.id])

    def test_a_listing_known_by_its_sku_takes_one_variant(self):
        """On a channel that sets its listings by SKU (a generic shop,
        Amazon, eBay) two bindings of one SKU would overwrite each other's
        number, and every order of it would reserve the first: refused,
        whatever external ids they carry. A WooCommerce listing is set by
        its id: two bindings of one SKU with their own ids are two listings.
        A binding that names no listing is refused."""
        Product = self.env["product.product"]
        other = Product.create(
            {"name": "Other", "default_code": "SCS-OTHER", "is_storable": True}
        )
        bare = Product.create({"name": "No reference", "is_storable": True})
        channel = self.make_channel(self.start_simulator())
        self.bind(channel, self.product_a, external_id="EXT-A")
        for vals in (
            {"sku": "SCS-MUG", "external_id": "EXT-B"},
            {"sku": "SCS-MUG"},
            {},
            {"external_id": "EXT-C"},
        ):
            with (
                self.subTest(**vals),
                self.assertRaises(ValidationError),
                self.env.cr.savepoint(),
            ):
                self.bind(channel, other if vals.get("sku") else bare, **vals)
        binding = self.bind(channel, other)
        with self.assertRaises(ValidationError), self.env.cr.savepoint():
            binding.write({"sku": "SCS-MUG", "external_id": "EXT-D"})
        woo = self.make_channel(
            channel_type="woocommerce", name="Woo", base_url="http://127.0.0.1:9"
        )
        self.bind(woo, self.product_a, external_id="11")
        self.bind(woo, other, sku="SCS-MUG", external_id="12")
        self.bind(woo, bare, external_id="13")
        self.assertEqual(
            woo.binding_ids.sorted("external_id").mapped("sku"),
            ["SCS-MUG", "SCS-MUG", False],
        )
        with self.assertRaises(ValidationError), self.env.cr.savepoint():
            self.bind(woo, Product.create({"name": "None", "is_storable": True}))

    def test_match_listings_leaves_archived_bindings_alone(self):
        """An archived binding's SKU and variant are taken: Match Listings
        binds the others, instead of failing on the variant's one binding
        per channel."""
        sim = self.start_simulator()
        channel = self.make_channel(sim)
        sim.set_stock("SCS-MUG", 4)
        sim.set_stock("SCS-CAP", 2)
        archived = self.bind(channel, self.product_a)
        archived.active = False
        answer = channel.action_match_listings()
        self.assertIn("1 binding(s) created", answer["params"]["message"])
        self.assertEqual(channel.binding_ids.mapped("sku"), ["SCS-CAP"])
        self.assertFalse(archived.active)

    def test_why_this_quantity_writes_every_digit(self):
        sim = self.start_simulator()
        channel = self.make_channel(sim)
        binding = self.bind(channel, self.product_a)
        self.move_stock(self.product_a, 1_234_557)
        html = binding.quantity_explanation
        self.assertEqual(binding.published_qty, 1_234_567)
        self.assertNotIn("e+", html)
        # the location's on hand and free, then every step down to the number
        self.assertIn("<td>1234567</td><td>0</td><td>1234567</td>", html)
        steps = html.split("Free quantity")[1].split("Last events")[0]
        self.assertEqual(steps.count(">1234567</td>"), 5, steps)

    def test_match_listings_and_why_this_quantity(self):
        sim = self.start_simulator()
        channel = self.make_channel(sim, buffer_qty=1)
        sim.set_stock("SCS-MUG", 4)
        sim.set_stock("SCS-CAP", 2)
        sim.set_stock("NOT-IN-ODOO", 9)
        channel.action_match_listings()
        bindings = channel.binding_ids
        self.assertEqual(set(bindings.mapped("sku")), {"SCS-MUG", "SCS-CAP"})
        channel.action_match_listings()
        self.assertEqual(len(channel.binding_ids), 2, "matching twice binds once")
        mug = bindings.filtered(lambda b: b.sku == "SCS-MUG")
        mug.write({"use_max_qty": True, "max_qty": 7, "allocation_pct": 50})
        # 10 on hand, 2 reserved by a delivery
        self.env["stock.quant"]._update_reserved_quantity(self.product_a, self.stock, 2)
        html = mug.quantity_explanation
        self.assertIn(self.stock.display_name, html)
        for figure in ("10", "2", "8", "- 1", "7", "50 %", "3.5"):
            self.assertIn(figure, html)
        # (10 - 2 - 1) capped at 7, 50 % -> 3.5 -> 3
        self.assertEqual(mug.published_qty, 3)
        self.assertIn(">3</td>", html)
