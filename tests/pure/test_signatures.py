"""Webhook signature schemes: known answers, every rejection reason, rotation
and interoperability with the Standard Webhooks reference library.

The known-answer literals were computed outside this code: the HMAC ones with
``openssl dgst -sha256 -hmac`` (and, for Standard Webhooks, cross-checked with
the ``standardwebhooks`` library), the Ed25519 one with ``openssl pkeyutl
-sign`` on the RFC 8032 test 1 key.
"""

import base64
import json
import time

import pytest

from lib.adapters import ChannelConfig, get_adapter_class
from lib.signatures import (
    MAX_SIGNATURE_ENTRIES,
    Headers,
    InvalidSignature,
    MissingSignature,
    SignatureError,
    StaleTimestamp,
    decode_standard_secret,
    ed25519_public_key_of,
    generate_ed25519_keypair,
    generate_standard_secret,
    get_header,
    load_ed25519_private_key,
    load_ed25519_public_key,
    sign_shopify,
    sign_standard,
    sign_woocommerce,
    verify_shopify,
    verify_standard,
    verify_woocommerce,
    wp_specialchars_decode,
)

# -- Standard Webhooks known answer ------------------------------------------
SW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SW_MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SW_TS = 1614265330
SW_BODY = b'{"test": 2432232314}'
SW_V1 = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
# RFC 8032 section 7.1, test 1: seed and public key
RFC_SEED_HEX = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
RFC_PUBLIC_HEX = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
SW_PRIVATE = "whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A="
SW_PUBLIC = "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
SW_V1A = (
    "v1a,fldxM4gAKugP6nnt1hdz3sgGfZ6d99nzrMFnZOELIxbzEHoVmAb2AD"
    "pkJK7zgPePmPsle0zV9jSeGlHFG2NVAw=="
)
OTHER_SECRET = "whsec_" + base64.b64encode(b"another-secret-of-32-bytes-long!").decode()

# -- Shopify / WooCommerce known answers -------------------------------------
SHOPIFY_SECRET = "hush-shopify-secret"
SHOPIFY_BODY = b'{"id":820982911946154508,"inventory_item_id":808950810,"available":5}'
SHOPIFY_HMAC = "+RjIDaJ5EhuPWLHGC1O+M4hmSfelqr4DEeD15FRBDWA="
# as WooCommerce stores it (HTML-escaped); the key actually used is the decoded
WC_SECRET_STORED = "wc&amp;secret&#039;&lt;x&gt;&quot;"
WC_SECRET_DECODED = "wc&secret'<x>\""
WC_BODY = b'{"id":71,"stock_quantity":4}'
WC_SIGNATURE = "Yz8cG6Zw4A6Ptx8dBSfnzjCWgleXnJonAS3tZh8jwM0="


def sw_headers(**overrides):
    headers = {
        "webhook-id": SW_MSG_ID,
        "webhook-timestamp": str(SW_TS),
        "webhook-signature": SW_V1,
    }
    headers.update(overrides)
    return {k: v for k, v in headers.items() if v is not None}


# ============================================================================
# Standard Webhooks
# ============================================================================
def test_standard_v1_known_answer():
    headers = sign_standard(SW_SECRET, SW_MSG_ID, SW_TS, SW_BODY)
    assert headers == {
        "webhook-id": SW_MSG_ID,
        "webhook-timestamp": "1614265330",
        "webhook-signature": SW_V1,
    }
    assert verify_standard(headers, SW_BODY, [SW_SECRET], now=SW_TS) == SW_MSG_ID


def test_standard_v1a_known_answer_with_rfc8032_key():
    assert ed25519_public_key_of(SW_PRIVATE) == SW_PUBLIC
    public = base64.b64decode(SW_PUBLIC.removeprefix("whpk_"))
    assert public.hex() == RFC_PUBLIC_HEX
    headers = sign_standard(None, SW_MSG_ID, SW_TS, SW_BODY, private_key=SW_PRIVATE)
    assert headers["webhook-signature"] == SW_V1A
    assert verify_standard(headers, SW_BODY, public_keys=[SW_PUBLIC], now=SW_TS) == (
        SW_MSG_ID
    )


