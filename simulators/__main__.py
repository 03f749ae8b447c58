"""Start the demo's channel simulators: ``python -m simulators`` (from the addon root).

One simulator per channel type listens on a fixed loopback port, with the
fixed credentials and the SKUs (and external ids) of the module's demo data
(``data/demo/stock_channel_sync_demo.xml``), so the demo channels work as
soon as Odoo runs:

=============  ======================  ====
type           URL                     port
=============  ======================  ====
generic        http://127.0.0.1:8701   base
shopify        http://127.0.0.1:8702   base + 1
woocommerce    http://127.0.0.1:8703   base + 2
amazon         http://127.0.0.1:8704   base + 3
ebay           http://127.0.0.1:8705   base + 4
=============  ======================  ====

Each simulator starts holding the demo's initial quantities (what the demo
channel publishes: Odoo's initial stock minus the channel's buffer). Every
``--interval`` seconds a line is printed for each quantity that changed::

    12:00:01 [shopify] DEMO-MUG-RED 42 -> 41

and one for each request a simulator refused (wrong credentials, bad
signature) or throttled (the client retries those). Ctrl-C stops them.

``--base-port`` moves all five ports (the demo channels must then be edited
to match). ``python -m simulators order URL SKU=QTY ...`` posts a signed
``order.created`` webhook to a generic channel's webhook URL, signed with the
demo generic channel's webhook secret.

Nothing here imports ``odoo``.
"""

import argparse
import json
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone

from . import get_simulator_class

try:  # the same fallback as generic.py: top-level package or addon sub-package
    from ..lib.signatures import sign_standard
except ImportError:
    from lib.signatures import sign_standard

DEFAULT_HOST = "127.0.0.1"
DEFAULT_BASE_PORT = 8701
#: port offset from ``--base-port``, in this order
CHANNEL_TYPES = ("generic", "shopify", "woocommerce", "amazon", "ebay")

# -- demo credentials: the same literal values as the demo channels ------------
#: what Odoo signs its pushes to the demo generic channel with
GENERIC_SIGNING_SECRET = "whsec_c3RvY2tfY2hhbm5lbF9zeW5jIGRlbW86IHNpZ25pbmc="
#: what the demo generic channel's webhooks to Odoo are signed with
GENERIC_WEBHOOK_SECRET = "whsec_c3RvY2tfY2hhbm5lbF9zeW5jIGRlbW86IHdlYmhvb2s="
#: the other simulators keep their default credentials
SHOPIFY_ACCESS_TOKEN = "shpat_simulator"
SHOPIFY_LOCATION_ID = "gid://shopify/Location/1"
WOO_CONSUMER_KEY = "ck_simulator"
WOO_CONSUMER_SECRET = "cs_simulator"

# -- demo catalogue -------------------------------------------------------------
#: SKU -> quantity on hand in the main warehouse after the demo data loads
DEMO_STOCK = {
    "DEMO-MUG-RED": 42,
    "DEMO-MUG-BLUE": 30,
    "DEMO-MUG-GREEN": 12,
    "DEMO-CAP": 25,
    "DEMO-NOTEBOOK": 60,
    "DEMO-TOTE": 8,
}
#: units each demo channel holds back from every SKU (its buffer)
DEMO_BUFFERS = {"amazon": 2}
#: the variants of the demo's one multi-variant product
MUG_VARIANTS = ("DEMO-MUG-RED", "DEMO-MUG-BLUE", "DEMO-MUG-GREEN")

