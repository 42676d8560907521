"""PostgreSQL: tell listening processes when users rows change (the user cache).

Every statement that updates, deletes or truncates users rows sends a notification on the
channel ``starterkit_users`` when its transaction commits, whoever runs it (an instance, the
CLI, psql). Each serving process listens and drops its cached users. SQLite has its own
mechanism (``users_version``, starterkit_0004); this revision does nothing there.

Revision ID: starterkit_0010
Revises: starterkit_0009
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

revision: str = "starterkit_0010"
down_revision: str | Sequence[str] | None = "starterkit_0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE FUNCTION starterkit_users_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('starterkit_users', 'changed');
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER users_notify_change AFTER UPDATE OR DELETE OR TRUNCATE ON users "
        "FOR EACH STATEMENT EXECUTE FUNCTION starterkit_users_changed()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # Listeners turn their cache off: no change would reach them any more.
    op.execute("SELECT pg_notify('starterkit_users', 'off')")
    op.execute("DROP TRIGGER users_notify_change ON users")
    op.execute("DROP FUNCTION starterkit_users_changed()")
