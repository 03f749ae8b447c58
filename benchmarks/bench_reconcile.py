"""Reconciliation pass benchmark, measured in a real Odoo 19 database.

Prints, for passes over 10,000 and 100,000 bindings of one generic channel
(a loopback simulator started by this script) with 1% of them drifted:
bindings, batches, corrections made, simulator requests, wall time, peak
memory (whole pass and per batch) and the ratio t(100k)/t(10k); after each
pass, how many bindings the simulator still holds differently from Odoo.

Goal: 100,000 bindings in under 60 s and 500 MB, and the 100,000 run at most
11 times the 10,000 run.

The pass runs the way the jobs run it, in this process and without a job
runner: the binding enumeration of the start job, then
``_scs_job_reconcile_batch(ids, dry_run=False)`` for each batch of
``reconcile_batch_size`` bindings, each batch in its own cursor committed at
the end, as separate jobs would be. The order fetch of the start job is left
out (the simulator has no orders). A smaller size is a pass over the first
bindings (by id) of the same channel. One untimed batch runs first so that
every measured pass starts warm. The batches run one after the other (one
job worker); the simulator answers from a thread of this process, at
loopback speed unless ``--latency-ms`` adds a delay to every answer.

Memory: a thread samples the process's resident set size (RSS) every few
milliseconds; "peak" is the highest RSS seen during the pass, "growth" that
minus the RSS just before it. The process also holds the Odoo registry and
the simulator (100,000 SKUs), so the growth is the figure the pass is
responsible for. Python-level ``tracemalloc`` is too costly to leave on for
the timed passes; it is measured on one extra (untimed) batch instead.

Setup (not timed, committed, reused by later runs): products ``RECON-nnnnnn``
with stock in the first warehouse's stock location, and a channel bound to
all of them. The first product and its quant are made by the ORM; the others
are SQL copies of those rows (every column, so NOT NULL columns are filled as
the ORM filled them), bindings are inserted by SQL as already pushed (no push
jobs are enqueued), then the tables are analysed and Odoo's caches cleared.

Usage::

    python benchmarks/bench_reconcile.py -c odoo.conf -d DB [--sizes 10000,100000]
        [--repeat 1] [--profile] [--latency-ms 0] [--keep-events] [--log-events]
"""

import argparse
import cProfile
import gc
import io
import logging
import pstats
import random
import threading
import time
import tracemalloc

import psutil
from _odoo import env_for, open_registry, retire_channels

from simulators.generic import GenericSimulator

PREFIX = "RECON-"
CHANNEL_NAME = "Reconcile benchmark"
DRIFT_SHARE = 0.01
MB = 1024 * 1024
#: bindings per batch job (the channel's ``reconcile_batch_size``)
BATCH_HINT = 500


def code(n):
    return f"{PREFIX}{n:06d}"


def stock_for(n):
    """On-hand quantity of product number ``n`` (varied, never zero)."""
    return 5 + (n * 7) % 96


# -- memory -------------------------------------------------------------------
class RssSampler:
    """Highest RSS of this process, overall and since the last ``mark``."""

    def __init__(self, interval=0.005):
        self.process = psutil.Process()
        self.interval = interval
        self.peak = 0
        self.window_peak = 0
        self._stop = threading.Event()
        self._thread = None

    def rss(self):
        return self.process.memory_info().rss

    def _sample(self):
        rss = self.rss()
        self.peak = max(self.peak, rss)
        self.window_peak = max(self.window_peak, rss)
        return rss

    def _run(self):
        while not self._stop.wait(self.interval):
            self._sample()

    def start(self):
        self.peak = self.window_peak = self.rss()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self.peak

    def mark(self):
        """Start a new window; returns the RSS now."""
        rss = self.rss()
        self.window_peak = rss
        self.peak = max(self.peak, rss)
        return rss

    def stop(self):
        self._stop.set()
        self._thread.join()
        self._sample()


# -- setup --------------------------------------------------------------------
def _columns(cr, table):
    cr.execute(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = %s"
        " ORDER BY ordinal_position",
        (table,),
    )
    return [row[0] for row in cr.fetchall() if row[0] != "id"]


