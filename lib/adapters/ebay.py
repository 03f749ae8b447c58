"""eBay adapter: Sell Inventory and Fulfillment REST APIs, OAuth user tokens.

Authentication
    A User access token lives ``expires_in`` seconds (two hours). It is minted
    from the long-lived refresh token at ``POST
    https://api.ebay.com/identity/v1/oauth2/token`` (``grant_type=
    refresh_token``, HTTP Basic with the client id and secret, ``scope`` a
    space-separated subset of the scopes the seller consented to), cached, and
    renewed :data:`.oauth.TOKEN_MARGIN` seconds before it ends by the injectable
    clock. A 401 (eBay's errorId 1001 "Invalid access token") renews it once
    and repeats the call.

Quantities
    ``bulkUpdatePriceQuantity`` sets the inventory item's ship-to-home
    quantity and, when the binding knows its offer (``external_variant_id``,
    comma separated for several marketplaces), the offer's
    ``availableQuantity``: eBay lists ``min(availableQuantity, ship-to-home
    quantity)``, so setting both makes the published number the one sent,
    and a read of given SKUs reads their offers too and reports the lower
    (an offer edited on its own is drift like any other).
    The per-item ``responses[].statusCode`` becomes the item's result; a call
    answered 207 is a partial success, not a failure of the call.

    The documentation disagrees on the size of one call: the type
    ``BulkPriceQuantity`` and the bulk-updates guide say "up to 25" inventory
    items, the method page says one SKU with up to 25 offers. The request
    schema is an array of per-SKU entries, each carrying its own ``sku``; the
    adapter follows the type and the guide (:data:`MAX_REQUESTS`, 25 entries)
    and lets ``extra["max_batch"] = 1`` fall back to the stricter reading
    without code changes.

The 250-revisions rule
    eBay lets a listing be revised at most 250 times a calendar day and then
    blocks revisions until the next day: a busy SKU pushed on every stock move
    would lock its listing at a stale quantity. :class:`RevisionGuard` counts
    successful revisions per listing (``external_id``, else the SKU) in a
    rolling 24-hour window, which never allows more than 250 in any calendar
    day. Below ``limit - reserve`` every update goes; inside the reserve only
    decreases go (they are what prevents overselling); at the limit nothing
    goes. A held update is not sent: its result carries a
    :class:`RetryableChannelError` whose ``retry_after`` is the time until a
    slot frees, and the newest held quantity is kept in :attr:`held`, so the
    caller retries later with the then-current number instead of spending a
    revision on every intermediate one. The guard lives in the adapter
    instance, which counts what its process sent; Odoo hands it the revisions
    of its event log before each push (:meth:`EbayAdapter.load_revisions`), so
    that the count holds across workers and restarts.

Webhooks
    The Notification API posts JSON ``{"metadata": {"topic", ...},
    "notification": {"notificationId", "eventDate", "publishDate", "data"}}``.
    ``ORDER_CONFIRMATION`` (added 2025-12) names the order only; the event is
    an ``order`` with no lines, and :meth:`EbayAdapter.fetch_order` reads them.
    Every other topic (account deletion, shipping, listing availability) is
    ``ignored``. Signature checking (``X-EBAY-SIGNATURE``) belongs to the
    caller, before this method.

Config (:class:`ChannelConfig`) for ``channel_type="ebay"``
    ``base_url`` (default production API), ``token_url``, ``api_key``/
    ``api_secret`` the client id and secret, ``refresh_token``,
    ``access_token`` (optional, used until first renewed). ``extra``:
    ``scopes`` (list), ``max_batch``, ``revision_limit``, ``revision_reserve``,
    ``rate_limit_retry_after`` (seconds to wait after a 429 that names none).
"""

import base64
import dataclasses
import json
import logging
import threading
import time
from collections import deque
from datetime import datetime, timedelta, timezone
from urllib.parse import quote, urljoin, urlsplit

from .base import (
    AuthenticationError,
    ChannelError,
    ChannelOrder,
    InboundEvent,
    LiveLevel,
    OrderLine,
    PermanentChannelError,
    PushResult,
    RateLimitedError,
    RetryableChannelError,
    failed_result,
    json_answer,
    json_payload,
    parse_retry_after,
    push_coalesced,
    raise_for_status,
)
from .oauth import RefreshTokenAdapter
from .timestamps import format_utc_millis as format_time
from .timestamps import parse_utc_or_none as parse_time

_logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.ebay.com"
DEFAULT_TOKEN_URL = "https://api.ebay.com/identity/v1/oauth2/token"
DEFAULT_SCOPES = (
    "https://api.ebay.com/oauth/api_scope/sell.inventory",
    "https://api.ebay.com/oauth/api_scope/sell.fulfillment.readonly",
)
INVENTORY = "/sell/inventory/v1"
FULFILLMENT = "/sell/fulfillment/v1"
#: entries per bulkUpdatePriceQuantity / bulkGetInventoryItem call
MAX_REQUESTS = 25
#: getInventoryItems ``limit`` maximum
INVENTORY_PAGE_SIZE = 100
#: offers read per inventory item (one per marketplace, at most a few)
MAX_OFFERS_PER_ITEM = 25
#: getOrders ``limit`` (200 is within every published maximum)
ORDERS_PAGE_SIZE = 200
#: getOrders filters cannot start more than 90 days back
ORDERS_HORIZON = timedelta(days=90)
REVISION_LIMIT = 250
REVISION_RESERVE = 10
REVISION_WINDOW = 24 * 3600.0
#: seconds to wait after a 429 that carries no Retry-After
RATE_LIMIT_RETRY_AFTER = 60.0
#: Fulfillment API ``cancelStatus.cancelState`` of a cancelled order
CANCELED = "CANCELED"


def _error_text(entries):
    """``errorId: message`` for a list of eBay error objects."""
    parts = []
    for error in entries or []:
        if isinstance(error, dict):
            text = f"{error.get('errorId', '')}: {error.get('message', '')}"
            if error.get("longMessage") and error["longMessage"] != error.get(
                "message"
            ):
                text += f" ({error['longMessage']})"
            parts.append(text)
    return "; ".join(parts)


def _response_errors(response):
    try:
        return _error_text(response.json().get("errors"))
    except (ValueError, AttributeError):
        return ""


def _json(response, what):
    return json_answer(response, f"eBay {what}: the answer is not JSON")


class RevisionGuard:
    """Revisions per listing in a rolling window, and who may spend the last ones.

    Thread-safe; one instance may serve several adapters of the same seller.
    """

    def __init__(self, limit=REVISION_LIMIT, reserve=REVISION_RESERVE, window=None):
        self.limit = int(limit)
        self.reserve = max(0, min(int(reserve), self.limit))
        self.window = float(window or REVISION_WINDOW)
        self._stamps = {}
        self._last = {}
        self._lock = threading.Lock()

    def _recent(self, key, now):
        stamps = self._stamps.setdefault(key, deque())
        while stamps and stamps[0] <= now - self.window:
            stamps.popleft()
        return stamps

    def count(self, key, now):
        with self._lock:
            return len(self._recent(key, now))

    def last_quantity(self, key):
        with self._lock:
            return self._last.get(key)

    def check(self, key, quantity, previous, now):
        """None when the update may go now, else the seconds until it may.

        ``previous`` is the quantity the caller believes the channel holds; a
        push below it (or to zero) is a decrease and may use the reserve.
        """
        with self._lock:
            stamps = self._recent(key, now)
            if previous is None:
                previous = self._last.get(key)
            decrease = quantity <= 0 or (previous is not None and quantity < previous)
            ceiling = self.limit if decrease else self.limit - self.reserve
            if len(stamps) < ceiling:
                return None
            # slots to free before len(stamps) drops below the ceiling
            needed = len(stamps) - ceiling + 1
            if needed > len(stamps):
                return self.window
            return max(0.0, stamps[needed - 1] + self.window - now)

    def record(self, key, quantity, now):
        with self._lock:
            self._recent(key, now).append(now)
            self._last[key] = quantity

    def load(self, stamps):
        """Take ``{key: [unix times]}`` as the revisions of those keys.

        An instance counts only what its own process sent: a server runs
        several, and restarts them. The caller's record of every revision
        (Odoo's event log) replaces this instance's count for the keys it
        names, before a push.
        """
        with self._lock:
            for key, times in stamps.items():
                self._stamps[key] = deque(sorted(times))


