"""``/auth/browser`` routes: login, its second step, refresh, logout, re-authentication and
the CSRF token, for single-page apps that keep no token in JavaScript (SPEC §11).

The session is an ordinary one (listed by ``/auth/sessions``, ended by logout-all and password
changes, rotated like any other); its tokens travel in the cookies of
:mod:`starterkit.auth.browser`. Every route here refuses pages of untrusted origins (login
included: no login CSRF), and the ones that use the refresh cookie need the session's
``X-CSRF-Token``. No ``from __future__ import annotations``: FastAPI reads these at runtime.
"""

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from starterkit.audit import Origin
from starterkit.auth import flows, service
from starterkit.auth.browser import CSRF_COOKIE, CSRF_HEADER, REFRESH_COOKIE, SessionCookies
from starterkit.auth.dependencies import NOT_AUTHENTICATED, authenticated_by_cookie
from starterkit.auth.flows import NO_STORE
from starterkit.auth.schemas import (
    BrowserLoginRead,
    BrowserSessionRead,
    CSRFTokenRead,
    LoginRequest,
)
from starterkit.db.models import User
from starterkit.errors import error_responses
from starterkit.exceptions import AuthenticationFailed, InvalidRequest, InvalidToken
from starterkit.mfa.factors import PendingMFA
from starterkit.mfa.schemas import (
    MFAChallengeRead,
    MFALoginRequest,
    ReauthenticateRequest,
)
from starterkit.oauth.schemas import ExchangeRequest
from starterkit.runtime import Runtime
from starterkit.users.schemas import UserRead


