"""Development sessions: ``nox -l`` lists them, ``nox -s tests-3.12`` runs one.

PostgreSQL and Redis tests run when STARTERKIT_TEST_DATABASE_URL / STARTERKIT_TEST_REDIS_URL
are set in the calling environment (nox passes the environment through).
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import nox

nox.options.error_on_missing_interpreters = True
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "typecheck", "tests", "wheel"]

PYTHONS = ["3.11", "3.12", "3.13"]
ROOT = Path(__file__).parent
# Files the wheel must carry besides Python modules; without them the installed CLI breaks.
PACKAGE_DATA = (
    "starterkit/py.typed",
    "starterkit/migrations/env.py",
    "starterkit/migrations/script.py.mako",
    "starterkit/migrations/versions/starterkit_0001_initial.py",
    "starterkit/migrations/versions/starterkit_0002_items_created_at_index.py",
    "starterkit/auth/common-passwords.txt",
)


def install_dev(session: nox.Session) -> None:
    """Install the project in editable mode with the dev extra."""
    session.install("-e", ".[dev]")


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite (SQLite always; PostgreSQL and Redis when configured)."""
    install_dev(session)
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHONS[0])
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHONS[0])
def typecheck(session: nox.Session) -> None:
    """mypy --strict on src, tests and this file."""
    install_dev(session)
    session.run("mypy")


@nox.session(python=PYTHONS[0])
def wheel(session: nox.Session) -> None:
    """Build sdist and wheel; from a clean venv with only the wheel: migrate, check, serve.

    This catches package data (migrations, the password list) missing from the wheel.
    """
    session.install("build>=1.2")
    tmp = Path(session.create_tmp()).resolve()
    dist, venv, work = tmp / "dist", tmp / "wheel-venv", tmp / "work"
    for folder in (dist, venv, work):
        shutil.rmtree(folder, ignore_errors=True)
    session.run("python", "-m", "build", "--outdir", str(dist), str(ROOT))
    [built] = dist.glob("starterkit-*.whl")
    with zipfile.ZipFile(built) as archive:
        missing = sorted(set(PACKAGE_DATA) - set(archive.namelist()))
    if missing:
        session.error(f"the wheel lacks {', '.join(missing)}")

    session.run("python", "-m", "venv", str(venv))
    python, starterkit = str(venv / "bin" / "python"), str(venv / "bin" / "starterkit")
    session.run(python, "-m", "pip", "install", "--quiet", str(built), external=True)
    work.mkdir()
    env = {"STARTERKIT_DATABASE_URL": f"sqlite:///{work / 'wheel.db'}"}
    with session.chdir(work):
        session.run(starterkit, "--version", external=True)
        session.run(starterkit, "migrate", env=env, external=True)
        session.run(starterkit, "check", env=env, external=True)
        smoke = str(ROOT / "tests" / "support" / "serve_smoke.py")
        session.run(python, smoke, starterkit, env=env, external=True)
