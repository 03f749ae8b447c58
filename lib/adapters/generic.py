"""Adapter for a shop that speaks plain signed HTTP (the "generic" channel).

It is the channel type for a shop without a marketplace API of its own: a
small web shop, an ERP, a test double. The contract, kept deliberately small:

``POST {base_url}``
    one stock update per request, JSON
    ``{"sku", "quantity", "sequence", "external_id", "changed_at",
    "idempotency_key"}``, signed per Standard Webhooks: ``webhook-id`` (the
    update's idempotency key, so the shop can drop redeliveries),
    ``webhook-timestamp`` and ``webhook-signature`` (``v1`` HMAC from
    ``signing_secret``, plus ``v1a`` Ed25519 when ``signing_private_key`` is
    set). The shop applies last-write-wins on ``sequence``; it answers
    ``{"applied": false, "quantity": N, "sequence": S}`` when it already
    holds a newer one (``S``), which only a regression of Odoo's sequence
    can cause: the push is then an error (``NewerSequenceError``) that says
    what to go above, not a delivery. A redelivered ``webhook-id`` may be
    answered ``{"applied": false, "duplicate": true}``: already applied.
    Any other 2xx answer is a delivery when its body is a JSON object (such
    as ``{"applied": true}``) or is empty (``204 No Content``), as Standard
    Webhooks lets a receiver acknowledge; a 2xx with any other body (a
    proxy's HTML page, garbage) is a retryable error, not a delivery.
``GET {base_url}?page=N&per_page=M``
    ``{"items": [{"sku", "quantity"}], "next_page": N | null}``
``GET {base_url}/orders?updated_since=<iso>&page=N``
    ``{"orders": [{"id", "status", "lines": [{"sku", "quantity"}],
    "updated_at"}], "next_page": N | null}``

Config fields used: ``base_url`` (no query string), ``signing_secret``
(``whsec_``), ``signing_private_key`` (``whsk_``, optional), ``api_key``
(optional, sent as a bearer token on reads), ``timeout``; ``extra["page_size"]``
overrides the page size of reads.

Inbound webhooks from the shop use the same envelope as Standard Webhooks
payloads: ``{"type", "timestamp", "data"}``; see :meth:`parse_webhook`.
"""

import hashlib
import json
import uuid
from datetime import timezone
from urllib.parse import urlsplit

from .. import signatures
from .base import (
    LOOPBACK_HOSTS,
    RESPONSE_EXCERPT,
    ChannelAdapter,
    ChannelError,
    ChannelOrder,
    InboundEvent,
    LiveLevel,
    NewerSequenceError,
    OrderLine,
    PermanentChannelError,
    PushResult,
    RateLimitedError,
    RetryableChannelError,
    is_identifier,
    json_answer,
    raise_for_status,
)
from .timestamps import parse_utc

DEFAULT_PAGE_SIZE = 100
#: hard stop for a shop whose ``next_page`` never ends (a bug on its side)
MAX_PAGES = 10000

#: webhook ``type`` -> (InboundEvent kind, ChannelOrder status); an
#: ``order.updated`` carries the whole order as edited (its lines replace the
#: reservation's, see ``sync.event._scs_follow_order``), and its status: one
#: that says cancelled or refunded releases, as ``order.cancelled`` does
ORDER_EVENTS = {
    "order.created": ("order", "open"),
    "order.paid": ("order", "open"),
    "order.updated": ("order", None),
    "order.cancelled": ("cancel", "cancelled"),
    "order.refunded": ("cancel", "refunded"),
}
INVENTORY_EVENT = "inventory.updated"

#: order status as the shop writes it -> ChannelOrder status
ORDER_STATUSES = {
    "cancelled": "cancelled",
    "canceled": "cancelled",
    "voided": "cancelled",
    "refunded": "refunded",
}


def parse_datetime(value):
    """ISO 8601 text (``Z`` allowed) -> naive UTC datetime, or ``None``.

    Naive UTC is what Odoo stores, so values can be written to Datetime
    fields and compared with them without a conversion at every call site.
    """
    if isinstance(value, str) and value.strip().endswith("z"):
        value = value.strip()[:-1] + "Z"  # RFC 3339 allows a lower-case z
    parsed = parse_utc(value)
    return None if parsed is None else parsed.replace(tzinfo=None)


