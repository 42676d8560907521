"""``/auth`` routes: login, refresh, logout, logout-all, the caller's sessions, and (from
:mod:`starterkit.auth.lifecycle_router`) forgot/reset password and email verification.

Built by :func:`build_auth_router` for one :class:`StarterKit`; mount it under any prefix.
No ``from __future__ import annotations`` here: FastAPI reads these annotations at runtime.
"""

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from starterkit.auth import service
from starterkit.auth.dependencies import claims_of
from starterkit.auth.events import EventType, origin_of, record_event
from starterkit.auth.lifecycle_router import build_lifecycle_router
from starterkit.auth.schemas import LoginRequest, RefreshRequest, SessionRead, TokenPair
from starterkit.db.models import User
from starterkit.exceptions import (
    AuthenticationFailed,
    EmailNotVerified,
    InvalidToken,
    RefreshTokenReused,
)
from starterkit.ratelimit import limit_per_client, parse_limit, raise_if_refused
from starterkit.schemas import MAX_DB_INT, error_responses

if TYPE_CHECKING:
    from starterkit.app import StarterKit

logger = logging.getLogger("starterkit.auth")

# RFC 6749 §5.1: responses carrying tokens must not be stored by any cache.
TOKEN_HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache"}

_FORM_SCHEMA = {
    "type": "object",
    "required": ["username", "password"],
    "properties": {
        "username": {"type": "string", "description": "The account's email address."},
        "password": {"type": "string", "format": "password"},
        "grant_type": {"type": "string", "enum": ["password"]},
    },
}


async def read_login(request: Request) -> LoginRequest:
    """Parse JSON ``{email, password}`` or the OAuth2 password form into a LoginRequest."""
    body = await request.body()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if content_type == "application/x-www-form-urlencoded":
            try:
                form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
            except UnicodeDecodeError:
                form = {}
            return LoginRequest.model_validate(
                {"email": form.get("username"), "password": form.get("password")}
            )
        return LoginRequest.model_validate_json(body or b"null")
    except ValidationError as error:
        errors = error.errors(include_url=False, include_input=False, include_context=False)
        for item in errors:
            field = item["loc"][0] if item["loc"] else None
            if content_type == "application/x-www-form-urlencoded" and field == "email":
                field = "username"
            item["loc"] = ("body", *((field,) if field is not None else ()), *item["loc"][1:])
        raise RequestValidationError(errors) from None


