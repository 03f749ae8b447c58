"""AmazonAdapter against AmazonSimulator: LWA tokens, PATCH and feeds, usage
plans, the feed size limit, searches, orders and SQS notifications."""

import json
import logging
from datetime import datetime, timedelta, timezone

import pytest
import requests
from fakes import FakeClock, stock_updates

from lib.adapters import get_adapter_class
from lib.adapters.amazon import MAX_FEED_MESSAGES, AmazonAdapter
from lib.adapters.base import (
    AuthenticationError,
    PermanentChannelError,
    RateLimitedError,
    StockUpdate,
)
from simulators import get_simulator_class
from simulators.amazon import AmazonSimulator, order_change_notification

#: the adapter's (fake) wall clock starts here
START = 1_800_000_000.0


@pytest.fixture
def sim():
    with AmazonSimulator(rate_limits={}) as simulator:
        yield simulator


@pytest.fixture
def limited():
    """A simulator metering patchListingsItem at 0.5/s with a burst of 2."""
    with AmazonSimulator(rate_limits={"patchListingsItem": (0.5, 2)}) as simulator:
        yield simulator


def make_adapter(sim, clock=None, **extra):
    clock = clock or FakeClock(START)
    return AmazonAdapter(
        sim.channel_config(extra=extra), clock=clock, sleep=clock.sleep
    )


def raw_token(sim):
    answer = requests.post(
        sim.url + "/auth/o2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": sim.refresh_token,
            "client_id": sim.client_id,
            "client_secret": sim.client_secret,
        },
        timeout=5,
    )
    return answer.json()["access_token"]


def uploaded_feeds(sim):
    return [json.loads(r.body) for r in sim.requests_for("PUT", "/_storage/upload/")]


def test_registries_build_adapter_and_simulator_without_arguments():
    assert get_adapter_class("amazon") is AmazonAdapter
    simulator = get_simulator_class("amazon")()
    with simulator:
        rows = simulator.seed_skus(3)
        config = simulator.channel_config()
    assert [r["sku"] for r in rows] == ["AMZ-000000", "AMZ-000001", "AMZ-000002"]
    assert config.channel_type == "amazon" and config.account_id == simulator.seller_id


# -- one quantity --------------------------------------------------------------
def test_single_update_is_a_merge_patch_of_fulfillment_availability(sim):
    rows = sim.seed_skus(2)
    adapter = make_adapter(sim)

    result = adapter.set_quantity(StockUpdate(sku=rows[0]["sku"], quantity=7))

    assert result.ok and result.quantity == 7 and result.status == 200
    assert sim.quantity(rows[0]["sku"]) == 7
    assert sim.quantity(rows[1]["sku"]) == 10
    [patch] = sim.requests_for("PATCH", "/listings/")
    assert patch.path == f"/listings/2021-08-01/items/{sim.seller_id}/AMZ-000000"
    assert patch.query == {"marketplaceIds": sim.marketplace_id}
    assert patch.headers["x-amz-access-token"].startswith("Atza|sim-")
    assert patch.json() == {
        "productType": "PRODUCT",
        "patches": [
            {
                "op": "merge",
                "path": "/attributes/fulfillment_availability",
                "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": 7}],
            }
        ],
    }
    assert sim.token_requests == 1


def test_product_type_comes_from_the_sku_map_then_the_default(sim):
    rows = sim.seed_skus(2)
    adapter = make_adapter(
        sim, product_type="LUGGAGE", product_types={rows[0]["sku"]: "SHOES"}
    )

    adapter.set_quantities(stock_updates(rows, 3))

    types = [r.json()["productType"] for r in sim.requests_for("PATCH", "/listings/")]
    assert types == ["SHOES", "LUGGAGE"]


def test_sku_is_quoted_in_the_path(sim):
    [row] = sim.seed_skus(1, prefix="A/B ")

    make_adapter(sim).set_quantity(StockUpdate(sku=row["sku"], quantity=4))

    assert sim.quantity("A/B 000000") == 4


