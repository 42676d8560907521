"""A deleted account's tokens never authenticate again, and its id is never handed out again."""

from __future__ import annotations

import anyio.to_thread
import httpx
import pytest
from sqlalchemy import column, delete, insert, table, text

from starterkit import Item, Settings, StarterKit, User
from starterkit.audit import CLI
from starterkit.db import migrate
from starterkit.db.base import UTCDateTime, utcnow
from starterkit.users import service
from tests.conftest import SettingsFactory
from tests.support.auth import API, PASSWORD, bearer, login, make_superuser, signed_up

USERS_AT_0004 = table(
    "users",
    column("email"),
    column("hashed_password"),
    column("token_version"),
    column("created_at", UTCDateTime()),
    column("updated_at", UTCDateTime()),
)

pytestmark = pytest.mark.anyio


async def test_a_deleted_users_token_never_names_the_next_account(
    client: httpx.AsyncClient, kit: StarterKit
) -> None:
    # Seen on SQLite: the newest user's id went to the next account, whose token version
    # started where the deleted one's had, so the old token read /users as a superuser.
    await make_superuser(kit, "admin@example.com")
    admin = bearer((await login(client, "admin@example.com")).json()["access_token"])
    victim = await signed_up(client, "deleted@example.com")
    me = (await client.get(f"{API}/users/me", headers=bearer(victim["access_token"]))).json()
    assert (await client.delete(f"{API}/users/{me['id']}", headers=admin)).status_code == 204

    async with kit.sessionmaker() as session:
        successor = await service.create_user(
            session,
            email="admin2@example.com",
            password=PASSWORD,
            hasher=kit.password_hasher,
            password_min_length=kit.settings.password_min_length,
            is_superuser=True,
            origin=CLI,
            now=kit.clock(),
        )
        await session.commit()
    assert successor.id > me["id"]
    old = bearer(victim["access_token"])
    assert (await client.get(f"{API}/users/me", headers=old)).status_code == 401
    assert (await client.get(f"{API}/users", headers=old)).status_code == 401


@pytest.mark.usefixtures("client")  # runs the app's lifespan, which closes the kit afterwards
async def test_a_reused_id_would_still_not_match_the_old_token(kit: StarterKit) -> None:
    # Ids are not reused any more; should one ever be (a restored backup, a database of an
    # older version), the token version a new account starts with does not match.
    versions = set()
    for n in range(20):
        async with kit.sessionmaker() as session:
            user = await service.create_user(
                session,
                email=f"v{n}@example.com",
                password=PASSWORD,
                hasher=kit.password_hasher,
                password_min_length=kit.settings.password_min_length,
                origin=CLI,
                now=kit.clock(),
            )
            await session.commit()
            versions.add(user.token_version)
    assert len(versions) > 15


async def test_deleting_a_user_forgets_their_cached_reads(
    client: httpx.AsyncClient, kit: StarterKit
) -> None:
    await make_superuser(kit, "admin@example.com")
    admin = bearer((await login(client, "admin@example.com")).json()["access_token"])
    owner = await signed_up(client, "cached@example.com")
    headers = bearer(owner["access_token"])
    user_id = (await client.get(f"{API}/users/me", headers=headers)).json()["id"]
    assert (await client.get(f"{API}/items", headers=headers)).status_code == 200
    before = await kit.cache.lookup(user_id, "items?limit=50&offset=0")
    assert before.hit is not None
    assert (await client.delete(f"{API}/users/{user_id}", headers=admin)).status_code == 204
    after = await kit.cache.lookup(user_id, "items?limit=50&offset=0")
    assert after.hit is None


async def test_ids_of_deleted_rows_are_never_handed_out_again(
    make_settings: SettingsFactory,
) -> None:
    settings: Settings = make_settings()
    await anyio.to_thread.run_sync(migrate.upgrade, settings, "starterkit_0004")
    kit = StarterKit(settings)
    try:
        # Rows made before the upgrade survive it, and the next ids go on after the largest.
        async with kit.sessionmaker() as session:
            # The users table of that revision: the model has columns added since.
            now = utcnow()
            rows = [
                {"email": f"u{n}@example.com", "hashed_password": "x", "token_version": 0}
                | {"created_at": now, "updated_at": now}
                for n in (1, 2)
            ]
            await session.execute(insert(USERS_AT_0004), rows)
            await session.commit()
            session.add(Item(title="kept", owner_id=1))
            await session.commit()
        await anyio.to_thread.run_sync(migrate.upgrade, settings)
        async with kit.sessionmaker() as session:
            await session.execute(delete(User).where(User.id == 2))
            await session.commit()
            newcomer = User(email="u3@example.com", hashed_password="x")
            session.add(newcomer)
            await session.commit()
            assert newcomer.id == 3  # not 2, the id of the deleted newest row
            kept = await session.get(Item, 1)
            assert kept is not None
            assert kept.title == "kept"
        if settings.database_kind.is_sqlite:
            async with kit.engine.connect() as connection:
                found = await connection.execute(
                    text("SELECT name, sql FROM sqlite_master WHERE type IN ('table', 'trigger')")
                )
                schema: dict[str, str] = dict(found.all())
            for table in ("users", "items", "auth_sessions", "auth_events"):
                assert "AUTOINCREMENT" in schema[table], table
            # The users_version triggers came back with the recreated users table.
            assert {"users_version_after_update", "users_version_after_delete"} <= set(schema)
        # Down and up again: the schema still matches the models.
        await anyio.to_thread.run_sync(migrate.downgrade, settings, "starterkit_0004")
        await anyio.to_thread.run_sync(migrate.upgrade, settings)
        await anyio.to_thread.run_sync(migrate.check, settings)
    finally:
        await kit.aclose()
