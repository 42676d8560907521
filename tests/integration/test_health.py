"""Health endpoints report real dependency state; outages give 503 and heal by themselves."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import anyio.to_thread
import asyncpg
import httpx
import pytest
from fastapi import Depends, FastAPI
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from starterkit import Settings, StarterKit, User, __version__, create_app
from starterkit.db import migrate
from starterkit.testing import signed_in_user
from tests.conftest import SettingsFactory, app_client
from tests.support.databases import drop_postgres_database, recreate_postgres_database
from tests.support.tcp_proxy import TCPProxy

pytestmark = pytest.mark.anyio


def app_with_db_route(settings: Settings) -> FastAPI:
    """The service plus one route that needs the database, as every API route will."""
    app = create_app(settings)
    kit = app.state.starterkit

    @app.get("/api/v1/user-count")
    async def user_count(session: Annotated[AsyncSession, Depends(kit.db_session)]) -> int:
        return int(await session.scalar(select(func.count()).select_from(User)) or 0)

    return app


async def test_health_reports_database_and_version(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "up",
        "redis": "disabled",
        "version": __version__,
    }
    assert response.headers["cache-control"] == "no-store"
    assert (await client.get("/api/v1/health/live")).json() == {"status": "ok"}
    assert (await client.get("/api/v1/health/ready")).json() == {"status": "ok"}


async def test_health_reports_redis_up(make_settings: SettingsFactory, redis_url: str) -> None:
    settings = make_settings(redis_url=redis_url)
    await anyio.to_thread.run_sync(migrate.upgrade, settings)
    async with app_client(create_app(settings)) as client:
        body = (await client.get("/api/v1/health")).json()
    assert body["redis"] == "up"
    assert body["status"] == "ok"


async def test_unreachable_redis_degrades_but_stays_200(make_settings: SettingsFactory) -> None:
    settings = make_settings(redis_url="redis://127.0.0.1:1/0")
    await anyio.to_thread.run_sync(migrate.upgrade, settings)
    async with app_client(create_app(settings)) as client:
        response = await client.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["redis"] == "down"


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "service_unavailable"
    assert response.headers["x-request-id"]
    for leak in ("SELECT", "sqlite", "asyncpg", "127.0.0.1", "Traceback", "users"):
        assert leak not in response.text


async def check_outage(client: httpx.AsyncClient) -> None:
    health = await client.get("/api/v1/health")
    assert_unavailable(health)
    assert health.json()["database"] == "down"
    assert_unavailable(await client.get("/api/v1/health/ready"))
    assert_unavailable(await client.get("/api/v1/user-count"))
    live = await client.get("/api/v1/health/live")
    assert live.status_code == 200


async def check_recovered(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/health")).status_code == 200
    assert (await client.get("/api/v1/health/ready")).status_code == 200
    response = await client.get("/api/v1/user-count")
    assert response.status_code == 200
    assert response.json() == 0


async def test_sqlite_outage_is_503_and_recovers(tmp_path: Path) -> None:
    folder = tmp_path / "not-yet"
    settings = Settings(
        _env_file=None, environment="test", database_url=f"sqlite:///{folder / 'app.db'}"
    )
    async with app_client(app_with_db_route(settings)) as client:
        await check_outage(client)
        folder.mkdir()
        await anyio.to_thread.run_sync(migrate.upgrade, settings)
        await check_recovered(client)


@pytest.mark.postgres
async def test_postgres_outage_is_503_and_recovers_without_restart(
    make_settings: SettingsFactory, database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only: SQLite is covered by the test above")
    target = make_url(database_url)
    proxy = TCPProxy(target.host or "127.0.0.1", target.port or 5432)
    await proxy.start()
    proxied = target.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    settings = make_settings(database_url=proxied, database_pool_timeout=2)
    await anyio.to_thread.run_sync(migrate.upgrade, settings)
    try:
        async with app_client(app_with_db_route(settings)) as client:
            await check_recovered(client)  # pool now holds live connections
            await proxy.cut()
            await check_outage(client)
            await proxy.start()
            await check_recovered(client)
    finally:
        await proxy.cut()


@pytest.mark.postgres
async def test_a_pooled_connection_the_server_closed_is_replaced_at_checkout(
    make_settings: SettingsFactory, database_url: str
) -> None:
    # No pre-ping: the pool checks asyncpg's closed flag instead of a round trip.
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only")
    kit = StarterKit(make_settings(database_pool_size=1, database_max_overflow=0))
    backend_pid = text("SELECT pg_backend_pid()")
    try:
        async with kit.engine.connect() as connection:
            pooled = (await connection.execute(backend_pid)).scalar_one()
        async with kit.read_engine.connect() as connection:  # the same pool, the same one
            assert (await connection.execute(backend_pid)).scalar_one() == pooled
        killer = await asyncpg.connect(database_url)
        try:
            assert await killer.fetchval("SELECT pg_terminate_backend($1)", pooled)
        finally:
            await killer.close()
        await anyio.sleep(0.2)  # the event loop reads the server's close
        async with kit.engine.connect() as connection:
            assert (await connection.execute(backend_pid)).scalar_one() != pooled
    finally:
        await kit.aclose()


@pytest.mark.postgres
async def test_a_dropped_database_is_503_everywhere_and_a_new_one_is_used_at_once(
    make_settings: SettingsFactory, database_url: str
) -> None:
    # Seen: `drop database ... with (force)` under a running service made /health 503 but
    # an authenticated GET /items a 500.
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only")
    settings = make_settings(database_pool_timeout=2)
    await anyio.to_thread.run_sync(migrate.upgrade, settings)
    app = create_app(settings)
    async with app_client(app) as client:
        _, headers = await signed_in_user(app, "dropped@example.com")
        assert (await client.get("/api/v1/items", headers=headers)).status_code == 200
        await anyio.to_thread.run_sync(drop_postgres_database, database_url)
        for path in ("/api/v1/items", "/api/v1/users/me"):
            response = await client.get(path, headers=headers)
            assert_unavailable(response)
            assert "3D000" not in response.text
            assert "does not exist" not in response.text
        await anyio.to_thread.run_sync(recreate_postgres_database, database_url)
        await anyio.to_thread.run_sync(migrate.upgrade, settings)
        # Served again without a restart: the account went with the old database.
        assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 401
        assert (await client.get("/api/v1/health")).status_code == 200


@pytest.mark.postgres
async def test_wrong_database_credentials_are_503_without_driver_text(
    make_settings: SettingsFactory, database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only")
    stranger = make_url(database_url).set(username="nobody_here", password="wrong")
    settings = make_settings(database_url=stranger.render_as_string(hide_password=False))
    async with app_client(app_with_db_route(settings)) as client:
        response = await client.get("/api/v1/user-count")
    assert_unavailable(response)
    assert "nobody_here" not in response.text
    assert "28000" not in response.text


@pytest.fixture
async def sqlite_client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        _env_file=None, environment="test", database_url=f"sqlite:///{tmp_path / 'x.db'}"
    )
    async with app_client(create_app(settings)) as client:
        yield client


async def test_health_routes_are_documented_in_openapi(sqlite_client: httpx.AsyncClient) -> None:
    paths = (await sqlite_client.get("/openapi.json")).json()["paths"]
    assert {"/api/v1/health", "/api/v1/health/live", "/api/v1/health/ready"} <= set(paths)
    assert "503" in paths["/api/v1/health"]["get"]["responses"]


async def test_an_unmigrated_database_is_named_in_health_and_the_log(
    make_settings: SettingsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # Seen: mounted and served before `starterkit migrate`, every API route was a 503 "try
    # again shortly" while /health said ok, and the log said only OperationalError.
    settings = make_settings()
    async with app_client(app_with_db_route(settings)) as client:
        for path in ("/api/v1/health", "/api/v1/health/ready"):
            response = await client.get(path)
            assert_unavailable(response)
            assert "run `starterkit migrate`" in response.json()["detail"]
        assert (await client.get("/api/v1/health")).json()["database"] == "up"
        assert_unavailable(await client.get("/api/v1/user-count"))
        assert "schema is missing or behind" in caplog.text
        assert "run `starterkit migrate`" in caplog.text
        await anyio.to_thread.run_sync(migrate.upgrade, settings, "starterkit_0004")
        behind = await client.get("/api/v1/health/ready")
        assert_unavailable(behind)
        await anyio.to_thread.run_sync(migrate.upgrade, settings)
        assert (await client.get("/api/v1/health/ready")).status_code == 200
        assert (await client.get("/api/v1/health")).json()["status"] == "ok"
