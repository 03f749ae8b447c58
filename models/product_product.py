# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Per-SKU push jobs.

A stock change of a variant enqueues one queue_job job for that variant
(``identity_key`` per SKU): a burst of changes on one SKU while its job is
pending coalesces into that one job, and the job publishes to every channel
of the SKU at once. Channels, not jobs, are the unit of fan-out: 30 channels
cost one job, not 30.
"""

import time

from odoo import fields, models
from odoo.tools import SQL


class ProductProduct(models.Model):
    _inherit = "product.product"

    channel_binding_ids = fields.One2many(
        "channel.binding", "product_id", string="Channel Bindings"
    )

    def _scs_bound_ids(self):
        """Ids of these variants that have a binding on a channel that pushes."""
        if not self:
            return []
        self.env["channel.binding"].flush_model(["product_id", "active", "channel_id"])
        self.env["sync.channel"].flush_model(["active", "sync_enabled"])
        self.env.cr.execute(
            SQL(
                """
                SELECT DISTINCT b.product_id
                  FROM channel_binding b
                  JOIN sync_channel c ON c.id = b.channel_id
                 WHERE b.product_id = ANY(%s)
                   AND b.active AND c.active AND c.sync_enabled
                """,
                list(self.ids),
            )
        )
        return [row[0] for row in self.env.cr.fetchall()]

    def _scs_enqueue_push(self, force=False, changed_ts=None):
        """One job per bound SKU; coalesced with a pending job of the same SKU."""
        changed_ts = changed_ts or time.time()
        suffix = ".force" if force else ""
        products = self.browse(self._scs_bound_ids()).sudo()
        for product in products:
            product.with_delay(
                identity_key=f"stock_channel_sync.sku.{product.id}{suffix}",
                description=f"Push stock of {product.display_name}",
            )._scs_job_push_sku(changed_ts=changed_ts, force=force)
        return products

    def _scs_job_push_sku(self, changed_ts=None, force=False):
        """Publish this SKU's current quantity to all of its channels."""
        bindings = self.env["channel.binding"].search(
            [
                ("product_id", "in", self.ids),
                ("channel_id.active", "=", True),
                ("channel_id.sync_enabled", "=", True),
            ],
            order="id",
        )
        summary = bindings._scs_push(changed_ts=changed_ts, force=force)
        return "pushed {pushed}, unchanged {skipped}, failed {failed}".format(**summary)