def _clone_sql(cr, table, alias, overrides):
    """``(column list, select list)`` copying every column of ``alias`` but
    the ``overrides`` (column -> SQL expression)."""
    cols = _columns(cr, table)
    select = [overrides.get(col, f"{alias}.{col}") for col in cols]
    return ", ".join(cols), ", ".join(select)


def _reference(env, location):
    """Product number 1 and its quant, made by the ORM."""
    Product = env["product.product"].with_context(active_test=False)
    product = Product.search([("default_code", "=", code(1))], limit=1)
    if not product:
        product = Product.create(
            {
                "name": f"Recon product {code(1)}",
                "default_code": code(1),
                "type": "consu",
                "is_storable": True,
            }
        )
    Quant = env["stock.quant"].sudo()
    quant = Quant.search(
        [("product_id", "=", product.id), ("location_id", "=", location.id)], limit=1
    )
    if not quant:
        Quant._update_available_quantity(product, location, stock_for(1))
        quant = Quant.search(
            [("product_id", "=", product.id), ("location_id", "=", location.id)],
            limit=1,
        )
    env.flush_all()
    return product, quant


def _insert_products(cr, product, quant, location, total):
    """SQL copies of the reference template, variant and quant up to ``total``."""
    now = "(now() AT TIME ZONE 'UTC')"
    cols, select = _clone_sql(
        cr,
        "product_template",
        "t",
        {
            "name": "jsonb_build_object('en_US', 'Recon product ' || c.code)",
            "default_code": "c.code",
            "create_date": now,
            "write_date": now,
        },
    )
    cr.execute(
        f"""
        INSERT INTO product_template ({cols})
        SELECT {select}
          FROM product_template t,
               LATERAL (SELECT n, %s || lpad(n::text, 6, '0') AS code
                          FROM generate_series(2, %s) n) c
         WHERE t.id = %s
           AND NOT EXISTS (SELECT 1 FROM product_template x
                            WHERE x.default_code = c.code)
         ORDER BY c.n
        """,
        (PREFIX, total, product.product_tmpl_id.id),
    )
    templates = cr.rowcount
    cols, select = _clone_sql(
        cr,
        "product_product",
        "p",
        {
            "product_tmpl_id": "t.id",
            "default_code": "t.default_code",
            "barcode": "NULL",
            "create_date": now,
            "write_date": now,
        },
    )
    cr.execute(
        f"""
        INSERT INTO product_product ({cols})
        SELECT {select}
          FROM product_template t, product_product p
         WHERE p.id = %s
           AND t.default_code LIKE %s
           AND NOT EXISTS (SELECT 1 FROM product_product x
                            WHERE x.product_tmpl_id = t.id)
         ORDER BY t.default_code
        """,
        (product.id, PREFIX + "%"),
    )
    variants = cr.rowcount
    cols, select = _clone_sql(
        cr,
        "stock_quant",
        "q",
        {
            "product_id": "p.id",
            # stock_for(n), in SQL
            "quantity": "5 + mod(substr(p.default_code, "
            f"{len(PREFIX) + 1})::int * 7, 96)",
            "reserved_quantity": "0",
            "in_date": now,
            "create_date": now,
            "write_date": now,
        },
    )
    cr.execute(
        f"""
        INSERT INTO stock_quant ({cols})
        SELECT {select}
          FROM product_product p, stock_quant q
         WHERE q.id = %s
           AND p.default_code LIKE %s
           AND NOT EXISTS (SELECT 1 FROM stock_quant x
                            WHERE x.product_id = p.id AND x.location_id = %s)
         ORDER BY p.id
        """,
        (quant.id, PREFIX + "%", location.id),
    )
    return templates, variants, cr.rowcount


