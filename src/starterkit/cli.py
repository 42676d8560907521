"""The ``starterkit`` command line: serve, migrate, genkey, new-user, check.

Each command imports what it needs when it runs, so ``starterkit --help`` stays fast. A user
error prints one line starting with ``Error:`` on stderr and exits with status 1; no command
shows a traceback for a problem the user can fix.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer

from starterkit._version import __version__

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from starterkit.app import StarterKit
    from starterkit.db.models import User
    from starterkit.settings import Settings

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    name="starterkit",
    help="Run and manage a starterkit service.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
migrate_app = typer.Typer(
    help="Apply or inspect the database migrations (default: upgrade to the latest).",
    invoke_without_command=True,
)
app.add_typer(migrate_app, name="migrate")


class CLIError(Exception):
    """A problem the user can fix; printed as one line."""


def fail(message: str) -> NoReturn:
    """Print ``Error: message`` on stderr and exit 1."""
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(1)


def friendly_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn the errors a user can cause into one ``Error:`` line and exit status 1."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except typer.Exit:
            raise
        except Exception as error:  # noqa: BLE001 - every failure becomes one clear line
            fail(describe_error(error))

    return wrapper


def describe_error(error: BaseException) -> str:
    """One line saying what went wrong, without SQL, driver internals or secrets."""
    from pydantic import ValidationError  # noqa: PLC0415

    from starterkit.exceptions import StarterKitError  # noqa: PLC0415

    if isinstance(error, CLIError | StarterKitError):
        return str(error)
    if isinstance(error, ValidationError):
        from starterkit.settings import settings_problems  # noqa: PLC0415

        return " ".join(settings_problems(error))
    if type(error).__module__.startswith("alembic"):
        return f"migration failed: {_first_line(error)}"
    if type(error).__module__.startswith("sqlalchemy") or isinstance(error, OSError):
        return f"cannot use the database: {_first_line(getattr(error, 'orig', None) or error)}"
    return f"{type(error).__name__}: {_first_line(error)}"


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def load_settings() -> Settings:
    """Settings from the environment and ``.env``, or one error line per problem."""
    from pydantic import ValidationError  # noqa: PLC0415

    from starterkit.settings import Settings, settings_problems  # noqa: PLC0415

    try:
        return Settings()
    except ValidationError as error:
        problems = settings_problems(error)
        for problem in problems[:-1]:
            typer.echo(f"Error: {problem}", err=True)
        fail(problems[-1])


def masked_url(url: str) -> str:
    """The database URL with its password hidden."""
    from sqlalchemy.engine import make_url  # noqa: PLC0415

    return make_url(url).render_as_string(hide_password=True)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"starterkit {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", help="Show the version and exit.", callback=_version_callback),
    ] = False,
) -> None:
    """Run and manage a starterkit service."""


# --- serve -------------------------------------------------------------------------------


@app.command()
@friendly_errors
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    reload: Annotated[bool, typer.Option(help="Restart when the code changes.")] = False,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    proxy_headers: Annotated[
        bool,
        typer.Option(
            "--proxy-headers",
            help="Believe X-Forwarded-For/-Proto from --forwarded-allow-ips (default: off).",
        ),
    ] = False,
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated proxy IPs whose forwarded headers are believed; implies "
            "--proxy-headers."
        ),
    ] = None,
    no_migrate: Annotated[
        bool, typer.Option("--no-migrate", help="Do not apply pending migrations first.")
    ] = False,
) -> None:
    """Serve the API with uvicorn; in development, migrate first and create missing secrets."""
    import uvicorn  # noqa: PLC0415

    from starterkit.checks import describe_unknown, unknown_variables  # noqa: PLC0415

    unknown = unknown_variables()
    if unknown:
        # A warning, not an error: the variable may belong to another version or tool.
        typer.echo(f"Warning: {describe_unknown(unknown)}.", err=True)
    settings = load_settings()
    if settings.environment == "development":
        settings = _ensure_dev_secrets(settings)
        if not no_migrate:
            _upgrade(settings, "heads")
    typer.echo(
        f"starterkit {__version__} ({settings.environment}) on http://{host}:{port}"
        + (f" - docs at http://{host}:{port}/docs" if settings.docs_enabled else ""),
        err=True,
    )
    uvicorn.run(
        "starterkit.app:create_app",
        factory=True,
        host=host,
        port=port,
        reload=reload,
        workers=None if reload else workers,
        proxy_headers=proxy_headers or forwarded_allow_ips is not None,
        forwarded_allow_ips=forwarded_allow_ips,
        server_header=False,
        log_config=_log_config(),
    )


def _log_config() -> dict[str, Any]:
    """uvicorn's logging, plus starterkit's own loggers at INFO on the same handler."""
    import copy  # noqa: PLC0415

    from uvicorn.config import LOGGING_CONFIG  # noqa: PLC0415

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["starterkit"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def _ensure_dev_secrets(settings: Settings) -> Settings:
    import secrets  # noqa: PLC0415

    from starterkit.envfile import write_env_values  # noqa: PLC0415
    from starterkit.settings import env_name  # noqa: PLC0415

    missing = {
        env_name(field): secrets.token_urlsafe(48)
        for field in ("secret_key", "refresh_token_secret")
        if getattr(settings, field) is None
    }
    if not missing:
        return settings
    path = Path(".env")
    written = write_env_values(path, missing)
    typer.echo(
        f"Generated {' and '.join(written)} into {path.resolve()} (mode 0600); "
        "keep that file out of version control.",
        err=True,
    )
    return load_settings()


# --- migrate -----------------------------------------------------------------------------


def _upgrade(settings: Settings, revision: str) -> None:
    from rich.console import Console  # noqa: PLC0415

    from starterkit.db import migrate  # noqa: PLC0415

    console = Console(stderr=True)
    before = migrate.current_revisions(settings)
    heads = migrate.head_revisions(settings)
    if revision == "heads" and before == heads:
        return
    with console.status(f"Applying migrations to {masked_url(settings.database_url)}…"):
        _quiet_alembic()
        migrate.upgrade(settings, revision)
    after = ", ".join(sorted(migrate.current_revisions(settings))) or "base"
    typer.echo(f"Database migrated to {after}.", err=True)


def _quiet_alembic() -> None:
    import logging  # noqa: PLC0415

    logging.getLogger("alembic").setLevel(logging.WARNING)


@migrate_app.callback()
def _migrate_default(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        upgrade()


@migrate_app.command()
@friendly_errors
def upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "heads",
) -> None:
    """Apply migrations up to REVISION (default: the latest)."""
    settings = load_settings()
    from starterkit.db import migrate  # noqa: PLC0415

    if revision == "heads" and not migrate.pending_revisions(settings):
        typer.echo("Database is already at the latest revision.", err=True)
        return
    _upgrade(settings, revision)


@migrate_app.command()
@friendly_errors
def downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision, e.g. -1 or base.")],
) -> None:
    """Revert migrations down to REVISION ("base" drops every starterkit table)."""
    from starterkit.db import migrate  # noqa: PLC0415

    settings = load_settings()
    _quiet_alembic()
    migrate.downgrade(settings, revision)
    now = ", ".join(sorted(migrate.current_revisions(settings))) or "base"
    typer.echo(f"Database downgraded to {now}.", err=True)


@migrate_app.command()
@friendly_errors
def current() -> None:
    """Show the revision the database is at."""
    from starterkit.db import migrate  # noqa: PLC0415

    settings = load_settings()
    revisions = migrate.current_revisions(settings)
    heads = migrate.head_revisions(settings)
    for revision in sorted(revisions) or ["base"]:
        typer.echo(f"{revision}{' (head)' if revision in heads else ''}")
    if revisions != heads:
        typer.echo("Pending migrations: run `starterkit migrate`.", err=True)


@migrate_app.command()
@friendly_errors
def history() -> None:
    """List the shipped migrations, newest first."""
    from alembic.script import ScriptDirectory  # noqa: PLC0415

    from starterkit.db import migrate  # noqa: PLC0415

    script = ScriptDirectory.from_config(migrate.alembic_config(load_settings()))
    for revision in script.walk_revisions():
        down = revision.down_revision or "base"
        typer.echo(f"{down} -> {revision.revision}: {revision.doc}")


@migrate_app.command("check")
@friendly_errors
def migrate_check() -> None:
    """Fail if the models have changes that no migration contains."""
    from starterkit.db import migrate  # noqa: PLC0415

    settings = load_settings()
    if migrate.pending_revisions(settings):
        raise CLIError("the database is not at the latest revision; run `starterkit migrate`")
    _quiet_alembic()
    migrate.check(settings)
    typer.echo("Models and migrations match.")


# --- genkey ------------------------------------------------------------------------------


@app.command()
@friendly_errors
def genkey(
    env_file: Annotated[
        Path | None,
        typer.Option(help="Write the secrets into this env file (created with mode 0600)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace secrets already in the env file.")
    ] = False,
) -> None:
    """Generate SECRET_KEY and REFRESH_TOKEN_SECRET; print them or write them to a file."""
    import secrets  # noqa: PLC0415

    from starterkit.envfile import write_env_values  # noqa: PLC0415
    from starterkit.settings import env_name  # noqa: PLC0415

    values = {
        env_name("secret_key"): secrets.token_urlsafe(48),
        env_name("refresh_token_secret"): secrets.token_urlsafe(48),
    }
    if env_file is None:
        for key, value in values.items():
            typer.echo(f"{key}={value}")
        return
    written = write_env_values(env_file, values, force=force)
    kept = [key for key in values if key not in written]
    if written:
        typer.echo(f"Wrote {', '.join(written)} to {env_file}.", err=True)
    if kept:
        typer.echo(
            f"Kept the existing {', '.join(kept)} in {env_file}; use --force to replace.",
            err=True,
        )


# --- new-user ----------------------------------------------------------------------------


@app.command("new-user")
@friendly_errors
def new_user(
    email: Annotated[str, typer.Argument(help="Email address of the new account.")],
    superuser: Annotated[
        bool, typer.Option("--superuser", help="Make the account a superuser.")
    ] = False,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    if_not_exists: Annotated[
        bool,
        typer.Option("--if-not-exists", help="Succeed without changes if the email is taken."),
    ] = False,
    full_name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    verified: Annotated[
        bool, typer.Option("--verified", help="Mark the email address as verified.")
    ] = False,
) -> None:
    """Create an account with the same email and password rules as the API."""
    import asyncio  # noqa: PLC0415

    from starterkit.db import migrate  # noqa: PLC0415
    from starterkit.exceptions import EmailTaken  # noqa: PLC0415

    settings = load_settings()
    password = _read_password(from_stdin=password_stdin)
    if migrate.pending_revisions(settings):
        raise CLIError("the database is not at the latest revision; run `starterkit migrate`")
    try:
        user_id = asyncio.run(
            _create_user(
                settings,
                email,
                password,
                superuser=superuser,
                full_name=full_name,
                verified=verified,
            )
        )
    except EmailTaken:
        if if_not_exists:
            typer.echo(f"A user with email {email.strip()} already exists; nothing changed.")
            return
        raise CLIError(f"a user with email {email.strip()} already exists") from None
    kind = "superuser" if superuser else "user"
    typer.echo(f"Created {kind} {email.strip().lower()} (id {user_id}).")


def _read_password(*, from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        password = line.removesuffix("\n").removesuffix("\r")
        if not password:
            raise CLIError("no password on standard input")
        return password
    if not sys.stdin.isatty():
        raise CLIError("no terminal to ask for the password; use --password-stdin")
    typed: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return typed


async def _create_user(
    settings: Settings,
    email: str,
    password: str,
    *,
    superuser: bool,
    full_name: str | None,
    verified: bool,
) -> int:
    from starterkit.app import StarterKit  # noqa: PLC0415
    from starterkit.users.service import create_user  # noqa: PLC0415

    kit = StarterKit(settings)
    try:
        async with kit.sessionmaker() as session:
            user = await create_user(
                session,
                email=email,
                password=password,
                hasher=kit.password_hasher,
                password_min_length=settings.password_min_length,
                full_name=full_name,
                is_superuser=superuser,
                is_verified=verified,
            )
            await session.commit()
            return user.id
    finally:
        await kit.aclose()


# --- account administration ------------------------------------------------------------


def _migrated_settings() -> Settings:
    from starterkit.db import migrate  # noqa: PLC0415

    settings = load_settings()
    if migrate.pending_revisions(settings):
        raise CLIError("the database is not at the latest revision; run `starterkit migrate`")
    return settings


@asynccontextmanager
async def _account(
    settings: Settings, email: str
) -> AsyncIterator[tuple[StarterKit, AsyncSession, User]]:
    """A runtime, a session and the user with ``email``; the runtime is closed afterwards."""
    from starterkit.app import StarterKit  # noqa: PLC0415
    from starterkit.users.service import get_user_by_email  # noqa: PLC0415

    kit = StarterKit(settings)
    try:
        async with kit.sessionmaker() as session:
            user = await get_user_by_email(session, email)
            if user is None:
                raise CLIError(f"no user with email {email.strip()}")
            yield kit, session, user
    finally:
        await kit.aclose()


@app.command("set-password")
@friendly_errors
def set_password(
    email: Annotated[str, typer.Argument(help="Email address of the account.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Set an account's password (same rules as the API) and end all its sessions."""
    import asyncio  # noqa: PLC0415

    settings = _migrated_settings()
    password = _read_password(from_stdin=password_stdin)

    async def run() -> None:
        from starterkit.auth.events import CLI, EventType, record_event  # noqa: PLC0415
        from starterkit.auth.passwords import check_new_password  # noqa: PLC0415
        from starterkit.auth.service import end_all_sessions  # noqa: PLC0415

        async with _account(settings, email) as (kit, session, user):
            check_new_password(password, email=user.email, min_length=settings.password_min_length)
            user.hashed_password = await kit.password_hasher.hash(password)
            now = kit.clock()
            await end_all_sessions(session, user=user, now=now, reason="password-change")
            record_event(
                session, event_type=EventType.PASSWORD_CHANGED, origin=CLI, now=now,
                user_id=user.id,
            )  # fmt: skip
            await session.commit()
            await kit.hooks.fire("on_after_password_change", user, None)

    asyncio.run(run())
    typer.echo(f"Password of {email.strip().lower()} changed; all its sessions ended.")


