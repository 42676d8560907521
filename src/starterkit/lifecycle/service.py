"""Account recovery and verification: making and redeeming the tokens of mailed links.

Services take the session first, never commit and raise domain errors; each records its audit
event from the ``origin`` it is given. A redemption changes the state its token is bound to
(see :mod:`starterkit.lifecycle.tokens`) in one conditional UPDATE, so of concurrent uses of one
token exactly one wins, on SQLite and PostgreSQL alike, and every later use finds the state
changed.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from starterkit.audit import EventType, Origin, record_event
from starterkit.auth.passwords import PasswordHasher
from starterkit.db.models import User
from starterkit.exceptions import InvalidAccountToken
from starterkit.lifecycle.tokens import AccountTokens, TokenPurpose
from starterkit.oauth import service as oauth_service
from starterkit.users.service import get_user_by_email, set_password


async def request_password_reset(
    session: AsyncSession,
    *,
    email: str,
    account_tokens: AccountTokens,
    origin: Origin,
    now: datetime,
) -> tuple[User, str] | None:
    """A password-reset token for the active account with ``email``, and that account.

    Records ``password_reset_requested``. None (and nothing recorded) when no active account
    has this email: the caller answers exactly as if there were one.
    """
    user = await get_user_by_email(session, email)
    if user is None or not user.is_active:
        return None
    token = account_tokens.issue(TokenPurpose.PASSWORD_RESET, user)
    record_event(
        session,
        event_type=EventType.PASSWORD_RESET_REQUESTED,
        origin=origin,
        now=now,
        user_id=user.id,
    )
    return user, token


async def request_verification(
    session: AsyncSession, *, email: str, account_tokens: AccountTokens
) -> tuple[User, str] | None:
    """A verification token for the active, unverified account with ``email``, and that account.

    None when there is no such account: the caller answers exactly as if there were one.
    """
    user = await get_user_by_email(session, email)
    if user is None or not user.is_active or user.is_verified:
        return None
    return user, account_tokens.issue(TokenPurpose.VERIFY_EMAIL, user)


async def user_of_token(
    session: AsyncSession, *, purpose: TokenPurpose, token: str, account_tokens: AccountTokens
) -> User:
    """The active user a valid, unexpired, still-bound token of ``purpose`` belongs to.

    Raises:
        InvalidAccountToken: the token is forged, expired, of another purpose, or its user is
            gone, inactive or no longer in the state it was issued for.
    """
    claims = account_tokens.read(purpose, token)
    user = await session.get(User, claims.user_id)
    if user is None or not user.is_active or not account_tokens.matches(claims, user):
        raise InvalidAccountToken
    return user


async def reset_password(
    session: AsyncSession,
    *,
    token: str,
    new_password: str,
    account_tokens: AccountTokens,
    hasher: PasswordHasher,
    password_min_length: int,
    origin: Origin,
    now: datetime,
) -> User:
    """Set a new password with a password-reset token; end every session and access token.

    The token proves control of the mailbox, so the email also counts as verified afterwards;
    social-login identities linked while it was unverified are removed (whoever linked them
    never proved the address).

    Raises:
        InvalidAccountToken: the token is invalid, expired or already used.
        InvalidPassword: the new password breaks a rule (``field`` is ``new_password``); the
            token stays usable.
    """
    user = await user_of_token(
        session, purpose=TokenPurpose.PASSWORD_RESET, token=token, account_tokens=account_tokens
    )
    email_was_unproven = not user.is_verified
    # Written only while the hash is still the one the token was checked against: a
    # concurrent use of the same token has changed it, and then this one matches no row.
    await set_password(
        session,
        user=user,
        new_password=new_password,
        hasher=hasher,
        password_min_length=password_min_length,
        origin=origin,
        now=now,
        stale=InvalidAccountToken(),
        reset=True,
    )
    if email_was_unproven:
        await oauth_service.forget_unproven_links(session, user=user, origin=origin, now=now)
    return user


async def verify_email(
    session: AsyncSession,
    *,
    token: str,
    account_tokens: AccountTokens,
    origin: Origin,
    now: datetime,
) -> User:
    """Mark the email of a verification token's user as verified.

    Raises:
        InvalidAccountToken: the token is invalid or expired, the email was verified already
            or has changed since the token was made.
    """
    user = await user_of_token(
        session, purpose=TokenPurpose.VERIFY_EMAIL, token=token, account_tokens=account_tokens
    )
    verified = await session.execute(
        update(User)
        .where(User.id == user.id, User.email == user.email, User.is_verified.is_(False))
        .values(is_verified=True, updated_at=now)
        .returning(User.id)
        .execution_options(synchronize_session=False)
    )
    if verified.scalar_one_or_none() is None:
        raise InvalidAccountToken
    # Already stored: record as loaded, so no later flush writes it again.
    for key, value in {"is_verified": True, "updated_at": now}.items():
        set_committed_value(user, key, value)
    record_event(
        session, event_type=EventType.EMAIL_VERIFIED, origin=origin, now=now, user_id=user.id
    )
    return user