def _insert_bindings(cr, channel, location):
    """One binding per RECON product, already pushed with today's quantity."""
    cr.execute(
        """
        INSERT INTO channel_binding (
            channel_id, company_id, product_id, sku, active, push_state,
            allocation_pct, buffer_override, buffer_qty, use_max_qty, max_qty,
            last_pushed_qty, last_seen_qty, sequence, last_push_ts, last_event_ts,
            last_pushed_at, last_seen_at,
            create_uid, write_uid, create_date, write_date)
        SELECT %(channel)s, %(company)s, p.id, p.default_code, true, 'ok',
               100.0, false, 0, false, 0,
               q.free, q.free, 1, extract(epoch FROM now()), 0,
               now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC',
               %(uid)s, %(uid)s, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC'
          FROM product_product p
          JOIN LATERAL (
                SELECT GREATEST(0, floor(COALESCE(SUM(quantity - reserved_quantity),
                                                  0)))::int AS free
                  FROM stock_quant
                 WHERE product_id = p.id AND location_id = %(location)s) q ON true
         WHERE p.default_code LIKE %(pattern)s
           AND NOT EXISTS (SELECT 1 FROM channel_binding b
                            WHERE b.channel_id = %(channel)s AND b.product_id = p.id)
         ORDER BY p.id
        """,
        {
            "channel": channel.id,
            "company": channel.company_id.id,
            "uid": channel.env.uid,
            "location": location.id,
            "pattern": PREFIX + "%",
        },
    )
    return cr.rowcount


def setup(registry, total):
    """Products, stock, channel and bindings; returns (channel id, report)."""
    started = time.perf_counter()
    # the reference is committed before any binding exists: the stock hook
    # (at commit) then finds it unbound and enqueues no push job
    with registry.cursor() as cr:
        env = env_for(cr)
        warehouse = env["stock.warehouse"].search([], order="id", limit=1)
        _reference(env, warehouse.lot_stock_id)
    with registry.cursor() as cr:
        env = env_for(cr)
        warehouse = env["stock.warehouse"].search([], order="id", limit=1)
        location = warehouse.lot_stock_id
        product, quant = _reference(env, location)
        templates, variants, quants = _insert_products(
            cr, product, quant, location, total
        )
        Channel = env["sync.channel"].with_context(active_test=False)
        channel = Channel.search([("name", "=", CHANNEL_NAME)], limit=1)
        if not channel:
            channel = Channel.create(
                {
                    "name": CHANNEL_NAME,
                    "channel_type": "generic",
                    "warehouse_ids": [(6, 0, warehouse.ids)],
                }
            )
        channel.write(
            {
                "active": True,
                "sync_enabled": True,
                # no scheduled pass and no order fetch: only this script runs it
                "reconcile_interval": 0,
                "fetch_orders": False,
                "reconcile_dry_run": False,
                "reconcile_batch_size": BATCH_HINT,
                "reconcile_max_share": 20.0,
                "buffer_qty": 0.0,
                "timeout": 10.0,
            }
        )
        env.flush_all()
        bindings = _insert_bindings(cr, channel, location)
        if templates or variants or quants or bindings:
            for table in (
                "product_template",
                "product_product",
                "stock_quant",
                "channel_binding",
            ):
                cr.execute(f"ANALYZE {table}")
        env.invalidate_all()
        registry.clear_all_caches()
        cr.execute(
            "SELECT count(*) FROM channel_binding WHERE channel_id = %s AND active",
            (channel.id,),
        )
        bound = cr.fetchone()[0]
        channel_id = channel.id
    elapsed = time.perf_counter() - started
    if templates or variants or quants or bindings:
        how = (
            f"ORM reference product + SQL copies: {templates} templates, "
            f"{variants} variants, {quants} quants, {bindings} bindings inserted"
        )
    else:
        how = "reused from an earlier run (nothing inserted)"
    return channel_id, bound, f"{how}; {bound} bindings on the channel; {elapsed:.1f} s"


def connect_simulator(registry, channel_id, latency=0.0):
    """Start a simulator and point the channel at it."""
    with registry.cursor() as cr:
        channel = env_for(cr)["sync.channel"].browse(channel_id)
        secret = channel.sudo().signing_secret or None
        sim = GenericSimulator(secret=secret).start()
        sim.latency = latency
        channel.sudo().write({"base_url": sim.endpoint, "signing_secret": sim.secret})
    return sim


