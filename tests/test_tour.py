# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""The backend in a real browser (headless Chromium)."""

import time

from odoo.tests import HttpCase, tagged

from .common import SyncCaseMixin


@tagged("post_install", "-at_install")
class TestTour(SyncCaseMixin, HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env = cls.env(context=dict(cls.env.context, tracking_disable=True))
        cls.warehouse = cls.env["stock.warehouse"].search(
            [("company_id", "=", cls.env.company.id)], limit=1
        )
        product = cls.env["product.product"].create(
            {
                "name": "Tour Mug",
                "default_code": "TOUR-MUG",
                "type": "consu",
                "is_storable": True,
            }
        )
        cls.env["stock.quant"]._update_available_quantity(
            product, cls.warehouse.lot_stock_id, 6
        )
        seed = cls.env["sync.channel"].create(
            {"name": "Seed", "channel_type": "generic"}
        )
        for i, ms in enumerate((100.0, 200.0, 300.0)):
            cls.env["sync.event"].create(
                {
                    "direction": "out",
                    "channel_id": seed.id,
                    "kind": "push",
                    "idempotency_key": f"tour-{i}",
                    "state": "applied",
                    "latency_ms": ms,
                    "change_ts": time.time(),
                }
            )

    def test_tour(self):
        try:
            import websocket  # noqa: F401 - the test browser needs it
        except ImportError:
            self.skipTest("websocket-client is not installed (needed by the browser)")
        sim = self.start_simulator(port=18791)
        sim.set_stock("TOUR-MUG", 1)
        self.start_tour(
            "/odoo/action-stock_channel_sync.action_sync_channel",
            "stock_channel_sync_tour",
            login="admin",
            timeout=120,
        )
        channel = self.env["sync.channel"].search([("name", "=", "Tour Shop")])
        self.assertEqual(channel.binding_ids.sku, "TOUR-MUG")
        self.assertEqual(channel.binding_ids.published_qty, 6)
