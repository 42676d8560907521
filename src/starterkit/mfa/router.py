"""The second-factor routes under ``/auth``: ``/login/mfa``, ``/reauthenticate`` and ``/mfa``.

Included by the auth router. No ``from __future__ import annotations`` here: FastAPI reads
these annotations at runtime.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from starterkit.audit import Origin
from starterkit.auth.dependencies import claims_of
from starterkit.auth.schemas import TokenPair
from starterkit.db.models import User
from starterkit.errors import error_responses
from starterkit.exceptions import AuthenticationFailed, InvalidRequest, InvalidToken
from starterkit.mfa import service
from starterkit.mfa.factors import find_challenge
from starterkit.mfa.schemas import (
    AccessTokenRead,
    MFACodeLogin,
    MFALoginRequest,
    MFARecoveryLogin,
    MFAStatusRead,
    ReauthenticateRequest,
    ReauthenticateWithCode,
    ReauthenticateWithPassword,
    RecoveryCodesRead,
    TOTPConfirmRequest,
    TOTPSetupRead,
)
from starterkit.ratelimit.counters import parse_limit, raise_if_refused
from starterkit.runtime import Runtime

# RFC 6749 §5.1: responses carrying tokens or secrets must not be stored by any cache.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def build_mfa_router(kit: Runtime) -> APIRouter:
    """The second-factor routes of ``kit``, included by the auth router."""
    router = APIRouter()
    Session = Annotated[AsyncSession, Depends(kit.db_session)]
    CurrentUser = Annotated[User, Depends(kit.current_user)]
    AttachedUser = Annotated[User, Depends(kit.attached_user)]
    RecentUser = Annotated[User, Depends(kit.require_recent_auth(attached=True))]
    RequestOrigin = Annotated[Origin, Depends(kit.request_origin)]
    settings = kit.settings
    # Per client IP like /auth/login, on a counter of its own: a two-step login is one login.
    login_limit = Depends(kit.limit_per_client("login-mfa", settings.auth_login_rate_limit))
    code_limit = parse_limit(settings.auth_mfa_rate_limit)

    @router.post(
        "/login/mfa",
        name="auth:login_mfa",
        response_model=TokenPair,
        dependencies=[login_limit],
        responses=error_responses(401, 422, 429),
    )
    async def login_mfa(
        payload: MFALoginRequest,
        request: Request,
        response: Response,
        origin: RequestOrigin,
        session: Session,
    ) -> TokenPair:
        """Finish a login that answered `mfa_required`: the `mfa_token` and a `code` from the
        authenticator app or a `recovery_code`.

        A wrong code is 401; the token dies after 5 of them, after 5 minutes, and once used.
        Codes are limited per account (AUTH_MFA_RATE_LIMIT, failed attempts only).
        """
        now = kit.clock()
        challenge = await find_challenge(
            session, mfa_token=payload.mfa_token, keys=kit.mfa_keys, now=now
        )
        if challenge is not None:
            account = str(challenge.user_id)
            raise_if_refused(await kit.rate_limits.peek("mfa-account", code_limit, account))
        try:
            login = await service.complete_login(
                session,
                challenge=challenge,
                code=payload.code if isinstance(payload, MFACodeLogin) else None,
                recovery_code=(
                    payload.recovery_code if isinstance(payload, MFARecoveryLogin) else None
                ),
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
        response.headers.update(NO_STORE)
        return TokenPair(
            access_token=login.issued.access_token,
            refresh_token=login.issued.refresh_token,
            expires_in=login.issued.expires_in,
        )

    @router.post(
        "/reauthenticate",
        name="auth:reauthenticate",
        response_model=AccessTokenRead,
        responses=error_responses(400, 401, 422, 429),
    )
    async def reauthenticate(
        payload: ReauthenticateRequest,
        request: Request,
        response: Response,
        user: CurrentUser,
        origin: RequestOrigin,
        session: Session,
    ) -> AccessTokenRead:
        """Prove again who you are, with your `password` or a TOTP `code`, before a sensitive
        change: the answer is a new access token for the same session whose `auth_time` is now
        (refreshing keeps it). A code also marks the session as two-factor (`amr`).

        A wrong secret is 400; attempts are limited per account (AUTH_MFA_RATE_LIMIT).
        """
        account = str(user.id)
        raise_if_refused(await kit.rate_limits.peek("reauth-account", code_limit, account))
        claims = claims_of(request)
        try:
            fresh = await service.reauthenticate(
                session,
                user=user,
                session_id=claims.session_id if claims else None,
                password=(
                    payload.password if isinstance(payload, ReauthenticateWithPassword) else None
                ),
                code=payload.code if isinstance(payload, ReauthenticateWithCode) else None,
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
        response.headers.update(NO_STORE)
        return AccessTokenRead(access_token=fresh.access_token, expires_in=fresh.expires_in)

    @router.get(
        "/mfa", name="auth:mfa", response_model=MFAStatusRead, responses=error_responses(401)
    )
    async def mfa_status(user: CurrentUser, session: Session) -> MFAStatusRead:
        """Which second factors you have, and how many recovery codes are left."""
        status = await service.mfa_status(session, user_id=user.id)
        return MFAStatusRead(totp=status.totp, recovery_codes_left=status.recovery_codes_left)

    @router.post(
        "/mfa/totp/setup",
        name="auth:mfa_totp_setup",
        response_model=TOTPSetupRead,
        responses=error_responses(401, 403, 409),
    )
    async def totp_setup(user: RecentUser, response: Response, session: Session) -> TOTPSetupRead:
        """Start setting up TOTP: scan `qr_svg` (or type `secret`) into an authenticator app,
        then confirm a code. Until then login does not ask for it; a new setup replaces a
        pending one. Needs a recent authentication (403 `reauthentication_required`)."""
        setup = await service.begin_totp_setup(
            session, user=user, keys=kit.mfa_keys, now=kit.clock()
        )
        await session.commit()
        response.headers.update(NO_STORE)
        return TOTPSetupRead(
            secret=setup.secret, otpauth_uri=setup.otpauth_uri, qr_svg=setup.qr_svg
        )

    @router.post(
        "/mfa/totp/confirm",
        name="auth:mfa_totp_confirm",
        response_model=RecoveryCodesRead,
        responses=error_responses(400, 401, 422),
    )
    async def totp_confirm(
        payload: TOTPConfirmRequest,
        request: Request,
        response: Response,
        user: AttachedUser,
        origin: RequestOrigin,
        session: Session,
    ) -> RecoveryCodesRead:
        """Turn the pending TOTP factor on with a code from the app. The answer holds 10
        single-use recovery codes, shown only now. A wrong code is 400 and changes nothing."""
        recovery = await service.confirm_totp(
            session, user=user, code=payload.code, keys=kit.mfa_keys, origin=origin,
            now=kit.clock(),
        )  # fmt: skip
        await session.commit()
        await kit.hooks.after_mfa_enabled(user, request)
        response.headers.update(NO_STORE)
        return RecoveryCodesRead(recovery_codes=recovery)

    @router.post(
        "/mfa/recovery-codes",
        name="auth:mfa_recovery_codes",
        response_model=RecoveryCodesRead,
        responses=error_responses(400, 401, 403),
    )
    async def recovery_codes(
        response: Response, user: RecentUser, origin: RequestOrigin, session: Session
    ) -> RecoveryCodesRead:
        """A new set of 10 recovery codes; the previous set stops working. Needs a recent
        authentication."""
        recovery = await service.regenerate_recovery_codes(
            session, user=user, keys=kit.mfa_keys, origin=origin, now=kit.clock()
        )
        await session.commit()
        response.headers.update(NO_STORE)
        return RecoveryCodesRead(recovery_codes=recovery)

    @router.delete(
        "/mfa/totp",
        name="auth:mfa_totp_remove",
        status_code=204,
        responses=error_responses(401, 403, 404),
    )
    async def totp_remove(
        request: Request, user: RecentUser, origin: RequestOrigin, session: Session
    ) -> None:
        """Remove TOTP and the recovery codes; login asks for the password only again. Needs
        a recent authentication; without a factor it is 404."""
        await service.remove_totp(session, user=user, origin=origin, now=kit.clock())
        await session.commit()
        await kit.hooks.after_mfa_disabled(user, request)

    return router


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
