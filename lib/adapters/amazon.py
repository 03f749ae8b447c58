"""Amazon Selling Partner API adapter: Listings Items, Feeds, Orders, Sellers.

Orders come from the Orders API 2026-01-01 (``searchOrders``); Orders v0
(``getOrders``, ``getOrderItems``) is deprecated, to be removed in 2027.

Authentication
    Login with Amazon (LWA) only: since 2023-10 SP-API calls need no SigV4
    signature, just the ``x-amz-access-token`` header. The refresh token is
    exchanged at ``POST https://api.amazon.com/auth/o2/token`` for an access
    token valid ``expires_in`` seconds (one hour). The token is cached and
    renewed :data:`.oauth.TOKEN_MARGIN` seconds before it ends, by the injectable
    clock; an answer 401/403 that names the token (SP-API says "The access
    token you provided has expired.") renews it once and repeats the call, so
    a token that dies in the middle of a run costs one extra call, not a job.

One quantity
    ``patchListingsItem`` (``PATCH /listings/2021-08-01/items/{sellerId}/{sku}``)
    with a ``merge`` patch of ``/attributes/fulfillment_availability``: merge
    changes ``quantity`` without resending the restock date or handling time.
    Amazon validates synchronously and applies asynchronously: ``ACCEPTED``
    is reported as ok, ``INVALID`` (with ``issues``) as a permanent error.
    A level read within :attr:`AmazonAdapter.applies_within` of an accepted
    push may still show the number before it: the reconciliation leaves
    such a binding to its next pass rather than call it drift.

Many quantities
    More than :data:`FEED_THRESHOLD` updates go in one ``JSON_LISTINGS_FEED``
    (Feeds 2021-06-30: ``createFeedDocument``, upload to the presigned URL,
    ``createFeed``), at most :data:`MAX_FEED_MESSAGES` messages per feed (the
    ``maxItems`` of the listings feed schema v2 and the 2025-05 changelog).
    The adapter polls ``getFeed`` a bounded number of times; when the feed is
    ``DONE`` the processing report maps issues to items by ``messageId``. A
    feed still queued after that is reported as accepted (status 202), like a
    PATCH: Amazon applies it later and reconciliation confirms the level.

Throttling
    Every SP-API operation has its own usage plan (rate per second and burst,
    per selling partner and application). :data:`RATE_LIMITS` holds the
    defaults published in the API models; a client-side token bucket per
    operation waits (injectable ``sleep``) before a call rather than have it
    refused, and adopts the rate Amazon reports in ``x-amzn-RateLimit-Limit``
    (some sellers are granted more). A wait longer than ``max_throttle_wait``
    raises :class:`RateLimitedError` instead of blocking a worker; an HTTP 429
    does the same, with ``retry_after`` derived from the reported rate.

Webhooks
    SP-API cannot POST to an arbitrary URL: notifications go to SQS or
    EventBridge only. :meth:`AmazonAdapter.parse_webhook` therefore reads the
    body of an SQS message (``ORDER_CHANGE``,
    ``LISTINGS_ITEM_MFN_QUANTITY_CHANGE``) for a poller, and refuses anything
    else with a clear message. Such bodies are not signed: do not expose this
    path on a public URL.

Config (:class:`ChannelConfig`) for ``channel_type="amazon"``
    ``base_url`` regional endpoint (default North America), ``token_url``
    (default LWA), ``api_key``/``api_secret`` the LWA client id and secret,
    ``refresh_token``, ``access_token`` (optional, used until first renewed),
    ``account_id`` the seller id, ``marketplace_id`` (comma separated for
    several). ``extra``: ``product_type`` (default ``PRODUCT``),
    ``product_types`` ({sku: type}), ``fulfillment_channel_code`` (default
    ``DEFAULT``, the merchant-fulfilled quantity), ``feed_threshold``,
    ``feed_poll_attempts``, ``feed_poll_interval``, ``max_throttle_wait``,
    ``rate_limits`` ({operation: [rate, burst] or None to disable}),
    ``client_throttle`` (False disables every client-side bucket).
    Amazon addresses a seller's listing by its SKU. Levels and order lines
    name no other id: an ASIN is a catalogue page that several seller SKUs
    share (a used condition, a second offer of the same item), so a line
    matched by its ASIN could reserve another SKU's product, and Match
    Listings could not bind the second SKU of an ASIN.
"""

