"""Index items by (created_at, id) for superusers listing everyone's items.

Revision ID: starterkit_0002
Revises: starterkit_0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from alembic import op

revision: str = "starterkit_0002"
down_revision: str | Sequence[str] | None = "starterkit_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_items_created_at_id"), "items", ["created_at", "id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_items_created_at_id"), table_name="items")