def build_auth_router(kit: "StarterKit", *, tags: Sequence[str] = ("auth",)) -> APIRouter:
    """The auth routes of ``kit``; include it with any prefix (``create_app`` uses /auth)."""
    router = APIRouter(tags=list(tags))
    Session = Annotated[AsyncSession, Depends(kit.db_session)]
    CurrentUser = Annotated[User, Depends(kit.current_user)]
    settings = kit.settings
    login_limit = Depends(limit_per_client(kit, "login", settings.auth_login_rate_limit))
    refresh_limit = Depends(limit_per_client(kit, "refresh", settings.auth_refresh_rate_limit))
    account_limit = parse_limit(settings.auth_login_account_rate_limit)

    @router.post(
        "/login",
        name="auth:login",
        response_model=TokenPair,
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
    async def login(request: Request, response: Response, session: Session) -> TokenPair:
        """Exchange email and password for an access token and a refresh token.

        Takes JSON `{"email", "password"}` or the OAuth2 password form (`username`,
        `password`), so the Authorize button of these docs works. Every failure is the same
        401, whether the email is unknown, the password wrong or the account inactive.
        Limited per client IP (every attempt) and per account (failed attempts only).
        """
        credentials = await read_login(request)
        origin = origin_of(request, kit.settings.trusted_proxies)
        account = credentials.email.strip().lower()
        raise_if_refused(await kit.rate_limits.peek("login-account", account_limit, account))
        now = kit.clock()

        async def record_failure(user_id: int | None) -> None:
            # In a fresh transaction: the failed attempt may have left the session dirty.
            await session.rollback()
            record_event(
                session,
                event_type=EventType.LOGIN_FAILED,
                origin=origin,
                now=now,
                user_id=user_id,
                email=account,
            )
            await session.commit()

        try:
            user = await service.authenticate(
                session,
                email=credentials.email,
                password=credentials.password,
                hasher=kit.password_hasher,
                require_verified=not settings.allow_unverified_login,
            )
        except EmailNotVerified as refusal:
            # Only said after a correct password, so it reveals nothing to a guesser.
            await record_failure(refusal.user_id)
            raise
        except AuthenticationFailed as failure:
            # Never the typed email (personal data, or a password typed into the wrong field);
            # the audit log keeps it in the database.
            who = f"user {failure.user_id}" if failure.user_id else "an unknown email"
            logger.info("login failed for %s from %s", who, origin.ip)
            await kit.rate_limits.hit("login-account", account_limit, account)
            await record_failure(failure.user_id)
            raise
        issued = await service.start_session(
            session,
            user=user,
            tokens=kit.tokens,
            lifetimes=kit.session_lifetimes,
            now=now,
            user_agent=origin.user_agent,
            ip=origin.ip,
        )
        record_event(
            session, event_type=EventType.LOGIN_SUCCEEDED, origin=origin, now=now, user_id=user.id
        )
        await session.commit()
        logger.info("login: user %s, session %s, from %s", user.id, issued.session_id, origin.ip)
        await kit.hooks.fire("on_after_login", user, request)
        response.headers.update(TOKEN_HEADERS)
        return _token_pair(issued)

    @router.post(
        "/refresh",
        name="auth:refresh",
        response_model=TokenPair,
        dependencies=[refresh_limit],
        responses=error_responses(401, 422, 429),
    )
    async def refresh(
        payload: RefreshRequest, request: Request, response: Response, session: Session
    ) -> TokenPair:
        """Exchange a refresh token for a new pair. Each refresh token works once.

        Presenting a refresh token that was already used revokes its whole session (the
        token must have been copied); the other sessions of the account are not affected.
        """
        origin = origin_of(request, kit.settings.trusted_proxies)
        try:
            issued = await service.rotate_refresh_token(
                session,
                refresh_token=payload.refresh_token,
                tokens=kit.tokens,
                lifetimes=kit.session_lifetimes,
                now=kit.clock(),
                ip=origin.ip,
            )
        except RefreshTokenReused as reuse:
            record_event(
                session,
                event_type=EventType.REFRESH_TOKEN_REUSED,
                origin=origin,
                now=kit.clock(),
                user_id=reuse.user_id,
            )
            await session.commit()  # the revocation and its record must stick
            await kit.hooks.fire("on_refresh_token_reuse", reuse.user_id, reuse.session_id, request)
            raise
        except InvalidToken:
            await session.commit()  # an inactive user's session was revoked
            raise
        await session.commit()
        response.headers.update(TOKEN_HEADERS)
        return _token_pair(issued)

    @router.post(
        "/logout",
        name="auth:logout",
        status_code=204,
        responses=error_responses(422),
    )
    async def logout(payload: RefreshRequest, request: Request, session: Session) -> None:
        """End the session of a refresh token. Idempotent: unknown tokens also get 204."""
        now = kit.clock()
        ended = await service.end_session_by_refresh_token(
            session, refresh_token=payload.refresh_token, tokens=kit.tokens, now=now
        )
        if ended is not None:
            origin = origin_of(request, kit.settings.trusted_proxies)
            record_event(
                session, event_type=EventType.LOGOUT, origin=origin, now=now, user_id=ended.user_id
            )
        await session.commit()

    @router.post(
        "/logout-all",
        name="auth:logout_all",
        status_code=204,
        responses=error_responses(401),
    )
    async def logout_all(request: Request, user: CurrentUser, session: Session) -> None:
        """End every session of the caller and invalidate all their access tokens."""
        session.add(user)  # kit.current_user is detached: its token version changes
        now = kit.clock()
        await service.end_all_sessions(session, user=user, now=now)
        origin = origin_of(request, kit.settings.trusted_proxies)
        record_event(
            session, event_type=EventType.LOGOUT_ALL, origin=origin, now=now, user_id=user.id
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
        request: Request,
        user: CurrentUser,
        session: Session,
    ) -> None:
        """End one of your sessions (its refresh token stops working). Others' are 404."""
        now = kit.clock()
        await service.end_session(session, user_id=user.id, session_id=session_id, now=now)
        origin = origin_of(request, kit.settings.trusted_proxies)
        record_event(
            session, event_type=EventType.SESSION_ENDED, origin=origin, now=now, user_id=user.id
        )
        await session.commit()

    router.include_router(build_lifecycle_router(kit))
    return router


def _token_pair(issued: service.IssuedTokens) -> TokenPair:
    return TokenPair(
        access_token=issued.access_token,
        refresh_token=issued.refresh_token,
        expires_in=issued.expires_in,
    )
