"""ShopifyAdapter against ShopifySimulator: push, compare-and-set, bucket, reads.

The simulator and the adapter share a fake clock: the adapter "sleeps" by
moving it forward and the simulator refills its cost bucket from it, so the
throttling tests are exact and take no real time.
"""

import json
from datetime import datetime, timedelta, timezone

import pytest
import requests
from fakes import FakeClock

from lib.adapters.base import (
    AuthenticationError,
    ChannelConfig,
    PermanentChannelError,
    RateLimitedError,
    RetryableChannelError,
    StaleQuantityError,
    StockUpdate,
    wait_budget,
)
from lib.adapters.shopify import (
    REFUNDS_PAGE_SIZE,
    THROTTLE_RESENDS,
    ShopifyAdapter,
    WebhookPayloadError,
    to_gid,
)
from simulators.base import Response
from simulators.shopify import ShopifySimulator


@pytest.fixture
def clock():
    return FakeClock(1_000.0)


@pytest.fixture
def sim(clock):
    simulator = ShopifySimulator(clock=clock).start()
    yield simulator
    simulator.stop()


def make_adapter(sim, clock=None, **overrides):
    fields = {
        "base_url": sim.url,
        "access_token": sim.access_token,
        "location_id": sim.location_id,
        **overrides,
    }
    config = ChannelConfig("shopify", **fields)
    if clock is None:
        return ShopifyAdapter(config, sleep=lambda s: None)
    return ShopifyAdapter(config, clock=clock, sleep=clock.sleep)


def update_for(sim, sku, quantity, previous=0, key=None):
    return StockUpdate(
        sku=sku,
        quantity=quantity,
        external_variant_id=sim.item_gid(sku),
        previous_quantity=previous,
        idempotency_key=key or f"key-{sku}-{quantity}",
    )


def mutations(sim):
    """The inventorySetQuantities requests received, as (query, input)."""
    found = []
    for req in sim.requests:
        body = json.loads(req.body)
        if "inventorySetQuantities" in body["query"]:
            found.append((body["query"], body["variables"]["input"]))
    return found


# -- connection and auth -------------------------------------------------------
def test_connection_names_shop_and_version(sim):
    message = make_adapter(sim).test_connection()
    assert "Simulated Shop" in message
    assert "2026-10" in message
    assert sim.requests[0].path == "/admin/api/2026-10/graphql.json"


def test_wrong_token_is_an_authentication_error(sim):
    sim.add_item("A", quantity=3)
    adapter = make_adapter(sim, access_token="shpat_wrong")
    with pytest.raises(AuthenticationError) as err:
        adapter.test_connection()
    assert err.value.status == 401
    assert not err.value.retryable
    with pytest.raises(AuthenticationError):
        adapter.set_quantities([update_for(sim, "A", 9, previous=3)])
    assert sim.quantity("A") == 3
    assert "shpat_wrong" not in str(err.value)


def test_api_version_is_overridable(sim):
    make_adapter(sim, api_version="2026-01").test_connection()
    assert sim.requests[-1].path == "/admin/api/2026-01/graphql.json"


# -- single and bulk push ------------------------------------------------------
def test_single_set_sends_compare_and_idempotency_key(sim):
    sim.add_item("A", quantity=4)
    result = make_adapter(sim).set_quantity(update_for(sim, "A", 9, previous=4))
    assert result.ok and result.quantity == 9 and result.live_quantity is None
    assert sim.quantity("A") == 9
    [(query, payload)] = mutations(sim)
    assert '@idempotent(key: "' in query
    assert payload["name"] == "available"
    assert payload["reason"] == "correction"
    assert payload["referenceDocumentUri"].startswith("gid://stock-channel-sync/")
    assert payload["quantities"] == [
        {
            "inventoryItemId": sim.item_gid("A"),
            "locationId": sim.location_id,
            "quantity": 9,
            "changeFromQuantity": 4,
        }
    ]


def test_unknown_previous_quantity_opts_out_with_explicit_null(sim):
    sim.add_item("A", quantity=4)
    adapter = make_adapter(sim)
    assert adapter.set_quantity(update_for(sim, "A", 2, previous=None)).ok
    [(_query, payload)] = mutations(sim)
    assert "changeFromQuantity" in payload["quantities"][0]
    assert payload["quantities"][0]["changeFromQuantity"] is None
    assert sim.quantity("A") == 2


def test_bulk_push_splits_at_250(sim):
    gids = sim.seed_items(600)
    updates = [
        StockUpdate(
            sku=f"SKU-{n:05d}",
            quantity=n,
            external_variant_id=gid,
            previous_quantity=0,
            idempotency_key=f"k{n}",
        )
        for n, gid in enumerate(gids)
    ]
    adapter = make_adapter(sim)
    results = adapter.set_quantities(updates)
    assert [len(p["quantities"]) for _q, p in mutations(sim)] == [250, 250, 100]
    assert adapter.calls == 3
    assert all(r.ok for r in results)
    assert [r.sku for r in results] == [u.sku for u in updates]
    assert all(sim.quantity(f"SKU-{n:05d}") == n for n in range(600))


def test_over_limit_batch_is_refused_by_the_simulator(sim):
    gids = sim.seed_items(251, quantity=1)
    query = (
        "mutation M($input: InventorySetQuantitiesInput!) { inventorySetQuantities("
        'input: $input) @idempotent(key: "raw-251") { userErrors { code } } }'
    )
    payload = {
        "name": "available",
        "reason": "correction",
        "quantities": [
            {
                "inventoryItemId": gid,
                "locationId": sim.location_id,
                "quantity": 5,
                "changeFromQuantity": None,
            }
            for gid in gids
        ],
    }
    answer = requests.post(
        f"{sim.url}/admin/api/2026-10/graphql.json",
        json={"query": query, "variables": {"input": payload}},
        headers={"X-Shopify-Access-Token": sim.access_token},
        timeout=5,
    ).json()
    assert answer["errors"][0]["extensions"]["code"] == "MAX_INPUT_SIZE_EXCEEDED"
    assert "data" not in answer
    assert set(sim.quantities.values()) == {1}


