"""WooCommerceAdapter against WooCommerceSimulator: batches, pages, orders, hooks."""

import contextlib
import json
import socket
from datetime import datetime, timedelta, timezone
from urllib.parse import quote, quote_plus

import pytest
import requests

from lib.adapters.base import (
    AuthenticationError,
    ChannelConfig,
    ChannelError,
    PermanentChannelError,
    RateLimitedError,
    RetryableChannelError,
    StockUpdate,
)
from lib.adapters.woocommerce import WebhookPayloadError, WooCommerceAdapter
from simulators.base import Response
from simulators.woocommerce import WooCommerceSimulator


@pytest.fixture
def sim():
    simulator = WooCommerceSimulator().start()
    yield simulator
    simulator.stop()


def make_adapter(sim, **overrides):
    fields = {
        "base_url": sim.url,
        "api_key": sim.consumer_key,
        "api_secret": sim.consumer_secret,
        **overrides,
    }
    return WooCommerceAdapter(ChannelConfig("woocommerce", **fields))


@contextlib.contextmanager
def socket_closed_at_once():
    """A loopback port nothing listens on: a connection to it is refused."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    yield port


def batches(sim):
    """(path, update items) of every batch request received."""
    return [
        (req.path, json.loads(req.body)["update"])
        for req in sim.requests
        if req.path.endswith("/batch")
    ]


# -- connection and auth -------------------------------------------------------
def test_connection_counts_products(sim):
    sim.seed_products(3)
    assert "3 products" in make_adapter(sim).test_connection()
    assert sim.requests[0].headers["authorization"].startswith("Basic ")


@pytest.mark.parametrize("field", ["api_key", "api_secret"])
def test_wrong_keys_are_an_authentication_error(sim, field):
    pid = sim.add_product("A", quantity=2)
    adapter = make_adapter(sim, **{field: "wrong"})
    with pytest.raises(AuthenticationError) as err:
        adapter.test_connection()
    assert err.value.status == 401
    assert "woocommerce_rest_authentication_error" in str(err.value)
    with pytest.raises(AuthenticationError):
        adapter.set_quantities([StockUpdate("A", 9, external_id=str(pid))])
    assert sim.quantity("A") == 2


def test_keys_never_go_in_clear_to_a_remote_host():
    config = ChannelConfig(
        "woocommerce", base_url="http://shop.example", api_key="ck", api_secret="cs"
    )
    adapter = WooCommerceAdapter(config)
    with pytest.raises(PermanentChannelError, match="HTTPS"):
        adapter.test_connection()
    assert adapter.calls == 0


def test_query_string_auth_for_servers_that_drop_the_header(sim):
    """Some servers do not hand the Authorization header to WooCommerce:
    the keys then go as query parameters, on every call, and only there."""
    pid = sim.add_product("A", quantity=2)
    adapter = WooCommerceAdapter(
        ChannelConfig(
            "woocommerce",
            base_url=sim.url,
            api_key=sim.consumer_key,
            api_secret=sim.consumer_secret,
            extra={"query_string_auth": True},
        )
    )
    assert "1 products" in adapter.test_connection()
    adapter.set_quantities([StockUpdate("A", 9, external_id=str(pid))])
    assert sim.quantity("A") == 9
    assert sim.requests
    for req in sim.requests:
        assert "authorization" not in req.headers
        assert req.query["consumer_key"] == sim.consumer_key
        assert req.query["consumer_secret"] == sim.consumer_secret


def test_a_server_that_is_not_woocommerce_is_named_so(sim):
    """A 404 that is not WooCommerce's own (no code) means the URL is no
    WooCommerce shop: said so, not "None: None"."""
    sim.scripted.append(Response(404, {"errors": "Not Found"}))
    with pytest.raises(PermanentChannelError) as caught:
        make_adapter(sim).test_connection()
    assert "no WooCommerce REST API answers at" in str(caught.value)
    assert "None: None" not in str(caught.value)


def _query_string_adapter(base_url, key, secret):
    return WooCommerceAdapter(
        ChannelConfig(
            "woocommerce",
            base_url=base_url,
            api_key=key,
            api_secret=secret,
            timeout=2,
            extra={"query_string_auth": True},
        )
    )


@pytest.mark.parametrize("secret", ["cs_secret_value", "cs_S3cr3t+Key/x=1&y"])
def test_query_string_auth_keeps_the_keys_out_of_errors(secret):
    """A transport error names the URL it failed on: with the keys in the
    query string, its text (which the event log keeps) must not, in any
    form the URL holds them (percent-encoded: "+", "/", "=")."""
    with socket_closed_at_once() as port:
        adapter = _query_string_adapter(
            f"http://127.0.0.1:{port}", "ck_visible_key", secret
        )
        with pytest.raises(ChannelError) as caught:
            adapter.test_connection()
    err = caught.value
    assert "127.0.0.1" in str(err)
    for text in (str(err), err.response_text, repr(err.args)):
        for form in (secret, quote_plus(secret), quote(secret, safe="")):
            assert form not in text
        assert "ck_visible_key" not in text
    assert err.__cause__ is None


@pytest.mark.parametrize(
    "status, cut", [(404, 200), (502, 2000), (400, 2000), (400, 0)]
)
def test_query_string_auth_keeps_the_keys_out_of_echoed_answers(sim, status, cut):
    """A proxy's error page may echo the URL it was asked, keys included,
    where the error's excerpt of the answer (200 characters of a 404, 2000
    of others) cuts it in two: no part of it stays either."""
    secret = "cs_S3cr3t+Key/x=1&y"
    sent = quote_plus(secret)
    # the key begins 5 characters before the cut ({"echo": " is 10 long)
    echo = "x" * max(0, cut - 5 - 10 - 16) + "consumer_secret=" + sent + " end"
    serve = sim.handle

    def handle(req):
        if req.path.startswith("/wp-json/wc/v3/products"):
            return Response(status, {"echo": echo})
        return serve(req)

    sim.handle = handle
    adapter = _query_string_adapter(sim.url, sim.consumer_key, secret)
    with pytest.raises(ChannelError) as caught:
        adapter.test_connection()
    err = caught.value
    for text in (str(err), err.response_text or "", repr(err.args)):
        assert sent[:5] not in text


# -- push ----------------------------------------------------------------------
def test_single_product_set(sim):
    pid = sim.add_product("A", quantity=2)
    result = make_adapter(sim).set_quantity(StockUpdate("A", 9, external_id=str(pid)))
    assert result.ok and result.quantity == 9
    assert sim.quantity("A") == 9
    assert batches(sim) == [
        (
            "/wp-json/wc/v3/products/batch",
            [{"id": pid, "manage_stock": True, "stock_quantity": 9}],
        )
    ]


def test_variation_goes_to_its_parent_batch(sim):
    parent, (_small, medium) = sim.add_variable_product("T", [("T-S", 1), ("T-M", 2)])
    update = StockUpdate(
        "T-M", 6, external_id=str(parent), external_variant_id=str(medium)
    )
    assert make_adapter(sim).set_quantity(update).ok
    assert sim.quantity("T-M") == 6 and sim.quantity("T-S") == 1
    [(path, items)] = batches(sim)
    assert path == f"/wp-json/wc/v3/products/{parent}/variations/batch"
    assert items == [{"id": medium, "manage_stock": True, "stock_quantity": 6}]


def test_bulk_push_splits_at_100_per_endpoint(sim):
    ids = sim.seed_products(250)
    parent, var_ids = sim.add_variable_product("T", [("T-S", 0), ("T-M", 0)])
    updates = [
        StockUpdate(f"SKU-{n:05d}", n, external_id=str(p)) for n, p in enumerate(ids)
    ]
    updates += [
        StockUpdate(sku, 4, external_id=str(parent), external_variant_id=str(vid))
        for sku, vid in zip(("T-S", "T-M"), var_ids, strict=True)
    ]
    adapter = make_adapter(sim)
    results = adapter.set_quantities(updates)
    assert all(r.ok for r in results)
    assert [len(items) for _path, items in batches(sim)] == [100, 100, 50, 2]
    assert adapter.calls == 4
    assert all(sim.quantity(f"SKU-{n:05d}") == n for n in range(250))
    assert sim.quantity("T-S") == sim.quantity("T-M") == 4


def test_over_limit_batch_is_refused_by_the_simulator(sim):
    ids = sim.seed_products(101, quantity=1)
    answer = requests.post(
        f"{sim.url}/wp-json/wc/v3/products/batch",
        json={"update": [{"id": pid, "stock_quantity": 5} for pid in ids]},
        auth=(sim.consumer_key, sim.consumer_secret),
        timeout=5,
    )
    assert answer.status_code == 413
    assert answer.json()["code"] == "woocommerce_rest_request_entity_too_large"
    assert set(sim.quantities.values()) == {1}


def test_adapter_adopts_a_lower_shop_limit(sim):
    sim.batch_limit = 40
    ids = sim.seed_products(100)
    adapter = make_adapter(sim)
    results = adapter.set_quantities(
        [StockUpdate(f"SKU-{n:05d}", 3, external_id=str(p)) for n, p in enumerate(ids)]
    )
    assert all(r.ok for r in results)
    assert adapter.max_batch == 40
    assert [len(items) for _path, items in batches(sim)] == [100, 40, 40, 20]
    assert sim.batch_calls == 3


def test_per_item_errors_map_to_their_results(sim):
    a, b = sim.add_product("A"), sim.add_product("B")
    results = make_adapter(sim).set_quantities(
        [
            StockUpdate("A", 1, external_id=str(a)),
            StockUpdate("GONE", 1, external_id="999999"),
            StockUpdate("B", 2, external_id=str(b)),
            StockUpdate("NOID", 2),
        ]
    )
    assert [r.ok for r in results] == [True, False, True, False]
    assert "woocommerce_rest_product_invalid_id" in results[1].response
    assert results[1].status == 400
    assert isinstance(results[1].error, PermanentChannelError)
    assert "no WooCommerce product id" in results[3].response
    assert (sim.quantity("A"), sim.quantity("B")) == (1, 2)


def test_per_item_server_errors_are_retryable(sim):
    """An item refused with a 5xx or 429 ``data.status`` failed on the shop's
    side (a lock, an overloaded database): it is tried again, while a 4xx
    says the item itself is wrong."""
    ids = [sim.add_product(sku) for sku in ("A", "B", "C", "D", "E")]

    def refused(pid, status):
        data = {"status": status}
        return {"id": pid, "error": {"code": "c", "message": "m", "data": data}}

    sim.scripted.append(
        Response(
            200,
            {
                "update": [
                    refused(ids[0], 500),
                    refused(ids[1], 503),
                    refused(ids[2], 429),
                    refused(ids[3], 400),
                    refused(ids[4], "502"),
                ]
            },
        )
    )
    updates = [
        StockUpdate(sku, 1, external_id=str(pid))
        for sku, pid in zip("ABCDE", ids, strict=True)
    ]
    results = make_adapter(sim).set_quantities(updates)
    assert not any(r.ok for r in results)
    errors = [r.error for r in results]
    assert [e.retryable for e in errors] == [True, True, True, False, True]
    assert type(errors[0]) is RetryableChannelError and errors[0].status == 500
    assert type(errors[1]) is RetryableChannelError
    assert isinstance(errors[2], RateLimitedError) and errors[2].status == 429
    assert type(errors[3]) is PermanentChannelError and errors[3].status == 400
    assert type(errors[4]) is RetryableChannelError
    assert "c: m" in str(errors[0]) and '"status": 500' in errors[0].response_text


def test_odd_item_errors_are_read_not_raised(sim):
    """An item error with an unreadable status (infinite, text) or without
    its object shape is that item's error: the rest of the batch is read."""
    ids = [sim.add_product(sku) for sku in ("A", "B", "C", "D")]
    body = (
        '{"update": ['
        f'{{"id": {ids[0]}, "error": {{"code": "c", "data": {{"status": 1e400}}}}}},'
        f'{{"id": {ids[1]}, "error": "the shop said no"}},'
        f'{{"id": {ids[2]}, "error": {{"code": "c", "data": {{"status": 409}}}}}},'
        f'{{"id": {ids[3]}, "stock_quantity": 1}}'
        "]}"
    )
    sim.scripted.append(Response(200, body))
    updates = [
        StockUpdate(sku, 1, external_id=str(pid))
        for sku, pid in zip("ABCD", ids, strict=True)
    ]
    results = make_adapter(sim).set_quantities(updates)
    assert [r.ok for r in results] == [False, False, False, True]
    assert type(results[0].error) is PermanentChannelError
    assert "the shop said no" in str(results[1].error)
    assert results[2].error.retryable, "409 is retried, as for a whole answer"


