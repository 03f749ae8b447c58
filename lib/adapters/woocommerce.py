"""WooCommerce adapter: REST API v3 batch endpoints with HTTP Basic keys.

Why batch endpoints
    ``POST /wp-json/wc/v3/products/batch`` and
    ``POST /wp-json/wc/v3/products/{id}/variations/batch`` update up to 100
    objects per call (``check_batch_limit`` in WooCommerce's REST controller:
    create + update + delete together, filter ``woocommerce_rest_batch_items_limit``,
    413 ``woocommerce_rest_request_entity_too_large`` above it). Each item is
    ``{"id", "manage_stock": true, "stock_quantity": N}``: an absolute value,
    so a repeated call is harmless. WooCommerce has neither compare-and-set nor
    idempotency keys, so ``previous_quantity`` and ``idempotency_key`` are not
    sent; reconciliation is the backstop.

Per-item errors
    The batch answer lists one entry per item, in order; a failed item is
    ``{"id", "error": {"code", "message", "data": {"status"}}}`` while the
    others are applied. They become per-item :class:`PushResult` errors:
    a ``data.status`` of 429 is a :class:`RateLimitedError`, 5xx a
    :class:`RetryableChannelError` (the shop failed, not the item, as eBay's
    per-item statuses are read), anything else a :class:`PermanentChannelError`.

Shops that lowered the batch limit
    A 413 says "Unable to accept more than N items"; the adapter adopts N as
    its ``max_batch`` and re-splits, instead of failing every push.

Authentication
    WooCommerce accepts the consumer key and secret as HTTP Basic only over
    HTTPS (over plain HTTP it expects OAuth 1.0a signatures), so the adapter
    refuses a plain ``http://`` shop URL except on loopback, where the
    simulators run: the keys are never sent in clear over a network. Some
    servers do not hand the ``Authorization`` header to WooCommerce (it then
    answers "Consumer key is missing"); for them WooCommerce takes the keys
    as ``consumer_key``/``consumer_secret`` query parameters, still over
    HTTPS only: ``extra["query_string_auth"] = True``.

Identifiers
    ``external_id`` is the product id; ``external_variant_id`` the variation id
    (then ``external_id`` is its parent product). Config fields: ``base_url``
    (shop root), ``api_key`` (consumer key ``ck_…``), ``api_secret``
    (consumer secret ``cs_…``).
"""

import hashlib
import json
import math
import re
import time
from datetime import timezone
from urllib.parse import quote, quote_plus, urlsplit

from .base import (
    LOOPBACK_HOSTS,
    RESPONSE_EXCERPT,
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
    as_quantity,
    is_identifier,
    json_answer,
    push_coalesced,
    raise_for_status,
)
from .timestamps import parse_utc

API_PREFIX = "/wp-json/wc/v3"
#: WooCommerce's default ``woocommerce_rest_batch_items_limit``
MAX_BATCH = 100
#: the REST API refuses ``per_page`` above 100
PAGE_SIZE = 100

#: order status -> (event kind, ChannelOrder status)
ORDER_STATUSES = {
    "pending": ("order", "open"),
    "on-hold": ("order", "open"),
    "processing": ("order", "open"),
    # a completed order still consumed the stock: keep it reserved
    "completed": ("order", "open"),
    "cancelled": ("cancel", "cancelled"),
    "failed": ("cancel", "cancelled"),
    "refunded": ("cancel", "refunded"),
}
PRODUCT_FIELDS = "id,sku,type,manage_stock,stock_quantity,date_modified_gmt,parent_id"
VARIATION_FIELDS = "id,sku,manage_stock,stock_quantity,date_modified_gmt"


class WebhookPayloadError(ValueError):
    """A webhook body lacks what its topic needs (the controller answers 400)."""


def parse_gmt(value):
    """Parse WooCommerce's ``*_gmt`` timestamps (no zone, UTC) to aware UTC."""
    return parse_utc(value, "WooCommerce")


def _target(update):
    product = str(update.external_id or "").strip()
    if not product:
        return ("sku", update.sku)
    return (product, str(update.external_variant_id or "").strip())


