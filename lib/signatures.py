"""Sign and verify webhook deliveries: Standard Webhooks, Shopify, WooCommerce.

Why this module exists on its own: a webhook endpoint is reachable by anyone,
so the only thing standing between a forged request and a stock movement is
the check done here. The rules it follows everywhere:

- verify the **raw bytes** received, never a re-serialised JSON (a single
  space of difference breaks the signature, and re-serialising hides tampering);
- compare in constant time (:func:`hmac.compare_digest`) so response timing
  does not turn the endpoint into a signing oracle;
- accept several secrets at once (current + previous) so a secret can be
  rotated without dropping deliveries;
- a missing or empty signature header is an error, never a reason to skip;
- the clock is an argument (``now``, unix seconds), so tests pin it and
  nothing is read at import time.

Each ``verify_*`` raises a :class:`SignatureError` subclass, which a controller
maps to a 401 answer; configuration mistakes (no secret at all, a secret that
is not valid base64) raise :class:`ValueError` instead, because they are the
operator's to fix, not the sender's.
"""

import base64
import binascii
import functools
import hashlib
import hmac
import math
import re
import secrets as _secrets
import time
from datetime import datetime

#: Standard Webhooks reference tolerance between the signed timestamp and now
STANDARD_TOLERANCE = 300

STANDARD_SECRET_PREFIX = "whsec_"
ED25519_PRIVATE_PREFIX = "whsk_"
ED25519_PUBLIC_PREFIX = "whpk_"

STANDARD_ID_HEADER = "webhook-id"
STANDARD_TIMESTAMP_HEADER = "webhook-timestamp"
STANDARD_SIGNATURE_HEADER = "webhook-signature"
#: Svix's name for the same headers (``svix-id``...), see ``standard_header``
SVIX_PREFIX = "svix-"
SHOPIFY_HMAC_HEADER = "X-Shopify-Hmac-Sha256"
WOOCOMMERCE_SIGNATURE_HEADER = "X-WC-Webhook-Signature"

# The spec's timestamp is an integer number of seconds; 12 digits reach year
# 33658, so anything longer is garbage (and would be slow to turn into a float).
_TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")
# A message id goes between dots in the signed content, so a dot (or any
# whitespace, which would also break the header) would make it ambiguous.
_MSG_ID_RE = re.compile(r"[!-~]{1,255}")
#: entries one ``webhook-signature`` header may carry. A sender signs with
#: one key, or two or three while it rotates them; each ``v1a`` entry costs an
#: Ed25519 verification, so an unsigned request with a 64 KiB header of them
#: would cost a worker some 40 ms before it is refused
MAX_SIGNATURE_ENTRIES = 16


class SignatureError(Exception):
    """A delivery whose authenticity cannot be established; answer 401."""


class MissingSignature(SignatureError):
    """A header the scheme needs is absent or empty."""


class InvalidSignature(SignatureError):
    """The signature (or a header it depends on) is malformed or does not match."""


class StaleTimestamp(SignatureError):
    """The signed timestamp is outside the tolerance window (replay protection)."""


# -- helpers -----------------------------------------------------------------
class Headers(dict):
    """Request headers by lowercased name, the first of a repeated one.

    ``get_header`` looks a name up in one step here instead of walking every
    header (a webhook is verified and parsed with a dozen lookups). A
    repeated header keeps its first value, as the walk would find it.
    """

    __slots__ = ()

    def __init__(self, headers=()):
        super().__init__()
        items = headers.items() if hasattr(headers, "items") else headers
        for key, value in items:
            if isinstance(key, bytes):
                key = key.decode("latin-1")
            if isinstance(value, bytes):
                value = value.decode("latin-1")
            self.setdefault(key.lower(), value)

    @classmethod
    def from_wsgi_environ(cls, environ):
        """The headers of a WSGI request, read from its environ directly
        (PEP 3333: ``HTTP_*`` keys, ``CONTENT_TYPE`` and ``CONTENT_LENGTH``)
        as werkzeug's ``EnvironHeaders`` would list them, for a fraction of
        its cost (the route builds this on every delivery)."""
        headers = cls()
        for key, value in environ.items():
            if key.startswith("HTTP_"):
                if key in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                    continue
                name = key[5:]
            elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                if not value:
                    continue
                name = key
            else:
                continue
            if isinstance(value, bytes):
                value = value.decode("latin-1")
            headers.setdefault(name.replace("_", "-").lower(), value)
        return headers


