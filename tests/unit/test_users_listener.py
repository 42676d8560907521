"""The PostgreSQL listener behind the user cache, on its own: its stamp moves with every
notification, it is None whenever a change could go unseen, and it comes back by itself."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import anyio
import asyncpg
import pytest

from starterkit import Settings
from starterkit.auth.users_listener import CHANNEL, OFF, UsersListener, asyncpg_dsn
from starterkit.db import migrate
from tests.conftest import SettingsFactory
from tests.support.databases import backend_paused

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


async def test_current_waits_until_a_late_notification_is_heard(dsn: str) -> None:
    """The change's notification is held up (the listening backend frozen): the stamp read
    at once is the old one, current() waits and returns the new one."""
    listener = UsersListener(dsn, answer_seconds=5)
    await listener.start()
    try:
        before = await listener.current()
        assert before is not None
        pid = listener.backend_pid
        assert pid is not None
        other = await asyncpg.connect(dsn)
        try:
            with backend_paused(pid, seconds=0.3):
                await other.execute("UPDATE users SET full_name = 'x'")  # committed
                assert listener.read() == before  # its notification has not arrived
                after = await listener.current()
            assert after is not None
            assert after != before
        finally:
            await other.close()
    finally:
        await listener.stop()


async def test_a_connection_that_does_not_answer_in_time_is_dropped(dsn: str) -> None:
    listener = UsersListener(dsn, answer_seconds=0.2, retry_seconds=0.05)
    await listener.start()
    try:
        pid = listener.backend_pid
        assert pid is not None
        with backend_paused(pid, seconds=10):
            started = time.monotonic()
            assert await listener.current() is None  # the caller loads its row instead
            assert time.monotonic() - started < 2
        await until(lambda: listener.listening and listener.backend_pid != pid)
        assert await listener.current() is not None
    finally:
        await listener.stop()


async def test_callers_that_ask_together_share_one_round_trip(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    listener = UsersListener(dsn)
    await listener.start()
    round_trips = 0
    execute = asyncpg.Connection.execute

    async def counted(connection: asyncpg.Connection, *args: Any, **kwargs: Any) -> Any:
        nonlocal round_trips
        round_trips += connection.get_server_pid() == listener.backend_pid
        return await execute(connection, *args, **kwargs)

    monkeypatch.setattr(asyncpg.Connection, "execute", counted)
    try:
        stamps = await asyncio.gather(*(listener.current() for _ in range(50)))
        assert None not in stamps
        assert len(set(stamps)) == 1
        assert 1 <= round_trips <= 2
    finally:
        await listener.stop()


async def test_a_caller_that_gives_up_does_not_harm_the_others(dsn: str) -> None:
    listener = UsersListener(dsn)
    await listener.start()
    try:
        impatient = asyncio.create_task(listener.current())
        await asyncio.sleep(0)  # it has asked
        impatient.cancel()
        assert await listener.current() is not None  # answered by the same round trip
        assert listener.listening
    finally:
        await listener.stop()


async def test_stopping_answers_every_caller_with_none(dsn: str) -> None:
    listener = UsersListener(dsn, answer_seconds=5)
    await listener.start()
    pid = listener.backend_pid
    assert pid is not None
    with backend_paused(pid, seconds=5):
        waiting = asyncio.create_task(listener.current())
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await listener.stop()
        assert await waiting is None