def test_two_updates_of_one_item_are_coalesced(sim):
    sim.add_item("A", quantity=0)
    older = update_for(sim, "A", 3, previous=0)
    newer = update_for(sim, "A", 5, previous=0)
    older.sequence, newer.sequence = 1, 2
    results = make_adapter(sim).set_quantities([newer, older])
    assert [r.ok for r in results] == [True, True]
    assert "superseded" in results[1].response
    [(_query, payload)] = mutations(sim)
    assert [q["quantity"] for q in payload["quantities"]] == [5]
    assert sim.quantity("A") == 5


def test_items_without_ids_fail_alone_without_a_call(sim):
    sim.add_item("A", quantity=0)
    adapter = make_adapter(sim, location_id="")
    results = adapter.set_quantities(
        [
            StockUpdate(sku="NOITEM", quantity=1),
            StockUpdate(sku="A", quantity=1, external_variant_id=sim.item_gid("A")),
        ]
    )
    assert not results[0].ok and "inventory item" in results[0].response
    assert not results[1].ok and "location" in results[1].response
    assert isinstance(results[0].error, PermanentChannelError)
    assert adapter.calls == 0


def test_numeric_ids_become_gids(sim):
    gid = sim.add_item("A", quantity=0)
    numeric = gid.rsplit("/", 1)[1]
    adapter = make_adapter(sim, location_id="1")
    result = adapter.set_quantity(
        StockUpdate(sku="A", quantity=6, external_variant_id=numeric)
    )
    assert result.ok and sim.quantity("A") == 6
    assert to_gid("Order", 12) == "gid://shopify/Order/12"
    assert to_gid("Order", "gid://shopify/Order/12") == "gid://shopify/Order/12"


# -- compare-and-set -----------------------------------------------------------
def test_stale_compare_reads_live_level_and_retries_once(sim):
    """Shopify holds 3 where Odoo knows of 5: 2 went there that Odoo does
    not know of yet (a sale whose order is on its way). Odoo's 10 less
    those 2 is set, so that they are not offered again meanwhile."""
    sim.add_item("A", quantity=5)
    sim.set_level("A", 3)  # a sale on Shopify since our last push
    adapter = make_adapter(sim)
    result = adapter.set_quantity(update_for(sim, "A", 10, previous=5))
    assert result.ok
    assert result.live_quantity == 3
    assert "stale" in result.response
    assert sim.quantity("A") == 8 and result.quantity == 8
    first, retry = mutations(sim)
    assert first[1]["quantities"][0]["changeFromQuantity"] == 5
    assert retry[1]["quantities"][0]["changeFromQuantity"] == 3
    assert adapter.calls == 3  # set, read, set
    # units back on Shopify (a cancellation there): Odoo's number as it is
    sim.set_level("A", 12)
    result = adapter.set_quantity(update_for(sim, "A", 10, previous=8))
    assert result.ok and result.live_quantity == 12
    assert sim.quantity("A") == 10 and result.quantity == 10
    # never below 0
    sim.set_level("A", 0)
    assert adapter.set_quantity(update_for(sim, "A", 3, previous=10)).quantity == 0
    assert sim.quantity("A") == 0


def test_level_changing_again_is_reported_not_forced(sim):
    sim.add_item("A", quantity=5)
    sim.set_level("A", 3)

    def sell_again(simulator, count):
        if count == 2:
            simulator.set_level("A", 1)

    sim.on_mutation = sell_again
    result = make_adapter(sim).set_quantities([update_for(sim, "A", 10, previous=5)])[0]
    assert not result.ok
    assert isinstance(result.error, StaleQuantityError)
    assert result.error.retryable
    assert result.live_quantity == 3
    assert sim.quantity("A") == 1

    def sell_one(simulator, count):
        simulator.set_level("A", simulator.quantity("A") - 1)

    sim.on_mutation = sell_one  # the single-item API raises the same outcome
    with pytest.raises(StaleQuantityError):
        make_adapter(sim).set_quantity(update_for(sim, "A", 10, previous=1))
    assert sim.quantity("A") == -1


def test_one_stale_item_does_not_lose_the_others(sim):
    for sku in ("A", "B", "C"):
        sim.add_item(sku, quantity=5)
    sim.set_level("B", 2)
    updates = [update_for(sim, sku, 8, previous=5) for sku in ("A", "B", "C")]
    results = make_adapter(sim).set_quantities(updates)
    assert [r.ok for r in results] == [True, True, True]
    assert [r.live_quantity for r in results] == [None, 2, None]
    # B's 3 units gone there are not offered again: 8 - 3
    assert [sim.quantity(s) for s in ("A", "B", "C")] == [8, 5, 8]


def test_refused_item_is_reported_and_others_applied(sim):
    sim.add_item("A", quantity=0)
    bad = StockUpdate(
        sku="GONE", quantity=1, external_variant_id="gid://shopify/InventoryItem/9"
    )
    results = make_adapter(sim).set_quantities(
        [update_for(sim, "A", 4, previous=0), bad]
    )
    assert results[0].ok and sim.quantity("A") == 4
    assert not results[1].ok
    assert "INVALID_INVENTORY_ITEM" in results[1].response
    assert isinstance(results[1].error, PermanentChannelError)


def test_same_updates_replay_instead_of_applying_twice(sim):
    sim.add_item("A", quantity=5)
    adapter = make_adapter(sim)
    update = update_for(sim, "A", 9, previous=5, key="evt-1")
    assert adapter.set_quantity(update).ok
    sim.set_level("A", 7)  # a sale after our push
    assert adapter.set_quantity(update).ok  # a job retry of the same push
    assert sim.quantity("A") == 7  # the replay did not overwrite the sale
    assert sim.applied_count == 1
    first, second = mutations(sim)
    assert first[0] == second[0]  # same idempotency key in the document


