"""What every adapter refuses before sending anything: an API URL that no
retry can make work, and credentials in clear over a network."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lib.adapters import get_adapter_class
from lib.adapters.base import (
    ChannelConfig,
    ChannelError,
    PermanentChannelError,
    StockUpdate,
)

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
        ("generic", {"base_url": "http://shop.example", "api_key": "key"}),
    ],
)
def test_credentials_never_go_in_clear_to_a_remote_host(channel_type, fields):
    subject = adapter(channel_type, **fields)
    with pytest.raises(PermanentChannelError, match="HTTPS"):
        subject.test_connection()
    assert subject.calls == 0


# -- redirects and URLs read two ways ----------------------------------------
class _Recorder(ThreadingHTTPServer):
    """A loopback server that records each request, and answers each with
    ``answer(handler)``: a status and headers."""

    daemon_threads = True

    def __init__(self, answer):
        self.seen = []
        self.answer = answer

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                self.server.seen.append(
                    (self.command, self.path, dict(self.headers), body)
                )
                status, headers = self.server.answer(self)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = _serve

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()


@pytest.fixture
def servers():
    started = []

    def start(answer):
        server = _Recorder(answer)
        started.append(server)
        return server

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def _everything_sent(server):
    return repr(server.seen)


@pytest.mark.parametrize(
    "status, for_good", [(301, True), (308, True), (302, False), (307, False)]
)
def test_a_redirect_is_not_followed_with_the_credentials(servers, status, for_good):
    """A channel (or anyone on its way) answering with a redirect would
    have the credentials sent on: Shopify's token header, and a 307's form
    body (an OAuth grant: client secret, refresh token), past the check
    of the configured URL. Not followed: an error naming where it points,
    without its query string; a move for good is the configuration's to
    change, a temporary one (a maintenance page) is tried again later."""
    elsewhere = servers(lambda handler: (200, {}))
    redirector = servers(
        lambda handler: (
            status,
            {"Location": elsewhere.url + "/x?consumer_secret=cs_x"},
        )
    )
    shopify = adapter("shopify", base_url=redirector.url)
    with pytest.raises(ChannelError, match="redirect") as caught:
        shopify.test_connection()
    assert caught.value.retryable is not for_good
    assert elsewhere.url + "/x" in str(caught.value)
    assert "cs_x" not in str(caught.value)
    ebay = adapter("ebay", base_url=redirector.url, token_url=redirector.url + "/token")
    with pytest.raises(ChannelError, match="redirect"):
        ebay.test_connection()
    assert len(redirector.seen) == 2
    assert redirector.seen[1][3]  # the grant went to the configured URL only
    assert elsewhere.seen == [], _everything_sent(elsewhere)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.2:9\\@127.0.0.1",
        "http://127.0.0.2:9\\@localhost/",
        "http://127.0.0.1 .evil.example",
        "http://127.0.0.1\t/",
        "http://127.0.0.1\n.evil.example",
    ],
)
@pytest.mark.parametrize("channel_type", ["shopify", "woocommerce", "generic"])
def test_an_url_read_two_ways_is_refused(channel_type, url):
    """urlsplit and urllib3 part a URL holding a backslash or whitespace
    differently: the host checked must be the host connected to."""
    subject = adapter(channel_type, base_url=url)
    with pytest.raises(PermanentChannelError) as caught:
        subject.test_connection()
    assert not caught.value.retryable
    assert subject.calls == 0


@pytest.mark.parametrize("api_key", ["", "key"])
def test_a_generic_shops_pushes_may_be_plain_http(api_key):
    """Its pushes carry a signature, never the secret: no credential to
    keep from the network (the shop's own choice of transport), whether
    or not its reads carry an API key."""
    subject = adapter("generic", base_url="http://shop.invalid", api_key=api_key)
    [result] = subject.set_quantities([StockUpdate("SKU-1", 3)])
    assert result.error is not None
    assert "HTTPS" not in str(result.error)
    assert subject.calls == 1
    if not api_key:
        with pytest.raises(ChannelError) as caught:
            subject.test_connection()
        assert "HTTPS" not in str(caught.value)


@pytest.mark.parametrize(
    "location", ["http://[::1", "http://exa\xffmple.com/", "http://"]
)
def test_a_redirect_to_nowhere_is_the_adapters_error(servers, location):
    """requests works out a redirect's next request even when it does not
    follow it: a Location it cannot parse must not escape as a ValueError
    (an unexpected error in the job) instead of the adapter's answer."""
    redirector = servers(lambda handler: (302, {"Location": location}))
    subject = adapter("generic", base_url=redirector.url)
    with pytest.raises(ChannelError, match="redirect"):
        subject.test_connection()


def test_a_domain_name_in_another_script_is_one_host():
    """urllib3 sends such a name in its ASCII form (IDNA): the same host,
    not a URL read two ways."""
    subject = adapter("generic", base_url="https://b\u00fccher.invalid/shop")
    with pytest.raises(ChannelError) as caught:
        subject.test_connection()
    assert "read two ways" not in str(caught.value)
    assert subject.calls == 1


def test_an_environment_proxy_never_gets_credentials_in_clear(servers, monkeypatch):
    """HTTP_PROXY in the server's environment would receive a loopback
    plain-HTTP call (the simulators, a local TLS sidecar), credentials and
    all: refused, unless NO_PROXY names the host."""
    proxy = servers(lambda handler: (200, {}))
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    for channel_type in ("shopify", "woocommerce", "ebay"):
        loopback = "http://127.0.0.1:9"
        subject = adapter(channel_type, base_url=loopback, token_url=loopback + "/t")
        with pytest.raises(PermanentChannelError, match="NO_PROXY"):
            subject.test_connection()
        assert subject.calls == 0
    assert proxy.seen == []
    # NO_PROXY names the host: sent to it, not to the proxy
    shop = servers(lambda handler: (200, {}))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    subject = adapter("generic", base_url=shop.url, api_key="key")
    with pytest.raises(ChannelError):
        subject.test_connection()
    assert len(shop.seen) == 1
    assert proxy.seen == []


def test_no_credentials_from_the_environments_netrc(servers, monkeypatch, tmp_path):
    """requests adds a .netrc entry's login to a call that has none of its
    own: a generic shop's push would carry them, over plain HTTP too."""
    shop = servers(lambda handler: (200, {}))
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    subject = adapter("generic", base_url=shop.url)
    subject.set_quantities([StockUpdate("SKU-1", 3)])
    assert shop.seen, "the push was sent"
    assert all("Authorization" not in headers for _m, _p, headers, _b in shop.seen)


@pytest.mark.parametrize(
    "url",
    [
        "https://stra\u00dfe.invalid/x",
        "https://shop.fu\u00dfball.invalid",
        "https://\u03c2a.invalid",
    ],
)
def test_hosts_are_compared_as_requests_encodes_them(url):
    """requests sends "straße" as IDNA 2008 does (xn--strae-oqa), not as the
    older codec ("strasse"): the URL is one host, not read two ways."""
    subject = adapter("generic", base_url=url)
    with pytest.raises(ChannelError) as caught:
        subject.test_connection()
    assert "read two ways" not in str(caught.value)


@pytest.mark.parametrize("url", ["http://[::1", "https://shop.example.com]/"])
def test_an_url_that_cannot_be_read_is_refused_for_good(url):
    for channel_type in ("generic", "shopify"):
        subject = adapter(channel_type, base_url=url, api_key="key")
        with pytest.raises(PermanentChannelError):
            subject.test_connection()
        assert subject.calls == 0


def test_a_temporary_redirect_without_location_is_retried(servers):
    redirector = servers(lambda handler: (302, {}))
    subject = adapter("generic", base_url=redirector.url)
    with pytest.raises(ChannelError) as caught:
        subject.test_connection()
    assert caught.value.retryable