def test_invalid_submission_is_a_permanent_error_of_that_item(sim):
    bad, good = sim.seed_skus(2)
    sim.reject_sku(bad["sku"], "restricted brand")
    adapter = make_adapter(sim)

    results = adapter.set_quantities(stock_updates([bad, good], 5))

    assert not results[0].ok
    assert isinstance(results[0].error, PermanentChannelError)
    assert "SIMULATOR_REJECTED: restricted brand" in str(results[0].error)
    assert results[1].ok and sim.quantity(good["sku"]) == 5
    assert sim.quantity(bad["sku"]) == 10
    with pytest.raises(PermanentChannelError, match="INVALID"):
        adapter.set_quantity(StockUpdate(sku=bad["sku"], quantity=1))


# -- feeds ------------------------------------------------------------------------
def test_many_updates_go_in_one_json_listings_feed(sim):
    rows = sim.seed_skus(30)
    adapter = make_adapter(sim)

    results = adapter.set_quantities(stock_updates(rows, 4))

    assert [r.ok for r in results] == [True] * 30
    assert {sim.quantity(r["sku"]) for r in rows} == {4}
    assert sim.requests_for("PATCH", "/listings/") == []
    [create] = sim.requests_for("POST", "/feeds/2021-06-30/feeds")
    assert create.json()["feedType"] == "JSON_LISTINGS_FEED"
    assert create.json()["marketplaceIds"] == [sim.marketplace_id]
    [upload] = sim.requests_for("PUT", "/_storage/upload/")
    assert "x-amz-access-token" not in upload.headers
    assert upload.headers["content-type"] == "application/json; charset=UTF-8"
    [feed] = uploaded_feeds(sim)
    assert feed["header"] == {
        "sellerId": sim.seller_id,
        "version": "2.0",
        "issueLocale": "en_US",
    }
    assert [m["messageId"] for m in feed["messages"]] == list(range(1, 31))
    first = feed["messages"][0]
    assert first["operationType"] == "PATCH" and first["sku"] == "AMZ-000000"
    assert first["patches"][0]["value"][0]["quantity"] == 4


def test_feed_report_issues_are_mapped_to_items_by_message_id(sim):
    rows = sim.seed_skus(15)
    sim.reject_sku(rows[6]["sku"])

    results = make_adapter(sim).set_quantities(stock_updates(rows, 2))

    assert [r.ok for r in results] == [True] * 6 + [False] + [True] * 8
    assert isinstance(results[6].error, PermanentChannelError)
    assert rows[6]["sku"] in str(results[6].error)
    assert "SIMULATOR_REJECTED" in str(results[6].error)
    assert sim.quantity(rows[6]["sku"]) == 10 and sim.quantity(rows[7]["sku"]) == 2


def test_gzipped_processing_report_is_read(sim):
    sim.compress_reports = True
    rows = sim.seed_skus(12)
    sim.reject_sku(rows[0]["sku"])

    results = make_adapter(sim).set_quantities(stock_updates(rows, 1))

    assert not results[0].ok and all(r.ok for r in results[1:])


def test_feed_processed_after_polls_waits_between_them(sim):
    sim.feed_polls_to_done = 3
    rows = sim.seed_skus(11)
    clock = FakeClock(START)
    adapter = make_adapter(sim, clock=clock, feed_poll_interval=15)

    results = adapter.set_quantities(stock_updates(rows, 6))

    assert all(r.ok and r.status == 200 for r in results)
    assert len(sim.requests_for("GET", "/feeds/2021-06-30/feeds/")) == 3
    assert clock.sleeps == [15, 15]
    assert sim.quantity(rows[0]["sku"]) == 6


def test_feed_still_queued_is_reported_accepted_not_applied(sim):
    sim.feed_polls_to_done = 50
    rows = sim.seed_skus(11)
    adapter = make_adapter(sim, feed_poll_attempts=2, feed_poll_interval=1)

    results = adapter.set_quantities(stock_updates(rows, 6))

    assert all(r.ok and r.status == 202 for r in results)
    assert "IN_PROGRESS" in results[0].response
    assert sim.quantity(rows[0]["sku"]) == 10