def test_duplicates_in_a_batch_keep_the_newest(sim):
    pid = sim.add_product("A")
    older = StockUpdate("A", 3, external_id=str(pid), sequence=1)
    newer = StockUpdate("A", 8, external_id=str(pid), sequence=2)
    results = make_adapter(sim).set_quantities([newer, older])
    assert [r.ok for r in results] == [True, True]
    [(_path, items)] = batches(sim)
    assert [item["stock_quantity"] for item in items] == [8]
    assert sim.quantity("A") == 8


def test_first_call_failing_raises(sim):
    pid = sim.add_product("A", quantity=1)
    sim.scripted.append(Response(503, {"code": "down", "message": "maintenance"}))
    with pytest.raises(RetryableChannelError) as err:
        make_adapter(sim).set_quantities([StockUpdate("A", 5, external_id=str(pid))])
    assert err.value.status == 503
    assert sim.quantity("A") == 1


def test_failure_after_progress_is_reported_per_item(sim):
    ids = sim.seed_products(150)
    sim.scripted.extend(
        [None, Response(429, {"code": "too_many"}, {"Retry-After": "7"})]
    )
    updates = [
        StockUpdate(f"SKU-{n:05d}", 5, external_id=str(p)) for n, p in enumerate(ids)
    ]
    results = make_adapter(sim).set_quantities(updates)
    assert all(r.ok for r in results[:100])
    assert not any(r.ok for r in results[100:])
    assert isinstance(results[120].error, RateLimitedError)
    assert results[120].error.retry_after == 7.0


