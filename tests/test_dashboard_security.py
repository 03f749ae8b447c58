# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Dashboard figures against a direct count, target alerts, and security."""

import time
from datetime import timedelta

from lxml import etree

from odoo import fields
from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.tests import new_test_user, tagged
from odoo.tools import SQL
from odoo.tools.safe_eval import safe_eval

from odoo.addons.queue_job.tests.common import trap_jobs

from .common import SyncCase


@tagged("post_install", "-at_install")
class TestDashboard(SyncCase):
    def _event(self, channel, key, **vals):
        return self.env["sync.event"].create(
            {
                "direction": "out",
                "channel_id": channel.id,
                "kind": "push",
                "idempotency_key": key,
                "state": "applied",
                "change_ts": time.time(),
                **vals,
            }
        )

    def test_figures_match_a_direct_count(self):
        one = self.make_channel(name="One")
        two = self.make_channel(name="Two")
        latencies = [120.0, 80.0, 4000.0, 300.0, 9000.0, 50.0]
        for i, ms in enumerate(latencies):
            self._event(one, f"p{i}", latency_ms=ms)
        self._event(one, "dead-1", state="dead")
        self._event(one, "failed-1", state="failed")
        self._event(two, "two-1", latency_ms=10.0)
        # four order events, three orders: C came twice (created, paid)
        for i, ref in enumerate("ABCC"):
            self._event(one, f"o{i}", direction="in", kind="order", external_ref=ref)
        self._event(one, "os1", direction="in", kind="oversell", state="attention")
        # a dead letter discarded by hand is still a failure; a discarded
        # incident (needs attention) counts as neither
        self._event(one, "dead-2", state="dead")._scs_discard("given up")
        self._event(
            one, "unk", direction="in", kind="unknown_sku", state="attention"
        )._scs_discard("not ours")
        Pass = self.env["sync.reconcile.pass"]
        now = fields.Datetime.now()
        for finished, checked, drift, dry in (
            (now, 200, 3, False),
            (now, 100, 50, True),  # a dry run: not counted
            (now - timedelta(days=3), 10, 10, False),  # outside the last day
        ):
            Pass.create(
                {
                    "channel_id": one.id,
                    "finished_at": finished,
                    "checked": checked,
                    "drift": drift,
                    "dry_run": dry,
                }
            )
        board = self.env["sync.dashboard"].create({"period": "1", "channel_id": one.id})
        Event = self.env["sync.event"]
        domain = [("channel_id", "=", one.id)]
        applied_out = Event.search(
            domain + [("direction", "=", "out"), ("state", "=", "applied")]
        )
        values = sorted(v for v in applied_out.mapped("latency_ms") if v > 0)
        self.assertEqual(board.pushes, len(applied_out))
        # percentile_cont(0.5) of an even count is the mean of the middle two
        mid = len(values) // 2
        self.assertAlmostEqual(
            board.latency_p50_ms, (values[mid - 1] + values[mid]) / 2
        )
        self.env.cr.execute(
            SQL(
                "SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY v)"
                " FROM unnest(%s::float[]) v",
                values,
            )
        )
        self.assertAlmostEqual(board.latency_p95_ms, self.env.cr.fetchone()[0])
        self.assertGreater(board.latency_p95_ms, 5000)
        self.assertFalse(board.latency_ok)
        good = Event.search_count(
            domain + [("state", "in", ("applied", "duplicate", "stale", "skipped"))]
        )
        bad = Event.search_count(
            domain
            + [
                "|",
                ("state", "in", ("dead", "failed")),
                "&",
                ("state", "=", "discarded"),
                ("discarded_from", "in", ("dead", "failed")),
            ]
        )
        self.assertEqual(bad, 3)
        self.assertEqual(board.events_failed, bad)
        self.assertAlmostEqual(board.success_rate, 100.0 * good / (good + bad))
        self.assertEqual(board.dead_letters, 1)
        orders = Event.search(domain + [("kind", "=", "order")])
        self.assertEqual(board.orders, len(set(orders.mapped("external_ref"))))
        self.assertEqual(board.orders, 3)
        self.assertEqual(board.oversells, 1)
        self.assertAlmostEqual(board.oversell_rate, 100.0 / 3)
        self.assertAlmostEqual(board.correction_rate, 1.5)
        self.assertEqual((board.bindings_checked, board.corrections), (200, 3))
        self.assertFalse(board.correction_ok)
        week = self.env["sync.dashboard"].create({"period": "7", "channel_id": one.id})
        self.assertAlmostEqual(week.correction_rate, 100.0 * 13 / 210)
        # overall: both channels
        overall = self.env["sync.dashboard"].create({"period": "1"})
        self.assertEqual(overall.pushes, board.pushes + 1)

    def test_breach_raises_one_activity(self):
        channel = self.make_channel(name="Slow")
        for i in range(5):
            self._event(channel, f"slow{i}", latency_ms=8000.0)
        Dashboard = self.env["sync.dashboard"]
        breaches = Dashboard._scs_cron_check_targets()
        self.assertTrue(any(b[0] == channel for b in breaches))
        Dashboard._scs_cron_check_targets()
        activities = self.env["mail.activity"].search(
            [("res_model", "=", "sync.channel"), ("res_id", "=", channel.id)]
        )
        self.assertEqual(len(activities), 1, "one open activity per breach")


