"""WooCommerce REST API v3 simulator: products, variations, batches, orders.

What it reproduces (read from WooCommerce's REST controllers):

- Consumer key/secret as HTTP Basic (or ``consumer_key``/``consumer_secret``
  query parameters); a wrong pair gets 401
  ``woocommerce_rest_authentication_error``, none at all 401
  ``woocommerce_rest_cannot_view``.
- ``POST /products/batch`` and ``/products/{id}/variations/batch``: more than
  ``batch_limit`` (default 100) create+update+delete items in total is refused
  whole with 413 ``woocommerce_rest_request_entity_too_large`` ("Unable to
  accept more than N items for this request."); otherwise each item is applied
  on its own and a failed one is answered ``{"id", "error": {...}}`` in place.
- Collections paged with ``page``/``per_page`` (1..100, else 400
  ``rest_invalid_param``), ``X-WP-Total`` and ``X-WP-TotalPages`` headers,
  ``include`` lists, and for orders ``modified_after`` (exclusive, GMT with
  ``dates_are_gmt``).
- ``GET /system_status`` for connection checks.
- ``GET /orders/{id}``: one order; a trashed one answers with status
  ``trash`` (and is left out of ``GET /orders``, as WooCommerce's ``any``
  status leaves it out), one deleted for good 404
  ``woocommerce_rest_shop_order_invalid_id``.
- ``GET /orders/{id}/refunds``: an order's refunds, each with its line items
  at negative quantities (``_refunded_item_id`` in their meta data); the
  order lists them by id and total only, as WooCommerce's order does. A
  restocking refund puts its units back in the shop's stock. Whether a
  refund restocked is not in what the API answers (``api_restock`` is
  write-only), so the simulator does not say it either.

There is no compare-and-set and no idempotency key in WooCommerce, so the
simulator has none either. Quantities live in ``self.quantities[sku]``.
"""

import base64
import math
import re
from collections import deque
from datetime import datetime, timezone

from .base import Response, Simulator

PREFIX = "/wp-json/wc/v3"


def _gmt(moment):
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def _error(status, code, message, **data):
    return Response(
        status, {"code": code, "message": message, "data": {"status": status, **data}}
    )


