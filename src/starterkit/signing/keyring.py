"""The signing keys one process holds in memory, read from the database and kept fresh.

Every instance reads the same ``signing_keys`` rows, so a ``starterkit keys rotate`` anywhere
reaches all of them within KEYSET_REFRESH_SECONDS, without a restart; a token naming a key
this process has not seen yet makes it read the keys again at once (at most once a second).
Only the active key's private part is decrypted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from starterkit.encryption import SecretBox, UndecryptableSecret
from starterkit.exceptions import ServiceUnavailable
from starterkit.signing import service
from starterkit.signing.jwk import (
    ASYMMETRIC_ALGORITHMS,
    AsymmetricAlgorithm,
    PrivateKey,
    PublicKey,
    load_private_pem,
    public_key_of,
)

logger = logging.getLogger("starterkit.signing")

# A token with an unknown kid refreshes the keys at most this often, so a flood of forged kids
# cannot turn every request into a database read.
FORCED_REFRESH_INTERVAL_SECONDS = 1.0
NO_KEYS = (
    "The database has no usable signing key for JWT_ALGORITHM={algorithm}; run "
    "`starterkit keys generate --activate` (or `starterkit migrate`, which makes the first one)."
)


class NoSigningKey(ServiceUnavailable):
    """No active key that this process can decrypt: tokens cannot be issued."""


@dataclass(frozen=True, slots=True)
class VerifyingKey:
    """A published key: its algorithm (the only one it verifies) and public key."""

    algorithm: str
    key: PublicKey
    jwk: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Keyset:
    """One reading of the keys: the signer (kid, algorithm, private key) and the verifiers."""

    signer: tuple[str, str, PrivateKey] | None
    verifiers: dict[str, VerifyingKey]
    # Before this instant, kid-less HS256 tokens of the SECRET_KEY era may still be current.
    first_activation: datetime | None = None
    loaded_at: float = field(default_factory=time.monotonic)


class Keyring:
    """Reads the signing keys and keeps them fresh for one runtime.

    Args:
        sessionmaker: sessions on the runtime's database.
        algorithm: JWT_ALGORITHM; new keys get it.
        box: decrypts (and encrypts) private keys.
        token_lifetime: the access-token lifetime: how long a retired key stays valid.
        refresh_seconds: KEYSET_REFRESH_SECONDS.
        create_missing: make and activate a first key when there is no usable one (outside
            production; production refuses to start instead).
        clock: the current aware UTC time.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        algorithm: AsymmetricAlgorithm,
        box: Callable[[], SecretBox],
        token_lifetime: timedelta,
        refresh_seconds: float,
        create_missing: bool,
        clock: Callable[[], datetime],
    ) -> None:
        if algorithm not in ASYMMETRIC_ALGORITHMS:
            raise ValueError(f"{algorithm} is not an asymmetric algorithm")
        self.algorithm = algorithm
        self._sessionmaker = sessionmaker
        self._box = box
        self._token_lifetime = token_lifetime
        self._refresh_seconds = refresh_seconds
        self._create_missing = create_missing
        self._clock = clock
        self._keyset: Keyset | None = None
        self._last_forced = 0.0
        self._refreshing = False

    @property
    def keyset(self) -> Keyset | None:
        """The last reading, or None before the first."""
        return self._keyset

    async def ready(self, *, create: bool = True) -> Keyset:
        """The keys, read again when older than KEYSET_REFRESH_SECONDS.

        ``create=False`` never writes: for callers inside a transaction, whose write lock a
        first key's INSERT would wait for on SQLite.
        """
        keyset = self._keyset
        if keyset is None or time.monotonic() - keyset.loaded_at >= self._refresh_seconds:
            if keyset is not None and self._refreshing:
                return keyset  # another request is reading them; a moment older is fine
            if keyset is None:
                return await self.refresh(create=create)
            try:
                keyset = await self.refresh(create=create)
            except Exception as error:  # noqa: BLE001 - the database may be away for a while
                # The keys read last stay right until someone rotates; requests that need
                # nothing else from the database go on. Try again after the next interval.
                logger.warning("reading the signing keys failed, keeping the last ones: %r", error)
                keyset = replace(keyset, loaded_at=time.monotonic())
                self._keyset = keyset
        return keyset

    async def refresh_for_unknown_kid(self) -> bool:
        """Read the keys again for a token naming a kid not in memory; False if that was done
        less than a second ago (the kid is then simply unknown)."""
        now = time.monotonic()
        if now - self._last_forced < FORCED_REFRESH_INTERVAL_SECONDS:
            return False
        self._last_forced = now
        await self.refresh(create=False)
        return True

    async def refresh(self, *, create: bool = True, force_create: bool = False) -> Keyset:
        """Read the keys now, and make the first one where that is allowed (outside
        production) or asked for (``force_create``: ``starterkit migrate``)."""
        self._refreshing = True
        try:
            return await self._refresh(create=create, force_create=force_create)
        finally:
            self._refreshing = False

    async def _refresh(self, *, create: bool, force_create: bool) -> Keyset:
        async with self._sessionmaker() as session:
            keyset = await self._read(session)
            wanted = force_create or (create and self._create_missing)
            if keyset.signer is None and wanted:
                key = await service.generate_key(
                    session,
                    algorithm=self.algorithm,
                    box=self._box(),
                    now=self._clock(),
                    activate=True,
                )
                await session.commit()
                logger.info("made and activated signing key %s (%s)", key.kid, key.algorithm)
                keyset = await self._read(session)
        self._keyset = keyset
        return keyset

    def signer(self) -> tuple[str, str, PrivateKey]:
        """``(kid, algorithm, private key)`` of the active key.

        Raises:
            NoSigningKey: there is none this process can use.
        """
        keyset = self._keyset
        if keyset is None or keyset.signer is None:
            raise NoSigningKey(NO_KEYS.format(algorithm=self.algorithm))
        return keyset.signer

    def verifier(self, kid: str) -> VerifyingKey | None:
        """The published key ``kid``, if this process knows it."""
        keyset = self._keyset
        return keyset.verifiers.get(kid) if keyset is not None else None

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The JWK Set of the published keys (RFC 7517 §5)."""
        keyset = self._keyset
        keys = [] if keyset is None else [v.jwk for v in keyset.verifiers.values()]
        return {"keys": keys}

    async def _read(self, session: AsyncSession) -> Keyset:
        now = self._clock()
        keys = await service.published_keys(session, now=now, token_lifetime=self._token_lifetime)
        verifiers = {}
        for key in keys:
            jwk = service.jwk_of(key)
            verifiers[key.kid] = VerifyingKey(key.algorithm, public_key_of(jwk), jwk)
        signer = None
        active = service.active_key(keys)
        if active is not None:
            try:
                private = load_private_pem(self._box().decrypt(active.private_key))
            except UndecryptableSecret:
                logger.error(
                    "signing key %s cannot be decrypted with ENCRYPTION_KEYS (or the key "
                    "derived from SECRET_KEY)",
                    active.kid,
                )
            else:
                signer = (active.kid, active.algorithm, private)
        activations = [k.activated_at for k in keys if k.activated_at is not None]
        return Keyset(signer, verifiers, min(activations, default=None))
