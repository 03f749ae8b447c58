"""A tiny HTTP server on loopback that plays one marketplace.

Each simulator subclasses :class:`Simulator` and implements ``handle(req)``
following the marketplace's documented contract. This base gives them what
every one needs:

- a threaded server bound to ``127.0.0.1`` only (port 0 picks a free port);
- a store of quantities per SKU and a log of the requests received;
- fault injection shared by tests, the fault script and benchmarks:
  ``fail_rate`` (share of requests answered 500, 429 with Retry-After, or
  left hanging past the client's timeout), ``down`` (every request refused
  with 503) and ``latency`` (seconds added to every answer).

Nothing here imports ``odoo``.
"""

import json
import random
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


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
