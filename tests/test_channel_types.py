# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Every channel type, configured through the backend form, syncs with its simulator.

For each type a sync manager fills the channel form (``odoo.tests.Form``, so
the fields the view shows or hides for that type are what can be set), binds
a product to a listing the simulator knows, presses *Test connection*, and a
stock change then reaches the simulator over real HTTP on loopback as Odoo's
free quantity minus the channel's buffer. Wrong credentials make *Test
connection* fail with the channel's own message.
"""

import json
import re
import time
from unittest.mock import patch

from odoo import fields
from odoo.exceptions import UserError, ValidationError
from odoo.tests import Form, tagged

from odoo.addons.queue_job.exception import RetryableJobError

from ..lib.adapters import amazon as amazon_adapter
from ..lib.adapters.shopify import ShopifyAdapter
from ..simulators.amazon import AmazonSimulator
from ..simulators.base import RateBucket, Response
from ..simulators.ebay import EbaySimulator
from ..simulators.generic import GenericSimulator
from ..simulators.shopify import ShopifySimulator
from ..simulators.woocommerce import WooCommerceSimulator
from .common import SyncCase

BUFFER = 2.0
#: ChannelConfig field -> sync.channel field, where the names differ
CONFIG_TO_CHANNEL = {"location_id": "external_location_id"}


@tagged("post_install", "-at_install")
class TestChannelTypes(SyncCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # channels are configured by a sync manager, as in the backend
        cls.manager = cls.env.ref("base.user_admin")

    # -- helpers ----------------------------------------------------------------
    def start(self, simulator):
        simulator.start()
        self.addCleanup(simulator.stop)
        return simulator

    def channel_from_form(self, kind, /, **config):
        """Fill the channel form as a user would; ``config`` uses ChannelConfig
        names (``location_id``), the form the channel's field names."""
        form = Form(self.env["sync.channel"].with_user(self.manager))
        form.name = f"Simulated {kind}"
        form.channel_type = kind
        form.warehouse_ids.add(self.warehouse)
        form.buffer_qty = BUFFER
        form.timeout = 5.0
        for name, value in config.items():
            if name == "channel_type":
                continue
            setattr(form, CONFIG_TO_CHANNEL.get(name, name), value)
        channel = form.save().with_env(self.env)
        self.assertEqual(channel.channel_type, kind)
        return channel

    def bind_listing(self, channel, product, row, **vals):
        """A binding of ``product`` to a simulator's listing ``row`` (its
        SKU, listing id and offer or item id)."""
        return self.bind(
            channel,
            product,
            **{
                "sku": row["sku"],
                "external_id": row["external_id"],
                "external_variant_id": row["external_variant_id"],
                **vals,
            },
        )

    def expected_quantity(self):
        """What Odoo publishes for product A: its free quantity minus the buffer."""
        self.env.invalidate_all()
        free = self.product_a.with_context(warehouse_id=self.warehouse.id).free_qty
        return int(free - BUFFER)

    def assert_test_connection_ok(self, channel):
        action = channel.action_test_connection()
        self.assertEqual(action["type"], "ir.actions.client")
        self.assertEqual(action["tag"], "display_notification")
        self.assertEqual(action["params"]["type"], "success")
        self.assertTrue(action["params"]["message"])
        return action

    def assert_stock_reaches(self, channel, binding, read_quantity):
        """Two stock changes; after each the simulator holds Odoo's number."""
        for delta, expected in ((3, 11), (-4, 7)):  # 10 on hand, buffer 2
            self.move_stock(self.product_a, delta)
            self.commit_point()
            self.assertTrue(self.sync_jobs(), "the stock change enqueued a push")
            self.run_jobs()
            self.assertEqual(self.expected_quantity(), expected)
            self.assertEqual(read_quantity(), expected)
            self.assertEqual(binding.published_qty, expected)
            self.assertEqual(binding.last_pushed_qty, expected)
            self.assertEqual(binding.push_state, "ok")
        events = self.env["sync.event"].search(
            [
                ("channel_id", "=", channel.id),
                ("binding_id", "=", binding.id),
                ("direction", "=", "out"),
            ],
            order="id",
        )
        self.assertEqual(len(events), 2, "one outbound event per stock change")
        self.assertEqual(set(events.mapped("state")), {"applied"})
        self.assertEqual(events.mapped("quantity"), [11, 7])
        self.assertEqual(set(events.mapped("sku")), {binding.sku})

    def assert_test_connection_refused(self, channel, message):
        with self.assertRaises(UserError) as caught:
            channel.action_test_connection()
        text = str(caught.exception)
        self.assertIn("Connection failed", text)
        self.assertIn(message, text)

    # -- one test per channel type ---------------------------------------------
    def test_generic(self):
        sim = self.start(GenericSimulator())
        sim.set_stock("SCS-MUG", 0)
        channel = self.channel_from_form(
            "generic", base_url=sim.endpoint, signing_secret=sim.secret
        )
        binding = self.bind(channel, self.product_a)
        self.assertEqual(binding.sku, "SCS-MUG")
        self.assert_test_connection_ok(channel)
        self.assert_stock_reaches(channel, binding, lambda: sim.quantity("SCS-MUG"))
        # every push was signed with the secret typed in the form
        self.assertFalse(sim.rejected)
        self.assertEqual(len([h for h in sim.history if h["applied"]]), 2)

    def test_generic_signing_secret_from_button(self):
        """The form's *Generate Signing Secret* button gives a working secret."""
        channel = self.channel_from_form("generic")
        self.assertFalse(channel.sudo().signing_secret)
        channel.action_generate_signing_secret()
        secret = channel.sudo().signing_secret
        self.assertTrue(secret.startswith("whsec_"))
        sim = self.start(GenericSimulator(secret=secret))
        channel.base_url = sim.endpoint
        binding = self.bind(channel, self.product_a)
        self.assert_test_connection_ok(channel)
        self.assert_stock_reaches(channel, binding, lambda: sim.quantity("SCS-MUG"))

    def shopify_channel(self):
        """A Shopify channel made through the form, its simulator, and a
        binding of the mug to the simulator's item."""
        sim = self.start(ShopifySimulator(access_token="shpat_form_test"))
        gid = sim.add_item("SCS-MUG", quantity=0)
        channel = self.channel_from_form(
            "shopify",
            base_url=sim.url,
            access_token=sim.access_token,
            location_id=sim.location_id,
        )
        binding = self.bind(
            channel,
            self.product_a,
            external_id=sim.items[gid]["variant"],
            external_variant_id=gid,
        )
        return sim, channel, binding

    def test_shopify(self):
        sim, channel, binding = self.shopify_channel()
        action = self.assert_test_connection_ok(channel)
        self.assertIn(sim.shop_name, action["params"]["message"])
        self.assert_stock_reaches(channel, binding, lambda: sim.quantity("SCS-MUG"))
        self.assertEqual(sim.applied_count, 2)
        # 2 sold on Shopify, its order not here yet; a stock change in Odoo
        # sets Odoo's number less those 2, not offered again meanwhile
        sim.set_level("SCS-MUG", sim.quantity("SCS-MUG") - 2)
        self.move_stock(self.product_a, 1)
        self.commit_point()
        self.run_jobs()
        self.assertEqual(self.expected_quantity(), 8)
        self.assertEqual(sim.quantity("SCS-MUG"), 6)
        self.assertEqual(binding.last_pushed_qty, 8)
        self.assertEqual(binding.last_seen_qty, 6)
        event = self.env["sync.event"].search(
            [("binding_id", "=", binding.id), ("direction", "=", "out")],
            order="id desc",
            limit=1,
        )
        self.assertIn("Odoo does not know of yet", event.response)
        # a hand edit on Shopify, no sale: one reconciliation pass puts
        # Odoo's number back (compared against the level it read, not taken
        # for units sold there)
        sim.set_level("SCS-MUG", 3)
        channel._scs_start_reconcile()
        self.run_jobs()
        self.assertEqual(sim.quantity("SCS-MUG"), 8)
        binding.invalidate_recordset()
        self.assertEqual((binding.last_pushed_qty, binding.last_seen_qty), (8, 8))
        # restored from a backup: Push All Now reads the level first, so
        # the compare holds and Odoo's number is set
        sim.set_level("SCS-MUG", 2)
        channel.action_push_all()
        self.run_jobs("_scs_job_push_batch")
        self.assertEqual(sim.quantity("SCS-MUG"), 8)
        # 1 sold on Shopify whose order failed to apply (a dead letter): the
        # level it lowered is that sale, and Push All Now keeps it off sale
        sim.set_level("SCS-MUG", 7)
        self.env["sync.event"].create(
            {
                "direction": "in",
                "channel_id": channel.id,
                "kind": "order",
                "idempotency_key": "shopify-dead-order",
                "state": "dead",
                "external_ref": "gid://shopify/Order/9",
                "data": json.dumps(
                    {"order": {"id": "9", "lines": [{"sku": "SCS-MUG", "qty": 1}]}}
                ),
            }
        )
        channel.action_push_all()
        self.run_jobs("_scs_job_push_batch")
        self.assertEqual(sim.quantity("SCS-MUG"), 7)
        # a paused channel is not read first (the read would hold the job
        # and its bindings for the timeout)
        self.env.cr.execute(
            "UPDATE sync_channel SET pause_count = 1, paused_until = %s WHERE id = %s",
            [time.time() + 30, channel.id],
        )
        channel.invalidate_recordset()
        with (
            self.enter_registry_test_mode(),
            patch.object(
                ShopifyAdapter, "read_quantities", side_effect=AssertionError("read")
            ),
        ):
            binding._scs_note_live_levels()

    def test_shopify_throttle_is_retried_not_taken_for_silence(self):
        """Shopify answers 429 with a Retry-After the SKU job cannot wait
        out in place: the push is retried at that time, and the channel is
        neither paused nor sent a resend after the job gave it up."""
        sim, channel, binding = self.shopify_channel()
        self.product_a._scs_job_push_sku(force=True)
        before = sim.quantity("SCS-MUG")
        self.assertEqual(before, self.expected_quantity())
        for _i in range(2):
            sim.scripted.append(
                Response(429, {"errors": "Throttled"}, {"Retry-After": "2"})
            )
        self.move_stock(self.product_a, -1)
        self.commit_point()
        self.discard_jobs()
        started = time.monotonic()
        with self.enter_registry_test_mode():
            self.product_a._scs_job_push_sku()
        self.assertLess(time.monotonic() - started, 2, "not waited out in place")
        channel.invalidate_recordset()
        self.assertEqual(channel.pause_count, 0)
        self.assertIn("429", binding.pending_event_id.error)
        (retry,) = self.sync_jobs("_scs_job_push_binding")
        wait = (retry.eta - retry.date_created).total_seconds()
        self.assertAlmostEqual(wait, 2, delta=1)
        # no job calls the shop before its Retry-After; that time has come
        self.assertGreater(channel.paused_until, time.time())
        self.env.cr.execute(
            "UPDATE sync_channel SET paused_until = 0 WHERE id = %s", (channel.id,)
        )
        sim.scripted.clear()
        self.run_jobs("_scs_job_push_binding")
        self.assertEqual(sim.quantity("SCS-MUG"), before - 1)

    def failed_send(self, binding, error, qty):
        """The event a push leaves when it failed with ``error``."""
        return self.env["sync.event"].create(
            {
                "direction": "out",
                "channel_id": binding.channel_id.id,
                "binding_id": binding.id,
                "product_id": binding.product_id.id,
                "sku": binding.sku,
                "kind": "push",
                "idempotency_key": f"failed-push-{qty}",
                "state": "failed",
                "error": error,
                "quantity": qty,
                "sent_ts": time.time(),
                "change_ts": time.time(),
            }
        )

    def shopify_push_after(self, sim, level, move, apart=False):
        """Shopify shows ``level`` and Odoo's stock moves by ``move``: what
        Shopify holds after a forced push of the SKU (``apart``: its send
        marks written apart from the job, as in production)."""
        sim.set_level("SCS-MUG", level)
        self.move_stock(self.product_a, move)
        self.commit_point()
        self.discard_jobs()
        if apart:
            with self.enter_registry_test_mode():
                self.product_a._scs_job_push_sku(force=True)
        else:
            self.product_a._scs_job_push_sku(force=True)
        return sim.quantity("SCS-MUG")

    def test_shopify_level_set_by_an_unanswered_push_is_not_a_sale(self):
        """A push given up before its answer landed on Shopify: the next
        push's compare fails on that level, which is Odoo's own number, not
        units sold there. It sets Odoo's number, not that number less the
        difference (which kept units off sale until the next pass)."""
        sim, _channel, binding = self.shopify_channel()
        self.product_a._scs_job_push_sku(force=True)
        before = sim.quantity("SCS-MUG")
        binding.invalidate_recordset()
        self.assertEqual(binding.last_seen_qty, before)
        # a push of before - 3 (a sale of 3 in Odoo) landed, its answer lost
        self.failed_send(binding, "no answer within 3.0 s", before - 3)
        sim.set_level("SCS-MUG", before - 3)
        self.move_stock(self.product_a, -4)
        self.commit_point()
        self.discard_jobs()
        self.product_a._scs_job_push_sku()
        self.assertEqual(sim.quantity("SCS-MUG"), before - 4)
        # a level Odoo never sent is still units sold there, kept off sale
        self.assertEqual(self.shopify_push_after(sim, before - 6, 1), before - 5)
        # in step again (the units sold there arrived as an order)
        sim.set_level("SCS-MUG", before - 3)
        binding.last_seen_qty = before - 3
        self.move_stock(self.product_a, -1)
        self.commit_point()
        self.discard_jobs()
        # a sale of 1 on Shopify, its order on its way, and one in Odoo at the
        # same moment: the level equals Odoo's new number, yet it is a sale
        # there (Odoo never sent it): both units stay off sale
        sim.set_level("SCS-MUG", before - 4)
        self.product_a._scs_job_push_sku(force=True)
        self.assertEqual(sim.quantity("SCS-MUG"), before - 5)
        # nor is a level that a push refused with an HTTP error would have
        # set: a sale of 2 there, with the refused push's number
        self.failed_send(binding, "[503] Service Unavailable", before - 7)
        sim.set_level("SCS-MUG", before - 7)
        self.move_stock(self.product_a, -1)
        self.commit_point()
        self.discard_jobs()
        self.product_a._scs_job_push_sku(force=True)
        self.assertEqual(sim.quantity("SCS-MUG"), before - 7)

    def test_shopify_push_of_a_job_rolled_back_is_not_a_sale(self):
        """A push job whose call Shopify applied was rolled back after (a
        worker killed, a serialization failure): its event went with it,
        the mark of its send, committed apart, did not. The next push's
        compare fails on that level, Odoo's own: it sets Odoo's number, not
        that number less the difference, which would be kept off sale."""
        sim, _channel, binding = self.shopify_channel()
        self.product_a._scs_job_push_sku(force=True)
        before = sim.quantity("SCS-MUG")
        self.assertFalse(binding._scs_unconfirmed_sends(), "a committed push")
        # what a job rolled back leaves of its push of before - 3, which
        # Shopify applied: the mark alone (written apart from the test's
        # transaction, as from the job's)
        with self.enter_registry_test_mode():
            binding._scs_mark_sent([(binding.id, before - 3)])
        self.assertEqual(binding._scs_unconfirmed_sends(), {binding.id: (before - 3,)})
        sim.set_level("SCS-MUG", before - 3)
        self.move_stock(self.product_a, -4)
        self.commit_point()
        self.discard_jobs()
        with self.enter_registry_test_mode():
            self.product_a._scs_job_push_sku()
        self.assertEqual(sim.quantity("SCS-MUG"), before - 4)
        # a level Odoo never sent is still units sold there, kept off sale
        self.assertEqual(
            self.shopify_push_after(sim, before - 6, 1, apart=True), before - 5
        )
        # a push that certainly did not land (503) is no level of Odoo's: a
        # sale there to that very number is a sale, kept off sale
        sim.down = True
        with self.enter_registry_test_mode():
            self.move_stock(self.product_a, -3)
            self.commit_point()
            self.discard_jobs()
            self.product_a._scs_job_push_sku()
        binding.invalidate_recordset()
        self.assertEqual(binding.push_state, "failed")
        self.assertFalse(binding._scs_unconfirmed_sends())
        sim.down = False
        sim.set_level("SCS-MUG", before - 6)
        with self.enter_registry_test_mode():
            self.product_a._scs_job_push_sku(force=True)
        self.assertEqual(sim.quantity("SCS-MUG"), before - 7)

    def woo_channel(self, sim):
        return self.channel_from_form(
            "woocommerce",
            base_url=sim.url,
            api_key=sim.consumer_key,
            api_secret=sim.consumer_secret,
        )

    def test_woocommerce(self):
        sim = self.start(WooCommerceSimulator())
        product_id = sim.add_product("SCS-MUG", quantity=0)
        channel = self.woo_channel(sim)
        binding = self.bind(channel, self.product_a, external_id=str(product_id))
        self.assert_test_connection_ok(channel)
        self.assert_stock_reaches(channel, binding, lambda: sim.quantity("SCS-MUG"))
        self.assertEqual(sim.batch_calls, 2)

    def test_woocommerce_variation(self):
        sim = self.start(WooCommerceSimulator())
        parent, (variation,) = sim.add_variable_product(
            "SCS-MUG-PARENT", [("SCS-MUG", 0)]
        )
        channel = self.woo_channel(sim)
        binding = self.bind(
            channel,
            self.product_a,
            external_id=str(parent),
            external_variant_id=str(variation),
        )
        self.assert_test_connection_ok(channel)
        self.assert_stock_reaches(channel, binding, lambda: sim.quantity("SCS-MUG"))

    def test_woocommerce_variation_without_a_level_is_not_read_from_a_sibling(self):
        """WooCommerce reports a variation's level under its parent too: a
        variation that keeps no level (it sells without one) must not be
        compared with a sibling's, which would hide its drift."""
        sim = self.start(WooCommerceSimulator())
        published = self.product_b.free_qty  # what Odoo publishes for the cap
        parent, (mug, cap) = sim.add_variable_product(
            "SCS-PARENT", [("SCS-MUG", published), ("SCS-CAP", published)]
        )
        sim.products[cap]["manage_stock"] = False
        sim.quantities.pop("SCS-CAP")
        channel = self.woo_channel(sim)
        bindings = self.bind(
            channel,
            self.product_a,
            external_id=str(parent),
            external_variant_id=str(mug),
        ) | self.bind(
            channel,
            self.product_b,
            external_id=str(parent),
            external_variant_id=str(cap),
        )
        channel._scs_job_reconcile_batch(bindings.ids, dry_run=True)
        drift = self.env["sync.event"].search(
            [("channel_id", "=", channel.id), ("kind", "=", "correction")]
        )
        self.assertEqual(
            drift.binding_id, bindings, "the mug's level differs; the cap has none"
        )
        self.assertIn(
            "channel has None", drift.filtered(lambda e: e.sku == "SCS-CAP").reason
        )

    def test_amazon(self):
        sim = self.start(AmazonSimulator())
        (row,) = sim.seed_skus(1, quantity=0)
        channel = self.channel_from_form("amazon", **sim.config_fields())
        self.assertEqual(channel.sudo().account_id, sim.seller_id)
        binding = self.bind(
            channel, self.product_a, sku=row["sku"], external_id=row["external_id"]
        )
        action = self.assert_test_connection_ok(channel)
        self.assertIn(sim.marketplace_id, action["params"]["message"])
        self.assert_stock_reaches(channel, binding, lambda: sim.quantity(row["sku"]))

    def test_settings_out_of_their_range_are_refused_when_saved(self):
        """A negative buffer, a share over 100 %, a timeout of 0: values
        that would do nothing or the opposite of what they say are refused
        with the field's name, not clamped out of sight."""
        channel = self.make_channel()
        binding = self.bind(channel, self.product_a)
        for record, field, wrong in (
            (channel, "buffer_qty", -5),
            (channel, "timeout", 0),
            (channel, "max_retries", -1),
            (channel, "reconcile_max_share", 150),
            (channel, "reconcile_batch_size", 0),
            (channel, "reconcile_interval", -1),
            (binding, "allocation_pct", 150),
            (binding, "allocation_pct", -1),
            (binding, "max_qty", -3),
            (binding, "buffer_qty", -1),
        ):
            label = record._fields[field].string
            with (
                self.subTest(field=field, value=wrong),
                self.assertRaisesRegex(ValidationError, re.escape(label)),
                self.env.cr.savepoint(),
            ):
                record.write({field: wrong})
                record.flush_recordset()
        # not a number is out of every range; a new record and an import
        # are checked as an edit is
        nan = float("nan")
        attempts = (
            (
                channel._fields["timeout"].string,
                lambda: channel.write({"timeout": nan}),
            ),
            (
                binding._fields["allocation_pct"].string,
                lambda: binding.write({"allocation_pct": nan}),
            ),
            (
                channel._fields["timeout"].string,
                lambda: self.make_channel(name="Created", timeout=-1),
            ),
            (
                channel._fields["reconcile_batch_size"].string,
                lambda: self.make_channel(name="Created", reconcile_batch_size=0),
            ),
            (
                binding._fields["allocation_pct"].string,
                lambda: self.bind(channel, self.product_b, allocation_pct=250),
            ),
        )
        for label, attempt in attempts:
            with (
                self.subTest(label=label),
                self.assertRaisesRegex(ValidationError, re.escape(label)),
                self.env.cr.savepoint(),
            ):
                attempt()
                self.env.flush_all()
        result = self.env["channel.binding"].load(
            ["channel_id/.id", "product_id/.id", "allocation_pct"],
            [[str(channel.id), str(self.product_b.id), "250"]],
        )
        self.assertFalse(result["ids"])
        self.assertIn(
            binding._fields["allocation_pct"].string,
            " ".join(m["message"] for m in result["messages"]),
        )
        self.assertFalse(
            self.env["channel.binding"].search(
                [
                    ("channel_id", "=", channel.id),
                    ("product_id", "=", self.product_b.id),
                ]
            )
        )
        # the bounds themselves are fine
        channel.write({"buffer_qty": 0, "reconcile_max_share": 100, "max_retries": 0})
        binding.write({"allocation_pct": 0, "max_qty": 0, "buffer_qty": 0})
        binding.flush_recordset()
        self.assertEqual(binding.published_qty, 0)
        # a value saved out of range before this check existed refuses no
        # edit of another setting; an edit of its own is checked
        self.env.cr.execute(
            "UPDATE sync_channel SET buffer_qty = -1 WHERE id = %s", (channel.id,)
        )
        self.env.cr.execute(
            "UPDATE channel_binding SET allocation_pct = 150 WHERE id = %s",
            (binding.id,),
        )
        self.env.invalidate_all()
        channel.write({"timeout": 20})
        binding.write({"max_qty": 5})
        self.env.flush_all()
        with self.assertRaises(ValidationError), self.env.cr.savepoint():
            channel.write({"buffer_qty": -2})
            channel.flush_recordset()

    def test_connection_test_names_what_pushes_lack(self):
        """A channel that answers but cannot push is no "Connection OK":
        Amazon without its seller or marketplace id (the listing's address
        names them), Shopify without a location for bindings that name
        none. A generic channel's read is not signed: the answer says the
        signing secret is checked on the first push."""
        amazon_sim = self.start(AmazonSimulator())
        (row,) = amazon_sim.seed_skus(1, quantity=0)
        amazon = self.channel_from_form("amazon", **amazon_sim.config_fields())
        self.bind(amazon, self.product_a, sku=row["sku"])
        self.assert_test_connection_ok(amazon)
        for blank in ("", " , ", ","):
            amazon.sudo().marketplace_id = blank
            with (
                self.subTest(marketplace_id=blank),
                self.assertRaisesRegex(UserError, "Marketplace ID"),
            ):
                amazon.action_test_connection()
        amazon.sudo().marketplace_id = amazon_sim.config_fields()["marketplace_id"]
        self.assert_test_connection_ok(amazon)
        amazon.sudo().account_id = False
        with self.assertRaisesRegex(UserError, "Seller ID"):
            amazon.action_test_connection()
        _sim, shopify, binding = self.shopify_channel()
        self.assert_test_connection_ok(shopify)
        shopify.sudo().external_location_id = False
        binding.external_location_id = False
        with self.assertRaisesRegex(UserError, "1 binding"):
            shopify.action_test_connection()
        binding.external_location_id = "gid://shopify/Location/1"
        self.assert_test_connection_ok(shopify)
        generic = self.make_channel(self.start_simulator())
        action = self.assert_test_connection_ok(generic)
        self.assertIn("signing secret", action["params"]["message"])

    def test_amazon_push_accepted_not_applied_yet_is_no_drift(self):
        """Amazon answers ACCEPTED and applies the quantity later: a pass
        that reads the level meanwhile sees the number pushed before. Lower
        than Odoo's (an increase not applied yet): no drift, nothing sent,
        no sale looked for. Higher (a decrease not applied yet, or a hand
        edit back to that number): sent again, a known cause that does not
        count against the safety limit, since the channel could sell units
        Odoo does not have. Any other level is drift as usual; and once
        Amazon had its time, the earlier number is drift too."""
        sim = self.start(AmazonSimulator())
        (row,) = sim.seed_skus(1, quantity=0)
        channel = self.channel_from_form("amazon", **sim.config_fields())
        binding = self.bind(channel, self.product_a, sku=row["sku"])
        self.assert_stock_reaches(channel, binding, lambda: sim.quantity(row["sku"]))
        self.assertEqual(binding.last_pushed_qty, 7)  # 11 before
        corrections = [("binding_id", "=", binding.id), ("kind", "=", "correction")]
        Event = self.env["sync.event"]

        def patches():
            return len(sim.requests_for("PATCH", "/listings/"))

        def searches():
            return len(sim.requests_for("GET", "/orders/"))

        # the decrease to 7 not applied yet: 11 shows, more than Odoo's
        sim.quantities[row["sku"]] = 11
        sent, searched = patches(), searches()
        channel._scs_job_reconcile_batch(binding.ids)
        resent = Event.search(corrections)
        self.assertEqual(resent.reason, "not_applied_yet")
        self.assertEqual(searches(), searched)
        self.run_jobs()
        self.assertEqual(patches(), sent + 1)
        self.assertEqual(sim.quantity(row["sku"]), 7)
        # an increase to 9 not applied yet: 7 shows, less than Odoo's
        self.move_stock(self.product_a, 2)
        self.commit_point()
        self.run_jobs()
        self.assertEqual(binding.last_pushed_qty, 9)
        sim.quantities[row["sku"]] = 7
        sent, searched = patches(), searches()
        drift_before = channel.last_reconcile_drift
        channel._scs_job_reconcile_batch(binding.ids)
        self.assertEqual(searches(), searched)
        self.assertEqual(Event.search_count(corrections), 1)
        self.run_jobs()
        self.assertEqual(patches(), sent)
        channel.invalidate_recordset(["last_reconcile_drift"])
        self.assertEqual(channel.last_reconcile_drift, drift_before)
        # a hand edit to 100 within that time: drift, corrected
        sim.quantities[row["sku"]] = 100
        channel._scs_job_reconcile_batch(binding.ids)
        edit = Event.search(corrections, order="id desc", limit=1)
        self.assertEqual(edit.reason, "channel_edit")
        self.run_jobs()
        self.assertEqual(sim.quantity(row["sku"]), 9)
        # a quarter of an hour after its last push, the earlier number: drift
        sim.quantities[row["sku"]] = 7
        binding.sudo().last_push_ts -= 901
        channel._scs_job_reconcile_batch(binding.ids)
        self.assertEqual(Event.search_count(corrections), 3)
        self.run_jobs()
        self.assertEqual(sim.quantity(row["sku"]), 9)

    def test_amazon_item_cancelled_alone_is_released(self):
        """Amazon cancels one item of an order and keeps the order open for
        the others: the next fetch of orders releases that item's units, so
        that every channel may sell them again, and keeps the rest."""
        sim = self.start(AmazonSimulator())
        row_a, row_b = sim.seed_skus(2, quantity=0)
        channel = self.channel_from_form("amazon", **sim.config_fields())
        self.bind(channel, self.product_a, sku=row_a["sku"])
        self.bind(channel, self.product_b, sku=row_b["sku"])
        order_id = sim.seed_order([(row_a["sku"], 2), (row_b["sku"], 3)])
        channel.sudo()._scs_fetch_orders()
        picking = self.env["stock.picking"].search(
            [
                ("scs_channel_id", "=", channel.id),
                ("scs_external_order_id", "=", order_id),
            ]
        )
        self.assertEqual(len(picking), 1)

        def reserved():
            return {
                move.product_id: move.quantity
                for move in picking.move_ids
                if move.state != "cancel"
            }

        self.assertEqual(reserved(), {self.product_a: 2, self.product_b: 3})
        sim.cancel_order_item(order_id, row_b["sku"])
        channel.sudo()._scs_fetch_orders()
        self.assertEqual(reserved().get(self.product_b, 0), 0)
        self.assertEqual(reserved()[self.product_a], 2)
        self.assertEqual(self.product_b.free_qty, 5)
        self.assertEqual(self.product_a.free_qty, 8)

    def test_amazon_skus_sharing_an_asin_stay_apart(self):
        """One ASIN carries several seller SKUs on Amazon (a used condition,
        a second offer): a line, a level and Match Listings go by the seller
        SKU, never by the ASIN, which would reserve the wrong product."""
        sim = self.start(AmazonSimulator())
        row_a, row_b = sim.seed_skus(2, quantity=4)
        # the second SKU is listed under the first one's ASIN
        sim.listings[row_b["sku"]]["asin"] = row_a["external_id"]
        channel = self.channel_from_form("amazon", **sim.config_fields())
        # as the demo binds a listing: its SKU and its ASIN
        binding_a = self.bind(
            channel, self.product_a, sku=row_a["sku"], external_id=row_a["external_id"]
        )
        binding_b = self.bind(channel, self.product_b, sku=row_b["sku"])
        order_id = sim.seed_order([(row_b["sku"], 2)])
        channel.sudo()._scs_fetch_orders()
        picking = self.env["stock.picking"].search(
            [
                ("scs_channel_id", "=", channel.id),
                ("scs_external_order_id", "=", order_id),
            ]
        )
        self.assertEqual(picking.move_ids.product_id, self.product_b)
        self.assertEqual(self.product_b.free_qty, 3)
        self.assertEqual(self.product_a.free_qty, 10)
        # each listing's level is its own SKU's
        sim.quantities[row_a["sku"]] = 1
        levels = list(channel._scs_adapter().read_quantities())
        seen = (binding_a | binding_b)._scs_levels_seen(levels)
        self.assertEqual(seen, {binding_a: 1, binding_b: 4})
        # Match Listings binds both SKUs of the ASIN
        self.env["product.product"].create(
            [
                {"name": "Used", "default_code": "AMZ-USED", "is_storable": True},
                {"name": "Refurb", "default_code": "AMZ-REFURB", "is_storable": True},
            ]
        )
        for sku in ("AMZ-USED", "AMZ-REFURB"):
            sim.listings[sku] = dict(sim.listings[row_a["sku"]])
            sim.quantities[sku] = 0
        channel.action_match_listings()
        matched = self.env["channel.binding"].search(
            [("channel_id", "=", channel.id), ("sku", "in", ["AMZ-USED", "AMZ-REFURB"])]
        )
        self.assertEqual(len(matched), 2)

    def test_amazon_backlog_past_the_burst_is_read_on(self):
        """More pages of orders than Amazon's burst allows: the orders read
        before the 429 are kept (reserved), the page it stopped at is kept,
        and the next fetch goes on from there instead of from page 1 (which
        would stop at the same page for ever); then the window closes."""
        sim = self.start(AmazonSimulator())
        (row,) = sim.seed_skus(1, quantity=0)
        channel = self.channel_from_form("amazon", **sim.config_fields())
        self.bind(channel, self.product_a, sku=row["sku"])
        ids = [sim.seed_order([(row["sku"], 1)]) for _i in range(5)]
        # pages of 2, a burst of 2 pages and no refill: 4 orders, then a 429
        sim.buckets["searchOrders"] = RateBucket(0.0, 2, time.monotonic)
        Channel = self.env["sync.channel"]
        Channel.search([("id", "!=", channel.id)]).order_poll_interval = 0

        def reserved():
            return self.env["stock.picking"].search_count(
                [
                    ("scs_channel_id", "=", channel.id),
                    ("scs_external_order_id", "in", ids),
                ]
            )

        with patch.object(amazon_adapter, "ORDERS_PAGE_SIZE", 2):
            self.assertEqual(Channel._scs_cron_poll_orders(), channel)
            self.run_jobs("_scs_job_poll_orders")
            self.assertEqual(reserved(), 4)
            self.assertFalse(channel.last_order_fetch_at, "the window is open")
            self.assertTrue(channel.order_fetch_resume)
            self.assertIn("4 order(s) read", channel.last_reconcile_error)
            # progress at the channel's rate, not a failure to alert of
            self.assertFalse(channel._scs_has_activity("Orders not polled"))
            pages = len(sim.requests_for("GET", "/orders/2026-01-01/orders"))
            # the channel allows one more page: the fetch goes on from page 3
            sim.buckets["searchOrders"] = RateBucket(0.0, 1, time.monotonic)
            channel.last_order_poll_at = False
            self.assertEqual(Channel._scs_cron_poll_orders(), channel)
            self.run_jobs("_scs_job_poll_orders")
        self.assertEqual(
            len(sim.requests_for("GET", "/orders/2026-01-01/orders")), pages + 1
        )
        self.assertEqual(reserved(), 5)
        self.assertTrue(channel.last_order_fetch_at, "the window is read")
        self.assertFalse(channel.order_fetch_resume)
        self.assertFalse(channel.last_reconcile_error)
        # a 503 on a later page is no rate limit: the poll is retried (as
        # any failed fetch), nothing is kept half-read
        route = next(r for r in sim._routes if r[3] == "searchOrders")
        failed = []

        def flaky(req):
            if req.query.get("paginationToken") and not failed:
                failed.append(req)
                return Response(503, {"errors": [{"code": "ServiceUnavailable"}]})
            return route[2](req)

        sim._routes[sim._routes.index(route)] = (*route[:2], flaky, route[3])
        sim.buckets["searchOrders"] = RateBucket(0.0, 10, time.monotonic)
        fetched_at = channel.last_order_fetch_at
        with (
            patch.object(amazon_adapter, "ORDERS_PAGE_SIZE", 2),
            self.assertRaises(RetryableJobError),
        ):
            channel._scs_job_poll_orders()
        self.assertEqual(len(failed), 1)
        self.assertFalse(channel.order_fetch_resume)
        self.assertEqual(channel.last_order_fetch_at, fetched_at)
        sim._routes[sim._routes.index((*route[:2], flaky, route[3]))] = route
        # a page token Amazon no longer takes (expired): said, dropped, and
        # the next fetch reads its window again from the start
        order_id = sim.seed_order([(row["sku"], 1)])
        sim.buckets["searchOrders"] = RateBucket(0.0, 5, time.monotonic)
        channel.last_order_fetch_at = fields.Datetime.subtract(
            fields.Datetime.now(), minutes=10
        )
        channel.sudo().order_fetch_resume = json.dumps(
            {
                "token": "expired",
                "since": fields.Datetime.to_string(channel.last_order_fetch_at),
                "until": fields.Datetime.to_string(fields.Datetime.now()),
            }
        )
        channel.last_order_poll_at = False
        self.assertEqual(Channel._scs_cron_poll_orders(), channel)
        self.run_jobs("_scs_job_poll_orders")
        self.assertIn("paginationToken", channel.last_reconcile_error)
        self.assertFalse(channel.order_fetch_resume)
        channel.last_order_poll_at = channel.last_order_fetch_at = (
            fields.Datetime.subtract(fields.Datetime.now(), minutes=10)
        )
        self.assertEqual(Channel._scs_cron_poll_orders(), channel)
        self.run_jobs("_scs_job_poll_orders")
        ids.append(order_id)
        self.assertEqual(reserved(), 6)
        self.assertFalse(channel.last_reconcile_error)

    def test_amazon_orders_are_polled_between_passes(self):
        """Amazon sends this module no webhook: the minute cron polls its
        orders (every 4 minutes by default for Amazon, 2 for eBay), so a
        sale there is reserved, and pushed to the other channels, within
        minutes instead of at the next pass. One job per channel waits; a
        channel polled recently, or whose pass is reading the orders, is
        not polled; while the pass's batches compare (a retry may wait
        minutes), it is."""
        sim = self.start(AmazonSimulator())
        (row,) = sim.seed_skus(1, quantity=0)
        channel = self.channel_from_form("amazon", **sim.config_fields())
        self.assertEqual(channel.order_poll_interval, 4)
        self.assertEqual(self.make_channel().order_poll_interval, 0, "webhooks")
        self.bind(channel, self.product_a, sku=row["sku"])
        other_sim = self.start(GenericSimulator())
        other = self.make_channel(other_sim)
        self.bind(other, self.product_a)
        self.product_a._scs_job_push_sku(force=True)
        self.assertEqual(other_sim.quantity("SCS-MUG"), 10)
        order_id = sim.seed_order([(row["sku"], 3)])
        Channel = self.env["sync.channel"]
        # the other channels of the database are not this test's
        Channel.search([("id", "!=", channel.id)]).order_poll_interval = 0
        self.assertEqual(Channel._scs_cron_poll_orders(), channel)
        Channel._scs_cron_poll_orders()
        self.assertEqual(len(self.sync_jobs("_scs_job_poll_orders")), 1)
        self.run_jobs()
        picking = self.env["stock.picking"].search(
            [
                ("scs_channel_id", "=", channel.id),
                ("scs_external_order_id", "=", order_id),
            ]
        )
        self.assertEqual(picking.move_ids.quantity, 3)
        self.assertEqual(other_sim.quantity("SCS-MUG"), 7)
        # polled a moment ago: not due
        self.assertFalse(Channel._scs_cron_poll_orders())
        self.assertFalse(self.sync_jobs("_scs_job_poll_orders"))
        channel.last_order_fetch_at = channel.last_order_poll_at = False
        for off in (
            {"reconcile_dry_run": True},
            {"reconcile_interval": 0},
            {"order_poll_interval": 0},
        ):
            with self.subTest(off=off):
                channel.write(off)
                self.assertFalse(Channel._scs_cron_poll_orders())
                channel.write(
                    {
                        "reconcile_dry_run": False,
                        "reconcile_interval": 1,
                        "order_poll_interval": 4,
                    }
                )
        channel._scs_start_reconcile()
        self.assertFalse(Channel._scs_cron_poll_orders(), "the pass reads them")
        self.run_jobs("_scs_job_reconcile_start")
        batches = self.sync_jobs("_scs_job_reconcile_batch")
        self.assertTrue(batches)
        channel.last_order_fetch_at = channel.last_order_poll_at = False
        # a batch reading the levels holds no poll: the batches of a long
        # pass run one after the other, and a sale must not wait for them
        batches[:1].state = "started"
        self.assertEqual(Channel._scs_cron_poll_orders(), channel)
        self.discard_jobs()
        channel.last_order_fetch_at = channel.last_order_poll_at = False
        # refused for good: shown on the channel, with an activity, and not
        # asked again before the interval; read again, the error is over
        sim.client_secret = "rotated"
        sim.expire_tokens()
        self.assertEqual(Channel._scs_cron_poll_orders(), channel)
        self.run_jobs("_scs_job_poll_orders")
        self.assertIn("could not be read", channel.last_reconcile_error)
        self.assertTrue(channel._scs_has_activity("Orders not polled"))
        self.assertFalse(Channel._scs_cron_poll_orders(), "not every minute")
        sim.client_secret = channel.sudo().api_secret
        channel.last_order_poll_at = False
        self.assertEqual(Channel._scs_cron_poll_orders(), channel)
        self.run_jobs("_scs_job_poll_orders")
        self.assertFalse(channel.last_reconcile_error)
        self.assertFalse(channel._scs_has_activity("Orders not polled"), "over")

    def test_ebay(self):
        sim = self.start(EbaySimulator())
        (row,) = sim.seed_skus(1, quantity=0)
        channel = self.channel_from_form("ebay", **sim.config_fields())
        binding = self.bind_listing(channel, self.product_a, row)
        self.assert_test_connection_ok(channel)
        self.assert_stock_reaches(channel, binding, lambda: sim.quantity(row["sku"]))
        # the offer's quantity too: eBay lists min(offer, ship-to-home)
        self.assertEqual(sim.offer_quantity(row["external_variant_id"]), 7)

    def test_ebay_offer_lowered_on_its_own_is_drift(self):
        """eBay lists the lower of the item's and the offer's quantity: an
        offer edited on its own (Seller Hub, another tool) hides units while
        the item still shows Odoo's number. The reconciliation pass sees
        what buyers see and puts Odoo's number back on both."""
        sim = self.start(EbaySimulator())
        (row,) = sim.seed_skus(1, quantity=0)
        channel = self.channel_from_form("ebay", **sim.config_fields())
        binding = self.bind_listing(channel, self.product_a, row)
        self.assert_stock_reaches(channel, binding, lambda: sim.quantity(row["sku"]))
        offer = row["external_variant_id"]
        self.assertEqual(sim.offer_quantity(offer), 7)
        sim.offers[offer]["availableQuantity"] = 0
        channel._scs_job_reconcile_batch(binding.ids)
        drift = self.env["sync.event"].search(
            [("binding_id", "=", binding.id), ("kind", "=", "correction")]
        )
        self.assertEqual(len(drift), 1)
        self.assertEqual(drift.reason, "channel_edit")
        self.run_jobs()
        self.assertEqual(sim.offer_quantity(offer), 7)
        self.assertEqual(sim.quantity(row["sku"]), 7)
        # an offer above the item's quantity hides nothing: no drift
        sim.offers[offer]["availableQuantity"] = 50
        channel._scs_job_reconcile_batch(binding.ids)
        self.assertEqual(
            self.env["sync.event"].search_count(
                [("binding_id", "=", binding.id), ("kind", "=", "correction")]
            ),
            1,
        )

    def test_ebay_revisions_are_counted_from_the_event_log(self):
        """eBay locks a listing revised 250 times in a day. Revisions sent by
        other workers, or before a restart, are in the event log, those of
        the listing's other variants included: with 240 of them today an
        increase is held (the last 10 are kept for decreases), and a
        decrease still goes."""
        sim = self.start(EbaySimulator())
        row, other = sim.seed_skus(2, quantity=5)
        channel = self.channel_from_form("ebay", **sim.config_fields())
        binding = self.bind_listing(channel, self.product_a, row)
        # a variant of the same listing: its revisions are the listing's
        sibling = self.bind_listing(
            channel, self.product_b, other, external_id=row["external_id"]
        )
        now = time.time()
        self.env["sync.event"].create(
            [
                {
                    "direction": "out",
                    "channel_id": channel.id,
                    "binding_id": sibling.id,
                    "kind": "push",
                    "idempotency_key": f"earlier-{index}",
                    "sku": binding.sku,
                    "quantity": 5,
                    "state": "applied",
                    "ack_ts": now - 7200 + index,
                }
                for index in range(240)
            ]
        )
        binding.sudo().write(
            {
                "push_state": "ok",
                "last_pushed_qty": 5,
                "last_seen_qty": 5,
                "last_seen_at": fields.Datetime.now(),
            }
        )
        self.move_stock(self.product_a, 3)  # 13 on hand, buffer 2: 11
        self.commit_point()
        self.run_jobs("_scs_job_push_sku")
        self.assertEqual(sim.quantity(row["sku"]), 5, "the increase is held")
        held = self.env["sync.event"].search(
            [("binding_id", "=", binding.id), ("quantity", "=", 11)]
        )
        self.assertEqual(held.state, "failed")
        self.assertIn("240 revisions in 24 h", held.error)
        self.discard_jobs()
        self.move_stock(self.product_a, -10)  # 3 on hand, buffer 2: 1
        self.commit_point()
        self.run_jobs("_scs_job_push_sku")
        self.assertEqual(sim.quantity(row["sku"]), 1, "a decrease goes")

    def test_adapter_options(self):
        """eBay's documents disagree on the SKUs a bulk call takes: a seller
        whose calls are refused sets one per call on the channel, and the
        adapter of every worker takes it. Options the adapter cannot take
        are refused when saved."""
        sim = self.start(EbaySimulator())
        rows = sim.seed_skus(2, quantity=0)
        channel = self.channel_from_form("ebay", **sim.config_fields())
        bindings = self.env["channel.binding"]
        for row, product in zip(rows, (self.product_a, self.product_b), strict=True):
            bindings |= self.bind_listing(channel, product, row)
        self.assertEqual(channel._scs_adapter().max_batch, 25)
        with Form(channel.with_user(self.manager)) as form:
            form.adapter_options = '{"max_batch": 1}'
        self.assertEqual(channel._scs_adapter().max_batch, 1)
        channel.with_user(self.manager).action_push_all()
        self.run_jobs("_scs_job_push_batch")
        calls = sim.requests_for(
            "POST", "/sell/inventory/v1/bulk_update_price_quantity"
        )
        self.assertEqual([len(c.json()["requests"]) for c in calls], [1, 1])
        self.assertEqual(sim.quantity(rows[0]["sku"]), self.expected_quantity())
        for wrong in (
            '{"max_batch": "many"}',
            "[1]",
            "{max_batch: 1}",
            '{"max_batch": 0}',
            '{"revision_limit": 0}',
            '{"revision_limit": 10, "revision_reserve": 20}',
            '{"product_types": 5}',
            '{"page_size": -5}',
            '{"token_margin": 1e400}',
            '{"max_bacth": 1}',
            '{"max_batch": 26}',
            "[" * 100000 + "]" * 100000,
        ):
            with self.assertRaises(ValidationError):
                channel.adapter_options = wrong
                channel.flush_recordset()
        # an option of another adapter is refused, naming the type's own
        generic = self.make_channel()
        with self.assertRaisesRegex(ValidationError, "not an option of generic"):
            generic.adapter_options = '{"fulfillment_channel_code": "DEFAULT"}'
            generic.flush_recordset()
        woo = self.make_channel(channel_type="woocommerce", name="Woo options")
        with self.assertRaisesRegex(ValidationError, "true or false"):
            woo.adapter_options = '{"query_string_auth": "yes"}'
            woo.flush_recordset()
        woo.adapter_options = '{"query_string_auth": true}'
        woo.flush_recordset()
        self.assertTrue(woo._scs_adapter().query_string_auth)
        # Amazon's client-side limits: [rate > 0, burst >= 1] of a known
        # operation, or null; else every push would fail on them
        amazon = self.make_channel(channel_type="amazon", name="Amazon options")
        for wrong in (
            '{"rate_limits": {"patchListingsItem": [0, 0]}}',
            '{"rate_limits": {"patchListingsItem": [-1, 5]}}',
            '{"rate_limits": {"patchListingsItem": [5]}}',
            '{"rate_limits": {"patchListingsItem": "y"}}',
            '{"rate_limits": {"patchListingsItem": [5, true]}}',
            '{"rate_limits": {"patchListingItem": [5, 5]}}',
        ):
            with (
                self.subTest(options=wrong),
                self.assertRaisesRegex(ValidationError, "rate_limits"),
            ):
                amazon.adapter_options = wrong
                amazon.flush_recordset()
        amazon.adapter_options = (
            '{"rate_limits": {"patchListingsItem": [2.5, 1], "createFeed": null}}'
        )
        amazon.flush_recordset()
        buckets = amazon._scs_adapter().buckets
        self.assertEqual(buckets["patchListingsItem"].rate, 2.5)
        self.assertNotIn("createFeed", buckets)

    def test_ebay_listings_matched_with_their_offers(self):
        """Match Listings reads each new binding's offers: the push then sets
        the offer's quantity too (eBay lists the lower of the two)."""
        sim = self.start(EbaySimulator())
        (row,) = sim.seed_skus(1, quantity=0)
        # the listing of this product's SKU
        sim.items["SCS-MUG"] = sim.items.pop(row["sku"])
        sim.quantities["SCS-MUG"] = sim.quantities.pop(row["sku"])
        sim.offers[row["external_variant_id"]]["sku"] = "SCS-MUG"
        channel = self.channel_from_form("ebay", **sim.config_fields())
        channel.action_match_listings()
        binding = self.env["channel.binding"].search([("channel_id", "=", channel.id)])
        self.assertEqual(binding.product_id, self.product_a)
        # the offers are read in a job, one call per binding, not in the request
        self.assertFalse(binding.external_variant_id)
        self.assertEqual(self.run_jobs("_scs_job_complete_listings"), 1)
        self.assertEqual(binding.external_variant_id, row["external_variant_id"])
        self.assertEqual(binding.external_id, row["external_id"])
        self.discard_jobs()
        self.assert_stock_reaches(channel, binding, lambda: sim.quantity("SCS-MUG"))
        self.assertEqual(sim.offer_quantity(row["external_variant_id"]), 7)

    def test_ebay_binding_entered_by_hand_gets_its_offers(self):
        """A binding entered by hand with the SKU alone, or given another SKU
        later, has its offer ids read in a job, as Match Listings does."""
        sim = self.start(EbaySimulator())
        first, second = sim.seed_skus(2, quantity=0)
        channel = self.channel_from_form("ebay", **sim.config_fields())
        binding = self.env["channel.binding"].create(
            {
                "channel_id": channel.id,
                "product_id": self.product_a.id,
                "sku": first["sku"],
            }
        )
        self.assertFalse(binding.external_variant_id)
        self.assertEqual(self.run_jobs("_scs_job_complete_listings"), 1)
        self.assertEqual(binding.external_variant_id, first["external_variant_id"])
        self.assertEqual(binding.external_id, first["external_id"])
        # another listing: its own offers, not the old ones
        binding.write(
            {"sku": second["sku"], "external_id": False, "external_variant_id": False}
        )
        self.assertEqual(self.run_jobs("_scs_job_complete_listings"), 1)
        self.assertEqual(binding.external_variant_id, second["external_variant_id"])
        self.discard_jobs()
        self.assert_stock_reaches(channel, binding, lambda: sim.quantity(second["sku"]))
        self.assertEqual(sim.offer_quantity(second["external_variant_id"]), 7)
        # a channel that gives every id with its catalogue needs no such job
        generic = self.start(GenericSimulator())
        other = self.channel_from_form(
            "generic", base_url=generic.endpoint, signing_secret=generic.secret
        )
        self.env["channel.binding"].create(
            {"channel_id": other.id, "product_id": self.product_b.id, "sku": "SCS-B"}
        )
        self.assertEqual(self.run_jobs("_scs_job_complete_listings"), 0)

    def test_ebay_listings_completed_beside_a_binding_the_rules_refuse(self):
        """Two variants bound to one eBay SKU before the rules refused it:
        reading the listing ids names that binding and completes the others,
        instead of failing all of them on it, again at each retry."""
        sim = self.start(EbaySimulator())
        first, second = sim.seed_skus(2, quantity=0)
        channel = self.channel_from_form("ebay", **sim.config_fields())
        Binding = self.env["channel.binding"]
        good = Binding.create(
            {
                "channel_id": channel.id,
                "product_id": self.product_a.id,
                "sku": second["sku"],
            }
        )
        twin = Binding.create(
            {
                "channel_id": channel.id,
                "product_id": self.product_b.id,
                "sku": "SCS-TWIN",
            }
        )
        # as bound before the rules: the first SKU twice, one with its own id
        self.env.flush_all()
        self.env.cr.execute(
            "UPDATE channel_binding SET sku = %s, external_id = 'old' WHERE id = %s",
            (first["sku"], twin.id),
        )
        legacy = Binding.create(
            {
                "channel_id": channel.id,
                "product_id": self.env["product.product"]
                .create({"name": "Legacy", "is_storable": True})
                .id,
                "sku": "SCS-LEGACY",
            }
        )
        self.env.cr.execute(
            "UPDATE channel_binding SET sku = %s WHERE id = %s",
            (first["sku"], legacy.id),
        )
        Binding.invalidate_model()
        self.discard_jobs()
        (good | twin | legacy).with_delay()._scs_job_complete_listings()
        self.run_jobs("_scs_job_complete_listings")
        self.assertEqual(good.external_variant_id, second["external_variant_id"])
        self.assertFalse(any((twin | legacy).mapped("external_variant_id")))
        notes = self.env["mail.activity"].search(
            [("res_model", "=", "sync.channel"), ("res_id", "=", channel.id)]
        )
        self.assertTrue(
            any("could not be kept" in str(note.note) for note in notes), notes
        )

    def test_webhook_url_is_shown_once_the_channel_is_saved(self):
        """The form of a new channel shows no URL: its token is drawn again
        when the channel is created, so a URL copied before saving would be
        a dead link in the marketplace."""
        form = Form(self.env["sync.channel"].with_user(self.manager))
        form.name = "Webhook URL"
        form.channel_type = "shopify"
        self.assertFalse(form.webhook_url)
        channel = form.save()
        self.assertTrue(channel.webhook_token)
        self.assertTrue(
            channel.webhook_url.endswith(
                f"/stock_channel_sync/webhook/{channel.webhook_token}"
            )
        )
        form = Form(channel.with_user(self.manager))
        self.assertEqual(form.webhook_url, channel.webhook_url)

    # -- wrong credentials --------------------------------------------------------
    def test_wrong_credentials(self):
        """Test connection refuses, with what the channel answered."""
        generic = self.start(GenericSimulator(api_key="read-key"))
        shopify = self.start(ShopifySimulator())
        woo = self.start(WooCommerceSimulator())
        amazon = self.start(AmazonSimulator())
        ebay = self.start(EbaySimulator())
        cases = [
            (
                "generic",
                # the form hides api_key for generic channels: no read key sent
                {"base_url": generic.endpoint, "signing_secret": generic.secret},
                "invalid API key",
            ),
            (
                "shopify",
                {
                    "base_url": shopify.url,
                    "access_token": "shpat_wrong",
                    "location_id": shopify.location_id,
                },
                "Invalid API key or access token",
            ),
            (
                "woocommerce",
                {
                    "base_url": woo.url,
                    "api_key": woo.consumer_key,
                    "api_secret": "cs_wrong",
                },
                "Consumer secret is invalid.",
            ),
            (
                "amazon",
                {**amazon.config_fields(), "refresh_token": "Atzr|wrong"},
                "invalid_grant",
            ),
            (
                "ebay",
                {**ebay.config_fields(), "api_secret": "PRD-wrong"},
                "invalid_client",
            ),
        ]
        for channel_type, config, message in cases:
            with self.subTest(channel_type=channel_type):
                channel = self.channel_from_form(channel_type, **config)
                self.assert_test_connection_refused(channel, message)
        # the generic read key is accepted when set on the record
        generic_channel = self.env["sync.channel"].search(
            [("channel_type", "=", "generic"), ("name", "=", "Simulated generic")],
            order="id desc",
            limit=1,
        )
        generic_channel.sudo().api_key = "read-key"
        self.assert_test_connection_ok(generic_channel)

    def test_unreachable_channel(self):
        """A channel that does not answer fails Test connection, not a traceback."""
        sim = self.start(WooCommerceSimulator())
        channel = self.woo_channel(sim)
        sim.down = True
        with self.assertRaises(UserError) as caught:
            channel.action_test_connection()
        self.assertIn("Connection failed", str(caught.exception))
