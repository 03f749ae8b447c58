# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import _, api, models
from odoo.exceptions import ValidationError


class ProductTemplate(models.Model):
    _inherit = "product.template"

    def unlink(self):
        """A deleted product's bindings go through their own ``unlink``: its
        variants are removed by the database's cascade, which skips that of
        ``product.product`` (see there)."""
        self.env["channel.binding"].sudo().with_context(active_test=False).search(
            [("product_id.product_tmpl_id", "in", self.ids)]
        ).unlink()
        return super().unlink()

    @api.constrains("is_storable")
    def _check_scs_bound_stays_storable(self):
        """A product sold on channels keeps tracking its stock: without it
        Odoo has no quantity to publish, and every channel would be told 0.
        Archive its bindings first (the channels then keep their last
        figure)."""
        untracked = self.filtered(lambda t: not t.is_storable)
        if not untracked:
            return
        bindings = (
            self.env["channel.binding"]
            .sudo()
            .search(
                [("product_id.product_tmpl_id", "in", untracked.ids)],
                limit=1,
            )
        )
        if bindings:
            raise ValidationError(
                _(
                    "%(product)s is sold on %(channel)s: it must keep tracking"
                    " its inventory. Archive its channel bindings first.",
                    product=bindings.product_id.display_name,
                    channel=bindings.channel_id.display_name,
                )
            )
