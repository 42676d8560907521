"""Every example runs: each is loaded fresh from its file and exercised over HTTP."""

from __future__ import annotations

import re
import runpy
import shlex
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest
import typer.main
from fastapi import FastAPI
from typer.core import TyperGroup

import starterkit
from starterkit.cli import app as cli_app
from starterkit.db import migrate
from starterkit.testing import app_client, signed_in_user, throwaway_settings

pytestmark = pytest.mark.anyio

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_app(path: Path, monkeypatch: pytest.MonkeyPatch, folder: Path, **env: str) -> FastAPI:
    """Run an example file as a fresh module, with settings from the environment."""
    settings = throwaway_settings(folder)
    monkeypatch.setenv("STARTERKIT_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("STARTERKIT_ENVIRONMENT", "test")
    for name, value in env.items():
        monkeypatch.setenv(f"STARTERKIT_{name}", value)
    namespace: dict[str, Any] = runpy.run_path(str(path))
    app = namespace["app"]
    assert isinstance(app, FastAPI)
    return app


def test_public_api_is_sorted_and_complete() -> None:
    assert starterkit.__all__ == sorted(starterkit.__all__)
    for name in starterkit.__all__:
        assert getattr(starterkit, name) is not None
    assert dir(starterkit) == starterkit.__all__
    with pytest.raises(AttributeError):
        _ = starterkit.not_a_thing


async def test_minimal_app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    app = load_app(EXAMPLES / "minimal_app.py", monkeypatch, tmp_path)
    async with app_client(app) as client:
        _, headers = await signed_in_user(app, "min@example.com")
        me = await client.get("/api/v1/users/me", headers=headers)
        assert me.json()["email"] == "min@example.com"
        assert (await client.get("/api/v1/health")).json()["database"] == "up"


async def test_mount_into_existing_app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    app = load_app(
        EXAMPLES / "mount_into_existing_app.py",
        monkeypatch,
        tmp_path,
        AUTH_LOGIN_RATE_LIMIT="100/minute",
    )
    async with app_client(app) as client:
        user = {"email": "shop@example.com", "password": "a long shop passphrase"}
        assert (await client.post("/account/users", json=user)).status_code == 201
        login = await client.post("/account/auth/login", json=user)
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        hello = await client.get("/hello", headers=headers)
        assert hello.json() == {"message": "Hello, shop@example.com!"}
        assert hello.headers["x-ratelimit-limit"] == "10"
        statuses = [(await client.get("/hello", headers=headers)).status_code for _ in range(10)]
        assert statuses == [200] * 9 + [429]
        assert (await client.get("/admin/stats", headers=headers)).status_code == 403
        assert (await client.get("/ops/health")).json()["database"] == "up"
        missing = await client.get("/api/v1/health")
        assert missing.json()["code"] == "not_found"
        spec = (await client.get("/openapi.json")).json()
    scheme = spec["components"]["securitySchemes"]["OAuth2PasswordBearer"]
    assert scheme["flows"]["password"]["tokenUrl"] == "/account/auth/login"
    assert "account" in spec["paths"]["/account/auth/login"]["post"]["tags"]


async def test_custom_resource_with_its_own_migration(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    app = load_app(EXAMPLES / "custom_resource" / "app.py", monkeypatch, tmp_path)
    settings = app.state.starterkit.settings
    async with app_client(app) as client:  # migrates both branches
        heads = await anyio.to_thread.run_sync(migrate.current_revisions, settings)
        assert "notes_0001" in heads
        assert migrate.head_revisions(settings) == heads
        # The notes model and its migration agree.
        await anyio.to_thread.run_sync(migrate.check, settings)

        _, alice = await signed_in_user(app, "alice@example.com")
        _, bob = await signed_in_user(app, "bob@example.com")
        created = await client.post("/api/v1/notes", json={"text": "buy milk"}, headers=alice)
        assert created.status_code == 201
        await client.post("/api/v1/notes", json={"text": "bob's"}, headers=bob)
        mine = (await client.get("/api/v1/notes", headers=alice)).json()
        assert [note["text"] for note in mine] == ["buy milk"]
        assert (await client.get("/api/v1/notes")).status_code == 401


def starterkit_invocations(text: str) -> list[list[str]]:
    """Every ``starterkit ...`` command line in a Dockerfile or compose file."""
    found = []
    for match in re.finditer(r"starterkit ([a-z-]+(?: [^&\"\n]*)?)", text):
        words = shlex.split(match.group(1).replace("${", "").replace("}", ""))
        found.append(words)
    return found


@pytest.mark.parametrize("name", ["Dockerfile", "compose.yaml"])
def test_deploy_files_only_use_commands_that_exist(name: str) -> None:
    group = typer.main.get_command(cli_app)
    assert isinstance(group, TyperGroup)
    text = (EXAMPLES / "deploy" / name).read_text()
    invocations = starterkit_invocations(text)
    expected = {"Dockerfile": ["migrate", "serve"], "compose.yaml": ["genkey"]}[name]
    assert [words[0] for words in invocations] == expected
    for words in invocations:
        command = group.get_command(group.context_class(group), words[0])
        assert command is not None, words
        options = {opt for param in command.params for opt in param.opts}
        for word in words[1:]:
            if word.startswith("--"):
                assert word in options, (words[0], word)
    if name == "Dockerfile":
        assert "USER starterkit" in text
        assert "starterkit migrate && exec starterkit serve" in text
