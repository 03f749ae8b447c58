"""EbayAdapter against EbaySimulator: OAuth refresh, bulk price/quantity in
calls of 25, throttling, the 250-revisions guard, pagination, orders and
Notification API messages."""

import base64
import json
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs

import pytest
import requests
from fakes import FakeClock, stock_updates

from lib.adapters import get_adapter_class
from lib.adapters.base import (
    AuthenticationError,
    LiveLevel,
    PermanentChannelError,
    RateLimitedError,
    RetryableChannelError,
    StockUpdate,
)
from lib.adapters.ebay import EbayAdapter, RevisionGuard
from simulators import get_simulator_class
from simulators.base import Response
from simulators.ebay import EbaySimulator

DAY = 24 * 3600.0


@pytest.fixture
def sim():
    with EbaySimulator() as simulator:
        yield simulator


def make_adapter(sim, clock=None, **extra):
    clock = clock or FakeClock()
    return EbayAdapter(sim.channel_config(extra=extra), clock=clock, sleep=clock.sleep)


def bulk_calls(sim):
    return sim.requests_for("POST", "/sell/inventory/v1/bulk_update_price_quantity")


def raw_token(sim):
    basic = base64.b64encode(f"{sim.client_id}:{sim.client_secret}".encode()).decode()
    answer = requests.post(
        sim.url + "/identity/v1/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": sim.refresh_token},
        headers={"Authorization": f"Basic {basic}"},
        timeout=5,
    )
    return answer.json()["access_token"]


def test_registries_build_adapter_and_simulator_without_arguments():
    assert get_adapter_class("ebay") is EbayAdapter
    simulator = get_simulator_class("ebay")()
    with simulator:
        rows = simulator.seed_skus(2)
        config = simulator.channel_config()
    assert rows[0]["external_variant_id"] in simulator.offers
    assert config.channel_type == "ebay" and config.token_url.endswith("/oauth2/token")


# -- pushes ---------------------------------------------------------------------
def test_single_update_sets_item_and_offer_with_a_refreshed_user_token(sim):
    rows = sim.seed_skus(2)
    adapter = make_adapter(sim)

    result = adapter.set_quantity(StockUpdate(**{**rows[0], "quantity": 7}))

    assert result.ok and result.status == 200
    assert sim.quantity(rows[0]["sku"]) == 7
    assert sim.offer_quantity(rows[0]["external_variant_id"]) == 7
    assert sim.quantity(rows[1]["sku"]) == 10
    [call] = bulk_calls(sim)
    assert call.headers["authorization"].startswith("Bearer v^1.1#")
    assert call.json() == {
        "requests": [
            {
                "sku": rows[0]["sku"],
                "shipToLocationAvailability": {"quantity": 7},
                "offers": [
                    {"offerId": rows[0]["external_variant_id"], "availableQuantity": 7}
                ],
            }
        ]
    }
    [token] = sim.requests_for("POST", "/identity/v1/oauth2/token")
    basic = token.headers["authorization"].removeprefix("Basic ")
    assert base64.b64decode(basic).decode() == f"{sim.client_id}:{sim.client_secret}"
    form = {k: v[0] for k, v in parse_qs(token.body.decode()).items()}
    assert form["grant_type"] == "refresh_token"
    assert (
        "https://api.ebay.com/oauth/api_scope/sell.inventory" in form["scope"].split()
    )


def test_update_without_offer_sets_the_ship_to_home_quantity_only(sim):
    [row] = sim.seed_skus(1)

    make_adapter(sim).set_quantity(StockUpdate(sku=row["sku"], quantity=4))

    assert bulk_calls(sim)[0].json()["requests"][0] == {
        "sku": row["sku"],
        "shipToLocationAvailability": {"quantity": 4},
    }
    assert sim.quantity(row["sku"]) == 4
    assert sim.offer_quantity(row["external_variant_id"]) == 10