# -- truth --------------------------------------------------------------------
def binding_ids(registry, channel_id, limit=None):
    with registry.cursor() as cr:
        env = env_for(cr)
        return (
            env["channel.binding"]
            .search([("channel_id", "=", channel_id)], order="id", limit=limit)
            .ids
        )


def published(registry, ids, chunk=5000):
    """``{sku: quantity Odoo publishes now}``, by the model's own rule."""
    result = {}
    for start in range(0, len(ids), chunk):
        with registry.cursor() as cr:
            bindings = env_for(cr)["channel.binding"].browse(ids[start : start + chunk])
            quantities = bindings._scs_quantities()
            for binding in bindings:
                result[binding.sku] = quantities[binding.id].published
    return result


def differing(sim, truth):
    with sim.lock:
        return sum(1 for sku, qty in truth.items() if sim.quantities.get(sku) != qty)


def drift(sim, truth, share, seed):
    """Simulator holds Odoo's numbers, except ``share`` of the SKUs; returns them."""
    rng = random.Random(seed)
    skus = sorted(truth)
    drifted = rng.sample(skus, max(1, round(len(skus) * share)))
    with sim.lock:
        sim.quantities.update(truth)
        for sku in drifted:
            sim.quantities[sku] = truth[sku] + rng.choice((-3, -2, -1, 1, 2, 3, 7))
            if sim.quantities[sku] < 0:
                sim.quantities[sku] = truth[sku] + 1
    return drifted


# -- the pass -----------------------------------------------------------------
def run_batch(registry, channel_id, ids):
    """One batch job: its own transaction, committed at the end."""
    with registry.cursor() as cr:
        channel = env_for(cr)["sync.channel"].browse(channel_id)
        return channel._scs_job_reconcile_batch(ids, dry_run=False)


def run_pass(registry, channel_id, size, sampler):
    """The start job's enumeration, then every batch; returns figures."""
    figures = {"batch_growth": [], "batch_times": []}
    base = sampler.start()
    started = time.perf_counter()
    with registry.cursor() as cr:
        channel = env_for(cr)["sync.channel"].browse(channel_id)
        ids = (
            channel.env["channel.binding"]
            .search([("channel_id", "=", channel_id)], order="id", limit=size)
            .ids
        )
        batch = max(1, channel.reconcile_batch_size or 500)
        batches = [ids[i : i + batch] for i in range(0, len(ids), batch)]
        channel.write(
            {
                "reconcile_started_at": time.strftime(
                    "%Y-%m-%d %H:%M:%S", time.gmtime()
                ),
                "reconcile_started_ts": time.time(),
                "reconcile_pending": len(batches),
                "last_reconcile_checked": 0,
                "last_reconcile_corrections": 0,
                "last_reconcile_limited": 0,
                "last_reconcile_dry_run": False,
                "last_reconcile_error": False,
            }
        )
    figures["enumerate"] = time.perf_counter() - started
    for ids_ in batches:
        before = sampler.mark()
        t0 = time.perf_counter()
        run_batch(registry, channel_id, ids_)
        figures["batch_times"].append(time.perf_counter() - t0)
        figures["batch_growth"].append(sampler.window_peak - before)
    figures["wall"] = time.perf_counter() - started
    sampler.stop()
    figures.update(
        ids=ids,
        batch_size=batch,
        batches=len(batches),
        rss_before=base,
        rss_peak=sampler.peak,
        rss_after=sampler.rss(),
    )
    with registry.cursor() as cr:
        channel = env_for(cr)["sync.channel"].browse(channel_id)
        figures.update(
            checked=channel.last_reconcile_checked,
            corrections=channel.last_reconcile_corrections,
            limited=channel.last_reconcile_limited,
            pending=channel.reconcile_pending,
            closed=bool(channel.last_reconcile_at),
        )
    return figures


