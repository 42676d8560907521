from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from starterkit.database_url import DatabaseKind, normalize_database_url
from starterkit.settings import Settings, settings_problems
from starterkit.testing import throwaway_settings

STRONG = "s" * 20 + "0123456789abcdefghijklmnop"
OTHER = "r" * 20 + "0123456789abcdefghijklmnop"


def problems(**values: Any) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, **values)
    return settings_problems(caught.value)


def test_defaults_give_an_embedded_development_setup() -> None:
    settings = Settings(_env_file=None)
    assert settings.environment == "development"
    assert settings.database_url == "sqlite+aiosqlite:///./starterkit.db"
    assert settings.redis_url == ""
    assert settings.api_prefix == "/api/v1"
    assert settings.access_token_expire_minutes == 15
    assert settings.password_min_length == 12
    assert settings.database_kind.is_sqlite


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///./app.db", "sqlite+aiosqlite:///./app.db"),
        ("sqlite+aiosqlite:////tmp/x.db", "sqlite+aiosqlite:////tmp/x.db"),
        ("postgresql://u:p@db:5432/app", "postgresql+asyncpg://u:p@db:5432/app"),
        ("postgres://u@db/app", "postgresql+asyncpg://u@db/app"),
        ("postgresql+psycopg2://u@db/app", "postgresql+asyncpg://u@db/app"),
        ("postgresql+asyncpg://u@db/app", "postgresql+asyncpg://u@db/app"),
    ],
)
def test_database_url_is_mapped_to_the_async_driver(given: str, expected: str) -> None:
    assert normalize_database_url(given) == expected
    assert Settings(_env_file=None, database_url=given).database_url == expected


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("sqlite:///./app.db", DatabaseKind.SQLITE_FILE),
        ("sqlite+aiosqlite:////srv/app.db", DatabaseKind.SQLITE_FILE),
        ("sqlite://", DatabaseKind.SQLITE_MEMORY),
        ("sqlite:///:memory:", DatabaseKind.SQLITE_MEMORY),
        ("postgresql://u@db/app", DatabaseKind.POSTGRESQL),
    ],
)
def test_one_helper_tells_the_database_kinds_apart(url: str, kind: DatabaseKind) -> None:
    assert Settings(_env_file=None, database_url=url).database_kind is kind
    assert kind.is_sqlite is (kind is not DatabaseKind.POSTGRESQL)


def test_the_rate_limit_settings_are_listed_once_from_their_type() -> None:
    fields = Settings.rate_limit_fields()
    assert set(fields) == {name for name in Settings.model_fields if name.endswith("_rate_limit")}
    assert "auth_login_rate_limit" in fields
    # Each one is checked as a rate limit, and throwaway test settings raise every one.
    for name in fields:
        assert any(f"STARTERKIT_{name.upper()} " in p for p in problems(**{name: "lots"}))
    relaxed = throwaway_settings()
    assert all(getattr(relaxed, name) == "1000000/minute" for name in fields)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("mysql://u@db/app", "uses 'mysql'"),
        ("just-a-path.db", "must be a URL"),
        ("postgresql:///app", "needs a host"),
    ],
)
def test_unsupported_database_url_is_one_sentence_naming_the_setting(
    url: str, fragment: str
) -> None:
    [message] = problems(database_url=url)
    assert message.startswith("STARTERKIT_DATABASE_URL ")
    assert fragment in message
    assert "\n" not in message


def test_production_refuses_sqlite_and_missing_secrets_each_in_its_own_sentence() -> None:
    messages = problems(environment="production")
    assert len(messages) == 3
    assert messages[0].startswith("STARTERKIT_DATABASE_URL is SQLite")
    assert messages[1].startswith("STARTERKIT_SECRET_KEY is missing")
    assert messages[2].startswith("STARTERKIT_REFRESH_TOKEN_SECRET is missing")


def test_production_accepts_postgres_with_strong_distinct_secrets() -> None:
    settings = Settings(
        _env_file=None,
        environment="production",
        database_url="postgresql://app@db/app",
        secret_key=STRONG,
        refresh_token_secret=OTHER,
    )
    assert settings.is_production


def test_production_refuses_placeholder_and_identical_secrets() -> None:
    base = {"environment": "production", "database_url": "postgresql://app@db/app"}
    [placeholder] = problems(
        **base, secret_key="changethis-changethis-changethis-1234", refresh_token_secret=OTHER
    )
    assert placeholder.startswith("STARTERKIT_SECRET_KEY is a placeholder")
    [same] = problems(**base, secret_key=STRONG, refresh_token_secret=STRONG)
    assert same == "STARTERKIT_REFRESH_TOKEN_SECRET must differ from SECRET_KEY."