def format_datetime(value):
    """Datetime (naive = UTC) -> ``YYYY-MM-DDTHH:MM:SSZ``.

    Rounded down to the second: a cursor that is slightly early re-reads an
    order already seen (harmless, events are deduplicated), one that is
    slightly late would miss one.
    """
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value.replace(microsecond=0).isoformat() + "Z"


def message_id_for(key):
    """The ``webhook-id`` for an idempotency key.

    The key is used as-is when the Standard Webhooks rules allow it (printable
    ASCII, no dot, no space, at most 255 characters); otherwise a stable hash
    of it, so a redelivery still carries the same id. Without a key a random
    id is made, which means the shop cannot recognise a redelivery: callers
    should always set one.
    """
    if not key:
        return "msg_" + uuid.uuid4().hex
    if len(key) <= 255 and "." not in key and all("!" <= c <= "~" for c in key):
        return key
    return "msg_" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]


def _channel_message(response):
    """The shop's own explanation of an error, for the operator to read."""
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict):
        for key in ("error", "message", "detail"):
            if body.get(key):
                return str(body[key])[:RESPONSE_EXCERPT]
    return None


def _check(response):
    """raise_for_status, with the shop's message rather than the raw body."""
    if not 200 <= response.status_code < 300:
        raise_for_status(response, message=_channel_message(response))


def _json(response, what):
    return json_answer(
        response,
        f"{what}: the channel answered something that is not JSON",
        PermanentChannelError,
    )


def _push_answer(response):
    """The JSON object a 2xx push answer carries, or ``None`` for no body.

    Per Standard Webhooks any 2xx acknowledges a delivery, so ``204 No
    Content`` or an empty body is a plain "received". A body is the JSON
    object of the contract; anything else (a proxy's HTML page, a truncated
    or garbled answer) does not say the shop took the update: it is retried,
    not recorded as delivered.
    """
    if response.status_code == 204 or not response.content.strip():
        return None
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if isinstance(answer, dict):
        return answer
    content_type = response.headers.get("Content-Type") or "no content type"
    raise RetryableChannelError(
        f"pushing: the shop answered {response.status_code} with a body that is"
        f" not the JSON object of the contract ({content_type}); not counted"
        " as delivered",
        status=response.status_code,
        response_text=response.text,
    )


def _malformed(what, detail, response):
    return PermanentChannelError(
        f"{what}: malformed answer ({detail})",
        status=response.status_code,
        response_text=response.text,
    )


