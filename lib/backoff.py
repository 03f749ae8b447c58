"""How long to wait before retrying a call to a channel.

Two rules, in this order:

1. When the channel said how long to wait (``Retry-After`` on a 429 or a
   503, carried as ``ChannelError.retry_after``), wait at least that long:
   retrying earlier is certain to be throttled again and may get the app's
   credentials blocked. Up to :data:`MAX_RETRY_AFTER`: a longer wait (a
   year, by mistake or malice) is read as that bound, so the job comes
   back, is throttled again and spends one of its retries, and the push
   ends as a dead letter someone sees instead of a job parked out of sight
   (queue_job's runner cannot even wait that long: its ``select`` timeout
   overflows past about 24 days).
2. Otherwise use exponential backoff with *full jitter* (a uniformly random
   delay between 0 and ``min(cap, base * 2 ** (attempt - 1))``). The jitter
   matters more than the exponent: when a channel comes back after an outage,
   hundreds of queued jobs that failed together must not all retry in the same
   second and knock it over again.

The random source is an argument so that tests (and benchmarks) are
deterministic.
"""

import math
import random

DEFAULT_BASE = 2.0
DEFAULT_CAP = 300.0
#: longest wait a channel may ask for (a day: eBay's daily call limits reset
#: within one); see the module docstring
MAX_RETRY_AFTER = 86400.0
#: beyond this exponent the ceiling is always the cap (and 2**n would overflow)
_MAX_EXPONENT = 62


def backoff_ceiling(attempt, base=DEFAULT_BASE, cap=DEFAULT_CAP):
    """Largest delay :func:`backoff_delay` can return for ``attempt``."""
    if base < 0 or cap < 0:
        raise ValueError("backoff base and cap must not be negative")
    exponent = min(max(int(attempt), 1) - 1, _MAX_EXPONENT)
    return min(cap, base * (2**exponent))


def backoff_delay(attempt, base=DEFAULT_BASE, cap=DEFAULT_CAP, rng=random.random):
    """Seconds to wait before the retry that follows failed attempt ``attempt``.

    ``attempt`` counts from 1 (the first try), as queue_job's ``retry``
    counter does while a job runs; values below 1 are treated as 1. ``rng``
    returns a float in ``[0, 1)``.
    """
    fraction = rng()
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"rng must return a float in [0, 1), got {fraction!r}")
    return fraction * backoff_ceiling(attempt, base=base, cap=cap)


def retry_delay(
    error,
    attempt,
    base=DEFAULT_BASE,
    cap=DEFAULT_CAP,
    rng=random.random,
    spread=0.1,
):
    """Seconds to wait before retrying after ``error`` on attempt ``attempt``.

    ``error.retry_after`` (seconds, set from the channel's ``Retry-After``)
    wins when present, plus up to ``spread`` of itself at random so that jobs
    throttled by the same answer do not come back in lockstep; it is never
    shortened, except to :data:`MAX_RETRY_AFTER`.
    Without it, :func:`backoff_delay`. Whether to retry at all is the caller's
    call (``error.retryable``); this only says when.
    """
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        try:
            retry_after = float(retry_after)
        except (TypeError, ValueError):
            retry_after = None
    if retry_after is not None and math.isfinite(retry_after):
        retry_after = min(max(0.0, retry_after), MAX_RETRY_AFTER)
        fraction = rng()
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"rng must return a float in [0, 1), got {fraction!r}")
        return retry_after * (1.0 + spread * fraction)
    return backoff_delay(attempt, base=base, cap=cap, rng=rng)