def test_simulator_ends_a_raw_feed_over_25000_messages_fatal(sim):
    [row] = sim.seed_skus(1)
    headers = {"x-amz-access-token": raw_token(sim)}
    document = requests.post(
        sim.url + "/feeds/2021-06-30/documents",
        json={"contentType": "application/json"},
        headers=headers,
        timeout=5,
    ).json()
    patch = {
        "op": "merge",
        "path": "/attributes/fulfillment_availability",
        "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": 99}],
    }
    messages = [
        {
            "messageId": n,
            "sku": row["sku"],
            "operationType": "PATCH",
            "productType": "PRODUCT",
            "patches": [patch],
        }
        for n in range(1, MAX_FEED_MESSAGES + 2)
    ]
    body = {
        "header": {"sellerId": sim.seller_id, "version": "2.0"},
        "messages": messages,
    }
    requests.put(
        document["url"],
        data=json.dumps(body),
        headers={"Content-Type": "application/json"},
        timeout=10,
    ).raise_for_status()
    created = requests.post(
        sim.url + "/feeds/2021-06-30/feeds",
        json={
            "feedType": "JSON_LISTINGS_FEED",
            "marketplaceIds": [sim.marketplace_id],
            "inputFeedDocumentId": document["feedDocumentId"],
        },
        headers=headers,
        timeout=5,
    )
    assert created.status_code == 202
    feed_url = f"{sim.url}/feeds/2021-06-30/feeds/{created.json()['feedId']}"
    feed = requests.get(feed_url, headers=headers, timeout=5).json()

    assert feed["processingStatus"] == "FATAL"
    result_url = f"{sim.url}/feeds/2021-06-30/documents/{feed['resultFeedDocumentId']}"
    meta = requests.get(result_url, headers=headers, timeout=5).json()
    report = requests.get(meta["url"], timeout=5).json()
    assert report["issues"][0]["code"] == "SIMULATOR_TOO_MANY_MESSAGES"
    assert sim.quantity(row["sku"]) == 10


def test_adapter_splits_25001_updates_into_two_feeds(sim):
    rows = sim.seed_skus(MAX_FEED_MESSAGES + 1, quantity=0)

    results = make_adapter(sim).set_quantities(stock_updates(rows, 8))

    assert len(results) == MAX_FEED_MESSAGES + 1 and all(r.ok for r in results)
    assert [len(f["messages"]) for f in uploaded_feeds(sim)] == [MAX_FEED_MESSAGES, 1]
    assert len(sim.requests_for("POST", "/feeds/2021-06-30/feeds")) == 2
    assert sim.quantity(rows[0]["sku"]) == 8 and sim.quantity(rows[-1]["sku"]) == 8


def test_duplicate_skus_in_a_batch_send_only_the_newest(sim):
    rows = sim.seed_skus(11)
    batch = stock_updates(rows, 3)
    batch[0].sequence = 2
    batch.append(StockUpdate(sku=rows[0]["sku"], quantity=1, sequence=1))
    batch.append(StockUpdate(sku=rows[1]["sku"], quantity=9, sequence=5))

    results = make_adapter(sim).set_quantities(batch)

    [feed] = uploaded_feeds(sim)
    assert len(feed["messages"]) == 11
    assert sim.quantity(rows[0]["sku"]) == 3 and sim.quantity(rows[1]["sku"]) == 9
    assert results[11].ok and results[11].quantity == 3
    assert "superseded" in results[11].response
    assert results[1].quantity == 9


# -- usage plans ----------------------------------------------------------------
def test_client_bucket_spaces_patches_at_the_published_rate(sim):
    rows = sim.seed_skus(8)
    clock = FakeClock(START)
    adapter = make_adapter(sim, clock=clock)

    for row in rows:
        assert adapter.set_quantity(StockUpdate(sku=row["sku"], quantity=2)).ok

    # burst of 5, then one call every 0.2 s at 5 requests per second
    assert clock.sleeps == pytest.approx([0.2, 0.2, 0.2])
    assert len(sim.requests_for("PATCH", "/listings/")) == 8


