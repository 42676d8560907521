"""The tables starterkit owns: users, items, auth sessions, their refresh tokens, audit events,
the installation row, the signing keys and social-login identities."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint, false, true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from starterkit.db.base import Base, BigIntId, utcnow

EMAIL_MAX_LENGTH = 320
TITLE_MAX_LENGTH = 255
DESCRIPTION_MAX_LENGTH = 10_000
USER_AGENT_MAX_LENGTH = 512
# Starts the stored "hash" of an account without a password (one made by a social login): no
# hash scheme starts with it, so no password ever matches it.
UNUSABLE_PASSWORD_PREFIX = "!"  # noqa: S105 - a marker, not a password
# On tables whose ids clients see: SQLite would otherwise give a deleted row's id to the next
# row (migration starterkit_0005). PostgreSQL's sequences never reuse one anyway.
NEVER_REUSE_IDS = {"sqlite_autoincrement": True}


def first_token_version() -> int:
    """A new account's token version: random, and far from the column's int32 limit."""
    return secrets.randbelow(2**30)


class TimestampMixin:
    """``created_at``/``updated_at`` set in Python with microseconds, so ordering is stable."""

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class User(TimestampMixin, Base):
    """An account. ``email`` is stored trimmed and lower-cased, unique."""

    __tablename__ = "users"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    email: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH), unique=True)
    hashed_password: Mapped[str] = mapped_column(String(255))
    full_name: Mapped[str | None] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(default=True, server_default=true())
    is_superuser: Mapped[bool] = mapped_column(default=False, server_default=false())
    is_verified: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Part of every access token; bumping it ends all of the user's access tokens at once. It
    # starts at a random number, so that no token ever issued matches an account created
    # later, whatever its id (a token also names the account instance, not only the id).
    token_version: Mapped[int] = mapped_column(default=first_token_version, server_default="0")
    # The providers of the account's linked social-login identities, space-separated and
    # sorted: a copy of oauth_accounts kept on the row, so showing the user needs no query.
    oauth_providers: Mapped[str] = mapped_column(String(255), default="", server_default="")

    def __repr__(self) -> str:
        return f"User(id={self.id!r}, email={self.email!r})"

    @property
    def has_password(self) -> bool:
        """Whether the account has a password (accounts made by a social login have none)."""
        return not self.hashed_password.startswith(UNUSABLE_PASSWORD_PREFIX)

    @property
    def linked_providers(self) -> list[str]:
        """The providers of the account's social-login identities."""
        return self.oauth_providers.split()


