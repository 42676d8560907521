"""STARTERKIT_* variables that no setting reads are found, with the setting they resemble."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from starterkit.cli.checks import (
    UnknownVariable,
    check_browser_sessions,
    check_exposure,
    describe_unknown,
    unknown_variables,
)
from starterkit.encryption import new_encryption_key
from starterkit.settings import Settings


def test_a_typo_is_found_with_the_setting_it_resembles(tmp_path: Path) -> None:
    environ = {
        "STARTERKIT_DATABSE_URL": "postgresql://db/app",
        "STARTERKIT_DATABASE_URL": "sqlite:///x.db",
        "starterkit_redis_url": "",  # names are matched case-insensitively, like Settings does
        "Starterkit_Cache_TTL": "5",  # and reported as written
        "PATH": "/usr/bin",
    }
    assert unknown_variables(environ, tmp_path / ".env") == [
        UnknownVariable("STARTERKIT_DATABSE_URL", "STARTERKIT_DATABASE_URL"),
        UnknownVariable("Starterkit_Cache_TTL", "STARTERKIT_CACHE_TTL_SECONDS"),
    ]


def test_the_env_file_is_checked_too(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("STARTERKIT_SECRET_KEY=x\nexport STARTERKIT_REFRESH_SECRET=y\nOTHER=1\n")
    assert unknown_variables({}, env_file) == [
        UnknownVariable("STARTERKIT_REFRESH_SECRET", "STARTERKIT_REFRESH_TOKEN_SECRET")
    ]


def test_a_name_like_no_setting_gets_no_suggestion(tmp_path: Path) -> None:
    found = unknown_variables({"STARTERKIT_XYZZY": "1"}, tmp_path / ".env")
    assert found == [UnknownVariable("STARTERKIT_XYZZY", None)]
    assert describe_unknown(found) == "STARTERKIT_XYZZY is not a setting and is ignored"


def test_variables_of_the_test_suite_and_fuzz_run_are_not_reported(tmp_path: Path) -> None:
    environ = {
        "STARTERKIT_TEST_DATABASE_URL": "postgresql://postgres@127.0.0.1/test",
        "STARTERKIT_FUZZ_BASE_URL": "http://127.0.0.1:8000",
    }
    assert unknown_variables(environ, tmp_path / ".env") == []


def test_several_are_described_in_one_sentence() -> None:
    found = [
        UnknownVariable("STARTERKIT_DATABSE_URL", "STARTERKIT_DATABASE_URL"),
        UnknownVariable("STARTERKIT_XYZZY", None),
    ]
    assert describe_unknown(found) == (
        "STARTERKIT_DATABSE_URL (did you mean STARTERKIT_DATABASE_URL?), STARTERKIT_XYZZY "
        "are not settings and are ignored"
    )


def test_check_reports_what_the_service_exposes() -> None:
    production = Settings(
        _env_file=None,
        environment="production",
        database_url="postgresql://app@db/app",
        secret_key="s" * 20 + "0123456789abcdefghijkl",
        refresh_token_secret="r" * 20 + "0123456789abcdefghijkl",
    )
    rows = {row.name: row for row in check_exposure(production)}
    assert (rows["docs"].status, rows["docs"].detail) == ("ok", "off")
    assert rows["metrics"].detail == "/metrics answers 404 (no METRICS_TOKEN)"
    assert rows["hsts"].status == "warn"
    assert rows["encryption"].status == "warn"
    assert "derived from SECRET_KEY" in rows["encryption"].detail
    with_keys = production.model_copy(
        update={
            "encryption_keys": [SecretStr(new_encryption_key()), SecretStr(new_encryption_key())]
        }
    )
    encryption = {row.name: row for row in check_exposure(with_keys)}["encryption"]
    assert (encryption.status, encryption.detail) == ("ok", "ENCRYPTION_KEYS: 2 keys")
    exposed = production.model_copy(update={"docs_enabled": True, "hsts_seconds": 600})
    rows = {row.name: row for row in check_exposure(exposed)}
    assert rows["docs"].status == "warn"
    assert (rows["hsts"].status, rows["hsts"].detail) == (
        "ok",
        "Strict-Transport-Security max-age=600",
    )
    development = {row.name: row for row in check_exposure(Settings(_env_file=None))}
    assert all(row.status == "ok" for row in development.values())
    assert development["docs"].detail == "/docs, /redoc and /openapi.json are public"


def cookie_row(**values: Any) -> tuple[str, str]:
    row = check_browser_sessions(Settings(_env_file=None, **values))
    assert row.name == "cookies"
    return row.status, row.detail


def test_check_says_when_browser_sessions_from_the_front_end_cannot_work() -> None:
    assert cookie_row() == (
        "ok",
        "browser sessions from this origin only (set CORS_ORIGINS and CORS_ALLOW_CREDENTIALS "
        "for a front end on another origin)",
    )
    status, detail = cookie_row(cors_allow_credentials=True)
    assert status == "warn"
    assert detail.startswith("CORS_ALLOW_CREDENTIALS is true but CORS_ORIGINS is empty")
    same_site = {
        "public_url": "https://api.example.com",
        "cors_origins": ["https://app.example.com"],
        "cors_allow_credentials": True,
    }
    assert cookie_row(**same_site) == (
        "ok",
        "browser sessions from this origin and https://app.example.com",
    )
    status, detail = cookie_row(**{**same_site, "cors_origins": ["https://app.other.net"]})
    assert status == "warn"
    assert "https://app.other.net is another site than PUBLIC_URL" in detail
    status, detail = cookie_row(**{**same_site, "cors_origins": ["http://app.example.com"]})
    assert status == "warn"  # http and https pages are different sites to a browser
    status, detail = cookie_row(**same_site, cookie_domain="example.org")
    assert (status, detail.split(":")[0]) == (
        "warn",
        "COOKIE_DOMAIN=example.org does not contain PUBLIC_URL's host api.example.com",
    )
    assert cookie_row(**same_site, cookie_domain="example.com")[0] == "ok"
    status, detail = cookie_row(public_url="http://api.example.com")
    assert status == "warn"
    assert "browsers keep the Secure session cookies only over https" in detail
    assert cookie_row(public_url="http://127.0.0.1:8000")[0] == "ok"


def test_cookie_settings_are_validated() -> None:
    assert Settings(_env_file=None, cookie_domain=" .Example.COM ").cookie_domain == "example.com"
    assert Settings(_env_file=None, cookie_secure="").cookie_secure is None
    for bad in ("https://example.com", "example.com:443", "exa mple.com", "example.com/"):
        with pytest.raises(ValidationError, match="must be a host name"):
            Settings(_env_file=None, cookie_domain=bad)
    with pytest.raises(ValidationError, match="cannot be false in production"):
        Settings(
            _env_file=None,
            environment="production",
            database_url="postgresql://app@db/app",
            secret_key="s" * 20 + "0123456789abcdefghijkl",
            refresh_token_secret="r" * 20 + "0123456789abcdefghijkl",
            cookie_secure=False,
        )