def test_a_long_client_wait_raises_instead_of_blocking(sim):
    first, second = sim.seed_skus(2)
    adapter = make_adapter(
        sim, rate_limits={"patchListingsItem": [0.1, 1]}, max_throttle_wait=1
    )
    adapter.set_quantity(StockUpdate(sku=first["sku"], quantity=1))

    with pytest.raises(RateLimitedError) as caught:
        adapter.set_quantity(StockUpdate(sku=second["sku"], quantity=1))

    assert caught.value.retry_after == pytest.approx(10.0)
    assert len(sim.requests_for("PATCH", "/listings/")) == 1


def test_server_429_becomes_rate_limited_with_the_reported_rate(limited):
    rows = limited.seed_skus(3)
    adapter = make_adapter(limited, client_throttle=False)
    adapter.set_quantity(StockUpdate(sku=rows[0]["sku"], quantity=1))
    adapter.set_quantity(StockUpdate(sku=rows[1]["sku"], quantity=1))

    with pytest.raises(RateLimitedError) as caught:
        adapter.set_quantity(StockUpdate(sku=rows[2]["sku"], quantity=1))

    assert caught.value.status == 429
    assert caught.value.retry_after == pytest.approx(2.0)
    assert "QuotaExceeded" in str(caught.value)
    assert limited.quantity(rows[2]["sku"]) == 10


def test_throttle_mid_batch_keeps_the_results_already_made(limited):
    rows = limited.seed_skus(3)
    adapter = make_adapter(limited, client_throttle=False)

    results = adapter.set_quantities(stock_updates(rows, 5))

    assert [r.ok for r in results] == [True, True, False]
    assert isinstance(results[2].error, RateLimitedError)
    assert [limited.quantity(r["sku"]) for r in rows] == [5, 5, 10]


def test_throttle_before_anything_was_sent_fails_the_whole_call(limited):
    rows = limited.seed_skus(4)
    adapter = make_adapter(limited, client_throttle=False)
    adapter.set_quantities(stock_updates(rows[:2], 1))

    with pytest.raises(RateLimitedError):
        adapter.set_quantities(stock_updates(rows[2:], 5))

    assert [limited.quantity(r["sku"]) for r in rows[2:]] == [10, 10]


def test_adapter_adopts_the_rate_amazon_reports():
    simulator = AmazonSimulator(rate_limits={"patchListingsItem": (20.0, 40)})
    with simulator:
        [row] = simulator.seed_skus(1)
        adapter = make_adapter(simulator)
        adapter.set_quantity(StockUpdate(sku=row["sku"], quantity=1))
    assert adapter.buckets["patchListingsItem"].rate == 20.0


# -- tokens -----------------------------------------------------------------------
def test_token_is_cached_then_renewed_shortly_before_it_expires(sim):
    rows = sim.seed_skus(3)
    clock = FakeClock(START)
    adapter = make_adapter(sim, clock=clock)
    adapter.set_quantity(StockUpdate(sku=rows[0]["sku"], quantity=1))
    clock.now += 3000
    adapter.set_quantity(StockUpdate(sku=rows[1]["sku"], quantity=1))
    assert sim.token_requests == 1

    clock.now += 570  # 30 s before the hour: inside the renewal margin
    adapter.set_quantity(StockUpdate(sku=rows[2]["sku"], quantity=1))

    assert sim.token_requests == 2 and adapter.token_refreshes == 2


def test_token_expiring_mid_run_is_renewed_once_and_the_run_goes_on(sim):
    rows = sim.seed_skus(5)
    adapter = make_adapter(sim)
    sim.expire_tokens_after(2)

    results = adapter.set_quantities(stock_updates(rows, 7))

    assert all(r.ok for r in results)
    assert {sim.quantity(r["sku"]) for r in rows} == {7}
    assert sim.token_requests == 2
    # the third PATCH was refused as expired and sent again
    assert len(sim.requests_for("PATCH", "/listings/")) == 6


