"""Outbound push benchmark, measured in a real Odoo 19 server.

Prints:

1. for 1, 10 and 30 bound channels, p50/p95/p99 of the time from a stock
   change's commit to each channel (a local simulator on loopback) holding
   the new quantity;
2. the cost added to the user's transaction: validating a 50-line delivery
   with 30 channels bound, versus the same with sync disabled, interleaved in
   one run, as a ratio of medians; and, end to end, the time from the
   commit of that delivery's reservation until each channel holds each of
   the 50 SKUs' new quantity (1,500 pairs per delivery);
3. how many pushes each channel receives when one SKU changes 1,000 times
   within about a second (burst coalescing);
4. with ``--url`` (the server's), a sale on one channel end to end: a signed
   ``order.created`` webhook for one unit posted to channel 00's URL, until
   the 29 other channels hold the quantity one lower (the route records it,
   the channel's apply job reserves it, the SKU's job pushes the drop):
   p50/p95/p99 and the share under 5 s.

Usage (the server must run with the job runner on the same database)::

    python benchmarks/bench_push.py -c odoo.conf -d DB [--samples 40]
        [--url http://127.0.0.1:8069]
"""

import argparse
import http.client
import json
import secrets as _secrets
import statistics
import threading
import time
import urllib.parse
from datetime import datetime, timezone

from _odoo import (  # noqa: F401
    ROOT,
    ensure_products,
    env_for,
    open_registry,
    percentile,
    retire_channels,
    signal,
    wait_idle,
)

from lib import signatures
from simulators.generic import GenericSimulator

N_CHANNELS = 30
N_LINES = 50


def setup(registry, sims):
    """Products, stock and 30 generic channels bound to every product."""
    with registry.cursor() as cr:
        env = env_for(cr)
        warehouse = env["stock.warehouse"].search([], limit=1)
        products = ensure_products(
            env, warehouse, "BENCH-", "Bench product", N_LINES, 5000, 10000
        )
        Channel = env["sync.channel"].with_context(active_test=False)
        channels = Channel.search([("name", "=like", "Bench channel %")], order="id")
        for i in range(len(channels), N_CHANNELS):
            channels |= Channel.create(
                {"name": f"Bench channel {i:02d}", "channel_type": "generic"}
            )
        for channel, sim in zip(channels, sims, strict=True):
            channel.write(
                {
                    "base_url": sim.endpoint,
                    "signing_secret": sim.secret,
                    "warehouse_ids": [(6, 0, warehouse.ids)],
                    "sync_enabled": False,
                    "active": True,
                    "timeout": 5,
                }
            )
        Binding = env["channel.binding"]
        existing = {(b.channel_id.id, b.product_id.id) for b in Binding.search([])}
        Binding.create(
            [
                {"channel_id": c.id, "product_id": p.id}
                for c in channels
                for p in products
                if (c.id, p.id) not in existing
            ]
        )
        # sims start empty: make every binding "never pushed" again
        Binding.search([("channel_id", "in", channels.ids)]).write(
            {"push_state": "new", "last_push_ts": 0}
        )
        cr.commit()
    signal(registry)
    return warehouse.id, channels.ids, products.ids


def enable(registry, channel_ids, n):
    with registry.cursor() as cr:
        env = env_for(cr)
        channels = env["sync.channel"].browse(channel_ids)
        channels[:n].write({"sync_enabled": True})
        channels[n:].write({"sync_enabled": False})
        cr.commit()
    signal(registry)


def wait_for_quantity(sims, sku, expected, since, results, timeout=15):
    """Append to ``results`` each simulator's delay from ``since`` until it
    holds ``expected`` for ``sku``; return how many did not within ``timeout``."""
    deadline = time.time() + timeout
    pending = set(range(len(sims)))
    while pending and time.time() < deadline:
        for i in list(pending):
            got = sims[i].received_at.get(sku)
            if got and got[0] == expected and got[1] >= since:
                results.append(got[1] - since)
                pending.discard(i)
        time.sleep(0.002)
    return len(pending)