def test_a_key_spent_by_a_failed_attempt_is_replaced(sim):
    """Shopify refuses a key whose first call failed ("retry with a new
    idempotency key"): the job's retry, which derives the same key, sends
    the call again at once under a fresh one instead of giving up."""
    sim.add_item("A", quantity=5)
    adapter = make_adapter(sim)
    update = update_for(sim, "A", 9, previous=5, key="evt-spent")
    sim.fail_next_keyed_set = True
    with pytest.raises(RetryableChannelError):  # the job retries later
        adapter.set_quantities([update])
    assert sim.quantity("A") == 5
    # the job's retry: same update, same derived key, refused as spent
    [retried] = adapter.set_quantities([update])
    assert retried.ok and sim.quantity("A") == 9
    keys = [query.split('key: "')[1].split('"')[0] for query, _input in mutations(sim)]
    assert keys[0] == keys[1] != keys[2]
    # a retry whose own key was spent too gets a random one
    sim.set_level("A", 5)
    sim.failed_keys.update(keys)
    update = update_for(sim, "A", 9, previous=5, key="evt-spent")
    [again] = adapter.set_quantities([update])
    assert again.ok and sim.quantity("A") == 9


def test_updates_without_keys_are_distinct_operations(sim):
    sim.add_item("A", quantity=5)
    adapter = make_adapter(sim)
    update = StockUpdate(sku="A", quantity=9, external_variant_id=sim.item_gid("A"))
    adapter.set_quantity(update)
    sim.set_level("A", 7)
    adapter.set_quantity(update)
    assert sim.quantity("A") == 9
    first, second = mutations(sim)
    assert first[0] != second[0]


def raw_set(sim, quantity, key=None):
    directive = f' @idempotent(key: "{key}")' if key else ""
    query = (
        "mutation M($input: InventorySetQuantitiesInput!) { inventorySetQuantities("
        f"input: $input){directive} {{ userErrors {{ code }} }} }}"
    )
    payload = {
        "name": "available",
        "reason": "correction",
        "quantities": [
            {
                "inventoryItemId": sim.item_gid("A"),
                "locationId": sim.location_id,
                "quantity": quantity,
                "changeFromQuantity": None,
            }
        ],
    }
    return requests.post(
        f"{sim.url}/admin/api/2026-10/graphql.json",
        json={"query": query, "variables": {"input": payload}},
        headers={"X-Shopify-Access-Token": sim.access_token},
        timeout=5,
    ).json()


def test_simulator_enforces_the_idempotency_contract(sim):
    sim.add_item("A", quantity=0)
    assert raw_set(sim, 3)["errors"]  # 2026-04+: the directive is required
    assert sim.quantity("A") == 0
    first = raw_set(sim, 3, key="k-1")["data"]["inventorySetQuantities"]
    assert first["userErrors"] == [] and sim.quantity("A") == 3
    sim.set_level("A", 1)
    replay = raw_set(sim, 3, key="k-1")["data"]["inventorySetQuantities"]
    assert replay == first and sim.quantity("A") == 1  # replayed, not re-applied
    other = raw_set(sim, 4, key="k-1")["data"]["inventorySetQuantities"]
    assert other["userErrors"][0]["code"] == "IDEMPOTENCY_KEY_PARAMETER_MISMATCH"
    assert sim.quantity("A") == 1


def test_key_in_flight_is_a_retryable_item_error(sim):
    sim.add_item("A", quantity=0)
    in_flight = {
        "data": {
            "inventorySetQuantities": {
                "inventoryAdjustmentGroup": None,
                "userErrors": [
                    {
                        "code": "IDEMPOTENCY_CONCURRENT_REQUEST",
                        "field": None,
                        "message": "This request is currently in progress",
                    }
                ],
            }
        }
    }
    sim.scripted.append(Response(200, in_flight))
    [result] = make_adapter(sim).set_quantities([update_for(sim, "A", 3)])
    assert not result.ok
    assert isinstance(result.error, RetryableChannelError)
    assert result.error.retryable


def test_versions_before_2026_01_use_compare_quantity(sim):
    for sku in ("A", "B", "C"):
        sim.add_item(sku, quantity=5)
    sim.set_level("C", 1)
    adapter = make_adapter(sim, api_version="2025-10")
    results = adapter.set_quantities(
        [
            update_for(sim, "A", 6, previous=5),
            update_for(sim, "B", 6, previous=None),
            update_for(sim, "C", 6, previous=5),
        ]
    )
    assert all(r.ok for r in results)
    assert results[2].live_quantity == 1
    # C: 4 units gone there that Odoo does not know of, not offered again
    assert [sim.quantity(s) for s in ("A", "B", "C")] == [6, 6, 2]
    sent = mutations(sim)
    assert all("@idempotent" not in query for query, _p in sent)
    assert all(
        "changeFromQuantity" not in q for _query, p in sent for q in p["quantities"]
    )
    checked = [p for _q, p in sent if not p["ignoreCompareQuantity"]]
    unchecked = [p for _q, p in sent if p["ignoreCompareQuantity"]]
    assert [q["compareQuantity"] for q in checked[0]["quantities"]] == [5, 5]
    assert [len(p["quantities"]) for p in unchecked] == [1]


# -- throttling ----------------------------------------------------------------
def test_adapter_waits_for_the_bucket_instead_of_being_throttled(clock):
    sim = ShopifySimulator(bucket_size=25, restore_rate=10, clock=clock).start()
    try:
        for sku in ("A", "B", "C"):
            sim.add_item(sku, quantity=0)
        adapter = make_adapter(sim, clock=clock)
        adapter.max_batch = 1  # one mutation (cost 10) per item
        updates = [update_for(sim, s, 4) for s in ("A", "B", "C")]
        results = adapter.set_quantities(updates)
        assert all(r.ok for r in results)
        # 25 -> 15 -> 5: the third call needs 10, so wait (10 - 5) / 10 s
        assert clock.sleeps == pytest.approx([0.5])
        assert adapter.waits == pytest.approx([0.5])
        assert sim.throttled_count == 0
    finally:
        sim.stop()


