"""GenericAdapter against GenericSimulator: signed pushes, the receiver's
guarantees (dedup, last-write-wins), error mapping, pagination and webhooks."""

import json
import time
from datetime import datetime

import pytest

from lib.adapters import get_adapter_class
from lib.adapters.base import (
    AuthenticationError,
    ChannelConfig,
    NewerSequenceError,
    PermanentChannelError,
    RateLimitedError,
    RetryableChannelError,
    StockUpdate,
    UnreachableError,
)
from lib.adapters.generic import GenericAdapter, format_datetime, message_id_for
from lib.signatures import generate_ed25519_keypair, generate_standard_secret
from simulators.generic import GenericSimulator

PUSH_FIELDS = {
    "sku",
    "quantity",
    "sequence",
    "external_id",
    "changed_at",
    "idempotency_key",
}


@pytest.fixture
def sim():
    simulator = GenericSimulator(seed=1)
    simulator.start()
    yield simulator
    simulator.stop()


def make_adapter(sim, **overrides):
    fields = {
        "channel_type": "generic",
        "base_url": sim.endpoint,
        "signing_secret": sim.secret,
        "timeout": 5.0,
    }
    fields.update(overrides)
    return GenericAdapter(ChannelConfig(**fields))


def update(sku="SKU-1", quantity=5, sequence=1, key=None, **kw):
    return StockUpdate(
        sku=sku,
        quantity=quantity,
        sequence=sequence,
        idempotency_key=key if key is not None else f"{sku}-{sequence}",
        **kw,
    )


def posts(sim):
    return [r for r in sim.requests if r.method == "POST"]


def gets(sim):
    return [r for r in sim.requests if r.method == "GET"]


# -- push ---------------------------------------------------------------------
def test_registry_finds_the_generic_adapter():
    assert get_adapter_class("generic") is GenericAdapter
    assert GenericAdapter.max_batch == 1


def test_push_applies_quantity_and_records_arrival(sim):
    adapter = make_adapter(sim)
    before = time.time()
    result = adapter.set_quantity(
        update(quantity=12, sequence=3, external_id="P-9", changed_at=1700000000.5)
    )
    after = time.time()
    assert result.ok and result.quantity == 12 and result.status == 200
    assert result.live_quantity is None
    assert sim.quantity("SKU-1") == 12
    quantity, received = sim.received_at["SKU-1"]
    assert quantity == 12 and before <= received <= after
    assert [h["applied"] for h in sim.history] == [True]
    (request,) = posts(sim)
    body = json.loads(request.body)
    assert set(body) == PUSH_FIELDS
    assert body["sequence"] == 3 and body["external_id"] == "P-9"
    assert body["changed_at"] == 1700000000.5
    assert body["idempotency_key"] == "SKU-1-3"
    assert request.headers["webhook-id"] == "SKU-1-3"
    assert request.headers["content-type"] == "application/json"
    assert adapter.calls == 1


def test_one_request_per_update(sim):
    adapter = make_adapter(sim)
    results = adapter.set_quantities([update(f"S{i}", i) for i in range(4)])
    assert [r.ok for r in results] == [True] * 4
    assert [r.sku for r in results] == ["S0", "S1", "S2", "S3"]
    assert len(posts(sim)) == 4
    assert {sku: sim.quantity(sku) for sku in ("S0", "S3")} == {"S0": 0, "S3": 3}
    assert adapter.set_quantities([]) == []


def test_push_signature_accepted_by_reference_library(sim):
    standardwebhooks = pytest.importorskip("standardwebhooks")
    make_adapter(sim).set_quantity(update(quantity=4))
    (request,) = posts(sim)
    parsed = standardwebhooks.Webhook(sim.secret).verify(request.body, request.headers)
    assert parsed["quantity"] == 4
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(generate_standard_secret()).verify(
            request.body, request.headers
        )


def test_push_with_ed25519_key_adds_v1a(sim):
    private, public = generate_ed25519_keypair()
    sim.secrets = []  # accept only the asymmetric signature
    sim.public_keys = [public]
    make_adapter(sim, signing_private_key=private).set_quantity(update(quantity=8))
    assert sim.quantity("SKU-1") == 8
    versions = [
        entry.split(",")[0]
        for entry in posts(sim)[0].headers["webhook-signature"].split()
    ]
    assert versions == ["v1", "v1a"]


