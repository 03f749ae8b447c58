"""Backoff: full jitter under an exponential ceiling, and Retry-After first."""

import random

import pytest
import requests

from lib.adapters.base import (
    PermanentChannelError,
    RateLimitedError,
    RetryableChannelError,
    parse_retry_after,
    raise_for_status,
)
from lib.backoff import MAX_RETRY_AFTER, backoff_ceiling, backoff_delay, retry_delay


def almost_one():
    return 1.0 - 1e-12


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(1, 2.0), (2, 4.0), (3, 8.0), (5, 32.0), (8, 256.0), (9, 300.0), (500, 300.0)],
)
def test_ceiling_doubles_then_caps(attempt, ceiling):
    assert backoff_ceiling(attempt) == ceiling


def test_attempt_below_one_counts_as_first():
    assert backoff_ceiling(0) == backoff_ceiling(-3) == 2.0


def test_huge_attempt_does_not_overflow():
    assert backoff_delay(10**6, rng=almost_one) == pytest.approx(300.0)


def test_delay_is_rng_fraction_of_ceiling():
    assert backoff_delay(3, rng=lambda: 0.0) == 0.0
    assert backoff_delay(3, rng=lambda: 0.5) == 4.0
    assert backoff_delay(3, rng=almost_one) == pytest.approx(8.0)
    assert backoff_delay(4, base=1.0, cap=5.0, rng=lambda: 0.5) == 2.5


def test_full_jitter_spreads_delays():
    rng = random.Random(42).random
    delays = [backoff_delay(6, rng=rng) for _ in range(2000)]
    assert all(0.0 <= d < 64.0 for d in delays)
    # spread over the whole range, not clustered at the ceiling
    assert min(delays) < 64.0 * 0.05
    assert max(delays) > 64.0 * 0.95
    assert 0.4 * 64.0 < sum(delays) / len(delays) < 0.6 * 64.0


@pytest.mark.parametrize("bad", [-0.1, 1.0, 2.0, float("nan")])
def test_rng_out_of_range_is_refused(bad):
    with pytest.raises(ValueError, match="rng"):
        backoff_delay(1, rng=lambda: bad)


def test_negative_base_or_cap_refused():
    with pytest.raises(ValueError):
        backoff_delay(1, base=-1.0)
    with pytest.raises(ValueError):
        backoff_delay(1, cap=-1.0)


def test_retry_after_wins_over_backoff():
    err = RateLimitedError("slow down", status=429, retry_after=7.0)
    assert retry_delay(err, attempt=1, rng=lambda: 0.0) == 7.0
    # never shorter than asked, spread by at most 10 % by default
    assert retry_delay(err, attempt=1, rng=lambda: 0.5) == pytest.approx(7.35)
    assert retry_delay(err, attempt=1, rng=almost_one) < 7.7


def test_retry_after_is_not_capped_by_the_backoff_cap():
    err = RateLimitedError("come back in an hour", status=429, retry_after=3600)
    assert retry_delay(err, attempt=1, cap=300.0, rng=lambda: 0.0) == 3600.0


@pytest.mark.parametrize("asked", [MAX_RETRY_AFTER + 1, 365 * 86400.0, 1e300])
def test_retry_after_is_bounded_to_a_day(asked):
    """A channel asking for a year gets a day: the job comes back, spends a
    retry, and ends as a dead letter instead of parked out of sight."""
    err = RateLimitedError("come back next year", status=429, retry_after=asked)
    assert err.retry_after == MAX_RETRY_AFTER == 86400.0
    assert retry_delay(err, attempt=1, rng=lambda: 0.0) == MAX_RETRY_AFTER
    err.retry_after = asked  # set later (the channel circuit does)
    assert err.retry_after == MAX_RETRY_AFTER

    class Bare:
        retry_after = asked

    assert retry_delay(Bare(), attempt=1, rng=almost_one) < MAX_RETRY_AFTER * 1.1


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("\u00b2", None),  # a digit to str.isdigit, not to float
        ("\u0663", None),  # an Arabic-Indic three
        ("Mon, 01 Jan 99999999999 00:00:00 GMT", None),
        ("-5", None),
        ("soon", None),
        ("9" * 400, MAX_RETRY_AFTER),  # too large for a float: a long wait
        (" 7 ", 7.0),
        ("1.5", 1.5),
    ],
)
def test_odd_retry_after_headers_are_read_not_raised(header, seconds):
    assert parse_retry_after(header) == seconds


def test_far_retry_after_header_is_bounded():
    """The header, as seconds or as an HTTP date, reaches the error bounded."""
    far = {"Retry-After": "31536000"}
    dated = {"Retry-After": "Fri, 31 Dec 2100 23:59:59 GMT"}
    for headers in (far, dated):
        response = requests.Response()
        response.status_code = 429
        response.headers.update(headers)
        response._content = b"{}"
        with pytest.raises(RateLimitedError) as caught:
            raise_for_status(response)
        assert caught.value.retry_after == MAX_RETRY_AFTER


def test_retry_after_zero_means_now():
    err = RetryableChannelError("busy", status=503, retry_after=0)
    assert retry_delay(err, attempt=9, rng=lambda: 0.9) == 0.0


def test_without_retry_after_falls_back_to_backoff():
    err = RetryableChannelError("boom", status=500)
    assert err.retry_after is None
    assert retry_delay(err, attempt=3, rng=lambda: 0.5) == 4.0
    assert retry_delay(err, attempt=3, base=10.0, cap=25.0, rng=lambda: 0.5) == 12.5


@pytest.mark.parametrize("weird", ["soon", float("nan"), float("inf")])
def test_unusable_retry_after_falls_back_to_backoff(weird):
    err = RetryableChannelError("boom", status=503, retry_after=weird)
    assert retry_delay(err, attempt=2, rng=lambda: 0.5) == 2.0


def test_any_object_without_retry_after_works():
    assert retry_delay(TimeoutError("t"), attempt=2, rng=lambda: 0.25) == 1.0
    assert retry_delay(PermanentChannelError("no"), attempt=1, rng=lambda: 0.5) == 1.0