def test_complete_listing_reads_the_items_published_offers(sim):
    """A binding made from the catalogue read needs its offers' ids: eBay
    lists the lower of the item's and the offer's quantity."""
    rows = sim.seed_skus(3)
    adapter = make_adapter(sim)
    level = LiveLevel(sku=rows[0]["sku"], quantity=10)
    done = adapter.complete_listing(level)
    assert done.external_variant_id == rows[0]["external_variant_id"]
    assert done.external_id == rows[0]["external_id"]
    # several published offers (one per marketplace); unpublished left out
    sim.offers["6000000001"] = dict(sim.offers[rows[1]["external_variant_id"]])
    sim.offers["6000000002"] = dict(
        sim.offers[rows[1]["external_variant_id"]], status="UNPUBLISHED"
    )
    both = adapter.complete_listing(LiveLevel(sku=rows[1]["sku"], quantity=1))
    assert both.external_variant_id == f"{rows[1]['external_variant_id']},6000000001"
    # an item without an offer, or a level that has its ids: as it is
    del sim.offers[rows[2]["external_variant_id"]]
    bare = LiveLevel(sku=rows[2]["sku"], quantity=1)
    assert adapter.complete_listing(bare) == bare
    calls = len(sim.requests_for("GET", "/sell/inventory/v1/offer"))
    assert adapter.complete_listing(done) == done
    assert len(sim.requests_for("GET", "/sell/inventory/v1/offer")) == calls


def test_sixty_updates_take_three_calls_of_at_most_25(sim):
    rows = sim.seed_skus(60)

    results = make_adapter(sim).set_quantities(stock_updates(rows, 3))

    assert all(r.ok for r in results)
    assert [len(c.json()["requests"]) for c in bulk_calls(sim)] == [25, 25, 10]
    assert {sim.quantity(r["sku"]) for r in rows} == {3}


def test_simulator_refuses_26_requests_in_one_raw_call(sim):
    rows = sim.seed_skus(26)
    body = {
        "requests": [
            {"sku": r["sku"], "shipToLocationAvailability": {"quantity": 1}}
            for r in rows
        ]
    }

    answer = requests.post(
        sim.url + "/sell/inventory/v1/bulk_update_price_quantity",
        json=body,
        headers={"Authorization": f"Bearer {raw_token(sim)}"},
        timeout=5,
    )

    assert answer.status_code == 400
    [error] = answer.json()["errors"]
    assert error["errorId"] == 25002 and "cannot exceed 25" in error["message"]
    assert {sim.quantity(r["sku"]) for r in rows} == {10}


def test_max_batch_of_one_follows_the_one_sku_per_call_reading(sim):
    rows = sim.seed_skus(3)

    make_adapter(sim, max_batch=1).set_quantities(stock_updates(rows, 2))

    assert [len(c.json()["requests"]) for c in bulk_calls(sim)] == [1, 1, 1]


def test_item_refusals_are_reported_per_item(sim):
    good, wrong_offer = sim.seed_skus(2)
    batch = [
        StockUpdate(**{**good, "quantity": 5}),
        StockUpdate(sku="NOT-LISTED", quantity=5),
        StockUpdate(**{**wrong_offer, "quantity": 5, "external_variant_id": "999"}),
    ]

    results = make_adapter(sim).set_quantities(batch)

    assert [r.ok for r in results] == [True, False, False]
    assert isinstance(results[1].error, PermanentChannelError)
    assert "25702" in str(results[1].error)
    assert "25709" in str(results[2].error) and "offerId" in str(results[2].error)
    assert sim.quantity(good["sku"]) == 5 and sim.quantity(wrong_offer["sku"]) == 10


def test_duplicates_in_a_batch_cost_one_revision(sim):
    [row] = sim.seed_skus(1)
    adapter = make_adapter(sim)
    batch = [
        StockUpdate(**{**row, "quantity": 1, "sequence": 1}),
        StockUpdate(**{**row, "quantity": 6, "sequence": 2}),
    ]

    results = adapter.set_quantities(batch)

    assert [(r.ok, r.quantity) for r in results] == [(True, 6), (True, 6)]
    assert len(bulk_calls(sim)[0].json()["requests"]) == 1
    assert sim.quantity(row["sku"]) == 6
    assert sim.revision_count(row["external_id"]) == 1