def test_standard_signs_v1_and_v1a_together():
    headers = sign_standard(SW_SECRET, SW_MSG_ID, SW_TS, SW_BODY, SW_PRIVATE)
    assert headers["webhook-signature"] == f"{SW_V1} {SW_V1A}"


def test_standard_private_key_seed_and_64_byte_forms_sign_alike():
    seed = bytes.fromhex(RFC_SEED_HEX)
    long_form = (
        "whsk_" + base64.b64encode(seed + bytes.fromhex(RFC_PUBLIC_HEX)).decode()
    )
    for key in (SW_PRIVATE, long_form, seed):
        headers = sign_standard(None, SW_MSG_ID, SW_TS, SW_BODY, private_key=key)
        assert headers["webhook-signature"] == SW_V1A


@pytest.mark.parametrize(
    "header", ["webhook-id", "webhook-timestamp", "webhook-signature"]
)
@pytest.mark.parametrize("value", [None, "", "   "])
def test_standard_missing_or_empty_header(header, value):
    headers = sw_headers(**{header: value})
    with pytest.raises(MissingSignature, match=header):
        verify_standard(headers, SW_BODY, [SW_SECRET], now=SW_TS)


def test_standard_no_headers_at_all():
    with pytest.raises(MissingSignature):
        verify_standard({}, SW_BODY, [SW_SECRET], now=SW_TS)
    with pytest.raises(MissingSignature):
        verify_standard(None, SW_BODY, [SW_SECRET], now=SW_TS)


def test_standard_wrong_signature():
    forged = "v1," + base64.b64encode(b"\x00" * 32).decode()
    with pytest.raises(InvalidSignature, match="no webhook-signature entry matches"):
        verify_standard(
            sw_headers(**{"webhook-signature": forged}), SW_BODY, [SW_SECRET], now=SW_TS
        )


def test_standard_tampered_body():
    tampered = SW_BODY.replace(b"2432232314", b"2432232315")
    with pytest.raises(InvalidSignature):
        verify_standard(sw_headers(), tampered, [SW_SECRET], now=SW_TS)
    # one extra space is tampering too: that is why raw bytes are verified
    with pytest.raises(InvalidSignature):
        verify_standard(sw_headers(), SW_BODY + b" ", [SW_SECRET], now=SW_TS)


def test_standard_tampered_id_or_timestamp():
    with pytest.raises(InvalidSignature):
        verify_standard(
            sw_headers(**{"webhook-id": "msg_other"}), SW_BODY, [SW_SECRET], now=SW_TS
        )
    with pytest.raises(InvalidSignature):
        verify_standard(
            sw_headers(**{"webhook-timestamp": str(SW_TS + 1)}),
            SW_BODY,
            [SW_SECRET],
            now=SW_TS,
        )


def test_standard_wrong_secret():
    with pytest.raises(InvalidSignature):
        verify_standard(sw_headers(), SW_BODY, [OTHER_SECRET], now=SW_TS)


def test_standard_stale_timestamp_in_the_past():
    with pytest.raises(StaleTimestamp, match="301 s old"):
        verify_standard(sw_headers(), SW_BODY, [SW_SECRET], now=SW_TS + 301)
    # the edge of the window is still accepted
    assert verify_standard(sw_headers(), SW_BODY, [SW_SECRET], now=SW_TS + 300)


def test_standard_window_counts_whole_seconds_as_the_reference():
    """Timestamps are whole seconds, and so is the clock they are compared
    with (as the JavaScript reference floors it): a timestamp exactly the
    tolerance old is accepted at any fraction of that second, one a second
    older is refused, on both sides of the window alike."""
    for fraction in (0.0, 0.3, 0.999):
        assert verify_standard(
            sw_headers(), SW_BODY, [SW_SECRET], now=SW_TS + 300 + fraction
        )
        assert verify_standard(
            sw_headers(), SW_BODY, [SW_SECRET], now=SW_TS - 300 + fraction
        )
        with pytest.raises(StaleTimestamp):
            verify_standard(
                sw_headers(), SW_BODY, [SW_SECRET], now=SW_TS + 301 + fraction
            )