# -- reads ---------------------------------------------------------------------
def test_read_quantities_walks_pages_and_variations(sim):
    sim.seed_products(250, quantity=4)
    sim.add_product("UNMANAGED", manage_stock=False)
    parent, var_ids = sim.add_variable_product("T", [("T-S", 1), ("T-M", 2)])
    adapter = make_adapter(sim)
    levels = list(adapter.read_quantities())
    skus = [level.sku for level in levels]
    assert len(levels) == 252 and "UNMANAGED" not in skus and "T" not in skus
    variation = next(level for level in levels if level.sku == "T-M")
    assert variation.external_id == str(parent)
    assert variation.external_variant_id == str(var_ids[1])
    assert variation.quantity == 2
    assert variation.updated_at.tzinfo is not None
    pages = [r.query.get("page") for r in sim.requests if r.path.endswith("/products")]
    assert pages == ["1", "2", "3"]
    assert adapter.calls == 4  # three product pages and one variation page


def test_read_quantities_of_given_items(sim):
    a = sim.add_product("A", quantity=1)
    sim.add_product("B", quantity=2)
    parent, (small,) = sim.add_variable_product("T", [("T-S", 5)])
    levels = make_adapter(sim).read_quantities(
        [
            StockUpdate("A", 0, external_id=str(a)),
            StockUpdate(
                "T-S", 0, external_id=str(parent), external_variant_id=str(small)
            ),
        ]
    )
    assert sorted((lv.sku, lv.quantity) for lv in levels) == [("A", 1), ("T-S", 5)]