def throttled_answer(available=0, rate=100, requested=10):
    """Shopify's answer to a call its bucket cannot pay for (nothing ran)."""
    return Response(
        200,
        {
            "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
            "extensions": {
                "cost": {
                    "requestedQueryCost": requested,
                    "actualQueryCost": None,
                    "throttleStatus": {
                        "maximumAvailable": 2000,
                        "currentlyAvailable": available,
                        "restoreRate": rate,
                    },
                }
            },
        },
    )


def test_throttled_call_is_waited_out_and_sent_again(clock):
    sim = ShopifySimulator(bucket_size=50, restore_rate=10, clock=clock).start()
    try:
        sim.add_item("A", quantity=2)
        # another process spent the bucket: this adapter's mirror cannot know
        sim.drain_bucket(4)
        result = make_adapter(sim, clock=clock).set_quantity(update_for(sim, "A", 9, 2))
        assert result.ok
        assert sim.throttled_count == 1
        # (10 - 4) / 10 s, from the figures of the throttled answer
        assert clock.sleeps == pytest.approx([0.6])
        assert sim.quantity("A") == 9
    finally:
        sim.stop()


def test_two_readers_of_one_shop_share_its_bucket(clock):
    """Two workers reading one shop: each one's mirror goes stale as the
    other spends, and both reads still complete."""
    sim = ShopifySimulator(bucket_size=1000, restore_rate=100, clock=clock).start()
    try:
        gids = sim.seed_items(1000, quantity=5)
        first, second = make_adapter(sim, clock=clock), make_adapter(sim, clock=clock)
        updates = [
            StockUpdate(sku=f"SKU-{n:05d}", quantity=0, external_variant_id=gid)
            for n, gid in enumerate(gids)
        ]
        reads = [
            first.read_quantities(updates[:500]),
            second.read_quantities(updates[500:]),
        ]
        levels = [[], []]
        done = [False, False]
        while not all(done):  # the two reads page by page, in turns
            for index, read in enumerate(reads):
                if not done[index]:
                    try:
                        levels[index].append(next(read))
                    except StopIteration:
                        done[index] = True
        assert [len(found) for found in levels] == [500, 500]
        assert {level.quantity for found in levels for level in found} == {5}
        assert sim.throttled_count > 0  # the stale mirrors were caught out
    finally:
        sim.stop()


def test_throttled_past_the_resends_becomes_rate_limited_error(sim):
    sim.add_item("A", quantity=2)
    sim.scripted.extend([throttled_answer()] * (THROTTLE_RESENDS + 1))
    adapter = make_adapter(sim)
    with pytest.raises(RateLimitedError) as err:
        adapter.set_quantity(update_for(sim, "A", 9, 2))
    assert err.value.retryable
    assert err.value.retry_after == pytest.approx(0.1, abs=0.01)
    # sent once, then again after each of the resends' waits
    assert len(mutations(sim)) == THROTTLE_RESENDS + 1
    assert sim.quantity("A") == 2


def test_throttle_too_long_to_wait_in_place_is_rate_limited_error(clock):
    sim = ShopifySimulator(bucket_size=50, restore_rate=0.5, clock=clock).start()
    try:
        sim.add_item("A", quantity=2)
        sim.drain_bucket(0)
        with pytest.raises(RateLimitedError) as err:
            make_adapter(sim, clock=clock).set_quantity(update_for(sim, "A", 9, 2))
        assert err.value.retry_after == pytest.approx(10 / 0.5)
        assert clock.sleeps == []
        assert sim.throttled_count == 1
        assert sim.quantity("A") == 2
    finally:
        sim.stop()


def test_http_429_waits_its_retry_after_and_is_sent_again(clock):
    sim = ShopifySimulator(clock=clock).start()
    try:
        sim.add_item("A", quantity=2)
        sim.scripted.append(
            Response(429, {"errors": "Throttled"}, {"Retry-After": "3"})
        )
        result = make_adapter(sim, clock=clock).set_quantity(update_for(sim, "A", 9, 2))
        assert result.ok
        assert clock.sleeps == pytest.approx([3.0])
        assert sim.quantity("A") == 9
    finally:
        sim.stop()


def test_a_live_push_does_not_wait_a_throttle_past_its_budget(clock):
    """Within a live push's wait budget, a 429 whose Retry-After does not
    fit is a RateLimitedError at once (retried by the job at that time),
    not a sleep that outlasts the caller's wait and a resend that lands
    after it; a bucket wait that does not fit either. Outside it, the
    throttle is waited out in place as before."""
    sim = ShopifySimulator(clock=clock).start()
    try:
        sim.add_item("A", quantity=2)
        sim.scripted.append(
            Response(429, {"errors": "Throttled"}, {"Retry-After": "2"})
        )
        adapter = make_adapter(sim, clock=clock)
        with wait_budget(1.5), pytest.raises(RateLimitedError) as err:
            adapter.set_quantity(update_for(sim, "A", 9, 2))
        assert err.value.retry_after == 2.0
        assert clock.sleeps == []
        assert sim.quantity("A") == 2
        # the bucket says 5 s before the next call: not waited within 1.5 s
        sim.drain_bucket(0)
        adapter.bucket.update(
            {
                "throttleStatus": {
                    "maximumAvailable": 100,
                    "currentlyAvailable": 0,
                    "restoreRate": 2,
                }
            },
            clock(),
        )
        with wait_budget(1.5), pytest.raises(RateLimitedError):
            adapter.set_quantity(update_for(sim, "A", 9, 2))
        assert clock.sleeps == []
    finally:
        sim.stop()


