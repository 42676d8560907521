"""Accounts: the email and password rules, and every change to a users row.

Each account action takes the session first and the ``origin`` and ``now`` of the change,
records its audit event in the caller's unit of work and never commits: a route or command
reads *parse, call, commit, fire the hook*. Who may do what to whom (nobody deactivates,
demotes or deletes their own account) is decided here too, so the API and the CLI agree.
"""

from __future__ import annotations

from datetime import datetime

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.exc import StaleDataError

from starterkit.audit import EventType, Origin, record_event
from starterkit.auth.passwords import PasswordHasher, check_new_password
from starterkit.auth.revocation import RevokeReason, revoke_all_sessions
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


def address_key(email: str) -> str:
    """The key of an address's counters (failed logins, mails asked for).

    The address as account lookups normalise it, so that every spelling that reaches one
    account (letter case, full-width letters, an ideographic full stop, other Unicode forms
    email-validator maps to the same address) shares one counter; an address no account can
    have is keyed as typed, trimmed and lower-cased.
    """
    try:
        return normalize_email(email)
    except InvalidRequest:
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
    origin: Origin,
    now: datetime,
    full_name: str | None = None,
    is_superuser: bool = False,
    is_verified: bool = False,
) -> User:
    """Create an account after applying the email and password rules.

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
    record_event(
        session, event_type=EventType.USER_REGISTERED, origin=origin, now=now, user_id=user.id
    )
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
    origin: Origin,
    now: datetime,
    full_name: str | None = None,
    clear_full_name: bool = False,
    new_email: str | None = None,
    current_password: str | None = None,
) -> bool:
    """Apply a user's changes to their own account and flush them.

    A new email needs the current password and makes the account unverified (the new
    address has not been shown to be theirs). Giving the current email again changes nothing.

    Returns:
        Whether the email changed (the caller then mails a verification link).

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
    old_email = user.email
    if new_email is not None:
        if current_password is None:
            raise InvalidRequest("current_password is required to change the email address.")
        await _check_current_password(user, current_password, hasher)
        normalized = normalize_email(new_email)
        if normalized != user.email:
            if await get_user_by_email(session, normalized) is not None:
                raise EmailTaken
            user.email = normalized
            user.is_verified = False
    try:
        await _flush_unless_deleted(session, InvalidToken())
    except IntegrityError:
        raise EmailTaken from None  # lost a race with another account taking this email
    if user.email == old_email:
        return False
    record_event(
        session,
        event_type=EventType.EMAIL_CHANGED,
        origin=origin,
        now=now,
        user_id=user.id,
        email=old_email,
    )
    return True


async def change_password(
    session: AsyncSession,
    *,
    user: User,
    current_password: str,
    new_password: str,
    hasher: PasswordHasher,
    password_min_length: int,
    origin: Origin,
    now: datetime,
) -> None:
    """Replace the password after checking the current one; see :func:`set_password`.

    Raises:
        WrongPassword: ``current_password`` is not the account's password.
        InvalidPassword: the new password breaks a rule (``field`` is ``new_password``).
        InvalidToken: the account was deleted or its password changed by a concurrent
            request meanwhile: this caller's token is as dead as after that change.
    """
    await _check_current_password(user, current_password, hasher)
    await set_password(
        session,
        user=user,
        new_password=new_password,
        hasher=hasher,
        password_min_length=password_min_length,
        origin=origin,
        now=now,
        stale=InvalidToken(),
    )


