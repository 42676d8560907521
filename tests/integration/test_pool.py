"""The PostgreSQL pool keeps its overflow connections while they are in demand."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine

from starterkit.db import pool as pool_module
from starterkit.db.engine import create_engine
from starterkit.db.pool import KeepOverflowPool
from tests.conftest import SettingsFactory

pytestmark = [
    pytest.mark.anyio,
    # PostgreSQL only: a SQLite file has a pool of its own (and its reads a single connection).
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
]


@pytest.fixture
async def engine(make_settings: SettingsFactory) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(
        make_settings(database_pool_size=2, database_max_overflow=3, database_pool_timeout=2)
    )
    yield engine
    await engine.dispose()


def _counter(engine: AsyncEngine, name: str) -> Callable[[], int]:
    count = 0

    def seen(*_: object) -> None:
        nonlocal count
        count += 1

    event.listen(engine.sync_engine.pool, name, seen)
    return lambda: count


async def _burst(engine: AsyncEngine, requests: int) -> None:
    async def one() -> None:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT pg_sleep(0.02)"))

    await asyncio.gather(*(one() for _ in range(requests)))


async def test_overflow_connections_are_reused_not_reopened(engine: AsyncEngine) -> None:
    assert isinstance(engine.pool, KeepOverflowPool)
    connects = _counter(engine, "connect")
    closes = _counter(engine, "close")
    for _ in range(3):
        await _burst(engine, 10)
    # SQLAlchemy's queue pool closes each overflow connection on return: 2 + 3 * 3 connects.
    assert (connects(), closes()) == (5, 0)
    assert "Parked overflow connections: 3" in engine.pool.status()


async def test_a_parked_connection_is_closed_once_idle(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool_module, "IDLE_SECONDS", 0.1)
    closes = _counter(engine, "close")
    await _burst(engine, 10)
    await asyncio.sleep(0.2)
    async with engine.connect() as connection:  # the next checkout closes the idle ones
        await connection.execute(text("SELECT 1"))
    assert closes() == 3
    assert "Parked overflow connections: 0" in engine.pool.status()
    await _burst(engine, 10)  # and the overflow opens again under load
    assert "Parked overflow connections: 3" in engine.pool.status()


async def test_dispose_closes_parked_connections_too(engine: AsyncEngine) -> None:
    closes = _counter(engine, "close")
    await _burst(engine, 10)
    await engine.dispose()
    assert closes() == 5


async def test_a_full_pool_still_times_out(engine: AsyncEngine) -> None:
    held = [await engine.connect() for _ in range(5)]
    try:
        for connection in held:
            await connection.execute(text("SELECT 1"))
        with pytest.raises(PoolTimeout):
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
    finally:
        for connection in held:
            await connection.close()
    async with engine.connect() as connection:  # a parked or pooled one, at once
        assert (await connection.execute(text("SELECT 1"))).scalar() == 1