def test_http_429_with_a_long_retry_after_is_rate_limited_error(sim):
    sim.add_item("A", quantity=2)
    sim.scripted.append(Response(429, {"errors": "Throttled"}, {"Retry-After": "60"}))
    with pytest.raises(RateLimitedError) as err:
        make_adapter(sim).set_quantity(update_for(sim, "A", 9, 2))
    assert err.value.retry_after == 60.0
    assert err.value.status == 429
    assert sim.quantity("A") == 2


def test_server_error_is_retryable(sim):
    sim.add_item("A", quantity=2)
    sim.scripted.append(Response(503, {"errors": "unavailable"}))
    with pytest.raises(RetryableChannelError):
        make_adapter(sim).set_quantity(update_for(sim, "A", 9, 2))


def test_failure_after_a_sent_chunk_is_reported_per_item(sim):
    gids = sim.seed_items(4, quantity=0)
    # the second chunk stays throttled past the resends
    sim.scripted.extend([None] + [throttled_answer()] * (THROTTLE_RESENDS + 1))
    adapter = make_adapter(sim)
    adapter.max_batch = 2
    updates = [
        StockUpdate(sku=f"SKU-{n:05d}", quantity=3, external_variant_id=gid)
        for n, gid in enumerate(gids)
    ]
    results = adapter.set_quantities(updates)
    assert [r.ok for r in results] == [True, True, False, False]
    assert isinstance(results[2].error, RateLimitedError)
    assert results[2].error.retry_after == pytest.approx(0.1, abs=0.01)
    assert [sim.quantity(f"SKU-{n:05d}") for n in range(4)] == [3, 3, 0, 0]


# -- reads ---------------------------------------------------------------------
def test_read_quantities_follows_the_cursor(sim):
    sim.seed_items(250, quantity=7)
    adapter = make_adapter(sim)
    adapter.page_size = 100
    levels = list(adapter.read_quantities())
    assert len(levels) == 250
    assert len({level.sku for level in levels}) == 250
    assert adapter.calls == 3
    level = levels[0]
    assert level.quantity == 7
    assert level.external_variant_id.startswith("gid://shopify/InventoryItem/")
    assert level.external_location_id == sim.location_id
    assert level.updated_at.tzinfo is not None
    cursors = [json.loads(r.body)["variables"]["after"] for r in sim.requests]
    assert cursors[0] is None and None not in cursors[1:]


def test_read_quantities_of_given_items(sim):
    sim.add_item("A", quantity=1)
    sim.add_item("B", quantity=2)
    missing = StockUpdate(
        sku="X", quantity=0, external_variant_id="gid://shopify/InventoryItem/1"
    )
    levels = list(make_adapter(sim).read_quantities([update_for(sim, "B", 0), missing]))
    assert [(lv.sku, lv.quantity) for lv in levels] == [("B", 2)]


def test_unknown_location_is_permanent(sim):
    adapter = make_adapter(sim, location_id="gid://shopify/Location/404")
    with pytest.raises(PermanentChannelError):
        list(adapter.read_quantities())


# -- orders --------------------------------------------------------------------
def test_fetch_orders_since_with_pages_and_long_orders(sim):
    sim.add_item("A")
    now = datetime.now(timezone.utc)
    sim.add_order([("A", 1)], updated_at=now - timedelta(days=3))
    recent = [
        sim.add_order([("A", 2)], updated_at=now - timedelta(minutes=5)),
        sim.add_order(
            [("A", 1)], updated_at=now - timedelta(minutes=4), cancelled=True
        ),
        sim.add_order(
            [("A", 1)],
            updated_at=now - timedelta(minutes=3),
            financial_status="REFUNDED",
        ),
        sim.add_order([("A", 1)] * 45, updated_at=now - timedelta(minutes=2)),
    ]
    adapter = make_adapter(sim)
    adapter.orders_page_size = 2
    orders = list(adapter.fetch_orders(now - timedelta(hours=1)))
    assert [o.external_id for o in orders] == recent
    assert [o.status for o in orders] == ["open", "cancelled", "refunded", "open"]
    assert orders[0].lines[0].sku == "A" and orders[0].lines[0].quantity == 2
    assert (
        orders[0]
        .lines[0]
        .external_variant_id.startswith("gid://shopify/ProductVariant/")
    )
    assert len(orders[3].lines) == 45  # 40 with the order, 5 in a follow-up
    queries = [json.loads(r.body)["variables"].get("query") for r in sim.requests]
    assert any(q and q.startswith("updated_at:>='") for q in queries)
    assert adapter.calls == 3  # two order pages and one follow-up of lines


def test_fetched_orders_less_what_edits_removed(sim):
    """A fetched order's lines sell their quantity less what order edits
    removed: refunds are read (one more call) only for an order whose lines
    lost units, and added back, as the webhook's lines do."""
    for sku in ("A", "B"):
        sim.add_item(sku)
    now = datetime.now(timezone.utc)
    plain = sim.add_order([("A", 2)], updated_at=now - timedelta(minutes=9))
    edited = sim.add_order([("A", 5), ("B", 2)], updated_at=now - timedelta(minutes=8))
    sim.edit_order(edited, "A", 1, updated_at=now - timedelta(minutes=7))
    sim.refund_order(
        edited, [("A", 2), ("B", 1)], updated_at=now - timedelta(minutes=6)
    )
    sim.refund_order(edited, [("A", 1)], updated_at=now - timedelta(minutes=5))
    adapter = make_adapter(sim)
    orders = {o.external_id: o for o in adapter.fetch_orders(now - timedelta(hours=1))}
    assert [(ln.sku, ln.quantity) for ln in orders[plain].lines] == [("A", 2.0)]
    # placed when created, whatever came after
    placed = orders[edited].created_at - (now - timedelta(minutes=8))
    assert abs(placed.total_seconds()) < 1
    assert orders[edited].updated_at > orders[edited].created_at
    assert [(ln.sku, ln.quantity) for ln in orders[edited].lines] == [
        ("A", 4.0),
        ("B", 2.0),
    ]
    assert adapter.calls == 2  # the page, and the edited order's refunds
    # more refunds than one call reads: the lines as first ordered
    for _n in range(REFUNDS_PAGE_SIZE):
        sim.refund_order(edited, [], updated_at=now - timedelta(minutes=4))
    orders = {o.external_id: o for o in adapter.fetch_orders(now - timedelta(hours=1))}
    assert [ln.quantity for ln in orders[edited].lines] == [5.0, 2.0]