# -- throttling and tokens ----------------------------------------------------------
def test_429_raises_rate_limited_with_the_default_wait():
    simulator = EbaySimulator(rate_limit=(0.01, 2))
    with simulator:
        rows = simulator.seed_skus(3)
        adapter = make_adapter(simulator)
        adapter.set_quantity(StockUpdate(**{**rows[0], "quantity": 1}))
        adapter.set_quantity(StockUpdate(**{**rows[1], "quantity": 1}))
        with pytest.raises(RateLimitedError) as caught:
            adapter.set_quantity(StockUpdate(**{**rows[2], "quantity": 1}))
        assert simulator.quantity(rows[2]["sku"]) == 10
    assert caught.value.status == 429 and caught.value.retry_after == 60.0
    assert "2001" in str(caught.value)


def test_throttled_second_call_keeps_the_first_calls_results():
    simulator = EbaySimulator(rate_limit=(0.01, 1))
    with simulator:
        rows = simulator.seed_skus(60)
        results = make_adapter(simulator, rate_limit_retry_after=5).set_quantities(
            stock_updates(rows, 4)
        )
        applied = [simulator.quantity(r["sku"]) for r in rows]
    assert [r.ok for r in results] == [True] * 25 + [False] * 35
    assert all(isinstance(r.error, RateLimitedError) for r in results[25:])
    assert results[30].error.retry_after == 5
    assert applied == [4] * 25 + [10] * 35


def test_throttle_before_anything_was_sent_fails_the_whole_call():
    simulator = EbaySimulator(rate_limit=(0.01, 1))
    with simulator:
        rows = simulator.seed_skus(4)
        adapter = make_adapter(simulator)
        adapter.set_quantities(stock_updates(rows[:1], 1))
        with pytest.raises(RateLimitedError):
            adapter.set_quantities(stock_updates(rows[1:], 5))
        assert {simulator.quantity(r["sku"]) for r in rows[1:]} == {10}


def test_token_expiring_mid_run_is_renewed_once_and_the_run_goes_on(sim):
    rows = sim.seed_skus(60)
    adapter = make_adapter(sim)
    sim.expire_tokens_after(1)

    results = adapter.set_quantities(stock_updates(rows, 9))

    assert all(r.ok for r in results)
    assert {sim.quantity(r["sku"]) for r in rows} == {9}
    assert sim.token_requests == 2 and adapter.token_refreshes == 2
    assert len(bulk_calls(sim)) == 4  # the second call was refused, then repeated


def test_token_is_renewed_shortly_before_it_expires(sim):
    rows = sim.seed_skus(2)
    clock = FakeClock()
    adapter = make_adapter(sim, clock=clock)
    adapter.set_quantity(StockUpdate(**{**rows[0], "quantity": 1}))
    clock.now += 7200 - 30

    adapter.set_quantity(StockUpdate(**{**rows[1], "quantity": 1}))

    assert sim.token_requests == 2


def test_refused_refresh_is_an_authentication_error(sim):
    [row] = sim.seed_skus(1)
    revoked = EbayAdapter(sim.channel_config(refresh_token="v^1.1#revoked"))
    with pytest.raises(AuthenticationError, match="invalid_grant") as caught:
        revoked.set_quantity(StockUpdate(sku=row["sku"], quantity=1))
    assert "v^1.1#revoked" not in str(caught.value) + caught.value.response_text

    sim.granted_scopes.discard("https://api.ebay.com/oauth/api_scope/sell.inventory")
    with pytest.raises(AuthenticationError, match="invalid_scope"):
        make_adapter(sim).test_connection()
    assert bulk_calls(sim) == []


