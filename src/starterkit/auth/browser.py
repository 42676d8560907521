"""Browser sessions: the three session cookies, the CSRF token bound to a session, and the
``Origin`` check (SPEC §11; OWASP CSRF Prevention Cheat Sheet, ASVS V3.3).

A browser login gets the same session (token family) as any other login, carried in cookies
instead of response bodies:

- ``starterkit_access``: the access token; HttpOnly, SameSite=Lax, Path=/.
- ``starterkit_refresh``: the refresh token; HttpOnly, SameSite=Strict, sent only to the
  browser auth routes.
- ``starterkit_csrf``: readable by JavaScript; ``nonce.HMAC(session id, nonce)`` (the signed
  double-submit pattern). A cookie-authenticated request with an unsafe method must echo it in
  ``X-CSRF-Token``: a page on another site can make the browser send the cookies, but can
  neither read this one nor compute a token for the victim's session.

SameSite is defence in depth, not the control: same-site pages (another subdomain, another
port) get the cookies sent too, so the token and the ``Origin`` check are what refuse them.
The token of one session is refused for another, and it stays the same for the whole session
(a refresh re-sets it), so several tabs never invalidate each other's copy.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from starterkit.exceptions import CSRFFailed

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection
    from starlette.responses import Response

ACCESS_COOKIE = "starterkit_access"
REFRESH_COOKIE = "starterkit_refresh"
CSRF_COOKIE = "starterkit_csrf"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Development over plain http on these hosts gets cookies without Secure, so a browser at
# http://127.0.0.1:8000 keeps them. Everything else gets Secure.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
# The access cookie goes with top-level navigations to the API (Lax); the refresh and CSRF
# cookies never leave same-site requests (Strict).
_SAME_SITE: dict[str, Literal["lax", "strict"]] = {
    ACCESS_COOKIE: "lax",
    REFRESH_COOKIE: "strict",
    CSRF_COOKIE: "strict",
}
_NONCE_BYTES = 16
_MAX_TOKEN_LENGTH = 128

MISSING_TOKEN = f"This request needs the {CSRF_HEADER} header with the session's CSRF token."
WRONG_TOKEN = f"The {CSRF_HEADER} header does not hold this session's CSRF token."
FOREIGN_ORIGIN = "Requests from this origin may not use the session cookies."


@dataclass(frozen=True, slots=True)
class SessionCookies:
    """What one browser login or refresh sets: the tokens, when they end, the CSRF token."""

    access_token: str
    access_max_age: int
    refresh_token: str
    refresh_expires_at: datetime
    csrf_token: str


class BrowserSessions:
    """Sets and clears the session cookies and checks CSRF tokens and origins.

    Args:
        csrf_key: the HMAC key of CSRF tokens (derived from SECRET_KEY: another instance's
            secret makes tokens this one refuses).
        trusted_origins: origins whose pages may use the cookies besides the service's own
            (CORS_ORIGINS and PUBLIC_URL's origin); ``*`` grants nothing here.
        cookie_domain: the cookies' Domain; empty for host-only cookies.
        secure: force the Secure attribute on or off; None decides per request.
        development: whether plain http on a loopback host may drop Secure (when
            ``secure`` is None).
    """

    def __init__(
        self,
        *,
        csrf_key: bytes,
        trusted_origins: Iterable[str],
        cookie_domain: str = "",
        secure: bool | None = None,
        development: bool = False,
    ) -> None:
        self._csrf_key = csrf_key
        self._trusted = frozenset(
            normalized for origin in trusted_origins if (normalized := _origin_of(origin))
        )
        self._domain = cookie_domain or None
        self._secure = secure
        self._development = development

    # --- CSRF tokens ----------------------------------------------------------------------

    def new_csrf_token(self, session_id: int) -> str:
        """A fresh CSRF token for ``session_id``."""
        nonce = _b64(secrets.token_bytes(_NONCE_BYTES))
        return f"{nonce}.{self._mac(session_id, nonce)}"

    def csrf_token_valid(self, token: str, session_id: int) -> bool:
        """Whether ``token`` was made by this service for ``session_id``."""
        if len(token) > _MAX_TOKEN_LENGTH:
            return False
        nonce, dot, mac = token.partition(".")
        if not dot or not nonce:
            return False
        return hmac.compare_digest(mac, self._mac(session_id, nonce))

    def check_csrf(self, connection: HTTPConnection, session_id: int | None) -> str:
        """Refuse a request whose ``X-CSRF-Token`` is missing, differs from the CSRF cookie, or
        was not made for ``session_id``; return the token.

        Raises:
            CSRFFailed: in each of those cases.
        """
        header = connection.headers.get(CSRF_HEADER)
        if not header:
            raise CSRFFailed(MISSING_TOKEN)
        cookie = connection.cookies.get(CSRF_COOKIE, "")
        if (
            session_id is None
            or not hmac.compare_digest(header.encode(), cookie.encode())
            or not self.csrf_token_valid(header, session_id)
        ):
            raise CSRFFailed(WRONG_TOKEN)
        return header

    def _mac(self, session_id: int, nonce: str) -> str:
        message = f"starterkit csrf|{session_id}|{nonce}".encode()
        return _b64(hmac.new(self._csrf_key, message, hashlib.sha256).digest())

    # --- origins --------------------------------------------------------------------------

    def check_origin(self, connection: HTTPConnection) -> None:
        """Refuse a request that a page of an untrusted origin made.

        Trusted: no ``Origin`` (not a cross-origin browser request), the service's own origin
        (the ``Host`` the browser addressed), PUBLIC_URL's, and CORS_ORIGINS. Without an
        ``Origin``, a ``Sec-Fetch-Site: cross-site`` is refused too.

        Raises:
            CSRFFailed: the origin is not trusted.
        """
        origin = connection.headers.get("origin")
        if origin is None:
            if connection.headers.get("sec-fetch-site") == "cross-site":
                raise CSRFFailed(FOREIGN_ORIGIN)
            return
        normalized = _origin_of(origin)
        if normalized is None:  # "null" (sandboxed frames, some redirects) or garbage
            raise CSRFFailed(FOREIGN_ORIGIN)
        if normalized in self._trusted:
            return
        host = connection.headers.get("host", "")
        own = _origin_of(f"{normalized.split('://', 1)[0]}://{host}") if host else None
        if own != normalized:
            raise CSRFFailed(FOREIGN_ORIGIN)

    def check_request(self, connection: HTTPConnection, session_id: int | None) -> None:
        """The checks of a cookie-authenticated request: its origin, and for an unsafe method
        its CSRF token.

        Raises:
            CSRFFailed: either check failed.
        """
        self.check_origin(connection)
        if connection.scope.get("method") in UNSAFE_METHODS:
            self.check_csrf(connection, session_id)

    # --- cookies --------------------------------------------------------------------------

    def set_cookies(
        self,
        connection: HTTPConnection,
        response: Response,
        cookies: SessionCookies,
        *,
        refresh_path: str,
        now: datetime,
    ) -> None:
        """Set the three session cookies on ``response``."""
        refresh_max_age = max(0, round((cookies.refresh_expires_at - now).total_seconds()))
        self.set_access_cookie(connection, response, cookies.access_token, cookies.access_max_age)
        self._set(
            connection, response, REFRESH_COOKIE, cookies.refresh_token, max_age=refresh_max_age,
            path=refresh_path,
        )  # fmt: skip
        self.set_csrf_cookie(connection, response, cookies.csrf_token, max_age=refresh_max_age)

    def set_access_cookie(
        self, connection: HTTPConnection, response: Response, access_token: str, max_age: int
    ) -> None:
        """Set (or replace) the access cookie alone, e.g. after a re-authentication."""
        self._set(connection, response, ACCESS_COOKIE, access_token, max_age=max_age)

    def set_csrf_cookie(
        self,
        connection: HTTPConnection,
        response: Response,
        csrf_token: str,
        *,
        max_age: int | None = None,
    ) -> None:
        """Set the CSRF cookie; without ``max_age`` it lasts until the browser closes."""
        self._set(connection, response, CSRF_COOKIE, csrf_token, max_age=max_age)

    def clear_cookies(
        self, connection: HTTPConnection, response: Response, *, refresh_path: str
    ) -> None:
        """Expire the three session cookies (same path and domain as they were set with)."""
        for name in (ACCESS_COOKIE, REFRESH_COOKIE, CSRF_COOKIE):
            path = refresh_path if name == REFRESH_COOKIE else "/"
            self._set(connection, response, name, "", max_age=0, path=path)

    def _set(
        self,
        connection: HTTPConnection,
        response: Response,
        name: str,
        value: str,
        *,
        max_age: int | None,
        path: str = "/",
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=path,
            domain=self._domain,
            secure=self.secure_for(connection),
            httponly=name != CSRF_COOKIE,
            samesite=_SAME_SITE[name],
        )

    def secure_for(self, connection: HTTPConnection) -> bool:
        """Whether cookies set in answer to ``connection`` carry the Secure attribute."""
        if self._secure is not None:
            return self._secure
        url = connection.url
        plain_loopback = url.scheme == "http" and (url.hostname or "") in LOOPBACK_HOSTS
        return not (self._development and plain_loopback)


def _origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` in lower case without a default port, or None if not a URL."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
