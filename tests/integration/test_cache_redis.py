"""The item cache over HTTP: never stale, never shared between users, and outage-proof."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from starterkit import Settings, create_app
from tests.conftest import app_client
from tests.support.auth import API, bearer, login, register, signed_up
from tests.support.redis_server import PrivateRedis
from tests.support.tcp_proxy import TCPProxy

pytestmark = pytest.mark.anyio


@pytest.fixture
def shared_settings(settings: Settings, redis_url: str) -> Settings:
    """Test settings with Redis, under a key prefix of this test's own."""
    return settings.model_copy(
        update={"redis_url": redis_url, "redis_key_prefix": f"test-{uuid.uuid4().hex}:"}
    )


async def test_cache_serves_repeat_reads_without_mixing_users(
    settings: Settings,
) -> None:
    app = create_app(settings)
    async with app_client(app) as client:
        alice = bearer((await signed_up(client, "alice@example.com"))["access_token"])
        bob = bearer((await signed_up(client, "bob@example.com"))["access_token"])
        await client.post(f"{API}/items", json={"title": "alice's"}, headers=alice)
        await client.post(f"{API}/items", json={"title": "bob's"}, headers=bob)
        for _ in range(3):
            a = (await client.get(f"{API}/items", headers=alice)).json()
            b = (await client.get(f"{API}/items", headers=bob)).json()
            assert [i["title"] for i in a["items"]] == ["alice's"]
            assert [i["title"] for i in b["items"]] == ["bob's"]
    cache = app.state.starterkit.cache
    assert cache.hits >= 4


async def test_read_after_write_through_another_instance_sharing_redis(
    shared_settings: Settings,
) -> None:
    one, two = create_app(shared_settings), create_app(shared_settings)
    async with app_client(one) as first, app_client(two) as second:
        tokens = await signed_up(first, "shared@example.com")
        headers = bearer(tokens["access_token"])
        item = (await first.post(f"{API}/items", json={"title": "v1"}, headers=headers)).json()
        url = f"{API}/items/{item['id']}"
        for client in (first, second, first, second):  # warm both caches
            assert (await client.get(url, headers=headers)).json()["title"] == "v1"
            assert (await client.get(f"{API}/items", headers=headers)).json()["total"] == 1

        await second.patch(url, json={"title": "v2"}, headers=headers)
        assert (await first.get(url, headers=headers)).json()["title"] == "v2"
        await second.post(f"{API}/items", json={"title": "another"}, headers=headers)
        assert (await first.get(f"{API}/items", headers=headers)).json()["total"] == 2
        await first.delete(url, headers=headers)
        assert (await second.get(url, headers=headers)).status_code == 404
    assert one.state.starterkit.cache.hits > 0
    assert two.state.starterkit.cache.hits > 0


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def outage_client(
    settings: Settings, private_redis: PrivateRedis
) -> AsyncIterator[tuple[httpx.AsyncClient, PrivateRedis]]:
    app = create_app(settings.model_copy(update={"redis_url": private_redis.url}))
    async with app_client(app) as client:
        yield client, private_redis


@pytest.mark.redis
async def test_redis_outage_bypasses_the_cache_and_recovery_is_never_stale(
    outage_client: tuple[httpx.AsyncClient, PrivateRedis], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, redis = outage_client
    monkeypatch.setattr("starterkit.cache.RETRY_AFTER_FAILURE_SECONDS", 0.0)
    await register(client, "outage@example.com")
    headers = bearer((await login(client, "outage@example.com")).json()["access_token"])
    item = (await client.post(f"{API}/items", json={"title": "v1"}, headers=headers)).json()
    url = f"{API}/items/{item['id']}"
    assert (await client.get(url, headers=headers)).json()["title"] == "v1"  # cached now

    redis.stop()
    patched = await client.patch(url, json={"title": "v2"}, headers=headers)
    assert patched.status_code == 200
    read = await client.get(url, headers=headers)
    assert read.status_code == 200
    assert read.json()["title"] == "v2"
    assert (
        await client.post(f"{API}/items", json={"title": "new"}, headers=headers)
    ).status_code == 201
    health = (await client.get(f"{API}/health")).json()
    assert (health["status"], health["redis"]) == ("degraded", "down")

    redis.start()  # empty again here, but a real Redis may come back with its old entries
    assert (await client.get(url, headers=headers)).json()["title"] == "v2"
    assert (await client.get(f"{API}/items", headers=headers)).json()["total"] == 2
    assert (await client.get(f"{API}/health")).json()["redis"] == "up"


async def test_entries_that_survive_an_outage_are_never_served_stale(
    shared_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis stays up but becomes unreachable (a network cut), so old entries survive."""
    monkeypatch.setattr("starterkit.cache.RETRY_AFTER_FAILURE_SECONDS", 0.0)
    target = shared_settings.redis_url.removeprefix("redis://").split("/")[0]
    host, _, port = target.partition(":")
    proxy = TCPProxy(host, int(port or 6379))
    await proxy.start()
    proxied = shared_settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{proxy.port}/0"})
    try:
        async with app_client(create_app(proxied)) as client:
            headers = bearer((await signed_up(client, "cut@example.com"))["access_token"])
            item = (await client.post(f"{API}/items", json={"title": "v1"}, headers=headers)).json()
            url = f"{API}/items/{item['id']}"
            assert (await client.get(url, headers=headers)).json()["title"] == "v1"  # cached

            await proxy.cut()
            await client.patch(url, json={"title": "v2"}, headers=headers)  # cannot invalidate
            await proxy.start()
            assert (await client.get(url, headers=headers)).json()["title"] == "v2"
    finally:
        await proxy.cut()
