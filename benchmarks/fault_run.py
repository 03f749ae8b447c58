"""Fault run: channels fail and go down while stock and orders keep moving.

A script, not a test: it drives a real Odoo 19 server (HTTP workers plus the
queue_job job runner) and prints figures, it asserts nothing.

Setup (through a registry opened on the server's database): 5 generic
channels, each pushing to its own local :class:`GenericSimulator` (channel
``timeout`` 2 s, simulator ``hang_seconds`` 3 s, so injected timeouts are real
but short) and receiving signed order webhooks; 40 products ``FAULT-xxx``
with stock, bound to every channel. Every channel starts in sync.

Phases, while stock changes (commits through the registry) and orders
(signed ``order.created`` webhooks to the server; a share of them only put
on the simulator's ``/orders``, "missed webhooks" that the pass must
recover) keep coming:

1. ``--phase`` seconds with every simulator failing 20% of its calls (500,
   429 with Retry-After: 1, or a hang past the client's timeout);
2. ``--outage`` seconds with every simulator down (503 to everything);
3. recovery: traffic stops, simulators healthy, wait until the job runner
   is idle (retries have backoff), then ONE reconciliation pass per channel,
   and wait idle again.

Then it prints, per channel and in total: the SKUs whose simulator quantity
differs from what Odoo publishes now (goal: 0), the dead letters, the events
lost (orders the channels took, by webhook or only on the channel, that do
not have exactly one open reservation in Odoo; goal: 0), webhooks answered
non-2xx, faults injected per simulator, pushes a simulator ignored as a
redelivery of a webhook-id it had already applied with another quantity
(goal 0), retries, failed jobs and the pass figures. The same figures taken
just before the pass are printed too, to show what the push engine and the
webhooks achieved alone.

Usage (the server must run with the job runner on the same database)::

    python benchmarks/fault_run.py -c odoo.conf -d DB \
        --url http://127.0.0.1:8069 [--outage 60] [--phase 60]
"""

import argparse
import collections
import json
import random
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

from _odoo import (  # noqa: F401
    ROOT,
    ensure_products,
    env_for,
    open_registry,
    pending_jobs,
    retire_channels,
    signal,
)

from lib import signatures
from simulators.generic import GenericSimulator

N_CHANNELS = 5
N_PRODUCTS = 40
SKU_PREFIX = "FAULT-"
CHANNEL_PREFIX = "Fault channel "
MIN_FREE = 300
TOP_UP = 500
#: stock changes never take a product's free quantity below this
FLOOR = 100


# -- setup --------------------------------------------------------------------
def setup(registry, sims, args):
    """Products, stock, channels, bindings; returns plain values."""
    with registry.cursor() as cr:
        env = env_for(cr)
        warehouse = env["stock.warehouse"].search([], limit=1, order="id")
        products = _products(env, warehouse)
        channels = _channels(env, warehouse, sims, args)
        Binding = env["channel.binding"].with_context(active_test=False)
        existing = Binding.search([("channel_id", "in", channels.ids)])
        existing.filtered(lambda b: b.product_id not in products).write(
            {"active": False}
        )
        existing.filtered(lambda b: b.product_id in products).write(
            # the simulators start empty: every binding is "never pushed"
            {"active": True, "push_state": "new", "last_push_ts": 0}
        )
        bound = {(b.channel_id.id, b.product_id.id) for b in existing}
        Binding.create(
            [
                {"channel_id": c.id, "product_id": p.id}
                for c in channels
                for p in products
                if (c.id, p.id) not in bound
            ]
        )
        env.flush_all()
        products._scs_enqueue_push(force=True)
        marks = {}
        for table in ("sync_event", "queue_job", "stock_picking"):
            cr.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}")
            marks[table] = cr.fetchone()[0]
        info = {
            "warehouse_id": warehouse.id,
            "location_id": warehouse.lot_stock_id.id,
            "product_ids": products.ids,
            "skus": products.mapped("default_code"),
            "channels": [
                {
                    "id": c.id,
                    "name": c.name,
                    "token": c.webhook_token,
                    "secret": c.webhook_secret,
                }
                for c in channels
            ],
            "marks": marks,
        }
        cr.commit()
    signal(registry)
    return info


