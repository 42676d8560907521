"""Callbacks apps attach to a runtime to react to account events, without subclassing.

Assign async functions on ``kit.hooks``::

    async def welcome(user: User, request: Request | None) -> None:
        await send_welcome_mail(user.email)

    kit.hooks.on_after_register = welcome

Hooks run after the change is committed, inside the request; a hook that raises is logged
with its traceback and the request still succeeds. Keep them quick, or schedule slow work
from them. ``request`` is None when the CLI caused the event.

``on_after_forgot_password`` and ``on_after_request_verify`` are the exception: they run in a
background job after the 202 was sent (the answer must not reveal whether the account exists,
not even by its timing), before the mail is sent; ``request`` is then the finished request,
whose headers can still be read but whose body cannot.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ParamSpec

if TYPE_CHECKING:
    from starlette.requests import Request

    from starterkit.db.models import User

logger = logging.getLogger("starterkit.hooks")

P = ParamSpec("P")

UserHook = Callable[["User", "Request | None"], Awaitable[None]]
ReuseHook = Callable[[int, int, "Request | None"], Awaitable[None]]
TokenHook = Callable[["User", str, "Request | None"], Awaitable[None]]
UserIdHook = Callable[[int, "Request | None"], Awaitable[None]]
CountHook = Callable[["User", int, "Request | None"], Awaitable[None]]
ProviderHook = Callable[["User", str, bool, "Request | None"], Awaitable[None]]


@dataclass
class Hooks:
    """The hooks of one runtime; each is None (nothing to do) or an async callable."""

    on_after_register: UserHook | None = None
    """``(user, request)`` after an account was created through the API."""
    on_after_login: UserHook | None = None
    """``(user, request)`` after a successful login."""
    on_after_password_change: UserHook | None = None
    """``(user, request)`` after a password change (API or ``starterkit set-password``)."""
    on_refresh_token_reuse: ReuseHook | None = None
    """``(user_id, session_id, request)`` after a replayed refresh token revoked a session."""
    on_after_forgot_password: TokenHook | None = None
    """``(user, token, request)`` after a password-reset token was made for an existing,
    active account; runs in the background before the reset mail is sent."""
    on_after_reset_password: UserHook | None = None
    """``(user, request)`` after ``POST /auth/reset-password`` set a new password."""
    on_after_request_verify: TokenHook | None = None
    """``(user, token, request)`` after a verification token was made for an unverified,
    active account; runs in the background before the verification mail is sent."""
    on_after_verify: UserHook | None = None
    """``(user, request)`` after ``POST /auth/verify`` marked the email as verified."""
    on_after_mfa_enabled: UserHook | None = None
    """``(user, request)`` after a TOTP factor was confirmed."""
    on_after_mfa_disabled: UserHook | None = None
    """``(user, request)`` after the user removed their TOTP factor."""
    on_after_mfa_reset: UserHook | None = None
    """``(user, request)`` after a superuser or ``starterkit mfa-reset`` removed the factors."""
    on_mfa_failed: UserIdHook | None = None
    """``(user_id, request)`` after a wrong code at the second step of a login."""
    on_recovery_code_used: CountHook | None = None
    """``(user, codes_left, request)`` after a login with a recovery code."""
    on_after_oauth_login: ProviderHook | None = None
    """``(user, provider, created, request)`` after a provider vouched for ``user`` at the
    social-login callback (``created``: the account was made just now); the front end's
    exchange of the code, and a second factor if the account has one, are still to come."""

    # Firing: one typed method per hook, so mypy checks every call's name and arguments.

    async def after_register(self, user: User, request: Request | None) -> None:
        """Run ``on_after_register``."""
        await _run("on_after_register", self.on_after_register, user, request)

    async def after_login(self, user: User, request: Request | None) -> None:
        """Run ``on_after_login``."""
        await _run("on_after_login", self.on_after_login, user, request)

    async def after_password_change(self, user: User, request: Request | None) -> None:
        """Run ``on_after_password_change``."""
        await _run("on_after_password_change", self.on_after_password_change, user, request)

    async def refresh_token_reuse(
        self, user_id: int, session_id: int, request: Request | None
    ) -> None:
        """Run ``on_refresh_token_reuse``."""
        await _run(
            "on_refresh_token_reuse", self.on_refresh_token_reuse, user_id, session_id, request
        )

    async def after_forgot_password(self, user: User, token: str, request: Request | None) -> None:
        """Run ``on_after_forgot_password``."""
        await _run("on_after_forgot_password", self.on_after_forgot_password, user, token, request)

    async def after_reset_password(self, user: User, request: Request | None) -> None:
        """Run ``on_after_reset_password``."""
        await _run("on_after_reset_password", self.on_after_reset_password, user, request)

    async def after_request_verify(self, user: User, token: str, request: Request | None) -> None:
        """Run ``on_after_request_verify``."""
        await _run("on_after_request_verify", self.on_after_request_verify, user, token, request)

    async def after_verify(self, user: User, request: Request | None) -> None:
        """Run ``on_after_verify``."""
        await _run("on_after_verify", self.on_after_verify, user, request)

    async def after_mfa_enabled(self, user: User, request: Request | None) -> None:
        """Run ``on_after_mfa_enabled``."""
        await _run("on_after_mfa_enabled", self.on_after_mfa_enabled, user, request)

    async def after_mfa_disabled(self, user: User, request: Request | None) -> None:
        """Run ``on_after_mfa_disabled``."""
        await _run("on_after_mfa_disabled", self.on_after_mfa_disabled, user, request)

    async def after_mfa_reset(self, user: User, request: Request | None) -> None:
        """Run ``on_after_mfa_reset``."""
        await _run("on_after_mfa_reset", self.on_after_mfa_reset, user, request)

    async def mfa_failed(self, user_id: int, request: Request | None) -> None:
        """Run ``on_mfa_failed``."""
        await _run("on_mfa_failed", self.on_mfa_failed, user_id, request)

    async def recovery_code_used(self, user: User, left: int, request: Request | None) -> None:
        """Run ``on_recovery_code_used``."""
        await _run("on_recovery_code_used", self.on_recovery_code_used, user, left, request)

    async def after_oauth_login(
        self, user: User, provider: str, created: bool, request: Request | None
    ) -> None:
        """Run ``on_after_oauth_login``."""
        await _run(
            "on_after_oauth_login", self.on_after_oauth_login, user, provider, created, request
        )


async def _run(
    name: str, hook: Callable[P, Awaitable[None]] | None, *args: P.args, **kwargs: P.kwargs
) -> None:
    """Run ``hook`` if set; log and swallow whatever it raises."""
    if hook is None:
        return
    try:
        await hook(*args, **kwargs)
    except Exception:
        logger.exception("hook %s failed", name)
