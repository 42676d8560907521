"""The ``notes`` table: one user's short notes."""

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from starterkit import Base
from starterkit.db.base import BigIntId, utcnow


class Note(Base):
    """A note owned by a starterkit user."""

    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    owner_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    text: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
