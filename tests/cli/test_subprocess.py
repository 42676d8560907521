"""The installed command, run as a user runs it: fresh folder, no .env, no database."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import select
import signal
import stat
import subprocess
import sys
import termios
import time
from pathlib import Path

import httpx
import pytest

import starterkit
from starterkit import __version__
from starterkit.envfile import read_env_file
from tests.support.processes import (
    clean_env,
    free_port,
    running_server,
    starterkit_command,
    stop,
    wait_until_healthy,
)

pytestmark = pytest.mark.slow


def test_python_dash_m_starterkit_prints_the_version(tmp_path: Path) -> None:
    result = subprocess.run(
        starterkit_command("--version"), capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"starterkit {__version__}"


def test_help_does_not_import_the_web_stack() -> None:
    code = (
        "import sys\n"
        "from starterkit.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in ('fastapi', 'sqlalchemy', 'alembic', 'uvicorn') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "HEAVY []" in result.stdout


def test_serve_on_a_fresh_folder_creates_secrets_migrates_and_serves_docs(
    tmp_path: Path,
) -> None:
    with running_server(tmp_path) as (base_url, process):
        health = httpx.get(f"{base_url}/api/v1/health")
        assert health.status_code == 200
        assert health.json()["database"] == "up"
        docs = httpx.get(f"{base_url}/docs")
        assert docs.status_code == 200
        assert "swagger-ui" in docs.text
        assert httpx.get(f"{base_url}/openapi.json").json()["info"]["version"] == __version__
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0
        output = stop(process)

    env_file = tmp_path / ".env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    secrets = read_env_file(env_file)
    assert set(secrets) == {"STARTERKIT_SECRET_KEY", "STARTERKIT_REFRESH_TOKEN_SECRET"}
    assert "Generated STARTERKIT_SECRET_KEY and STARTERKIT_REFRESH_TOKEN_SECRET" in output
    assert "Database migrated to starterkit_0010." in output
    assert (tmp_path / "starterkit.db").exists()
    # It holds password hashes: owner only, like its WAL files.
    for name in ("starterkit.db", "starterkit.db-wal", "starterkit.db-shm"):
        if (tmp_path / name).exists():
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    assert "Traceback" not in output

    # A second start reuses the secrets and finds nothing to migrate.
    with running_server(tmp_path) as (_, process):
        again = stop(process)
    # SIGTERM shuts down gracefully; uvicorn then re-raises the signal for the parent to see.
    assert process.returncode in (0, -signal.SIGTERM)
    assert "Application shutdown complete." in again
    assert read_env_file(env_file) == secrets
    assert "Generated" not in again
    assert "migrated" not in again


def test_serve_without_proxy_headers_ignores_x_forwarded_for(tmp_path: Path) -> None:
    with running_server(tmp_path, "--no-migrate") as (base_url, process):
        response = httpx.get(
            f"{base_url}/api/v1/health/live", headers={"X-Forwarded-For": "203.0.113.9"}
        )
        assert response.status_code == 200
        output = stop(process)
    # The access log shows the client address uvicorn believed.
    assert "203.0.113.9" not in output
    assert "127.0.0.1" in output


def test_serve_with_proxy_headers_believes_the_allowed_proxy(tmp_path: Path) -> None:
    with running_server(tmp_path, "--no-migrate", "--forwarded-allow-ips", "127.0.0.1") as (
        base_url,
        process,
    ):
        httpx.get(f"{base_url}/api/v1/health/live", headers={"X-Forwarded-For": "203.0.113.9"})
        output = stop(process)
    assert "203.0.113.9" in output


def test_new_user_prompts_twice_for_a_hidden_password(tmp_path: Path) -> None:
    env = clean_env(STARTERKIT_DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}")
    subprocess.run(starterkit_command("migrate"), env=env, cwd=tmp_path, check=True)
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        starterkit_command("new-user", "tty@example.com"),
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=env,
        cwd=tmp_path,
        # getpass reads from the controlling terminal, so make the pty the child's.
        start_new_session=True,
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),  # noqa: PLW1509
    )
    os.close(terminal)
    transcript = ""
    answered = 0
    deadline = time.monotonic() + 30
    while process.poll() is None and time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 0.2)
        if not ready:
            continue
        try:
            transcript += os.read(controller, 1024).decode()
        except OSError:
            break
        # Answer only after getpass's own " " prompt: it flushes input typed before it.
        prompts = transcript.count("Password: ") + transcript.count("confirmation: ")
        if prompts > answered:
            os.write(controller, b"typed in a terminal\n")
            answered += 1
    process.wait(timeout=10)
    with contextlib.suppress(OSError):  # the child closed the terminal
        transcript += os.read(controller, 4096).decode()
    os.close(controller)
    assert answered == 2, transcript
    assert process.returncode == 0, transcript
    assert "typed in a terminal" not in transcript  # never echoed
    assert "Created user tty@example.com" in transcript


def test_console_script_imports_model_modules_from_the_working_directory(
    tmp_path: Path,
) -> None:
    script = Path(sys.executable).with_name("starterkit")
    if not script.exists():
        pytest.skip("the starterkit console script is not installed next to this Python")
    # Importing the module leaves a mark, so the test sees that migrate found it.
    (tmp_path / "shop_models.py").write_text(
        "from pathlib import Path\nPath('imported').write_text('shop_models')\n"
    )
    env = clean_env(
        STARTERKIT_DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}",
        STARTERKIT_MODEL_MODULES="shop_models",
    )
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [str(script), "migrate"], env=env, cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "imported").read_text() == "shop_models"


def test_serve_mails_links_to_where_it_listens_and_serves_those_pages(tmp_path: Path) -> None:
    # Seen: `serve --port 8111` mailed links to http://127.0.0.1:8000, where nothing answered.
    with running_server(tmp_path) as (base_url, process):
        api = f"{base_url}/api/v1"
        account = {"email": "link@example.com", "password": "a long enough passphrase"}
        assert httpx.post(f"{api}/users", json=account).status_code == 201
        forgot = httpx.post(f"{api}/auth/forgot-password", json={"email": account["email"]})
        assert forgot.status_code == 202
        page = httpx.get(f"{base_url}/reset-password", params={"token": "from-a-mail"})
        assert page.status_code == 200
        assert 'value="from-a-mail"' in page.text
        time.sleep(1)  # the mail goes out in a background job
        output = stop(process)
    links = [line for line in output.splitlines() if line.startswith("http") and "token=" in line]
    assert len(links) == 1, output
    assert links[0].startswith(f"{base_url}/reset-password?token=")


def test_a_module_in_the_working_directory_never_shadows_a_dependency(tmp_path: Path) -> None:
    # Seen: a ./rich.py ran during `starterkit check`.
    (tmp_path / "rich.py").write_text("raise SystemExit('the local rich.py ran')\n")
    (tmp_path / "mymodels.py").write_text("MARKER = 1\n")
    script = Path(sys.executable).parent / "starterkit"
    env = clean_env(
        STARTERKIT_DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}",
        STARTERKIT_MODEL_MODULES="mymodels",
    )
    done = subprocess.run(
        [str(script), "check"], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert "the local rich.py ran" not in done.stdout + done.stderr
    assert "settings" in done.stdout  # the table, printed by the installed rich
    # Modules of the project in that folder are still found (MODEL_MODULES).
    migrated = subprocess.run(
        [str(script), "migrate"], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert migrated.returncode == 0, migrated.stderr


def test_serve_refuses_megabytes_of_headers(tmp_path: Path) -> None:
    # Seen: an 8 MB header was accepted.
    with running_server(tmp_path) as (base_url, _):
        huge = httpx.get(f"{base_url}/api/v1/health/live", headers={"x-filler": "a" * 8_000_000})
        assert huge.status_code == 431
        assert huge.json()["code"] == "headers_too_large"
        assert httpx.get(f"{base_url}/api/v1/health/live").status_code == 200


def test_serve_warns_about_split_limits(tmp_path: Path) -> None:
    with running_server(tmp_path, "--workers", "2") as (base_url, process):
        assert httpx.get(f"{base_url}/api/v1/health/live").status_code == 200
        output = stop(process)
    assert "Warning: 2 workers without REDIS_URL" in output
    with running_server(tmp_path) as (_, process):
        quiet = stop(process)
    assert "Warning:" not in quiet


def test_serve_takes_a_platforms_database_url_and_port(tmp_path: Path) -> None:
    # Hosting platforms hand the app DATABASE_URL and PORT, not starterkit's own names.
    port = free_port()
    database = tmp_path / "platform.db"
    env = clean_env(DATABASE_URL=f"sqlite:///{database}", PORT=str(port))
    process = subprocess.Popen(
        starterkit_command("serve"),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", process, timeout=30)
        ready = httpx.get(f"http://127.0.0.1:{port}/api/v1/health/ready")
        assert ready.status_code == 200, ready.text
    finally:
        output = stop(process)
        assert process.stdout is not None
        process.stdout.close()
    assert f"on http://127.0.0.1:{port}" in output
    assert database.exists()  # migrated where DATABASE_URL points, not ./starterkit.db
    assert not (tmp_path / "starterkit.db").exists()
    # The starterkit name wins over the platform's.
    mine = tmp_path / "mine.db"
    env["STARTERKIT_DATABASE_URL"] = f"sqlite:///{mine}"
    migrated = subprocess.run(
        starterkit_command("migrate"),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr
    assert mine.exists()


SHOP_MODELS = """
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from starterkit.db.base import Base, BigIntId, utcnow


