"""Fuzz the running API with Schemathesis, on SQLite or PostgreSQL.

Run from the repository root (``nox -s fuzz`` does, once per database)::

    python -m tests.fuzz.run_fuzz --database sqlite
    python -m tests.fuzz.run_fuzz --database postgresql  # needs STARTERKIT_TEST_DATABASE_URL
    python -m tests.fuzz.run_fuzz --auth cookie  # sign in as a browser session
    python -m tests.fuzz.run_fuzz --report-dir reports -- --max-failures 1  # extra options

It makes a throwaway database (a SQLite file, or a new PostgreSQL database that is dropped
afterwards), migrates it, creates a superuser with ``starterkit new-user``, starts
``starterkit serve`` in a temporary folder on a free port (environment ``test``, explicit
secrets, rate limits raised so the limiter does not drown the run, Redis when
STARTERKIT_TEST_REDIS_URL is set), registers an ordinary user through ``POST /api/v1/users``
and logs it in, then runs ``schemathesis run`` on the server's ``/openapi.json`` with
``schemathesis.toml`` (checks), ``hooks.py`` (authentication) and ``baseline.json`` (known
open findings) from this folder. Every operation and method is fuzzed; the run is bounded by
``--max-examples`` per operation and reproducible with ``--seed``.

Exit status: schemathesis's (0 when every check passed, 1 when one failed, 2 for a usage or
schema error), or 1 when the server logged an error that no check caught.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from starterkit.settings import Settings, env_name
from tests.support.databases import create_postgres_database, drop_postgres_database
from tests.support.processes import clean_env, free_port, starterkit_command, stop
from tests.support.processes import wait_until_healthy as _wait_until_healthy

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "schemathesis.toml"
HOOKS = HERE / "hooks.py"
BASELINE = HERE / "baseline.json"
API = "/api/v1"
DEFAULT_MAX_EXAMPLES = 200
DEFAULT_SEED = 20240607
# Every rate-limit setting, so high that no limit is reached during a run (the limiter has
# tests of its own). Read from Settings, so a limit added later is raised too.
RATE_LIMITS = {
    env_name(name): "100000/minute"
    for name in Settings.model_fields
    if name.endswith("_rate_limit")
}
# uvicorn's log format starts each record with its level; ERROR records are failures.
LOG_LEVELS = ("DEBUG:", "INFO:", "WARNING:", "ERROR:", "CRITICAL:")
ERROR_LEVELS = ("ERROR:", "CRITICAL:")
TRACEBACK = "Traceback (most recent call last)"


def say(message: str) -> None:
    """Progress output of the driver (schemathesis prints its own)."""
    print(f"[fuzz] {message}", flush=True)  # noqa: T201 - a command-line tool reports by printing


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The driver's options; everything after ``--`` goes to ``schemathesis run``."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.fuzz.run_fuzz", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--max-examples", type=int, default=DEFAULT_MAX_EXAMPLES)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--auth",
        choices=["bearer", "cookie"],
        default="bearer",
        help="Sign requests with bearer tokens, or as a browser session (cookies, CSRF token).",
    )
    parser.add_argument(
        "--report-dir",
        type=Path,
        help="Keep the JUnit report, the server log and the crash files here.",
    )
    parser.add_argument("extra", nargs="*", help="Options for `schemathesis run` (after --).")
    return parser.parse_args(argv)


@dataclass(frozen=True)
class Accounts:
    """The two fuzz accounts: an ordinary user and a superuser, with random passwords."""

    user_email: str = field(default_factory=lambda: f"fuzz-user-{uuid.uuid4().hex[:8]}@example.com")
    user_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    admin_email: str = field(
        default_factory=lambda: f"fuzz-admin-{uuid.uuid4().hex[:8]}@example.com"
    )
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))

    def hooks_environment(self, base_url: str) -> dict[str, str]:
        """What hooks.py reads to log the accounts in."""
        return {
            "SCHEMATHESIS_HOOKS": str(HOOKS),
            "STARTERKIT_FUZZ_BASE_URL": base_url,
            "STARTERKIT_FUZZ_USER_EMAIL": self.user_email,
            "STARTERKIT_FUZZ_USER_PASSWORD": self.user_password,
            "STARTERKIT_FUZZ_ADMIN_EMAIL": self.admin_email,
            "STARTERKIT_FUZZ_ADMIN_PASSWORD": self.admin_password,
        }


@contextmanager
def fuzz_database(kind: str, folder: Path) -> Iterator[str]:
    """A fresh database URL: a SQLite file in ``folder`` or a new PostgreSQL database."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'fuzz.db'}"
        return
    admin_url = os.environ.get("STARTERKIT_TEST_DATABASE_URL", "")
    if not admin_url.startswith("postgresql"):
        raise SystemExit("--database postgresql needs STARTERKIT_TEST_DATABASE_URL=postgresql://…")
    url = create_postgres_database(admin_url)
    say(f"created database {url.rsplit('/', 1)[-1]}")
    try:
        yield url
    finally:
        drop_postgres_database(url)
        say("dropped the database")


