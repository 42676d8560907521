"""The per-process user cache: it saves the query, and any change to a users row invalidates it."""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Callable
from contextlib import closing
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import text, update

from starterkit import Settings, StarterKit, User
from starterkit.auth.user_cache import StampSource, UserCache, UsersVersion
from starterkit.auth.users_listener import UsersListener
from starterkit.database_url import DatabaseKind
from starterkit.db import migrate
from starterkit.db.engine import sqlite_file_of
from tests.support.auth import API, PASSWORD, bearer, signed_up
from tests.support.databases import backend_paused
from tests.support.processes import clean_env, starterkit_command
from tests.support.queries import statements_of

pytestmark = pytest.mark.anyio


async def me(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get(f"{API}/users/me", headers=bearer(token))


async def signed_up_and_cached(client: httpx.AsyncClient, email: str) -> str:
    """Sign up and read ``/users/me`` twice (the second read is served from the cache where
    there is one); returns the access token."""
    token: str = (await signed_up(client, email))["access_token"]
    for _ in range(2):
        assert (await me(client, token)).status_code == 200
    return token


def postgresql_listener(kit: StarterKit) -> UsersListener:
    """The kit's PostgreSQL listener, or skip the test."""
    if kit.users_listener is None:
        pytest.skip("PostgreSQL's listener")
    return kit.users_listener


async def change_elsewhere(settings: Settings, email: str, **values: Any) -> None:
    """Commit a change to the user through another runtime: another engine and pool."""
    other = StarterKit(settings)
    try:
        async with other.sessionmaker() as session:
            await session.execute(update(User).where(User.email == email).values(**values))
            await session.commit()
    finally:
        await other.aclose()


async def test_a_repeated_request_reads_the_user_from_the_cache_on_sqlite(
    client: httpx.AsyncClient, kit: StarterKit
) -> None:
    token = (await signed_up(client, "cached@example.com"))["access_token"]
    assert (await me(client, token)).status_code == 200
    with statements_of(kit) as statements:
        response = await me(client, token)
    assert response.status_code == 200
    assert response.json()["email"] == "cached@example.com"
    if kit.user_cache.enabled:  # SQLite, and PostgreSQL while listening: no query at all
        assert statements == []
    else:  # SQLITE_FAST_PATHS=false: the user's row, every time
        assert len(statements) == 1, statements
        assert "FROM users" in statements[0]


async def test_a_commit_to_other_tables_keeps_the_cached_user(
    client: httpx.AsyncClient, kit: StarterKit
) -> None:
    if not kit.user_cache.enabled:
        pytest.skip("the cache is off (SQLITE_FAST_PATHS=false)")
    token = (await signed_up(client, "writer@example.com"))["access_token"]
    assert (await me(client, token)).status_code == 200
    created = await client.post(f"{API}/items", json={"title": "t"}, headers=bearer(token))
    assert created.status_code == 201
    with statements_of(kit) as statements:
        assert (await me(client, token)).status_code == 200
    assert statements == []


@pytest.mark.parametrize(
    ("change", "status"),
    [
        pytest.param({"is_active": False}, 401, id="deactivated"),
        pytest.param({"token_version": User.token_version + 1}, 401, id="token-version-bumped"),
        pytest.param({"full_name": "Renamed"}, 200, id="renamed"),
    ],
)
async def test_a_commit_by_another_connection_takes_effect_on_the_next_request(
    client: httpx.AsyncClient, settings: Settings, change: dict[str, Any], status: int
) -> None:
    token = await signed_up_and_cached(client, "elsewhere@example.com")
    await change_elsewhere(settings, "elsewhere@example.com", **change)
    response = await me(client, token)
    assert response.status_code == status, response.text
    if status == 200:
        assert response.json()["full_name"] == "Renamed"


async def test_on_postgresql_the_next_request_waits_for_a_late_notification(
    client: httpx.AsyncClient, kit: StarterKit, settings: Settings
) -> None:
    """Seen under load: the request after another connection's commit ran before the commit's
    notification reached the listener, and served the cached, stale row."""
    listener = postgresql_listener(kit)
    token = await signed_up_and_cached(client, "late@example.com")
    pid = listener.backend_pid
    assert pid is not None
    with backend_paused(pid, seconds=0.3):  # the notification cannot be heard before then
        await change_elsewhere(settings, "late@example.com", is_active=False)
        assert (await me(client, token)).status_code == 401


async def test_the_cli_in_another_process_deactivates_on_the_next_request(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    token = await signed_up_and_cached(client, "cli@example.com")
    done = await anyio.to_thread.run_sync(
        lambda: subprocess.run(
            starterkit_command("deactivate", "cli@example.com"),
            env=clean_env(STARTERKIT_DATABASE_URL=settings.database_url),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    )
    assert done.returncode == 0, done.stderr
    assert (await me(client, token)).status_code == 401


async def test_a_migration_that_drops_the_triggers_turns_the_cache_off_not_stale(
    client: httpx.AsyncClient, kit: StarterKit, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    if settings.database_kind is DatabaseKind.POSTGRESQL or not kit.user_cache.enabled:
        pytest.skip("SQLite's users_version triggers, with the cache on")
    token = await signed_up_and_cached(client, "rebuilt@example.com")
    path = sqlite_file_of(settings)
    assert path is not None
    # What a batch-mode migration of `users` does to them on SQLite, in another connection.
    with closing(sqlite3.connect(path)) as other:
        other.execute("DROP TRIGGER users_version_after_update")
        other.commit()
    assert (await me(client, token)).status_code == 200
    assert "users_version triggers are missing" in caplog.text
    # Nothing would raise users_version now: only a query per request can see this.
    await change_elsewhere(settings, "rebuilt@example.com", is_active=False)
    assert (await me(client, token)).status_code == 401


async def test_a_downgrade_and_upgrade_under_a_running_server_never_serves_a_stale_user(
    client: httpx.AsyncClient, kit: StarterKit, settings: Settings
) -> None:
    # Seen: the counter came back at 0, where the cached row had been read, while the
    # account was deactivated with no trigger to count it.
    if settings.database_kind is DatabaseKind.POSTGRESQL or not kit.user_cache.enabled:
        pytest.skip("SQLite's users_version triggers, with the cache on")
    token = await signed_up_and_cached(client, "stale@example.com")
    path = sqlite_file_of(settings)
    assert path is not None
    with closing(sqlite3.connect(path)) as other:  # what downgrade, a CLI and upgrade do
        other.executescript(
            """
            DROP TRIGGER users_version_after_update;
            DROP TRIGGER users_version_after_delete;
            DROP TABLE users_version;
            UPDATE users SET is_active = 0 WHERE email = 'stale@example.com';
            CREATE TABLE users_version (id INTEGER PRIMARY KEY, version INTEGER NOT NULL);
            INSERT INTO users_version VALUES (1, 0);
            CREATE TRIGGER users_version_after_update AFTER UPDATE ON users
              BEGIN UPDATE users_version SET version = version + 1 WHERE id = 1; END;
            CREATE TRIGGER users_version_after_delete AFTER DELETE ON users
              BEGIN UPDATE users_version SET version = version + 1 WHERE id = 1; END;
            """
        )
    assert (await me(client, token)).status_code == 401


async def test_the_current_user_is_detached_and_changes_persist_once_added(
    client: httpx.AsyncClient, kit: StarterKit
) -> None:
    token = (await signed_up(client, "detached@example.com"))["access_token"]
    for name in ("First", "Second"):
        response = await client.patch(
            f"{API}/users/me", json={"full_name": name}, headers=bearer(token)
        )
        assert response.status_code == 200
        assert (await me(client, token)).json()["full_name"] == name
    user_id = (await me(client, token)).json()["id"]
    first, second = await kit.user_cache.get_user(user_id), await kit.user_cache.get_user(user_id)
    assert first is not None
    assert second is not None
    assert first is not second
    assert first.full_name == "Second"


async def test_the_cache_keeps_at_most_max_users(settings: Settings) -> None:
    kit = StarterKit(settings)
    stamps: StampSource
    if kit.users_listener is not None:
        await kit.users_listener.start()
        stamps = kit.users_listener
    else:
        path = sqlite_file_of(settings)
        assert path is not None
        stamps = UsersVersion(path)
    cache = UserCache(kit.read_engine, stamps=stamps, max_users=2)
    try:
        async with kit.sessionmaker() as session:
            for n in range(3):
                session.add(User(email=f"u{n}@example.com", hashed_password=PASSWORD))
            await session.commit()
        loaded = [await cache.get_user(user_id) for user_id in (1, 2, 3, 1)]
        assert [user.email if user else None for user in loaded] == [
            "u0@example.com",
            "u1@example.com",
            "u2@example.com",
            "u0@example.com",
        ]
        assert len(cache._rows) == 2
    finally:
        cache.close()
        await kit.aclose()


async def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Poll ``condition`` (the listener has no event to wait on) for up to ``seconds``."""
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await anyio.sleep(0.02)
    raise AssertionError(f"not true after {seconds} s")


async def test_without_its_listening_connection_postgresql_loads_every_user(
    client: httpx.AsyncClient, kit: StarterKit, settings: Settings
) -> None:
    """The listener's connection dies (a failover, a killed backend): until it is back,
    every request loads its user, and a change made meanwhile is seen at once."""
    listener = postgresql_listener(kit)
    token = await signed_up_and_cached(client, "unheard@example.com")
    pid = listener.backend_pid
    assert pid is not None
    await change_elsewhere_sql(settings, f"SELECT pg_terminate_backend({pid})")
    # It may have connected again already (a few ms): either way the loss moved the stamp.
    await wait_for(lambda: not listener.listening or listener.backend_pid != pid)
    with statements_of(kit) as statements:
        assert (await me(client, token)).status_code == 200
    assert any("FROM users" in statement for statement in statements)
    await wait_for(lambda: listener.listening)  # reconnected by itself
    await change_elsewhere(settings, "unheard@example.com", is_active=False)
    assert (await me(client, token)).status_code == 401


async def test_a_downgrade_that_drops_the_trigger_turns_the_cache_off_not_stale(
    client: httpx.AsyncClient, kit: StarterKit, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    listener = postgresql_listener(kit)
    token = await signed_up_and_cached(client, "downgraded@example.com")
    await anyio.to_thread.run_sync(migrate.downgrade, settings, "starterkit_0009")
    await wait_for(lambda: "users_notify_change trigger is missing" in caplog.text)
    assert not listener.listening
    await change_elsewhere(settings, "downgraded@example.com", is_active=False)
    assert (await me(client, token)).status_code == 401


async def change_elsewhere_sql(settings: Settings, statement: str) -> None:
    other = StarterKit(settings)
    try:
        async with other.engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await other.aclose()


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///data/app.db", "data/app.db"),
        ("sqlite+aiosqlite:////srv/app.db", "/srv/app.db"),
        ("sqlite://", None),
        ("sqlite:///:memory:", None),
        ("sqlite:///file:shared?mode=memory&cache=shared&uri=true", None),
        ("postgresql+asyncpg://u@localhost/app", None),
    ],
)
def test_only_a_sqlite_file_has_a_data_version_to_watch(url: str, path: str | None) -> None:
    settings = Settings(_env_file=None, database_url=url, environment="test")
    assert sqlite_file_of(settings) == path


async def test_an_in_memory_database_is_never_cached() -> None:
    kit = StarterKit(Settings(_env_file=None, database_url="sqlite://", environment="test"))
    try:
        assert not kit.user_cache.enabled
    finally:
        await kit.aclose()
