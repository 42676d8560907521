"""Regressions for what the Schemathesis fuzz run (tests/fuzz) found.

Each test names the finding: the request the fuzzer sent, what the API answered, and what it
answers now. The races are reproduced deterministically with two sessions: one reads a row,
the other deletes it, then the first writes.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select

from starterkit import Settings, StarterKit
from starterkit.audit import CLI
from starterkit.auth.revocation import RevokeReason, revoke_all_sessions
from starterkit.db.models import Item, User
from starterkit.exceptions import InvalidToken, NotFound
from starterkit.items import service as items
from starterkit.schemas import NO_NUL_PATTERN
from starterkit.users import service as users
from tests.support.auth import API, PASSWORD, bearer, login, make_superuser, signed_up

pytestmark = pytest.mark.anyio

NEW_PASSWORD = "another long passphrase"

LOGOUT_ALL = RevokeReason.LOGOUT_ALL


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[StarterKit]:
    kit = StarterKit(settings)
    yield kit
    await kit.aclose()


@pytest.fixture
async def admin(client: httpx.AsyncClient, kit: StarterKit) -> dict[str, str]:
    await make_superuser(kit, "admin@example.com")
    response = await login(client, "admin@example.com")
    return bearer(response.json()["access_token"])


async def openapi(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


async def new_user(kit: StarterKit, email: str = "victim@example.com") -> int:
    async with kit.sessionmaker() as session:
        user = await users.create_user(
            session,
            email=email,
            password=PASSWORD,
            hasher=kit.password_hasher,
            password_min_length=kit.settings.password_min_length,
            origin=CLI,
            now=datetime.now(UTC),
        )
        await session.commit()
        return user.id


async def delete_user_elsewhere(kit: StarterKit, user_id: int) -> None:
    async with kit.sessionmaker() as other:
        await other.execute(delete(User).where(User.id == user_id))
        await other.commit()


# --- negative_data_rejection: JSON values of the wrong type were coerced ---------------------


async def test_a_number_is_not_accepted_as_a_boolean(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    # Found: PATCH /users/{id} {"is_superuser": 0} answered 200 (0 was taken as false).
    target = (
        await client.post(f"{API}/users", json={"email": "t@example.com", "password": PASSWORD})
    ).json()
    for body in ({"is_superuser": 0}, {"is_active": "false"}, {"is_superuser": 1}):
        response = await client.patch(f"{API}/users/{target['id']}", json=body, headers=admin)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["errors"][0]["loc"] == ["body", next(iter(body))]
    unchanged = await client.get(f"{API}/users/{target['id']}", headers=admin)
    assert unchanged.json()["is_superuser"] is False
    assert unchanged.json()["is_active"] is True


# --- positive_data_acceptance: the schema allowed what the API refuses ------------------------


async def test_item_patch_schema_does_not_offer_a_null_title(client: httpx.AsyncClient) -> None:
    # Found: PATCH /items/{id} {"title": null} is valid for the schema but answered 422.
    title = (await openapi(client))["components"]["schemas"]["ItemPatch"]["properties"]["title"]
    assert title["type"] == "string"
    assert "anyOf" not in title
    assert "default" not in title
    tokens = await signed_up(client, "alice@example.com")
    headers = bearer(tokens["access_token"])
    item = (await client.post(f"{API}/items", json={"title": "t"}, headers=headers)).json()
    refused = await client.patch(f"{API}/items/{item['id']}", json={"title": None}, headers=headers)
    assert refused.status_code == 422
    kept = await client.patch(f"{API}/items/{item['id']}", json={}, headers=headers)
    assert kept.status_code == 200
    assert kept.json()["title"] == "t"


async def test_schema_declares_that_strings_exclude_nul(client: httpx.AsyncClient) -> None:
    # Found: {"title": "\u0000"} is valid for the schema but answered 422.
    schemas = (await openapi(client))["components"]["schemas"]
    assert schemas["ItemCreate"]["properties"]["title"]["pattern"] == NO_NUL_PATTERN
    assert schemas["UserCreate"]["properties"]["email"]["pattern"] == NO_NUL_PATTERN
    assert schemas["RefreshRequest"]["properties"]["refresh_token"]["pattern"] == NO_NUL_PATTERN
    description = schemas["ItemCreate"]["properties"]["description"]["anyOf"][0]
    assert description["pattern"] == NO_NUL_PATTERN
    # The pattern means what the validator does (ECMA-262 and Python agree on this one).
    assert re.fullmatch(NO_NUL_PATTERN, "plain text, ünïcode ✓")
    assert not re.fullmatch(NO_NUL_PATTERN, "nul\x00inside")
    tokens = await signed_up(client, "alice@example.com")
    response = await client.post(
        f"{API}/items", json={"title": "a\x00b"}, headers=bearer(tokens["access_token"])
    )
    assert response.status_code == 422


# --- status_code_conformance: an undocumented 400 ---------------------------------------------


async def test_undecodable_item_bodies_get_the_documented_422(client: httpx.AsyncClient) -> None:
    # Found: POST /items with the body b"\xff" answered FastAPI's 400, which was not
    # documented; it is malformed JSON like any other now (more in test_errors.py).
    paths = (await openapi(client))["paths"]
    assert "422" in paths[f"{API}/items"]["post"]["responses"]
    assert "422" in paths[f"{API}/items/{{item_id}}"]["put"]["responses"]
    assert "422" in paths[f"{API}/items/{{item_id}}"]["patch"]["responses"]
    tokens = await signed_up(client, "alice@example.com")
    headers = {**bearer(tokens["access_token"]), "Content-Type": "application/json"}
    response = await client.post(f"{API}/items", content=b"\xff", headers=headers)
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    assert response.json()["errors"][0]["type"] == "json_invalid"


# --- not_a_server_error: writes racing a concurrent DELETE (500 StaleDataError) --------------


async def test_updating_a_user_deleted_meanwhile_is_not_found(runtime: StarterKit) -> None:
    # Found with two fuzz workers: PATCH /users/2 while DELETE /users/2 ran answered 500.
    user_id = await new_user(runtime)
    async with runtime.sessionmaker() as session:
        user = await users.get_user(session, user_id)
        await delete_user_elsewhere(runtime, user_id)
        with pytest.raises(NotFound):
            await users.update_user(
                session,
                user=user,
                actor=None,
                origin=CLI,
                now=datetime.now(UTC),
                is_active=False,
                full_name="x",
            )


async def test_changing_the_password_of_an_account_deleted_meanwhile_is_an_invalid_token(
    runtime: StarterKit,
) -> None:
    user_id = await new_user(runtime)
    async with runtime.sessionmaker() as session:
        user = await users.get_user(session, user_id)
        await delete_user_elsewhere(runtime, user_id)
        with pytest.raises(InvalidToken):
            await users.change_password(
                session,
                user=user,
                current_password=PASSWORD,
                new_password=NEW_PASSWORD,
                hasher=runtime.password_hasher,
                password_min_length=runtime.settings.password_min_length,
                origin=CLI,
                now=datetime.now(UTC),
            )


async def test_logging_out_everywhere_after_the_account_was_deleted_is_harmless(
    runtime: StarterKit,
) -> None:
    user_id = await new_user(runtime)
    async with runtime.sessionmaker() as session:
        user = await users.get_user(session, user_id)
        await delete_user_elsewhere(runtime, user_id)
        await revoke_all_sessions(session, user=user, now=datetime.now(UTC), reason=LOGOUT_ALL)
        await session.commit()  # used to raise StaleDataError here
        assert await session.get(User, user_id, populate_existing=True) is None


async def test_concurrent_token_version_bumps_all_count(runtime: StarterKit) -> None:
    user_id = await new_user(runtime)
    async with runtime.sessionmaker() as first, runtime.sessionmaker() as second:
        mine, theirs = await first.get_one(User, user_id), await second.get_one(User, user_id)
        start = mine.token_version
        await revoke_all_sessions(first, user=mine, now=datetime.now(UTC), reason=LOGOUT_ALL)
        await first.commit()
        await revoke_all_sessions(second, user=theirs, now=datetime.now(UTC), reason=LOGOUT_ALL)
        await second.commit()
        assert theirs.token_version == start + 2
    async with runtime.sessionmaker() as check:
        stored = await check.scalar(select(User.token_version).where(User.id == user_id))
        assert stored == start + 2


async def test_updating_an_item_deleted_meanwhile_is_not_found(runtime: StarterKit) -> None:
    # The same race on PUT or PATCH /items/{id} against DELETE /items/{id}.
    user_id = await new_user(runtime)
    async with runtime.sessionmaker() as session:
        owner = await users.get_user(session, user_id)
        created = await items.create_item(
            session, owner=owner, title="t", description=None, now=datetime.now(UTC)
        )
        await session.commit()
        item = await items.get_item(session, item_id=created.id, user=owner)
        async with runtime.sessionmaker() as other:
            await other.execute(delete(Item).where(Item.id == item.id))
            await other.commit()
        with pytest.raises(NotFound):
            await items.update_item(session, item, now=datetime.now(UTC), changes={"title": "u"})