# -- orders --------------------------------------------------------------------
def test_fetch_orders_since_uses_modified_after_and_pages(sim):
    a = sim.add_product("A")
    parent, (small,) = sim.add_variable_product("T", [("T-S", 5)])
    now = datetime.now(timezone.utc)
    sim.add_order("processing", [(a, 1)], modified=now - timedelta(days=2))
    recent = [
        sim.add_order("processing", [(a, 2), (small, 1)], modified=now),
        sim.add_order("cancelled", [(a, 1)], modified=now),
        sim.add_order("refunded", [(a, 1)], modified=now),
        sim.add_order("checkout-draft", [(a, 1)], modified=now),
        sim.add_order("on-hold", [(a, 1)], modified=now),
    ]
    adapter = make_adapter(sim)
    adapter.page_size = 2
    orders = list(adapter.fetch_orders(now - timedelta(hours=1)))
    assert [o.external_id for o in orders] == [str(i) for i in recent if i != recent[3]]
    assert [o.status for o in orders] == ["open", "cancelled", "refunded", "open"]
    line = orders[0].lines[1]
    assert (line.sku, line.quantity) == ("T-S", 1.0)
    assert (line.external_id, line.external_variant_id) == (str(parent), str(small))
    query = sim.requests[0].query
    assert query["modified_after"] == (now - timedelta(hours=1)).strftime(
        "%Y-%m-%dT%H:%M:%S"
    )
    assert query["dates_are_gmt"] == "true"
    assert adapter.calls == 3


