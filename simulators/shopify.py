"""Shopify Admin GraphQL simulator: the parts of the contract the adapter relies on.

What it reproduces (and why tests need it):

- ``POST /admin/api/{version}/graphql.json`` with ``X-Shopify-Access-Token``;
  a wrong token gets 401 with Shopify's ``errors`` string.
- The calculated-cost leaky bucket: every answer carries
  ``extensions.cost`` (``requestedQueryCost``, ``actualQueryCost``,
  ``throttleStatus``); a call whose requested cost exceeds what is available
  gets a ``THROTTLED`` error (HTTP 200, ``actualQueryCost`` null) and costs
  nothing. The bucket size and restore rate are constructor arguments so tests
  can exhaust it in a few calls, and the clock is injectable so a test that
  "sleeps" through a fake clock sees the bucket refill.
- ``inventorySetQuantities`` per API version: ``compareQuantity`` /
  ``ignoreCompareQuantity`` before 2026-01, ``changeFromQuantity`` from
  2026-01, ``changeFromQuantity`` required on every quantity and
  ``@idempotent`` required from 2026-04. A stale compare value gives a
  ``userErrors`` entry with the stale code and changes nothing; any user error
  leaves the whole call unapplied (``inventoryAdjustmentGroup`` null). A key
  seen before with the same input replays the first answer without applying
  twice; with another input it gives ``IDEMPOTENCY_KEY_PARAMETER_MISMATCH``.
  A key whose call failed (``fail_next_keyed_set``) is refused from then on
  with ``IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED`` ("retry with a new key").
- More than 250 quantities: refused with ``MAX_INPUT_SIZE_EXCEEDED``.
- Cursor pagination (``pageInfo { hasNextPage endCursor }``) for inventory
  levels, orders and order line items; ``nodes(ids:)`` for inventory items.

It does not parse GraphQL: it recognises the root field in the document and
reads the variables, which is enough for the adapter's fixed documents.
Quantities live in ``self.quantities[sku]`` (one location).
"""

import base64
import json
import re
import time
from collections import deque
from datetime import datetime, timezone

from .base import Response, Simulator

MAX_INPUT_SIZE = 250
MAX_PAGE_SIZE = 250
MUTATION_COST = 10
STALE_NEW = "CHANGE_FROM_QUANTITY_STALE"
STALE_OLD = "COMPARE_QUANTITY_STALE"
_KEY_RE = re.compile(r'@idempotent\(\s*key:\s*"([^"]*)"\s*\)')
_LINES_FIRST_RE = re.compile(r"lineItems\(first:\s*(\d+)")
_REFUNDS_FIRST_RE = re.compile(r"refunds\(first:\s*(\d+)")
_REFUND_LINES_FIRST_RE = re.compile(r"refundLineItems\(first:\s*(\d+)")
_SINCE_RE = re.compile(r"updated_at:>=?'?\"?([0-9T:\-.+Z]+)")


def _iso(moment):
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(text):
    text = text.strip().strip("'\"")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def _cursor(index):
    return base64.b64encode(f"idx:{index}".encode()).decode()


def _offset(cursor):
    if not cursor:
        return 0
    try:
        return int(base64.b64decode(cursor).decode().split(":", 1)[1]) + 1
    except (ValueError, IndexError) as err:
        raise ValueError(f"invalid cursor {cursor!r}") from err


def _version_at_least(version, reference):
    return version == "unstable" or version >= reference


