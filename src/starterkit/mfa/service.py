"""Account actions of the second factor: set up, confirm, remove and reset TOTP, recovery
codes, the second step of a login, and re-authentication (step-up).

Like the other services these take the database session first, never commit, record their
own audit events from ``origin`` and raise domain errors. A refused code is recorded
(``mfa_failed``) and counted on its challenge before the error is raised: the caller commits
then too. A TOTP code is accepted once: its time step is claimed with one conditional UPDATE,
so of two requests with the same code exactly one wins; recovery codes likewise.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from starterkit.audit import EventType, Origin, record_event
from starterkit.auth.passwords import PasswordHasher
from starterkit.auth.revocation import RevokeReason, revoke_all_sessions
from starterkit.auth.service import IssuedTokens, SessionLifetimes, start_session
from starterkit.auth.tokens import TokenService
from starterkit.db.models import AuthSession, MFAChallenge, RecoveryCode, TOTPFactor, User
from starterkit.exceptions import (
    AuthenticationFailed,
    Conflict,
    InvalidRequest,
    InvalidToken,
    NotFound,
)
from starterkit.mfa import codes
from starterkit.mfa.factors import MFAKeys, active_totp

# RFC 8176 authentication methods: a password, then a one-time password as the second factor.
AMR_TWO_FACTORS = ("pwd", "otp", "mfa")
MFA_TOKEN_INVALID = "The MFA token is invalid, was used or has expired; log in again."  # noqa: S105
CODE_INCORRECT = "The code is incorrect."


@dataclass(frozen=True, slots=True)
class MFAStatus:
    """Which factors an account has."""

    totp: bool
    recovery_codes_left: int


@dataclass(frozen=True, slots=True)
class TOTPSetup:
    """A pending TOTP factor, shown once: the secret, its URI and the URI's QR code."""

    secret: str
    otpauth_uri: str
    qr_svg: str


@dataclass(frozen=True, slots=True)
class MFALogin:
    """A login finished with a second factor; ``recovery_codes_left`` when a code was used."""

    issued: IssuedTokens
    recovery_codes_left: int | None


@dataclass(frozen=True, slots=True)
class Reauthenticated:
    """A fresh access token for the same session, with a new ``auth_time``."""

    access_token: str
    expires_in: int


async def mfa_status(session: AsyncSession, *, user_id: int) -> MFAStatus:
    """Whether TOTP is active and how many unused recovery codes are left."""
    factor = await active_totp(session, user_id)
    return MFAStatus(
        totp=factor is not None,
        recovery_codes_left=await _codes_left(session, user_id) if factor is not None else 0,
    )


async def begin_totp_setup(
    session: AsyncSession, *, user: User, keys: MFAKeys, now: datetime
) -> TOTPSetup:
    """Make a pending TOTP factor, replacing an earlier pending one; login does not ask for it
    until :func:`confirm_totp`.

    Raises:
        Conflict: TOTP is already active (remove it first), or another setup ran at once.
    """
    factor = await session.get(TOTPFactor, user.id)
    if factor is not None and factor.confirmed_at is not None:
        raise Conflict("TOTP is already enabled; remove it before setting it up again.")
    secret = codes.new_totp_secret()
    if factor is None:
        session.add(
            TOTPFactor(
                user_id=user.id, secret=keys.box.encrypt(secret), last_used_step=0, created_at=now
            )
        )
    else:
        factor.secret = keys.box.encrypt(secret)
        factor.last_used_step = 0
        factor.created_at = now
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict("Another TOTP setup of this account ran at the same time.") from None
    uri = codes.provisioning_uri(secret, account=user.email, issuer=keys.issuer)
    return TOTPSetup(secret=secret, otpauth_uri=uri, qr_svg=codes.qr_svg(uri))


async def confirm_totp(
    session: AsyncSession, *, user: User, code: str, keys: MFAKeys, origin: Origin, now: datetime
) -> list[str]:
    """Activate the pending factor with a code from the app; return new recovery codes.

    Raises:
        InvalidRequest: no pending factor, or a wrong code (which changes nothing).
    """
    factor = await session.get(TOTPFactor, user.id)
    if factor is None or factor.confirmed_at is not None:
        raise InvalidRequest("There is no TOTP setup to confirm; start one first.")
    step = codes.matching_step(
        keys.box.decrypt(factor.secret), code, now=now, after_step=factor.last_used_step
    )
    if step is None:
        raise InvalidRequest(CODE_INCORRECT)
    factor.confirmed_at = now
    factor.last_used_step = step
    recovery = await _replace_recovery_codes(session, user_id=user.id, keys=keys, now=now)
    record_event(session, event_type=EventType.MFA_ENABLED, origin=origin, now=now, user_id=user.id)
    return recovery