def latency(registry, sims, warehouse_id, product_id, sku, n, samples, interval):
    """Commit a change, wait until each of the n receivers holds the number."""
    results = []
    sign = 1
    for _i in range(samples):
        with registry.cursor() as cr:
            env = env_for(cr)
            warehouse = env["stock.warehouse"].browse(warehouse_id)
            product = env["product.product"].browse(product_id)
            env["stock.quant"]._update_available_quantity(
                product, warehouse.lot_stock_id, sign
            )
            env.flush_all()
            expected = int(product.with_context(warehouse_id=warehouse_id).free_qty)
            t_commit = time.time()
            cr.commit()
        sign = -sign
        missed = wait_for_quantity(sims[:n], sku, expected, t_commit, results)
        if missed:
            print(f"  ! {missed} channel(s) missed qty {expected} within 15 s")
        time.sleep(interval)
    return results


def sale_latency(registry, sims, url, warehouse_id, channel_ids, product_id, sku, args):
    """Post signed one-unit orders to channel 00; time the others' drop."""
    with registry.cursor() as cr:
        channel = env_for(cr)["sync.channel"].browse(channel_ids[0])
        if not channel.webhook_secret:
            channel.webhook_secret = signatures.generate_standard_secret()
        token, secret = channel.webhook_token, channel.webhook_secret
        cr.commit()
    parsed = urllib.parse.urlsplit(url)
    path = f"/stock_channel_sync/webhook/{token}"
    prefix = f"sale{int(time.time())}{_secrets.token_hex(2)}"
    results, acks, missed = [], [], 0
    for i in range(args.samples):
        with registry.cursor() as cr:
            product = env_for(cr)["product.product"].browse(product_id)
            expected = int(product.with_context(warehouse_id=warehouse_id).free_qty) - 1
        order_id = f"{prefix}-{i}"
        stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        body = json.dumps(
            {
                "type": "order.created",
                "timestamp": stamp.replace("+00:00", "Z"),
                "data": {"id": order_id, "lines": [{"sku": sku, "quantity": 1}]},
            }
        ).encode()
        headers = signatures.sign_standard(secret, order_id, int(time.time()), body)
        headers["Content-Type"] = "application/json"
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port or 80, 30)
        t_sent = time.time()
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        conn.close()
        acks.append(time.time() - t_sent)
        if response.status != 200:
            print(f"  ! webhook answered {response.status}")
            continue
        missed += wait_for_quantity(sims[1:], sku, expected, t_sent, results)
        time.sleep(args.sale_interval)
    return results, acks, missed