def measure(registry, channel_id, sim, size, seed):
    ids = binding_ids(registry, channel_id, limit=size)
    truth = published(registry, ids)
    drifted = drift(sim, truth, DRIFT_SHARE, seed)
    sim.reset_log()
    pushes_before = len(sim.history)
    gc.collect()
    figures = run_pass(registry, channel_id, size, RssSampler())
    with sim.lock:
        requests = list(sim.requests)
    figures["gets"] = sum(1 for r in requests if r.method == "GET")
    figures["posts"] = sum(1 for r in requests if r.method == "POST")
    with sim.lock:
        figures["applied"] = sum(
            1 for h in sim.history[pushes_before:] if h.get("applied")
        )
        del sim.history[pushes_before:]
    sim.reset_log()
    figures["drifted"] = len(drifted)
    # Odoo's side is read again: the pass must not have changed what it publishes
    figures["still_differ"] = differing(sim, published(registry, ids))
    return figures


def report(size, f, attempt=0, repeat=1):
    growth = sorted(f["batch_growth"])
    times = sorted(f["batch_times"])
    run = f" (run {attempt + 1}/{repeat})" if repeat > 1 else ""
    print(f"\n== pass over {size:,} bindings{run} ==")
    print(f"  bindings checked       {f['checked']:,} (enumerated {len(f['ids']):,})")
    print(f"  batches                {f['batches']} (pass closed: {f['closed']})")
    print(
        f"  drifted / corrections  {f['drifted']} / {f['corrections']}"
        f" ({100.0 * f['corrections'] / max(1, f['checked']):.2f}%),"
        f" batches held by the safety limit: {f['limited']}"
    )
    print(
        f"  simulator requests     {f['gets'] + f['posts']:,}"
        f" ({f['gets']:,} reads, {f['posts']:,} pushes, {f['applied']} applied)"
    )
    print(
        f"  wall time              {f['wall']:.2f} s"
        f" ({1000 * f['wall'] / max(1, f['checked']):.2f} ms per binding;"
        f" enumeration {f['enumerate']:.2f} s; batch median"
        f" {times[len(times) // 2]:.3f} s, max {times[-1]:.3f} s)"
    )
    print(
        f"  peak memory (RSS)      {f['rss_peak'] / MB:.0f} MB,"
        f" growth {(f['rss_peak'] - f['rss_before']) / MB:.1f} MB over"
        f" {f['rss_before'] / MB:.0f} MB before the pass"
        f" (after: {f['rss_after'] / MB:.0f} MB)"
    )
    print(
        f"  peak per batch (RSS)   max growth {growth[-1] / MB:.1f} MB,"
        f" median {growth[len(growth) // 2] / MB:.1f} MB"
    )
    print(f"  still differing        {f['still_differ']} (goal 0)")


# -- extra, untimed -----------------------------------------------------------
def traced_batch(registry, channel_id, sim, ids, seed):
    """Python-level peak (tracemalloc) of one drifted batch."""
    truth = published(registry, ids)
    drift(sim, truth, DRIFT_SHARE, seed)
    gc.collect()
    tracemalloc.start()
    try:
        run_batch(registry, channel_id, ids)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    sim.reset_log()
    return peak