def test_standard_timestamp_in_the_future():
    with pytest.raises(StaleTimestamp, match="301 s in the future"):
        verify_standard(sw_headers(), SW_BODY, [SW_SECRET], now=SW_TS - 301)
    assert verify_standard(sw_headers(), SW_BODY, [SW_SECRET], now=SW_TS - 300)


def test_standard_tolerance_is_configurable():
    with pytest.raises(StaleTimestamp):
        verify_standard(
            sw_headers(), SW_BODY, [SW_SECRET], now=SW_TS + 11, tolerance=10
        )
    assert verify_standard(
        sw_headers(), SW_BODY, [SW_SECRET], now=SW_TS + 3000, tolerance=3600
    )


def test_standard_default_clock_is_read_at_call_time():
    now = int(time.time())
    headers = sign_standard(SW_SECRET, SW_MSG_ID, now, SW_BODY)
    assert verify_standard(headers, SW_BODY, [SW_SECRET]) == SW_MSG_ID
    # the 2021 known-answer timestamp is stale against the real clock
    with pytest.raises(StaleTimestamp):
        verify_standard(sw_headers(), SW_BODY, [SW_SECRET])


@pytest.mark.parametrize(
    "signature", ["garbage", "v1", "v1,", ",abc", "v1,***not-base64***", "v1:abc="]
)
def test_standard_malformed_signature_header(signature):
    with pytest.raises(InvalidSignature, match="malformed webhook-signature"):
        verify_standard(
            sw_headers(**{"webhook-signature": signature}),
            SW_BODY,
            [SW_SECRET],
            now=SW_TS,
        )


@pytest.mark.parametrize(
    "stamp", ["abc", "1614265330.0", "-1614265330", "1e9", "1" * 13]
)
def test_standard_malformed_timestamp(stamp):
    with pytest.raises(InvalidSignature, match="malformed webhook-timestamp"):
        verify_standard(
            sw_headers(**{"webhook-timestamp": stamp}), SW_BODY, [SW_SECRET], now=SW_TS
        )


def test_standard_several_signatures_in_one_header():
    bogus = "v1," + base64.b64encode(b"\x01" * 32).decode()
    for signature in (
        f"{bogus} {SW_V1}",  # a stale entry before the good one
        f"{SW_V1} {bogus}",
        f"v2,{base64.b64encode(b'future').decode()} {SW_V1}",  # unknown version
        f"garbage {SW_V1}",  # one malformed entry does not hide a good one
        f"{SW_V1A} {SW_V1}",  # v1a present but no public key configured
    ):
        headers = sw_headers(**{"webhook-signature": signature})
        assert verify_standard(headers, SW_BODY, [SW_SECRET], now=SW_TS) == SW_MSG_ID


def test_standard_signature_entries_are_capped():
    """A header of many ``v1a`` entries would cost an Ed25519 verification
    each: past the cap the delivery is refused before any is checked."""
    bogus = "v1a," + base64.b64encode(b"\x01" * 64).decode()
    within = " ".join([bogus] * (MAX_SIGNATURE_ENTRIES - 1) + [SW_V1A])
    headers = sw_headers(**{"webhook-signature": within})
    assert verify_standard(headers, SW_BODY, public_keys=[SW_PUBLIC], now=SW_TS)
    over = " ".join([bogus] * MAX_SIGNATURE_ENTRIES + [SW_V1A])
    with pytest.raises(InvalidSignature, match="entries, more than"):
        verify_standard(
            sw_headers(**{"webhook-signature": over}),
            SW_BODY,
            public_keys=[SW_PUBLIC],
            now=SW_TS,
        )


