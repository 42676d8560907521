"""STARTERKIT_* variables that no setting reads are found, with the setting they resemble."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from starterkit.cli.checks import (
    UnknownVariable,
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
