"""Item rules and queries: ownership, newest-first pages by offset or keyset cursor.

Ownership is enforced here, not in the router: a user reaches only their own items, a
superuser every item, and "not yours" is the same :class:`NotFound` as "does not exist".
Functions take the session (or, for reads and :func:`create_item`, a connection) first and
never commit.

Reads that only show items (pages, :func:`read_item`) run prepared Core statements and return
rows (:class:`ItemRow`), not ORM objects: building the statement and building and tracking 20
``Item`` instances each cost more than the query itself. For the same reason
:func:`create_item` is one Core INSERT. Changes to an existing item go through
:func:`get_item` and the ORM.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, cast

from sqlalchemy import Select, Table, bindparam, func, insert, select, true, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from starterkit.db.models import Item, User
from starterkit.exceptions import InvalidRequest, NotFound

ITEM_NOT_FOUND = "Item not found."
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ItemRow(Protocol):
    """An item's columns, read-only: a row of :data:`ITEM_COLUMNS`, or an ``Item``."""

    @property
    def id(self) -> int: ...
    @property
    def title(self) -> str: ...
    @property
    def description(self) -> str | None: ...
    @property
    def owner_id(self) -> int: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...


ITEM_COLUMNS = tuple(Item.__table__.c)

# The reads run on a plain connection (starterkit's routes) or in a session (your code).
Reader = AsyncConnection | AsyncSession


@dataclass(frozen=True, slots=True)
class Cursor:
    """Position after an item in newest-first order: its (created_at, id)."""

    created_at: datetime
    item_id: int

    def encode(self) -> str:
        """An opaque, URL-safe string for ``?cursor=``."""
        micros = (self.created_at - _EPOCH) // _ONE_MICROSECOND
        raw = f"{micros}.{self.item_id}".encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """Parse a cursor made by :meth:`encode`.

        Raises:
            InvalidRequest: it is not one.
        """
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
            micros_text, id_text = raw.split(".")
            micros, item_id = int(micros_text), int(id_text)
            if not (0 <= micros < 2**62 and 0 < item_id < 2**63):
                raise ValueError(raw)
            created_at = _EPOCH + micros * _ONE_MICROSECOND
        except (ValueError, UnicodeDecodeError, binascii.Error, OverflowError):
            raise InvalidRequest("The cursor is malformed.") from None
        return cls(created_at=created_at, item_id=item_id)

    @classmethod
    def after(cls, item: ItemRow) -> Cursor:
        """The cursor that continues after ``item``."""
        return cls(created_at=item.created_at, item_id=item.id)


_ONE_MICROSECOND = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - _EPOCH
_NEWEST_FIRST = (Item.created_at.desc(), Item.id.desc())


@dataclass(frozen=True, slots=True)
class _ReadStatements:
    """The read queries for one kind of caller, built once with bind parameters.

    Building a statement and computing its cache key cost about as much as running it on
    SQLite; built once, SQLAlchemy reuses the compiled SQL and only binds the values.
    """

    page: Select[Any]  # an offset page with the total in every row
    count: Select[Any]
    after: Select[Any]  # a keyset page after (created_at, id)
    one: Select[Any]  # one item's columns
    item: Select[Any]  # one item as an ORM object, to change or delete

    @classmethod
    def build(cls, *, superuser: bool) -> _ReadStatements:
        visible = true() if superuser else Item.owner_id == bindparam("owner_id")
        count = select(func.count()).select_from(Item).where(visible)
        total = count.scalar_subquery().label("total")
        position = tuple_(
            bindparam("after_created_at", type_=Item.__table__.c.created_at.type),
            bindparam("after_id", type_=Item.__table__.c.id.type),
        )
        rows = select(*ITEM_COLUMNS).where(visible)
        return cls(
            page=(
                select(*ITEM_COLUMNS, total)
                .where(visible)
                .order_by(*_NEWEST_FIRST)
                .limit(bindparam("limit"))
                .offset(bindparam("offset"))
            ),
            count=count,
            after=(
                rows.where(tuple_(Item.created_at, Item.id) < position)
                .order_by(*_NEWEST_FIRST)
                .limit(bindparam("limit"))
            ),
            one=rows.where(Item.id == bindparam("item_id")),
            item=select(Item).where(visible, Item.id == bindparam("item_id")),
        )


