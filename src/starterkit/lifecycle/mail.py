"""Background jobs that mail account links: password reset and email verification.

``POST /auth/forgot-password`` and ``POST /auth/request-verify`` answer 202 before any of this
runs (through ``kit.background``), so neither the answer nor its timing tells whether the
account exists. The job looks the account up, makes a token bound to its current state, runs
the hook, and sends the mail; for an unknown, inactive (or, for verification, already
verified) account it does nothing at all.

Links point at ``{PUBLIC_URL}/reset-password?token=…`` and ``{PUBLIC_URL}/verify-email?token=…``:
the built-in pages of :mod:`starterkit.lifecycle.pages`, or pages of your front end that post
the token to ``/auth/reset-password`` or ``/auth/verify``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from starterkit.audit import Origin
from starterkit.db.models import User
from starterkit.lifecycle import service
from starterkit.mail import Mail
from starterkit.runtime import Runtime

if TYPE_CHECKING:
    from starlette.requests import Request

logger = logging.getLogger("starterkit.auth")

RESET_PASSWORD_PATH = "/reset-password"  # noqa: S105 - a path, not a password
VERIFY_EMAIL_PATH = "/verify-email"


def link_to(public_url: str, path: str, token: str) -> str:
    """The front-end URL that carries ``token`` to ``path``."""
    return f"{public_url}{path}?{urlencode({'token': token})}"


def password_reset_mail(kit: Runtime, user: User, token: str) -> Mail:
    """The mail with a password-reset link for ``user``."""
    link = link_to(kit.settings.public_url, RESET_PASSWORD_PATH, token)
    minutes = kit.settings.password_reset_token_minutes
    text = (
        f"Someone, hopefully you, asked to reset the password of the account {user.email}.\n\n"
        f"To choose a new password, open this link within {minutes} minutes:\n\n{link}\n\n"
        "The link works once. If you did not ask for this, ignore this mail: your password "
        "stays as it is.\n"
    )
    return kit.mailer.compose(
        to=user.email, subject="Reset your password", text=text, kind="password_reset", link=link
    )


def verification_mail(kit: Runtime, user: User, token: str) -> Mail:
    """The mail with an email-verification link for ``user``."""
    link = link_to(kit.settings.public_url, VERIFY_EMAIL_PATH, token)
    hours = kit.settings.verify_token_hours
    text = (
        f"Please confirm that {user.email} is your email address by opening this link within "
        f"{hours} hours:\n\n{link}\n\n"
        "If you did not create an account or change its address, ignore this mail.\n"
    )
    return kit.mailer.compose(
        to=user.email,
        subject="Confirm your email address",
        text=text,
        kind="verify_email",
        link=link,
    )


async def mail_password_reset(
    kit: Runtime, *, email: str, origin: Origin, request: Request | None
) -> None:
    """Mail a password-reset link to the active account with ``email``, if there is one."""
    async with kit.sessionmaker() as session:
        found = await service.request_password_reset(
            session, email=email, account_tokens=kit.account_tokens, origin=origin, now=kit.clock()
        )
        await session.commit()
    if found is None:
        logger.info("password reset asked for an unknown or inactive account: nothing sent")
        return
    user, token = found
    await kit.hooks.after_forgot_password(user, token, request)
    await kit.mailer.send(password_reset_mail(kit, user, token))


async def mail_verification(kit: Runtime, *, email: str, request: Request | None) -> None:
    """Mail a verification link to the active, unverified account with ``email``, if any."""
    async with kit.sessionmaker() as session:
        found = await service.request_verification(
            session, email=email, account_tokens=kit.account_tokens
        )
    if found is None:
        logger.info("verification asked for no unverified, active account: nothing sent")
        return
    user, token = found
    await kit.hooks.after_request_verify(user, token, request)
    await kit.mailer.send(verification_mail(kit, user, token))