def test_push_with_wrong_secret_is_refused(sim):
    adapter = make_adapter(sim, signing_secret=generate_standard_secret())
    with pytest.raises(AuthenticationError) as info:
        adapter.set_quantity(update())
    assert info.value.status == 401 and not info.value.retryable
    assert "signature refused" in str(info.value)
    assert sim.quantity("SKU-1") is None
    assert len(sim.rejected) == 1


def test_push_with_skewed_clock_is_refused_as_stale(sim):
    adapter = GenericAdapter(
        ChannelConfig("generic", base_url=sim.endpoint, signing_secret=sim.secret),
        clock=lambda: time.time() - 3600,
    )
    with pytest.raises(AuthenticationError, match="old"):
        adapter.set_quantity(update())


def test_previous_secret_accepted_during_rotation(sim):
    old = sim.secret
    sim.secret = generate_standard_secret()
    sim.secrets = [sim.secret, old]
    assert make_adapter(sim, signing_secret=old).set_quantity(update()).ok
    sim.secrets = [sim.secret]
    with pytest.raises(AuthenticationError):
        make_adapter(sim, signing_secret=old).set_quantity(update(sequence=2))


def test_missing_signing_config_fails_before_sending(sim):
    adapter = make_adapter(sim, signing_secret="")
    with pytest.raises(PermanentChannelError, match="Outbound Signing Secret"):
        adapter.set_quantities([update()])
    with pytest.raises(PermanentChannelError, match="base64"):
        make_adapter(sim, signing_secret="whsec_***").set_quantities([update()])
    assert sim.requests == []


def test_simulator_without_any_key_refuses_instead_of_accepting(sim):
    sim.secrets = []
    with pytest.raises(RetryableChannelError, match="misconfigured"):
        make_adapter(sim).set_quantity(update())
    assert sim.quantity("SKU-1") is None


def test_redelivery_changes_nothing(sim):
    adapter = make_adapter(sim)
    assert adapter.set_quantity(update(quantity=5, key="evt-1")).ok
    # the same event id again, even with another quantity: already processed
    result = adapter.set_quantity(update(quantity=9, sequence=2, key="evt-1"))
    assert result.ok and result.live_quantity == 5
    assert sim.quantity("SKU-1") == 5
    assert sim.received_at["SKU-1"][0] == 5
    assert [(h["applied"], h["duplicate"]) for h in sim.history] == [
        (True, False),
        (False, True),
    ]


def test_an_older_sequence_is_refused_with_the_shops_newer_one(sim):
    """Odoo is the only writer of sequences: a shop holding a newer one
    means Odoo's went back (a restored database). The push did not land,
    and the error says what to go above."""
    adapter = make_adapter(sim)
    adapter.set_quantity(update(quantity=7, sequence=2))
    (late,) = adapter.set_quantities([update(quantity=3, sequence=1)])
    assert not late.ok
    assert isinstance(late.error, NewerSequenceError)
    assert late.error.retryable and late.error.newer_sequence == 2
    assert late.live_quantity is None
    assert sim.quantity("SKU-1") == 7
    # a newer sequence still wins
    assert adapter.set_quantity(update(quantity=1, sequence=3)).ok
    assert sim.quantity("SKU-1") == 1
    # a shop that does not say which sequence it holds: nothing to go above
    sim.queue_response(200, {"applied": False, "quantity": 1})
    (refused,) = adapter.set_quantities([update(quantity=4, sequence=4)])
    assert isinstance(refused.error, NewerSequenceError)
    assert not refused.error.retryable and refused.error.newer_sequence is None


def test_rate_limited_with_retry_after(sim):
    adapter = make_adapter(sim)
    sim.queue_response(429, {"error": "slow down"}, {"Retry-After": "7"})
    with pytest.raises(RateLimitedError) as info:
        adapter.set_quantity(update())
    assert info.value.retry_after == 7.0 and info.value.retryable
    assert info.value.status == 429 and "slow down" in str(info.value)


def test_rate_limit_stops_the_rest_of_the_call(sim):
    adapter = make_adapter(sim)
    sim.queue_response(429, {"error": "slow down"}, {"Retry-After": "3"})
    results = adapter.set_quantities([update("A"), update("B"), update("C")])
    assert [r.ok for r in results] == [False, False, False]
    assert all(isinstance(r.error, RateLimitedError) for r in results)
    assert [r.error.retry_after for r in results] == [3.0, 3.0, 3.0]
    assert "not sent" in str(results[1].error)
    assert len(posts(sim)) == 1
    assert sim.quantities == {}


