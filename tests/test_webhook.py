# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Signed webhook intake over real HTTP: verify, record once, apply in order."""

import base64
import functools
import hashlib
import hmac
import itertools
import json
import logging
import random
import socket
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from unittest.mock import patch

import psycopg2
import requests

from odoo import fields
from odoo.exceptions import UserError, ValidationError
from odoo.tests import HttpCase, tagged

from odoo.addons.queue_job.exception import RetryableJobError
from odoo.addons.queue_job.job import Job

from ..lib import signatures
from ..models.job_store import LOST_CONNECTION_ETA, LOST_CONNECTION_RUNS
from ..models.sync_event_inbound import SyncEventInbound
from ..models.sync_event_order import SyncEventOrder
from ..simulators.shopify import ShopifySimulator
from ..simulators.woocommerce import WooCommerceSimulator
from .common import SyncCaseMixin

try:
    import standardwebhooks
except ImportError:  # the interop test says it is skipped
    standardwebhooks = None

URL = "/stock_channel_sync/webhook/"


def at_ten(minute):
    """10:<minute> on the day the test webhooks are stamped, in UTC."""
    return datetime(2026, 11, 22, 10, minute, tzinfo=timezone.utc)


@tagged("post_install", "-at_install")
class TestWebhook(SyncCaseMixin, HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._scs_setup_stock()
        cls.secret = signatures.generate_standard_secret()
        cls.generic = cls.env["sync.channel"].create(
            {
                "name": "Generic shop",
                "channel_type": "generic",
                "webhook_secret": cls.secret,
                "base_url": "http://127.0.0.1:9",
                "sync_enabled": False,
            }
        )
        cls.shopify = cls.env["sync.channel"].create(
            {
                "name": "Shopify shop",
                "channel_type": "shopify",
                "webhook_secret": "shpss_test_secret",
                "base_url": "http://127.0.0.1:9",
                "sync_enabled": False,
            }
        )
        cls.woo = cls.env["sync.channel"].create(
            {
                "name": "Woo shop",
                "channel_type": "woocommerce",
                "webhook_secret": "woo&amp;secret",
                "base_url": "http://127.0.0.1:9",
                "sync_enabled": False,
            }
        )
        Binding = cls.env["channel.binding"]
        cls.b_generic = Binding.create(
            {"channel_id": cls.generic.id, "product_id": cls.product_a.id}
        )
        cls.b_shopify = Binding.create(
            {
                "channel_id": cls.shopify.id,
                "product_id": cls.product_a.id,
                "external_id": "gid://shopify/ProductVariant/111",
                "external_variant_id": "gid://shopify/InventoryItem/222",
            }
        )
        cls.b_woo = Binding.create(
            {
                "channel_id": cls.woo.id,
                "product_id": cls.product_a.id,
                "external_id": "55",
            }
        )
        cls.env["queue.job"].search([]).unlink()

    # -- helpers --------------------------------------------------------------
    def post_concurrently(self, requests_args):
        """POST several requests from threads at once (a plain HTTP client).

        The test server still runs them one at a time on the test cursor, so
        this proves the handler's answers; real concurrency is exercised by
        benchmarks/load_webhooks.py against a multi-worker server.
        """
        results = [None] * len(requests_args)
        session = requests.Session()

        def deliver(index, url, body, headers):
            results[index] = session.post(
                self.base_url() + url, data=body, headers=headers, timeout=30
            )

        threads = [
            threading.Thread(target=deliver, args=(i, *args))
            for i, args in enumerate(requests_args)
        ]
        self.env.flush_all()
        with self.allow_requests(all_requests=True):
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        self.env.invalidate_all()
        return results

    def counts(self):
        self.env.flush_all()
        return (
            self.env["sync.event"].search_count([]),
            self.env["queue.job"].search_count([]),
            self.env["stock.picking"].search_count([("scs_channel_id", "!=", False)]),
        )

    def post_generic(self, payload, msg_id=None, secret=None, timestamp=None, raw=None):
        body = raw if raw is not None else json.dumps(payload).encode()
        headers = signatures.sign_standard(
            secret or self.secret,
            msg_id or f"msg_{uuid.uuid4().hex}",
            int(timestamp if timestamp is not None else time.time()),
            body,
        )
        headers["Content-Type"] = "application/json"
        return self.url_open(
            URL + self.generic.webhook_token, data=body, headers=headers
        )

    def order_payload(
        self, order_id, qty=1, event="order.created", ts=None, sku="SCS-MUG"
    ):
        return {
            "type": event,
            "timestamp": fields.Datetime.to_string(
                fields.Datetime.now() if ts is None else ts
            ),
            "data": {"id": order_id, "lines": [{"sku": sku, "quantity": qty}]},
        }

    def reservations(self, channel, order_id):
        return self.env["stock.picking"].search(
            [
                ("scs_channel_id", "=", channel.id),
                ("scs_external_order_id", "=", order_id),
                ("state", "!=", "cancel"),
            ]
        )

    # -- accepted -------------------------------------------------------------
    def test_generic_order_reserves_once(self):
        free = self.product_a.free_qty
        payload = self.order_payload("G-1", qty=2)
        res = self.post_generic(payload, msg_id="msg_order_g1")
        self.assertEqual(res.status_code, 200, res.text)
        self.assertEqual(res.json()["status"], "accepted")
        event = self.env["sync.event"].search(
            [("idempotency_key", "=", "msg_order_g1")]
        )
        self.assertEqual(event.state, "queued")
        self.assertEqual(event.external_ref, "G-1")
        self.env.cr.execute("SELECT sku FROM sync_event WHERE id = %s", (event.id,))
        self.assertIsNone(self.env.cr.fetchone()[0], "an order names no single SKU")
        self.assertEqual(len(self.sync_jobs("_scs_job_apply_inbound")), 1)
        # redelivery of the same event: 200, nothing more
        again = self.post_generic(payload, msg_id="msg_order_g1")
        self.assertEqual(again.status_code, 200)
        self.assertEqual(again.json()["status"], "duplicate")
        self.assertEqual(
            self.env["sync.event"].search_count(
                [("idempotency_key", "=", "msg_order_g1")]
            ),
            1,
        )
        self.run_jobs()
        self.assertEqual(event.state, "applied")
        self.assertEqual(len(self.reservations(self.generic, "G-1")), 1)
        self.product_a.invalidate_recordset()
        self.assertEqual(self.product_a.free_qty, free - 2)
        # the same order under another delivery id (e.g. order.paid): no 2nd reservation
        self.post_generic(self.order_payload("G-1", qty=2, event="order.paid"))
        self.run_jobs()
        self.assertEqual(len(self.reservations(self.generic, "G-1")), 1)
        self.product_a.invalidate_recordset()
        self.assertEqual(self.product_a.free_qty, free - 2)

    def test_generic_ed25519_and_rotation(self):
        private, public = signatures.generate_ed25519_keypair()
        self.generic.webhook_public_key = public
        body = json.dumps(self.order_payload("G-ED")).encode()
        headers = signatures.sign_standard(
            signatures.generate_standard_secret(),  # v1 with an unknown secret
            "msg_ed",
            int(time.time()),
            body,
            private_key=private,
        )
        res = self.url_open(
            URL + self.generic.webhook_token, data=body, headers=headers
        )
        self.assertEqual(res.status_code, 200, "the v1a entry verifies")
        old = self.secret
        self.generic.action_rotate_webhook_secret()
        self.assertNotEqual(self.generic.webhook_secret, old)
        res = self.post_generic(self.order_payload("G-ROT"), secret=old)
        self.assertEqual(res.status_code, 200, "previous secret accepted in grace")
        self.generic.webhook_secret_previous_expiry = fields.Datetime.subtract(
            fields.Datetime.now(), minutes=1
        )
        res = self.post_generic(self.order_payload("G-ROT2"), secret=old)
        self.assertEqual(res.status_code, 401, "expired previous secret refused")

    def test_public_key_of_small_order_never_verifies(self):
        """The identity point as the channel's key would let a signature made
        without any private key verify for every body: the form refuses it,
        and one stored before that check is not used to verify."""
        identity = "whpk_" + base64.b64encode(b"\x01" + bytes(31)).decode()
        for bad in (identity, "whpk_" + base64.b64encode(b"k" * 31).decode()):
            with self.assertRaises(ValidationError), self.env.cr.savepoint():
                self.generic.webhook_public_key = bad
                self.generic.flush_recordset()
        self.env.cr.execute(
            "UPDATE sync_channel SET webhook_public_key = %s WHERE id = %s",
            (identity, self.generic.id),
        )
        self.env.registry.clear_cache()
        body = json.dumps(self.order_payload("G-FORGED", qty=7)).encode()
        forged = "v1a," + base64.b64encode(b"\x01" + bytes(63)).decode()
        res = self.url_open(
            URL + self.generic.webhook_token,
            data=body,
            headers={
                "Content-Type": "application/json",
                "webhook-id": "msg_forged",
                "webhook-timestamp": str(int(time.time())),
                "webhook-signature": forged,
            },
        )
        self.assertEqual(res.status_code, 401, res.text)
        self.assertIn("small order", res.json()["error"])
        self.assertFalse(
            self.env["sync.event"].search([("idempotency_key", "=", "msg_forged")])
        )
        self.assertFalse(self.reservations(self.generic, "G-FORGED"))

    def test_pasted_secret_keeps_the_old_one_for_the_grace_period(self):
        """A marketplace's new secret is pasted into the field (Shopify's is
        the app's client secret, which Odoo cannot make): the secret it
        replaces stays valid for the grace period, as a rotation's does."""
        old = self.secret
        new = signatures.generate_standard_secret()
        self.generic.webhook_secret = new
        self.assertEqual(self.generic.webhook_secret_previous, old)
        self.assertGreater(
            self.generic.webhook_secret_previous_expiry,
            fields.Datetime.add(fields.Datetime.now(), hours=23),
        )
        res = self.post_generic(self.order_payload("G-PASTE-OLD"), secret=old)
        self.assertEqual(res.status_code, 200, res.text)
        res = self.post_generic(self.order_payload("G-PASTE-NEW"), secret=new)
        self.assertEqual(res.status_code, 200, res.text)
        # a grace of an hour and a half, and a secret cleared: nothing passes
        self.env["ir.config_parameter"].set_param(
            "stock_channel_sync.secret_rotation_grace_hours", "1.5"
        )
        self.generic.webhook_secret = signatures.generate_standard_secret()
        self.assertAlmostEqual(
            (
                self.generic.webhook_secret_previous_expiry - fields.Datetime.now()
            ).total_seconds(),
            5400,
            delta=120,
        )
        self.assertEqual(self.generic.webhook_secret_previous, new)
        self.generic.webhook_secret = False
        self.assertFalse(self.generic.webhook_secret_previous)
        res = self.post_generic(self.order_payload("G-CLEARED"), secret=new)
        self.assertEqual(res.status_code, 401, res.text)
        # Shopify: the same, and no secret made up by Odoo
        self.shopify.webhook_secret = "shpss_next_secret"
        self.assertEqual(self.shopify.webhook_secret_previous, "shpss_test_secret")
        with self.assertRaises(UserError):
            self.shopify.action_rotate_webhook_secret()
        self.assertEqual(self.shopify.webhook_secret, "shpss_next_secret")
        body = json.dumps(
            {
                "id": 8801,
                "updated_at": "2026-11-22T10:00:00Z",
                "line_items": [],
            }
        ).encode()
        for secret, event_id in (
            ("shpss_test_secret", "ev-old"),
            ("shpss_next_secret", "ev-new"),
            ("shpss_unknown", "ev-bad"),
        ):
            res = self.url_open(
                URL + self.shopify.webhook_token,
                data=body,
                headers={
                    "Content-Type": "application/json",
                    "X-Shopify-Topic": "orders/create",
                    "X-Shopify-Event-Id": event_id,
                    **signatures.sign_shopify(secret, body),
                },
            )
            self.assertEqual(
                res.status_code, 401 if secret == "shpss_unknown" else 200, res.text
            )

    def test_timestamp_tolerance_is_bounded(self):
        """A negative tolerance would refuse every delivery, a huge one would
        let a captured delivery through for days."""
        for value in (-10, 0, 10**9):
            with self.assertRaises(ValidationError):
                self.generic.webhook_tolerance = value
        self.generic.webhook_tolerance = 60
        res = self.post_generic(
            self.order_payload("G-TOL"), timestamp=time.time() - 120
        )
        self.assertEqual(res.status_code, 401, res.text)
        # a value written around the form's check: the reference's 5 minutes
        self.env.cr.execute(
            "UPDATE sync_channel SET webhook_tolerance = 1000000000 WHERE id = %s",
            [self.generic.id],
        )
        self.env.registry.clear_cache()
        res = self.post_generic(
            self.order_payload("G-TOL2"), timestamp=time.time() - 3 * 3600
        )
        self.assertEqual(res.status_code, 401, res.text)
        res = self.post_generic(
            self.order_payload("G-TOL3"), timestamp=time.time() - 200
        )
        self.assertEqual(res.status_code, 200, res.text)

    def test_a_request_that_found_no_database_in_an_outage_is_retried(self):
        """A request that reaches the route with no database (Odoo could not
        open it) is an unknown channel when the server's databases answer,
        and a 503 with Retry-After when one does not: senders take a 404
        for good, and would drop the sale."""
        from odoo.addons.stock_channel_sync.controllers import main

        real = main.request

        class NoDatabase:
            """The route's ``request`` as Odoo hands it over without a
            database: the HTTP request, no environment."""

            env = None

            def __getattr__(self, name):
                return getattr(real, name)

        before = self.counts()
        with patch.object(main, "request", NoDatabase()):
            res = self.post_generic(self.order_payload("G-NODB"))
            self.assertEqual(res.status_code, 404, res.text)
            # a database set that does not exist: no outage either
            with patch.object(main, "config", {"db_name": ["scs_no_such_db"]}):
                res = self.post_generic(self.order_payload("G-NODB"))
                self.assertEqual(res.status_code, 404, res.text)
            refused = psycopg2.OperationalError("connection refused")
            with patch.object(main.sql_db, "db_connect", side_effect=refused):
                res = self.post_generic(self.order_payload("G-NODB"))
        self.assertEqual(res.status_code, 503, res.text)
        self.assertEqual(res.headers["Retry-After"], "30")
        self.assertEqual(self.counts(), before)

    def test_parameter_named_self_is_no_500(self):
        """Odoo passes request parameters to the route's method by name: one
        named ``self`` was a TypeError (500) before any check ran."""
        before = self.counts()
        body = json.dumps(self.order_payload("G-SELF")).encode()
        headers = signatures.sign_standard(
            self.secret, "msg_self", int(time.time()), body
        )
        headers["Content-Type"] = "application/json"
        url = URL + self.generic.webhook_token
        res = self.url_open(url + "?self=1", data=body, headers=headers)
        self.assertEqual(res.status_code, 200, res.text)
        res = self.url_open(URL + "nope?self=1", data=body, headers=headers)
        self.assertEqual(res.status_code, 404, res.text)
        res = self.url_open(
            url,
            data=b"self=1",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        self.assertEqual(res.status_code, 401, res.text)
        after = self.counts()
        self.assertEqual(after[0], before[0] + 1, "one event: the signed one")

    def test_standardwebhooks_reference_library_interop(self):
        if standardwebhooks is None:
            self.skipTest("standardwebhooks is not installed")
        body = json.dumps(self.order_payload("G-REF"))
        wh = standardwebhooks.Webhook(self.secret)
        msg_id = "msg_reference_lib"
        now = time.time()
        signature = wh.sign(msg_id, datetime.fromtimestamp(now, tz=timezone.utc), body)
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now)),
            "webhook-signature": signature,
            "Content-Type": "application/json",
        }
        res = self.url_open(
            URL + self.generic.webhook_token, data=body, headers=headers
        )
        self.assertEqual(res.status_code, 200, res.text)

    def test_svix_named_headers(self):
        """A sender that names the headers svix-*: the same delivery, and its
        redelivery under the webhook-* names is a duplicate."""
        body = json.dumps(self.order_payload("G-SVIX", qty=1)).encode()
        signed = signatures.sign_standard(
            self.secret, "msg_svix", int(time.time()), body
        )
        url = URL + self.generic.webhook_token
        svix = {k.replace("webhook-", "svix-"): v for k, v in signed.items()}
        answers = [
            self.url_open(
                url, data=body, headers={**h, "Content-Type": "application/json"}
            )
            for h in (svix, signed)
        ]
        self.assertEqual([a.status_code for a in answers], [200, 200])
        self.assertEqual(
            [a.json()["status"] for a in answers], ["accepted", "duplicate"]
        )
        forged = {**svix, "svix-signature": "v1," + "A" * 44}
        res = self.url_open(
            url, data=body, headers={**forged, "Content-Type": "application/json"}
        )
        self.assertEqual(res.status_code, 401)
        self.assertEqual(
            self.env["sync.event"].search_count([("idempotency_key", "=", "msg_svix")]),
            1,
        )

    def test_shopify_known_answer_and_order(self):
        body = json.dumps(
            {
                "id": 4242,
                "admin_graphql_api_id": "gid://shopify/Order/4242",
                "updated_at": "2026-11-22T10:00:00Z",
                "financial_status": "paid",
                "line_items": [
                    {"id": 1, "sku": "SCS-MUG", "quantity": 3, "variant_id": 111}
                ],
            },
            separators=(",", ":"),
        ).encode()
        digest = base64.b64encode(
            hmac.new(b"shpss_test_secret", body, hashlib.sha256).digest()
        ).decode()
        # pinned vector: the HMAC of this exact body under this secret
        self.assertEqual(
            signatures.sign_shopify("shpss_test_secret", body)["X-Shopify-Hmac-Sha256"],
            digest,
        )
        headers = {
            "X-Shopify-Hmac-Sha256": digest,
            "X-Shopify-Topic": "orders/create",
            "X-Shopify-Event-Id": "evt-1",
            "X-Shopify-Triggered-At": "2026-11-22T10:00:01Z",
            "Content-Type": "application/json",
        }
        url = URL + self.shopify.webhook_token
        self.assertEqual(
            self.url_open(url, data=body, headers=headers).status_code, 200
        )
        self.assertEqual(
            self.url_open(url, data=body, headers=headers).json()["status"], "duplicate"
        )
        self.run_jobs()
        picking = self.reservations(self.shopify, "gid://shopify/Order/4242")
        self.assertEqual(len(picking), 1)
        self.assertEqual(picking.move_ids.product_uom_qty, 3)
        # tampered body
        bad = dict(headers, **{"X-Shopify-Event-Id": "evt-2"})
        res = self.url_open(url, data=body + b" ", headers=bad)
        self.assertEqual(res.status_code, 401)

    def test_shopify_refund_delivered_before_its_order(self):
        """Shopify's refunds/create restocking 1 of 3 units arrives before
        orders/create (triggered earlier): the order is reserved less it."""
        url = URL + self.shopify.webhook_token

        def post(topic, event_id, triggered_at, payload):
            body = json.dumps(payload).encode()
            headers = {
                **signatures.sign_shopify("shpss_test_secret", body),
                "X-Shopify-Topic": topic,
                "X-Shopify-Event-Id": event_id,
                "X-Shopify-Triggered-At": triggered_at,
                "Content-Type": "application/json",
            }
            self.assertEqual(
                self.url_open(url, data=body, headers=headers).status_code, 200
            )
            self.run_jobs("_scs_job_apply_inbound")

        free = self.product_a.free_qty
        line = {"id": 7, "sku": "SCS-MUG", "quantity": 3, "variant_id": 111}
        post(
            "refunds/create",
            "evt-refund",
            "2026-11-22T10:05:00Z",
            {
                "id": 31,
                "order_id": 4343,
                "created_at": "2026-11-22T10:05:00Z",
                "refund_line_items": [
                    {
                        "line_item_id": 7,
                        "quantity": 1,
                        "restock_type": "return",
                        "line_item": line,
                    }
                ],
            },
        )
        self.assertFalse(self.reservations(self.shopify, "gid://shopify/Order/4343"))
        post(
            "orders/create",
            "evt-order",
            "2026-11-22T10:00:00Z",
            {
                "id": 4343,
                "admin_graphql_api_id": "gid://shopify/Order/4343",
                "updated_at": "2026-11-22T10:00:00Z",
                "financial_status": "paid",
                "line_items": [line],
            },
        )
        picking = self.reservations(self.shopify, "gid://shopify/Order/4343")
        self.assertEqual(picking.move_ids.product_uom_qty, 2)
        self.assertEqual(picking.move_ids.quantity, 2)
        self.product_a.invalidate_recordset()
        self.assertEqual(self.product_a.free_qty, free - 2)

    def post_shopify_order(
        self, topic, order_id, minute, line_items, apply=True, **extra
    ):
        """A signed Shopify order webhook, triggered at 10:<minute>, applied
        unless ``apply`` is false: its event."""
        stamp = f"2026-11-22T10:{minute:02d}:00Z"
        body = json.dumps(
            {
                "id": order_id,
                "admin_graphql_api_id": f"gid://shopify/Order/{order_id}",
                "updated_at": stamp,
                "financial_status": "paid",
                "line_items": line_items,
                **extra,
            }
        ).encode()
        event_id = uuid.uuid4().hex
        headers = {
            **signatures.sign_shopify("shpss_test_secret", body),
            "X-Shopify-Topic": topic,
            "X-Shopify-Event-Id": event_id,
            "X-Shopify-Triggered-At": stamp,
            "Content-Type": "application/json",
        }
        res = self.url_open(
            URL + self.shopify.webhook_token, data=body, headers=headers
        )
        self.assertEqual(res.status_code, 200, res.text)
        if apply:
            self.run_jobs("_scs_job_apply_inbound")
        return self.env["sync.event"].search(
            [("idempotency_key", "=", f"{topic}:{event_id}")]
        )

    def post_shopify(self, topic, body):
        """A signed Shopify delivery of ``body`` (bytes) under a fresh event
        id: the answer (nothing applied yet)."""
        headers = {
            **signatures.sign_shopify("shpss_test_secret", body),
            "X-Shopify-Topic": topic,
            "X-Shopify-Event-Id": uuid.uuid4().hex,
            "Content-Type": "application/json",
        }
        return self.url_open(
            URL + self.shopify.webhook_token, data=body, headers=headers
        )

    def test_shopify_replay_with_a_later_trigger_time_cannot_reopen_an_order(self):
        """A captured orders/create replayed under a new event id with a
        forged, later X-Shopify-Triggered-At (neither is signed) is older
        than the order's cancellation: stale, nothing reserved again, and
        the order stays released."""
        mug = {"id": 1, "sku": "SCS-MUG", "quantity": 2}
        gid = "gid://shopify/Order/6161"
        self.post_shopify_order("orders/create", 6161, 1, [mug])
        self.assertEqual(len(self.reservations(self.shopify, gid)), 1)
        self.post_shopify_order(
            "orders/cancelled", 6161, 2, [mug], cancelled_at="2026-11-22T10:02:00Z"
        )
        self.assertFalse(self.reservations(self.shopify, gid))
        free = self.product_a.free_qty
        body = json.dumps(
            {
                "id": 6161,
                "admin_graphql_api_id": gid,
                "updated_at": "2026-11-22T10:01:00Z",
                "financial_status": "paid",
                "line_items": [mug],
            }
        ).encode()
        headers = {
            **signatures.sign_shopify("shpss_test_secret", body),
            "X-Shopify-Topic": "orders/create",
            "X-Shopify-Event-Id": uuid.uuid4().hex,
            "X-Shopify-Triggered-At": "2026-11-22T11:00:00Z",
            "Content-Type": "application/json",
        }
        res = self.url_open(
            URL + self.shopify.webhook_token, data=body, headers=headers
        )
        self.assertEqual(res.status_code, 200)
        self.run_jobs("_scs_job_apply_inbound")
        replay = self.env["sync.event"].search(
            [("idempotency_key", "=", f"orders/create:{headers['X-Shopify-Event-Id']}")]
        )
        self.assertEqual(replay.state, "stale")
        self.assertFalse(self.reservations(self.shopify, gid))
        self.product_a.invalidate_recordset()
        self.assertEqual(self.product_a.free_qty, free)

    def post_woo(self, topic, payload, delivery=None):
        """A signed WooCommerce delivery of ``payload``, applied (a deletion
        once the shop was asked whether the order is gone)."""
        body = json.dumps(payload).encode()
        secret = signatures.wp_specialchars_decode("woo&amp;secret").encode()
        digest = hmac.new(secret, body, hashlib.sha256).digest()
        headers = {
            "X-WC-Webhook-Signature": base64.b64encode(digest).decode(),
            "X-WC-Webhook-Topic": topic,
            "X-WC-Webhook-Delivery-ID": delivery or uuid.uuid4().hex,
            "Content-Type": "application/json",
        }
        res = self.url_open(URL + self.woo.webhook_token, data=body, headers=headers)
        self.assertEqual(res.status_code, 200, res.text)
        self.run_jobs("_scs_job_apply_inbound")
        if self.run_jobs("_scs_job_confirm_deletion"):
            self.run_jobs("_scs_job_apply_inbound")
        return res

    def woo_shop(self):
        """The Woo channel's shop, a simulator: asked whether an order of an
        order.deleted delivery is gone (an order it never had is)."""
        sim = WooCommerceSimulator().start()
        self.addCleanup(sim.stop)
        self.woo.sudo().write(
            {
                "base_url": sim.url,
                "api_key": sim.consumer_key,
                "api_secret": sim.consumer_secret,
            }
        )
        return sim

    def test_shopify_cancel_of_unfulfilled_units_after_a_partial_shipment(self):
        """1 of 3 mugs shipped, the other 2 cancelled on Shopify (a refund
        with ``restock_type: cancel``: units never fulfilled): they are
        released from the backorder, and the order's next update is still
        followed. A refund with ``return`` may be of the shipped mug: it
        releases nothing from what is still to ship."""
        mug = {"id": 1, "sku": "SCS-MUG", "quantity": 3, "variant_id": 111}
        for order_id, restock_type in ((5151, "cancel"), (5252, "return")):
            gid = f"gid://shopify/Order/{order_id}"
            self.post_shopify_order("orders/create", order_id, 1, [mug])
            picking = self.reservations(self.shopify, gid)
            picking.move_ids.write({"quantity": 1, "picked": True})
            picking._action_done()
            backorder = self.reservations(self.shopify, gid) - picking
            self.assertEqual(backorder.move_ids.product_uom_qty, 2)
            refund = {
                "id": order_id,
                "order_id": order_id,
                "created_at": "2026-11-22T10:02:00Z",
                "refund_line_items": [
                    {
                        "line_item_id": 1,
                        "quantity": 2,
                        "restock_type": restock_type,
                        "line_item": mug,
                    }
                ],
            }
            res = self.post_shopify("refunds/create", json.dumps(refund).encode())
            self.assertEqual(res.status_code, 200)
            self.run_jobs("_scs_job_apply_inbound")
            if restock_type == "cancel":
                self.assertEqual(backorder.state, "cancel")
                # the update Shopify sends after it: the order still stands
                # at the shipped mug, nothing more to release or to flag
                event = self.post_shopify_order(
                    "orders/updated",
                    order_id,
                    3,
                    [dict(mug, quantity=3, current_quantity=1)],
                )
                self.assertEqual(event.state, "applied", event.error)
            else:
                self.assertEqual(backorder.move_ids.product_uom_qty, 2)
                self.assertEqual(backorder.state, "assigned")

    def test_shopify_order_updates_follow_a_reserved_order(self):
        """orders/updated: units an order edit adds are reserved; a refunded
        status releases nothing (refunds/create does); a cancelled one
        releases; an order not reserved here is not reserved by it."""
        url = URL + self.shopify.webhook_token
        self.bind(
            self.shopify,
            self.product_b,
            external_id="gid://shopify/ProductVariant/333",
        )
        mug = {"id": 1, "sku": "SCS-MUG", "quantity": 1, "variant_id": 111}
        cap = {"id": 2, "sku": "SCS-CAP", "quantity": 2, "variant_id": 333}
        gid = "gid://shopify/Order/4545"

        def post(topic, minute, line_items, order_id=4545, **extra):
            return self.post_shopify_order(topic, order_id, minute, line_items, **extra)

        def held():
            return self.held(gid, self.shopify)

        event = post("orders/updated", 0, [mug], order_id=4646)
        self.assertEqual(event.state, "skipped")
        self.assertFalse(self.reservations(self.shopify, "gid://shopify/Order/4646"))
        # an edit delivered (and applied) before its order's creation: the
        # creation reserves the order as it is now; an update older than the
        # creation does not count
        post("orders/updated", 0, [dict(mug, quantity=5)], order_id=4747)
        post("orders/updated", 3, [mug, cap], order_id=4747)
        event = post("orders/create", 1, [mug], order_id=4747)
        self.assertEqual(
            self.held("gid://shopify/Order/4747", self.shopify),
            {"SCS-MUG": (1, 1), "SCS-CAP": (2, 2)},
        )
        self.assertIn("as of the order's later update orders/updated:", event.reason)
        post("orders/updated", 0, [dict(mug, quantity=5)], order_id=4848)
        post("orders/create", 1, [mug], order_id=4848)
        self.assertEqual(
            self.held("gid://shopify/Order/4848", self.shopify), {"SCS-MUG": (1, 1)}
        )
        post("orders/create", 1, [mug])
        self.assertEqual(held(), {"SCS-MUG": (1, 1)})
        # an order edit added two caps
        event = post("orders/updated", 2, [mug, cap])
        self.assertEqual(event.state, "applied")
        self.assertEqual(held(), {"SCS-CAP": (2, 2), "SCS-MUG": (1, 1)})
        # refunded, as Shopify says of the order: refunds/create says what
        # was restocked, this event releases nothing
        post("orders/updated", 3, [mug, cap], financial_status="refunded")
        self.assertEqual(held(), {"SCS-CAP": (2, 2), "SCS-MUG": (1, 1)})
        refund = {
            "id": 41,
            "order_id": 4545,
            "created_at": "2026-11-22T10:04:00Z",
            "refund_line_items": [
                {
                    "line_item_id": 2,
                    "quantity": 1,
                    "restock_type": "return",
                    "line_item": cap,
                }
            ],
        }
        body = json.dumps(refund).encode()
        headers = {
            **signatures.sign_shopify("shpss_test_secret", body),
            "X-Shopify-Topic": "refunds/create",
            "X-Shopify-Event-Id": "evt-upd-refund",
            "X-Shopify-Triggered-At": "2026-11-22T10:04:00Z",
            "Content-Type": "application/json",
        }
        self.assertEqual(
            self.url_open(url, data=body, headers=headers).status_code, 200
        )
        self.run_jobs("_scs_job_apply_inbound")
        self.assertEqual(held(), {"SCS-CAP": (1, 1), "SCS-MUG": (1, 1)})
        # the next update keeps the quantities first ordered: still less the
        # refunded cap
        post("orders/updated", 5, [mug, cap])
        self.assertEqual(held(), {"SCS-CAP": (1, 1), "SCS-MUG": (1, 1)})
        post("orders/updated", 6, [mug, cap], cancelled_at="2026-11-22T10:06:00Z")
        self.assertEqual(held(), {})

    def test_shopify_update_releases_what_an_edit_removed(self):
        """orders/updated: units an order edit removes (``current_quantity``
        plus what the order's refunds took, below the quantity ordered) are
        released at once; a refund releases its restocked units once, also
        when later updates carry it; a stale update changes nothing."""
        url = URL + self.shopify.webhook_token
        self.bind(
            self.shopify,
            self.product_b,
            external_id="gid://shopify/ProductVariant/333",
        )
        gid = "gid://shopify/Order/5151"
        free_mug = self.product_a.free_qty

        def lines(mug_now, cap_now):
            return [
                {
                    "id": 1,
                    "sku": "SCS-MUG",
                    "quantity": 3,
                    "current_quantity": mug_now,
                    "variant_id": 111,
                },
                {
                    "id": 2,
                    "sku": "SCS-CAP",
                    "quantity": 2,
                    "current_quantity": cap_now,
                    "variant_id": 333,
                },
            ]

        def post(topic, minute, line_items, refunds=()):
            return self.post_shopify_order(
                topic, 5151, minute, line_items, refunds=list(refunds)
            )

        def mug_taken():
            self.env.invalidate_all()
            return free_mug - self.product_a.free_qty

        post("orders/create", 1, lines(3, 2))
        self.assertEqual(
            self.held(gid, self.shopify), {"SCS-MUG": (3, 3), "SCS-CAP": (2, 2)}
        )
        self.assertEqual(mug_taken(), 3)
        # an edit removed two mugs: released at once
        event = post("orders/updated", 2, lines(1, 2))
        self.assertEqual(event.state, "applied", event.reason)
        self.assertIn("released 2 SCS-MUG", event.reason)
        self.assertEqual(
            self.held(gid, self.shopify), {"SCS-MUG": (1, 1), "SCS-CAP": (2, 2)}
        )
        self.assertEqual(mug_taken(), 1)
        # a cap refunded and restocked: its own event releases it
        refund_line = {
            "line_item_id": 2,
            "quantity": 1,
            "restock_type": "return",
            "line_item": {"id": 2, "sku": "SCS-CAP", "variant_id": 333},
        }
        body = json.dumps(
            {
                "id": 61,
                "order_id": 5151,
                "created_at": "2026-11-22T10:03:00Z",
                "refund_line_items": [refund_line],
            }
        ).encode()
        headers = {
            **signatures.sign_shopify("shpss_test_secret", body),
            "X-Shopify-Topic": "refunds/create",
            "X-Shopify-Event-Id": "evt-edit-refund",
            "X-Shopify-Triggered-At": "2026-11-22T10:03:00Z",
            "Content-Type": "application/json",
        }
        self.assertEqual(
            self.url_open(url, data=body, headers=headers).status_code, 200
        )
        self.run_jobs("_scs_job_apply_inbound")
        self.assertEqual(
            self.held(gid, self.shopify), {"SCS-MUG": (1, 1), "SCS-CAP": (1, 1)}
        )
        # the update the refund fired carries it: the cap is not released twice
        refunds = [{"id": 61, "refund_line_items": [refund_line]}]
        post("orders/updated", 4, lines(1, 1), refunds)
        self.assertEqual(
            self.held(gid, self.shopify), {"SCS-MUG": (1, 1), "SCS-CAP": (1, 1)}
        )
        # an older update, delivered late, is stale
        event = post("orders/updated", 2, lines(3, 2))
        self.assertEqual(event.state, "stale")
        self.assertEqual(
            self.held(gid, self.shopify), {"SCS-MUG": (1, 1), "SCS-CAP": (1, 1)}
        )
        # the last mug removed too; a new edit adds one back later
        post("orders/updated", 5, lines(0, 1), refunds)
        self.assertEqual(self.held(gid, self.shopify), {"SCS-CAP": (1, 1)})
        self.assertEqual(mug_taken(), 0)
        post(
            "orders/updated",
            6,
            lines(0, 1)
            + [
                {
                    "id": 3,
                    "sku": "SCS-MUG",
                    "quantity": 1,
                    "current_quantity": 1,
                    "variant_id": 111,
                }
            ],
            refunds,
        )
        self.assertEqual(
            self.held(gid, self.shopify), {"SCS-MUG": (1, 1), "SCS-CAP": (1, 1)}
        )
        self.assertEqual(mug_taken(), 1)

    def test_shopify_emptied_order_reserves_what_an_edit_adds_back(self):
        """An edit that removes every unit cancels the order's transfer; the
        order is still open, and its next edit reserves what it adds back, as
        it does for an order that named no bound SKU. An order cancelled as a
        whole, or whose transfer was cancelled in Odoo, is not reserved again
        by an update."""
        gid = "gid://shopify/Order/5353"
        mug = {"id": 1, "sku": "SCS-MUG", "quantity": 1, "variant_id": 111}
        again = {"id": 3, "sku": "SCS-MUG", "quantity": 2, "variant_id": 111}

        def post(minute, line_items, topic="orders/updated", **extra):
            return self.post_shopify_order(
                topic, 5353, minute, line_items, refunds=[], **extra
            )

        post(1, [mug], topic="orders/create")
        post(2, [dict(mug, current_quantity=0)])
        self.assertEqual(self.held(gid, self.shopify), {})
        event = post(3, [dict(mug, current_quantity=0), again])
        self.assertEqual(event.state, "applied", event.reason)
        self.assertEqual(self.held(gid, self.shopify), {"SCS-MUG": (2, 2)})
        post(
            4,
            [dict(mug, current_quantity=0), again],
            cancelled_at="2026-11-22T10:04:00Z",
        )
        self.assertEqual(self.held(gid, self.shopify), {})
        event = post(5, [dict(mug, current_quantity=0), again])
        self.assertEqual(event.state, "skipped", event.reason)
        self.assertEqual(self.held(gid, self.shopify), {})
        # a transfer cancelled in Odoo while its order held units: an edit
        # does not reserve the order again
        self.post_shopify_order("orders/create", 5454, 1, [mug], refunds=[])
        other = "gid://shopify/Order/5454"
        self.reservations(self.shopify, other).action_cancel()
        event = self.post_shopify_order(
            "orders/updated", 5454, 2, [mug, again], refunds=[]
        )
        self.assertEqual(event.state, "skipped", event.reason)
        self.assertEqual(self.held(other, self.shopify), {})
        # an order that named no bound SKU, to which an edit adds one
        unbound = {"id": 7, "sku": "SCS-GIFT-CARD", "quantity": 1}
        event = self.post_shopify_order("orders/create", 5555, 1, [unbound])
        self.assertEqual(event.state, "attention", event.reason)
        event = self.post_shopify_order(
            "orders/updated", 5555, 2, [unbound, mug], refunds=[]
        )
        self.assertEqual(event.state, "applied", event.reason)
        self.assertEqual(
            self.held("gid://shopify/Order/5555", self.shopify), {"SCS-MUG": (1, 1)}
        )
        # an update of an order never recorded here still reserves nothing
        event = self.post_shopify_order("orders/updated", 5656, 2, [mug], refunds=[])
        self.assertEqual(event.state, "skipped", event.reason)

    def shopify_fetching_from_a_simulator(self):
        """A Shopify simulator selling the mug, whose orders the Shopify
        channel fetches from 09:00 on the test webhooks' day."""
        sim = ShopifySimulator().start()
        self.addCleanup(sim.stop)
        sim.add_item("SCS-MUG")
        self.shopify.sudo().write(
            {
                "base_url": sim.url,
                "access_token": sim.access_token,
                "external_location_id": sim.location_id,
                "fetch_orders": True,
                "last_order_fetch_at": "2026-11-22 09:00:00",
                "order_fetch_overlap": 0,
            }
        )
        return sim

    def test_shopify_fetched_order_agrees_with_its_update(self):
        """The reconciliation pass reads an edited order as its update did:
        the units the edit removed stay released."""
        sim = self.shopify_fetching_from_a_simulator()
        gid = "gid://shopify/Order/5252"
        line = {"id": 1, "sku": "SCS-MUG", "quantity": 3, "variant_id": 111}
        self.post_shopify_order("orders/create", 5252, 1, [line])
        self.post_shopify_order(
            "orders/updated", 5252, 2, [dict(line, current_quantity=1)], refunds=[]
        )
        self.assertEqual(self.held(gid, self.shopify), {"SCS-MUG": (1, 1)})
        # the same order on the shop, as the reconciliation pass reads it,
        # touched since its update (else the pass leaves it out: applied)
        sim.add_order([("SCS-MUG", 3)], updated_at=at_ten(1), order_id=5252)
        sim.edit_order(gid, "SCS-MUG", 2, updated_at=at_ten(3))
        self.assertEqual(self.shopify._scs_fetch_orders(), 1)
        fetched = self.env["sync.event"].search(
            [
                ("channel_id", "=", self.shopify.id),
                ("idempotency_key", "=like", "poll:%"),
            ]
        )
        self.assertEqual(fetched.state, "applied", fetched.reason)
        self.assertEqual(self.held(gid, self.shopify), {"SCS-MUG": (1, 1)})

    def test_pass_applies_orders_the_webhooks_applied_as_it_reads_them(self):
        """A pass applies every order of its window as it reads it, those
        the webhooks applied too: the shop may hold a change of the same
        second that no webhook told (an edit), or a line whose SKU was
        bound since. Applying an order twice reserves it once."""
        sim = self.shopify_fetching_from_a_simulator()
        mug = {"id": 1, "sku": "SCS-MUG", "quantity": 2, "variant_id": 111}
        gift = {"id": 2, "sku": "SCS-GIFT-CARD", "quantity": 1}
        self.post_shopify_order("orders/create", 6161, 1, [mug])
        unbound = self.post_shopify_order("orders/create", 6262, 1, [gift])
        self.assertEqual(unbound.state, "attention", unbound.reason)
        gid = "gid://shopify/Order/6161"
        self.assertEqual(self.held(gid, self.shopify), {"SCS-MUG": (2, 2)})
        # the shop: the same order with 5 mugs, stamped the same second
        sim.add_order([("SCS-MUG", 5)], updated_at=at_ten(1), order_id=6161)
        sim.add_order([("SCS-GIFT-CARD", 1)], updated_at=at_ten(1), order_id=6262)
        self.assertEqual(self.shopify._scs_fetch_orders(), 2)
        self.assertEqual(self.held(gid, self.shopify), {"SCS-MUG": (5, 5)})
        # read again: the same states, nothing new, nothing reserved twice
        self.shopify.sudo().last_order_fetch_at = "2026-11-22 09:00:00"
        self.assertEqual(self.shopify._scs_fetch_orders(), 0)
        self.assertEqual(self.held(gid, self.shopify), {"SCS-MUG": (5, 5)})

    def test_shopify_updates_in_every_delivery_order(self):
        """orders/create and two orders/updated, delivered in every order:
        the transfer holds the newest update's lines."""
        self.bind(
            self.shopify, self.product_b, external_id="gid://shopify/ProductVariant/333"
        )
        steps = (("orders/create", 1), ("orders/updated", 2), ("orders/updated", 3))

        def item(line_id, sku, variant, qty):
            return {"id": line_id, "sku": sku, "quantity": qty, "variant_id": variant}

        # every state differs from the others, both ways; the last one's
        # edit removed a mug (its line keeps the quantity ordered)
        lines = {
            1: [item(1, "SCS-MUG", 111, 1)],
            2: [item(1, "SCS-MUG", 111, 2), item(2, "SCS-CAP", 333, 1)],
            3: [
                dict(item(1, "SCS-MUG", 111, 2), current_quantity=1),
                item(2, "SCS-CAP", 333, 2),
            ],
        }
        for n, deliveries in enumerate(itertools.permutations(steps)):
            order_id = 4900 + n
            for topic, minute in deliveries:
                self.post_shopify_order(
                    topic, order_id, minute, lines[minute], refunds=[]
                )
            gid = f"gid://shopify/Order/{order_id}"
            expected = {}
            for line in lines[3]:
                sold = line.get("current_quantity", line["quantity"])
                expected[line["sku"]] = (sold, sold)
            self.assertEqual(self.held(gid, self.shopify), expected, list(deliveries))
            self.reservations(self.shopify, gid).action_cancel()

    def test_shopify_updates_keep_the_run_s_batch(self):
        """A burst in which each creation comes with its orders/updated (as
        Shopify sends them): the creations are still reserved in one batch,
        and each update is applied after it."""
        self.bind(
            self.shopify, self.product_b, external_id="gid://shopify/ProductVariant/333"
        )
        mug = {"id": 1, "sku": "SCS-MUG", "quantity": 1, "variant_id": 111}
        cap = {"id": 2, "sku": "SCS-CAP", "quantity": 2, "variant_id": 333}
        post = functools.partial(self.post_shopify_order, apply=False)
        post("orders/create", 5001, 1, [mug])
        post("orders/updated", 5001, 2, [mug, cap])  # an edit added 2 caps
        post("orders/create", 5002, 1, [mug])
        post("orders/updated", 5002, 1, [mug])  # the same state
        post("orders/create", 5003, 2, [mug])
        post("orders/updated", 5003, 1, [dict(mug, quantity=2)])  # older: stale
        original = SyncEventOrder._scs_reserve_many
        batches = []

        def reserve_many(event, channel, orders):
            batches.append(sorted(order_id for order_id, _known in orders))
            return original(event, channel, orders)

        with patch.object(SyncEventOrder, "_scs_reserve_many", reserve_many):
            self.run_jobs("_scs_job_apply_inbound")
        gids = [f"gid://shopify/Order/{n}" for n in (5001, 5002, 5003)]
        self.assertEqual(batches, [gids])
        self.assertEqual(
            self.held(gids[0], self.shopify), {"SCS-MUG": (1, 1), "SCS-CAP": (2, 2)}
        )
        self.assertEqual(self.held(gids[1], self.shopify), {"SCS-MUG": (1, 1)})
        self.assertEqual(self.held(gids[2], self.shopify), {"SCS-MUG": (1, 1)})
        updates = self.env["sync.event"].search(
            [
                ("channel_id", "=", self.shopify.id),
                ("idempotency_key", "like", "orders/updated:%"),
            ],
            order="external_ref",
        )
        self.assertEqual(updates.mapped("state"), ["applied", "applied", "stale"])

    def test_signed_json_labelled_as_a_form_is_accepted(self):
        """A sender that labels its JSON body as a form: Odoo parses forms
        before the handler, which still verifies the raw bytes and reserves
        the order once. A multipart label without boundary is no 500."""
        free = self.product_a.free_qty
        body = json.dumps(self.order_payload("G-FORM", qty=2)).encode()
        url = URL + self.generic.webhook_token
        for content_type, status in (
            ("application/x-www-form-urlencoded", 200),
            ("application/x-www-form-urlencoded; charset=utf-8", 200),
            ("multipart/form-data", None),
        ):
            headers = signatures.sign_standard(
                self.secret, "msg_form", int(time.time()), body
            )
            headers["Content-Type"] = content_type
            res = self.url_open(url, data=body, headers=headers)
            if status:
                self.assertEqual(res.status_code, status, (content_type, res.text))
            else:
                self.assertIn(res.status_code, (200, 400), res.text)
        self.run_jobs("_scs_job_apply_inbound")
        self.assertEqual(
            self.env["sync.event"].search_count([("idempotency_key", "=", "msg_form")]),
            1,
        )
        self.assertEqual(len(self.reservations(self.generic, "G-FORM")), 1)
        self.product_a.invalidate_recordset()
        self.assertEqual(self.product_a.free_qty, free - 2)

    def test_malformed_form_bodies_are_refused_in_json(self):
        """Odoo parses a form body before the handler: a multipart body it
        cannot parse, or whose part has no name (no keyword argument can
        carry it), is a JSON 400 whatever the token, and writes nothing."""
        before = self.counts()
        part = b"--zz\r\nContent-Disposition: form-data%s\r\n%s\r\nx\r\n--zz--\r\n"
        cases = [
            ("boundary=zz", part % (b"; name=", b"")),
            ("boundary=zz", part % (b"", b"")),
            ("boundary=zz", part % (b'; filename="a"', b"")),
            ("boundary=", b"--\r\n\r\n"),
            (
                "boundary=zz",
                part % (b'; name="a"', b"Content-Type: text/plain; charset=bogus\r\n"),
            ),
        ]
        for token in (self.woo.webhook_token, "no-such-token"):
            for params, body in cases:
                res = self.url_open(
                    URL + token,
                    data=body,
                    headers={"Content-Type": f"multipart/form-data; {params}"},
                )
                self.assertEqual(res.status_code, 400, (token, body, res.text))
                self.assertIn("malformed form body", res.json()["error"])
        self.assertEqual(self.counts(), before)
        # a well-formed form is still the WooCommerce ping it was
        ping = self.url_open(URL + self.woo.webhook_token, data={"webhook_id": "3"})
        self.assertEqual(ping.json(), {"status": "ping"})

    def test_woocommerce_ping_and_order(self):
        before = self.counts()
        url = URL + self.woo.webhook_token
        ping = self.url_open(url, data={"webhook_id": "12"})
        self.assertEqual(ping.status_code, 200)
        self.assertEqual(self.counts(), before, "the ping writes nothing")
        body = json.dumps(
            {
                "id": 901,
                "status": "processing",
                "date_modified_gmt": "2026-11-22T10:00:00",
                "line_items": [
                    {"id": 5, "product_id": 55, "sku": "SCS-MUG", "quantity": 1}
                ],
            }
        ).encode()
        secret = signatures.wp_specialchars_decode("woo&amp;secret").encode()
        sig = base64.b64encode(hmac.new(secret, body, hashlib.sha256).digest()).decode()
        headers = {
            "X-WC-Webhook-Signature": sig,
            "X-WC-Webhook-Topic": "order.created",
            "X-WC-Webhook-Delivery-ID": "d1",
            "Content-Type": "application/json",
        }
        res = self.url_open(url, data=body, headers=headers)
        self.assertEqual(res.status_code, 200, res.text)
        self.run_jobs()
        self.assertEqual(len(self.reservations(self.woo, "901")), 1)

    # -- rejected: clear status, nothing written -------------------------------
    def test_rejections_write_nothing(self):
        before = self.counts()
        token_url = URL + self.generic.webhook_token
        body = json.dumps(self.order_payload("G-BAD")).encode()
        cases = []
        # missing signature
        cases.append(
            (
                self.url_open(
                    token_url, data=body, headers={"Content-Type": "application/json"}
                ),
                401,
            )
        )
        # wrong secret
        cases.append(
            (
                self.post_generic(
                    self.order_payload("G-BAD"),
                    secret=signatures.generate_standard_secret(),
                ),
                401,
            )
        )
        # stale and future timestamps
        cases.append(
            (
                self.post_generic(
                    self.order_payload("G-BAD"), timestamp=time.time() - 600
                ),
                401,
            )
        )
        cases.append(
            (
                self.post_generic(
                    self.order_payload("G-BAD"), timestamp=time.time() + 600
                ),
                401,
            )
        )
        # tampered body under a valid signature
        headers = signatures.sign_standard(self.secret, "msg_t", int(time.time()), body)
        cases.append((self.url_open(token_url, data=body + b"x", headers=headers), 401))
        # malformed JSON, correctly signed
        cases.append((self.post_generic(None, raw=b"{not json"), 400))
        # JSON that does not fit the topic
        cases.append(
            (self.post_generic({"type": "order.created", "data": {"lines": "x"}}), 400)
        )
        # values no channel sends, each of which used to be a 500: NaN (not
        # JSON), an infinite level (1e400), a NUL character (PostgreSQL
        # cannot store it), JSON nested beyond Python's recursion limit
        order = json.dumps(self.order_payload("G-NAN"))
        nan = order.replace('"quantity": 1', '"quantity": NaN', 1)
        self.assertNotEqual(nan, order)
        cases.append((self.post_generic(None, raw=nan.encode()), 400))
        cases.append(
            (
                self.post_generic(
                    None,
                    raw=b'{"type": "inventory.updated", "timestamp":'
                    b' "2026-11-22T10:00:00Z", "data": {"sku": "SCS-MUG",'
                    b' "quantity": 1e400}}',
                ),
                400,
            )
        )
        nul = self.order_payload("G-NUL")
        nul["data"]["lines"][0]["sku"] = "SCS-\x00MUG"
        cases.append((self.post_generic(nul), 400))
        cases.append((self.post_generic(None, raw=b"[" * 50000 + b"]" * 50000), 400))
        # an error that quotes the sender's text: a lone surrogate (which UTF-8
        # cannot encode; this was a 500) and accented text
        for event_type in ("\\ud800", "commande.cr\\u00e9\\u00e9e"):
            raw = b'{"type": "' + event_type.encode() + b'", "timestamp": "x"}'
            cases.append((self.post_generic(None, raw=raw), 400))
        # unknown token and disabled channel: same 404
        unknown = self.url_open(
            URL + "nope" + self.generic.webhook_token[4:], data=body, headers=headers
        )
        cases.append((unknown, 404))
        self.generic.active = False
        disabled = self.post_generic(self.order_payload("G-BAD"))
        cases.append((disabled, 404))
        self.assertEqual(unknown.json(), disabled.json())
        self.generic.active = True
        # oversize body
        self.env["ir.config_parameter"].set_param(
            "stock_channel_sync.webhook_max_bytes", 512
        )
        big = self.order_payload("G-BIG")
        big["data"]["note"] = "x" * 2048
        cases.append((self.post_generic(big), 413))
        for res, status in cases:
            self.assertEqual(res.status_code, status, res.text)
            self.assertIn("error", res.json())
        # chunked bodies have no length to check first: JSON, and form
        # bodies, which Odoo parses before the handler runs
        raw = json.dumps(big).encode()
        multipart = (
            b'--XB\r\nContent-Disposition: form-data; name="f"; filename="f.json"'
            b"\r\nContent-Type: application/json\r\n\r\n" + raw + b"\r\n--XB--\r\n"
        )
        url = URL + self.generic.webhook_token
        for content_type, body in (
            ("application/json", raw),
            ("application/x-www-form-urlencoded", raw),
            ("multipart/form-data; boundary=XB", multipart),
        ):
            headers = signatures.sign_standard(
                self.secret, "msg_chunked", int(time.time()), body
            )
            headers["Content-Type"] = content_type
            chunks = (body[i : i + 256] for i in range(0, len(body), 256))
            res = self.url_open(url, data=chunks, headers=headers)
            self.assertEqual(res.status_code, 413, (content_type, res.text))
            self.assertNotIn("Content-Length", res.request.headers)
            self.assertIn("error", res.json())
            # and with their length declared: refused before any reading, in
            # JSON too (Odoo would answer a form's 413 in HTML)
            res = self.url_open(url, data=body, headers=headers)
            self.assertEqual(res.status_code, 413, (content_type, res.text))
            self.assertEqual(res.request.headers["Content-Length"], str(len(body)))
            self.assertIn("larger than 512 bytes", res.json()["error"])
        self.assertEqual(self.counts(), before)

    def send_chunked(self, chunks, content_type="application/json", headers=None):
        """POST ``chunks`` with ``Transfer-Encoding: chunked`` on a raw socket.

        Returns ``(status, body, bytes sent)``; sending stops when the server
        closes the connection, and the answer is read either way.
        """
        # the test server serves only requests that carry the test's cookie
        with self.allow_requests():
            cookie = "; ".join(f"{k}={v}" for k, v in self.opener.cookies.items())
            head = {
                "Host": "127.0.0.1",
                "Content-Type": content_type,
                "Transfer-Encoding": "chunked",
                "Cookie": cookie,
                **(headers or {}),
            }
            return self._send_chunked(head, chunks)

    def _send_chunked(self, head, chunks):
        sock = socket.create_connection(("127.0.0.1", self.http_port()), timeout=30)
        sent = 0
        try:
            sock.sendall(
                (
                    f"POST {URL}{self.generic.webhook_token} HTTP/1.1\r\n"
                    + "".join(f"{key}: {value}\r\n" for key, value in head.items())
                    + "\r\n"
                ).encode()
            )
            for chunk in chunks:
                try:
                    sock.sendall(chunk)
                except OSError:
                    break  # the server answered and closed: read its answer
                sent += len(chunk)
            answer = b""
            while True:
                try:
                    data = sock.recv(65536)
                except OSError:
                    break
                if not data:
                    break
                answer += data
        finally:
            sock.close()
        head, _sep, body = answer.partition(b"\r\n\r\n")
        status = int(head.split()[1]) if head else 0
        return status, body, sent

    def test_chunked_body_is_read_only_to_its_limit(self):
        """An endless chunked body costs a worker the limit, not the body."""
        self.env["ir.config_parameter"].set_param(
            "stock_channel_sync.webhook_max_bytes", 512
        )
        before = self.counts()
        piece = b"x" * 65536
        framed = b"%x\r\n%s\r\n" % (len(piece), piece)
        total = 256 * len(framed)  # 16 MiB
        status, body, sent = self.send_chunked(framed for _i in range(256))
        self.assertEqual(status, 413, body)
        self.assertIn(b"larger than 512 bytes", body)
        # the server stopped reading after its cap and a bounded drain
        self.assertLess(sent, total)
        # a broken chunked encoding is the sender's error: 400, not 500
        for broken in (b"zz\r\nabc\r\n0\r\n\r\n", b"3\r\nabcXX0\r\n\r\n"):
            for content_type in (
                "application/json",
                "application/x-www-form-urlencoded",
            ):
                started = time.monotonic()
                status, body, _sent = self.send_chunked([broken], content_type)
                self.assertEqual(status, 400, (broken, content_type, body))
                self.assertIn(b"broken chunked body", body)
                # answered at once, not after the socket's timeout
                self.assertLess(time.monotonic() - started, 1.5)
        self.assertEqual(self.counts(), before)
        # a chunked delivery under the limit is accepted as any other
        self.env["ir.config_parameter"].set_param(
            "stock_channel_sync.webhook_max_bytes", 4096
        )
        body = json.dumps(self.order_payload("G-CHUNKED", qty=1)).encode()
        signed = signatures.sign_standard(
            self.secret, "msg_chunked_ok", int(time.time()), body
        )
        framed = [
            b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:40], body[40:])
        ]
        status, answer, _sent = self.send_chunked(
            framed + [b"0\r\n\r\n"], headers=signed
        )
        self.assertEqual(status, 200, answer)
        self.assertEqual(json.loads(answer)["status"], "accepted")
        self.assertEqual(
            self.env["sync.event"].search_count(
                [("idempotency_key", "=", "msg_chunked_ok")]
            ),
            1,
        )

    def test_signed_bodies_the_database_cannot_hold_are_400(self):
        """Signed, well-formed JSON whose values no index or encoder takes:
        a clear 400 and nothing written, never a 500."""
        before = self.counts()
        long_id = "".join(uuid.uuid4().hex for _i in range(100))  # 3,200 chars
        deep = "[" * 500 + "]" * 500
        bodies = {
            "long order id": json.dumps(self.order_payload(long_id)).encode(),
            "long sku": json.dumps(
                {"type": "inventory.updated", "data": {"sku": long_id, "quantity": 1}}
            ).encode(),
            "lone surrogate": (
                b'{"type": "inventory.updated",'
                b' "data": {"sku": "SCS-\\ud800", "quantity": 1}}'
            ),
            "deep nesting": json.dumps(
                {
                    "type": "order.created",
                    "data": {
                        "id": "G-DEEP",
                        "note": "DEEP",
                        "lines": [{"sku": "SCS-MUG", "quantity": 1}],
                    },
                }
            )
            .replace('"DEEP"', deep)
            .encode(),
            # JSON must be UTF-8 between systems; Python would parse this
            "utf-16 body": json.dumps(self.order_payload("G-UTF16")).encode("utf-16"),
        }
        for label, body in bodies.items():
            res = self.post_generic(None, raw=body)
            self.assertEqual(res.status_code, 400, (label, res.text))
            self.assertIn("error", res.json())
        self.assertEqual(self.counts(), before)
        # a surrogate pair is a character like any other
        ok = self.post_generic(
            None,
            raw=b'{"type": "inventory.updated",'
            b' "data": {"sku": "SCS-\\ud83d\\ude00", "quantity": 1}}',
        )
        self.assertEqual(ok.status_code, 200, ok.text)

    def test_event_dated_far_ahead_does_not_block_its_item(self):
        """A level stamped in the year 9999 is ordered by its arrival: the
        next level of the item still applies."""
        self.b_generic.write({"push_state": "ok", "last_pushed_qty": 10})
        for stamp, qty in (("9999-12-31 23:59:59", 4), (None, 6)):
            payload = {
                "type": "inventory.updated",
                "timestamp": stamp or fields.Datetime.to_string(fields.Datetime.now()),
                "data": {"sku": "SCS-MUG", "quantity": qty},
            }
            self.assertEqual(self.post_generic(payload).status_code, 200)
            self.run_jobs("_scs_job_apply_inbound")
            self.discard_jobs()
        self.b_generic.invalidate_recordset()
        self.assertEqual(self.b_generic.last_seen_qty, 6)
        self.assertFalse(
            self.env["sync.event"].search_count(
                [("channel_id", "=", self.generic.id), ("state", "=", "stale")]
            )
        )

    def test_concurrent_duplicate_deliveries(self):
        payload = self.order_payload("G-CONC", qty=1)
        body = json.dumps(payload).encode()
        headers = signatures.sign_standard(
            self.secret, "msg_conc", int(time.time()), body
        )
        url = URL + self.generic.webhook_token
        results = self.post_concurrently([(url, body, headers)] * 6)
        self.assertEqual([r.status_code for r in results], [200] * 6)
        self.assertEqual(
            sorted(r.json()["status"] for r in results),
            ["accepted"] + ["duplicate"] * 5,
        )
        self.assertEqual(
            self.env["sync.event"].search_count([("idempotency_key", "=", "msg_conc")]),
            1,
        )
        self.run_jobs()
        self.assertEqual(len(self.reservations(self.generic, "G-CONC")), 1)

    # -- ordering ---------------------------------------------------------------
    def test_out_of_order_property(self):
        """Whatever the delivery order, the final state is the newest event's."""
        rng = random.Random(20261122)
        base = fields.Datetime.now()
        for example in range(12):
            order_id = f"G-ORD-{example}"
            steps = [
                ("order.created", 1),
                ("order.paid", 2),
                ("order.cancelled", 3),
            ]
            # half of the examples end open: the newest event re-opens the order
            if example % 2:
                steps.append(("order.paid", 4))
            deliveries = [
                (
                    event,
                    self.order_payload(
                        order_id, event=event, ts=fields.Datetime.add(base, seconds=sec)
                    ),
                )
                for event, sec in steps
            ]
            rng.shuffle(deliveries)
            for _event, payload in deliveries:
                self.assertEqual(self.post_generic(payload).status_code, 200)
                self.run_jobs()
            newest = max(steps, key=lambda s: s[1])[0]
            expected_open = newest != "order.cancelled"
            self.assertEqual(
                bool(self.reservations(self.generic, order_id)),
                expected_open,
                f"{order_id}: deliveries {[d[0] for d in deliveries]}",
            )

    @staticmethod
    def level_payload(base, sec, qty, sku="SCS-MUG"):
        """A generic inventory level stamped ``sec`` seconds after ``base``."""
        return {
            "type": "inventory.updated",
            "timestamp": fields.Datetime.to_string(
                fields.Datetime.add(base, seconds=sec)
            ),
            "data": {"sku": sku, "quantity": qty},
        }

    def test_inventory_levels_last_write_wins(self):
        rng = random.Random(7)
        base = fields.Datetime.now()
        self.b_generic.write({"push_state": "ok", "last_pushed_qty": 10})
        levels = [(i, rng.randint(0, 50)) for i in range(1, 9)]
        order = levels[:]
        rng.shuffle(order)
        for sec, qty in order:
            payload = self.level_payload(base, sec, qty)
            self.assertEqual(self.post_generic(payload).status_code, 200)
            self.run_jobs("_scs_job_apply_inbound")
            self.discard_jobs()
        self.b_generic.invalidate_recordset()
        self.assertEqual(self.b_generic.last_seen_qty, levels[-1][1])
        stale = self.env["sync.event"].search_count(
            [
                ("channel_id", "=", self.generic.id),
                ("kind", "=", "inventory"),
                ("state", "=", "stale"),
            ]
        )
        expected_stale, newest = 0, 0
        for sec, _qty in order:
            expected_stale += sec < newest
            newest = max(newest, sec)
        self.assertEqual(stale, expected_stale)

    def test_unreadable_event_does_not_hold_back_the_channel(self):
        """A queued row whose normal form is not a JSON object is a dead
        letter with an alert; the channel's other events are applied."""
        self.b_generic.write({"push_state": "ok", "last_pushed_qty": 10})
        base = fields.Datetime.now()
        for sec, qty in ((1, 7), (2, 9)):
            payload = self.level_payload(base, sec, qty)
            self.assertEqual(self.post_generic(payload).status_code, 200)
        order = self.order_payload("G-BROKEN", qty=1)
        self.assertEqual(self.post_generic(order).status_code, 200)
        events = self.env["sync.event"].search(
            [("channel_id", "=", self.generic.id), ("direction", "=", "in")],
            order="id",
        )
        self.assertEqual(events.mapped("state"), ["queued"] * 3)
        broken_level, good_level, broken_order = events
        self.env.cr.execute(
            "UPDATE sync_event SET data = CASE id WHEN %s THEN '{\"levels\": [' "
            "ELSE '[1]' END WHERE id IN %s",
            (broken_level.id, (broken_level.id, broken_order.id)),
        )
        events.invalidate_recordset()
        free = self.product_a.free_qty
        self.run_jobs("_scs_job_apply_inbound")
        events.invalidate_recordset()
        self.assertEqual(broken_level.state, "dead")
        self.assertIn("not readable", broken_level.error)
        self.assertEqual(broken_order.state, "dead")
        self.assertIn("not an object", broken_order.error)
        self.assertEqual(good_level.state, "applied")
        self.b_generic.invalidate_recordset()
        self.assertEqual(self.b_generic.last_seen_qty, 9)
        self.product_a.invalidate_recordset()
        self.assertEqual(self.product_a.free_qty, free, "nothing reserved")
        activities = self.env["mail.activity"].search(
            [("res_model", "=", "sync.channel"), ("res_id", "=", self.generic.id)]
        )
        self.assertTrue(activities)

    def test_two_channels_sell_the_same_sku(self):
        free = self.product_a.free_qty
        generic_body = self.order_payload("G-RACE", qty=3)
        woo_body = json.dumps(
            {
                "id": 902,
                "status": "processing",
                "date_modified_gmt": "2026-11-22T10:00:00",
                "line_items": [
                    {"id": 6, "product_id": 55, "sku": "SCS-MUG", "quantity": 4}
                ],
            }
        ).encode()
        secret = signatures.wp_specialchars_decode("woo&amp;secret").encode()
        sig = base64.b64encode(
            hmac.new(secret, woo_body, hashlib.sha256).digest()
        ).decode()
        generic_raw = json.dumps(generic_body).encode()
        generic_headers = signatures.sign_standard(
            self.secret, "msg_race", int(time.time()), generic_raw
        )
        woo_headers = {
            "X-WC-Webhook-Signature": sig,
            "X-WC-Webhook-Topic": "order.created",
            "Content-Type": "application/json",
        }
        results = self.post_concurrently(
            [
                (URL + self.generic.webhook_token, generic_raw, generic_headers),
                (URL + self.woo.webhook_token, woo_body, woo_headers),
            ]
        )
        self.assertEqual([r.status_code for r in results], [200, 200])
        self.run_jobs()
        self.product_a.invalidate_recordset()
        self.assertEqual(self.product_a.free_qty, free - 7, "no lost update")

    # -- attention cases ------------------------------------------------------------
    def test_unknown_sku_and_oversell(self):
        payload = self.order_payload("G-UNK", sku="NOT-BOUND")
        self.assertEqual(self.post_generic(payload).status_code, 200)
        self.run_jobs()
        unknown = self.env["sync.event"].search([("kind", "=", "unknown_sku")])
        self.assertEqual(unknown.sku, "NOT-BOUND")
        self.assertEqual(unknown.state, "attention")
        # oversell: the channel was offered 2, a buyer takes 5
        self.offer(2, fields.Datetime.now() - timedelta(minutes=1))
        self.generic.sync_enabled = True
        self.assertEqual(
            self.post_generic(self.order_payload("G-OVER", qty=5)).status_code, 200
        )
        self.run_jobs("_scs_job_apply_inbound")
        oversell = self.env["sync.event"].search([("kind", "=", "oversell")])
        self.assertEqual(len(oversell), 1)
        self.assertIn("was offered 2 and 5 could be reserved", oversell.error)
        self.generic.invalidate_recordset()
        self.assertEqual(self.generic.oversell_count, 1)
        action = self.generic.action_view_oversells()
        self.assertEqual(self.env["sync.event"].search(action["domain"]), oversell)
        self.assertEqual(oversell.state, "attention")
        activities = self.env["mail.activity"].search(
            [("res_model", "=", "sync.channel"), ("res_id", "=", self.generic.id)]
        )
        alert = activities.filtered(lambda a: a.summary == "Oversell on SCS-MUG")
        self.assertEqual(len(alert), 1)
        # the incident's figures, not the whole line as if none was there
        self.assertIn("was offered 2 and 5 could be reserved", str(alert.note))
        forced = self.sync_jobs("_scs_job_push_sku").filtered(
            lambda j: j.identity_key.endswith(".force")
        )
        self.assertEqual(len(forced), 1, "every channel is pushed at once")

    def test_archived_binding_is_neither_pushed_nor_reserved(self):
        """An archived binding: a stock change pushes nothing to it, and an
        order for its SKU is logged as an unknown SKU, not reserved."""
        self.generic.sync_enabled = True
        self.b_generic.active = False
        self.commit_point()
        self.discard_jobs()
        self.move_stock(self.product_a, 1)
        self.commit_point()
        self.run_jobs("_scs_job_push_sku")
        self.assertFalse(
            self.env["sync.event"].search(
                [("channel_id", "=", self.generic.id), ("direction", "=", "out")]
            )
        )
        free = self.product_a.free_qty
        self.post_generic(self.order_payload("G-ARCH"))
        self.run_jobs("_scs_job_apply_inbound")
        unknown = self.env["sync.event"].search(
            [("channel_id", "=", self.generic.id), ("kind", "=", "unknown_sku")]
        )
        self.assertEqual(unknown.sku, "SCS-MUG")
        self.assertFalse(self.reservations(self.generic, "G-ARCH"))
        self.product_a.invalidate_recordset()
        self.assertEqual(self.product_a.free_qty, free)

    def post_lines(self, order_id, lines):
        """An order of ``lines`` (sku, quantity) delivered and applied:
        ``(its event, the unknown SKU events)``."""
        payload = self.order_payload(order_id)
        payload["data"]["lines"] = [{"sku": sku, "quantity": q} for sku, q in lines]
        self.assertEqual(self.post_generic(payload).status_code, 200)
        self.run_jobs("_scs_job_apply_inbound")
        Event = self.env["sync.event"]
        original = Event.search(
            [("external_ref", "=", order_id), ("kind", "=", "order")]
        )
        return original, Event.search([("kind", "=", "unknown_sku")])

    def test_a_replay_that_applies_resolves_what_needed_attention(self):
        """An order of an archived SKU and of a SKU never bound needs
        attention. Its binding back, the order's replay reserves it: the
        original and its unknown SKU now bound are closed as resolved, the
        SKU still unknown keeps its attention."""
        self.b_generic.active = False
        original, unknown = self.post_lines(
            "G-BACK", [("SCS-MUG", 2), ("NOT-BOUND", 1)]
        )
        self.assertEqual(original.state, "attention")
        self.assertEqual(sorted(unknown.mapped("sku")), ["NOT-BOUND", "SCS-MUG"])
        self.b_generic.active = True
        free = self.product_a.free_qty
        replay = original.action_replay()
        self.run_jobs("_scs_job_apply")
        self.assertEqual(replay.state, "applied", replay.error)
        self.assertEqual(self.held("G-BACK"), {"SCS-MUG": (2, 2)})
        self.product_a.invalidate_recordset()
        self.assertEqual(self.product_a.free_qty, free - 2)
        self.assertEqual(original.state, "discarded")
        self.assertIn("resolved by its replay", original.reason)
        mug = unknown.filtered(lambda e: e.sku == "SCS-MUG")
        self.assertEqual(mug.state, "discarded")
        self.assertEqual(mug.discarded_from, "attention")
        self.assertEqual((unknown - mug).state, "attention")
        # replayed again: nothing reserved twice, nothing else closed
        original.action_replay()
        self.run_jobs("_scs_job_apply")
        self.assertEqual(self.held("G-BACK"), {"SCS-MUG": (2, 2)})
        self.assertEqual((unknown - mug).state, "attention")

    def test_a_replay_after_shipping_leaves_an_unreserved_line_in_attention(self):
        """An order of a bound SKU and a SKU never bound is reserved and
        shipped; the second SKU is bound since. Its replay cannot reserve
        what shipped without it: that line's unknown SKU stays in
        attention, the sale Odoo still does not hold."""
        cap = self.env["product.product"].create(
            {"name": "New", "default_code": "SCS-NEW", "is_storable": True}
        )
        original, unknown = self.post_lines(
            "G-SHIPPED", [("SCS-MUG", 1), ("SCS-NEW", 2)]
        )
        self.assertEqual(unknown.sku, "SCS-NEW")
        picking = self.reservations(self.generic, "G-SHIPPED")
        picking.move_ids.write({"quantity": 1, "picked": True})
        picking._action_done()
        self.bind(self.generic, cap)
        replay = original.action_replay()
        self.run_jobs("_scs_job_apply")
        self.assertEqual(replay.state, "applied", replay.error)
        self.assertEqual(unknown.state, "attention")

    def test_order_beyond_the_stock_before_any_push_is_an_oversell(self):
        """No quantity was pushed to the channel yet: an order the stock
        cannot cover is still an incident, and says what is not known."""
        free = self.product_a.free_qty
        self.post_generic(self.order_payload("G-NOPUSH", qty=free + 2))
        self.run_jobs("_scs_job_apply_inbound")
        oversell = self.oversells()
        self.assertEqual(len(oversell), 1)
        self.assertIn(
            "could be reserved (no quantity was pushed to the channel yet)",
            oversell.error,
        )
        self.assertIn(f"asks {free + 2:g} of SCS-MUG; {free:g}", oversell.error)

    def test_line_below_the_unit_precision_is_no_sale(self):
        """A line of 0.001 unit is nothing in Odoo's precision (0.01): it is
        not reserved and is no oversell; an order of such lines only needs
        attention, with no empty transfer."""
        self.offer(5, fields.Datetime.now() - timedelta(minutes=1))
        self.post_generic(self.order_payload("G-TINY", qty=0.001))
        self.run_jobs("_scs_job_apply_inbound")
        self.assertFalse(self.reservations(self.generic, "G-TINY"))
        self.assertFalse(self.oversells())
        event = self.env["sync.event"].search(
            [("external_ref", "=", "G-TINY"), ("kind", "=", "order")]
        )
        self.assertEqual(event.state, "attention")
        self.assertIn("0.001", event.error)
        payload = self.order_payload("G-MIXED", qty=2)
        payload["data"]["lines"].append({"sku": "SCS-MUG", "quantity": 0.001})
        self.post_generic(payload)
        self.run_jobs("_scs_job_apply_inbound")
        picking = self.reservations(self.generic, "G-MIXED")
        self.assertEqual(picking.move_ids.product_uom_qty, 2)
        self.assertEqual(picking.move_ids.quantity, 2)
        self.assertFalse(self.oversells())
        self.post_generic(self.order_payload("G-ZERO", qty=0))
        self.run_jobs("_scs_job_apply_inbound")
        self.assertFalse(self.reservations(self.generic, "G-ZERO"))
        event = self.env["sync.event"].search([("external_ref", "=", "G-ZERO")])
        self.assertEqual(event.state, "applied")
        self.assertFalse(self.oversells())

    def test_cancel_after_a_partial_shipment_releases_the_backorder(self):
        """2 of 5 shipped, the rest in a backorder: cancelling the order
        releases the 3 the backorder holds; a refund of lines does not (its
        units may be ones that shipped)."""
        self.move_stock(self.product_a, 10)
        free = self.product_a.with_context(location=self.stock.id).free_qty
        for order_id, closing in (("G-PART", "order.cancelled"), ("G-PREF", None)):
            self.post_generic(self.order_payload(order_id, qty=5))
            self.run_jobs("_scs_job_apply_inbound")
            picking = self.reservations(self.generic, order_id)
            picking.move_ids.write({"quantity": 2, "picked": True})
            picking._action_done()
            backorder = self.reservations(self.generic, order_id) - picking
            self.assertEqual(picking.state, "done")
            self.assertEqual(backorder.move_ids.product_uom_qty, 3)
            self.assertEqual(backorder.state, "assigned")
            if closing:
                closed = self.order_payload(order_id, qty=5, event=closing)
                # "not restocked" means nothing for units never shipped
                closed["data"]["restock"] = False
            else:
                closed = self.order_payload(order_id, qty=1, event="order.refunded")
            self.assertEqual(self.post_generic(closed).status_code, 200)
            self.run_jobs("_scs_job_apply_inbound")
            if closing:
                self.assertEqual(backorder.state, "cancel")
            else:
                # a refund of lines may be of the units that shipped: what
                # is still to ship stays reserved
                self.assertEqual(backorder.move_ids.product_uom_qty, 3)
                event = self.env["sync.event"].search(
                    [("external_ref", "=", order_id), ("kind", "=", "cancel")]
                )
                self.assertIn("partly shipped", event.reason)
                # nor does the order's next update, which carries its lines
                # as they were: the refund may be a return
                update = self.order_payload(
                    order_id,
                    qty=5,
                    event="order.updated",
                    ts=fields.Datetime.add(fields.Datetime.now(), seconds=2),
                )
                self.assertEqual(self.post_generic(update).status_code, 200)
                self.run_jobs("_scs_job_apply_inbound")
                self.assertEqual(backorder.move_ids.product_uom_qty, 3)
                event = self.env["sync.event"].search(
                    [("external_ref", "=", order_id), ("kind", "=", "order")],
                    order="id desc",
                    limit=1,
                )
                self.assertEqual(event.state, "applied", event.error)
                self.assertIn("refunded since", event.reason)
        self.product_a.invalidate_recordset()
        # 2 + 2 shipped, 3 still held by the refunded order's backorder
        self.assertEqual(
            self.product_a.with_context(location=self.stock.id).free_qty, free - 7
        )

    def test_sku_on_several_lines_is_one_move_and_one_oversell_check(self):
        """Two lines of 3 for a channel offered 5: one move of 6, and an
        oversell (each line alone is within the offer)."""
        self.offer(5, fields.Datetime.now() - timedelta(minutes=1))
        payload = self.order_payload("G-SPLIT", qty=3)
        payload["data"]["lines"].append({"sku": "SCS-MUG", "quantity": 3})
        self.assertEqual(self.post_generic(payload).status_code, 200)
        self.run_jobs("_scs_job_apply_inbound")
        picking = self.reservations(self.generic, "G-SPLIT")
        self.assertEqual(len(picking.move_ids), 1)
        self.assertEqual(picking.move_ids.product_uom_qty, 6)
        oversell = self.env["sync.event"].search(
            [("kind", "=", "oversell"), ("channel_id", "=", self.generic.id)]
        )
        self.assertEqual(len(oversell), 1)
        self.assertEqual(oversell.quantity, 6)

    def offer(self, qty, pushed):
        """The channel was offered ``qty`` of SCS-MUG, delivered at ``pushed``."""
        self.b_generic.write(
            {
                "push_state": "ok",
                "last_pushed_qty": qty,
                "last_pushed_at": pushed.replace(microsecond=0),
                "last_push_ts": pushed.replace(tzinfo=timezone.utc).timestamp(),
            }
        )

    def oversells(self):
        return self.env["sync.event"].search(
            [("kind", "=", "oversell"), ("channel_id", "=", self.generic.id)]
        )

    def test_offer_is_shared_by_the_orders_that_follow_it(self):
        """An offer of 7, then two orders of 5 before the next push (one run):
        the second sells beyond what the offer left. Stock is there, so both
        are reserved whole."""
        self.move_stock(self.product_a, 20)
        self.offer(7, fields.Datetime.now() - timedelta(hours=1))
        for order_id in ("G-SH1", "G-SH2"):
            self.assertEqual(
                self.post_generic(self.order_payload(order_id, qty=5)).status_code,
                200,
            )
        self.run_jobs("_scs_job_apply_inbound")
        self.assertEqual(self.held("G-SH1"), {"SCS-MUG": (5, 5)})
        self.assertEqual(self.held("G-SH2"), {"SCS-MUG": (5, 5)})
        oversell = self.oversells()
        self.assertEqual(len(oversell), 1)
        self.assertIn("G-SH2", oversell.error)
        self.assertIn(
            "took 5 of that offer since it was pushed, leaving 2.", oversell.error
        )
        # an order of 2 after them: the offer is spent (5 + 5 > 7)
        self.post_generic(self.order_payload("G-SH3", qty=2))
        self.run_jobs("_scs_job_apply_inbound")
        self.assertEqual(len(self.oversells()), 2)

    def test_a_burst_well_within_the_offer_is_checked_once(self):
        """Orders reserved in one batch are checked against their offer with
        one bound for the batch: those the offer covers whatever the others
        took need no count of their own; near the end of the offer each
        order is counted, and the one beyond it is an incident."""
        self.move_stock(self.product_a, 40)
        self.move_stock(self.product_b, 40)
        cap = self.bind(self.generic, self.product_b)
        original = SyncEventOrder._scs_sold_since_push
        counted = []

        def sold_since_push(event, binding, picking, edit=False):
            counted.append(picking.scs_external_order_id)
            return original(event, binding, picking, edit)

        self.offer(20, fields.Datetime.now() - timedelta(hours=1))
        with patch.object(SyncEventOrder, "_scs_sold_since_push", sold_since_push):
            for n in range(4):
                res = self.post_generic(self.order_payload(f"G-WIN-{n}", qty=2))
                self.assertEqual(res.status_code, 200, res.text)
            self.run_jobs("_scs_job_apply_inbound")
            self.assertEqual(counted, [], "8 sold of an offer of 20: no count")
            self.assertFalse(self.oversells())
            for n in range(4):
                self.assertEqual(self.held(f"G-WIN-{n}"), {"SCS-MUG": (2, 2)})
            # another SKU, whose offer is nearly spent by the batch
            pushed = fields.Datetime.now() - timedelta(hours=1)
            cap.write(
                {
                    "push_state": "ok",
                    "last_pushed_qty": 5,
                    "last_pushed_at": pushed,
                    "last_push_ts": pushed.replace(tzinfo=timezone.utc).timestamp(),
                }
            )
            for n in range(3):
                self.post_generic(
                    self.order_payload(f"G-END-{n}", qty=2, sku="SCS-CAP")
                )
            self.run_jobs("_scs_job_apply_inbound")
        self.assertEqual(sorted(counted), [f"G-END-{n}" for n in range(3)])
        for n in range(3):
            self.assertEqual(self.held(f"G-END-{n}"), {"SCS-CAP": (2, 2)})
        oversell = self.oversells()
        self.assertEqual(len(oversell), 1)
        self.assertEqual(oversell.sku, "SCS-CAP")
        self.assertIn("G-END-2", oversell.error)
        self.assertIn(
            "took 4 of that offer since it was pushed, leaving 1.", oversell.error
        )

    def test_orders_before_the_offer_are_not_counted_against_it(self):
        """Orders placed before the offer was pushed (it already left them
        out) do not use it up. Once one of them gives units back, the offer
        is no longer known (the channel may have put them back on sale):
        only a shortfall of stock is an incident then."""
        self.move_stock(self.product_a, 30)
        self.post_generic(self.order_payload("G-OLD1", qty=5))
        self.post_generic(self.order_payload("G-OLD2", qty=5))
        self.run_jobs("_scs_job_apply_inbound")
        self.assertFalse(self.oversells())
        # both were placed and reserved two hours ago, an hour before the
        # offer of 7 went out
        old = self.reservations(self.generic, "G-OLD1") | self.reservations(
            self.generic, "G-OLD2"
        )
        self.env.flush_all()
        self.env.cr.execute(
            "UPDATE stock_picking SET create_date = create_date - interval '2 hours'"
            " WHERE id = ANY(%s)",
            [old.ids],
        )
        self.env.cr.execute(
            "UPDATE stock_move SET write_date = write_date - interval '2 hours'"
            " WHERE picking_id = ANY(%s)",
            [old.ids],
        )
        self.env.cr.execute(
            "UPDATE sync_event SET change_ts = change_ts - 7200,"
            " event_ts = event_ts - 7200 WHERE external_ref IN ('G-OLD1', 'G-OLD2')"
        )
        self.env.invalidate_all()
        self.offer(7, fields.Datetime.now() - timedelta(hours=1))
        self.post_generic(self.order_payload("G-NEW1", qty=5))
        self.run_jobs("_scs_job_apply_inbound")
        self.assertFalse(self.oversells(), "5 of an offer of 7")
        self.post_generic(self.order_payload("G-NEW2", qty=3))
        self.run_jobs("_scs_job_apply_inbound")
        oversell = self.oversells()
        self.assertEqual(len(oversell), 1, "5 + 3 of an offer of 7")
        self.assertIn("G-NEW2", oversell.error)
        # G-OLD2 ships after the offer: that gives nothing back, the offer
        # is still spent
        shipped = self.reservations(self.generic, "G-OLD2")
        shipped.move_ids.picked = True
        shipped._action_done()
        self.assertEqual(shipped.state, "done")
        self.post_generic(self.order_payload("G-NEW4", qty=1))
        self.run_jobs("_scs_job_apply_inbound")
        self.assertEqual(len(self.oversells()), 2, "5 + 3 + 1 of an offer of 7")
        oversell = self.oversells()
        # G-OLD1 is cancelled after the offer: what the channel offers now
        # is not known; stock covers the next order, so no incident
        self.post_generic(self.order_payload("G-OLD1", event="order.cancelled"))
        self.run_jobs("_scs_job_apply_inbound")
        self.post_generic(self.order_payload("G-NEW3", qty=5))
        self.run_jobs("_scs_job_apply_inbound")
        self.assertEqual(self.held("G-NEW3"), {"SCS-MUG": (5, 5)})
        self.assertEqual(self.oversells(), oversell)

    def test_offer_pushed_after_the_order_came_is_not_its_offer(self):
        """An order that reached Odoo before the last push was placed against
        an earlier offer: the newer, smaller one does not make it an
        incident. A shortfall of stock still does."""
        self.move_stock(self.product_a, 10)
        self.post_generic(self.order_payload("G-LATE", qty=5))
        self.offer(1, fields.Datetime.now() + timedelta(seconds=5))
        self.run_jobs("_scs_job_apply_inbound")
        self.assertEqual(self.held("G-LATE"), {"SCS-MUG": (5, 5)})
        self.assertFalse(self.oversells())
        free = self.product_a.with_context(location=self.stock.id).free_qty
        self.post_generic(self.order_payload("G-SHORT", qty=int(free) + 2))
        self.run_jobs("_scs_job_apply_inbound")
        self.assertEqual(len(self.oversells()), 1, "more than the stock")
        # the offer pushed after the order is not the one it was sold against
        self.assertNotIn("offered 1", self.oversells().error)
        self.assertIn("offer it was sold against is not known", self.oversells().error)

    def test_refund_releases_only_its_lines(self):
        """A refund restocking 1 of 3 units releases 1: the other 2 are still
        sold. A later refund of the rest releases the whole reservation."""
        free = self.product_a.free_qty
        self.assertEqual(
            self.post_generic(self.order_payload("G-REF3", qty=3)).status_code, 200
        )
        self.run_jobs("_scs_job_apply_inbound")
        picking = self.reservations(self.generic, "G-REF3")
        self.product_a.invalidate_recordset()
        self.assertEqual(self.product_a.free_qty, free - 3)
        self.generic.sync_enabled = True
        self.discard_jobs()
        refund = self.order_payload("G-REF3", qty=1, event="order.refunded")
        self.assertEqual(self.post_generic(refund).status_code, 200)
        self.run_jobs("_scs_job_apply_inbound")
        # the unit back on sale goes out to the channels
        self.assertTrue(self.sync_jobs("_scs_job_push_sku"))
        self.discard_jobs()
        self.assertEqual(picking.state, "assigned")
        self.assertEqual(picking.move_ids.product_uom_qty, 2)
        self.assertEqual(picking.move_ids.quantity, 2)
        self.product_a.invalidate_recordset()
        self.assertEqual(self.product_a.free_qty, free - 2)
        # a refund without restock releases nothing
        kept = self.order_payload("G-REF3", qty=1, event="order.refunded")
        kept["data"]["restock"] = False
        self.assertEqual(self.post_generic(kept).status_code, 200)
        self.run_jobs("_scs_job_apply_inbound")
        self.product_a.invalidate_recordset()
        self.assertEqual(self.product_a.free_qty, free - 2)
        # the rest (and one unit more than the order holds), in a refund
        # stamped before the first one (delivered late): refunds add up, so
        # it is not stale
        rest = self.order_payload(
            "G-REF3",
            qty=3,
            event="order.refunded",
            ts=fields.Datetime.subtract(fields.Datetime.now(), seconds=30),
        )
        self.assertEqual(self.post_generic(rest).status_code, 200)
        self.run_jobs("_scs_job_apply_inbound")
        self.assertEqual(picking.state, "cancel")
        self.product_a.invalidate_recordset()
        self.assertEqual(self.product_a.free_qty, free)
        late = self.env["sync.event"].search(
            [("kind", "=", "cancel"), ("external_ref", "=", "G-REF3")],
            order="id desc",
            limit=1,
        )
        self.assertEqual(late.state, "applied")
        self.assertIn("released 2 SCS-MUG", late.reason)
        self.assertIn("not held by this order: 1 SCS-MUG", late.reason)

    def test_refund_before_its_order_is_left_out_of_it(self):
        """An order of 3, its payment, a refund restocking 1 and a refund
        without restock, delivered in every order: 2 units reserved, always
        (a refund delivered first found nothing to release; an order
        delivered after a newer refund is not stale)."""
        base = fields.Datetime.now()
        steps = (
            ("order.created", 1, 3, None),
            ("order.paid", 2, 3, None),
            ("order.refunded", 3, 1, None),
            ("order.refunded", 4, 1, False),
        )
        for n, deliveries in enumerate(itertools.permutations(steps)):
            order_id = f"G-RB-{n}"
            for event, sec, qty, restock in deliveries:
                payload = self.order_payload(
                    order_id,
                    qty=qty,
                    event=event,
                    ts=fields.Datetime.add(base, seconds=sec),
                )
                if restock is not None:
                    payload["data"]["restock"] = restock
                self.assertEqual(self.post_generic(payload).status_code, 200)
                self.run_jobs("_scs_job_apply_inbound")
            moves = self.reservations(self.generic, order_id).move_ids.filtered(
                lambda m: m.state != "cancel"
            )
            order = [d[0] for d in deliveries]
            self.assertEqual(sum(moves.mapped("product_uom_qty")), 2, order)
            self.assertEqual(sum(moves.mapped("quantity")), 2, order)
            # cancelled, to give the stock back for the next permutation
            cancel = self.order_payload(
                order_id,
                event="order.cancelled",
                ts=fields.Datetime.add(base, seconds=5),
            )
            self.assertEqual(self.post_generic(cancel).status_code, 200)
            self.run_jobs("_scs_job_apply_inbound")
            self.assertFalse(self.reservations(self.generic, order_id), order)
        # the refunds came first, then the payment, then the creation
        events = self.env["sync.event"].search(
            [("external_ref", "=", "G-RB-23"), ("kind", "=", "order")],
            order="event_ts",
        )
        self.assertEqual(events.mapped("state"), ["stale", "applied"])
        self.assertIn("less what was refunded before: 1 SCS-MUG", events[1].reason)

    def post_edit(self, order_id, lines, sec, event="order.updated"):
        """An edited order, stamped ``sec`` seconds after the test began."""
        payload = self.order_payload(
            order_id, event=event, ts=fields.Datetime.add(self.t0, seconds=sec)
        )
        payload["data"]["lines"] = [{"sku": sku, "quantity": qty} for sku, qty in lines]
        self.assertEqual(self.post_generic(payload).status_code, 200)
        self.run_jobs("_scs_job_apply_inbound")
        return self.env["sync.event"].search(
            [("external_ref", "=", order_id), ("kind", "=", "order")],
            order="id desc",
            limit=1,
        )

    def held(self, order_id, channel=None):
        """``{sku: (demand, reserved)}`` of the order's live moves."""
        channel = channel or self.generic
        moves = self.reservations(channel, order_id).move_ids.filtered(
            lambda m: m.state != "cancel"
        )
        held = {}
        for move in moves:
            demand, reserved = held.get(move.product_id.default_code, (0, 0))
            held[move.product_id.default_code] = (
                demand + move.product_uom_qty,
                reserved + move.quantity,
            )
        return held

    def test_transfer_cancelled_in_odoo_is_not_reserved_again_by_an_update(self):
        """The seller cancels an order's transfer in Odoo: a later update of
        the order (shipped, a note) does not reserve it again. An order the
        channel cancelled and then reopened is reserved again."""
        self.t0 = fields.Datetime.now()
        self.post_edit("G-UCAN", [("SCS-MUG", 2)], 0, event="order.created")
        picking = self.reservations(self.generic, "G-UCAN")
        picking.action_cancel()
        event = self.post_edit("G-UCAN", [("SCS-MUG", 2)], 1)
        self.assertEqual(event.state, "skipped")
        self.assertIn("cancelled in Odoo", event.reason)
        self.assertFalse(self.reservations(self.generic, "G-UCAN"))
        # the transfer says so: also once retention took the order's events
        self.env.flush_all()
        self.env.cr.execute(
            "UPDATE sync_event SET write_date = now() - interval '400 days'"
            " WHERE external_ref = 'G-UCAN'"
        )
        self.gc_events()
        self.assertFalse(
            self.env["sync.event"].search([("external_ref", "=", "G-UCAN")])
        )
        event = self.post_edit("G-UCAN", [("SCS-MUG", 2)], 2)
        self.assertEqual(event.state, "skipped")
        self.assertFalse(self.reservations(self.generic, "G-UCAN"))
        # a split transfer, one part cancelled in Odoo: an update does not
        # reserve that part again
        self.post_edit("G-USPL", [("SCS-MUG", 5)], 0, event="order.created")
        picking = self.reservations(self.generic, "G-USPL")
        picking.move_ids.quantity = 2
        picking.action_split_transfer()
        parts = self.reservations(self.generic, "G-USPL")
        self.assertEqual(len(parts), 2)
        (parts - picking).action_cancel()
        event = self.post_edit("G-USPL", [("SCS-MUG", 5)], 1)
        self.assertIn("cancelled in Odoo", event.reason)
        self.assertEqual(self.held("G-USPL"), {"SCS-MUG": (2, 2)})
        # cancelled on the channel, then reopened there: reserved again
        self.post_edit("G-REOP", [("SCS-MUG", 2)], 0, event="order.created")
        self.post_edit("G-REOP", [("SCS-MUG", 2)], 1, event="order.cancelled")
        self.assertFalse(self.reservations(self.generic, "G-REOP"))
        event = self.post_edit("G-REOP", [("SCS-MUG", 2)], 2)
        self.assertEqual(event.state, "applied", event.reason)
        self.assertEqual(self.held("G-REOP"), {"SCS-MUG": (2, 2)})

    def test_backorder_of_an_older_order_gives_nothing_back(self):
        """An order placed before the offer ships in part: its backorder is
        no unit given back, so the orders that share the offer are still
        counted against it."""
        self.move_stock(self.product_a, 20)
        now = fields.Datetime.now()
        self.post_generic(
            self.order_payload("G-OLDER", qty=3, ts=now - timedelta(seconds=60))
        )
        self.run_jobs("_scs_job_apply_inbound")
        self.offer(5, now - timedelta(seconds=30))
        older = self.reservations(self.generic, "G-OLDER")
        older.move_ids.write({"quantity": 1, "picked": True})
        older._action_done()
        self.assertEqual(len(self.reservations(self.generic, "G-OLDER")), 2)
        self.post_generic(self.order_payload("G-NEW1", qty=4))
        self.run_jobs("_scs_job_apply_inbound")
        self.assertFalse(self.oversells())
        self.post_generic(self.order_payload("G-NEW2", qty=3))
        self.run_jobs("_scs_job_apply_inbound")
        oversell = self.oversells()
        self.assertEqual(len(oversell), 1)
        self.assertIn("Earlier orders of the channel took 4", oversell.error)

    def test_retention_keeps_the_history_of_an_open_order(self):
        """An order of 3 with 1 refunded holds 2. Its events are older than
        the retention: they are kept while the transfer is open, so a late
        update of the order does not reserve the refunded unit again. Once
        the order is closed, its history goes."""
        self.t0 = fields.Datetime.now()
        self.post_edit("G-RET", [("SCS-MUG", 3)], 0, event="order.created")
        self.post_edit("G-RET", [("SCS-MUG", 1)], 1, event="order.refunded")
        self.assertEqual(self.held("G-RET"), {"SCS-MUG": (2, 2)})
        Event = self.env["sync.event"]

        def age_all():
            self.env.flush_all()
            self.env.cr.execute(
                "UPDATE sync_event SET create_date = now() - interval '40 days',"
                " write_date = now() - interval '40 days'"
                " WHERE external_ref = 'G-RET'"
            )
            Event.invalidate_model()

        age_all()
        self.gc_events()
        history = Event.search([("external_ref", "=", "G-RET")])
        self.assertEqual(len(history), 2)
        self.post_edit("G-RET", [("SCS-MUG", 3)], 2)
        self.assertEqual(self.held("G-RET"), {"SCS-MUG": (2, 2)})
        self.post_edit("G-RET", [("SCS-MUG", 3)], 3, event="order.cancelled")
        self.assertFalse(self.reservations(self.generic, "G-RET"))
        age_all()
        self.gc_events()
        self.assertFalse(Event.search([("external_ref", "=", "G-RET")]))

    def test_a_state_older_than_the_logs_history_does_not_reserve_again(self):
        """An order placed and cancelled on the channel 40 days ago: its
        events are gone by retention, its released transfer is not. The
        order's creation delivered again (a shop resending old messages)
        has no cancel left to be stale against: it is not reserved, and
        needs a person. A state of it from today (the order reopened on
        the channel) is reserved as usual."""
        self.t0 = fields.Datetime.subtract(fields.Datetime.now(), days=40)
        self.post_edit("G-OLD", [("SCS-MUG", 3)], 0, event="order.created")
        self.post_edit("G-OLD", [("SCS-MUG", 3)], 50, event="order.cancelled")
        self.assertFalse(self.held("G-OLD"))
        self.env.flush_all()
        self.env.cr.execute(
            "UPDATE sync_event SET create_date = now() - interval '40 days',"
            " write_date = now() - interval '40 days'"
            " WHERE external_ref = 'G-OLD'"
        )
        self.env["sync.event"].invalidate_model()
        self.gc_events()
        self.assertFalse(
            self.env["sync.event"].search([("external_ref", "=", "G-OLD")])
        )
        free = self.product_a.free_qty
        event = self.post_edit("G-OLD", [("SCS-MUG", 3)], 10, event="order.created")
        self.assertEqual(event.state, "attention")
        self.assertIn("older than the event log keeps", event.reason)
        self.assertFalse(self.held("G-OLD"))
        self.product_a.invalidate_recordset()
        self.assertEqual(self.product_a.free_qty, free)
        # within the log's history: ordered as usual
        self.t0 = fields.Datetime.now()
        event = self.post_edit("G-OLD", [("SCS-MUG", 2)], 0)
        self.assertEqual(event.state, "applied", event.error)
        self.assertEqual(self.held("G-OLD"), {"SCS-MUG": (2, 2)})

    def test_edit_dropping_the_line_of_an_archived_binding_releases_it(self):
        """A line the order no longer names is released, also when its
        binding was archived since the order was reserved."""
        self.t0 = fields.Datetime.now()
        cap = self.bind(self.generic, self.product_b)
        self.post_edit(
            "G-ARCH", [("SCS-MUG", 1), ("SCS-CAP", 2)], 0, event="order.created"
        )
        self.assertEqual(self.held("G-ARCH"), {"SCS-MUG": (1, 1), "SCS-CAP": (2, 2)})
        cap.active = False
        event = self.post_edit("G-ARCH", [("SCS-MUG", 1)], 1)
        self.assertIn("released 2 SCS-CAP", event.reason)
        self.assertEqual(self.held("G-ARCH"), {"SCS-MUG": (1, 1)})

    def test_item_taken_out_after_a_partial_shipment_is_released(self):
        """Part of an order shipped, the rest in a backorder: an item the
        channel takes out (Amazon cancels one alone, a shop edits the
        order) is released from the backorder; units added are not reserved;
        an item taken out that Odoo shipped already needs attention."""
        self.t0 = fields.Datetime.now()
        self.bind(self.generic, self.product_b)
        self.post_edit(
            "G-PSHIP", [("SCS-MUG", 3), ("SCS-CAP", 1)], 0, event="order.created"
        )
        picking = self.reservations(self.generic, "G-PSHIP")
        cap_move = picking.move_ids.filtered(lambda m: m.product_id == self.product_b)
        mug_move = picking.move_ids - cap_move
        cap_move.write({"quantity": 1, "picked": True})
        mug_move.write({"quantity": 1, "picked": True})
        picking._action_done()
        self.assertEqual(picking.state, "done")
        backorder = self.reservations(self.generic, "G-PSHIP") - picking
        self.assertEqual(self.held("G-PSHIP"), {"SCS-MUG": (3, 3), "SCS-CAP": (1, 1)})
        free_mug = self.product_a.free_qty
        # 1 of the 2 mugs still open cancelled on the channel
        event = self.post_edit("G-PSHIP", [("SCS-MUG", 2), ("SCS-CAP", 1)], 1)
        self.assertEqual(event.state, "applied", event.error)
        self.assertIn("released 1 SCS-MUG", event.reason)
        self.assertEqual(backorder.move_ids.product_uom_qty, 1)
        self.assertEqual(backorder.state, "assigned")
        self.product_a.invalidate_recordset()
        self.assertEqual(self.product_a.free_qty, free_mug + 1)
        # more mugs after the shipment: not reserved, and a person is told
        event = self.post_edit("G-PSHIP", [("SCS-MUG", 5), ("SCS-CAP", 1)], 2)
        self.assertEqual(event.state, "attention")
        self.assertIn("after a shipment, not reserved: 3 SCS-MUG", event.error)
        self.assertEqual(backorder.move_ids.product_uom_qty, 1)
        # the shipped cap and the open mug taken out: the mug is released,
        # the cap needs a person
        event = self.post_edit("G-PSHIP", [("SCS-MUG", 1)], 3)
        self.assertEqual(event.state, "attention")
        self.assertIn("released 1 SCS-MUG", event.error)
        self.assertIn("after Odoo shipped them: 1 SCS-CAP", event.error)
        self.assertEqual(backorder.state, "cancel")
        self.product_a.invalidate_recordset()
        self.assertEqual(self.product_a.free_qty, free_mug + 2)
        self.assertEqual(picking.state, "done")

    def test_shipped_order_updates_without_change_or_after_a_money_refund(self):
        """What Odoo chose not to ship (no backorder) is not taken for units
        added: the order's next update is applied, not put in attention. A
        refund without restock moves no quantity: the order still follows
        its edits (a line removed is released from the backorder)."""
        self.t0 = fields.Datetime.now()
        self.bind(self.generic, self.product_b)
        lines = [("SCS-MUG", 2), ("SCS-CAP", 3)]
        self.post_edit("G-NOBO", lines, 0, event="order.created")
        picking = self.reservations(self.generic, "G-NOBO")
        for move in picking.move_ids:
            move.write({"quantity": 1 if move.product_id == self.product_a else 3})
        picking.move_ids.picked = True
        picking.with_context(cancel_backorder=True)._action_done()
        self.assertEqual(self.reservations(self.generic, "G-NOBO"), picking)
        event = self.post_edit("G-NOBO", lines, 1)
        self.assertEqual(event.state, "applied", event.error)
        self.assertIn("not reserved again", event.reason)
        # shipped in part, then refunded without restock, then a line removed
        self.post_edit("G-MONEY", lines, 0, event="order.created")
        picking = self.reservations(self.generic, "G-MONEY")
        cap_move = picking.move_ids.filtered(lambda m: m.product_id == self.product_b)
        cap_move.write({"quantity": 3, "picked": True})
        (picking.move_ids - cap_move).write({"quantity": 0, "picked": False})
        picking._action_done()
        backorder = self.reservations(self.generic, "G-MONEY") - picking
        self.assertEqual(backorder.move_ids.product_uom_qty, 2)
        refund = self.order_payload(
            "G-MONEY",
            qty=1,
            sku="SCS-CAP",
            event="order.refunded",
            ts=fields.Datetime.add(self.t0, seconds=1),
        )
        refund["data"]["restock"] = False
        self.assertEqual(self.post_generic(refund).status_code, 200)
        self.run_jobs("_scs_job_apply_inbound")
        event = self.post_edit("G-MONEY", [("SCS-CAP", 3)], 2)
        self.assertEqual(event.state, "applied", event.error)
        self.assertIn("released 2 SCS-MUG", event.reason)
        self.assertEqual(backorder.state, "cancel")

    def test_edited_order_reservation_follows_its_lines(self):
        """An order edited on the channel (a line added, a quantity changed,
        a line removed) holds what it sells now; a stale edit, an edit
        naming an unbound SKU and an edit after shipping change nothing."""
        self.t0 = fields.Datetime.now()
        self.bind(self.generic, self.product_b)
        free_a, free_b = self.product_a.free_qty, self.product_b.free_qty

        def free():
            self.env.invalidate_all()
            return (
                free_a - self.product_a.free_qty,
                free_b - self.product_b.free_qty,
            )

        self.post_edit("G-ED", [("SCS-MUG", 2)], 0, event="order.created")
        self.assertEqual(self.held("G-ED"), {"SCS-MUG": (2, 2)})
        # the channel offered 1 more: the unit added is within it, although
        # the order's total is not (no incident); the offer came between the
        # order and its edit, whatever second the test reaches meanwhile
        self.offer(1, self.t0)
        event = self.post_edit("G-ED", [("SCS-MUG", 3), ("SCS-CAP", 1)], 1)
        self.assertEqual(event.state, "applied", event.error)
        self.assertIn("reserved 1 SCS-MUG, 1 SCS-CAP more", event.reason)
        self.assertEqual(self.held("G-ED"), {"SCS-MUG": (3, 3), "SCS-CAP": (1, 1)})
        self.assertEqual(free(), (3, 1))
        self.assertFalse(self.env["sync.event"].search([("kind", "=", "oversell")]))
        self.assertEqual(len(self.reservations(self.generic, "G-ED")), 1)
        # a quantity lowered and a line removed
        event = self.post_edit("G-ED", [("SCS-MUG", 1)], 2)
        self.assertIn("released 2 SCS-MUG, 1 SCS-CAP", event.reason)
        self.assertEqual(self.held("G-ED"), {"SCS-MUG": (1, 1)})
        self.assertEqual(free(), (1, 0))
        # an edit stamped before the last one applied: stale
        event = self.post_edit("G-ED", [("SCS-MUG", 5)], 1.5)
        self.assertEqual(event.state, "stale")
        self.assertEqual(self.held("G-ED"), {"SCS-MUG": (1, 1)})
        # an edit whose only line has no binding cannot say what the order
        # no longer holds: nothing released
        event = self.post_edit("G-ED", [("NOT-BOUND", 1)], 3)
        self.assertEqual(event.state, "applied")
        self.assertIn("no binding for NOT-BOUND: nothing released", event.reason)
        self.assertEqual(self.held("G-ED"), {"SCS-MUG": (1, 1)})
        self.assertEqual(free(), (1, 0))
        # its payment, with the same lines: nothing to change
        event = self.post_edit("G-ED", [("SCS-MUG", 1)], 4, event="order.paid")
        self.assertIn("order already reserved", event.reason)
        # shipped: an edit no longer moves anything
        picking = self.reservations(self.generic, "G-ED")
        picking.move_ids.filtered(lambda m: m.state != "cancel").picked = True
        picking._action_done()
        self.assertEqual(picking.state, "done")
        event = self.post_edit("G-ED", [("SCS-MUG", 4)], 5)
        # nothing reserved after the shipment; a person is told of the units
        # sold on the channel since
        self.assertEqual(event.state, "attention")
        self.assertIn("after a shipment, not reserved: 3 SCS-MUG", event.error)
        self.assertEqual(len(self.reservations(self.generic, "G-ED")), 1)
        self.assertEqual(
            sum(
                picking.move_ids.filtered(lambda m: m.state == "done").mapped(
                    "quantity"
                )
            ),
            1,
        )

    def test_edit_replacing_every_line_keeps_one_transfer(self):
        """An edit that takes out every line the order held and names
        others: the open transfer holds the new lines, the old ones are
        released (taking them out first would cancel the transfer the new
        lines go to)."""
        self.t0 = fields.Datetime.now()
        self.bind(self.generic, self.product_b)
        free_a, free_b = self.product_a.free_qty, self.product_b.free_qty

        def taken():
            self.env.invalidate_all()
            return (
                free_a - self.product_a.free_qty,
                free_b - self.product_b.free_qty,
            )

        self.post_edit("G-SWAP", [("SCS-MUG", 2)], 0, event="order.created")
        event = self.post_edit("G-SWAP", [("SCS-CAP", 1)], 1)
        self.assertEqual(event.state, "applied", event.error)
        self.assertIn("reserved 1 SCS-CAP more, released 2 SCS-MUG", event.reason)
        self.assertEqual(self.held("G-SWAP"), {"SCS-CAP": (1, 1)})
        self.assertEqual(len(self.reservations(self.generic, "G-SWAP")), 1)
        self.assertEqual(taken(), (0, 1))
        # and back again, on the same transfer
        event = self.post_edit("G-SWAP", [("SCS-MUG", 1)], 2)
        self.assertEqual(event.state, "applied", event.error)
        self.assertEqual(self.held("G-SWAP"), {"SCS-MUG": (1, 1)})
        self.assertEqual(len(self.reservations(self.generic, "G-SWAP")), 1)
        self.assertEqual(taken(), (1, 0))

    def test_edit_beyond_the_offer_is_an_oversell(self):
        """Units an edit adds beyond what the channel was offered."""
        self.t0 = fields.Datetime.now()
        self.post_edit("G-EDO", [("SCS-MUG", 1)], 0, event="order.created")
        # pushed between the order (stamped t0) and its edit (t0 + 1 s), even
        # when the clock passes a second meanwhile (an offer pushed in the
        # edit's second is not known to have been seen by it)
        self.offer(1, self.t0)
        self.post_edit("G-EDO", [("SCS-MUG", 3)], 1)
        self.assertEqual(self.held("G-EDO"), {"SCS-MUG": (3, 3)})
        oversell = self.env["sync.event"].search([("kind", "=", "oversell")])
        self.assertEqual(len(oversell), 1)
        self.assertEqual(oversell.sku, "SCS-MUG")
        self.assertIn("was offered 1 ", oversell.error)
        self.assertIn("An edit of the order added 2.", oversell.error)

    def test_edits_out_of_order_property(self):
        """An order edited twice, perhaps cancelled and re-opened, delivered
        in any order: the transfer holds the newest event's lines."""
        rng = random.Random(20261123)
        self.t0 = fields.Datetime.now()
        self.bind(self.generic, self.product_b)
        for example in range(16):
            order_id = f"G-EDP-{example}"
            steps = [("order.created", 1), ("order.updated", 2), ("order.updated", 3)]
            if example % 2:
                steps += [("order.cancelled", 4), ("order.paid", 5)]
            deliveries = []
            for event, sec in steps:
                lines = [("SCS-MUG", rng.randint(1, 3))]
                if rng.random() < 0.6:
                    lines.append(("SCS-CAP", rng.randint(1, 2)))
                deliveries.append((event, sec, lines))
            rng.shuffle(deliveries)
            for event, sec, lines in deliveries:
                self.post_edit(order_id, lines, sec, event=event)
            newest = max(deliveries, key=lambda d: d[1])
            self.assertEqual(
                self.held(order_id),
                {sku: (qty, qty) for sku, qty in newest[2]},
                f"{order_id}: deliveries {[(d[0], d[1], d[2]) for d in deliveries]}",
            )
            # cancelled, to give the stock back for the next example
            self.post_edit(order_id, [], 9, event="order.cancelled")
            self.assertFalse(self.reservations(self.generic, order_id))

    def test_order_cutoff(self):
        """An order placed before the channel's order cutoff is never
        reserved (WooCommerce sends an old order again as ``order.updated``
        when it is completed or annotated); one placed after it, or whose
        placing date the channel does not give, is."""
        self.woo.sudo().order_cutoff = "2026-11-01 00:00:00"
        free = self.product_a.free_qty

        def post(order_id, status, created):
            payload = {
                "id": order_id,
                "status": status,
                "date_modified_gmt": "2026-11-22T10:00:00",
                "line_items": [
                    {"id": 5, "product_id": 55, "sku": "SCS-MUG", "quantity": 1}
                ],
            }
            if created:
                payload["date_created_gmt"] = created
            self.post_woo("order.updated", payload)
            return self.env["sync.event"].search(
                [("channel_id", "=", self.woo.id), ("external_ref", "=", str(order_id))]
            )

        old = post(911, "completed", "2026-10-02T09:00:00")
        self.assertEqual(old.state, "skipped")
        self.assertIn("before the channel's order cutoff", old.reason)
        self.assertFalse(self.reservations(self.woo, "911"))
        self.assertEqual(
            post(912, "processing", "2026-11-22T09:00:00").state, "applied"
        )
        self.assertEqual(post(913, "processing", None).state, "applied")
        self.env.invalidate_all()
        self.assertEqual(free - self.product_a.free_qty, 2)
        # Shopify gives the placing date as created_at
        self.shopify.sudo().order_cutoff = "2026-11-01 00:00:00"
        mug = {"id": 1, "sku": "SCS-MUG", "quantity": 1, "variant_id": 111}
        event = self.post_shopify_order(
            "orders/create", 5757, 1, [mug], created_at="2026-10-31T23:59:00-00:00"
        )
        self.assertEqual(event.state, "skipped", event.reason)
        event = self.post_shopify_order(
            "orders/create", 5858, 1, [mug], created_at="2026-11-01T00:01:00Z"
        )
        self.assertEqual(event.state, "applied", event.reason)
        # without a cutoff, the old order is reserved
        self.woo.sudo().order_cutoff = False
        self.assertEqual(post(914, "completed", "2026-10-02T09:00:00").state, "applied")

    def test_woocommerce_partial_refunds_are_read_and_released(self):
        """A WooCommerce order lists a partial refund by id only and keeps
        its lines: the refund's lines are read from the shop in a job, once,
        and released from the order's reservation; a refund of an amount
        only releases nothing; later states of the order keep them out."""
        sim = WooCommerceSimulator().start()
        self.addCleanup(sim.stop)
        mug = sim.add_product("SCS-MUG", 0)
        self.woo.sudo().write(
            {
                "base_url": sim.url,
                "api_key": sim.consumer_key,
                "api_secret": sim.consumer_secret,
            }
        )
        self.b_woo.external_id = str(mug)
        start = datetime.now(timezone.utc) - timedelta(minutes=10)
        sim.add_order("processing", [(mug, 3)], modified=start, order_id=950)
        line = sim.orders[950]["line_items"][0]["id"]
        free = self.product_a.free_qty

        def deliver(minutes=None):
            order = json.loads(json.dumps(sim.orders[950]))
            if minutes is not None:
                order["date_modified_gmt"] = (
                    start + timedelta(minutes=minutes)
                ).strftime("%Y-%m-%dT%H:%M:%S")
            self.post_woo("order.updated", order)

        def taken():
            self.env.invalidate_all()
            return free - self.product_a.free_qty

        self.post_woo("order.created", json.loads(json.dumps(sim.orders[950])))
        self.assertEqual(self.held("950", self.woo), {"SCS-MUG": (3, 3)})
        self.assertFalse(self.sync_jobs("_scs_job_fetch_refunds"))
        first = sim.add_refund(950, [(line, 1)], when=start + timedelta(minutes=1))
        sim.add_refund(950, [], amount="2.00", when=start + timedelta(minutes=1))
        deliver()
        # the order alone says nothing of the units: still held
        self.assertEqual(taken(), 3)
        self.assertEqual(len(self.sync_jobs("_scs_job_fetch_refunds")), 1)
        self.assertEqual(self.run_jobs("_scs_job_fetch_refunds"), 1)
        self.run_jobs("_scs_job_apply_inbound")
        refund, amount_only = self.env["sync.event"].search(
            [("channel_id", "=", self.woo.id), ("idempotency_key", "like", "refund:")],
            order="idempotency_key",
        )
        self.assertEqual(refund.idempotency_key, f"refund:950:{first}")
        self.assertEqual(amount_only.idempotency_key, f"refund:950:{first + 1}")
        self.assertEqual(amount_only.state, "skipped")
        self.assertEqual(amount_only.external_ref, "950")
        self.assertEqual(refund.state, "applied", refund.error)
        self.assertIn("refund: released 1 SCS-MUG", refund.reason)
        self.assertEqual(self.held("950", self.woo), {"SCS-MUG": (2, 2)})
        self.assertEqual(taken(), 2)
        # the same refunds listed again: no read; a later edit of the order
        # (same lines) keeps the refunded unit out
        deliver(minutes=2)
        self.assertFalse(self.sync_jobs("_scs_job_fetch_refunds"))
        self.assertEqual(self.held("950", self.woo), {"SCS-MUG": (2, 2)})
        # a second refund, read when the order lists it
        sim.add_refund(950, [(line, 2)], when=start + timedelta(minutes=3))
        deliver()
        self.run_jobs("_scs_job_fetch_refunds")
        self.run_jobs("_scs_job_apply_inbound")
        self.assertFalse(self.reservations(self.woo, "950"))
        self.assertEqual(taken(), 0)
        # a shop that refuses the read: the channel's user is told, the
        # units stay reserved
        sim.add_order("processing", [(mug, 1)], modified=start, order_id=951)
        self.post_woo("order.created", json.loads(json.dumps(sim.orders[951])))
        line = sim.orders[951]["line_items"][0]["id"]
        sim.add_refund(951, [(line, 1)], when=start + timedelta(minutes=4))
        self.woo.sudo().api_secret = "wrong"
        self.post_woo("order.updated", json.loads(json.dumps(sim.orders[951])))
        self.run_jobs("_scs_job_fetch_refunds")
        activity = self.env["mail.activity"].search(
            [("res_model", "=", "sync.channel"), ("res_id", "=", self.woo.id)]
        )
        self.assertIn("Refunds of order 951 not read", activity.mapped("summary"))
        self.assertEqual(self.held("951", self.woo), {"SCS-MUG": (1, 1)})
        # a shop down until the retries are spent: queue_job's on_fail hook
        # tells the channel's user too
        function = self.env.ref("stock_channel_sync.job_function_fetch_refunds")
        self.assertEqual(function.on_fail_method, "_scs_on_refunds_failed")
        self.woo._scs_on_refunds_failed(exc_message="connection refused")
        activity = self.env["mail.activity"].search(
            [("res_model", "=", "sync.channel"), ("res_id", "=", self.woo.id)]
        )
        note = activity.filtered(lambda a: a.summary == "Refunds not read").note
        self.assertIn("connection refused", str(note))

    def test_woocommerce_edited_order(self):
        """WooCommerce sends the edited order as ``order.updated``."""

        def post(topic, qty, modified):
            self.post_woo(
                topic,
                {
                    "id": 903,
                    "status": "processing",
                    "date_modified_gmt": modified,
                    "line_items": [
                        {"id": 5, "product_id": 55, "sku": "SCS-MUG", "quantity": qty}
                    ],
                },
            )
            moves = self.reservations(self.woo, "903").move_ids.filtered(
                lambda m: m.state != "cancel"
            )
            return sum(moves.mapped("quantity"))

        self.assertEqual(post("order.created", 1, "2026-11-22T10:00:00"), 1)
        self.assertEqual(post("order.updated", 3, "2026-11-22T10:05:00"), 3)
        # an older update, delivered late: stale
        self.assertEqual(post("order.updated", 1, "2026-11-22T10:01:00"), 3)
        self.assertEqual(post("order.updated", 2, "2026-11-22T10:06:00"), 2)

    def test_capped_channel_gets_its_cap_back_after_selling_it(self):
        """A channel offered its cap of 2 sells both: it holds 0 while Odoo
        still publishes 2. The push after the order sends the 2 again."""
        sim = self.start_simulator()
        self.generic.write(
            {
                "base_url": sim.endpoint,
                "signing_secret": sim.secret,
                "sync_enabled": True,
            }
        )
        self.b_generic.write({"use_max_qty": True, "max_qty": 2})
        self.b_generic._scs_push()
        self.assertEqual(sim.quantity("SCS-MUG"), 2)
        self.discard_jobs()
        sim.set_stock("SCS-MUG", 0)  # the shop sold its 2
        self.post_generic(self.order_payload("G-CAP", qty=2))
        self.run_jobs("_scs_job_apply_inbound")
        self.assertEqual(self.b_generic.last_seen_qty, 0)
        self.run_jobs("_scs_job_push_sku")
        self.assertEqual(sim.quantity("SCS-MUG"), 2)
        self.assertEqual(self.b_generic.last_seen_qty, 2)
        # an edit adds 1 that the shop took off its level: the cap again
        self.t0 = fields.Datetime.now()
        sim.set_stock("SCS-MUG", 1)
        self.post_edit("G-CAP", [("SCS-MUG", 3)], 1)
        self.run_jobs("_scs_job_push_sku")
        self.assertEqual(sim.quantity("SCS-MUG"), 2)
        # the shop cancels the order and restocks its 3: back to the cap
        sim.set_stock("SCS-MUG", 5)
        self.post_edit("G-CAP", [("SCS-MUG", 3)], 2, event="order.cancelled")
        self.assertFalse(self.reservations(self.generic, "G-CAP"))
        self.run_jobs("_scs_job_push_sku")
        self.assertEqual(sim.quantity("SCS-MUG"), 2)
        # a shop that reported its level (restocked) after the order was
        # placed, and was corrected to the cap: the cancel that follows adds
        # nothing to what Odoo knows it holds
        self.post_generic(self.order_payload("G-CAP2", qty=2))
        self.run_jobs("_scs_job_apply_inbound")
        self.run_jobs("_scs_job_push_sku")
        sim.set_stock("SCS-MUG", 4)
        level = {
            "type": "inventory.updated",
            "timestamp": fields.Datetime.to_string(fields.Datetime.now()),
            "data": {"sku": "SCS-MUG", "quantity": 4},
        }
        self.post_generic(level)
        self.run_jobs("_scs_job_apply_inbound")
        self.run_jobs("_scs_job_push_corrections")
        self.assertEqual(self.b_generic.last_seen_qty, 2)
        cancel = self.order_payload(
            "G-CAP2",
            qty=2,
            event="order.cancelled",
            ts=fields.Datetime.now() + timedelta(seconds=1),
        )
        self.post_generic(cancel)
        self.run_jobs("_scs_job_apply_inbound")
        self.assertFalse(self.reservations(self.generic, "G-CAP2"))
        self.assertEqual(self.b_generic.last_seen_qty, 2)

    def test_echo_of_a_number_the_channel_kept_is_no_edit(self):
        """A push the channel took as less than Odoo's number (a stale
        compare-and-set that left out units sold there): the channel's level
        webhook of that number is the echo of the push, not an edit that
        would push the left-out units back on sale."""
        self.b_generic.write(
            {
                "push_state": "ok",
                "last_pushed_qty": 10,
                "last_pushed_at": fields.Datetime.now(),
                "last_seen_qty": 8,
                "last_seen_at": fields.Datetime.now(),
            }
        )
        self.discard_jobs()
        level = {
            "type": "inventory.updated",
            "timestamp": fields.Datetime.to_string(fields.Datetime.now()),
            "data": {"sku": "SCS-MUG", "quantity": 8},
        }
        self.post_generic(level)
        self.run_jobs("_scs_job_apply_inbound")
        event = self.env["sync.event"].search(
            [("kind", "=", "inventory")], order="id desc", limit=1
        )
        self.assertIn("echo of our push", event.reason)
        self.assertFalse(self.sync_jobs("_scs_job_push_corrections"))

    def test_inventory_echo_and_channel_edit(self):
        sim = self.start_simulator()
        self.generic.write(
            {
                "base_url": sim.endpoint,
                "signing_secret": sim.secret,
                "sync_enabled": True,
            }
        )
        self.b_generic._scs_push()
        self.assertEqual(sim.quantity("SCS-MUG"), 10)
        pushes = len(sim.requests)
        echo = {
            "type": "inventory.updated",
            "timestamp": fields.Datetime.to_string(fields.Datetime.now()),
            "data": {"sku": "SCS-MUG", "quantity": 10},
        }
        self.post_generic(echo)
        self.run_jobs("_scs_job_apply_inbound")
        self.assertEqual(len(sim.requests), pushes, "our own echo is ignored")
        edit = dict(
            echo,
            timestamp=fields.Datetime.to_string(
                fields.Datetime.add(fields.Datetime.now(), seconds=5)
            ),
            data={"sku": "SCS-MUG", "quantity": 3},
        )
        sim.set_stock("SCS-MUG", 3)
        self.post_generic(edit)
        self.run_jobs("_scs_job_apply_inbound")
        self.assertEqual(sim.quantity("SCS-MUG"), 3, "the run calls no channel")
        self.run_jobs("_scs_job_push_corrections")
        self.assertEqual(sim.quantity("SCS-MUG"), 10, "Odoo's number is pushed back")
        correction = self.env["sync.event"].search(
            [("kind", "=", "correction"), ("binding_id", "=", self.b_generic.id)]
        )
        self.assertEqual(correction.state, "applied")
        applied = self.env["sync.event"].search(
            [("kind", "=", "inventory"), ("state", "=", "applied")],
            order="id desc",
            limit=1,
        )
        self.assertIn("edit on the channel", applied.reason)
        # replayed alone, the edit is corrected by a job, not by a call made
        # while the replay holds the binding's lock
        sim.set_stock("SCS-MUG", 3)
        sent = len(sim.requests)
        applied.action_replay()
        self.run_jobs("_scs_job_apply")
        self.assertEqual(len(sim.requests), sent, "no call inside the replay")
        self.assertEqual(len(self.sync_jobs("_scs_job_push_corrections")), 1)
        self.run_jobs("_scs_job_push_corrections")
        self.assertEqual(sim.quantity("SCS-MUG"), 10)
        # a level older than the newest applied is stale; one that disagrees
        # with our last push still gets Odoo's number pushed back (the newer
        # one may carry a clock that ran ahead); one that agrees pushes nothing
        for seconds, qty, corrected in ((2, 10, False), (1, 4, True)):
            sim.set_stock("SCS-MUG", qty)
            late = dict(
                echo,
                timestamp=fields.Datetime.to_string(
                    fields.Datetime.add(fields.Datetime.now(), seconds=seconds)
                ),
                data={"sku": "SCS-MUG", "quantity": qty},
            )
            self.post_generic(late)
            self.run_jobs("_scs_job_apply_inbound")
            event = self.env["sync.event"].search(
                [("kind", "=", "inventory")], order="id desc", limit=1
            )
            self.assertEqual(event.state, "stale")
            self.run_jobs("_scs_job_push_corrections")
            self.assertEqual(sim.quantity("SCS-MUG"), 10 if corrected else qty)
        # that stale level replayed: history, answered when it came; nothing
        # is pushed for it again
        sim.set_stock("SCS-MUG", 4)
        replay = event.action_replay()
        self.run_jobs("_scs_job_apply")
        self.assertEqual(replay.state, "stale")
        self.assertFalse(self.sync_jobs("_scs_job_push_corrections"))
        self.assertEqual(sim.quantity("SCS-MUG"), 4)

    # -- one apply job per channel and subject ---------------------------------
    def apply_jobs(self):
        return self.sync_jobs("_scs_job_apply_inbound")

    def test_states_of_an_order_queued_together_reserve_the_newest(self):
        """Several states of each order, in any order, before one run: only
        the newest of an order is applied (its lines are held, once), the
        older ones are superseded; an order cancelled in the run keeps each
        of its states and ends released."""
        self.move_stock(self.product_a, 50)
        self.bind(self.generic, self.product_b)
        self.move_stock(self.product_b, 50)
        rng = random.Random(20261124)
        base = fields.Datetime.now()
        newest, keys = {}, {}
        for n in range(6):
            order_id = f"G-RUN-{n}"
            steps = [
                ("order.created", 1, [("SCS-MUG", rng.randint(1, 3))]),
                ("order.updated", 2, [("SCS-MUG", rng.randint(1, 3))]),
                (
                    "order.paid",
                    3,
                    [("SCS-MUG", rng.randint(1, 3)), ("SCS-CAP", rng.randint(1, 2))],
                ),
            ]
            rng.shuffle(steps)
            for event, sec, lines in steps:
                payload = self.order_payload(
                    order_id, event=event, ts=fields.Datetime.add(base, seconds=sec)
                )
                payload["data"]["lines"] = [
                    {"sku": sku, "quantity": qty} for sku, qty in lines
                ]
                keys[(order_id, sec)] = f"msg_run_{n}_{sec}"
                res = self.post_generic(payload, msg_id=keys[(order_id, sec)])
                self.assertEqual(res.status_code, 200, res.text)
            newest[order_id] = {
                sku: (qty, qty) for sku, qty in max(steps, key=lambda s: s[1])[2]
            }
        for event, sec in (("order.cancelled", 2), ("order.created", 1)):
            payload = self.order_payload(
                "G-RUN-C", qty=2, event=event, ts=fields.Datetime.add(base, seconds=sec)
            )
            keys[("G-RUN-C", sec)] = f"msg_run_c_{sec}"
            res = self.post_generic(payload, msg_id=keys[("G-RUN-C", sec)])
            self.assertEqual(res.status_code, 200, res.text)
        # created, cancelled, paid again: each state is applied, in order
        for event, sec, qty in (
            ("order.paid", 3, 1),
            ("order.created", 1, 2),
            ("order.cancelled", 2, 2),
        ):
            payload = self.order_payload(
                "G-RUN-R",
                qty=qty,
                event=event,
                ts=fields.Datetime.add(base, seconds=sec),
            )
            keys[("G-RUN-R", sec)] = f"msg_run_r_{sec}"
            res = self.post_generic(payload, msg_id=keys[("G-RUN-R", sec)])
            self.assertEqual(res.status_code, 200, res.text)
        self.run_jobs("_scs_job_apply_inbound")
        Event = self.env["sync.event"]
        self.assertEqual(self.held("G-RUN-R"), {"SCS-MUG": (1, 1)})
        reopened = Event.search(
            [("idempotency_key", "in", [keys[("G-RUN-R", sec)] for sec in (1, 2, 3)])]
        )
        self.assertNotIn("stale", reopened.mapped("state"), reopened.mapped("reason"))
        for order_id, lines in newest.items():
            self.assertEqual(self.held(order_id), lines, order_id)
            self.assertEqual(len(self.reservations(self.generic, order_id)), 1)
            states = {
                sec: Event.search([("idempotency_key", "=", keys[(order_id, sec)])])
                for sec in (1, 2, 3)
            }
            self.assertEqual(states[3].state, "applied", states[3].reason)
            for sec in (1, 2):
                self.assertEqual(states[sec].state, "stale", order_id)
                self.assertIn("newer state of the same order", states[sec].reason)
        self.assertEqual(self.held("G-RUN-C"), {})
        self.assertEqual(
            Event.search(
                [
                    (
                        "idempotency_key",
                        "in",
                        [keys[("G-RUN-C", 1)], keys[("G-RUN-C", 2)]],
                    )
                ]
            ).mapped("state"),
            ["applied", "applied"],
        )
        self.assertFalse(
            Event.search_count(
                [("channel_id", "=", self.generic.id), ("state", "=", "queued")]
            )
        )

    def test_events_of_a_channel_share_one_job(self):
        """A burst of webhooks costs one job; the newest level of an item wins
        and every order is reserved."""
        base = fields.Datetime.now()
        keys = {}
        for sec, qty in ((1, 7), (3, 4), (2, 9)):
            payload = {
                "type": "inventory.updated",
                "timestamp": fields.Datetime.to_string(
                    fields.Datetime.add(base, seconds=sec)
                ),
                "data": {"sku": "SCS-MUG", "quantity": qty},
            }
            keys[sec] = f"msg_level_{sec}"
            res = self.post_generic(payload, msg_id=keys[sec])
            self.assertEqual(res.status_code, 200, res.text)
        for n in range(3):
            res = self.post_generic(self.order_payload(f"G-BURST-{n}", qty=1))
            self.assertEqual(res.status_code, 200, res.text)
        jobs = self.apply_jobs()
        self.assertEqual(len(jobs), 1, "six webhooks, one job")
        self.assertEqual(jobs.identity_key, f"stock_channel_sync.in.{self.generic.id}")
        self.assertEqual(jobs.records, self.generic)
        free = self.product_a.free_qty
        self.run_jobs("_scs_job_apply_inbound")
        self.env.invalidate_all()
        self.assertEqual(self.b_generic.last_seen_qty, 4, "the level of second 3")
        Event = self.env["sync.event"]
        states = {
            sec: Event.search([("idempotency_key", "=", key)]).state
            for sec, key in keys.items()
        }
        self.assertEqual(states, {1: "stale", 2: "stale", 3: "applied"})
        self.assertIn(
            "superseded", Event.search([("idempotency_key", "=", keys[1])]).reason
        )
        for n in range(3):
            self.assertEqual(len(self.reservations(self.generic, f"G-BURST-{n}")), 1)
        self.assertEqual(self.product_a.free_qty, free - 3)
        self.assertFalse(
            Event.search_count(
                [("channel_id", "=", self.generic.id), ("state", "=", "queued")]
            )
        )

    def test_out_of_order_in_one_job(self):
        """Shuffled events of many orders, applied by one job: each order ends
        as its newest event says."""
        rng = random.Random(2026)
        base = fields.Datetime.now()
        deliveries, expected = [], {}
        for example in range(8):
            order_id = f"G-BATCH-{example}"
            steps = [("order.created", 1), ("order.paid", 2), ("order.cancelled", 3)]
            if example % 2:
                steps.append(("order.paid", 4))
            expected[order_id] = max(steps, key=lambda s: s[1])[0] != "order.cancelled"
            for event, sec in steps:
                ts = fields.Datetime.add(base, seconds=sec + example * 10)
                deliveries.append(
                    self.order_payload(order_id, event=event, ts=ts, qty=1)
                )
        rng.shuffle(deliveries)
        for payload in deliveries:
            self.assertEqual(self.post_generic(payload).status_code, 200)
        self.assertEqual(len(self.apply_jobs()), 1)
        self.run_jobs()
        for order_id, is_open in expected.items():
            self.assertEqual(
                len(self.reservations(self.generic, order_id)), int(is_open), order_id
            )

    def test_delivery_counts_on_a_waiting_or_running_job(self):
        """An event joins the channel's job while it waits or runs (the
        delivery takes no lock on it); once the job is over, the next event
        gets a new one."""
        self.assertEqual(
            self.post_generic(self.order_payload("G-RUN-1")).status_code, 200
        )
        first = self.apply_jobs()
        self.assertEqual(len(first), 1)
        for state in ("enqueued", "started"):
            first.state = state
            self.env.flush_all()
            res = self.post_generic(self.order_payload(f"G-RUN-{state}"))
            self.assertEqual(res.status_code, 200)
            self.assertEqual(
                self.sync_jobs(
                    "_scs_job_apply_inbound", states=("pending", "enqueued", "started")
                ),
                first,
                f"no new job beside an {state} one",
            )
        first.state = "done"
        self.env.flush_all()
        self.post_generic(self.order_payload("G-RUN-after"))
        self.assertEqual(len(self.apply_jobs()), 1, "a job once the last one is over")

    def test_run_follows_deliveries_it_did_not_see(self):
        """A run that enqueues no follow-up looks, when it is done, for queued
        events its snapshot did not hold (a delivery that counted on it and
        committed meanwhile) and enqueues the channel's next run for them."""
        self.post_generic(self.order_payload("G-SEEN"), msg_id="msg_G-SEEN")
        self.post_generic(self.order_payload("G-LATE"), msg_id="msg_G-LATE")
        Event = self.env["sync.event"]
        seen = Event.search([("idempotency_key", "=", "msg_G-SEEN")])
        late = Event.search([("idempotency_key", "=", "msg_G-LATE")])
        self.assertEqual((seen + late).mapped("state"), ["queued", "queued"])
        job = self.apply_jobs()
        self.assertEqual(len(job), 1)
        Channel = type(self.env["sync.channel"])
        original = Channel._scs_take_queued_events

        def snapshot_without_late(channel):
            # the run's snapshot was taken before the late delivery committed
            return original(channel) - late

        with patch.object(Channel, "_scs_take_queued_events", snapshot_without_late):
            result = Job.load(self.env, job.uuid).perform()
        self.assertIn("a follow-up run for deliveries made meanwhile", result)
        self.assertEqual(seen.state, "applied")
        self.assertEqual(late.state, "queued")
        follow_up = self.apply_jobs() - job
        self.assertEqual(len(follow_up), 1, "the late event has a run of its own")
        job.unlink()
        self.run_jobs("_scs_job_apply_inbound")
        self.assertEqual(late.state, "applied")
        self.assertEqual(len(self.reservations(self.generic, "G-LATE")), 1)
        # a run that saw everything enqueues nothing more
        self.assertFalse(self.apply_jobs())
        self.post_generic(self.order_payload("G-ALONE"))
        result = self.generic._scs_job_apply_inbound()
        self.assertNotIn("follow-up run for deliveries", result)
        self.assertEqual(len(self.apply_jobs()), 1, "only the delivery's own job")

    def test_reconciliation_requeues_orphan_events(self):
        """A queued event left without a job (a crash) gets one from the
        reconciliation pass; a recent one, or one with a job, does not. The
        pass gives it when it starts, so that it holds while the start job
        waits for an order fetch to succeed (this shop cannot be reached)."""
        self.post_generic(self.order_payload("G-ORPHAN"), msg_id="msg_G-ORPHAN")
        self.apply_jobs().unlink()
        event = self.env["sync.event"].search(
            [("idempotency_key", "=", "msg_G-ORPHAN")]
        )
        self.assertEqual(event.state, "queued")
        self.assertFalse(self.generic._scs_requeue_orphans(), "too recent")
        event.sudo().write({"enqueue_ts": time.time() - 3600})
        self.generic._scs_start_reconcile()
        self.assertEqual(len(self.apply_jobs()), 1)
        self.assertFalse(self.generic._scs_requeue_orphans(), "it has a job now")
        self.run_jobs("_scs_job_apply_inbound")
        self.assertEqual(event.state, "applied")
        self.assertEqual(len(self.reservations(self.generic, "G-ORPHAN")), 1)

    def test_a_delivery_does_not_count_on_a_run_started_long_ago(self):
        """The channel's apply run was started half a minute ago or more:
        runs commit within seconds, so its worker is taken for dead (queued
        runner requeues it only at the next turn of its loop, up to a minute
        on). The next delivery gets its own run instead of waiting with it;
        one started a second ago is counted on."""
        self.post_generic(self.order_payload("G-STUCK"), msg_id="msg_G-STUCK")
        started = self.apply_jobs()
        self.assertEqual(len(started), 1)
        self.env.flush_all()
        self.env.cr.execute(
            "UPDATE queue_job SET state = 'started', date_started ="
            " (now() AT TIME ZONE 'UTC') - interval '1 second' WHERE id = %s",
            (started.id,),
        )
        self.post_generic(self.order_payload("G-STUCK-2"), msg_id="msg_G-STUCK-2")
        self.assertFalse(self.apply_jobs(), "the run just started applies it")
        self.env.cr.execute(
            "UPDATE queue_job SET date_started = date_started - interval '1 minute'"
            " WHERE id = %s",
            (started.id,),
        )
        self.post_generic(self.order_payload("G-STUCK-3"), msg_id="msg_G-STUCK-3")
        self.assertEqual(len(self.apply_jobs()), 1, "a run of its own")
        self.run_jobs("_scs_job_apply_inbound")
        for order_id in ("G-STUCK", "G-STUCK-2", "G-STUCK-3"):
            self.assertEqual(len(self.reservations(self.generic, order_id)), 1)

    def test_minute_cron_requeues_events_a_killed_run_left(self):
        """A worker killed during each try of the run: queue_job's runner
        ends by marking the job failed (``JobFoundDead``) without its hook.
        The minute cron gives the channel's events a new job, once; also
        beside a job left *started* by a worker that died."""
        self.post_generic(self.order_payload("G-KILLED"), msg_id="msg_G-KILLED")
        event = self.env["sync.event"].search(
            [("idempotency_key", "=", "msg_G-KILLED")]
        )
        self.apply_jobs().sudo().write({"state": "failed", "exc_name": "JobFoundDead"})
        Channel = self.env["sync.channel"]
        self.assertNotIn(self.generic, Channel._scs_cron_requeue_orphans())
        self.assertFalse(self.apply_jobs(), "too recent")
        event.sudo().write({"enqueue_ts": time.time() - 90})
        self.assertIn(self.generic, Channel._scs_cron_requeue_orphans())
        self.assertEqual(len(self.apply_jobs()), 1)
        self.assertNotIn(self.generic, Channel._scs_cron_requeue_orphans())
        self.assertEqual(len(self.apply_jobs()), 1, "it has a job now")
        self.run_jobs("_scs_job_apply_inbound")
        self.assertEqual(event.state, "applied")
        self.assertEqual(len(self.reservations(self.generic, "G-KILLED")), 1)
        # killed while started: its lock row is free; queue_job's runner may
        # not turn for a long time (it waits for the earliest eta)
        self.post_generic(self.order_payload("G-KILLED-2"), msg_id="msg_G-KILLED-2")
        second = self.env["sync.event"].search(
            [("idempotency_key", "=", "msg_G-KILLED-2")]
        )
        second.sudo().write({"enqueue_ts": time.time() - 90})
        started = self.apply_jobs()
        self.env.flush_all()
        self.env.cr.execute(
            "UPDATE queue_job SET state = 'started', date_started ="
            " (now() AT TIME ZONE 'UTC') - interval '1 second' WHERE id = %s;"
            " INSERT INTO queue_job_lock (id, queue_job_id) VALUES (%s, %s)",
            (started.id, started.id, started.id),
        )
        self.assertNotIn(
            self.generic, Channel._scs_cron_requeue_orphans(), "just started"
        )
        self.env.cr.execute(
            "UPDATE queue_job SET date_started = date_started - interval '1 minute'"
            " WHERE id = %s",
            (started.id,),
        )
        self.assertIn(self.generic, Channel._scs_cron_requeue_orphans())
        self.env.invalidate_all()
        self.assertEqual(len(self.apply_jobs()), 1, "a new run beside the dead one")
        self.run_jobs("_scs_job_apply_inbound")
        self.assertEqual(second.state, "applied")
        self.assertEqual(len(self.reservations(self.generic, "G-KILLED-2")), 1)
        cron = self.env.ref("stock_channel_sync.ir_cron_requeue_orphans")
        self.assertTrue(cron.active)
        self.assertEqual((cron.interval_number, cron.interval_type), (1, "minutes"))

    def test_an_event_job_keyed_before_the_rename_is_no_channel_run(self):
        """An event's own job from before the upgrade that renamed its key
        may carry the key of the channel whose id equals the event's: it
        applies that one event, not the channel's queue. Taken up by the
        runner, it is no run the next deliveries can count on; started by
        a worker that died, it is no dead run either."""
        self.post_generic(self.order_payload("G-OLDKEY"), msg_id="msg_G-OLDKEY")
        job = self.apply_jobs()
        self.assertEqual(len(job), 1)
        self.assertTrue(self.generic._scs_live_apply_job())
        self.env.flush_all()
        # what an event job of the old key looked like, taken by the runner
        self.env.cr.execute(
            "UPDATE queue_job SET model_name = 'sync.event',"
            " method_name = '_scs_job_apply', state = 'enqueued' WHERE id = %s",
            (job.id,),
        )
        self.env.invalidate_all()
        self.assertFalse(self.generic._scs_live_apply_job())
        self.post_generic(self.order_payload("G-OLDKEY-2"), msg_id="msg_G-OLDKEY-2")
        runs = self.apply_jobs()
        self.assertEqual(len(runs), 1, "the delivery started a run of its own")
        self.assertEqual(self.run_jobs("_scs_job_apply_inbound"), 1)
        for ref in ("G-OLDKEY", "G-OLDKEY-2"):
            self.assertEqual(len(self.reservations(self.generic, ref)), 1, ref)
        # started by a worker that died (its lock row is free)
        self.env.cr.execute(
            "UPDATE queue_job SET state = 'started', date_started ="
            " (now() AT TIME ZONE 'UTC') - interval '2 minutes' WHERE id = %s;"
            " INSERT INTO queue_job_lock (id, queue_job_id) VALUES (%s, %s)",
            (job.id, job.id, job.id),
        )
        self.env.invalidate_all()
        self.assertFalse(self.generic._scs_apply_job_died())
        self.assertFalse(self.generic._scs_live_apply_job())

    def test_run_falls_back_to_event_by_event_and_logs_once(self):
        """A run applies its events in one savepoint; when one fails, nothing
        of that pass is kept or logged, and the run applies event by event:
        the good level is applied and logged once, the bad one handed over."""
        b_second = self.env["channel.binding"].create(
            {"channel_id": self.generic.id, "product_id": self.product_b.id}
        )
        levels = {"msg_lvl_good": (self.b_generic.sku, 7)}
        levels["msg_lvl_bad"] = (b_second.sku, 3)
        for key, (sku, qty) in levels.items():
            payload = {
                "type": "inventory.updated",
                "data": {"sku": sku, "quantity": qty},
            }
            self.assertEqual(self.post_generic(payload, msg_id=key).status_code, 200)
        original = SyncEventInbound._scs_apply_inventory
        calls = []

        def apply_inventory(event, *args, **kwargs):
            calls.append(event.idempotency_key)
            if event.idempotency_key == "msg_lvl_bad":
                raise ValueError("scale on fire")
            return original(event, *args, **kwargs)

        self.assertEqual(len(self.apply_jobs()), 1)
        lines = []
        handler = logging.Handler()
        handler.emit = lambda record: lines.append(record.getMessage())
        logger = logging.getLogger("odoo.addons.stock_channel_sync.events")
        logger.addHandler(handler)
        try:
            with patch.object(
                SyncEventInbound, "_scs_apply_inventory", apply_inventory
            ):
                self.run_jobs("_scs_job_apply_inbound")
        finally:
            logger.removeHandler(handler)
        self.assertEqual(
            calls, ["msg_lvl_good", "msg_lvl_bad", "msg_lvl_good", "msg_lvl_bad"]
        )
        Event = self.env["sync.event"]
        good = Event.search([("idempotency_key", "=", "msg_lvl_good")])
        bad = Event.search([("idempotency_key", "=", "msg_lvl_bad")])
        self.assertEqual(good.state, "applied")
        self.assertEqual(self.b_generic.last_seen_qty, 7)
        self.assertEqual(bad.state, "failed")
        self.assertIn("scale on fire", bad.error)
        self.assertFalse(b_second.last_seen_qty)
        applied_lines = [
            line
            for line in lines
            if '"key": "msg_lvl_good"' in line and '"state": "applied"' in line
        ]
        self.assertEqual(len(applied_lines), 1, lines)
        # the line says why and for which binding: the log outlives retention
        logged = json.loads(applied_lines[0])
        self.assertTrue(good.reason)
        self.assertEqual(logged["reason"], good.reason[:200])
        self.assertEqual(logged["binding"], good.binding_id.id or None)
        self.assertEqual(logged["ref"], good.external_ref)

    def test_failing_event_is_handed_over_the_others_applied(self):
        original = SyncEventOrder._scs_reserve_many
        batches = []

        def reserve_many(event, channel, orders):
            batches.append([order_id for order_id, _known in orders])
            if any(order_id == "G-BAD" for order_id, _known in orders):
                raise ValueError("warehouse on fire")
            return original(event, channel, orders)

        for order_id in ("G-GOOD-1", "G-BAD", "G-GOOD-2"):
            self.post_generic(self.order_payload(order_id), msg_id=f"msg_{order_id}")
        with patch.object(SyncEventOrder, "_scs_reserve_many", reserve_many):
            self.run_jobs("_scs_job_apply_inbound")
        # the run's orders are reserved in one batch; when it fails, order by
        # order, and only the bad one is handed over
        self.assertEqual(
            batches,
            [["G-GOOD-1", "G-BAD", "G-GOOD-2"], ["G-GOOD-1"], ["G-BAD"], ["G-GOOD-2"]],
        )
        Event = self.env["sync.event"]
        bad = Event.search([("idempotency_key", "=", "msg_G-BAD")])
        self.assertEqual(bad.state, "failed")
        self.assertIn("warehouse on fire", bad.error)
        self.assertEqual(bad.attempts, 1)
        self.assertEqual(len(self.reservations(self.generic, "G-GOOD-1")), 1)
        self.assertEqual(len(self.reservations(self.generic, "G-GOOD-2")), 1)
        self.assertFalse(self.reservations(self.generic, "G-BAD"))
        retry = self.sync_jobs("_scs_job_apply")
        self.assertEqual(retry.records, bad)
        self.assertEqual(retry.identity_key, f"stock_channel_sync.event.{bad.id}")
        self.run_jobs("_scs_job_apply")
        self.assertEqual(bad.state, "applied")
        self.assertEqual(len(self.reservations(self.generic, "G-BAD")), 1)

    def test_failed_apply_job_leaves_dead_letters_not_queued_events(self):
        self.post_generic(self.order_payload("G-DEAD"), msg_id="msg_dead")
        shopify_event = self.env["sync.event"].create(
            {
                "direction": "in",
                "channel_id": self.shopify.id,
                "kind": "order",
                "idempotency_key": "shopify-queued",
                "state": "queued",
            }
        )
        job = self.apply_jobs()
        self.assertEqual(len(job), 1)
        Event = self.env["sync.event"]
        dead = Event.search([("idempotency_key", "=", "msg_dead")])
        # while the channel's job still waits, the hook leaves its events to it
        self.generic._scs_on_apply_inbound_failed(exc_message="database went away")
        self.assertEqual(dead.state, "queued")
        self.env.cr.execute(
            "UPDATE queue_job SET state = 'failed' WHERE id = %s", (job.id,)
        )
        self.env.invalidate_all()
        self.generic._scs_on_apply_inbound_failed(
            exc_name="OperationalError", exc_message="database went away"
        )
        self.assertEqual(dead.state, "dead")
        self.assertEqual(dead.error, "database went away")
        self.assertEqual(shopify_event.state, "queued", "other channels untouched")
        self.assertTrue(
            self.env["mail.activity"].search(
                [("res_model", "=", "sync.channel"), ("res_id", "=", self.generic.id)]
            )
        )

    def test_apply_run_that_lost_its_connection_runs_again(self):
        """A run whose database connection went away failed no event: it
        hands nothing over on the dead cursor, and its failure hook gives
        the channel a new run instead of dead letters; a connection lost on
        every run ends, after a few, in dead letters as any failure."""
        self.move_stock(self.product_a, 20)
        self.post_generic(self.order_payload("G-LOST"), msg_id="msg_lost")
        Event = self.env["sync.event"]
        event = Event.search([("idempotency_key", "=", "msg_lost")])

        def lost(events, **kw):
            raise psycopg2.InterfaceError("connection already closed")

        with (
            patch.object(SyncEventInbound, "_scs_job_apply", lost),
            self.assertRaises(psycopg2.InterfaceError),
        ):
            self.generic._scs_job_apply_inbound()
        self.assertEqual(event.state, "queued", "nothing handed over")
        self.assertFalse(self.sync_jobs("_scs_job_apply"))

        def fail_run(exc_name="psycopg2.InterfaceError"):
            job = self.apply_jobs()
            self.assertEqual(len(job), 1)
            job.sudo().write({"state": "failed", "exc_name": exc_name})
            self.generic._scs_on_apply_inbound_failed(
                exc_name=exc_name, exc_message="connection already closed"
            )

        # losses apart from each other (a run done in between) each get a
        # run, however many: the bound is for a connection lost on every run
        self.move_stock(self.product_a, 20)
        for n in range(LOST_CONNECTION_RUNS + 2):
            if n:
                self.post_generic(
                    self.order_payload(f"G-LOST-{n}"), msg_id=f"msg_lost_{n}"
                )
            fail_run()
            again = self.apply_jobs()
            self.assertEqual(len(again), 1, "the channel got a new run")
            wait = (again.eta - fields.Datetime.now()).total_seconds()
            self.assertTrue(3 <= wait <= 6, wait)
            self.run_jobs("_scs_job_apply_inbound")
            order = f"G-LOST-{n}" if n else "G-LOST"
            self.assertEqual(len(self.reservations(self.generic, order)), 1)
        self.assertEqual(event.state, "applied")

        # lost on every run: runs again LOST_CONNECTION_RUNS times, waiting
        # twice as long each time, then dead letters
        self.post_generic(self.order_payload("G-LOST-X"), msg_id="msg_lost_x")
        second = Event.search([("idempotency_key", "=", "msg_lost_x")])
        waits = []
        while True:
            fail_run()
            if second.state != "queued":
                break
            again = self.apply_jobs()
            waits.append(round((again.eta - fields.Datetime.now()).total_seconds()))
            self.assertLessEqual(len(waits), LOST_CONNECTION_RUNS)
        self.assertEqual(len(waits), LOST_CONNECTION_RUNS)
        # eta and now are kept to the second: each wait is known within one
        for n, wait in enumerate(waits):
            self.assertAlmostEqual(wait, LOST_CONNECTION_ETA * 2**n, delta=1)
        self.assertEqual(second.state, "dead")
        self.assertFalse(self.apply_jobs())

    def test_blocked_sku_waits_for_a_follow_up_run(self):
        """Another job holds the SKU: its events stay queued, in order, for a
        run a moment later; other subjects are applied now."""
        self.post_generic(self.order_payload("G-WAIT-1"), msg_id="msg_wait_1")
        self.post_generic(
            self.order_payload("G-OTHER", sku="SCS-NOPE"), msg_id="msg_other"
        )
        Binding = type(self.env["channel.binding"])
        original = Binding._scs_lock

        def lock(bindings):
            if self.product_a in bindings.product_id:
                raise RetryableJobError("locked", seconds=1, ignore_retry=True)
            return original(bindings)

        with patch.object(Binding, "_scs_lock", lock):
            self.run_jobs("_scs_job_apply_inbound", rounds=1)
        Event = self.env["sync.event"]
        self.assertEqual(
            Event.search([("idempotency_key", "=", "msg_wait_1")]).state, "queued"
        )
        self.assertEqual(
            Event.search([("idempotency_key", "=", "msg_other")]).state, "attention"
        )
        follow_up = self.apply_jobs()
        self.assertEqual(len(follow_up), 1)
        # a moment later: the holder is mostly a push of a fraction of a second
        wait = (follow_up.eta - follow_up.date_created).total_seconds()
        self.assertTrue(0.1 < wait < 0.5, wait)
        self.run_jobs("_scs_job_apply_inbound")
        self.assertEqual(len(self.reservations(self.generic, "G-WAIT-1")), 1)

    def test_order_of_several_skus_reserves_every_line(self):
        self.bind(self.generic, self.product_b)
        payload = self.order_payload("G-TWO", qty=2)
        payload["data"]["lines"].append({"sku": "SCS-CAP", "quantity": 1})
        res = self.post_generic(payload, msg_id="msg_two_lines")
        self.assertEqual(res.status_code, 200, res.text)
        event = self.env["sync.event"].search(
            [("idempotency_key", "=", "msg_two_lines")]
        )
        self.assertEqual(event.subject, "order:G-TWO")
        free_a, free_b = self.product_a.free_qty, self.product_b.free_qty
        self.run_jobs("_scs_job_apply_inbound")
        self.assertEqual(event.state, "applied", event.error)
        picking = self.reservations(self.generic, "G-TWO")
        self.assertEqual(len(picking), 1)
        self.assertEqual(
            sorted(picking.move_ids.mapped(lambda m: (m.product_id.id, m.quantity))),
            sorted([(self.product_a.id, 2.0), (self.product_b.id, 1.0)]),
        )
        self.env.invalidate_all()
        self.assertEqual(self.product_a.free_qty, free_a - 2)
        self.assertEqual(self.product_b.free_qty, free_b - 1)

    def test_channel_edits_of_a_run_are_corrected_in_one_round(self):
        """Edits of several items in one run: one push round, not one per item."""
        sim = self.start_simulator()
        self.generic.write(
            {
                "base_url": sim.endpoint,
                "signing_secret": sim.secret,
                "sync_enabled": True,
            }
        )
        b_cap = self.bind(self.generic, self.product_b)
        (self.b_generic | b_cap)._scs_push()
        self.assertEqual((sim.quantity("SCS-MUG"), sim.quantity("SCS-CAP")), (10, 5))
        stamp = fields.Datetime.to_string(
            fields.Datetime.add(fields.Datetime.now(), seconds=5)
        )
        for sku, qty in (("SCS-MUG", 1), ("SCS-CAP", 2)):
            sim.set_stock(sku, qty)
            payload = {
                "type": "inventory.updated",
                "timestamp": stamp,
                "data": {"sku": sku, "quantity": qty},
            }
            self.assertEqual(self.post_generic(payload).status_code, 200)
        Binding = type(self.env["channel.binding"])
        original = Binding._scs_push
        rounds = []

        def push(bindings, *args, **kwargs):
            rounds.append(sorted(bindings.mapped("sku")))
            return original(bindings, *args, **kwargs)

        Channel = type(self.env["sync.channel"])
        free_original = Channel._scs_free_quantities
        free_reads = []

        def free_quantities(channel, product_ids):
            free_reads.append(sorted(product_ids))
            return free_original(channel, product_ids)

        requests = len(sim.requests)
        with (
            patch.object(Binding, "_scs_push", push),
            patch.object(Channel, "_scs_free_quantities", free_quantities),
        ):
            self.run_jobs("_scs_job_apply_inbound")
            # levels only: what Odoo publishes is read once for the run
            self.assertEqual(
                free_reads, [sorted((self.product_a | self.product_b).ids)]
            )
            levels = self.env["sync.event"].search(
                [("kind", "=", "inventory"), ("channel_id", "=", self.generic.id)]
            )
            self.assertEqual(
                sorted(levels.mapped("reason")),
                [
                    "SCS-CAP: edit on the channel (2), Odoo publishes 5",
                    "SCS-MUG: edit on the channel (1), Odoo publishes 10",
                ],
            )
            # the run calls no channel: its edits go to one job of their own
            self.assertEqual(rounds, [])
            self.assertEqual(len(sim.requests), requests)
            self.assertEqual(len(self.sync_jobs("_scs_job_push_corrections")), 1)
            self.run_jobs("_scs_job_push_corrections")
        self.assertEqual(rounds, [["SCS-CAP", "SCS-MUG"]])
        self.assertEqual((sim.quantity("SCS-MUG"), sim.quantity("SCS-CAP")), (10, 5))
        corrections = self.env["sync.event"].search(
            [("kind", "=", "correction"), ("channel_id", "=", self.generic.id)]
        )
        self.assertEqual(sorted(corrections.mapped("state")), ["applied", "applied"])

    def test_two_step_delivery_reserves_from_stock(self):
        """A warehouse that ships in two steps keeps its stock in WH/Stock,
        not in the delivery type's source (WH/Output): a channel's order is
        reserved from the stock the channel sells."""
        self.warehouse.delivery_steps = "pick_ship"
        self.assertNotEqual(
            self.warehouse.out_type_id.default_location_src_id, self.stock
        )
        free = self.product_a.free_qty
        res = self.post_generic(self.order_payload("G-2STEP", qty=3))
        self.assertEqual(res.status_code, 200, res.text)
        self.run_jobs("_scs_job_apply_inbound")
        picking = self.reservations(self.generic, "G-2STEP")
        self.assertEqual(picking.location_id, self.stock)
        self.assertEqual(picking.state, "assigned")
        self.assertEqual(picking.move_ids.quantity, 3.0)
        self.product_a.invalidate_recordset()
        self.assertEqual(self.product_a.free_qty, free - 3)
        self.assertFalse(
            self.env["sync.event"].search([("kind", "=", "oversell")]),
            "stock that is there is no oversell",
        )

    def test_free_quantity_counts_a_reservation_without_quantity(self):
        """Odoo reserves on a new quant with no quantity (NULL) when the one
        it would use is locked by a concurrent transaction: that reservation
        still lowers what every channel is offered."""
        free = self.generic._scs_free_quantities([self.product_a.id])
        self.assertEqual(free[self.product_a.id], self.product_a.free_qty)
        self.env.flush_all()
        self.env.cr.execute(
            "INSERT INTO stock_quant (product_id, location_id, company_id,"
            " reserved_quantity, in_date) VALUES (%s, %s, %s, 3, now())",
            (self.product_a.id, self.stock.id, self.stock.company_id.id),
        )
        self.env.invalidate_all()
        self.assertEqual(self.product_a.free_qty, free[self.product_a.id] - 3)
        after = self.generic._scs_free_quantities([self.product_a.id])
        self.assertEqual(after[self.product_a.id], free[self.product_a.id] - 3)

    def test_unbound_variant_does_not_reserve_its_sibling(self):
        """A WooCommerce line names its variation and the parent product: a
        variation bound nowhere is an unknown SKU needing attention, not the
        sibling bound under the same parent; a generic line's own id is not
        a product id."""
        self.b_woo.write({"external_id": "300", "external_variant_id": "301"})
        free_a, free_b = self.product_a.free_qty, self.product_b.free_qty
        line = {"id": 7, "product_id": 300, "variation_id": 399, "quantity": 2}
        self.post_woo(
            "order.created",
            {
                "id": 950,
                "status": "processing",
                "date_modified_gmt": "2026-11-22T10:00:00",
                "line_items": [dict(line, sku="SCS-OTHER-VARIANT")],
            },
        )
        self.assertFalse(self.reservations(self.woo, "950"))
        unknown = self.env["sync.event"].search(
            [("channel_id", "=", self.woo.id), ("kind", "=", "unknown_sku")]
        )
        self.assertEqual(unknown.mapped("sku"), ["SCS-OTHER-VARIANT"])
        # the bound variation itself still reserves, by its id
        self.post_woo(
            "order.created",
            {
                "id": 951,
                "status": "processing",
                "date_modified_gmt": "2026-11-22T10:00:00",
                "line_items": [dict(line, variation_id=301, sku="")],
            },
        )
        self.assertEqual(self.reservations(self.woo, "951").move_ids.quantity, 2.0)
        # generic: line id 1 and a binding whose external id is "1"
        self.bind(self.generic, self.product_b, external_id="1")
        payload = self.order_payload("G-LINEID", qty=1)
        payload["data"]["lines"][0]["id"] = 1
        self.post_generic(payload)
        self.run_jobs("_scs_job_apply_inbound")
        moves = self.reservations(self.generic, "G-LINEID").move_ids
        self.assertEqual(moves.product_id, self.product_a)
        self.env.invalidate_all()
        self.assertEqual(self.product_a.free_qty, free_a - 2 - 1)
        self.assertEqual(self.product_b.free_qty, free_b)

    def test_shopify_refund_replayed_under_a_new_event_id_releases_once(self):
        """A refund is keyed by its own id: the same signed refund body under
        a new X-Shopify-Event-Id is a duplicate; an order body replayed under
        orders/cancelled (the topic is not signed) is refused, writes nothing."""
        line = {
            "id": 71,
            "variant_id": 111,
            "sku": "SCS-MUG",
            "quantity": 4,
            "admin_graphql_api_id": "gid://shopify/LineItem/71",
        }
        self.post_shopify_order("orders/create", 7100, 1, [line])
        order = "gid://shopify/Order/7100"
        self.assertEqual(self.reservations(self.shopify, order).move_ids.quantity, 4)
        refund = json.dumps(
            {
                "id": 880,
                "order_id": 7100,
                "created_at": "2026-11-22T10:05:00Z",
                "refund_line_items": [
                    {"quantity": 1, "restock_type": "return", "line_item": line}
                ],
            }
        ).encode()
        answers = []
        for _round in range(3):
            res = self.post_shopify("refunds/create", refund)
            self.assertEqual(res.status_code, 200, res.text)
            answers.append(res.json()["status"])
            self.run_jobs("_scs_job_apply_inbound")
        self.assertEqual(answers, ["accepted", "duplicate", "duplicate"])
        self.assertEqual(self.reservations(self.shopify, order).move_ids.quantity, 3)
        # replayed (twice, and a replay of the replay): released once all the same
        applied = self.env["sync.event"].search(
            [
                ("channel_id", "=", self.shopify.id),
                ("idempotency_key", "=like", "refunds/create:refund:880%"),
            ]
        )
        replays = applied.action_replay() | applied.action_replay()
        self.run_jobs("_scs_job_apply")
        replays |= replays[:1].action_replay()
        self.run_jobs("_scs_job_apply")
        self.assertEqual(len(replays), 3)
        self.assertEqual(set(replays.mapped("state")), {"skipped"})
        self.assertEqual(self.reservations(self.shopify, order).move_ids.quantity, 3)
        before = self.counts()
        body = json.dumps(
            {"id": 7100, "updated_at": "2026-11-22T10:06:00Z", "line_items": [line]}
        ).encode()
        res = self.post_shopify("orders/cancelled", body)
        self.assertEqual(res.status_code, 400, res.text)
        self.assertEqual(self.counts(), before)
        self.assertEqual(self.reservations(self.shopify, order).move_ids.quantity, 3)

    def test_stock_being_reserved_by_another_job_waits(self):
        """Two channels' jobs reserving one product at once: the quants the
        reservation takes are locked first; while another job holds them (or
        changed them since this job's snapshot), the order waits for a run a
        second later instead of reserving stock the other one took."""
        module = "odoo.addons.stock_channel_sync.models.sync_event_order"
        calls = []

        def held(env, table, ids, reason, **kw):
            calls.append((table, sorted(ids)))
            raise RetryableJobError(reason, seconds=1, ignore_retry=True)

        self.post_generic(self.order_payload("G-RACE", qty=2), msg_id="msg_race")
        free = self.product_a.free_qty
        with patch(f"{module}.lock_rows_or_retry", held):
            self.run_jobs("_scs_job_apply_inbound", rounds=1)
        quants = self.env["stock.quant"].search(
            [
                ("product_id", "=", self.product_a.id),
                ("location_id", "child_of", self.stock.id),
            ]
        )
        self.assertIn(("stock_quant", sorted(quants.ids)), calls)
        event = self.env["sync.event"].search([("idempotency_key", "=", "msg_race")])
        self.assertEqual(event.state, "queued")
        self.assertFalse(self.reservations(self.generic, "G-RACE"))
        self.product_a.invalidate_recordset()
        self.assertEqual(self.product_a.free_qty, free)
        follow_up = self.apply_jobs()
        self.assertEqual(len(follow_up), 1)
        self.assertTrue(follow_up.eta, "a second later")
        self.run_jobs("_scs_job_apply_inbound")
        self.assertEqual(event.state, "applied", event.error)
        self.assertEqual(self.reservations(self.generic, "G-RACE").move_ids.quantity, 2)
        self.product_a.invalidate_recordset()
        self.assertEqual(self.product_a.free_qty, free - 2)

    def test_stock_being_reserved_by_another_job_waits_for_a_release(self):
        """A cancellation or an edit that gives units back writes to the same
        quants as a reservation: while another job holds them, it waits for
        a run a second later (Odoo would book the release on a quant of its
        own, and the quants' reservation would drift from the moves')."""
        module = "odoo.addons.stock_channel_sync.models.sync_event_order"
        calls = []

        def held(env, table, ids, reason, **kw):
            calls.append((table, sorted(ids)))
            raise RetryableJobError(reason, seconds=1, ignore_retry=True)

        self.t0 = fields.Datetime.now()
        free = self.product_a.free_qty
        self.post_edit("G-RACE-R", [("SCS-MUG", 3)], 0, event="order.created")
        quants = self.env["stock.quant"].search(
            [
                ("product_id", "=", self.product_a.id),
                ("location_id", "child_of", self.stock.id),
            ]
        )
        for sec, event, lines, left in (
            (1, "order.updated", [("SCS-MUG", 1)], 1),
            (2, "order.cancelled", [], 0),
        ):
            payload = self.order_payload(
                "G-RACE-R", event=event, ts=fields.Datetime.add(self.t0, seconds=sec)
            )
            payload["data"]["lines"] = [{"sku": k, "quantity": q} for k, q in lines]
            self.assertEqual(self.post_generic(payload).status_code, 200)
            event_rec = self.env["sync.event"].search([], order="id desc", limit=1)
            calls.clear()
            with patch(f"{module}.lock_rows_or_retry", held):
                self.run_jobs("_scs_job_apply_inbound", rounds=1)
            self.assertIn(("stock_quant", sorted(quants.ids)), calls)
            self.assertEqual(event_rec.state, "queued", event_rec.reason)
            self.env.invalidate_all()
            self.assertEqual(free - self.product_a.free_qty, 3 if sec == 1 else 1)
            self.run_jobs("_scs_job_apply_inbound")
            self.assertEqual(event_rec.state, "applied", event_rec.error)
            self.env.invalidate_all()
            self.assertEqual(free - self.product_a.free_qty, left)
        self.assertFalse(self.reservations(self.generic, "G-RACE-R"))

    def test_only_post_is_a_delivery(self):
        """werkzeug answers every route's OPTIONS: a signed delivery sent as
        OPTIONS (or any method but POST) is 405 and writes nothing."""
        body = json.dumps(self.order_payload("G-OPTIONS")).encode()
        headers = signatures.sign_standard(
            self.secret, "msg_options", int(time.time()), body
        )
        headers["Content-Type"] = "application/json"
        before = self.counts()
        url = self.base_url() + URL + self.generic.webhook_token
        for method in ("OPTIONS", "GET", "PUT"):
            res = self.opener.request(
                method, url, data=body, headers=headers, timeout=30
            )
            self.assertEqual(res.status_code, 405, (method, res.text))
        self.assertEqual(self.counts(), before)
        self.assertEqual(
            self.post_generic(self.order_payload("G-OPTIONS")).status_code, 200
        )

    def test_cancel_wins_a_tie_and_an_untimed_delete_is_ordered_by_arrival(self):
        """A cancel and an order stamped in the same second, the cancel
        delivered first: the order is not reserved. WooCommerce's
        order.deleted carries no time: it is ordered by its arrival, so a
        late update of the order modified before it reserves nothing."""
        self.woo_shop()
        stamp = fields.Datetime.now().replace(microsecond=0)
        cancel = self.order_payload("G-TIE", event="order.cancelled", ts=stamp)
        self.assertEqual(self.post_generic(cancel).status_code, 200)
        self.run_jobs("_scs_job_apply_inbound")
        created = self.order_payload("G-TIE", qty=2, ts=stamp)
        self.assertEqual(self.post_generic(created).status_code, 200)
        self.run_jobs("_scs_job_apply_inbound")
        self.assertFalse(self.reservations(self.generic, "G-TIE"))
        # the other way round, the cancel releases as before
        self.post_generic(self.order_payload("G-TIE2", qty=2, ts=stamp))
        self.run_jobs("_scs_job_apply_inbound")
        self.assertTrue(self.reservations(self.generic, "G-TIE2"))
        self.post_generic(
            self.order_payload("G-TIE2", event="order.cancelled", ts=stamp)
        )
        self.run_jobs("_scs_job_apply_inbound")
        self.assertFalse(self.reservations(self.generic, "G-TIE2"))
        # WooCommerce: created, deleted, then an update modified before the
        # deletion arrives late
        free = self.product_a.free_qty
        modified = (stamp - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S")
        order = {
            "id": 960,
            "status": "processing",
            "date_modified_gmt": modified,
            "line_items": [
                {"id": 1, "product_id": 55, "sku": "SCS-MUG", "quantity": 2}
            ],
        }
        self.post_woo("order.created", order)
        self.assertTrue(self.reservations(self.woo, "960"))
        self.post_woo("order.deleted", {"id": 960})
        self.assertFalse(self.reservations(self.woo, "960"))
        late_stamp = stamp - timedelta(minutes=4)
        late = dict(order, date_modified_gmt=late_stamp.strftime("%Y-%m-%dT%H:%M:%S"))
        late["line_items"] = [dict(order["line_items"][0], quantity=3)]
        self.post_woo("order.updated", late)
        self.assertFalse(self.reservations(self.woo, "960"))
        self.product_a.invalidate_recordset()
        self.assertEqual(self.product_a.free_qty, free)

    def woo_order(self, order_id, modified, qty=2):
        return {
            "id": order_id,
            "status": "processing",
            "date_modified_gmt": modified.strftime("%Y-%m-%dT%H:%M:%S"),
            "line_items": [
                {"id": 1, "product_id": 55, "sku": "SCS-MUG", "quantity": qty}
            ],
        }

    def woo_cancels(self, order_id):
        return self.env["sync.event"].search(
            [
                ("channel_id", "=", self.woo.id),
                ("kind", "=", "cancel"),
                ("external_ref", "=", order_id),
            ],
            order="id",
        )

    def test_woocommerce_deletion_from_a_shop_whose_clock_runs_ahead(self):
        """The shop's clock runs two minutes ahead of Odoo's: its orders are
        stamped in Odoo's future. Its order.deleted carries no time and is
        ordered by its arrival, moved onto the shop's clock: it releases."""
        self.woo_shop()
        free = self.product_a.free_qty
        ahead = fields.Datetime.now() + timedelta(seconds=120)
        self.post_woo("order.created", self.woo_order(971, ahead))
        self.assertTrue(self.reservations(self.woo, "971"))
        self.woo.invalidate_recordset()
        self.assertGreater(self.woo.clock_offset, 110)
        self.assertLessEqual(self.woo.clock_offset, 121)
        # one delivery that comes ten minutes late (a queue, a retry) does
        # not unlearn it: the lead is read over the recent events
        late = fields.Datetime.now() + timedelta(seconds=120 - 600)
        self.post_woo("order.updated", self.woo_order(972, late, qty=1))
        self.woo.invalidate_recordset()
        self.assertGreater(self.woo.clock_offset, 110)
        self.post_woo("order.deleted", {"id": 971})
        self.assertEqual(self.woo_cancels("971").state, "applied")
        self.assertFalse(self.reservations(self.woo, "971"))
        self.product_a.invalidate_recordset()
        self.assertEqual(self.product_a.free_qty + 1, free, "only 972 reserved")

    def test_woocommerce_restore_from_a_shop_whose_clock_runs_behind(self):
        """The shop's clock runs two minutes behind Odoo's: trashed, then
        restored a moment later, the order is reserved again (its restore is
        its newest state, though stamped before the deletion arrived)."""
        self.woo_shop()
        free = self.product_a.free_qty
        behind = timedelta(seconds=-120)
        # a lead behind is believed from ten events on (fewer could all be
        # late deliveries): the shop's product updates carry its time too
        for n in range(9):
            stamp = (fields.Datetime.now() + behind).strftime("%Y-%m-%dT%H:%M:%S")
            self.post_woo(
                "product.updated",
                {
                    "id": 800 + n,
                    "sku": f"SCS-OTHER-{n}",
                    "manage_stock": True,
                    "stock_quantity": 5,
                    "date_modified_gmt": stamp,
                },
            )
            self.woo.invalidate_recordset()
            self.assertEqual(self.woo.clock_offset, 0.0)
        self.post_woo(
            "order.created", self.woo_order(976, fields.Datetime.now() + behind)
        )
        self.woo.invalidate_recordset()
        self.assertLess(self.woo.clock_offset, -110)
        self.post_woo("order.deleted", {"id": 976})
        self.assertFalse(self.reservations(self.woo, "976"))
        time.sleep(1.1)
        self.post_woo(
            "order.updated", self.woo_order(976, fields.Datetime.now() + behind)
        )
        self.assertTrue(self.reservations(self.woo, "976"), "restored: reserved")
        self.product_a.invalidate_recordset()
        self.assertEqual(self.product_a.free_qty + 2, free)

    def test_woocommerce_order_deleted_restored_and_deleted_again(self):
        """Trashed, restored (a newer modification), trashed again: the two
        deletions carry the same body and are two events; the second one
        releases what the restore reserved. A deletion delivered twice is
        one event."""
        self.woo_shop()
        free = self.product_a.free_qty
        now = fields.Datetime.now()
        self.post_woo("order.created", self.woo_order(973, now - timedelta(minutes=1)))
        self.assertTrue(self.reservations(self.woo, "973"))
        self.post_woo("order.deleted", {"id": 973})
        self.assertFalse(self.reservations(self.woo, "973"))
        # the restore is stamped after the deletion arrived, to the second
        time.sleep(1.1)
        self.post_woo("order.updated", self.woo_order(973, fields.Datetime.now()))
        self.assertTrue(self.reservations(self.woo, "973"))
        time.sleep(1.1)
        body = json.dumps({"id": 973}).encode()
        secret = signatures.wp_specialchars_decode("woo&amp;secret").encode()
        headers = {
            "X-WC-Webhook-Signature": base64.b64encode(
                hmac.new(secret, body, hashlib.sha256).digest()
            ).decode(),
            "X-WC-Webhook-Topic": "order.deleted",
            "X-WC-Webhook-Delivery-ID": "second-trash",
            "Content-Type": "application/json",
        }
        url = URL + self.woo.webhook_token
        for _delivery in range(2):
            res = self.url_open(url, data=body, headers=headers)
            self.assertEqual(res.status_code, 200, res.text)
        self.assertEqual(res.json()["status"], "duplicate")
        self.run_jobs("_scs_job_apply_inbound")
        # the shop is asked first (it no longer has the order): released
        self.assertEqual(self.run_jobs("_scs_job_confirm_deletion"), 1)
        self.run_jobs("_scs_job_apply_inbound")
        self.assertEqual(self.woo_cancels("973").mapped("state"), ["applied"] * 2)
        self.assertFalse(self.reservations(self.woo, "973"))
        self.product_a.invalidate_recordset()
        self.assertEqual(self.product_a.free_qty, free)

    def test_woocommerce_deletion_sent_again_after_a_restore_releases_nothing(self):
        """order.deleted is the order's id alone, signed: the same bytes at
        every deletion, told apart only by an unsigned delivery id. Sent
        again under another id once the order was restored, it is accepted
        (it may be a second deletion) but the shop is asked first: it still
        has the order, so nothing is released. A shop that cannot be asked
        leaves the order reserved and the event a dead letter."""
        sim = self.woo_shop()
        mug = sim.add_product("SCS-MUG", 0)
        self.b_woo.external_id = str(mug)
        free = self.product_a.free_qty
        sim.add_order("processing", [(mug, 2)], order_id=990)

        def shop_order():
            return json.loads(json.dumps(sim._order_json(sim.orders[990])))

        self.post_woo("order.created", shop_order())
        self.assertTrue(self.reservations(self.woo, "990"))
        sim.trash_order(990)
        self.post_woo("order.deleted", {"id": 990}, delivery="first-trash")
        self.assertEqual(self.woo_cancels("990").state, "applied")
        self.assertFalse(self.reservations(self.woo, "990"))
        time.sleep(1.1)
        sim.restore_order(990)
        self.post_woo("order.updated", shop_order())
        self.assertTrue(self.reservations(self.woo, "990"), "restored: reserved")
        # the captured deletion, sent again under a delivery id of its own
        res = self.post_woo("order.deleted", {"id": 990}, delivery="attacker")
        self.assertEqual(res.json()["status"], "accepted")
        replayed = self.woo_cancels("990")[-1]
        self.assertEqual(replayed.state, "skipped")
        self.assertIn("still has order 990 (processing)", replayed.reason)
        self.assertTrue(self.reservations(self.woo, "990"))
        self.product_a.invalidate_recordset()
        self.assertEqual(self.product_a.free_qty, free - 2)
        # the shop refuses to answer (its key revoked): nothing released
        self.woo.sudo().api_secret = "cs_revoked"
        self.post_woo("order.deleted", {"id": 990}, delivery="while-revoked")
        refused = self.woo_cancels("990")[-1]
        self.assertEqual(refused.state, "dead")
        self.assertIn("could not ask the shop", refused.error)
        self.assertTrue(self.reservations(self.woo, "990"))
        # deleted for good, and the key right again: Retry releases
        self.woo.sudo().api_secret = sim.consumer_secret
        sim.trash_order(990, delete=True)
        refused.action_retry()
        self.run_jobs("_scs_job_apply")
        self.run_jobs("_scs_job_confirm_deletion")
        self.run_jobs("_scs_job_apply_inbound")
        self.assertEqual(refused.state, "applied")
        self.assertFalse(self.reservations(self.woo, "990"))
        self.product_a.invalidate_recordset()
        self.assertEqual(self.product_a.free_qty, free)

    def test_woocommerce_restore_stamped_before_its_deletion_arrived(self):
        """A deletion carries no time: it is ordered by its arrival, which
        may come seconds after the trash (the shop queues its webhooks). A
        restore in between is stamped before that arrival: the shop is asked
        and, having the order open again, it is reserved again. A state
        from before the trash, arriving late while the order is still in
        the trash, stays stale."""
        sim = self.woo_shop()
        mug = sim.add_product("SCS-MUG", 0)
        self.b_woo.external_id = str(mug)
        free = self.product_a.free_qty
        earlier = datetime.now(timezone.utc) - timedelta(minutes=1)
        sim.add_order("processing", [(mug, 2)], order_id=995, modified=earlier)

        def shop_order(**changes):
            order = json.loads(json.dumps(sim._order_json(sim.orders[995])))
            return dict(order, **changes)

        self.post_woo("order.created", shop_order())
        before_trash = shop_order()
        sim.trash_order(995)
        sim.restore_order(995)
        # the restore, stamped two seconds before the deletion arrives
        restored_at = (datetime.now(timezone.utc) - timedelta(seconds=2)).strftime(
            "%Y-%m-%dT%H:%M:%S"
        )
        sim.orders[995]["date_modified_gmt"] = restored_at
        self.post_woo("order.deleted", {"id": 995})
        deletion = self.woo_cancels("995")
        self.assertEqual(deletion.state, "skipped", "the shop has it open again")
        # the deletion applied (the shop still had it in the trash when asked)
        sim.trash_order(995)
        self.post_woo("order.deleted", {"id": 995})
        self.assertFalse(self.reservations(self.woo, "995"))
        sim.restore_order(995)
        sim.orders[995]["date_modified_gmt"] = restored_at
        self.post_woo("order.updated", shop_order())
        restore = self.env["sync.event"].search(
            [("channel_id", "=", self.woo.id), ("external_ref", "=", "995")],
            order="id desc",
            limit=1,
        )
        self.assertEqual(restore.state, "applied", restore.reason)
        self.assertTrue(self.reservations(self.woo, "995"), "open again: reserved")
        self.product_a.invalidate_recordset()
        self.assertEqual(self.product_a.free_qty, free - 2)
        # trashed again; a state from before the first trash arrives late
        sim.trash_order(995)
        self.post_woo("order.deleted", {"id": 995})
        self.assertFalse(self.reservations(self.woo, "995"))
        self.post_woo("order.updated", dict(before_trash, status="on-hold"))
        late = self.env["sync.event"].search(
            [("channel_id", "=", self.woo.id), ("external_ref", "=", "995")],
            order="id desc",
            limit=1,
        )
        self.assertEqual(late.state, "stale")
        self.assertFalse(self.reservations(self.woo, "995"))
        self.product_a.invalidate_recordset()
        self.assertEqual(self.product_a.free_qty, free)

    def test_generic_update_that_says_cancelled_releases(self):
        free = self.product_a.free_qty
        self.post_generic(self.order_payload("G-UPD-CANCEL", qty=2))
        self.run_jobs("_scs_job_apply_inbound")
        self.assertTrue(self.reservations(self.generic, "G-UPD-CANCEL"))
        update = self.order_payload("G-UPD-CANCEL", qty=2, event="order.updated")
        update["timestamp"] = fields.Datetime.to_string(
            fields.Datetime.add(fields.Datetime.now(), seconds=5)
        )
        update["data"]["status"] = "cancelled"
        self.assertEqual(self.post_generic(update).status_code, 200)
        self.run_jobs("_scs_job_apply_inbound")
        self.assertFalse(self.reservations(self.generic, "G-UPD-CANCEL"))
        self.product_a.invalidate_recordset()
        self.assertEqual(self.product_a.free_qty, free)

    def test_channel_of_two_warehouses_reserves_where_the_goods_are(self):
        """A channel selling two warehouses' stock: an order the first cannot
        cover is reserved from the second, whole, with no oversell."""
        second = self.env["stock.warehouse"].create({"name": "Second", "code": "SCD"})
        self.env["stock.quant"]._update_available_quantity(
            self.product_a, second.lot_stock_id, 20
        )
        self.generic.warehouse_ids = self.warehouse | second
        self.discard_jobs()
        self.product_a.invalidate_recordset()
        free_first = self.product_a.with_context(
            warehouse_id=self.warehouse.id
        ).free_qty
        self.assertLess(free_first, 12)
        self.post_generic(self.order_payload("G-2WH", qty=12))
        self.run_jobs("_scs_job_apply_inbound")
        picking = self.reservations(self.generic, "G-2WH")
        self.assertEqual(picking.location_id, second.lot_stock_id)
        self.assertEqual(picking.picking_type_id, second.out_type_id)
        self.assertEqual(picking.move_ids.quantity, 12)
        self.assertFalse(self.env["sync.event"].search([("kind", "=", "oversell")]))
        # one the first covers stays there
        self.post_generic(self.order_payload("G-1WH", qty=1))
        self.run_jobs("_scs_job_apply_inbound")
        self.assertEqual(
            self.reservations(self.generic, "G-1WH").location_id, self.stock
        )

    def test_order_no_warehouse_covers_alone_is_split_between_them(self):
        """Neither warehouse covers the order alone, both do together: it
        is reserved in both (one transfer each), with no oversell, and no
        channel is offered the units again. Cancelled, both are released."""
        second = self.env["stock.warehouse"].create({"name": "Second", "code": "SCD"})
        self.env["stock.quant"]._update_available_quantity(
            self.product_a, second.lot_stock_id, 3
        )
        self.generic.warehouse_ids = self.warehouse | second
        self.discard_jobs()
        self.product_a.invalidate_recordset()
        free = self.product_a.free_qty
        first = self.product_a.with_context(warehouse_id=self.warehouse.id).free_qty
        wanted = int(first) + 2
        self.post_generic(self.order_payload("G-SPLITWH", qty=wanted))
        self.run_jobs("_scs_job_apply_inbound")
        pickings = self.reservations(self.generic, "G-SPLITWH")
        self.assertEqual(
            {p.location_id: p.move_ids.quantity for p in pickings},
            {self.stock: first, second.lot_stock_id: 2},
        )
        self.assertFalse(self.oversells())
        self.product_a.invalidate_recordset()
        self.assertEqual(self.product_a.free_qty, free - wanted)
        # 2 more arrive in the first warehouse and an edit adds 2: reserved
        # there, not short in the second
        self.move_stock(self.product_a, 2)
        self.post_generic(
            self.order_payload("G-SPLITWH", qty=wanted + 2, event="order.updated")
        )
        self.run_jobs("_scs_job_apply_inbound")
        pickings = self.reservations(self.generic, "G-SPLITWH")
        self.assertEqual(
            {p.location_id: sum(p.move_ids.mapped("quantity")) for p in pickings},
            {self.stock: first + 2, second.lot_stock_id: 2},
        )
        self.assertFalse(self.oversells())
        self.post_generic(
            self.order_payload("G-SPLITWH", qty=wanted + 2, event="order.cancelled")
        )
        self.run_jobs("_scs_job_apply_inbound")
        self.assertEqual(set(pickings.mapped("state")), {"cancel"})
        self.product_a.invalidate_recordset()
        self.assertEqual(self.product_a.free_qty, free + 2)

    def test_shopify_level_of_another_location_is_not_an_edit(self):
        """Shopify keeps a level per location: a level of a location the
        channel does not sell from is not its number, nor an edit to correct."""
        self.shopify.external_location_id = "gid://shopify/Location/7"
        self.b_shopify.write({"push_state": "ok", "last_pushed_qty": 10})

        def level(location, available, minute):
            body = json.dumps(
                {
                    "inventory_item_id": 222,
                    "location_id": location,
                    "available": available,
                    "updated_at": f"2026-11-22T10:{minute:02d}:00Z",
                }
            ).encode()
            res = self.post_shopify("inventory_levels/update", body)
            self.assertEqual(res.status_code, 200, res.text)
            self.run_jobs("_scs_job_apply_inbound")
            return self.env["sync.event"].search(
                [("channel_id", "=", self.shopify.id), ("kind", "=", "inventory")],
                order="id desc",
                limit=1,
            )

        other = level(99, 3, 1)
        self.assertIn("another location", other.reason)
        self.b_shopify.invalidate_recordset()
        self.assertNotEqual(self.b_shopify.last_seen_qty, 3)
        own = level(7, 4, 2)
        self.assertIn("edit on the channel", own.reason)
        self.b_shopify.invalidate_recordset()
        self.assertEqual(self.b_shopify.last_seen_qty, 4)
