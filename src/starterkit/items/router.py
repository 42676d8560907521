"""``/items`` routes: owned CRUD, newest-first pages, ETags and the per-user read cache.

Built by :func:`build_items_router` for one :class:`StarterKit`; mount it under any prefix.
No ``from __future__ import annotations`` here: FastAPI reads these annotations at runtime.
"""

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from starterkit.cache import CachedResponse
from starterkit.db.models import Item, User
from starterkit.items import service
from starterkit.items.schemas import ItemCreate, ItemPage, ItemPatch, ItemRead
from starterkit.schemas import MAX_DB_INT, error_responses

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starterkit.app import StarterKit

ItemId = Annotated[int, Path(ge=1, le=MAX_DB_INT)]
_JSON = "application/json"


def etag_of(body: bytes) -> str:
    """A strong ETag for a response body."""
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in candidates or etag in candidates


def conditional_response(request: Request, cached: CachedResponse) -> Response:
    """200 with the body and ETag, or 304 when the client already has this version."""
    headers = {"ETag": cached.etag, "Cache-Control": "no-store"}
    if _matches(request.headers.get("if-none-match"), cached.etag):
        return Response(status_code=304, headers=headers)
    return Response(content=cached.body, media_type=_JSON, headers=headers)


async def render_page(
    reader: service.Reader,
    user: User,
    *,
    limit: int,
    offset: int,
    cursor: service.Cursor | None,
) -> bytes:
    """The JSON of one page: keyset after ``cursor`` if given, else by ``offset``."""
    page: dict[str, Any] = {"limit": limit}
    if cursor is not None:
        items, next_cursor = await service.list_items_after(
            reader, user=user, limit=limit, cursor=cursor
        )
        page.update(total=None, offset=None)
    else:
        items, total = await service.list_items_page(reader, user=user, limit=limit, offset=offset)
        more = bool(items) and offset + len(items) < total
        next_cursor = service.Cursor.after(items[-1]) if more else None
        page.update(total=total, offset=offset)
    page.update(items=items, next_cursor=next_cursor.encode() if next_cursor else None)
    # One validation call for the whole page, reading the rows' attributes.
    return ItemPage.model_validate(page, from_attributes=True).model_dump_json().encode()