def get_header(headers, name):
    """Return one header value looked up case-insensitively, or ``None``.

    HTTP header names are case-insensitive, but the mappings frameworks hand
    over are not always (a plain dict built by hand, a list of pairs), so the
    lookup never relies on the container doing it, unless it is ``Headers``.
    """
    if headers is None:
        return None
    wanted = name.lower()
    if isinstance(headers, Headers):
        return headers.get(wanted)
    items = headers.items() if hasattr(headers, "items") else headers
    for key, value in items:
        if isinstance(key, bytes):
            key = key.decode("latin-1")
        if key.lower() == wanted:
            if isinstance(value, bytes):
                value = value.decode("latin-1")
            return value
    return None


def _as_bytes(body):
    """The exact bytes that were (or will be) sent.

    Only bytes and str are accepted: a dict here would mean the caller parsed
    the body and is about to verify something other than what was received.
    """
    if isinstance(body, bytes):
        return body
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    raise TypeError(
        f"webhook body must be the raw bytes received, not {type(body).__name__}"
    )


def _as_sequence(values):
    """Accept one secret or a sequence of them; drop empty entries.

    A bare string is wrapped rather than iterated, so passing ``"s3cret"``
    instead of ``["s3cret"]`` cannot silently turn into six one-letter keys.
    """
    if values is None:
        return ()
    if isinstance(values, (str, bytes, bytearray)):
        values = (values,)
    return tuple(v for v in values if v)


def _b64decode(value):
    """Strict base64 decode tolerating missing padding, or ``None``."""
    value = value.strip()
    value += "=" * (-len(value) % 4)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _b64encode(raw):
    return base64.b64encode(raw).decode("ascii")


# -- Standard Webhooks: keys -------------------------------------------------
def generate_standard_secret(nbytes=32):
    """Return a new ``whsec_`` secret (the spec asks for 24 to 64 random bytes)."""
    if not 24 <= nbytes <= 64:
        raise ValueError("a Standard Webhooks secret has 24 to 64 bytes")
    return STANDARD_SECRET_PREFIX + _b64encode(_secrets.token_bytes(nbytes))


def decode_standard_secret(secret):
    """Return the HMAC key bytes of a ``whsec_`` secret (raw bytes pass through).

    Like the reference library, a secret without the prefix is still read as
    base64, and missing padding is tolerated.
    """
    if isinstance(secret, (bytes, bytearray)):
        key = bytes(secret)
    else:
        text = str(secret).strip()
        text = text.removeprefix(STANDARD_SECRET_PREFIX)
        key = _b64decode(text)
        if key is None:
            raise ValueError("Standard Webhooks secret is not valid base64")
    if not key:
        raise ValueError("Standard Webhooks secret is empty")
    return key


def generate_ed25519_keypair():
    """Return a new ``(whsk_..., whpk_...)`` pair for ``v1a`` signatures.

    The spec only says "standard ed25519 key pair, base64 encoded". The
    private half is written in the usual libsodium/NaCl form, seed followed by
    public key (64 bytes), which other implementations read; when loading,
    the bare 32-byte seed is accepted too.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    seed = _raw_private(key)
    public = _raw_public(key.public_key())
    return (
        ED25519_PRIVATE_PREFIX + _b64encode(seed + public),
        ED25519_PUBLIC_PREFIX + _b64encode(public),
    )


def _raw_private(key):
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )


def _raw_public(key):
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def load_ed25519_private_key(value):
    """Load a ``whsk_`` key (32-byte seed, or 64 bytes seed + public key).

    With the 64-byte form the public half must match the seed: a mismatch
    means a corrupted or mixed-up key, which would sign with a key nobody
    can verify.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if isinstance(value, Ed25519PrivateKey):
        return value
    if isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
    else:
        text = str(value).strip()
        text = text.removeprefix(ED25519_PRIVATE_PREFIX)
        raw = _b64decode(text)
        if raw is None:
            raise ValueError("Ed25519 private key (whsk_) is not valid base64")
    if len(raw) not in (32, 64):
        raise ValueError(
            f"Ed25519 private key (whsk_) must be 32 or 64 bytes, not {len(raw)}"
        )
    key = Ed25519PrivateKey.from_private_bytes(raw[:32])
    if len(raw) == 64 and not hmac.compare_digest(
        raw[32:], _raw_public(key.public_key())
    ):
        raise ValueError("Ed25519 private key (whsk_): public half does not match")
    return key