async def set_password(
    session: AsyncSession,
    *,
    user: User,
    new_password: str,
    hasher: PasswordHasher,
    password_min_length: int,
    origin: Origin,
    now: datetime,
    stale: StarterKitError,
    reset: bool = False,
) -> None:
    """The one way a password is set: by its owner, by a reset link, or with the CLI.

    Applies the password rules, stores the new hash, ends every session and access token of
    the account and records ``password_changed`` (or ``password_reset``). The row is written
    only if its email and hash are still the ones ``user`` was read with, so of two concurrent
    changes (or two uses of one reset link) exactly one wins.

    Args:
        stale: raised when the row changed or went away since ``user`` was read.
        reset: the change redeems a password-reset link, which proves control of the
            mailbox: the email counts as verified afterwards.

    Raises:
        InvalidPassword: the new password breaks a rule (``field`` is ``new_password``).
    """
    check_new_password(
        new_password, email=user.email, min_length=password_min_length, field="new_password"
    )
    new_hash = await hasher.hash(new_password)
    values: dict[str, object] = {"hashed_password": new_hash, "updated_at": now}
    if reset:
        values["is_verified"] = True
    changed = await session.execute(
        update(User)
        .where(
            User.id == user.id,
            User.email == user.email,
            User.hashed_password == user.hashed_password,
        )
        .values(values)
        .returning(User.id)
        .execution_options(synchronize_session=False)
    )
    if changed.scalar_one_or_none() is None:
        raise stale
    for key, value in values.items():
        # Already stored: record as loaded, so no later flush writes it again.
        set_committed_value(user, key, value)
    reason = RevokeReason.PASSWORD_RESET if reset else RevokeReason.PASSWORD_CHANGE
    await revoke_all_sessions(session, user=user, now=now, reason=reason)
    event = EventType.PASSWORD_RESET if reset else EventType.PASSWORD_CHANGED
    record_event(session, event_type=event, origin=origin, now=now, user_id=user.id)


async def update_user(
    session: AsyncSession,
    *,
    user: User,
    actor: User | None,
    origin: Origin,
    now: datetime,
    is_active: bool | None = None,
    is_superuser: bool | None = None,
    full_name: str | None = None,
    clear_full_name: bool = False,
) -> User:
    """Change what an administrator may change; deactivating ends the user's sessions at once.

    Args:
        actor: the superuser making the change, or None for the CLI (a machine operator).

    Raises:
        InvalidRequest: ``actor`` would deactivate or demote their own account, which could
            leave nobody able to administer the service.
        NotFound: the user was deleted by a concurrent request meanwhile.
    """
    if _is_self(actor, user) and (is_active is False or is_superuser is False):
        raise InvalidRequest("You cannot deactivate or demote your own account.")
    if is_superuser is not None:
        user.is_superuser = is_superuser
    if full_name is not None or clear_full_name:
        user.full_name = full_name
    was_active = user.is_active
    if is_active is not None:
        user.is_active = is_active
    await _flush_unless_deleted(session, NotFound(USER_NOT_FOUND))
    if user.is_active != was_active:
        if not user.is_active:
            await revoke_all_sessions(session, user=user, now=now, reason=RevokeReason.DEACTIVATED)
        event = EventType.USER_REACTIVATED if user.is_active else EventType.USER_DEACTIVATED
        record_event(session, event_type=event, origin=origin, now=now, user_id=user.id)
    return user


async def delete_user(session: AsyncSession, *, user: User, actor: User | None) -> None:
    """Delete the account; its items and sessions go with it.

    Raises:
        InvalidRequest: ``actor`` would delete their own account.
    """
    if _is_self(actor, user):
        raise InvalidRequest("You cannot delete your own account.")
    await session.delete(user)
    await session.flush()


def _is_self(actor: User | None, user: User) -> bool:
    return actor is not None and actor.id == user.id


async def _check_current_password(user: User, password: str, hasher: PasswordHasher) -> None:
    ok, _ = await hasher.verify_and_update(password, user.hashed_password)
    if not ok:
        raise WrongPassword


async def _flush_unless_deleted(session: AsyncSession, error: StarterKitError) -> None:
    """Flush pending changes; raise ``error`` if the user's row was deleted since it was read.

    An UPDATE that matches no row is SQLAlchemy's StaleDataError, which would otherwise
    surface as a 500 when the route commits.
    """
    try:
        await session.flush()
    except StaleDataError:
        raise error from None