class WooCommerceSimulator(Simulator):
    """One WooCommerce shop."""

    name = "woocommerce"

    def __init__(
        self,
        host="127.0.0.1",
        port=0,
        seed=None,
        consumer_key="ck_simulator",
        consumer_secret="cs_simulator",
        batch_limit=100,
    ):
        super().__init__(host=host, port=port, seed=seed)
        self.consumer_key = consumer_key
        self.consumer_secret = consumer_secret
        self.batch_limit = batch_limit
        #: product or variation id -> record (quantities are in self.quantities)
        self.products = {}
        #: variable product id -> [variation ids]
        self.variations = {}
        #: order id -> order payload
        self.orders = {}
        #: order id -> [refund payload], oldest first
        self.refunds = {}
        #: answers to send instead of handling, oldest first; None handles the
        #: request normally, so a test can fail the second call only
        self.scripted = deque()
        self.batch_calls = 0
        self._next_id = 100

    # -- seed helpers -----------------------------------------------------------
    def _new_id(self):
        self._next_id += 1
        return self._next_id

    def _record(self, sku, quantity, kind, parent_id=0, manage_stock=True):
        number = self._new_id()
        self.products[number] = {
            "id": number,
            "sku": sku,
            "type": kind,
            "parent_id": parent_id,
            "manage_stock": manage_stock,
            "date_modified_gmt": _gmt(datetime.now(timezone.utc)),
        }
        if manage_stock and sku:
            self.quantities[sku] = int(quantity)
        return number

    def add_product(self, sku, quantity=0, manage_stock=True):
        """Add a simple product; return its id."""
        with self.lock:
            return self._record(sku, quantity, "simple", manage_stock=manage_stock)

    def add_variable_product(self, sku, variations):
        """Add a variable product with ``[(sku, quantity), ...]`` variations.

        Returns ``(parent id, [variation ids])``; the parent manages no stock.
        """
        with self.lock:
            parent = self._record(sku, 0, "variable", manage_stock=False)
            ids = [
                self._record(v_sku, qty, "variation", parent_id=parent)
                for v_sku, qty in variations
            ]
            self.variations[parent] = ids
            return parent, ids

    def seed_products(self, count, prefix="SKU-", quantity=0):
        """Add ``count`` simple products; return their ids in order."""
        return [self.add_product(f"{prefix}{n:05d}", quantity) for n in range(count)]

    def set_stock(self, sku, quantity):
        """Change a stock level as a sale in the shop would."""
        with self.lock:
            self.quantities[sku] = int(quantity)

    def add_order(self, status, lines, modified=None, order_id=None):
        """Add an order; ``lines`` is a list of (product id, quantity)."""
        with self.lock:
            number = order_id or self._new_id()
            when = modified or datetime.now(timezone.utc)
            line_items = []
            for pos, (item_id, qty) in enumerate(lines):
                record = self.products.get(item_id, {})
                is_variation = record.get("type") == "variation"
                line_items.append(
                    {
                        "id": number * 1000 + pos,
                        "product_id": record.get("parent_id")
                        if is_variation
                        else item_id,
                        "variation_id": item_id if is_variation else 0,
                        "quantity": qty,
                        "sku": record.get("sku", ""),
                    }
                )
            self.orders[number] = {
                "id": number,
                "status": status,
                "date_modified_gmt": _gmt(when),
                "line_items": line_items,
                "refunds": [],
            }
            return number

    def trash_order(self, order_id, delete=False):
        """Move an order to the trash (``delete``: delete it for good)."""
        with self.lock:
            if delete:
                self.orders.pop(order_id, None)
                return
            order = self.orders[order_id]
            order["_restore_status"] = order["status"]
            order["status"] = "trash"
            order["date_modified_gmt"] = _gmt(datetime.now(timezone.utc))

    def restore_order(self, order_id):
        """Take an order out of the trash, with the status it had."""
        with self.lock:
            order = self.orders[order_id]
            order["status"] = order.pop("_restore_status", "pending")
            order["date_modified_gmt"] = _gmt(datetime.now(timezone.utc))

    def add_refund(self, order_id, lines, restock=True, amount="0.00", when=None):
        """Refund ``[(line item id, quantity)]`` of an order (no lines: an
        amount only), as the shop's refund screen does: the refund gets its
        own id, the order lists it and is modified, and a restocking refund
        puts the units back in stock. Returns the refund's id."""
        with self.lock:
            order = self.orders[order_id]
            when = when or datetime.now(timezone.utc)
            by_id = {item["id"]: item for item in order["line_items"]}
            number = self._new_id()
            refund_lines = []
            for pos, (item_id, qty) in enumerate(lines):
                item = by_id[item_id]
                refund_lines.append(
                    {
                        "id": number * 1000 + pos,
                        "product_id": item["product_id"],
                        "variation_id": item["variation_id"],
                        "quantity": -qty,
                        "sku": item["sku"],
                        "meta_data": [{"key": "_refunded_item_id", "value": item_id}],
                    }
                )
                if restock and item["sku"] in self.quantities:
                    self.quantities[item["sku"]] += qty
            self.refunds.setdefault(order_id, []).append(
                {
                    "id": number,
                    "date_created_gmt": _gmt(when),
                    "amount": amount,
                    "reason": "",
                    "refunded_payment": False,
                    "line_items": refund_lines,
                }
            )
            order["refunds"].append({"id": number, "reason": "", "total": f"-{amount}"})
            order["date_modified_gmt"] = _gmt(when)
            return number

    # -- HTTP -------------------------------------------------------------------
    def _authenticated(self, req):
        key = req.query.get("consumer_key")
        secret = req.query.get("consumer_secret")
        header = req.headers.get("authorization", "")
        if not key and header.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(header[6:]).decode()
            except (ValueError, UnicodeDecodeError):
                decoded = ""
            key, _sep, secret = decoded.partition(":")
        if not key or not secret:
            return _error(
                401, "woocommerce_rest_cannot_view", "Sorry, you cannot list resources."
            )
        if key != self.consumer_key:
            return _error(
                401, "woocommerce_rest_authentication_error", "Consumer key is invalid."
            )
        if secret != self.consumer_secret:
            return _error(
                401,
                "woocommerce_rest_authentication_error",
                "Consumer secret is invalid.",
            )
        return None

    def handle(self, req):
        if self.scripted:
            scripted = self.scripted.popleft()
            if scripted is not None:
                return scripted
        if not req.path.startswith(PREFIX):
            return _error(404, "rest_no_route", "No route was found.")
        refused = self._authenticated(req)
        if refused:
            return refused
        path = req.path[len(PREFIX) :].rstrip("/")
        with self.lock:
            if path == "/system_status" and req.method == "GET":
                return Response(200, {"environment": {"version": "simulated"}})
            if path == "/products" and req.method == "GET":
                rows = [p for p in self.products.values() if p["type"] != "variation"]
                return self._collection(req, rows, self._product_json)
            if path == "/products/batch" and req.method in ("POST", "PUT", "PATCH"):
                return self._batch(req, None)
            match = re.fullmatch(r"/products/(\d+)/variations(/batch)?", path)
            if match:
                parent = int(match.group(1))
                if parent not in self.variations:
                    return _error(
                        404, "woocommerce_rest_product_invalid_id", "Invalid ID."
                    )
                if match.group(2) and req.method in ("POST", "PUT", "PATCH"):
                    return self._batch(req, parent)
                if not match.group(2) and req.method == "GET":
                    rows = [self.products[i] for i in self.variations[parent]]
                    return self._collection(req, rows, self._product_json)
            if path.startswith("/orders") and req.method == "GET":
                answer = self._order_routes(req, path)
                if answer is not None:
                    return answer
        return _error(404, "rest_no_route", "No route was found.")

    def _order_routes(self, req, path):
        """``GET /orders``, ``/orders/{id}`` and ``/orders/{id}/refunds``."""
        if path == "/orders":
            return self._collection(req, self._orders(req), self._order_json)
        match = re.fullmatch(r"/orders/(\d+)", path)
        if match:
            order = self.orders.get(int(match.group(1)))
            if order is None:
                return _error(
                    404, "woocommerce_rest_shop_order_invalid_id", "Invalid ID."
                )
            return Response(200, self._order_json(order))
        match = re.fullmatch(r"/orders/(\d+)/refunds", path)
        if match:
            order_id = int(match.group(1))
            if order_id not in self.orders:
                return _error(
                    404, "woocommerce_rest_order_invalid_id", "Invalid order ID."
                )
            rows = self.refunds.get(order_id, [])
            return self._collection(req, rows, dict)
        return None

    def _collection(self, req, rows, render):
        try:
            per_page = int(req.query.get("per_page", 10))
            page = int(req.query.get("page", 1))
        except ValueError:
            return _error(400, "rest_invalid_param", "Invalid parameter(s): page")
        if not 1 <= per_page <= 100:
            return _error(
                400,
                "rest_invalid_param",
                "Invalid parameter(s): per_page",
                params={"per_page": "per_page must be between 1 and 100"},
            )
        if page < 1:
            return _error(400, "rest_invalid_param", "Invalid parameter(s): page")
        if req.query.get("include"):
            wanted = {int(i) for i in req.query["include"].split(",") if i.isdigit()}
            rows = [row for row in rows if row["id"] in wanted]
        rows = sorted(rows, key=lambda row: row["id"])
        total = len(rows)
        pages = math.ceil(total / per_page)
        chunk = rows[(page - 1) * per_page : page * per_page]
        return Response(
            200,
            [render(row) for row in chunk],
            {"X-WP-Total": total, "X-WP-TotalPages": pages},
        )

    def _product_json(self, record):
        data = dict(record)
        managed = record["manage_stock"]
        data["stock_quantity"] = self.quantities.get(record["sku"]) if managed else None
        return data

    @staticmethod
    def _order_json(order):
        return {k: v for k, v in order.items() if not k.startswith("_")}

    def _orders(self, req):
        wanted = req.query.get("status")
        wanted = None if wanted == "any" else wanted
        rows = [
            o
            for o in self.orders.values()
            if (o["status"] == wanted if wanted else o["status"] != "trash")
        ]
        since = req.query.get("modified_after")
        if since:
            moment = datetime.fromisoformat(since.removesuffix("Z"))
            rows = [
                o
                for o in rows
                if datetime.fromisoformat(o["date_modified_gmt"]) > moment
            ]
        return rows

    def _batch(self, req, parent):
        try:
            body = req.json() or {}
        except ValueError:
            return _error(400, "rest_invalid_json", "Invalid JSON body passed.")
        total = sum(len(body.get(op) or []) for op in ("create", "update", "delete"))
        if total > self.batch_limit:
            return _error(
                413,
                "woocommerce_rest_request_entity_too_large",
                f"Unable to accept more than {self.batch_limit} items for this "
                "request.",
            )
        self.batch_calls += 1
        answer = {}
        if body.get("update"):
            answer["update"] = [self._update(item, parent) for item in body["update"]]
        return Response(200, answer)

    def _update(self, item, parent):
        item_id = item.get("id") if isinstance(item, dict) else None
        record = self.products.get(item_id)
        kind = "product_variation" if parent else "product"
        if record is None or (parent and record.get("parent_id") != parent):
            return {
                "id": item_id,
                "error": {
                    "code": f"woocommerce_rest_{kind}_invalid_id",
                    "message": "Invalid ID.",
                    "data": {"status": 400},
                },
            }
        if not parent and record["type"] == "variation":
            return {
                "id": item_id,
                "error": {
                    "code": "woocommerce_rest_product_invalid_id",
                    "message": "Invalid ID.",
                    "data": {"status": 400},
                },
            }
        quantity = item.get("stock_quantity")
        if quantity is not None and (
            isinstance(quantity, bool) or not isinstance(quantity, int)
        ):
            return {
                "id": item_id,
                "error": {
                    "code": "rest_invalid_param",
                    "message": "stock_quantity is not of type integer.",
                    "data": {"status": 400},
                },
            }
        if "manage_stock" in item:
            record["manage_stock"] = bool(item["manage_stock"])
        if record["manage_stock"] and quantity is not None:
            self.quantities[record["sku"]] = quantity
        record["date_modified_gmt"] = _gmt(datetime.now(timezone.utc))
        return self._product_json(record)

    # -- benchmark --------------------------------------------------------------
    def benchmark_fixture(self, count):
        """Seed ``count`` simple products; return (config, update fields, auth calls).

        Consumer keys travel with every call, so there is no auth call.
        """
        ids = self.seed_products(count, prefix="BENCH-", quantity=0)
        updates = [
            {
                "sku": self.products[pid]["sku"],
                "quantity": (n % 50) + 1,
                "external_id": str(pid),
            }
            for n, pid in enumerate(ids)
        ]
        config = {
            "base_url": self.url,
            "api_key": self.consumer_key,
            "api_secret": self.consumer_secret,
        }
        return config, updates, 0
