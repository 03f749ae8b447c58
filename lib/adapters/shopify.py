"""Shopify adapter: the Admin GraphQL API, with compare-and-set and a cost bucket.

Why GraphQL and ``inventorySetQuantities``
    The REST Admin API is legacy since 2024-10-01 and sets one level per call.
    ``inventorySetQuantities`` sets absolute ``available`` quantities for many
    inventory items in one call, which is what a stock publisher needs (Odoo is
    the source of truth), and it is the only marketplace call that offers a
    compare-and-set: the update carries the quantity we believe Shopify holds
    (``StockUpdate.previous_quantity``) and Shopify refuses it when a sale
    changed the level meanwhile, instead of silently overwriting that sale.

Versions (shopify.dev changelog, "concurrency protection features")
    * up to 2025-10: ``compareQuantity`` per quantity, ``ignoreCompareQuantity``
      on the input; a mismatch is ``COMPARE_QUANTITY_STALE``; no idempotency
      directive.
    * 2026-01: ``changeFromQuantity`` per quantity (explicit ``null`` opts out
      and overrides the two older fields); ``@idempotent(key:)`` optional.
    * 2026-04 and later: ``changeFromQuantity`` must be present on every
      quantity and ``@idempotent`` is required at runtime; a mismatch is
      ``CHANGE_FROM_QUANTITY_STALE``.
    :data:`API_VERSION` pins 2026-10; ``config.api_version`` overrides it and
    the request is built for whichever version is used.

Batches
    Shopify caps every input array at 250 items ("Input arguments that accept
    an array have a maximum size of 250 for all APIs", shopify.dev
    /docs/api/usage/limits), so :data:`MAX_QUANTITIES` is 250. The docs do not
    say whether one stale item fails the whole call; this adapter handles both:
    when the payload has no ``inventoryAdjustmentGroup`` nothing was applied
    and the items that had no error are sent again with the retry.

Stale compare-and-set
    The adapter reads the live level, reports it in ``PushResult.live_quantity``
    and decides again, retrying once with that value as the compare value.
    The compare value is what Odoo knows Shopify holds (its last push, less
    the sales of Shopify's orders it has applied since): a live level lower
    than that means units went that Odoo does not know of yet, most likely
    a sale whose order webhook is still on its way. Those units are taken
    off Odoo's number (not below 0), so that the retry does not offer them
    again in the meantime; a live level higher than expected (a restock, a
    cancellation on Shopify) gets Odoo's number as it is. The quantity set
    is ``PushResult.quantity``; the next push sends Odoo's number again
    (after the order, that number counts the sale). A second stale answer
    is reported as a retryable :class:`StaleQuantityError` for that item,
    never applied blindly.

Throttling
    Every answer carries ``extensions.cost`` (requested and actual cost and
    ``throttleStatus``). The adapter mirrors the leaky bucket and, before the
    next call, sleeps (through the injectable ``sleep``) until the bucket holds
    the cost that operation last requested, so bulk pushes slow down instead of
    failing. A ``THROTTLED`` answer or an HTTP 429 (Shopify ran nothing) is
    waited out, from the figures it carries or its Retry-After, and sent
    again, up to ``THROTTLE_RESENDS`` times while each wait stays under
    ``MAX_THROTTLE_WAIT``; past that it becomes :class:`RateLimitedError`
    whose ``retry_after`` is computed from the bucket.

Identifiers (``StockUpdate`` / ``LiveLevel`` fields)
    ``external_variant_id`` is the InventoryItem GID (what the mutation needs),
    ``external_location_id`` the Location GID (or ``config.location_id``),
    ``external_id`` the ProductVariant GID (informational). Numeric ids are
    accepted and turned into GIDs; everything the adapter returns is a GID, so
    webhook levels and bulk reads name items the same way.

Config fields: ``base_url`` (``https://<shop>.myshopify.com``),
``access_token`` (Admin API token), ``location_id``, ``api_version``.
"""

import hashlib
import json
import logging
import time
import uuid
from datetime import timedelta

from .base import (
    AuthenticationError,
    ChannelAdapter,
    ChannelError,
    ChannelOrder,
    InboundEvent,
    LiveLevel,
    OrderLine,
    PermanentChannelError,
    PushResult,
    RateLimitedError,
    RetryableChannelError,
    StaleQuantityError,
    as_quantity,
    is_identifier,
    may_wait,
    parse_retry_after,
    push_coalesced,
    raise_for_status,
)
from .timestamps import format_utc, parse_utc

_logger = logging.getLogger(__name__)

#: Admin API version used when ``config.api_version`` is empty
API_VERSION = "2026-10"
#: items per ``inventorySetQuantities`` call (Shopify's input array limit)
MAX_QUANTITIES = 250
#: inventory levels per page when reading the whole location
LEVELS_PAGE_SIZE = 100
#: inventory items per ``nodes(ids:)`` read (keeps the query cost near 300)
NODES_PAGE_SIZE = 100
#: orders per page, and line items fetched with each order; together they keep
#: the requested cost of one page under Shopify's per-query maximum
ORDERS_PAGE_SIZE = 10
ORDER_LINES_PAGE_SIZE = 40
#: line items per follow-up page for orders with more lines than that
MORE_LINES_PAGE_SIZE = 100
#: refunds, and lines of each, read of an order that lost units; an order with
#: more is read as first ordered
REFUNDS_PAGE_SIZE = 10
REFUND_LINES_PAGE_SIZE = 40
#: cost assumed for an operation never sent yet (a mutation costs 10)
DEFAULT_COST = 10.0
#: seconds to wait on a throttle when Shopify gave no figures to compute it
FALLBACK_RETRY_AFTER = 1.0
#: a throttled call (``THROTTLED`` or 429: Shopify ran nothing) is sent again
#: after waiting for the bucket, this many times, when the wait is at most
#: ``MAX_THROTTLE_WAIT`` seconds; past either, it is a ``RateLimitedError``
THROTTLE_RESENDS = 4
MAX_THROTTLE_WAIT = 10.0