def test_standard_v1a_checked_only_against_public_keys():
    both = sw_headers(**{"webhook-signature": f"{SW_V1} {SW_V1A}"})
    assert verify_standard(both, SW_BODY, public_keys=[SW_PUBLIC], now=SW_TS)
    only_v1 = sw_headers()
    with pytest.raises(InvalidSignature, match="keys"):
        verify_standard(only_v1, SW_BODY, public_keys=[SW_PUBLIC], now=SW_TS)
    only_v1a = sw_headers(**{"webhook-signature": SW_V1A})
    with pytest.raises(InvalidSignature):
        verify_standard(only_v1a, SW_BODY, [SW_SECRET], now=SW_TS)


def test_standard_v1a_wrong_key_and_tampered_body():
    _other_private, other_public = generate_ed25519_keypair()
    headers = sw_headers(**{"webhook-signature": SW_V1A})
    with pytest.raises(InvalidSignature):
        verify_standard(headers, SW_BODY, public_keys=[other_public], now=SW_TS)
    with pytest.raises(InvalidSignature):
        verify_standard(headers, SW_BODY + b" ", public_keys=[SW_PUBLIC], now=SW_TS)
    # rotation of public keys: any configured key may match
    assert verify_standard(
        headers, SW_BODY, public_keys=[other_public, SW_PUBLIC], now=SW_TS
    )


def test_standard_rotation_previous_secret_accepted():
    new = generate_standard_secret()
    old_signed = sign_standard(SW_SECRET, SW_MSG_ID, SW_TS, SW_BODY)
    assert verify_standard(old_signed, SW_BODY, [new, SW_SECRET], now=SW_TS)
    with pytest.raises(InvalidSignature):
        verify_standard(old_signed, SW_BODY, [new], now=SW_TS)
    # the sender signs with both during rotation: a receiver on either key passes
    both = sign_standard([new, SW_SECRET], SW_MSG_ID, SW_TS, SW_BODY)
    assert len(both["webhook-signature"].split()) == 2
    assert verify_standard(both, SW_BODY, [SW_SECRET], now=SW_TS)
    assert verify_standard(both, SW_BODY, [new], now=SW_TS)


def test_standard_header_lookup_is_case_insensitive():
    upper = {k.upper(): v for k, v in sw_headers().items()}
    assert verify_standard(upper, SW_BODY, [SW_SECRET], now=SW_TS) == SW_MSG_ID
    pairs = [(k.title(), v) for k, v in sw_headers().items()]
    assert verify_standard(pairs, SW_BODY, [SW_SECRET], now=SW_TS) == SW_MSG_ID
    assert get_header({"Webhook-Id": "x"}, "WEBHOOK-ID") == "x"
    assert get_header({"other": "x"}, "webhook-id") is None


def test_headers_from_a_wsgi_environ_are_the_request_headers():
    """The route reads them from the WSGI environ (PEP 3333), as werkzeug
    lists them: ``HTTP_*`` keys and the two CGI ones, an empty content type
    left out, nothing else of the environ."""
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/stock_channel_sync/webhook/x",
        "SERVER_NAME": "shop",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": "",
        "HTTP_CONTENT_TYPE": "text/plain",
        "HTTP_WEBHOOK_ID": "msg_1",
        "HTTP_WEBHOOK_SIGNATURE": "v1,abc v1,def",
        "HTTP_X_SHOPIFY_HMAC_SHA256": "c2ln",
        "HTTP_X_LATIN": "caf\xe9",
        "wsgi.input": object(),
    }
    assert Headers.from_wsgi_environ(environ) == {
        "content-type": "application/json",
        "webhook-id": "msg_1",
        "webhook-signature": "v1,abc v1,def",
        "x-shopify-hmac-sha256": "c2ln",
        "x-latin": "caf\xe9",
    }
    verified = Headers.from_wsgi_environ(
        {"HTTP_" + k.upper().replace("-", "_"): v for k, v in sw_headers().items()}
    )
    assert verify_standard(verified, SW_BODY, [SW_SECRET], now=SW_TS) == SW_MSG_ID