def test_server_error_is_retryable_and_per_item(sim):
    adapter = make_adapter(sim)
    sim.queue_response(500, {"error": "internal error"})
    results = adapter.set_quantities([update("A"), update("B")])
    assert not results[0].ok
    assert isinstance(results[0].error, RetryableChannelError)
    assert results[0].status == 500 and results[0].error.retryable
    # a 500 on one item does not stop the next one
    assert results[1].ok and sim.quantity("B") == 5
    sim.queue_response(503, {"error": "maintenance"})
    with pytest.raises(RetryableChannelError, match="maintenance"):
        adapter.set_quantity(update("C"))


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"<html><body>502 Bad Gateway</body></html>", "text/html"),
        (b"garbage\x00\xff", "application/octet-stream"),
        (b'{"applied": tr', "application/json"),
        (b'["applied"]', "application/json"),
        (b"OK", "text/plain"),
    ],
)
def test_a_2xx_not_the_contracts_json_is_not_a_delivery(sim, body, content_type):
    """A proxy or a broken shop answering 200 with an HTML page or garbage
    says nothing about the update: retried, never recorded as delivered."""
    adapter = make_adapter(sim)
    sim.queue_response(200, body, {"Content-Type": content_type})
    (result,) = adapter.set_quantities([update("A")])
    assert not result.ok
    assert type(result.error) is RetryableChannelError and result.error.retryable
    assert result.status == 200 and result.error.status == 200
    assert "not the JSON object of the contract" in str(result.error)
    assert result.error.response_text.startswith(body[:7].decode())
    # the next update goes on: the shop is reachable
    assert adapter.set_quantity(update("B")).ok and sim.quantity("B") == 5


@pytest.mark.parametrize(
    ("status", "body"),
    [(204, None), (200, None), (200, b" \r\n"), (202, {"applied": True})],
)
def test_an_empty_or_json_object_2xx_is_a_delivery(sim, status, body):
    """Standard Webhooks lets a receiver acknowledge with any 2xx and no
    body: ``204 No Content`` and an empty 200 are deliveries."""
    sim.queue_response(status, body)
    result = make_adapter(sim).set_quantity(update("A"))
    assert result.ok and result.status == status and result.error is None


def test_timeout_is_retryable(sim):
    adapter = make_adapter(sim, timeout=0.3)
    sim.queue_hang(2.0)
    started = time.monotonic()
    with pytest.raises(UnreachableError, match="timeout") as info:
        adapter.set_quantity(update())
    assert time.monotonic() - started < 1.5
    assert info.value.status is None and info.value.retryable


def test_connection_refused_is_retryable_and_stops_the_call(sim):
    adapter = make_adapter(sim)
    sim.stop()
    results = adapter.set_quantities([update("A"), update("B")])
    # the channel did not answer: Odoo pauses it rather than trying again
    assert all(isinstance(r.error, UnreachableError) for r in results)
    assert all(r.error.retryable for r in results)
    assert "connection" in str(results[0].error)
    assert adapter.calls == 1


def test_client_error_is_permanent_with_the_shops_message(sim):
    adapter = make_adapter(sim)
    with pytest.raises(PermanentChannelError) as info:
        adapter.set_quantity(update(quantity=-2))
    err = info.value
    assert err.status == 422 and not err.retryable
    assert "quantity must be >= 0 (got -2 for SKU-1)" in str(err)
    results = adapter.set_quantities([update("A", -1), update("B", 2)])
    assert isinstance(results[0].error, PermanentChannelError)
    assert results[0].status == 422 and "quantity must be >= 0" in results[0].response
    assert results[1].ok


def test_fault_injection_of_the_base_simulator(sim):
    adapter = make_adapter(sim)
    sim.down = True
    with pytest.raises(RetryableChannelError) as info:
        adapter.set_quantity(update())
    assert info.value.status == 503


# -- reads --------------------------------------------------------------------
def test_read_quantities_paginates(sim):
    for i in range(7):
        sim.set_stock(f"SKU-{i}", i * 10)
    adapter = make_adapter(sim, extra={"page_size": 3})
    levels = list(adapter.read_quantities())
    assert [(lv.sku, lv.quantity) for lv in levels] == [
        (f"SKU-{i}", i * 10) for i in range(7)
    ]
    requests = gets(sim)
    assert [r.query["page"] for r in requests] == ["1", "2", "3"]
    assert {r.query["per_page"] for r in requests} == {"3"}


