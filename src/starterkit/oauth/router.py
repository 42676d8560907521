"""``/auth/oauth`` routes: sign in with an identity provider, and link or unlink providers.

The browser goes to ``/authorize``, which sends it on to the provider with a ``state``, a
``nonce`` and a PKCE challenge, and sets a short-lived HttpOnly cookie that binds the login
to this browser. The provider sends the browser back to ``/callback``, which checks state and
cookie, redeems the code with the PKCE verifier, validates the ID token, picks the account
(:func:`starterkit.oauth.service.sign_in`) and sends the browser on to the front end's
``redirect_to`` with a single-use ``code`` (or ``error``). The front end exchanges that code
for tokens (``POST /auth/oauth/exchange``) or cookies (``POST /auth/browser/oauth/exchange``).
No ``from __future__ import annotations``: FastAPI reads these annotations at runtime.
"""

import logging
import secrets
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy.ext.asyncio import AsyncSession

from starterkit.audit import EventType, Origin, record_event
from starterkit.auth import flows
from starterkit.auth.flows import NO_STORE
from starterkit.auth.schemas import TokenPair
from starterkit.db.models import OAuthFlow, User
from starterkit.errors import error_responses
from starterkit.exceptions import InvalidRequest, NotFound, ServiceUnavailable
from starterkit.mfa.factors import PendingMFA
from starterkit.mfa.schemas import MFAChallengeRead
from starterkit.oauth import service
from starterkit.oauth.clients import (
    ExternalIdentity,
    ProviderClient,
    ProviderRefused,
    ProviderUnavailable,
)
from starterkit.oauth.schemas import (
    AuthorizationURLRead,
    ExchangeRequest,
    LinkRequest,
    OAuthAccountRead,
    ProviderRead,
)
from starterkit.runtime import Runtime
from starterkit.schemas import MAX_DB_INT

logger = logging.getLogger("starterkit.oauth")

BINDING_COOKIE = "starterkit_oauth"
# Errors a provider may send back that mean something to the front end; others read as
# ``provider_error`` (their text is the provider's, not ours to pass on).
PROVIDER_ERRORS = frozenset(
    {
        "access_denied",
        "consent_required",
        "interaction_required",
        "login_required",
        "temporarily_unavailable",
    }
)
ProviderName = Annotated[
    str, Path(max_length=32, description="A name from `/auth/oauth/providers`.")
]


def redirect_with(url: str, **params: str) -> RedirectResponse:
    """A 302 to ``url`` with ``params`` added to its query, never cached."""
    parts = urlsplit(url)
    query = "&".join(part for part in (parts.query, urlencode(params)) if part)
    return RedirectResponse(
        urlunsplit(parts._replace(query=query)), status_code=302, headers=NO_STORE
    )


