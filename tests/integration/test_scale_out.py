"""Two real `starterkit serve` processes on one PostgreSQL database and one Redis.

This is the "many stateless instances" promise: limits count across instances, a write on one
is at once visible through the other's cache, a change of an account (made through either or
the CLI) takes effect on the other's next request although each caches its users, and losing
Redis degrades without errors.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.support.auth import API, PASSWORD, bearer
from tests.support.processes import clean_env, running_server, starterkit_command
from tests.support.redis_server import PrivateRedis

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def instances(database_url: str, tmp_path: Path) -> Iterator[tuple[str, str, PrivateRedis]]:
    if not database_url.startswith("postgresql"):
        pytest.skip("instances share PostgreSQL")
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    redis = PrivateRedis(tmp_path)
    redis.start()
    env = clean_env(
        STARTERKIT_ENVIRONMENT="production",
        STARTERKIT_DATABASE_URL=database_url,
        STARTERKIT_REDIS_URL=redis.url,
        STARTERKIT_SECRET_KEY=secrets.token_urlsafe(48),
        STARTERKIT_REFRESH_TOKEN_SECRET=secrets.token_urlsafe(48),
        STARTERKIT_AUTH_LOGIN_RATE_LIMIT="6/minute",
        STARTERKIT_AUTH_LOGIN_ACCOUNT_RATE_LIMIT="1000/hour",
    )
    # As a deployment does it: `starterkit migrate` (which makes the first signing key), then
    # the servers.
    subprocess.run(starterkit_command("migrate"), env=env, cwd=tmp_path, check=True)
    try:
        with ExitStack() as stack:
            first, _ = stack.enter_context(running_server(tmp_path, env=env))
            second, _ = stack.enter_context(running_server(tmp_path, env=env))
            yield first, second, redis
    finally:
        redis.stop()


def test_two_instances_share_limits_and_cache_and_survive_redis_loss(
    instances: tuple[str, str, PrivateRedis],
) -> None:
    first, second, redis = instances
    asyncio.run(_scenario(first, second, redis))


async def _scenario(first: str, second: str, redis: PrivateRedis) -> None:
    async with httpx.AsyncClient(base_url=first) as one, httpx.AsyncClient(base_url=second) as two:
        user = {"email": "scale@example.com", "password": PASSWORD}
        assert (await one.post(f"{API}/users", json=user)).status_code == 201
        token = (await one.post(f"{API}/auth/login", json=user)).json()["access_token"]
        headers = bearer(token)

        # A write through one instance is visible at once through the other's cached reads.
        item = (await one.post(f"{API}/items", json={"title": "v1"}, headers=headers)).json()
        url = f"{API}/items/{item['id']}"
        for client in (one, two, one, two):
            assert (await client.get(url, headers=headers)).json()["title"] == "v1"
        assert (await two.patch(url, json={"title": "v2"}, headers=headers)).status_code == 200
        assert (await one.get(url, headers=headers)).json()["title"] == "v2"
        assert (await one.get(f"{API}/items", headers=headers)).json()["total"] == 1
        await two.post(f"{API}/items", json={"title": "second"}, headers=headers)
        assert (await one.get(f"{API}/items", headers=headers)).json()["total"] == 2

        # The login limit (6/minute per IP; one login spent above) counts across both.
        statuses = [
            (await client.post(f"{API}/auth/login", json=user)).status_code
            for client in (one, two, one, two, one, two)
        ]
        assert statuses == [200] * 5 + [429]

        # Redis dies: every request still gets a proper answer, and health says degraded.
        redis.stop()
        title = "v2"
        for n, client in enumerate((one, two), start=3):
            assert (await client.get(url, headers=headers)).json()["title"] == title
            title = f"v{n}"
            written = await client.patch(url, json={"title": title}, headers=headers)
            assert written.status_code == 200
            health = await client.get(f"{API}/health")
            assert health.status_code == 200
            assert health.json()["redis"] == "down"
            assert health.json()["status"] == "degraded"
            # Limits fall back to per-process memory instead of failing open.
            limited = [
                (await client.post(f"{API}/auth/login", json=user)).status_code for _ in range(7)
            ]
            assert 429 in limited
            assert all(status in (200, 429) for status in limited)
        assert (await one.get(url, headers=headers)).json()["title"] == "v4"

        # Redis returns: both instances use it again, and nothing stale is served.
        redis.start()
        await asyncio.sleep(6)  # past the retry pause of cache and limiter
        for client in (one, two):
            assert (await client.get(url, headers=headers)).json()["title"] == "v4"
            assert (await client.get(f"{API}/health")).json()["redis"] == "up"


def test_account_changes_reach_the_other_instance_on_its_next_request(
    instances: tuple[str, str, PrivateRedis], database_url: str, tmp_path: Path
) -> None:
    first, second, _redis = instances
    cli_env = clean_env(STARTERKIT_DATABASE_URL=database_url)
    asyncio.run(_account_changes(first, second, cli_env, tmp_path))


async def _account_changes(first: str, second: str, env: dict[str, str], tmp_path: Path) -> None:
    admin = {"email": "root@example.com", "password": PASSWORD}
    created = await asyncio.to_thread(
        subprocess.run,
        starterkit_command("new-user", admin["email"], "--superuser", "--password-stdin"),
        input=f"{PASSWORD}\n",
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    async with httpx.AsyncClient(base_url=first) as one, httpx.AsyncClient(base_url=second) as two:
        root = bearer((await one.post(f"{API}/auth/login", json=admin)).json()["access_token"])
        user = {"email": "member@example.com", "password": PASSWORD}
        assert (await one.post(f"{API}/users", json=user)).status_code == 201
        token = (await one.post(f"{API}/auth/login", json=user)).json()["access_token"]
        headers = bearer(token)
        user_id = (await two.get(f"{API}/users/me", headers=headers)).json()["id"]

        async def seen_by_second() -> int:
            # Twice: the second answer comes from the second instance's cache.
            statuses = [(await two.get(f"{API}/users", headers=headers)).status_code]
            statuses.append((await two.get(f"{API}/users", headers=headers)).status_code)
            assert statuses[0] == statuses[1], statuses
            return statuses[1]

        # Superuser flag given and taken through the first instance.
        assert await seen_by_second() == 403
        promoted = await one.patch(
            f"{API}/users/{user_id}", json={"is_superuser": True}, headers=root
        )
        assert promoted.status_code == 200
        assert await seen_by_second() == 200
        demoted = await one.patch(
            f"{API}/users/{user_id}", json={"is_superuser": False}, headers=root
        )
        assert demoted.status_code == 200
        assert await seen_by_second() == 403

        # Token version bumped through the first instance (logout-all).
        assert (await one.post(f"{API}/auth/logout-all", headers=headers)).status_code == 204
        assert (await two.get(f"{API}/users/me", headers=headers)).status_code == 401

        # Deactivated by the CLI in a third process.
        token = (await two.post(f"{API}/auth/login", json=user)).json()["access_token"]
        headers = bearer(token)
        for _ in range(2):
            assert (await two.get(f"{API}/users/me", headers=headers)).status_code == 200
        done = await asyncio.to_thread(
            subprocess.run,
            starterkit_command("deactivate", user["email"]),
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert (await two.get(f"{API}/users/me", headers=headers)).status_code == 401
        assert (await one.get(f"{API}/users/me", headers=headers)).status_code == 401
