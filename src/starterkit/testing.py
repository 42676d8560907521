"""Helpers for testing your own app built on starterkit.

A throwaway database, a client that runs your app's lifespan, and a signed-in user in one
call::

    import pytest
    from starterkit import create_app
    from starterkit.testing import app_client, signed_in_user, throwaway_settings


    @pytest.mark.anyio
    async def test_me(tmp_path):
        app = create_app(throwaway_settings(tmp_path))
        async with app_client(app) as client:
            user, headers = await signed_in_user(app, "me@example.com")
            response = await client.get("/api/v1/users/me", headers=headers)
            assert response.json()["email"] == "me@example.com"

The client needs ``httpx``: install ``starterkit[testing]`` (httpx and pytest). Async tests need
an async test runner such as anyio's pytest plugin (installed with FastAPI) or pytest-asyncio.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from starterkit.app import StarterKit
from starterkit.audit import Origin
from starterkit.db import migrate
from starterkit.db.models import User
from starterkit.settings import Settings
from starterkit.users.service import create_user

if TYPE_CHECKING:
    import httpx
    from fastapi import FastAPI

DEFAULT_PASSWORD = "a long test passphrase"  # noqa: S105 - a documented test value
# The audit log's origin of the users made here.
TESTING = Origin(ip=None, user_agent="starterkit.testing")

__all__ = [
    "DEFAULT_PASSWORD",
    "app_client",
    "kit_of",
    "signed_in_user",
    "throwaway_settings",
]


def throwaway_settings(folder: Path | str | None = None, **overrides: Any) -> Settings:
    """Settings for a test: a new SQLite file, random secrets, limits out of the way.

    Nothing is read from the environment or ``.env``, so a developer's configuration cannot
    leak into tests. Pass ``database_url=...`` (e.g. a PostgreSQL test database) or any other
    setting to override.

    Args:
        folder: where the SQLite file goes; a new temporary directory when omitted.
        overrides: setting values that win over the defaults here.
    """
    folder = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="starterkit-"))
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": f"sqlite:///{folder / 'test.db'}",
        "secret_key": secrets.token_urlsafe(48),
        "refresh_token_secret": secrets.token_urlsafe(48),
        "session_purge_interval_seconds": 0,
        **dict.fromkeys(Settings.rate_limit_fields(), "1000000/minute"),
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def kit_of(app: FastAPI) -> StarterKit:
    """The :class:`StarterKit` installed on ``app`` (by ``create_app`` or ``kit.install``)."""
    kit = getattr(app.state, "starterkit", None)
    if not isinstance(kit, StarterKit):
        raise LookupError("no StarterKit is installed on this app; call kit.install(app)")
    return kit


@asynccontextmanager
async def app_client(
    app: FastAPI, *, migrate_database: bool = True, base_url: str = "http://testserver"
) -> AsyncIterator[httpx.AsyncClient]:
    """An ``httpx.AsyncClient`` that talks to ``app`` in process, with its lifespan running.

    Args:
        app: your app, with a StarterKit installed.
        migrate_database: apply all migrations (starterkit's and ``MIGRATION_LOCATIONS``)
            to the kit's database first.
        base_url: the URL requests appear to go to.
    """
    try:
        import httpx  # noqa: PLC0415 - only tests need it
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "starterkit.testing.app_client needs httpx: pip install 'starterkit[testing]'",
            name="httpx",
        ) from None

    if migrate_database:
        await anyio.to_thread.run_sync(migrate.upgrade, kit_of(app).settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url=base_url) as client,
    ):
        yield client


async def signed_in_user(
    app_or_kit: FastAPI | StarterKit,
    email: str,
    *,
    password: str = DEFAULT_PASSWORD,
    superuser: bool = False,
    full_name: str | None = None,
) -> tuple[User, dict[str, str]]:
    """Create a user and return it with ``Authorization`` headers for a valid access token.

    The user goes through the same rules as registration; the token is issued directly, so
    this works wherever (and whether) you mounted the auth router.
    """
    kit = app_or_kit if isinstance(app_or_kit, StarterKit) else kit_of(app_or_kit)
    async with kit.sessionmaker() as session:
        user = await create_user(
            session,
            email=email,
            password=password,
            hasher=kit.password_hasher,
            password_min_length=kit.settings.password_min_length,
            full_name=full_name,
            is_superuser=superuser,
            origin=TESTING,
            now=kit.clock(),
        )
        await session.commit()
    await kit.tokens.ready()
    token = kit.tokens.issue_access_token(user_id=user.id, token_version=user.token_version)
    return user, {"Authorization": f"Bearer {token}"}
