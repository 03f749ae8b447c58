# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import models

#: what decides whether a location's stock is in a channel's scope
SCOPE_FIELDS = {"location_id", "usage", "active"}


class StockLocation(models.Model):
    _inherit = "stock.location"

    def write(self, vals):
        """A location moved under another parent takes its stock with it, out
        of one channel's scope and into another's, with no quant changing
        (channels sell the locations under the ones they name): its
        variants are pushed as for any stock change."""
        if SCOPE_FIELDS.isdisjoint(vals):
            return super().write(vals)
        before = {loc.id: (loc.location_id, loc.usage, loc.active) for loc in self}
        res = super().write(vals)
        moved = self.filtered(
            lambda loc: before[loc.id] != (loc.location_id, loc.usage, loc.active)
        )
        if moved:
            quants = (
                self.env["stock.quant"]
                .sudo()
                .with_context(active_test=False)
                .search([("location_id", "child_of", moved.ids)])
            )
            quants.product_id._scs_push_at_commit()
        return res
