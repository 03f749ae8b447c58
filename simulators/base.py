"""A tiny HTTP server on loopback that plays one marketplace.

Each simulator subclasses :class:`Simulator` and implements ``handle(req)``
following the marketplace's documented contract. This base gives them what
every one needs:

- a threaded server bound to ``127.0.0.1`` only (port 0 picks a free port);
- a store of quantities per SKU and a log of the requests received;
- fault injection shared by tests, the fault script and benchmarks:
  ``fail_rate`` (share of requests answered 500, 429 with Retry-After, or
  left hanging past the client's timeout), ``down`` (every request refused
  with 503) and ``latency`` (seconds added to every answer);
- ``channel_config()``, a ChannelConfig built from the simulator's own
  ``config_fields()``.

:class:`TokenSimulator` adds what the marketplaces with OAuth refresh tokens
(Amazon, eBay) share: access tokens that expire, and a way to expire them
from a test. :class:`RateBucket` meters an operation the way their usage
plans do.

Nothing here imports ``odoo``.
"""

import json
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


def parse_iso(text):
    """ISO 8601 (``Z`` allowed) -> aware datetime, naive taken as UTC; None if bad."""
    try:
        parsed = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


class RateBucket:
    """Server-side token bucket: refuse when empty, refill ``rate`` a second."""

    def __init__(self, rate, burst, clock):
        self.rate = float(rate)
        self.burst = float(burst)
        self.clock = clock
        self.tokens = float(burst)
        self.stamp = clock()
        self._lock = threading.Lock()

    def allow(self):
        with self._lock:
            now = self.clock()
            self.tokens = min(
                self.burst, self.tokens + max(0.0, now - self.stamp) * self.rate
            )
            self.stamp = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return True
            return False


@dataclass
class Request:
    method: str
    path: str
    query: dict
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body or b"null")


@dataclass
class Response:
    status: int = 200
    body: object = None
    headers: dict = field(default_factory=dict)

    def encode(self):
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class Simulator:
    """Base of every marketplace simulator."""

    name = "base"

    def __init__(self, host="127.0.0.1", port=0, seed=None):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("simulators listen on loopback only")
        self.host = host
        self.port = port
        self.lock = threading.RLock()
        self.random = random.Random(seed)
        #: SKU -> quantity held by the "marketplace"
        self.quantities = {}
        #: every request received, in order (method, path, query, headers, body)
        self.requests = []
        self.fail_rate = 0.0
        self.down = False
        self.latency = 0.0
        #: how long a "timeout" fault keeps the client waiting
        self.hang_seconds = 15.0
        self.faults = {"500": 0, "429": 0, "timeout": 0, "down": 0}
        self._server = None
        self._thread = None

    # -- life cycle -----------------------------------------------------------
    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    def start(self):
        simulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # answers go out in two writes: without this, Nagle holds the
            # second one for the client's delayed ACK (~40 ms per call)
            disable_nagle_algorithm = True

            def log_message(self, *args):  # keep test output quiet
                pass

            def _dispatch(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                req = Request(
                    method=self.command,
                    path=parts.path,
                    query={k: v[-1] for k, v in parse_qs(parts.query).items()},
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                resp = simulator._serve(req)
                payload = resp.encode()
                self.send_response(resp.status)
                headers = {"Content-Type": "application/json", **resp.headers}
                for key, value in headers.items():
                    self.send_header(key, str(value))
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

        self._server = _Server((self.host, self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sim-{self.name}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self):
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- request handling -------------------------------------------------------
    def _serve(self, req):
        with self.lock:
            self.requests.append(req)
        if self.latency:
            time.sleep(self.latency)
        fault = self._pick_fault()
        if fault:
            return fault
        return self.handle(req)

    def _pick_fault(self):
        if self.down:
            with self.lock:
                self.faults["down"] += 1
            return Response(503, {"error": "service unavailable"})
        if not self.fail_rate or self.random.random() >= self.fail_rate:
            return None
        kind = self.random.choice(("500", "429", "timeout"))
        with self.lock:
            self.faults[kind] += 1
        if kind == "500":
            return Response(500, {"error": "internal error"})
        if kind == "429":
            return Response(429, {"error": "too many requests"}, {"Retry-After": "1"})
        time.sleep(self.hang_seconds)
        return Response(504, {"error": "gateway timeout"})

    def handle(self, req):
        """Answer one request; subclasses implement the marketplace contract."""
        raise NotImplementedError

    # -- helpers for tests ------------------------------------------------------
    def reset_log(self):
        with self.lock:
            self.requests.clear()

    def quantity(self, sku):
        with self.lock:
            return self.quantities.get(sku)

    def requests_for(self, method, path_prefix):
        """The requests received with ``method`` on a path under ``path_prefix``."""
        with self.lock:
            return [
                r
                for r in self.requests
                if r.method == method and r.path.startswith(path_prefix)
            ]

    def config_fields(self):
        """ChannelConfig fields (``channel_type`` included) for this simulator."""
        raise NotImplementedError

    def channel_config(self, **overrides):
        """A ChannelConfig for this channel's adapter against this started simulator."""
        try:
            from ..lib.adapters.base import ChannelConfig
        except ImportError:
            from lib.adapters.base import ChannelConfig
        return ChannelConfig(**{**self.config_fields(), **overrides})


class TokenSimulator(Simulator):
    """A marketplace whose API takes access tokens minted from a refresh token.

    Subclasses serve the token endpoint (minting with :meth:`_issue_token`,
    counting :attr:`token_requests`) and check each call's token with
    :meth:`_token_expiry`; they implement ``seed_skus(n, quantity, prefix)``
    and ``config_fields()`` for :meth:`benchmark_fixture`.
    """

    def __init__(self, host="127.0.0.1", port=0, seed=None, *, token_ttl, clock):
        super().__init__(host=host, port=port, seed=seed)
        self.clock = clock
        self.token_ttl = float(token_ttl)
        #: access token -> expiry (simulator clock)
        self.tokens = {}
        self.token_requests = 0
        self._expire_after = None

    def expire_tokens(self):
        """Expire every access token now (the next call is refused)."""
        with self.lock:
            self._expire_all()

    def expire_tokens_after(self, calls):
        """Expire every token once ``calls`` more API calls have been served."""
        with self.lock:
            self._expire_after = calls

    def benchmark_fixture(self, count):
        """Seed ``count`` SKUs; return (config fields, update dicts, auth calls).

        One token exchange is unavoidable per adapter instance.
        """
        rows = self.seed_skus(count, quantity=0, prefix="BENCH-")
        updates = [
            {**row, "quantity": (n % 50) + 1, "idempotency_key": f"bench-{n}"}
            for n, row in enumerate(rows)
        ]
        fields = self.config_fields()
        fields.pop("channel_type")
        return fields, updates, 1

    def _expire_all(self):
        past = self.clock() - 1
        self.tokens = dict.fromkeys(self.tokens, past)

    def _issue_token(self, prefix):
        """A new access token valid :attr:`token_ttl` seconds."""
        token = f"{prefix}{uuid.uuid4().hex}"
        with self.lock:
            self.tokens[token] = self.clock() + self.token_ttl
        return token

    def _token_expiry(self, token):
        """When ``token`` expires (None if unknown); counts one served API call."""
        with self.lock:
            if self._expire_after is not None:
                if self._expire_after <= 0:
                    self._expire_all()
                    self._expire_after = None
                else:
                    self._expire_after -= 1
            return self.tokens.get(token) if token else None
