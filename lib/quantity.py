"""The quantity rule: what number a channel is told it may sell.

The rule is deliberately one small pure function so that the job, the
reconciliation pass and the "why this quantity" breakdown all agree on it.
"""

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class QuantityBreakdown:
    """Every step from free stock to the published number, for explanations."""

    free: float
    buffer: float
    after_buffer: float
    max_qty: float | None
    after_cap: float
    allocation_pct: float
    after_allocation: float
    published: int


def breakdown(free, buffer=0.0, max_qty=None, allocation_pct=100.0):
    """Apply the rule step by step and return a :class:`QuantityBreakdown`.

    Order (as specified): free quantity (on hand minus reserved in the
    channel's locations), minus the buffer, capped by the maximum, scaled by
    the allocation percentage, rounded down to a whole unit (a channel must
    never be offered a fraction of a unit that may not exist) and floored at 0.
    """
    free = float(free or 0.0)
    buffer = float(buffer or 0.0)
    pct = 100.0 if allocation_pct is None else float(allocation_pct)
    # a setting that is not a number (NaN, saved around the form's checks)
    # publishes nothing rather than failing every push of the product
    numbers = (free, buffer, pct) if max_qty is None else (free, buffer, pct, max_qty)
    sane = all(math.isfinite(float(value)) for value in numbers)
    buffer = max(0.0, buffer)
    pct = min(max(pct, 0.0), 100.0)
    after_buffer = free - buffer
    after_cap = after_buffer if max_qty is None else min(after_buffer, float(max_qty))
    after_allocation = after_cap * pct / 100.0
    # guard against binary noise such as 2.9999999999 -> 2
    published = max(0, math.floor(round(after_allocation, 6))) if sane else 0
    return QuantityBreakdown(
        free=free,
        buffer=buffer,
        after_buffer=after_buffer,
        max_qty=None if max_qty is None else float(max_qty),
        after_cap=after_cap,
        allocation_pct=pct,
        after_allocation=after_allocation,
        published=published,
    )


def publishable_quantity(free, buffer=0.0, max_qty=None, allocation_pct=100.0):
    """The whole number to publish; see :func:`breakdown` for the rule."""
    return breakdown(free, buffer, max_qty, allocation_pct).published
