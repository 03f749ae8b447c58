import pytest

from lib.quantity import breakdown, publishable_quantity


@pytest.mark.parametrize(
    ("free", "buffer", "max_qty", "pct", "expected"),
    [
        (10, 0, None, 100, 10),
        (10, 2, None, 100, 8),
        (10, 12, None, 100, 0),  # never negative
        (-5, 0, None, 100, 0),  # negative free stock publishes 0
        (100, 0, 10, 50, 5),  # capped, then scaled
        (100, 10, None, 50, 45),
        (7, 0, None, 50, 3),  # rounded down, never up
        (2.9999999999, 0, None, 100, 3),  # float noise is not a lost unit
        (2.5, 0, None, 100, 2),
        (10, 0, 0, 100, 0),  # a max of 0 delists
        # a setting that is no number publishes nothing, and raises nothing
        (10, 0, None, float("nan"), 0),
        (10, float("nan"), None, 100, 0),
        (10, 0, float("nan"), 100, 0),
        (10, float("inf"), None, 100, 0),
        (float("nan"), 0, None, 100, 0),
    ],
)
def test_rule(free, buffer, max_qty, pct, expected):
    assert publishable_quantity(free, buffer, max_qty, pct) == expected


def test_breakdown_steps():
    b = breakdown(20, buffer=4, max_qty=10, allocation_pct=50)
    assert (b.after_buffer, b.after_cap, b.after_allocation, b.published) == (
        16,
        10,
        5,
        5,
    )