#: Shopify: SKU -> number of its ProductVariant and InventoryItem GIDs
SHOPIFY_ITEMS = {sku: 7001 + n for n, sku in enumerate(DEMO_STOCK)}
#: WooCommerce: the variable product, its variations, the simple products
WOO_PARENT = ("DEMO-MUG", 300)
WOO_VARIATIONS = {"DEMO-MUG-RED": 301, "DEMO-MUG-BLUE": 302, "DEMO-MUG-GREEN": 303}
WOO_PRODUCTS = {"DEMO-CAP": 310, "DEMO-NOTEBOOK": 311, "DEMO-TOTE": 312}
#: Amazon: SKU -> ASIN (informational; listings are addressed by SKU)
AMAZON_ASINS = {sku: f"B0DEMO{n + 1:04d}" for n, sku in enumerate(DEMO_STOCK)}
#: eBay: SKU -> (listing id, offer id); the mugs share one multi-variation listing
EBAY_LISTINGS = {
    "DEMO-MUG-RED": ("120000000001", "6000000001"),
    "DEMO-MUG-BLUE": ("120000000001", "6000000002"),
    "DEMO-MUG-GREEN": ("120000000001", "6000000003"),
    "DEMO-CAP": ("120000000002", "6000000004"),
    "DEMO-NOTEBOOK": ("120000000003", "6000000005"),
    "DEMO-TOTE": ("120000000004", "6000000006"),
}


def demo_quantity(channel_type, sku):
    """What the demo channel of this type publishes for ``sku`` at first."""
    return max(0, DEMO_STOCK[sku] - DEMO_BUFFERS.get(channel_type, 0))


def external_ids(channel_type, sku):
    """``{"external_id", "external_variant_id"}`` of the demo binding of ``sku``."""
    if channel_type == "shopify":
        number = SHOPIFY_ITEMS[sku]
        return {
            "external_id": f"gid://shopify/ProductVariant/{number}",
            "external_variant_id": f"gid://shopify/InventoryItem/{number}",
        }
    if channel_type == "woocommerce":
        if sku in WOO_VARIATIONS:
            return {
                "external_id": str(WOO_PARENT[1]),
                "external_variant_id": str(WOO_VARIATIONS[sku]),
            }
        return {"external_id": str(WOO_PRODUCTS[sku]), "external_variant_id": ""}
    # Amazon: none, the seller SKU is the listing (its ASIN is the
    # simulator's, in AMAZON_ASINS, shared by any SKU of the same item)
    if channel_type == "ebay":
        listing, offer = EBAY_LISTINGS[sku]
        return {"external_id": listing, "external_variant_id": offer}
    return {"external_id": "", "external_variant_id": ""}


def port_of(channel_type, base_port=DEFAULT_BASE_PORT):
    """The fixed port of a type's simulator (0 when ``base_port`` is 0)."""
    return base_port + CHANNEL_TYPES.index(channel_type) if base_port else 0


# -- seeding -------------------------------------------------------------------
def _seed_generic(sim):
    for sku in DEMO_STOCK:
        sim.set_stock(sku, demo_quantity("generic", sku))


def _seed_shopify(sim):
    for sku, number in SHOPIFY_ITEMS.items():
        sim.add_item(sku, quantity=demo_quantity("shopify", sku), item_id=number)


def _woo_record(sim, number, sku, kind, parent_id=0):
    """A WooCommerce record with a chosen id (the simulator counts from 100)."""
    with sim.lock:
        sim._next_id = number - 1
        managed = kind != "variable"
        quantity = demo_quantity("woocommerce", sku) if managed else 0
        created = sim._record(
            sku, quantity, kind, parent_id=parent_id, manage_stock=managed
        )
    if created != number:  # pragma: no cover - the simulator changed
        raise RuntimeError(f"WooCommerce simulator gave id {created}, not {number}")
    return created


def _seed_woocommerce(sim):
    parent_sku, parent = WOO_PARENT
    _woo_record(sim, parent, parent_sku, "variable")
    variations = [
        _woo_record(sim, number, sku, "variation", parent_id=parent)
        for sku, number in WOO_VARIATIONS.items()
    ]
    with sim.lock:
        sim.variations[parent] = variations
    for sku, number in WOO_PRODUCTS.items():
        _woo_record(sim, number, sku, "simple")
    with sim.lock:
        sim._next_id = max(sim.products)


def _seed_amazon(sim):
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    with sim.lock:
        for sku, asin in AMAZON_ASINS.items():
            sim.listings[sku] = {
                "asin": asin,
                "productType": "PRODUCT",
                "createdDate": now,
                "lastUpdatedDate": now,
            }
            sim.quantities[sku] = demo_quantity("amazon", sku)


