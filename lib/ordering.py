"""Logical ordering of events per SKU: last write wins, stale events lose.

Channels stamp their events with their own clocks and redeliver old payloads
hours later. An event is applied only when it is newer than the newest one
already applied for the same binding. A small skew allowance keeps two
systems whose clocks disagree by a second or two from rejecting each other's
genuinely new events, while a redelivery of a clearly older state is refused.
"""

import math
from datetime import datetime, timezone

#: seconds by which an event may predate the newest applied and still count
DEFAULT_SKEW = 0.0
#: seconds an event's own time may run ahead of its arrival
MAX_AHEAD = 3600.0


def to_timestamp(value):
    """Unix seconds from a datetime (naive = UTC), an ISO string or a number."""
    if value is None or value == "" or value is False:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.timestamp()
    text = str(value).strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return None
    return to_timestamp(parsed)


def is_stale(event_ts, newest_applied_ts, skew=DEFAULT_SKEW):
    """True when an event must not be applied because a newer one was.

    Events without a timestamp cannot be ordered and are never called stale
    (reconciliation corrects them if they were). Equal timestamps are not
    stale: a second, different event in the same instant is still applied,
    and exact redeliveries are caught earlier by the idempotency key.
    """
    if event_ts is None or newest_applied_ts is None:
        return False
    return event_ts < newest_applied_ts - skew


def bounded_event_ts(event_ts, received_ts, ahead=MAX_AHEAD):
    """The event's time for ordering: its own, unless it lies in the future.

    An event stamped more than ``ahead`` seconds after it arrived carries a
    broken clock or a made-up date: taken as is, it would make every later
    event of its item stale until that date. It is ordered by its arrival
    instead, to the whole second as channels stamp their events (so that the
    next event, stamped in the same second, is not older). A clock a few
    minutes ahead keeps its own order.
    """
    if event_ts and received_ts and event_ts > received_ts + ahead:
        return float(math.floor(received_ts))
    return event_ts
