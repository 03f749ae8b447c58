# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Signed webhook intake.

``POST /stock_channel_sync/webhook/<token>``: the token (random, 256 bits,
shown on the channel form) selects the channel; the tenant is never taken
from an unsigned header. The handler only

1. refuses oversize bodies (413): before anything reads them when they
   declare their length (in the route's ``max_content_length`` hook, which
   Odoo runs before it parses a form); a chunked body is read through a cap
   that stops at the limit (werkzeug before 2.3 would read it to its end),
   and a broken chunked encoding is a 400,
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

import io
import json
import logging
import time

import psycopg2
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge

from odoo import SUPERUSER_ID, fields, http, sql_db
from odoo.http import request
from odoo.tools import config

from ..lib import signatures
from ..lib.adapters import (
    ChannelConfig,
    check_inbound,
    get_adapter_class,
    json_depth_exceeds,
)
from ..lib.adapters.base import MAX_JSON_DEPTH
from ..models.ir_http import WEBHOOK_ROUTE
from ..models.sync_channel_inbound import DEFAULT_MAX_BYTES

_logger = logging.getLogger(__name__)

#: the widest timestamp tolerance honoured (``sync.channel`` refuses more)
MAX_TOLERANCE = 3600
WEBHOOK_TYPES = ("generic", "shopify", "woocommerce")
#: seconds a sender is asked to wait when no database answers
OUTAGE_RETRY_AFTER = 30
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
    """The body size limit (``stock_channel_sync.webhook_max_bytes``); the
    default one for a request that found no database (it is answered
    without reading its body)."""
    if env is None or env.registry is None:
        return DEFAULT_MAX_BYTES
    return env["sync.channel"]._scs_webhook_max_bytes()


def _json_response(body, http_status):
    """``body`` as an ASCII JSON answer.

    An error message may quote what the sender sent: Odoo's
    ``make_json_response`` writes it as UTF-8, which a lone surrogate cannot
    be (the answer would be a 500). Escaped to ASCII, any text can be.
    """
    data = json.dumps(body)
    return request.make_response(
        data,
        headers=[
            ("Content-Type", "application/json; charset=utf-8"),
            ("Content-Length", str(len(data))),
        ],
        status=http_status,
    )


def _json_error(exc_class, message):
    """An HTTP error that answers in JSON, as the handler does, also when
    Odoo's form parsing raises it before the handler runs."""
    return exc_class(
        message, response=_json_response({"error": message}, exc_class.code)
    )


class _CappedInput(io.RawIOBase):
    """A chunked request body, read through a cap of ``limit`` bytes.

    A chunked body declares no length to refuse it by. werkzeug before 2.3
    hands it over unbounded, and its own readers (``get_data``, the form
    parsers) read it to its end, into memory: a sender could make a worker
    hold any size. Through this cap, reading past the limit raises 413 and a
    broken chunked encoding raises 400 (werkzeug raises ``OSError``, which
    would be a 500). Before raising 413 the cap reads on, without keeping
    anything, up to ``DRAIN_BYTES``: a sender slightly over the limit is
    still writing its body, and a connection closed under it loses the
    answer.
    """

    DRAIN_BYTES = 4 * 1024 * 1024

    def __init__(self, raw, limit):
        super().__init__()
        self._raw = raw
        self._limit = limit
        self._seen = 0
        self._failure = None

    def readable(self):
        return True

    def readinto(self, buf):
        if self._failure is not None:
            # werkzeug's form parser reads on after an error, to exhaust
            # the stream: the broken or oversize rest is not read again
            raise self._failure
        try:
            count = self._raw.readinto(buf)
        except ConnectionError:
            raise
        except OSError as err:
            self._failure = _json_error(BadRequest, f"broken chunked body: {err}")
            raise self._failure from err
        self._seen += count or 0
        if self._seen > self._limit:
            self._drain()
            self._failure = _json_error(
                RequestEntityTooLarge, f"body larger than {self._limit} bytes"
            )
            raise self._failure
        return count

    def _drain(self):
        scratch = bytearray(64 * 1024)
        drained = 0
        try:
            while drained < self.DRAIN_BYTES:
                count = self._raw.readinto(scratch)
                if not count:
                    break
                drained += count
        except OSError as err:
            # the answer is 413 either way; the sender may not read it
            _logger.debug("stopped draining an oversize chunked body: %s", err)