STALE_CODES = frozenset({"CHANGE_FROM_QUANTITY_STALE", "COMPARE_QUANTITY_STALE"})
#: "A previous request with this idempotency key failed. Retry with a new
#: idempotency key": the call is sent again at once under a fresh key
SPENT_KEY_CODES = frozenset({"IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED"})
#: "This request is currently in progress, please try again" (same key in flight)
RETRYABLE_CODES = frozenset({"IDEMPOTENCY_CONCURRENT_REQUEST"})
#: versions from which ``changeFromQuantity`` and ``@idempotent`` exist
CHANGE_FROM_SINCE = "2026-01"
#: the app name that appears in the merchant's inventory history
REFERENCE_APP = "stock-channel-sync"

SET_MUTATION = """
mutation ChannelSyncSetQuantities($input: InventorySetQuantitiesInput!) {
  inventorySetQuantities(input: $input)%(directive)s {
    inventoryAdjustmentGroup { id }
    userErrors { code field message }
  }
}
"""

LEVELS_QUERY = """
query ChannelSyncLevels($locationId: ID!, $first: Int!, $after: String) {
  location(id: $locationId) {
    inventoryLevels(first: $first, after: $after) {
      pageInfo { hasNextPage endCursor }
      nodes {
        updatedAt
        item { id sku variant { id } }
        quantities(names: ["available"]) { name quantity }
      }
    }
  }
}
"""

NODES_QUERY = """
query ChannelSyncItems($ids: [ID!]!, $locationId: ID!) {
  nodes(ids: $ids) {
    ... on InventoryItem {
      id
      sku
      variant { id }
      inventoryLevel(locationId: $locationId) {
        updatedAt
        quantities(names: ["available"]) { name quantity }
      }
    }
  }
}
"""

ORDERS_QUERY = """
query ChannelSyncOrders($first: Int!, $after: String, $query: String!) {
  orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {
    pageInfo { hasNextPage endCursor }
    nodes {
      id
      name
      createdAt
      updatedAt
      cancelledAt
      displayFinancialStatus
      lineItems(first: %(lines)d) {
        pageInfo { hasNextPage endCursor }
        nodes { id sku quantity currentQuantity variant { id } }
      }
    }
  }
}
"""

ORDER_LINES_QUERY = """
query ChannelSyncOrderLines($id: ID!, $first: Int!, $after: String) {
  order(id: $id) {
    lineItems(first: $first, after: $after) {
      pageInfo { hasNextPage endCursor }
      nodes { id sku quantity currentQuantity variant { id } }
    }
  }
}
"""

#: what an order's refunds took from each line item, read only for an order
#: whose lines lost units (see ``_order_from_node``)
ORDER_REFUNDS_QUERY = """
query ChannelSyncOrderRefunds($id: ID!) {
  order(id: $id) {
    refunds(first: %(refunds)d) {
      refundLineItems(first: %(lines)d) {
        pageInfo { hasNextPage }
        nodes { quantity lineItem { id } }
      }
    }
  }
}
"""

SHOP_QUERY = "query ChannelSyncShop { shop { name } }"

ORDER_TOPICS = ("orders/create", "orders/paid")
#: a later state of an order: an order already reserved follows its lines
#: (items added by an order edit), a cancelled one is released
UPDATE_TOPIC = "orders/updated"


class WebhookPayloadError(ValueError):
    """A webhook body lacks what its topic needs (the controller answers 400)."""


def to_gid(kind, value):
    """Return a Shopify GID for a numeric id; leave GIDs and blanks as they are."""
    text = str(value if value is not None else "").strip()
    if text.isdigit():
        return f"gid://shopify/{kind}/{text}"
    return text


def _version_at_least(version, reference):
    """Compare ``YYYY-MM`` versions; ``unstable`` is newer than any release."""
    if version == "unstable":
        return True
    return version >= reference


def parse_time(value):
    """Parse a Shopify timestamp into an aware UTC datetime (None if absent).

    ``X-Shopify-Triggered-At`` may carry nanoseconds, which ``fromisoformat``
    refuses; :func:`parse_utc` cuts the fraction to microseconds first. An
    unreadable value raises ValueError.
    """
    return parse_utc(value, "Shopify")


class CostBucket:
    """Client-side mirror of Shopify's leaky bucket, fed by ``extensions.cost``.

    Shopify refills the bucket continuously at ``restoreRate`` points per
    second up to ``maximumAvailable``; a call is refused when its requested
    cost exceeds what is available. Knowing the last figures and the time they
    were read is enough to tell how long to wait before the next call.
    """

    def __init__(self):
        self.maximum = None
        self.available = None
        self.restore_rate = None
        self.seen_at = None

    def update(self, cost, now):
        status = (cost or {}).get("throttleStatus") or {}
        try:
            maximum = float(status["maximumAvailable"])
            available = float(status["currentlyAvailable"])
            rate = float(status["restoreRate"])
        except (KeyError, TypeError, ValueError):
            return
        self.maximum, self.available, self.restore_rate = maximum, available, rate
        self.seen_at = now

    def available_at(self, now):
        if self.available is None:
            return None
        elapsed = max(0.0, now - self.seen_at)
        return min(self.maximum, self.available + elapsed * self.restore_rate)

    def seconds_until(self, needed, now):
        """Seconds until ``needed`` points are available (0 when unknown)."""
        available = self.available_at(now)
        if available is None or not self.restore_rate:
            return 0.0
        # a call dearer than the whole bucket cannot wait its way in
        needed = min(float(needed), self.maximum)
        return max(0.0, (needed - available) / self.restore_rate)


