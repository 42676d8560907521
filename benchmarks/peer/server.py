"""Serve fastapi-users' example for ``run.py`` on a fresh database, and seed it over HTTP.

The peer is served the way ``starterkit serve`` serves starterkit, where its options apply:
one uvicorn worker, uvloop and httptools (uvicorn's defaults when installed), no ``server``
header, no proxy headers. uvicorn's own access log stays on, since starterkit writes one
access line per request as well. Its database is a fresh one of its own: a file in the run's
folder on SQLite, a new database (dropped afterwards) on the PostgreSQL server of the run.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from contextlib import ExitStack
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.support.processes import free_port

from benchmarks import backends
from benchmarks.peer.venv import PeerVenv
from benchmarks.servers import Server, server_env, start_server

APP_FOLDER = Path(__file__).resolve().parent
APP = "fastapi_users_app:app"
PEER_READER = "peer-reader@example.com"  # the peer's user, a key of Bench.tokens
ITEMS = 20


def peer_database_url(args: argparse.Namespace, folder: Path, stack: ExitStack) -> str:
    """A fresh database for the peer, with the async driver its example uses."""
    if args.database == "sqlite":
        return f"sqlite+aiosqlite:///{folder / 'peer.db'}"
    url, _ = backends.database(args, folder, stack)  # dropped when ``stack`` closes
    return make_url(url).set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def start_peer(
    venv: PeerVenv, *, database_url: str, folder: Path, cpus: str | None = None
) -> Server:
    """``uvicorn fastapi_users_app:app`` from the peer's venv, once its docs page answers."""
    port = free_port()
    command = [str(venv.python), "-m", "uvicorn", APP, "--app-dir", str(APP_FOLDER)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    # starterkit serve passes server_header=False and proxy_headers=False (uvicorn: on).
    command += ["--no-server-header", "--no-proxy-headers"]
    env = server_env({}) | {
        "PEER_DATABASE_URL": database_url,
        "PEER_SECRET": secrets.token_urlsafe(48),
    }
    # Nothing of starterkit's venv may leak into the peer's imports.
    env = {key: value for key, value in env.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return start_server(
        "peer", command, folder=folder, env=env, ready_path="/docs", port=port, cpus=cpus
    )


def seed_peer(base_url: str, password: str) -> str:
    """Register the reader, log in, give them ``ITEMS`` items; return the bearer token."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        registered = client.post(
            "/auth/register", json={"email": PEER_READER, "password": password}
        )
        registered.raise_for_status()
        # fastapi-users' login is an OAuth2 password form: username and password fields.
        login = client.post("/auth/jwt/login", data={"username": PEER_READER, "password": password})
        login.raise_for_status()
        token: str = login.json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        for n in range(ITEMS):
            client.post("/items", json={"title": f"item {n}"}).raise_for_status()
    return token
