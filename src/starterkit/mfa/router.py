"""The second-factor routes under ``/auth``: ``/login/mfa``, ``/reauthenticate`` and ``/mfa``.

Included by the auth router. No ``from __future__ import annotations`` here: FastAPI reads
these annotations at runtime.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from starterkit.audit import Origin
from starterkit.auth import flows
from starterkit.auth.dependencies import authenticated_by_cookie
from starterkit.auth.flows import NO_STORE
from starterkit.auth.schemas import TokenPair
from starterkit.db.models import User
from starterkit.errors import error_responses
from starterkit.exceptions import InvalidRequest
from starterkit.mfa import service
from starterkit.mfa.schemas import (
    AccessTokenRead,
    MFALoginRequest,
    MFAStatusRead,
    ReauthenticateRequest,
    RecoveryCodesRead,
    TOTPConfirmRequest,
    TOTPSetupRead,
)
from starterkit.runtime import Runtime


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
        issued = await flows.second_factor_step(
            kit,
            session,
            request,
            payload=payload,
            origin=origin,
        )
        response.headers.update(NO_STORE)
        return TokenPair(
            access_token=issued.access_token,
            refresh_token=issued.refresh_token,
            expires_in=issued.expires_in,
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
        if authenticated_by_cookie(request):
            raise InvalidRequest(
                "A browser session re-authenticates at /auth/browser/reauthenticate, which "
                "keeps the new access token in its cookie."
            )
        fresh = await flows.reauthenticate_step(
            kit, session, request, user=user, payload=payload, origin=origin
        )
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
