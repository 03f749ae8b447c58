# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Catch every change of sellable stock at the quant, whatever its path.

Receipts, deliveries, returns, scrap, inventory adjustments, reservations and
unreservations all end in ``stock.quant`` create/write (through
``_update_available_quantity``); direct edits and imports too. Hooking the
quant rather than product writes catches programmatic changes.

Nothing is sent here. The variants touched are collected on the cursor and
turned into jobs in a pre-commit hook: once per transaction, after the last
change, inside the same transaction (a rollback leaves no job), and with one
query that drops variants bound to no channel. No HTTP call ever runs inside
the user's transaction.
"""

from odoo import api, models

STOCK_FIELDS = {"quantity", "reserved_quantity", "location_id", "product_id"}


class StockQuant(models.Model):
    _inherit = "stock.quant"

    @api.model_create_multi
    def create(self, vals_list):
        """A count changes no stock until it is applied (which moves stock
        and is caught then): in inventory mode, Odoo's ``create`` of a
        counted quantity makes an empty quant or writes the count on the
        quant that exists, and returns it. A push for nothing would hold
        back the application's own push by the burst interval. Other new
        quants move stock when they hold a quantity."""
        counting = self._is_inventory_mode() and all(
            "inventory_quantity" in vals or "inventory_quantity_auto_apply" in vals
            for vals in vals_list
        )
        quants = super().create(vals_list)
        if not counting:
            quants.filtered(lambda q: q.quantity or q.reserved_quantity)._scs_collect()
        return quants

    def write(self, vals):
        if STOCK_FIELDS & set(vals):
            self._scs_collect()  # the old product/location, if they change
            res = super().write(vals)
            self._scs_collect()
            return res
        return super().write(vals)

    def unlink(self):
        self.filtered(lambda q: q.quantity or q.reserved_quantity)._scs_collect()
        return super().unlink()

    def _scs_collect(self):
        """Remember the variants of internal quants; enqueue at pre-commit."""
        product_ids = {
            quant.product_id.id
            for quant in self
            if quant.location_id.usage == "internal" and quant.product_id
        }
        if product_ids:
            self.env["product.product"].browse(list(product_ids))._scs_push_at_commit()
