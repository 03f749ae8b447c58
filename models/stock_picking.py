# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Transfers created for channel orders.

An order sold on a channel becomes an outgoing transfer reserved at once, so
the units leave Odoo's free stock (and every other channel) immediately. The
transfer remembers its channel and external order id: a unique index makes a
second reservation of the same order impossible, even for two concurrent
deliveries of the order webhook. An order that no warehouse of its channel
covers alone has one transfer per warehouse it is reserved from; a backorder
(a partial shipment) keeps the order's id.
"""

from odoo import _, api, fields, models
from odoo.exceptions import AccessError

#: what ties a transfer to a channel's order: set by the module only (or a
#: sync manager); a stock user retagging a transfer would make an order's
#: cancellation release nothing, or a new order reserve nothing
ORDER_FIELDS = frozenset(
    {"scs_channel_id", "scs_external_order_id", "scs_cancelled_in_odoo"}
)


class StockPicking(models.Model):
    _inherit = "stock.picking"

    scs_channel_id = fields.Many2one(
        "sync.channel",
        string="Sales Channel",
        readonly=True,
        index="btree_not_null",
        # a duplicate (or a return) is no reservation of the order; a
        # backorder gets the order's channel and id from
        # _create_backorder_picking
        copy=False,
        # a transfer of another company tagged with a channel's order would
        # be taken for that order's reservation, and block it (stock.picking
        # checks no company by itself: see create and write)
        check_company=True,
    )
    scs_external_order_id = fields.Char("Channel Order", readonly=True, copy=False)

    _scs_order_uniq = models.UniqueIndex(
        "(scs_channel_id, scs_external_order_id, location_id)"
        " WHERE scs_external_order_id IS NOT NULL AND state != 'cancel'"
        " AND backorder_id IS NULL",
        "This channel order already has a transfer.",
    )

    scs_cancelled_in_odoo = fields.Boolean(
        "Cancelled in Odoo",
        readonly=True,
        copy=False,
        help="A channel order's transfer cancelled here, not by the channel: "
        "a later update of the order does not reserve it again.",
    )

    @api.model_create_multi
    def create(self, vals_list):
        for vals in vals_list:
            self._scs_check_order_fields(vals)
        pickings = super().create(vals_list)
        pickings.filtered("scs_channel_id")._check_company(["scs_channel_id"])
        return pickings

    def write(self, vals):
        self._scs_check_order_fields(vals)
        res = super().write(vals)
        if {"scs_channel_id", "company_id"} & set(vals):
            self.filtered("scs_channel_id")._check_company(["scs_channel_id"])
        return res

    def _scs_check_order_fields(self, vals):
        """The order fields are readonly in the views, which an RPC call
        does not go through: only the module (as the superuser) and sync
        managers set them."""
        if (
            self.env.su
            or not ORDER_FIELDS.intersection(vals)
            or self.env.user.has_group("stock_channel_sync.group_sync_manager")
        ):
            return
        raise AccessError(
            _(
                "Only Stock Channel Sync sets a transfer's sales channel and"
                " channel order: the channel's cancellations and updates"
                " find the order's reservation by them."
            )
        )

    def action_cancel(self):
        """Note a channel order's transfer cancelled by a user (the module
        releases an order with ``scs_release`` in the context)."""
        if not self.env.context.get("scs_release"):
            self.filtered(
                lambda p: p.scs_external_order_id and p.state not in ("done", "cancel")
            ).sudo().write({"scs_cancelled_in_odoo": True})
        return super().action_cancel()

    def _create_backorder_picking(self):
        """A backorder of an order's transfer holds the rest of that order:
        it keeps the order's id, so that cancelling or refunding the order
        after a partial shipment releases what is left (the unique index
        counts the first transfer of an order only)."""
        backorder = super()._create_backorder_picking()
        if self.scs_external_order_id:
            backorder.sudo().write(
                {
                    "scs_channel_id": self.scs_channel_id.id,
                    "scs_external_order_id": self.scs_external_order_id,
                }
            )
        return backorder
