"""fastapi-users' own venv, built once and reused by later runs.

fastapi-users 15 pins ``sqlalchemy<2.1`` and ``email-validator<2.4``, so it cannot share
starterkit's venv. Its venv lives under ``$XDG_CACHE_HOME/starterkit-benchmarks/`` (default
``~/.cache``) and is rebuilt when it is missing, cannot import what the peer needs, or was
built from other requirements (its ``requirements.txt`` records them once the install ends).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import uvicorn

# uvicorn as in starterkit's venv, so both servers run the same server code.
REQUIREMENTS = (
    "fastapi-users[sqlalchemy]==15.0.5",
    "fastapi-users-db-sqlalchemy>=7,<8",
    f"uvicorn[standard]=={uvicorn.__version__}",
    "asyncpg",
    "aiosqlite",
)
# Their versions describe the peer in the report; _CHECK imports what serving needs.
DISTRIBUTIONS = (
    "fastapi-users",
    "fastapi-users-db-sqlalchemy",
    "fastapi",
    "sqlalchemy",
    "pydantic",
    "pyjwt",
    "uvicorn",
    "uvloop",
    "httptools",
    "asyncpg",
    "aiosqlite",
)
_CHECK = """
import importlib.metadata, sys
import fastapi_users, fastapi_users_db_sqlalchemy, uvicorn, uvloop, httptools, asyncpg, aiosqlite
names = sys.argv[1:]
print(", ".join(f"{name} {importlib.metadata.version(name)}" for name in names))
"""


@dataclass(frozen=True)
class PeerVenv:
    """A ready venv: its interpreter and the versions of what it serves with."""

    python: Path
    versions: str


def cache_folder() -> Path:
    """Where the venv is kept: ``$XDG_CACHE_HOME`` or ``~/.cache``, like other tools' caches."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "starterkit-benchmarks" / "fastapi-users-15"


def ensure_venv(announce: Callable[[str], None] = print) -> PeerVenv:
    """The peer's venv, built first when it is missing, broken or out of date.

    Args:
        announce: called with one line before a build (it downloads from PyPI).

    Raises:
        RuntimeError: creating the venv or installing into it failed (with pip's output).
    """
    folder = cache_folder()
    ready = _check(folder)
    if ready is not None:
        return ready
    announce(f"building fastapi-users' venv in {folder} (once; later runs reuse it)…")
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    # On the Python that runs the benchmark, so both servers run on the same interpreter.
    _run([sys.executable, "-m", "venv", str(folder)], "python -m venv")
    pip = [str(_python(folder)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    _run([*pip, *REQUIREMENTS], "pip install")
    # Written last: a build that stopped halfway has no record and is built again.
    _requirements_file(folder).write_text("\n".join(REQUIREMENTS) + "\n", encoding="utf-8")
    built = _check(folder)
    if built is None:
        raise RuntimeError(f"the venv in {folder} was built but cannot import the peer")
    return built


def _python(folder: Path) -> Path:
    return folder / "bin" / "python"


def _requirements_file(folder: Path) -> Path:
    return folder / "requirements.txt"


def _check(folder: Path) -> PeerVenv | None:
    """The venv in ``folder`` if it was built from ``REQUIREMENTS`` and imports the peer."""
    try:
        recorded = _requirements_file(folder).read_text(encoding="utf-8").split()
    except OSError:
        return None
    if recorded != list(REQUIREMENTS) or not _python(folder).exists():
        return None
    finished = subprocess.run(
        [str(_python(folder)), "-c", _CHECK, *DISTRIBUTIONS],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if finished.returncode != 0:
        return None
    return PeerVenv(_python(folder), finished.stdout.strip())


def _run(command: list[str], what: str) -> None:
    finished = subprocess.run(command, capture_output=True, text=True, check=False, timeout=900)
    if finished.returncode != 0:
        output = (finished.stdout + finished.stderr).strip().splitlines()[-30:]
        raise RuntimeError(f"{what} failed ({finished.returncode}):\n" + "\n".join(output))
