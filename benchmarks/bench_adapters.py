"""Bulk-push benchmark: how many HTTP calls each adapter spends on 10,000 SKUs.

Why: a stock sync that sends one call per SKU burns marketplace quotas and
takes minutes; the adapters batch up to each API's documented limit. This
script measures how close every adapter comes to the floor, which is
``ceil(N / adapter.max_batch) * adapter.calls_per_batch`` (a feed protocol
costs several requests per batch) plus the authentication calls the channel
cannot avoid (an OAuth token exchange, for instance).

For every channel type in ``simulators.SIMULATORS`` whose adapter and
simulator modules import, it starts the simulator on loopback, asks it to seed
N SKUs through ``benchmark_fixture(count)`` (which returns the config fields,
one dict of ``StockUpdate`` fields per SKU and the number of unavoidable auth
calls), pushes them all with one ``set_quantities`` call and prints the
figures. Channels whose modules or fixture are missing are listed as skipped.

Run from the repository root::

    python benchmarks/bench_adapters.py [--count 10000] [--only shopify ...]

It prints figures and asserts nothing.
"""

import argparse
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lib.adapters import (
    ChannelConfig,
    ChannelError,
    StockUpdate,
    get_adapter_class,
)
from simulators import SIMULATORS, get_simulator_class

DEFAULT_COUNT = 10_000


def load(channel_type):
    """(adapter class, simulator class) or a reason to skip."""
    try:
        adapter_cls = get_adapter_class(channel_type)
        simulator_cls = get_simulator_class(channel_type)
    except (ImportError, AttributeError, KeyError) as err:
        return None, f"not importable yet ({type(err).__name__}: {err})"
    if not hasattr(simulator_cls, "benchmark_fixture"):
        return None, "simulator has no benchmark_fixture(count)"
    return (adapter_cls, simulator_cls), None


def run(channel_type, adapter_cls, simulator_cls, count):
    """Push ``count`` updates through one adapter; return its figures."""
    simulator = simulator_cls().start()
    try:
        fields, rows, auth_calls = simulator.benchmark_fixture(count)
        config = ChannelConfig(channel_type, **fields)
        updates = [StockUpdate(**row) for row in rows]
        adapter = adapter_cls(config)
        simulator.reset_log()
        started = time.perf_counter()
        results = adapter.set_quantities(updates)
        elapsed = time.perf_counter() - started
        batches = math.ceil(len(updates) / max(1, int(adapter.max_batch)))
        floor = batches * getattr(adapter, "calls_per_batch", 1) + auth_calls
        return {
            "channel": channel_type,
            "updates": len(updates),
            "ok": sum(1 for result in results if result.ok),
            "adapter_calls": adapter.calls,
            "simulator_requests": len(simulator.requests),
            "max_batch": adapter.max_batch,
            "auth_calls": auth_calls,
            "floor": floor,
            "ratio": adapter.calls / floor if floor else float("nan"),
            "seconds": elapsed,
        }
    finally:
        simulator.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT)
    parser.add_argument("--only", nargs="*", default=None, help="channel types")
    args = parser.parse_args(argv)
    channel_types = args.only or list(SIMULATORS)

    rows, skipped = [], []
    for channel_type in channel_types:
        classes, reason = load(channel_type)
        if classes is None:
            skipped.append((channel_type, reason))
            continue
        try:
            rows.append(run(channel_type, *classes, args.count))
        # a benchmark reports a broken channel and goes on with the others
        except (ChannelError, OSError, ValueError, TypeError, KeyError) as err:
            skipped.append((channel_type, f"failed: {type(err).__name__}: {err}"))

    header = (
        f"{'channel':<12} {'updates':>7} {'ok':>7} {'calls':>6} {'sim req':>7} "
        f"{'batch':>6} {'auth':>4} {'floor':>6} {'ratio':>6} {'seconds':>8}"
    )
    print(f"bulk push of {args.count} SKUs per adapter")
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['channel']:<12} {row['updates']:>7} {row['ok']:>7} "
            f"{row['adapter_calls']:>6} {row['simulator_requests']:>7} "
            f"{row['max_batch']:>6} {row['auth_calls']:>4} {row['floor']:>6} "
            f"{row['ratio']:>6.2f} {row['seconds']:>8.2f}"
        )
    for channel_type, reason in skipped:
        print(f"skipped {channel_type}: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
