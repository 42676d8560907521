"""Redeeming the links of account mails: resetting a forgotten password, verifying an email.

Services take the session first, never commit and raise domain errors. Each redemption is one
conditional UPDATE on the state the token is bound to (see
:mod:`starterkit.auth.account_tokens`), so of concurrent uses of one token exactly one wins,
on SQLite and PostgreSQL alike, and every later use finds the state changed.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from starterkit.auth.account_tokens import AccountTokens, TokenPurpose
from starterkit.auth.passwords import PasswordHasher, check_new_password
from starterkit.auth.service import end_all_sessions
from starterkit.db.models import User
from starterkit.exceptions import InvalidAccountToken


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
    now: datetime,
) -> User:
    """Set a new password with a password-reset token; end every session and access token.

    The token proves control of the mailbox, so the email also counts as verified afterwards.

    Raises:
        InvalidAccountToken: the token is invalid, expired or already used.
        InvalidPassword: the new password breaks a rule (``field`` is ``new_password``); the
            token stays usable.
    """
    user = await user_of_token(
        session, purpose=TokenPurpose.PASSWORD_RESET, token=token, account_tokens=account_tokens
    )
    check_new_password(
        new_password, email=user.email, min_length=password_min_length, field="new_password"
    )
    new_hash = await hasher.hash(new_password)
    # Only if the hash is still the one the token was checked against: a concurrent use of
    # the same token has changed it, and then this one matches no row.
    changed = await session.execute(
        update(User)
        .where(
            User.id == user.id,
            User.email == user.email,
            User.hashed_password == user.hashed_password,
        )
        .values(hashed_password=new_hash, is_verified=True, updated_at=now)
        .returning(User.id)
        .execution_options(synchronize_session=False)
    )
    if changed.scalar_one_or_none() is None:
        raise InvalidAccountToken
    _as_stored(user, hashed_password=new_hash, is_verified=True, updated_at=now)
    await end_all_sessions(session, user=user, now=now, reason="password-reset")
    return user


async def verify_email(
    session: AsyncSession, *, token: str, account_tokens: AccountTokens, now: datetime
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
    _as_stored(user, is_verified=True, updated_at=now)
    return user


def _as_stored(user: User, **values: object) -> None:
    """Record values an UPDATE already stored as loaded, so no later flush writes them again."""
    for key, value in values.items():
        set_committed_value(user, key, value)