def test_unreadable_fetched_order_is_a_permanent_error(sim):
    """An answer the adapter cannot read is a channel error the pass shows,
    not a crash of its job."""
    sim.add_item("A")
    now = datetime.now(timezone.utc)
    gid = sim.add_order([("A", 3)], updated_at=now - timedelta(minutes=9))
    sim.orders[gid]["lines"][0]["currentQuantity"] = "many"
    with pytest.raises(PermanentChannelError, match="unreadable answer"):
        list(make_adapter(sim).fetch_orders(now - timedelta(hours=1)))


def test_fetched_refunds_without_their_lines(sim, monkeypatch):
    """A refund whose lines the answer leaves out: the order is read as first
    ordered (counting only the refunds read would release too much)."""
    sim.add_item("A")
    now = datetime.now(timezone.utc)
    gid = sim.add_order([("A", 3)], updated_at=now - timedelta(minutes=9))
    sim.refund_order(gid, [("A", 1)], updated_at=now - timedelta(minutes=8))
    sim.edit_order(gid, "A", 1, updated_at=now - timedelta(minutes=7))
    adapter = make_adapter(sim)
    [order] = adapter.fetch_orders(now - timedelta(hours=1))
    assert [ln.quantity for ln in order.lines] == [2.0]
    monkeypatch.setattr(
        sim,
        "_order_refunds",
        lambda version, query, variables: (
            {"order": {"refunds": [{"refundLineItems": None}]}},
            1,
        ),
    )
    [order] = adapter.fetch_orders(now - timedelta(hours=1))
    assert [ln.quantity for ln in order.lines] == [3.0]


# -- webhooks ------------------------------------------------------------------
HEADERS = {
    "X-Shopify-Event-Id": "evt-1",
    "X-Shopify-Webhook-Id": "wh-1",
    "X-Shopify-Triggered-At": "2026-11-20T10:00:00.123456789Z",
}
ORDER = {
    "id": 820982911946154508,
    "updated_at": "2026-11-20T09:59:00-05:00",
    "financial_status": "paid",
    "line_items": [{"id": 1, "sku": "A", "quantity": 2, "variant_id": 55}],
}


@pytest.fixture
def adapter():
    config = ChannelConfig("shopify", base_url="https://unused.example")
    return ShopifyAdapter(config)


@pytest.mark.parametrize("topic", ["orders/create", "orders/paid"])
def test_order_topics(adapter, topic):
    [event] = adapter.parse_webhook(topic, ORDER, HEADERS)
    assert event.kind == "order"
    assert event.idempotency_key == f"{topic}:evt-1"
    assert event.event_time == datetime(2026, 11, 20, 10, 0, 0, 123456, timezone.utc)
    assert event.order.external_id == "gid://shopify/Order/820982911946154508"
    assert event.order.status == "open"
    [line] = event.order.lines
    assert (line.sku, line.quantity) == ("A", 2.0)
    assert line.external_variant_id == "gid://shopify/ProductVariant/55"
    assert event.order.created_at is None
    placed = dict(ORDER, created_at="2026-11-20T09:58:00-05:00")
    [event] = adapter.parse_webhook(topic, placed, HEADERS)
    assert event.order.created_at == datetime(2026, 11, 20, 14, 58, tzinfo=timezone.utc)


def test_triggered_at_cannot_move_an_event_past_its_signed_time(adapter):
    """The header is not signed: a captured body replayed with a later
    triggered-at stays at the body's own time (plus the second it rounds)."""
    body = dict(ORDER, updated_at="2026-11-20T10:00:00Z")
    forged = dict(HEADERS, **{"X-Shopify-Triggered-At": "2026-11-20T11:00:00Z"})
    [event] = adapter.parse_webhook("orders/create", body, forged)
    assert event.event_time == datetime(2026, 11, 20, 10, 0, 1, tzinfo=timezone.utc)
    # within that second the header orders events, to the microsecond
    precise = dict(HEADERS, **{"X-Shopify-Triggered-At": "2026-11-20T10:00:00.5Z"})
    [event] = adapter.parse_webhook("orders/create", body, precise)
    assert event.event_time == datetime(2026, 11, 20, 10, 0, 0, 500000, timezone.utc)
    # no header: the body's time
    bare = {"X-Shopify-Event-Id": "evt-2"}
    [event] = adapter.parse_webhook("orders/create", body, bare)
    assert event.event_time == datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)


def test_unreadable_triggered_at(adapter):
    """An unreadable header does not spoil a body that has a time of its own;
    without one, the event cannot be ordered: an error."""
    body = dict(ORDER, updated_at="2026-11-20T10:00:00Z")
    timeless = {k: v for k, v in ORDER.items() if k != "updated_at"}
    # unreadable, and readable but beyond what UTC can hold (OverflowError)
    for value in (
        "99999-01-01T00:00:00Z",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-23:59",
    ):
        broken = dict(HEADERS, **{"X-Shopify-Triggered-At": value})
        [event] = adapter.parse_webhook("orders/create", body, broken)
        assert event.event_time == datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)
        with pytest.raises(ValueError):
            adapter.parse_webhook("orders/create", timeless, broken)


def test_cancelled_topic(adapter):
    body = dict(ORDER, cancelled_at="2026-11-20T10:00:00Z")
    [event] = adapter.parse_webhook("orders/cancelled", json.dumps(body), HEADERS)
    assert event.kind == "cancel"
    assert event.order.status == "cancelled"