def build_oauth_router(kit: Runtime) -> APIRouter:
    """The social-login routes of ``kit``, included by the auth router under /oauth."""
    router = APIRouter()
    settings = kit.settings
    Session = Annotated[AsyncSession, Depends(kit.db_session)]
    RequestOrigin = Annotated[Origin, Depends(kit.request_origin)]
    CurrentUser = Annotated[User, Depends(kit.current_user)]
    RecentUser = Annotated[User, Depends(kit.require_recent_auth())]
    authorize_limit = Depends(
        kit.limit_per_client("oauth-authorize", settings.auth_login_rate_limit)
    )
    callback_limit = Depends(kit.limit_per_client("oauth-callback", settings.auth_login_rate_limit))
    exchange_limit = Depends(kit.limit_per_client("oauth-exchange", settings.auth_login_rate_limit))
    allowed = {_comparable(url): url for url in settings.oauth_redirect_urls}

    def client_of(name: str) -> ProviderClient:
        client = kit.oauth_clients.get(name)
        if client is None:
            raise NotFound("No such provider.")
        return client

    def checked_redirect(redirect_to: str | None) -> str:
        if redirect_to is None:
            if not settings.oauth_redirect_urls:
                raise NotFound("No such provider.")
            return settings.oauth_redirect_urls[0]
        if _comparable(redirect_to) not in allowed:
            raise InvalidRequest("redirect_to is not one of the URLs in OAUTH_REDIRECT_URLS.")
        return redirect_to

    def callback_url(request: Request, provider: str) -> str:
        url = request.url_for("auth:oauth_callback", provider=provider)
        base = settings.oauth_callback_base_url
        return f"{base}{url.path}" if base else str(url)

    async def start(
        request: Request,
        session: AsyncSession,
        *,
        provider: str,
        redirect_to: str,
        link_user_id: int | None = None,
    ) -> tuple[str, str]:
        """Record the flow; the provider's URL and the browser's binding for the cookie."""
        client = client_of(provider)
        # One binding per browser: a second tab's login does not end the first's.
        binding = request.cookies.get(BINDING_COOKIE, "")[:64] or secrets.token_urlsafe(32)
        flow = await service.begin_flow(
            session,
            provider=provider,
            binding=binding,
            redirect_to=redirect_to,
            link_user_id=link_user_id,
            now=kit.clock(),
        )
        try:
            url = await client.authorization_url(
                redirect_uri=callback_url(request, provider),
                state=flow.state,
                nonce=flow.nonce,
                code_verifier=flow.code_verifier,
            )
        except ProviderUnavailable as error:
            logger.warning("social login: %s is unavailable: %s", provider, error)
            raise ServiceUnavailable(f"The provider {provider} cannot be reached.") from None
        await session.commit()
        return url, binding

    def bind(request: Request, response: Response, binding: str) -> Response:
        """Set the cookie that ties the flows of this browser to it (HttpOnly, 10 minutes)."""
        response.set_cookie(
            BINDING_COOKIE,
            binding,
            max_age=int(service.FLOW_LIFETIME.total_seconds()),
            path=str(request.url_for("auth:oauth_providers").path).rsplit("/", 1)[0],
            domain=settings.cookie_domain or None,
            secure=kit.browser_sessions.secure_for(request),
            httponly=True,
            samesite="lax",  # sent on the provider's top-level redirect back to us
        )
        response.headers.update(NO_STORE)
        return response

    async def refused(
        session: AsyncSession,
        origin: Origin,
        target: str,
        error: str,
        *,
        provider: str,
        user_id: int | None = None,
    ) -> RedirectResponse:
        """Send the browser back with ``?error=``; recorded in the audit log."""
        record_event(
            session,
            event_type=EventType.OAUTH_LOGIN_FAILED,
            origin=origin,
            now=kit.clock(),
            user_id=user_id,
        )
        await session.commit()  # also the flow's removal: a state serves one callback
        logger.info("social login with %s refused: %s", provider, error)
        return redirect_with(target, error=error)

    @router.get(
        "/providers",
        name="auth:oauth_providers",
        response_model=list[ProviderRead],
    )
    async def list_providers() -> list[ProviderRead]:
        """The providers users may sign in with, for login buttons."""
        return [
            ProviderRead(name=name, display_name=client.config.display_name)
            for name, client in kit.oauth_clients.items()
        ]

    @router.get(
        "/{provider}/authorize",
        name="auth:oauth_authorize",
        status_code=302,
        response_class=RedirectResponse,
        dependencies=[authorize_limit],
        responses={
            302: {"description": "To the provider's sign-in page."},
            200: {
                "model": AuthorizationURLRead,
                "description": "With `Accept: application/json`: the URL to go to.",
            },
            **error_responses(400, 404, 422, 429, 503),
        },
    )
    async def authorize(
        provider: ProviderName,
        request: Request,
        session: Session,
        redirect_to: Annotated[
            str | None,
            Query(
                max_length=2048,
                description="Where to come back to, one of OAUTH_REDIRECT_URLS (default: the "
                "first): with `?code=…` to exchange, or `?error=…`.",
            ),
        ] = None,
    ) -> Any:
        """Sign in with `provider`: a 302 to its sign-in page, or with
        `Accept: application/json` its URL as JSON (the answer sets a cookie that binds the
        login to this browser: send the request with credentials)."""
        client_of(provider)
        target = checked_redirect(redirect_to)
        url, binding = await start(request, session, provider=provider, redirect_to=target)
        if "application/json" in request.headers.get("accept", ""):
            return bind(request, JSONResponse({"authorization_url": url}), binding)
        return bind(request, RedirectResponse(url, status_code=302), binding)

    @router.get(
        "/{provider}/callback",
        name="auth:oauth_callback",
        status_code=302,
        response_class=RedirectResponse,
        dependencies=[callback_limit],
        responses={
            302: {"description": "To `redirect_to`, with `code`, `linked` or `error`."},
            **error_responses(404, 422, 429),
        },
    )
    async def callback(
        provider: ProviderName,
        request: Request,
        session: Session,
        origin: RequestOrigin,
        state: Annotated[str | None, Query(max_length=256)] = None,
        code: Annotated[str | None, Query(max_length=2048)] = None,
        error: Annotated[str | None, Query(max_length=256)] = None,
    ) -> RedirectResponse:
        """Where the provider sends the browser back to; sends it on to `redirect_to` with a
        single-use `code` (60 seconds), `?linked={provider}` after a link, or `?error=…`:
        `access_denied`, `invalid_state`, `provider_error`, `temporarily_unavailable`,
        `email_not_verified`, `email_required`, `account_disabled`, `identity_in_use`."""
        client = client_of(provider)
        now = kit.clock()
        flow = await service.take_flow(session, state=state, now=now) if state else None
        if flow is None or flow.provider != provider:
            first = settings.oauth_redirect_urls[0]
            return await refused(session, origin, first, "invalid_state", provider=provider)
        try:
            if not service.binding_matches(flow, request.cookies.get(BINDING_COOKIE)):
                raise service.LoginRefused("invalid_state")
            if error is not None or code is None:
                raise service.LoginRefused(error if error in PROVIDER_ERRORS else "provider_error")
            identity = await identity_of(request, client, flow, code)
            if flow.link_user_id is not None:
                await link_to(session, origin, flow.link_user_id, provider, identity)
                await session.commit()
                return redirect_with(flow.redirect_to, linked=provider)
            signed_in = await service.sign_in(
                session, provider=provider, identity=identity, origin=origin, now=now
            )
        except service.LoginRefused as refusal:
            return await refused(
                session,
                origin,
                flow.redirect_to,
                refusal.error,
                provider=provider,
                user_id=refusal.user_id or flow.link_user_id,
            )
        exchange_code = await service.issue_exchange_code(
            session, user=signed_in.user, provider=provider, now=now
        )
        await session.commit()
        await kit.hooks.after_oauth_login(signed_in.user, provider, signed_in.created, request)
        return redirect_with(flow.redirect_to, code=exchange_code)

    async def identity_of(
        request: Request, client: ProviderClient, flow: OAuthFlow, code: str
    ) -> ExternalIdentity:
        """Redeem the provider's code; a failure is a refusal the front end can show."""
        try:
            return await client.identity(
                code=code,
                redirect_uri=callback_url(request, flow.provider),
                code_verifier=flow.code_verifier,
                nonce=flow.nonce,
            )
        except ProviderUnavailable as failure:
            logger.warning("social login with %s failed: %s", flow.provider, failure)
            raise service.LoginRefused("temporarily_unavailable") from None
        except ProviderRefused as failure:
            logger.warning("social login with %s refused: %s", flow.provider, failure)
            raise service.LoginRefused("provider_error") from None
        except Exception:  # whatever a provider sends must not become a 500
            logger.exception("social login with %s: unexpected answer", flow.provider)
            raise service.LoginRefused("provider_error") from None

    async def link_to(
        session: AsyncSession,
        origin: Origin,
        user_id: int,
        provider: str,
        identity: ExternalIdentity,
    ) -> None:
        user = await session.get(User, user_id)
        if user is None or not user.is_active:
            raise service.LoginRefused("account_disabled", user_id=user_id)
        await service.link(
            session, user=user, provider=provider, identity=identity, origin=origin, now=kit.clock()
        )

    @router.post(
        "/exchange",
        name="auth:oauth_exchange",
        response_model=TokenPair | MFAChallengeRead,
        dependencies=[exchange_limit],
        responses=error_responses(401, 403, 422, 429),
    )
    async def exchange(
        payload: ExchangeRequest,
        request: Request,
        response: Response,
        origin: RequestOrigin,
        session: Session,
    ) -> TokenPair | MFAChallengeRead:
        """Exchange a social login's `code` for a token pair, or for the `mfa_required`
        answer of an account with a second factor (finish at `/auth/login/mfa`)."""
        issued = await flows.oauth_exchange_step(
            kit, session, request, code=payload.code, origin=origin
        )
        response.headers.update(NO_STORE)
        if isinstance(issued, PendingMFA):
            return MFAChallengeRead.of(issued)
        return TokenPair(
            access_token=issued.access_token,
            refresh_token=issued.refresh_token,
            expires_in=issued.expires_in,
        )

    @router.post(
        "/{provider}/link",
        name="auth:oauth_link",
        response_model=AuthorizationURLRead,
        responses=error_responses(400, 401, 403, 404, 422, 503),
    )
    async def link(
        provider: ProviderName,
        payload: LinkRequest,
        request: Request,
        response: Response,
        user: RecentUser,
        session: Session,
    ) -> AuthorizationURLRead:
        """Link an identity at `provider` to your account (needs a recent authentication):
        send the browser to the URL; it comes back to `redirect_to` with `?linked=…` or
        `?error=identity_in_use` (that identity belongs to another account)."""
        client_of(provider)
        target = checked_redirect(payload.redirect_to)
        url, binding = await start(
            request, session, provider=provider, redirect_to=target, link_user_id=user.id
        )
        bind(request, response, binding)
        return AuthorizationURLRead(authorization_url=url)

    @router.get(
        "/accounts",
        name="auth:oauth_accounts",
        response_model=list[OAuthAccountRead],
        responses=error_responses(401),
    )
    async def list_accounts(user: CurrentUser, session: Session) -> Any:
        """The provider identities linked to your account."""
        return await service.list_accounts(session, user_id=user.id)

    @router.delete(
        "/accounts/{account_id}",
        name="auth:oauth_unlink",
        status_code=204,
        responses=error_responses(400, 401, 404, 422),
    )
    async def unlink(
        account_id: Annotated[int, Path(ge=1, le=MAX_DB_INT)],
        user: Annotated[User, Depends(kit.attached_user)],
        origin: RequestOrigin,
        session: Session,
    ) -> Response:
        """Unlink a provider identity. Refused (400) when it is the account's only way to
        sign in: set a password through forgot-password first, or link another provider."""
        await service.unlink(
            session, user=user, account_id=account_id, origin=origin, now=kit.clock()
        )
        await session.commit()
        return Response(status_code=204)

    return router


def _comparable(url: str) -> str:
    """A URL without its query and fragment: what the allow-list compares."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path, "", ""))