class ShopifySimulator(Simulator):
    """One shop with one location, speaking the Admin GraphQL API."""

    name = "shopify"

    def __init__(
        self,
        host="127.0.0.1",
        port=0,
        seed=None,
        access_token="shpat_simulator",
        bucket_size=2000.0,
        restore_rate=100.0,
        max_query_cost=1000,
        location_id="gid://shopify/Location/1",
        shop_name="Simulated Shop",
        clock=time.monotonic,
    ):
        super().__init__(host=host, port=port, seed=seed)
        self.access_token = access_token
        self.bucket_size = float(bucket_size)
        self.restore_rate = float(restore_rate)
        self.max_query_cost = max_query_cost
        self.location_id = location_id
        self.shop_name = shop_name
        self.clock = clock
        self.bucket_available = self.bucket_size
        self._bucket_at = clock()
        #: inventory item GID -> {"sku", "variant"}; levels are in quantities
        self.items = {}
        self._item_by_sku = {}
        self.level_updated_at = {}
        #: order GID -> order dict (see add_order)
        self.orders = {}
        #: idempotency key -> (input fingerprint, answer)
        self.idempotency = {}
        #: keys of calls that failed: Shopify refuses them for good
        #: (``IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED``)
        self.failed_keys = set()
        #: the next keyed inventorySetQuantities fails (internal error)
        self.fail_next_keyed_set = False
        #: answers to send instead of handling, oldest first; None handles the
        #: request normally, so a test can fail the second call only
        self.scripted = deque()
        #: called as hook(simulator, count) before each inventorySetQuantities
        self.on_mutation = None
        self.mutation_count = 0
        self.applied_count = 0
        self.throttled_count = 0
        self._next_id = 1000

    # -- seed helpers -----------------------------------------------------------
    def _new_id(self):
        self._next_id += 1
        return self._next_id

    def add_item(self, sku, quantity=0, item_id=None):
        """Create a variant with an inventory item stocked at the location."""
        with self.lock:
            number = item_id or self._new_id()
            gid = f"gid://shopify/InventoryItem/{number}"
            self.items[gid] = {
                "sku": sku,
                "variant": f"gid://shopify/ProductVariant/{number}",
            }
            self._item_by_sku[sku] = gid
            self.quantities[sku] = int(quantity)
            self.level_updated_at[sku] = datetime.now(timezone.utc)
            return gid

    def seed_items(self, count, prefix="SKU-", quantity=0):
        """Create ``count`` items; return their inventory item GIDs in order."""
        return [
            self.add_item(f"{prefix}{n:05d}", quantity=quantity) for n in range(count)
        ]

    def item_gid(self, sku):
        return self._item_by_sku[sku]

    def set_level(self, sku, quantity):
        """Change a level as a sale on the shop would (makes a CAS stale)."""
        with self.lock:
            self.quantities[sku] = int(quantity)
            self.level_updated_at[sku] = datetime.now(timezone.utc)

    def add_order(
        self,
        lines,
        updated_at=None,
        cancelled=False,
        financial_status="PAID",
        order_id=None,
        created_at=None,
    ):
        """Add an order; ``lines`` is a list of (sku, quantity); placed at
        ``created_at``, else when it was last updated."""
        with self.lock:
            number = order_id or self._new_id()
            gid = f"gid://shopify/Order/{number}"
            when = updated_at or datetime.now(timezone.utc)
            self.orders[gid] = {
                "id": gid,
                "name": f"#{number}",
                "createdAt": _iso(created_at or when),
                "updatedAt": _iso(when),
                "cancelledAt": _iso(when) if cancelled else None,
                "displayFinancialStatus": financial_status,
                "_updated": when,
                "lines": [
                    {
                        "id": f"gid://shopify/LineItem/{number}{pos:03d}",
                        "sku": sku,
                        "quantity": qty,
                        "currentQuantity": qty,
                        "variant": (
                            {"id": self.items[self._item_by_sku[sku]]["variant"]}
                            if sku in self._item_by_sku
                            else None
                        ),
                    }
                    for pos, (sku, qty) in enumerate(lines)
                ],
                "_refunds": [],
            }
            return gid

    def edit_order(self, gid, sku, removed, updated_at=None):
        """Remove ``removed`` units of ``sku``'s line, as an order edit does:
        the line keeps its quantity, its ``currentQuantity`` drops."""
        with self.lock:
            order = self.orders[gid]
            line = next(ln for ln in order["lines"] if ln["sku"] == sku)
            if removed > line["currentQuantity"]:
                raise ValueError("an edit cannot remove more than the line holds")
            line["currentQuantity"] -= removed
            self._touch(order, updated_at)

    def refund_order(self, gid, lines, updated_at=None):
        """A refund of ``lines`` (``[(sku, quantity)]``): each line's
        ``currentQuantity`` drops, and the order lists the refund."""
        with self.lock:
            order = self.orders[gid]
            refund_lines = []
            for sku, qty in lines:
                line = next(ln for ln in order["lines"] if ln["sku"] == sku)
                if qty > line["currentQuantity"]:
                    raise ValueError("a refund cannot take more than the line holds")
                line["currentQuantity"] -= qty
                refund_lines.append({"quantity": qty, "lineItem": {"id": line["id"]}})
            order["_refunds"].append(refund_lines)
            self._touch(order, updated_at)

    @staticmethod
    def _touch(order, updated_at):
        when = updated_at or datetime.now(timezone.utc)
        order["_updated"] = when
        order["updatedAt"] = _iso(when)

    def drain_bucket(self, available=0.0):
        """Empty the cost bucket, as another app of the same shop would."""
        with self.lock:
            self.bucket_available = float(available)
            self._bucket_at = self.clock()

    # -- HTTP -------------------------------------------------------------------
    def handle(self, req):
        if self.scripted:
            scripted = self.scripted.popleft()
            if scripted is not None:
                return scripted
        match = re.fullmatch(r"/admin/api/([^/]+)/graphql\.json", req.path)
        if not match or req.method != "POST":
            return Response(404, {"errors": "Not Found"})
        if req.headers.get("x-shopify-access-token") != self.access_token:
            return Response(
                401,
                {
                    "errors": "[API] Invalid API key or access token "
                    "(unrecognized login or wrong password)"
                },
            )
        try:
            body = req.json()
            query = body["query"]
            variables = body.get("variables") or {}
        except (ValueError, KeyError, TypeError):
            return Response(400, {"errors": {"query": "Required parameter missing"}})
        with self.lock:
            return self._execute(match.group(1), query, variables)

    def _execute(self, version, query, variables):
        operation, requested = self._plan(query, variables)
        if operation is None:
            return self._error("Field not recognised by the simulator", "UNKNOWN")
        if requested > self.max_query_cost:
            return self._error(
                f"Query cost is {requested}, which exceeds the single query max "
                f"cost limit ({self.max_query_cost}).",
                "MAX_COST_EXCEEDED",
                cost=self._cost(requested, None),
            )
        self._refill()
        if requested > self.bucket_available:
            self.throttled_count += 1
            return self._error(
                "Throttled", "THROTTLED", cost=self._cost(requested, None)
            )
        self.bucket_available -= requested
        try:
            data, actual = operation(version, query, variables)
        except _GraphQLError as err:
            self.bucket_available += requested
            return self._error(err.message, err.code, cost=self._cost(requested, 0))
        actual = min(actual, requested)
        self.bucket_available = min(
            self.bucket_size, self.bucket_available + requested - actual
        )
        return Response(
            200, {"data": data, "extensions": {"cost": self._cost(requested, actual)}}
        )

    def _plan(self, query, variables):
        """Pick the handler from the document and estimate its requested cost."""
        if "inventorySetQuantities" in query:
            return self._set_quantities, MUTATION_COST
        if "inventoryLevels(" in query:
            return self._levels, 2 + 3 * int(variables.get("first") or 0)
        if "nodes(ids:" in query:
            return self._nodes, 1 + 3 * len(variables.get("ids") or [])
        if re.search(r"\borders\(", query):
            lines = int((_LINES_FIRST_RE.search(query) or [0, 0])[1])
            return self._orders, 2 + int(variables.get("first") or 0) * (2 + 2 * lines)
        if re.search(r"\border\(id:", query) and "refunds(" in query:
            refunds = int((_REFUNDS_FIRST_RE.search(query) or [0, 0])[1])
            lines = int((_REFUND_LINES_FIRST_RE.search(query) or [0, 0])[1])
            return self._order_refunds, 1 + refunds * (3 + 2 * lines)
        if re.search(r"\border\(id:", query):
            return self._order_lines, 2 + 2 * int(variables.get("first") or 0)
        if re.search(r"\bshop\s*\{", query):
            return self._shop, 1
        return None, 0

    def _refill(self):
        now = self.clock()
        elapsed = max(0.0, now - self._bucket_at)
        self._bucket_at = now
        self.bucket_available = min(
            self.bucket_size, self.bucket_available + elapsed * self.restore_rate
        )

    def _cost(self, requested, actual):
        return {
            "requestedQueryCost": requested,
            "actualQueryCost": actual,
            "throttleStatus": {
                "maximumAvailable": self.bucket_size,
                "currentlyAvailable": round(self.bucket_available, 3),
                "restoreRate": self.restore_rate,
            },
        }

    @staticmethod
    def _error(message, code, cost=None):
        body = {"errors": [{"message": message, "extensions": {"code": code}}]}
        if cost is not None:
            body["extensions"] = {"cost": cost}
        return Response(200, body)

    # -- operations -------------------------------------------------------------
    def _shop(self, version, query, variables):
        return {"shop": {"name": self.shop_name}}, 1

    def _set_quantities(self, version, query, variables):
        self.mutation_count += 1
        if self.on_mutation:
            self.on_mutation(self, self.mutation_count)
        payload = variables.get("input") or {}
        quantities = payload.get("quantities") or []
        if len(quantities) > MAX_INPUT_SIZE:
            raise _GraphQLError(
                f"The input array size of {len(quantities)} is greater than the "
                f"maximum allowed of {MAX_INPUT_SIZE}.",
                "MAX_INPUT_SIZE_EXCEEDED",
            )
        new_style = _version_at_least(version, "2026-01")
        required = _version_at_least(version, "2026-04")
        match = _KEY_RE.search(query)
        key = match.group(1) if match else None
        if key is not None and not new_style:
            raise _GraphQLError(
                "Directive 'idempotent' is not defined in this version", "UNKNOWN"
            )
        if required and not key:
            raise _GraphQLError(
                "The @idempotent directive is required for this mutation",
                "BAD_REQUEST",
            )
        for quantity in quantities:
            if not new_style and "changeFromQuantity" in quantity:
                raise _GraphQLError(
                    "InventoryQuantityInput does not accept changeFromQuantity",
                    "argumentNotAccepted",
                )
            if required and "changeFromQuantity" not in quantity:
                raise _GraphQLError(
                    "changeFromQuantity must be given (null opts out)", "BAD_REQUEST"
                )
        fingerprint = json.dumps(payload, sort_keys=True)
        if key and key in self.failed_keys:
            errors = [
                {
                    "code": "IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED",
                    "field": None,
                    "message": "A previous request with this idempotency key"
                    " failed. Retry with a new idempotency key.",
                }
            ]
            return self._set_answer(None, errors), MUTATION_COST
        if key and self.fail_next_keyed_set:
            # Shopify failed it: the key is spent, a retry needs another one
            self.fail_next_keyed_set = False
            self.failed_keys.add(key)
            raise _GraphQLError(
                "Internal error. Looks like something went wrong",
                "INTERNAL_SERVER_ERROR",
            )
        if key:
            seen = self.idempotency.get(key)
            if seen is not None:
                if seen[0] != fingerprint:
                    errors = [
                        {
                            "code": "IDEMPOTENCY_KEY_PARAMETER_MISMATCH",
                            "field": None,
                            "message": "The same idempotency key cannot be used "
                            "with different operation parameters.",
                        }
                    ]
                    return self._set_answer(None, errors), MUTATION_COST
                return seen[1], MUTATION_COST
        answer = self._apply_set(payload, quantities, new_style)
        if key:
            self.idempotency[key] = (fingerprint, answer)
        return answer, MUTATION_COST

    def _apply_set(self, payload, quantities, new_style):
        errors, changes, seen = [], [], set()
        ignore = bool(payload.get("ignoreCompareQuantity"))
        if payload.get("name") not in ("available", "on_hand"):
            errors.append(self._user_error("INVALID_NAME", ["input", "name"]))
        for pos, entry in enumerate(quantities):
            field = ["input", "quantities", str(pos)]
            item = self.items.get(entry.get("inventoryItemId"))
            pair = (entry.get("inventoryItemId"), entry.get("locationId"))
            quantity = entry.get("quantity")
            if item is None:
                errors.append(self._user_error("INVALID_INVENTORY_ITEM", field))
                continue
            if entry.get("locationId") != self.location_id:
                errors.append(self._user_error("INVALID_LOCATION", field))
                continue
            if pair in seen:
                errors.append(
                    self._user_error(
                        "NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR", field
                    )
                )
                continue
            seen.add(pair)
            if not isinstance(quantity, int) or quantity < 0:
                errors.append(self._user_error("INVALID_QUANTITY_NEGATIVE", field))
                continue
            current = self.quantities.get(item["sku"], 0)
            if new_style and "changeFromQuantity" in entry:
                expected = entry["changeFromQuantity"]
                if expected is not None and expected != current:
                    errors.append(
                        self._user_error(STALE_NEW, [*field, "changeFromQuantity"])
                    )
                    continue
            elif not ignore:
                expected = entry.get("compareQuantity")
                if expected is None:
                    errors.append(self._user_error("COMPARE_QUANTITY_REQUIRED", field))
                    continue
                if expected != current:
                    errors.append(
                        self._user_error(STALE_OLD, [*field, "compareQuantity"])
                    )
                    continue
            changes.append((item, quantity, current))
        if errors:
            return self._set_answer(None, errors)
        now = datetime.now(timezone.utc)
        for item, quantity, _current in changes:
            self.quantities[item["sku"]] = quantity
            self.level_updated_at[item["sku"]] = now
        self.applied_count += len(changes)
        group = {
            "id": f"gid://shopify/InventoryAdjustmentGroup/{self._new_id()}",
            "reason": payload.get("reason"),
            "referenceDocumentUri": payload.get("referenceDocumentUri"),
            "changes": [
                {"name": "available", "delta": qty - old, "quantityAfterChange": qty}
                for _item, qty, old in changes
            ],
        }
        return self._set_answer(group, [])

    @staticmethod
    def _user_error(code, field):
        messages = {
            STALE_NEW: "The changeFromQuantity value does not match persisted value.",
            STALE_OLD: "The compareQuantity value does not match persisted value.",
        }
        return {"code": code, "field": field, "message": messages.get(code, code)}

    @staticmethod
    def _set_answer(group, errors):
        return {
            "inventorySetQuantities": {
                "inventoryAdjustmentGroup": group,
                "userErrors": errors,
            }
        }

    def _level_node(self, gid):
        item = self.items[gid]
        return {
            "updatedAt": _iso(self.level_updated_at[item["sku"]]),
            "quantities": [
                {"name": "available", "quantity": self.quantities.get(item["sku"], 0)}
            ],
        }

    def _page(self, rows, variables):
        first = int(variables.get("first") or 0)
        if not 0 < first <= MAX_PAGE_SIZE:
            raise _GraphQLError(
                f"first must be between 1 and {MAX_PAGE_SIZE}", "BAD_REQUEST"
            )
        try:
            start = _offset(variables.get("after"))
        except ValueError as err:
            raise _GraphQLError(str(err), "BAD_REQUEST") from err
        page = rows[start : start + first]
        end = start + len(page) - 1
        info = {
            "hasNextPage": start + len(page) < len(rows),
            "endCursor": _cursor(end) if page else None,
        }
        return page, info

    def _levels(self, version, query, variables):
        if variables.get("locationId") != self.location_id:
            return {"location": None}, 1
        page, info = self._page(list(self.items), variables)
        nodes = []
        for gid in page:
            node = self._level_node(gid)
            node["item"] = {
                "id": gid,
                "sku": self.items[gid]["sku"],
                "variant": {"id": self.items[gid]["variant"]},
            }
            nodes.append(node)
        data = {"location": {"inventoryLevels": {"pageInfo": info, "nodes": nodes}}}
        return data, 2 + 3 * len(nodes)

    def _nodes(self, version, query, variables):
        ids = variables.get("ids") or []
        if len(ids) > MAX_INPUT_SIZE:
            raise _GraphQLError("too many ids", "MAX_INPUT_SIZE_EXCEEDED")
        at_location = variables.get("locationId") == self.location_id
        nodes = []
        for gid in ids:
            item = self.items.get(gid)
            if item is None:
                nodes.append(None)
                continue
            nodes.append(
                {
                    "id": gid,
                    "sku": item["sku"],
                    "variant": {"id": item["variant"]},
                    "inventoryLevel": self._level_node(gid) if at_location else None,
                }
            )
        return {"nodes": nodes}, 1 + 3 * len(ids)

    def _orders(self, version, query, variables):
        match = _SINCE_RE.search(variables.get("query") or "")
        since = _parse_iso(match.group(1)) if match else None
        rows = sorted(
            (
                o
                for o in self.orders.values()
                if since is None or o["_updated"] >= since
            ),
            key=lambda o: (o["_updated"], o["id"]),
        )
        page, info = self._page(rows, variables)
        lines_first = int((_LINES_FIRST_RE.search(query) or [0, 0])[1])
        nodes, cost = [], 2
        for order in page:
            lines = order["lines"][:lines_first]
            cost += 2 + 2 * len(lines)
            nodes.append(
                {
                    "id": order["id"],
                    "name": order["name"],
                    "createdAt": order["createdAt"],
                    "updatedAt": order["updatedAt"],
                    "cancelledAt": order["cancelledAt"],
                    "displayFinancialStatus": order["displayFinancialStatus"],
                    "lineItems": {
                        "pageInfo": {
                            "hasNextPage": len(order["lines"]) > lines_first,
                            "endCursor": _cursor(len(lines) - 1) if lines else None,
                        },
                        "nodes": lines,
                    },
                }
            )
        return {"orders": {"pageInfo": info, "nodes": nodes}}, cost

    def _order_lines(self, version, query, variables):
        order = self.orders.get(variables.get("id"))
        if order is None:
            return {"order": None}, 1
        page, info = self._page(order["lines"], variables)
        data = {"order": {"lineItems": {"pageInfo": info, "nodes": page}}}
        return data, 2 + 2 * len(page)

    def _order_refunds(self, version, query, variables):
        """``order.refunds`` is a list (its ``first`` caps it, no cursor);
        each refund's ``refundLineItems`` is a connection."""
        order = self.orders.get(variables.get("id"))
        if order is None:
            return {"order": None}, 1
        refunds_first = int((_REFUNDS_FIRST_RE.search(query) or [0, 0])[1])
        lines_first = int((_REFUND_LINES_FIRST_RE.search(query) or [0, 0])[1])
        refunds, cost = [], 1
        for refund_lines in order["_refunds"][:refunds_first]:
            page = refund_lines[:lines_first]
            cost += 3 + 2 * len(page)
            refunds.append(
                {
                    "refundLineItems": {
                        "pageInfo": {"hasNextPage": len(refund_lines) > lines_first},
                        "nodes": page,
                    }
                }
            )
        return {"order": {"refunds": refunds}}, cost

    # -- benchmark --------------------------------------------------------------
    def benchmark_fixture(self, count):
        """Seed ``count`` items; return (config fields, update fields, auth calls).

        ``benchmarks/bench_adapters.py`` calls this on every simulator that has
        it, so each channel decides what its updates carry; plain dicts keep
        the simulators free of adapter imports. Shopify needs no token
        exchange, hence no unavoidable auth call.
        """
        gids = self.seed_items(count, prefix="BENCH-", quantity=0)
        updates = [
            {
                "sku": self.items[gid]["sku"],
                "quantity": (n % 50) + 1,
                "external_variant_id": gid,
                "idempotency_key": f"bench-{n}",
                "previous_quantity": 0,
            }
            for n, gid in enumerate(gids)
        ]
        config = {
            "base_url": self.url,
            "access_token": self.access_token,
            "location_id": self.location_id,
        }
        return config, updates, 0


class _GraphQLError(Exception):
    def __init__(self, message, code):
        super().__init__(message)
        self.message = message
        self.code = code
