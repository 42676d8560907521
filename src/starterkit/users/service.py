"""Account rules and queries. Takes a session first; never commits; never imports FastAPI."""

from __future__ import annotations

from datetime import datetime

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from starterkit.auth.passwords import PasswordHasher, check_new_password
from starterkit.db.models import EMAIL_MAX_LENGTH, User
from starterkit.exceptions import (
    EmailTaken,
    InvalidRequest,
    InvalidToken,
    NotFound,
    StarterKitError,
    WrongPassword,
)

USER_NOT_FOUND = "User not found."


def normalize_email(email: str) -> str:
    """Validate an email address and return it trimmed and lower-cased.

    Raises:
        InvalidRequest: the address is not syntactically valid.
    """
    candidate = email.strip()
    if len(candidate) > EMAIL_MAX_LENGTH:
        raise InvalidRequest(f"The email address is longer than {EMAIL_MAX_LENGTH} characters.")
    try:
        normalized = validate_email(candidate, check_deliverability=False).normalized
    except EmailNotValidError as error:
        raise InvalidRequest(f"The email address is not valid: {error}") from None
    return normalized.lower()


def normalize_lookup_email(email: str) -> str:
    """Like :func:`normalize_email`, but also pass an address at a special-use domain.

    For addresses that are only looked up (forgot-password, request-verify): no account can
    have one at ``.test``, ``.local`` and the like, since registration refuses them, and those
    endpoints answer an unknown address exactly like a known one.

    Raises:
        InvalidRequest: the address is not syntactically valid.
    """
    try:
        return normalize_email(email)
    except InvalidRequest:
        local, at, domain = email.strip().rpartition("@")
        top_label = domain.rstrip(".").rsplit(".", 1)[-1].lower()
        if not at or top_label not in SPECIAL_USE_DOMAIN_NAMES:
            raise
        normalize_email(f"{local}@example.com")  # the part before the @ must still be valid
        return email.strip().lower()


async def get_user_by_email(session: AsyncSession, email: str) -> User | None:
    """The user with this email (compared normalised), or None."""
    try:
        normalized = normalize_email(email)
    except InvalidRequest:
        return None
    result = await session.execute(select(User).where(User.email == normalized))
    return result.scalar_one_or_none()


