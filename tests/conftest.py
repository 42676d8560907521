"""Fixtures shared by every test: databases, settings, migrated apps and clients.

``database_url`` is parametrised over SQLite and, when STARTERKIT_TEST_DATABASE_URL is set,
PostgreSQL (a fresh database per test). STARTERKIT_TEST_REDIS_URL enables the Redis tests.
STARTERKIT_TEST_SQLITE_FAST_PATHS=false runs every test (and every server and command a test
starts) with SQLITE_FAST_PATHS=false, unless the test sets that setting itself.
"""

from __future__ import annotations

import faulthandler
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import httpx
import pytest
from fastapi import FastAPI

from starterkit import Settings, StarterKit, create_app
from starterkit.settings import PLATFORM_NAMES
from tests.support.databases import (
    MigratedTemplates,
    create_postgres_database,
    drop_postgres_database,
)

POSTGRES_URL = os.environ.get("STARTERKIT_TEST_DATABASE_URL", "")
REDIS_URL = os.environ.get("STARTERKIT_TEST_REDIS_URL", "")
TEST_SECRET_KEY = "test-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"
TEST_REFRESH_SECRET = "test-refresh-secret-0123456789abcdefghijklmnopqrstuvwxyz"

SQLITE_FAST_PATHS = os.environ.get("STARTERKIT_TEST_SQLITE_FAST_PATHS", "")

SettingsFactory = Callable[..., Settings]


TEST_TIMEOUT_SECONDS = 180


@pytest.fixture(scope="session")
def _hang_report() -> Iterator[TextIO]:
    """Where a hung test's stacks go: STARTERKIT_TEST_HANG_REPORT, or stderr.

    pytest captures stderr while a test runs, and a hang ends the process before the capture
    is shown, so CI names a file of its own and prints it when the run fails.
    """
    path = os.environ.get("STARTERKIT_TEST_HANG_REPORT")
    if not path:
        yield sys.__stderr__ or sys.stderr
        return
    with Path(path).open("a", encoding="utf-8") as report:
        yield report


@pytest.fixture(autouse=True)
def _no_test_hangs_forever(request: pytest.FixtureRequest, _hang_report: TextIO) -> Iterator[None]:
    """A test stuck for minutes dumps every thread's stack and ends the run.

    CI must fail with a clue rather than hang until it is killed.
    """
    _hang_report.write(f"running {request.node.nodeid}\n")
    _hang_report.flush()
    faulthandler.dump_traceback_later(TEST_TIMEOUT_SECONDS, exit=True, file=_hang_report)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(autouse=True)
def _hermetic_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No developer STARTERKIT_* variable, platform variable or .env file leaks into a test."""
    for name in list(os.environ):
        if name.startswith("STARTERKIT_") and not name.startswith("STARTERKIT_TEST_"):
            monkeypatch.delenv(name)
    for name in (*PLATFORM_NAMES.values(), "PORT"):
        monkeypatch.delenv(name, raising=False)
    if SQLITE_FAST_PATHS:
        # Settings read it from the environment, in this process and in the ones tests start.
        monkeypatch.setenv("STARTERKIT_SQLITE_FAST_PATHS", SQLITE_FAST_PATHS)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file, or a new PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    if not POSTGRES_URL:
        pytest.skip("STARTERKIT_TEST_DATABASE_URL is not set")
    url = create_postgres_database(POSTGRES_URL)
    try:
        yield url
    finally:
        drop_postgres_database(url)


@pytest.fixture
def redis_url() -> str:
    """The test Redis, or skip."""
    if not REDIS_URL:
        pytest.skip("STARTERKIT_TEST_REDIS_URL is not set")
    return REDIS_URL


@pytest.fixture
def make_settings(database_url: str) -> SettingsFactory:
    """Build test Settings on the test database; keyword arguments override."""

    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "environment": "test",
            "database_url": database_url,
            "secret_key": TEST_SECRET_KEY,
            "refresh_token_secret": TEST_REFRESH_SECRET,
            # Tests log in and register many times from one address; the limit tests lower
            # these on purpose.
            **dict.fromkeys(Settings.rate_limit_fields(), "10000/minute"),
            # Reuse-detection tests replay a refresh token at once; the grace window that
            # would forgive that has tests of its own.
            "refresh_reuse_grace_seconds": 0,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)

    return factory


@pytest.fixture(scope="session")
def migrated_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MigratedTemplates]:
    templates = MigratedTemplates(tmp_path_factory.mktemp("migrated"))
    try:
        yield templates
    finally:
        templates.close()


@pytest.fixture
def settings(make_settings: SettingsFactory, migrated_templates: MigratedTemplates) -> Settings:
    """Test settings on a database migrated to head (a copy of one migrated once)."""
    result = make_settings()
    migrated_templates.copy_into(result)
    return result


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    """The whole service on the migrated test database."""
    return create_app(settings)


@pytest.fixture
def kit(app: FastAPI) -> StarterKit:
    """The runtime behind ``app``."""
    runtime: StarterKit = app.state.starterkit
    return runtime


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to ``app`` in process, with its lifespan running."""
    async with app_client(app) as http:
        yield http


def app_client(app: FastAPI, *, base_url: str = "http://testserver") -> _AppClient:
    """Context manager: run ``app``'s lifespan and give a client for it at ``base_url``."""
    return _AppClient(app, base_url=base_url)


class _AppClient:
    def __init__(self, app: FastAPI, *, base_url: str = "http://testserver") -> None:
        self.app = app
        self._lifespan = app.router.lifespan_context(app)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        self.client = httpx.AsyncClient(transport=transport, base_url=base_url)

    async def __aenter__(self) -> httpx.AsyncClient:
        await self._lifespan.__aenter__()
        return self.client

    async def __aexit__(self, *exc_info: object) -> None:
        await self.client.aclose()
        await self._lifespan.__aexit__(None, None, None)