def test_headers_lowered_once_keep_the_first_of_a_repeated_name():
    """The webhook route hands ``Headers`` over: one lookup each, and the
    value the walk over the raw headers would find."""
    raw = [
        ("Webhook-Id", "first"),
        ("WEBHOOK-ID", "second"),
        (b"X-Raw", b"bytes"),
        ("Webhook-Signature", ""),
    ]
    headers = Headers(raw)
    for name in ("webhook-id", "X-Raw", "webhook-signature", "absent"):
        assert get_header(headers, name) == get_header(raw, name)
    assert get_header(headers, "WEBHOOK-ID") == "first"
    assert get_header(headers, "x-raw") == "bytes"
    assert get_header(headers, "Webhook-Signature") == ""
    assert get_header(headers, "absent") is None
    upper = Headers({k.upper(): v for k, v in sw_headers().items()})
    assert verify_standard(upper, SW_BODY, [SW_SECRET], now=SW_TS) == SW_MSG_ID


def test_standard_body_as_text_is_encoded_utf8():
    assert verify_standard(sw_headers(), SW_BODY.decode(), [SW_SECRET], now=SW_TS)


def test_standard_parsed_body_is_refused():
    with pytest.raises(TypeError, match="raw bytes"):
        verify_standard(sw_headers(), json.loads(SW_BODY), [SW_SECRET], now=SW_TS)


def test_standard_never_skips_without_a_key():
    with pytest.raises(ValueError, match="at least one"):
        verify_standard(sw_headers(), SW_BODY, [], now=SW_TS)
    with pytest.raises(ValueError, match="at least one"):
        verify_standard(sw_headers(), SW_BODY, ["", None], now=SW_TS)
    with pytest.raises(ValueError, match="secret or a whsk_"):
        sign_standard(None, SW_MSG_ID, SW_TS, SW_BODY)


def test_standard_single_secret_string_is_not_iterated():
    # a bare string is one secret, not a list of one-letter secrets
    assert verify_standard(sw_headers(), SW_BODY, SW_SECRET, now=SW_TS) == SW_MSG_ID


@pytest.mark.parametrize("msg_id", ["", "has.dot", "has space", "x" * 256, "é"])
def test_standard_sign_refuses_ambiguous_message_ids(msg_id):
    with pytest.raises(ValueError, match="webhook-id"):
        sign_standard(SW_SECRET, msg_id, SW_TS, SW_BODY)


def test_standard_secret_and_key_generation():
    secret = generate_standard_secret()
    assert secret.startswith("whsec_")
    assert len(decode_standard_secret(secret)) == 32
    assert decode_standard_secret(secret) != decode_standard_secret(
        generate_standard_secret()
    )
    with pytest.raises(ValueError):
        generate_standard_secret(8)
    private, public = generate_ed25519_keypair()
    assert private.startswith("whsk_") and public.startswith("whpk_")
    assert len(base64.b64decode(private[5:])) == 64
    assert len(base64.b64decode(public[5:])) == 32
    assert ed25519_public_key_of(private) == public
    headers = sign_standard(None, "msg_1", SW_TS, b"{}", private_key=private)
    assert verify_standard(headers, b"{}", public_keys=[public], now=SW_TS) == "msg_1"


def test_standard_secret_decoding():
    raw = decode_standard_secret(SW_SECRET)
    assert raw == base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    # like the reference library: prefix optional, raw bytes pass through
    assert decode_standard_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") == raw
    assert decode_standard_secret(raw) == raw
    # unpadded base64 is tolerated
    assert decode_standard_secret("whsec_" + base64.b64encode(b"x" * 25).decode()[:-2])
    for bad in ("whsec_***", "whsec_", b""):
        with pytest.raises(ValueError):
            decode_standard_secret(bad)