def _seed_ebay(sim):
    with sim.lock:
        for sku, (listing, offer) in EBAY_LISTINGS.items():
            quantity = demo_quantity("ebay", sku)
            item = sim.items.setdefault(sku, {"listingId": listing, "offers": []})
            item["offers"].append(offer)
            sim.offers[offer] = {
                "sku": sku,
                "listingId": listing,
                "availableQuantity": quantity,
                "status": "PUBLISHED",
            }
            sim.quantities[sku] = quantity


SEEDERS = {
    "generic": _seed_generic,
    "shopify": _seed_shopify,
    "woocommerce": _seed_woocommerce,
    "amazon": _seed_amazon,
    "ebay": _seed_ebay,
}


def build(channel_type, host=DEFAULT_HOST, port=0):
    """A seeded, not yet started, simulator of ``channel_type``."""
    cls = get_simulator_class(channel_type)
    kwargs = {"host": host, "port": port}
    if channel_type == "generic":
        kwargs["secret"] = GENERIC_SIGNING_SECRET
    elif channel_type == "shopify":
        kwargs.update(
            access_token=SHOPIFY_ACCESS_TOKEN, location_id=SHOPIFY_LOCATION_ID
        )
    elif channel_type == "woocommerce":
        kwargs.update(
            consumer_key=WOO_CONSUMER_KEY, consumer_secret=WOO_CONSUMER_SECRET
        )
    sim = cls(**kwargs)
    SEEDERS[channel_type](sim)
    _record_refusals(sim)
    return sim


def _record_refusals(sim):
    """Keep the 4xx/5xx answers of ``sim`` in ``sim.refusals`` for the watcher."""
    serve = sim._serve
    sim.refusals = []

    def _serve(req):
        resp = serve(req)
        if resp.status >= 400:
            with sim.lock:
                sim.refusals.append((resp.status, req.method, req.path))
        return resp

    sim._serve = _serve


def start_all(base_port=DEFAULT_BASE_PORT, host=DEFAULT_HOST):
    """Start one seeded simulator per type; return ``{type: simulator}``.

    ``base_port=0`` gives every simulator a free port (for tests). If a port
    is taken, the simulators already started are stopped and the OSError
    propagates.
    """
    sims = {}
    try:
        for channel_type in CHANNEL_TYPES:
            sim = build(channel_type, host=host, port=port_of(channel_type, base_port))
            sims[channel_type] = sim.start()
    except BaseException:
        stop_all(sims)
        raise
    return sims


def stop_all(sims):
    for sim in sims.values():
        sim.stop()


# -- watching ------------------------------------------------------------------
class Watcher:
    """Report quantity changes and refused requests since the last look."""

    def __init__(self, sims):
        self.sims = sims
        self.seen = {name: self._snapshot(sim) for name, sim in sims.items()}
        self.refusals_seen = dict.fromkeys(sims, 0)

    @staticmethod
    def _snapshot(sim):
        with sim.lock:
            return dict(sim.quantities)

    def changes(self):
        """Lines describing what changed since the previous call."""
        lines = []
        for name, sim in self.sims.items():
            now = self._snapshot(sim)
            before = self.seen[name]
            for sku in sorted(now):
                if before.get(sku) != now[sku]:
                    old = before.get(sku)
                    old = "-" if old is None else old
                    lines.append(f"[{name}] {sku} {old} -> {now[sku]}")
            self.seen[name] = now
            with sim.lock:
                refusals = list(sim.refusals[self.refusals_seen[name] :])
                self.refusals_seen[name] = len(sim.refusals)
            for status, method, path in refusals:
                what = "throttled" if status == 429 else "refused"
                lines.append(f"[{name}] {what} {method} {path}: HTTP {status}")
        return lines


def _out(text, stream=None):
    """One line to stdout (or ``stream``), flushed: the output is often piped."""
    stream = stream or sys.stdout
    stream.write(f"{text}\n")
    stream.flush()


def _stop_on_sigterm():
    def _handler(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _handler)


