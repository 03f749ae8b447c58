# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Floor routes for ``benchmarks/load_webhooks.py --floor``.

They take the same signed POST as the webhook route, with the same route
options (``auth='none'``, no CSRF, no session, a read-write cursor), and do
the least a webhook intake can do:

- ``/ok`` reads the body and answers 200;
- ``/insert`` also stores the body under its ``webhook-id`` (a duplicate
  inserts nothing) and lets Odoo commit, as any route that writes does;
- ``/insert_at_once`` stores it the way the webhook route records an event:
  one message to PostgreSQL on a connection in autocommit mode, commit
  included (see ``sync.event._scs_deliver_at_once``).

They verify nothing, parse nothing and enqueue nothing. Their ratio to the
bare route is the most any webhook route can reach on the server at hand.
"""

import uuid

from odoo import http
from odoo.http import request

ROUTE = {
    "type": "http",
    "auth": "none",
    "methods": ["POST"],
    "csrf": False,
    "readonly": False,
    "save_session": False,
}
INSERT = (
    "INSERT INTO scs_bench_floor_row (key, body) VALUES (%s, %s)"
    " ON CONFLICT (key) DO NOTHING"
)


def _delivery():
    httprequest = request.httprequest
    body = httprequest.get_data()
    key = httprequest.headers.get("webhook-id") or uuid.uuid4().hex
    return key, body.decode("utf-8", "replace")


class FloorController(http.Controller):
    @http.route("/scs_bench_floor/ok", **ROUTE)
    def ok(self, **_kw):
        request.httprequest.get_data()
        return request.make_json_response({"status": "accepted"})

    @http.route("/scs_bench_floor/insert", **ROUTE)
    def insert(self, **_kw):
        request.env.cr.execute(INSERT, _delivery())
        return request.make_json_response({"status": "accepted"})

    @http.route("/scs_bench_floor/insert_at_once", **ROUTE)
    def insert_at_once(self, **_kw):
        params = _delivery()
        cr = request.env.cr
        cr.rollback()
        cnx = cr._cnx
        # as the webhook route: no session characteristics, so that leaving
        # autocommit sends no SET ... TO DEFAULT
        session = (cnx.isolation_level, cnx.readonly)
        cnx.set_session(isolation_level="DEFAULT", readonly="DEFAULT")
        try:
            cnx.autocommit = True
            cr.execute(f"BEGIN; {INSERT}; COMMIT;", params)
        finally:
            cnx.autocommit = False
            cnx.set_session(isolation_level=session[0], readonly=session[1])
        return request.make_json_response({"status": "accepted"})