async def regenerate_recovery_codes(
    session: AsyncSession, *, user: User, keys: MFAKeys, origin: Origin, now: datetime
) -> list[str]:
    """A new set of recovery codes; the old set stops working.

    Raises:
        InvalidRequest: the account has no active TOTP factor.
    """
    if await active_totp(session, user.id) is None:
        raise InvalidRequest("Enable TOTP before asking for recovery codes.")
    recovery = await _replace_recovery_codes(session, user_id=user.id, keys=keys, now=now)
    record_event(
        session,
        event_type=EventType.RECOVERY_CODES_REGENERATED,
        origin=origin,
        now=now,
        user_id=user.id,
    )
    return recovery


async def remove_totp(session: AsyncSession, *, user: User, origin: Origin, now: datetime) -> None:
    """Remove the TOTP factor (active or pending) and the recovery codes.

    Raises:
        NotFound: the account has no TOTP factor.
    """
    factor = await session.get(TOTPFactor, user.id)
    if factor is None:
        raise NotFound("There is no TOTP factor to remove.")
    active = factor.confirmed_at is not None
    await _delete_factors(session, user.id)
    if active:
        record_event(
            session, event_type=EventType.MFA_DISABLED, origin=origin, now=now, user_id=user.id
        )


async def reset_mfa(session: AsyncSession, *, user: User, origin: Origin, now: datetime) -> bool:
    """Remove every factor of ``user`` and end all their sessions (the lost-phone path).

    Returns:
        Whether the account had a factor (the sessions end either way).
    """
    had = await session.get(TOTPFactor, user.id) is not None
    await _delete_factors(session, user.id)
    await revoke_all_sessions(session, user=user, now=now, reason=RevokeReason.MFA_RESET)
    record_event(session, event_type=EventType.MFA_RESET, origin=origin, now=now, user_id=user.id)
    return had


