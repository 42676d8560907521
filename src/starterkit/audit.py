"""The audit log: security events of accounts, stored in ``auth_events``.

Each account action of the services (``auth``, ``users``, ``lifecycle``) records its event
here, in the caller's unit of work, from the ``origin`` the caller passes: an event is stored
exactly when what it describes is, and no caller can forget it. A refusal worth recording (a
failed login, a replayed refresh token) is recorded before the error is raised, and the caller
commits before answering.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from starterkit.db.models import USER_AGENT_MAX_LENGTH, AuthEvent


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
    MFA_ENABLED = "mfa_enabled"
    MFA_DISABLED = "mfa_disabled"
    MFA_RESET = "mfa_reset"
    MFA_FAILED = "mfa_failed"
    RECOVERY_CODE_USED = "recovery_code_used"
    RECOVERY_CODES_REGENERATED = "recovery_codes_regenerated"
    REAUTHENTICATED = "reauthenticated"
    OAUTH_LOGIN = "oauth_login"  # a provider vouched for the user (a session follows)
    OAUTH_LOGIN_FAILED = "oauth_login_failed"
    OAUTH_LINKED = "oauth_linked"
    OAUTH_UNLINKED = "oauth_unlinked"


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a request came from: the client IP and user agent (the CLI has neither)."""

    ip: str | None = None
    user_agent: str | None = None


CLI = Origin(ip=None, user_agent="starterkit-cli")
"""The origin of changes made with the ``starterkit`` command line."""


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
