"""examples/verify_elsewhere.py against a real ``starterkit serve``, across a key rotation.

Tokens issued before and after ``starterkit keys generate`` and ``keys rotate`` are accepted by
the second service, which knows only the JWKS URL; neither process restarts.
"""

from __future__ import annotations

import importlib
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.browser.conftest import serving
from tests.support.processes import clean_env, running_server, starterkit_command

pytestmark = pytest.mark.slow

ACCOUNT = {"email": "elsewhere@example.com", "password": "a long enough passphrase"}


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    variables = clean_env(
        STARTERKIT_ENVIRONMENT="test",
        STARTERKIT_DATABASE_URL=f"sqlite:///{tmp_path / 'api.db'}",
        STARTERKIT_SECRET_KEY=secrets.token_urlsafe(40),
        STARTERKIT_REFRESH_TOKEN_SECRET=secrets.token_urlsafe(40),
        STARTERKIT_KEYSET_REFRESH_SECONDS="1",
    )
    subprocess.run(starterkit_command("migrate"), env=variables, cwd=tmp_path, check=True)
    return variables


@pytest.fixture
def api(env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    with running_server(tmp_path, env=env) as (base_url, _):
        yield base_url


def keys_command(env: dict[str, str], cwd: Path, *args: str) -> str:
    done = subprocess.run(
        starterkit_command("keys", *args),
        check=False,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def access_token(api: str) -> str:
    response = httpx.post(f"{api}/api/v1/auth/login", json=ACCOUNT)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def test_tokens_from_before_and_after_a_rotation_work_at_a_service_that_has_only_the_jwks(
    api: str, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STARTERKIT_JWKS_URL", f"{api}/.well-known/jwks.json")
    example: Any = importlib.import_module("examples.verify_elsewhere")
    example = importlib.reload(example)  # reads STARTERKIT_JWKS_URL afresh
    assert httpx.post(f"{api}/api/v1/users", json=ACCOUNT).status_code == 201
    with serving(example.app) as elsewhere:

        def whoami(token: str) -> httpx.Response:
            return httpx.get(f"{elsewhere}/whoami", headers={"Authorization": f"Bearer {token}"})

        before = access_token(api)
        assert whoami(before).status_code == 200
        first_fetch = time.monotonic()
        user_id = whoami(before).json()["user_id"]

        keys_command(env, tmp_path, "generate")
        keys_command(env, tmp_path, "rotate")
        time.sleep(1.5)  # KEYSET_REFRESH_SECONDS: the running API signs with the new key
        after = access_token(api)
        old_kid, new_kid = (jwt.get_unverified_header(t)["kid"] for t in (before, after))
        assert old_kid != new_kid

        # The old key still verifies the tokens it signed.
        # The example fetched the keys at the first request; it fetches them again for an
        # unknown kid once its cooldown since that fetch has passed.
        time.sleep(max(0.0, first_fetch + example.JWKS_COOLDOWN_SECONDS + 1 - time.monotonic()))
        assert whoami(after).json()["user_id"] == user_id
        assert whoami(before).json()["user_id"] == user_id
        forged = jwt.encode(
            jwt.decode(after, options={"verify_signature": False}),
            "not the key, but long enough to be one " * 2,
            algorithm="HS256",
            headers={"kid": new_kid},
        )
        assert whoami(forged).status_code == 401
        assert whoami("not-a-token").status_code == 401
        assert httpx.get(f"{elsewhere}/whoami").status_code == 401