def _products(env, warehouse):
    return ensure_products(
        env, warehouse, SKU_PREFIX, "Fault product", N_PRODUCTS, MIN_FREE, TOP_UP
    )


def _channels(env, warehouse, sims, args):
    Channel = env["sync.channel"].with_context(active_test=False)
    channels = Channel.search([("name", "=like", CHANNEL_PREFIX + "%")], order="id")
    for i in range(len(channels), N_CHANNELS):
        channels |= Channel.create(
            {"name": f"{CHANNEL_PREFIX}{i:02d}", "channel_type": "generic"}
        )
    channels = channels[:N_CHANNELS]
    for channel, sim in zip(channels, sims, strict=True):
        vals = {
            "channel_type": "generic",
            "active": True,
            "sync_enabled": True,
            "base_url": sim.endpoint,
            "signing_secret": sim.secret,
            "warehouse_ids": [(6, 0, warehouse.ids)],
            "location_ids": [(5, 0, 0)],
            "buffer_qty": 0,
            "timeout": args.timeout,
            "max_retries": args.max_retries,
            "reconcile_max_share": args.max_share,
            "webhook_tolerance": 300,
            "webhook_public_key": False,
            "fetch_orders": True,
            "reconcile_dry_run": False,
            # orders older than this run are not this run's business
            "last_order_fetch_at": False,
        }
        if not channel.webhook_secret:
            vals["webhook_secret"] = signatures.generate_standard_secret()
        channel.write(vals)
        if not channel.webhook_token:
            channel.action_regenerate_webhook_token()
    return channels