import gzip
import json
import logging
import threading
import time
from urllib.parse import quote

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
from .timestamps import format_utc as format_time
from .timestamps import parse_utc_or_none as parse_time

_logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://sellingpartnerapi-na.amazon.com"
DEFAULT_TOKEN_URL = "https://api.amazon.com/auth/o2/token"
LISTINGS = "/listings/2021-08-01"
FEEDS = "/feeds/2021-06-30"
FEED_TYPE = "JSON_LISTINGS_FEED"
FEED_CONTENT_TYPE = "application/json; charset=UTF-8"
#: messages per JSON_LISTINGS_FEED (listings feed schema v2 ``maxItems``)
MAX_FEED_MESSAGES = 25_000
#: up to this many updates go as single PATCH calls, more as one feed
FEED_THRESHOLD = 10
#: orders the seller ships (Merchant Fulfilled Network); Amazon's own are AFN
SELLER_FULFILLED = "MFN"
#: the same, as Orders 2026-01-01 names it (``fulfilledBy``)
SELLER_FULFILLED_BY = "MERCHANT"
ORDERS_PATH = "/orders/2026-01-01/orders"
#: searchListingsItems: ``pageSize`` maximum, identifiers per call, and the
#: number of results Amazon lets a search page through at all
SEARCH_PAGE_SIZE = 20
SEARCH_IDENTIFIERS = 20
SEARCH_RESULT_CAP = 1000
#: searchOrders ``maxResultsPerPage`` maximum
ORDERS_PAGE_SIZE = 100
#: longest client-side throttle wait before giving the job back to the queue
MAX_THROTTLE_WAIT = 30.0
FEED_POLL_ATTEMPTS = 4
FEED_POLL_INTERVAL = 15.0
FINAL_FEED_STATES = ("DONE", "FATAL", "CANCELLED")
USER_AGENT = "stock_channel_sync/1.0 (Language=Python)"

#: (requests per second, burst) per operation: the "Usage Plan" tables of the
#: selling-partner-api-models files; createFeed for JSON_LISTINGS_FEED follows
#: the 2025-05 changelog (five feeds per five minutes per region).
RATE_LIMITS = {
    "patchListingsItem": (5.0, 5),
    "getListingsItem": (5.0, 10),
    "searchListingsItems": (5.0, 5),
    "createFeedDocument": (0.5, 15),
    "createFeed": (5 / 300, 5),
    "getFeed": (2.0, 15),
    "getFeedDocument": (0.0222, 10),
    "searchOrders": (0.0056, 20),
    "getMarketplaceParticipations": (0.016, 15),
}


class TokenBucket:
    """One usage plan on the client side: ``rate`` tokens a second, ``burst`` at most.

    Waiting before a call is cheaper than having it refused: a refused call
    counts against the plan too, and a bulk push refused half-way leaves the
    caller to sort out which items went through.
    """

    def __init__(self, rate, burst, clock):
        self.rate = float(rate)
        self.burst = float(burst)
        self.clock = clock
        self.tokens = float(burst)
        self.stamp = clock()
        self._lock = threading.Lock()

    def reserve(self, max_wait):
        """Take one token, ahead of time if need be; return (wait, taken).

        ``wait`` is how long to sleep before using the token. A token is taken
        only when that wait is at most ``max_wait``, so the caller sleeps once
        and never spins on a clock too coarse to show the refill.
        """
        with self._lock:
            now = self.clock()
            elapsed = max(0.0, now - self.stamp)
            self.stamp = now
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            wait = max(0.0, (1.0 - self.tokens) / self.rate)
            if wait > max_wait:
                return wait, False
            self.tokens -= 1.0
            return wait, True


def _error_text(response):
    """``code: message (details)`` from an SP-API error list, else the raw body."""
    try:
        errors = response.json().get("errors") or []
    except (ValueError, AttributeError):
        errors = []
    parts = []
    for error in errors:
        if isinstance(error, dict):
            text = f"{error.get('code', '')}: {error.get('message', '')}"
            if error.get("details"):
                text += f" ({error['details']})"
            parts.append(text)
    return "; ".join(parts) or response.text[:200] or response.reason or ""


