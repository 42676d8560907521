"""The shipped migrations build the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import anyio.to_thread
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import delete, inspect, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncEngine

from starterkit import Item, Settings, StarterKit, User
from starterkit.database_url import DatabaseKind
from starterkit.db import migrate
from tests.conftest import SettingsFactory
from tests.support.databases import (
    MigratedTemplates,
    create_postgres_database,
    drop_postgres_database,
)

pytestmark = pytest.mark.anyio

TABLES = {"users", "items", "auth_sessions", "refresh_tokens", "auth_events"}


async def table_names(engine: AsyncEngine) -> set[str]:
    def read(connection: Connection) -> set[str]:
        return set(inspect(connection).get_table_names())

    async with engine.connect() as connection:
        return await connection.run_sync(read)


async def test_upgrade_check_downgrade_and_upgrade_again(make_settings: SettingsFactory) -> None:
    settings = make_settings()
    kit = StarterKit(settings)
    try:
        assert await anyio.to_thread.run_sync(migrate.current_revisions, settings) == set()
        await anyio.to_thread.run_sync(migrate.upgrade, settings)
        assert await table_names(kit.engine) >= TABLES
        heads = migrate.head_revisions(settings)
        assert heads == {"starterkit_0010"}
        assert await anyio.to_thread.run_sync(migrate.current_revisions, settings) == heads
        # Models and migrations agree (alembic check raises on any difference).
        await anyio.to_thread.run_sync(migrate.check, settings)

        await anyio.to_thread.run_sync(migrate.downgrade, settings, "base")
        assert not TABLES & await table_names(kit.engine)
        await anyio.to_thread.run_sync(migrate.upgrade, settings)
        assert await table_names(kit.engine) >= TABLES
    finally:
        await kit.aclose()


async def test_each_test_database_is_at_head_with_an_installation_id_of_its_own(
    settings: Settings, make_settings: SettingsFactory, migrated_templates: MigratedTemplates
) -> None:
    """The ``settings`` fixture copies a database migrated once (tests/support/databases.py)."""
    other = make_settings(database_url=settings.database_url + "_other")
    if other.database_kind is DatabaseKind.POSTGRESQL:
        url = await anyio.to_thread.run_sync(create_postgres_database, settings.database_url)
        other = make_settings(database_url=url)
    await anyio.to_thread.run_sync(migrated_templates.copy_into, other)
    ids = []
    try:
        for each in (settings, other):
            assert await anyio.to_thread.run_sync(
                migrate.current_revisions, each
            ) == migrate.head_revisions(each)
            kit = StarterKit(each)
            try:
                ids.append(await kit.installation.get())
            finally:
                await kit.aclose()
    finally:
        if other.database_kind is DatabaseKind.POSTGRESQL:
            await anyio.to_thread.run_sync(drop_postgres_database, other.database_url)
    assert ids[0] != ids[1]


def test_migrations_are_one_branch_with_its_own_label(make_settings: SettingsFactory) -> None:
    script = ScriptDirectory.from_config(migrate.alembic_config(make_settings()))
    assert len(script.get_heads()) == 1
    assert script.get_revision("starterkit@head") is not None
    base = script.get_revision("starterkit_0001")
    assert base is not None
    assert "starterkit" in base.branch_labels


async def test_items_index_supports_newest_first_pages(settings: Settings) -> None:
    kit = StarterKit(settings)

    def indexes(connection: Connection) -> dict[str, list[str | None]]:
        return {
            str(index["name"]): list(index["column_names"])
            for index in inspect(connection).get_indexes("items")
        }

    try:
        async with kit.engine.connect() as connection:
            found = await connection.run_sync(indexes)
    finally:
        await kit.aclose()
    assert found["ix_items_owner_id_created_at_id"] == ["owner_id", "created_at", "id"]


async def test_deleting_a_user_cascades_to_their_items(settings: Settings) -> None:
    kit = StarterKit(settings)
    try:
        async with kit.sessionmaker() as session:
            user = User(email="owner@example.com", hashed_password="x")
            session.add(user)
            await session.flush()
            session.add(Item(title="mine", owner_id=user.id))
            await session.commit()
            await session.execute(text("DELETE FROM users"))
            await session.commit()
            assert (await session.execute(select(Item))).first() is None
    finally:
        await kit.aclose()


async def test_timestamps_round_trip_as_aware_utc_with_microseconds(settings: Settings) -> None:
    kit = StarterKit(settings)
    moment = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=2)))
    try:
        async with kit.sessionmaker() as session:
            session.add(User(email="tz@example.com", hashed_password="x", created_at=moment))
            await session.commit()
        async with kit.sessionmaker() as session:
            user = (await session.execute(select(User))).scalar_one()
    finally:
        await kit.aclose()
    assert user.created_at == moment
    assert user.created_at.tzinfo == UTC
    assert user.created_at.hour == 1
    assert user.updated_at.tzinfo == UTC


async def test_naive_datetimes_are_refused(settings: Settings) -> None:
    kit = StarterKit(settings)
    try:
        async with kit.sessionmaker() as session:
            naive = datetime(2026, 1, 1)  # noqa: DTZ001 - the point of the test
            session.add(User(email="n@example.com", hashed_password="x", created_at=naive))
            with pytest.raises(StatementError, match="naive datetime"):
                await session.commit()
    finally:
        await kit.aclose()


async def test_on_sqlite_updates_and_deletes_of_users_raise_users_version(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings()
    kit = StarterKit(settings)

    async def version() -> int:
        async with kit.engine.connect() as connection:
            result = await connection.execute(text("SELECT version FROM users_version"))
            return int(result.scalar_one())

    try:
        await anyio.to_thread.run_sync(migrate.upgrade, settings)
        if not settings.database_kind.is_sqlite:
            assert "users_version" not in await table_names(kit.engine)
            return
        async with kit.sessionmaker() as session:
            session.add_all(
                [User(email=f"v{n}@example.com", hashed_password="x") for n in range(2)]
            )
            await session.commit()
            assert await version() == 0  # a new user changes no cached row
            await session.execute(update(User).where(User.id == 1).values(full_name="N"))
            await session.commit()
            assert await version() == 1
            await session.execute(delete(User).where(User.id == 2))
            await session.commit()
            assert await version() == 2
            session.add(Item(title="t", owner_id=1))
            await session.commit()
            assert await version() == 2

        await anyio.to_thread.run_sync(migrate.downgrade, settings, "starterkit_0003")
        assert "users_version" not in await table_names(kit.engine)
        async with kit.engine.connect() as connection:
            triggers = await connection.execute(
                text("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            )
            assert triggers.all() == []
    finally:
        await kit.aclose()


async def test_sqlite_enforces_foreign_keys_and_uses_wal(make_settings: SettingsFactory) -> None:
    settings = make_settings()
    if not settings.database_kind.is_sqlite:
        pytest.skip("SQLite pragmas")
    kit = StarterKit(settings)
    try:
        async with kit.engine.connect() as connection:
            assert (await connection.execute(text("PRAGMA foreign_keys"))).scalar() == 1
            assert (await connection.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
    finally:
        await kit.aclose()