def test_updated_topic_follows_only(adapter):
    """orders/updated never reserves an order of its own, never releases
    for a refund (refunds/create does), and releases a cancelled order."""
    [event] = adapter.parse_webhook("orders/updated", ORDER, HEADERS)
    assert event.kind == "order" and event.order.follow_only
    assert event.idempotency_key == "orders/updated:evt-1"
    assert [(ln.sku, ln.quantity) for ln in event.order.lines] == [("A", 2.0)]
    refunded = dict(ORDER, financial_status="refunded")
    [event] = adapter.parse_webhook("orders/updated", json.dumps(refunded), HEADERS)
    assert event.kind == "order" and event.order.status == "open"
    cancelled = dict(ORDER, cancelled_at="2026-11-20T10:00:00Z")
    [event] = adapter.parse_webhook("orders/updated", json.dumps(cancelled), HEADERS)
    assert event.kind == "cancel" and event.order.status == "cancelled"
    assert not event.order.follow_only
    [event] = adapter.parse_webhook("orders/create", ORDER, HEADERS)
    assert not event.order.follow_only


def test_order_lines_less_what_edits_removed(adapter):
    """A line sells its quantity less what order edits removed: its
    ``current_quantity`` plus what its refunds took (refunds release by
    their own events). Without the order's refunds the payload cannot tell
    a removal from a refund: the line sells what was first ordered."""
    body = dict(
        ORDER,
        line_items=[
            # 5 ordered, 1 removed by an edit, 2 refunded: 2 left
            {"id": 1, "sku": "A", "quantity": 5, "current_quantity": 2},
            # removed entirely
            {"id": 2, "sku": "B", "quantity": 3, "current_quantity": 0},
            # refunded only: nothing removed
            {"id": 3, "sku": "C", "quantity": 2, "current_quantity": 1},
            # a payload of an API version before current_quantity
            {"id": 4, "sku": "D", "quantity": 4},
        ],
        refunds=[
            {
                "id": 7,
                "refund_line_items": [
                    {"line_item_id": 1, "quantity": 1, "restock_type": "cancel"},
                    {"line_item_id": 3, "quantity": 1, "restock_type": "no_restock"},
                ],
            },
            {
                "id": 8,
                "refund_line_items": [
                    {"quantity": 1, "restock_type": "return", "line_item": {"id": 1}}
                ],
            },
        ],
    )
    for topic in ("orders/updated", "orders/create", "orders/paid"):
        [event] = adapter.parse_webhook(topic, json.dumps(body), HEADERS)
        assert [(ln.sku, ln.quantity) for ln in event.order.lines] == [
            ("A", 4.0),
            ("B", 0.0),
            ("C", 2.0),
            ("D", 4.0),
        ]
    without_refunds = {k: v for k, v in body.items() if k != "refunds"}
    [event] = adapter.parse_webhook("orders/updated", without_refunds, HEADERS)
    assert [ln.quantity for ln in event.order.lines] == [5.0, 3.0, 2.0, 4.0]
    # a refund whose lines the subscription leaves out: the same
    unlined = dict(body, refunds=[*body["refunds"], {"id": 9}])
    [event] = adapter.parse_webhook("orders/updated", unlined, HEADERS)
    assert [ln.quantity for ln in event.order.lines] == [5.0, 3.0, 2.0, 4.0]
    # a line never sells more than was ordered, whatever current_quantity says
    grown = dict(
        body, line_items=[{"id": 1, "sku": "A", "quantity": 1, "current_quantity": 3}]
    )
    [event] = adapter.parse_webhook("orders/updated", grown, HEADERS)
    assert [ln.quantity for ln in event.order.lines] == [1.0]


@pytest.mark.parametrize(
    "change",
    [
        {"refunds": {"id": 1}},
        {"refunds": ["x"]},
        {"refunds": [{"id": 1, "refund_line_items": {"id": 2}}]},
        {"refunds": [{"refund_line_items": ["x"]}]},
        {"refunds": [{"refund_line_items": [{"line_item_id": 1, "quantity": "x"}]}]},
        {"refunds": [{"refund_line_items": [{"line_item_id": 1, "quantity": True}]}]},
        {
            "line_items": [
                {"id": 1, "sku": "A", "quantity": 2, "current_quantity": "-Infinity"}
            ],
            "refunds": [],
        },
        {
            "line_items": [
                {"id": 1, "sku": "A", "quantity": 2, "current_quantity": {}}
            ],
            "refunds": [],
        },
    ],
)
def test_order_refunds_malformed(adapter, change):
    with pytest.raises(ValueError, match="orders/updated payload"):
        adapter.parse_webhook("orders/updated", dict(ORDER, **change), HEADERS)


def test_refund_restocks_only_restocked_lines(adapter):
    body = {
        "id": 9,
        "order_id": 77,
        "created_at": "2026-11-20T10:00:00Z",
        "refund_line_items": [
            {"quantity": 1, "restock_type": "return", "line_item": {"sku": "A"}},
            {"quantity": 2, "restock_type": "no_restock", "line_item": {"sku": "B"}},
            {"quantity": 3, "restock_type": "cancel", "line_item": {"sku": "C"}},
        ],
    }
    [event] = adapter.parse_webhook("refunds/create", body, HEADERS)
    assert event.kind == "cancel"
    assert event.order.external_id == "gid://shopify/Order/77"
    assert event.order.status == "refunded"
    assert event.order.restock is True
    assert [(ln.sku, ln.quantity) for ln in event.order.lines] == [
        ("A", 1.0),
        ("C", 3.0),
    ]
    # a return among them: it may be of shipped units
    assert event.order.unshipped is False