class EbayAdapter(RefreshTokenAdapter):
    """Publishes ship-to-home and offer quantities of one eBay seller."""

    channel_type = "ebay"
    max_batch = MAX_REQUESTS
    default_base_url = DEFAULT_BASE_URL
    default_token_url = DEFAULT_TOKEN_URL
    default_token_lifetime = 7200.0
    token_errors = {
        "missing": "eBay: the token refresh needs the client id (api_key), the "
        "client secret (api_secret) and the refresh token",
        "refused": "eBay refused the token refresh",
        "failed": "eBay token endpoint failed",
        "no_token": "eBay token endpoint gave no token",
    }

    def __init__(
        self,
        config,
        session=None,
        clock=time.time,
        sleep=time.sleep,
        revision_guard=None,
    ):
        # ``sleep`` is accepted like every adapter's; eBay publishes no
        # per-second plan to wait on, so throttling is left to the 429 and the
        # job's retry
        super().__init__(config, session=session, clock=clock, sleep=sleep)
        extra = config.extra or {}
        self.scopes = tuple(extra.get("scopes") or DEFAULT_SCOPES)
        self.max_batch = max(1, min(int(extra.get("max_batch", MAX_REQUESTS)), 25))
        self.rate_limit_retry_after = float(
            extra.get("rate_limit_retry_after", RATE_LIMIT_RETRY_AFTER)
        )
        self.guard = revision_guard or RevisionGuard(
            limit=extra.get("revision_limit", REVISION_LIMIT),
            reserve=extra.get("revision_reserve", REVISION_RESERVE),
        )
        #: revision key -> newest quantity held back by the guard (not sent)
        self.held = {}

    # -- contract -----------------------------------------------------------
    def set_quantities(self, updates):
        """Send the guard-approved updates, 25 per bulkUpdatePriceQuantity call."""
        return push_coalesced(list(updates), self._push)

    def read_quantities(self, updates=None):
        """Yield the quantities eBay lists: given SKUs 25 per read, else every
        page (ship-to-home quantities only).

        eBay lists the lower of the item's ship-to-home quantity and its
        offer's ``availableQuantity``: an offer edited on its own (in Seller
        Hub, by another tool) lowers the listing while the item still shows
        the number Odoo pushed. For a given SKU whose offers the binding
        knows (``external_variant_id``, which its pushes set), the offers
        are read too (``getOffers?sku=``, one call per SKU) and the lowest
        of them caps the level, so that the reconciliation sees what buyers
        see and pushes both again.
        """
        if updates is None:
            yield from self._all_items()
            return
        skus = list(dict.fromkeys(getattr(u, "sku", u) for u in updates))
        offered = {}
        for update in updates:
            ids = getattr(update, "external_variant_id", "") or ""
            ids = {offer.strip() for offer in ids.split(",") if offer.strip()}
            if ids:
                offered.setdefault(update.sku, set()).update(ids)
        offers_failed = None
        for start in range(0, len(skus), MAX_REQUESTS):
            chunk = skus[start : start + MAX_REQUESTS]
            response = self._call(
                "POST",
                f"{INVENTORY}/bulk_get_inventory_item",
                json={"requests": [{"sku": sku} for sku in chunk]},
            )
            for entry in _json(response, "bulkGetInventoryItem").get("responses") or []:
                if entry.get("statusCode") == 200 and entry.get("inventoryItem"):
                    level = _level(entry["inventoryItem"])
                    if offered.get(level.sku) and offers_failed is None:
                        try:
                            level = self._capped_by_offers(level, offered[level.sku])
                        except AuthenticationError:
                            raise
                        except ChannelError as err:
                            # the offers can only lower a level: without
                            # them the items are still read and compared
                            # (a channel showing more than Odoo corrected);
                            # after a failure, no more offer reads this time
                            offers_failed = err
                            _logger.warning(
                                "eBay offers of %r not read, levels from the"
                                " items alone: %s",
                                level.sku,
                                err,
                            )
                    yield level

    def fetch_orders(self, since):
        """Yield orders modified since ``since`` (at most 90 days back)."""
        if since.tzinfo is None:
            since = since.replace(tzinfo=timezone.utc)
        horizon = datetime.fromtimestamp(self.clock(), timezone.utc) - ORDERS_HORIZON
        if since < horizon + timedelta(minutes=5):
            _logger.info("eBay: orders filter moved to 90 days back (was %s)", since)
            since = horizon + timedelta(minutes=5)
        url = self.base_url + f"{FULFILLMENT}/order"
        params = {
            "filter": f"lastmodifieddate:[{format_time(since)}..]",
            "limit": ORDERS_PAGE_SIZE,
            "offset": 0,
        }
        seen = set()
        while url and url not in seen:
            seen.add(url)
            response = self._call("GET", url, params=params)
            data = _json(response, "getOrders")
            for order in data.get("orders") or []:
                yield _channel_order(order)
            url, params = self._next(response, data), None

    def fetch_order(self, order_id):
        """One order with its lines (for an ``ORDER_CONFIRMATION`` event)."""
        response = self._call("GET", f"{FULFILLMENT}/order/{quote(order_id, safe='')}")
        return _channel_order(_json(response, "getOrder"))

    def test_connection(self):
        """Renew the token and read one inventory item."""
        self.renew_token()
        response = self._call("GET", f"{INVENTORY}/inventory_item", params={"limit": 1})
        total = _json(response, "getInventoryItems").get("total", 0)
        return f"eBay: token renewed; {total} inventory item(s) on the account"

    def parse_webhook(self, topic, payload, headers):
        """Turn one Notification API message into events (see the module doc)."""
        body = json_payload(payload, "eBay notification")
        note = body.get("notification") if isinstance(body, dict) else None
        if not isinstance(note, dict) or not note.get("notificationId"):
            raise PermanentChannelError("not an eBay notification: no notificationId")
        key = str(note["notificationId"])
        name = (body.get("metadata") or {}).get("topic") or topic or ""
        when = parse_time(note.get("eventDate")) or parse_time(note.get("publishDate"))
        if name != "ORDER_CONFIRMATION":
            return [InboundEvent(kind="ignored", idempotency_key=key, event_time=when)]
        data = note.get("data") or {}
        order_id = data.get("orderId")
        if not order_id:
            raise PermanentChannelError("ORDER_CONFIRMATION without data.orderId")
        order = ChannelOrder(
            external_id=str(order_id), status="open", updated_at=when, raw=data
        )
        return [
            InboundEvent(
                kind="order", idempotency_key=key, event_time=when, order=order
            )
        ]

    def held_quantities(self):
        """{revision key: newest quantity} the guard is holding back."""
        return dict(self.held)

    # -- pushes ---------------------------------------------------------------
    def _push(self, updates):
        now = self.clock()
        results = [None] * len(updates)
        sendable = []
        for index, update in enumerate(updates):
            key = _revision_key(update)
            wait = self.guard.check(key, update.quantity, update.previous_quantity, now)
            if wait is None:
                sendable.append(index)
                continue
            self.held[key] = update.quantity
            error = RetryableChannelError(
                f"eBay revision budget: listing {key} had "
                f"{self.guard.count(key, now)} revisions in 24 h (limit "
                f"{self.guard.limit}, {self.guard.reserve} kept for decreases); "
                f"quantity {update.quantity} held, not sent",
                retry_after=wait,
            )
            results[index] = failed_result(update, error)
        sent_any = False
        for start in range(0, len(sendable), self.max_batch):
            chunk = sendable[start : start + self.max_batch]
            try:
                chunk_results = self._bulk_update([updates[i] for i in chunk])
            except AuthenticationError:
                raise
            except ChannelError as err:
                if not sent_any:
                    raise
                for index in sendable[start:]:
                    results[index] = failed_result(updates[index], err)
                break
            sent_any = True
            for index, result in zip(chunk, chunk_results, strict=True):
                results[index] = result
        return results

    def _bulk_update(self, chunk):
        response = self._call(
            "POST",
            f"{INVENTORY}/bulk_update_price_quantity",
            json={"requests": [_price_quantity(update) for update in chunk]},
        )
        entries = {}
        for entry in _json(response, "bulkUpdatePriceQuantity").get("responses") or []:
            entries.setdefault(entry.get("sku"), []).append(entry)
        now = self.clock()
        results = []
        for update in chunk:
            mine = entries.get(update.sku) or []
            failures = [
                e for e in mine if not 200 <= int(e.get("statusCode") or 0) < 300
            ]
            if mine and not failures:
                key = _revision_key(update)
                self.guard.record(key, update.quantity, now)
                self.held.pop(key, None)
                results.append(
                    PushResult(
                        sku=update.sku,
                        ok=True,
                        quantity=update.quantity,
                        status=int(mine[0].get("statusCode")),
                        response=json.dumps(mine)[:500],
                    )
                )
                continue
            results.append(
                failed_result(update, _item_error(update, failures, response))
            )
        return results

    completes_listings = True

    revision_window = REVISION_WINDOW

    def revision_key(self, update):
        return _revision_key(update)

    def load_revisions(self, stamps):
        self.guard.load(stamps)

    def complete_listing(self, level):
        """The listing and published offer ids of an inventory item
        (``getOffers?sku=``), which the item read does not carry.

        eBay lists the lower of the item's ``shipToLocationAvailability``
        and each offer's ``availableQuantity``, so a push must set both
        (bulk-updates guide): a binding needs its offers' ids. An item with
        no published offer is returned as it is.
        """
        if level.external_variant_id:
            return level
        offers = self._published_offers(level.sku)
        if not offers:
            return level
        listing = (offers[0].get("listing") or {}).get("listingId") or ""
        return dataclasses.replace(
            level,
            external_id=level.external_id or listing,
            external_variant_id=",".join(str(o["offerId"]) for o in offers),
        )

    # -- reads ----------------------------------------------------------------
    def _published_offers(self, sku):
        """The published offers of an inventory item (``getOffers?sku=``)."""
        try:
            response = self._call(
                "GET",
                f"{INVENTORY}/offer",
                params={"sku": sku, "limit": MAX_OFFERS_PER_ITEM},
            )
        except PermanentChannelError as err:
            if err.status == 404:
                return []  # no offer for this SKU (errorId 25713)
            raise
        data = _json(response, "getOffers")
        offers = data.get("offers") if isinstance(data, dict) else None
        if not isinstance(offers, (list, type(None))):
            raise RetryableChannelError(f"eBay getOffers of {sku!r}: no offer list")
        return [
            offer
            for offer in offers or []
            if isinstance(offer, dict)
            and offer.get("status") == "PUBLISHED"
            and offer.get("offerId")
        ]

    def _capped_by_offers(self, level, offer_ids):
        """``level`` at most the ``availableQuantity`` of the given offers
        (an offer that names none lists the item's quantity)."""
        caps = []
        for offer in self._published_offers(level.sku):
            quantity = offer.get("availableQuantity")
            if str(offer["offerId"]) in offer_ids and quantity is not None:
                try:
                    caps.append(int(quantity))
                except (TypeError, ValueError) as err:
                    raise RetryableChannelError(
                        f"eBay offer {offer['offerId']} of {level.sku!r}: its"
                        f" quantity {quantity!r} is no number"
                    ) from err
        if not caps or min(caps) >= level.quantity:
            return level
        return dataclasses.replace(level, quantity=max(0, min(caps)))

    def _all_items(self):
        url = self.base_url + f"{INVENTORY}/inventory_item"
        params = {"limit": INVENTORY_PAGE_SIZE, "offset": 0}
        seen = set()
        while url and url not in seen:
            seen.add(url)
            response = self._call("GET", url, params=params)
            data = _json(response, "getInventoryItems")
            items = data.get("inventoryItems") or []
            for item in items:
                yield _level(item)
            url, params = (self._next(response, data) if items else None), None

    def _next(self, response, data):
        """The ``next`` page on our own host.

        eBay's ``next`` is a full URL on its public host. Only its path and
        query are kept, so the bearer token goes nowhere but ``base_url``
        (a sandbox, a proxy or the simulator).
        """
        link = data.get("next")
        if not link:
            return None
        try:
            if not isinstance(link, str):
                raise TypeError(f"not a link: {link!r}")
            parts = urlsplit(urljoin(response.url, link))
        except (TypeError, ValueError) as err:
            raise PermanentChannelError(
                f"eBay answered a next page that cannot be read: {err}"[:500]
            ) from err
        return self.base_url + parts.path + (f"?{parts.query}" if parts.query else "")

    # -- transport --------------------------------------------------------------
    def _call(self, method, path_or_url, **kwargs):
        """Send with the token, renew it once on 401, map errors."""
        url = path_or_url if "://" in path_or_url else self.base_url + path_or_url
        token = self._access_token()
        response = self._send(method, url, token, **kwargs)
        if response.status_code == 401:
            _logger.info("eBay %s: access token refused, renewing it once", method)
            token = self._access_token(stale=token)
            response = self._send(method, url, token, **kwargs)
        if response.status_code == 429:
            seconds = parse_retry_after(response.headers.get("Retry-After"))
            raise RateLimitedError(
                f"eBay throttled {method} {urlsplit(url).path}: "
                f"{_response_errors(response)}",
                status=429,
                retry_after=self.rate_limit_retry_after if seconds is None else seconds,
                response_text=response.text,
            )
        if response.status_code >= 300:
            raise_for_status(
                response,
                f"eBay {method} {urlsplit(url).path}: {_response_errors(response)}",
            )
        return response

    def _send(self, method, url, token, **kwargs):
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "Content-Type": "application/json",
        }
        return self.request(method, url, headers=headers, **kwargs)

    def _post_refresh_grant(self):
        config = self.config
        basic = base64.b64encode(f"{config.api_key}:{config.api_secret}".encode())
        return self.request(
            "POST",
            self.token_url,
            data={
                "grant_type": "refresh_token",
                "refresh_token": config.refresh_token,
                "scope": " ".join(self.scopes),
            },
            headers={"Authorization": f"Basic {basic.decode()}"},
        )


