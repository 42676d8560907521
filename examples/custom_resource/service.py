"""Note rules and queries: the session comes first, nothing commits, no FastAPI."""

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from examples.custom_resource.models import Note
from starterkit import User


async def add_note(session: AsyncSession, *, owner: User, text: str) -> Note:
    """Add a note owned by ``owner``; the caller commits."""
    note = Note(owner_id=owner.id, text=text)
    session.add(note)
    await session.flush()
    return note


async def list_notes(session: AsyncSession, *, owner: User) -> list[Note]:
    """The notes of ``owner``, oldest first."""
    result = await session.execute(select(Note).where(Note.owner_id == owner.id).order_by(Note.id))
    return list(result.scalars())