def test_read_quantities_for_some_skus_asks_for_them_by_name(sim):
    for i in range(7):
        sim.set_stock(f"SKU-{i}", i)
    adapter = make_adapter(sim, extra={"page_size": 3})
    levels = list(adapter.read_quantities([update("SKU-1"), update("SKU-4")]))
    assert [(lv.sku, lv.quantity) for lv in levels] == [("SKU-1", 1), ("SKU-4", 4)]
    assert len(gets(sim)) == 1  # one filtered request, no catalogue scan
    assert gets(sim)[0].query["skus"] == "SKU-1,SKU-4"
    assert list(adapter.read_quantities([])) == []


def test_read_quantities_chunks_long_sku_lists(sim):
    from lib.adapters.generic import SKU_FILTER_CHUNK

    skus = [f"S{i:04d}" for i in range(SKU_FILTER_CHUNK + 5)]
    for sku in skus:
        sim.set_stock(sku, 1)
    adapter = make_adapter(sim, extra={"page_size": 250})
    levels = list(adapter.read_quantities([update(s) for s in skus]))
    assert sorted(lv.sku for lv in levels) == skus
    assert len(gets(sim)) == 2


def test_read_quantities_sends_api_key(sim):
    sim.api_key = "k-123"
    sim.set_stock("A", 1)
    assert [lv.sku for lv in make_adapter(sim, api_key="k-123").read_quantities()] == [
        "A"
    ]
    with pytest.raises(AuthenticationError):
        list(make_adapter(sim, api_key="wrong").read_quantities())


def test_pagination_that_does_not_advance_is_an_error(sim):
    sim.queue_response(200, {"items": [{"sku": "A", "quantity": 1}], "next_page": 1})
    with pytest.raises(PermanentChannelError, match="does not move past"):
        list(make_adapter(sim).read_quantities())


@pytest.mark.parametrize(
    "body",
    [
        {"items": [{"sku": "A"}], "next_page": None},
        {"items": [{"sku": "A", "quantity": "many"}], "next_page": None},
        {"items": [{"sku": "", "quantity": 1}], "next_page": None},
        {"things": []},
        ["not", "an", "object"],
        "not json at all",
    ],
)
def test_malformed_read_answers_are_permanent_errors(sim, body):
    if isinstance(body, str):
        sim.queue_response(200, body.encode())
    else:
        sim.queue_response(200, body)
    with pytest.raises(PermanentChannelError, match="reading quantities"):
        list(make_adapter(sim).read_quantities())


def test_fetch_orders_since(sim):
    sim.add_order("O1", [("A", 1)], status="paid", updated_at=datetime(2025, 3, 1, 9))
    sim.add_order("O2", [("A", 2)], status="paid", updated_at=datetime(2025, 3, 2, 9))
    sim.add_order(
        "O3",
        [{"sku": "B", "quantity": 1, "id": "L7", "external_id": "P7"}],
        status="cancelled",
        updated_at=datetime(2025, 3, 3, 9),
    )
    sim.add_order(
        "O4",
        [("B", 3)],
        status="refunded",
        updated_at=datetime(2025, 3, 4, 9),
        restock=False,
    )
    sim.add_order("O5", [("C", 1)], status="created", updated_at=datetime(2025, 3, 5))
    adapter = make_adapter(sim, extra={"page_size": 2})
    orders = list(adapter.fetch_orders(datetime(2025, 3, 2, 9, 0, 0, 500000)))
    # the cursor is rounded down to the second: O2 (exactly then) is included
    assert [o.external_id for o in orders] == ["O2", "O3", "O4", "O5"]
    assert [o.status for o in orders] == ["open", "cancelled", "refunded", "open"]
    assert orders[0].updated_at == datetime(2025, 3, 2, 9)
    assert orders[0].lines[0].sku == "A" and orders[0].lines[0].quantity == 2
    # a line's own id is not a product's: only external_id names one
    assert orders[1].lines[0].external_id == "P7"
    assert orders[2].restock is False and orders[0].restock is True
    requests = gets(sim)
    assert [r.path for r in requests] == ["/orders", "/orders"]
    assert requests[0].query["updated_since"] == "2025-03-02T09:00:00Z"
    assert [r.query["page"] for r in requests] == ["1", "2"]


def test_fetch_orders_without_cursor_reads_all(sim):
    sim.add_order("O1", [("A", 1)])
    assert [o.external_id for o in make_adapter(sim).fetch_orders(None)] == ["O1"]
    assert "updated_since" not in gets(sim)[0].query


