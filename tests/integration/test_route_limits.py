"""``kit.rate_limit(...)`` on your own routes, and ``kit.limiter`` routes that never 500.

No ``from __future__ import annotations``: FastAPI reads the routes' annotations at runtime.
"""

import uuid
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI, Request

from starterkit import Settings, StarterKit, User
from starterkit.testing import app_client, signed_in_user

pytestmark = pytest.mark.anyio


def assert_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["code"] == "rate_limited"
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["x-ratelimit-remaining"] == "0"


def mounted(settings: Settings) -> tuple[FastAPI, StarterKit]:
    """Your own app with starterkit mounted, as the README shows."""
    kit = StarterKit(settings)
    app = FastAPI(lifespan=kit.lifespan)
    kit.install(app)
    return app, kit


async def test_a_slowapi_readme_route_is_never_a_500(settings: Settings) -> None:
    # Seen: the first two calls were 500 ("parameter response must be an instance of
    # starlette.responses.Response"), the third a correct 429.
    app, kit = mounted(settings)

    @app.get("/limited")
    @kit.limiter.limit("2/minute")
    async def limited(request: Request) -> dict[str, bool]:
        return {"ok": True}

    async with app_client(app, migrate_database=False) as client:
        for _ in range(2):
            response = await client.get("/limited")
            assert response.status_code == 200, response.text
            assert response.json() == {"ok": True}
        refused = await client.get("/limited")
        assert refused.status_code == 429
        assert refused.json()["code"] == "rate_limited"


async def test_kit_rate_limit_works_on_any_route_with_headers_and_the_envelope(
    settings: Settings,
) -> None:
    app, kit = mounted(settings)

    @app.get("/search", dependencies=[Depends(kit.rate_limit("2/minute"))])
    async def search() -> list[str]:
        return []

    @app.post("/search", dependencies=[Depends(kit.rate_limit("1/minute"))])
    async def save_search() -> dict[str, bool]:
        return {"saved": True}

    async with app_client(app, migrate_database=False) as client:
        first = await client.get("/search")
        assert first.status_code == 200
        assert (first.headers["x-ratelimit-limit"], first.headers["x-ratelimit-remaining"]) == (
            "2",
            "1",
        )
        assert (await client.get("/search")).status_code == 200
        assert_limited(await client.get("/search"))
        # Each route (method and path) counts for itself.
        assert (await client.post("/search")).status_code == 200
        assert_limited(await client.post("/search"))
        # A client cannot take a fresh budget by naming another address itself.
        assert_limited(await client.get("/search", headers={"X-Forwarded-For": "203.0.113.5"}))


async def test_kit_rate_limit_per_user_and_by_a_key_of_your_own(settings: Settings) -> None:
    app, kit = mounted(settings)

    @app.get("/mine", dependencies=[Depends(kit.rate_limit("1/minute", key="user"))])
    async def mine(user: Annotated[User, Depends(kit.current_user)]) -> str:
        return user.email

    async def tenant(request: Request) -> str:
        return request.headers.get("x-tenant", "none")

    @app.get("/tenant", dependencies=[Depends(kit.rate_limit("1/minute", key=tenant))])
    async def per_tenant() -> bool:
        return True

    shared = Depends(kit.rate_limit("1/minute", name="exports"))

    @app.get("/export/a", dependencies=[shared])
    async def export_a() -> bool:
        return True

    @app.get("/export/b", dependencies=[shared])
    async def export_b() -> bool:
        return True

    async with app_client(app) as client:
        _, alice = await signed_in_user(app, "alice@example.com")
        _, bob = await signed_in_user(app, "bob@example.com")
        assert (await client.get("/mine")).status_code == 401  # no user, nothing to count
        assert (await client.get("/mine", headers=alice)).json() == "alice@example.com"
        assert_limited(await client.get("/mine", headers=alice))
        assert (await client.get("/mine", headers=bob)).status_code == 200

        assert (await client.get("/tenant", headers={"x-tenant": "a"})).status_code == 200
        assert_limited(await client.get("/tenant", headers={"x-tenant": "a"}))
        assert (await client.get("/tenant", headers={"x-tenant": "b"})).status_code == 200

        assert (await client.get("/export/a")).status_code == 200
        assert_limited(await client.get("/export/b"))  # one counter for both routes


async def test_kit_rate_limit_is_shared_through_redis_and_survives_its_outage(
    settings: Settings, redis_url: str
) -> None:
    shared = settings.model_copy(
        update={"redis_url": redis_url, "redis_key_prefix": f"test-{uuid.uuid4().hex}:"}
    )
    apps = []
    for _ in range(2):
        app, kit = mounted(shared)

        @app.get("/report", dependencies=[Depends(kit.rate_limit("3/minute"))])
        async def report() -> bool:
            return True

        apps.append(app)
    async with (
        app_client(apps[0], migrate_database=False) as one,
        app_client(apps[1], migrate_database=False) as two,
    ):
        for client in (one, two, one):
            assert (await client.get("/report")).status_code == 200
        assert_limited(await two.get("/report"))

    down, kit = mounted(settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"}))

    @down.get("/report", dependencies=[Depends(kit.rate_limit("1/minute"))])
    async def report_down() -> bool:
        return True

    async with app_client(down, migrate_database=False) as client:
        assert (await client.get("/report")).status_code == 200
        assert_limited(await client.get("/report"))  # per process, never fails open


def test_a_bad_limit_fails_where_the_route_is_defined(settings: Settings) -> None:
    with pytest.raises(ValueError, match="lots"):
        StarterKit(settings).rate_limit("lots")
