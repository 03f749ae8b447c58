# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Signed webhook intake.

``POST /stock_channel_sync/webhook/<token>``: the token (random, 256 bits,
shown on the channel form) selects the channel; the tenant is never taken
from an unsigned header. The handler only

1. refuses oversize bodies (413): before reading them when they declare
   their length, chunked and form bodies too (werkzeug 2.3 and later stop
   reading a chunked body at the limit),
2. finds the channel (404, the same answer for unknown and disabled tokens),
3. verifies the signature on the raw bytes, in constant time (401),
4. parses the body (400),
5. records each event with its idempotency key (a unique index makes a
   duplicate, even a concurrent one, a no-op answered 200) and enqueues the
   job that applies it.

It makes no outbound call and writes nothing before the signature holds.

Database selection: the route is ``auth='none'`` with no session, so Odoo
picks the database from the ``X-Odoo-Database`` header (which marketplaces do
not send) or, when the server sees exactly one database, that one. On a
multi-database server run one database per host name with
``--db-filter='^%d$'`` (the webhook URL then names the database through its
host) or put a proxy in front that adds ``X-Odoo-Database``.
"""

import json
import logging
import time

from werkzeug.exceptions import RequestEntityTooLarge

from odoo import SUPERUSER_ID, fields, http
from odoo.http import request

from ..lib import signatures
from ..lib.adapters import ChannelConfig, check_inbound, get_adapter_class

_logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 1024 * 1024
WEBHOOK_TYPES = ("generic", "shopify", "woocommerce")
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


_PARSERS = {}


def _parser(channel_type):
    """An adapter used only to parse webhooks: parsing needs no credentials,
    so one instance per channel type and process serves every channel."""
    parser = _PARSERS.get(channel_type)
    if parser is None:
        parser = get_adapter_class(channel_type)(ChannelConfig(channel_type))
        _PARSERS[channel_type] = parser
    return parser


def _refuse_constant(name):
    """``NaN`` and ``Infinity`` are JavaScript, not JSON (RFC 8259)."""
    raise ValueError(f"{name} is not JSON")


def _max_bytes(env):
    """The body size limit (``stock_channel_sync.webhook_max_bytes``)."""
    value = (
        env["ir.config_parameter"]
        .sudo()
        .get_param("stock_channel_sync.webhook_max_bytes", DEFAULT_MAX_BYTES)
    )
    try:
        return int(value)
    except (TypeError, ValueError):
        _logger.error("invalid stock_channel_sync.webhook_max_bytes %r", value)
        return DEFAULT_MAX_BYTES


def _route_max_bytes(_controller):
    """The limit for Odoo's own reading of a form body, set before it reads.

    Odoo parses a form-encoded body before the handler runs (and a chunked
    one has no length to check first): over the limit, werkzeug stops
    reading and Odoo answers 413. Other bodies are left to the handler,
    which checks the declared length before reading and answers in JSON.
    """
    httprequest = request.httprequest
    if httprequest.mimetype in FORM_TYPES:
        return _max_bytes(request.env)
    return httprequest.max_content_length


def _file_size(upload):
    stream = upload.stream
    stream.seek(0, 2)
    return stream.tell()


def _read_body(httprequest, limit):
    """The raw body; ``None`` when it is larger than ``limit``.

    ``max_content_length`` is set to the limit first: werkzeug refuses a
    declared length over it, and (from 2.3) stops reading a chunked body
    there. A form body was already parsed by Odoo, so ``get_data`` finds
    nothing left to read: its size is estimated from the parsed fields, so
    that an oversize one is still refused as such.
    """
    httprequest.max_content_length = limit
    try:
        body = httprequest.get_data(cache=True)
    except RequestEntityTooLarge:
        return None
    if not body and httprequest.mimetype in FORM_TYPES:
        body_size = sum(
            len(key) + len(value) + 2
            for key, value in httprequest.form.items(multi=True)
        ) + sum(
            _file_size(upload) for _key, upload in httprequest.files.items(multi=True)
        )
    else:
        body_size = len(body)
    return None if body_size > limit else body


def _answer(http_status, **body):
    return request.make_json_response(body, status=http_status)


class WebhookController(http.Controller):
    @http.route(
        "/stock_channel_sync/webhook/<string:token>",
        type="http",
        auth="none",
        methods=["POST"],
        csrf=False,
        readonly=False,
        save_session=False,
        max_content_length=_route_max_bytes,
    )
    def webhook(self, token, **_kw):
        started = time.time()
        if request.env is None or request.env.registry is None:
            return _answer(404, error="unknown channel")
        request.update_env(user=SUPERUSER_ID)
        env = request.env
        limit = _max_bytes(env)
        httprequest = request.httprequest
        if (httprequest.content_length or 0) > limit:
            return _answer(413, error=f"body larger than {limit} bytes")
        # the channels' webhook settings are cached per worker: no query
        conf = env["sync.channel"]._scs_webhook_channels().get(token)
        if not conf or conf["channel_type"] not in WEBHOOK_TYPES:
            return _answer(404, error="unknown channel")
        body = _read_body(httprequest, limit)
        if body is None:
            return _answer(413, error=f"body larger than {limit} bytes")
        headers = dict(httprequest.headers)

        if conf["channel_type"] == "woocommerce" and self._is_woocommerce_ping(
            httprequest, headers
        ):
            # WooCommerce's unsigned creation ping: answer 200, touch nothing
            return _answer(200, status="ping")
        try:
            self._verify(conf, headers, body, started)
        except signatures.SignatureError as err:
            _logger.info("webhook refused for channel %s: %s", conf["id"], err)
            return _answer(401, error=str(err))

        try:
            payload = json.loads(body, parse_constant=_refuse_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as err:
            return _answer(400, error=f"body is not JSON: {err}")
        topic = self._topic(conf["channel_type"], headers, payload)
        try:
            parsed = _parser(conf["channel_type"]).parse_webhook(
                topic, payload, headers
            )
            check_inbound(parsed)
        except (
            ValueError,
            KeyError,
            TypeError,
            AttributeError,
            ArithmeticError,
        ) as err:
            return _answer(400, error=f"payload does not fit topic {topic!r}: {err}")
        channel = env["sync.channel"].browse(conf["id"])
        events = env["sync.event"]._scs_record_inbound(
            channel,
            parsed,
            body,
            topic,
            received_ts=started,
            company_id=conf["company_id"],
            own_transaction=True,
        )
        return _answer(
            200,
            status="accepted" if any(e["new"] for e in events) else "duplicate",
            events=[{"key": e["key"], "state": e["state"]} for e in events],
        )

    # -- helpers ----------------------------------------------------------------
    @staticmethod
    def _is_woocommerce_ping(httprequest, headers):
        lowered = {k.lower() for k in headers}
        if "x-wc-webhook-signature" in lowered:
            return False
        form = httprequest.form
        return bool(form) and set(form.keys()) == {"webhook_id"}

    @staticmethod
    def _secrets(conf):
        secrets = [conf["webhook_secret"]] if conf["webhook_secret"] else []
        if (
            conf["webhook_secret_previous"]
            and conf["webhook_secret_previous_expiry"]
            and conf["webhook_secret_previous_expiry"] > fields.Datetime.now()
        ):
            secrets.append(conf["webhook_secret_previous"])
        return secrets

    def _verify(self, conf, headers, body, now):
        """Raise SignatureError unless the body is signed by the channel."""
        secrets = self._secrets(conf)
        kind = conf["channel_type"]
        try:
            if kind == "shopify":
                if not secrets:
                    raise signatures.InvalidSignature("no webhook secret configured")
                signatures.verify_shopify(headers, body, secrets)
            elif kind == "woocommerce":
                if not secrets:
                    raise signatures.InvalidSignature("no webhook secret configured")
                signatures.verify_woocommerce(headers, body, secrets)
            else:
                public_keys = (
                    [conf["webhook_public_key"]] if conf["webhook_public_key"] else []
                )
                if not secrets and not public_keys:
                    raise signatures.InvalidSignature("no webhook secret configured")
                signatures.verify_standard(
                    headers,
                    body,
                    secrets=secrets,
                    public_keys=public_keys,
                    now=now,
                    tolerance=conf["webhook_tolerance"] or 300,
                )
        except signatures.SignatureError:
            raise
        except ValueError as err:
            # a malformed configured secret must not turn into a 500
            raise signatures.InvalidSignature(f"cannot verify: {err}") from err

    @staticmethod
    def _topic(channel_type, headers, payload):
        lowered = {k.lower(): v for k, v in headers.items()}
        if channel_type == "shopify":
            return lowered.get("x-shopify-topic", "")
        if channel_type == "woocommerce":
            return lowered.get("x-wc-webhook-topic", "")
        if isinstance(payload, dict):
            return str(payload.get("type") or "")
        return ""
