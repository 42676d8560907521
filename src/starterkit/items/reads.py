"""What the items routes show: JSON bodies with ETags, cached per user.

This is the fast path of the example resource, not the shape to copy for your own: a resource
of yours reads through its service with the request's session, and FastAPI renders the
response (see ``examples/custom_resource``). Item reads are the most frequent requests of the
service, so here they skip the session, run prepared Core statements on
``kit.read_engine`` (see :mod:`starterkit.items.service`), render the JSON once and keep it in
``kit.cache`` until the owner's next write.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.ext.asyncio import AsyncEngine

from starterkit.cache import CachedResponse, ResponseCache
from starterkit.db.models import User
from starterkit.items import service
from starterkit.items.schemas import ItemPage, ItemRead


def etag_of(body: bytes) -> str:
    """A strong ETag for a response body."""
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


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


class ItemReads:
    """Rendered item pages and items for one runtime's engine and cache."""

    def __init__(self, engine: AsyncEngine, cache: ResponseCache) -> None:
        """Read through ``engine`` (``kit.read_engine``) and cache in ``cache``."""
        self._engine = engine
        self._cache = cache

    async def page(
        self, user: User, *, limit: int, offset: int, cursor: str | None
    ) -> CachedResponse:
        """The caller's page: keyset after ``cursor`` when given, else from ``offset``.

        Raises:
            InvalidRequest: the cursor is malformed.
        """
        position = service.Cursor.decode(cursor) if cursor is not None else None
        # The key names the page like its query string; two integers need no quoting.
        route = (
            "items?" + urlencode({"cursor": cursor, "limit": limit})
            if cursor
            else f"items?limit={limit}&offset={offset}"
        )

        async def render() -> bytes:
            async with self._engine.connect() as connection:
                return await render_page(
                    connection, user, limit=limit, offset=offset, cursor=position
                )

        return await self._cached(user, route, render)

    async def one(self, user: User, item_id: int) -> CachedResponse:
        """One item the caller may see.

        Raises:
            NotFound: it does not exist or belongs to someone else.
        """

        async def render() -> bytes:
            async with self._engine.connect() as connection:
                item = await service.read_item(connection, item_id=item_id, user=user)
                return ItemRead.model_validate(item).model_dump_json().encode()

        return await self._cached(user, f"items/{item_id}", render)

    async def forget(self, item: service.ItemRow, actor: User) -> None:
        """Drop the cached reads a write to ``item`` by ``actor`` made stale (before answering)."""
        await self._cache.invalidate(item.owner_id)
        if actor.id != item.owner_id:
            await self._cache.invalidate(actor.id)

    async def _cached(
        self, user: User, route: str, render: Callable[[], Awaitable[bytes]]
    ) -> CachedResponse:
        # Superusers see everyone's items, so their reads depend on every owner's writes:
        # they are never cached.
        if user.is_superuser:
            body = await render()
            return CachedResponse(body, etag_of(body))

        async def rendered() -> CachedResponse:
            body = await render()
            return CachedResponse(body, etag_of(body))

        return await self._cache.fetch(user.id, route, rendered)