def test_refused_refresh_token_is_an_authentication_error_without_secrets(sim):
    [row] = sim.seed_skus(1)
    config = sim.channel_config(refresh_token="Atzr|revoked")
    adapter = AmazonAdapter(config, clock=FakeClock(START))

    with pytest.raises(AuthenticationError, match="invalid_grant") as caught:
        adapter.set_quantity(StockUpdate(sku=row["sku"], quantity=1))

    text = str(caught.value) + caught.value.response_text
    assert sim.client_secret not in text and "Atzr|revoked" not in text
    assert sim.requests_for("PATCH", "/listings/") == []


def test_403_that_is_not_about_the_token_does_not_renew_it(sim):
    [row] = sim.seed_skus(1)
    adapter = AmazonAdapter(sim.channel_config(account_id="AOTHERSELLER"))

    with pytest.raises(AuthenticationError):
        adapter.set_quantity(StockUpdate(sku=row["sku"], quantity=1))

    assert sim.token_requests == 1


def test_secrets_and_tokens_never_reach_the_logs(sim, caplog):
    [row] = sim.seed_skus(1)
    caplog.set_level(logging.DEBUG)
    adapter = make_adapter(sim)
    sim.expire_tokens_after(0)
    adapter.set_quantity(StockUpdate(sku=row["sku"], quantity=1))
    with pytest.raises(AuthenticationError):
        AmazonAdapter(sim.channel_config(api_secret="wrong-secret")).test_connection()

    assert "renewing it once" in caplog.text
    for secret in (sim.client_secret, sim.refresh_token, "wrong-secret", "Atza|"):
        assert secret not in caplog.text


# -- reads ------------------------------------------------------------------------
def test_read_quantities_pages_through_the_catalogue(sim):
    rows = sim.seed_skus(45)
    sim.quantities[rows[44]["sku"]] = 3

    levels = list(make_adapter(sim).read_quantities())

    assert [lv.sku for lv in levels] == [r["sku"] for r in rows]
    assert levels[44].quantity == 3 and levels[0].quantity == 10
    # an ASIN is shared by several seller SKUs: not a listing's id
    assert levels[0].external_id == ""
    assert levels[0].updated_at is not None
    searches = sim.requests_for("GET", f"/listings/2021-08-01/items/{sim.seller_id}")
    assert len(searches) == 3
    assert (
        searches[0].query["pageSize"] == "20" and searches[0].query["sortBy"] == "sku"
    )
    assert "pageToken" not in searches[0].query and "pageToken" in searches[1].query


def test_read_quantities_of_given_skus_searches_20_identifiers_at_a_time(sim):
    rows = sim.seed_skus(50)
    wanted = [StockUpdate(sku=r["sku"], quantity=0) for r in rows[:25]]

    levels = list(make_adapter(sim).read_quantities(wanted))

    assert sorted(lv.sku for lv in levels) == sorted(u.sku for u in wanted)
    searches = sim.requests_for("GET", "/listings/")
    assert [len(s.query["identifiers"].split(",")) for s in searches] == [20, 5]
    assert {s.query["identifiersType"] for s in searches} == {"SKU"}


def test_sku_containing_a_comma_is_read_alone(sim):
    [row] = sim.seed_skus(1, prefix="A,B-")
    sim.quantities[row["sku"]] = 4

    levels = list(make_adapter(sim).read_quantities([row["sku"], "X,missing"]))

    assert [(lv.sku, lv.quantity) for lv in levels] == [("A,B-000000", 4)]
    paths = [r.path for r in sim.requests_for("GET", "/listings/")]
    assert paths == [
        f"/listings/2021-08-01/items/{sim.seller_id}/A%2CB-000000",
        f"/listings/2021-08-01/items/{sim.seller_id}/X%2Cmissing",
    ]


def test_simulator_refuses_a_page_size_over_20(sim):
    answer = requests.get(
        f"{sim.url}/listings/2021-08-01/items/{sim.seller_id}",
        params={"marketplaceIds": sim.marketplace_id, "pageSize": 21},
        headers={"x-amz-access-token": raw_token(sim)},
        timeout=5,
    )
    assert answer.status_code == 400
    assert answer.json()["errors"][0]["code"] == "InvalidInput"


