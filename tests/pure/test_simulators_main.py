"""``python -m simulators``: the demo's simulators, and the demo data that uses them.

The launcher's servers are started on free ports and driven by the real
adapters configured exactly as the demo channels are (the values are read
from the demo XML, only the port differs), so a drift between the demo data
and the launcher (a credential, a port, an external id) fails here rather
than in front of a newcomer.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from lib.adapters import ChannelConfig, StockUpdate, get_adapter_class
from lib.adapters.generic import GenericAdapter
from lib.signatures import verify_standard
from simulators import __main__ as launcher

ROOT = Path(__file__).resolve().parents[2]
DEMO_XML = ROOT / "data" / "demo" / "stock_channel_sync_demo.xml"
#: sync.channel field -> ChannelConfig field, where the names differ
CHANNEL_TO_CONFIG = {"external_location_id": "location_id"}
CONFIG_FIELDS = {
    "base_url",
    "api_key",
    "api_secret",
    "access_token",
    "refresh_token",
    "account_id",
    "location_id",
    "marketplace_id",
    "api_version",
    "token_url",
    "signing_secret",
}


# -- the demo XML ---------------------------------------------------------------
def _records(model):
    """``{xml id: {field: text or ref}}`` of the demo records of ``model``."""
    root = ET.parse(DEMO_XML).getroot()
    records = {}
    for record in root.iter("record"):
        if record.get("model") != model:
            continue
        values = {}
        for fld in record.findall("field"):
            values[fld.get("name")] = fld.get("ref") or fld.get("eval") or fld.text
        records[record.get("id")] = values
    return records


def _demo_channels():
    """``{channel type: {field: value}}`` of the demo channels."""
    return {vals["channel_type"]: vals for vals in _records("sync.channel").values()}


def _demo_skus():
    """``{product xml id: SKU}`` of the demo variants."""
    return {
        xmlid: vals["default_code"]
        for xmlid, vals in _records("product.product").items()
        if vals.get("default_code")
    }


def _demo_bindings():
    """``{(channel type, SKU): {external_id, external_variant_id}}``."""
    types = {
        xmlid: vals["channel_type"] for xmlid, vals in _records("sync.channel").items()
    }
    skus = _demo_skus()
    return {
        (types[vals["channel_id"]], skus[vals["product_id"]]): {
            "external_id": vals.get("external_id") or "",
            "external_variant_id": vals.get("external_variant_id") or "",
        }
        for vals in _records("channel.binding").values()
    }


def _config(channel_type, sim):
    """The ChannelConfig of the demo channel, pointed at ``sim``'s real port."""
    fixed = f"http://127.0.0.1:{launcher.port_of(channel_type)}"
    values = {"channel_type": channel_type, "timeout": 5.0}
    for name, value in _demo_channels()[channel_type].items():
        name = CHANNEL_TO_CONFIG.get(name, name)
        if name in CONFIG_FIELDS and value:
            values[name] = value.replace(fixed, sim.url)
    return ChannelConfig(**values)


def test_demo_data_matches_the_launcher():
    channels = _demo_channels()
    assert set(channels) == set(launcher.CHANNEL_TYPES)
    for channel_type, vals in channels.items():
        port = launcher.DEFAULT_BASE_PORT + launcher.CHANNEL_TYPES.index(channel_type)
        assert vals["base_url"] == f"http://127.0.0.1:{port}"
        assert launcher.port_of(channel_type) == port
        assert vals["sync_enabled"] == "True"
        assert "stock.warehouse0" in vals["warehouse_ids"]
        buffer = launcher.DEMO_BUFFERS.get(channel_type, 0)
        assert float(vals["buffer_qty"]) == buffer
    generic = channels["generic"]
    assert generic["signing_secret"] == launcher.GENERIC_SIGNING_SECRET
    assert generic["webhook_secret"] == launcher.GENERIC_WEBHOOK_SECRET
    assert launcher.GENERIC_SIGNING_SECRET.startswith("whsec_")
    # every demo variant on every channel, with the ids its simulator knows
    bindings = _demo_bindings()
    assert set(_demo_skus().values()) == set(launcher.DEMO_STOCK)
    assert set(bindings) == {
        (channel_type, sku)
        for channel_type in launcher.CHANNEL_TYPES
        for sku in launcher.DEMO_STOCK
    }
    for (channel_type, sku), ids in bindings.items():
        assert ids == launcher.external_ids(channel_type, sku), (channel_type, sku)
    # the initial stock the simulators start from
    skus = _demo_skus()
    stock = {
        skus[vals["product_id"]]: float(vals["inventory_quantity"])
        for vals in _records("stock.quant").values()
    }
    assert stock == launcher.DEMO_STOCK


@pytest.fixture
def sims():
    running = launcher.start_all(base_port=0)
    yield running
    launcher.stop_all(running)


