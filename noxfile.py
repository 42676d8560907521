"""Development sessions: ``nox -l`` lists them, ``nox -s tests-3.12`` runs one.

Plain ``nox`` runs lint, typecheck, tests on every Python version, docs (when ``mkdocs.yml``
exists), wheel and fuzz. ``audit`` needs the network and runs only when asked for.

PostgreSQL and Redis tests (and the PostgreSQL fuzz run) happen when
STARTERKIT_TEST_DATABASE_URL / STARTERKIT_TEST_REDIS_URL are set in the calling environment;
nox passes the environment through.

Interpreters: nox looks for ``python3.11``, ``python3.12`` and ``python3.13`` on PATH, and a
missing one is an error, not a skip. pyenv's shims for versions that are installed but not
selected fail when run, so this file puts the ``bin`` folder of each installed pyenv version
(``$PYENV_ROOT/versions/3.12.*/bin``, newest patch release) in front of PATH.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import zipfile
from pathlib import Path

import nox

nox.options.error_on_missing_interpreters = True
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "typecheck", "imports", "tests", "docs", "wheel", "fuzz"]

PYTHONS = ["3.11", "3.12", "3.13"]
ROOT = Path(__file__).parent
PACKAGE = ROOT / "src" / "starterkit"
# Floors of the tools these sessions install themselves (the rest come from the dev extra).
RUFF = "ruff>=0.6"
PIP_AUDIT = "pip-audit>=2.7"


def _version_key(folder: Path) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else -1 for part in folder.name.split("."))


def pyenv_interpreter_dirs(versions: list[str], pyenv_root: Path) -> list[Path]:
    """The ``bin`` folder of the newest installed pyenv release of each ``X.Y`` version."""
    found = []
    for version in versions:
        candidates = [
            folder
            for folder in (pyenv_root / "versions").glob(f"{version}.*")
            if (folder / "bin" / f"python{version}").exists()
        ]
        if candidates:
            found.append(max(candidates, key=_version_key) / "bin")
    return found


def expose_pyenv_interpreters() -> None:
    """Put pyenv's installed interpreters in front of PATH so nox finds working ones."""
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    dirs = [str(folder) for folder in pyenv_interpreter_dirs(PYTHONS, pyenv_root)]
    path = os.environ.get("PATH", "").split(os.pathsep)
    os.environ["PATH"] = os.pathsep.join([*dirs, *(entry for entry in path if entry not in dirs)])


expose_pyenv_interpreters()


def package_data() -> list[str]:
    """Every file of the package as the wheel must carry it (migrations and the password list
    are read from disk at run time, so missing ones break the installed CLI)."""
    return sorted(
        str(path.relative_to(PACKAGE.parent))
        for path in PACKAGE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    )


def install_dev(session: nox.Session) -> None:
    """Install the project in editable mode with the dev extra."""
    session.install("-e", ".[dev]")


def run_pytest(session: nox.Session, *args: str) -> None:
    """pytest with branch coverage of ``starterkit``; below ``fail_under`` (pyproject) fails."""
    session.run("pytest", "--cov", "--cov-report=term-missing:skip-covered", *args)