def test_search_stops_at_amazons_1000_results_and_says_so(sim, caplog):
    sim.seed_skus(1005)

    levels = list(make_adapter(sim).read_quantities())

    assert len(levels) == 1000
    assert "1005" in caplog.text and "read the others by SKU" in caplog.text


# -- orders -----------------------------------------------------------------------
def test_fetch_orders_since_follows_next_token_and_reads_items(sim):
    [row] = sim.seed_skus(1)
    since = datetime.now(timezone.utc) - timedelta(hours=1)
    for n in range(5):
        sim.seed_order([(row["sku"], 1)], updated_at=since - timedelta(minutes=n + 1))
    for n in range(128):
        sim.seed_order([(row["sku"], 2)], updated_at=since + timedelta(seconds=n))
    cancelled = sim.seed_order([(row["sku"], 3)], status="Canceled")
    big = sim.seed_order([(f"SKU-{n}", 1) for n in range(25)])

    orders = list(make_adapter(sim).fetch_orders(since))

    assert len(orders) == 130
    by_id = {o.external_id: o for o in orders}
    assert by_id[cancelled].status == "cancelled"
    assert len(by_id[big].lines) == 25
    first = orders[0]
    assert first.status == "open" and first.updated_at >= since
    assert first.created_at is not None  # createdTime
    assert (first.lines[0].sku, first.lines[0].quantity) == (row["sku"], 2.0)
    # Orders 2026-01-01: the items come with the orders, 100 a page
    assert not sim.requests_for("GET", "/orders/v0/")
    listing = sim.requests_for("GET", "/orders/2026-01-01/orders")
    assert len(listing) == 2
    assert listing[0].query["lastUpdatedAfter"] == since.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert listing[0].query["includedData"] == "FULFILLMENT,CANCELLATION"
    # the next page carries its token and the same parameters again
    assert "paginationToken" in listing[1].query
    assert listing[1].query["lastUpdatedAfter"] == listing[0].query["lastUpdatedAfter"]
    assert listing[1].query["fulfilledBy"] == "MERCHANT"


def test_an_item_cancelled_on_its_own_sells_nothing(sim):
    """Orders 2026-01-01 reports an item cancelled alone (the order stays
    open) by its cancellationExecution: its line is read as 0 units, so
    that its reservation is released; a buyer's request not acted on yet
    keeps it."""
    rows = sim.seed_skus(3)
    skus = [row["sku"] for row in rows]
    order_id = sim.seed_order([(skus[0], 2), (skus[1], 1), (skus[2], 4)])
    sim.cancel_order_item(order_id, skus[1])
    sim.cancel_order_item(order_id, skus[2], executed=False)
    since = datetime.now(timezone.utc) - timedelta(hours=1)
    [order] = list(make_adapter(sim).fetch_orders(since))
    assert order.status == "open"
    assert [(ln.sku, ln.quantity) for ln in order.lines] == [
        (skus[0], 2.0),
        (skus[1], 0.0),
        (skus[2], 4.0),
    ]
    # the item's cancellation comes with the CANCELLATION dataset only
    url = sim.url + "/orders/2026-01-01/orders"
    headers = {"x-amz-access-token": raw_token(sim)}
    since_text = "2020-01-01T00:00:00Z"
    for included, shown in (("FULFILLMENT", False), ("FULFILLMENT,CANCELLATION", True)):
        body = requests.get(
            url,
            params={"lastUpdatedAfter": since_text, "includedData": included},
            headers=headers,
            timeout=5,
        ).json()
        item = body["orders"][0]["orderItems"][1]
        assert ("cancellation" in item) is shown


