"""eBay Sell APIs on loopback: OAuth, Inventory (bulk price/quantity), Fulfillment.

What it follows (eBay API docs and the sell_inventory / sell_fulfillment
OpenAPI contracts):

- ``POST /identity/v1/oauth2/token``: HTTP Basic client credentials,
  ``grant_type=refresh_token``, scopes a subset of the consented ones; user
  tokens expire after ``token_ttl`` seconds. ``invalid_client``,
  ``invalid_grant`` and ``invalid_scope`` as eBay words them.
- A missing, unknown or expired bearer token: 401 with errorId 1001
  "Invalid access token".
- ``rate_limit=(rate, burst)`` meters every API call with a token bucket; an
  empty bucket is a 429 with errorId 2001 "Too many requests". eBay documents
  no Retry-After for it, so none is sent.
- ``bulk_update_price_quantity``: at most 25 request entries and 25 offers
  per entry. eBay documents no dedicated error for more, so the simulator
  answers 400 with the method's catch-all user error 25002 (an assumption,
  not a documented answer). Per-entry ``responses[].statusCode``; the call is
  200 when all succeed, 207 otherwise. A listing is refused past
  ``revision_limit`` revisions in 24 hours (eBay: 250 a calendar day; the
  per-item error it gives is not documented either, 25002 again). A body not
  sent as ``application/json`` is refused with 415 (the method requires the
  header; the errorId is the simulator's).
- ``inventory_item``: ``limit`` 1 to 100 and ``offset`` as a page number (as
  the method page words it), with ``href``/``next``/``prev``/``total``/
  ``size``; links name eBay's public host like the real API, so a client must
  not follow them blindly. ``bulk_get_inventory_item``: 25 SKUs at most
  (25727).
- Fulfillment ``order``: ``filter=lastmodifieddate:[from..to]`` or
  ``creationdate``, 90 days back at most (30830), ``limit`` up to 1000,
  ``offset`` in records; ``order/{orderId}``.
"""

import base64
import itertools
import re
import time
import uuid
from collections import deque
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, unquote, urlencode

from .base import RateBucket, Response, TokenSimulator, parse_iso

TOKEN_PATH = "/identity/v1/oauth2/token"
INVENTORY = "/sell/inventory/v1"
FULFILLMENT = "/sell/fulfillment/v1"
#: the host eBay's pagination links name
PUBLIC_HOST = "https://api.ebay.com"
MAX_REQUESTS = 25
MAX_OFFERS = 25
MAX_INVENTORY_LIMIT = 100
MAX_ORDERS_LIMIT = 1000
ORDERS_HORIZON = timedelta(days=90)
REVISION_WINDOW = 24 * 3600.0
SCOPES = (
    "https://api.ebay.com/oauth/api_scope/sell.inventory",
    "https://api.ebay.com/oauth/api_scope/sell.inventory.readonly",
    "https://api.ebay.com/oauth/api_scope/sell.fulfillment",
    "https://api.ebay.com/oauth/api_scope/sell.fulfillment.readonly",
)


def iso(moment):
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def error(error_id, message, domain="API_INVENTORY", category="REQUEST", **extra):
    return {
        "errorId": error_id,
        "domain": domain,
        "category": category,
        "message": message,
        **extra,
    }


def errors(status, *entries):
    return Response(status, {"errors": list(entries)})


