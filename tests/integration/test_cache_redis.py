"""The item cache over HTTP: never stale, never shared between users, and outage-proof."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import anyio.to_thread
import httpx
import pytest
from limits import parse
from redis.asyncio import Redis

from starterkit import Settings, StarterKit, create_app
from starterkit.cache import CachedResponse, RedisBackend, ResponseCache
from starterkit.db import migrate
from tests.conftest import SettingsFactory, app_client
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


async def test_two_services_sharing_redis_and_its_prefix_keep_their_keys_apart(
    make_settings: SettingsFactory, redis_url: str, tmp_path: Path
) -> None:
    # Seen: two services on one Redis with the default prefix served each other's cached items
    # (same numeric user id) and shared rate-limit counters. Each has its own database here:
    # the test database, and a SQLite file.
    shared = {
        "redis_url": redis_url,
        "redis_key_prefix": f"test-{uuid.uuid4().hex}:",
        "auth_register_rate_limit": "2/hour",
    }
    first_settings = make_settings(**shared)
    second_settings = make_settings(**shared, database_url=f"sqlite:///{tmp_path / 'other.db'}")
    for settings in (first_settings, second_settings):
        await anyio.to_thread.run_sync(migrate.upgrade, settings)
    first, second = create_app(first_settings), create_app(second_settings)
    async with app_client(first) as one, app_client(second) as two:
        a = await signed_up(one, "a@example.com")
        b = await signed_up(two, "b@example.com")
        a_me = (await one.get(f"{API}/users/me", headers=bearer(a["access_token"]))).json()
        b_me = (await two.get(f"{API}/users/me", headers=bearer(b["access_token"]))).json()
        assert a_me["id"] == b_me["id"]  # the same user id in both services
        await one.post(f"{API}/items", json={"title": "a's"}, headers=bearer(a["access_token"]))
        for _ in range(2):  # cached in the first service
            page = await one.get(f"{API}/items", headers=bearer(a["access_token"]))
            assert [item["title"] for item in page.json()["items"]] == ["a's"]
        # The second service's user 1 has no items, whatever the first one cached.
        page = await two.get(f"{API}/items", headers=bearer(b["access_token"]))
        assert page.json()["items"] == []
        await two.post(f"{API}/items", json={"title": "b's"}, headers=bearer(b["access_token"]))
        for _ in range(2):
            page = await two.get(f"{API}/items", headers=bearer(b["access_token"]))
            assert [item["title"] for item in page.json()["items"]] == ["b's"]
        # Registrations count per service: the first has used its two, the second one.
        assert (await register(one, "a2@example.com")).status_code == 201
        assert (await register(one, "a3@example.com")).status_code == 429
        assert (await register(two, "b2@example.com")).status_code == 201
    one_kit, two_kit = first.state.starterkit, second.state.starterkit
    assert one_kit.cache.hits > 0
    assert two_kit.cache.hits > 0
    assert await one_kit.installation.get() != await two_kit.installation.get()


async def test_without_an_installation_id_redis_keys_wait(
    make_settings: SettingsFactory, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Not migrated: no installation row, so no key can be named for this service yet.
    settings = make_settings(redis_url=redis_url, redis_key_prefix=f"test-{uuid.uuid4().hex}:")
    kit = StarterKit(settings)
    try:
        lookup = await kit.cache.lookup(1, "items")
        assert lookup.hit is None
        assert lookup.key is None  # nothing is stored either
        limit = parse("1/minute")
        assert (await kit.rate_limits.hit("probe", limit, "k")).allowed
        assert not (await kit.rate_limits.hit("probe", limit, "k")).allowed  # counted in process
        assert await kit.redis.keys(f"{settings.redis_key_prefix}*") == []  # type: ignore[union-attr]
        warnings = [r for r in caplog.records if "installation id unknown" in r.getMessage()]
        assert len(warnings) == 1  # said once, not per request
        await anyio.to_thread.run_sync(migrate.upgrade, settings)
        assert len(await kit.installation.get()) == 32
        assert (await kit.cache.lookup(1, "items")).key is not None
    finally:
        await kit.aclose()


async def test_a_cache_hit_on_redis_is_one_round_trip(shared_settings: Settings) -> None:
    app = create_app(shared_settings)
    kit: StarterKit = app.state.starterkit
    async with app_client(app) as client:
        headers = bearer((await signed_up(client, "trips@example.com"))["access_token"])
        await client.post(f"{API}/items", json={"title": "counted"}, headers=headers)
        assert (await client.get(f"{API}/items", headers=headers)).status_code == 200  # stored
        trips: list[list[str]] = []  # the commands of each round trip
        redis = kit.redis
        assert redis is not None
        execute: Any = redis.execute_command
        make_pipeline: Any = redis.pipeline

        async def counted(*args: object, **options: object) -> object:
            trips.append([str(args[0])])
            return await execute(*args, **options)

        def counted_pipeline(*args: object, **options: object) -> Any:
            pipeline = make_pipeline(*args, **options)
            run = pipeline.execute

            async def execute_counted(*run_args: object, **run_options: object) -> object:
                trips.append([str(command[0][0]) for command in pipeline.command_stack])
                return await run(*run_args, **run_options)

            pipeline.execute = execute_counted
            return pipeline

        redis.execute_command = counted  # type: ignore[method-assign]
        redis.pipeline = counted_pipeline  # type: ignore[method-assign]
        try:
            hit = await client.get(f"{API}/items", headers=headers)
        finally:
            redis.execute_command = execute  # type: ignore[method-assign]
            redis.pipeline = make_pipeline  # type: ignore[method-assign]
        assert hit.status_code == 200
        assert [i["title"] for i in hit.json()["items"]] == ["counted"]
        cache_trips = [
            trip
            for trip in trips
            if any(name.upper() in {"EVALSHA", "EVAL", "MGET", "GET"} for name in trip)
        ]
        assert cache_trips == [["EVALSHA"]], trips


async def test_the_lookups_of_one_turn_share_one_pipeline_and_survive_a_script_flush(
    private_redis: PrivateRedis,
) -> None:
    redis = Redis.from_url(private_redis.url)
    cache = ResponseCache(RedisBackend(redis), ttl_seconds=60, prefix="batch:")
    users = [1, 2, 3, 4, 5]
    for user in users:
        body = f"user {user}".encode()
        await cache.fetch(user, "items", partial(computed, CachedResponse(body, f'"{user}"')))
    pipelines: list[int] = []
    make_pipeline: Any = redis.pipeline

    def counted_pipeline(*args: object, **options: object) -> Any:
        pipeline = make_pipeline(*args, **options)
        run = pipeline.execute

        async def execute_counted(*run_args: object, **run_options: object) -> object:
            pipelines.append(len(pipeline.command_stack))
            return await run(*run_args, **run_options)

        pipeline.execute = execute_counted
        return pipeline

    redis.pipeline = counted_pipeline  # type: ignore[method-assign]
    try:
        lookups = await asyncio.gather(*(cache.lookup(user, "items") for user in users * 2))
        assert [lookup.hit and lookup.hit.body for lookup in lookups] == [
            f"user {user}".encode() for user in users * 2
        ]
        assert pipelines == [10]  # one round trip for the ten
        # Redis forgot its scripts (a restart, SCRIPT FLUSH): loaded again, still a hit.
        await redis.script_flush()
        again = await cache.lookup(3, "items")
        assert again.hit is not None
        assert again.hit.body == b"user 3"
    finally:
        await redis.aclose()


async def computed(response: CachedResponse) -> CachedResponse:
    return response


def test_lookups_left_by_an_event_loop_that_ended_do_not_hold_up_the_next_one(
    private_redis: PrivateRedis,
) -> None:
    redis = Redis.from_url(private_redis.url)
    backend = RedisBackend(redis)
    ended = asyncio.new_event_loop()
    stale = ended.create_task(backend.get_entry("stale:", 1, "items"))
    ended.call_soon(ended.stop)  # after the lookup queued itself, before it was sent
    ended.run_forever()

    async def lookup() -> tuple[str, bytes | None]:
        try:
            return await asyncio.wait_for(backend.get_entry("fresh:", 1, "items"), 5)
        finally:
            await redis.aclose()

    try:
        key, value = asyncio.run(lookup())
    finally:
        stale.cancel()
        ended.run_until_complete(asyncio.gather(stale, return_exceptions=True))
        ended.close()
    assert key.startswith("fresh:")
    assert value is None