def _revision_key(update):
    """Revisions are counted per listing: variations of one listing share it."""
    return update.external_id or update.sku


def _price_quantity(update):
    quantity = max(0, int(update.quantity))
    entry = {"sku": update.sku, "shipToLocationAvailability": {"quantity": quantity}}
    offers = [o.strip() for o in (update.external_variant_id or "").split(",")]
    if any(offers):
        entry["offers"] = [
            {"offerId": offer, "availableQuantity": quantity}
            for offer in offers
            if offer
        ]
    return entry


def _item_error(update, failures, response):
    if not failures:
        return RetryableChannelError(
            f"eBay gave no status for {update.sku}",
            status=response.status_code,
            response_text=response.text,
        )
    status = max(int(e.get("statusCode") or 0) for e in failures)
    errors = [err for e in failures for err in (e.get("errors") or [])]
    message = f"eBay refused {update.sku}: {_error_text(errors) or status}"
    text = json.dumps(failures)
    if status == 429:
        return RateLimitedError(message, status=status, response_text=text)
    if status >= 500:
        return RetryableChannelError(message, status=status, response_text=text)
    return PermanentChannelError(message, status=status, response_text=text)


def _level(item):
    availability = (item.get("availability") or {}).get("shipToLocationAvailability")
    return LiveLevel(
        sku=item.get("sku", ""),
        quantity=int((availability or {}).get("quantity") or 0),
    )


def _channel_order(order):
    """Normalise a Fulfillment API order.

    A full refund releases the reservation; the goods come back on sale only
    if nothing was shipped (``orderFulfillmentStatus`` not ``FULFILLED``).
    """
    lines = [
        OrderLine(
            sku=line.get("sku") or "",
            quantity=float(line.get("quantity") or 0),
            external_id=line.get("legacyItemId") or "",
            external_variant_id=line.get("legacyVariationId") or "",
        )
        for line in order.get("lineItems") or []
    ]
    status, restock = "open", True
    if (order.get("cancelStatus") or {}).get("cancelState") == CANCELED:
        status = "cancelled"
    elif order.get("orderPaymentStatus") == "FULLY_REFUNDED":
        status = "refunded"
        restock = order.get("orderFulfillmentStatus") != "FULFILLED"
    return ChannelOrder(
        external_id=order.get("orderId", ""),
        status=status,
        lines=lines,
        updated_at=parse_time(order.get("lastModifiedDate")),
        created_at=parse_time(order.get("creationDate")),
        restock=restock,
        raw=order,
    )
