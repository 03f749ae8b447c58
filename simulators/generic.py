"""Simulator of the "generic" signed-HTTP shop (see ``lib/adapters/generic.py``).

It behaves the way a careful receiver should, so the adapter is tested against
the guarantees it relies on:

- every push is verified per Standard Webhooks (401 when the signature, the
  headers or the timestamp are wrong);
- a redelivery (same ``webhook-id``) changes nothing and is answered 200;
- last-write-wins per SKU on ``sequence``: an older sequence is ignored but
  answered 200 with ``"applied": false`` (retrying it could never succeed);
- invalid documents get a 4xx with a message saying what is wrong.

For latency benchmarks it records when each quantity arrived
(``received_at[sku] = (quantity, unix seconds)``) and keeps the full
``history`` of pushes. ``queue_response`` and ``queue_hang`` script the next
answers, so a test can get exactly one 429 or one timeout instead of relying
on the random ``fail_rate`` of the base class.
"""

import sys
import time
from collections import deque
from datetime import datetime, timezone

from .base import Response, Simulator

# ``simulators`` is a top-level package under pytest and ``python -m
# simulators``, but a sub-package of the addon inside Odoo: import the
# signature code whichever way this copy was loaded.
try:
    from ..lib.signatures import (
        STANDARD_ID_HEADER,
        STANDARD_TOLERANCE,
        SignatureError,
        generate_standard_secret,
        verify_standard,
    )
except ImportError:
    from lib.signatures import (
        STANDARD_ID_HEADER,
        STANDARD_TOLERANCE,
        SignatureError,
        generate_standard_secret,
        verify_standard,
    )

DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 250


