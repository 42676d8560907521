"""Ending sessions: one session, or every session and access token of an account.

Kept apart from the login flows (:mod:`starterkit.auth.service`) because account actions of
other kinds end sessions too (a password change, a reset, a deactivation); they import this
module, which imports nothing of theirs.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from starterkit.db.models import AuthSession, User


class RevokeReason(StrEnum):
    """Why a session ended, stored in ``auth_sessions.revoked_reason``."""

    LOGOUT = "logout"
    LOGOUT_ALL = "logout-all"
    ENDED = "ended"
    REUSE = "reuse"
    INACTIVE = "inactive"
    PASSWORD_CHANGE = "password-change"  # noqa: S105 - a reason, not a password
    PASSWORD_RESET = "password-reset"  # noqa: S105 - a reason, not a password
    DEACTIVATED = "deactivated"
    MFA_RESET = "mfa-reset"


def revoke_session(auth_session: AuthSession, now: datetime, *, reason: RevokeReason) -> None:
    """Mark one session revoked (its refresh tokens stop working); a revoked one stays as is."""
    if auth_session.revoked_at is None:
        auth_session.revoked_at = now
        auth_session.revoked_reason = str(reason)


async def revoke_all_sessions(
    session: AsyncSession,
    *,
    user: User,
    now: datetime,
    reason: RevokeReason,
    keep_session_id: int | None = None,
) -> bool:
    """Revoke every session of ``user`` and invalidate their outstanding access tokens.

    ``keep_session_id`` names a session to leave alive: its refresh token keeps working,
    though its access tokens die with the others (they carry the old token version).

    The token version is bumped in the database (``token_version + 1``), not read, changed and
    written back: concurrent bumps all count, and a user deleted meanwhile is simply left
    alone (their sessions went with them) instead of failing the flush with a 500.

    Returns:
        Whether the user's row still exists.
    """
    ended = update(AuthSession).where(
        AuthSession.user_id == user.id, AuthSession.revoked_at.is_(None)
    )
    if keep_session_id is not None:
        ended = ended.where(AuthSession.id != keep_session_id)
    await session.execute(
        ended.values(revoked_at=now, revoked_reason=str(reason)).execution_options(
            synchronize_session=False
        )
    )
    bumped = await session.execute(
        update(User)
        .where(User.id == user.id)
        .values(token_version=User.token_version + 1)
        .returning(User.token_version)
        .execution_options(synchronize_session=False)
    )
    version = bumped.scalar_one_or_none()
    if version is None:
        return False
    # Already stored: record it as loaded, so the next flush does not write it again.
    set_committed_value(user, "token_version", version)
    return True
