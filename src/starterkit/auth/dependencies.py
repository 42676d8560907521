"""FastAPI dependencies that authenticate the caller from ``Authorization: Bearer`` or the
browser session's access cookie.

This module deliberately does not use ``from __future__ import annotations``: FastAPI reads the
annotations of the dependency functions built here at runtime.
"""

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Protocol

from fastapi import Depends, Request, Response
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from starterkit.auth.browser import ACCESS_COOKIE, BrowserSessions
from starterkit.auth.tokens import AccessClaims, TokenService
from starterkit.auth.user_cache import UserCache
from starterkit.db.models import User
from starterkit.exceptions import (
    AuthenticationFailed,
    InvalidToken,
    PermissionDenied,
    ReauthenticationRequired,
    SecondFactorRequired,
)

logger = logging.getLogger("starterkit.auth")

UserDependency = Callable[..., Awaitable[User]]
SessionDependency = Callable[..., AsyncIterator[AsyncSession]]
NOT_AUTHENTICATED = "Not authenticated."


class Credentials(Protocol):
    """What checking a caller needs: the runtime's token service and user rows."""

    @property
    def tokens(self) -> TokenService:
        """Verifies access tokens."""

    @property
    def user_cache(self) -> UserCache:
        """Loads the caller's current row."""

    @property
    def browser_sessions(self) -> BrowserSessions:
        """Checks the CSRF token and origin of cookie-authenticated requests."""


def claims_of(request: Request) -> AccessClaims | None:
    """The verified access-token claims of this request, once a user dependency ran."""
    claims = getattr(request.state, "access_claims", None)
    return claims if isinstance(claims, AccessClaims) else None


def authenticated_by_cookie(request: Request) -> bool:
    """Whether a user dependency of this request took the token from the access cookie."""
    return getattr(request.state, "access_by_cookie", False) is True


def build_user_dependency(
    credentials: Credentials,
    *,
    token_url: str,
    active: bool = True,
    verified: bool = False,
    superuser: bool = False,
    mfa: bool = False,
    recent_auth_seconds: float | None = None,
    now: Callable[[], float] = time.time,
) -> UserDependency:
    """A dependency returning the authenticated :class:`User`, with the given requirements.

    The token is read from the ``Authorization`` header, or else from the browser session's
    access cookie (never the query string). A cookie-authenticated request must come from a
    trusted origin and, with an unsafe method, carry the session's ``X-CSRF-Token``. The
    user's current row is checked on every request (from the database, or from
    :class:`~starterkit.auth.user_cache.UserCache` while the database is unchanged), so
    deactivation and a bumped token version (logout-all, password change) take effect on the
    very next request.

    The user is *detached* (it belongs to no session), so reading it costs nothing more; a
    route that changes it takes it from :func:`attached_to_session` instead.

    ``mfa`` asks for a session that logged in with a second factor (``mfa`` in the token's
    ``amr``); ``recent_auth_seconds`` for one whose ``auth_time`` is at most that old.

    Raises (as HTTP errors):
        401: no token, an invalid token, or a user that no longer matches it.
        403: the user lacks a required property (superuser, verified email), the login had
            no second factor (``mfa_required``) or is not recent enough
            (``reauthentication_required``); a cookie-authenticated request failed the CSRF or
            origin check (``csrf_failed``).
    """
    # The access cookie is read here rather than declared as a security scheme: OpenAPI tools
    # would take a second scheme for the one to test without credentials, and the docs'
    # Authorize button cannot set cookies anyway (docs/browser-sessions.md describes them).

    async def current_user(request: Request, response: Response, token: str | None) -> User:
        cookie = None if token else request.cookies.get(ACCESS_COOKIE)
        by_cookie = bool(cookie)
        token = token or cookie
        if not token:
            raise AuthenticationFailed(NOT_AUTHENTICATED)
        claims = await credentials.tokens.verify_access_token(token)
        if by_cookie:
            credentials.browser_sessions.check_request(request, claims.session_id)
            request.state.access_by_cookie = True
        user = await credentials.user_cache.get_user(claims.user_id)
        if user is None or user.token_version != claims.token_version:
            raise InvalidToken
        if active and not user.is_active:
            raise InvalidToken
        if superuser and not user.is_superuser:
            raise PermissionDenied("This requires a superuser.")
        if verified and not user.is_verified:
            raise PermissionDenied("This requires a verified email address.")
        if mfa and "mfa" not in claims.amr:
            raise SecondFactorRequired
        if recent_auth_seconds is not None and now() - claims.auth_time > recent_auth_seconds:
            raise ReauthenticationRequired
        request.state.access_claims = claims
        # Responses for a signed-in user are private: no shared cache may keep them.
        response.headers["Cache-Control"] = "no-store"
        return user

    return _UserScheme(token_url, current_user)


class _UserScheme(OAuth2PasswordBearer):
    """The bearer scheme of the OpenAPI document that is the user dependency itself.

    FastAPI solves each level of a dependency tree at some cost per request; a user
    dependency that *depended on* the scheme was two levels, this is one.
    """

    def __init__(
        self,
        token_url: str,
        authenticate: Callable[[Request, Response, str | None], Awaitable[User]],
    ) -> None:
        super().__init__(tokenUrl=token_url, auto_error=False, scheme_name="OAuth2PasswordBearer")
        self._authenticate = authenticate

    async def __call__(self, request: Request, response: Response) -> User:  # type: ignore[override]
        token = await super().__call__(request)
        return await self._authenticate(request, response, token)


def attached_to_session(
    user_dependency: UserDependency, session_dependency: SessionDependency
) -> UserDependency:
    """A dependency returning the user of ``user_dependency`` added to the request's session.

    FastAPI gives a request one value per dependency, so a route that also asks for
    ``session_dependency`` gets that very session: changing the user and committing it writes
    the change. Adding a detached user runs no SQL.
    """

    async def attached_user(
        user: Annotated[User, Depends(user_dependency)],
        session: Annotated[AsyncSession, Depends(session_dependency)],
    ) -> User:
        session.add(user)
        return user

    return attached_user
