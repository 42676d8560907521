"""Social login: linked identities, pending logins, exchange codes.

Revision ID: starterkit_0009
Revises: starterkit_0008
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "starterkit_0009"
down_revision: str | Sequence[str] | None = "starterkit_0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)


def _user_fk(table: str, column: str = "user_id") -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], ["users.id"], name=op.f(f"fk_{table}_{column}_users"), ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "oauth_accounts",
        sa.Column("id", Id, nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("created_at", When, nullable=False),
        sa.Column("last_login_at", When, nullable=True),
        _user_fk("oauth_accounts"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_accounts")),
        sa.UniqueConstraint("provider", "subject", name=op.f("uq_oauth_accounts_provider_subject")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_oauth_accounts_user_id"), "oauth_accounts", ["user_id"])
    op.create_table(
        "oauth_flows",
        sa.Column("id", Id, nullable=False),
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column("binding_hash", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("code_verifier", sa.String(length=128), nullable=False),
        sa.Column("redirect_to", sa.Text(), nullable=False),
        sa.Column("link_user_id", Id, nullable=True),
        sa.Column("created_at", When, nullable=False),
        sa.Column("expires_at", When, nullable=False),
        _user_fk("oauth_flows", "link_user_id"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_flows")),
        sa.UniqueConstraint("state_hash", name=op.f("uq_oauth_flows_state_hash")),
    )
    op.create_index(op.f("ix_oauth_flows_expires_at"), "oauth_flows", ["expires_at"])
    op.create_table(
        "oauth_exchange_codes",
        sa.Column("id", Id, nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("expires_at", When, nullable=False),
        sa.Column("used_at", When, nullable=True),
        _user_fk("oauth_exchange_codes"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_exchange_codes")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_oauth_exchange_codes_code_hash")),
    )
    op.create_index(op.f("ix_oauth_exchange_codes_user_id"), "oauth_exchange_codes", ["user_id"])
    op.create_index(
        op.f("ix_oauth_exchange_codes_expires_at"), "oauth_exchange_codes", ["expires_at"]
    )
    # Plain ADD COLUMN, also on SQLite: recreating users would drop its users_version
    # triggers (starterkit_0004).
    op.add_column(
        "users",
        sa.Column("oauth_providers", sa.String(length=255), nullable=False, server_default=""),
    )
    op.add_column(
        "mfa_challenges",
        sa.Column("first_factor", sa.String(length=8), nullable=False, server_default="pwd"),
    )


def downgrade() -> None:
    # SQLite (3.35 and later) drops a column in place, so users keeps its triggers.
    op.drop_column("mfa_challenges", "first_factor")
    op.drop_column("users", "oauth_providers")
    op.drop_table("oauth_exchange_codes")
    op.drop_table("oauth_flows")
    op.drop_table("oauth_accounts")
