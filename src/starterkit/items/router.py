"""``/items`` routes: owned CRUD, newest-first pages, ETags and the per-user read cache.

Built by :func:`build_items_router` for one runtime; mount it under any prefix. Writes go
through :mod:`starterkit.items.service`: a create is one INSERT on ``kit.autocommit_engine``,
changes use the request's session. Reads come rendered and cached from
:mod:`starterkit.items.reads`. No ``from __future__ import annotations`` here:
FastAPI reads these annotations at runtime.
"""

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from starterkit.cache import CachedResponse
from starterkit.db.models import User
from starterkit.errors import error_responses
from starterkit.items import service
from starterkit.items.reads import ItemReads
from starterkit.items.schemas import ItemCreate, ItemPage, ItemPatch, ItemRead
from starterkit.queryparams import query_model
from starterkit.runtime import Runtime
from starterkit.schemas import MAX_DB_INT

ItemId = Annotated[int, Path(ge=1, le=MAX_DB_INT)]


class PageQuery(BaseModel):
    """The query of the items list."""

    limit: int = Field(50, ge=1, le=100)
    offset: int | None = Field(None, ge=0, le=MAX_DB_INT)
    skip: int | None = Field(None, ge=0, le=MAX_DB_INT, description="Alias of `offset`.")
    cursor: str | None = Field(
        None, max_length=128, description="`next_cursor` of the previous page."
    )


# Read by one model validation rather than four Query() parameters: the list is what clients
# poll, and FastAPI's per-parameter work was a sixth of a cached page's time.
page_query, page_parameters = query_model(PageQuery)

_JSON = "application/json"


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


def build_items_router(kit: Runtime, *, tags: Sequence[str] = ("items",)) -> APIRouter:
    """The items routes of ``kit``; include it with any prefix (``create_app`` uses /items)."""
    router = APIRouter(tags=list(tags))
    Session = Annotated[AsyncSession, Depends(kit.db_session)]
    CurrentUser = Annotated[User, Depends(kit.current_user)]
    # Reads need no session dependency: it would cost every request, cache hits included,
    # FastAPI's per-dependency setup and teardown.
    reads = ItemReads(kit.read_engine, kit.cache)

    @router.post(
        "",
        name="items:create",
        status_code=201,
        response_model=ItemRead,
        responses=error_responses(401, 422),
    )
    async def create_item(payload: ItemCreate, user: CurrentUser) -> Any:
        """Create an item owned by the caller."""
        # One INSERT that commits by itself: no session, no BEGIN and COMMIT around it.
        async with kit.autocommit_engine.begin() as connection:
            item = await service.create_item(
                connection,
                owner=user,
                title=payload.title,
                description=payload.description,
                now=kit.clock(),
            )
        await reads.forget(item, user)
        return item

    @router.get(
        "",
        name="items:list",
        response_model=ItemPage,
        openapi_extra={"parameters": page_parameters},
        responses={
            **error_responses(400, 401, 422),
            304: {"description": "Not modified (`If-None-Match` matched the `ETag`)."},
        },
    )
    async def list_items(
        request: Request, user: CurrentUser, query: Annotated[PageQuery, Depends(page_query)]
    ) -> Response:
        """Your items, newest first (a superuser's list has everyone's).

        The first page (`offset`, default 0) counts the total; follow `next_cursor` for the
        next pages, which are fast at any depth and stable while items are added. Offset
        pages shift when items are added between requests.
        """
        start = query.offset if query.offset is not None else (query.skip or 0)
        page = await reads.page(user, limit=query.limit, offset=start, cursor=query.cursor)
        return conditional_response(request, page)

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
        return conditional_response(request, await reads.one(user, item_id))

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
        await reads.forget(item, user)
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
        await reads.forget(item, user)
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
        await reads.forget(item, user)
        return Response(status_code=204)

    return router