async def create_user(
    session: AsyncSession,
    *,
    email: str,
    password: str,
    hasher: PasswordHasher,
    password_min_length: int,
    full_name: str | None = None,
    is_superuser: bool = False,
    is_verified: bool = False,
) -> User:
    """Create an account after applying the email and password rules; the caller commits.

    Raises:
        InvalidRequest: the email is not valid.
        InvalidPassword: the password breaks a password rule.
        EmailTaken: another account has this email, also when it was created concurrently (the
            session must then be rolled back).
    """
    normalized = normalize_email(email)
    check_new_password(password, email=normalized, min_length=password_min_length)
    if await get_user_by_email(session, normalized) is not None:
        raise EmailTaken
    user = User(
        email=normalized,
        hashed_password=await hasher.hash(password),
        full_name=full_name,
        is_superuser=is_superuser,
        is_verified=is_verified,
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError:
        # Lost a race with a concurrent registration of the same email.
        raise EmailTaken from None
    return user


async def get_user(session: AsyncSession, user_id: int) -> User:
    """The user with this id.

    Raises:
        NotFound: there is none.
    """
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound(USER_NOT_FOUND)
    return user


async def list_users(session: AsyncSession, *, limit: int, offset: int) -> tuple[list[User], int]:
    """One page of users in id order, and the total count."""
    total = await session.scalar(select(func.count()).select_from(User))
    result = await session.execute(select(User).order_by(User.id).limit(limit).offset(offset))
    return list(result.scalars()), int(total or 0)


async def update_own_account(
    session: AsyncSession,
    *,
    user: User,
    hasher: PasswordHasher,
    full_name: str | None = None,
    clear_full_name: bool = False,
    new_email: str | None = None,
    current_password: str | None = None,
) -> bool:
    """Apply a user's changes to their own account and flush them.

    A new email needs the current password and makes the account unverified (the new
    address has not been shown to be theirs). Giving the current email again changes nothing.

    Returns:
        Whether the email changed.

    Raises:
        WrongPassword: a new email came with a wrong ``current_password``.
        InvalidRequest: a new email came without ``current_password``, or is not valid.
        EmailTaken: another account has the new email, also when it took it concurrently
            (the session must then be rolled back).
        InvalidToken: the account was deleted by a concurrent request meanwhile (the flush
            would otherwise fail with SQLAlchemy's StaleDataError, a 500).
    """
    if full_name is not None or clear_full_name:
        user.full_name = full_name
    email_changed = False
    if new_email is not None:
        if current_password is None:
            raise InvalidRequest("current_password is required to change the email address.")
        ok, _ = await hasher.verify_and_update(current_password, user.hashed_password)
        if not ok:
            raise WrongPassword
        normalized = normalize_email(new_email)
        if normalized != user.email:
            if await get_user_by_email(session, normalized) is not None:
                raise EmailTaken
            user.email = normalized
            user.is_verified = False
            email_changed = True
    try:
        await _flush_unless_deleted(session, InvalidToken())
    except IntegrityError:
        raise EmailTaken from None  # lost a race with another account taking this email
    return email_changed


async def change_password(
    session: AsyncSession,
    *,
    user: User,
    current_password: str,
    new_password: str,
    hasher: PasswordHasher,
    password_min_length: int,
    now: datetime,
) -> None:
    """Replace the password after checking the current one; end every session.

    Raises:
        WrongPassword: ``current_password`` is not the account's password.
        InvalidPassword: the new password breaks a rule (``field`` is ``new_password``).
        InvalidToken: the account was deleted by a concurrent request meanwhile.
    """
    from starterkit.auth.service import end_all_sessions  # noqa: PLC0415 - avoids a cycle

    ok, _ = await hasher.verify_and_update(current_password, user.hashed_password)
    if not ok:
        raise WrongPassword
    check_new_password(
        new_password, email=user.email, min_length=password_min_length, field="new_password"
    )
    user.hashed_password = await hasher.hash(new_password)
    await end_all_sessions(session, user=user, now=now, reason="password-change")
    # The caller's own account is gone: its token is as dead as after a deletion.
    await _flush_unless_deleted(session, InvalidToken())


async def set_user_flags(
    session: AsyncSession,
    *,
    user: User,
    now: datetime,
    is_active: bool | None = None,
    is_superuser: bool | None = None,
    full_name: str | None = None,
    clear_full_name: bool = False,
) -> User:
    """Change what a superuser may change; deactivating ends the user's sessions at once.

    Raises:
        NotFound: the user was deleted by a concurrent request meanwhile.
    """
    from starterkit.auth.service import end_all_sessions  # noqa: PLC0415 - avoids a cycle

    if is_superuser is not None:
        user.is_superuser = is_superuser
    if full_name is not None or clear_full_name:
        user.full_name = full_name
    if is_active is not None and is_active != user.is_active:
        user.is_active = is_active
        if not is_active:
            await end_all_sessions(session, user=user, now=now, reason="deactivated")
    await _flush_unless_deleted(session, NotFound(USER_NOT_FOUND))
    return user


async def delete_user(session: AsyncSession, *, user: User) -> None:
    """Delete the account; its items and sessions go with it."""
    await session.delete(user)
    await session.flush()


async def _flush_unless_deleted(session: AsyncSession, error: StarterKitError) -> None:
    """Flush pending changes; raise ``error`` if the user's row was deleted since it was read.

    An UPDATE that matches no row is SQLAlchemy's StaleDataError, which would otherwise
    surface as a 500 when the route commits.
    """
    try:
        await session.flush()
    except StaleDataError:
        raise error from None
