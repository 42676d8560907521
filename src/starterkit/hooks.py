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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.requests import Request

    from starterkit.db.models import User

logger = logging.getLogger("starterkit.hooks")

UserHook = Callable[["User", "Request | None"], Awaitable[None]]
ReuseHook = Callable[[int, int, "Request | None"], Awaitable[None]]
TokenHook = Callable[["User", str, "Request | None"], Awaitable[None]]


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

    async def fire(self, name: str, *args: Any) -> None:
        """Run hook ``name`` if set; log and swallow whatever it raises."""
        hook = getattr(self, name)
        if hook is None:
            return
        try:
            await hook(*args)
        except Exception:
            logger.exception("hook %s failed", name)
