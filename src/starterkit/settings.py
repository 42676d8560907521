"""Typed settings, read from ``STARTERKIT_*`` environment variables and a ``.env`` file.

Every validation problem is reported as one sentence that names the setting, so the CLI can
print it as one line. Production refuses configurations that are only safe on a laptop.
"""

from __future__ import annotations

import ipaddress
import os
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, SecretStr, ValidationInfo, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from starterkit.database_url import DatabaseKind, database_kind, normalize_database_url
from starterkit.oauth.providers import ProviderConfig, parse_providers

ENV_PREFIX = "STARTERKIT_"
MIN_SECRET_LENGTH = 32
# A random secret of 32 or more characters has far more distinct characters than this (32 hex
# digits have fewer than 8 with a probability of 4e-8); a typed or repeated one often has fewer.
MIN_SECRET_DISTINCT_CHARACTERS = 8

Environment = Literal["development", "test", "production"]

# Placeholders that appear in templates and tutorials; a secret containing one was copied,
# not generated. (The FastAPI full-stack template ships "changethis".)
_PLACEHOLDER_SECRETS = ("changeme", "change-me", "change_me", "changethis", "secret-key")


def env_name(field: str) -> str:
    """Return the environment variable that sets ``field``."""
    return f"{ENV_PREFIX}{field.upper()}"


# The variables hosting platforms (Heroku, Render, Railway, Fly, …) set for the services they
# attach. Each is read from the process environment when the setting is given no other way.
PLATFORM_NAMES = {"database_url": "DATABASE_URL", "redis_url": "REDIS_URL"}


