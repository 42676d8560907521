"""Item rules and queries: ownership, newest-first pages by offset or keyset cursor.

Ownership is enforced here, not in the router: a user reaches only their own items, a
superuser every item, and "not yours" is the same :class:`NotFound` as "does not exist".
Functions take the session first and never commit.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Select, func, literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from starterkit.db.models import Item, User
from starterkit.exceptions import InvalidRequest, NotFound

ITEM_NOT_FOUND = "Item not found."
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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
    def after(cls, item: Item) -> Cursor:
        """The cursor that continues after ``item``."""
        return cls(created_at=item.created_at, item_id=item.id)


_AnySelect = TypeVar("_AnySelect", bound=Select[Any])
_ONE_MICROSECOND = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - _EPOCH


def _visible_to(user: User) -> Select[Item]:
    query = select(Item)
    return query if user.is_superuser else query.where(Item.owner_id == user.id)


def _newest_first(query: _AnySelect) -> _AnySelect:
    return query.order_by(Item.created_at.desc(), Item.id.desc())


async def create_item(
    session: AsyncSession,
    *,
    owner: User,
    title: str,
    description: str | None,
    now: datetime,
) -> Item:
    """Add an item owned by ``owner``."""
    item = Item(
        title=title, description=description, owner_id=owner.id, created_at=now, updated_at=now
    )
    session.add(item)
    await session.flush()
    return item


async def get_item(session: AsyncSession, *, item_id: int, user: User) -> Item:
    """The item, if ``user`` may see it.

    Raises:
        NotFound: it does not exist or belongs to someone else.
    """
    item = (await session.execute(_visible_to(user).where(Item.id == item_id))).scalar_one_or_none()
    if item is None:
        raise NotFound(ITEM_NOT_FOUND)
    return item


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
    session: AsyncSession, *, user: User, limit: int, offset: int
) -> tuple[list[Item], int]:
    """An offset page and the total: one query, or two for a page past the end.

    The total rides along as an uncorrelated scalar subquery, which SQLite and PostgreSQL
    evaluate once per statement (from the index, without reading the rows). A window count
    (``count(*) OVER ()``) would instead materialise every matching row before the LIMIT.
    """
    visible = _visible_to(user)
    count = select(func.count()).select_from(visible.subquery())
    query = _newest_first(visible.add_columns(count.scalar_subquery().label("total")))
    rows = (await session.execute(query.limit(limit).offset(offset))).all()
    if rows:
        return [row[0] for row in rows], int(rows[0][1])
    return [], (int(await session.scalar(count) or 0) if offset else 0)


async def list_items_after(
    session: AsyncSession, *, user: User, limit: int, cursor: Cursor
) -> tuple[list[Item], Cursor | None]:
    """A keyset page after ``cursor`` and the cursor of the next page: exactly one query.

    The query walks the ``(owner_id, created_at, id)`` index, so its cost does not grow with
    how deep the page is.
    """
    # Typed literals: the timestamp must be bound exactly as the column stores it.
    position = tuple_(
        literal(cursor.created_at, Item.__table__.c.created_at.type),
        literal(cursor.item_id, Item.__table__.c.id.type),
    )
    query = _visible_to(user).where(tuple_(Item.created_at, Item.id) < position)
    rows = list((await session.execute(_newest_first(query).limit(limit + 1))).scalars())
    items = rows[:limit]
    return items, Cursor.after(items[-1]) if len(rows) > limit else None
