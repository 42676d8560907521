"""``/auth`` routes: login, refresh, logout, logout-all, the caller's sessions, and (from
:mod:`starterkit.auth.lifecycle_router`) forgot/reset password and email verification.

Built by :func:`build_auth_router` for one :class:`StarterKit`; mount it under any prefix.
No ``from __future__ import annotations`` here: FastAPI reads these annotations at runtime.
"""

from collections.abc import Sequence
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from starterkit.audit import Origin
from starterkit.auth import flows, service
from starterkit.auth.browser_router import build_browser_router
from starterkit.auth.dependencies import claims_of
from starterkit.auth.flows import NO_STORE
from starterkit.auth.schemas import LoginRequest, RefreshRequest, SessionRead, TokenPair
from starterkit.db.models import User
from starterkit.errors import error_responses
from starterkit.exceptions import InvalidRequest
from starterkit.lifecycle.router import build_lifecycle_router
from starterkit.mfa.factors import PendingMFA
from starterkit.mfa.router import build_mfa_router
from starterkit.mfa.schemas import MFAChallengeRead
from starterkit.oauth.router import build_oauth_router
from starterkit.runtime import Runtime
from starterkit.schemas import MAX_DB_INT

_FORM_SCHEMA = {
    "type": "object",
    "required": ["username", "password"],
    "properties": {
        "username": {"type": "string", "description": "The account's email address."},
        "password": {"type": "string", "format": "password"},
        "grant_type": {"type": "string", "enum": ["password"]},
    },
}


async def read_login(request: Request) -> tuple[LoginRequest, bool]:
    """Parse JSON ``{email, password}`` or the OAuth2 password form into a LoginRequest, and
    say whether it was the form."""
    body = await request.body()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if content_type == "application/x-www-form-urlencoded":
            try:
                form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
            except UnicodeDecodeError:
                form = {}
            credentials = LoginRequest.model_validate(
                {"email": form.get("username"), "password": form.get("password")}
            )
            return credentials, True
        return LoginRequest.model_validate_json(body or b"null"), False
    except ValidationError as error:
        errors = error.errors(include_url=False, include_input=False, include_context=False)
        for item in errors:
            field = item["loc"][0] if item["loc"] else None
            if content_type == "application/x-www-form-urlencoded" and field == "email":
                field = "username"
            item["loc"] = ("body", *((field,) if field is not None else ()), *item["loc"][1:])
        raise RequestValidationError(errors) from None