def build_items_router(kit: "StarterKit", *, tags: Sequence[str] = ("items",)) -> APIRouter:
    """The items routes of ``kit``; include it with any prefix (``create_app`` uses /items)."""
    router = APIRouter(tags=list(tags))
    Session = Annotated[AsyncSession, Depends(kit.db_session)]
    CurrentUser = Annotated[User, Depends(kit.current_user)]

    # Reads open a session only when the cache cannot answer: a session dependency would
    # cost every request, hits included, FastAPI's per-dependency setup and teardown.
    async def cached_read(
        request: Request, user: User, route: str, render: "Callable[[], Awaitable[bytes]]"
    ) -> Response:
        # Superusers see everyone's items, so their reads depend on every owner's writes:
        # they are never cached.
        if user.is_superuser:
            body = await render()
            return conditional_response(request, CachedResponse(body, etag_of(body)))
        lookup = await kit.cache.lookup(user.id, route)
        if lookup.hit is not None:
            return conditional_response(request, lookup.hit)
        body = await render()
        fresh = CachedResponse(body, etag_of(body))
        await kit.cache.store(lookup, fresh)
        return conditional_response(request, fresh)

    async def written(item: Item, actor: User) -> None:
        await kit.cache.invalidate(item.owner_id)
        if actor.id != item.owner_id:
            await kit.cache.invalidate(actor.id)

    @router.post(
        "",
        name="items:create",
        status_code=201,
        response_model=ItemRead,
        responses=error_responses(401, 422),
    )
    async def create_item(payload: ItemCreate, user: CurrentUser, session: Session) -> Any:
        """Create an item owned by the caller."""
        item = await service.create_item(
            session,
            owner=user,
            title=payload.title,
            description=payload.description,
            now=kit.clock(),
        )
        await session.commit()
        await written(item, user)
        return item

    @router.get(
        "",
        name="items:list",
        response_model=ItemPage,
        responses={
            **error_responses(400, 401, 422),
            304: {"description": "Not modified (`If-None-Match` matched the `ETag`)."},
        },
    )
    async def list_items(
        request: Request,
        user: CurrentUser,
        limit: Annotated[int, Query(ge=1, le=100)] = 50,
        offset: Annotated[int | None, Query(ge=0, le=MAX_DB_INT)] = None,
        skip: Annotated[
            int | None, Query(ge=0, le=MAX_DB_INT, description="Alias of `offset`.")
        ] = None,
        cursor: Annotated[
            str | None,
            Query(max_length=128, description="`next_cursor` of the previous page."),
        ] = None,
    ) -> Response:
        """Your items, newest first (a superuser's list has everyone's).

        The first page (`offset`, default 0) counts the total; follow `next_cursor` for the
        next pages, which are fast at any depth and stable while items are added. Offset
        pages shift when items are added between requests.
        """
        start = offset if offset is not None else (skip or 0)
        position = service.Cursor.decode(cursor) if cursor is not None else None
        query = {"limit": limit, **({"cursor": cursor} if cursor else {"offset": start})}
        route = "items?" + urlencode(sorted(query.items()))

        async def render() -> bytes:
            async with kit.read_engine.connect() as connection:
                return await render_page(
                    connection, user, limit=limit, offset=start, cursor=position
                )

        return await cached_read(request, user, route, render)

    @router.get(
        "/{item_id}",
        name="items:get",
        response_model=ItemRead,
        responses={
            **error_responses(401, 404, 422),
            304: {"description": "Not modified (`If-None-Match` matched the `ETag`)."},
        },
    )
    async def read_item(item_id: ItemId, request: Request, user: CurrentUser) -> Response:
        """One item. Someone else's is 404, exactly like one that does not exist."""

        async def render() -> bytes:
            async with kit.read_engine.connect() as connection:
                item = await service.read_item(connection, item_id=item_id, user=user)
                return ItemRead.model_validate(item).model_dump_json().encode()

        return await cached_read(request, user, f"items/{item_id}", render)

    @router.put(
        "/{item_id}",
        name="items:replace",
        response_model=ItemRead,
        responses=error_responses(401, 404, 422),
    )
    async def replace_item(
        item_id: ItemId, payload: ItemCreate, user: CurrentUser, session: Session
    ) -> Any:
        """Replace an item; an omitted description becomes null."""
        item = await service.get_item(session, item_id=item_id, user=user)
        await service.update_item(
            session,
            item,
            now=kit.clock(),
            changes={"title": payload.title, "description": payload.description},
        )
        await session.commit()
        await written(item, user)
        return item

    @router.patch(
        "/{item_id}",
        name="items:update",
        response_model=ItemRead,
        responses=error_responses(401, 404, 422),
    )
    async def update_item(
        item_id: ItemId, payload: ItemPatch, user: CurrentUser, session: Session
    ) -> Any:
        """Change some fields; an explicit `"description": null` clears the description."""
        changes = payload.model_dump(include=payload.model_fields_set)
        item = await service.get_item(session, item_id=item_id, user=user)
        await service.update_item(session, item, now=kit.clock(), changes=changes)
        await session.commit()
        await written(item, user)
        return item

    @router.delete(
        "/{item_id}",
        name="items:delete",
        status_code=204,
        responses=error_responses(401, 404, 422),
    )
    async def delete_item(item_id: ItemId, user: CurrentUser, session: Session) -> Response:
        """Delete an item."""
        item = await service.get_item(session, item_id=item_id, user=user)
        await service.delete_item(session, item=item)
        await session.commit()
        await written(item, user)
        return Response(status_code=204)

    return router