def test_ed25519_key_loading_errors():
    seed = bytes.fromhex(RFC_SEED_HEX)
    wrong_public = bytes(32)
    with pytest.raises(ValueError, match="does not match"):
        load_ed25519_private_key(seed + wrong_public)
    with pytest.raises(ValueError, match="32 or 64"):
        load_ed25519_private_key("whsk_" + base64.b64encode(b"k" * 31).decode())
    with pytest.raises(ValueError, match="32 bytes"):
        load_ed25519_public_key("whpk_" + base64.b64encode(b"k" * 33).decode())
    with pytest.raises(ValueError, match="base64"):
        load_ed25519_public_key("whpk_***")


#: encodings of points of small order (libsodium's list), with the sign bit
#: set too where that still decodes
SMALL_ORDER_KEYS = [
    bytes(32),
    b"\x01" + bytes(31),
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85"),
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa"),
    b"\xec" + b"\xff" * 30 + b"\x7f",
    bytes(31) + b"\x80",
]


@pytest.mark.parametrize("raw", SMALL_ORDER_KEYS + [b"\xed" + b"\xff" * 30 + b"\x7f"])
def test_ed25519_key_of_small_order_is_refused(raw):
    """With the identity point as the channel's key, a signature made of the
    identity and a zero scalar verifies for any body (OpenSSL does not
    refuse such keys): the key is refused when loaded, so a forged ``v1a``
    delivery is never accepted."""
    key = "whpk_" + base64.b64encode(raw).decode()
    with pytest.raises(ValueError, match="not usable"):
        load_ed25519_public_key(key)
    forged = "v1a," + base64.b64encode(b"\x01" + bytes(63)).decode()
    headers = {
        "webhook-id": "msg_forged",
        "webhook-timestamp": str(SW_TS),
        "webhook-signature": forged,
    }
    with pytest.raises((ValueError, InvalidSignature)):
        verify_standard(headers, SW_BODY, public_keys=[key], now=SW_TS)


def test_ed25519_generated_keys_are_usable():
    for _ in range(50):
        private, public = generate_ed25519_keypair()
        assert load_ed25519_public_key(public)
        headers = sign_standard(None, "msg_ok", SW_TS, SW_BODY, private_key=private)
        assert verify_standard(headers, SW_BODY, public_keys=[public], now=SW_TS)


# -- interop with the reference library --------------------------------------
def test_interop_reference_library_verifies_what_we_sign():
    standardwebhooks = pytest.importorskip("standardwebhooks")
    body = b'{"type":"inventory.updated","data":{"sku":"A","quantity":3}}'
    secret = generate_standard_secret()
    headers = sign_standard(secret, "msg_interop1", int(time.time()), body)
    parsed = standardwebhooks.Webhook(secret).verify(body, headers)
    assert parsed["data"]["sku"] == "A"
    # and it refuses when the body differs, so the check above means something
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(body + b" ", headers)


def test_interop_we_verify_what_the_reference_library_signs():
    standardwebhooks = pytest.importorskip("standardwebhooks")
    from datetime import datetime, timezone

    body = '{"type":"order.created","data":{"id":"1001"}}'
    secret = generate_standard_secret()
    now = int(time.time())
    signature = standardwebhooks.Webhook(secret).sign(
        "msg_interop2", datetime.fromtimestamp(now, tz=timezone.utc), body
    )
    headers = {
        "webhook-id": "msg_interop2",
        "webhook-timestamp": str(now),
        "webhook-signature": signature,
    }
    assert verify_standard(headers, body.encode(), [secret], now=now) == "msg_interop2"
    with pytest.raises(InvalidSignature):
        verify_standard(headers, body.encode(), [generate_standard_secret()], now=now)


