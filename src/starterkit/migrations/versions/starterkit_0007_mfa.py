"""Second factors: TOTP, recovery codes and login challenges; how each session authenticated.

``auth_sessions`` gains ``amr`` (RFC 8176 methods, "pwd" for every existing login) and
``auth_time`` (null: the session's ``created_at``), which access tokens carry for step-up.

Revision ID: starterkit_0007
Revises: starterkit_0006
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "starterkit_0007"
down_revision: str | Sequence[str] | None = "starterkit_0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)


def _user_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["user_id"], ["users.id"], name=op.f(f"fk_{table}_user_id_users"), ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "mfa_totp",
        sa.Column("user_id", Id, nullable=False),
        sa.Column("secret", sa.String(length=255), nullable=False),
        sa.Column("last_used_step", sa.BigInteger(), nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("confirmed_at", When, nullable=True),
        _user_fk("mfa_totp"),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_mfa_totp")),
    )
    op.create_table(
        "mfa_recovery_codes",
        sa.Column("id", Id, nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("used_at", When, nullable=True),
        _user_fk("mfa_recovery_codes"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mfa_recovery_codes")),
    )
    op.create_index(op.f("ix_mfa_recovery_codes_user_id"), "mfa_recovery_codes", ["user_id"])
    op.create_table(
        "mfa_challenges",
        sa.Column("id", Id, nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("token_version", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("expires_at", When, nullable=False),
        sa.Column("used_at", When, nullable=True),
        _user_fk("mfa_challenges"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mfa_challenges")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_mfa_challenges_token_hash")),
    )
    op.create_index(op.f("ix_mfa_challenges_user_id"), "mfa_challenges", ["user_id"])
    op.create_index(op.f("ix_mfa_challenges_expires_at"), "mfa_challenges", ["expires_at"])
    op.add_column(
        "auth_sessions",
        sa.Column("amr", sa.String(length=32), nullable=False, server_default="pwd"),
    )
    op.add_column("auth_sessions", sa.Column("auth_time", When, nullable=True))


def downgrade() -> None:
    # SQLite recreates the table to drop columns: keep its AUTOINCREMENT (starterkit_0005).
    with op.batch_alter_table(
        "auth_sessions", table_kwargs={"sqlite_autoincrement": True}
    ) as batch:
        batch.drop_column("auth_time")
        batch.drop_column("amr")
    op.drop_table("mfa_challenges")
    op.drop_table("mfa_recovery_codes")
    op.drop_table("mfa_totp")
