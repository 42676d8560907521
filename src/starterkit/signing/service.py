"""The signing keys in the database: generate, rotate, retire, and which ones are published.

A key's life (RFC 8725 §3.1 allow-lists one algorithm per key; SECURITY.md: publish the next key
before using it, keep the old one until its tokens expire):

- **next**: generated and published in the JWKS, not signing yet, so verifiers elsewhere can
  fetch it before the first token it signs reaches them;
- **active**: the most recently activated key that is not retired; it signs every new token;
- **previous**: activated once, replaced by a newer one; it still verifies;
- **retired**: still published and verifying until the tokens it could have signed have
  expired (``retired_at`` + the access-token lifetime), then gone from the JWKS and refused.

Services take the session first and never commit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from starterkit.db.models import SigningKey
from starterkit.encryption import SecretBox
from starterkit.exceptions import InvalidRequest, NotFound
from starterkit.signing.jwk import AsymmetricAlgorithm, new_private_key, private_pem, public_jwk

KeyState = Literal["next", "active", "previous", "retired", "expired"]


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """One stored key as ``starterkit keys list`` shows it."""

    kid: str
    algorithm: str
    state: KeyState
    created_at: datetime
    activated_at: datetime | None
    retired_at: datetime | None


def active_key(keys: list[SigningKey]) -> SigningKey | None:
    """The key that signs: the most recently activated one that is not retired."""
    candidates = [k for k in keys if k.activated_at is not None and k.retired_at is None]
    return max(candidates, key=lambda k: (k.activated_at, k.kid), default=None)


def state_of(
    key: SigningKey, *, active: SigningKey | None, now: datetime, token_lifetime: timedelta
) -> KeyState:
    """Where ``key`` is in its life (see the module docstring)."""
    if key.retired_at is not None:
        return "retired" if key.retired_at + token_lifetime > now else "expired"
    if active is not None and key.kid == active.kid:
        return "active"
    return "next" if key.activated_at is None else "previous"


async def list_keys(
    session: AsyncSession, *, now: datetime, token_lifetime: timedelta
) -> list[KeyInfo]:
    """Every stored key, newest first, with its state."""
    keys = list(await session.scalars(select(SigningKey)))
    active = active_key(keys)
    keys.sort(key=lambda k: (k.created_at, k.kid), reverse=True)
    return [
        KeyInfo(
            kid=k.kid,
            algorithm=k.algorithm,
            state=state_of(k, active=active, now=now, token_lifetime=token_lifetime),
            created_at=k.created_at,
            activated_at=k.activated_at,
            retired_at=k.retired_at,
        )
        for k in keys
    ]


async def published_keys(
    session: AsyncSession, *, now: datetime, token_lifetime: timedelta
) -> list[SigningKey]:
    """The keys that verify tokens and appear in the JWKS: all but the expired retired ones."""
    keys = await session.scalars(
        select(SigningKey).where(
            (SigningKey.retired_at.is_(None)) | (SigningKey.retired_at > now - token_lifetime)
        )
    )
    return list(keys)


async def generate_key(
    session: AsyncSession,
    *,
    algorithm: AsymmetricAlgorithm,
    box: SecretBox,
    now: datetime,
    activate: bool = False,
) -> SigningKey:
    """Make a new key pair and store it, its private part encrypted with ``box``.

    It is *next* (published, not signing) unless ``activate``; a fresh install's first key is
    activated at once, since no verifier can hold a token of it yet.
    """
    private = new_private_key(algorithm)
    jwk = public_jwk(private, algorithm)
    key = SigningKey(
        kid=jwk["kid"],
        algorithm=algorithm,
        public_jwk=json.dumps(jwk, sort_keys=True),
        private_key=box.encrypt(private_pem(private)),
        created_at=now,
        activated_at=now if activate else None,
    )
    session.add(key)
    await session.flush()
    return key


async def rotate_keys(
    session: AsyncSession, *, algorithm: AsymmetricAlgorithm, box: SecretBox, now: datetime
) -> SigningKey:
    """Make the newest *next* key of ``algorithm`` the active one (generating one if there is
    none); the key it replaces stays valid as *previous* until it is retired."""
    waiting = await session.scalars(
        select(SigningKey)
        .where(
            SigningKey.activated_at.is_(None),
            SigningKey.retired_at.is_(None),
            SigningKey.algorithm == algorithm,
        )
        .order_by(SigningKey.created_at.desc(), SigningKey.kid)
    )
    key = waiting.first()
    if key is None:
        return await generate_key(session, algorithm=algorithm, box=box, now=now, activate=True)
    key.activated_at = now
    return key


async def retire_key(
    session: AsyncSession, *, kid: str, now: datetime, token_lifetime: timedelta
) -> SigningKey:
    """Retire a key: it signs nothing more and verifies until its tokens have expired.

    Raises:
        NotFound: no key has this kid.
        InvalidRequest: it is the active key (rotate first), or it is already retired.
    """
    keys = list(await session.scalars(select(SigningKey)))
    key = next((k for k in keys if k.kid == kid), None)
    if key is None:
        raise NotFound(f"There is no signing key {kid}.")
    if key.retired_at is not None:
        raise InvalidRequest(f"The signing key {kid} is already retired.")
    active = active_key(keys)
    if active is not None and active.kid == kid:
        raise InvalidRequest(
            f"{kid} is the active signing key; run `starterkit keys rotate` first, then retire it."
        )
    key.retired_at = now
    return key


def jwk_of(key: SigningKey) -> dict[str, Any]:
    """The public JWK stored with ``key``."""
    loaded: dict[str, Any] = json.loads(key.public_jwk)
    return loaded


async def reencrypt_keys(session: AsyncSession, *, box: SecretBox) -> int:
    """Encrypt every stored private key with the newest key of ``box``; how many changed.

    Raises:
        UndecryptableSecret: a key no encryption key decrypts (nothing is changed then, since
            the caller does not commit).
    """
    changed = 0
    for key in await session.scalars(select(SigningKey)):
        if box.needs_rotation(key.private_key):
            key.private_key = box.rotate(key.private_key)
            changed += 1
    return changed