def server_environment(database_url: str, redis_prefix: str) -> dict[str, str]:
    """Settings of the fuzzed server: test environment, explicit secrets, high rate limits."""
    env = clean_env(
        STARTERKIT_ENVIRONMENT="test",
        STARTERKIT_DATABASE_URL=database_url,
        STARTERKIT_SECRET_KEY=secrets.token_urlsafe(48),
        STARTERKIT_REFRESH_TOKEN_SECRET=secrets.token_urlsafe(48),
        STARTERKIT_REDIS_KEY_PREFIX=redis_prefix,
        **RATE_LIMITS,
    )
    redis_url = os.environ.get("STARTERKIT_TEST_REDIS_URL", "")
    if redis_url:
        env["STARTERKIT_REDIS_URL"] = redis_url
    return env


def run_cli(*args: str, env: dict[str, str], cwd: Path, stdin: str | None = None) -> None:
    """Run a ``starterkit`` command; stop with its output if it fails."""
    result = subprocess.run(
        starterkit_command(*args),
        env=env,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"`starterkit {' '.join(args)}` failed:\n{result.stdout}{result.stderr}")


def prepare_database(env: dict[str, str], cwd: Path, accounts: Accounts) -> None:
    """Migrate the database and create the superuser (the API cannot make one)."""
    run_cli("migrate", env=env, cwd=cwd)
    admin = accounts.admin_email
    stdin = accounts.admin_password + "\n"
    run_cli("new-user", admin, "--superuser", "--password-stdin", env=env, cwd=cwd, stdin=stdin)


@contextmanager
def serving(cwd: Path, env: dict[str, str], log_path: Path) -> Iterator[str]:
    """Run ``starterkit serve`` with its output in ``log_path``; yield its base URL.

    The log goes to a file, not a pipe: thousands of access-log lines would fill a pipe that
    nobody reads and stall the server.
    """
    port = free_port()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            starterkit_command("serve", "--port", str(port), "--no-migrate"),
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            base_url = f"http://127.0.0.1:{port}"
            try:
                _wait_until_healthy(base_url, process, timeout=60)
            except AssertionError as error:
                raise SystemExit(f"{error}\n{log_path.read_text()}") from None
            yield base_url
        finally:
            stop(process)


def register_user(base_url: str, accounts: Accounts) -> None:
    """Register the ordinary fuzz user through the API and check that it can log in."""
    credentials = {"email": accounts.user_email, "password": accounts.user_password}
    with httpx.Client(base_url=base_url, timeout=30) as client:
        registered = client.post(f"{API}/users", json=credentials)
        if registered.status_code != 201:
            raise SystemExit(f"registration failed: {registered.status_code} {registered.text}")
        login = client.post(f"{API}/auth/login", json=credentials)
        if login.status_code != 200 or not login.json().get("access_token"):
            raise SystemExit(f"login failed: {login.status_code} {login.text}")


def schemathesis_command(base_url: str, args: argparse.Namespace, report_dir: Path) -> list[str]:
    """The ``schemathesis run`` command line of this run.

    Known open findings are in ``baseline.json``: they are reported but do not fail the run,
    while any new failure does. Schemathesis prunes a copy of it in ``report_dir``, so the run
    can tell which entries no longer reproduce.
    """
    return [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(CONFIG),
        "run",
        f"{base_url}/openapi.json",
        "--seed",
        str(args.seed),
        "--max-examples",
        str(args.max_examples),
        "--workers",
        str(args.workers),
        "--report",
        "junit",
        "--report-dir",
        str(report_dir),
        "--baseline",
        str(report_dir / BASELINE.name),
        "--baseline-prune",
        *args.extra,
    ]