# -- the 250-revisions guard --------------------------------------------------------
def test_guard_holds_increases_in_the_reserve_and_lets_decreases_through(sim):
    [row] = sim.seed_skus(1)
    listing = row["external_id"]
    clock = FakeClock()
    adapter = make_adapter(sim, clock=clock, revision_limit=5, revision_reserve=2)

    def push(quantity):
        result = adapter.set_quantities([StockUpdate(**{**row, "quantity": quantity})])
        clock.now += 60
        return result[0]

    assert [push(q).ok for q in (10, 11, 12)] == [True, True, True]
    held = push(13)  # 3 revisions = limit - reserve: increases wait
    assert not held.ok and isinstance(held.error, RetryableChannelError)
    assert held.error.retry_after == pytest.approx(DAY - 180)
    assert push(14).error.retry_after == pytest.approx(DAY - 240)
    assert adapter.held_quantities() == {listing: 14}
    assert sim.quantity(row["sku"]) == 12

    assert push(5).ok and push(4).ok  # decreases may use the reserve
    assert adapter.held_quantities() == {}
    at_limit = push(0)
    assert not at_limit.ok and at_limit.error.retry_after == pytest.approx(DAY - 420)
    assert sim.quantity(row["sku"]) == 4 and sim.revision_count(listing) == 5

    clock.now += DAY  # every revision has left the window
    assert push(30).ok and sim.quantity(row["sku"]) == 30


def test_variations_of_one_listing_share_its_budget(sim):
    first, second = sim.seed_skus(2, variations=2)
    assert first["external_id"] == second["external_id"]
    adapter = make_adapter(sim, revision_limit=2, revision_reserve=0)

    adapter.set_quantities(stock_updates([first, second], 3))
    [result] = adapter.set_quantities([StockUpdate(**{**first, "quantity": 8})])

    assert not result.ok and "revision budget" in str(result.error)
    assert sim.quantity(first["sku"]) == 3


def test_simulator_refuses_revisions_past_its_limit():
    simulator = EbaySimulator(revision_limit=2)
    with simulator:
        [row] = simulator.seed_skus(1)
        adapter = make_adapter(simulator, revision_limit=100)
        results = [
            adapter.set_quantities([StockUpdate(**{**row, "quantity": q})])[0]
            for q in (1, 2, 3)
        ]
        final = simulator.quantity(row["sku"])
    assert [r.ok for r in results] == [True, True, False]
    assert isinstance(results[2].error, PermanentChannelError)
    assert "25002" in str(results[2].error) and final == 2


def test_guard_counts_in_a_rolling_window():
    guard = RevisionGuard(limit=3, reserve=1, window=100)
    guard.record("L", 5, now=0)
    guard.record("L", 6, now=10)
    assert guard.check("L", 7, None, now=20) == pytest.approx(80)
    assert guard.check("L", 4, None, now=20) is None  # below the last quantity
    assert guard.check("L", 7, None, now=100) is None
    assert guard.count("L", now=100) == 1


def test_loaded_revisions_replace_what_the_process_counted(sim):
    """The revisions another process sent count: an adapter handed them
    holds an increase its own count would have let through."""
    (row,) = sim.seed_skus(1, quantity=5)
    adapter = make_adapter(sim)
    adapter.guard = RevisionGuard(limit=3, reserve=1, window=100)
    adapter.clock = lambda: 50.0
    update = StockUpdate(
        sku=row["sku"],
        quantity=9,
        external_id=row["external_id"],
        previous_quantity=5,
    )
    key = adapter.revision_key(update)
    assert key == row["external_id"]
    adapter.load_revisions({key: [10.0, 20.0]})
    (held,) = adapter.set_quantities([update])
    assert not held.ok and "2 revisions in 24 h" in str(held.error)
    assert sim.quantity(row["sku"]) == 5
    adapter.load_revisions({key: []})  # the log holds none today
    assert adapter.set_quantities([update])[0].ok
    assert sim.quantity(row["sku"]) == 9


# -- reads ---------------------------------------------------------------------------
def test_read_all_follows_next_links_on_its_own_host(sim):
    rows = sim.seed_skus(230)
    sim.quantities[rows[229]["sku"]] = 1

    levels = list(make_adapter(sim).read_quantities())

    assert [lv.sku for lv in levels] == [r["sku"] for r in rows]
    assert levels[229].quantity == 1 and levels[0].quantity == 10
    pages = sim.requests_for("GET", "/sell/inventory/v1/inventory_item")
    assert [(p.query["limit"], p.query["offset"]) for p in pages] == [
        ("100", "0"),
        ("100", "1"),
        ("100", "2"),
    ]


