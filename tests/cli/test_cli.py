"""The CLI through Typer's runner: every command, and one-line errors without tracebacks."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from starterkit import Settings, StarterKit, User, __version__
from starterkit.cli import app
from starterkit.cli.serve import serve_warnings
from starterkit.envfile import read_env_file
from starterkit.users.service import get_user_by_email

runner = CliRunner()


@pytest.fixture
def db_env(monkeypatch: pytest.MonkeyPatch, database_url: str) -> str:
    monkeypatch.setenv("STARTERKIT_DATABASE_URL", database_url)
    return database_url


def assert_one_line_error(output: str, fragment: str) -> None:
    """Exactly one ``Error:`` line, last, naming the problem; no traceback."""
    lines = output.strip().splitlines()
    errors = [line for line in lines if line.startswith("Error: ")]
    assert errors == [lines[-1]], output
    assert fragment in lines[-1]
    assert "Traceback" not in output


async def stored_user(email: str) -> User:
    kit = StarterKit(Settings())
    try:
        async with kit.sessionmaker() as session:
            user = await get_user_by_email(session, email)
    finally:
        await kit.aclose()
    assert user is not None
    return user


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"starterkit {__version__}"


def test_no_arguments_shows_help() -> None:
    result = runner.invoke(app, [])
    assert "serve" in result.output
    assert "new-user" in result.output


def test_genkey_prints_two_distinct_strong_secrets() -> None:
    result = runner.invoke(app, ["genkey"])
    assert result.exit_code == 0
    lines = dict(line.split("=", 1) for line in result.output.strip().splitlines())
    assert set(lines) == {"STARTERKIT_SECRET_KEY", "STARTERKIT_REFRESH_TOKEN_SECRET"}
    key, refresh = lines.values()
    assert key != refresh
    assert min(len(key), len(refresh)) >= 64


def test_genkey_writes_a_private_env_file_and_keeps_existing_values(tmp_path: Path) -> None:
    env_file = tmp_path / "prod.env"
    assert runner.invoke(app, ["genkey", "--env-file", str(env_file)]).exit_code == 0
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    first = read_env_file(env_file)

    again = runner.invoke(app, ["genkey", "--env-file", str(env_file)])
    assert again.exit_code == 0
    assert "use --force" in again.output
    assert read_env_file(env_file) == first

    assert runner.invoke(app, ["genkey", "--env-file", str(env_file), "--force"]).exit_code == 0
    replaced = read_env_file(env_file)
    assert replaced.keys() == first.keys()
    assert set(replaced.values()).isdisjoint(first.values())


@pytest.mark.usefixtures("db_env")
def test_file_errors_name_the_file_not_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing_folder = tmp_path / "nowhere" / "x.env"
    genkey = runner.invoke(app, ["genkey", "--env-file", str(missing_folder)])
    assert genkey.exit_code == 1
    assert_one_line_error(
        genkey.output, f"cannot use the file {missing_folder}: No such file or directory"
    )
    # `serve` in development writes missing secrets into ./.env; here that name is a folder.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STARTERKIT_SECRET_KEY", raising=False)
    monkeypatch.delenv("STARTERKIT_REFRESH_TOKEN_SECRET", raising=False)
    monkeypatch.setenv("STARTERKIT_ENVIRONMENT", "development")
    (tmp_path / ".env").mkdir()
    serve = runner.invoke(app, ["serve"])
    assert serve.exit_code == 1
    assert_one_line_error(serve.output, f"cannot use the file {tmp_path / '.env'}: Is a directory")
    assert "database" not in serve.output


def test_migrate_then_inspect_and_downgrade() -> None:
    before = runner.invoke(app, ["check"])
    assert before.exit_code == 1
    assert "starterkit migrate" in before.output

    migrated = runner.invoke(app, ["migrate"])
    assert migrated.exit_code == 0, migrated.output
    assert "Database migrated to starterkit_0010." in migrated.output
    assert "already at the latest" in runner.invoke(app, ["migrate", "upgrade"]).output

    current = runner.invoke(app, ["migrate", "current"])
    assert current.output.strip() == "starterkit_0010 (head)"
    history = runner.invoke(app, ["migrate", "history"]).output
    assert "base -> starterkit_0001" in history
    assert "starterkit_0001 -> starterkit_0002" in history
    assert "starterkit_0002 -> starterkit_0003" in history
    assert "starterkit_0003 -> starterkit_0004" in history
    assert "starterkit_0004 -> starterkit_0005" in history
    assert "starterkit_0005 -> starterkit_0006" in history
    assert "starterkit_0006 -> starterkit_0007" in history
    assert "starterkit_0009 -> starterkit_0010" in history
    check = runner.invoke(app, ["migrate", "check"])
    assert check.exit_code == 0, check.output
    assert "Models and migrations match." in check.output

    healthy = runner.invoke(app, ["check"])
    assert healthy.exit_code == 0, healthy.output
    assert "fail" not in healthy.output

    down = runner.invoke(app, ["migrate", "downgrade", "base"])
    assert down.exit_code == 0
    assert "Database downgraded to base." in down.output
    assert runner.invoke(app, ["migrate", "current"]).output.startswith("base")


def test_migrate_check_refuses_an_unmigrated_database(db_env: str) -> None:
    result = runner.invoke(app, ["migrate", "check"])
    assert result.exit_code == 1
    # A SQLite file that is not there yet is named, and not created; an empty PostgreSQL
    # database is behind.
    expected = "no database at" if db_env.startswith("sqlite") else "not at the latest revision"
    assert_one_line_error(result.output, expected)


@pytest.mark.usefixtures("db_env")
def test_new_user_from_stdin_then_duplicate_then_if_not_exists() -> None:
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    created = runner.invoke(
        app,
        ["new-user", " Admin@Example.com", "--superuser", "--password-stdin"],
        input="a long admin passphrase\n",
    )
    assert created.exit_code == 0, created.output
    assert "Created superuser admin@example.com (id 1)." in created.output

    duplicate = runner.invoke(
        app, ["new-user", "admin@example.com", "--password-stdin"], input="another passphrase\n"
    )
    assert duplicate.exit_code == 1
    assert_one_line_error(duplicate.output, "already exists")

    tolerated = runner.invoke(
        app,
        ["new-user", "ADMIN@example.com", "--password-stdin", "--if-not-exists"],
        input="another passphrase\n",
    )
    assert tolerated.exit_code == 0
    assert "nothing changed" in tolerated.output


@pytest.mark.usefixtures("db_env")
@pytest.mark.parametrize(
    ("email", "password", "fragment"),
    [
        ("weak@example.com", "short\n", "at least 12 characters"),
        ("weak@example.com", "password1234\n", "too common"),
        ("weak@example.com", "\n", "no password on standard input"),
        ("not-an-email", "a long enough passphrase\n", "not valid"),
    ],
)
def test_new_user_rule_violations_are_one_line(email: str, password: str, fragment: str) -> None:
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    result = runner.invoke(app, ["new-user", email, "--password-stdin"], input=password)
    assert result.exit_code == 1
    assert_one_line_error(result.output, fragment)


@pytest.mark.usefixtures("db_env")
def test_new_user_needs_a_migrated_database_and_a_password_source() -> None:
    unmigrated = runner.invoke(
        app, ["new-user", "x@example.com", "--password-stdin"], input="a long enough phrase\n"
    )
    assert_one_line_error(unmigrated.output, "run `starterkit migrate`")
    no_terminal = runner.invoke(app, ["new-user", "x@example.com"])
    assert no_terminal.exit_code == 1
    assert_one_line_error(no_terminal.output, "use --password-stdin")


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("STARTERKIT_DATABASE_URL", "mysql://root@localhost/app", "STARTERKIT_DATABASE_URL uses"),
        (
            "STARTERKIT_DATABASE_URL",
            "postgresql://postgres@127.0.0.1:1/x",
            "cannot use the database",
        ),
        ("STARTERKIT_SECRET_KEY", "weak", "STARTERKIT_SECRET_KEY is too short"),
        ("STARTERKIT_ENVIRONMENT", "staging", "STARTERKIT_ENVIRONMENT is invalid"),
    ],
)
@pytest.mark.parametrize("command", [["migrate"], ["migrate", "current"], ["serve"]])
def test_bad_configuration_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, fragment: str, command: list[str]
) -> None:
    monkeypatch.setenv(variable, value)
    result = runner.invoke(app, command)
    assert result.exit_code == 1
    assert_one_line_error(result.output, fragment)


def test_production_refusals_are_one_line_each(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STARTERKIT_ENVIRONMENT", "production")
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert [line.split(" ")[1] for line in lines] == [
        "STARTERKIT_DATABASE_URL",
        "STARTERKIT_SECRET_KEY",
        "STARTERKIT_REFRESH_TOKEN_SECRET",
    ]
    assert all(line.startswith("Error: ") for line in lines)


def test_check_reports_unreachable_redis(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STARTERKIT_DATABASE_URL", f"sqlite:///{tmp_path / 'c.db'}")
    monkeypatch.setenv("STARTERKIT_REDIS_URL", "redis://127.0.0.1:1/0")
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 1
    assert "not reachable" in result.output


def test_check_passes_with_redis(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str
) -> None:
    monkeypatch.setenv("STARTERKIT_DATABASE_URL", f"sqlite:///{tmp_path / 'c.db'}")
    monkeypatch.setenv("STARTERKIT_REDIS_URL", redis_url)
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 0, result.output
    assert "reachable" in result.output


@pytest.mark.usefixtures("db_env")
def test_check_warns_about_unknown_variables_without_failing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    monkeypatch.setenv("STARTERKIT_REDIS_ULR", "redis://cache:6379/0")
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 0, result.output
    assert "warn" in result.output
    text = " ".join(result.output.split())  # the table wraps long details
    assert "STARTERKIT_REDIS_ULR (did you mean STARTERKIT_REDIS_URL?)" in text


def test_serve_warns_about_unknown_variables_first(monkeypatch: pytest.MonkeyPatch) -> None:
    # Production refuses to start here, after the warning that explains why.
    monkeypatch.setenv("STARTERKIT_ENVIRONMENT", "production")
    monkeypatch.setenv("STARTERKIT_SECRT_KEY", "x" * 40)
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == (
        "Warning: STARTERKIT_SECRT_KEY (did you mean STARTERKIT_SECRET_KEY?) is not a setting "
        "and is ignored."
    )


def test_check_reports_invalid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STARTERKIT_DATABASE_URL", "oracle://x")
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 1
    assert "STARTERKIT_DATABASE_URL" in result.output
    assert "Traceback" not in result.output


@pytest.mark.usefixtures("db_env")
def test_account_administration_commands() -> None:
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    created = runner.invoke(
        app, ["new-user", "ops@example.com", "--password-stdin", "--verified"],
        input="a long enough passphrase\n",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    assert asyncio.run(stored_user("ops@example.com")).is_verified

    changed = runner.invoke(
        app, ["set-password", "OPS@example.com", "--password-stdin"], input="another passphrase\n"
    )
    assert changed.exit_code == 0, changed.output
    assert "all its sessions ended" in changed.output
    weak = runner.invoke(app, ["set-password", "ops@example.com", "--password-stdin"], input="x\n")
    assert_one_line_error(weak.output, "at least 12 characters")

    assert (
        "Deactivated ops@example.com."
        in runner.invoke(app, ["deactivate", "ops@example.com"]).output
    )
    assert "already inactive" in runner.invoke(app, ["deactivate", "ops@example.com"]).output

    shown = runner.invoke(app, ["events", "ops@example.com"])
    assert shown.exit_code == 0, shown.output
    assert shown.output.index("user_deactivated") < shown.output.index("password_changed")
    assert "starterkit-cli" in shown.output

    for command in (["deactivate", "ghost@example.com"], ["events", "ghost@example.com"]):
        missing = runner.invoke(app, command)
        assert missing.exit_code == 1
        assert_one_line_error(missing.output, "no user with email ghost@example.com")


def test_serve_warns_about_development_mode_others_can_reach() -> None:
    # Checked without binding anything: tests listen on loopback only.
    development = Settings(_env_file=None)
    [warning] = serve_warnings(development, host="0.0.0.0", workers=1)  # noqa: S104
    assert warning.startswith("development mode on 0.0.0.0: others can reach this server")
    assert serve_warnings(development, host="127.0.0.1", workers=1) == []
    production = development.model_copy(update={"environment": "production"})
    assert serve_warnings(production, host="0.0.0.0", workers=1) == []  # noqa: S104


def test_commands_run_in_the_wrong_folder_create_no_database(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Seen: `check` (and the account commands) quietly created an empty starterkit.db and
    # reported it "at base".
    absent = tmp_path / "elsewhere" / "app.db"
    absent.parent.mkdir()
    monkeypatch.setenv("STARTERKIT_DATABASE_URL", f"sqlite:///{absent}")
    checked = runner.invoke(app, ["check"])
    assert checked.exit_code == 1
    assert "no database at" in checked.output
    for command in (["new-user", "x@example.com", "--password-stdin"], ["events", "x@example.com"]):
        result = runner.invoke(app, command, input="a long enough passphrase\n")
        assert_one_line_error(result.output, f"no database at {absent}")
    current = runner.invoke(app, ["migrate", "current"])
    assert current.exit_code == 0
    assert current.stdout.strip() == "base"
    assert not absent.exists()
    assert runner.invoke(app, ["migrate"]).exit_code == 0  # migrate is the one that creates it
    assert absent.exists()


async def enable_totp_directly(email: str) -> str:
    """Give an account a confirmed TOTP factor through the services; return its secret."""
    from starterkit.audit import CLI  # noqa: PLC0415
    from starterkit.mfa.codes import totp_code  # noqa: PLC0415
    from starterkit.mfa.service import begin_totp_setup, confirm_totp  # noqa: PLC0415

    kit = StarterKit(Settings())
    try:
        async with kit.sessionmaker() as session:
            user = await get_user_by_email(session, email)
            assert user is not None
            setup = await begin_totp_setup(session, user=user, keys=kit.mfa_keys, now=kit.clock())
            code = totp_code(setup.secret, kit.clock())
            await confirm_totp(
                session, user=user, code=code, keys=kit.mfa_keys, origin=CLI, now=kit.clock()
            )
            await session.commit()
    finally:
        await kit.aclose()
    return setup.secret


async def stored_totp_secret() -> str:
    """The one stored TOTP secret, decrypted with the keys of the current settings."""
    from sqlalchemy import select  # noqa: PLC0415

    from starterkit.db.models import TOTPFactor  # noqa: PLC0415

    kit = StarterKit(Settings())
    try:
        async with kit.sessionmaker() as session:
            stored = (await session.scalars(select(TOTPFactor.secret))).one()
        return kit.mfa_keys.box.decrypt(stored)
    finally:
        await kit.aclose()


async def password_alone_logs_in(email: str) -> bool:
    """Whether the password alone starts a session (no second step is asked for)."""
    from starterkit.audit import CLI  # noqa: PLC0415
    from starterkit.auth.service import IssuedTokens, log_in  # noqa: PLC0415

    kit = StarterKit(Settings())
    try:
        await kit.tokens.ready()  # the signing keys, before the login's transaction
        async with kit.sessionmaker() as session:
            result = await log_in(
                session,
                email=email,
                password="a long enough passphrase",
                hasher=kit.password_hasher,
                tokens=kit.tokens,
                lifetimes=kit.session_lifetimes,
                require_verified=False,
                origin=CLI,
                now=kit.clock(),
                mfa=kit.mfa_keys,
            )
            await session.commit()
    finally:
        await kit.aclose()
    return isinstance(result, IssuedTokens)


def test_rotate_the_encryption_keys_then_reset_a_lost_factor(
    db_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    created = runner.invoke(
        app, ["new-user", "otp@example.com", "--password-stdin"], input="a long enough passphrase\n"
    )
    assert created.exit_code == 0, created.output
    old_key = runner.invoke(app, ["genkey", "--encryption-key"]).output.strip()
    monkeypatch.setenv("STARTERKIT_ENCRYPTION_KEYS", old_key)
    secret = asyncio.run(enable_totp_directly("otp@example.com"))

    # Rotation: a new key in front, re-encrypt, drop the old key; the secret survives.
    new_key = runner.invoke(app, ["genkey", "--encryption-key"]).output.strip()
    assert new_key != old_key
    monkeypatch.setenv("STARTERKIT_ENCRYPTION_KEYS", f"{new_key},{old_key}")
    rotated = runner.invoke(app, ["reencrypt"])
    assert rotated.exit_code == 0, rotated.output
    assert "Re-encrypted 1 secrets" in rotated.output
    assert "Re-encrypted 0 secrets" in runner.invoke(app, ["reencrypt"]).output
    monkeypatch.setenv("STARTERKIT_ENCRYPTION_KEYS", new_key)
    assert asyncio.run(stored_totp_secret()) == secret

    # A key dropped too early: one clear line, and nothing changes.
    stranger = runner.invoke(app, ["genkey", "--encryption-key"]).output.strip()
    monkeypatch.setenv("STARTERKIT_ENCRYPTION_KEYS", stranger)
    refused = runner.invoke(app, ["reencrypt"])
    assert refused.exit_code == 1
    assert_one_line_error(refused.output, "cannot be decrypted with any key of ENCRYPTION_KEYS")
    monkeypatch.setenv("STARTERKIT_ENCRYPTION_KEYS", "not-a-key")
    bad = runner.invoke(app, ["reencrypt"])
    assert_one_line_error(bad.output, "STARTERKIT_ENCRYPTION_KEYS must hold keys from")
    assert "not-a-key" not in bad.output
    monkeypatch.setenv("STARTERKIT_ENCRYPTION_KEYS", new_key)

    # The lost phone: mfa-reset removes the factor and ends the sessions.
    assert not asyncio.run(password_alone_logs_in("otp@example.com"))
    reset = runner.invoke(app, ["mfa-reset", "otp@example.com"])
    assert reset.exit_code == 0, reset.output
    assert asyncio.run(password_alone_logs_in("otp@example.com"))
    assert "Removed the second factors of otp@example.com" in reset.output
    again = runner.invoke(app, ["mfa-reset", "OTP@example.com"])
    assert "had no second factor" in again.output
    unknown = runner.invoke(app, ["mfa-reset", "nobody@example.com"])
    assert unknown.exit_code == 1
    assert_one_line_error(unknown.output, "no user with email nobody@example.com")
