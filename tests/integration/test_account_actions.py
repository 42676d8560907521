"""Account actions live in the services: their events, their rules, one password path, and
the dependency that lets a route change the signed-in user.

No ``from __future__ import annotations``: FastAPI reads the routes' annotations at runtime.
"""

from collections.abc import AsyncIterator
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from starterkit import Settings, StarterKit, User
from starterkit.audit import CLI, EventType, Origin
from starterkit.db.models import AuthEvent
from starterkit.exceptions import InvalidRequest, InvalidToken
from starterkit.testing import DEFAULT_PASSWORD, app_client, signed_in_user
from starterkit.users import service

pytestmark = pytest.mark.anyio

WEB = Origin(ip="203.0.113.9", user_agent="browser")
NEW_PASSWORD = "another long passphrase"


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[StarterKit]:
    kit = StarterKit(settings)
    yield kit
    await kit.aclose()


async def new_user(kit: StarterKit, email: str, *, superuser: bool = False) -> int:
    async with kit.sessionmaker() as session:
        user = await service.create_user(
            session,
            email=email,
            password=DEFAULT_PASSWORD,
            hasher=kit.password_hasher,
            password_min_length=kit.settings.password_min_length,
            is_superuser=superuser,
            origin=WEB,
            now=kit.clock(),
        )
        await session.commit()
        return user.id


async def events_of(kit: StarterKit, user_id: int) -> list[tuple[str, str | None]]:
    async with kit.sessionmaker() as session:
        found = await session.execute(
            select(AuthEvent.event_type, AuthEvent.ip)
            .where(AuthEvent.user_id == user_id)
            .order_by(AuthEvent.id)
        )
        return [(event_type, ip) for event_type, ip in found]


async def test_a_change_to_the_attached_user_is_written(settings: Settings) -> None:
    kit = StarterKit(settings)
    app = FastAPI(lifespan=kit.lifespan)
    kit.install(app)
    Session = Annotated[AsyncSession, Depends(kit.db_session)]  # noqa: N806

    @app.post("/rename")
    async def rename(
        name: str, user: Annotated[User, Depends(kit.attached_user)], session: Session
    ) -> None:
        user.full_name = name
        await session.commit()

    @app.post("/rename-detached")
    async def rename_detached(
        name: str, user: Annotated[User, Depends(kit.current_user)], session: Session
    ) -> None:
        user.full_name = name
        await session.commit()

    async with app_client(app) as client:
        user, headers = await signed_in_user(kit, "lib@example.com")
        written = await client.post("/rename", params={"name": "Written"}, headers=headers)
        assert written.status_code == 200, written.text
        lost = await client.post("/rename-detached", params={"name": "Lost"}, headers=headers)
        assert lost.status_code == 200, lost.text
        async with kit.sessionmaker() as session:
            stored = await session.scalar(select(User.full_name).where(User.id == user.id))
    # The detached user of kit.current_user belongs to no session: its change goes nowhere.
    assert stored == "Written"


async def test_account_actions_record_their_events_with_the_origin_given(
    runtime: StarterKit,
) -> None:
    user_id = await new_user(runtime, "events@example.com")
    async with runtime.sessionmaker() as session:
        user = await service.get_user(session, user_id)
        await service.change_password(
            session,
            user=user,
            current_password=DEFAULT_PASSWORD,
            new_password=NEW_PASSWORD,
            hasher=runtime.password_hasher,
            password_min_length=runtime.settings.password_min_length,
            origin=WEB,
            now=runtime.clock(),
        )
        await service.update_user(
            session, user=user, actor=None, is_active=False, origin=CLI, now=runtime.clock()
        )
        await session.commit()
    assert await events_of(runtime, user_id) == [
        (EventType.USER_REGISTERED, WEB.ip),
        (EventType.PASSWORD_CHANGED, WEB.ip),
        (EventType.USER_DEACTIVATED, None),
    ]


async def test_nobody_deactivates_demotes_or_deletes_their_own_account(
    runtime: StarterKit,
) -> None:
    admin_id = await new_user(runtime, "admin@example.com", superuser=True)
    async with runtime.sessionmaker() as session:
        admin = await service.get_user(session, admin_id)
        with pytest.raises(InvalidRequest, match="your own account"):
            await service.update_user(
                session, user=admin, actor=admin, is_active=False, origin=WEB, now=runtime.clock()
            )
        with pytest.raises(InvalidRequest, match="your own account"):
            await service.update_user(
                session,
                user=admin,
                actor=admin,
                is_superuser=False,
                origin=WEB,
                now=runtime.clock(),
            )
        with pytest.raises(InvalidRequest, match="your own account"):
            await service.delete_user(session, user=admin, actor=admin)
        # The CLI (no actor) may: it is how an operator locks an account.
        await service.update_user(
            session, user=admin, actor=None, is_active=False, origin=CLI, now=runtime.clock()
        )
        await session.commit()
        assert not admin.is_active


async def test_of_two_concurrent_password_changes_exactly_one_wins(runtime: StarterKit) -> None:
    user_id = await new_user(runtime, "race@example.com")

    async def change(session: AsyncSession, user: User, new_password: str) -> None:
        await service.change_password(
            session,
            user=user,
            current_password=DEFAULT_PASSWORD,
            new_password=new_password,
            hasher=runtime.password_hasher,
            password_min_length=runtime.settings.password_min_length,
            origin=WEB,
            now=runtime.clock(),
        )

    async with runtime.sessionmaker() as first, runtime.sessionmaker() as second:
        mine, theirs = await first.get_one(User, user_id), await second.get_one(User, user_id)
        start = mine.token_version
        await change(first, mine, NEW_PASSWORD)
        await first.commit()
        # The second change was checked against the old password, which is gone: its
        # caller's token died with the first change.
        with pytest.raises(InvalidToken):
            await change(second, theirs, "a third long passphrase")
    async with runtime.sessionmaker() as session:
        stored = await session.get_one(User, user_id)
        ok, _ = await runtime.password_hasher.verify_and_update(
            NEW_PASSWORD, stored.hashed_password
        )
        assert ok
        assert stored.token_version == start + 1