def test_simulator_refuses_a_page_of_more_than_100(sim):
    answer = requests.get(
        sim.url + "/sell/inventory/v1/inventory_item",
        params={"limit": 101},
        headers={"Authorization": f"Bearer {raw_token(sim)}"},
        timeout=5,
    )
    assert answer.status_code == 400 and answer.json()["errors"][0]["errorId"] == 25706


def test_read_given_skus_uses_bulk_reads_of_25(sim):
    rows = sim.seed_skus(30)
    wanted = [r["sku"] for r in rows] + ["NOT-LISTED"]

    levels = list(make_adapter(sim).read_quantities(wanted))

    assert sorted(lv.sku for lv in levels) == sorted(r["sku"] for r in rows)
    reads = sim.requests_for("POST", "/sell/inventory/v1/bulk_get_inventory_item")
    assert [len(r.json()["requests"]) for r in reads] == [25, 6]


def test_read_given_bindings_reports_the_lower_of_item_and_offers(sim):
    """eBay lists min(ship-to-home, offer availableQuantity): a read of
    bindings that know their offers reads those too (one getOffers per SKU)
    and reports the lower; an offer above the item, an unpublished one, or
    one the binding does not name changes nothing."""
    rows = sim.seed_skus(4, quantity=10)
    low, high, unpublished, plain = rows
    sim.offers[low["external_variant_id"]]["availableQuantity"] = 3
    sim.offers[high["external_variant_id"]]["availableQuantity"] = 40
    sim.offers[unpublished["external_variant_id"]].update(
        availableQuantity=0, status="UNPUBLISHED"
    )
    sim.offers[plain["external_variant_id"]]["availableQuantity"] = 1
    updates = stock_updates([low, high, unpublished], 0) + [
        StockUpdate(sku=plain["sku"], quantity=0)
    ]

    levels = {lv.sku: lv.quantity for lv in make_adapter(sim).read_quantities(updates)}

    assert levels == {
        low["sku"]: 3,
        high["sku"]: 10,
        unpublished["sku"]: 10,
        plain["sku"]: 10,  # no offer named: the item's quantity, no offer read
    }
    offer_reads = sim.requests_for("GET", "/sell/inventory/v1/offer")
    assert sorted(r.query["sku"] for r in offer_reads) == sorted(
        r["sku"] for r in (low, high, unpublished)
    )


@pytest.mark.parametrize("status", [500, 429, 400])
def test_offers_that_cannot_be_read_leave_the_items_levels(sim, status):
    """The offers can only lower a level: one getOffers failing must not
    fail the read, which would leave a channel showing more than Odoo
    uncorrected. The items are reported as read; after one failure, no
    more offer reads this time."""
    rows = sim.seed_skus(3, quantity=10)
    for row in rows:
        sim.offers[row["external_variant_id"]]["availableQuantity"] = 2
    answer = Response(status, {"errors": [{"errorId": 2003}]}, {"Retry-After": "1"})
    assert _levels_with_offers_answered(sim, rows, answer) == {
        row["sku"]: 10 for row in rows
    }
    assert len(sim.requests_for("GET", "/sell/inventory/v1/offer")) == 1


@pytest.mark.parametrize(
    "answer", [None, [], {"offers": 5}], ids=["quantity n/a", "a list", "no list"]
)
def test_offers_that_make_no_sense_leave_the_items_levels(sim, answer):
    """An offer list eBay answers that cannot be read (a quantity that is
    no number, no list) fails no read: the items' levels, as read."""
    rows = sim.seed_skus(2, quantity=10)
    sim.offers[rows[0]["external_variant_id"]]["availableQuantity"] = "n/a"
    answer = None if answer is None else Response(200, answer)
    assert _levels_with_offers_answered(sim, rows, answer) == {
        row["sku"]: 10 for row in rows
    }


def _levels_with_offers_answered(sim, rows, answer):
    """``{sku: level}`` read for ``rows``, every getOffers answered with
    ``answer`` (None: the simulator's own answer)."""
    if answer is not None:
        serve = sim.handle

        def handle(req):
            if req.method == "GET" and req.path == "/sell/inventory/v1/offer":
                return answer
            return serve(req)

        sim.handle = handle
    return {
        lv.sku: lv.quantity
        for lv in make_adapter(sim).read_quantities(stock_updates(rows, 0))
    }


