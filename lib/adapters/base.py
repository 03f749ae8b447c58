"""Adapter interface shared by every channel type, and its error classes.

An adapter speaks one marketplace API. It knows nothing of Odoo: it receives a
:class:`ChannelConfig` and plain :class:`StockUpdate` values, and it answers
with :class:`PushResult`, :class:`LiveLevel` and :class:`ChannelOrder` values.

Errors carry their retry information (the same idea as queue_job's
``RetryableJobError``): the caller catches :class:`ChannelError` and asks
``err.retryable`` and ``err.retry_after`` instead of knowing each API's status
codes. Nothing is swallowed: an adapter either returns a result or raises.
"""

import json
import math
import re
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urljoin, urlsplit

import requests
import requests.adapters
import requests.utils
import urllib3
import urllib3.connection

from ..backoff import MAX_RETRY_AFTER

DEFAULT_TIMEOUT = 10.0
#: how much of a response body is kept in results and error messages
RESPONSE_EXCERPT = 2000
#: hosts a credential may be sent to over plain HTTP (the local simulators)
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class ChannelError(Exception):
    """Base of every error an adapter raises."""

    retryable = False
    #: the page token an order fetch stopped at (``fetch_orders``)
    resume = None

    def __init__(self, message, *, status=None, retry_after=None, response_text=None):
        super().__init__(message)
        self.message = message
        self.status = status
        #: seconds to wait before the next attempt, when the channel said so
        self.retry_after = retry_after
        self.response_text = (response_text or "")[:RESPONSE_EXCERPT]

    @property
    def retry_after(self):
        return self._retry_after

    @retry_after.setter
    def retry_after(self, seconds):
        """At most ``MAX_RETRY_AFTER`` (see ``lib.backoff``), however the
        wait was learnt: a header, a rate, a reset time."""
        if seconds is not None:
            try:
                seconds = float(seconds)
            except (TypeError, ValueError):
                seconds = None
        if seconds is not None:
            # not a number of seconds (nan, inf): as if the channel said none
            finite = math.isfinite(seconds)
            seconds = min(max(0.0, seconds), MAX_RETRY_AFTER) if finite else None
        self._retry_after = seconds

    def __str__(self):
        if self.status:
            return f"[{self.status}] {self.message}"
        return self.message


class RetryableChannelError(ChannelError):
    """5xx, timeouts, connection errors: try again later with backoff."""

    retryable = True


class UnreachableError(RetryableChannelError):
    """A timeout or a connection error: the channel did not answer at all.

    Unlike a 5xx, each attempt can hold a worker for the whole timeout, so
    the caller pauses the channel (``sync.channel`` circuit) rather than
    trying it again on every stock change.
    """


class RateLimitedError(RetryableChannelError):
    """429 or a throttling answer; ``retry_after`` says how long to wait."""


class PermanentChannelError(ChannelError):
    """4xx other than 429: retrying the same request cannot succeed."""


class AuthenticationError(PermanentChannelError):
    """Credentials refused even after a token refresh."""


class NewerSequenceError(ChannelError):
    """The channel kept a value pushed under a newer sequence than ours.

    Odoo is the only writer of those sequences, so the channel holding a
    newer one means Odoo's went back (a database restored from a backup).
    ``newer_sequence``: the one the channel holds, when it says: the push is
    then retried above it (retryable); otherwise it cannot be (permanent).
    """

    def __init__(self, message, *, newer_sequence=None, **kwargs):
        super().__init__(message, **kwargs)
        self.newer_sequence = newer_sequence
        self.retryable = newer_sequence is not None


class StaleQuantityError(ChannelError):
    """Compare-and-set refused: the channel's quantity is not the one expected."""

    retryable = True


@dataclass(frozen=True)
class ChannelConfig:
    """What an adapter needs to talk to one channel (one shop/account).

    Field meanings per type are documented in each adapter module.
    """

    channel_type: str
    base_url: str = ""
    api_key: str = ""
    api_secret: str = ""
    access_token: str = ""
    refresh_token: str = ""
    account_id: str = ""
    location_id: str = ""
    marketplace_id: str = ""
    api_version: str = ""
    token_url: str = ""
    signing_secret: str = ""
    signing_private_key: str = ""
    timeout: float = DEFAULT_TIMEOUT
    extra: dict = field(default_factory=dict, hash=False, compare=False)