def _cap_chunked_body(httprequest, limit):
    """Put the cap on a chunked body before anything reads it.

    Odoo's request wrapper exposes neither werkzeug's ``stream`` nor the WSGI
    input, so this reaches under it; when a later Odoo changes that, the
    body is read as werkzeug reads it.
    """
    if httprequest.content_length is not None:
        return
    wrapped = getattr(httprequest, "_HTTPRequest__wrapped", None)
    environ = getattr(wrapped, "environ", None)
    if not environ or not environ.get("wsgi.input_terminated"):
        return
    state = vars(wrapped)
    if isinstance(state.get("stream"), _CappedInput):
        return
    if "stream" in state:
        state["stream"] = _CappedInput(state["stream"], limit)
    elif not isinstance(environ.get("wsgi.input"), _CappedInput):
        environ["wsgi.input"] = _CappedInput(environ["wsgi.input"], limit)


def _route_max_bytes(_controller):
    """The limit for Odoo's own reading of the body, set before it reads.

    Odoo parses a form-encoded body before the handler runs. A body that
    declares a length over the limit is refused here, in JSON like the
    handler's answers, before anything reads it (werkzeug would read a form
    to its declared end, only to discard it, then answer 413 in HTML). A
    chunked body of any type gets its cap here, before that parsing. A form
    body is read here, whole and within the limit, so that the handler still
    has its raw bytes to verify. Other bodies are left to the handler.
    """
    httprequest = request.httprequest
    limit = _max_bytes(request.env)
    if (httprequest.content_length or 0) > limit:
        raise _json_error(RequestEntityTooLarge, f"body larger than {limit} bytes")
    _cap_chunked_body(httprequest, limit)
    if httprequest.mimetype in FORM_TYPES:
        # the raw bytes first, within the limit: the signature is made over
        # them, and a sender may label a JSON body as a form; Odoo's form
        # parsing then reads this copy (werkzeug parses cached data)
        httprequest.max_content_length = limit
        httprequest.get_data(cache=True)
        _parse_form(httprequest, limit)
    # Odoo sets it as the request's limit: the handler reads it there
    return limit


def _parse_form(httprequest, limit):
    """Parse a form body here, where a malformed one is still answered in
    JSON as the handler answers.

    Odoo parses it right after this hook, to pass its fields to the handler
    as keyword arguments: a multipart body with an empty boundary or a part
    of an unknown charset would raise out of werkzeug, and a part without a
    name gives a field named ``None``, which no keyword can be; each would
    be a 500. Nothing is written before this, and nothing is verified: the
    answer is 400 whatever the token.
    """
    try:
        names = [*httprequest.form.keys(), *httprequest.files.keys()]
    except (BadRequest, RequestEntityTooLarge) as err:
        if err.response is not None:
            raise  # _CappedInput's, in JSON already
        if isinstance(err, RequestEntityTooLarge):
            message = f"body larger than {limit} bytes"
        else:
            message = f"malformed form body: {err.description}"
        raise _json_error(type(err), message) from err
    except (ValueError, LookupError, AttributeError, TypeError, UnicodeError) as err:
        raise _json_error(BadRequest, f"malformed form body: {err}") from err
    if not all(isinstance(name, str) for name in names):
        raise _json_error(BadRequest, "malformed form body: a part without a name")


def _file_size(upload):
    stream = upload.stream
    stream.seek(0, 2)
    return stream.tell()