def test_refund_of_units_never_fulfilled_is_unshipped(adapter):
    """``restock_type: cancel`` restocks units that were never fulfilled:
    no return, whatever shipped of the order."""
    body = {
        "order_id": 77,
        "refund_line_items": [
            {"quantity": 2, "restock_type": "cancel", "line_item": {"sku": "C"}},
            {"quantity": 1, "restock_type": "no_restock", "line_item": {"sku": "B"}},
        ],
    }
    [event] = adapter.parse_webhook("refunds/create", body, HEADERS)
    assert event.order.unshipped is True
    assert [(ln.sku, ln.quantity) for ln in event.order.lines] == [("C", 2.0)]


def test_refund_without_restock(adapter):
    body = {
        "order_id": 77,
        "refund_line_items": [
            {"quantity": 2, "restock_type": "no_restock", "line_item": {"sku": "B"}}
        ],
    }
    [event] = adapter.parse_webhook("refunds/create", body, HEADERS)
    assert event.order.restock is False
    assert [ln.sku for ln in event.order.lines] == ["B"]


def test_inventory_level_topic_and_webhook_id_fallback(adapter):
    body = {
        "inventory_item_id": 271878346596884015,
        "location_id": 24826418,
        "available": 6,
        "updated_at": "2026-11-20T05:00:00-05:00",
    }
    headers = {"x-shopify-webhook-id": "wh-9"}
    [event] = adapter.parse_webhook("inventory_levels/update", body, headers)
    assert event.kind == "inventory"
    assert event.idempotency_key == "inventory_levels/update:wh-9"
    assert event.event_time == datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)
    [level] = event.levels
    assert level.quantity == 6
    assert level.external_variant_id == "gid://shopify/InventoryItem/271878346596884015"
    assert level.external_location_id == "gid://shopify/Location/24826418"


def test_untracked_level_and_unknown_topic_are_ignored(adapter):
    body = {"inventory_item_id": 1, "available": None}
    [event] = adapter.parse_webhook("inventory_levels/update", body, HEADERS)
    assert event.kind == "ignored"
    [event] = adapter.parse_webhook("products/update", {"id": 1}, HEADERS)
    assert event.kind == "ignored"


@pytest.mark.parametrize(
    ("topic", "payload", "headers", "fragment"),
    [
        ("orders/create", ORDER, {}, "X-Shopify-Event-Id"),
        ("orders/create", b"{not json", HEADERS, "not JSON"),
        ("orders/create", "[1, 2]", HEADERS, "not a JSON object"),
        ("orders/create", {"id": 1}, HEADERS, "line_items"),
        ("orders/paid", {"line_items": []}, HEADERS, "id"),
        ("orders/create", {"id": 1, "line_items": [{"sku": "A"}]}, HEADERS, "quantity"),
        ("refunds/create", {"order_id": 1}, HEADERS, "refund_line_items"),
        ("refunds/create", {"refund_line_items": []}, HEADERS, "order_id"),
        ("inventory_levels/update", {"inventory_item_id": 1}, HEADERS, "available"),
        ("inventory_levels/update", {"available": 3}, HEADERS, "inventory_item_id"),
        (
            "inventory_levels/update",
            {"inventory_item_id": 1, "available": "many"},
            HEADERS,
            "not a number",
        ),
        (
            "orders/create",
            {"id": [1], "line_items": []},
            HEADERS,
            "id must be a string or an integer",
        ),
        (
            "refunds/create",
            {"order_id": {"id": 1}, "refund_line_items": []},
            HEADERS,
            "order_id must be a string or an integer",
        ),
        (
            "inventory_levels/update",
            {"inventory_item_id": True, "available": 3},
            HEADERS,
            "inventory_item_id must be a string or an integer",
        ),
    ],
)
def test_malformed_webhooks_raise_value_error(
    adapter, topic, payload, headers, fragment
):
    with pytest.raises(ValueError, match=fragment) as err:
        adapter.parse_webhook(topic, payload, headers)
    assert isinstance(err.value, WebhookPayloadError)


def test_refund_is_keyed_by_its_own_id(adapter):
    """Refunds add up: the same refund under another (unsigned) event id
    must be the same event, or a replay would release its units again."""
    body = {
        "id": 9,
        "order_id": 77,
        "refund_line_items": [
            {"quantity": 1, "restock_type": "return", "line_item": {"sku": "A"}}
        ],
    }
    [first] = adapter.parse_webhook("refunds/create", body, HEADERS)
    other = dict(HEADERS, **{"X-Shopify-Event-Id": "evt-2"})
    [again] = adapter.parse_webhook("refunds/create", body, other)
    assert first.idempotency_key == again.idempotency_key == "refunds/create:refund:9"
    [second] = adapter.parse_webhook("refunds/create", dict(body, id=10), HEADERS)
    assert second.idempotency_key != first.idempotency_key


@pytest.mark.parametrize("cancelled_at", [None, "", False])
def test_cancel_topic_needs_a_cancelled_body(adapter, cancelled_at):
    """The topic header is not signed: an order body that is not cancelled,
    sent under orders/cancelled, is refused rather than releasing it."""
    body = dict(ORDER, cancelled_at=cancelled_at)
    with pytest.raises(ValueError, match="cancelled_at"):
        adapter.parse_webhook("orders/cancelled", body, HEADERS)
    with pytest.raises(ValueError, match="cancelled_at"):
        adapter.parse_webhook("orders/cancelled", ORDER, HEADERS)


@pytest.mark.parametrize("available", [True, 2.7, "2.7", {"a": 1}])
def test_level_must_be_a_whole_number(adapter, available):
    body = {"inventory_item_id": 808950810, "location_id": 7, "available": available}
    with pytest.raises(ValueError, match="available"):
        adapter.parse_webhook("inventory_levels/update", body, HEADERS)


def test_refund_quantity_true_is_refused(adapter):
    body = {
        "id": 9,
        "order_id": 77,
        "refund_line_items": [
            {"quantity": True, "restock_type": "return", "line_item": {"sku": "A"}}
        ],
    }
    with pytest.raises(ValueError, match="not a number"):
        adapter.parse_webhook("refunds/create", body, HEADERS)