def test_malformed_order_is_a_permanent_error(sim):
    sim.queue_response(200, {"orders": [{"status": "paid", "lines": []}]})
    with pytest.raises(PermanentChannelError, match="order has no 'id'"):
        list(make_adapter(sim).fetch_orders(datetime(2025, 1, 1)))


def test_format_datetime_is_utc_and_rounded_down():
    from datetime import timedelta, timezone

    aware = datetime(2025, 1, 1, 12, 0, 0, 999999, tzinfo=timezone(timedelta(hours=2)))
    assert format_datetime(aware) == "2025-01-01T10:00:00Z"


def test_test_connection(sim):
    sim.set_stock("A", 1)
    sim.set_stock("B", 1)
    message = make_adapter(sim).test_connection()
    assert sim.endpoint in message and "1 item(s) and more" in message
    assert gets(sim)[0].query == {"page": "1", "per_page": "1"}
    sim.api_key = "secret-key"
    with pytest.raises(AuthenticationError):
        make_adapter(sim, api_key="nope").test_connection()
    sim.down = True
    with pytest.raises(RetryableChannelError):
        make_adapter(sim, api_key="secret-key").test_connection()


def test_test_connection_requires_signing_config(sim):
    with pytest.raises(PermanentChannelError, match="Signing Secret"):
        make_adapter(sim, signing_secret="").test_connection()
    with pytest.raises(PermanentChannelError, match="base_url"):
        make_adapter(sim, base_url="").test_connection()


# -- idempotency keys -----------------------------------------------------------
def test_message_id_for():
    assert message_id_for("SKU-1-3") == "SKU-1-3"
    dotted = message_id_for("chan.7.sku.3")
    assert dotted.startswith("msg_") and "." not in dotted
    assert dotted == message_id_for("chan.7.sku.3")  # stable across retries
    assert dotted != message_id_for("chan.7.sku.4")
    assert message_id_for("") != message_id_for("")  # random when there is no key
    assert message_id_for("x" * 300).startswith("msg_")


def test_dotted_idempotency_key_still_deduplicates(sim):
    adapter = make_adapter(sim)
    adapter.set_quantity(update(quantity=2, key="c.1.s.1"))
    adapter.set_quantity(update(quantity=6, key="c.1.s.1"))
    assert sim.quantity("SKU-1") == 2
    assert json.loads(posts(sim)[0].body)["idempotency_key"] == "c.1.s.1"


# -- inbound webhooks ---------------------------------------------------------------
HEADERS = {"Webhook-Id": "msg_abc", "webhook-timestamp": "1", "webhook-signature": "x"}


def envelope(event_type, data, timestamp="2025-03-01T10:00:00Z"):
    return {"type": event_type, "timestamp": timestamp, "data": data}


@pytest.fixture
def adapter():
    return GenericAdapter(ChannelConfig("generic", base_url="http://127.0.0.1:9"))