def test_start_all_serves_the_demo_channels(sims):
    """Each simulator answers the demo channel's adapter and takes its pushes."""
    assert list(sims) == list(launcher.CHANNEL_TYPES)
    watcher = launcher.Watcher(sims)
    bindings = _demo_bindings()
    # six patchListingsItem calls in a row exceed Amazon's burst of five; the
    # push engine sends one SKU per job, this test sends them all at once
    sims["amazon"].buckets.clear()
    for channel_type, sim in sims.items():
        assert sim.port and sim.host == "127.0.0.1"
        for sku in launcher.DEMO_STOCK:
            assert sim.quantity(sku) == launcher.demo_quantity(channel_type, sku)
        adapter = get_adapter_class(channel_type)(_config(channel_type, sim))
        assert adapter.test_connection()
        updates = [
            StockUpdate(
                sku=sku,
                quantity=launcher.demo_quantity(channel_type, sku) - 1,
                sequence=1,
                idempotency_key=f"test-{channel_type}-{sku}",
                **bindings[channel_type, sku],
            )
            for sku in launcher.DEMO_STOCK
        ]
        results = adapter.set_quantities(updates)
        assert all(result.ok for result in results), (channel_type, results)
        for update in updates:
            assert sim.quantity(update.sku) == update.quantity
    lines = watcher.changes()
    assert len(lines) == len(sims) * len(launcher.DEMO_STOCK)
    first = launcher.demo_quantity("shopify", "DEMO-MUG-RED")
    assert f"[shopify] DEMO-MUG-RED {first} -> {first - 1}" in lines
    assert not any("refused" in line for line in lines)
    assert watcher.changes() == []


def test_refused_requests_are_reported(sims):
    watcher = launcher.Watcher(sims)
    answer = requests.get(
        sims["woocommerce"].url + "/wp-json/wc/v3/products", timeout=5
    )
    assert answer.status_code == 401
    assert watcher.changes() == [
        "[woocommerce] refused GET /wp-json/wc/v3/products: HTTP 401"
    ]


def test_stop_all_closes_the_ports():
    running = launcher.start_all(base_port=0)
    urls = [sim.url for sim in running.values()]
    launcher.stop_all(running)
    for url in urls:
        with pytest.raises(requests.ConnectionError):
            requests.get(url, timeout=2)


def _free(port):
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_taken_port_stops_the_others():
    """A port in use fails the start, and the simulators already up are stopped."""
    first = launcher.start_all(base_port=0)
    try:
        base = first["shopify"].port - 1  # the shopify slot is taken
        generic_was_free = _free(base)
        with pytest.raises(OSError):
            launcher.start_all(base_port=base)
        if generic_was_free:
            assert _free(base), "the generic simulator started first is stopped"
    finally:
        launcher.stop_all(first)


def test_command_line_runs_until_interrupted():
    """``python -m simulators`` from the addon root: URLs, changes, clean stop."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulators", "--base-port", "0", "--interval", "0.1"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        urls = {}
        for _n in range(len(launcher.CHANNEL_TYPES)):
            name, url = proc.stdout.readline().split()
            urls[name] = url
        assert list(urls) == list(launcher.CHANNEL_TYPES)
        assert all(
            re.fullmatch(r"http://127\.0\.0\.1:\d+", url) for url in urls.values()
        )
        assert launcher.GENERIC_SIGNING_SECRET in proc.stdout.readline()
        answer = requests.get(urls["generic"], params={"skus": "DEMO-CAP"}, timeout=5)
        assert answer.json()["items"] == [{"sku": "DEMO-CAP", "quantity": 25}]
        # a refused push shows up as a line
        requests.post(urls["generic"], json={"sku": "DEMO-CAP"}, timeout=5)
        line = proc.stdout.readline()
        assert "[generic] refused POST /: HTTP 401" in line
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert "stopping the simulators" in rest


def test_order_command_sends_a_signed_generic_webhook():
    received = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            payload = json.dumps({"status": "accepted"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        code = launcher.main(["order", url, "DEMO-CAP=2", "--id", "A-1"])
    finally:
        server.shutdown()
        server.server_close()
    assert code == 0
    ((headers, body),) = received
    verify_standard(headers, body, secrets=[launcher.GENERIC_WEBHOOK_SECRET])
    adapter = GenericAdapter(ChannelConfig(channel_type="generic"))
    (event,) = adapter.parse_webhook("", body, headers)
    assert event.kind == "order"
    assert event.order.external_id == "A-1"
    assert event.order.status == "open"
    assert [(line.sku, line.quantity) for line in event.order.lines] == [
        ("DEMO-CAP", 2)
    ]


def test_arguments():
    args = launcher.parse_args([])
    assert (args.host, args.base_port, args.interval) == ("127.0.0.1", 8701, 1.0)
    with pytest.raises(SystemExit):
        launcher.parse_args(["--host", "0.0.0.0"])
    with pytest.raises(SystemExit):
        launcher.parse_args(["order", "http://127.0.0.1:1/x"])
    with pytest.raises(SystemExit):
        launcher.parse_args(["order", "http://127.0.0.1:1/x", "DEMO-CAP"])