# -- traffic --------------------------------------------------------------------
class Traffic:
    """Stock changes and orders from two threads, until ``stop`` is set."""

    def __init__(self, registry, info, sims, args):
        self.registry = registry
        self.info = info
        self.sims = sims
        self.url = args.url.rstrip("/")
        self.args = args
        self.rng = random.Random(args.seed)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.changes = 0
        self.change_retries = 0
        self.errors = []
        #: (channel index, order id, sku, "webhook" | "missed", HTTP status)
        self.orders = []
        self.run_tag = f"{int(time.time()):x}"
        self._threads = []

    def start(self):
        for target in (self._stock_loop, self._order_loop):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)

    def join(self):
        self.stop.set()
        for thread in self._threads:
            thread.join()

    def summary(self):
        with self.lock:
            counts = collections.Counter(
                "missed"
                if how == "missed"
                else ("ok" if status and 200 <= status < 300 else "bad")
                for _c, _o, _s, how, status in self.orders
            )
        return self.changes, counts

    # stock changes, committed one by one as users' transactions would be
    def _stock_loop(self):
        from psycopg2 import errors as pg_errors

        rng = random.Random(self.args.seed + 1)
        interval = 1.0 / self.args.change_rate
        next_at = time.time()
        while not self.stop.is_set():
            product_id = rng.choice(self.info["product_ids"])
            delta = rng.choice((-3, -2, -1, 1, 2, 3, 4))
            for _attempt in range(5):
                try:
                    self._change(product_id, delta)
                    with self.lock:
                        self.changes += 1
                    break
                except pg_errors.SerializationFailure:
                    with self.lock:
                        self.change_retries += 1
                except Exception as err:  # noqa: BLE001 - printed at the end
                    self.errors.append(f"stock change: {err!r}")
                    break
            next_at += interval
            self.stop.wait(max(0.0, next_at - time.time()))

    def _change(self, product_id, delta):
        with self.registry.cursor() as cr:
            env = env_for(cr)
            product = env["product.product"].browse(product_id)
            location = env["stock.location"].browse(self.info["location_id"])
            free = product.with_context(warehouse_id=self.info["warehouse_id"]).free_qty
            if free + delta < FLOOR:
                delta = abs(delta)
            env["stock.quant"]._update_available_quantity(product, location, delta)
            cr.commit()

    # orders: on the channel, and by signed webhook unless "missed"
    def _order_loop(self):
        rng = random.Random(self.args.seed + 2)
        interval = 1.0 / self.args.order_rate
        next_at = time.time()
        n = 0
        while not self.stop.is_set():
            n += 1
            index = rng.randrange(len(self.sims))
            sku = rng.choice(self.info["skus"])
            order_id = f"F{self.run_tag}-{index}-{n:05d}"
            now = time.time()
            # the shop has every order it took, webhook or not
            self.sims[index].add_order(order_id, [(sku, 1)], updated_at=now)
            if rng.random() < self.args.missed:
                how, status = "missed", None
            else:
                how = "webhook"
                status = self._post_order(index, order_id, sku, now)
            with self.lock:
                self.orders.append((index, order_id, sku, how, status))
            next_at += interval
            self.stop.wait(max(0.0, next_at - time.time()))

    def _post_order(self, index, order_id, sku, now):
        channel = self.info["channels"][index]
        stamp = datetime.fromtimestamp(now, tz=timezone.utc).isoformat()
        body = json.dumps(
            {
                "type": "order.created",
                "timestamp": stamp.replace("+00:00", "Z"),
                "data": {"id": order_id, "lines": [{"sku": sku, "quantity": 1}]},
            }
        ).encode()
        headers = signatures.sign_standard(
            channel["secret"], f"msg_{order_id}", int(now), body
        )
        headers["Content-Type"] = "application/json"
        request = urllib.request.Request(
            f"{self.url}/stock_channel_sync/webhook/{channel['token']}",
            data=body,
            headers=headers,
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
                return response.status
        except urllib.error.HTTPError as err:
            self.errors.append(f"webhook {order_id}: HTTP {err.code} {err.read()!r}")
            return err.code
        except OSError as err:
            self.errors.append(f"webhook {order_id}: {err!r}")
            return 0


# -- waiting --------------------------------------------------------------------
def sleep_with_progress(seconds, label, traffic, registry, sims, every=10.0):
    end = time.time() + seconds
    while True:
        left = end - time.time()
        if left <= 0:
            break
        time.sleep(min(every, left))
        changes, orders = traffic.summary()
        faults = sum(sum(sim.faults.values()) for sim in sims)
        print(
            f"  [{label}] {seconds - max(0.0, end - time.time()):5.0f}s: "
            f"{changes} stock changes, orders: {orders['ok']} webhook 2xx, "
            f"{orders['bad']} non-2xx, {orders['missed']} missed; "
            f"{pending_jobs(registry)} jobs pending; {faults} faults injected",
            flush=True,
        )


def wait_idle(registry, label, timeout, every=15.0, settle=1.0):
    """Wait until no sync job is pending, enqueued or started; print progress."""
    started = time.time()
    last_print = started
    while time.time() - started < timeout:
        if pending_jobs(registry) == 0:
            time.sleep(settle)
            if pending_jobs(registry) == 0:
                waited = time.time() - started
                print(f"  [{label}] job runner idle after {waited:.0f}s", flush=True)
                return waited
        if time.time() - last_print >= every:
            last_print = time.time()
            print(
                f"  [{label}] {last_print - started:4.0f}s: {_job_states(registry)}",
                flush=True,
            )
        time.sleep(0.5)
    print(f"  [{label}] ! still busy after {timeout:.0f}s: {_job_states(registry)}")
    return None


def _job_states(registry):
    with registry.cursor() as cr:
        cr.execute(
            "SELECT state, count(*), MAX(eta) FROM queue_job"
            " WHERE state IN ('pending','enqueued','started')"
            " AND channel LIKE %s GROUP BY state ORDER BY state",
            ("root.channel_sync%",),
        )
        rows = cr.fetchall()
    if not rows:
        return "no job pending"
    return ", ".join(
        f"{state} {count}" + (f" (last eta {eta:%H:%M:%S} UTC)" if eta else "")
        for state, count, eta in rows
    )


# -- figures --------------------------------------------------------------------
def drift(registry, info, sims):
    """{channel index: [(sku, simulator qty, Odoo qty)]} of the differing SKUs."""
    result = {}
    with registry.cursor() as cr:
        env = env_for(cr)
        Binding = env["channel.binding"]
        for index, (channel, sim) in enumerate(
            zip(info["channels"], sims, strict=True)
        ):
            bindings = Binding.search(
                [
                    ("channel_id", "=", channel["id"]),
                    ("product_id", "in", info["product_ids"]),
                ],
                order="id",
            )
            quantities = bindings._scs_quantities()
            result[index] = [
                (b.sku, sim.quantity(b.sku), quantities[b.id].published)
                for b in bindings
                if sim.quantity(b.sku) != quantities[b.id].published
            ]
    return result


def reservations(registry, info, orders):
    """{(channel index, order id): open reservations} for every order taken."""
    by_channel = {c["id"]: i for i, c in enumerate(info["channels"])}
    ids = [order_id for _i, order_id, _s, _h, _st in orders]
    counts = dict.fromkeys(((i, o) for i, o, _s, _h, _st in orders), 0)
    with registry.cursor() as cr:
        cr.execute(
            "SELECT scs_channel_id, scs_external_order_id, count(*)"
            " FROM stock_picking WHERE state != 'cancel'"
            " AND scs_external_order_id = ANY(%s) GROUP BY 1, 2",
            (ids,),
        )
        for channel_id, order_id, count in cr.fetchall():
            key = (by_channel.get(channel_id), order_id)
            if key in counts:
                counts[key] = count
    return counts


def dead_letters(registry, info):
    """{channel id: {(direction, kind): count}} and a few sample errors."""
    per_channel = collections.defaultdict(collections.Counter)
    with registry.cursor() as cr:
        cr.execute(
            "SELECT channel_id, direction, kind, count(*) FROM sync_event"
            " WHERE state = 'dead' AND id > %s GROUP BY 1, 2, 3",
            (info["marks"]["sync_event"],),
        )
        for channel_id, direction, kind, count in cr.fetchall():
            per_channel[channel_id][(direction, kind)] += count
        cr.execute(
            "SELECT sku, error FROM sync_event WHERE state = 'dead' AND id > %s"
            " ORDER BY id LIMIT 3",
            (info["marks"]["sync_event"],),
        )
        samples = cr.fetchall()
    return per_channel, samples


def print_snapshot(title, registry, info, sims, traffic):
    """Drift, dead letters and lost events now; returns (drift, lost)."""
    print(f"== {title} ==")
    diffs = drift(registry, info, sims)
    dead, samples = dead_letters(registry, info)
    counts = reservations(registry, info, traffic.orders)
    missing = collections.Counter(i for (i, _o), n in counts.items() if n == 0)
    doubled = collections.Counter(i for (i, _o), n in counts.items() if n > 1)
    for index, channel in enumerate(info["channels"]):
        dead_here = dead.get(channel["id"], {})
        dead_text = (
            ", ".join(f"{d}/{k} {n}" for (d, k), n in sorted(dead_here.items())) or "0"
        )
        example = (
            " e.g. "
            + ", ".join(f"{s}: sim {q} / odoo {p}" for s, q, p in diffs[index][:3])
            if diffs[index]
            else ""
        )
        print(
            f"  {channel['name']}: {len(diffs[index])} SKU(s) differ{example}; "
            f"dead letters: {dead_text}; orders unreserved {missing[index]}, "
            f"reserved twice or more {doubled[index]}"
        )
    total_drift = sum(len(v) for v in diffs.values())
    total_dead = sum(sum(c.values()) for c in dead.values())
    lost = sum(1 for n in counts.values() if n != 1)
    print(
        f"  TOTAL: SKUs differing {total_drift} (goal 0); dead letters "
        f"{total_dead}; events lost {lost} of {len(counts)} orders (goal 0)"
    )
    for sku, error in samples:
        print(f"    dead letter sample: {sku}: {(error or '')[:160]}")
    return total_drift, lost, counts


def redeliveries(sim):
    """(pushes the shop took for redeliveries, those carrying another quantity).

    A redelivery (same ``webhook-id``) must carry the same document: one with
    another quantity means an idempotency key was used twice for different
    numbers, and the shop, rightly, ignored the second one.
    """
    first = {}
    redelivered = conflicting = 0
    with sim.lock:
        history = list(sim.history)
    for entry in history:
        if not entry.get("duplicate"):
            first.setdefault(entry["webhook_id"], entry["quantity"])
            continue
        redelivered += 1
        if first.get(entry["webhook_id"]) != entry["quantity"]:
            conflicting += 1
    return redelivered, conflicting


def print_details(registry, info, sims, traffic, before):
    changes, orders = traffic.summary()
    print("== traffic and faults ==")
    print(
        f"  stock changes committed: {changes} "
        f"({traffic.change_retries} retried after a serialisation failure)"
    )
    print(
        f"  orders taken: {len(traffic.orders)} = {orders['ok']} webhook 2xx + "
        f"{orders['bad']} webhook non-2xx + {orders['missed']} missed "
        f"(only on the channel)"
    )
    webhook_ok = {
        (i, o)
        for i, o, _s, how, st in traffic.orders
        if how == "webhook" and st and 200 <= st < 300
    }
    intake_lost = sum(1 for key in webhook_ok if before.get(key, 0) != 1)
    recovered = sum(
        1
        for i, o, _s, how, _st in traffic.orders
        if how == "missed" and before.get((i, o), 0) == 0
    )
    print(
        f"  accepted webhooks without exactly one reservation before the "
        f"pass: {intake_lost} (goal 0); missed orders left for the pass: "
        f"{recovered}"
    )
    for line in traffic.errors[:5]:
        print(f"    ! {line[:200]}")
    for channel, sim in zip(info["channels"], sims, strict=True):
        redelivered, conflicting = redeliveries(sim)
        print(
            f"  {channel['name']} faults injected: "
            + ", ".join(f"{k} {v}" for k, v in sim.faults.items())
            + f" (requests {len(sim.requests)}); pushes answered as "
            f"redeliveries {redelivered}, of which with another quantity "
            f"than the first delivery of their webhook-id {conflicting} (goal 0)"
        )
    marks = info["marks"]
    with registry.cursor() as cr:
        cr.execute(
            "SELECT count(*), COALESCE(SUM(attempts - 1), 0) FROM sync_event"
            " WHERE direction = 'out' AND attempts > 1 AND id > %s",
            (marks["sync_event"],),
        )
        events, extra = cr.fetchone()
        cr.execute(
            "SELECT method_name, state, count(*),"
            " COALESCE(SUM(GREATEST(retry - 1, 0)), 0)"
            " FROM queue_job WHERE id > %s GROUP BY 1, 2 ORDER BY 1, 2",
            (marks["queue_job"],),
        )
        jobs = cr.fetchall()
        cr.execute(
            "SELECT method_name, exc_name, left(exc_message, 160) FROM queue_job"
            " WHERE id > %s AND state = 'failed' ORDER BY id LIMIT 5",
            (marks["queue_job"],),
        )
        failed = cr.fetchall()
    print(
        f"  retries seen: {events} outbound event(s) with attempts > 1 "
        f"({extra} extra attempts)"
    )
    print("  jobs of this run (method, state: count, retries):")
    for method, state, count, retries in jobs:
        print(f"    {method} {state}: {count} (retries {retries})")
    for method, exc_name, message in failed:
        print(f"    failed job {method}: {exc_name}: {message}")


def print_pass(registry, info):
    """The pass figures of each channel, and what became of its corrections."""
    print("== reconciliation pass ==")
    with registry.cursor() as cr:
        cr.execute(
            "SELECT channel_id, CASE WHEN reason LIKE 'safety limit%%'"
            " THEN 'held' ELSE state END, count(*) FROM sync_event"
            " WHERE kind = 'correction' AND direction = 'out' AND id > %s"
            " GROUP BY 1, 2",
            (info["marks"]["pass"],),
        )
        outcomes = collections.defaultdict(collections.Counter)
        for channel_id, state, count in cr.fetchall():
            outcomes[channel_id][state] += count
        env = env_for(cr)
        for c in env["sync.channel"].browse([c["id"] for c in info["channels"]]):
            states = ", ".join(
                f"{state} {n}" for state, n in sorted(outcomes[c.id].items())
            )
            print(
                f"  {c.name}: checked {c.last_reconcile_checked}, corrections "
                f"{c.last_reconcile_corrections}, batches held by the safety "
                f"limit {c.last_reconcile_limited}, batches still running "
                f"{c.reconcile_pending}; correction events: {states or 'none'}"
                + (
                    f"; error: {c.last_reconcile_error}"
                    if c.last_reconcile_error
                    else ""
                )
            )


def start_pass(registry, info):
    with registry.cursor() as cr:
        cr.execute("SELECT COALESCE(MAX(id), 0) FROM sync_event")
        info["marks"]["pass"] = cr.fetchone()[0]
        env = env_for(cr)
        for channel in env["sync.channel"].browse([c["id"] for c in info["channels"]]):
            channel._scs_start_reconcile()
        cr.commit()


def set_faults(sims, fail_rate=None, down=None):
    for sim in sims:
        with sim.lock:
            if fail_rate is not None:
                sim.fail_rate = fail_rate
            if down is not None:
                sim.down = down


# -- main -----------------------------------------------------------------------
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("-d", "--database", required=True)
    parser.add_argument("--url", required=True, help="the Odoo server, for webhooks")
    parser.add_argument("--phase", type=float, default=60.0, help="20%% faults (s)")
    parser.add_argument("--outage", type=float, default=60.0, help="all down (s)")
    parser.add_argument("--fail-rate", type=float, default=0.2)
    parser.add_argument("--change-rate", type=float, default=2.0, help="per second")
    parser.add_argument("--order-rate", type=float, default=1.0, help="per second")
    parser.add_argument(
        "--missed", type=float, default=0.2, help="share of orders without webhook"
    )
    parser.add_argument("--timeout", type=float, default=2.0, help="channel timeout")
    parser.add_argument("--hang", type=float, default=3.0, help="simulated hang (s)")
    parser.add_argument("--max-retries", type=int, default=8)
    parser.add_argument(
        "--max-share",
        type=float,
        default=20.0,
        help="channels' reconciliation safety limit (%%), 20 by default",
    )
    parser.add_argument("--idle-timeout", type=float, default=900.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    sims = []
    for i in range(N_CHANNELS):
        sim = GenericSimulator(seed=args.seed * 100 + i)
        sim.hang_seconds = args.hang
        sims.append(sim.start())
    registry = open_registry(args.config, args.database)
    try:
        run(registry, sims, args)
    finally:
        for sim in sims:
            sim.stop()
        retire_channels(registry, CHANNEL_PREFIX + "%")


def run(registry, sims, args):
    info = setup(registry, sims, args)
    print(
        f"== setup: {N_CHANNELS} channels x {len(info['product_ids'])} SKUs, "
        f"timeout {args.timeout}s, hang {args.hang}s, max_retries "
        f"{args.max_retries}, safety limit {args.max_share}% =="
    )
    wait_idle(registry, "initial push", args.idle_timeout)
    initial = sum(len(v) for v in drift(registry, info, sims).values())
    print(f"  SKUs differing after the initial push: {initial}")

    traffic = Traffic(registry, info, sims, args)
    print(f"== phase 1: {args.fail_rate:.0%} of calls fail for {args.phase:.0f}s ==")
    set_faults(sims, fail_rate=args.fail_rate)
    traffic.start()
    sleep_with_progress(args.phase, "faults", traffic, registry, sims)
    print(f"== phase 2: every channel down for {args.outage:.0f}s ==")
    set_faults(sims, down=True)
    sleep_with_progress(args.outage, "outage", traffic, registry, sims)
    print("== phase 3: recovery ==")
    traffic.join()
    set_faults(sims, fail_rate=0.0, down=False)
    wait_idle(registry, "recovery", args.idle_timeout)
    _drift, _lost, before = print_snapshot(
        "before the pass (push engine and webhooks alone)",
        registry,
        info,
        sims,
        traffic,
    )
    print("== one reconciliation pass per channel ==")
    start_pass(registry, info)
    wait_idle(registry, "pass", args.idle_timeout)
    print_snapshot("after recovery and one pass", registry, info, sims, traffic)
    print_details(registry, info, sims, traffic, before)
    print_pass(registry, info)


if __name__ == "__main__":
    main()