def build_auth_router(kit: Runtime, *, tags: Sequence[str] = ("auth",)) -> APIRouter:
    """The auth routes of ``kit``; include it with any prefix (``create_app`` uses /auth)."""
    router = APIRouter(tags=list(tags))
    Session = Annotated[AsyncSession, Depends(kit.db_session)]
    CurrentUser = Annotated[User, Depends(kit.current_user)]
    AttachedUser = Annotated[User, Depends(kit.attached_user)]
    RequestOrigin = Annotated[Origin, Depends(kit.request_origin)]
    settings = kit.settings
    login_limit = Depends(kit.limit_per_client("login", settings.auth_login_rate_limit))
    refresh_limit = Depends(kit.limit_per_client("refresh", settings.auth_refresh_rate_limit))

    @router.post(
        "/login",
        name="auth:login",
        response_model=TokenPair | MFAChallengeRead,
        dependencies=[login_limit],
        responses=error_responses(401, 422, 429),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": LoginRequest.model_json_schema()},
                    "application/x-www-form-urlencoded": {"schema": _FORM_SCHEMA},
                },
            }
        },
    )
    async def login(
        request: Request, response: Response, origin: RequestOrigin, session: Session
    ) -> TokenPair | MFAChallengeRead:
        """Exchange email and password for an access token and a refresh token.

        Takes JSON `{"email", "password"}` or the OAuth2 password form (`username`,
        `password`), so the Authorize button of these docs works. Every failure is the same
        401, whether the email is unknown, the password wrong or the account inactive.
        Limited per client IP (every attempt) and per account (failed attempts only).

        An account with a second factor gets `{"mfa_required": true, "mfa_token", ...}`
        instead of tokens: send the token and a code to `/auth/login/mfa`. The form login of
        such an account is 401 with code `mfa_required`.
        """
        credentials, from_form = await read_login(request)
        issued = await flows.password_step(
            kit,
            session,
            request,
            email=credentials.email,
            password=credentials.password,
            origin=origin,
            second_factor=not from_form,
        )
        response.headers.update(NO_STORE)
        if isinstance(issued, PendingMFA):
            return MFAChallengeRead.of(issued)
        return _token_pair(issued)

    @router.post(
        "/refresh",
        name="auth:refresh",
        response_model=TokenPair,
        dependencies=[refresh_limit],
        responses=error_responses(401, 422, 429),
    )
    async def refresh(
        payload: RefreshRequest,
        request: Request,
        response: Response,
        origin: RequestOrigin,
        session: Session,
    ) -> TokenPair:
        """Exchange a refresh token for a new pair. Each refresh token works once.

        Presenting a refresh token that was already used revokes its whole session (the
        token must have been copied); the other sessions of the account are not affected.
        """
        issued = await flows.refresh_step(
            kit, session, request, refresh_token=payload.refresh_token, origin=origin
        )
        response.headers.update(NO_STORE)
        return _token_pair(issued)

    @router.post(
        "/logout",
        name="auth:logout",
        status_code=204,
        responses=error_responses(422),
    )
    async def logout(payload: RefreshRequest, origin: RequestOrigin, session: Session) -> None:
        """End the session of a refresh token. Idempotent: unknown tokens also get 204."""
        await service.log_out(
            session,
            refresh_token=payload.refresh_token,
            tokens=kit.tokens,
            origin=origin,
            now=kit.clock(),
        )
        await session.commit()

    @router.post(
        "/logout-all",
        name="auth:logout_all",
        status_code=204,
        responses=error_responses(400, 401, 422),
    )
    async def logout_all(
        request: Request,
        user: AttachedUser,
        origin: RequestOrigin,
        session: Session,
        keep_current: Annotated[
            bool, Query(description="Keep the session of the calling token.")
        ] = False,
    ) -> None:
        """End every session of the caller and invalidate all their access tokens.

        With `keep_current=true` the session of the calling token stays: its refresh token
        keeps working, but its access token stops like all the others, so refresh once to go
        on. A token that belongs to no session (made outside a login) is then 400.
        """
        keep = None
        if keep_current:
            claims = claims_of(request)
            keep = claims.session_id if claims else None
            if keep is None:
                raise InvalidRequest("This token belongs to no session to keep.")
        await service.log_out_everywhere(
            session, user=user, origin=origin, now=kit.clock(), keep_session_id=keep
        )
        await session.commit()

    @router.get(
        "/sessions",
        name="auth:sessions",
        response_model=list[SessionRead],
        responses=error_responses(401),
    )
    async def sessions(request: Request, user: CurrentUser, session: Session) -> Any:
        """The caller's active sessions; `current` marks the one this token belongs to."""
        claims = claims_of(request)
        current_id = claims.session_id if claims else None
        active = await service.list_active_sessions(session, user_id=user.id, now=kit.clock())
        return [
            SessionRead.model_validate(item).model_copy(update={"current": item.id == current_id})
            for item in active
        ]

    @router.delete(
        "/sessions/{session_id}",
        name="auth:end_session",
        status_code=204,
        responses=error_responses(401, 404, 422),
    )
    async def end_session(
        session_id: Annotated[int, Path(ge=1, le=MAX_DB_INT)],
        user: CurrentUser,
        origin: RequestOrigin,
        session: Session,
    ) -> None:
        """End one of your sessions (its refresh token stops working). Others' are 404."""
        await service.end_session(
            session, user_id=user.id, session_id=session_id, origin=origin, now=kit.clock()
        )
        await session.commit()

    router.include_router(build_lifecycle_router(kit))
    router.include_router(build_mfa_router(kit))
    router.include_router(build_browser_router(kit), prefix="/browser")
    router.include_router(build_oauth_router(kit), prefix="/oauth")
    return router


def _token_pair(issued: service.IssuedTokens) -> TokenPair:
    return TokenPair(
        access_token=issued.access_token,
        refresh_token=issued.refresh_token,
        expires_in=issued.expires_in,
    )