def _as_int(value, name):
    """An integral number from JSON (``5`` or ``5.0``), else ValueError."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    _require(is_number, f"{name} must be a number, got {value!r}")
    _require(value == int(value), f"{name} must be a whole number, got {value!r}")
    return int(value)


def _require(condition, message):
    """Raise ValueError(message) unless condition: a malformed document is a
    value problem for the caller (a 400 answer), whatever the wrong part is."""
    if not condition:
        raise ValueError(message)


def _identifier(value, what):
    """An id or SKU as text (see ``is_identifier``)."""
    _require(
        is_identifier(value),
        f"{what} must be a string or an integer, got {type(value).__name__}",
    )
    return str(value)


#: SKUs named in one read request (keeps URLs well under 8 KB)
SKU_FILTER_CHUNK = 200


class GenericAdapter(ChannelAdapter):
    """Signed-HTTP shop: one POST per update, paginated JSON reads."""

    channel_type = "generic"
    #: the contract has no bulk call: one update per signed request
    max_batch = 1

    def _sends_credentials(self, kwargs):
        return "Authorization" in (kwargs.get("headers") or {})

    def request(self, method, url, **kwargs):
        """A call that carries the API key (a bearer token, on the reads)
        goes over HTTPS only, as the other adapters' credentials do,
        loopback aside. A push carries a signature, not the secret it is
        made with: it goes to the URL as configured."""
        if self._sends_credentials(kwargs):
            try:
                parts = urlsplit(str(url))
            except ValueError:
                # refused by the URL check, with its own message
                return super().request(method, url, **kwargs)
            if parts.scheme != "https" and parts.hostname not in LOOPBACK_HOSTS:
                raise PermanentChannelError(
                    "generic channel: the API key goes over HTTPS only; refusing"
                    f" to send it in clear to {parts.hostname!r} (pushes, signed,"
                    " are sent)"
                )
        return super().request(method, url, **kwargs)

    # -- helpers --------------------------------------------------------------
    @property
    def base_url(self):
        url = (self.config.base_url or "").strip().rstrip("/")
        if not url:
            raise PermanentChannelError(
                "generic channel: the API URL (base_url) is not configured"
            )
        return url

    @property
    def page_size(self):
        size = (self.config.extra or {}).get("page_size") or DEFAULT_PAGE_SIZE
        return max(1, int(size))

    def _read_headers(self):
        headers = {"Accept": "application/json"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        return headers

    def _check_signing_config(self):
        """Fail the whole call early, with a message an operator can act on.

        A missing or unreadable key is a configuration error: every update
        would fail the same way, so there is no point reporting it per item.
        """
        secret = self.config.signing_secret
        private_key = self.config.signing_private_key
        if not secret and not private_key:
            raise PermanentChannelError(
                "generic channel: neither an Outbound Signing Secret (whsec_...)"
                " nor an Outbound Ed25519 Key (whsk_...) is configured; the shop"
                " would refuse every update"
            )
        try:
            if secret:
                signatures.decode_standard_secret(secret)
            if private_key:
                signatures.load_ed25519_private_key(private_key)
        except ValueError as err:
            raise PermanentChannelError(f"generic channel: {err}") from err

    def _pages(self, url, params, what):
        """Yield the JSON body of each page, following ``next_page``."""
        page = 1
        for _count in range(MAX_PAGES):
            response = self.request(
                "GET",
                url,
                params={**params, "page": page},
                headers=self._read_headers(),
            )
            _check(response)
            body = _json(response, what)
            if not isinstance(body, dict):
                raise _malformed(what, "expected a JSON object", response)
            yield body, response
            next_page = body.get("next_page")
            if next_page is None:
                return
            if isinstance(next_page, bool) or not isinstance(next_page, int):
                raise _malformed(what, f"next_page {next_page!r}", response)
            if next_page <= page:
                raise _malformed(
                    what, f"next_page {next_page} does not move past {page}", response
                )
            page = next_page
        raise PermanentChannelError(f"{what}: more than {MAX_PAGES} pages, giving up")

    # -- push -----------------------------------------------------------------
    def payload_for(self, update):
        """The JSON document sent for one update (also what gets signed)."""
        return {
            "sku": update.sku,
            "quantity": int(update.quantity),
            "sequence": int(update.sequence or 0),
            "external_id": update.external_id or "",
            "changed_at": update.changed_at,
            "idempotency_key": update.idempotency_key or "",
        }

    def _push(self, update):
        body = json.dumps(
            self.payload_for(update), separators=(",", ":"), sort_keys=True
        ).encode("utf-8")
        headers = signatures.sign_standard(
            self.config.signing_secret or None,
            message_id_for(update.idempotency_key),
            int(self.clock()),
            body,
            private_key=self.config.signing_private_key or None,
        )
        headers["Content-Type"] = "application/json"
        response = self.request("POST", self.base_url, data=body, headers=headers)
        _check(response)
        result = PushResult(
            sku=update.sku,
            ok=True,
            quantity=update.quantity,
            status=response.status_code,
            response=response.text[:RESPONSE_EXCERPT],
        )
        answer = _push_answer(response)
        # The shop kept a value of a newer sequence. A redelivery of what it
        # already applied (``duplicate``) is no news. Otherwise the push did
        # not land: Odoo's sequences went back (a restored database), and
        # recording it as delivered would leave the shop's figure for good.
        if isinstance(answer, dict) and answer.get("applied") is False:
            quantity = answer.get("quantity")
            if isinstance(quantity, int) and not isinstance(quantity, bool):
                result.live_quantity = quantity
            if not answer.get("duplicate"):
                held = answer.get("sequence")
                newer = (
                    held
                    if isinstance(held, int)
                    and not isinstance(held, bool)
                    and held > int(update.sequence or 0)
                    else None
                )
                raise NewerSequenceError(
                    f"the shop kept {quantity!r} under a newer sequence"
                    f" ({held!r}) than this push's ({update.sequence})",
                    newer_sequence=newer,
                    status=response.status_code,
                    response_text=response.text,
                )
        return result

    def set_quantities(self, updates):
        """POST each update; failures are reported per update, not raised.

        After a 429 or a transport failure (timeout, connection refused) the
        remaining updates are not sent: the shop is throttling us or is not
        reachable, and each further request would only make that worse. They
        are reported with the same (retryable) error.
        """
        updates = list(updates)
        if not updates:
            return []
        self._check_signing_config()
        results = []
        stop = None
        for update in updates:
            if stop is not None:
                error = type(stop)(
                    f"not sent after an earlier failure: {stop.message}",
                    status=stop.status,
                    retry_after=stop.retry_after,
                )
                results.append(PushResult(sku=update.sku, ok=False, error=error))
                continue
            try:
                results.append(self._push(update))
            except ChannelError as err:
                results.append(
                    PushResult(
                        sku=update.sku,
                        ok=False,
                        status=err.status,
                        response=err.response_text,
                        error=err,
                    )
                )
                if isinstance(err, RateLimitedError) or (
                    isinstance(err, RetryableChannelError) and err.status is None
                ):
                    stop = err
        return results

    # -- reads ----------------------------------------------------------------
    def read_quantities(self, updates=None):
        """Yield LiveLevel for the given SKUs, or for every SKU the shop lists.

        With ``updates``, the SKUs are asked for by name (``skus=a,b,c``, at
        most :data:`SKU_FILTER_CHUNK` per request) so that a reconciliation
        batch of 500 bindings costs a few requests, not a scan of the whole
        catalogue; without, the catalogue is paged through.
        """
        what = "reading quantities"
        if updates is None:
            chunks = [None]
        else:
            skus = list(dict.fromkeys(u.sku for u in updates if u.sku))
            if not skus:
                return
            chunks = [
                skus[i : i + SKU_FILTER_CHUNK]
                for i in range(0, len(skus), SKU_FILTER_CHUNK)
            ]
        for chunk in chunks:
            params = {"per_page": self.page_size}
            if chunk is not None:
                params["skus"] = ",".join(chunk)
                # one page per chunk: the names are not sent again per page
                params["per_page"] = max(self.page_size, len(chunk))
            for body, response in self._pages(self.base_url, params, what):
                items = body.get("items")
                if not isinstance(items, list):
                    raise _malformed(what, "no 'items' list", response)
                for item in items:
                    level = self._level(item, what, response)
                    if chunk is None or level.sku in chunk:
                        yield level

    def _level(self, item, what, response):
        try:
            sku = item["sku"]
            if not isinstance(sku, str) or not sku:
                raise ValueError(f"sku {sku!r}")
            return LiveLevel(
                sku=sku,
                quantity=_as_int(item["quantity"], "quantity"),
                external_id=str(item.get("external_id") or ""),
                updated_at=parse_datetime(item.get("updated_at")),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise _malformed(what, f"item {str(item)[:200]}: {err}", response) from err

    def fetch_orders(self, since):
        """Yield ChannelOrder updated at or after ``since`` (naive = UTC)."""
        what = "fetching orders"
        params = {"per_page": self.page_size}
        if since is not None:
            params["updated_since"] = format_datetime(since)
        for body, response in self._pages(f"{self.base_url}/orders", params, what):
            orders = body.get("orders")
            if not isinstance(orders, list):
                raise _malformed(what, "no 'orders' list", response)
            for data in orders:
                try:
                    yield self._order(data, None)
                except (AttributeError, KeyError, TypeError, ValueError) as err:
                    raise _malformed(
                        what, f"order {str(data)[:200]}: {err}", response
                    ) from err

    def test_connection(self):
        """Read one item to prove the URL answers and the credentials work."""
        self._check_signing_config()
        response = self.request(
            "GET",
            self.base_url,
            params={"page": 1, "per_page": 1},
            headers=self._read_headers(),
        )
        _check(response)
        body = _json(response, "testing the connection")
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            raise _malformed("testing the connection", "no 'items' list", response)
        more = " and more" if body.get("next_page") else ""
        return f"Connected to {self.base_url}: {len(body['items'])} item(s){more}."

    # -- inbound --------------------------------------------------------------
    @staticmethod
    def _order(data, status, event_time=None):
        """ChannelOrder from ``{"id", "status", "lines", "updated_at", ...}``.

        ``status`` is the normalised one; ``None`` means "read it from data",
        where anything but a cancel or refund keeps the goods reserved.
        """
        _require(isinstance(data, dict), "order data must be a JSON object")
        order_id = data.get("id")
        if order_id in (None, ""):
            raise ValueError("order has no 'id'")
        if status is None:
            status = ORDER_STATUSES.get(str(data.get("status") or "").lower(), "open")
        raw_lines = data.get("lines")
        if raw_lines is None and status != "open":
            raw_lines = []  # a cancel can name the order only
        _require(isinstance(raw_lines, list), "order has no 'lines' list")
        lines = []
        for line in raw_lines:
            if not isinstance(line, dict) or not line.get("sku"):
                raise ValueError(f"order line without sku: {line!r}")
            quantity = line.get("quantity")
            _require(
                isinstance(quantity, (int, float)) and not isinstance(quantity, bool),
                f"order line {line['sku']!r}: bad quantity {quantity!r}",
            )
            lines.append(
                OrderLine(
                    sku=_identifier(line["sku"], "order line sku"),
                    quantity=quantity,
                    external_id=str(line.get("external_id") or ""),
                )
            )
        return ChannelOrder(
            external_id=_identifier(order_id, "order id"),
            status=status,
            lines=lines,
            updated_at=parse_datetime(data.get("updated_at")) or event_time,
            created_at=parse_datetime(data.get("created_at")),
            restock=bool(data.get("restock", True)),
            raw=data,
        )

    def parse_webhook(self, topic, payload, headers):
        """Turn a verified delivery into InboundEvent values.

        ``payload`` is the parsed JSON body (bytes or text are parsed here);
        its ``type`` decides, ``topic`` is only a fallback for a payload
        without one. The idempotency key is the ``webhook-id`` header, which
        the sender keeps across retries.
        """
        if isinstance(payload, (bytes, bytearray, str)):
            try:
                payload = json.loads(payload)
            except ValueError as err:
                raise ValueError(f"generic webhook: body is not JSON ({err})") from err
        _require(
            isinstance(payload, dict), "generic webhook: body must be a JSON object"
        )
        # the id as signed: the signature check strips blanks around it, so
        # must the key, or a blank added to a captured delivery would make it
        # a new event
        key = str(
            signatures.standard_header(headers, signatures.STANDARD_ID_HEADER) or ""
        ).strip()
        if not key:
            raise ValueError("generic webhook: missing webhook-id header")
        event_type = payload.get("type") or topic or ""
        try:
            event_time = parse_datetime(payload.get("timestamp"))
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"generic webhook {event_type}: bad timestamp "
                f"{payload.get('timestamp')!r}"
            ) from err
        data = payload.get("data")
        known = event_type in ORDER_EVENTS or event_type == INVENTORY_EVENT
        _require(
            not known or isinstance(data, dict),
            f"generic webhook {event_type}: 'data' object missing",
        )
        if event_type in ORDER_EVENTS:
            kind, status = ORDER_EVENTS[event_type]
            try:
                order = self._order(data, status, event_time)
            except ValueError as err:
                raise ValueError(f"generic webhook {event_type}: {err}") from err
            if order.status != "open":
                kind = "cancel"
            return [InboundEvent(kind, key, event_time=event_time, order=order)]
        if event_type == INVENTORY_EVENT:
            levels = self._inventory_levels(data, event_type, event_time)
            return [
                InboundEvent("inventory", key, event_time=event_time, levels=levels)
            ]
        return [InboundEvent("ignored", key, event_time=event_time)]

    @staticmethod
    def _inventory_levels(data, event_type, event_time):
        """Levels from ``{"sku", "quantity"}`` or ``{"items": [...]}``."""
        items = data.get("items") if "items" in data else [data]
        if not isinstance(items, list) or not items:
            raise ValueError(f"generic webhook {event_type}: no inventory items")
        levels = []
        for item in items:
            if not isinstance(item, dict) or not item.get("sku"):
                raise ValueError(f"generic webhook {event_type}: item without sku")
            try:
                quantity = _as_int(item.get("quantity"), "quantity")
                updated_at = parse_datetime(item.get("updated_at")) or event_time
            except (TypeError, ValueError) as err:
                raise ValueError(
                    f"generic webhook {event_type}: sku {item['sku']!r}: {err}"
                ) from err
            levels.append(
                LiveLevel(
                    sku=_identifier(item["sku"], "inventory sku"),
                    quantity=quantity,
                    external_id=str(item.get("external_id") or ""),
                    updated_at=updated_at,
                )
            )
        return levels