def test_fetch_refunds_reads_each_refunds_lines_over_pages(sim):
    """An order lists its refunds by id and total; their lines come from
    ``/orders/<id>/refunds``, at positive quantities, page after page. A
    refund of an amount only has no line."""
    a = sim.add_product("A", 10)
    parent, (small,) = sim.add_variable_product("T", [("T-S", 5)])
    order = sim.add_order("processing", [(a, 3), (small, 2)])
    line_a, line_s = (item["id"] for item in sim.orders[order]["line_items"])
    first = sim.add_refund(order, [(line_a, 1)])
    sim.add_refund(order, [], amount="5.00")
    third = sim.add_refund(order, [(line_a, 1), (line_s, 2)], restock=False)
    assert sim.quantities == {"A": 11, "T-S": 5}, "only a restock gives units back"
    assert [r["id"] for r in sim.orders[order]["refunds"]] == [
        first,
        first + 1,
        third,
    ]
    adapter = make_adapter(sim)
    adapter.page_size = 2
    refunds = list(adapter.fetch_refunds(str(order)))
    assert [r.raw["id"] for r in refunds] == [first, first + 1, third]
    assert {r.external_id for r in refunds} == {str(order)}
    assert {r.status for r in refunds} == {"refunded"}
    assert [(ln.sku, ln.quantity) for ln in refunds[0].lines] == [("A", 1.0)]
    assert refunds[1].lines == []
    assert [(ln.sku, ln.quantity) for ln in refunds[2].lines] == [
        ("A", 1.0),
        ("T-S", 2.0),
    ]
    line = refunds[2].lines[1]
    assert (line.external_id, line.external_variant_id) == (str(parent), str(small))
    assert adapter.calls == 2
    assert sim.requests[-1].path.endswith(f"/orders/{order}/refunds")


