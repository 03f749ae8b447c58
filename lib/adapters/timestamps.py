"""ISO 8601 timestamps as the marketplace APIs write them, read and written in UTC.

Each adapter keeps its own contract on top of these (what an unreadable value
gives, naive or aware results): see ``parse_time`` / ``parse_datetime`` in the
adapter modules.
"""

import re
from datetime import datetime, timezone

_FRACTION = re.compile(r"\.(\d+)")


def as_utc(moment):
    """``moment`` as an aware UTC datetime; a naive one is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def parse_utc(value, source=None):
    """ISO 8601 text (``Z`` allowed) or a datetime -> aware UTC (None if absent).

    A text without an offset is taken as UTC. The fraction of a second is cut
    or padded to six digits first: some APIs send nanoseconds, and Python
    3.10's ``fromisoformat`` takes exactly 3 or 6 digits. An unreadable text
    raises ValueError, worded ``unreadable <source> timestamp ...`` when
    ``source`` is given.
    """
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return as_utc(value)
    text = str(value).strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    text = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], text, count=1)
    try:
        parsed = datetime.fromisoformat(text)
        # a time at the ends of the calendar cannot be moved to UTC
        # (0001-01-01 at +01:00): OverflowError, which callers do not expect
        return as_utc(parsed)
    except (ValueError, OverflowError) as err:
        if source is None:
            raise ValueError(f"unreadable timestamp {value!r}: {err}") from err
        raise ValueError(f"unreadable {source} timestamp {value!r}") from err


def parse_utc_or_none(value):
    """Like :func:`parse_utc`, but None for an unreadable text too."""
    try:
        return parse_utc(value)
    except ValueError:
        return None


def format_utc(moment):
    """``YYYY-MM-DDThh:mm:ssZ`` in UTC (naive means UTC)."""
    return as_utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_utc_millis(moment):
    """``YYYY-MM-DDThh:mm:ss.sssZ`` in UTC (naive means UTC)."""
    moment = as_utc(moment)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
