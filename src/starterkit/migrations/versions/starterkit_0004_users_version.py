"""On SQLite, count changes to users rows, for the per-process user cache.

A one-row table holds a number that triggers raise whenever a users row is updated or
deleted, in the same transaction, whoever writes: this process, another worker, the CLI or
the ``sqlite3`` shell. ``starterkit.auth.user_cache`` keeps a signed-in user's row only while
that number is unchanged, so a commit to other tables (a new item, say) no longer throws every
cached user away. PostgreSQL does not use the cache, so nothing is created there.

Batch-mode migrations recreate a table, and SQLite drops a table's triggers with it: a later
migration that alters ``users`` on SQLite should create both triggers again
(``tests/integration/test_migrations.py`` checks they exist at head). If one does not, the
cache notices the missing triggers and turns itself off: slower, never stale.

Revision ID: starterkit_0004
Revises: starterkit_0003
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from alembic import op

revision: str = "starterkit_0004"
down_revision: str | Sequence[str] | None = "starterkit_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BUMP = "UPDATE users_version SET version = version + 1 WHERE id = 1"


def upgrade() -> None:
    if op.get_context().dialect.name != "sqlite":
        return
    op.execute(
        "CREATE TABLE users_version ("
        " id INTEGER NOT NULL CONSTRAINT pk_users_version PRIMARY KEY"
        " CONSTRAINT ck_users_version_single_row CHECK (id = 1),"
        " version INTEGER NOT NULL)"
    )
    op.execute("INSERT INTO users_version (id, version) VALUES (1, 0)")
    for event in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER users_version_after_{event.lower()} AFTER {event} ON users"
            f" BEGIN {_BUMP}; END"
        )


def downgrade() -> None:
    if op.get_context().dialect.name != "sqlite":
        return
    op.execute("DROP TRIGGER users_version_after_delete")
    op.execute("DROP TRIGGER users_version_after_update")
    op.execute("DROP TABLE users_version")
