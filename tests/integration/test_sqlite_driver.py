"""The one-hop SQLite driver behaves like SQLAlchemy's own aiosqlite adapter."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import anyio
import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from starterkit import Settings, StarterKit
from starterkit.db import sqlite_driver
from starterkit.db.base import Base
from starterkit.db.engine import create_autocommit_engine, create_engine
from starterkit.db.models import Item, User

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=UTC)


def fast_settings(path: Path) -> Settings:
    """Settings of a SQLite file at ``path`` with the fast paths on."""
    return Settings(
        environment="test",
        database_url=f"sqlite:///{path}",
        secret_key="k" * 64,
        sqlite_fast_paths=True,
    )


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(fast_settings(tmp_path / "driver.db"))
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    yield engine
    await engine.dispose()


def test_starterkit_engines_use_it_on_sqlite_only() -> None:
    for url, expected in [
        ("sqlite:///app.db", True),
        ("sqlite://", True),
        ("postgresql://u@localhost/db", False),
    ]:
        kit = StarterKit(
            Settings(
                environment="test", database_url=url, secret_key="k" * 64, sqlite_fast_paths=True
            )
        )
        for engine in (kit.engine, kit.read_engine, kit.autocommit_engine):
            assert isinstance(engine.dialect.dbapi, sqlite_driver.OneHopDBAPI) is expected, url


async def test_one_setting_turns_every_sqlite_fast_path_off(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    fast = StarterKit(Settings(environment="test", database_url=url, sqlite_fast_paths=True))
    plain = StarterKit(Settings(environment="test", database_url=url, sqlite_fast_paths=False))
    try:
        assert isinstance(fast.engine.dialect.dbapi, sqlite_driver.OneHopDBAPI)
        assert fast.read_engine is not fast.engine
        assert fast.autocommit_engine is not fast.engine
        assert fast.user_cache.enabled
        # The stock aiosqlite adapter, the main pool for reads, a query per request for users.
        assert type(plain.engine.dialect.dbapi) is sqlite_driver.StockDBAPI
        assert plain.read_engine is plain.engine
        # One-statement writes still commit by themselves, through the stock driver.
        assert plain.autocommit_engine is not plain.engine
        assert plain.autocommit_engine.dialect.dbapi is plain.engine.dialect.dbapi
        assert not plain.user_cache.enabled
    finally:
        await fast.aclose()
        await plain.aclose()


async def test_rows_counts_and_ids_come_back(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        user = await connection.execute(
            insert(User).values(email="d@example.com", hashed_password="x", created_at=NOW)
        )
        assert user.inserted_primary_key == (1,)
        many = await connection.execute(
            insert(Item),
            [
                {"title": f"t{n}", "owner_id": 1, "created_at": NOW, "updated_at": NOW}
                for n in range(3)
            ],
        )
        assert many.rowcount == 3
        returned = await connection.execute(
            insert(Item)
            .values(title="r", owner_id=1, created_at=NOW, updated_at=NOW)
            .returning(Item.id, Item.created_at)
        )
        assert returned.one() == (4, NOW)
        updated = await connection.execute(text("UPDATE items SET title = 'u' WHERE id > 2"))
        assert updated.rowcount == 2
    async with engine.connect() as connection:
        result = await connection.execute(select(Item.id, Item.title).order_by(Item.id))
        assert result.keys() == ["id", "title"]
        assert result.fetchone() == (1, "t0")
        assert result.fetchmany(2) == [(2, "t1"), (3, "u")]
        assert result.fetchall() == [(4, "u")]
        streamed = await connection.stream(select(Item.id).order_by(Item.id))
        assert [row.id async for row in streamed] == [1, 2, 3, 4]


async def test_rollback_undoes_and_errors_are_sqlalchemy_errors(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(
            insert(User).values(email="r@example.com", hashed_password="x", created_at=NOW)
        )
        await connection.rollback()
        assert (await connection.execute(text("SELECT count(*) FROM users"))).scalar() == 0

        await connection.execute(
            insert(User).values(email="r@example.com", hashed_password="x", created_at=NOW)
        )
        await connection.commit()
        with pytest.raises(IntegrityError):
            await connection.execute(
                insert(User).values(email="r@example.com", hashed_password="x", created_at=NOW)
            )
        await connection.rollback()
        with pytest.raises(OperationalError, match="no such table"):
            await connection.execute(text("SELECT * FROM missing"))
        await connection.rollback()
        assert (await connection.execute(text("SELECT count(*) FROM users"))).scalar() == 1


async def test_a_connection_returned_mid_transaction_is_rolled_back(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'pool.db'}"
    engine = create_async_engine(url, module=sqlite_driver.dbapi(), pool_size=1, max_overflow=0)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE t (x INTEGER)"))
        connection = await engine.connect()
        await connection.execute(text("INSERT INTO t VALUES (1)"))
        await connection.close()  # back to the pool: the open transaction must not survive
        async with engine.connect() as again:
            assert (await again.execute(text("SELECT count(*) FROM t"))).scalar() == 0
            await again.execute(text("INSERT INTO t VALUES (2)"))  # the write lock is free
            await again.commit()
    finally:
        await engine.dispose()


@pytest.mark.parametrize("fast_paths", [True, False])
async def test_a_failed_connect_stops_its_thread_before_raising(
    tmp_path: Path, fast_paths: bool
) -> None:
    # A folder is no database file: SQLite cannot open it. aiosqlite used to raise while its
    # worker thread still had to take the stop request, and when the loop closed first (a CLI
    # command ending on the error) the thread printed an "Event loop is closed" traceback.
    url = f"sqlite+aiosqlite:///{tmp_path}"
    engine = create_async_engine(url, module=sqlite_driver.dbapi(fast_paths))
    before = set(threading.enumerate())
    try:
        with pytest.raises(OperationalError, match="unable to open database file"):
            await engine.connect()
        started = [t for t in threading.enumerate() if t not in before]
        # The loop's executor threads (which the wait itself may start) live on, idle.
        assert [t for t in started if not t.name.startswith("asyncio_")] == []
    finally:
        await engine.dispose()


async def test_writers_take_turns_in_arrival_order(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            insert(User).values(email="w@example.com", hashed_password="x", created_at=NOW)
        )
    order: list[int] = []
    first_holds = anyio.Event()
    release_first = anyio.Event()

    async def write(number: int) -> None:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT count(*) FROM items"))  # reads need no turn
            if number > 0:
                await first_holds.wait()
            await connection.execute(
                insert(Item).values(title=f"{number}", owner_id=1, created_at=NOW, updated_at=NOW)
            )
            order.append(number)
            if number == 0:
                first_holds.set()
                await release_first.wait()  # the others queue behind this open transaction
            await connection.commit()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(write, 0)
        await first_holds.wait()
        for number in range(1, 6):
            tasks.start_soon(write, number)
            await anyio.sleep(0.01)  # arrive one after the other
        assert order == [0]
        release_first.set()
    assert order == [0, 1, 2, 3, 4, 5]
    async with engine.connect() as connection:
        assert (await connection.execute(text("SELECT count(*) FROM items"))).scalar() == 6


async def test_one_statement_writes_take_turns_with_the_sessions_writers(
    tmp_path: Path,
) -> None:
    settings = fast_settings(tmp_path / "auto.db")
    engine = create_engine(settings)
    autocommit = create_autocommit_engine(settings, engine)
    engines = (engine, autocommit)
    try:
        # Its own pool of autocommit connections, but the same writers' queue.
        assert autocommit.pool is not engine.pool
        turns = [cast("sqlite_driver.OneHopDBAPI", e.dialect.dbapi).write_turns for e in engines]
        assert turns[0] is turns[1]
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
            await connection.execute(
                insert(User).values(email="a@example.com", hashed_password="x", created_at=NOW)
            )
        item = insert(Item).values(title="t", owner_id=1, created_at=NOW, updated_at=NOW)
        done = anyio.Event()

        async def one_statement() -> None:
            async with autocommit.connect() as connection:  # no begin, no commit
                await connection.execute(item)
            done.set()

        holder = await engine.connect()
        await holder.execute(item)  # holds the turn until its transaction ends
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(one_statement)
            await anyio.sleep(0.2)
            assert not done.is_set()
            await holder.commit()
        await holder.close()
        async with engine.connect() as connection:
            assert (await connection.execute(text("SELECT count(*) FROM items"))).scalar() == 2
    finally:
        await autocommit.dispose()
        await engine.dispose()


async def test_a_turn_ends_with_its_transaction_however_it_ends(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            insert(User).values(email="t@example.com", hashed_password="x", created_at=NOW)
        )
    for ending in ("rollback", "error", "close"):
        connection = await engine.connect()
        if ending == "error":
            with pytest.raises(IntegrityError):
                await connection.execute(
                    insert(User).values(email="t@example.com", hashed_password="x", created_at=NOW)
                )
            await connection.rollback()
        else:
            await connection.execute(text("UPDATE users SET is_active = is_active"))
            if ending == "rollback":
                await connection.rollback()
        await connection.close()
        with anyio.fail_after(1):  # the next writer does not wait for a turn nobody holds
            async with engine.begin() as other:
                await other.execute(text("UPDATE users SET is_active = is_active"))


async def test_a_writer_waits_no_longer_than_sqlite_would(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_driver, "WRITE_WAIT_SECONDS", 0.2)
    async with engine.connect() as holder:
        await holder.execute(text("CREATE TABLE t (x INTEGER)"))
        await holder.execute(text("INSERT INTO t VALUES (1)"))  # holds the turn, uncommitted
        async with engine.connect() as waiter:
            with anyio.fail_after(2), pytest.raises(OperationalError, match="database is locked"):
                await waiter.execute(text("INSERT INTO t VALUES (2)"))
        await holder.commit()


@pytest.fixture
async def read_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """The read engine starterkit builds next to the write engine, on a database with a table."""
    kit = StarterKit(
        Settings(
            environment="test",
            database_url=f"sqlite:///{tmp_path / 'reads.db'}",
            secret_key="k" * 64,
            sqlite_fast_paths=True,
        )
    )
    async with kit.engine.begin() as connection:
        await connection.execute(text("CREATE TABLE t (x INTEGER)"))
        await connection.execute(text("INSERT INTO t VALUES (1)"))
    await kit.engine.dispose()  # only the read engine's connection stays open
    async with kit.read_engine.connect() as connection:
        # Which thread runs a statement: SQLite calls this back on the statement's thread.
        raw = (await connection.get_raw_connection()).driver_connection
        assert raw is not None
        await raw._execute(raw._conn.create_function, "thread", 0, threading.get_ident)
    yield kit.read_engine
    await kit.aclose()


async def _read(engine: AsyncEngine, sql: str) -> tuple[int, int]:
    async with engine.connect() as connection:
        row = (await connection.execute(text(sql))).one()
        return int(row[0]), int(row[1])


async def test_the_read_engine_reads_on_the_event_loop_thread(read_engine: AsyncEngine) -> None:
    assert await _read(read_engine, "SELECT x, thread() FROM t") == (1, threading.get_ident())
    async with read_engine.connect() as connection:
        assert (await connection.execute(text("PRAGMA busy_timeout"))).scalar() == 0


async def test_a_long_read_goes_back_to_its_thread(
    read_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_driver, "LOOP_READ_SECONDS", 0.0005)
    long_count = (
        "SELECT count(*), thread() FROM (WITH RECURSIVE c(n) AS "
        "(SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 200000) SELECT n FROM c)"
    )
    count, thread = await _read(read_engine, long_count)
    assert count == 200000  # stopped on the loop, then run whole on the connection's thread
    assert thread != threading.get_ident()
    assert await _read(read_engine, "SELECT x, thread() FROM t") == (1, threading.get_ident())


async def test_a_read_that_must_wait_waits_on_its_thread_not_the_loop(
    read_engine: AsyncEngine, tmp_path: Path
) -> None:
    # A connection in exclusive locking mode (another process, say) keeps even WAL readers out;
    # it can only take that lock while no other connection is open.
    await read_engine.dispose()
    holder = sqlite3.connect(tmp_path / "reads.db", check_same_thread=False)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.sleep(0.01)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(tick)
        tasks.start_soon(anyio.to_thread.run_sync, _release_later, holder)
        with anyio.fail_after(4):
            async with read_engine.connect() as connection:
                count = (await connection.execute(text("SELECT count(*) FROM t"))).scalar()
        tasks.cancel_scope.cancel()
    assert count == 1
    assert ticks >= 10  # the loop kept running while the read waited for the lock
    async with read_engine.connect() as connection:  # and it reads on the loop again
        assert (await connection.execute(text("PRAGMA busy_timeout"))).scalar() == 0


def _release_later(holder: sqlite3.Connection) -> None:
    time.sleep(0.3)
    holder.rollback()
    holder.close()