def run_fuzz(session: nox.Session, database: str, *args: str) -> None:
    """tests/fuzz/run_fuzz.py against a live server on ``database`` (see its docstring)."""
    session.run("python", "-m", "tests.fuzz.run_fuzz", "--database", database, *args)


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite with coverage: SQLite always; PostgreSQL and Redis when configured."""
    install_dev(session)
    run_pytest(session, *session.posargs)


@nox.session(python=PYTHONS[0])
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install(RUFF)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHONS[0])
def typecheck(session: nox.Session) -> None:
    """mypy --strict on src, tests, benchmarks and this file (``[tool.mypy] files``)."""
    install_dev(session)
    session.run("mypy")


@nox.session(python=PYTHONS[0])
def imports(session: nox.Session) -> None:
    """The import contracts of ``[tool.importlinter]``: layers, HTTP-free services, no cycles."""
    install_dev(session)
    session.run("lint-imports")


@nox.session(python=PYTHONS[0])
def docs(session: nox.Session) -> None:
    """``mkdocs build --strict``: broken links, anchors and references fail."""
    if not (ROOT / "mkdocs.yml").exists():
        session.skip("no mkdocs.yml yet")
    session.install("-e", ".[docs]")
    site = Path(session.create_tmp()).resolve() / "site"
    session.run("mkdocs", "build", "--strict", "--site-dir", str(site))


@nox.session(python=PYTHONS[0])
def wheel(session: nox.Session) -> None:
    """Build sdist and wheel; from a clean venv with only the wheel: migrate, check, serve.

    This catches package data (migrations, the password list, the project template) missing
    from the wheel. A project made by ``starterkit new`` is then installed next to it and its
    own tests and server run. Last, the sdist, unpacked, is installed and its own docs and unit
    tests run, which catches files the tests read (docs, examples) missing from it.
    """
    session.install("build>=1.2")
    tmp = Path(session.create_tmp()).resolve()
    dist, venv, work = tmp / "dist", tmp / "wheel-venv", tmp / "work"
    for folder in (dist, venv, work, tmp / "sdist"):
        shutil.rmtree(folder, ignore_errors=True)
    session.run("python", "-m", "build", "--outdir", str(dist), str(ROOT))
    [built] = dist.glob("starterkit-*.whl")
    with zipfile.ZipFile(built) as archive:
        missing = sorted(set(package_data()) - set(archive.namelist()))
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

    # `starterkit new`, then the generated README's commands: install, test, serve.
    with session.chdir(work):
        session.run(starterkit, "new", "shop", external=True)
    project = work / "shop"
    session.run(python, "-m", "pip", "install", "--quiet", "-e", f"{project}[dev]", external=True)
    with session.chdir(project):
        session.run(str(venv / "bin" / "pytest"), "-q", "-p", "no:cacheprovider", external=True)
        session.run(python, smoke, starterkit, "--app", "shop.app:create_app", external=True)

    [sdist] = dist.glob("starterkit-*.tar.gz")
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp / "sdist", filter="data")
    [unpacked] = (tmp / "sdist").glob("starterkit-*")
    session.install(f"{unpacked}[dev,docs]")
    with session.chdir(unpacked):
        session.run("pytest", "-q", "-p", "no:cacheprovider", "tests/docs", "tests/unit")


@nox.session(python=PYTHONS[0])
@nox.parametrize("database", ["sqlite", "postgresql"])
def fuzz(session: nox.Session, database: str) -> None:
    """Schemathesis on the running server's /openapi.json, bounded and seeded.

    ``nox -s fuzz`` runs SQLite and PostgreSQL (skipped without STARTERKIT_TEST_DATABASE_URL);
    ``nox -s "fuzz(database='sqlite')" -- --seed 7 --max-examples 400`` passes options on.
    """
    if database == "postgresql" and not os.environ.get("STARTERKIT_TEST_DATABASE_URL"):
        session.skip("STARTERKIT_TEST_DATABASE_URL is not set")
    install_dev(session)
    run_fuzz(session, database, *session.posargs)


@nox.session(python=PYTHONS[0], default=False)
def bench(session: nox.Session) -> None:
    """benchmarks/run.py: starterkit's throughput against a bare FastAPI floor (needs wrk).

    Not a default session and not part of CI: it prints figures and asserts nothing.
    ``nox -s bench -- --database postgresql --backend redis`` passes options on; see
    docs/performance.md.
    """
    install_dev(session)
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session(python=PYTHONS[0], default=False)
def audit(session: nox.Session) -> None:
    """pip-audit of the installed dependencies against the PyPI/OSV advisory databases.

    Needs network access to those databases, so it is neither a default session nor part of
    .ci/run or the GitHub workflow: run ``nox -s audit`` where the network allows it.
    """
    session.install("-e", ".[dev]", PIP_AUDIT)
    session.run("pip-audit", "--skip-editable", "--progress-spinner", "off", *session.posargs)