def _read_body(httprequest, limit):
    """The raw body; ``None`` when it is larger than ``limit``.

    ``max_content_length`` is set to the limit first, and a chunked body
    stops at the cap ``_route_max_bytes`` put on it (see ``_CappedInput``; a
    broken one raises ``BadRequest``). A form body was
    already parsed by Odoo, so ``get_data`` finds nothing left to read: its
    size is estimated from the parsed fields, so that an oversize one is
    still refused as such.
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


def _tolerance(value):
    """A channel's timestamp tolerance; one out of range (written around the
    form's check) falls back to the reference's 5 minutes."""
    if isinstance(value, int) and 1 <= value <= MAX_TOLERANCE:
        return value
    return signatures.STANDARD_TOLERANCE


def _answer(http_status, **body):
    return _json_response(body, http_status)


def _database_down():
    """Whether a database this server is set to serve (``db_name``) cannot
    be reached now. A request that found no database is then an outage
    (503, to be retried), not an unknown channel (404, which senders take
    for good). A server set to no database (several, by ``dbfilter``)
    cannot tell which one the request was for: 404, as before."""
    for name in config["db_name"] or []:
        try:
            with sql_db.db_connect(name).cursor() as cr:
                cr.execute("SELECT 1")
        except psycopg2.Error as err:
            # a database that does not exist is no outage: an unknown
            # channel, as any request no database answers for
            if "does not exist" not in str(err):
                return True
    return False


class WebhookController(http.Controller):
    @http.route(
        WEBHOOK_ROUTE,
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
        if request.httprequest.method != "POST":
            # werkzeug adds OPTIONS to every route: a webhook is only a POST
            response = _answer(405, error="method not allowed: POST only")
            response.headers["Allow"] = "POST"
            return response
        if request.env is None or request.env.registry is None:
            if _database_down():
                # a sender takes 404 for good: an outage is said to be one
                response = _answer(503, error="database unavailable, retry later")
                response.headers["Retry-After"] = str(OUTAGE_RETRY_AFTER)
                return response
            return _answer(404, error="unknown channel")
        request.update_env(user=SUPERUSER_ID)
        env = request.env
        httprequest = request.httprequest
        # a declared length over the limit was refused before the handler,
        # by _route_max_bytes, which made it the request's limit; it still
        # bounds what is read here
        limit = httprequest.max_content_length or _max_bytes(env)
        # the channels' webhook settings are cached per worker: no query
        conf = env["sync.channel"]._scs_webhook_channels().get(token)
        if not conf or conf["channel_type"] not in WEBHOOK_TYPES:
            return _answer(404, error="unknown channel")
        try:
            body = _read_body(httprequest, limit)
        except BadRequest as err:
            return _answer(400, error=err.description)
        if body is None:
            return _answer(413, error=f"body larger than {limit} bytes")
        headers = signatures.Headers.from_wsgi_environ(httprequest.headers.environ)

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
            # UTF-8 only (RFC 8259): json.loads would take UTF-16 bytes too,
            # whose text the event log cannot store
            payload = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as err:
            return _answer(400, error=f"body is not JSON: {err}")
        # the walk only when the body holds enough brackets to nest that deep
        if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and (
            json_depth_exceeds(payload)
        ):
            return _answer(400, error=f"body nests deeper than {MAX_JSON_DEPTH} levels")
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
        if signatures.get_header(headers, "x-wc-webhook-signature") is not None:
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
                    tolerance=_tolerance(conf["webhook_tolerance"]),
                )
        except signatures.SignatureError:
            raise
        except ValueError as err:
            # a malformed configured secret must not turn into a 500
            raise signatures.InvalidSignature(f"cannot verify: {err}") from err

    @staticmethod
    def _topic(channel_type, headers, payload):
        if channel_type == "shopify":
            return signatures.get_header(headers, "x-shopify-topic") or ""
        if channel_type == "woocommerce":
            return signatures.get_header(headers, "x-wc-webhook-topic") or ""
        if isinstance(payload, dict):
            return str(payload.get("type") or "")
        return ""