class Item(TimestampMixin, Base):
    """The example resource: owned by one user, listed newest first."""

    __tablename__ = "items"
    __table_args__ = (
        Index(None, "owner_id", "created_at", "id"),  # a user's items, newest first
        Index(None, "created_at", "id"),  # everyone's items, for superusers
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    title: Mapped[str] = mapped_column(String(TITLE_MAX_LENGTH))
    description: Mapped[str | None] = mapped_column(Text)
    owner_id: Mapped[int] = mapped_column(BigIntId, ForeignKey("users.id", ondelete="CASCADE"))

    owner: Mapped[User] = relationship(lazy="raise")

    def __repr__(self) -> str:
        return f"Item(id={self.id!r}, owner_id={self.owner_id!r})"


class AuthSession(Base):
    """A login: the family that all refresh tokens rotated from one login belong to.

    Revoking the session revokes every token of the family; other sessions of the same user
    are untouched. ``expires_at`` is the absolute lifetime, however often it is refreshed.
    """

    __tablename__ = "auth_sessions"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    user_agent: Mapped[str | None] = mapped_column(String(USER_AGENT_MAX_LENGTH))
    ip: Mapped[str | None] = mapped_column(String(45))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(String(32))
    # How the login proved who it was (RFC 8176 values, space-separated) and when it last did
    # (null: at created_at); access tokens carry both as ``amr`` and ``auth_time``.
    amr: Mapped[str] = mapped_column(String(32), default="pwd", server_default="pwd")
    auth_time: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"AuthSession(id={self.id!r}, user_id={self.user_id!r})"


class RefreshToken(Base):
    """One refresh token of a session, stored only as HMAC-SHA256(secret, token) in hex.

    A token is consumed by setting ``used_at`` in one conditional UPDATE; presenting a token
    whose ``used_at`` is set is reuse, and revokes its session.
    """

    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    session_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("auth_sessions.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    parent_id: Mapped[int | None] = mapped_column(
        BigIntId, ForeignKey("refresh_tokens.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"RefreshToken(id={self.id!r}, session_id={self.session_id!r})"


class AuthEvent(Base):
    """One security-relevant event of an account: a row of the audit log.

    Events outlive the account they describe (``user_id`` becomes null when it is deleted);
    ``email`` keeps the address as it was given, so failed logins for unknown addresses are
    recorded too. Rows older than AUDIT_RETENTION_DAYS are purged.
    """

    __tablename__ = "auth_events"
    __table_args__ = (Index(None, "user_id", "created_at", "id"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(
        BigIntId, ForeignKey("users.id", ondelete="SET NULL")
    )
    email: Mapped[str | None] = mapped_column(String(EMAIL_MAX_LENGTH))
    event_type: Mapped[str] = mapped_column(String(32))
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(USER_AGENT_MAX_LENGTH))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    def __repr__(self) -> str:
        return f"AuthEvent(id={self.id!r}, event_type={self.event_type!r})"


class TOTPFactor(Base):
    """An account's TOTP factor: pending until ``confirmed_at``, then asked at every login.

    ``secret`` is encrypted (:mod:`starterkit.encryption`). ``last_used_step`` is the time
    step of the last code accepted: a code of that step or an earlier one is refused.
    """

    __tablename__ = "mfa_totp"

    user_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    secret: Mapped[str] = mapped_column(String(255))
    last_used_step: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"TOTPFactor(user_id={self.user_id!r})"


class RecoveryCode(Base):
    """One single-use recovery code, stored only as an HMAC of the code."""

    __tablename__ = "mfa_recovery_codes"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    used_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"RecoveryCode(id={self.id!r}, user_id={self.user_id!r})"


class MFAChallenge(Base):
    """The second step of one login: what an ``mfa_token`` (stored as an HMAC) stands for.

    It dies when used, at ``expires_at``, after 5 wrong codes, and when the account's token
    version moves (password change or reset, logout-all, deactivation).
    """

    __tablename__ = "mfa_challenges"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_version: Mapped[int]
    # How the login proved itself before the code (RFC 8176): ``pwd``, or ``ext`` after a
    # social login.
    first_factor: Mapped[str] = mapped_column(String(8), default="pwd", server_default="pwd")
    failures: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"MFAChallenge(id={self.id!r}, user_id={self.user_id!r})"


class Installation(Base):
    """The row naming this installation: one database and every process that uses it.

    Made once, by migration ``starterkit_0006``. Its id scopes the keys starterkit keeps in a
    shared Redis, so services with other databases never read each other's cache or counters.
    """

    __tablename__ = "starterkit_installation"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"Installation(id={self.id!r})"


__all__ = [
    "AuthEvent",
    "AuthSession",
    "Installation",
    "Item",
    "MFAChallenge",
    "OAuthAccount",
    "OAuthExchangeCode",
    "OAuthFlow",
    "RecoveryCode",
    "RefreshToken",
    "SigningKey",
    "TOTPFactor",
    "User",
]


class SigningKey(Base):
    """A key pair that signs access tokens when JWT_ALGORITHM is asymmetric.

    ``kid`` is the RFC 7638 thumbprint of ``public_jwk``; ``private_key`` is its PKCS#8 PEM,
    encrypted with ENCRYPTION_KEYS (:mod:`starterkit.encryption`). A key is *next* (published,
    not yet signing) until ``activated_at``; the most recently activated key that is not
    retired signs; a retired key stays published and valid until its last tokens expire.
    """

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(16))
    public_jwk: Mapped[str] = mapped_column(Text)
    private_key: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    activated_at: Mapped[datetime | None]
    retired_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r}, algorithm={self.algorithm!r})"


class OAuthAccount(Base):
    """A social-login identity linked to an account: ``subject`` at ``provider``.

    One identity belongs to one account; an account may have several (from several
    providers, or two accounts at one provider).
    """

    __tablename__ = "oauth_accounts"
    __table_args__ = (UniqueConstraint("provider", "subject"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    provider: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(255))
    # The address the provider gave at the last login, for the user to recognise the link.
    email: Mapped[str | None] = mapped_column(String(EMAIL_MAX_LENGTH))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"OAuthAccount(id={self.id!r}, provider={self.provider!r})"


class OAuthFlow(Base):
    """One social login (or link) between ``/authorize`` and ``/callback``.

    ``state`` goes to the provider and comes back; only its SHA-256 is stored, with that of the
    browser's binding cookie: the callback must bring both. Taken (deleted) by its callback.
    """

    __tablename__ = "oauth_flows"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    binding_hash: Mapped[str] = mapped_column(String(64))
    provider: Mapped[str] = mapped_column(String(32))
    nonce: Mapped[str] = mapped_column(String(64))
    code_verifier: Mapped[str] = mapped_column(String(128))
    redirect_to: Mapped[str] = mapped_column(Text)
    # Set when a signed-in user links an identity rather than logging in.
    link_user_id: Mapped[int | None] = mapped_column(
        BigIntId, ForeignKey("users.id", ondelete="CASCADE")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)

    def __repr__(self) -> str:
        return f"OAuthFlow(id={self.id!r}, provider={self.provider!r})"


class OAuthExchangeCode(Base):
    """The single-use code a finished social login hands the front end (stored as SHA-256),
    worth one session for ``user_id`` within its minute."""

    __tablename__ = "oauth_exchange_codes"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    provider: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"OAuthExchangeCode(id={self.id!r}, user_id={self.user_id!r})"
