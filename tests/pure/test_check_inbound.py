"""check_inbound: the values every channel type shares, refused before any
write (the webhook route answers 400 for them)."""

import json

import pytest

from lib.adapters import (
    ChannelConfig,
    ChannelOrder,
    InboundEvent,
    LiveLevel,
    OrderLine,
    check_inbound,
    get_adapter_class,
    json_depth_exceeds,
)
from lib.adapters.base import MAX_IDENTIFIER, MAX_JSON_DEPTH, MAX_QUANTITY


def order_event(quantity=1, sku="SKU-1", order_id="O-1", key="evt-1"):
    order = ChannelOrder(
        external_id=order_id,
        status="paid",
        lines=[OrderLine(sku=sku, quantity=quantity)],
    )
    return InboundEvent("order", key, order=order)


def level_event(quantity=5, sku="SKU-1", key="evt-2"):
    return InboundEvent(
        "inventory", key, levels=[LiveLevel(sku=sku, quantity=quantity)]
    )


def test_plain_events_pass():
    check_inbound([order_event(), level_event(), order_event(quantity=0)])
    check_inbound([level_event(quantity=-3)])  # a channel may report oversold
    check_inbound([InboundEvent("ignored", "evt-3")])


@pytest.mark.parametrize(
    "event",
    [
        order_event(sku="SKU\x001"),
        order_event(order_id="O\x00"),
        order_event(key="evt\x00"),
        level_event(sku="\x00"),
    ],
)
def test_nul_characters_are_refused(event):
    with pytest.raises(ValueError, match="NUL"):
        check_inbound([event])


@pytest.mark.parametrize(
    "event",
    [
        order_event(quantity=float("nan")),
        order_event(quantity=float("inf")),
        order_event(quantity=-1),
        order_event(quantity=MAX_QUANTITY + 1),
        level_event(quantity=float("-inf")),
        level_event(quantity=10**30),
        # beyond a 32-bit integer: no marketplace sends it, no binding holds it
        level_event(quantity=3_000_000_000),
    ],
)
def test_quantities_out_of_reach_are_refused(event):
    with pytest.raises(ValueError):
        check_inbound([event])


@pytest.mark.parametrize("quantity", ["7", None, True])
def test_quantity_that_is_no_number_is_refused(quantity):
    with pytest.raises(TypeError):
        check_inbound([level_event(quantity=quantity)])


def test_generic_order_with_infinite_quantity_parses_but_is_refused():
    """The parser keeps an order line's quantity as the channel sent it;
    1e400 is a JSON number (Python reads it as infinity)."""
    adapter = get_adapter_class("generic")(ChannelConfig("generic"))
    body = (
        '{"type": "order.created", "timestamp": "2026-11-22T10:00:00Z",'
        ' "data": {"id": "O-9", "lines": [{"sku": "SKU-1", "quantity": 1e400}]}}'
    )
    events = adapter.parse_webhook(
        "order.created", json.loads(body), {"webhook-id": "m"}
    )
    assert events[0].order.lines[0].quantity == float("inf")
    with pytest.raises(ValueError, match="finite"):
        check_inbound(events)


def test_identifiers_up_to_the_limit_pass():
    longest = "S" * MAX_IDENTIFIER
    check_inbound(
        [
            order_event(sku=longest, order_id=longest, key=longest),
            level_event(sku="Ünïcødé-€-😀"),
        ]
    )


@pytest.mark.parametrize(
    "event",
    [
        order_event(sku="S" * (MAX_IDENTIFIER + 1)),
        order_event(order_id="O" * 300_000),
        order_event(key="k" * (MAX_IDENTIFIER + 1)),
        level_event(sku="\u2f00" * 3000),
    ],
)
def test_identifiers_too_long_to_index_are_refused(event):
    with pytest.raises(ValueError, match=f"longer than {MAX_IDENTIFIER}"):
        check_inbound([event])


@pytest.mark.parametrize(
    "event",
    [
        # JSON's "\ud800" escape parses to a lone surrogate, which no UTF-8
        # database can store
        level_event(sku=json.loads('"\\ud800"')),
        order_event(order_id="O-" + json.loads('"\\udfff"')),
    ],
)
def test_lone_surrogates_are_refused(event):
    with pytest.raises(ValueError, match="not valid Unicode"):
        check_inbound([event])


def test_json_depth():
    def nested(depth):
        return json.loads("[" * depth + "]" * depth)

    assert not json_depth_exceeds({"a": [1, {"b": "c"}]})
    assert not json_depth_exceeds(nested(MAX_JSON_DEPTH))
    assert json_depth_exceeds(nested(MAX_JSON_DEPTH + 1))
    # deeper than Python's own recursion limit could walk
    assert json_depth_exceeds(nested(900))
    deep_dict = {"x": 1}
    for _i in range(MAX_JSON_DEPTH):
        deep_dict = {"x": deep_dict}
    assert json_depth_exceeds({"data": [1, 2, deep_dict]})


@pytest.mark.parametrize(
    "event",
    [
        level_event(sku={"a": 1}),
        level_event(sku=["SKU-1"]),
        order_event(order_id={"id": 1}),
        order_event(sku=True),
        order_event(key=1.5),
    ],
)
def test_identifiers_that_are_no_text_are_refused(event):
    """A parser that passes a JSON object through as an id: refused (a
    TypeError, answered 400), not handed to the database."""
    with pytest.raises(TypeError, match="must be text"):
        check_inbound([event])


def test_integer_identifiers_pass():
    check_inbound([order_event(order_id=4242, sku=17)])