def _parse_iso(value):
    """ISO 8601 (``Z`` allowed) -> aware UTC datetime; ValueError if malformed."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def _iso(moment):
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


class GenericSimulator(Simulator):
    """A shop receiving signed stock pushes and serving quantities and orders."""

    name = "generic"

    def __init__(
        self,
        secret=None,
        public_keys=(),
        api_key="",
        base_path="",
        tolerance=STANDARD_TOLERANCE,
        clock=time.time,
        **kwargs,
    ):
        super().__init__(**kwargs)
        #: current ``whsec_`` secret; tests may append a previous one to ``secrets``
        self.secret = secret or generate_standard_secret()
        self.secrets = [self.secret]
        #: ``whpk_`` keys accepted for ``v1a`` signatures
        self.public_keys = list(public_keys)
        #: when set, reads need ``Authorization: Bearer <api_key>``
        self.api_key = api_key
        self.base_path = base_path.rstrip("/")
        self.tolerance = tolerance
        self.clock = clock
        #: SKU -> last applied sequence
        self.sequences = {}
        #: webhook ids already processed (dedup of redeliveries)
        self.seen_ids = set()
        #: SKU -> (quantity, unix seconds) of the last applied push
        self.received_at = {}
        #: every push that passed verification, applied or not
        self.history = []
        #: pushes refused with 401, with the reason
        self.rejected = []
        #: order id -> (updated_at as aware datetime, order dict served by /orders)
        self.orders = {}
        self._script = deque()

    def start(self):
        """Start serving; a client that gave up (timeout) is not an error.

        After a scripted hang the answer is written to a socket the client
        already closed; socketserver would print that broken pipe as a
        traceback in the middle of the test output.
        """
        super().start()
        server = self._server
        default = server.handle_error

        def handle_error(request, client_address):
            if not isinstance(sys.exc_info()[1], ConnectionError):
                default(request, client_address)

        server.handle_error = handle_error
        return self

    @property
    def endpoint(self):
        """The ``base_url`` an adapter should be configured with."""
        return self.url + self.base_path

    # -- scripting for tests --------------------------------------------------
    def queue_response(self, status, body=None, headers=None):
        """Answer the next request with this response instead of handling it."""
        with self.lock:
            self._script.append(Response(status, body, dict(headers or {})))

    def queue_hang(self, seconds=None):
        """Keep the next request waiting (past the client's timeout), then 504."""
        with self.lock:
            self._script.append(seconds if seconds is not None else self.hang_seconds)

    def add_order(self, order_id, lines, status="open", updated_at=None, **extra):
        """Create or replace an order served by ``GET /orders``.

        ``lines`` is a list of ``(sku, quantity)`` pairs or of dicts;
        ``updated_at`` is a datetime (naive = UTC) or unix seconds, default now.
        """
        if updated_at is None:
            updated_at = self.clock()
        if isinstance(updated_at, (int, float)):
            updated_at = datetime.fromtimestamp(updated_at, tz=timezone.utc)
        elif updated_at.tzinfo is None:
            updated_at = updated_at.replace(tzinfo=timezone.utc)
        order = {
            "id": str(order_id),
            "status": status,
            "lines": [
                dict(line)
                if isinstance(line, dict)
                else {"sku": line[0], "quantity": line[1]}
                for line in lines
            ],
            "updated_at": _iso(updated_at),
            **extra,
        }
        with self.lock:
            self.orders[order["id"]] = (updated_at, order)
        return order

    def set_stock(self, sku, quantity):
        """Change a quantity as if someone edited it in the shop."""
        with self.lock:
            self.quantities[sku] = quantity

    def seed_skus(self, count, prefix="SKU-", quantity=0):
        """Create ``count`` SKUs held at ``quantity``; return them in order."""
        skus = [f"{prefix}{n:05d}" for n in range(count)]
        with self.lock:
            for sku in skus:
                self.quantities[sku] = quantity
        return skus

    def config_fields(self):
        fields = {
            "channel_type": "generic",
            "base_url": self.endpoint,
            "signing_secret": self.secret,
            "timeout": 5.0,
        }
        if self.api_key:
            fields["api_key"] = self.api_key
        return fields

    # -- benchmark --------------------------------------------------------------
    def benchmark_fixture(self, count):
        """Seed ``count`` SKUs; return (config fields, update fields, auth calls).

        The generic contract has no bulk call (one signed POST per update), so
        the floor is ``count`` calls; the signature travels with each request,
        hence no auth call. Sequences and idempotency keys are distinct, as the
        push engine sends them, so the shop applies every update.
        """
        skus = self.seed_skus(count, prefix="BENCH-", quantity=0)
        updates = [
            {
                "sku": sku,
                "quantity": (n % 50) + 1,
                "sequence": n + 1,
                "idempotency_key": f"bench-{n}",
                "previous_quantity": 0,
            }
            for n, sku in enumerate(skus)
        ]
        fields = self.config_fields()
        fields.pop("channel_type")
        return fields, updates, 0

    # -- request handling -------------------------------------------------------
    def handle(self, req):
        scripted = self._next_scripted()
        if scripted is not None:
            return scripted
        path = req.path.rstrip("/")
        if path == self.base_path:
            if req.method == "POST":
                return self._push(req)
            if req.method == "GET":
                return self._list(req)
            return Response(405, {"error": f"{req.method} not allowed"})
        if path == f"{self.base_path}/orders":
            if req.method == "GET":
                return self._list_orders(req)
            return Response(405, {"error": f"{req.method} not allowed"})
        return Response(404, {"error": f"no route for {req.path}"})

    def _next_scripted(self):
        with self.lock:
            if not self._script:
                return None
            item = self._script.popleft()
        if isinstance(item, Response):
            return item
        time.sleep(item)
        return Response(504, {"error": "gateway timeout"})

    def _push(self, req):
        try:
            msg_id = verify_standard(
                req.headers,
                req.body,
                secrets=self.secrets,
                public_keys=self.public_keys,
                now=self.clock(),
                tolerance=self.tolerance,
            )
        except SignatureError as err:
            with self.lock:
                self.rejected.append(
                    {
                        "webhook_id": req.headers.get(STANDARD_ID_HEADER),
                        "reason": str(err),
                    }
                )
            return Response(401, {"error": f"signature refused: {err}"})
        except ValueError as err:  # no secret or key configured: our fault
            return Response(500, {"error": f"simulator misconfigured: {err}"})
        try:
            doc = req.json()
        except ValueError:
            return Response(400, {"error": "body is not JSON"})
        problem = self._invalid(doc)
        if problem:
            return Response(422, {"error": problem})
        sku, quantity, sequence = doc["sku"], doc["quantity"], doc.get("sequence", 0)
        now = time.time()
        with self.lock:
            entry = {
                "webhook_id": msg_id,
                "sku": sku,
                "quantity": quantity,
                "sequence": sequence,
                "received_at": now,
            }
            if msg_id in self.seen_ids:
                self.history.append({**entry, "applied": False, "duplicate": True})
                return Response(
                    200,
                    {
                        "sku": sku,
                        "quantity": self.quantities.get(sku),
                        "applied": False,
                        "duplicate": True,
                    },
                )
            self.seen_ids.add(msg_id)
            current = self.sequences.get(sku)
            if current is not None and sequence < current:
                self.history.append({**entry, "applied": False, "duplicate": False})
                return Response(
                    200,
                    {
                        "sku": sku,
                        "quantity": self.quantities.get(sku),
                        "sequence": current,
                        "applied": False,
                        "reason": f"sequence {sequence} is older than {current}",
                    },
                )
            self.sequences[sku] = sequence
            self.quantities[sku] = quantity
            self.received_at[sku] = (quantity, now)
            self.history.append({**entry, "applied": True, "duplicate": False})
        return Response(
            200,
            {"sku": sku, "quantity": quantity, "sequence": sequence, "applied": True},
        )

    @staticmethod
    def _invalid(doc):
        """What is wrong with a push document, or ``None``."""
        if not isinstance(doc, dict):
            return "body must be a JSON object"
        sku = doc.get("sku")
        if not isinstance(sku, str) or not sku:
            return "sku is required"
        if not _is_int(doc.get("quantity")):
            return "quantity must be an integer"
        if doc["quantity"] < 0:
            return f"quantity must be >= 0 (got {doc['quantity']} for {sku})"
        if not _is_int(doc.get("sequence", 0)):
            return "sequence must be an integer"
        return None

    def _authorised(self, req):
        if not self.api_key:
            return True
        return req.headers.get("authorization") == f"Bearer {self.api_key}"

    @staticmethod
    def _paging(req):
        """(page, per_page) from the query, or a 400 Response."""
        try:
            page = int(req.query.get("page", 1))
            per_page = int(req.query.get("per_page", DEFAULT_PER_PAGE))
        except ValueError:
            return None, Response(400, {"error": "page and per_page are integers"})
        if page < 1 or not 1 <= per_page <= MAX_PER_PAGE:
            return None, Response(
                400, {"error": f"page >= 1 and 1 <= per_page <= {MAX_PER_PAGE}"}
            )
        return (page, per_page), None

    @staticmethod
    def _slice(rows, page, per_page):
        start = (page - 1) * per_page
        chunk = rows[start : start + per_page]
        next_page = page + 1 if start + per_page < len(rows) else None
        return chunk, next_page

    def _list(self, req):
        if not self._authorised(req):
            return Response(401, {"error": "invalid API key"})
        paging, error = self._paging(req)
        if error:
            return error
        wanted = req.query.get("skus")
        with self.lock:
            if wanted:
                names = [s for s in wanted.split(",") if s in self.quantities]
                rows = [{"sku": s, "quantity": self.quantities[s]} for s in names]
            else:
                rows = [
                    {"sku": sku, "quantity": qty}
                    for sku, qty in sorted(self.quantities.items())
                ]
        items, next_page = self._slice(rows, *paging)
        return Response(200, {"items": items, "next_page": next_page})

    def _list_orders(self, req):
        if not self._authorised(req):
            return Response(401, {"error": "invalid API key"})
        paging, error = self._paging(req)
        if error:
            return error
        since = req.query.get("updated_since")
        if since:
            try:
                since = _parse_iso(since)
            except ValueError:
                return Response(400, {"error": f"updated_since {since!r} is not ISO"})
        with self.lock:
            rows = sorted(self.orders.values(), key=lambda r: (r[0], r[1]["id"]))
        rows = [order for moment, order in rows if not since or moment >= since]
        orders, next_page = self._slice(rows, *paging)
        return Response(200, {"orders": orders, "next_page": next_page})