def test_svix_named_headers_are_the_same_delivery():
    """Svix sends the three headers as ``svix-id``, ``svix-timestamp`` and
    ``svix-signature``: same content, same signature, same key."""
    body = b'{"type":"order.created","data":{"id":"1001","lines":[]}}'
    secret = generate_standard_secret()
    now = int(time.time())
    signed = sign_standard(secret, "msg_svix1", now, body)
    svix = {name.replace("webhook-", "svix-"): value for name, value in signed.items()}
    assert verify_standard(svix, body, [secret], now=now) == "msg_svix1"
    with pytest.raises(InvalidSignature):
        verify_standard(svix, body, [generate_standard_secret()], now=now)
    with pytest.raises(StaleTimestamp):
        verify_standard(svix, body, [secret], now=now + 3600)
    # the webhook- name wins when both are sent
    both = {**svix, "webhook-id": "msg_other"}
    with pytest.raises(InvalidSignature):
        verify_standard(both, body, [secret], now=now)
    adapter = get_adapter_class("generic")(ChannelConfig("generic"))
    events = adapter.parse_webhook("order.created", body, svix)
    assert events[0].idempotency_key == "msg_svix1"


def test_interop_reference_library_known_answer():
    standardwebhooks = pytest.importorskip("standardwebhooks")
    from datetime import datetime, timezone

    ours = sign_standard(SW_SECRET, SW_MSG_ID, SW_TS, SW_BODY)["webhook-signature"]
    theirs = standardwebhooks.Webhook(SW_SECRET).sign(
        SW_MSG_ID, datetime.fromtimestamp(SW_TS, tz=timezone.utc), SW_BODY.decode()
    )
    assert ours == theirs == SW_V1


# ============================================================================
# Shopify
# ============================================================================
def test_shopify_known_answer():
    assert sign_shopify(SHOPIFY_SECRET, SHOPIFY_BODY) == {
        "X-Shopify-Hmac-Sha256": SHOPIFY_HMAC
    }
    verify_shopify(
        {"X-Shopify-Hmac-Sha256": SHOPIFY_HMAC}, SHOPIFY_BODY, [SHOPIFY_SECRET]
    )


def test_shopify_header_is_case_insensitive():
    verify_shopify(
        {"x-shopify-hmac-sha256": SHOPIFY_HMAC}, SHOPIFY_BODY, [SHOPIFY_SECRET]
    )


@pytest.mark.parametrize("headers", [{}, {"X-Shopify-Hmac-Sha256": ""}, None])
def test_shopify_missing_header(headers):
    with pytest.raises(MissingSignature, match="X-Shopify-Hmac-Sha256"):
        verify_shopify(headers, SHOPIFY_BODY, [SHOPIFY_SECRET])


def test_shopify_wrong_secret_and_tampered_body():
    headers = {"X-Shopify-Hmac-Sha256": SHOPIFY_HMAC}
    with pytest.raises(InvalidSignature):
        verify_shopify(headers, SHOPIFY_BODY, ["not-the-secret"])
    with pytest.raises(InvalidSignature):
        verify_shopify(headers, SHOPIFY_BODY.replace(b":5", b":6"), [SHOPIFY_SECRET])


@pytest.mark.parametrize("value", ["***", base64.b64encode(b"short").decode()])
def test_shopify_malformed_header(value):
    with pytest.raises(InvalidSignature, match="malformed"):
        verify_shopify({"X-Shopify-Hmac-Sha256": value}, SHOPIFY_BODY, [SHOPIFY_SECRET])


def test_shopify_rotation_previous_secret_accepted():
    headers = sign_shopify("old-secret", SHOPIFY_BODY)
    verify_shopify(headers, SHOPIFY_BODY, ["new-secret", "old-secret"])
    with pytest.raises(InvalidSignature):
        verify_shopify(headers, SHOPIFY_BODY, ["new-secret"])


def test_shopify_needs_a_secret():
    with pytest.raises(ValueError):
        verify_shopify({"X-Shopify-Hmac-Sha256": SHOPIFY_HMAC}, SHOPIFY_BODY, [])