# -- orders --------------------------------------------------------------------------
def test_fetch_orders_since_pages_and_maps_cancel_and_refund(sim):
    [row] = sim.seed_skus(1)
    now = datetime.now(timezone.utc)
    since = now - timedelta(hours=2)
    sim.seed_order([(row["sku"], 1)], modified=since - timedelta(minutes=1))
    for n in range(202):
        sim.seed_order([(row["sku"], 2)], modified=since + timedelta(seconds=n))
    cancelled = sim.seed_order([(row["sku"], 1)], cancel_state="CANCELED")
    refunded_shipped = sim.seed_order(
        [(row["sku"], 1)],
        payment_status="FULLY_REFUNDED",
        fulfillment_status="FULFILLED",
    )
    refunded_unshipped = sim.seed_order(
        [(row["sku"], 1)], payment_status="FULLY_REFUNDED"
    )

    orders = list(make_adapter(sim).fetch_orders(since))

    assert len(orders) == 205
    by_id = {o.external_id: o for o in orders}
    assert by_id[cancelled].status == "cancelled"
    assert (by_id[refunded_shipped].status, by_id[refunded_shipped].restock) == (
        "refunded",
        False,
    )
    assert by_id[refunded_unshipped].restock is True
    assert all(o.created_at is not None for o in orders)  # creationDate
    line = orders[0].lines[0]
    assert (line.sku, line.quantity, line.external_id) == (
        row["sku"],
        2.0,
        row["external_id"],
    )
    pages = sim.requests_for("GET", "/sell/fulfillment/v1/order")
    assert [p.query["offset"] for p in pages] == ["0", "200"]
    expected = (
        since.strftime("%Y-%m-%dT%H:%M:%S.") + f"{since.microsecond // 1000:03d}Z"
    )
    assert pages[0].query["filter"] == f"lastmodifieddate:[{expected}..]"


def test_fetch_orders_never_asks_further_back_than_90_days(sim):
    [row] = sim.seed_skus(1)
    order_id = sim.seed_order([(row["sku"], 1)])

    orders = list(make_adapter(sim).fetch_orders(datetime(2020, 1, 1)))

    assert [o.external_id for o in orders] == [order_id]


# -- notifications and connection ---------------------------------------------------
def test_order_confirmation_names_the_order_and_fetch_order_reads_its_lines(sim):
    [row] = sim.seed_skus(1)
    order_id = sim.seed_order([(row["sku"], 3)])
    when = datetime(2026, 2, 1, 8, 30, tzinfo=timezone.utc)
    message = sim.notification("ORDER_CONFIRMATION", {"orderId": order_id}, "n-1", when)
    adapter = make_adapter(sim)

    [event] = adapter.parse_webhook(None, message, {})

    assert (event.kind, event.idempotency_key, event.event_time) == (
        "order",
        "n-1",
        when,
    )
    assert event.order.external_id == order_id and event.order.lines == []
    lines = adapter.fetch_order(order_id).lines
    assert [(line.sku, line.quantity) for line in lines] == [(row["sku"], 3.0)]


def test_other_topics_are_ignored_and_foreign_bodies_refused(sim):
    adapter = make_adapter(sim)
    deletion = sim.notification(
        "MARKETPLACE_ACCOUNT_DELETION", {"username": "u"}, "n-2"
    )

    [event] = adapter.parse_webhook(None, json.dumps(deletion).encode(), {})

    assert (event.kind, event.idempotency_key) == ("ignored", "n-2")
    assert event.event_time is not None
    with pytest.raises(PermanentChannelError, match="notificationId"):
        adapter.parse_webhook(None, {"metadata": {"topic": "X"}}, {})
    no_order = sim.notification("ORDER_CONFIRMATION", {}, "n-3")
    with pytest.raises(PermanentChannelError, match="orderId"):
        adapter.parse_webhook(None, no_order, {})


def test_connection_check_reads_the_inventory(sim):
    sim.seed_skus(4)
    assert "4 inventory item(s)" in make_adapter(sim).test_connection()
    [read] = sim.requests_for("GET", "/sell/inventory/v1/inventory_item")
    assert read.query == {"limit": "1"}