class _PlatformVariables(PydanticBaseSettingsSource):
    """The platform variables, below keywords, STARTERKIT_ variables and ``.env``."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        name = PLATFORM_NAMES.get(field_name)
        return (os.environ.get(name) if name else None), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {
            field: os.environ[name] for field, name in PLATFORM_NAMES.items() if name in os.environ
        }


def _rate_limit(value: str) -> str:
    from limits import parse_many  # noqa: PLC0415 - keeps `starterkit --help` light

    try:
        parse_many(value)
    except ValueError:
        raise ValueError(
            f"{value!r} is not a rate limit such as '5/minute' or '100/hour'"
        ) from None
    return value


# A rate-limit setting: one window or several, "10/second;100/minute".
RateLimitText = Annotated[str, AfterValidator(_rate_limit)]


class Settings(BaseSettings):
    """Configuration of one starterkit runtime.

    Each field is read from ``STARTERKIT_<FIELD>`` (or the ``.env`` file in the working
    directory); keyword arguments win over both. Construct one per app: nothing in starterkit
    reads settings at import time.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        validate_default=True,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Read DATABASE_URL and REDIS_URL as platforms set them, after starterkit's names."""
        platform = _PlatformVariables(settings_cls)
        return init_settings, env_settings, dotenv_settings, platform, file_secret_settings

    environment: Environment = Field(
        default="development",
        description="`development`, `test` or `production`. Production refuses unsafe settings.",
    )
    database_url: str = Field(
        default="sqlite:///./starterkit.db",
        description="SQLAlchemy URL; `sqlite://` and `postgresql://` (also `postgres://`) are "
        "mapped to the async drivers aiosqlite and asyncpg. A plain `DATABASE_URL` is used "
        "when this is unset.",
    )
    database_pool_size: int = Field(
        default=5, ge=1, le=1000, description="Connections kept open per process (PostgreSQL)."
    )
    database_max_overflow: int = Field(
        default=10, ge=0, le=1000, description="Extra connections allowed under load."
    )
    database_pool_timeout: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="Seconds to wait for a free connection before answering 503.",
    )
    redis_url: str = Field(
        default="",
        description="Empty for the in-process limiter and cache; `redis://…` to share them "
        "between instances. A plain `REDIS_URL` is used when this is unset.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Signs access tokens with JWT_ALGORITHM=HS256; derives the default "
        "encryption key and the CSRF key. At least 32 characters. `starterkit serve` "
        "generates one into `.env` in development.",
    )
    refresh_token_secret: SecretStr | None = Field(
        default=None,
        description="Keys the HMAC under which refresh tokens are stored. At least 32 "
        "characters and different from SECRET_KEY.",
    )
    access_token_expire_minutes: int = Field(
        default=15, ge=1, le=24 * 60, description="Lifetime of access tokens."
    )
    refresh_token_expire_days: int = Field(
        default=30,
        ge=1,
        le=365,
        description="Idle lifetime: a refresh token unused this long expires.",
    )
    session_max_age_days: int = Field(
        default=90,
        ge=1,
        le=3650,
        description="Absolute lifetime of a login, however often it is refreshed.",
    )
    refresh_reuse_grace_seconds: int = Field(
        default=10,
        ge=0,
        le=300,
        description="A refresh token presented again this soon after its own rotation (two "
        "tabs, a retried request) gets a new pair in the same session instead of revoking it; "
        "0 makes every reuse revoke the session.",
    )
    session_purge_interval_seconds: int = Field(
        default=3600,
        ge=0,
        description="How often each process deletes expired sessions and old audit events "
        "(0: never).",
    )
    audit_retention_days: int = Field(
        default=90, ge=1, le=3650, description="How long audit-log events are kept."
    )
    jwt_algorithm: Literal["EdDSA", "ES256", "RS256", "HS256"] = Field(
        default="EdDSA",
        description="How access tokens are signed: `EdDSA` (Ed25519), `ES256` or `RS256` with "
        "keys kept in the database and published at `/.well-known/jwks.json`, so other "
        "services can verify tokens without a secret; or `HS256` with SECRET_KEY.",
    )
    keyset_refresh_seconds: int = Field(
        default=30,
        ge=1,
        le=3600,
        description="How often each process reads the signing keys again, so a rotation made "
        "anywhere reaches it without a restart.",
    )
    signing_key_max_age_days: int = Field(
        default=90,
        ge=1,
        le=3650,
        description="`starterkit check` warns when the active signing key is older than this.",
    )
    jwt_issuer: str = Field(
        default="starterkit", min_length=1, max_length=255, description="`iss` of access tokens."
    )
    jwt_audience: str = Field(
        default="starterkit", min_length=1, max_length=255, description="`aud` of access tokens."
    )
    clock_skew_seconds: int = Field(
        default=30, ge=0, le=300, description="Leeway for exp/nbf/iat checks."
    )
    auth_login_rate_limit: RateLimitText = Field(default="5/minute", description="Per client IP.")
    auth_login_account_rate_limit: RateLimitText = Field(
        default="20/hour", description="Per account; counts failed logins only."
    )
    auth_refresh_rate_limit: RateLimitText = Field(
        default="10/minute", description="Per client IP."
    )
    auth_register_rate_limit: RateLimitText = Field(default="10/hour", description="Per client IP.")
    auth_password_rate_limit: RateLimitText = Field(
        default="10/hour", description="Password changes per account."
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="`text`, or `json` for one JSON object a line (time, level, logger, "
        "message, request_id; access lines add client, method, route, status, duration_ms).",
    )
    # Multi-factor login and step-up.
    auth_mfa_rate_limit: RateLimitText = Field(
        default="5/minute;20/hour",
        description="Per account; failed codes at `/auth/login/mfa`, and failed secrets at "
        "`/auth/reauthenticate`, each counted on their own.",
    )
    mfa_issuer: str = Field(
        default="starterkit",
        min_length=1,
        max_length=64,
        description="The name authenticator apps show next to the account.",
    )
    mfa_required_for_superusers: bool = Field(
        default=False,
        description="Superuser routes answer 403 `mfa_required` to a superuser whose login "
        "had no second factor.",
    )
    recent_auth_max_age_minutes: int = Field(
        default=10,
        ge=1,
        le=24 * 60,
        description="How recent an authentication `kit.require_recent_auth()` (and MFA "
        "setup, recovery codes and removal) needs; older gets 403 `reauthentication_required`.",
    )
    encryption_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Fernet keys, newest first, that encrypt TOTP secrets at rest (the newest "
        "encrypts, all decrypt); `starterkit genkey --encryption-key` makes one. Empty: one "
        "key derived from SECRET_KEY.",
    )
    cache_ttl_seconds: int = Field(
        default=30, ge=0, le=24 * 3600, description="Lifetime of cached item reads; 0 disables."
    )
    redis_key_prefix: str = Field(
        default="starterkit:",
        min_length=1,
        max_length=64,
        description="Prefix of every Redis key, so several services can share one Redis.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description='Allowed browser origins, as a JSON list such as `["https://app.example"]`.',
    )
    cors_allow_credentials: bool = Field(
        default=False, description="Let browsers send cookies and credentials cross-origin."
    )
    # Browser sessions (cookies with CSRF protection).
    cookie_domain: str = Field(
        default="",
        max_length=253,
        description="Domain of the browser-session cookies, e.g. `example.com` to share them "
        "with every subdomain. Empty: host-only cookies for the API's own host (recommended).",
    )
    # Always a bool or None once validated; None means "decide per request".
    cookie_secure: bool | None = Field(
        default=None,
        description="The `Secure` attribute of the browser-session cookies. Unset: Secure, "
        "except in development over plain http on a loopback host. Production refuses false.",
    )
    # Social login (OAuth 2.0 / OpenID Connect providers).
    oauth_providers: Annotated[dict[str, ProviderConfig], NoDecode] = Field(
        default_factory=dict,
        description="Identity providers to sign in with, a JSON object of name → "
        '`{"issuer": …, "client_id": …, "client_secret": …}` (any OpenID Connect provider) or '
        '`{"preset": "github", "client_id": …, "client_secret": …}`. See Social login.',
    )
    oauth_redirect_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Where a social login may send the browser back to (`redirect_to`), as a "
        "JSON list of exact URLs (query strings are ignored when comparing); the first is "
        "where a login whose state is unknown ends up.",
    )
    oauth_callback_base_url: str = Field(
        default="",
        description="The public base URL of this API, e.g. `https://api.example.com`, used "
        "in the callback URL registered at each provider. Empty: the address the request "
        "came to.",
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="IPs and CIDRs of proxies whose `X-Forwarded-For` is believed.",
    )
    ipv6_rate_limit_prefix: int = Field(
        default=64,
        ge=32,
        le=128,
        description="Per-IP limits count an IPv6 client by its network of this many bits (one "
        "subscriber usually has a /64 or more); IPv4-mapped addresses count as IPv4.",
    )
    api_prefix: str = Field(default="/api/v1", description="Path prefix of every route.")
    password_min_length: int = Field(
        default=12, ge=8, le=256, description="Shortest password accepted, in characters."
    )
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="Larger request bodies get 413."
    )
    max_header_bytes: int = Field(
        default=32_768,
        ge=4096,
        le=1_048_576,
        description="Request headers larger than this in total (names and values) get 431.",
    )
    migration_locations: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Directories (or `package:path`) of your own Alembic revisions, applied "
        "by `starterkit migrate` next to starterkit's own branch.",
    )
    model_modules: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Modules to import so that your models join `Base.metadata` "
        "(for `starterkit migrate check`).",
    )
    # Always a bool once validated: unset becomes "not production".
    docs_enabled: bool | None = Field(
        default=None,
        description="Serve `/docs`, `/redoc` and `/openapi.json`. Unset: on, except in production.",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="When set, `GET /metrics` needs `Authorization: Bearer <METRICS_TOKEN>`. "
        "Unset, `/metrics` is open outside production and answers 404 in production.",
    )
    hsts_seconds: int = Field(
        default=0,
        ge=0,
        le=2 * 365 * 24 * 3600,
        description="When above 0, every response carries `Strict-Transport-Security: "
        "max-age=...`. Set it only where the service is reached over HTTPS alone.",
    )
    sqlite_fast_paths: bool = Field(
        default=True,
        description="On a SQLite file: run statements with one thread hand-off each, serve "
        "starterkit's reads from one dedicated connection and keep signed-in users' rows in "
        "memory while no users row changes. False uses the stock aiosqlite driver, the main "
        "pool for reads and a query per request for the user (slower; for diagnosing).",
    )
    user_cache: bool = Field(
        default=True,
        description="Keep signed-in users' rows in memory while no users row changes, so an "
        "authenticated request needs no query for its user. SQLite: the users_version "
        "triggers say when (also needs SQLITE_FAST_PATHS); PostgreSQL: each process LISTENs "
        "for the notifications of a trigger, and loads every user while it is not listening.",
    )
    # Account lifecycle: forgot/reset password, email verification and the mail they send.
    auth_forgot_password_rate_limit: RateLimitText = Field(
        default="5/hour", description="Per client IP: `POST /auth/forgot-password` requests."
    )
    auth_request_verify_rate_limit: RateLimitText = Field(
        default="5/hour", description="Per client IP: `POST /auth/request-verify` requests."
    )
    auth_mail_account_rate_limit: RateLimitText = Field(
        default="3/hour",
        description="Per email address: reset and verification mails asked for it, counted "
        "together whether or not the account exists.",
    )
    auth_redeem_token_rate_limit: RateLimitText = Field(
        default="10/minute",
        description="Per client IP: `POST /auth/reset-password` and `POST /auth/verify` together.",
    )
    allow_unverified_login: bool = Field(
        default=True,
        description="Let accounts with an unverified email log in; when false, they get 403 "
        "(only after a correct password).",
    )
    password_reset_token_minutes: int = Field(
        default=30, ge=1, le=24 * 60, description="Lifetime of password-reset links."
    )
    verify_token_hours: int = Field(
        default=24, ge=1, le=30 * 24, description="Lifetime of email-verification links."
    )
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Base of the links in mails: `{PUBLIC_URL}/reset-password?token=…` and "
        "`{PUBLIC_URL}/verify-email?token=…`, the built-in pages or your front end's. Unset in "
        "development, `starterkit serve` makes it the address it listens on.",
    )
    pages_enabled: bool = Field(
        default=True,
        description="Serve the built-in `/reset-password` and `/verify-email` pages that mailed "
        "links open; false when a front end of yours serves those paths.",
    )
    email_from: str = Field(
        default="starterkit <noreply@localhost>",
        description="The From address of every mail, e.g. `Example <noreply@example.com>`.",
    )
    smtp_host: str = Field(
        default="localhost", min_length=1, description="SMTP server (EMAIL_BACKEND `smtp`)."
    )
    smtp_port: int = Field(
        default=587,
        ge=1,
        le=65535,
        description="SMTP port: usually 587 for `starttls`, 465 for `tls`, 25 for `none`.",
    )
    smtp_tls: Literal["starttls", "tls", "none"] = Field(
        default="starttls",
        description="`starttls` (upgrade after connecting), `tls` (TLS from the start) or "
        "`none` (plain text: only for a relay on the same host or network).",
    )
    smtp_username: str = Field(default="", description="SMTP login; empty to send without.")
    smtp_password: SecretStr | None = Field(
        default=None, description="SMTP password; needed when SMTP_USERNAME is set."
    )
    smtp_timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, description="Give up on an unresponsive SMTP server after this."
    )
    email_backend: Literal["console", "smtp", "callable", "none"] | None = Field(
        default=None,
        description="How mail is sent: `console` (printed to the log), `smtp`, `callable` "
        "(your `kit.mailer.backend`) or `none`. Unset: `console`, and `none` in production, "
        "which refuses `console`.",
    )

    @field_validator("docs_enabled", mode="before")
    @classmethod
    def _docs_enabled(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return info.data.get("environment") != "production"
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str, info: ValidationInfo) -> str:
        url = normalize_database_url(value)
        if info.data.get("environment") == "production" and database_kind(url).is_sqlite:
            raise ValueError("is SQLite, which production refuses; use PostgreSQL")
        return url

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        value = value.strip()
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://, or be empty")
        return value

    @field_validator("secret_key", "refresh_token_secret")
    @classmethod
    def _secret(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        production = info.data.get("environment") == "production"
        if value is None or not value.get_secret_value():
            if production:
                raise ValueError(
                    "is missing, which production refuses; generate one with `starterkit genkey`"
                )
            return None
        secret = value.get_secret_value()
        if len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"is too short ({len(secret)} characters); use at least {MIN_SECRET_LENGTH} "
                "random characters from `starterkit genkey`"
            )
        if production and any(p in secret.lower() for p in _PLACEHOLDER_SECRETS):
            raise ValueError("is a placeholder value, which production refuses")
        if production and _predictable(secret):
            raise ValueError(
                "is not random enough (blank, few distinct characters or a repeated pattern), "
                "which production refuses; generate one with `starterkit genkey`"
            )
        if info.field_name == "refresh_token_secret":
            other = info.data.get("secret_key")
            if isinstance(other, SecretStr) and other.get_secret_value() == secret:
                raise ValueError("must differ from SECRET_KEY")
        return value

    @field_validator(
        "cors_origins",
        "trusted_proxies",
        "migration_locations",
        "model_modules",
        "encryption_keys",
        "oauth_redirect_urls",
        mode="before",
    )
    @classmethod
    def _json_or_comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                import json  # noqa: PLC0415

                try:
                    return json.loads(text)
                except json.JSONDecodeError:
                    raise ValueError('must be a JSON list such as ["a", "b"]') from None
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _cors_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise ValueError(f"{origin!r} is not an origin such as https://app.example")
        return [origin.rstrip("/") for origin in value]

    @field_validator("encryption_keys")
    @classmethod
    def _encryption_keys(cls, value: list[SecretStr]) -> list[SecretStr]:
        for position, key in enumerate(value, start=1):
            if not _is_fernet_key(key.get_secret_value()):
                raise ValueError(
                    "must hold keys from `starterkit genkey --encryption-key` (32 bytes in "
                    f"URL-safe base64); entry {position} is not one"
                )
        return value

    @field_validator("oauth_providers", mode="before")
    @classmethod
    def _oauth_providers(cls, value: Any) -> Any:
        return parse_providers(value)

    @field_validator("oauth_redirect_urls")
    @classmethod
    def _oauth_redirect_urls(cls, value: list[str], info: ValidationInfo) -> list[str]:
        for url in value:
            if not url.startswith(("http://", "https://")) or "#" in url:
                raise ValueError(f"{url!r} is not a URL such as https://app.example/login/done")
        if info.data.get("oauth_providers") and not value:
            raise ValueError(
                "needs at least one URL while OAUTH_PROVIDERS is set: the pages a social "
                "login may send the browser back to"
            )
        return value

    @field_validator("oauth_callback_base_url")
    @classmethod
    def _oauth_callback_base_url(cls, value: str) -> str:
        value = value.strip()
        if value and (
            not value.startswith(("http://", "https://")) or "?" in value or "#" in value
        ):
            raise ValueError("must be a base URL such as https://api.example.com, without ? or #")
        return value.rstrip("/")

    @field_validator("cors_allow_credentials")
    @classmethod
    def _cors_credentials(cls, value: bool, info: ValidationInfo) -> bool:
        if value and "*" in info.data.get("cors_origins", []):
            raise ValueError(
                "cannot be true while CORS_ORIGINS contains '*': any site could then make "
                "credentialed requests; list the origins instead"
            )
        return value

    @field_validator("cookie_domain")
    @classmethod
    def _cookie_domain(cls, value: str) -> str:
        value = value.strip().lower().removeprefix(".")
        if value and not _COOKIE_DOMAIN.fullmatch(value):
            raise ValueError("must be a host name such as example.com, without scheme or port")
        return value

    @field_validator("cookie_secure", mode="before")
    @classmethod
    def _cookie_secure_blank(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("cookie_secure")
    @classmethod
    def _cookie_secure(cls, value: bool | None, info: ValidationInfo) -> bool | None:
        if value is False and info.data.get("environment") == "production":
            raise ValueError(
                "cannot be false in production: the session cookies would travel in clear text"
            )
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _trusted_proxies(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or CIDR range") from None
        return value

    @field_validator("api_prefix")
    @classmethod
    def _api_prefix(cls, value: str) -> str:
        value = value.strip()
        if value in ("", "/"):
            return ""
        if not value.startswith("/") or value.endswith("/") or "//" in value:
            raise ValueError("must look like /api/v1: a leading slash and no trailing slash")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        value = value.strip()
        if not value.startswith(("http://", "https://")) or "?" in value or "#" in value:
            raise ValueError("must be a base URL such as https://app.example, without ? or #")
        return value.rstrip("/")

    @field_validator("email_from")
    @classmethod
    def _email_from(cls, value: str) -> str:
        from email.utils import parseaddr  # noqa: PLC0415

        value = value.strip()
        if "\r" in value or "\n" in value or "@" not in parseaddr(value)[1]:
            raise ValueError("must be an address such as noreply@example.com or Name <a@b.c>")
        return value

    @field_validator("smtp_password")
    @classmethod
    def _smtp_password(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if info.data.get("smtp_username") and not (value and value.get_secret_value()):
            raise ValueError("is missing while SMTP_USERNAME is set")
        return value

    @field_validator("email_backend")
    @classmethod
    def _email_backend(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value == "console" and info.data.get("environment") == "production":
            raise ValueError(
                "is console, which production refuses because it writes password-reset links "
                "into the log; use smtp or callable"
            )
        return value

    @property
    def is_production(self) -> bool:
        """True when running with ``ENVIRONMENT=production``."""
        return self.environment == "production"

    @property
    def database_kind(self) -> DatabaseKind:
        """What DATABASE_URL points at: a SQLite file, in-memory SQLite or PostgreSQL."""
        return database_kind(self.database_url)

    @classmethod
    def rate_limit_fields(cls) -> tuple[str, ...]:
        """The names of every rate-limit setting (those typed :data:`RateLimitText`)."""
        return tuple(
            name
            for name, field in cls.model_fields.items()
            if any(getattr(check, "func", None) is _rate_limit for check in field.metadata)
        )


_DNS_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_COOKIE_DOMAIN = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")


def _predictable(secret: str) -> bool:
    """Whitespace only, fewer than 8 distinct characters, or one shorter string repeated."""
    if not secret.strip() or len(set(secret)) < MIN_SECRET_DISTINCT_CHARACTERS:
        return True
    # A string is a repetition exactly when it occurs inside itself doubled, off the ends.
    return (secret + secret).find(secret, 1) < len(secret)


def _is_fernet_key(text: str) -> bool:
    """Whether ``text`` is a Fernet key: 32 bytes in URL-safe base64 (44 characters)."""
    import base64  # noqa: PLC0415
    import binascii  # noqa: PLC0415

    try:
        return len(text) == 44 and len(base64.urlsafe_b64decode(text.encode("ascii"))) == 32
    except (ValueError, binascii.Error):
        return False


def settings_problems(error: Exception) -> list[str]:
    """Turn a settings ``ValidationError`` into one sentence per problem.

    Each sentence starts with the environment variable to fix, e.g.
    ``STARTERKIT_SECRET_KEY is too short (8 characters); …``.
    """
    from pydantic import ValidationError  # noqa: PLC0415

    if not isinstance(error, ValidationError):
        return [str(error)]
    problems = []
    for item in error.errors(include_url=False):
        field = ".".join(str(part) for part in item["loc"][:1]) or "settings"
        message = item["msg"].removeprefix("Value error, ")
        if not message.startswith(("is ", "must ", "uses ", "needs ", "cannot ", "has ", "names ")):
            message = f"is invalid: {message[0].lower()}{message[1:]}"
        problems.append(f"{_variable_of(field)} {message}.")
    return problems


def _variable_of(field: str) -> str:
    """The variable a field's value came from: its own, or the platform's used instead."""
    from pathlib import Path  # noqa: PLC0415

    from starterkit.envfile import read_env_file  # noqa: PLC0415

    own = env_name(field)
    platform = PLATFORM_NAMES.get(field)
    if platform is None or platform not in os.environ:
        return own
    # pydantic-settings matches starterkit's names case-insensitively, in both places.
    given = {name.upper() for name in (*os.environ, *read_env_file(Path(".env")))}
    return own if own in given else platform