def test_fetch_refunds_of_an_unknown_or_odd_order_is_refused(sim):
    adapter = make_adapter(sim)
    with pytest.raises(PermanentChannelError):
        list(adapter.fetch_refunds("999999"))
    with pytest.raises(PermanentChannelError, match="not a number"):
        list(adapter.fetch_refunds("12/../products"))
    assert adapter.calls == 1


# -- webhooks ------------------------------------------------------------------
ORDER = {
    "id": 727,
    "status": "processing",
    "date_modified_gmt": "2026-11-20T10:00:00",
    "line_items": [
        {"id": 1, "product_id": 93, "variation_id": 0, "quantity": 2, "sku": "A"},
        {"id": 2, "product_id": 22, "variation_id": 23, "quantity": 1, "sku": "T-S"},
    ],
}


@pytest.fixture
def adapter():
    config = ChannelConfig("woocommerce", base_url="https://shop.example")
    return WooCommerceAdapter(config)


@pytest.mark.parametrize(
    ("status", "kind", "normalised"),
    [
        ("processing", "order", "open"),
        ("on-hold", "order", "open"),
        ("pending", "order", "open"),
        ("completed", "order", "open"),
        ("cancelled", "cancel", "cancelled"),
        ("failed", "cancel", "cancelled"),
        ("refunded", "cancel", "refunded"),
    ],
)
def test_order_statuses(adapter, status, kind, normalised):
    body = dict(ORDER, status=status)
    [event] = adapter.parse_webhook("order.updated", body, {})
    assert event.kind == kind
    assert event.order.status == normalised
    assert event.idempotency_key.startswith(
        f"order.updated:727:2026-11-20T10:00:00:{status}:"
    )
    assert event.event_time == datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)
    assert [(ln.sku, ln.external_variant_id) for ln in event.order.lines] == [
        ("A", ""),
        ("T-S", "23"),
    ]


def test_order_created_and_key_follows_modification(adapter):
    [first] = adapter.parse_webhook("order.created", json.dumps(ORDER).encode(), {})
    [again] = adapter.parse_webhook("order.created", ORDER, {})
    later = dict(ORDER, date_modified_gmt="2026-11-20T10:05:00")
    [changed] = adapter.parse_webhook("order.created", later, {})
    assert first.kind == "order"
    assert first.idempotency_key == again.idempotency_key
    assert changed.idempotency_key != first.idempotency_key
    # when the order was placed, for the channel's order cutoff
    assert first.order.created_at is None
    placed = dict(ORDER, date_created_gmt="2026-10-02T09:00:00")
    [event] = adapter.parse_webhook("order.updated", placed, {})
    assert event.order.created_at == datetime(2026, 10, 2, 9, tzinfo=timezone.utc)


def test_draft_orders_and_unknown_topics_are_ignored(adapter):
    [event] = adapter.parse_webhook(
        "order.updated", dict(ORDER, status="checkout-draft"), {}
    )
    assert event.kind == "ignored"
    [event] = adapter.parse_webhook("coupon.created", {"id": 5}, {})
    assert event.kind == "ignored"


def test_deleted_order_releases(adapter):
    [event] = adapter.parse_webhook("order.deleted", {"id": 727}, {})
    assert event.kind == "cancel" and event.order.external_id == "727"


def test_each_deletion_of_an_order_is_an_event(adapter):
    """Trashed, restored, trashed again: two deletions with the same body,
    told apart by their delivery ids; a delivery sent again is one event."""

    def key(delivery):
        headers = {"X-WC-Webhook-Delivery-ID": delivery}
        [event] = adapter.parse_webhook("order.deleted", {"id": 727}, headers)
        return event.idempotency_key

    assert key("a1b2") != key("c3d4")
    assert key("a1b2") == key("a1b2")