class ShopifyAdapter(ChannelAdapter):
    """Publishes ``available`` quantities to one Shopify location."""

    channel_type = "shopify"
    requires_https = True
    max_batch = MAX_QUANTITIES
    compares_previous = True
    #: a push sets an inventory item by its id; the SKU only finds it
    listings_by_sku = False

    def __init__(self, config, session=None, clock=time.time, sleep=time.sleep):
        super().__init__(config, session=session, clock=clock)
        self.sleep = sleep
        self.api_version = config.api_version or API_VERSION
        self.bucket = CostBucket()
        #: requested cost last seen per operation, to know what to wait for
        self.costs = {}
        #: seconds slept to let the bucket refill, one entry per wait
        self.waits = []
        self.page_size = LEVELS_PAGE_SIZE
        self.nodes_page_size = NODES_PAGE_SIZE
        self.orders_page_size = ORDERS_PAGE_SIZE

    # -- transport ----------------------------------------------------------
    @property
    def endpoint(self):
        base = self.config.base_url.rstrip("/")
        return f"{base}/admin/api/{self.api_version}/graphql.json"

    @property
    def uses_change_from(self):
        return _version_at_least(self.api_version, CHANGE_FROM_SINCE)

    def _estimated_cost(self, operation):
        """The requested cost to wait for before sending ``operation``.

        It is the cost Shopify last reported for that operation, else a first
        estimate from Shopify's rule (a connection costs ``first`` times its
        node, an object 1), so a first expensive page does not walk into a
        bucket that was only refilled enough for the cheap call before it.
        """
        if operation in self.costs:
            return self.costs[operation]
        estimates = {
            "inventoryLevels": 2 + 3 * self.page_size,
            "nodes": 1 + 3 * self.nodes_page_size,
            "orders": 2 + self.orders_page_size * (2 + 2 * ORDER_LINES_PAGE_SIZE),
            "orderLineItems": 2 + 2 * MORE_LINES_PAGE_SIZE,
            "orderRefunds": 1 + REFUNDS_PAGE_SIZE * (3 + 2 * REFUND_LINES_PAGE_SIZE),
            "shop": 1,
        }
        return float(estimates.get(operation, DEFAULT_COST))

    def _honour_bucket(self, operation):
        needed = self._estimated_cost(operation)
        wait = self.bucket.seconds_until(needed, self.clock())
        if wait > 0 and not may_wait(wait):
            # a live push cannot wait that long: retried at that time
            raise RateLimitedError(
                f"Shopify: the cost bucket needs {wait:.1f}s before {operation}",
                retry_after=wait,
            )
        if wait > 0:
            _logger.info(
                "shopify: waiting %.2fs for the cost bucket before %s", wait, operation
            )
            self.waits.append(wait)
            self.sleep(wait)

    def _throttle_delay(self, cost):
        requested = (cost or {}).get("requestedQueryCost") or DEFAULT_COST
        delay = self.bucket.seconds_until(requested, self.clock())
        return delay if delay > 0 else FALLBACK_RETRY_AFTER

    def graphql(self, operation, query, variables=None):
        """Send one GraphQL document; return ``data`` or raise a ChannelError.

        A throttled call is waited out and sent again. Shopify runs nothing
        of a throttled call, so sending it again is safe, mutations included.
        The mirror of the bucket cannot see what other processes spend on
        the same shop (two workers reading one shop's catalogue): the
        throttled answer's ``throttleStatus`` can, so the wait is computed
        from it. Failing the job instead would retry the whole batch from
        its first page, against the same bucket, until its retries run out.
        """
        resends = 0
        while True:
            try:
                return self._graphql_once(operation, query, variables)
            except RateLimitedError as err:
                wait = err.retry_after
                if (
                    resends >= THROTTLE_RESENDS
                    or wait is None
                    or wait > MAX_THROTTLE_WAIT
                    or not may_wait(wait)
                ):
                    raise
                resends += 1
                _logger.info(
                    "shopify: %s throttled, sent again in %.2fs", operation, wait
                )
                self.waits.append(wait)
                self.sleep(wait)

    def _graphql_once(self, operation, query, variables):
        self._honour_bucket(operation)
        response = self.request(
            "POST",
            self.endpoint,
            json={"query": query, "variables": variables or {}},
            headers={
                "X-Shopify-Access-Token": self.config.access_token,
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
        )
        body = None
        if response.content:
            try:
                body = response.json()
            except ValueError:
                body = None
        cost = None
        if isinstance(body, dict):
            cost = (body.get("extensions") or {}).get("cost")
        if cost:
            self.bucket.update(cost, self.clock())
            if cost.get("requestedQueryCost") is not None:
                self.costs[operation] = float(cost["requestedQueryCost"])
        if response.status_code == 429:
            header = parse_retry_after(response.headers.get("Retry-After"))
            raise RateLimitedError(
                "Shopify answered 429 Too Many Requests",
                status=429,
                retry_after=header
                if header is not None
                else self._throttle_delay(cost),
                response_text=response.text,
            )
        raise_for_status(response)
        if not isinstance(body, dict):
            raise RetryableChannelError(
                "Shopify answered something that is not a JSON object",
                status=response.status_code,
                response_text=response.text,
            )
        if body.get("errors"):
            self._raise_graphql_errors(body["errors"], cost, response)
        return body.get("data") or {}

    def _raise_graphql_errors(self, errors, cost, response):
        if isinstance(errors, str):
            errors = [{"message": errors}]
        codes = {
            (err.get("extensions") or {}).get("code")
            for err in errors
            if isinstance(err, dict)
        }
        message = "; ".join(
            str(err.get("message", err)) if isinstance(err, dict) else str(err)
            for err in errors
        )
        status = response.status_code
        if "THROTTLED" in codes:
            raise RateLimitedError(
                f"Shopify throttled the call: {message}",
                status=status,
                retry_after=self._throttle_delay(cost),
                response_text=response.text,
            )
        if "ACCESS_DENIED" in codes:
            raise AuthenticationError(
                f"Shopify denied access: {message}",
                status=status,
                response_text=response.text,
            )
        if "INTERNAL_SERVER_ERROR" in codes:
            raise RetryableChannelError(
                f"Shopify internal error: {message}",
                status=status,
                response_text=response.text,
            )
        raise PermanentChannelError(
            f"Shopify refused the query: {message}",
            status=status,
            response_text=response.text,
        )

    # -- push -----------------------------------------------------------------
    def set_quantities(self, updates):
        """Set absolute quantities, at most :data:`MAX_QUANTITIES` per call.

        Items lacking an inventory item or a location fail alone, without a
        call. Two updates of the same item and location are coalesced (the
        newest wins): Shopify refuses a duplicate pair and fails the whole
        call with it. When a call fails as a whole, the error is raised if
        nothing was applied yet; otherwise the items not yet sent carry it in
        their result, so the caller does not resend what Shopify already holds.
        """
        return push_coalesced(updates, self._set_unique, key=self._target)

    def _target(self, update):
        item = to_gid("InventoryItem", update.external_variant_id)
        location = to_gid(
            "Location", update.external_location_id or self.config.location_id
        )
        return (item, location) if item and location else ("sku", update.sku)

    def _set_unique(self, updates):
        results = [None] * len(updates)
        entries = []
        for index, update in enumerate(updates):
            item = to_gid("InventoryItem", update.external_variant_id)
            location = to_gid(
                "Location", update.external_location_id or self.config.location_id
            )
            if not item or not location:
                missing = "inventory item id" if not item else "location id"
                results[index] = PushResult(
                    sku=update.sku,
                    ok=False,
                    quantity=update.quantity,
                    response=f"no Shopify {missing}",
                    error=PermanentChannelError(
                        f"{update.sku}: no Shopify {missing} to set the quantity on"
                    ),
                )
                continue
            entries.append(
                {
                    "index": index,
                    "item": item,
                    "location": location,
                    "quantity": int(update.quantity),
                    "compare": update.previous_quantity,
                    "key": update.idempotency_key,
                }
            )
        chunks = self._chunks(entries)
        progress = {"sent": False}
        for position, chunk in enumerate(chunks):
            try:
                self._push_chunk(updates, chunk, results, progress)
            except ChannelError as err:
                if not progress["sent"]:
                    raise
                for rest in chunks[position:]:
                    for entry in rest:
                        if results[entry["index"]] is None:
                            update = updates[entry["index"]]
                            results[entry["index"]] = PushResult(
                                sku=update.sku,
                                ok=False,
                                quantity=update.quantity,
                                status=err.status,
                                response=str(err),
                                error=err,
                            )
                break
        return results

    def _chunks(self, entries):
        """Split into calls; before 2026-01 the compare opt-out is per call."""
        if self.uses_change_from:
            groups = [entries]
        else:
            groups = [
                [e for e in entries if e["compare"] is not None],
                [e for e in entries if e["compare"] is None],
            ]
        size = max(1, int(self.max_batch))
        return [
            group[start : start + size]
            for group in groups
            for start in range(0, len(group), size)
        ]

    def _push_chunk(self, updates, chunk, results, progress):
        applied, item_errors, general = self._send(chunk, "first")
        progress["sent"] = True
        retry, live, spent = [], {}, False
        for pos, entry in enumerate(chunk):
            errors = item_errors.get(pos, []) + general
            if not errors and applied:
                results[entry["index"]] = self._ok(updates[entry["index"]])
            elif any(err.get("code") in STALE_CODES for err in errors):
                retry.append(entry)
                live[entry["index"]] = None
            elif any(err.get("code") in SPENT_KEY_CODES for err in errors):
                # an earlier attempt of this job failed on Shopify's side:
                # its key is spent, the retry below goes under a fresh one
                retry.append(entry)
                spent = True
            elif errors:
                results[entry["index"]] = self._refused(updates[entry["index"]], errors)
            else:
                # innocent bystander of a call Shopify refused as a whole
                retry.append(entry)
        if not retry:
            return
        stale = [e for e in retry if e["index"] in live]
        if stale:
            levels = self._read_pairs([(e["item"], e["location"]) for e in stale])
            for entry in stale:
                level = levels.get((entry["item"], entry["location"]))
                if level is None:
                    results[entry["index"]] = self._refused(
                        updates[entry["index"]],
                        [{"code": "INVALID_INVENTORY_ITEM", "message": "level gone"}],
                    )
                    retry.remove(entry)
                    continue
                live[entry["index"]] = level.quantity
                # the retry compares against the live level; units gone that
                # Odoo does not know of (a sale on its way) are not offered
                # again meanwhile. A level Odoo itself may have set (a push
                # whose answer it never had) is no such sale: taking it for
                # one would keep units off sale
                previous = entry["compare"]
                ours = level.quantity in updates[entry["index"]].unconfirmed
                if previous is not None and level.quantity < previous and not ours:
                    unknown = previous - level.quantity
                    entry["quantity"] = max(0, entry["quantity"] - unknown)
                entry["compare"] = level.quantity
        if retry:
            self._retry(updates, retry, live, results, fresh_key=spent)

    def _retry(self, updates, retry, live, results, fresh_key=False):
        # the retry's own derived key may be spent too (an earlier attempt
        # of the job failed there): a spent key asks for a random one
        applied, item_errors, general = self._send(
            retry, None if fresh_key else "retry"
        )
        for pos, entry in enumerate(retry):
            update = updates[entry["index"]]
            live_quantity = live.get(entry["index"])
            errors = item_errors.get(pos, []) + general
            if not errors and applied:
                result = self._ok(update)
                if live_quantity is not None:
                    result.live_quantity = live_quantity
                    result.quantity = entry["quantity"]
                    result.response = (
                        f"stale compare: Shopify held {live_quantity}, "
                        f"expected {update.previous_quantity}; set to "
                        f"{entry['quantity']}"
                    )
                    if entry["quantity"] != update.quantity:
                        result.response += (
                            f" (Odoo's {update.quantity} less the "
                            f"{update.quantity - entry['quantity']} gone there"
                            " that Odoo does not know of yet)"
                        )
                results[entry["index"]] = result
            elif any(err.get("code") in STALE_CODES for err in errors):
                message = (
                    f"{update.sku}: the level changed again during the retry "
                    f"(read {live_quantity})"
                )
                results[entry["index"]] = PushResult(
                    sku=update.sku,
                    ok=False,
                    quantity=update.quantity,
                    response=message,
                    live_quantity=live_quantity,
                    error=StaleQuantityError(message),
                )
            elif errors:
                result = self._refused(update, errors)
                result.live_quantity = live_quantity
                results[entry["index"]] = result
            else:
                message = f"{update.sku}: not applied, another item of the call failed"
                results[entry["index"]] = PushResult(
                    sku=update.sku,
                    ok=False,
                    quantity=update.quantity,
                    response=message,
                    live_quantity=live_quantity,
                    error=RetryableChannelError(message),
                )

    def _send(self, chunk, tag):
        """One ``inventorySetQuantities`` call.

        Returns ``(applied, errors by position in chunk, errors for all)``.
        """
        key = self._batch_key(chunk, tag)
        change_from = self.uses_change_from
        quantities = []
        for entry in chunk:
            quantity = {
                "inventoryItemId": entry["item"],
                "locationId": entry["location"],
                "quantity": entry["quantity"],
            }
            if change_from:
                # explicit null opts out of the check; omitting it is an error
                quantity["changeFromQuantity"] = entry["compare"]
            elif entry["compare"] is not None:
                quantity["compareQuantity"] = entry["compare"]
            quantities.append(quantity)
        payload = {
            "name": "available",
            "reason": "correction",
            "referenceDocumentUri": f"gid://{REFERENCE_APP}/StockSync/{key}",
            "quantities": quantities,
        }
        if not change_from:
            payload["ignoreCompareQuantity"] = all(e["compare"] is None for e in chunk)
        directive = f' @idempotent(key: "{key}")' if change_from else ""
        data = self.graphql(
            "inventorySetQuantities",
            SET_MUTATION % {"directive": directive},
            {"input": payload},
        )
        answer = data.get("inventorySetQuantities") or {}
        applied = answer.get("inventoryAdjustmentGroup") is not None
        item_errors, general = {}, []
        for err in answer.get("userErrors") or []:
            position = self._error_position(err.get("field"))
            if position is None or position >= len(chunk):
                general.append(err)
            else:
                item_errors.setdefault(position, []).append(err)
        if not applied and not item_errors and not general:
            general.append({"code": None, "message": "no adjustment group returned"})
        return applied, item_errors, general

    @staticmethod
    def _error_position(field):
        """Index of the quantity a userError names (``input.quantities.3...``)."""
        field = list(field or [])
        for pos, part in enumerate(field[:-1]):
            if part == "quantities" and str(field[pos + 1]).isdigit():
                return int(field[pos + 1])
        return None

    @staticmethod
    def _batch_key(chunk, tag):
        """Idempotency key for one call.

        Shopify replays the first result for a key it has seen and refuses the
        same key with other parameters, so the key must follow the parameters:
        when every update carries its own key, the call's key is derived from
        them and from the values sent (a job retried with the same updates
        replays instead of applying twice). Updates without keys get a random
        one, because two equal pushes hours apart are two distinct operations;
        so does a call whose ``tag`` is None (Shopify refused the derived key
        as spent by a failed attempt, and asks for a new one).
        """
        if tag is None or not chunk or not all(entry["key"] for entry in chunk):
            return str(uuid.uuid4())
        material = json.dumps(
            [tag]
            + [
                [e["key"], e["item"], e["location"], e["quantity"], e["compare"]]
                for e in chunk
            ],
            separators=(",", ":"),
        )
        digest = hashlib.sha256(material.encode()).digest()
        return str(uuid.UUID(bytes=digest[:16], version=5))

    @staticmethod
    def _ok(update):
        return PushResult(
            sku=update.sku,
            ok=True,
            quantity=update.quantity,
            status=200,
            response="set",
        )

    @staticmethod
    def _refused(update, errors):
        """A per-item refusal; only "still in progress" (or a key spent by a
        failed attempt, which the next one replaces) is worth retrying."""
        text = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
        retryable = any(
            e.get("code") in RETRYABLE_CODES | SPENT_KEY_CODES for e in errors
        )
        error_cls = RetryableChannelError if retryable else PermanentChannelError
        return PushResult(
            sku=update.sku,
            ok=False,
            quantity=update.quantity,
            response=text,
            error=error_cls(f"{update.sku}: {text}", response_text=text),
        )

    # -- read -----------------------------------------------------------------
    def read_quantities(self, updates=None):
        """Yield the ``available`` level of the given items, or of the location.

        With updates, their inventory items are read by id (``nodes``) at
        their location; without, every level of ``config.location_id`` is
        paged through with the cursor Shopify returns.
        """
        if updates is not None:
            pairs = []
            for update in updates:
                item = to_gid("InventoryItem", update.external_variant_id)
                location = to_gid(
                    "Location", update.external_location_id or self.config.location_id
                )
                if item and location:
                    pairs.append((item, location))
            yield from self._read_pairs(pairs).values()
            return
        location = to_gid("Location", self.config.location_id)
        if not location:
            raise PermanentChannelError("no Shopify location configured to read")
        after = None
        while True:
            data = self.graphql(
                "inventoryLevels",
                LEVELS_QUERY,
                {"locationId": location, "first": self.page_size, "after": after},
            )
            node = data.get("location")
            if node is None:
                raise PermanentChannelError(f"Shopify knows no location {location}")
            connection = node.get("inventoryLevels") or {}
            for level in connection.get("nodes") or []:
                item = level.get("item") or {}
                yield LiveLevel(
                    sku=item.get("sku") or "",
                    quantity=self._available(level),
                    external_id=((item.get("variant") or {}).get("id") or ""),
                    external_variant_id=item.get("id") or "",
                    external_location_id=location,
                    updated_at=parse_time(level.get("updatedAt")),
                )
            after = self._next_cursor(connection)
            if after is None:
                return

    def _read_pairs(self, pairs):
        """Read (item, location) pairs by id; return {pair: LiveLevel}."""
        found = {}
        by_location = {}
        for item, location in dict.fromkeys(pairs):
            by_location.setdefault(location, []).append(item)
        for location, items in by_location.items():
            size = max(1, int(self.nodes_page_size))
            for start in range(0, len(items), size):
                data = self.graphql(
                    "nodes",
                    NODES_QUERY,
                    {"ids": items[start : start + size], "locationId": location},
                )
                for node in data.get("nodes") or []:
                    if not node or not node.get("id"):
                        continue
                    level = node.get("inventoryLevel")
                    if level is None:
                        continue  # not stocked at this location
                    found[(node["id"], location)] = LiveLevel(
                        sku=node.get("sku") or "",
                        quantity=self._available(level),
                        external_id=((node.get("variant") or {}).get("id") or ""),
                        external_variant_id=node["id"],
                        external_location_id=location,
                        updated_at=parse_time(level.get("updatedAt")),
                    )
        return found

    @staticmethod
    def _available(level):
        for quantity in level.get("quantities") or []:
            if quantity.get("name") == "available":
                return int(quantity.get("quantity") or 0)
        return 0

    @staticmethod
    def _next_cursor(connection):
        info = connection.get("pageInfo") or {}
        if not info.get("hasNextPage"):
            return None
        cursor = info.get("endCursor")
        if not cursor:
            raise PermanentChannelError(
                "Shopify said there is a next page but no cursor"
            )
        return cursor

    # -- orders ---------------------------------------------------------------
    def fetch_orders(self, since):
        """Yield orders updated at or after ``since``, oldest first."""
        search = f"updated_at:>='{format_utc(since)}'"
        query = ORDERS_QUERY % {"lines": ORDER_LINES_PAGE_SIZE}
        after = None
        while True:
            data = self.graphql(
                "orders",
                query,
                {"first": self.orders_page_size, "after": after, "query": search},
            )
            connection = data.get("orders") or {}
            for node in connection.get("nodes") or []:
                try:
                    order = self._order_from_node(node)
                except (ValueError, TypeError, KeyError, AttributeError) as err:
                    # a pass that reads this says so and goes on comparing
                    raise PermanentChannelError(
                        f"Shopify order {(node or {}).get('id')!r}: "
                        f"unreadable answer: {err}"
                    ) from err
                yield order
            after = self._next_cursor(connection)
            if after is None:
                return

    def _order_from_node(self, node):
        lines_connection = node.get("lineItems") or {}
        line_nodes = list(lines_connection.get("nodes") or [])
        after = self._next_cursor(lines_connection)
        while after is not None:
            data = self.graphql(
                "orderLineItems",
                ORDER_LINES_QUERY,
                {"id": node["id"], "first": MORE_LINES_PAGE_SIZE, "after": after},
            )
            more = ((data.get("order") or {}).get("lineItems")) or {}
            line_nodes.extend(more.get("nodes") or [])
            after = self._next_cursor(more)
        if node.get("cancelledAt"):
            status = "cancelled"
        elif (node.get("displayFinancialStatus") or "").upper() == "REFUNDED":
            status = "refunded"
        else:
            status = "open"
        refunded = self._fetch_refunded(node["id"], line_nodes)
        return ChannelOrder(
            external_id=node["id"],
            status=status,
            lines=[
                OrderLine(
                    sku=line.get("sku") or "",
                    quantity=_sold(
                        float(line.get("quantity") or 0),
                        line.get("currentQuantity"),
                        refunded,
                        line.get("id"),
                    ),
                    external_id=line.get("id") or "",
                    external_variant_id=((line.get("variant") or {}).get("id") or ""),
                )
                for line in line_nodes
            ],
            updated_at=parse_time(node.get("updatedAt")),
            created_at=parse_time(node.get("createdAt")),
            raw=node,
        )

    def _fetch_refunded(self, order_id, line_nodes):
        """What the order's refunds took from each line item, by line item id
        (see ``_webhook_lines``); ``None`` when that cannot be told.

        Only an order whose lines lost units (``currentQuantity`` below
        ``quantity``) costs this call. An order with more refunds, or refund
        lines, than one call reads is read as first ordered.
        """
        if not any(
            line.get("currentQuantity") is not None
            and float(line["currentQuantity"]) < float(line.get("quantity") or 0)
            for line in line_nodes
        ):
            return {}
        data = self.graphql(
            "orderRefunds",
            ORDER_REFUNDS_QUERY
            % {"refunds": REFUNDS_PAGE_SIZE, "lines": REFUND_LINES_PAGE_SIZE},
            {"id": order_id},
        )
        refunds = (data.get("order") or {}).get("refunds")
        if not isinstance(refunds, list) or len(refunds) >= REFUNDS_PAGE_SIZE:
            return None
        refunded = {}
        for refund in refunds:
            connection = (refund or {}).get("refundLineItems")
            if not isinstance(connection, dict) or not isinstance(
                connection.get("nodes"), list
            ):
                return None  # a refund whose lines were not read
            if (connection.get("pageInfo") or {}).get("hasNextPage"):
                return None
            for entry in connection["nodes"]:
                item = (entry.get("lineItem") or {}).get("id") or ""
                refunded[item] = refunded.get(item, 0.0) + float(
                    entry.get("quantity") or 0
                )
        return refunded

    # -- misc -----------------------------------------------------------------
    def test_connection(self):
        data = self.graphql("shop", SHOP_QUERY)
        name = (data.get("shop") or {}).get("name")
        if not name:
            raise PermanentChannelError("Shopify answered without a shop name")
        return f"Connected to Shopify shop {name!r} (Admin API {self.api_version})"

    # -- webhooks -------------------------------------------------------------
    def parse_webhook(self, topic, payload, headers):
        """Normalise one verified Shopify webhook.

        The idempotency key is ``<topic>:<X-Shopify-Event-Id>`` (the event id
        is stable across retries; the webhook id is the fallback), prefixed
        with the topic so one event fanned out to two subscriptions stays two
        events; a refund is keyed by its own id (``refunds/create:refund:<id>``).
        Topics this adapter does not handle give an ``ignored`` event rather
        than an error, so Shopify does not keep retrying them.
        """
        body = _as_object(payload)
        lowered = {str(k).lower(): v for k, v in (headers or {}).items()}
        delivery = lowered.get("x-shopify-event-id") or lowered.get(
            "x-shopify-webhook-id"
        )
        if not delivery:
            raise WebhookPayloadError(
                "Shopify webhook without X-Shopify-Event-Id or X-Shopify-Webhook-Id:"
                " it cannot be deduplicated"
            )
        key = f"{topic}:{delivery}"
        event_time = _event_time(body, lowered.get("x-shopify-triggered-at"))
        if topic in ORDER_TOPICS:
            order = _order_from_webhook(topic, body)
            return [InboundEvent("order", key, event_time, order=order)]
        if topic == "orders/cancelled":
            # the topic header is not signed: the signed body must say so too,
            # or a captured order body could be replayed as its cancel
            if not body.get("cancelled_at"):
                raise WebhookPayloadError(
                    "Shopify orders/cancelled without cancelled_at: the order"
                    " is not cancelled"
                )
            order = _order_from_webhook(topic, body)
            order.status = "cancelled"
            return [InboundEvent("cancel", key, event_time, order=order)]
        if topic == UPDATE_TOPIC:
            return [_update_event(body, key, event_time)]
        if topic == "refunds/create":
            order = _refund_from_webhook(body)
            refund_id = body.get("id")
            if isinstance(refund_id, (int, str)) and not isinstance(refund_id, bool):
                # refunds add up, so a refund must release once: keyed by the
                # refund's own id (signed, in the body), not only by the
                # unsigned event id, which a replay could change
                key = f"{topic}:refund:{str(refund_id)[:200]}"
            return [InboundEvent("cancel", key, event_time, order=order)]
        if topic == "inventory_levels/update":
            return [_inventory_event(body, key, event_time)]
        return [InboundEvent("ignored", key, event_time)]


#: how far ``X-Shopify-Triggered-At`` may place an event after the time its
#: signed body gives (the body's times are to the second)
TRIGGER_SLACK = timedelta(seconds=1)


def _event_time(body, triggered_at):
    """When the event happened, for last-write-wins.

    ``X-Shopify-Triggered-At`` is precise, but not signed: a captured order
    body replayed under a new event id with a triggered-at in the future
    would come out newer than the order's cancellation, reserve the order
    again and make the real cancel stale. The signed body's own time
    (``updated_at``, else ``created_at``) bounds it: the header only orders
    events within the second after that time. An unreadable header is a
    400 only when the body gives no time of its own.
    """
    signed = body.get("updated_at") or body.get("created_at")
    signed = parse_time(signed) if signed else None
    try:
        header = parse_time(triggered_at) if triggered_at else None
    except ValueError:
        if signed is None:
            raise
        header = None
    if signed is None:
        return header
    if header is None:
        return signed
    return min(header, signed + TRIGGER_SLACK)


def _as_object(payload):
    if isinstance(payload, (bytes, bytearray, str)):
        try:
            payload = json.loads(payload)
        except ValueError as err:
            raise WebhookPayloadError(f"webhook body is not JSON: {err}") from err
    if not isinstance(payload, dict):
        raise WebhookPayloadError("webhook body is not a JSON object")
    return payload


def _require(body, topic, *names):
    """The ids a topic needs: present, and identifiers (``is_identifier``)."""
    missing = [name for name in names if body.get(name) in (None, "")]
    if missing:
        raise WebhookPayloadError(f"{topic} payload lacks {', '.join(missing)}")
    for name in names:
        if not is_identifier(body[name]):
            raise WebhookPayloadError(
                f"{topic} payload: {name} must be a string or an integer"
            )


def _refunded_units(body, topic):
    """Units each line item has refunded, by line item id, as the order's own
    ``refunds`` say; ``None`` when the payload does not say (a subscription
    may leave ``refunds``, or their lines, out)."""
    refunds = body.get("refunds")
    if refunds is None:
        return None
    if not isinstance(refunds, list):
        raise WebhookPayloadError(f"{topic} payload: refunds are not a list")
    refunded = {}
    for refund in refunds:
        if not isinstance(refund, dict):
            raise WebhookPayloadError(f"{topic} payload: a refund is not an object")
        entries = refund.get("refund_line_items")
        if entries is None:
            return None  # a refund whose lines the payload leaves out
        if not isinstance(entries, list):
            raise WebhookPayloadError(
                f"{topic} payload: a refund's refund_line_items are not a list"
            )
        for entry in entries:
            if not isinstance(entry, dict):
                raise WebhookPayloadError(
                    f"{topic} payload: a refund line is not an object"
                )
            item = entry.get("line_item_id")
            if item is None:
                item = (entry.get("line_item") or {}).get("id")
            key = str(item if item is not None else "")
            refunded[key] = refunded.get(key, 0.0) + _number(
                entry.get("quantity"), topic, "a refund line's quantity"
            )
    return refunded


def _number(value, topic, what):
    try:
        return as_quantity(value, what)
    except (TypeError, ValueError) as err:
        raise WebhookPayloadError(f"{topic} payload: {err}") from err


def _sold(quantity, current, refunded, item_id):
    """Units a line still sells: the quantity ordered less what order edits
    removed, which is its current quantity (after removals and refunds) plus
    what its refunds took; the quantity ordered when ``current`` or
    ``refunded`` is unknown (``None``)."""
    if current is None or refunded is None:
        return quantity
    return min(quantity, max(float(current) + refunded.get(item_id, 0.0), 0.0))


def _webhook_lines(items, topic, refunded=None):
    """The order's lines, each with the units the order still sells.

    A line item keeps the quantity first ordered; ``current_quantity`` (Admin
    API 2024-01 and later) is what is left after an order edit removed units
    and after refunds. Refunds are released by their own events
    (``refunds/create``, restocked lines only), so a line sells its current
    quantity plus what its refunds took, which is the quantity ordered less
    what order edits removed. That needs the order's ``refunds`` next to
    ``current_quantity``: without them (``refunded`` is ``None``) the line
    sells what was first ordered, and an edit's removals stay reserved (an
    undersell, never an oversell).
    """
    if not isinstance(items, list):
        raise WebhookPayloadError(f"{topic} payload: line items are not a list")
    lines = []
    for item in items:
        if not isinstance(item, dict) or item.get("quantity") is None:
            raise WebhookPayloadError(f"{topic} payload: a line item has no quantity")
        quantity = _number(item["quantity"], topic, "a line item's quantity")
        current = item.get("current_quantity")
        if current is not None:
            current = _number(current, topic, "a line item's current_quantity")
        item_id = item.get("id")
        quantity = _sold(
            quantity,
            current,
            refunded,
            str(item_id if item_id is not None else ""),
        )
        variant = item.get("variant_id")
        lines.append(
            OrderLine(
                sku=item.get("sku") or "",
                quantity=quantity,
                external_id=item.get("admin_graphql_api_id")
                or to_gid("LineItem", item.get("id")),
                external_variant_id=to_gid("ProductVariant", variant)
                if variant
                else "",
            )
        )
    return lines


def _order_from_webhook(topic, body):
    _require(body, topic, "id")
    if "line_items" not in body:
        raise WebhookPayloadError(f"{topic} payload lacks line_items")
    if body.get("cancelled_at"):
        status = "cancelled"
    elif body.get("financial_status") == "refunded":
        status = "refunded"
    else:
        status = "open"
    return ChannelOrder(
        external_id=body.get("admin_graphql_api_id") or to_gid("Order", body["id"]),
        status=status,
        lines=_webhook_lines(body["line_items"], topic, _refunded_units(body, topic)),
        updated_at=parse_time(body.get("updated_at")),
        created_at=parse_time(body.get("created_at")),
        raw=body,
    )


def _update_event(body, key, event_time):
    """``orders/updated``: the order as it is now.

    An order edit that adds units adds line items; one that removes units
    lowers their ``current_quantity`` (see ``_webhook_lines``): the order's
    reservation follows both. Refunds lower it too, but a refund's own event
    (``refunds/create``) says what was restocked and releases that, so a
    refunded status is read as open here, and this event releases nothing
    that a refund took. A cancelled order is released.
    """
    order = _order_from_webhook(UPDATE_TOPIC, body)
    if order.status == "cancelled":
        return InboundEvent("cancel", key, event_time, order=order)
    order.status = "open"
    order.follow_only = True
    return InboundEvent("order", key, event_time, order=order)


def _refund_from_webhook(body):
    """A refund releases only the lines it restocks.

    Each refund line says how it was restocked (``cancel``, ``return``,
    ``legacy_restock`` or ``no_restock``). The event carries the restocked
    lines with ``restock=True``; when none is restocked it carries every line
    with ``restock=False`` so the Odoo side can record it without releasing.
    Restocked lines that are all ``cancel`` were never fulfilled
    (``unshipped``): no return of shipped units.
    """
    topic = "refunds/create"
    _require(body, topic, "order_id")
    items = body.get("refund_line_items")
    if not isinstance(items, list):
        raise WebhookPayloadError(f"{topic} payload lacks refund_line_items")
    restocked, kept, types = [], [], set()
    for entry in items:
        if not isinstance(entry, dict):
            raise WebhookPayloadError(
                f"{topic} payload: a refund line is not an object"
            )
        line_item = entry.get("line_item") or {}
        if entry.get("quantity") is None:
            raise WebhookPayloadError(f"{topic} payload: a refund line has no quantity")
        variant = line_item.get("variant_id")
        line = OrderLine(
            sku=line_item.get("sku") or "",
            quantity=_number(entry["quantity"], topic, "a refund line's quantity"),
            external_id=to_gid("LineItem", entry.get("line_item_id") or ""),
            external_variant_id=to_gid("ProductVariant", variant) if variant else "",
        )
        restock_type = str(entry.get("restock_type") or "").lower()
        if restock_type:
            is_restocked = restock_type != "no_restock"
        else:  # payloads older than restock_type carried one flag per refund
            is_restocked = bool(body.get("restock"))
        (restocked if is_restocked else kept).append(line)
        if is_restocked:
            types.add(restock_type)
    return ChannelOrder(
        external_id=to_gid("Order", body["order_id"]),
        status="refunded",
        lines=restocked or kept,
        updated_at=parse_time(body.get("processed_at") or body.get("created_at")),
        restock=bool(restocked),
        raw=body,
        unshipped=types == {"cancel"},
    )


def _inventory_event(body, key, event_time):
    topic = "inventory_levels/update"
    for name in ("inventory_item_id", "available"):
        if name not in body:
            raise WebhookPayloadError(f"{topic} payload lacks {name}")
    _require(body, topic, "inventory_item_id")
    if body["available"] is None:
        # untracked item: Shopify holds no number to compare with
        return InboundEvent("ignored", key, event_time)
    try:
        quantity = int(as_quantity(body["available"], "available", whole=True))
    except (TypeError, ValueError) as err:
        raise WebhookPayloadError(f"{topic} payload: {err}") from err
    level = LiveLevel(
        sku=body.get("sku") or "",
        quantity=quantity,
        external_variant_id=to_gid("InventoryItem", body["inventory_item_id"]),
        external_location_id=to_gid("Location", body.get("location_id") or ""),
        updated_at=parse_time(body.get("updated_at")),
    )
    return InboundEvent("inventory", key, event_time, levels=[level])