# ============================================================================
# WooCommerce
# ============================================================================
def test_woocommerce_known_answer_with_escaped_secret():
    assert sign_woocommerce(WC_SECRET_STORED, WC_BODY) == {
        "X-WC-Webhook-Signature": WC_SIGNATURE
    }
    headers = {"X-WC-Webhook-Signature": WC_SIGNATURE}
    # the stored (escaped) and the typed (plain) secret are the same key
    verify_woocommerce(headers, WC_BODY, [WC_SECRET_STORED])
    verify_woocommerce(headers, WC_BODY, [WC_SECRET_DECODED])


@pytest.mark.parametrize(
    ("stored", "decoded"),
    [
        ("plain", "plain"),
        ("a&amp;b", "a&b"),
        ("&lt;&gt;&quot;&#039;", "<>\"'"),
        ("&#39;&#0039;&#x27;&#X0027;", "''''"),
        ("&#034;&#x22;&#060;&#062;&#038;&#x26;", '""<>&&'),
        ("&amp;lt;", "&lt;"),  # one pass only, as PHP's strtr
        ("&copy; &nbsp;", "&copy; &nbsp;"),  # not special chars: left alone
    ],
)
def test_wp_specialchars_decode(stored, decoded):
    assert wp_specialchars_decode(stored) == decoded


def test_woocommerce_unsigned_ping_is_missing_signature():
    with pytest.raises(MissingSignature, match="X-WC-Webhook-Signature"):
        verify_woocommerce(
            {"Content-Type": "application/x-www-form-urlencoded"},
            b"webhook_id=12",
            [WC_SECRET_STORED],
        )


def test_woocommerce_rejections():
    headers = {"x-wc-webhook-signature": WC_SIGNATURE}
    with pytest.raises(InvalidSignature):
        verify_woocommerce(headers, WC_BODY, ["wrong"])
    with pytest.raises(InvalidSignature):
        verify_woocommerce(headers, WC_BODY.replace(b"4", b"5"), [WC_SECRET_STORED])
    with pytest.raises(InvalidSignature, match="malformed"):
        verify_woocommerce(
            {"X-WC-Webhook-Signature": "not base64!"}, WC_BODY, [WC_SECRET_STORED]
        )
    with pytest.raises(MissingSignature):
        verify_woocommerce({"X-WC-Webhook-Signature": " "}, WC_BODY, [WC_SECRET_STORED])


def test_woocommerce_rotation_previous_secret_accepted():
    headers = sign_woocommerce("old", WC_BODY)
    verify_woocommerce(headers, WC_BODY, ["new", "old"])
    with pytest.raises(InvalidSignature):
        verify_woocommerce(headers, WC_BODY, ["new"])


def test_every_rejection_is_a_signature_error():
    for cls in (MissingSignature, InvalidSignature, StaleTimestamp):
        assert issubclass(cls, SignatureError)


def test_standard_malformed_key_does_not_hide_a_valid_one():
    """A public key pasted wrong does not refuse what the valid secret signs,
    nor a malformed secret what the valid key signs; with no usable key at
    all, verification cannot start (ValueError, a 401 at the route)."""
    headers = sw_headers()
    broken_key, broken_secret = "whpk_not-base64!!", "whsec_%%%"
    assert (
        verify_standard(
            headers, SW_BODY, [SW_SECRET], public_keys=[broken_key], now=SW_TS
        )
        == SW_MSG_ID
    )
    signed = sign_standard(None, SW_MSG_ID, SW_TS, SW_BODY, private_key=SW_PRIVATE)
    assert (
        verify_standard(
            signed, SW_BODY, [broken_secret], public_keys=[SW_PUBLIC], now=SW_TS
        )
        == SW_MSG_ID
    )
    with pytest.raises(ValueError, match="whpk_"):
        verify_standard(
            headers, SW_BODY, [broken_secret], public_keys=[broken_key], now=SW_TS
        )
    with pytest.raises(InvalidSignature):
        verify_standard(
            headers, SW_BODY, [OTHER_SECRET], public_keys=[broken_key], now=SW_TS
        )
