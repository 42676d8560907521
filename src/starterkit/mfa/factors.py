"""The second factors and login challenges in the database, below the account actions.

:mod:`starterkit.auth.service` asks here whether an account has an active factor and opens a
challenge (the ``mfa_token`` of the two-step login); :mod:`starterkit.mfa.service` does the
rest. Nothing here records events or commits.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from starterkit.db.models import MFAChallenge, TOTPFactor, User
from starterkit.encryption import SecretBox
from starterkit.mfa.codes import keyed_digest

MFA_TOKEN_BYTES = 32
MAX_CODE_FAILURES = 5
METHODS = ("totp", "recovery_code")


@dataclass(frozen=True, slots=True)
class MFAKeys:
    """What the factor code needs of the runtime: keys, names and the challenge rules."""

    box: SecretBox  # encrypts TOTP secrets at rest
    hash_key: bytes  # keys the HMACs of recovery codes and mfa_tokens
    issuer: str  # shown by authenticator apps
    challenge_lifetime: timedelta = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class PendingMFA:
    """The password was right; the login waits for a second factor."""

    mfa_token: str
    expires_in: int
    user: User
    methods: tuple[str, ...] = METHODS


def token_digest(token: str, keys: MFAKeys) -> str:
    """The stored form of an mfa_token."""
    return keyed_digest(token, keys.hash_key)


async def active_totp(session: AsyncSession, user_id: int) -> TOTPFactor | None:
    """The account's confirmed TOTP factor, if any."""
    factor = await session.get(TOTPFactor, user_id)
    return factor if factor is not None and factor.confirmed_at is not None else None


async def open_challenge(
    session: AsyncSession, *, user: User, keys: MFAKeys, now: datetime, first_factor: str = "pwd"
) -> PendingMFA:
    """Start the second step of a login for ``user``: a new single-use mfa_token.
    ``first_factor`` is how the login proved itself so far (RFC 8176: ``pwd``, ``ext``).

    The challenge remembers the account's token version, which a password change or reset,
    logout-all and deactivation all move: any of them kills the challenge.
    """
    token = secrets.token_urlsafe(MFA_TOKEN_BYTES)
    session.add(
        MFAChallenge(
            user_id=user.id,
            token_hash=token_digest(token, keys),
            token_version=user.token_version,
            first_factor=first_factor,
            created_at=now,
            expires_at=now + keys.challenge_lifetime,
        )
    )
    await session.flush()
    return PendingMFA(
        mfa_token=token, expires_in=int(keys.challenge_lifetime.total_seconds()), user=user
    )


async def find_challenge(
    session: AsyncSession, *, mfa_token: str, keys: MFAKeys, now: datetime
) -> MFAChallenge | None:
    """The live challenge of ``mfa_token``: not used, not expired, not failed too often."""
    challenge = await session.scalar(
        select(MFAChallenge).where(MFAChallenge.token_hash == token_digest(mfa_token, keys))
    )
    if (
        challenge is None
        or challenge.used_at is not None
        or challenge.expires_at <= now
        or challenge.failures >= MAX_CODE_FAILURES
    ):
        return None
    return challenge