def run_schemathesis(
    base_url: str, args: argparse.Namespace, accounts: Accounts, report_dir: Path
) -> int:
    """Fuzz the server; return schemathesis's exit status."""
    shutil.copyfile(BASELINE, report_dir / BASELINE.name)
    command = schemathesis_command(base_url, args, report_dir)
    env = {
        **os.environ,
        **accounts.hooks_environment(base_url),
        "STARTERKIT_FUZZ_AUTH": args.auth,
    }
    # The working folder collects the crash files that `st replay` reads.
    return subprocess.run(command, env=env, cwd=report_dir, check=False).returncode


def server_errors(log_text: str, limit: int = 5) -> list[str]:
    """Up to ``limit`` error records (an ERROR line or a traceback, to the next record)."""
    lines = log_text.splitlines()
    blocks: list[str] = []
    index = 0
    while index < len(lines) and len(blocks) < limit:
        if lines[index].startswith(ERROR_LEVELS) or TRACEBACK in lines[index]:
            end = index + 1
            while end < len(lines) and not lines[end].startswith(LOG_LEVELS):
                end += 1
            blocks.append("\n".join(lines[index:end][:60]))
            index = end
        else:
            index += 1
    return blocks


def stale_baseline_entries(original: Path, pruned: Path) -> list[str]:
    """Entries of the committed baseline that this run no longer reproduced."""

    def labels(path: Path) -> dict[tuple[str, ...], str]:
        entries = json.loads(path.read_text(encoding="utf-8"))["entries"]
        return {
            (entry["operation"], entry["check"], entry["failure"], entry["signature"]): (
                f"{entry['operation']}: {entry['check']} ({entry['signature']})"
            )
            for entry in entries
        }

    kept = labels(pruned)
    return [label for key, label in labels(original).items() if key not in kept]


def delete_redis_keys(prefix: str) -> None:
    """Remove what the run left in the test Redis (everything has a TTL; this is tidiness)."""
    redis_url = os.environ.get("STARTERKIT_TEST_REDIS_URL", "")
    if not redis_url:
        return
    from redis.asyncio import Redis  # noqa: PLC0415 - only needed with Redis

    async def delete() -> None:
        client = Redis.from_url(redis_url)
        try:
            keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()

    asyncio.run(delete())


def review(status: int, report_dir: Path, log_path: Path) -> int:
    """Report stale baseline entries and server errors; the run's final exit status."""
    for entry in stale_baseline_entries(BASELINE, report_dir / BASELINE.name):
        say(f"no longer reproduces; remove it from {BASELINE.name}: {entry}")
    errors = server_errors(log_path.read_text())
    for block in errors:
        say(f"the server logged an error:\n{block}")
    if errors and status == 0:
        say("failing: the server logged errors that no check caught")
        return 1
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Set up database, server and accounts; fuzz; return the exit status."""
    args = parse_args(argv)
    started = time.monotonic()
    accounts = Accounts()
    redis_prefix = f"starterkit-fuzz-{uuid.uuid4().hex[:8]}:"
    with tempfile.TemporaryDirectory(prefix="starterkit-fuzz-") as tmp:
        folder = Path(tmp)
        report_dir = (args.report_dir or folder / "report").resolve()
        report_dir.mkdir(parents=True, exist_ok=True)
        log_path = report_dir / f"server-{args.database}.log"
        try:
            with fuzz_database(args.database, folder) as database_url:
                env = server_environment(database_url, redis_prefix)
                prepare_database(env, folder, accounts)
                with serving(folder, env, log_path) as base_url:
                    register_user(base_url, accounts)
                    say(f"server on {base_url} ({args.database}, {args.auth}); accounts ready")
                    status = run_schemathesis(base_url, args, accounts, report_dir)
        finally:
            delete_redis_keys(redis_prefix)
        status = review(status, report_dir, log_path)
    say(f"{args.database}: exit status {status} after {time.monotonic() - started:.0f}s")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
