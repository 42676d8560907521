"""``starterkit keys``, the first key made by ``migrate``, and production without keys."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from starterkit import Settings
from starterkit.cli import app
from starterkit.db import migrate
from starterkit.runtime import Runtime
from starterkit.signing.service import generate_key
from tests.cli.test_cli import assert_one_line_error

runner = CliRunner()


@pytest.fixture
def keyed_env(monkeypatch: pytest.MonkeyPatch, database_url: str) -> str:
    monkeypatch.setenv("STARTERKIT_DATABASE_URL", database_url)
    monkeypatch.setenv("STARTERKIT_SECRET_KEY", secrets.token_urlsafe(40))
    monkeypatch.setenv("STARTERKIT_REFRESH_TOKEN_SECRET", secrets.token_urlsafe(40))
    return database_url


def kids_by_state(output: str) -> dict[str, list[str]]:
    states: dict[str, list[str]] = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip("│┃ ").split("│")]
        if len(cells) >= 3 and cells[1] in {"EdDSA", "ES256", "RS256"}:
            states.setdefault(cells[2], []).append(cells[0])
    return states


@pytest.mark.usefixtures("keyed_env")
def test_migrate_makes_the_first_key_and_the_commands_rotate_and_retire() -> None:
    migrated = runner.invoke(app, ["migrate"])
    assert migrated.exit_code == 0, migrated.output
    assert "Made signing key " in migrated.output
    again = runner.invoke(app, ["migrate"])
    assert "Made signing key" not in again.output  # one first key, not one per run
    [first] = kids_by_state(runner.invoke(app, ["keys", "list"]).output)["active"]

    generated = runner.invoke(app, ["keys", "generate"])
    assert generated.exit_code == 0, generated.output
    assert "signs after `starterkit keys rotate`" in generated.output
    states = kids_by_state(runner.invoke(app, ["keys", "list"]).output)
    assert states["active"] == [first]
    [waiting] = states["next"]

    # A kid is base64url and may begin with "-": after "--" it is never read as an option.
    refused = runner.invoke(app, ["keys", "retire", "--", first])
    assert refused.exit_code == 1
    assert_one_line_error(refused.output, f"{first} is the active signing key")

    rotated = runner.invoke(app, ["keys", "rotate"])
    assert rotated.exit_code == 0, rotated.output
    assert f"Signing key {waiting} is active" in rotated.output
    states = kids_by_state(runner.invoke(app, ["keys", "list"]).output)
    assert (states["active"], states["previous"]) == ([waiting], [first])

    retired = runner.invoke(app, ["keys", "retire", "--", first])
    assert retired.exit_code == 0, retired.output
    assert "stays published and valid for 15 more minutes" in retired.output
    assert kids_by_state(runner.invoke(app, ["keys", "list"]).output)["retired"] == [first]
    unknown = runner.invoke(app, ["keys", "retire", "no-such-kid"])
    assert_one_line_error(unknown.output, "There is no signing key no-such-kid")

    check = runner.invoke(app, ["check"])
    assert check.exit_code == 0, check.output
    [row] = [line for line in check.output.splitlines() if line.startswith("│ keys ")]
    assert "│ ok " in row
    assert "EdDSA key" in row


def test_keys_commands_say_when_hs256_is_in_use(
    keyed_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STARTERKIT_JWT_ALGORITHM", "HS256")
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    result = runner.invoke(app, ["keys", "rotate"])
    assert result.exit_code == 1
    assert_one_line_error(result.output, "JWT_ALGORITHM is HS256")


@pytest.mark.postgres
def test_production_without_keys_refuses_to_serve_and_check_fails(
    monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("production needs PostgreSQL")
    settings = Settings(
        _env_file=None,
        environment="production",
        database_url=database_url,
        secret_key=secrets.token_urlsafe(40),
        refresh_token_secret=secrets.token_urlsafe(40),
    )
    migrate.upgrade(settings)  # the Python API migrates only: no key is made
    for name, value in {
        "ENVIRONMENT": "production",
        "DATABASE_URL": database_url,
        "SECRET_KEY": settings.secret_key.get_secret_value(),  # type: ignore[union-attr]
        "REFRESH_TOKEN_SECRET": settings.refresh_token_secret.get_secret_value(),  # type: ignore[union-attr]
    }.items():
        monkeypatch.setenv(f"STARTERKIT_{name}", value)
    served = runner.invoke(app, ["serve"])
    assert served.exit_code == 1
    assert_one_line_error(served.output, "run `starterkit keys generate --activate`")
    check = runner.invoke(app, ["check"])
    assert check.exit_code == 1
    assert "no signing key yet; run `starterkit keys generate --activate`" in check.output
    # The command the sentence names fixes it.
    assert runner.invoke(app, ["keys", "generate", "--activate"]).exit_code == 0
    assert "no signing key" not in runner.invoke(app, ["check"]).output


def test_check_warns_about_an_old_active_key(keyed_env: str) -> None:
    settings = Settings(_env_file=None)
    migrate.upgrade(settings)

    async def make_old_key() -> None:
        kit = Runtime(settings)
        try:
            async with kit.sessionmaker() as session:
                await generate_key(
                    session,
                    algorithm="EdDSA",
                    box=kit.mfa_keys.box,
                    now=datetime.now(UTC) - timedelta(days=120),
                    activate=True,
                )
                await session.commit()
        finally:
            await kit.aclose()

    asyncio.run(make_old_key())
    check = runner.invoke(app, ["check"])
    assert check.exit_code == 0, check.output
    flat = " ".join(check.output.replace("│", " ").split())
    assert "keys warn" in flat
    assert "(120 days old)" in flat
    assert "older than SIGNING_KEY_MAX_AGE_DAYS=90" in flat