def test_product_updated_reports_a_level(adapter):
    body = {
        "id": 23,
        "parent_id": 22,
        "sku": "T-S",
        "manage_stock": True,
        "stock_quantity": 4,
        "date_modified_gmt": "2026-11-20T10:00:00",
    }
    [event] = adapter.parse_webhook("product.updated", body, {})
    assert event.kind == "inventory"
    [level] = event.levels
    assert (level.sku, level.quantity) == ("T-S", 4)
    assert (level.external_id, level.external_variant_id) == ("22", "23")
    [event] = adapter.parse_webhook(
        "product.updated", dict(body, manage_stock=False, stock_quantity=None), {}
    )
    assert event.kind == "ignored"


@pytest.mark.parametrize("payload", [b"webhook_id=12", {"webhook_id": "12"}])
def test_saving_a_webhook_pings(adapter, payload):
    [event] = adapter.parse_webhook("action.woocommerce_webhook_ping", payload, {})
    assert event.kind == "ping" and event.idempotency_key == "ping:12"


@pytest.mark.parametrize(
    ("topic", "payload", "fragment"),
    [
        ("order.created", b"{oops", "not JSON"),
        ("order.created", "[]", "not a JSON object"),
        ("order.created", {k: v for k, v in ORDER.items() if k != "id"}, "id"),
        (
            "order.updated",
            {k: v for k, v in ORDER.items() if k != "date_modified_gmt"},
            "date_modified_gmt",
        ),
        ("order.updated", {k: v for k, v in ORDER.items() if k != "status"}, "status"),
        (
            "order.updated",
            {k: v for k, v in ORDER.items() if k != "line_items"},
            "line_items",
        ),
        ("order.created", dict(ORDER, line_items=[{"sku": "A"}]), "quantity"),
        ("order.deleted", {}, "id"),
        ("order.deleted", {"id": {"a": 1}}, "id must be a string or an integer"),
        # a live order's body replayed under an unsigned order.deleted topic
        ("order.deleted", ORDER, "only the order id"),
        (
            "order.created",
            dict(ORDER, id=[7]),
            "id must be a string or an integer",
        ),
        (
            "product.updated",
            {"id": 1, "date_modified_gmt": "2026-11-20T10:00:00"},
            "stock_quantity",
        ),
        (
            "product.updated",
            {
                "id": 1,
                "date_modified_gmt": "2026-11-20T10:00:00",
                "manage_stock": True,
                "stock_quantity": "lots",
            },
            "not a number",
        ),
    ],
)
def test_malformed_webhooks_raise_value_error(adapter, topic, payload, fragment):
    with pytest.raises(ValueError, match=fragment) as err:
        adapter.parse_webhook(topic, payload, {})
    assert isinstance(err.value, WebhookPayloadError)


def test_a_refund_in_the_same_second_is_another_state(adapter):
    """A refund keeps the order's lines; listed, it makes a new key."""
    created = adapter.parse_webhook("order.updated", dict(ORDER), {})[0]
    refunded = dict(ORDER, refunds=[{"id": 801, "total": "-2.00"}])
    again = dict(ORDER, refunds=[{"id": 801, "total": "-2.00"}, {"id": 802}])
    keys = [
        adapter.parse_webhook("order.updated", body, {})[0].idempotency_key
        for body in (refunded, again, dict(refunded))
    ]
    assert created.idempotency_key not in keys
    assert keys[0] != keys[1] and keys[0] == keys[2]
    assert (
        created.idempotency_key
        == (
            adapter.parse_webhook("order.updated", dict(ORDER, refunds=[]), {})[0]
        ).idempotency_key
    )


def test_two_states_of_one_second_are_two_events(adapter):
    """date_modified_gmt is to the second: an order paid then cancelled in
    the same second is two events; its redelivery is the same event; an
    edit of the lines in that second is another one."""
    [paid] = adapter.parse_webhook(
        "order.updated", dict(ORDER, status="processing"), {}
    )
    [again] = adapter.parse_webhook(
        "order.updated", dict(ORDER, status="processing"), {}
    )
    [cancelled] = adapter.parse_webhook(
        "order.updated", dict(ORDER, status="cancelled"), {}
    )
    edited_lines = [dict(line, quantity=9) for line in ORDER["line_items"]]
    [edited] = adapter.parse_webhook(
        "order.updated", dict(ORDER, status="processing", line_items=edited_lines), {}
    )
    assert paid.idempotency_key == again.idempotency_key
    keys = {paid.idempotency_key, cancelled.idempotency_key, edited.idempotency_key}
    assert len(keys) == 3