def _woo_id(value):
    text = str(value).strip()
    return int(text) if text.isdigit() else text


def _whole(value):
    """``value`` as a whole number of units, or None when it is not one."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number) or number != int(number):
        return None
    return int(number)


def _failed(update, status, message, error, **extra):
    return PushResult(
        sku=update.sku,
        ok=False,
        quantity=update.quantity,
        status=status,
        response=message,
        error=error,
        **extra,
    )


def _item_result(update, item_id, answer, status):
    """The ``PushResult`` of one item of a batch answer (``answer``: the
    item's entry, None when the answer does not name it)."""
    if answer is None:
        message = f"{update.sku}: WooCommerce said nothing about item {item_id}"
        return _failed(
            update, status, message, RetryableChannelError(message, status=status)
        )
    error = answer.get("error")
    if error:
        if not isinstance(error, dict):  # a bare message
            error = {"message": error}
        text = f"{error.get('code')}: {error.get('message')}"
        data = error.get("data")
        item_status = data.get("status") if isinstance(data, dict) else None
        excerpt = json.dumps(answer)[:2000]
        return _failed(
            update,
            item_status,
            text,
            _item_error(f"{update.sku}: {text}", item_status, excerpt),
        )
    held = answer.get("stock_quantity")
    if held is not None and _whole(held) is None:
        message = (
            f"{update.sku}: WooCommerce answered stock_quantity {held!r},"
            " not a number of units"
        )
        return _failed(
            update, status, message, RetryableChannelError(message, status=status)
        )
    if held is not None and _whole(held) != int(update.quantity):
        message = (
            f"{update.sku}: WooCommerce kept stock_quantity {held} "
            f"instead of {update.quantity}"
        )
        return _failed(
            update,
            status,
            message,
            PermanentChannelError(message, status=status),
            live_quantity=_whole(held),
        )
    return PushResult(
        sku=update.sku, ok=True, quantity=update.quantity, status=status, response="set"
    )


def _item_error(message, status, text):
    """The error of one batch item WooCommerce refused with ``data.status``:
    429 and 5xx say the shop could not take it now (retry), the rest that
    the item itself is wrong (as ``ebay._item_error`` reads its statuses);
    408, 409 and 425 are retried, as for a whole answer
    (``raise_for_status``)."""
    try:
        code = int(status)
    except (TypeError, ValueError, OverflowError):
        code = 0
    if code == 429:
        return RateLimitedError(message, status=status, response_text=text)
    if code >= 500 or code in (408, 409, 425):
        return RetryableChannelError(message, status=status, response_text=text)
    return PermanentChannelError(message, status=status, response_text=text)


class WooCommerceAdapter(ChannelAdapter):
    """Publishes ``stock_quantity`` to one WooCommerce shop."""

    channel_type = "woocommerce"
    max_batch = MAX_BATCH
    #: a push sets a product or variation by its id; the SKU only finds it
    listings_by_sku = False

    def __init__(self, config, session=None, clock=time.time):
        super().__init__(config, session=session, clock=clock)
        self.page_size = PAGE_SIZE
        self.query_string_auth = bool((config.extra or {}).get("query_string_auth"))

    # -- transport ----------------------------------------------------------
    def _sends_credentials(self, kwargs):
        return True  # the keys, in a header or in the query string

    def _url(self, path):
        base = self.config.base_url.rstrip("/")
        parts = urlsplit(base)
        if parts.scheme != "https" and parts.hostname not in LOOPBACK_HOSTS:
            raise PermanentChannelError(
                "WooCommerce takes consumer keys over HTTP Basic only on HTTPS; "
                f"refusing to send them in clear to {parts.hostname or base!r}"
            )
        return f"{base}{API_PREFIX}{path}"

    def call(self, method, path, params=None, body=None):
        """One REST call; WooCommerce's ``{code, message}`` ends up in errors."""
        url = self._url(path)
        keys = {"auth": (self.config.api_key, self.config.api_secret)}
        if self.query_string_auth:
            # after the params: never overwritten by them
            params = {
                **(params or {}),
                "consumer_key": self.config.api_key,
                "consumer_secret": self.config.api_secret,
            }
            keys = {}
        try:
            response = self.request(
                method,
                url,
                params=params,
                json=body,
                headers={"Accept": "application/json"},
                **keys,
            )
        except ChannelError as err:
            if self.query_string_auth:
                self._scrub(err)
            raise
        message = None
        if response.status_code >= 400 and response.content:
            try:
                error = response.json()
                if error.get("code") or error.get("message"):
                    message = f"{error.get('code')}: {error.get('message')}"
            except (ValueError, AttributeError):
                message = None
        if response.status_code == 404 and message is None:
            # not WooCommerce's own answer (it names a code): the URL is
            # not a WooCommerce shop, or its REST API is off
            message = (
                f"no WooCommerce REST API answers at {self._url('')}"
                f" (answer: {self._scrubbed(response.text)[:200]!r})"
            )
        try:
            raise_for_status(response, message)
        except ChannelError as err:
            # an answer may echo the URL it was asked (a proxy's error page)
            if self.query_string_auth:
                self._scrub(err, answer=response.text)
            raise
        return response

    def _scrubbed(self, text):
        """``text`` without the keys, in every form the query string holds
        them (a key holding "+", "/" or "=" is percent-encoded there); only
        when they go in the query string (else no answer can echo them)."""
        if not (self.query_string_auth and text):
            return text
        for secret in (self.config.api_secret, self.config.api_key):
            if secret:
                for form in (secret, quote_plus(secret), quote(secret, safe="")):
                    text = text.replace(form, "***")
        return text

    def _scrub(self, err, answer=None):
        """The keys out of an error's text: a transport error names the URL
        it failed on, query string (the keys) included, an answer may echo
        it, and error texts end up in the event log. ``answer``: the whole
        answer the error's excerpt was cut from (a key cut in two by the
        excerpt would no longer be found in it)."""
        if answer:
            clean = self._scrubbed(answer)[:RESPONSE_EXCERPT]
            if err.message == answer[:RESPONSE_EXCERPT]:
                err.message = clean
            if err.response_text:
                err.response_text = clean
        for attr in ("message", "response_text"):
            text = getattr(err, attr, None)
            if text:
                setattr(err, attr, self._scrubbed(text))
        err.args = (err.message,)
        # the transport error it was raised from names the URL too (a
        # failed job's traceback would show it)
        err.__cause__ = None
        err.__suppress_context__ = True

    @staticmethod
    def _json(response):
        return json_answer(response, "WooCommerce answered something that is not JSON")

    # -- push -----------------------------------------------------------------
    def set_quantities(self, updates):
        """Set absolute quantities, at most ``max_batch`` items per call.

        Simple products go to ``/products/batch``; variations to their
        parent's ``/variations/batch``. When a call fails as a whole, the
        error is raised if nothing was applied yet; otherwise the items not
        yet sent carry it, so the caller does not resend what was applied.
        Two updates of the same product or variation are coalesced (the newest
        wins), so a batch never carries an older number after a newer one.
        """
        return push_coalesced(updates, self._set_unique, key=_target)

    def _set_unique(self, updates):
        results = [None] * len(updates)
        groups = {}
        for index, update in enumerate(updates):
            if not str(update.external_id or "").strip():
                results[index] = PushResult(
                    sku=update.sku,
                    ok=False,
                    quantity=update.quantity,
                    response="no WooCommerce product id",
                    error=PermanentChannelError(
                        f"{update.sku}: no WooCommerce product id to set stock on"
                    ),
                )
                continue
            if str(update.external_variant_id or "").strip():
                path = f"/products/{_woo_id(update.external_id)}/variations/batch"
                item_id = _woo_id(update.external_variant_id)
            else:
                path = "/products/batch"
                item_id = _woo_id(update.external_id)
            groups.setdefault(path, []).append((index, item_id))
        pending = list(groups.items())
        progress = {"sent": False}
        for position, (path, entries) in enumerate(pending):
            try:
                self._push_group(path, entries, updates, results, progress)
            except ChannelError as err:
                if not progress["sent"]:
                    raise
                for _path, rest in pending[position:]:
                    for index, _item in rest:
                        if results[index] is None:
                            results[index] = PushResult(
                                sku=updates[index].sku,
                                ok=False,
                                quantity=updates[index].quantity,
                                status=err.status,
                                response=str(err),
                                error=err,
                            )
                break
        return results

    def _push_group(self, path, entries, updates, results, progress):
        """Send one endpoint's items in chunks; note in ``progress`` what went."""
        start = 0
        while start < len(entries):
            size = max(1, int(self.max_batch))
            chunk = entries[start : start + size]
            body = {
                "update": [
                    {
                        "id": item_id,
                        "manage_stock": True,
                        "stock_quantity": int(updates[index].quantity),
                    }
                    for index, item_id in chunk
                ]
            }
            try:
                response = self.call("POST", path, body=body)
            except PermanentChannelError as err:
                smaller = self._limit_from_413(err, size)
                if smaller is None:
                    raise
                self.max_batch = smaller
                continue
            answer = self._json(response)
            items = answer.get("update") if isinstance(answer, dict) else None
            if not isinstance(items, list):
                raise RetryableChannelError(
                    "WooCommerce batch answer has no update list",
                    status=response.status_code,
                    response_text=response.text,
                )
            self._map_batch(chunk, items, updates, results, response.status_code)
            progress["sent"] = True
            start += len(chunk)

    @staticmethod
    def _limit_from_413(err, size):
        """The shop's own batch limit, read from its 413 answer (None if not one)."""
        if err.status != 413 or size <= 1:
            return None
        found = re.search(r"more than (\d+) items", err.message or "")
        limit = int(found.group(1)) if found else size // 2
        return max(1, min(limit, size - 1))

    @staticmethod
    def _map_batch(chunk, items, updates, results, status):
        by_id = {}
        for pos, item in enumerate(items):
            if isinstance(item, dict):
                by_id.setdefault(str(item.get("id")), pos)
        for pos, (index, item_id) in enumerate(chunk):
            answer = None
            at_pos = items[pos] if pos < len(items) else None
            if isinstance(at_pos, dict) and str(at_pos.get("id")) == str(item_id):
                answer = at_pos
            elif str(item_id) in by_id:
                answer = items[by_id[str(item_id)]]
            results[index] = _item_result(updates[index], item_id, answer, status)

    # -- read -----------------------------------------------------------------
    def pages(self, path, params):
        """Yield the items of every page, driven by ``X-WP-TotalPages``.

        Without the header (a cache or plugin stripped it), a short page ends
        the walk.
        """
        page = 1
        while True:
            query = dict(params, per_page=self.page_size, page=page)
            response = self.call("GET", path, params=query)
            items = self._json(response)
            if not isinstance(items, list):
                raise RetryableChannelError(
                    f"WooCommerce {path} did not answer a list",
                    status=response.status_code,
                    response_text=response.text,
                )
            yield from items
            total_pages = response.headers.get("X-WP-TotalPages")
            if total_pages is not None and str(total_pages).isdigit():
                if page >= int(total_pages):
                    return
            elif len(items) < self.page_size:
                return
            if not items:
                return
            page += 1

    def read_quantities(self, updates=None):
        """Yield stock of the given products/variations, or of the whole shop.

        Only objects with ``manage_stock`` true hold a quantity; a variation
        whose stock is managed by its parent (``"parent"``) is reported
        through the parent.
        """
        if updates is None:
            for product in self.pages("/products", {"_fields": PRODUCT_FIELDS}):
                level = self._level(product)
                if level is not None:
                    yield level
                if product.get("type") == "variable":
                    yield from self._variations(product.get("id"), None)
            return
        simple, variations = [], {}
        for update in updates:
            if not str(update.external_id or "").strip():
                continue
            if str(update.external_variant_id or "").strip():
                variations.setdefault(_woo_id(update.external_id), []).append(
                    _woo_id(update.external_variant_id)
                )
            else:
                simple.append(_woo_id(update.external_id))
        for start in range(0, len(simple), self.page_size):
            include = ",".join(str(i) for i in simple[start : start + self.page_size])
            params = {"include": include, "_fields": PRODUCT_FIELDS}
            for product in self.pages("/products", params):
                level = self._level(product)
                if level is not None:
                    yield level
        for parent, ids in variations.items():
            for start in range(0, len(ids), self.page_size):
                yield from self._variations(parent, ids[start : start + self.page_size])

    def _variations(self, parent, ids):
        params = {"_fields": VARIATION_FIELDS}
        if ids:
            params["include"] = ",".join(str(i) for i in ids)
        for variation in self.pages(f"/products/{parent}/variations", params):
            level = self._level(variation, parent=parent)
            if level is not None:
                yield level

    @staticmethod
    def _level(item, parent=None):
        if item.get("manage_stock") is not True or item.get("stock_quantity") is None:
            return None
        parent = parent or item.get("parent_id") or None
        own = str(item.get("id"))
        return LiveLevel(
            sku=item.get("sku") or "",
            quantity=int(item["stock_quantity"]),
            external_id=str(parent) if parent else own,
            external_variant_id=own if parent else "",
            updated_at=parse_gmt(item.get("date_modified_gmt")),
        )

    # -- orders ---------------------------------------------------------------
    def fetch_orders(self, since):
        """Yield orders modified after ``since`` (``modified_after``, GMT).

        ``modified_after`` is exclusive; the reconciliation pass overlaps its
        windows anyway. Orders are walked by id so that an order modified
        during the walk does not shift the pages under it.
        """
        if since.tzinfo is not None:
            since = since.astimezone(timezone.utc).replace(tzinfo=None)
        params = {
            "modified_after": since.strftime("%Y-%m-%dT%H:%M:%S"),
            "dates_are_gmt": "true",
            "orderby": "id",
            "order": "asc",
        }
        for order in self.pages("/orders", params):
            normalised = order_from_payload(order)
            if normalised is not None:
                yield normalised[1]

    def fetch_refunds(self, order_id):
        """Yield the line refunds of one order (``GET /orders/<id>/refunds``).

        An order (webhook or REST) lists its refunds by id and total only,
        and keeps each line at the quantity first ordered: which units a
        refund took back is only in the refund itself. A refund of an amount
        only (no line) takes no unit: its lines are empty.
        """
        order_id = str(order_id).strip()
        if not order_id.isdigit():
            raise PermanentChannelError(
                f"WooCommerce order id {order_id!r} is not a number"
            )
        for refund in self.pages(f"/orders/{order_id}/refunds", {}):
            yield refund_from_payload(order_id, refund)

    def order_deleted(self, order_id):
        """``(deleted, status)``: whether the shop no longer has the order.

        ``GET /orders/<id>``: a trashed order answers with its status
        ``trash``, one deleted for good with 404
        ``woocommerce_rest_shop_order_invalid_id``. Another 404 (no such
        route: a wrong base URL) is an error, not a deletion.
        """
        order_id = str(order_id).strip()
        if not order_id.isdigit():
            raise PermanentChannelError(
                f"WooCommerce order id {order_id!r} is not a number"
            )
        try:
            response = self.call(
                "GET", f"/orders/{order_id}", params={"_fields": "id,status"}
            )
        except ChannelError as err:
            if err.status == 404 and "order_invalid_id" in str(err.message or ""):
                return True, "deleted"
            raise
        body = self._json(response)
        status = str(body.get("status") or "") if isinstance(body, dict) else ""
        return status == "trash", status

    # -- misc -----------------------------------------------------------------
    def test_connection(self):
        response = self.call(
            "GET", "/products", params={"per_page": 1, "_fields": "id"}
        )
        total = response.headers.get("X-WP-Total", "?")
        return f"Connected to WooCommerce REST API v3 ({total} products)"

    # -- webhooks -------------------------------------------------------------
    def parse_webhook(self, topic, payload, headers):
        """Normalise one verified WooCommerce webhook.

        WooCommerce's delivery id is a hash of the webhook id and the second
        of sending, not an event id, so the idempotency key is built from what
        the event is: ``<topic>:<resource id>:<date_modified_gmt>``. Saving a
        webhook sends an unsigned form ping ``webhook_id=<id>``: a ``ping``.
        """
        body = _as_object(payload)
        if set(body) == {"webhook_id"}:
            return [InboundEvent("ping", f"ping:{body['webhook_id']}")]
        if topic in ("order.created", "order.updated"):
            return [_order_event(topic, body)]
        if topic == "order.deleted":
            # WooCommerce sends only the id of a deleted order; the topic
            # header is not signed, so a whole order's body under this topic
            # is a captured delivery replayed, not a deletion
            if "line_items" in body:
                raise WebhookPayloadError(
                    "WooCommerce order.deleted carries only the order id, not"
                    " a whole order"
                )
            order_id = _resource_id(topic, body)
            # nothing in the body tells one deletion of the order from the
            # next (trashed, restored, trashed again): the delivery id does
            # (a hash of the webhook and the second it was sent), and a
            # delivery sent again unchanged keeps it; a second release of
            # a released order releases nothing. That id is not signed: the
            # same bytes sent again under another id, after the order was
            # restored, would release a live order, so the shop is asked
            # first (``order_deleted``)
            order = ChannelOrder(
                external_id=order_id, status="cancelled", unconfirmed=True
            )
            lowered = {str(k).lower(): v for k, v in (headers or {}).items()}
            delivery = str(lowered.get("x-wc-webhook-delivery-id") or "")[:64]
            key = f"{topic}:{order_id}" + (f":{delivery}" if delivery else "")
            return [InboundEvent("cancel", key, order=order)]
        if topic == "product.updated":
            return [_product_event(topic, body)]
        key = f"{topic}:{body.get('id', '')}:{body.get('date_modified_gmt', '')}"
        return [InboundEvent("ignored", key)]


def _as_object(payload):
    if isinstance(payload, (bytes, bytearray)):
        payload = payload.decode("utf-8", "replace")
    if isinstance(payload, str):
        text = payload.strip()
        if text.startswith("webhook_id="):
            return {"webhook_id": text.split("=", 1)[1].split("&", 1)[0]}
        try:
            payload = json.loads(text)
        except ValueError as err:
            raise WebhookPayloadError(f"webhook body is not JSON: {err}") from err
    if not isinstance(payload, dict):
        raise WebhookPayloadError("webhook body is not a JSON object")
    return payload


def _key(topic, body):
    missing = [name for name in ("id", "date_modified_gmt") if not body.get(name)]
    if missing:
        raise WebhookPayloadError(f"{topic} payload lacks {', '.join(missing)}")
    return f"{topic}:{_resource_id(topic, body)}:{body['date_modified_gmt']}"


def _resource_id(topic, body):
    """The resource's id as text (WooCommerce sends integers)."""
    value = body.get("id")
    if value in (None, ""):
        raise WebhookPayloadError(f"{topic} payload lacks id")
    if not is_identifier(value):
        raise WebhookPayloadError(f"{topic} payload: id must be a string or an integer")
    return str(value)


def order_from_payload(body, topic="order"):
    """(event kind, ChannelOrder) for an order payload; None for other statuses.

    Statuses that neither hold nor release stock (``checkout-draft``,
    ``trash``, custom ones) give None.
    """
    status = body.get("status")
    if not status:
        raise WebhookPayloadError(f"{topic} payload lacks status")
    if status not in ORDER_STATUSES:
        return None
    items = body.get("line_items")
    if not isinstance(items, list):
        raise WebhookPayloadError(f"{topic} payload lacks line_items")
    lines = []
    for item in items:
        if not isinstance(item, dict) or item.get("quantity") is None:
            raise WebhookPayloadError(f"{topic} payload: a line item has no quantity")
        variation = item.get("variation_id") or 0
        lines.append(
            OrderLine(
                sku=item.get("sku") or "",
                quantity=as_quantity(item["quantity"], f"{topic} line quantity"),
                external_id=str(item.get("product_id") or ""),
                external_variant_id=str(variation) if variation else "",
            )
        )
    kind, normalised = ORDER_STATUSES[status]
    order = ChannelOrder(
        external_id=str(body.get("id")),
        status=normalised,
        lines=lines,
        updated_at=parse_gmt(body.get("date_modified_gmt")),
        created_at=parse_gmt(body.get("date_created_gmt")),
        raw=body,
    )
    return kind, order


def refund_ids(body):
    """The ids of the refunds an order payload lists, as text."""
    refunds = body.get("refunds") if isinstance(body, dict) else None
    if not isinstance(refunds, list):
        return []
    return [
        str(refund["id"])
        for refund in refunds
        if isinstance(refund, dict) and str(refund.get("id", "")).isdigit()
    ]


def refund_from_payload(order_id, refund):
    """A ChannelOrder for the lines of one refund (``status`` "refunded",
    quantities taken back, positive; none for a refund of an amount only).

    WooCommerce answers refund lines at negative quantities. Whether the
    refund restocked them is not in the answer (``api_restock`` is
    write-only): the lines are released from the order's reservation, as
    units that will not ship (once the order shipped, nothing is held).
    """
    if not isinstance(refund, dict) or not str(refund.get("id", "")).isdigit():
        raise RetryableChannelError(
            f"WooCommerce answered a refund of order {order_id} without an id"
        )
    items = refund.get("line_items")
    lines = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or item.get("quantity") in (None, 0):
            continue
        try:
            quantity = abs(as_quantity(item["quantity"], "a refund line's quantity"))
        except (TypeError, ValueError) as err:
            raise PermanentChannelError(
                f"WooCommerce refund {refund['id']} of order {order_id}: {err}"
            ) from err
        variation = item.get("variation_id") or 0
        lines.append(
            OrderLine(
                sku=item.get("sku") or "",
                quantity=quantity,
                external_id=str(item.get("product_id") or ""),
                external_variant_id=str(variation) if variation else "",
            )
        )
    return ChannelOrder(
        external_id=str(order_id),
        status="refunded",
        lines=lines,
        updated_at=parse_gmt(refund.get("date_created_gmt")),
        restock=True,
        raw=refund,
    )


def _order_key(topic, body):
    """``<topic>:<id>:<date_modified_gmt>:<status>:<lines digest>``.

    ``date_modified_gmt`` is to the second: two changes of an order in one
    second (paid, then cancelled by a plugin) would share a key and the
    second would be taken for a redelivery. The status and a digest of the
    lines (and of the refunds listed, when there are any) tell them apart; a
    redelivery of the same state keeps its key.
    """
    lines = body.get("line_items")
    state = [
        [
            str(line.get("id")),
            str(line.get("variation_id") or line.get("product_id")),
            str(line.get("quantity")),
        ]
        for line in (lines if isinstance(lines, list) else [])
        if isinstance(line, dict)
    ]
    refunds = refund_ids(body)
    if refunds:
        # a refund leaves the lines as they were: two refunds in one second
        # are two states of the order
        state.append(refunds)
    digest = hashlib.sha256(json.dumps(state).encode()).hexdigest()[:12]
    return f"{_key(topic, body)}:{str(body.get('status') or '')[:40]}:{digest}"


def _order_event(topic, body):
    key = _order_key(topic, body)
    event_time = parse_gmt(body["date_modified_gmt"])
    normalised = order_from_payload(body, topic)
    if normalised is None:
        return InboundEvent("ignored", key, event_time)
    kind, order = normalised
    return InboundEvent(kind, key, event_time, order=order)


def _product_event(topic, body):
    key = _key(topic, body)
    event_time = parse_gmt(body["date_modified_gmt"])
    if "manage_stock" not in body or "stock_quantity" not in body:
        raise WebhookPayloadError(f"{topic} payload lacks manage_stock/stock_quantity")
    if body["manage_stock"] is not True or body["stock_quantity"] is None:
        # stock not managed on this object: no level to report
        return InboundEvent("ignored", key, event_time)
    try:
        as_quantity(body["stock_quantity"], "stock_quantity", whole=True)
    except (TypeError, ValueError) as err:
        raise WebhookPayloadError(f"{topic} payload: {err}") from err
    level = WooCommerceAdapter._level(body)
    return InboundEvent("inventory", key, event_time, levels=[level])
