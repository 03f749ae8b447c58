"""Webhook intake load test against a real Odoo 19 server (prints, asserts nothing).

It drives a running server (HTTP workers plus the queue_job job runner) from
this process, over loopback, and prints in one run:

1. throughput and latency of the signed webhook route
   ``POST /stock_channel_sync/webhook/<token>`` versus a bare route of the
   same server, Odoo's own ``GET /web/health`` (answers 200 and runs no query
   of its own), with the same client, concurrency and duration, interleaved
   (bare, ours, bare, ours...); the ratio of accepted webhooks per second
   (ours / bare) and both p99s. Goal: ratio >= 0.7, p99 < 100 ms.
   Our route receives distinct, freshly signed ``inventory.updated`` events
   (each one is recorded and applied by the channel's apply job, which a
   burst shares; none reserves stock). The ratio depends on the server's
   configuration, which the script prints: with ``dbfilter`` set, every
   request of both routes lists the databases (a new PostgreSQL connection);
   with ``db_name`` alone, the bare route does almost nothing;
   ``--mixed`` adds a run where every other event is a one-unit
   ``order.created`` (which reserves stock in its job); ``--floor`` adds the
   routes of ``benchmarks/floor/scs_bench_floor`` (install it first): the
   same signed POST to routes that only read it, or only insert it and
   commit, which bound what any webhook route can reach on the server.
   With the server on this machine, each run also prints the CPU its Odoo
   and PostgreSQL processes used per request (the jobs a run enqueued
   included): on a machine with few cores that, not the wall time, sets
   the throughput; and it warns when Odoo processes came and went during a
   run (a worker restarting in a loop makes every figure noise);
2. 10,000 duplicate deliveries (100 orders, each delivered 100 times with the
   same webhook-id and body, re-signed, shuffled, sent concurrently), then,
   once the job runner is idle, the number of double reservations (goal: 0);
3. the same order delivered under 10 different webhook-ids (``order.created``
   and ``order.paid``) at once: still one reservation per order.

The client is N threads, each with its own keep-alive ``http.client``
connection (Odoo's prefork workers answer HTTP/1.0 and close the connection
after each answer, so the client reconnects; the number of connections opened
is printed). Setup goes through a registry opened on the server's database
(a generic channel "Load channel" with push disabled, bound to LOAD-xxx
products with plenty of stock); every run uses fresh ids, so re-runs work.

Usage (the server must run with the job runner on the same database)::

    python benchmarks/load_webhooks.py -c odoo.conf -d DB \
        --url http://127.0.0.1:8069 [--seconds 15] [--concurrency 8]
"""

import argparse
import collections
import http.client
import itertools
import json
import os
import random
import secrets as _secrets
import threading
import time
import urllib.parse
from datetime import datetime, timezone

from _odoo import (  # noqa: F401
    ROOT,
    ensure_products,
    env_for,
    open_registry,
    pending_jobs,
    percentile,
    signal,
)

from lib import signatures

CHANNEL_NAME = "Load channel"
N_PRODUCTS = 20
MIN_FREE = 50_000
TOP_UP = 200_000
BARE_PATH = "/web/health"
#: routes of the optional ``benchmarks/floor/scs_bench_floor`` addon
FLOOR_PATHS = {
    "floor post": "/scs_bench_floor/ok",
    "floor insert": "/scs_bench_floor/insert",
    "floor at once": "/scs_bench_floor/insert_at_once",
}