def delivery_cost(
    registry, warehouse_id, product_ids, channel_ids, reps, sims, interval
):
    """Validate a 50-line delivery with sync on (30 channels) or off.

    With sync on, also the time from the commit of the delivery's
    reservation (50 SKUs' free quantity one lower) until each channel holds
    each SKU's new quantity (``timings["fanout"]``: one list of the 1,500
    delays per run). Turning the channels on pushes all their bindings (a
    batch job per channel): that is over, and each SKU's burst interval
    (``interval``) has passed, before the delivery is made.
    """
    timings = {True: [], False: [], "fanout": []}
    # one discarded warm-up pair, then pairs in alternating order (on/off,
    # off/on, ...) so that a drift of the machine hits both modes alike
    order = [True, False]
    for rep in range(reps * 2 + 2):
        mode = order[rep % 2] if (rep // 2) % 2 == 0 else order[1 - rep % 2]
        enable(registry, channel_ids, N_CHANNELS if mode else 0)
        wait_idle(registry)
        time.sleep(interval)
        with registry.cursor() as cr:
            env = env_for(cr)
            warehouse = env["stock.warehouse"].browse(warehouse_id)
            customers = env.ref("stock.stock_location_customers")
            picking = env["stock.picking"].create(
                {
                    "picking_type_id": warehouse.out_type_id.id,
                    "location_id": warehouse.lot_stock_id.id,
                    "location_dest_id": customers.id,
                    "move_ids": [
                        (
                            0,
                            0,
                            {
                                "product_id": pid,
                                "product_uom_qty": 1,
                                "product_uom": env["product.product"]
                                .browse(pid)
                                .uom_id.id,
                                "location_id": warehouse.lot_stock_id.id,
                                "location_dest_id": customers.id,
                            },
                        )
                        for pid in product_ids
                    ],
                }
            )
            picking.action_confirm()
            picking.action_assign()
            cr.commit()
            t_commit = time.time()
            picking_id = picking.id
            # the reservation is what lowers each SKU's free quantity (the
            # validation below moves reserved units out: no change to push)
            expected = {
                p.default_code: int(p.with_context(warehouse_id=warehouse_id).free_qty)
                for p in env["product.product"].browse(product_ids)
            }
        if mode and rep >= 2:
            delays, missed = [], 0
            for sku, qty in expected.items():
                missed += wait_for_quantity(sims, sku, qty, t_commit, delays)
            if missed:
                print(f"  ! {missed} (SKU, channel) pairs missed within 15 s")
            timings["fanout"].append(delays)
        wait_idle(registry)
        with registry.cursor() as cr:
            env = env_for(cr)
            picking = env["stock.picking"].browse(picking_id)
            started = time.perf_counter()
            picking.button_validate()
            cr.commit()
            if rep >= 2:
                timings[mode].append(time.perf_counter() - started)
            assert picking.state == "done", picking.state
        wait_idle(registry)
    return timings


def burst(
    registry,
    sims,
    warehouse_id,
    product_id,
    sku,
    changes,
    threads,
    per_commit,
    processes=False,
):
    """``changes`` stock changes on one SKU from several threads.

    Each thread commits every ``per_commit`` changes, so 1,000 changes fit in
    about a second on a 2-core machine (one quant update per transaction is
    bounded by Odoo's own cost, about 300 per second here).
    """
    for sim in sims:
        sim.history.clear()
    per_thread = changes // threads
    errors = []
    # one sub-location per thread: the writers do not fight over one quant
    # row (that contention is Odoo's, not the sync's, and would slow the
    # burst down to a few hundred changes a second)
    with registry.cursor() as cr:
        env = env_for(cr)
        warehouse = env["stock.warehouse"].browse(warehouse_id)
        Location = env["stock.location"]
        bins = Location.search(
            [
                ("name", "=like", "Bench bin %"),
                ("location_id", "=", warehouse.lot_stock_id.id),
            ],
            order="name",
        )
        for i in range(len(bins), threads):
            bins |= Location.create(
                {"name": f"Bench bin {i}", "location_id": warehouse.lot_stock_id.id}
            )
        cr.commit()
        bin_ids = bins.ids[:threads]

    from psycopg2 import errors as pg_errors

    def worker(bin_id, errors):
        try:
            with registry.cursor() as cr:
                env = env_for(cr)
                location = env["stock.location"].browse(bin_id)
                product = env["product.product"].browse(product_id)
                done = 0
                while done < per_thread:
                    try:
                        for k in range(per_commit):
                            env["stock.quant"]._update_available_quantity(
                                product, location, -1 if (done + k) % 2 else 1
                            )
                        cr.commit()
                        done += per_commit
                    except pg_errors.SerializationFailure:
                        # what Odoo's request/cron retry does for its users
                        cr.rollback()
                        env.invalidate_all()
        except Exception as err:  # noqa: BLE001 - printed below
            errors.append(repr(err))

    if processes:
        # one process per writer: Python threads share one interpreter lock,
        # which caps a burst at one core; a user's transactions come from
        # separate server workers
        import multiprocessing

        import odoo.sql_db

        odoo.sql_db.close_all()  # no connection may cross the fork
        ctx = multiprocessing.get_context("fork")
        go = ctx.Event()
        failures = ctx.Queue()

        def child(bin_id):
            go.wait()
            errs = []
            worker(bin_id, errs)
            for err in errs:
                failures.put(err)

        workers = [ctx.Process(target=child, args=(b,)) for b in bin_ids]
        for w in workers:
            w.start()
        time.sleep(0.5)  # every child is ready: the burst starts together
        started = time.time()
        go.set()
        for w in workers:
            w.join()
        while not failures.empty():
            errors.append(failures.get())
    else:
        workers = [threading.Thread(target=worker, args=(b, errors)) for b in bin_ids]
        started = time.time()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    duration = time.time() - started
    wait_idle(registry)
    time.sleep(0.5)
    pushes = [sum(1 for h in sim.history if h["sku"] == sku) for sim in sims]
    with registry.cursor() as cr:
        env = env_for(cr)
        product = env["product.product"].browse(product_id)
        final = int(product.with_context(warehouse_id=warehouse_id).free_qty)
    in_sync = sum(1 for sim in sims if sim.quantity(sku) == final)
    return duration, pushes, final, in_sync, errors


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("-d", "--database", required=True)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--reps", type=int, default=6)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--per-commit", type=int, default=5)
    parser.add_argument(
        "--processes",
        action="store_true",
        help="burst writers are processes (default: threads of this process)",
    )
    parser.add_argument(
        "--url", help="the server's URL: also measure a sale on a channel (part 4)"
    )
    parser.add_argument(
        "--sale-interval",
        type=float,
        default=2.0,
        help="seconds between two sales (part 4)",
    )
    parser.add_argument(
        "--only",
        choices=("latency", "cost", "burst", "sale"),
        help="run one part only",
    )
    args = parser.parse_args()

    sims = [GenericSimulator().start() for _i in range(N_CHANNELS)]
    registry = open_registry(args.config, args.database)
    with registry.cursor() as cr:
        env = env_for(cr)
        interval = float(
            env["ir.config_parameter"].get_param(
                "stock_channel_sync.min_push_interval", 1.0
            )
        )
    warehouse_id, channel_ids, product_ids = setup(registry, sims)
    wait_idle(registry)
    sku = "BENCH-000"
    parts = {args.only} if args.only else {"latency", "cost", "burst", "sale"}
    if "sale" in parts and not args.url:
        parts.discard("sale")
        print("(part 4, a sale end to end, needs --url)")
    if "latency" in parts:
        print(f"== 1. change-to-channel latency ({args.samples} changes each) ==")
    for n in (1, 10, 30) if "latency" in parts else ():
        enable(registry, channel_ids, n)
        wait_idle(registry)
        lat = latency(
            registry,
            sims,
            warehouse_id,
            product_ids[0],
            sku,
            n,
            args.samples,
            interval + 0.2,
        )
        print(
            f"  {n:2d} channel(s): n={len(lat):4d}  p50={percentile(lat, 50):.3f}s"
            f"  p95={percentile(lat, 95):.3f}s  p99={percentile(lat, 99):.3f}s"
            f"  max={max(lat):.3f}s"
        )

    if "cost" in parts:
        cost(
            registry,
            sims,
            warehouse_id,
            product_ids,
            channel_ids,
            args.reps,
            interval + 0.2,
        )
    if "burst" in parts:
        run_burst(
            registry, sims, warehouse_id, product_ids, channel_ids, args, interval
        )
    if "sale" in parts:
        run_sale(registry, sims, warehouse_id, product_ids, channel_ids, args)
    enable(registry, channel_ids, 0)
    wait_idle(registry)
    for sim in sims:
        sim.stop()
    retire_channels(registry, "Bench channel %")


