"""Login, refresh-token rotation with reuse detection, logout and session management.

Services take the database session first, never commit (the caller owns the unit of work, so a
route commits once) and raise domain errors. Times come in as ``now`` so tests control them.
Each account action records its audit event from the ``origin`` it is given; a refused login
and a replayed refresh token are recorded before the error is raised, and the caller commits
before answering so that the record (and a revocation) sticks.

A *session* (``AuthSession``) is one login: a family of refresh tokens, each used exactly once
to get the next. Using a token consumes it in one conditional UPDATE, so of N concurrent uses
exactly one wins. Presenting a consumed token again is reuse: the token was copied, and the
whole family is revoked (strict rotation; the legitimate client must log in again). Other
sessions of the same user are untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from starterkit.audit import EventType, Origin, record_event
from starterkit.auth.passwords import PasswordHasher
from starterkit.auth.revocation import RevokeReason, revoke_all_sessions, revoke_session
from starterkit.auth.tokens import TokenService
from starterkit.db.models import USER_AGENT_MAX_LENGTH, AuthSession, RefreshToken, User
from starterkit.exceptions import (
    AuthenticationFailed,
    EmailNotVerified,
    InvalidToken,
    MFARequired,
    NotFound,
    RefreshTokenReused,
)
from starterkit.mfa.factors import MFAKeys, PendingMFA, active_totp, open_challenge
from starterkit.users.service import get_user_by_email

logger = logging.getLogger("starterkit.auth")

LOGIN_FAILED = "Incorrect email or password."
# Revoked sessions are kept a while so a replayed token still finds its family.
REVOKED_RETENTION = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class SessionLifetimes:
    """How long refresh tokens live unused (idle), how long a login lasts at most, and how
    soon after its rotation a refresh token may come again without counting as stolen."""

    idle: timedelta
    absolute: timedelta
    reuse_grace: timedelta = timedelta(0)


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    """A new token pair; the refresh token is shown to the client once and never stored."""

    access_token: str
    refresh_token: str
    expires_in: int
    user: User
    session_id: int
    refresh_expires_at: datetime


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
    if user is None or not user.has_password:  # no password: made by a social login
        await hasher.dummy_verify()
        raise AuthenticationFailed(LOGIN_FAILED, user_id=user.id if user else None)
    ok, new_hash = await hasher.verify_and_update(password, user.hashed_password)
    if not ok or not user.is_active:
        raise AuthenticationFailed(LOGIN_FAILED, user_id=user.id)
    if require_verified and not user.is_verified:
        raise EmailNotVerified(user_id=user.id)
    if new_hash is not None:
        user.hashed_password = new_hash
    return user


async def log_in(
    session: AsyncSession,
    *,
    email: str,
    password: str,
    hasher: PasswordHasher,
    tokens: TokenService,
    lifetimes: SessionLifetimes,
    require_verified: bool,
    origin: Origin,
    now: datetime,
    mfa: MFAKeys | None = None,
) -> IssuedTokens | PendingMFA:
    """Check email and password and start a session; see :func:`authenticate`.

    For an account with an active second factor the password only opens a challenge: the
    answer is a :class:`PendingMFA` whose ``mfa_token`` the second step takes, and no session
    starts yet. Without ``mfa`` (a client that cannot do the second step, such as the OAuth2
    form) such an account is refused with :class:`MFARequired`.

    A refusal is recorded as ``login_failed`` (with the email as typed, for the audit log
    only) before it is raised: the caller must commit then too. Call ``await tokens.ready()``
    before the transaction starts: issuing reads the signing keys but never makes the first.

    Raises:
        AuthenticationFailed: unknown email, wrong password or inactive account.
        EmailNotVerified: the password was right but the email must be verified first.
        MFARequired: the password was right, the account has a second factor and ``mfa`` is
            None.
    """
    try:
        user = await authenticate(
            session,
            email=email,
            password=password,
            hasher=hasher,
            require_verified=require_verified,
        )
    except (AuthenticationFailed, EmailNotVerified) as refusal:
        user_id = refusal.user_id
        # Never the typed email in the log (personal data, or a password typed into the wrong
        # field); the audit log keeps it in the database.
        who = f"user {user_id}" if user_id else "an unknown email"
        logger.info("login failed for %s from %s", who, origin.ip)
        record_event(
            session,
            event_type=EventType.LOGIN_FAILED,
            origin=origin,
            now=now,
            user_id=user_id,
            email=email.strip().lower(),
        )
        raise
    if await active_totp(session, user.id) is not None:
        if mfa is None:
            raise MFARequired(user_id=user.id)
        logger.info("login: user %s gave the password; waiting for a second factor", user.id)
        return await open_challenge(session, user=user, keys=mfa, now=now)
    issued = await start_session(
        session, user=user, tokens=tokens, lifetimes=lifetimes, origin=origin, now=now
    )
    record_event(
        session, event_type=EventType.LOGIN_SUCCEEDED, origin=origin, now=now, user_id=user.id
    )
    logger.info("login: user %s, session %s, from %s", user.id, issued.session_id, origin.ip)
    return issued


async def start_session(
    session: AsyncSession,
    *,
    user: User,
    tokens: TokenService,
    lifetimes: SessionLifetimes,
    origin: Origin,
    now: datetime,
    amr: Sequence[str] = ("pwd",),
) -> IssuedTokens:
    """Begin a new session (token family) for ``user`` and issue its first token pair.

    ``amr`` names the methods the login used (RFC 8176): ``pwd``, and ``otp``/``mfa`` after a
    second factor; the session keeps them, and ``now`` as its ``auth_time``, across refreshes.
    """
    auth_session = AuthSession(
        user_id=user.id,
        user_agent=(origin.user_agent or "")[:USER_AGENT_MAX_LENGTH] or None,
        ip=origin.ip,
        created_at=now,
        last_used_at=now,
        expires_at=now + lifetimes.absolute,
        amr=" ".join(amr),
        auth_time=now,
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
    refresh_expires_at = min(now + lifetimes.idle, auth_session.expires_at)
    session.add(
        RefreshToken(
            session_id=auth_session.id,
            token_hash=digest,
            parent_id=parent_id,
            created_at=now,
            expires_at=refresh_expires_at,
        )
    )
    await session.flush()
    await tokens.ready(create=False)  # the caller prepared them before its transaction
    access_token = tokens.issue_access_token(
        user_id=user.id,
        token_version=user.token_version,
        session_id=auth_session.id,
        amr=auth_session.amr.split(),
        auth_time=auth_session.auth_time or auth_session.created_at,
    )
    return IssuedTokens(
        access_token=access_token,
        refresh_token=refresh_token,
        expires_in=int(tokens.access_ttl.total_seconds()),
        user=user,
        session_id=auth_session.id,
        refresh_expires_at=refresh_expires_at,
    )


async def rotate_refresh_token(
    session: AsyncSession,
    *,
    refresh_token: str,
    tokens: TokenService,
    lifetimes: SessionLifetimes,
    origin: Origin,
    now: datetime,
) -> IssuedTokens:
    """Exchange a refresh token for a new pair, consuming it.

    A token that was already used is reuse, unless it comes again within
    ``lifetimes.reuse_grace`` of its own rotation (two tabs, a retried request): then it gets
    another new pair in the same session. The session row is locked before the user is read,
    so a logout-all, password change or deactivation racing this refresh either ends the
    session first (and this fails) or waits for this commit and outdates what it issued.

    Raises:
        RefreshTokenReused: the token was already used, outside the grace window: its session
            is revoked and ``refresh_token_reused`` recorded before this is raised.
        InvalidToken: unknown, expired or revoked, or its user is inactive (whose session is
            then revoked). The caller must commit even on these errors so revocations stick.
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
    token_id, session_id = (
        row
        if row is not None
        else await _used_again(
            session, digest=digest, grace=lifetimes.reuse_grace, origin=origin, now=now
        )
    )
    # FOR UPDATE (PostgreSQL; SQLite runs one writer at a time anyway) and read again: a
    # revocation committed since the UPDATE above is seen now, and a later one waits.
    locked = await session.execute(
        select(AuthSession)
        .where(AuthSession.id == session_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    auth_session = locked.scalar_one()
    if auth_session.revoked_at is not None or auth_session.expires_at <= now:
        raise InvalidToken
    user = await session.get_one(User, auth_session.user_id, populate_existing=True)
    if not user.is_active:
        revoke_session(auth_session, now, reason=RevokeReason.INACTIVE)
        raise InvalidToken
    auth_session.last_used_at = now
    if origin.ip is not None:
        auth_session.ip = origin.ip
    return await _issue(
        session, user=user, auth_session=auth_session, parent_id=token_id, tokens=tokens,
        lifetimes=lifetimes, now=now,
    )  # fmt: skip


async def _used_again(
    session: AsyncSession, *, digest: str, grace: timedelta, origin: Origin, now: datetime
) -> tuple[int, int]:
    """A token that could not be consumed: ``(token id, session id)`` if it may be used again.

    Raises:
        RefreshTokenReused: used before, outside the grace window: the session is revoked.
        InvalidToken: unknown, never used (so expired), or its session already ended.
    """
    found = await session.execute(
        select(RefreshToken, AuthSession)
        .join(AuthSession, AuthSession.id == RefreshToken.session_id)
        .where(RefreshToken.token_hash == digest)
    )
    match = found.first()
    if match is None:
        raise InvalidToken
    token, auth_session = match
    if token.used_at is None or auth_session.revoked_at is not None:
        raise InvalidToken  # expired, or its session already ended: a plain failure
    # A concurrent use may have stamped a time later than this request's ``now``.
    if grace > timedelta(0) and now - token.used_at <= grace:
        logger.info(
            "refresh token of session %s presented again within the grace window",
            auth_session.id,
        )
        return token.id, auth_session.id
    revoke_session(auth_session, now, reason=RevokeReason.REUSE)
    logger.warning(
        "refresh token reuse: revoked session %s of user %s", auth_session.id, auth_session.user_id
    )
    record_event(
        session,
        event_type=EventType.REFRESH_TOKEN_REUSED,
        origin=origin,
        now=now,
        user_id=auth_session.user_id,
    )
    raise RefreshTokenReused(user_id=auth_session.user_id, session_id=auth_session.id)


async def session_of_refresh_token(
    session: AsyncSession, *, refresh_token: str, tokens: TokenService, now: datetime
) -> int | None:
    """The id of the live session a refresh token belongs to (used or not), else None.

    Changes nothing: the browser routes call it to check the CSRF token bound to that session
    before they rotate or end anything.
    """
    found = await session.execute(
        select(AuthSession.id)
        .join(RefreshToken, RefreshToken.session_id == AuthSession.id)
        .where(
            RefreshToken.token_hash == tokens.hash_refresh_token(refresh_token),
            AuthSession.revoked_at.is_(None),
            AuthSession.expires_at > now,
        )
    )
    return found.scalar_one_or_none()


async def log_out(
    session: AsyncSession,
    *,
    refresh_token: str,
    tokens: TokenService,
    origin: Origin,
    now: datetime,
) -> AuthSession | None:
    """End the session a refresh token belongs to; return it (None if unknown or ended)."""
    found = await session.execute(
        select(AuthSession)
        .join(RefreshToken, RefreshToken.session_id == AuthSession.id)
        .where(RefreshToken.token_hash == tokens.hash_refresh_token(refresh_token))
    )
    auth_session = found.scalar_one_or_none()
    if auth_session is None or auth_session.revoked_at is not None:
        return None
    revoke_session(auth_session, now, reason=RevokeReason.LOGOUT)
    record_event(
        session, event_type=EventType.LOGOUT, origin=origin, now=now, user_id=auth_session.user_id
    )
    return auth_session


async def log_out_everywhere(
    session: AsyncSession,
    *,
    user: User,
    origin: Origin,
    now: datetime,
    keep_session_id: int | None = None,
) -> None:
    """End every session of ``user`` (but ``keep_session_id``) and invalidate all access tokens.

    An account deleted meanwhile has nothing left to end, and no event is recorded for it.
    """
    if await revoke_all_sessions(
        session,
        user=user,
        now=now,
        reason=RevokeReason.LOGOUT_ALL,
        keep_session_id=keep_session_id,
    ):
        record_event(
            session, event_type=EventType.LOGOUT_ALL, origin=origin, now=now, user_id=user.id
        )


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
    session: AsyncSession, *, user_id: int, session_id: int, origin: Origin, now: datetime
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
    revoke_session(auth_session, now, reason=RevokeReason.ENDED)
    record_event(
        session, event_type=EventType.SESSION_ENDED, origin=origin, now=now, user_id=user_id
    )


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
