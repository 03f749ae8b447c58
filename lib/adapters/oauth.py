"""Adapters whose API takes a short-lived access token minted from a refresh token.

OAuth 2.0 ``grant_type=refresh_token`` as Amazon (Login with Amazon) and eBay
(user tokens) use it: the long-lived refresh token, the client id
(``config.api_key``) and secret (``config.api_secret``) are exchanged at
``token_url`` for an access token valid ``expires_in`` seconds. The token is
cached and renewed :data:`TOKEN_MARGIN` seconds (``extra["token_margin"]``)
before it ends, by the injectable clock; a call the channel refused because
of the token asks :meth:`RefreshTokenAdapter._access_token` with
``stale=token`` to renew it at once. ``config.access_token``, when set, is used
until the channel refuses it.

Each subclass sends the grant its own way (:meth:`_post_refresh_grant`) and
words its errors (:attr:`token_errors`); reading the answer is shared.
"""

import threading
import time

from .base import (
    AuthenticationError,
    ChannelAdapter,
    RetryableChannelError,
    raise_for_status,
)

#: renew the access token this many seconds before it expires
TOKEN_MARGIN = 60.0


class RefreshTokenAdapter(ChannelAdapter):
    """A channel adapter holding one cached OAuth access token (thread-safe)."""

    requires_https = True
    #: used when ``config.base_url`` / ``config.token_url`` are empty
    default_base_url = ""
    default_token_url = ""
    #: seconds a token lives when the token answer gives no ``expires_in``
    default_token_lifetime = 3600.0
    #: texts of the errors the exchange raises: ``missing`` (credentials not
    #: configured), ``refused`` (a 400/401 answer; followed by its ``error``
    #: and ``error_description``), ``failed`` (another error status) and
    #: ``no_token`` (a success without a token)
    token_errors = {
        "missing": "the token refresh needs the client id (api_key), the client "
        "secret (api_secret) and the refresh token",
        "refused": "the token refresh was refused",
        "failed": "the token endpoint failed",
        "no_token": "the token endpoint gave no token",
    }

    def __init__(self, config, session=None, clock=time.time, sleep=time.sleep):
        super().__init__(config, session=session, clock=clock)
        self.sleep = sleep
        extra = config.extra or {}
        self.base_url = (config.base_url or self.default_base_url).rstrip("/")
        self.token_url = config.token_url or self.default_token_url
        self.token_margin = float(extra.get("token_margin", TOKEN_MARGIN))
        self._token = config.access_token or ""
        # a token handed in without its expiry is used until the channel refuses it
        self._token_expires_at = float("inf") if self._token else 0.0
        self._token_lock = threading.Lock()
        #: token exchanges made, for tests and benchmarks
        self.token_refreshes = 0

    def renew_token(self):
        """Exchange the refresh token now, whatever the cached token (a check)."""
        with self._token_lock:
            self._refresh_token()

    def _access_token(self, stale=None):
        """The cached token, renewed when near its end or when ``stale`` was refused."""
        with self._token_lock:
            fresh = self.clock() < self._token_expires_at - self.token_margin
            if self._token and fresh and self._token != stale:
                return self._token
            self._refresh_token()
            return self._token

    def _post_refresh_grant(self):
        """Send the refresh-token grant to :attr:`token_url`; return the response."""
        raise NotImplementedError

    def _refresh_token(self):
        """Mint a new access token; the caller holds ``_token_lock``."""
        config = self.config
        if not (config.api_key and config.api_secret and config.refresh_token):
            raise AuthenticationError(self.token_errors["missing"])
        # a token the API URL could not use (not configured, or in clear)
        # is not minted: its credentials stay unsent
        self._check_url(self.base_url)
        response = self._post_refresh_grant()
        if response.status_code in (400, 401):
            try:
                body = response.json()
            except ValueError:
                body = {}
            raise AuthenticationError(
                f"{self.token_errors['refused']}: {body.get('error', '')} "
                f"{body.get('error_description', '')}".strip(),
                status=response.status_code,
                response_text=response.text,
            )
        raise_for_status(response, self.token_errors["failed"])
        try:
            body = response.json()
            token = body["access_token"]
            lifetime = float(body.get("expires_in") or self.default_token_lifetime)
        except (ValueError, KeyError, TypeError) as err:
            raise RetryableChannelError(self.token_errors["no_token"]) from err
        self._token = token
        self._token_expires_at = self.clock() + lifetime
        self.token_refreshes += 1