def _int(value, default):
    if value in (None, ""):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class EbaySimulator(TokenSimulator):
    """One eBay seller: inventory items, published offers, orders."""

    name = "ebay"

    def __init__(
        self,
        host="127.0.0.1",
        port=0,
        seed=None,
        *,
        token_ttl=7200.0,
        rate_limit=None,
        revision_limit=250,
        clock=time.time,
    ):
        super().__init__(
            host=host, port=port, seed=seed, token_ttl=token_ttl, clock=clock
        )
        self.client_id = "SimApp-SIM-PRD-0123456789-abcdef01"
        self.client_secret = "PRD-simulator-client-secret"
        self.refresh_token = "v^1.1#i^1#r^1#simulator-refresh-token"
        self.granted_scopes = set(SCOPES)
        self.revision_limit = revision_limit
        self.bucket = RateBucket(*rate_limit, time.monotonic) if rate_limit else None
        #: SKU -> {"listingId", "offers": [offerId]}
        self.items = {}
        #: offerId -> {"sku", "listingId", "availableQuantity", "status"}
        self.offers = {}
        #: listingId -> deque of revision times (simulator clock)
        self.revisions = {}
        self.orders = {}
        self.public_host = PUBLIC_HOST
        self._ids = itertools.count(1)
        self._routes = [
            ("POST", TOKEN_PATH, self._token, False),
            (
                "POST",
                INVENTORY + "/bulk_update_price_quantity",
                self._bulk_update,
                True,
            ),
            ("GET", INVENTORY + "/inventory_item", self._inventory_items, True),
            ("GET", INVENTORY + "/offer", self._get_offers, True),
            ("POST", INVENTORY + "/bulk_get_inventory_item", self._bulk_get, True),
            ("GET", FULFILLMENT + "/order", self._get_orders, True),
            ("GET", FULFILLMENT + "/order/([^/]+)", self._get_order, True),
        ]

    # -- helpers for tests and benchmarks -------------------------------------
    def seed_skus(self, n, quantity=10, prefix="EBAY-", variations=1):
        """Create ``n`` inventory items with a published offer each.

        ``variations`` SKUs in a row share one listing (a multi-variation
        listing). Returns StockUpdate-ready dicts: ``external_id`` is the
        listing id, ``external_variant_id`` the offer id.
        """
        rows = []
        with self.lock:
            start = len(self.items)
            for number in range(start, start + n):
                sku = f"{prefix}{number:06d}"
                listing = f"11{number // max(1, variations):010d}"
                offer = f"{5000000000 + number}"
                self.items[sku] = {"listingId": listing, "offers": [offer]}
                self.offers[offer] = {
                    "sku": sku,
                    "listingId": listing,
                    "availableQuantity": quantity,
                    "status": "PUBLISHED",
                }
                self.quantities[sku] = quantity
                rows.append(
                    {
                        "sku": sku,
                        "quantity": quantity,
                        "external_id": listing,
                        "external_variant_id": offer,
                    }
                )
        return rows

    def config_fields(self):
        return {
            "channel_type": "ebay",
            "base_url": self.url,
            "token_url": self.url + TOKEN_PATH,
            "api_key": self.client_id,
            "api_secret": self.client_secret,
            "refresh_token": self.refresh_token,
            "timeout": 5.0,
        }

    def offer_quantity(self, offer_id):
        with self.lock:
            return self.offers[offer_id]["availableQuantity"]

    def revision_count(self, listing_id):
        with self.lock:
            return len(self._recent_revisions(listing_id))

    def seed_order(
        self,
        lines,
        order_id=None,
        modified=None,
        cancel_state="NONE_REQUESTED",
        payment_status="PAID",
        fulfillment_status="NOT_STARTED",
    ):
        """Add an order; ``lines`` is [(sku, quantity)]. Return its id."""
        number = next(self._ids)
        order_id = order_id or f"{number:02d}-{number:05d}-{number:05d}"
        moment = modified or datetime.now(timezone.utc)
        with self.lock:
            self.orders[order_id] = {
                "orderId": order_id,
                "legacyOrderId": f"{number}-{number}",
                "creationDate": iso(moment),
                "lastModifiedDate": iso(moment),
                "orderFulfillmentStatus": fulfillment_status,
                "orderPaymentStatus": payment_status,
                "cancelStatus": {"cancelState": cancel_state, "cancelRequests": []},
                "sellerId": "simulator_seller",
                "lineItems": [
                    {
                        "lineItemId": f"{number:05d}{index:03d}",
                        "legacyItemId": (self.items.get(sku) or {}).get(
                            "listingId", ""
                        ),
                        "sku": sku,
                        "quantity": quantity,
                        "lineItemFulfillmentStatus": fulfillment_status,
                    }
                    for index, (sku, quantity) in enumerate(lines)
                ],
            }
        return order_id

    def notification(self, topic, data, notification_id=None, when=None):
        """A Notification API message body for ``topic``."""
        moment = when or datetime.now(timezone.utc)
        return {
            "metadata": {"topic": topic, "schemaVersion": "1.0", "deprecated": False},
            "notification": {
                "notificationId": notification_id or str(uuid.uuid4()),
                "eventDate": iso(moment),
                "publishDate": iso(moment + timedelta(seconds=2)),
                "publishAttemptCount": 1,
                "data": data,
            },
        }

    # -- dispatch ---------------------------------------------------------------
    def handle(self, req):
        for method, pattern, handler, auth in self._routes:
            match = re.fullmatch(pattern, req.path)
            if not match or method != req.method:
                continue
            if auth:
                refused = self._authenticate(req)
                if refused is not None:
                    return refused
                if self.bucket is not None and not self.bucket.allow():
                    return errors(
                        429,
                        error(
                            2001,
                            "Too many requests.",
                            domain="ACCESS",
                            longMessage="The request limit has been reached for "
                            "the resource.",
                        ),
                    )
            return handler(req, *[unquote(g) for g in match.groups()])
        return Response(404, {"errors": [error(2002, "Resource not found")]})

    def _authenticate(self, req):
        header = req.headers.get("authorization", "")
        token = header[7:] if header.startswith("Bearer ") else None
        expiry = self._token_expiry(token)
        if expiry is None or self.clock() >= expiry:
            return errors(
                401,
                error(
                    1001,
                    "Invalid access token",
                    domain="OAuth",
                    longMessage="Invalid access token. Check the value of the "
                    "Authorization HTTP request header.",
                ),
            )
        return None

    def _token(self, req):
        with self.lock:
            self.token_requests += 1
        header = req.headers.get("authorization", "")
        try:
            client = base64.b64decode(header.removeprefix("Basic ")).decode()
        except ValueError:
            client = ""
        if client != f"{self.client_id}:{self.client_secret}":
            return Response(
                401,
                {
                    "error": "invalid_client",
                    "error_description": "client authentication failed",
                },
            )
        form = {k: v[-1] for k, v in parse_qs(req.body.decode()).items()}
        if (
            form.get("grant_type") != "refresh_token"
            or form.get("refresh_token") != self.refresh_token
        ):
            return Response(
                400,
                {
                    "error": "invalid_grant",
                    "error_description": "the provided authorization grant code is "
                    "invalid or was issued to another client",
                },
            )
        scopes = set((form.get("scope") or "").split())
        if not scopes <= self.granted_scopes:
            return Response(
                400,
                {
                    "error": "invalid_scope",
                    "error_description": "The requested scope is invalid, unknown, "
                    "malformed, or exceeds the scope granted to the client",
                },
            )
        token = self._issue_token("v^1.1#i^1#p^3#sim-")
        return Response(
            200,
            {
                "access_token": token,
                "expires_in": int(self.token_ttl),
                "token_type": "User Access Token",
            },
        )

    # -- inventory --------------------------------------------------------------
    def _recent_revisions(self, listing):
        stamps = self.revisions.setdefault(listing, deque())
        while stamps and stamps[0] <= self.clock() - REVISION_WINDOW:
            stamps.popleft()
        return stamps

    def _bulk_update(self, req):
        if "application/json" not in req.headers.get("content-type", ""):
            return errors(415, error(2004, "Unsupported Media Type"))
        try:
            body = req.json() or {}
        except ValueError:
            body = {}
        entries = body.get("requests")
        if not isinstance(entries, list) or not entries:
            return errors(400, error(25709, "Invalid value for requests."))
        if len(entries) > MAX_REQUESTS:
            return errors(
                400,
                error(
                    25002,
                    f"A user error has occurred. The number of requests cannot "
                    f"exceed {MAX_REQUESTS}.",
                    parameters=[{"name": "requests", "value": str(len(entries))}],
                ),
            )
        responses = []
        with self.lock:
            for entry in entries:
                responses.extend(self._apply_entry(entry))
        status = 200 if all(r["statusCode"] == 200 for r in responses) else 207
        return Response(status, {"responses": responses})

    def _apply_entry(self, entry):
        """Validate then apply one PriceQuantity entry (lock held)."""
        sku = entry.get("sku")
        offers = entry.get("offers") or []
        ship = entry.get("shipToLocationAvailability")
        targets = [{"offerId": o.get("offerId"), "sku": sku} for o in offers] or [
            {"sku": sku}
        ]

        def refuse(*problems):
            return [{**t, "statusCode": 400, "errors": list(problems)} for t in targets]

        if len(offers) > MAX_OFFERS:
            return refuse(
                error(25002, f"A user error has occurred. At most {MAX_OFFERS} offers.")
            )
        item = self.items.get(sku)
        if item is None:
            return refuse(error(25702, f"SKU {sku} is not available in the system"))
        quantities = [(ship or {}).get("quantity")] if ship is not None else []
        quantities += [o.get("availableQuantity") for o in offers]
        for value in quantities:
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                return refuse(error(25709, "Invalid value for quantity."))
        for offer in offers:
            known = self.offers.get(offer.get("offerId"))
            if known is None or known["sku"] != sku:
                return refuse(error(25709, "Invalid value for offerId."))
        stamps = self._recent_revisions(item["listingId"])
        if len(stamps) >= self.revision_limit:
            return refuse(
                error(
                    25002,
                    "A user error has occurred. This listing has reached its "
                    f"{self.revision_limit} revisions for the day.",
                )
            )
        if ship is not None:
            self.quantities[sku] = ship["quantity"]
        for offer in offers:
            self.offers[offer["offerId"]]["availableQuantity"] = offer[
                "availableQuantity"
            ]
        stamps.append(self.clock())
        return [{**t, "statusCode": 200} for t in targets]

    def _item(self, sku):
        return {
            "sku": sku,
            "locale": "en_US",
            "condition": "NEW",
            "product": {"title": f"Simulated item {sku}"},
            "availability": {
                "shipToLocationAvailability": {"quantity": self.quantities.get(sku, 0)}
            },
        }

    def _get_offers(self, req):
        """``getOffers?sku=``: the offers of one inventory item; 404 (25713)
        when it has none."""
        sku = req.query.get("sku")
        if not sku:
            return errors(400, error(25707, "This is an invalid value for a SKU."))
        with self.lock:
            offers = [
                {
                    "offerId": offer_id,
                    "sku": sku,
                    "marketplaceId": "EBAY_US",
                    "format": "FIXED_PRICE",
                    "availableQuantity": offer["availableQuantity"],
                    "status": offer["status"],
                    "listing": {"listingId": offer["listingId"]},
                }
                for offer_id, offer in sorted(self.offers.items())
                if offer["sku"] == sku
            ]
        if not offers:
            return errors(404, error(25713, "This Offer is not available."))
        return Response(
            200, {"offers": offers, "total": len(offers), "size": len(offers)}
        )

    def _inventory_items(self, req):
        limit = _int(req.query.get("limit"), MAX_INVENTORY_LIMIT)
        page = _int(req.query.get("offset"), 0)
        if limit is None or page is None or not 1 <= limit <= MAX_INVENTORY_LIMIT:
            return errors(
                400, error(25706, "You have provided invalid pagination values.")
            )
        if page < 0:
            return errors(
                400, error(25706, "You have provided invalid pagination values.")
            )
        with self.lock:
            skus = sorted(self.items)
            rows = skus[page * limit : (page + 1) * limit]
            body = {
                "href": self._items_link(limit, page),
                "limit": limit,
                "total": len(skus),
                "size": -(-len(skus) // limit),
                "inventoryItems": [self._item(sku) for sku in rows],
            }
        if (page + 1) * limit < len(skus):
            body["next"] = self._items_link(limit, page + 1)
        if page > 0:
            body["prev"] = self._items_link(limit, page - 1)
        return Response(200, body)

    def _items_link(self, limit, page):
        query = urlencode({"limit": limit, "offset": page})
        return f"{self.public_host}{INVENTORY}/inventory_item?{query}"

    def _bulk_get(self, req):
        try:
            wanted = [r.get("sku") for r in (req.json() or {}).get("requests") or []]
        except (ValueError, AttributeError):
            wanted = []
        if not wanted:
            return errors(400, error(25709, "Invalid request. Invalid value for field"))
        if len(wanted) > MAX_REQUESTS:
            return errors(
                400,
                error(
                    25727,
                    "The number of InventoryItems in the request cannot exceed "
                    f"{MAX_REQUESTS}.",
                ),
            )
        if len(set(wanted)) != len(wanted):
            return errors(400, error(25734, "SKU should be unique in the request."))
        responses = []
        with self.lock:
            for sku in wanted:
                if sku in self.items:
                    responses.append(
                        {
                            "sku": sku,
                            "statusCode": 200,
                            "inventoryItem": self._item(sku),
                        }
                    )
                else:
                    responses.append(
                        {
                            "sku": sku,
                            "statusCode": 404,
                            "errors": [
                                error(
                                    25702, f"SKU {sku} is not available in the system"
                                )
                            ],
                        }
                    )
        status = 200 if all(r["statusCode"] == 200 for r in responses) else 207
        return Response(status, {"responses": responses})

    # -- orders -------------------------------------------------------------------
    def _order_filter(self, text):
        """(field, start, end) from ``lastmodifieddate:[a..b]``, or an error."""

        def bad(error_id, message):
            return errors(
                400,
                error(error_id, message, domain="API_FULFILLMENT"),
            )

        if not text:
            return ("creationDate", None, None), None
        match = re.fullmatch(r"(\w+):\[([^\]]*)\]", text)
        if not match:
            return None, bad(30800, f"Invalid filter value {text}")
        name, bounds = match.groups()
        fields = {
            "lastmodifieddate": "lastModifiedDate",
            "creationdate": "creationDate",
        }
        if name not in fields:
            return None, bad(30700, f"Invalid filter name: {name}")
        start_text, _, end_text = bounds.partition("..")
        if not start_text:
            return None, bad(30820, "Start date is missing")
        start = parse_iso(start_text)
        end = parse_iso(end_text) if end_text else None
        if start is None or (end_text and end is None):
            return None, bad(30810, "Invalid date format")
        now = datetime.fromtimestamp(self.clock(), timezone.utc)
        if start < now - ORDERS_HORIZON:
            return None, bad(
                30830, "Start date must be within 90 days of end date and current date."
            )
        if start > now or (end and end > now + timedelta(minutes=5)):
            return None, bad(30850, "Start and end dates can't be in the future")
        return (fields[name], start, end), None

    def _get_orders(self, req):
        (criteria, problem) = self._order_filter(req.query.get("filter"))
        if problem is not None:
            return problem
        limit = _int(req.query.get("limit"), 50)
        offset = _int(req.query.get("offset"), 0)
        if limit is None or not 1 <= limit <= MAX_ORDERS_LIMIT:
            return errors(
                400,
                error(
                    31100, f"Invalid limit: {req.query.get('limit')}", "API_FULFILLMENT"
                ),
            )
        if offset is None or offset < 0:
            return errors(
                400,
                error(
                    31000,
                    f"Invalid offset: {req.query.get('offset')}",
                    "API_FULFILLMENT",
                ),
            )
        field, start, end = criteria
        with self.lock:
            matching = sorted(
                (
                    o
                    for o in self.orders.values()
                    if (start is None or parse_iso(o[field]) >= start)
                    and (end is None or parse_iso(o[field]) <= end)
                ),
                key=lambda o: (o[field], o["orderId"]),
            )
            page = matching[offset : offset + limit]
        body = {
            "href": self._orders_link(req.query.get("filter"), limit, offset),
            "total": len(matching),
            "limit": limit,
            "offset": offset,
            "orders": page,
        }
        if offset + limit < len(matching):
            body["next"] = self._orders_link(
                req.query.get("filter"), limit, offset + limit
            )
        return Response(200, body)

    def _orders_link(self, filter_text, limit, offset):
        params = {"limit": limit, "offset": offset}
        if filter_text:
            params = {"filter": filter_text, **params}
        return f"{self.public_host}{FULFILLMENT}/order?{urlencode(params)}"

    def _get_order(self, req, order_id):
        with self.lock:
            order = self.orders.get(order_id)
        if order is None:
            return Response(404, b"")
        return Response(200, order)