def profile_batch(registry, channel_id, sim, ids, seed, top=25):
    truth = published(registry, ids)
    drift(sim, truth, DRIFT_SHARE, seed)
    profiler = cProfile.Profile()
    t0 = time.perf_counter()
    profiler.enable()
    run_batch(registry, channel_id, ids)
    profiler.disable()
    elapsed = time.perf_counter() - t0
    sim.reset_log()
    print(f"\n== cProfile of one batch of {len(ids)} bindings ({elapsed:.3f} s) ==")
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(top)
        text = out.getvalue()
        start = text.find("   ncalls")
        print(f"-- by {order} --")
        print(text[start:].rstrip() if start >= 0 else text.rstrip())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("-d", "--database", required=True)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="passes per size; the summary keeps the fastest (use 3 on a busy machine)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="cProfile one batch after the passes"
    )
    parser.add_argument(
        "--keep-events",
        action="store_true",
        help="keep the correction events of earlier runs (default: delete them "
        "before the passes, so runs are comparable)",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="delay the simulator adds to every answer (a shop that is not on "
        "loopback); default 0",
    )
    parser.add_argument(
        "--log-events",
        action="store_true",
        help="keep the per-event JSON log lines (silenced by default)",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    registry = open_registry(args.config, args.database)
    if not args.log_events:
        logging.getLogger("odoo.addons.stock_channel_sync.events").setLevel(
            logging.WARNING
        )
    channel_id, bound, how = setup(registry, max(sizes))
    print(f"setup: {how}")
    if bound < max(sizes):
        raise SystemExit(f"only {bound} bindings on the channel, need {max(sizes)}")
    if not args.keep_events:
        with registry.cursor() as cr:
            cr.execute("DELETE FROM sync_event WHERE channel_id = %s", (channel_id,))
            if cr.rowcount:
                print(f"setup: deleted {cr.rowcount} events of earlier runs")
    sim = connect_simulator(registry, channel_id, args.latency_ms / 1000.0)
    if args.latency_ms:
        print(f"setup: the simulator adds {args.latency_ms:g} ms to every answer")
    try:
        t0 = time.perf_counter()
        all_ids = binding_ids(registry, channel_id)
        truth = published(registry, all_ids)
        with sim.lock:
            sim.quantities.update(truth)
        print(
            f"setup: simulator on {sim.endpoint} seeded with Odoo's numbers for "
            f"{len(truth):,} SKUs in {time.perf_counter() - t0:.1f} s"
        )
        del all_ids, truth
        # one untimed batch first: the adapter, its HTTP session and Odoo's
        # caches are then warm for every measured pass alike
        warm = binding_ids(registry, channel_id)[-BATCH_HINT:]
        t0 = time.perf_counter()
        run_batch(registry, channel_id, warm)
        sim.reset_log()
        print(
            f"setup: warm-up batch of {len(warm)} in {time.perf_counter() - t0:.2f} s"
        )
        runs = {size: [] for size in sizes}
        for attempt in range(args.repeat):
            for size in sizes:
                seed = args.seed + size + attempt
                figures = measure(registry, channel_id, sim, size, seed)
                runs[size].append(figures)
                report(size, figures, attempt, args.repeat)
        results = {size: min(runs[size], key=lambda f: f["wall"]) for size in sizes}
        print("\n== summary" + (" (fastest of each size)" if args.repeat > 1 else ""))
        for size in sizes:
            f = results[size]
            peak = max(r["rss_peak"] for r in runs[size])
            growth = max(r["rss_peak"] - r["rss_before"] for r in runs[size])
            per_batch = max(max(r["batch_growth"]) for r in runs[size])
            differ = max(r["still_differ"] for r in runs[size])
            print(
                f"  {size:>7,} bindings: {f['wall']:7.2f} s,"
                f" peak RSS {peak / MB:4.0f} MB (growth {growth / MB:5.1f} MB,"
                f" per batch <= {per_batch / MB:4.1f} MB),"
                f" {f['corrections']} corrections, {differ} differ"
            )
            if args.repeat > 1:
                walls = ", ".join(f"{r['wall']:.2f}" for r in runs[size])
                print(f"           all runs: {walls} s")
        if len(sizes) >= 2:
            small, large = min(sizes), max(sizes)
            ratio = results[large]["wall"] / results[small]["wall"]
            print(
                f"  t({large:,}) / t({small:,}) = {ratio:.2f}"
                f" (size ratio {large / small:.0f}; goal <= 11)"
            )
        first = results[sizes[0]]["ids"][: results[sizes[0]]["batch_size"]]
        peak = traced_batch(registry, channel_id, sim, first, args.seed)
        print(
            f"  tracemalloc peak of one batch of {len(first)} (untimed):"
            f" {peak / MB:.1f} MB (Python objects only)"
        )
        if args.profile:
            profile_batch(registry, channel_id, sim, first, args.seed + 1)
    finally:
        sim.stop()
        retire_channels(registry, CHANNEL_NAME)


if __name__ == "__main__":
    main()