async def complete_login(
    session: AsyncSession,
    *,
    challenge: MFAChallenge | None,
    code: str | None = None,
    recovery_code: str | None = None,
    keys: MFAKeys,
    tokens: TokenService,
    lifetimes: SessionLifetimes,
    origin: Origin,
    now: datetime,
) -> MFALogin:
    """The second step of a login: the challenge of an mfa_token (from
    :func:`~starterkit.mfa.factors.find_challenge`, which the caller needs first for the
    account's rate limit) and a TOTP code or a recovery code.

    Raises:
        InvalidToken: no live challenge (the mfa_token is unknown, used, expired or failed 5
            times), or the account
            changed since (password, logout-all, deactivation, factor removed).
        AuthenticationFailed: a wrong, reused or malformed code: counted on the challenge and
            recorded as ``mfa_failed``; the caller must commit.
    """
    if challenge is None:
        raise InvalidToken(MFA_TOKEN_INVALID)
    user = await session.get(User, challenge.user_id, populate_existing=True)
    factor = await active_totp(session, challenge.user_id)
    if (
        user is None
        or not user.is_active
        or user.token_version != challenge.token_version
        or factor is None
    ):
        challenge.used_at = now
        raise InvalidToken(MFA_TOKEN_INVALID)
    if code is not None:
        accepted = await _claim_totp_code(session, factor=factor, code=code, keys=keys, now=now)
    else:
        accepted = await _use_recovery_code(
            session, user_id=user.id, code=recovery_code or "", keys=keys, now=now
        )
    if not accepted:
        await session.execute(
            update(MFAChallenge)
            .where(MFAChallenge.id == challenge.id)
            .values(failures=MFAChallenge.failures + 1)
            .execution_options(synchronize_session=False)
        )
        record_event(
            session, event_type=EventType.MFA_FAILED, origin=origin, now=now, user_id=user.id
        )
        raise AuthenticationFailed(CODE_INCORRECT, user_id=user.id)
    claimed = await session.execute(
        update(MFAChallenge)
        .where(MFAChallenge.id == challenge.id, MFAChallenge.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(claimed, "rowcount", 0) != 1:  # the same token finished another request first
        raise InvalidToken(MFA_TOKEN_INVALID)
    issued = await start_session(
        session,
        user=user,
        tokens=tokens,
        lifetimes=lifetimes,
        origin=origin,
        now=now,
        amr=(challenge.first_factor, *AMR_TWO_FACTORS[1:]),
    )
    record_event(
        session, event_type=EventType.LOGIN_SUCCEEDED, origin=origin, now=now, user_id=user.id
    )
    left = None
    if code is None:
        left = await _codes_left(session, user.id)
        record_event(
            session,
            event_type=EventType.RECOVERY_CODE_USED,
            origin=origin,
            now=now,
            user_id=user.id,
        )
    return MFALogin(issued=issued, recovery_codes_left=left)


async def reauthenticate(
    session: AsyncSession,
    *,
    user: User,
    session_id: int | None,
    password: str | None = None,
    code: str | None = None,
    hasher: PasswordHasher,
    keys: MFAKeys,
    tokens: TokenService,
    origin: Origin,
    now: datetime,
) -> Reauthenticated:
    """Prove again who you are, with the password or a TOTP code: the session's
    ``auth_time`` becomes now (refresh keeps it) and a new access token carries it. A code
    also adds the second factor to the session's ``amr``.

    Raises:
        InvalidRequest: a wrong password or code (recorded as ``mfa_failed`` for a code), or
            a token that belongs to no live session of this user.
    """
    auth_session = await session.get(AuthSession, session_id) if session_id is not None else None
    if (
        auth_session is None
        or auth_session.user_id != user.id
        or auth_session.revoked_at is not None
        or auth_session.expires_at <= now
    ):
        raise InvalidRequest("This token belongs to no session to re-authenticate.")
    if code is not None:
        factor = await active_totp(session, user.id)
        accepted = factor is not None and await _claim_totp_code(
            session, factor=factor, code=code, keys=keys, now=now
        )
        if not accepted:
            record_event(
                session, event_type=EventType.MFA_FAILED, origin=origin, now=now, user_id=user.id
            )
            raise InvalidRequest(CODE_INCORRECT)
        auth_session.amr = " ".join(AMR_TWO_FACTORS)
    else:
        accepted, _ = await hasher.verify_and_update(password or "", user.hashed_password)
        if not accepted:
            raise InvalidRequest("The password is incorrect.")
    auth_session.auth_time = now
    record_event(
        session, event_type=EventType.REAUTHENTICATED, origin=origin, now=now, user_id=user.id
    )
    await tokens.ready(create=False)  # the caller prepared them before its transaction
    access_token = tokens.issue_access_token(
        user_id=user.id,
        token_version=user.token_version,
        session_id=auth_session.id,
        amr=auth_session.amr.split(),
        auth_time=now,
    )
    return Reauthenticated(
        access_token=access_token, expires_in=int(tokens.access_ttl.total_seconds())
    )


async def reencrypt_secrets(session: AsyncSession, *, keys: MFAKeys) -> int:
    """Encrypt every stored TOTP secret with the newest key; returns how many changed.

    Raises:
        UndecryptableSecret: a secret no key decrypts (a key was dropped too early); nothing
            is changed then, since the caller does not commit.
    """
    changed = 0
    for factor in await session.scalars(select(TOTPFactor)):
        if keys.box.needs_rotation(factor.secret):
            factor.secret = keys.box.rotate(factor.secret)
            changed += 1
    return changed


async def _claim_totp_code(
    session: AsyncSession, *, factor: TOTPFactor, code: str, keys: MFAKeys, now: datetime
) -> bool:
    step = codes.matching_step(
        keys.box.decrypt(factor.secret), code, now=now, after_step=factor.last_used_step
    )
    if step is None:
        return False
    claimed = await session.execute(
        update(TOTPFactor)
        .where(TOTPFactor.user_id == factor.user_id, TOTPFactor.last_used_step < step)
        .values(last_used_step=step)
        .execution_options(synchronize_session=False)
    )
    if getattr(claimed, "rowcount", 0) != 1:
        return False  # a concurrent request used this code (or a later one) first
    factor.last_used_step = step
    return True


async def _use_recovery_code(
    session: AsyncSession, *, user_id: int, code: str, keys: MFAKeys, now: datetime
) -> bool:
    used = await session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user_id,
            RecoveryCode.code_hash == codes.hash_recovery_code(code, keys.hash_key),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    return getattr(used, "rowcount", 0) == 1


async def _codes_left(session: AsyncSession, user_id: int) -> int:
    left = await session.scalar(
        select(func.count())
        .select_from(RecoveryCode)
        .where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))
    )
    return int(left or 0)


async def _replace_recovery_codes(
    session: AsyncSession, *, user_id: int, keys: MFAKeys, now: datetime
) -> list[str]:
    await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    recovery = codes.new_recovery_codes()
    session.add_all(
        RecoveryCode(
            user_id=user_id, code_hash=codes.hash_recovery_code(code, keys.hash_key), created_at=now
        )
        for code in recovery
    )
    return recovery


async def _delete_factors(session: AsyncSession, user_id: int) -> None:
    await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    await session.execute(delete(MFAChallenge).where(MFAChallenge.user_id == user_id))
    await session.execute(delete(TOTPFactor).where(TOTPFactor.user_id == user_id))