def cost(registry, sims, warehouse_id, product_ids, channel_ids, reps, interval):
    print(f"== 2. cost in the user's transaction ({N_LINES}-line delivery) ==")
    timings = delivery_cost(
        registry, warehouse_id, product_ids, channel_ids, reps, sims, interval
    )
    on = statistics.median(timings[True])
    off = statistics.median(timings[False])
    print(
        f"  validate+commit, {N_CHANNELS} channels bound: median {on * 1000:.1f} ms"
        f" (runs: {', '.join(f'{t * 1000:.0f}' for t in timings[True])})"
    )
    print(
        f"  validate+commit, sync disabled:      median {off * 1000:.1f} ms"
        f" (runs: {', '.join(f'{t * 1000:.0f}' for t in timings[False])})"
    )
    pairs = [a / b for a, b in zip(timings[True], timings[False], strict=True)]
    print(
        f"  ratio (with / without): {on / off:.3f} (ratio of medians);"
        f" median of paired ratios {statistics.median(pairs):.3f}"
    )
    delays = [d for run in timings["fanout"] for d in run]
    if delays:
        lasts = [max(run) for run in timings["fanout"] if run]
        print(
            f"  end to end, {N_LINES} SKUs x {N_CHANNELS} channels per delivery:"
            f" reservation's commit -> channel holds the SKU's new quantity:"
            f" n={len(delays)}  p50={percentile(delays, 50):.3f}s"
            f"  p95={percentile(delays, 95):.3f}s  max={max(delays):.3f}s;"
            f" under 5 s: {sum(1 for d in delays if d < 5)}/{len(delays)};"
            f" last pair per delivery: {', '.join(f'{t:.2f}' for t in lasts)} s"
        )


