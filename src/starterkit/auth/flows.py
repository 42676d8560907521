"""Login, its second step, refresh, re-authentication and the social-login exchange as routes
run them, shared by the token routes (``/auth/login`` …) and the browser routes
(``/auth/browser/login`` …).

Each flow calls its service once, applies the per-account limits around it, commits (refusals
too: their audit records, revocations and counters must stick) and runs the hooks. What
differs between the two kinds of routes is only how the tokens reach the client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starterkit.audit import EventType, record_event
from starterkit.auth import service
from starterkit.auth.dependencies import claims_of
from starterkit.exceptions import (
    AuthenticationFailed,
    EmailNotVerified,
    InvalidRequest,
    InvalidToken,
    MFARequired,
    RefreshTokenReused,
)
from starterkit.mfa import service as mfa_service
from starterkit.mfa.factors import PendingMFA, active_totp, find_challenge, open_challenge
from starterkit.mfa.schemas import (
    MFACodeLogin,
    MFALoginRequest,
    ReauthenticateRequest,
    ReauthenticateWithCode,
)
from starterkit.oauth import service as oauth_service
from starterkit.ratelimit.counters import parse_limit, raise_if_refused
from starterkit.users.service import address_key

# RFC 6749 §5.1: answers carrying tokens, secrets or session cookies must not be stored by
# any cache.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession
    from starlette.requests import Request

    from starterkit.audit import Origin
    from starterkit.db.models import User
    from starterkit.runtime import Runtime


async def password_step(
    kit: Runtime,
    session: AsyncSession,
    request: Request,
    *,
    email: str,
    password: str,
    origin: Origin,
    second_factor: bool = True,
) -> service.IssuedTokens | PendingMFA:
    """Check email and password: a new session, or the challenge of an account with a second
    factor (``second_factor=False``, for clients that cannot send a code: 401 ``mfa_required``).

    Raises:
        RateLimited: the account had too many failed logins (AUTH_LOGIN_ACCOUNT_RATE_LIMIT).
        AuthenticationFailed, EmailNotVerified, MFARequired: see :func:`service.log_in`.
    """
    await kit.tokens.ready()  # before the transaction: a first signing key may be made
    account_limit = parse_limit(kit.settings.auth_login_account_rate_limit)
    account = address_key(email)
    raise_if_refused(await kit.rate_limits.peek("login-account", account_limit, account))
    try:
        issued = await service.log_in(
            session,
            email=email,
            password=password,
            hasher=kit.password_hasher,
            tokens=kit.tokens,
            lifetimes=kit.session_lifetimes,
            require_verified=not kit.settings.allow_unverified_login,
            origin=origin,
            now=kit.clock(),
            mfa=kit.mfa_keys if second_factor else None,
        )
    except (AuthenticationFailed, EmailNotVerified) as refusal:
        await session.commit()  # the refusal's audit record
        if isinstance(refusal, AuthenticationFailed) and not isinstance(refusal, MFARequired):
            await kit.rate_limits.hit("login-account", account_limit, account)
        raise
    await session.commit()
    if isinstance(issued, service.IssuedTokens):
        await kit.hooks.after_login(issued.user, request)
    return issued


async def second_factor_step(
    kit: Runtime,
    session: AsyncSession,
    request: Request,
    *,
    payload: MFALoginRequest,
    origin: Origin,
) -> service.IssuedTokens:
    """Finish a login that answered ``mfa_required`` with a TOTP code or a recovery code.

    Raises:
        RateLimited: the account had too many failed codes (AUTH_MFA_RATE_LIMIT).
        InvalidToken: the mfa_token is unknown, used, expired or failed too often.
        AuthenticationFailed: a wrong, reused or malformed code.
    """
    await kit.tokens.ready()  # before the transaction: a first signing key may be made
    code_limit = parse_limit(kit.settings.auth_mfa_rate_limit)
    now = kit.clock()
    challenge = await find_challenge(
        session, mfa_token=payload.mfa_token, keys=kit.mfa_keys, now=now
    )
    if challenge is not None:
        account = str(challenge.user_id)
        raise_if_refused(await kit.rate_limits.peek("mfa-account", code_limit, account))
    try:
        login = await mfa_service.complete_login(
            session,
            challenge=challenge,
            code=payload.code if isinstance(payload, MFACodeLogin) else None,
            recovery_code=None if isinstance(payload, MFACodeLogin) else payload.recovery_code,
            keys=kit.mfa_keys,
            tokens=kit.tokens,
            lifetimes=kit.session_lifetimes,
            origin=origin,
            now=now,
        )
    except AuthenticationFailed as refusal:
        await session.commit()  # the failure count and its audit record
        if not isinstance(refusal, InvalidToken) and refusal.user_id is not None:
            await kit.rate_limits.hit("mfa-account", code_limit, str(refusal.user_id))
            await kit.hooks.mfa_failed(refusal.user_id, request)
        raise
    await session.commit()
    user = login.issued.user
    await kit.hooks.after_login(user, request)
    if login.recovery_codes_left is not None:
        _mail_recovery_code_notice(kit, user, login.recovery_codes_left)
        await kit.hooks.recovery_code_used(user, login.recovery_codes_left, request)
    return login.issued


async def refresh_step(
    kit: Runtime, session: AsyncSession, request: Request, *, refresh_token: str, origin: Origin
) -> service.IssuedTokens:
    """Rotate a refresh token (see :func:`service.rotate_refresh_token`).

    Raises:
        RefreshTokenReused: its session was revoked (and the reuse hook ran).
        InvalidToken: unknown, expired or revoked, or its user is inactive.
    """
    await kit.tokens.ready()  # before the transaction: a first signing key may be made
    try:
        issued = await service.rotate_refresh_token(
            session,
            refresh_token=refresh_token,
            tokens=kit.tokens,
            lifetimes=kit.session_lifetimes,
            origin=origin,
            now=kit.clock(),
        )
    except InvalidToken as refusal:
        await session.commit()  # a revocation (reuse, inactive user) and its record
        if isinstance(refusal, RefreshTokenReused):
            await kit.hooks.refresh_token_reuse(refusal.user_id, refusal.session_id, request)
        raise
    await session.commit()
    return issued


async def reauthenticate_step(
    kit: Runtime,
    session: AsyncSession,
    request: Request,
    *,
    user: User,
    payload: ReauthenticateRequest,
    origin: Origin,
) -> mfa_service.Reauthenticated:
    """Prove again who the signed-in user is, with the password or a code: a new access token
    for the same session (see :func:`mfa_service.reauthenticate`).

    Raises:
        RateLimited: too many wrong secrets for the account (AUTH_MFA_RATE_LIMIT).
        InvalidRequest: a wrong password or code, or a token of no live session.
    """
    await kit.tokens.ready()  # before the transaction: a first signing key may be made
    code_limit = parse_limit(kit.settings.auth_mfa_rate_limit)
    account = str(user.id)
    raise_if_refused(await kit.rate_limits.peek("reauth-account", code_limit, account))
    claims = claims_of(request)
    code = payload.code if isinstance(payload, ReauthenticateWithCode) else None
    try:
        fresh = await mfa_service.reauthenticate(
            session,
            user=user,
            session_id=claims.session_id if claims else None,
            password=None if isinstance(payload, ReauthenticateWithCode) else payload.password,
            code=code,
            hasher=kit.password_hasher,
            keys=kit.mfa_keys,
            tokens=kit.tokens,
            origin=origin,
            now=kit.clock(),
        )
    except InvalidRequest:
        await session.commit()  # a refused code's audit record
        await kit.rate_limits.hit("reauth-account", code_limit, account)
        raise
    await session.commit()
    return fresh


EXCHANGE_CODE_INVALID = "The code is invalid, was used or has expired; sign in again."


async def oauth_exchange_step(
    kit: Runtime, session: AsyncSession, request: Request, *, code: str, origin: Origin
) -> service.IssuedTokens | PendingMFA:
    """Turn a social login's exchange code into a session (``amr`` ``ext``), or into the
    challenge of an account with a second factor: the provider replaced the password, not
    the code.

    Raises:
        InvalidToken: the code is unknown, used or expired.
        AuthenticationFailed: the account was deactivated since the callback.
        EmailNotVerified: unverified accounts may not log in (ALLOW_UNVERIFIED_LOGIN=false).
    """
    await kit.tokens.ready()  # before the transaction: a first signing key may be made
    now = kit.clock()
    user = await oauth_service.redeem_exchange_code(session, code=code, now=now)
    if user is None:
        await session.commit()
        raise InvalidToken(EXCHANGE_CODE_INVALID)
    refusal: AuthenticationFailed | EmailNotVerified | None = None
    if not user.is_active:
        refusal = AuthenticationFailed("The account is deactivated.", user_id=user.id)
    elif not kit.settings.allow_unverified_login and not user.is_verified:
        refusal = EmailNotVerified(user_id=user.id)
    if refusal is not None:
        record_event(
            session, event_type=EventType.LOGIN_FAILED, origin=origin, now=now, user_id=user.id
        )
        await session.commit()  # the code stays used, with the refusal's record
        raise refusal
    issued: service.IssuedTokens | PendingMFA
    if await active_totp(session, user.id) is not None:
        issued = await open_challenge(
            session, user=user, keys=kit.mfa_keys, now=now, first_factor="ext"
        )
    else:
        issued = await service.start_session(
            session,
            user=user,
            tokens=kit.tokens,
            lifetimes=kit.session_lifetimes,
            origin=origin,
            now=now,
            amr=("ext",),
        )
        record_event(
            session, event_type=EventType.LOGIN_SUCCEEDED, origin=origin, now=now, user_id=user.id
        )
    await session.commit()
    if isinstance(issued, service.IssuedTokens):
        await kit.hooks.after_login(user, request)
    return issued


def _mail_recovery_code_notice(kit: Runtime, user: User, codes_left: int) -> None:
    """Mail ``user`` that a recovery code was used and how many are left (in the background)."""
    text = (
        f"A recovery code was used to log in to the account {user.email}.\n\n"
        f"{codes_left} unused recovery codes are left. If this was not you, change your "
        "password and set up your second factor again at once.\n"
    )
    mail = kit.mailer.compose(
        to=user.email, subject="A recovery code was used", text=text, kind="recovery_code_used"
    )
    kit.background.spawn(kit.mailer.send(mail), name="recovery code notice")