def load_ed25519_public_key(value):
    """Load a ``whpk_`` key: base64 of the 32 raw public key bytes."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if isinstance(value, Ed25519PublicKey):
        return value
    if isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
    else:
        text = str(value).strip()
        text = text.removeprefix(ED25519_PUBLIC_PREFIX)
        raw = _b64decode(text)
        if raw is None:
            raise ValueError("Ed25519 public key (whpk_) is not valid base64")
    if len(raw) != 32:
        raise ValueError(f"Ed25519 public key (whpk_) must be 32 bytes, not {len(raw)}")
    problem = _ed25519_key_problem(raw)
    if problem:
        raise ValueError(f"Ed25519 public key (whpk_) is not usable: {problem}")
    return Ed25519PublicKey.from_public_bytes(raw)


#: the field and curve of Ed25519 (RFC 8032, section 5.1)
_P = 2**255 - 19
_D = -121665 * pow(121666, _P - 2, _P) % _P


def _edwards_add(one, two):
    (x1, y1), (x2, y2) = one, two
    cross = _D * x1 * x2 * y1 * y2 % _P
    x3 = (x1 * y2 + y1 * x2) * pow(1 + cross, _P - 2, _P) % _P
    y3 = (y1 * y2 + x1 * x2) * pow(1 - cross, _P - 2, _P) % _P
    return x3, y3


@functools.lru_cache(maxsize=64)
def _ed25519_key_problem(raw):
    """Why 32 bytes are not a public key to verify with, or ``None``.

    OpenSSL, which ``cryptography`` verifies with, accepts a key of small
    order (the identity point, say): with such a key a signature made
    without any private key verifies for every message, so a forged
    ``v1a`` delivery would pass. Such keys are refused here, as libsodium
    refuses them: the point is decoded (RFC 8032, 5.1.3) and multiplied by
    the cofactor 8; a small-order point gives the identity.
    """
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)
    sign = raw[31] >> 7
    if y >= _P:
        return "not a canonical point encoding"
    u, v = (y * y - 1) % _P, (_D * y * y + 1) % _P
    x2 = u * pow(v, _P - 2, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * pow(2, (_P - 1) // 4, _P) % _P
    if (x * x - x2) % _P:
        return "not a point of the curve"
    if x == 0 and sign:
        return "not a canonical point encoding"
    if x % 2 != sign:
        x = _P - x
    point = (x, y)
    for _ in range(3):
        point = _edwards_add(point, point)
    if point == (0, 1):
        return "a point of small order, which any signature could match"
    return None


def ed25519_public_key_of(private_key):
    """Return the ``whpk_`` string matching a ``whsk_`` private key."""
    key = load_ed25519_private_key(private_key)
    return ED25519_PUBLIC_PREFIX + _b64encode(_raw_public(key.public_key()))


# -- Standard Webhooks: sign and verify --------------------------------------
def standard_signed_content(msg_id, timestamp, body):
    """The bytes both signatures cover: ``{msg_id}.{timestamp}.{body}``."""
    return f"{msg_id}.{timestamp}.".encode() + _as_bytes(body)


def _timestamp_text(timestamp):
    if isinstance(timestamp, datetime):
        timestamp = timestamp.timestamp()
    if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)):
        raise TypeError("timestamp must be unix seconds (int or float) or a datetime")
    return str(int(timestamp))


def sign_standard(secret, msg_id, timestamp, body, private_key=None):
    """Return the three Standard Webhooks headers for one delivery.

    ``secret`` is a ``whsec_`` string (or raw key bytes), or a sequence of
    them: during a rotation the sender signs with both keys so receivers on
    either one keep accepting. ``private_key`` (``whsk_``) adds a ``v1a``
    Ed25519 signature. At least one of the two is required, because an
    unsigned delivery must never leave here looking signed.
    """
    secrets = _as_sequence(secret)
    private_keys = _as_sequence(private_key)
    if not secrets and not private_keys:
        raise ValueError("sign_standard needs a whsec_ secret or a whsk_ private key")
    if not isinstance(msg_id, str) or not _MSG_ID_RE.fullmatch(msg_id) or "." in msg_id:
        raise ValueError(
            "webhook-id must be 1-255 printable ASCII characters without spaces "
            f"or dots, got {msg_id!r}"
        )
    stamp = _timestamp_text(timestamp)
    content = standard_signed_content(msg_id, stamp, body)
    entries = []
    for item in secrets:
        key = decode_standard_secret(item)
        digest = hmac.new(key, content, hashlib.sha256).digest()
        entries.append("v1," + _b64encode(digest))
    for item in private_keys:
        key = load_ed25519_private_key(item)
        entries.append("v1a," + _b64encode(key.sign(content)))
    return {
        STANDARD_ID_HEADER: msg_id,
        STANDARD_TIMESTAMP_HEADER: stamp,
        STANDARD_SIGNATURE_HEADER: " ".join(entries),
    }


def standard_header(headers, name):
    """A Standard Webhooks header, or its ``svix-`` twin when it is absent.

    Svix, the largest sender of Standard Webhooks, names the three headers
    ``svix-id``, ``svix-timestamp`` and ``svix-signature`` unless told
    otherwise (same content, same signature); its own libraries accept both
    names, and so does this endpoint.
    """
    value = get_header(headers, name)
    if (value is None or not str(value).strip()) and name.startswith("webhook-"):
        value = get_header(headers, SVIX_PREFIX + name[len("webhook-") :])
    return value


def _required_header(headers, name):
    value = standard_header(headers, name)
    if value is None or not str(value).strip():
        raise MissingSignature(f"missing or empty {name} header")
    return str(value).strip()


def check_timestamp(stamp, now=None, tolerance=STANDARD_TOLERANCE):
    """Parse a ``webhook-timestamp`` and enforce the tolerance window.

    Both directions are checked: an old timestamp is a replay, and one far in
    the future would let a captured request be replayed for longer.
    """
    if not _TIMESTAMP_RE.fullmatch(stamp):
        raise InvalidSignature(
            f"malformed {STANDARD_TIMESTAMP_HEADER} header: {stamp[:40]!r} "
            "is not integer unix seconds"
        )
    value = int(stamp)
    # whole seconds, as the timestamp and the JavaScript reference count: a
    # timestamp exactly the tolerance old is inside the window all through
    # that second
    now = math.floor(time.time() if now is None else now)
    if value < now - tolerance:
        raise StaleTimestamp(
            f"{STANDARD_TIMESTAMP_HEADER} is {int(now - value)} s old, "
            f"more than the {tolerance} s tolerance"
        )
    if value > now + tolerance:
        raise StaleTimestamp(
            f"{STANDARD_TIMESTAMP_HEADER} is {int(value - now)} s in the future, "
            f"more than the {tolerance} s tolerance"
        )
    return value


def _parse_signature_header(header):
    """Split ``v1,<b64> v1a,<b64>`` into ``[(version, bytes)]`` plus a count of
    malformed entries (kept apart so the error can say which case it was)."""
    parsed = []
    malformed = 0
    for entry in header.split():
        version, sep, encoded = entry.partition(",")
        raw = _b64decode(encoded) if sep and encoded else None
        if not version or raw is None:
            malformed += 1
            continue
        parsed.append((version, raw))
    return parsed, malformed


def verify_standard(
    headers,
    body,
    secrets=(),
    public_keys=(),
    now=None,
    tolerance=STANDARD_TOLERANCE,
):
    """Verify a Standard Webhooks delivery and return its ``webhook-id``.

    The returned id is the idempotency key: it stays the same across the
    sender's retries. ``secrets`` are ``whsec_`` secrets checked against the
    ``v1`` entries, ``public_keys`` are ``whpk_`` keys checked against the
    ``v1a`` entries; the delivery is accepted when ANY entry matches ANY key,
    which is what makes rotation work on both sides. Unknown versions are
    ignored (a future ``v2`` must not break today's endpoint).
    """
    secrets = _as_sequence(secrets)
    public_keys = _as_sequence(public_keys)
    if not secrets and not public_keys:
        raise ValueError("verify_standard needs at least one secret or public key")
    raw_body = _as_bytes(body)
    msg_id = _required_header(headers, STANDARD_ID_HEADER)
    stamp = _required_header(headers, STANDARD_TIMESTAMP_HEADER)
    signature = _required_header(headers, STANDARD_SIGNATURE_HEADER)
    # a malformed key is skipped, not fatal: a channel whose public key was
    # pasted wrong still takes what its valid secret signs (and the reverse);
    # with no usable key at all, the ValueError says why
    hmac_keys, verify_keys, broken = [], [], []
    for load, keys, into in (
        (decode_standard_secret, secrets, hmac_keys),
        (load_ed25519_public_key, public_keys, verify_keys),
    ):
        for key in keys:
            try:
                into.append(load(key))
            except ValueError as err:
                broken.append(str(err))
    if not hmac_keys and not verify_keys:
        raise ValueError("; ".join(broken))

    check_timestamp(stamp, now=now, tolerance=tolerance)
    count = len(signature.split())
    if count > MAX_SIGNATURE_ENTRIES:
        raise InvalidSignature(
            f"{STANDARD_SIGNATURE_HEADER} header has {count} entries,"
            f" more than {MAX_SIGNATURE_ENTRIES}"
        )
    entries, malformed = _parse_signature_header(signature)
    if not entries:
        raise InvalidSignature(
            f"malformed {STANDARD_SIGNATURE_HEADER} header: expected "
            "space-separated 'v1,<base64>' or 'v1a,<base64>' entries"
        )
    content = standard_signed_content(msg_id, stamp, raw_body)
    if _standard_matches(entries, content, hmac_keys, verify_keys):
        return msg_id
    versions = sorted({version for version, _raw in entries})
    unusable = f"; {'; '.join(broken)}" if broken else ""
    raise InvalidSignature(
        f"no {STANDARD_SIGNATURE_HEADER} entry matches the configured "
        f"{'keys' if verify_keys else 'secrets'} (entries: {', '.join(versions)}"
        f"{f'; {malformed} malformed' if malformed else ''}){unusable}"
    )


def _standard_matches(entries, content, hmac_keys, verify_keys):
    """True when any entry verifies with any key.

    Every HMAC candidate is compared (no early exit on the first mismatch),
    so timing does not tell which secret came close.
    """
    from_hmac = [hmac.new(k, content, hashlib.sha256).digest() for k in hmac_keys]
    matched = False
    for version, raw in entries:
        if version == "v1":
            for expected in from_hmac:
                matched |= hmac.compare_digest(expected, raw)
        elif version == "v1a" and verify_keys:
            matched |= _ed25519_verifies(verify_keys, raw, content)
    return matched


def _ed25519_verifies(keys, signature, content):
    from cryptography.exceptions import InvalidSignature as _CryptoInvalid

    if len(signature) != 64:
        return False
    for key in keys:
        try:
            key.verify(signature, content)
            return True
        except _CryptoInvalid:
            continue
    return False


# -- body-only HMAC schemes (Shopify, WooCommerce) ---------------------------
def _hmac_b64(key, body):
    return _b64encode(hmac.new(key, _as_bytes(body), hashlib.sha256).digest())


def _verify_body_hmac(headers, body, keys, header_name):
    """Shared by Shopify and WooCommerce: base64(HMAC-SHA256(key, body))."""
    if not keys:
        raise ValueError(f"verifying {header_name} needs at least one secret")
    raw_body = _as_bytes(body)
    value = _required_header(headers, header_name)
    received = _b64decode(value)
    if received is None or len(received) != hashlib.sha256().digest_size:
        raise InvalidSignature(
            f"malformed {header_name} header: expected base64 of a SHA-256 HMAC"
        )
    matched = False
    for key in keys:
        expected = hmac.new(key, raw_body, hashlib.sha256).digest()
        matched |= hmac.compare_digest(expected, received)
    if not matched:
        raise InvalidSignature(
            f"{header_name} does not match the body with any configured secret"
        )


def _secret_bytes(secret):
    return bytes(secret) if isinstance(secret, (bytes, bytearray)) else secret.encode()


def sign_shopify(secret, body):
    """Return the ``X-Shopify-Hmac-Sha256`` header for a body (for simulators)."""
    return {SHOPIFY_HMAC_HEADER: _hmac_b64(_secret_bytes(secret), body)}


def verify_shopify(headers, body, secrets):
    """Verify ``X-Shopify-Hmac-Sha256`` = base64(HMAC-SHA256(secret, raw body)).

    ``secrets`` holds the current client secret and, after a rotation, the
    previous one: Shopify may take up to an hour to sign with the new one.
    Shopify signs no timestamp, so replays are stopped by deduplicating on
    ``X-Shopify-Event-Id`` (and a refund by its own id), not here; and the
    trigger time, not signed either, is bounded by the body's own time
    (see ``adapters.shopify._event_time``).
    """
    keys = [_secret_bytes(s) for s in _as_sequence(secrets)]
    _verify_body_hmac(headers, body, keys, SHOPIFY_HMAC_HEADER)


# WordPress's wp_specialchars_decode(..., ENT_QUOTES): first zero-padded
# numeric entities are normalised, then a single strtr() pass (longest key
# first, replaced text never re-scanned) turns entities into characters.
_WP_PREG = (
    (re.compile(r"&#0*39;"), "&#039;"),
    (re.compile(r"&#x0*27;", re.IGNORECASE), "&#x27;"),
    (re.compile(r"&#0*34;"), "&#034;"),
    (re.compile(r"&#x0*22;", re.IGNORECASE), "&#x22;"),
    (re.compile(r"&#0*60;"), "&#060;"),
    (re.compile(r"&#0*62;"), "&#062;"),
    (re.compile(r"&#0*38;"), "&#038;"),
    (re.compile(r"&#x0*26;", re.IGNORECASE), "&#x26;"),
)
_WP_TRANSLATION = {
    "&#039;": "'",
    "&#x27;": "'",
    "&quot;": '"',
    "&#034;": '"',
    "&#x22;": '"',
    "&lt;": "<",
    "&#060;": "<",
    "&gt;": ">",
    "&#062;": ">",
    "&amp;": "&",
    "&#038;": "&",
    "&#x26;": "&",
}
_WP_STRTR = re.compile(
    "|".join(re.escape(k) for k in sorted(_WP_TRANSLATION, key=len, reverse=True))
)


def wp_specialchars_decode(text):
    """Mirror WordPress's ``wp_specialchars_decode($text, ENT_QUOTES)``.

    WooCommerce stores the webhook secret HTML-escaped and un-escapes it with
    this function before signing, so a secret typed as ``a&b`` signs with
    ``a&b`` even though ``a&amp;b`` is what the database (and an export) holds.
    Doing exactly the same here lets either form be configured.
    """
    if "&" not in text:
        return text
    for pattern, replacement in _WP_PREG:
        text = pattern.sub(replacement, text)
    return _WP_STRTR.sub(lambda m: _WP_TRANSLATION[m.group(0)], text)


def _woocommerce_key(secret):
    if isinstance(secret, (bytes, bytearray)):
        secret = bytes(secret).decode("utf-8")
    return wp_specialchars_decode(secret).encode("utf-8")


def sign_woocommerce(secret, body):
    """Return the ``X-WC-Webhook-Signature`` header for a body (for simulators)."""
    return {WOOCOMMERCE_SIGNATURE_HEADER: _hmac_b64(_woocommerce_key(secret), body)}


def verify_woocommerce(headers, body, secrets):
    """Verify ``X-WC-Webhook-Signature`` = base64(HMAC-SHA256(secret, raw body)).

    The unsigned ``webhook_id=<id>`` ping WooCommerce sends when a webhook is
    saved fails here with :class:`MissingSignature`; answering it is the
    controller's decision, made explicitly, never a skipped check.
    """
    keys = [_woocommerce_key(s) for s in _as_sequence(secrets)]
    _verify_body_hmac(headers, body, keys, WOOCOMMERCE_SIGNATURE_HEADER)