def serve(args):
    try:
        sims = start_all(base_port=args.base_port, host=args.host)
    except OSError as err:
        last = args.base_port + len(CHANNEL_TYPES) - 1
        _out(
            f"cannot start the simulators on {args.host}, ports "
            f"{args.base_port}-{last}: {err}\n"
            "Are they already running? Otherwise choose --base-port.",
            sys.stderr,
        )
        return 1
    _stop_on_sigterm()
    try:
        for name, sim in sims.items():
            _out(f"{name:<12} {sim.url}")
        _out(
            f"{len(DEMO_STOCK)} demo SKUs each; generic signing secret "
            f"{GENERIC_SIGNING_SECRET}. Quantity changes follow (Ctrl-C stops)."
        )
        watcher = Watcher(sims)
        while True:
            time.sleep(args.interval)
            stamp = time.strftime("%H:%M:%S")
            for line in watcher.changes():
                _out(f"{stamp} {line}")
    except KeyboardInterrupt:
        _out("stopping the simulators")
    finally:
        stop_all(sims)
    return 0


# -- sending a signed order ----------------------------------------------------
def _order_line(text):
    sku, sep, quantity = text.partition("=")
    if not sep or not sku:
        raise argparse.ArgumentTypeError(f"expected SKU=QUANTITY, got {text!r}")
    try:
        return {"sku": sku, "quantity": int(quantity)}
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"bad quantity in {text!r}") from err


def order_payload(order_id, lines, event="order.created"):
    """A generic channel's order webhook body (see lib/adapters/generic.py)."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    status = "cancelled" if event == "order.cancelled" else "open"
    data = {"id": order_id, "status": status, "lines": lines, "updated_at": now}
    return {"type": event, "timestamp": now, "data": data}


def send_order(args):
    order_id = args.id or f"DEMO-{uuid.uuid4().hex[:8].upper()}"
    event = "order.cancelled" if args.cancel else "order.created"
    body = json.dumps(order_payload(order_id, args.lines, event)).encode()
    headers = sign_standard(args.secret, f"msg_{uuid.uuid4().hex}", time.time(), body)
    request = urllib.request.Request(
        args.url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        status, text = err.code, err.read().decode()
    except urllib.error.URLError as err:
        _out(f"cannot reach {args.url}: {err.reason}", sys.stderr)
        return 1
    _out(f"{event} {order_id}: HTTP {status} {text}")
    return 0 if status < 300 else 1


# -- command line --------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m simulators",
        description="Run one local simulator per channel type for the demo data.",
    )
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        choices=("127.0.0.1", "localhost"),
        help="loopback address to listen on (default %(default)s)",
    )
    parser.add_argument(
        "--base-port",
        type=int,
        default=DEFAULT_BASE_PORT,
        help="port of the generic simulator; the others follow (default %(default)s)",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=1.0,
        help="seconds between two looks at the quantities (default %(default)s)",
    )
    commands = parser.add_subparsers(dest="command")
    order = commands.add_parser(
        "order",
        help="send a signed order webhook to a generic channel",
        description="POST a Standard Webhooks-signed order.created (or "
        "order.cancelled) to a generic channel's webhook URL (shown on the "
        "channel form).",
    )
    order.add_argument("url", help="the channel's webhook URL")
    order.add_argument("lines", nargs="*", type=_order_line, metavar="SKU=QTY")
    order.add_argument("--id", help="order id (default: a new one)")
    order.add_argument("--cancel", action="store_true", help="cancel order --id")
    order.add_argument(
        "--secret",
        default=GENERIC_WEBHOOK_SECRET,
        help="whsec_ secret (default: the demo generic channel's)",
    )
    args = parser.parse_args(argv)
    if args.command == "order" and not (args.lines or (args.cancel and args.id)):
        parser.error("order: give SKU=QTY lines (or --cancel --id ORDER)")
    if args.interval <= 0:
        parser.error("--interval must be positive")
    if not 0 <= args.base_port <= 65535 - len(CHANNEL_TYPES):
        parser.error("--base-port out of range")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.command == "order":
        return send_order(args)
    return serve(args)


if __name__ == "__main__":
    sys.exit(main())
