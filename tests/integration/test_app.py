"""The runtime has no global state: apps with different settings coexist in one process."""

from pathlib import Path
from typing import Annotated, Any

import anyio.to_thread
import pytest
from fastapi import APIRouter, Depends, FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.pool import QueuePool

from starterkit import Settings, StarterKit, create_app
from starterkit.app import add_routes
from starterkit.db import migrate
from tests.conftest import app_client

pytestmark = pytest.mark.anyio


def sqlite_settings(path: Path, **overrides: Any) -> Settings:
    return Settings(
        _env_file=None, environment="test", database_url=f"sqlite:///{path}", **overrides
    )


async def test_two_apps_with_different_settings_work_side_by_side(tmp_path: Path) -> None:
    first = sqlite_settings(tmp_path / "one.db", api_prefix="/one", max_body_bytes=1024)
    second = sqlite_settings(tmp_path / "two.db", api_prefix="/two", docs_enabled=False)
    await anyio.to_thread.run_sync(migrate.upgrade, first)  # the second one stays empty
    app_one, app_two = create_app(first), create_app(second)
    assert app_one.state.starterkit is not app_two.state.starterkit

    async with app_client(app_one) as one, app_client(app_two) as two:
        assert (await one.get("/one/health")).status_code == 200
        assert (await one.get("/two/health")).status_code == 404
        # The second one's database was never migrated, and its health says so.
        assert (await two.get("/two/health")).status_code == 503
        assert (await two.get("/two/health/live")).status_code == 200
        assert (await two.get("/one/health")).status_code == 404
        # Each app keeps its own limits and documentation settings.
        assert (await one.post("/one/health", content=b"x" * 2048)).status_code == 413
        assert (await two.post("/two/health", content=b"x" * 2048)).status_code == 405
        assert (await one.get("/docs")).status_code == 200
        assert (await two.get("/docs")).status_code == 404

    # Each engine points at its own file.
    assert str(app_one.state.starterkit.engine.url).endswith("one.db")
    assert str(app_two.state.starterkit.engine.url).endswith("two.db")


async def test_kit_mounts_into_an_existing_app_under_any_prefix(tmp_path: Path) -> None:
    settings = sqlite_settings(tmp_path / "mounted.db")
    kit = StarterKit(settings)
    app = FastAPI(lifespan=kit.lifespan)
    kit.install(app)
    app.include_router(kit.health_router, prefix="/ops")

    @app.get("/mine")
    async def mine(session: Annotated[AsyncSession, Depends(kit.db_session)]) -> int:
        return int((await session.execute(text("SELECT 41 + 1"))).scalar_one())

    async with app_client(app) as client:
        assert (await client.get("/ops/health")).json()["database"] == "up"
        assert (await client.get("/mine")).json() == 42
        missing = await client.get("/nothing-here")
        assert missing.json()["code"] == "not_found"
        assert missing.headers["x-request-id"]


def test_add_routes_documents_what_include_router_would(tmp_path: Path) -> None:
    kit = StarterKit(sqlite_settings(tmp_path / "flat.db"))
    routers = {"/v": kit.health_router, "/v/items": kit.items_router, "/v/users": kit.users_router}
    included, added = FastAPI(), FastAPI()
    for prefix, router in routers.items():
        included.include_router(router, prefix=prefix)
        add_routes(added, router, prefix=prefix)
    assert added.openapi() == included.openapi()
    assert added.url_path_for("items:get", item_id=7) == "/v/items/7"


async def test_added_routes_obey_dependency_overrides(tmp_path: Path) -> None:
    def greeting() -> str:
        return "hello"

    router = APIRouter()

    @router.get("/greet")
    async def greet(text: Annotated[str, Depends(greeting)]) -> str:
        return text

    app = FastAPI()
    add_routes(app, router, prefix="/api")
    async with app_client(app) as client:
        assert (await client.get("/api/greet")).json() == "hello"
        app.dependency_overrides[greeting] = lambda: "overridden"
        assert (await client.get("/api/greet")).json() == "overridden"

    nested = APIRouter()
    nested.include_router(router)
    with pytest.raises(TypeError, match="API routes only"):
        add_routes(app, nested)


async def test_lifespan_releases_connections_and_kit_stays_usable(tmp_path: Path) -> None:
    kit = StarterKit(sqlite_settings(tmp_path / "life.db"))
    pool = kit.engine.pool
    assert isinstance(pool, QueuePool)
    async with kit.lifespan():
        assert await kit.ping_database()
        assert pool.checkedin() == 1
    # dispose() closed the pooled connections and swapped in a fresh, empty pool.
    fresh = kit.engine.pool
    assert fresh is not pool
    assert isinstance(fresh, QueuePool)
    assert fresh.checkedin() == 0
    assert await kit.ping_database()
    await kit.aclose()


def test_missing_secrets_outside_production_give_random_ones_per_kit(tmp_path: Path) -> None:
    settings = sqlite_settings(tmp_path / "s.db")
    first, second = StarterKit(settings), StarterKit(settings)
    assert first.token_secrets != second.token_secrets
    assert first.token_secrets == first.token_secrets
    assert len(first.token_secrets[0]) >= 32


def test_configured_secrets_are_used(tmp_path: Path) -> None:
    key, refresh = "k" * 40, "r" * 40
    kit = StarterKit(
        sqlite_settings(tmp_path / "s.db", secret_key=key, refresh_token_secret=refresh)
    )
    assert kit.token_secrets == (key, refresh)


def test_create_app_reads_settings_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STARTERKIT_DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    monkeypatch.setenv("STARTERKIT_API_PREFIX", "/from-env")
    app = create_app()
    assert "/from-env/health" in app.openapi()["paths"]
