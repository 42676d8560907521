"""The audit log: security events of accounts, stored in ``auth_events``.

Services record events in the caller's unit of work, so an event is stored exactly when what
it describes is (a failed login is committed on its own before the 401 is sent).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from starterkit.clientip import client_ip
from starterkit.db.models import USER_AGENT_MAX_LENGTH, AuthEvent

if TYPE_CHECKING:
    from starlette.requests import Request


class EventType(StrEnum):
    """What happened. Stable strings: dashboards and alerts may match on them."""

    USER_REGISTERED = "user_registered"
    LOGIN_SUCCEEDED = "login_succeeded"
    LOGIN_FAILED = "login_failed"
    LOGOUT = "logout"
    LOGOUT_ALL = "logout_all"
    SESSION_ENDED = "session_ended"
    REFRESH_TOKEN_REUSED = "refresh_token_reused"  # noqa: S105 - an event name
    PASSWORD_CHANGED = "password_changed"  # noqa: S105 - an event name
    USER_DEACTIVATED = "user_deactivated"
    USER_REACTIVATED = "user_reactivated"
    PASSWORD_RESET_REQUESTED = "password_reset_requested"  # noqa: S105 - an event name
    PASSWORD_RESET = "password_reset"  # noqa: S105 - an event name
    EMAIL_VERIFIED = "email_verified"
    EMAIL_CHANGED = "email_changed"


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a request came from: the client IP and user agent (the CLI has neither)."""

    ip: str | None = None
    user_agent: str | None = None


CLI = Origin(ip=None, user_agent="starterkit-cli")


def origin_of(request: Request, trusted_proxies: Sequence[str]) -> Origin:
    """The client IP (see TRUSTED_PROXIES) and user agent of a request, for the audit log."""
    return Origin(
        ip=client_ip(request, trusted_proxies), user_agent=request.headers.get("user-agent")
    )


def record_event(
    session: AsyncSession,
    *,
    event_type: EventType,
    origin: Origin,
    now: datetime,
    user_id: int | None = None,
    email: str | None = None,
) -> None:
    """Add an event to the caller's unit of work."""
    session.add(
        AuthEvent(
            event_type=str(event_type),
            user_id=user_id,
            email=email[:320] if email else None,
            ip=origin.ip,
            user_agent=(origin.user_agent or "")[:USER_AGENT_MAX_LENGTH] or None,
            created_at=now,
        )
    )


async def list_events(
    session: AsyncSession, *, user_id: int, limit: int, offset: int
) -> tuple[list[AuthEvent], int]:
    """One page of a user's events, newest first, and their total."""
    total = await session.scalar(
        select(func.count()).select_from(AuthEvent).where(AuthEvent.user_id == user_id)
    )
    result = await session.execute(
        select(AuthEvent)
        .where(AuthEvent.user_id == user_id)
        .order_by(AuthEvent.created_at.desc(), AuthEvent.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(result.scalars()), int(total or 0)


async def purge_events_before(session: AsyncSession, *, before: datetime) -> int:
    """Delete events older than ``before``; returns how many went."""
    result = await session.execute(delete(AuthEvent).where(AuthEvent.created_at < before))
    return int(getattr(result, "rowcount", 0) or 0)
