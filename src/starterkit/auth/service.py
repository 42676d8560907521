"""Login, refresh-token rotation with reuse detection, logout and session management.

Services take the database session first, never commit (the caller owns the unit of work, so a
route commits once) and raise domain errors. Times come in as ``now`` so tests control them.

A *session* (``AuthSession``) is one login: a family of refresh tokens, each used exactly once
to get the next. Using a token consumes it in one conditional UPDATE, so of N concurrent uses
exactly one wins. Presenting a consumed token again is reuse: the token was copied, and the
whole family is revoked (strict rotation; the legitimate client must log in again). Other
sessions of the same user are untouched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from starterkit.auth.passwords import PasswordHasher
from starterkit.auth.tokens import TokenService
from starterkit.db.models import USER_AGENT_MAX_LENGTH, AuthSession, RefreshToken, User
from starterkit.exceptions import (
    AuthenticationFailed,
    EmailNotVerified,
    InvalidToken,
    NotFound,
    RefreshTokenReused,
)
from starterkit.users.service import get_user_by_email

logger = logging.getLogger("starterkit.auth")

LOGIN_FAILED = "Incorrect email or password."
# Revoked sessions are kept a while so a replayed token still finds its family.
REVOKED_RETENTION = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class SessionLifetimes:
    """How long refresh tokens live unused (idle) and how long a login lasts at most."""

    idle: timedelta
    absolute: timedelta


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    """A new token pair; the refresh token is shown to the client once and never stored."""

    access_token: str
    refresh_token: str
    expires_in: int
    user: User
    session_id: int


async def authenticate(
    session: AsyncSession,
    *,
    email: str,
    password: str,
    hasher: PasswordHasher,
    require_verified: bool = False,
) -> User:
    """Check an email and password; upgrade an outdated hash on success.

    Unknown emails, wrong passwords and inactive accounts fail identically and take the same
    time (an unknown email still costs one hash verification).

    Raises:
        AuthenticationFailed: with the same message in every case.
        EmailNotVerified: ``require_verified`` and the account's email is not verified; raised
            only after the password was found correct, so it tells a guesser nothing.
    """
    user = await get_user_by_email(session, email)
    if user is None:
        await hasher.dummy_verify()
        raise AuthenticationFailed(LOGIN_FAILED)
    ok, new_hash = await hasher.verify_and_update(password, user.hashed_password)
    if not ok or not user.is_active:
        raise AuthenticationFailed(LOGIN_FAILED, user_id=user.id)
    if require_verified and not user.is_verified:
        raise EmailNotVerified(user_id=user.id)
    if new_hash is not None:
        user.hashed_password = new_hash
    return user


async def start_session(
    session: AsyncSession,
    *,
    user: User,
    tokens: TokenService,
    lifetimes: SessionLifetimes,
    now: datetime,
    user_agent: str | None,
    ip: str | None,
) -> IssuedTokens:
    """Begin a new session (token family) for ``user`` and issue its first token pair."""
    auth_session = AuthSession(
        user_id=user.id,
        user_agent=(user_agent or "")[:USER_AGENT_MAX_LENGTH] or None,
        ip=ip,
        created_at=now,
        last_used_at=now,
        expires_at=now + lifetimes.absolute,
    )
    session.add(auth_session)
    await session.flush()
    return await _issue(
        session, user=user, auth_session=auth_session, parent_id=None, tokens=tokens,
        lifetimes=lifetimes, now=now,
    )  # fmt: skip


async def _issue(
    session: AsyncSession,
    *,
    user: User,
    auth_session: AuthSession,
    parent_id: int | None,
    tokens: TokenService,
    lifetimes: SessionLifetimes,
    now: datetime,
) -> IssuedTokens:
    refresh_token, digest = tokens.new_refresh_token()
    session.add(
        RefreshToken(
            session_id=auth_session.id,
            token_hash=digest,
            parent_id=parent_id,
            created_at=now,
            expires_at=min(now + lifetimes.idle, auth_session.expires_at),
        )
    )
    await session.flush()
    access_token = tokens.issue_access_token(
        user_id=user.id, token_version=user.token_version, session_id=auth_session.id
    )
    return IssuedTokens(
        access_token=access_token,
        refresh_token=refresh_token,
        expires_in=int(tokens.access_ttl.total_seconds()),
        user=user,
        session_id=auth_session.id,
    )


async def rotate_refresh_token(
    session: AsyncSession,
    *,
    refresh_token: str,
    tokens: TokenService,
    lifetimes: SessionLifetimes,
    now: datetime,
    ip: str | None = None,
) -> IssuedTokens:
    """Exchange a refresh token for a new pair, consuming it.

    Raises:
        InvalidToken: unknown, expired, revoked or already used. A token that was already used
            revokes its session (reuse detection) before this is raised; the caller must
            commit even on this error so the revocation sticks.
    """
    digest = tokens.hash_refresh_token(refresh_token)
    live_sessions = select(AuthSession.id).where(
        AuthSession.revoked_at.is_(None), AuthSession.expires_at > now
    )
    consumed = await session.execute(
        update(RefreshToken)
        .where(
            RefreshToken.token_hash == digest,
            RefreshToken.used_at.is_(None),
            RefreshToken.expires_at > now,
            RefreshToken.session_id.in_(live_sessions),
        )
        .values(used_at=now)
        .returning(RefreshToken.id, RefreshToken.session_id)
        .execution_options(synchronize_session=False)
    )
    row = consumed.first()
    if row is None:
        reused = await _detect_reuse(session, digest=digest, now=now)
        if reused is not None:
            raise RefreshTokenReused(user_id=reused.user_id, session_id=reused.id)
        raise InvalidToken
    token_id, session_id = row
    auth_session = await session.get_one(AuthSession, session_id)
    user = await session.get_one(User, auth_session.user_id)
    if not user.is_active:
        _revoke(auth_session, now, reason="inactive")
        raise InvalidToken
    auth_session.last_used_at = now
    if ip is not None:
        auth_session.ip = ip
    return await _issue(
        session, user=user, auth_session=auth_session, parent_id=token_id, tokens=tokens,
        lifetimes=lifetimes, now=now,
    )  # fmt: skip


async def _detect_reuse(session: AsyncSession, *, digest: str, now: datetime) -> AuthSession | None:
    """Revoke the family of a token presented after it had been used; return that family."""
    found = await session.execute(
        select(RefreshToken, AuthSession)
        .join(AuthSession, AuthSession.id == RefreshToken.session_id)
        .where(RefreshToken.token_hash == digest)
    )
    match = found.first()
    if match is None:
        return None
    token, auth_session = match
    if token.used_at is None or auth_session.revoked_at is not None:
        return None  # expired, or its session already ended: a plain failure
    _revoke(auth_session, now, reason="reuse")
    logger.warning(
        "refresh token reuse: revoked session %s of user %s", auth_session.id, auth_session.user_id
    )
    return auth_session


def _revoke(auth_session: AuthSession, now: datetime, *, reason: str) -> None:
    if auth_session.revoked_at is None:
        auth_session.revoked_at = now
        auth_session.revoked_reason = reason


async def end_session_by_refresh_token(
    session: AsyncSession, *, refresh_token: str, tokens: TokenService, now: datetime
) -> AuthSession | None:
    """Log out the session a refresh token belongs to; return it (None if unknown)."""
    found = await session.execute(
        select(AuthSession)
        .join(RefreshToken, RefreshToken.session_id == AuthSession.id)
        .where(RefreshToken.token_hash == tokens.hash_refresh_token(refresh_token))
    )
    auth_session = found.scalar_one_or_none()
    if auth_session is not None and auth_session.revoked_at is None:
        _revoke(auth_session, now, reason="logout")
        return auth_session
    return None


async def end_all_sessions(
    session: AsyncSession, *, user: User, now: datetime, reason: str = "logout-all"
) -> None:
    """Revoke every session of ``user`` and invalidate their outstanding access tokens.

    The token version is bumped in the database (``token_version + 1``), not read, changed and
    written back: concurrent bumps all count, and a user deleted meanwhile is simply left
    alone (their sessions went with them) instead of failing the flush with a 500.
    """
    await session.execute(
        update(AuthSession)
        .where(AuthSession.user_id == user.id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
        .execution_options(synchronize_session=False)
    )
    bumped = await session.execute(
        update(User)
        .where(User.id == user.id)
        .values(token_version=User.token_version + 1)
        .returning(User.token_version)
        .execution_options(synchronize_session=False)
    )
    version = bumped.scalar_one_or_none()
    if version is not None:
        # Already stored: record it as loaded, so the next flush does not write it again.
        set_committed_value(user, "token_version", version)


async def list_active_sessions(
    session: AsyncSession, *, user_id: int, now: datetime
) -> list[AuthSession]:
    """The user's sessions that can still be refreshed, most recently used first."""
    result = await session.execute(
        select(AuthSession)
        .where(
            AuthSession.user_id == user_id,
            AuthSession.revoked_at.is_(None),
            AuthSession.expires_at > now,
        )
        .order_by(AuthSession.last_used_at.desc(), AuthSession.id.desc())
    )
    return list(result.scalars())


async def end_session(
    session: AsyncSession, *, user_id: int, session_id: int, now: datetime
) -> None:
    """End one of the user's own sessions.

    Raises:
        NotFound: no such active session of this user (someone else's looks the same).
    """
    auth_session = await session.get(AuthSession, session_id)
    if (
        auth_session is None
        or auth_session.user_id != user_id
        or auth_session.revoked_at is not None
        or auth_session.expires_at <= now
    ):
        raise NotFound("Session not found.")
    _revoke(auth_session, now, reason="ended")


async def purge_expired_sessions(session: AsyncSession, *, now: datetime) -> int:
    """Delete expired sessions, sessions revoked more than a day ago, and expired tokens.

    Returns:
        How many sessions were deleted (their tokens go with them).
    """
    result = await session.execute(
        delete(AuthSession).where(
            or_(
                AuthSession.expires_at <= now,
                and_(
                    AuthSession.revoked_at.is_not(None),
                    AuthSession.revoked_at <= now - REVOKED_RETENTION,
                ),
            )
        )
    )
    await session.execute(delete(RefreshToken).where(RefreshToken.expires_at <= now))
    return int(getattr(result, "rowcount", 0) or 0)