def build_browser_router(kit: Runtime) -> APIRouter:
    """The browser-session routes of ``kit``, included by the auth router under /browser."""
    router = APIRouter()
    browser = kit.browser_sessions
    Session = Annotated[AsyncSession, Depends(kit.db_session)]
    RequestOrigin = Annotated[Origin, Depends(kit.request_origin)]
    CurrentUser = Annotated[User, Depends(kit.current_user)]
    settings = kit.settings
    trusted_origin = Depends(_origin_check(kit))
    # The same counters as the token routes: a browser login is a login.
    login_limit = Depends(kit.limit_per_client("login", settings.auth_login_rate_limit))
    mfa_limit = Depends(kit.limit_per_client("login-mfa", settings.auth_login_rate_limit))
    refresh_limit = Depends(kit.limit_per_client("refresh", settings.auth_refresh_rate_limit))
    oauth_exchange_limit = Depends(
        kit.limit_per_client("oauth-exchange", settings.auth_login_rate_limit)
    )

    def refresh_path(request: Request) -> str:
        """The folder of these routes, wherever the router is mounted: the refresh cookie's
        Path, so the browser sends that cookie nowhere else."""
        return str(request.url_for("auth:browser_refresh").path).rsplit("/", 1)[0]

    def start(
        request: Request, response: Response, issued: service.IssuedTokens, csrf_token: str
    ) -> None:
        response.headers.update(NO_STORE)
        cookies = SessionCookies(
            access_token=issued.access_token,
            access_max_age=issued.expires_in,
            refresh_token=issued.refresh_token,
            refresh_expires_at=issued.refresh_expires_at,
            csrf_token=csrf_token,
        )
        browser.set_cookies(
            request, response, cookies, refresh_path=refresh_path(request), now=kit.clock()
        )

    def logged_in(
        request: Request, response: Response, issued: service.IssuedTokens
    ) -> BrowserLoginRead:
        csrf_token = browser.new_csrf_token(issued.session_id)
        start(request, response, issued, csrf_token)
        return BrowserLoginRead(
            user=UserRead.model_validate(issued.user),
            expires_in=issued.expires_in,
            csrf_token=csrf_token,
        )

    async def cookie_session_id(request: Request, session: AsyncSession) -> int:
        """The live session of the request's refresh cookie, or 401."""
        refresh_token = request.cookies.get(REFRESH_COOKIE)
        if not refresh_token:
            raise AuthenticationFailed(NOT_AUTHENTICATED)
        session_id = await service.session_of_refresh_token(
            session, refresh_token=refresh_token, tokens=kit.tokens, now=kit.clock()
        )
        if session_id is None:
            raise InvalidToken
        return session_id

    @router.post(
        "/login",
        name="auth:browser_login",
        response_model=BrowserLoginRead | MFAChallengeRead,
        dependencies=[trusted_origin, login_limit],
        responses=error_responses(401, 403, 422, 429),
    )
    async def browser_login(
        payload: LoginRequest,
        request: Request,
        response: Response,
        origin: RequestOrigin,
        session: Session,
    ) -> BrowserLoginRead | MFAChallengeRead:
        """Log in a browser: the session's tokens are set as HttpOnly cookies, and the answer
        holds the user and the CSRF token to send as `X-CSRF-Token` on unsafe requests.

        The same rules and limits as `/auth/login`; a page of an origin that is neither this
        service's nor in CORS_ORIGINS gets 403 `csrf_failed`. An account with a second factor
        gets the `mfa_required` answer: send its `mfa_token` and a code to
        `/auth/browser/login/mfa`.
        """
        issued = await flows.password_step(
            kit, session, request, email=payload.email, password=payload.password, origin=origin
        )
        if isinstance(issued, PendingMFA):
            response.headers.update(NO_STORE)
            return MFAChallengeRead.of(issued)
        return logged_in(request, response, issued)

    @router.post(
        "/login/mfa",
        name="auth:browser_login_mfa",
        response_model=BrowserLoginRead,
        dependencies=[trusted_origin, mfa_limit],
        responses=error_responses(401, 403, 422, 429),
    )
    async def browser_login_mfa(
        payload: MFALoginRequest,
        request: Request,
        response: Response,
        origin: RequestOrigin,
        session: Session,
    ) -> BrowserLoginRead:
        """Finish a browser login that answered `mfa_required`, like `/auth/login/mfa`: the
        session's cookies are set."""
        issued = await flows.second_factor_step(
            kit,
            session,
            request,
            payload=payload,
            origin=origin,
        )
        return logged_in(request, response, issued)

    @router.post(
        "/oauth/exchange",
        name="auth:browser_oauth_exchange",
        response_model=BrowserLoginRead | MFAChallengeRead,
        dependencies=[trusted_origin, oauth_exchange_limit],
        responses=error_responses(401, 403, 422, 429),
    )
    async def browser_oauth_exchange(
        payload: ExchangeRequest,
        request: Request,
        response: Response,
        origin: RequestOrigin,
        session: Session,
    ) -> BrowserLoginRead | MFAChallengeRead:
        """Exchange a social login's `code` for a browser session, like `/auth/oauth/exchange`
        but with the session's cookies. An account with a second factor gets the
        `mfa_required` answer: finish at `/auth/browser/login/mfa`."""
        issued = await flows.oauth_exchange_step(
            kit, session, request, code=payload.code, origin=origin
        )
        if isinstance(issued, PendingMFA):
            response.headers.update(NO_STORE)
            return MFAChallengeRead.of(issued)
        return logged_in(request, response, issued)

    @router.post(
        "/refresh",
        name="auth:browser_refresh",
        response_model=BrowserSessionRead,
        dependencies=[trusted_origin, refresh_limit],
        responses=error_responses(401, 403, 429),
    )
    async def browser_refresh(
        request: Request, response: Response, origin: RequestOrigin, session: Session
    ) -> BrowserSessionRead:
        """Rotate the session's cookies when the access cookie has expired (or a route
        answered 401). The rotation, reuse and grace rules of `/auth/refresh` apply.

        Uses the `starterkit_refresh` cookie (sent by the browser to `/auth/browser/*` only)
        and needs the session's CSRF token in `X-CSRF-Token`.
        """
        session_id = await cookie_session_id(request, session)
        csrf_token = browser.check_csrf(request, session_id)
        issued = await flows.refresh_step(
            kit, session, request, refresh_token=request.cookies[REFRESH_COOKIE], origin=origin
        )
        start(request, response, issued, csrf_token)
        return BrowserSessionRead(expires_in=issued.expires_in, csrf_token=csrf_token)

    @router.post(
        "/logout",
        name="auth:browser_logout",
        status_code=204,
        dependencies=[trusted_origin],
        responses=error_responses(403),
    )
    async def browser_logout(
        request: Request, response: Response, origin: RequestOrigin, session: Session
    ) -> None:
        """End the browser's session and clear its cookies. Without a live session it only
        clears them.

        Uses the `starterkit_refresh` cookie and needs the session's CSRF token in
        `X-CSRF-Token`.
        """
        refresh_token = request.cookies.get(REFRESH_COOKIE)
        if refresh_token:
            session_id = await service.session_of_refresh_token(
                session, refresh_token=refresh_token, tokens=kit.tokens, now=kit.clock()
            )
            if session_id is not None:
                browser.check_csrf(request, session_id)
                await service.log_out(
                    session,
                    refresh_token=refresh_token,
                    tokens=kit.tokens,
                    origin=origin,
                    now=kit.clock(),
                )
                await session.commit()
        browser.clear_cookies(request, response, refresh_path=refresh_path(request))

    @router.get(
        "/csrf",
        name="auth:browser_csrf",
        response_model=CSRFTokenRead,
        dependencies=[trusted_origin],
        responses=error_responses(401, 403),
    )
    async def browser_csrf(request: Request, response: Response, session: Session) -> CSRFTokenRead:
        """The CSRF token of the browser's session, for a page that cannot read the
        `starterkit_csrf` cookie (a front end on another host) after a reload. Reads the
        refresh cookie; without a live session it is 401."""
        session_id = await cookie_session_id(request, session)
        response.headers.update(NO_STORE)
        current = request.cookies.get(CSRF_COOKIE, "")
        if current and browser.csrf_token_valid(current, session_id):
            return CSRFTokenRead(csrf_token=current)
        # The CSRF cookie is gone (cleared by hand): a new one, until the next refresh.
        csrf_token = browser.new_csrf_token(session_id)
        browser.set_csrf_cookie(request, response, csrf_token)
        return CSRFTokenRead(csrf_token=csrf_token)

    @router.post(
        "/reauthenticate",
        name="auth:browser_reauthenticate",
        response_model=BrowserSessionRead,
        responses=error_responses(400, 401, 403, 422, 429),
    )
    async def browser_reauthenticate(
        payload: ReauthenticateRequest,
        request: Request,
        response: Response,
        user: CurrentUser,
        origin: RequestOrigin,
        session: Session,
    ) -> BrowserSessionRead:
        """`/auth/reauthenticate` for a browser session: the new access token (with
        `auth_time` now) replaces the access cookie. Needs the CSRF token like every
        cookie-authenticated POST."""
        if not authenticated_by_cookie(request):
            raise InvalidRequest("A bearer token re-authenticates at /auth/reauthenticate.")
        fresh = await flows.reauthenticate_step(
            kit, session, request, user=user, payload=payload, origin=origin
        )
        response.headers.update(NO_STORE)
        browser.set_access_cookie(request, response, fresh.access_token, fresh.expires_in)
        return BrowserSessionRead(
            expires_in=fresh.expires_in, csrf_token=request.headers[CSRF_HEADER]
        )

    return router


def _origin_check(kit: Runtime) -> Callable[[HTTPConnection], None]:
    """A dependency refusing pages of untrusted origins (403 ``csrf_failed``)."""
    browser = kit.browser_sessions

    def trusted_origin(connection: HTTPConnection) -> None:
        browser.check_origin(connection)

    return trusted_origin
