"""How the commands fail and load their settings: one ``Error:`` line, never a traceback.

Imports stay inside the functions that need them, so ``starterkit --help`` stays fast.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, ParamSpec, TypeVar

import typer

if TYPE_CHECKING:
    from starterkit.settings import Settings

P = ParamSpec("P")
R = TypeVar("R")

NOT_MIGRATED = "the database is not at the latest revision; run `starterkit migrate`"


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
    if isinstance(error, OSError) and error.filename is not None:
        # A file the command reads or writes (an env file, .env in a read-only folder).
        path = Path(os.fsdecode(error.filename)).absolute()
        return f"cannot use the file {path}: {error.strerror or _first_line(error)}"
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


def migrated_settings() -> Settings:
    """Settings of a database at the latest revision, or the error that says to migrate."""
    settings = load_settings()
    require_migrated(settings)
    return settings


def require_migrated(settings: Settings) -> None:
    """Raise the error that says to migrate unless the database is at the latest revision.

    A SQLite file that does not exist is not created (connecting would create it empty):
    the error names the file that was looked for.
    """
    from starterkit.db import migrate  # noqa: PLC0415

    missing = missing_database_file(settings)
    if missing is not None:
        raise CLIError(no_database_at(missing))
    if migrate.pending_revisions(settings):
        raise CLIError(NOT_MIGRATED)


def missing_database_file(settings: Settings) -> str | None:
    """The absolute path of a SQLite database file that does not exist, else None."""
    from starterkit.db.engine import sqlite_file_of  # noqa: PLC0415

    path = sqlite_file_of(settings)
    if path is None or Path(path).exists():
        return None
    return str(Path(path).resolve())


def no_database_at(path: str) -> str:
    """The sentence for a command run where there is no database (yet)."""
    return (
        f"no database at {path}; run `starterkit migrate` to create it, or run this where "
        "the project's database is (or set STARTERKIT_DATABASE_URL)"
    )


def masked_url(url: str) -> str:
    """The database URL with its password hidden."""
    from sqlalchemy.engine import make_url  # noqa: PLC0415

    return make_url(url).render_as_string(hide_password=True)
