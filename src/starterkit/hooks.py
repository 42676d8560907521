"""Callbacks apps attach to a runtime to react to account events, without subclassing.

Assign async functions on ``kit.hooks``::

    async def welcome(user: User, request: Request | None) -> None:
        await send_welcome_mail(user.email)

    kit.hooks.on_after_register = welcome

Hooks run after the change is committed, inside the request; a hook that raises is logged
with its traceback and the request still succeeds. Keep them quick, or schedule slow work
from them. ``request`` is None when the CLI caused the event.
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

    async def fire(self, name: str, *args: Any) -> None:
        """Run hook ``name`` if set; log and swallow whatever it raises."""
        hook = getattr(self, name)
        if hook is None:
            return
        try:
            await hook(*args)
        except Exception:
            logger.exception("hook %s failed", name)
