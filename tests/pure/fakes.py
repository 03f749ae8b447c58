"""Test doubles shared by the adapter tests.

``tests/pure`` is on pytest's ``pythonpath``, so tests import this module as
``fakes``; pytest does not collect it (its name does not start with test_).
"""

from datetime import datetime, timezone

from lib.adapters.base import StockUpdate


class FakeClock:
    """A clock to inject in an adapter; ``sleep`` records the wait and moves time.

    ``start`` is in unix seconds, default the current time.
    """

    def __init__(self, start=None):
        self.now = datetime.now(timezone.utc).timestamp() if start is None else start
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def stock_updates(rows, quantity):
    """One StockUpdate per seeded row (a dict of its fields), at ``quantity``."""
    return [StockUpdate(**{**row, "quantity": quantity}) for row in rows]
