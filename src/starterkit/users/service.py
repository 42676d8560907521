"""Account rules and queries. Takes a session first; never commits; never imports FastAPI."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from starterkit.auth.passwords import PasswordHasher, check_new_password
from starterkit.db.models import EMAIL_MAX_LENGTH, User
from starterkit.exceptions import EmailTaken, InvalidRequest


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