# -- setup --------------------------------------------------------------------
def setup(registry):
    """Products with stock, the channel, its bindings; returns plain values."""
    with registry.cursor() as cr:
        env = env_for(cr)
        warehouse = env["stock.warehouse"].search([], limit=1, order="id")
        products = ensure_products(
            env, warehouse, "LOAD-", "Load product", N_PRODUCTS, MIN_FREE, TOP_UP
        )
        Channel = env["sync.channel"].with_context(active_test=False)
        channel = Channel.search([("name", "=", CHANNEL_NAME)], limit=1, order="id")
        if not channel:
            channel = Channel.create({"name": CHANNEL_NAME, "channel_type": "generic"})
        vals = {
            "channel_type": "generic",
            "active": True,
            "sync_enabled": False,  # pushes would add load of their own
            "warehouse_ids": [(6, 0, warehouse.ids)],
            "webhook_tolerance": 300,
            "webhook_public_key": False,
        }
        if not channel.webhook_secret:
            vals["webhook_secret"] = signatures.generate_standard_secret()
        channel.write(vals)
        if not channel.webhook_token:
            channel.action_regenerate_webhook_token()
        Binding = env["channel.binding"].with_context(active_test=False)
        bindings = Binding.search([("channel_id", "=", channel.id)])
        bindings.write({"active": True})
        bound = set(bindings.product_id.ids)
        Binding.create(
            [
                {"channel_id": channel.id, "product_id": p.id}
                for p in products
                if p.id not in bound
            ]
        )
        env.flush_all()
        skus = Binding.search(
            [("channel_id", "=", channel.id), ("product_id", "in", products.ids)],
            order="id",
        ).mapped("sku")
        info = {
            "channel_id": channel.id,
            "token": channel.webhook_token,
            "secret": channel.webhook_secret,
            "skus": [s for s in skus if s],
        }
        cr.commit()
    signal(registry)
    return info


def wait_idle(registry, timeout=900.0, settle=0.5):
    """Like ``_odoo.wait_idle`` with a longer default.

    Returns the seconds until no job was left (``None`` on timeout).
    """
    started = time.time()
    deadline = started + timeout
    while time.time() < deadline:
        if pending_jobs(registry) == 0:
            idle_at = time.time()
            time.sleep(settle)
            if pending_jobs(registry) == 0:
                return idle_at - started
        time.sleep(0.1)
    return None


