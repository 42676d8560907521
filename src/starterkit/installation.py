"""The installation's id: which database this process serves, for the keys it keeps in Redis.

Two services can share one Redis and one REDIS_KEY_PREFIX by accident (the default prefix is
the same everywhere) while each has its own database, and so its own user 1. Keys that only
named the user would then give one service's user 1 the other's cached items, and mix their
rate-limit counters. The installation id, a random value made once by a migration and stored
in the database, is part of every such key, so keys belong to the database they describe:
every process and instance of one service shares them, another service never sees them.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from starterkit.db.models import Installation

logger = logging.getLogger("starterkit.installation")


class InstallationUnknown(Exception):
    """The installation id cannot be read (the database is away, or not migrated)."""


class InstallationId:
    """Reads the installation id once per process; until then each use tries again."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._value: str | None = None
        self._warned = False

    async def get(self) -> str:
        """The id, read on first use.

        Raises:
            InstallationUnknown: the database cannot be read or has no installation row
                (migrations not applied); shared keys are not used until it can.
        """
        if self._value is not None:
            return self._value
        try:
            async with self._engine.connect() as connection:
                value = await connection.scalar(
                    select(Installation.id).order_by(Installation.created_at).limit(1)
                )
        except Exception as error:  # unreachable, or not migrated: the table is missing
            self._warn(f"reading it failed ({type(error).__name__})")
            raise InstallationUnknown from error
        if value is None:
            self._warn("the starterkit_installation table is empty")
            raise InstallationUnknown
        self._value = value
        return value

    def _warn(self, reason: str) -> None:
        if not self._warned:
            self._warned = True
            logger.warning(
                "installation id unknown: %s; the Redis cache and shared rate limits are not "
                "used until it can be read",
                reason,
            )