@dataclass
class StockUpdate:
    """One absolute quantity to publish for one SKU on one channel."""

    sku: str
    quantity: int
    external_id: str = ""
    external_variant_id: str = ""
    external_location_id: str = ""
    sequence: int = 0
    idempotency_key: str = ""
    #: the quantity we believe the channel holds now (compare-and-set)
    previous_quantity: int | None = None
    #: quantities Odoo sent since, whose outcome it does not know (a push
    #: given up before its answer): a live level among them is Odoo's own
    unconfirmed: tuple = ()
    #: when the stock change happened in Odoo (unix seconds)
    changed_at: float | None = None


@dataclass
class PushResult:
    """Outcome of publishing one :class:`StockUpdate`."""

    sku: str
    ok: bool
    quantity: int | None = None
    status: int | None = None
    response: str = ""
    error: ChannelError | None = None
    #: set when the adapter had to read the live level (stale compare-and-set)
    live_quantity: int | None = None


@dataclass
class LiveLevel:
    """A quantity as the channel holds it now."""

    sku: str
    quantity: int
    external_id: str = ""
    external_variant_id: str = ""
    external_location_id: str = ""
    updated_at: datetime | None = None


@dataclass
class OrderLine:
    sku: str
    quantity: float
    external_id: str = ""
    external_variant_id: str = ""


@dataclass
class ChannelOrder:
    """An order as the channel reports it, normalised.

    ``status`` is one of ``open`` (reserve), ``cancelled`` or ``refunded``
    (release what was reserved); ``restock`` tells whether a refund puts the
    goods back on sale; ``follow_only``: a later state of the order, whose
    lines an order already reserved follows, but which never reserves an
    order of its own (Shopify's ``orders/updated`` fires for orders of any
    age); ``created_at``: when the order was placed on the channel, where
    the channel says (a channel's order cutoff compares it).
    """

    external_id: str
    status: str
    lines: list = field(default_factory=list)
    updated_at: datetime | None = None
    created_at: datetime | None = None
    restock: bool = True
    raw: dict = field(default_factory=dict)
    follow_only: bool = False
    #: a refund whose restocked units were never fulfilled (Shopify's
    #: ``restock_type: cancel``): no return, so they are released from what
    #: is still to ship even after part of the order shipped
    unshipped: bool = False
    #: a state the delivery cannot prove fresh (WooCommerce's order.deleted:
    #: the same signed bytes every time): the shop is asked before it
    #: releases anything
    unconfirmed: bool = False


@dataclass
class InboundEvent:
    """One normalised event parsed from a webhook body.

    ``kind`` is ``order`` (reserve), ``cancel`` (release), ``inventory`` (the
    channel reports a level), ``ping`` (no side effect) or ``ignored``.
    """

    kind: str
    idempotency_key: str
    event_time: datetime | None = None
    order: ChannelOrder | None = None
    levels: list = field(default_factory=list)


#: beyond this a quantity is no stock level: the marketplaces' own limit (a
#: 32-bit integer on Shopify and WooCommerce), and what a binding stores
MAX_QUANTITY = 2**31 - 1
#: the longest SKU, id or event id accepted (marketplaces allow 40 to 255
#: characters; a longer one could not be indexed, see ``check_inbound``)
MAX_IDENTIFIER = 255
#: the deepest JSON nesting accepted in a webhook body (marketplaces send
#: fewer than ten levels; a deeper body would exhaust Python's recursion
#: limit in the code that stores and applies it)
MAX_JSON_DEPTH = 64


