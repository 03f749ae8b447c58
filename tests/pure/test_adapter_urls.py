"""What every adapter refuses before sending anything: an API URL that no
retry can make work, and credentials in clear over a network."""

import pytest

from lib.adapters import get_adapter_class
from lib.adapters.base import ChannelConfig, PermanentChannelError

CREDENTIALS = {
    "shopify": {"access_token": "shpat_secret", "location_id": "1"},
    "amazon": {
        "api_key": "amzn1.application-oa2-client.x",
        "api_secret": "secret",
        "refresh_token": "Atzr|secret",
        "account_id": "A1SELLER",
        "location_id": "ATVPDKIKX0DER",
    },
    "ebay": {"api_key": "client", "api_secret": "secret", "refresh_token": "v^1.1"},
    "woocommerce": {"api_key": "ck_x", "api_secret": "cs_x"},
    "generic": {"signing_secret": "whsec_c2VjcmV0c2VjcmV0c2VjcmV0"},
}


def adapter(channel_type, **fields):
    config = ChannelConfig(channel_type, **{**CREDENTIALS[channel_type], **fields})
    return get_adapter_class(channel_type)(config)


@pytest.mark.parametrize("channel_type", sorted(CREDENTIALS))
def test_an_url_without_scheme_is_refused_for_good(channel_type):
    """ "shop.example.com" (no https://) is a configuration error: a retry
    cannot help, so it is no temporary failure retried for minutes."""
    subject = adapter(channel_type, base_url="shop.example.com")
    with pytest.raises(PermanentChannelError) as caught:
        subject.test_connection()
    assert not caught.value.retryable
    assert subject.calls == 0


def test_shopify_without_api_url_says_so():
    subject = adapter("shopify", base_url="")
    with pytest.raises(PermanentChannelError, match="API URL is not configured"):
        subject.test_connection()
    assert subject.calls == 0


@pytest.mark.parametrize(
    "channel_type, fields",
    [
        ("shopify", {"base_url": "http://shop.example"}),
        ("amazon", {"base_url": "http://sellingpartnerapi.example"}),
        ("amazon", {"token_url": "http://api.amazon.example/auth/o2/token"}),
        ("ebay", {"base_url": "http://api.ebay.example"}),
        ("ebay", {"token_url": "http://api.ebay.example/identity/v1/oauth2/token"}),
        ("woocommerce", {"base_url": "http://shop.example"}),
    ],
)
def test_credentials_never_go_in_clear_to_a_remote_host(channel_type, fields):
    subject = adapter(channel_type, **fields)
    with pytest.raises(PermanentChannelError, match="HTTPS"):
        subject.test_connection()
    assert subject.calls == 0