@pytest.mark.parametrize(
    ("topic", "body", "message"),
    [
        (
            "order.created",
            dict(ORDER, line_items=[{"sku": "A", "product_id": 5, "quantity": True}]),
            "not a number",
        ),
        (
            "order.created",
            dict(ORDER, line_items=[{"sku": "A", "product_id": 5, "quantity": {}}]),
            "not a number",
        ),
    ],
)
def test_quantities_no_channel_sends_are_refused(adapter, topic, body, message):
    """A boolean is not 1 unit: refused (400), not read as a quantity."""
    with pytest.raises((TypeError, ValueError), match=message):
        adapter.parse_webhook(topic, body, {})


@pytest.mark.parametrize("stock", [True, 2.9, "2.9", {"a": 1}])
def test_product_level_must_be_a_whole_number(adapter, stock):
    body = {
        "id": 9,
        "sku": "A",
        "date_modified_gmt": "2026-11-20T10:00:00",
        "manage_stock": True,
        "stock_quantity": stock,
    }
    with pytest.raises(ValueError, match="stock_quantity"):
        adapter.parse_webhook("product.updated", body, {})


@pytest.mark.parametrize(
    "odd",
    [
        "null",
        '"oops"',
        '{"id": %(b)s, "stock_quantity": "many"}',
        '{"id": %(b)s, "stock_quantity": 1e400}',
    ],
)
def test_one_odd_item_is_that_items_error(sim, odd):
    """An item answered with no object, or a quantity that is no number of
    units: that item is retried, the rest of the batch is delivered."""
    a, b = sim.add_product("A"), sim.add_product("B")
    odd = odd.replace("%(b)s", str(b))
    body = f'{{"update": [{{"id": {a}, "stock_quantity": 1}}, {odd}]}}'
    sim.scripted.append(Response(200, body))
    updates = [
        StockUpdate(sku, 1, external_id=str(pid)) for sku, pid in (("A", a), ("B", b))
    ]
    results = make_adapter(sim).set_quantities(updates)
    assert results[0].ok
    assert not results[1].ok and results[1].error.retryable


def test_order_deleted_asks_the_shop(sim):
    """order.deleted carries nothing that proves it fresh: the shop says
    whether the order is gone (trashed, or deleted for good); a 404 that is
    not WooCommerce's answer for an unknown order is an error."""
    mug = sim.add_product("MUG", 5)
    order_id = sim.add_order("processing", [(mug, 1)])
    adapter = make_adapter(sim)
    assert adapter.order_deleted(order_id) == (False, "processing")
    sim.trash_order(order_id)
    assert adapter.order_deleted(str(order_id)) == (True, "trash")
    # a trashed order is not listed, as WooCommerce's "any" status leaves it
    assert [o.external_id for o in adapter.fetch_orders(datetime(2000, 1, 1))] == []
    sim.restore_order(order_id)
    assert adapter.order_deleted(order_id) == (False, "processing")
    sim.trash_order(order_id, delete=True)
    assert adapter.order_deleted(order_id) == (True, "deleted")
    wrong_route = make_adapter(sim, base_url=sim.url + "/not-wordpress")
    with pytest.raises(ChannelError, match="rest_no_route"):
        wrong_route.order_deleted(order_id)
    with pytest.raises(PermanentChannelError):
        adapter.order_deleted("12; DROP")
    [event] = adapter.parse_webhook("order.deleted", {"id": order_id}, {})
    assert event.order.unconfirmed and event.kind == "cancel"