def check_inbound(events):
    """Refuse parsed values that no channel sends: raise ValueError (or
    TypeError for a quantity that is no number).

    Each parser checks the shape of its marketplace's payload; this checks
    what every channel type shares, before anything is written: identifiers
    PostgreSQL can store and index (text or integers, no NUL character, no
    lone surrogate, at most ``MAX_IDENTIFIER`` characters: the insert would
    fail with a 500, or the reservation later in its job), finite quantities within
    ``MAX_QUANTITY``, order lines that do not ask for a negative quantity.
    """
    for event in events:
        _check_text(event.idempotency_key, "event id")
        order = event.order
        if order is not None:
            _check_text(order.external_id, "order id")
            for line in order.lines or []:
                _check_text(line.sku, "line sku")
                _check_text(line.external_id, "line id")
                _check_text(line.external_variant_id, "line variant id")
                _check_quantity(line.quantity, f"line {line.sku!r} quantity")
                if line.quantity < 0:
                    raise ValueError(
                        f"line {line.sku!r} quantity is negative: {line.quantity}"
                    )
        for level in event.levels or []:
            _check_text(level.sku, "inventory sku")
            _check_text(level.external_id, "inventory item id")
            _check_text(level.external_variant_id, "inventory variant id")
            _check_text(level.external_location_id, "inventory location id")
            _check_quantity(level.quantity, f"sku {level.sku!r} quantity")