def test_fetch_orders_stopped_by_the_burst_goes_on_from_its_page():
    """Past searchOrders' burst the fetch stops with a 429 that carries the
    page it could not read; a fetch given that page reads on from there."""
    with AmazonSimulator(rate_limits={"searchOrders": (0.0, 2)}) as limited:
        [row] = limited.seed_skus(1)
        since = datetime.now(timezone.utc) - timedelta(hours=1)
        for n in range(250):
            limited.seed_order(
                [(row["sku"], 1)], updated_at=since + timedelta(seconds=n)
            )
        adapter = make_adapter(limited)
        read = []
        with pytest.raises(RateLimitedError) as caught:
            read.extend(adapter.fetch_orders(since))
        assert len(read) == 200
        assert caught.value.resume
        limited.buckets["searchOrders"].tokens = 1.0
        rest = list(adapter.fetch_orders(since, resume=caught.value.resume))
        assert len(rest) == 50
        assert {o.external_id for o in read + rest} == set(limited.orders)
    # the first page refused: nothing to go on from
    with AmazonSimulator(rate_limits={"searchOrders": (0.0, 0)}) as closed:
        with pytest.raises(RateLimitedError) as caught:
            list(make_adapter(closed).fetch_orders(since))
        assert caught.value.resume is None


def test_search_orders_simulator_keeps_the_contract(sim):
    """The simulator refuses what searchOrders refuses: both dates or
    neither, a page size over 100, a page token with other parameters, an
    unknown dataset; an order's status only comes with FULFILLMENT."""
    [row] = sim.seed_skus(1)
    for _n in range(3):
        sim.seed_order([(row["sku"], 1)])
    url = sim.url + "/orders/2026-01-01/orders"
    headers = {"x-amz-access-token": raw_token(sim)}
    since = "2020-01-01T00:00:00Z"

    def get(**params):
        return requests.get(url, params=params, headers=headers, timeout=5)

    assert get().status_code == 400
    assert get(createdAfter=since, lastUpdatedAfter=since).status_code == 400
    assert get(lastUpdatedAfter=since, maxResultsPerPage=101).status_code == 400
    assert get(lastUpdatedAfter=since, includedData="EVERYTHING").status_code == 400
    first = get(lastUpdatedAfter=since, maxResultsPerPage=2).json()
    assert len(first["orders"]) == 2 and "fulfillment" not in first["orders"][0]
    token = first["pagination"]["nextToken"]
    moved = get(lastUpdatedAfter="2021-01-01T00:00:00Z", paginationToken=token)
    assert moved.status_code == 400
    rest = get(
        lastUpdatedAfter=since, paginationToken=token, includedData="FULFILLMENT"
    )
    [last] = rest.json()["orders"]
    assert last["fulfillment"]["fulfillmentStatus"] == "UNSHIPPED"
    assert "pagination" not in rest.json()


def test_order_without_its_status_is_refused_not_read_as_open(sim):
    """An answer that lacks the FULFILLMENT dataset asked for: the order's
    status is unknown, and a cancelled order must not be reserved."""
    [row] = sim.seed_skus(1)
    sim.seed_order([(row["sku"], 1)], status="Canceled")
    adapter = make_adapter(sim)
    real_call = adapter._call

    def without_dataset(operation, method, path, params=None, **kw):
        params = {k: v for k, v in (params or {}).items() if k != "includedData"}
        return real_call(operation, method, path, params=params, **kw)

    adapter._call = without_dataset
    since = datetime.now(timezone.utc) - timedelta(hours=1)
    with pytest.raises(PermanentChannelError, match="fulfillment status"):
        list(adapter.fetch_orders(since))


