"""``/auth`` routes of the account lifecycle: forgot/reset password and email verification.

:func:`~starterkit.auth.router.build_auth_router` includes these. No
``from __future__ import annotations`` here: FastAPI reads these annotations at runtime.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from starterkit.audit import Origin
from starterkit.errors import error_responses
from starterkit.lifecycle import service
from starterkit.lifecycle.mail import mail_password_reset, mail_verification
from starterkit.lifecycle.schemas import (
    Accepted,
    EmailRequest,
    ResetPasswordRequest,
    VerifyRequest,
)
from starterkit.ratelimit.counters import parse_limit, raise_if_refused
from starterkit.runtime import Runtime
from starterkit.users.schemas import UserRead

RESET_ACCEPTED = Accepted(
    detail="If an active account has this email address, a link to reset its password is on "
    "its way."
)
VERIFY_ACCEPTED = Accepted(
    detail="If an unverified account has this email address, a link to verify it is on its way."
)


def build_lifecycle_router(kit: Runtime) -> APIRouter:
    """The forgot-password, reset-password, request-verify and verify routes of ``kit``."""
    router = APIRouter()
    Session = Annotated[AsyncSession, Depends(kit.db_session)]
    RequestOrigin = Annotated[Origin, Depends(kit.request_origin)]
    settings = kit.settings
    forgot_limit = Depends(
        kit.limit_per_client("forgot-password", settings.auth_forgot_password_rate_limit)
    )
    request_verify_limit = Depends(
        kit.limit_per_client("request-verify", settings.auth_request_verify_rate_limit)
    )
    # Reset and verify share one counter: both redeem a mailed token.
    redeem_limit = Depends(
        kit.limit_per_client("redeem-token", settings.auth_redeem_token_rate_limit)
    )
    mail_account_limit = parse_limit(settings.auth_mail_account_rate_limit)

    async def count_mail_for(email: str) -> None:
        # Keyed by the address typed, existing or not, so a 429 reveals nothing either.
        raise_if_refused(await kit.rate_limits.hit("mail-account", mail_account_limit, email))

    @router.post(
        "/forgot-password",
        name="auth:forgot_password",
        status_code=202,
        response_model=Accepted,
        dependencies=[forgot_limit],
        responses=error_responses(422, 429),
    )
    async def forgot_password(
        payload: EmailRequest, request: Request, origin: RequestOrigin
    ) -> Accepted:
        """Mail a password-reset link to the account with this email, if there is one.

        Always 202 with the same body, and about as fast, whether or not the account exists:
        the look-up and the mail happen in the background. The link is valid for
        PASSWORD_RESET_TOKEN_MINUTES, once. Limited per client IP and per email address.
        """
        await count_mail_for(payload.email)
        kit.background.spawn(
            mail_password_reset(kit, email=payload.email, origin=origin, request=request),
            name="password-reset mail",
        )
        return RESET_ACCEPTED

    @router.post(
        "/reset-password",
        name="auth:reset_password",
        response_model=UserRead,
        dependencies=[redeem_limit],
        responses=error_responses(400, 422, 429),
    )
    async def reset_password(
        payload: ResetPasswordRequest, request: Request, origin: RequestOrigin, session: Session
    ) -> Any:
        """Choose a new password with the token from a password-reset mail.

        Ends every session and access token of the account, and counts its email as
        verified. An invalid, expired or used token is 400; a new password that breaks the
        password rules is 422 (and the token still works).
        """
        user = await service.reset_password(
            session,
            token=payload.token,
            new_password=payload.new_password,
            account_tokens=kit.account_tokens,
            hasher=kit.password_hasher,
            password_min_length=settings.password_min_length,
            origin=origin,
            now=kit.clock(),
        )
        await session.commit()
        await kit.hooks.after_reset_password(user, request)
        return user

    @router.post(
        "/request-verify",
        name="auth:request_verify",
        status_code=202,
        response_model=Accepted,
        dependencies=[request_verify_limit],
        responses=error_responses(422, 429),
    )
    async def request_verify(payload: EmailRequest, request: Request) -> Accepted:
        """Mail a verification link to the unverified account with this email, if any.

        Always 202 with the same body, like forgot-password. The link is valid for
        VERIFY_TOKEN_HOURS. Limited per client IP and per email address.
        """
        await count_mail_for(payload.email)
        kit.background.spawn(
            mail_verification(kit, email=payload.email, request=request),
            name="verification mail",
        )
        return VERIFY_ACCEPTED

    @router.post(
        "/verify",
        name="auth:verify",
        response_model=UserRead,
        dependencies=[redeem_limit],
        responses=error_responses(400, 422, 429),
    )
    async def verify(
        payload: VerifyRequest, request: Request, origin: RequestOrigin, session: Session
    ) -> Any:
        """Mark the email as verified with the token from a verification mail.

        An invalid or expired token, or one whose email was verified or changed since, is 400.
        """
        user = await service.verify_email(
            session,
            token=payload.token,
            account_tokens=kit.account_tokens,
            origin=origin,
            now=kit.clock(),
        )
        await session.commit()
        await kit.hooks.after_verify(user, request)
        return user

    return router
