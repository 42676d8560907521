"""On SQLite, never hand out an id twice (AUTOINCREMENT) on the tables whose ids clients see.

Without AUTOINCREMENT, SQLite gives a new row the largest id plus one, so deleting the newest
user freed its id for the next account, and an unexpired access token of the deleted user then
named the new account. PostgreSQL's sequences never reuse a value, so nothing changes there.

The tables are recreated (batch mode), which drops the users table's ``users_version``
triggers: they are created again here, in both directions.

Revision ID: starterkit_0005
Revises: starterkit_0004
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

revision: str = "starterkit_0005"
down_revision: str | Sequence[str] | None = "starterkit_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Parents first: their ids are what the others' foreign keys point at.
_TABLES = ("users", "items", "auth_sessions", "auth_events")
_BUMP = "UPDATE users_version SET version = version + 1 WHERE id = 1"


def _recreate(*, autoincrement: bool) -> None:
    if op.get_context().dialect.name != "sqlite":
        return
    for table in _TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass
    for event in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER users_version_after_{event.lower()} AFTER {event} ON users"
            f" BEGIN {_BUMP}; END"
        )


def upgrade() -> None:
    _recreate(autoincrement=True)


def downgrade() -> None:
    _recreate(autoincrement=False)