@pytest.mark.parametrize(
    "weak",
    [
        "a" * 32,
        " " * 35,
        "password" * 4,
        "0123456789abcdef" * 2,  # 16 distinct characters, but one pattern twice
        "\t\n" * 20,
    ],
)
def test_production_refuses_secrets_that_are_not_random(weak: str) -> None:
    base = {"environment": "production", "database_url": "postgresql://app@db/app"}
    [message] = problems(**base, secret_key=weak, refresh_token_secret=OTHER)
    assert message.startswith("STARTERKIT_SECRET_KEY is not random enough")
    assert "starterkit genkey" in message
    [message] = problems(**base, secret_key=STRONG, refresh_token_secret=weak)
    assert message.startswith("STARTERKIT_REFRESH_TOKEN_SECRET is not random enough")


def test_production_accepts_generated_secrets_of_any_common_form() -> None:
    for _ in range(50):
        for secret in (secrets.token_urlsafe(48), secrets.token_hex(16), secrets.token_hex(32)):
            Settings(
                _env_file=None,
                environment="production",
                database_url="postgresql://app@db/app",
                secret_key=secret,
                refresh_token_secret=secrets.token_urlsafe(48),
            )


def test_short_secret_is_refused_in_every_environment() -> None:
    [message] = problems(secret_key="too-short")
    assert message.startswith("STARTERKIT_SECRET_KEY is too short (9 characters)")


def test_secrets_never_appear_in_repr() -> None:
    settings = Settings(_env_file=None, secret_key=STRONG, refresh_token_secret=OTHER)
    assert STRONG not in repr(settings)
    assert OTHER not in str(settings.model_dump())


def test_wildcard_cors_with_credentials_is_refused() -> None:
    [message] = problems(cors_origins=["*"], cors_allow_credentials=True)
    assert message.startswith("STARTERKIT_CORS_ALLOW_CREDENTIALS cannot be true")


def test_cors_origins_and_proxies_read_from_json_or_commas(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STARTERKIT_CORS_ORIGINS", '["https://app.example/"]')
    monkeypatch.setenv("STARTERKIT_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.1")
    settings = Settings(_env_file=None)
    assert settings.cors_origins == ["https://app.example"]
    assert settings.trusted_proxies == ["10.0.0.0/8", "192.0.2.1"]


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("trusted_proxies", ["not-an-ip"], "'not-an-ip' is not an IP address"),
        ("cors_origins", ["app.example"], "is not an origin"),
        ("auth_login_rate_limit", "lots", "is not a rate limit"),
        ("api_prefix", "api/", "must look like /api/v1"),
        ("redis_url", "http://cache", "must start with redis://"),
        ("environment", "staging", "is invalid"),
        ("access_token_expire_minutes", 0, "is invalid"),
    ],
)
def test_invalid_values_name_the_setting(field: str, value: Any, fragment: str) -> None:
    [message] = problems(**{field: value})
    assert message.startswith(f"STARTERKIT_{field.upper()} ")
    assert fragment in message


def test_env_file_and_environment_are_read_and_keywords_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / "custom.env"
    env_file.write_text(
        "STARTERKIT_API_PREFIX=/from-file\nSTARTERKIT_CACHE_TTL_SECONDS=7\nUNRELATED=1\n"
    )
    monkeypatch.setenv("STARTERKIT_CACHE_TTL_SECONDS", "9")
    settings = Settings(_env_file=env_file)
    assert settings.api_prefix == "/from-file"
    assert settings.cache_ttl_seconds == 9  # the process environment beats the file
    assert Settings(_env_file=env_file, api_prefix="/kw").api_prefix == "/kw"


def test_dot_env_in_the_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("STARTERKIT_JWT_ISSUER=from-dot-env\n")
    assert Settings().jwt_issuer == "from-dot-env"


def test_a_platforms_plain_names_are_read_when_starterkits_are_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://app:pw@db.internal:5432/app")
    monkeypatch.setenv("REDIS_URL", "redis://cache.internal:6379/0")
    settings = Settings()
    assert settings.database_url == "postgresql+asyncpg://app:pw@db.internal:5432/app"
    assert settings.redis_url == "redis://cache.internal:6379/0"
    # starterkit's own names win, from the environment or .env; keywords win over all.
    (tmp_path / ".env").write_text("STARTERKIT_REDIS_URL=redis://mine:6379/1\n")
    monkeypatch.setenv("STARTERKIT_DATABASE_URL", "sqlite:///own.db")
    settings = Settings()
    assert settings.database_url == "sqlite+aiosqlite:///own.db"
    assert settings.redis_url == "redis://mine:6379/1"
    assert Settings(database_url="sqlite://").database_url == "sqlite+aiosqlite://"


def test_a_bad_platform_value_is_reported_under_the_name_it_came_from(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_URL", "http://cache.internal")
    [message] = problems()
    assert message.startswith("REDIS_URL must start with redis://")
    monkeypatch.setenv("STARTERKIT_REDIS_URL", "http://own")
    [message] = problems()
    assert message.startswith("STARTERKIT_REDIS_URL must start with redis://")


def test_empty_api_prefix_is_allowed() -> None:
    assert Settings(_env_file=None, api_prefix="/").api_prefix == ""