@app.command()
@friendly_errors
def deactivate(
    email: Annotated[str, typer.Argument(help="Email address of the account.")],
) -> None:
    """Deactivate an account: it can no longer log in, and its sessions end at once."""
    import asyncio  # noqa: PLC0415

    settings = _migrated_settings()

    async def run() -> bool:
        from starterkit.auth.events import CLI, EventType, record_event  # noqa: PLC0415
        from starterkit.users.service import set_user_flags  # noqa: PLC0415

        async with _account(settings, email) as (kit, session, user):
            if not user.is_active:
                return False
            now = kit.clock()
            await set_user_flags(session, user=user, now=now, is_active=False)
            record_event(
                session, event_type=EventType.USER_DEACTIVATED, origin=CLI, now=now,
                user_id=user.id,
            )  # fmt: skip
            await session.commit()
            return True

    changed = asyncio.run(run())
    address = email.strip().lower()
    typer.echo(f"Deactivated {address}." if changed else f"{address} was already inactive.")


@app.command()
@friendly_errors
def events(
    email: Annotated[str, typer.Argument(help="Email address of the account.")],
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 50,
) -> None:
    """Show an account's audit log (logins, logouts, password changes, ...)."""
    import asyncio  # noqa: PLC0415

    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    settings = _migrated_settings()

    async def run() -> list[tuple[str, str, str, str]]:
        from starterkit.auth.events import list_events  # noqa: PLC0415

        async with _account(settings, email) as (_, session, user):
            found, _ = await list_events(session, user_id=user.id, limit=limit, offset=0)
        return [
            (
                e.created_at.isoformat(timespec="seconds"),
                e.event_type,
                e.ip or "",
                e.user_agent or "",
            )
            for e in found
        ]

    rows = asyncio.run(run())
    table = Table(title=f"events of {email.strip().lower()}")
    for column in ("time (UTC)", "event", "ip", "user agent"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    Console(width=max(100, Console().width)).print(table)


# --- check -------------------------------------------------------------------------------


@app.command()
def check() -> None:
    """Check settings, database, migrations and Redis; exit 1 if anything fails."""
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    from starterkit.checks import run_checks  # noqa: PLC0415

    results = run_checks()
    table = Table(title=f"starterkit {__version__}")
    table.add_column("check")
    table.add_column("status")
    table.add_column("detail", overflow="fold")
    for result in results:
        style = {"ok": "green", "warn": "bold yellow", "fail": "bold red", "skip": "yellow"}[
            result.status
        ]
        table.add_row(result.name, f"[{style}]{result.status}[/]", result.detail)
    Console(width=max(100, Console().width)).print(table)
    if any(result.status == "fail" for result in results):
        raise typer.Exit(1)


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the ``starterkit`` console script (and of ``python -m starterkit``)."""
    put_working_directory_on_path()
    return app(args=argv, prog_name="starterkit")


def put_working_directory_on_path() -> None:
    """Make modules in the current directory importable, as ``python -m`` and uvicorn do.

    A console script's ``sys.path`` starts at the script's own folder, so without this
    ``STARTERKIT_MODEL_MODULES`` or a ``package:path`` migration location of a project that
    is not installed would only be found by ``python -m starterkit``.
    """
    cwd = str(Path.cwd())
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
