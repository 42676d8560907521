"""Name the installation: one row with a random id, made once.

Every process that uses this database reads the id and puts it in the keys it keeps in Redis,
so two services that share a Redis (and a key prefix) but not a database never read each
other's cached responses or rate-limit counters. Downgrading drops the row; upgrading again
names a new installation, whose keys start empty.

Revision ID: starterkit_0006
Revises: starterkit_0005
Create Date: 2026-12-07
"""

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "starterkit_0006"
down_revision: str | Sequence[str] | None = "starterkit_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = op.create_table(
        "starterkit_installation",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_starterkit_installation")),
    )
    op.bulk_insert(table, [{"id": secrets.token_hex(16), "created_at": datetime.now(UTC)}])


def downgrade() -> None:
    op.drop_table("starterkit_installation")