@pytest.mark.parametrize("event_type", ["order.created", "order.paid", "order.updated"])
def test_webhook_order(adapter, event_type):
    data = {
        "id": 1001,
        "lines": [{"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 1}],
    }
    (event,) = adapter.parse_webhook(None, envelope(event_type, data), HEADERS)
    assert event.kind == "order" and event.idempotency_key == "msg_abc"
    assert event.event_time == datetime(2025, 3, 1, 10)
    assert event.order.external_id == "1001" and event.order.status == "open"
    assert [(ln.sku, ln.quantity) for ln in event.order.lines] == [("A", 2), ("B", 1)]
    assert event.order.updated_at == datetime(2025, 3, 1, 10)
    assert event.order.created_at is None
    data["created_at"] = "2025-02-28T23:30:00Z"
    (event,) = adapter.parse_webhook(None, envelope(event_type, data), HEADERS)
    assert event.order.created_at == datetime(2025, 2, 28, 23, 30)


def test_webhook_cancel_and_refund(adapter):
    (cancel,) = adapter.parse_webhook(
        None, envelope("order.cancelled", {"id": "7"}), HEADERS
    )
    assert cancel.kind == "cancel" and cancel.order.status == "cancelled"
    assert cancel.order.lines == []
    (refund,) = adapter.parse_webhook(
        None,
        envelope(
            "order.refunded",
            {"id": "7", "restock": False, "lines": [{"sku": "A", "quantity": 1}]},
        ),
        HEADERS,
    )
    assert refund.kind == "cancel" and refund.order.status == "refunded"
    assert refund.order.restock is False


def test_webhook_inventory_single_and_list(adapter):
    (single,) = adapter.parse_webhook(
        None, envelope("inventory.updated", {"sku": "A", "quantity": 4}), HEADERS
    )
    assert single.kind == "inventory"
    assert [(lv.sku, lv.quantity) for lv in single.levels] == [("A", 4)]
    assert single.levels[0].updated_at == datetime(2025, 3, 1, 10)
    items = {"items": [{"sku": "A", "quantity": 1}, {"sku": "B", "quantity": 0}]}
    (many,) = adapter.parse_webhook(None, envelope("inventory.updated", items), HEADERS)
    assert [(lv.sku, lv.quantity) for lv in many.levels] == [("A", 1), ("B", 0)]


def test_webhook_other_types_are_ignored(adapter):
    (event,) = adapter.parse_webhook(None, envelope("customer.created", {}), HEADERS)
    assert event.kind == "ignored" and event.idempotency_key == "msg_abc"


def test_webhook_raw_body_and_topic_fallback(adapter):
    body = json.dumps({"data": {"sku": "A", "quantity": 3}}).encode()
    (event,) = adapter.parse_webhook("inventory.updated", body, HEADERS)
    assert event.kind == "inventory" and event.event_time is None


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (envelope("order.created", None), "'data' object missing"),
        (envelope("order.created", {"lines": []}), "no 'id'"),
        (envelope("order.created", {"id": 1}), "no 'lines' list"),
        (envelope("order.paid", {"id": 1, "lines": [{"quantity": 1}]}), "without sku"),
        (envelope("order.paid", {"id": 1, "lines": [{"sku": "A"}]}), "bad quantity"),
        (envelope("inventory.updated", {"sku": "A"}), "quantity must be a number"),
        (envelope("inventory.updated", {"quantity": 1}), "item without sku"),
        (envelope("inventory.updated", {"items": []}), "no inventory items"),
        (envelope("order.created", {"id": 1, "lines": []}, "yesterday"), "timestamp"),
        (b"{not json", "not JSON"),
        ([1, 2], "JSON object"),
        (
            envelope("order.created", {"id": {"a": 1}, "lines": []}),
            "order id must be a string or an integer, got dict",
        ),
        (
            envelope("order.paid", {"id": 1, "lines": [{"sku": ["A"], "quantity": 1}]}),
            "order line sku must be a string or an integer, got list",
        ),
        (
            envelope("inventory.updated", {"sku": True, "quantity": 1}),
            "inventory sku must be a string or an integer, got bool",
        ),
    ],
)
def test_webhook_payload_missing_what_the_type_needs(adapter, payload, message):
    with pytest.raises(ValueError, match=message):
        adapter.parse_webhook(None, payload, HEADERS)


def test_webhook_without_id_header(adapter):
    with pytest.raises(ValueError, match="webhook-id"):
        adapter.parse_webhook(None, envelope("order.created", {}), {})


@pytest.mark.parametrize("blank", [" ", "  ", "\t", " \t "])
def test_webhook_id_is_the_key_as_signed(adapter, blank):
    """The signature check strips blanks around webhook-id, so the key does
    too: a captured delivery with a blank added is the same event."""
    body = envelope("order.created", {"id": "1", "lines": []})
    [plain] = adapter.parse_webhook(None, body, HEADERS)
    padded = dict(HEADERS, **{"Webhook-Id": f"{blank}msg_abc{blank}"})
    [event] = adapter.parse_webhook(None, body, padded)
    assert plain.idempotency_key == event.idempotency_key == "msg_abc"


def test_order_line_id_is_not_a_product_id(adapter):
    body = envelope(
        "order.created",
        {"id": "1", "lines": [{"id": 1, "sku": "A", "quantity": 2}]},
    )
    [event] = adapter.parse_webhook(None, body, HEADERS)
    assert event.order.lines[0].external_id == ""


@pytest.mark.parametrize(
    ("status", "kind", "normalised"),
    [
        (None, "order", "open"),
        ("processing", "order", "open"),
        ("cancelled", "cancel", "cancelled"),
        ("canceled", "cancel", "cancelled"),
        ("refunded", "cancel", "refunded"),
    ],
)
def test_order_updated_reads_its_status(adapter, status, kind, normalised):
    """An update that says the order is cancelled releases it, as
    order.cancelled does; any other status keeps following the order."""
    data = {"id": "1", "lines": [{"sku": "A", "quantity": 2}]}
    if status:
        data["status"] = status
    [event] = adapter.parse_webhook(None, envelope("order.updated", data), HEADERS)
    assert (event.kind, event.order.status) == (kind, normalised)
