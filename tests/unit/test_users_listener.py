"""The PostgreSQL listener behind the user cache, on its own: its stamp moves with every
notification, it is None whenever a change could go unseen, and it comes back by itself."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import asyncpg
import pytest

from starterkit import Settings
from starterkit.auth.users_listener import CHANNEL, OFF, UsersListener, asyncpg_dsn
from starterkit.db import migrate
from tests.conftest import SettingsFactory

pytestmark = pytest.mark.anyio


@pytest.fixture
def dsn(make_settings: SettingsFactory) -> str:
    settings: Settings = make_settings()
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's LISTEN/NOTIFY")
    migrate.upgrade(settings)
    return asyncpg_dsn(settings.database_url)


async def until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Poll ``condition`` (the listener has no event to wait on) for up to ``seconds``."""
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await anyio.sleep(0.01)
    raise AssertionError(f"not true after {seconds} s")


def test_the_url_loses_its_driver_name() -> None:
    assert asyncpg_dsn("postgresql+asyncpg://u:p@db:5432/app?ssl=require") == (
        "postgresql://u:p@db:5432/app?ssl=require"
    )


async def test_the_stamp_moves_with_each_change_and_is_none_when_deaf(dsn: str) -> None:
    listener = UsersListener(dsn, heartbeat_seconds=0.2, retry_seconds=0.05)
    assert listener.read() is None  # not started: nothing may be cached
    await listener.start()
    try:
        first = listener.read()
        assert first is not None
        other = await asyncpg.connect(dsn)
        try:
            await other.execute("UPDATE users SET full_name = 'x'")  # no rows: still notifies
            await until(lambda: listener.read() != first)
            # Killed from outside: deaf at once, then back with a new stamp.
            pid = listener.backend_pid
            assert pid is not None
            before = listener.read()
            await other.execute("SELECT pg_terminate_backend($1)", pid)
            await until(lambda: listener.read() is None or listener.read() != before)
            await until(lambda: listener.listening and listener.backend_pid != pid)
            # The downgrade's last word: the listener hangs up and checks for the trigger
            # again (still there here, so it listens on a new connection).
            pid = listener.backend_pid
            await other.execute("SELECT pg_notify($1, $2)", CHANNEL, OFF)
            await until(lambda: listener.listening and listener.backend_pid not in (None, pid))
        finally:
            await other.close()
    finally:
        await listener.stop()
    assert listener.read() is None


async def test_a_database_without_the_trigger_is_never_listened_to(
    dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    setup = await asyncpg.connect(dsn)
    try:
        await setup.execute("DROP TRIGGER users_notify_change ON users")
    finally:
        await setup.close()
    listener = UsersListener(dsn, missing_trigger_retry_seconds=60)
    await listener.start()
    try:
        assert listener.read() is None
        assert "users_notify_change trigger is missing" in caplog.text
    finally:
        await listener.stop()


async def test_an_unreachable_database_leaves_the_listener_deaf() -> None:
    listener = UsersListener("postgresql://nobody@127.0.0.1:9/none", retry_seconds=0.05)
    await listener.start(wait_seconds=0.5)
    try:
        assert listener.read() is None
    finally:
        await listener.stop()