def test_orders_amazon_ships_itself_are_left_out(sim):
    """FBA orders (AFN) ship from Amazon's stock, never Odoo's: they are not
    asked for, and one answered anyway is skipped without reading its
    items; an FBA ORDER_CHANGE is ignored."""
    [row] = sim.seed_skus(1)
    since = datetime.now(timezone.utc) - timedelta(hours=1)
    mine = sim.seed_order([(row["sku"], 1)])
    sim.seed_order([(row["sku"], 3)], fulfillment="AFN")
    adapter = make_adapter(sim)

    assert [o.external_id for o in adapter.fetch_orders(since)] == [mine]
    [listing] = sim.requests_for("GET", "/orders/2026-01-01/orders")
    assert listing.query["fulfilledBy"] == "MERCHANT"

    # a server that ignores the filter: the order is still left out
    real_call = adapter._call

    def unfiltered(operation, method, path, params=None, **kw):
        params = {k: v for k, v in (params or {}).items() if k != "fulfilledBy"}
        return real_call(operation, method, path, params=params, **kw)

    adapter._call = unfiltered
    sim.seed_order([(row["sku"], 2)], fulfillment="AFN")
    assert [o.external_id for o in adapter.fetch_orders(since)] == [mine]

    fba = order_change_notification(
        "111-9", "Unshipped", [(row["sku"], 1)], sim.seller_id, fulfillment="AFN"
    )
    [event] = adapter.parse_webhook(None, fba, {})
    assert event.kind == "ignored" and event.order is None


def test_connection_check_names_the_marketplace(sim):
    assert "ATVPDKIKX0DER" in make_adapter(sim).test_connection()
    with pytest.raises(PermanentChannelError, match="A1PA6795UKMFR9"):
        AmazonAdapter(
            sim.channel_config(marketplace_id="A1PA6795UKMFR9")
        ).test_connection()


# -- notifications --------------------------------------------------------------
def test_order_change_notifications_become_orders_and_cancellations(sim):
    adapter = make_adapter(sim)
    when = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    body = order_change_notification(
        "111-1", "Unshipped", [("A", 2)], sim.seller_id, when
    )

    [event] = adapter.parse_webhook(None, body, {})

    assert event.kind == "order" and event.event_time == when
    assert event.idempotency_key == body["NotificationMetadata"]["NotificationId"]
    assert event.order.external_id == "111-1"
    assert [(line.sku, line.quantity) for line in event.order.lines] == [("A", 2.0)]
    assert event.order.created_at == when - timedelta(minutes=5)  # PurchaseDate

    cancel = order_change_notification("111-1", "Canceled", [("A", 2)], sim.seller_id)
    sqs_message = {"MessageId": "m-1", "ReceiptHandle": "r", "Body": json.dumps(cancel)}
    [event] = adapter.parse_webhook(None, json.dumps(sqs_message).encode(), {})
    assert event.kind == "cancel" and event.order.status == "cancelled"


def test_mfn_quantity_change_reports_a_level_and_other_types_are_ignored(sim):
    adapter = make_adapter(sim)
    meta = {"NotificationId": "n-1", "PublishTime": "2026-03-01T12:00:01Z"}
    body = {
        "NotificationType": "LISTINGS_ITEM_MFN_QUANTITY_CHANGE",
        "EventTime": "2026-03-01T12:00:00.123Z",
        "Payload": {
            "SellerId": sim.seller_id,
            "FulfillmentChannelCode": "DEFAULT",
            "Sku": "A",
            "Quantity": 99,
        },
        "NotificationMetadata": meta,
    }

    [event] = adapter.parse_webhook(None, body, {})

    assert event.kind == "inventory"
    assert [(lv.sku, lv.quantity) for lv in event.levels] == [("A", 99)]
    assert event.event_time.microsecond == 123000
    body["Payload"]["FulfillmentChannelCode"] = "AMAZON_NA"
    assert adapter.parse_webhook(None, body, {})[0].kind == "ignored"
    offer = {"NotificationType": "ANY_OFFER_CHANGED", "NotificationMetadata": meta}
    assert adapter.parse_webhook(None, offer, {})[0].kind == "ignored"


def test_plain_webhook_bodies_are_refused_with_a_clear_message(sim):
    adapter = make_adapter(sim)
    with pytest.raises(PermanentChannelError, match="SQS or EventBridge"):
        adapter.parse_webhook("orders/create", b'{"id": 1}', {})
    other = order_change_notification("111-2", "Unshipped", [], "AOTHERSELLER")
    with pytest.raises(PermanentChannelError, match="AOTHERSELLER"):
        adapter.parse_webhook(None, other, {})
