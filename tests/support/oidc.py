"""A real OpenID Connect provider on loopback for the social-login tests: oidc-provider-mock
(a Flask app built on Authlib's server side) served by werkzeug in a thread.

Its users are made with ``PUT /users/{sub}`` and sign in by posting ``sub`` to the
authorization form. To test how the client treats a bad ID token, :meth:`OIDCProvider.tamper`
makes the provider itself change the claims of the next ID token it issues and sign it again
with its own key, so the token is genuinely the provider's, only wrong.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import flask
import httpx
import oidc_provider_mock
import werkzeug.serving
from joserfc import jwt
from joserfc.jwk import RSAKey


class OIDCProvider:
    """A running provider: ``issuer`` is its base URL."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self._tampering: dict[str, Any] = {}
        self._lock = threading.Lock()

    def add_user(self, sub: str, **claims: Any) -> None:
        """Create (or replace) a user the provider can sign in, with these claims."""
        response = httpx.put(f"{self.issuer}/users/{sub}", json=claims)
        response.raise_for_status()

    def tamper(self, **claims: Any) -> None:
        """Make the next ID token carry these claims (replacing the real ones)."""
        with self._lock:
            self._tampering = dict(claims)

    def consent(self, authorization_url: str, sub: str, *, action: str = "allow") -> str:
        """Sign in as ``sub`` on the provider's page (or deny): where it sends the browser."""
        response = httpx.post(authorization_url, data={"sub": sub, "action": action})
        assert response.status_code == 302, response.text
        return response.headers["location"]

    def _take_tampering(self) -> dict[str, Any]:
        with self._lock:
            claims, self._tampering = self._tampering, {}
        return claims

    def _rewrite(self, response: flask.Response) -> flask.Response:
        """After each request: mend the deny redirect, apply pending tampering."""
        if flask.request.path == "/oauth2/authorize" and response.status_code == 302:
            return _with_state(response)
        if flask.request.path != "/oauth2/token" or response.status_code != 200:
            return response
        claims = self._take_tampering()
        if not claims:
            return response
        body = json.loads(response.get_data())
        # The provider's own signing key: a joserfc key from oidc-provider-mock 0.4 (Python
        # 3.12 and later), an authlib one before.
        jwk = flask.g.oidc_provider_mock_storage.jwk
        key = jwk if isinstance(jwk, RSAKey) else RSAKey.import_key(jwk.as_dict(is_private=True))
        token = jwt.decode(body["id_token"], key)
        body["id_token"] = jwt.encode(dict(token.header), {**token.claims, **claims}, key)
        response.set_data(json.dumps(body))
        return response


def _with_state(response: flask.Response) -> flask.Response:
    """The mock drops ``state`` from the redirect of a denied consent; RFC 6749 §4.1.2.1
    requires it there (every real provider sends it), so it is put back."""
    location = response.headers["Location"]
    state = flask.request.args.get("state")
    parts = urlsplit(location)
    query = dict(parse_qsl(parts.query))
    if "error" in query and "state" not in query and state:
        query["state"] = state
        response.headers["Location"] = urlunsplit(parts._replace(query=urlencode(query)))
    return response


@contextmanager
def oidc_provider() -> Iterator[OIDCProvider]:
    """Run a provider on 127.0.0.1 (a free port) until the block ends."""
    app = oidc_provider_mock.app(require_nonce=True)
    server = werkzeug.serving.make_server("127.0.0.1", 0, app, threaded=True)
    provider = OIDCProvider(f"http://127.0.0.1:{server.server_port}")
    app.after_request(provider._rewrite)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()