def as_quantity(value, what, whole=False):
    """A webhook's quantity as a float; ``TypeError`` or ``ValueError`` for
    what no channel sends: a boolean (``true`` is not 1 unit), an object,
    text that is no number, an infinite one, or, with ``whole``, a fraction
    (a stock level counts units)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(f"{what} is not a number: {value!r}")
    try:
        number = float(value)
    except ValueError as err:
        raise ValueError(f"{what} is not a number: {value!r}") from err
    if not math.isfinite(number):
        raise ValueError(f"{what} is not a finite number")
    if whole and number != int(number):
        raise ValueError(f"{what} is not a whole number: {value!r}")
    return number


def is_identifier(value):
    """Whether a parsed JSON value can be an id or a SKU: a string or an
    integer (an object or a list would turn into text that matches nothing,
    and no database column takes it as it is)."""
    return isinstance(value, (str, int)) and not isinstance(value, bool)


def _check_text(value, name):
    if value is None or value == "":
        return
    if not is_identifier(value):
        # a JSON object or list where the channel sends an id: no database
        # column takes it
        raise TypeError(f"{name} must be text, got {type(value).__name__}")
    text = str(value)
    if "\x00" in text:
        raise ValueError(f"{name} holds a NUL character")
    if len(text) > MAX_IDENTIFIER:
        raise ValueError(f"{name} is longer than {MAX_IDENTIFIER} characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(f"{name} is not valid Unicode text: {err.reason}") from err


def json_depth_exceeds(value, limit=MAX_JSON_DEPTH):
    """Whether parsed JSON nests deeper than ``limit`` (without recursing)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _check_quantity(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if abs(value) > MAX_QUANTITY:
        raise ValueError(f"{name} is out of range: {value!r}")


class ChannelAdapter:
    """Base class: one instance per channel, reused across jobs.

    Holds one pooled :class:`requests.Session` per channel. Subclasses
    implement the ``_`` hooks; the public methods are the contract the Odoo
    layer relies on.
    """

    channel_type = None
    #: how many updates one bulk call may carry (the marketplace's own limit)
    max_batch = 1
    #: HTTP requests one batch costs at the least (a feed protocol needs several)
    calls_per_batch = 1
    #: whether a set is compared with ``StockUpdate.previous_quantity`` (a
    #: compare-and-set that keeps units sold there): a forced push of the
    #: whole channel reads the live levels first, as the compare value
    compares_previous = False
    #: whether the adapter sends credentials (a token, keys) on its calls:
    #: then only over HTTPS, loopback aside (the simulators)
    requires_https = False
    #: whether the channel addresses a listing by its SKU, whatever other
    #: ids the binding carries (a generic shop, Amazon's seller SKU, eBay's
    #: inventory item): two bindings of one SKU would set one listing
    listings_by_sku = True
    #: seconds the channel may take to apply an update it accepted (0: it
    #: is applied when the call answers); a level read that soon after a
    #: push may still show the number before it
    applies_within = 0.0

    def __init__(self, config, session=None, clock=time.time):
        self.config = config
        self.session = session or new_session()
        self.clock = clock
        #: number of HTTP requests sent, for benchmarks and tests
        self.calls = 0
        self._lock = threading.Lock()

    # -- contract -----------------------------------------------------------
    def set_quantity(self, update):
        """Publish one absolute quantity; return a PushResult or raise ChannelError."""
        results = self.set_quantities([update])
        result = results[0]
        if result.error is not None:
            raise result.error
        return result

    def set_quantities(self, updates):
        """Publish many quantities, in as few calls as the API allows.

        Returns one PushResult per update, in order; a per-item failure is
        reported in its result, a failure of the whole call raises.
        """
        raise NotImplementedError

    def read_quantities(self, updates=None):
        """Yield LiveLevel for the given SKUs (or the whole catalogue), paginated."""
        raise NotImplementedError

    def fetch_orders(self, since):
        """Yield ChannelOrder updated since ``since`` (a datetime), paginated.

        An adapter whose ``resumes_orders`` is true also takes ``resume``:
        the page token a fetch stopped at. When a page fails, the error it
        raises carries that page's token (``ChannelError.resume``), so that
        what was read is kept and the next fetch goes on from there.
        """
        raise NotImplementedError

    #: whether ``fetch_orders`` takes ``resume`` (see there)
    resumes_orders = False

    def test_connection(self):
        """Check credentials and reachability; return a short message or raise."""
        raise NotImplementedError

    #: whether ``complete_listing`` adds anything (a call per listing)
    completes_listings = False

    #: the channel limits how often a listing may be revised (eBay): the
    #: caller hands over the revisions it recorded (``load_revisions``)
    #: before a push, so that the count holds across processes and restarts
    revision_window = 0.0

    def revision_key(self, update):
        """What the channel counts revisions of, for ``update``."""
        return update.sku

    def load_revisions(self, stamps):
        """``{revision key: [unix times]}``: the successful revisions of
        those keys within ``revision_window``, as the caller recorded them."""

    def complete_listing(self, level):
        """``level`` (from ``read_quantities``) with the ids a binding of it
        needs to push, when the catalogue read does not carry them (one call
        per listing: used when bindings are created, not on each push)."""
        return level

    def parse_webhook(self, topic, payload, headers):
        """Turn a verified webhook body into a list of InboundEvent."""
        raise NotImplementedError

    # -- helpers ------------------------------------------------------------
    #: the answer must be complete within this many times ``config.timeout``
    #: from the start of the call: requests' timeout bounds each read, so a
    #: channel that trickles its answer a byte at a time, each just within
    #: the timeout, would otherwise hold the call (and its thread) for ever
    deadline_factor = 3.0

    def request(self, method, url, **kwargs):
        """Send one HTTP request with a timeout; map transport errors.

        Returns the response for any status, its body read (``json()``,
        ``text``, ``content`` and ``headers`` as usual); callers map statuses
        with :func:`raise_for_status`. ``timeout`` bounds the connection and
        each read; the whole answer, headers and body, must have arrived
        within :attr:`deadline_factor` times it from the start of the call,
        else the call fails as a timeout does (:class:`UnreachableError`).
        """
        self._check_url(url)
        if self._sends_credentials(kwargs):
            self._check_no_proxy_in_clear(url)
        # a redirect would carry the credentials (custom headers, a token
        # grant's form body) to wherever it points, past _check_url
        follow = kwargs.setdefault("allow_redirects", False)
        response = self._request(method, url, **kwargs)
        status = response.status_code
        if not follow and 300 <= status < 400 and status != 304:
            # moved for good: the configuration's to change; for now (a
            # shop's maintenance page): tried again later, as a 503 is
            error_class = (
                PermanentChannelError
                if status in (300, 301, 308)
                else RetryableChannelError
            )
            raise error_class(
                f"{self.channel_type or 'channel'}: the API answered"
                f" {status} {response.reason or ''}, a redirect to"
                f" {_where(url, response.headers.get('Location'))!r}; redirects"
                " are not followed (they would carry the credentials elsewhere)"
                + (
                    ": set the API URL to the address it points to"
                    if error_class is PermanentChannelError
                    else ""
                ),
                status=status,
            )
        return response

    def _request(self, method, url, **kwargs):
        timeout = kwargs.setdefault("timeout", self.config.timeout)
        # the body is read here, under the deadline
        kwargs["stream"] = True
        with self._lock:
            self.calls += 1
        budget = self._deadline(timeout)
        try:
            if budget is None:
                response = self.session.request(method, url, **kwargs)
                _ = response.content
                _check_complete(method, response)
                return response
            with CallDeadline(budget) as deadline:
                try:
                    response = self.session.request(method, url, **kwargs)
                    # a session not made here has no watched connections:
                    # its body at least is read under the deadline
                    deadline.attach_response(response)
                    _ = response.content
                except (requests.RequestException, OSError) as err:
                    if deadline.finish():
                        raise deadline.error() from err
                    raise
                if deadline.finish():
                    response.close()
                    raise deadline.error()
            _check_complete(method, response)
            return response
        except requests.Timeout as err:
            raise UnreachableError(f"timeout: {err}") from err
        except requests.exceptions.ChunkedEncodingError as err:
            # the connection closed under the body (urllib3 2 checks the
            # declared length itself; before, _check_complete does)
            raise UnreachableError(
                f"connection error: the answer ended early: {err}"
            ) from err
        except requests.ConnectionError as err:
            raise UnreachableError(f"connection error: {err}") from err
        except requests.RequestException as err:
            raise RetryableChannelError(f"request failed: {err}") from err

    def _sends_credentials(self, kwargs):
        """Whether a call with these ``request`` arguments carries the
        channel's credentials (a token, keys): see ``requires_https``."""
        return self.requires_https

    def _check_no_proxy_in_clear(self, url):
        """A plain-HTTP call (loopback: the simulators, a local TLS
        sidecar) that the environment sends through a proxy (``HTTP_PROXY``
        without the host in ``NO_PROXY``) would hand the credentials to it
        in clear: refused, for good. Over HTTPS a proxy only tunnels."""
        if urlsplit(str(url)).scheme != "http":
            return
        proxies = requests.utils.get_environ_proxies(str(url))
        if proxies.get("http") or proxies.get("all"):
            raise PermanentChannelError(
                f"{self.channel_type or 'channel'}: the environment's HTTP proxy"
                " would receive the credentials in clear; add the API's host to"
                " NO_PROXY, or use HTTPS"
            )

    def _check_url(self, url):
        """Refuse for good, before anything is sent, a URL no configuration
        can make work: one without a scheme or host (an empty API URL: a
        retry cannot help), or, for an adapter that sends credentials, one
        that would carry them in clear over a network."""
        kind = self.channel_type or "channel"
        try:
            parts = urlsplit(str(url))
        except ValueError as err:
            raise PermanentChannelError(
                f"{kind}: the API URL cannot be read ({err}): {str(url)[:200]!r}"
            ) from err
        if not _one_reading(str(url), parts):
            raise PermanentChannelError(
                f"{kind}: the API URL is not a plain http(s) URL (a backslash,"
                f" a space, a control character, or a host read two ways):"
                f" {str(url)[:200]!r}"
            )
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PermanentChannelError(
                f"{kind}: the API URL is not configured or not an http(s) URL"
                f" ({str(url)[:200]!r})"
            )
        if (
            self.requires_https
            and parts.scheme != "https"
            and parts.hostname not in LOOPBACK_HOSTS
        ):
            raise PermanentChannelError(
                f"{kind}: credentials go over HTTPS only; refusing to send them"
                f" in clear to {parts.hostname!r}"
            )

    def _deadline(self, timeout):
        """Seconds a whole call may last for a ``timeout`` (None: no bound)."""
        if isinstance(timeout, (tuple, list)):
            timeout = None if None in timeout else max(timeout)
        try:
            budget = self.deadline_factor * float(timeout)
        except (TypeError, ValueError):
            return None
        return budget if math.isfinite(budget) and budget > 0 else None


def _one_reading(text, parts):
    """Whether the host of ``text`` is the one the transport connects to.

    ``urlsplit`` (which ``_check_url`` reads) and urllib3 (which connects)
    part a URL differently where it holds a backslash or whitespace:
    ``http://remote\\@127.0.0.1`` is loopback to one and a remote host to
    the other. Such a URL is no API's address: refused, as is one whose
    host the two read differently.
    """
    if "\\" in text or any(ord(char) <= 32 or ord(char) == 127 for char in text):
        return False
    try:
        host = urllib3.util.parse_url(text).host
    except (ValueError, urllib3.exceptions.LocationParseError):
        return False
    if not parts.hostname:
        return True  # refused as not configured, with its own message
    expected = _ascii_host(parts.hostname)
    if expected is None:
        return False
    return (host or "").strip("[]").lower() == expected.lower()


def _ascii_host(name):
    """The ASCII form a host name is sent in (IDNA 2008 with UTS #46, as
    requests encodes it: "straße.de" is "xn--strae-oqa.de", not the older
    codec's "strasse.de"); None when it has none."""
    if name.isascii():
        return name
    try:
        # requests' own dependency, which it encodes host names with
        import idna
    except ImportError:  # pragma: no cover - requests always brings it
        idna = None
    try:
        if idna is None:
            return name.encode("idna").decode("ascii")
        return idna.encode(name, uts46=True).decode("ascii")
    except (UnicodeError, ValueError):
        return None


def _where(url, location):
    """A redirect's target for a message: no query string, which could
    carry keys (WooCommerce's query-string authentication)."""
    if not location:
        return "(no Location)"
    try:
        target = urlsplit(urljoin(url, str(location)))
    except ValueError:
        return str(location).partition("?")[0][:200]
    return f"{target.scheme}://{target.netloc.rpartition('@')[2]}{target.path}"[:200]


def _check_complete(method, response):
    """Raise ``UnreachableError`` when the answer's body ended before the
    length its headers declared (the connection closed under it).

    urllib3 before 2.0 hands such a body over as if complete: an empty one
    would pass for a channel's acknowledgement, a cut one for its data.
    """
    declared = response.headers.get("Content-Length")
    if (
        not declared
        or method.upper() == "HEAD"
        or response.status_code in (204, 304)
        or response.status_code < 200
    ):
        return
    try:
        expected = int(declared)
    except ValueError:
        return
    tell = getattr(response.raw, "tell", None)
    try:
        # the bytes that came over the wire, before any decoding (gzip)
        received = tell() if callable(tell) else len(response.content)
    except (OSError, ValueError):
        return
    if isinstance(received, int) and received < expected:
        raise UnreachableError(
            f"connection error: the answer ended early, after {received} of"
            f" its {expected} bytes"
        )


#: the deadline of the call this thread is making (see ``CallDeadline``)
_current = threading.local()
#: until when (``time.monotonic``) this thread's caller waits for its
#: adapter's answer (see ``wait_budget``)
_budget = threading.local()


@contextmanager
def wait_budget(seconds):
    """Bound what an adapter may sleep in place (a throttle waited out and
    sent again) to ``seconds`` from now, in this thread.

    A live push waits for its channels a few seconds only (the SKU job's
    ``push_wait_seconds``): an adapter that sleeps longer on a 429 would be
    taken for a channel that does not answer, paused, and its resend would
    land after the job gave it up. Within a budget, a wait that does not fit
    raises :class:`RateLimitedError` instead, retried by the job at the
    channel's Retry-After. ``None``: no bound (batch jobs).
    """
    previous = getattr(_budget, "until", None)
    _budget.until = None if seconds is None else time.monotonic() + seconds
    try:
        yield
    finally:
        _budget.until = previous


def may_wait(seconds):
    """Whether sleeping ``seconds`` fits this thread's ``wait_budget``."""
    until = getattr(_budget, "until", None)
    return until is None or time.monotonic() + seconds <= until


class CallDeadline:
    """The deadline of one call: at its end, a timer shuts the call's
    connection down, which ends a read however slowly the bytes come.

    requests' timeout bounds each read, so a channel sending its answer,
    headers or body, a byte at a time would hold the call, and a worker
    with it, for ever. The connection is learnt when its answer is about
    to be read (``_WatchedConnectionMixin``); the deadline shuts down a
    duplicate of its descriptor (never the one the pool may hand to another
    call), which wakes the reading thread, TLS or not. A shut connection is
    not used again: the pool finds it dropped.
    """

    def __init__(self, budget):
        self.budget = budget
        self.expired = False
        self._done = False
        self._socks = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(budget, self._cut)
        self._timer.daemon = True

    def __enter__(self):
        _current.deadline = self
        self._timer.start()
        return self

    def __exit__(self, *exc):
        _current.deadline = None
        self.finish()
        self._timer.cancel()
        for sock in self._socks:
            sock.close()
        return False

    def attach(self, fileno):
        """Watch the connection of descriptor ``fileno``."""
        try:
            sock = socket.fromfd(fileno, socket.AF_INET, socket.SOCK_STREAM)
        except (OSError, ValueError, TypeError):
            return
        with self._lock:
            # the connection of this answer only: one left behind by a
            # redirect is back in the pool, maybe in another call's hands
            old, self._socks = self._socks, [sock]
            late = self.expired and not self._done
        for previous in old:
            previous.close()
        if late:
            _shut(sock)

    def attach_response(self, response):
        if not self._socks:
            try:
                self.attach(response.raw.fileno())
            except (AttributeError, OSError, ValueError):
                return

    def finish(self):
        """The call is over: whether the deadline had passed before."""
        with self._lock:
            self._done = True
            return self.expired

    def error(self):
        return UnreachableError(
            f"timeout: no complete answer within {self.budget:g} s (the channel"
            " sends it too slowly)"
        )

    def _cut(self):
        with self._lock:
            if self._done:
                return
            self.expired = True
            socks = list(self._socks)
        for sock in socks:
            _shut(sock)


def _shut(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # the peer closed it meanwhile: nothing to end
        return


class _WatchedConnectionMixin:
    """Hands the connection to the deadline of the call reading its answer."""

    def getresponse(self, *args, **kwargs):
        deadline = getattr(_current, "deadline", None)
        if deadline is not None and self.sock is not None:
            deadline.attach(self.sock.fileno())
        return super().getresponse(*args, **kwargs)


class _WatchedHTTPConnection(
    _WatchedConnectionMixin, urllib3.connection.HTTPConnection
):
    pass


class _WatchedHTTPSConnection(
    _WatchedConnectionMixin, urllib3.connection.HTTPSConnection
):
    pass


class _WatchedHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class WatchedHTTPAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter, whose connections a call's deadline can shut."""

    def init_poolmanager(self, *args, **kwargs):
        result = super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS
        return result

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        """Calls through an HTTP(S) proxy are watched too (a SOCKS proxy's
        connections are not: their answers are bounded per read)."""
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if type(manager) is urllib3.ProxyManager:
            manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager


class _Session(requests.Session):
    """A session that reads no redirect's target unless it follows it.

    requests works out the next request of a redirect even when it is not
    to follow it (``Response.next``): a Location it cannot parse then
    raises out of ``send`` as no ``RequestException``, and a channel's
    answer would end as an unexpected error rather than the adapter's own
    (``ChannelAdapter.request`` refuses redirects with its message).
    """

    def resolve_redirects(self, resp, req, *args, yield_requests=False, **kwargs):
        if yield_requests:
            # only asked for ``Response.next``, when not following
            return iter(())
        return super().resolve_redirects(resp, req, *args, **kwargs)


def _no_auth(request):
    """The session's own authentication: none. Set, it keeps requests from
    adding credentials of the environment's ``.netrc`` (a call's own
    ``auth`` still wins)."""
    return request


def new_session():
    """A requests session whose calls the deadline of ``request`` bounds."""
    session = _Session()
    session.auth = _no_auth
    adapter = WatchedHTTPAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def parse_retry_after(value, now=None):
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date).

    ``None`` when the header is absent or unreadable (the caller's backoff
    then decides); at most ``MAX_RETRY_AFTER``, since a number too large
    for a float still asks for a long wait.
    """
    if value is None or value == "":
        return None
    text = str(value).strip()
    if _DELTA_SECONDS.fullmatch(text):
        seconds = float(text)
        return (
            min(seconds, MAX_RETRY_AFTER)
            if math.isfinite(seconds)
            else (MAX_RETRY_AFTER)
        )
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError, OverflowError, IndexError, AttributeError):
        return None
    now = time.time() if now is None else now
    return min(max(0.0, when - now), MAX_RETRY_AFTER)


#: delta-seconds, in ASCII digits (``str.isdigit`` also takes "²")
_DELTA_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)


def raise_for_status(response, message=None):
    """Map an HTTP status to the adapter error classes; return on 2xx."""
    status = response.status_code
    if 200 <= status < 300:
        return
    text = response.text[:RESPONSE_EXCERPT] if response.content else ""
    msg = message or text or response.reason or "HTTP error"
    if status == 429:
        raise RateLimitedError(
            msg,
            status=status,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
            response_text=text,
        )
    if status in (401, 403):
        raise AuthenticationError(msg, status=status, response_text=text)
    if status >= 500 or status in (408, 409, 425):
        raise RetryableChannelError(
            msg,
            status=status,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
            response_text=text,
        )
    raise PermanentChannelError(msg, status=status, response_text=text)


def json_answer(response, message, error_class=RetryableChannelError):
    """The JSON body of an answer; ``error_class(message)`` when it is not JSON."""
    try:
        return response.json()
    except ValueError as err:
        raise error_class(
            message, status=response.status_code, response_text=response.text
        ) from err


def json_payload(payload, what):
    """A webhook or queue message body (bytes, text or decoded) as decoded JSON.

    Text that is not JSON is a :class:`PermanentChannelError` saying
    ``<what> is not JSON``; an already decoded body is returned as it is.
    """
    body = payload
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError as err:
            raise PermanentChannelError(f"{what} is not JSON") from err
    return body


def failed_result(update, error, status=None):
    """The :class:`PushResult` of an update that ``error`` stopped.

    ``status`` overrides the error's own (an item refused inside a call that
    itself succeeded).
    """
    return PushResult(
        sku=update.sku,
        ok=False,
        quantity=update.quantity,
        status=status if status is not None else error.status,
        response=error.response_text or error.message,
        error=error,
    )


def push_coalesced(updates, push, key=None):
    """Publish only the newest update per SKU; the older ones share its result.

    Two absolute quantities for the same SKU in one batch: only the newest one
    means anything. Sending both wastes a call (on eBay, one of a listing's 250
    daily revisions), and a channel that applies a batch in no guaranteed order
    (an Amazon feed) could keep the older number. "Newest" is the highest
    ``sequence``, then the later position.

    ``push`` receives the kept updates in input order and returns one
    :class:`PushResult` each. The result list has one entry per input update;
    a superseded update gets the result of the update that replaced it.
    """
    updates = list(updates)
    key = key or (lambda update: update.sku)
    newest = {}
    for index, update in enumerate(updates):
        best = newest.get(key(update))
        if best is None or update.sequence >= updates[best].sequence:
            newest[key(update)] = index
    kept = sorted(newest.values())
    results = [None] * len(updates)
    pushed = push([updates[index] for index in kept]) if kept else []
    for index, result in zip(kept, pushed, strict=True):
        results[index] = result
    for index, update in enumerate(updates):
        if results[index] is None:
            winner = results[newest[key(update)]]
            results[index] = PushResult(
                sku=update.sku,
                ok=winner.ok,
                quantity=winner.quantity,
                status=winner.status,
                response="superseded by a newer update of the same SKU in this batch",
                error=winner.error,
            )
    return results
