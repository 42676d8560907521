"""Items over HTTP: ownership, validation, pages by offset and cursor, ETags."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from starterkit import StarterKit, User
from starterkit.items import service
from tests.support.auth import API, bearer, login, make_superuser, signed_up
from tests.support.queries import statements_of

pytestmark = pytest.mark.anyio

ITEM_FIELDS = {"id", "title", "description", "owner_id", "created_at", "updated_at"}


@pytest.fixture
async def alice(client: httpx.AsyncClient) -> dict[str, str]:
    return bearer((await signed_up(client, "alice@example.com"))["access_token"])


@pytest.fixture
async def bob(client: httpx.AsyncClient) -> dict[str, str]:
    return bearer((await signed_up(client, "bob@example.com"))["access_token"])


async def create(client: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await client.post(f"{API}/items", json={"title": "t", **body}, headers=headers)
    assert response.status_code == 201, response.text
    item: dict[str, Any] = response.json()
    return item


async def test_crud_round_trip(client: httpx.AsyncClient, alice: dict[str, str]) -> None:
    item = await create(client, alice, title="Milk", description="2 litres")
    assert set(item) == ITEM_FIELDS
    url = f"{API}/items/{item['id']}"
    assert (await client.get(url, headers=alice)).json() == item

    replaced = (await client.put(url, json={"title": "Bread"}, headers=alice)).json()
    assert (replaced["title"], replaced["description"]) == ("Bread", None)  # PUT replaces
    patched = (await client.patch(url, json={"description": "rye"}, headers=alice)).json()
    assert (patched["title"], patched["description"]) == ("Bread", "rye")  # PATCH is partial
    cleared = (await client.patch(url, json={"description": None}, headers=alice)).json()
    assert cleared["description"] is None
    assert cleared["updated_at"] >= cleared["created_at"]

    assert (await client.delete(url, headers=alice)).status_code == 204
    assert (await client.get(url, headers=alice)).status_code == 404
    assert (await client.delete(url, headers=alice)).status_code == 404


async def test_creating_an_item_is_one_insert_that_commits_by_itself(
    kit: StarterKit, client: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    await create(client, alice, title="first")  # the user's row is cached from here on
    with statements_of(kit) as statements:
        item = await create(client, alice, title="second")
    assert [s.split()[0] for s in statements if " items" in s] == ["INSERT"], statements
    me = (await client.get(f"{API}/users/me", headers=alice)).json()
    # The engine of that INSERT commits each statement: closed without a commit, it keeps it.
    async with kit.autocommit_engine.connect() as connection:
        owner = User(id=me["id"], is_superuser=False)
        kept = await service.create_item(
            connection, owner=owner, title="kept", description=None, now=kit.clock()
        )
    async with kit.sessionmaker() as session:
        for created in (item["id"], kept.id):
            assert (await service.get_item(session, item_id=created, user=owner)).id == created


async def test_someone_elses_item_is_a_404_identical_to_a_missing_one(
    client: httpx.AsyncClient, alice: dict[str, str], bob: dict[str, str]
) -> None:
    item = await create(client, alice, title="private")
    for method, body in [
        ("GET", None),
        ("PUT", {"title": "x"}),
        ("PATCH", {"title": "x"}),
        ("DELETE", None),
    ]:
        theirs = await client.request(method, f"{API}/items/{item['id']}", json=body, headers=bob)
        missing = await client.request(method, f"{API}/items/999999", json=body, headers=bob)
        assert theirs.status_code == missing.status_code == 404, method
        assert theirs.content == missing.content
    assert (await client.get(f"{API}/items/{item['id']}", headers=alice)).json() == item
    assert (await client.get(f"{API}/items", headers=bob)).json()["total"] == 0


async def test_superuser_reads_and_changes_any_item(
    client: httpx.AsyncClient, kit: StarterKit, alice: dict[str, str]
) -> None:
    item = await create(client, alice, title="owned by alice")
    await make_superuser(kit, "root@example.com")
    root = bearer((await login(client, "root@example.com")).json()["access_token"])
    assert (await client.get(f"{API}/items/{item['id']}", headers=root)).status_code == 200
    changed = await client.patch(
        f"{API}/items/{item['id']}", json={"title": "moderated"}, headers=root
    )
    assert changed.json()["owner_id"] == item["owner_id"]
    listed = (await client.get(f"{API}/items", headers=root)).json()
    assert [i["title"] for i in listed["items"]] == ["moderated"]
    # Alice's cached read is not stale after the superuser's write.
    assert (await client.get(f"{API}/items/{item['id']}", headers=alice)).json()[
        "title"
    ] == "moderated"


async def test_ownership_cannot_be_assigned(
    client: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    for field, value in [("owner_id", 1), ("id", 5), ("created_at", "2000-01-01T00:00:00Z")]:
        response = await client.post(
            f"{API}/items", json={"title": "x", field: value}, headers=alice
        )
        assert response.status_code == 422, field


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"title": ""},
        {"title": "t" * 256},
        {"title": "ok", "description": "d" * 10_001},
        {"title": "nul\u0000byte"},
        {"title": "ok", "description": "\u0000"},
        {"title": None},
        {"title": 5},
    ],
)
async def test_invalid_item_bodies_are_422(
    client: httpx.AsyncClient, alice: dict[str, str], body: dict[str, Any]
) -> None:
    response = await client.post(f"{API}/items", json=body, headers=alice)
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


async def test_lone_surrogates_are_422_never_500(
    client: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    raw = b'{"title": "bad \\ud800 title"}'
    response = await client.post(
        f"{API}/items", content=raw, headers={**alice, "content-type": "application/json"}
    )
    assert response.status_code == 422


async def test_bounds_accept_the_limits(client: httpx.AsyncClient, alice: dict[str, str]) -> None:
    item = await create(client, alice, title="t" * 255, description="d" * 10_000)
    assert len(item["description"]) == 10_000
    nulled = await client.patch(f"{API}/items/{item['id']}", json={"title": None}, headers=alice)
    assert nulled.status_code == 422


@pytest.mark.parametrize("item_id", ["0", "-1", str(2**63), "9" * 40, "abc", "1.5"])
async def test_bad_item_ids_are_422(
    client: httpx.AsyncClient, alice: dict[str, str], item_id: str
) -> None:
    for method in ("GET", "DELETE"):
        response = await client.request(method, f"{API}/items/{item_id}", headers=alice)
        assert response.status_code == 422, (method, item_id)


async def test_items_need_a_token(client: httpx.AsyncClient) -> None:
    for method, path in [
        ("GET", "/items"),
        ("POST", "/items"),
        ("GET", "/items/1"),
        ("DELETE", "/items/1"),
    ]:
        response = await client.request(method, f"{API}{path}", json={"title": "x"})
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 101}, {"offset": -1}, {"skip": -1}, {"offset": 2**63}, {"limit": "x"}],
)
async def test_bad_page_parameters_are_422(
    client: httpx.AsyncClient, alice: dict[str, str], params: dict[str, Any]
) -> None:
    assert (await client.get(f"{API}/items", params=params, headers=alice)).status_code == 422


@pytest.mark.parametrize("cursor", ["garbage!", "bm90LWEtY3Vyc29y", "MS4w", "LTEuMQ", "x" * 129])
async def test_malformed_cursor_is_rejected(
    client: httpx.AsyncClient, alice: dict[str, str], cursor: str
) -> None:
    response = await client.get(f"{API}/items", params={"cursor": cursor}, headers=alice)
    assert response.status_code in (400, 422)
    assert response.json()["code"] in ("bad_request", "validation_error")


async def test_offset_page_shape_newest_first_and_skip_alias(
    client: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    for n in range(5):
        await create(client, alice, title=f"item {n}")
    page = (await client.get(f"{API}/items", params={"limit": 2}, headers=alice)).json()
    assert set(page) == {"items", "total", "limit", "offset", "next_cursor"}
    assert [i["title"] for i in page["items"]] == ["item 4", "item 3"]
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 0)
    assert page["next_cursor"]
    skipped = (
        await client.get(f"{API}/items", params={"limit": 2, "skip": 2}, headers=alice)
    ).json()
    assert [i["title"] for i in skipped["items"]] == ["item 2", "item 1"]
    assert skipped["offset"] == 2
    last = (await client.get(f"{API}/items", params={"offset": 4}, headers=alice)).json()
    assert [i["title"] for i in last["items"]] == ["item 0"]
    assert last["next_cursor"] is None
    default = (await client.get(f"{API}/items", headers=alice)).json()
    assert default["limit"] == 50


async def test_cursor_walk_sees_every_item_once_while_items_are_added(
    client: httpx.AsyncClient, alice: dict[str, str], bob: dict[str, str]
) -> None:
    originals = {(await create(client, alice, title=f"a{n}"))["id"] for n in range(23)}
    seen: list[int] = []
    page = (await client.get(f"{API}/items", params={"limit": 5}, headers=alice)).json()
    seen += [i["id"] for i in page["items"]]
    while page["next_cursor"]:
        await create(client, alice, title="added during the walk")
        await create(client, bob, title="someone else's")
        page = (
            await client.get(
                f"{API}/items", params={"limit": 5, "cursor": page["next_cursor"]}, headers=alice
            )
        ).json()
        assert page["total"] is None
        assert page["offset"] is None
        seen += [i["id"] for i in page["items"]]
    assert len(seen) == len(set(seen)) == 23
    assert set(seen) == originals


async def test_offset_walk_sees_every_item_once_while_others_add_items(
    client: httpx.AsyncClient, alice: dict[str, str], bob: dict[str, str]
) -> None:
    originals = {(await create(client, alice, title=f"a{n}"))["id"] for n in range(12)}
    seen: list[int] = []
    offset = 0
    while True:
        page = (
            await client.get(f"{API}/items", params={"limit": 5, "offset": offset}, headers=alice)
        ).json()
        seen += [i["id"] for i in page["items"]]
        await create(client, bob, title="bob keeps adding")
        if page["next_cursor"] is None:
            break
        offset += 5
    assert seen == sorted(originals, reverse=True)


async def test_items_created_in_the_same_instant_keep_a_stable_order(
    kit: StarterKit, client: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    me = (await client.get(f"{API}/users/me", headers=alice)).json()
    now = kit.clock()
    async with kit.sessionmaker() as session:
        owner = await session.get_one(User, me["id"])
        for n in range(7):
            await service.create_item(
                session, owner=owner, title=f"same {n}", description=None, now=now
            )
        await session.commit()
    walked: list[str] = []
    page = (await client.get(f"{API}/items", params={"limit": 3}, headers=alice)).json()
    walked += [i["title"] for i in page["items"]]
    while page["next_cursor"]:
        page = (
            await client.get(
                f"{API}/items", params={"limit": 3, "cursor": page["next_cursor"]}, headers=alice
            )
        ).json()
        walked += [i["title"] for i in page["items"]]
    assert walked == [f"same {n}" for n in reversed(range(7))]


async def test_offset_page_is_one_query_and_keyset_page_is_one(
    kit: StarterKit, client: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    for n in range(30):
        await create(client, alice, title=f"q{n}")
    me = (await client.get(f"{API}/users/me", headers=alice)).json()
    async with kit.sessionmaker() as session:
        user = await session.get_one(User, me["id"])
        with statements_of(kit) as offset_queries:
            items, total = await service.list_items_page(session, user=user, limit=20, offset=0)
        assert (len(items), total) == (20, 30)
        with statements_of(kit) as last_page_queries:
            last, total = await service.list_items_page(session, user=user, limit=20, offset=20)
        assert (len(last), total) == (10, 30)
        with statements_of(kit) as past_end_queries:
            beyond, total = await service.list_items_page(session, user=user, limit=20, offset=40)
        assert (beyond, total) == ([], 30)
        with statements_of(kit) as keyset_queries:
            page, next_cursor = await service.list_items_after(
                session, user=user, limit=20, cursor=service.Cursor.after(items[4])
            )
        assert len(page) == 20
        assert next_cursor is not None
    assert len(offset_queries) == 1, offset_queries
    assert len(last_page_queries) == 1, last_page_queries
    # Past the end no row carries the total, so it is counted on its own.
    assert len(past_end_queries) == 2, past_end_queries
    assert len(keyset_queries) == 1, keyset_queries


async def test_sixty_concurrent_creates_all_land(
    client: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    responses = await asyncio.gather(
        *(client.post(f"{API}/items", json={"title": f"c{n}"}, headers=alice) for n in range(60))
    )
    assert [r.status_code for r in responses] == [201] * 60
    listed = (await client.get(f"{API}/items", params={"limit": 100}, headers=alice)).json()
    assert listed["total"] == 60
    assert {i["title"] for i in listed["items"]} == {f"c{n}" for n in range(60)}


async def test_etag_round_trip_gives_304_until_the_item_changes(
    client: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    item = await create(client, alice, title="tagged")
    url = f"{API}/items/{item['id']}"
    first = await client.get(url, headers=alice)
    etag = first.headers["etag"]
    assert etag.startswith('"')
    again = await client.get(url, headers={**alice, "If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert (
        await client.get(url, headers={**alice, "If-None-Match": f'W/{etag}, "other"'})
    ).status_code == 304
    assert (await client.get(url, headers={**alice, "If-None-Match": '"other"'})).status_code == 200

    await client.patch(url, json={"title": "changed"}, headers=alice)
    changed = await client.get(url, headers={**alice, "If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag


async def test_list_etag_changes_when_the_list_does(
    client: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    await create(client, alice, title="one")
    first = await client.get(f"{API}/items", headers=alice)
    etag = first.headers["etag"]
    assert (
        await client.get(f"{API}/items", headers={**alice, "If-None-Match": etag})
    ).status_code == 304
    await create(client, alice, title="two")
    after = await client.get(f"{API}/items", headers={**alice, "If-None-Match": etag})
    assert after.status_code == 200
    assert after.json()["total"] == 2