_READS = {
    False: _ReadStatements.build(superuser=False),
    True: _ReadStatements.build(superuser=True),
}


def _reads_for(user: User) -> tuple[_ReadStatements, dict[str, Any]]:
    return _READS[user.is_superuser], {"owner_id": user.id}


_INSERT_ITEM = insert(cast("Table", Item.__table__)).returning(*ITEM_COLUMNS)


async def create_item(
    writer: Reader,
    *,
    owner: User,
    title: str,
    description: str | None,
    now: datetime,
) -> ItemRow:
    """Insert an item owned by ``owner`` in ``writer``'s transaction (commit is the caller's).

    One Core INSERT, not ``session.add`` and a flush: the unit of work cost more than the
    statement. ``writer`` is a session or a connection, such as one of
    ``kit.autocommit_engine.begin()``, where the INSERT commits by itself.
    """
    values = {
        "title": title,
        "description": description,
        "owner_id": owner.id,
        "created_at": now,
        "updated_at": now,
    }
    return cast("ItemRow", (await writer.execute(_INSERT_ITEM, values)).one())


async def get_item(session: AsyncSession, *, item_id: int, user: User) -> Item:
    """The item, if ``user`` may see it, to change or delete.

    Raises:
        NotFound: it does not exist or belongs to someone else.
    """
    reads, params = _reads_for(user)
    result = await session.execute(reads.item, {**params, "item_id": item_id})
    item: Item | None = result.scalar_one_or_none()
    if item is None:
        raise NotFound(ITEM_NOT_FOUND)
    return item


async def read_item(reader: Reader, *, item_id: int, user: User) -> ItemRow:
    """The item's columns, if ``user`` may see it.

    Raises:
        NotFound: it does not exist or belongs to someone else.
    """
    reads, params = _reads_for(user)
    row = (await reader.execute(reads.one, {**params, "item_id": item_id})).one_or_none()
    if row is None:
        raise NotFound(ITEM_NOT_FOUND)
    return cast("ItemRow", row)


async def update_item(
    session: AsyncSession, item: Item, *, now: datetime, changes: dict[str, str | None]
) -> Item:
    """Apply field changes (title, description) to ``item`` and flush them.

    Raises:
        NotFound: a concurrent request deleted the item after it was read.
    """
    for field, value in changes.items():
        setattr(item, field, value)
    item.updated_at = now
    try:
        await session.flush()
    except StaleDataError:
        # The UPDATE matched no row: the item went away since it was read.
        raise NotFound(ITEM_NOT_FOUND) from None
    return item


async def delete_item(session: AsyncSession, *, item: Item) -> None:
    """Remove ``item``."""
    await session.delete(item)
    await session.flush()


async def list_items_page(
    reader: Reader, *, user: User, limit: int, offset: int
) -> tuple[list[ItemRow], int]:
    """An offset page and the total: one query, or two for a page past the end.

    The total rides along as an uncorrelated scalar subquery, which SQLite and PostgreSQL
    evaluate once per statement (from the index, without reading the rows). A window count
    (``count(*) OVER ()``) would instead materialise every matching row before the LIMIT.
    """
    reads, params = _reads_for(user)
    result = await reader.execute(reads.page, {**params, "limit": limit, "offset": offset})
    rows = result.all()
    if rows:
        return cast("list[ItemRow]", rows), int(rows[0].total)
    if not offset:
        return [], 0
    return [], int((await reader.execute(reads.count, params)).scalar_one())


async def list_items_after(
    reader: Reader, *, user: User, limit: int, cursor: Cursor
) -> tuple[list[ItemRow], Cursor | None]:
    """A keyset page after ``cursor`` and the cursor of the next page: exactly one query.

    The query walks the ``(owner_id, created_at, id)`` index, so its cost does not grow with
    how deep the page is.
    """
    reads, params = _reads_for(user)
    position = {"after_created_at": cursor.created_at, "after_id": cursor.item_id}
    result = await reader.execute(reads.after, {**params, **position, "limit": limit + 1})
    rows = cast("list[ItemRow]", result.all())
    items = rows[:limit]
    return items, Cursor.after(items[-1]) if len(rows) > limit else None