# -- HTTP client ----------------------------------------------------------------
class CountingConnection(http.client.HTTPConnection):
    """An HTTPConnection that counts the TCP connections it opens."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.opened = 0

    def connect(self):
        self.opened += 1
        super().connect()


def server_cpu():
    """CPU seconds used so far by the server's processes on this machine.

    Returns ``{"odoo": s, "postgres": s, "pids": {...}}`` (``pids``: the
    Odoo processes running now), or ``None`` where ``/proc`` cannot be read.
    A process's count includes its waited-for children (``cutime``), so a
    worker or a PostgreSQL backend that exited during a round is still
    counted, by its parent. A server on another machine is not seen: the
    figures are then those of whatever runs here.

    A machine with few cores is shared by the client, the HTTP workers, the
    job runner and PostgreSQL, so the server's CPU per request, not its
    wall time, sets the throughput. Odoo processes that come and go during
    a round show one restarting in a loop (a worker that fails to start),
    which takes CPU from every route and makes the figures noise.
    """
    try:
        pids = [pid for pid in os.listdir("/proc") if pid.isdigit()]
    except OSError:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    used = {"odoo": 0.0, "postgres": 0.0, "pids": set()}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if any(arg.endswith(b"odoo-bin") for arg in argv[:2]):
            group = "odoo"
            used["pids"].add(int(pid))
        elif os.path.basename(argv[0]).startswith(b"postgres"):
            # the postmaster and its backends ("postgres: user db ...")
            group = "postgres"
        else:
            continue
        # utime, stime, cutime, cstime (proc(5), fields 14-17)
        used[group] += sum(int(x) for x in fields[11:15]) / tick
    return used


def cpu_delta(before, after):
    """CPU seconds by group between two ``server_cpu()`` readings, and
    ``restarts``: the Odoo processes that were not running at both."""
    if before is None or after is None:
        return None
    return {
        "odoo": after["odoo"] - before["odoo"],
        "postgres": after["postgres"] - before["postgres"],
        "restarts": len(before["pids"] ^ after["pids"]),
    }


def iso_now(offset=0.0):
    moment = datetime.fromtimestamp(time.time() + offset, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Webhooks:
    """Builds signed deliveries for the channel."""

    def __init__(self, info):
        self.path = f"/stock_channel_sync/webhook/{info['token']}"
        self.secret = info["secret"]
        self.skus = info["skus"]

    def request(self, msg_id, body):
        """A signed POST (the signature is made now, as a sender's retry does)."""
        headers = signatures.sign_standard(self.secret, msg_id, int(time.time()), body)
        headers["Content-Type"] = "application/json"
        return "POST", self.path, body, headers

    @staticmethod
    def body(event_type, data, offset=0.0):
        payload = {"type": event_type, "timestamp": iso_now(offset), "data": data}
        return json.dumps(payload, separators=(",", ":")).encode()

    def order_body(self, order_id, sku, event_type="order.created", offset=0.0):
        return self.body(
            event_type, {"id": order_id, "lines": [{"sku": sku, "quantity": 1}]}, offset
        )

    def inventory_body(self, n):
        sku = self.skus[n % len(self.skus)]
        return self.body("inventory.updated", {"sku": sku, "quantity": 1000 + n % 7})


def run_clients(
    url, concurrency, next_request, seconds=None, want_status=False, settle=None
):
    """Send requests from ``concurrency`` threads until time or work runs out.

    ``next_request()`` returns ``(method, path, body, headers)`` or ``None``
    (no more work). Returns a dict of figures and the raw samples.
    ``settle()``, when given, runs after the load and before the server's
    CPU is read again (waiting for the jobs the load enqueued: their CPU is
    the route's).
    """
    parsed = urllib.parse.urlsplit(url)
    host, port = parsed.hostname, parsed.port or 80
    deadline = time.perf_counter() + seconds if seconds else None
    results = [[] for _i in range(concurrency)]
    opened = [0] * concurrency

    def worker(slot):
        conn = CountingConnection(host, port, timeout=60)
        out = results[slot]
        while deadline is None or time.perf_counter() < deadline:
            req = next_request()
            if req is None:
                break
            method, path, body, headers = req
            started = time.perf_counter()
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                status = response.status
            except (OSError, http.client.HTTPException) as err:
                conn.close()
                out.append((time.perf_counter() - started, 0, type(err).__name__))
                continue
            latency = time.perf_counter() - started
            outcome = None
            if want_status and 200 <= status < 300:
                try:
                    outcome = json.loads(data).get("status")
                except (ValueError, AttributeError):
                    outcome = "unparsed"
            elif not 200 <= status < 300:
                outcome = data[:200].decode("utf-8", "replace")
            out.append((latency, status, outcome))
        opened[slot] = conn.opened
        conn.close()

    threads = [
        threading.Thread(target=worker, args=(i,), daemon=True)
        for i in range(concurrency)
    ]
    local = host in ("127.0.0.1", "localhost", "::1")
    server0 = server_cpu() if local else None
    cpu0 = time.process_time()
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    if settle is not None:
        settle()
    server = cpu_delta(server0, server_cpu() if local else None)
    samples = [s for part in results for s in part]
    ok = [s for s in samples if 200 <= s[1] < 300]
    latencies = [s[0] for s in samples]
    return {
        "elapsed": elapsed,
        "samples": samples,
        "ok": len(ok),
        "outcomes": collections.Counter(s[2] for s in ok),
        "errors": collections.Counter(
            f"{s[1]} {str(s[2])[:80]}" if s[1] else f"transport {s[2]}"
            for s in samples
            if not 200 <= s[1] < 300
        ),
        "latencies": latencies,
        "opened": sum(opened),
        "client_cpu": cpu / elapsed if elapsed else 0.0,
        "server_cpu": server,
    }


def merge(runs):
    elapsed = sum(r["elapsed"] for r in runs)
    out = {
        "elapsed": elapsed,
        "ok": sum(r["ok"] for r in runs),
        "outcomes": sum((r["outcomes"] for r in runs), collections.Counter()),
        "errors": sum((r["errors"] for r in runs), collections.Counter()),
        "latencies": [x for r in runs for x in r["latencies"]],
        "opened": sum(r["opened"] for r in runs),
        "client_cpu": sum(r["client_cpu"] * r["elapsed"] for r in runs) / elapsed,
        "server_cpu": None,
    }
    if all(r["server_cpu"] is not None for r in runs):
        keys = runs[0]["server_cpu"]
        out["server_cpu"] = {
            key: sum(r["server_cpu"][key] for r in runs) for key in keys
        }
    return out


def describe(label, run, counted):
    lat = run["latencies"]
    rate = counted / run["elapsed"] if run["elapsed"] else 0.0
    print(
        f"  {label:<34} {rate:8.1f}/s  n={len(lat):6d}"
        f"  p50={percentile(lat, 50) * 1000:6.1f}ms"
        f"  p95={percentile(lat, 95) * 1000:6.1f}ms"
        f"  p99={percentile(lat, 99) * 1000:6.1f}ms"
        f"  max={max(lat) * 1000 if lat else float('nan'):6.1f}ms"
        f"  non-2xx={sum(run['errors'].values())}"
        f"  conns={run['opened']}  client-cpu={run['client_cpu'] * 100:3.0f}%"
    )
    server = run["server_cpu"]
    if server is not None and lat:
        # per request sent, answered or not; the job runner's share is in
        # the figures of the route whose events it applies
        per_request = {key: server[key] * 1000 / len(lat) for key in server}
        print(
            f"      server CPU per request: Odoo {per_request['odoo']:.2f} ms,"
            f" PostgreSQL {per_request['postgres']:.2f} ms"
        )
        if server["restarts"]:
            print(
                f"      ! {server['restarts']} Odoo processes started or ended"
                " during the load: a server process restarting in a loop takes"
                " CPU from every route (see the server's log); these figures"
                " are noise then"
            )
    for what, count in run["errors"].most_common(5):
        print(f"      ! {count} x {what}")
    return rate


# -- part 1: throughput ---------------------------------------------------------
def throughput(registry, args, hooks, prefix):
    rounds = max(1, args.rounds)
    phase = args.seconds / rounds
    print(
        f"== 1. throughput: {args.concurrency} client threads, {args.seconds:g} s"
        f" per route in {rounds} interleaved rounds of {phase:g} s =="
    )
    print(
        f"  bare route: GET {BARE_PATH} (Odoo's health check: 200 JSON, no query of"
        " its own, though a one-database server still dispatches it with a"
        " read-only cursor); same client, concurrency and duration"
    )
    print(
        "  our route: POST /stock_channel_sync/webhook/<token>, distinct signed"
        f" inventory.updated events over {len(hooks.skus)} bound SKUs (recorded,"
        " applied by the channel's apply job, no reservation)"
    )
    bare_req = ("GET", BARE_PATH, None, {})
    counter = itertools.count()

    def ours():
        n = next(counter)
        return hooks.request(f"{prefix}-inv-{n}", hooks.inventory_body(n))

    ignored_counter = itertools.count()

    def ignored():
        # a type the adapter ignores: recorded as skipped, no job enqueued
        n = next(ignored_counter)
        body = hooks.body("load.ping", {"n": n})
        return hooks.request(f"{prefix}-ign-{n}", body)

    floors = floor_routes(args) if args.floor else {}
    floor_runs = {label: [] for label in floors}

    def floor_request(path, n):
        method, _path, body, headers = hooks.request(
            f"{prefix}-floor-{n}", hooks.inventory_body(n)
        )
        return method, path, body, headers

    if args.warmup > 0:
        # every worker process loads its caches (routes, channels, settings)
        # and runs a first apply job before anything is measured: a cold
        # worker is a start-up cost, not the route's
        warm_counter = itertools.count(-10_000_000, -1)
        warm = [("bare", lambda: bare_req), ("ours", ours)] + [
            (label, lambda p=path: floor_request(p, next(warm_counter)))
            for label, path in floors.items()
        ]
        for label, next_request in warm:
            run = run_clients(args.url, args.concurrency, next_request, args.warmup)
            print(
                f"  warm-up {label}: {len(run['samples'])} requests"
                f" ({sum(run['errors'].values())} non-2xx) in {args.warmup:g} s,"
                " not counted"
            )
        wait_idle(registry)
    bare_runs, our_runs, ignored_runs, drains = [], [], [], []
    for r in range(rounds):
        waited = wait_idle(registry)
        if waited is None:
            print("  ! job runner still busy after 900 s; measuring anyway")
        bare = run_clients(args.url, args.concurrency, lambda: bare_req, phase)
        bare_runs.append(bare)
        describe(f"round {r + 1} bare  GET {BARE_PATH}", bare, bare["ok"])
        run = run_clients(
            args.url,
            args.concurrency,
            ours,
            phase,
            want_status=True,
            settle=lambda: drains.append(wait_idle(registry)),
        )
        our_runs.append(run)
        describe(f"round {r + 1} ours  inventory.updated", run, accepted(run))
        print(
            f"      jobs of this round drained {fmt_s(drains[-1])} after the load"
            f" stopped (outcomes: {dict(run['outcomes'])})"
        )
        if args.no_job:
            run = run_clients(
                args.url, args.concurrency, ignored, phase, want_status=True
            )
            ignored_runs.append(run)
            describe(f"round {r + 1} ours  no job (ignored type)", run, accepted(run))
        for label, path in floors.items():
            floor_counter = itertools.count(r * 10_000_000)
            run = run_clients(
                args.url,
                args.concurrency,
                lambda p=path, c=floor_counter: floor_request(p, next(c)),
                phase,
                want_status=True,
            )
            floor_runs[label].append(run)
            describe(f"round {r + 1} {label:13s} POST {path}", run, accepted(run))
    bare, ours_all = merge(bare_runs), merge(our_runs)
    print("  -- all rounds --")
    bare_rate = describe("bare  (2xx/s)", bare, bare["ok"])
    our_rate = describe("ours  (accepted/s)", ours_all, accepted(ours_all))
    if None not in drains:
        busy = ours_all["elapsed"] + sum(drains)
        print(
            f"      end to end: {accepted(ours_all)} events accepted and applied in"
            f" {busy:.1f} s (load {ours_all['elapsed']:.1f} s + job backlog"
            f" {sum(drains):.1f} s) = {accepted(ours_all) / busy:.1f}/s"
        )
    if ignored_runs:
        ign = merge(ignored_runs)
        ign_rate = describe("ours, no job (accepted/s)", ign, accepted(ign))
        print(
            "      (diagnostic: events of an ignored type, recorded but enqueuing"
            " no job, so the job runner does not share the HTTP workers;"
            f" ratio to bare {ign_rate / bare_rate if bare_rate else 0:.3f})"
        )
    for label, runs in floor_runs.items():
        floor = merge(runs)
        rate = describe(f"{label} (2xx/s)", floor, accepted(floor))
        print(
            f"      ratio {label}/bare = {rate / bare_rate if bare_rate else 0:.3f};"
            f" ours/{label} = {our_rate / rate if rate else 0:.3f}"
        )
    our_p99 = percentile(ours_all["latencies"], 99) * 1000
    bare_p99 = percentile(bare["latencies"], 99) * 1000
    ratio = our_rate / bare_rate if bare_rate else float("nan")
    print(
        f"  RESULT throughput ratio ours/bare = {ratio:.3f} (goal >= 0.7:"
        f" {'met' if ratio >= 0.7 else 'NOT met'}); p99 ours = {our_p99:.1f} ms"
        f" (goal < 100 ms: {'met' if our_p99 < 100 else 'NOT met'}),"
        f" p99 bare = {bare_p99:.1f} ms"
    )
    if args.mixed:
        mixed(registry, args, hooks, prefix, bare_rate)
    return bare_rate


def floor_routes(args):
    """The floor routes, when their addon is installed on the database."""
    parsed = urllib.parse.urlsplit(args.url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port or 80, timeout=30)
    try:
        conn.request("POST", FLOOR_PATHS["floor post"], body=b"{}")
        status = conn.getresponse().status
    finally:
        conn.close()
    if status != 200:
        print(
            f"  ! --floor: POST {FLOOR_PATHS['floor post']} answered {status}: put"
            " benchmarks/floor on the server's addons_path and install"
            " scs_bench_floor on this database to measure the floor routes"
        )
        return {}
    print(
        "  floor routes (benchmarks/floor/scs_bench_floor): the same signed POST,"
        " same route options; 'floor post' reads the body and answers 200;"
        " 'floor insert' also inserts it under its webhook-id and lets Odoo"
        " commit; 'floor at once' inserts and commits in one message, as our"
        " route does; no verification, no parsing, no job: the most any"
        " webhook route can reach here"
    )
    return dict(FLOOR_PATHS)


def accepted(run):
    return run["outcomes"].get("accepted", 0)


def fmt_s(value):
    return "(timed out)" if value is None else f"in {value:.1f} s"


def mixed(registry, args, hooks, prefix, bare_rate):
    phase = args.seconds / max(1, args.rounds)
    counter = itertools.count()

    def nxt():
        n = next(counter)
        if n % 2:
            sku = hooks.skus[n % len(hooks.skus)]
            return hooks.request(
                f"{prefix}-mix-{n}", hooks.order_body(f"{prefix}-mix-{n}", sku)
            )
        return hooks.request(f"{prefix}-mixinv-{n}", hooks.inventory_body(n))

    wait_idle(registry)
    print(
        "  -- mixed: half order.created (1 unit each), half inventory.updated,"
        f" {phase:g} s"
    )
    run = run_clients(args.url, args.concurrency, nxt, phase, want_status=True)
    rate = describe("ours  mixed (accepted/s)", run, accepted(run))
    drained = wait_idle(registry)
    ratio = rate / bare_rate if bare_rate else float("nan")
    print(
        f"      ratio mixed/bare = {ratio:.3f};"
        f" its jobs drained {fmt_s(drained)} after the load stopped"
    )


# -- parts 2 and 3: duplicates ----------------------------------------------------
def send_list(args, hooks, deliveries):
    """Send prepared ``(msg_id, body)`` deliveries, in order, from the threads."""
    queue = collections.deque(deliveries)

    def nxt():
        try:
            msg_id, body = queue.popleft()
        except IndexError:
            return None
        return hooks.request(msg_id, body)

    return run_clients(args.url, args.concurrency, nxt, want_status=True)


def reservations(registry, channel_id, order_ids, keys):
    """Pickings per order (not cancelled), sync.event rows and their states."""
    with registry.cursor() as cr:
        cr.execute(
            "SELECT scs_external_order_id, count(*) FROM stock_picking"
            " WHERE scs_channel_id = %s AND scs_external_order_id = ANY(%s)"
            " AND state != 'cancel' GROUP BY scs_external_order_id",
            (channel_id, list(order_ids)),
        )
        per_order = dict(cr.fetchall())
        cr.execute(
            "SELECT state, count(*) FROM sync_event WHERE channel_id = %s"
            " AND direction = 'in' AND idempotency_key = ANY(%s) GROUP BY state",
            (channel_id, list(keys)),
        )
        states = dict(cr.fetchall())
    counts = [per_order.get(o, 0) for o in order_ids]
    return {
        "double": sum(1 for c in counts if c > 1),
        "single": sum(1 for c in counts if c == 1),
        "none": sum(1 for c in counts if c == 0),
        "events": sum(states.values()),
        "states": states,
    }


def print_delivery(run):
    codes = collections.Counter(s[1] for s in run["samples"])
    other = sum(v for k, v in codes.items() if k != 200)
    lat = run["latencies"]
    print(
        f"  sent {len(run['samples'])} in {run['elapsed']:.1f} s"
        f" ({len(run['samples']) / run['elapsed']:.0f}/s):"
        f" 200 = {codes.get(200, 0)}, other = {other};"
        f" answers {dict(run['outcomes'])};"
        f" p50={percentile(lat, 50) * 1000:.1f}ms"
        f" p99={percentile(lat, 99) * 1000:.1f}ms"
    )
    for what, count in run["errors"].most_common(5):
        print(f"      ! {count} x {what}")


def print_reservations(res, n_orders, expected_events):
    print(
        f"  RESULT double reservations: {res['double']} (goal 0); orders reserved"
        f" exactly once: {res['single']}/{n_orders}; not reserved: {res['none']};"
        f" sync.event rows for these keys: {res['events']} (expected"
        f" {expected_events}); event states: {res['states']}"
    )


def duplicates(registry, args, hooks, info, prefix):
    n_orders, copies = args.dup_orders, args.dup_copies
    print(
        f"== 2. duplicates: {n_orders} order.created events x {copies} deliveries"
        f" (same webhook-id and body, re-signed), shuffled, {args.concurrency}"
        " threads =="
    )
    wait_idle(registry)
    orders = [f"{prefix}-dup-{i}" for i in range(n_orders)]
    keys = [f"{prefix}-dupkey-{i}" for i in range(n_orders)]
    bodies = [
        hooks.order_body(order, hooks.skus[i % len(hooks.skus)])
        for i, order in enumerate(orders)
    ]
    deliveries = [(keys[i], bodies[i]) for i in range(n_orders) for _c in range(copies)]
    random.shuffle(deliveries)
    run = send_list(args, hooks, deliveries)
    print_delivery(run)
    drained = wait_idle(registry)
    print(f"  job runner idle {fmt_s(drained)} after the last delivery")
    print_reservations(
        reservations(registry, info["channel_id"], orders, keys), n_orders, n_orders
    )


def same_order(registry, args, hooks, info, prefix):
    n_orders, ids = args.multi_orders, args.multi_ids
    print(
        f"== 3. {n_orders} orders, each delivered under {ids} different webhook-ids"
        " (order.created / order.paid alternately), an order's deliveries"
        " back to back so they are in flight together =="
    )
    wait_idle(registry)
    orders = [f"{prefix}-multi-{i}" for i in range(n_orders)]
    keys, deliveries = [], []
    for i, order in enumerate(orders):
        sku = hooks.skus[i % len(hooks.skus)]
        for k in range(ids):
            event_type = "order.paid" if k % 2 else "order.created"
            key = f"{prefix}-multikey-{i}-{k}"
            keys.append(key)
            deliveries.append(
                (key, hooks.order_body(order, sku, event_type, offset=k % 2))
            )
    run = send_list(args, hooks, deliveries)
    print_delivery(run)
    drained = wait_idle(registry)
    print(f"  job runner idle {fmt_s(drained)} after the last delivery")
    print_reservations(
        reservations(registry, info["channel_id"], orders, keys),
        n_orders,
        n_orders * ids,
    )


def job_health(registry, since):
    """Failed jobs and retried jobs of the sync channel since ``since`` (UTC)."""
    with registry.cursor() as cr:
        cr.execute(
            "SELECT state, count(*), sum(CASE WHEN retry > 1 THEN 1 ELSE 0 END)"
            " FROM queue_job WHERE channel LIKE 'root.channel_sync%%'"
            " AND date_created >= %s GROUP BY state",
            (since,),
        )
        rows = cr.fetchall()
    states = {state: count for state, count, _r in rows}
    retried = sum(r or 0 for _s, _c, r in rows)
    print(
        f"== jobs created by this run (channel root.channel_sync): {states};"
        f" jobs run more than once (retry counter > 1): {retried} =="
    )


def describe_server_config():
    """Say what the bare route costs on this server: it sets the ratio.

    With ``dbfilter`` set (or no ``db_name``), Odoo lists the databases on
    every request, one new PostgreSQL connection each time, and both routes
    pay it. With ``db_name`` alone, ``/web/health`` costs a read-only cursor
    and no commit, and the ratio is far lower for any route that writes.
    """
    from odoo.tools import config

    lists = bool(config.get("dbfilter")) or not config.get("db_name")
    what = (
        "lists the databases on every request of both routes"
        if lists
        else "does not list the databases: the bare route touches almost nothing"
    )
    print(
        f"machine: {os.cpu_count()} CPUs, shared by this client, the server's"
        " processes and PostgreSQL"
    )
    print(
        f"server config (read from -c): db_name={config.get('db_name')!r},"
        f" dbfilter={config.get('dbfilter')!r}: Odoo {what}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("-d", "--database", required=True)
    parser.add_argument("--url", default="http://127.0.0.1:8069")
    parser.add_argument(
        "--seconds", type=float, default=15.0, help="load duration per route"
    )
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--warmup",
        type=float,
        default=2.0,
        help="seconds of load per route before measuring, not counted (0: none)",
    )
    parser.add_argument(
        "--mixed", action="store_true", help="also a run with order events"
    )
    parser.add_argument(
        "--no-job",
        action="store_true",
        help="also a diagnostic run of events that enqueue no job",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also the floor routes of benchmarks/floor/scs_bench_floor",
    )
    parser.add_argument("--dup-orders", type=int, default=100)
    parser.add_argument("--dup-copies", type=int, default=100)
    parser.add_argument("--multi-orders", type=int, default=100)
    parser.add_argument("--multi-ids", type=int, default=10)
    parser.add_argument(
        "--only", choices=("throughput", "duplicates"), help="run one part only"
    )
    args = parser.parse_args()

    registry = open_registry(args.config, args.database)
    info = setup(registry)
    if not info["skus"]:
        raise SystemExit("no SKU on the load channel's bindings")
    hooks = Webhooks(info)
    prefix = f"load{int(time.time())}{_secrets.token_hex(2)}"
    since = datetime.now(timezone.utc).replace(tzinfo=None)
    print(
        f"server {args.url}, database {args.database}, channel"
        f" {CHANNEL_NAME!r} (id {info['channel_id']}, push disabled),"
        f" run prefix {prefix}"
    )
    describe_server_config()
    if args.only in (None, "throughput"):
        throughput(registry, args, hooks, prefix)
    if args.only in (None, "duplicates"):
        duplicates(registry, args, hooks, info, prefix)
        same_order(registry, args, hooks, info, prefix)
    job_health(registry, since)


if __name__ == "__main__":
    main()