def _names_token(response):
    """True when a 401/403 blames the access token (not a missing role)."""
    return "token" in (response.text or "").lower()


def _reported_rate(response):
    try:
        rate = float(response.headers.get("x-amzn-RateLimit-Limit") or 0)
    except ValueError:
        return None
    return rate if rate > 0 else None


def _json(response, what):
    return json_answer(response, f"Amazon {what}: the answer is not JSON")


class AmazonAdapter(RefreshTokenAdapter):
    """Publishes merchant-fulfilled quantities to one seller account on Amazon."""

    channel_type = "amazon"
    max_batch = MAX_FEED_MESSAGES
    #: HTTP calls one feed needs (createFeedDocument, upload, createFeed,
    #: getFeed, getFeedDocument for the report, download): the floor of a
    #: bulk push is this many calls per 25,000 updates
    calls_per_batch = 6
    #: an ``ACCEPTED`` submission or a queued feed is applied later ("Accepted
    #: does not mean the process is complete", Manage Listings Issues); no
    #: bound is documented: a quarter of an hour, then a level that still
    #: shows the earlier number is drift
    applies_within = 900.0
    default_base_url = DEFAULT_BASE_URL
    default_token_url = DEFAULT_TOKEN_URL
    default_token_lifetime = 3600.0
    token_errors = {
        "missing": "Amazon: LWA needs the client id (api_key), the client secret "
        "(api_secret) and the refresh token",
        "refused": "Amazon LWA refused the refresh",
        "failed": "Amazon LWA token endpoint failed",
        "no_token": "Amazon LWA answered without a token",
    }

    def __init__(self, config, session=None, clock=time.time, sleep=time.sleep):
        super().__init__(config, session=session, clock=clock, sleep=sleep)
        extra = config.extra or {}
        self.marketplace_ids = [
            m.strip() for m in (config.marketplace_id or "").split(",") if m.strip()
        ]
        self.channel_code = extra.get("fulfillment_channel_code", "DEFAULT")
        self.feed_threshold = int(extra.get("feed_threshold", FEED_THRESHOLD))
        self.feed_poll_attempts = int(
            extra.get("feed_poll_attempts", FEED_POLL_ATTEMPTS)
        )
        self.feed_poll_interval = float(
            extra.get("feed_poll_interval", FEED_POLL_INTERVAL)
        )
        self.max_throttle_wait = float(
            extra.get("max_throttle_wait", MAX_THROTTLE_WAIT)
        )
        limits = dict(RATE_LIMITS)
        limits.update(extra.get("rate_limits") or {})
        self.buckets = {}
        if extra.get("client_throttle", True):
            self.buckets = {
                operation: TokenBucket(plan[0], plan[1], clock)
                for operation, plan in limits.items()
                if plan
            }
        #: seconds slept by the client-side buckets, one entry per wait
        self.waits = []

    # -- contract -----------------------------------------------------------
    def set_quantities(self, updates):
        """PATCH each quantity, or send one feed per 25,000 when there are many."""
        updates = list(updates)
        if not updates:
            return []
        if len(updates) > self.feed_threshold:
            return push_coalesced(updates, self._push_by_feed)
        return push_coalesced(updates, self._push_by_patch)

    def read_quantities(self, updates=None):
        """Yield the merchant-fulfilled quantity of the given SKUs, or of all.

        Given SKUs are searched 20 at a time by identifier. Without them, the
        search pages through the catalogue, which Amazon caps at 1,000
        listings: pass the SKUs to read a larger catalogue. A SKU containing a
        comma cannot be searched (SP-API cannot tell it from the separator)
        and is read alone with ``getListingsItem``.
        """
        if updates is None:
            yield from self._search({})
            return
        skus = list(dict.fromkeys(getattr(u, "sku", u) for u in updates))
        plain = [sku for sku in skus if "," not in sku]
        for start in range(0, len(plain), SEARCH_IDENTIFIERS):
            chunk = plain[start : start + SEARCH_IDENTIFIERS]
            yield from self._search(
                {"identifiers": ",".join(chunk), "identifiersType": "SKU"}
            )
        for sku in skus:
            if "," in sku:
                level = self._read_one(sku)
                if level is not None:
                    yield level

    resumes_orders = True

    def fetch_orders(self, since, resume=None):
        """Yield orders updated since ``since``, with their lines.

        Orders API 2026-01-01 ``searchOrders``: each order carries its
        items, so a page of 100 orders is one call (Orders v0, deprecated
        and due to be removed in 2027, needed one more call per order). The
        usage plan allows a burst of 20 pages, then one every three
        minutes: past the burst the generator raises
        :class:`RateLimitedError` rather than hold a worker for minutes,
        with the token of the page it could not read (``err.resume``): the
        caller keeps the orders yielded and goes on from that page later
        (``resume``, with the same ``since``), so that a backlog of more than
        20 pages is read at Amazon's rate, not from page 1 every time.

        Only orders the seller fulfils (``fulfilledBy`` ``MERCHANT``): Amazon
        ships its own (FBA) from its warehouses, so they never take stock
        from Odoo's. The filter is asked for, and checked on each order. The
        ``FULFILLMENT`` dataset is asked for: it holds the order's status;
        so is ``CANCELLATION``: it holds the items cancelled on their own.
        """
        params = {
            "marketplaceIds": ",".join(self.marketplace_ids),
            "lastUpdatedAfter": format_time(since),
            "maxResultsPerPage": ORDERS_PAGE_SIZE,
            "fulfilledBy": SELLER_FULFILLED_BY,
            "includedData": "FULFILLMENT,CANCELLATION",
        }
        if resume:
            params["paginationToken"] = resume
        while True:
            try:
                response = self._call("searchOrders", "GET", ORDERS_PATH, params=params)
                body = _json(response, "searchOrders")
            except ChannelError as err:
                err.resume = params.get("paginationToken")
                raise
            for order in body.get("orders") or []:
                fulfillment = order.get("fulfillment") or {}
                if fulfillment.get("fulfilledBy", SELLER_FULFILLED_BY) != (
                    SELLER_FULFILLED_BY
                ):
                    continue
                yield self._channel_order(order)
            token = (body.get("pagination") or {}).get("nextToken")
            if not token:
                return
            # every other parameter goes along, with the same values
            params = {**params, "paginationToken": token}

    def test_connection(self):
        """Renew the token and check the seller sells in the configured marketplaces."""
        self.renew_token()
        response = self._call(
            "getMarketplaceParticipations",
            "GET",
            "/sellers/v1/marketplaceParticipations",
        )
        payload = _json(response, "getMarketplaceParticipations").get("payload") or []
        ids = [(p.get("marketplace") or {}).get("id") for p in payload]
        missing = [m for m in self.marketplace_ids if m not in ids]
        if missing:
            raise PermanentChannelError(
                f"Amazon: the seller does not participate in {', '.join(missing)} "
                f"(participations: {', '.join(filter(None, ids)) or 'none'})"
            )
        return (
            f"Amazon: token renewed; seller participates in {len(ids)} "
            f"marketplace(s), including {', '.join(self.marketplace_ids)}"
        )

    def parse_webhook(self, topic, payload, headers):
        """Read one SP-API notification taken from an SQS queue.

        Accepts the notification JSON, or an SQS message whose ``Body`` holds
        it. ``ORDER_CHANGE`` gives an order (or a cancellation when the status
        is ``Canceled``), ``LISTINGS_ITEM_MFN_QUANTITY_CHANGE`` the level
        Amazon now holds; other types are ``ignored``. The idempotency key is
        ``NotificationMetadata.NotificationId`` (SQS delivers at least once).
        """
        body = self._notification_body(payload)
        meta = body.get("NotificationMetadata") if isinstance(body, dict) else None
        if not isinstance(meta, dict) or not meta.get("NotificationId"):
            raise PermanentChannelError(
                "Amazon cannot POST webhooks: SP-API notifications go to SQS or "
                "EventBridge only. Pass the body of an SQS message (a notification "
                "with NotificationMetadata.NotificationId), or rely on "
                "fetch_orders and read_quantities."
            )
        key = meta["NotificationId"]
        kind = body.get("NotificationType") or topic or ""
        when = parse_time(body.get("EventTime")) or parse_time(meta.get("PublishTime"))
        data = body.get("Payload") or {}
        if kind == "ORDER_CHANGE":
            return [self._order_change(key, when, data.get("OrderChangeNotification"))]
        if kind == "LISTINGS_ITEM_MFN_QUANTITY_CHANGE":
            return [self._quantity_change(key, when, data)]
        return [InboundEvent(kind="ignored", idempotency_key=key, event_time=when)]

    # -- pushes ---------------------------------------------------------------
    def _push_by_patch(self, updates):
        """One PATCH per update; a throttle or outage stops the run.

        A per-item refusal (INVALID, 4xx) is reported and the run goes on. A
        retryable failure raises when nothing was sent yet (the whole call
        failed); after that, it is reported on that item and on the ones not
        attempted, so the successes already made are not lost.
        """
        results = []
        for index, update in enumerate(updates):
            try:
                results.append(self._patch_one(update))
            except AuthenticationError:
                raise
            except ChannelError as err:
                if not err.retryable:
                    results.append(failed_result(update, err))
                    continue
                if not results:
                    raise
                results.extend(failed_result(rest, err) for rest in updates[index:])
                break
        return results

    def _patch_one(self, update):
        path = (
            f"{LISTINGS}/items/{quote(self.config.account_id, safe='')}/"
            f"{quote(update.sku, safe='')}"
        )
        body = {
            "productType": self._product_type(update),
            "patches": self._patches(update),
        }
        response = self._call(
            "patchListingsItem",
            "PATCH",
            path,
            params={"marketplaceIds": ",".join(self.marketplace_ids)},
            json=body,
        )
        data = _json(response, "patchListingsItem")
        if data.get("status") == "ACCEPTED":
            return PushResult(
                sku=update.sku,
                ok=True,
                quantity=update.quantity,
                status=response.status_code,
                response=f"ACCEPTED submission {data.get('submissionId', '')}",
            )
        issues = data.get("issues") or []
        errors = [i for i in issues if i.get("severity") == "ERROR"] or issues
        error = PermanentChannelError(
            f"Amazon refused {update.sku} ({data.get('status')}): "
            + "; ".join(f"{i.get('code')}: {i.get('message')}" for i in errors),
            status=response.status_code,
            response_text=response.text,
        )
        return failed_result(update, error, status=response.status_code)

    def _push_by_feed(self, updates):
        """One JSON_LISTINGS_FEED per :attr:`max_batch` updates."""
        results = []
        for start in range(0, len(updates), self.max_batch):
            chunk = updates[start : start + self.max_batch]
            try:
                results.extend(self._submit_feed(chunk))
            except AuthenticationError:
                raise
            except ChannelError as err:
                if not results:
                    raise
                results.extend(failed_result(rest, err) for rest in updates[start:])
                break
        return results

    def _submit_feed(self, chunk):
        document = _json(
            self._call(
                "createFeedDocument",
                "POST",
                f"{FEEDS}/documents",
                json={"contentType": FEED_CONTENT_TYPE},
            ),
            "createFeedDocument",
        )
        try:
            document_id, upload_url = document["feedDocumentId"], document["url"]
        except (KeyError, TypeError) as err:
            raise RetryableChannelError("Amazon createFeedDocument: no url") from err
        # a presigned storage URL: it must not receive the access token
        upload = self.request(
            "PUT",
            upload_url,
            data=json.dumps(self._feed_document(chunk)).encode(),
            headers={"Content-Type": FEED_CONTENT_TYPE},
        )
        raise_for_status(upload, "Amazon feed document upload refused")
        created = _json(
            self._call(
                "createFeed",
                "POST",
                f"{FEEDS}/feeds",
                json={
                    "feedType": FEED_TYPE,
                    "marketplaceIds": self.marketplace_ids,
                    "inputFeedDocumentId": document_id,
                },
            ),
            "createFeed",
        )
        feed_id = created.get("feedId")
        if not feed_id:
            raise RetryableChannelError("Amazon createFeed answered without feedId")
        feed = self._wait_for_feed(feed_id)
        state = feed.get("processingStatus")
        if state == "DONE":
            try:
                report = self._feed_report(feed.get("resultFeedDocumentId"))
            except RetryableChannelError as err:
                _logger.warning("Amazon feed %s: report not read (%s)", feed_id, err)
                return _accepted(chunk, feed_id, "DONE, report not read")
            return self._feed_results(chunk, feed_id, report)
        if state in ("FATAL", "CANCELLED"):
            report = self._feed_report_quietly(feed.get("resultFeedDocumentId"))
            cls = PermanentChannelError if state == "FATAL" else RetryableChannelError
            raise cls(
                f"Amazon feed {feed_id} {state}: {_report_summary(report)}",
                response_text=json.dumps(report) if report else "",
            )
        return _accepted(chunk, feed_id, state or "IN_QUEUE")

    def _feed_document(self, chunk):
        return {
            "header": {
                "sellerId": self.config.account_id,
                "version": "2.0",
                "issueLocale": "en_US",
            },
            "messages": [
                {
                    "messageId": number,
                    "sku": update.sku,
                    "operationType": "PATCH",
                    "productType": self._product_type(update),
                    "patches": self._patches(update),
                }
                for number, update in enumerate(chunk, start=1)
            ],
        }

    def _wait_for_feed(self, feed_id):
        feed = {}
        for attempt in range(self.feed_poll_attempts + 1):
            feed = _json(
                self._call("getFeed", "GET", f"{FEEDS}/feeds/{quote(feed_id)}"),
                "getFeed",
            )
            if feed.get("processingStatus") in FINAL_FEED_STATES:
                break
            if attempt < self.feed_poll_attempts:
                self.sleep(self.feed_poll_interval)
        return feed

    def _feed_report(self, document_id):
        if not document_id:
            return None
        meta = _json(
            self._call(
                "getFeedDocument", "GET", f"{FEEDS}/documents/{quote(document_id)}"
            ),
            "getFeedDocument",
        )
        download = self.request("GET", meta.get("url", ""))
        raise_for_status(download, "Amazon feed report download refused")
        content = download.content
        if meta.get("compressionAlgorithm") == "GZIP":
            content = gzip.decompress(content)
        try:
            return json.loads(content)
        except ValueError as err:
            raise RetryableChannelError("Amazon feed report is not JSON") from err

    def _feed_report_quietly(self, document_id):
        try:
            return self._feed_report(document_id)
        except ChannelError as err:
            _logger.warning("Amazon feed report not read: %s", err)
            return None

    def _feed_results(self, chunk, feed_id, report):
        """Map the processing report's ERROR issues to items by ``messageId``."""
        by_message = {}
        for issue in (report or {}).get("issues") or []:
            if issue.get("severity") == "ERROR":
                by_message.setdefault(issue.get("messageId"), []).append(issue)
        general = by_message.pop(None, [])
        results = []
        for number, update in enumerate(chunk, start=1):
            issues = by_message.get(number) or general
            if not issues:
                results.append(
                    PushResult(
                        sku=update.sku,
                        ok=True,
                        quantity=update.quantity,
                        status=200,
                        response=f"feed {feed_id} DONE",
                    )
                )
                continue
            error = PermanentChannelError(
                f"Amazon feed {feed_id} refused {update.sku}: "
                + "; ".join(f"{i.get('code')}: {i.get('message')}" for i in issues),
                response_text=json.dumps(issues),
            )
            results.append(failed_result(update, error, status=200))
        return results

    def _patches(self, update):
        return [
            {
                "op": "merge",
                "path": "/attributes/fulfillment_availability",
                "value": [
                    {
                        "fulfillment_channel_code": self.channel_code,
                        "quantity": max(0, int(update.quantity)),
                    }
                ],
            }
        ]

    def _product_type(self, update):
        extra = self.config.extra or {}
        return (
            getattr(update, "product_type", "")
            or (extra.get("product_types") or {}).get(update.sku)
            or extra.get("product_type")
            or "PRODUCT"
        )

    # -- reads ----------------------------------------------------------------
    def _search(self, filters):
        params = {
            "marketplaceIds": ",".join(self.marketplace_ids),
            "includedData": "summaries,fulfillmentAvailability",
            "pageSize": SEARCH_PAGE_SIZE,
            "sortBy": "sku",
            "sortOrder": "ASC",
            **filters,
        }
        path = f"{LISTINGS}/items/{quote(self.config.account_id, safe='')}"
        first = True
        while True:
            response = self._call("searchListingsItems", "GET", path, params=params)
            data = _json(response, "searchListingsItems")
            total = data.get("numberOfResults") or 0
            if first and not filters and total > SEARCH_RESULT_CAP:
                _logger.warning(
                    "Amazon lists %s items but a search pages through %s only; "
                    "read the others by SKU",
                    total,
                    SEARCH_RESULT_CAP,
                )
            first = False
            for item in data.get("items") or []:
                level = self._level(item)
                if level is not None:
                    yield level
            token = (data.get("pagination") or {}).get("nextToken")
            if not token:
                return
            params = {**params, "pageToken": token}

    def _read_one(self, sku):
        path = (
            f"{LISTINGS}/items/{quote(self.config.account_id, safe='')}/"
            f"{quote(sku, safe='')}"
        )
        try:
            response = self._call(
                "getListingsItem",
                "GET",
                path,
                params={
                    "marketplaceIds": ",".join(self.marketplace_ids),
                    "includedData": "summaries,fulfillmentAvailability",
                },
            )
        except PermanentChannelError as err:
            if err.status == 404:
                return None
            raise
        return self._level(_json(response, "getListingsItem"))

    def _level(self, item):
        """Quantity of our fulfillment channel; None for an FBA-only listing."""
        entries = item.get("fulfillmentAvailability") or []
        quantity = None
        for entry in entries:
            if entry.get("fulfillmentChannelCode") == self.channel_code:
                quantity = int(entry.get("quantity") or 0)
        if quantity is None:
            if entries:
                return None
            quantity = 0
        summaries = item.get("summaries") or [{}]
        return LiveLevel(
            sku=item.get("sku", ""),
            quantity=quantity,
            updated_at=parse_time(summaries[0].get("lastUpdatedDate")),
        )

    @staticmethod
    def _channel_order(order):
        """A ``searchOrders`` order (its items included) as a ChannelOrder.

        An item cancelled on its own (the order stays open for the others)
        carries ``cancellation.cancellationExecution``: it sells nothing
        any more, so its line is read as 0 units, which releases what it
        reserved. A buyer's ``cancellationRequest`` alone changes nothing:
        the seller may still ship the item.
        """
        lines = []
        for item in order.get("orderItems") or []:
            product = item.get("product") or {}
            cancellation = item.get("cancellation") or {}
            cancelled = bool(cancellation.get("cancellationExecution"))
            lines.append(
                OrderLine(
                    sku=product.get("sellerSku", ""),
                    quantity=0.0
                    if cancelled
                    else float(item.get("quantityOrdered") or 0),
                    external_id=item.get("orderItemId", ""),
                )
            )
        status = (order.get("fulfillment") or {}).get("fulfillmentStatus")
        if not status:
            # asked for (includedData=FULFILLMENT): without it a cancelled
            # order would be read as open and reserved
            raise PermanentChannelError(
                f"Amazon searchOrders gave order {order.get('orderId')!r} without"
                " its fulfillment status (FULFILLMENT dataset): not applied"
            )
        return ChannelOrder(
            external_id=order.get("orderId", ""),
            status="cancelled" if status == "CANCELLED" else "open",
            lines=lines,
            updated_at=parse_time(order.get("lastUpdatedTime")),
            created_at=parse_time(order.get("createdTime")),
            raw=order,
        )

    # -- notifications --------------------------------------------------------
    @staticmethod
    def _notification_body(payload):
        body = json_payload(payload, "Amazon notification")
        # an SQS ReceiveMessage entry carries the notification as a string
        if isinstance(body, dict) and isinstance(body.get("Body"), str):
            try:
                body = json.loads(body["Body"])
            except ValueError as err:
                raise PermanentChannelError("SQS message Body is not JSON") from err
        return body

    def _check_seller(self, seller_id):
        if seller_id and self.config.account_id and seller_id != self.config.account_id:
            raise PermanentChannelError(
                f"Amazon notification for seller {seller_id}, this channel is "
                f"{self.config.account_id}"
            )

    def _order_change(self, key, when, note):
        if not isinstance(note, dict) or not note.get("AmazonOrderId"):
            raise PermanentChannelError("ORDER_CHANGE without AmazonOrderId")
        self._check_seller(note.get("SellerId"))
        summary = note.get("Summary") or {}
        if summary.get("FulfillmentType", SELLER_FULFILLED) != SELLER_FULFILLED:
            # Amazon ships it from its own stock (FBA): nothing of Odoo's
            return InboundEvent(kind="ignored", idempotency_key=key, event_time=when)
        lines = [
            OrderLine(
                sku=item.get("SellerSKU", ""),
                quantity=float(item.get("Quantity") or 0),
                external_id=item.get("OrderItemId", ""),
            )
            for item in summary.get("OrderItems") or []
        ]
        cancelled = summary.get("OrderStatus") == "Canceled"
        order = ChannelOrder(
            external_id=note["AmazonOrderId"],
            status="cancelled" if cancelled else "open",
            lines=lines,
            updated_at=when,
            created_at=parse_time(summary.get("PurchaseDate")),
            raw=note,
        )
        return InboundEvent(
            kind="cancel" if cancelled else "order",
            idempotency_key=key,
            event_time=when,
            order=order,
        )

    def _quantity_change(self, key, when, data):
        self._check_seller(data.get("SellerId"))
        ours = data.get("FulfillmentChannelCode") == self.channel_code
        if not ours or not data.get("Sku"):
            return InboundEvent(kind="ignored", idempotency_key=key, event_time=when)
        level = LiveLevel(
            sku=data["Sku"], quantity=int(data.get("Quantity") or 0), updated_at=when
        )
        return InboundEvent(
            kind="inventory", idempotency_key=key, event_time=when, levels=[level]
        )

    # -- transport --------------------------------------------------------------
    def _call(self, operation, method, path, **kwargs):
        """Throttle, send with the token, renew it once if refused, map errors."""
        self._throttle(operation)
        token = self._access_token()
        response = self._send(method, path, token, **kwargs)
        if response.status_code in (401, 403) and _names_token(response):
            _logger.info(
                "Amazon %s: access token refused (%s), renewing it once",
                operation,
                response.status_code,
            )
            token = self._access_token(stale=token)
            self._throttle(operation)
            response = self._send(method, path, token, **kwargs)
        self._adopt_rate(operation, response)
        if response.status_code == 429:
            raise RateLimitedError(
                f"Amazon {operation} throttled: {_error_text(response)}",
                status=429,
                retry_after=self._retry_after(operation, response),
                response_text=response.text,
            )
        if response.status_code >= 300:
            raise_for_status(response, f"Amazon {operation}: {_error_text(response)}")
        return response

    def _send(self, method, path, token, headers=None, **kwargs):
        all_headers = {
            "x-amz-access-token": token,
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
            **(headers or {}),
        }
        return self.request(method, self.base_url + path, headers=all_headers, **kwargs)

    def _throttle(self, operation):
        bucket = self.buckets.get(operation)
        if bucket is None:
            return
        wait, taken = bucket.reserve(self.max_throttle_wait)
        if not taken:
            raise RateLimitedError(
                f"Amazon {operation}: usage plan {bucket.rate:g}/s exhausted, "
                f"next call possible in {wait:.1f} s",
                retry_after=wait,
            )
        if wait:
            self.waits.append(wait)
            self.sleep(wait)

    def _adopt_rate(self, operation, response):
        """Follow the rate Amazon says applies: some sellers are granted more."""
        rate = _reported_rate(response)
        bucket = self.buckets.get(operation)
        if rate and bucket is not None and rate != bucket.rate:
            bucket.rate = rate

    def _retry_after(self, operation, response):
        seconds = parse_retry_after(response.headers.get("Retry-After"))
        if seconds is not None:
            return seconds
        rate = _reported_rate(response) or RATE_LIMITS.get(operation, (1.0,))[0]
        return 1.0 / rate

    def _post_refresh_grant(self):
        config = self.config
        return self.request(
            "POST",
            self.token_url,
            data={
                "grant_type": "refresh_token",
                "refresh_token": config.refresh_token,
                "client_id": config.api_key,
                "client_secret": config.api_secret,
            },
            headers={"Accept": "application/json"},
        )


def _accepted(chunk, feed_id, state):
    return [
        PushResult(
            sku=update.sku,
            ok=True,
            quantity=update.quantity,
            status=202,
            response=f"feed {feed_id} {state}: accepted, Amazon applies it later",
        )
        for update in chunk
    ]


def _report_summary(report):
    if not report:
        return "no processing report"
    issues = report.get("issues") or []
    text = "; ".join(f"{i.get('code')}: {i.get('message')}" for i in issues[:5])
    return text or json.dumps(report.get("summary") or {})
