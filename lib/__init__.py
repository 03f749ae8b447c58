"""Framework-free core of stock_channel_sync.

Nothing below this package imports ``odoo``: signature schemes, the quantity
rule, event ordering, backoff and the marketplace adapters are plain Python so
that plain pytest exercises them anywhere. The Odoo layer calls them with
plain values (dicts, dataclasses), never records.

Imports inside the package are relative, so it works both as ``lib`` under
pytest and as ``odoo.addons.stock_channel_sync.lib`` inside Odoo.
"""
