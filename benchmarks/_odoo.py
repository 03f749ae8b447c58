"""Shared helpers for benchmarks that drive a real Odoo 19 database.

The benchmarks run *beside* a running Odoo server (HTTP workers plus the
queue_job job runner, see README): they open their own registry on the same
database to make stock changes and commit them, exactly as a user's
transaction would, and let the server's job runner do the rest.
"""

import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def open_registry(config_path, db):
    import odoo  # noqa: F401  (the benchmark needs a real Odoo)
    from odoo.modules.registry import Registry
    from odoo.tools import config

    config.parse_config(["-c", config_path, "-d", db])
    return Registry(db)


def env_for(cr):
    from odoo import SUPERUSER_ID, api

    return api.Environment(cr, SUPERUSER_ID, {"tracking_disable": True})


def signal(registry):
    """Tell the server's workers what this process changed.

    A write on a channel clears caches (the webhook route's channel map among
    them) in this process only; a server's own requests signal that to the
    other processes when they end, a script must do it after its commit, or
    the workers keep answering from what they cached before.
    """
    registry.signal_changes()


def retire_channels(registry, name_pattern):
    """Archive a benchmark's channels once its simulators are stopped.

    Left active, they would still be reconciled by the hourly cron, which
    would call simulators that are gone and fail its jobs. The next run of the
    benchmark activates them again.
    """
    with registry.cursor() as cr:
        env = env_for(cr)
        channels = env["sync.channel"].search([("name", "=like", name_pattern)])
        channels.write({"active": False})
        cr.commit()
    signal(registry)
    return len(channels)


def pending_jobs(registry, channel_prefix="root.channel_sync"):
    with registry.cursor() as cr:
        cr.execute(
            "SELECT count(*) FROM queue_job WHERE state IN "
            "('pending','enqueued','started') AND channel LIKE %s",
            (channel_prefix + "%",),
        )
        return cr.fetchone()[0]


def wait_idle(registry, timeout=120.0, settle=0.3):
    """Wait until no sync job is pending, enqueued or started."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pending_jobs(registry) == 0:
            time.sleep(settle)
            if pending_jobs(registry) == 0:
                return True
        time.sleep(0.1)
    return False


def percentile(values, pct):
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * pct / 100.0
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def ensure_products(env, warehouse, prefix, label, count, min_free, top_up):
    """``count`` storable variants ``<prefix>NNN`` with at least ``min_free`` free.

    Reused across runs: missing variants are created and their free quantity
    in ``warehouse`` is topped up to ``top_up`` when it fell under ``min_free``.
    """
    Product = env["product.product"]
    products = Product.search([("default_code", "=like", prefix + "%")], order="id")
    if len(products) < count:
        products |= Product.create(
            [
                {
                    "name": f"{label} {i}",
                    "default_code": f"{prefix}{i:03d}",
                    "type": "consu",
                    "is_storable": True,
                }
                for i in range(len(products), count)
            ]
        )
    products = products[:count]
    for product in products:
        free = product.with_context(warehouse_id=warehouse.id).free_qty
        if free < min_free:
            env["stock.quant"]._update_available_quantity(
                product, warehouse.lot_stock_id, top_up - free
            )
    return products