class Product(Base):
    __tablename__ = "products"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    owner_id: Mapped[int] = mapped_column(BigIntId, ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
"""


def test_migrate_revision_writes_runnable_migrations_for_your_models(tmp_path: Path) -> None:
    (tmp_path / "shop_models.py").write_text(SHOP_MODELS)
    env = clean_env(
        STARTERKIT_DATABASE_URL=f"sqlite:///{tmp_path / 'shop.db'}",
        STARTERKIT_MODEL_MODULES="shop_models",
        STARTERKIT_MIGRATION_LOCATIONS="migrations/versions",
    )

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            starterkit_command(*args),
            cwd=tmp_path,
            env={**env, **extra},
            capture_output=True,
            text=True,
            check=False,
        )

    assert run("migrate").returncode == 0
    first = run("migrate", "revision", "-m", "add products", "--autogenerate")
    assert first.returncode == 0, first.stderr
    [written] = (tmp_path / "migrations" / "versions").glob("*.py")
    assert written.name == "shop_models_0001_add_products.py"
    text = written.read_text()
    assert "starterkit.db" not in text  # runs as written: only sqlalchemy and alembic
    assert "sa.DateTime(timezone=True)" in text
    assert "branch_labels: str | Sequence[str] | None = ('shop_models',)" in text
    applied = run("migrate")
    assert applied.returncode == 0, applied.stderr
    assert "Models and migrations match." in run("migrate", "check").stdout
    assert "(latest)" in run("check").stdout

    unchanged = run("migrate", "revision", "-m", "nothing", "--autogenerate")
    assert unchanged.returncode == 0
    assert "No changes in your models; nothing written" in unchanged.stdout
    assert len(list((tmp_path / "migrations" / "versions").glob("*.py"))) == 1

    # A new column: `migrate check` names it; a second revision follows the first.
    (tmp_path / "shop_models.py").write_text(SHOP_MODELS + "    price: Mapped[int | None]\n")
    drift = run("migrate", "check")
    assert drift.returncode == 1
    assert "Error: the models differ from the migrations: add column products.price" in (
        drift.stderr
    )
    second = run("migrate", "revision", "-m", "add price", "--autogenerate")
    assert second.returncode == 0, second.stderr
    follow_up = tmp_path / "migrations" / "versions" / "shop_models_0002_add_price.py"
    assert "down_revision: str | Sequence[str] | None = 'shop_models_0001'" in follow_up.read_text()
    assert run("migrate").returncode == 0
    assert run("migrate", "check").returncode == 0
    # starterkit's own migrations were never written to.
    shipped = Path(starterkit.__file__).parent / "migrations" / "versions"
    assert not any(path.name.startswith("shop_models") for path in shipped.iterdir())


def test_migrate_revision_says_which_setting_is_missing(tmp_path: Path) -> None:
    (tmp_path / "broken_models.py").write_text("raise RuntimeError('boom')\n")
    base = clean_env(STARTERKIT_DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}")

    def error_of(*args: str, **extra: str) -> str:
        done = subprocess.run(
            starterkit_command("migrate", "revision", "-m", "x", *args),
            cwd=tmp_path,
            env={**base, **extra},
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 1
        assert "Traceback" not in done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        return lines[0]

    assert "set STARTERKIT_MIGRATION_LOCATIONS" in error_of()
    located = {"STARTERKIT_MIGRATION_LOCATIONS": "migrations/versions"}
    assert "set STARTERKIT_MODEL_MODULES" in error_of("--autogenerate", **located)
    broken = error_of(STARTERKIT_MODEL_MODULES="broken_models", **located)
    assert broken == (
        "Error: cannot import 'broken_models' (from MODEL_MODULES): RuntimeError: boom"
    )


def test_json_logs_of_a_whole_auth_flow_are_one_object_a_line_without_secrets(
    tmp_path: Path,
) -> None:
    env = clean_env(STARTERKIT_LOG_FORMAT="json", STARTERKIT_EMAIL_BACKEND="none")
    password, new_password = "the first long passphrase", "a second long passphrase"
    typed_wrong = "a-wrong-password-typed-here"
    secrets_seen: list[str] = [password, new_password, typed_wrong]
    with running_server(tmp_path, env=env) as (base_url, process):
        api = f"{base_url}/api/v1"
        account = {"email": "logs@example.com", "password": password}
        assert httpx.post(f"{api}/users", json=account).status_code == 201
        wrong = httpx.post(f"{api}/auth/login", json={**account, "password": typed_wrong})
        assert wrong.status_code == 401
        pair = httpx.post(f"{api}/auth/login", json=account).json()
        secrets_seen += [pair["access_token"], pair["refresh_token"]]
        headers = {"Authorization": f"Bearer {pair['access_token']}", "X-Request-ID": "trace-me"}
        assert httpx.get(f"{api}/users/me", headers=headers).status_code == 200
        refreshed = httpx.post(f"{api}/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        secrets_seen += [refreshed.json()["access_token"], refreshed.json()["refresh_token"]]
        change = {"current_password": password, "new_password": new_password}
        bearer = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
        assert (
            httpx.post(f"{api}/users/me/password", json=change, headers=bearer).status_code == 204
        )
        forgot = httpx.post(f"{api}/auth/forgot-password", json={"email": account["email"]})
        assert forgot.status_code == 202
        assert httpx.get(f"{api}/items/1?token=not-logged").status_code == 401
        time.sleep(0.5)  # the background mail job
        output = stop(process)
    lines = [line for line in output.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert {"time", "level", "logger", "message", "request_id"} <= set(records[0])
    access = [r for r in records if r["logger"] == "starterkit.access"]
    me = [r for r in access if r["route"] == "/api/v1/users/me"]
    assert me[0]["request_id"] == "trace-me"
    assert (me[0]["method"], me[0]["status"]) == ("GET", 200)
    assert isinstance(me[0]["duration_ms"], float)
    assert any(r["route"] == "/api/v1/items/{item_id}" for r in access)
    assert any("Database migrated" in r["message"] for r in records)  # serve's own lines too
    for secret in secrets_seen:
        assert secret not in output
    assert "not-logged" not in output  # paths and queries are never logged, only templates

    with running_server(tmp_path, "--no-access-log", env=env) as (base_url, process):
        assert httpx.get(f"{base_url}/api/v1/users/me").status_code == 401
        quiet = stop(process)
    assert "starterkit.access" not in quiet

    # Other commands that log do it in the same format.
    elsewhere = tmp_path / "fresh"
    elsewhere.mkdir()
    migrated = subprocess.run(
        starterkit_command("migrate"), cwd=elsewhere, env=env, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert migrated.returncode == 0, migrated.stderr
    [line] = migrated.stderr.strip().splitlines()
    assert json.loads(line)["message"].startswith("Database migrated to")


def test_new_makes_a_project_whose_tests_pass_and_refuses_bad_input(tmp_path: Path) -> None:
    env = clean_env()
    made = subprocess.run(
        starterkit_command("new", "my-shop"),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    project = tmp_path / "my-shop"
    assert "starterkit serve --app my_shop.app:create_app" in made.stdout
    for name in (
        "pyproject.toml",
        "README.md",
        ".gitignore",
        "my_shop/app.py",
        "tests/test_notes.py",
    ):
        assert (project / name).is_file(), name
    [migration] = (project / "migrations" / "versions").glob("my_shop_0001_*.py")
    assert "create_table('notes'" in migration.read_text()
    assert stat.S_IMODE((project / ".env").stat().st_mode) == 0o600
    settings = read_env_file(project / ".env")
    assert settings["STARTERKIT_MODEL_MODULES"] == "my_shop.models"
    assert len(settings["STARTERKIT_SECRET_KEY"]) >= 32
    assert 'pip install -e ".[dev]"' in (project / "README.md").read_text()

    # The project's own tests, and its migrations next to starterkit's.
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        env={**env, "PYTHONPATH": str(project)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    for command in (("migrate",), ("migrate", "check")):
        done = subprocess.run(
            starterkit_command(*command), cwd=project, env=env, capture_output=True, text=True,
            check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr

    def refused(*args: str) -> str:
        done = subprocess.run(
            starterkit_command("new", *args), cwd=tmp_path, env=env, capture_output=True,
            text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 1
        assert "Traceback" not in done.stderr
        return done.stderr.strip()

    assert refused("my-shop") == "Error: my-shop is not empty; choose a new folder, or pass --force"
    assert "is not a valid project name" in refused("9lives")
    assert "already exists in this Python" in refused("elsewhere", "--name", "json")


def test_every_kind_of_line_serve_writes_is_json_with_log_format_json(tmp_path: Path) -> None:
    # The kinds of output the other serve tests look at, in JSON: generated secrets, the
    # migration, warnings (two workers without Redis), a console mail with its link, proxy
    # headers, worker start and shutdown.
    env = clean_env(STARTERKIT_LOG_FORMAT="json")
    options = ("--workers", "2", "--forwarded-allow-ips", "127.0.0.1")
    with running_server(tmp_path, *options, env=env) as (base_url, process):
        api = f"{base_url}/api/v1"
        account = {"email": "json@example.com", "password": "a long enough passphrase"}
        assert httpx.post(f"{api}/users", json=account).status_code == 201
        forwarded = {"X-Forwarded-For": "203.0.113.9"}
        forgot = httpx.post(
            f"{api}/auth/forgot-password", json={"email": account["email"]}, headers=forwarded
        )
        assert forgot.status_code == 202
        time.sleep(1)  # the mail goes out in a background job
        output = stop(process)
    records = [json.loads(line) for line in output.splitlines() if line.strip()]
    messages = [record["message"] for record in records]
    assert any(m.startswith("Generated STARTERKIT_SECRET_KEY") for m in messages)
    assert any(m.startswith("Database migrated") for m in messages)
    assert any(r["level"] == "WARNING" and "2 workers" in r["message"] for r in records)
    [mail] = [r for r in records if "this mail was printed" in r["message"]]
    assert f"{base_url}/reset-password?token=" in mail["message"]  # whole, in one record
    assert any(r.get("client") == "203.0.113.9" for r in records)
