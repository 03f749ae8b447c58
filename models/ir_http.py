# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import models
from odoo.http import request

#: the webhook route (``controllers/main.py``)
WEBHOOK_ROUTE = "/stock_channel_sync/webhook/<string:token>"


class IrHttp(models.AbstractModel):
    _inherit = "ir.http"

    @classmethod
    def _dispatch(cls, endpoint):
        """Drop a request parameter named ``self`` on the webhook route.

        Odoo calls a route's method with the request's parameters as keyword
        arguments, so a query string or form field ``self`` collides with
        the method's own ``self``: a ``TypeError``, answered 500, before the
        handler could refuse the request as it refuses any other. The
        handler reads no parameter but the token, so nothing is lost.
        """
        if "self" in request.params and WEBHOOK_ROUTE in endpoint.routing.get(
            "routes", ()
        ):
            request.params = {
                key: value for key, value in request.params.items() if key != "self"
            }
        return super()._dispatch(endpoint)