@tagged("post_install", "-at_install")
class TestSecurity(SyncCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.channel = cls.env["sync.channel"].create(
            {
                "name": "Secret shop",
                "channel_type": "generic",
                "api_secret": "top-secret",
                "webhook_secret": "whsec_c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=",
            }
        )
        cls.binding = cls.env["channel.binding"].create(
            {"channel_id": cls.channel.id, "product_id": cls.product_a.id}
        )
        cls.user = new_test_user(
            cls.env,
            login="scs_user",
            groups="base.group_user,stock_channel_sync.group_sync_user",
        )
        cls.manager = new_test_user(
            cls.env,
            login="scs_manager",
            groups="base.group_user,stock_channel_sync.group_sync_manager",
        )
        cls.portal = new_test_user(
            cls.env, login="scs_portal", groups="base.group_portal"
        )
        cls.other_company = cls.env["res.company"].create({"name": "Other Co"})
        cls.other = new_test_user(
            cls.env,
            login="scs_other",
            groups="base.group_user,stock_channel_sync.group_sync_manager",
            company_id=cls.other_company.id,
            company_ids=[(6, 0, cls.other_company.ids)],
        )

    def test_user_reads_manager_configures(self):
        channel = self.channel.with_user(self.user)
        self.assertEqual(channel.name, "Secret shop")
        with self.assertRaises(AccessError):
            channel.write({"name": "x"})
        with self.assertRaises(AccessError):
            self.binding.with_user(self.user).write({"buffer_qty": 3})
        with self.assertRaises(AccessError):
            self.assertFalse(channel.api_secret)
        self.channel.with_user(self.manager).write({"buffer_qty": 2})
        self.assertEqual(self.channel.with_user(self.manager).api_secret, "top-secret")

    def test_what_the_channel_sent_is_for_managers(self):
        """An order as the channel sent it carries the customer's name and
        address: sync users read the event log (states, SKUs, errors), the
        body and the normalised order are for sync managers."""
        event = self.env["sync.event"].create(
            {
                "direction": "in",
                "channel_id": self.channel.id,
                "kind": "order",
                "idempotency_key": "pii-1",
                "state": "applied",
                "payload": '{"customer": {"name": "Jane Buyer"}}',
                "data": '{"order": {"lines": [{"sku": "SCS-MUG-XL"}],'
                ' "raw": {"customer": "Jane Buyer"}}}',
            }
        )
        as_user = event.with_user(self.user)
        self.assertEqual(as_user.read(["state", "kind"])[0]["state"], "applied")
        for name in ("payload", "data"):
            with self.assertRaises(AccessError):
                as_user.read([name])
        fields_seen = as_user.fields_get()
        self.assertNotIn("payload", fields_seen)
        arch = as_user.get_views([(False, "form")])["views"]["form"]["arch"]
        self.assertNotIn("payload", arch)
        # the log's SKU search still finds an order by its lines' SKUs
        search_view = as_user.get_views([(False, "search")])["views"]["search"]
        self.assertNotIn("'data'", search_view["arch"])
        found = (
            self.env["sync.event"]
            .with_user(self.user)
            .search(["|", ("sku", "ilike", "MUG-XL"), ("line_skus", "ilike", "MUG-XL")])
        )
        self.assertEqual(found, event)
        # and only by them: the customer never answers a search
        for probe in ("Jane", "Buyer", "customer", "raw"):
            self.assertFalse(
                self.env["sync.event"]
                .with_user(self.user)
                .search([("line_skus", "ilike", probe)]),
                probe,
            )
        as_manager = event.with_user(self.manager)
        self.assertIn("Jane Buyer", as_manager.payload)
        self.assertIn("Jane Buyer", as_manager.data)

    def test_responsible_is_an_internal_sync_user_of_the_channels_company(self):
        """The responsible user gets the channel's alerts, errors included:
        one of another company, a portal user or a user without the sync
        rights is refused, also when written over RPC (the form only
        narrows the choice)."""
        no_sync = new_test_user(self.env, login="scs_no_sync", groups="base.group_user")
        for wrong in (self.other, self.portal, no_sync):
            with self.assertRaises(ValidationError), self.env.cr.savepoint():
                self.channel.with_user(self.manager).write({"user_id": wrong.id})
        theirs = (
            self.env["sync.channel"]
            .with_user(self.other)
            .create({"name": "Their shop", "channel_type": "generic"})
        )
        self.assertEqual(theirs.user_id, self.other, "the creator by default")
        with self.assertRaises(ValidationError), self.env.cr.savepoint():
            theirs.write({"user_id": self.manager.id})
        archived = new_test_user(
            self.env,
            login="scs_archived",
            groups="base.group_user,stock_channel_sync.group_sync_user",
        )
        archived.active = False
        with self.assertRaises(ValidationError), self.env.cr.savepoint():
            self.channel.with_user(self.manager).write({"user_id": archived.id})
        self.channel.with_user(self.manager).write({"user_id": self.user.id})
        self.assertEqual(self.channel.user_id, self.user)
        # the responsible user loses the sync rights later: alerts go to the
        # administrator, not to someone who cannot open the channel
        self.user.group_ids -= self.env.ref("stock_channel_sync.group_sync_user")
        self.channel._scs_notify("Check me", "note", key="check")
        alert = self.env["mail.activity"].search(
            [
                ("res_model", "=", "sync.channel"),
                ("res_id", "=", self.channel.id),
                ("summary", "=", "Check me"),
            ]
        )
        self.assertEqual(alert.user_id, self.env.ref("base.user_admin"))

    def test_stock_users_without_sync_rights_read_whole_records(self):
        """A read with no field list (what external API clients do) of the
        records the module extends works for users with no Channel Sync
        group, as it does without the module."""
        picking = self.env["stock.picking"].create(
            {
                "picking_type_id": self.env.ref("stock.picking_type_out").id,
                "scs_channel_id": self.channel.id,
                "scs_external_order_id": "EXT-1",
            }
        )
        quant = self.env["stock.quant"].search(
            [("product_id", "=", self.product_a.id)], limit=1
        )
        self.assertTrue(quant)
        for groups in ("stock.group_stock_user", "stock.group_stock_manager"):
            user = new_test_user(
                self.env, login=f"scs_{groups.split('.')[1]}", groups=groups
            )
            for record in (
                self.product_a,
                self.product_a.product_tmpl_id,
                picking,
                quant,
                self.stock,
            ):
                with self.subTest(groups=groups, model=record._name):
                    values = record.with_user(user).read()
                    self.assertEqual(values[0]["id"], record.id)
            self.assertNotIn(
                "channel_binding_ids",
                list(
                    self.env["product.product"]
                    .with_user(user)
                    .fields_get(attributes=["type"])
                ),
            )

    def test_stock_users_cannot_retag_a_channel_order_s_transfer(self):
        """The order fields are readonly in the views only: over RPC a stock
        user could rename an order's transfer (its cancellation would then
        release nothing) or tag a draft one with an order to come (that
        order would reserve nothing). Only the module and sync managers set
        them; cancelling and duplicating a channel's transfer still work."""
        picking = self.env["stock.picking"].create(
            {
                "picking_type_id": self.env.ref("stock.picking_type_out").id,
                "scs_channel_id": self.channel.id,
                "scs_external_order_id": "SEC-1",
            }
        )
        stock_user = new_test_user(
            self.env, login="scs_stock_only", groups="stock.group_stock_user"
        )
        as_stock = picking.with_user(stock_user)
        for vals in (
            {"scs_external_order_id": "RENAMED"},
            {"scs_channel_id": False},
            {"scs_cancelled_in_odoo": True},
        ):
            with self.assertRaises(AccessError):
                as_stock.write(vals)
        with self.assertRaises(AccessError):
            self.env["stock.picking"].with_user(stock_user).create(
                {
                    "picking_type_id": self.env.ref("stock.picking_type_out").id,
                    "scs_channel_id": self.channel.id,
                    "scs_external_order_id": "HIJ-1",
                }
            )
        self.assertEqual(picking.scs_external_order_id, "SEC-1")
        duplicate = as_stock.copy()
        self.assertFalse(duplicate.scs_channel_id or duplicate.scs_external_order_id)
        as_stock.action_cancel()
        self.assertTrue(picking.scs_cancelled_in_odoo)
        stock_manager = new_test_user(
            self.env,
            login="scs_stock_sync_manager",
            groups="stock.group_stock_user,stock_channel_sync.group_sync_manager",
        )
        picking.with_user(stock_manager).write({"scs_external_order_id": "SEC-2"})
        self.assertEqual(picking.scs_external_order_id, "SEC-2")

    def test_responsible_user_is_chosen_among_those_who_open_the_channel(self):
        """The form offers as responsible user (who gets the channel's
        activities) only internal users of its company with Channel Sync
        rights: a stock user, or another company's manager, could not open
        the channel the activity is on."""
        arch = self.env["sync.channel"].get_views([(False, "form")])["views"]["form"][
            "arch"
        ]
        node = etree.fromstring(arch).xpath("//field[@name='user_id']")[0]
        domain = safe_eval(
            node.get("domain"), {"company_id": self.channel.company_id.id}
        )
        stock_only = new_test_user(
            self.env, login="scs_stock_resp", groups="stock.group_stock_user"
        )
        offered = self.env["res.users"].search(domain)
        self.assertIn(self.user, offered)
        self.assertIn(self.manager, offered)
        for user in (stock_only, self.other, self.portal):
            self.assertNotIn(user, offered, user.login)

    def test_portal_and_public_reach_nothing(self):
        public = self.env.ref("base.public_user")
        for user in (self.portal, public):
            for model in ("sync.channel", "channel.binding", "sync.event"):
                with self.assertRaises(AccessError):
                    self.env[model].with_user(user).search([])

    def test_other_company_sees_nothing(self):
        env = self.env(
            user=self.other, context={"allowed_company_ids": self.other_company.ids}
        )
        self.assertFalse(env["sync.channel"].search([("id", "=", self.channel.id)]))
        self.assertFalse(env["channel.binding"].search([("id", "=", self.binding.id)]))

    def _channel_secrets(self):
        return self.channel.read(
            ["webhook_secret", "webhook_token", "signing_secret", "api_secret"]
        )[0]

    def test_channel_actions_need_a_manager_of_its_company(self):
        """The actions work as the superuser; called over RPC by anyone else
        than a manager of the channel's company, each is refused and changes
        nothing."""
        dead = self.env["sync.event"].create(
            {
                "direction": "in",
                "channel_id": self.channel.id,
                "kind": "order",
                "idempotency_key": "sec-dead-1",
                "external_ref": "SEC-1",
                "state": "dead",
            }
        )
        internal = new_test_user(
            self.env, login="scs_internal", groups="base.group_user"
        )
        before = self._channel_secrets()
        calls = {
            "rotate": lambda env: (
                env["sync.channel"]
                .browse(self.channel.id)
                .action_rotate_webhook_secret()
            ),
            "token": lambda env: (
                env["sync.channel"]
                .browse(self.channel.id)
                .action_regenerate_webhook_token()
            ),
            "signing": lambda env: (
                env["sync.channel"]
                .browse(self.channel.id)
                .action_generate_signing_secret()
            ),
            "test": lambda env: (
                env["sync.channel"].browse(self.channel.id).action_test_connection()
            ),
            "match": lambda env: (
                env["sync.channel"].browse(self.channel.id).action_match_listings()
            ),
            "push all": lambda env: (
                env["sync.channel"].browse(self.channel.id).action_push_all()
            ),
            "reconcile": lambda env: (
                env["sync.channel"].browse(self.channel.id).action_reconcile_now()
            ),
            "push now": lambda env: (
                env["channel.binding"].browse(self.binding.id).action_push_now()
            ),
            "retry": lambda env: env["sync.event"].browse(dead.id).action_retry(),
            "replay": lambda env: env["sync.event"].browse(dead.id).action_replay(),
            "discard": lambda env: (
                env["sync.event.discard"]
                .sudo()
                .create({"reason": "not mine"})
                .with_env(env)
                .with_context(active_ids=[dead.id])
                .action_discard()
            ),
        }
        jobs = self.env["queue.job"].search_count([])
        for user in (self.user, self.portal, internal, self.other):
            env = self.env(
                user=user, context={"allowed_company_ids": user.company_ids.ids}
            )
            for name, call in calls.items():
                with (
                    self.subTest(user=user.login, action=name),
                    self.assertRaises(AccessError),
                ):
                    call(env)
        self.env.invalidate_all()
        self.assertEqual(self._channel_secrets(), before)
        self.assertEqual(dead.state, "dead")
        self.assertFalse(
            self.env["sync.event"].search([("replay_of_id", "=", dead.id)])
        )
        self.assertEqual(self.env["queue.job"].search_count([]), jobs)
        # a manager of the channel's company may
        self.channel.with_user(self.manager).action_rotate_webhook_secret()
        self.assertNotEqual(self.channel.webhook_secret, before["webhook_secret"])
        self.assertEqual(self.channel.webhook_secret_previous, before["webhook_secret"])
        self.env["sync.event"].browse(dead.id).with_user(self.manager).action_retry()
        self.assertEqual(dead.state, "queued")

    def test_other_company_learns_nothing_from_dashboards_or_bindings(self):
        self.env["sync.event"].create(
            {
                "direction": "in",
                "channel_id": self.channel.id,
                "kind": "order",
                "idempotency_key": "sec-order-1",
                "external_ref": "SEC-ORDER-1",
                "state": "applied",
                "change_ts": time.time(),
            }
        )
        mine = self.env["sync.dashboard"].create({"channel_id": self.channel.id})
        self.assertEqual(mine.orders, 1)
        env = self.env(
            user=self.other, context={"allowed_company_ids": self.other_company.ids}
        )
        with self.assertRaises(AccessError):
            env["sync.dashboard"].create({"channel_id": self.channel.id})
        # a dashboard form being filled in (onchange) counts nothing of it
        self.assertEqual(
            env["sync.dashboard"].new({"channel_id": self.channel.id}).orders, 0
        )
        # the binding exists: the answer must not say so
        with self.assertRaises(AccessError):
            env["channel.binding"].create(
                {"channel_id": self.channel.id, "product_id": self.product_a.id}
            )

    def test_manager_cannot_move_a_channel_into_another_company(self):
        """A manager of one company moving his channel into a company he does
        not belong to would sell that company's stock on his shop."""
        theirs = self.env["sync.channel"].create(
            {"name": "Their shop", "company_id": self.other_company.id}
        )
        env = self.env(
            user=self.other, context={"allowed_company_ids": self.other_company.ids}
        )
        with self.assertRaises(AccessError):
            env["sync.channel"].browse(theirs.id).write(
                {"company_id": self.env.company.id}
            )
        self.assertEqual(theirs.company_id, self.other_company)
        # within his own companies the company may change
        env["sync.channel"].browse(theirs.id).write(
            {"company_id": self.other_company.id}
        )

    def test_a_company_change_pushes_the_channel(self):
        """With no warehouse chosen the company decides what the channel
        sells: a new company is a new figure, pushed at once."""
        with trap_jobs() as trap:
            self.assertFalse(self.channel.warehouse_ids)
            self.channel.write({"company_id": self.other_company.id})
            self.env.cr.flush()
            self.assertEqual(len(self.jobs_of(trap, "_scs_job_push_batch")), 1)

    def test_events_cannot_be_rewritten(self):
        """Managers may retry, replay and discard events, not rewrite what
        they say: moved to another channel, an order would reserve that
        channel's stock."""
        theirs = self.env["sync.channel"].create(
            {"name": "Their shop", "company_id": self.other_company.id}
        )
        event = self.env["sync.event"].create(
            {
                "direction": "in",
                "channel_id": theirs.id,
                "kind": "order",
                "idempotency_key": "sec-forge-1",
                "external_ref": "SEC-FORGE-1",
                "state": "attention",
                "data": "{}",
            }
        )
        env = self.env(
            user=self.other, context={"allowed_company_ids": self.other_company.ids}
        )
        mine = env["sync.event"].browse(event.id)
        for vals in (
            {"channel_id": self.channel.id, "state": "queued"},
            {"company_id": self.env.company.id},
            {"data": '{"order": {"lines": []}}'},
            {"kind": "cancel"},
            # a state too: an applied refund set back to failed would be
            # released again by Retry
            {"state": "failed"},
        ):
            with self.assertRaises(AccessError):
                mine.write(vals)
        self.assertEqual(event.channel_id, theirs)
        self.assertEqual(event.data, "{}")
        self.assertEqual((event.kind, event.state), ("order", "attention"))
        # what managers do to events goes through the actions
        mine._scs_discard("checked by hand")
        self.assertEqual(event.state, "discarded")
        # nor can a binding be made to wait on another channel's event (its
        # next push would close that event as superseded)
        own = self.env["channel.binding"].create(
            {"channel_id": theirs.id, "product_id": self.product_b.id}
        )
        foreign = self.env["sync.event"].create(
            {
                "direction": "out",
                "channel_id": self.channel.id,
                "kind": "push",
                "idempotency_key": "sec-foreign-push",
                "state": "failed",
            }
        )
        with self.assertRaises(AccessError):
            env["channel.binding"].browse(own.id).write(
                {"pending_event_id": foreign.id, "push_state": "failed"}
            )
        self.assertFalse(own.pending_event_id)

    def test_binding_product_of_another_company_is_refused(self):
        """A binding names a product of its channel's company (or a shared
        one): another company's product would leak its name through the
        binding, and its orders could never be reserved."""
        Product = self.env["product.product"]
        theirs = Product.create(
            {
                "name": "Their prototype",
                "default_code": "SEC-PROTO",
                "is_storable": True,
                "company_id": self.other_company.id,
            }
        )
        with self.assertRaises(UserError):
            self.env["channel.binding"].create(
                {"channel_id": self.channel.id, "product_id": theirs.id}
            )
        with self.assertRaises(UserError):
            self.binding.write({"product_id": theirs.id})
        self.assertEqual(self.binding.product_id, self.product_a)

    def test_a_channel_does_not_take_another_company_s_product_along(self):
        """A channel moved into another company with a binding of a product
        of its old company: the move is refused (that company would read
        the product through the binding)."""
        both = new_test_user(
            self.env,
            login="scs_both",
            groups="base.group_user,stock_channel_sync.group_sync_manager",
            company_ids=[(6, 0, (self.env.company | self.other_company).ids)],
        )
        mine = self.env["product.product"].create(
            {
                "name": "Our prototype",
                "default_code": "SEC-OURS",
                "is_storable": True,
                "company_id": self.env.company.id,
            }
        )
        channel = self.env["sync.channel"].create({"name": "Movable"})
        self.env["channel.binding"].create(
            {"channel_id": channel.id, "product_id": mine.id}
        )
        env = self.env(
            user=both,
            context={
                "allowed_company_ids": (self.env.company | self.other_company).ids
            },
        )
        with self.assertRaises(UserError):
            env["sync.channel"].browse(channel.id).write(
                {"company_id": self.other_company.id}
            )
        self.assertEqual(channel.company_id, self.env.company)
        # with shared products only, the move is the manager's to make
        channel.binding_ids.product_id = self.product_b
        env["sync.channel"].browse(channel.id).write(
            {"company_id": self.other_company.id}
        )
        self.assertEqual(channel.binding_ids.company_id, self.other_company)

    def test_a_transfer_names_a_channel_of_its_company(self):
        """A transfer of one company tagged with another company's channel
        and a future order id would be taken for that order's reservation."""
        theirs = self.env["sync.channel"].create(
            {"name": "Their shop", "company_id": self.other_company.id}
        )
        with self.assertRaises(UserError):
            self.env["stock.picking"].create(
                {
                    "picking_type_id": self.warehouse.out_type_id.id,
                    "location_id": self.stock.id,
                    "location_dest_id": self.customers.id,
                    "scs_channel_id": theirs.id,
                    "scs_external_order_id": "FUTURE-1",
                }
            )

    def test_moving_a_binding_tells_nothing_of_another_channel(self):
        """Moving a binding onto a channel of another company is refused for
        the rights, before the unique constraint could tell that the channel
        already binds the product."""
        theirs = self.env["sync.channel"].create(
            {"name": "Their shop", "company_id": self.other_company.id}
        )
        own = self.env["channel.binding"].create(
            {"channel_id": theirs.id, "product_id": self.product_a.id}
        )
        env = self.env(
            user=self.other, context={"allowed_company_ids": self.other_company.ids}
        )
        with self.assertRaises(AccessError):
            env["channel.binding"].browse(own.id).write({"channel_id": self.channel.id})
        self.assertEqual(own.channel_id, theirs)