def run_sale(registry, sims, warehouse_id, product_ids, channel_ids, args):
    print(
        f"== 4. a sale on channel 00, end to end ({args.samples} one-unit orders,"
        f" {args.sale_interval:g} s apart): webhook sent -> each of the other"
        f" {N_CHANNELS - 1} channels holds the lower quantity =="
    )
    enable(registry, channel_ids, N_CHANNELS)
    wait_idle(registry)
    lat, acks, missed = sale_latency(
        registry,
        sims,
        args.url,
        warehouse_id,
        channel_ids,
        product_ids[2],
        "BENCH-002",
        args,
    )
    if not lat:
        print("  ! no channel received the drop")
        return
    under = sum(1 for x in lat if x < 5.0)
    print(
        f"  webhook answered in p50={percentile(acks, 50) * 1000:.1f} ms"
        f" p99={percentile(acks, 99) * 1000:.1f} ms"
    )
    print(
        f"  sale -> other channel: n={len(lat)}  p50={percentile(lat, 50):.3f}s"
        f"  p95={percentile(lat, 95):.3f}s  p99={percentile(lat, 99):.3f}s"
        f"  max={max(lat):.3f}s; under 5 s: {under}/{len(lat)};"
        f" missed within 15 s: {missed}"
    )


def run_burst(registry, sims, warehouse_id, product_ids, channel_ids, args, interval):
    print(f"== 3. burst: {args.burst} changes to one SKU, {N_CHANNELS} channels ==")
    enable(registry, channel_ids, N_CHANNELS)
    wait_idle(registry)
    time.sleep(interval + 0.2)  # start from a quiet SKU
    duration, pushes, final, in_sync, errors = burst(
        registry,
        sims,
        warehouse_id,
        product_ids[1],
        "BENCH-001",
        args.burst,
        args.threads,
        args.per_commit,
        args.processes,
    )
    writers = "processes" if args.processes else "threads"
    print(
        f"  {args.burst} changes ({args.burst // args.per_commit} commits) in "
        f"{duration:.2f} s from {args.threads} {writers}; pushes per channel: "
        f"max {max(pushes)}, min {min(pushes)}, "
        f"mean {statistics.mean(pushes):.2f}; channels holding the final "
        f"quantity {final}: {in_sync}/{N_CHANNELS}"
    )
    if errors:
        print(f"  ! {len(errors)} worker error(s): {errors[0]!r}")


if __name__ == "__main__":
    main()
