"""The ``starterkit`` command line: serve, migrate, genkey, account commands, check.

Each command lives in a small module of this package and imports what it needs when it runs,
so ``starterkit --help`` stays fast; this module only puts them together. A user error prints
one line starting with ``Error:`` on stderr and exits with status 1; no command shows a
traceback for a problem the user can fix (see :mod:`starterkit.cli.errors`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from starterkit._version import __version__
from starterkit.cli import accounts, check, genkey, keys, migrate, new, serve
from starterkit.logs import configure_cli_logging

app = typer.Typer(
    name="starterkit",
    help="Run and manage a starterkit service.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


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


app.command()(serve.serve)
app.add_typer(migrate.app, name="migrate")
app.command()(genkey.genkey)
app.add_typer(keys.app, name="keys")
app.command("new-user")(accounts.new_user)
app.command("set-password")(accounts.set_password)
app.command()(accounts.deactivate)
app.command("mfa-reset")(accounts.mfa_reset)
app.command()(accounts.reencrypt)
app.command()(accounts.events)
app.command()(check.check)
app.command()(new.new)


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the ``starterkit`` console script (and of ``python -m starterkit``)."""
    put_working_directory_on_path()
    configure_cli_logging()
    return app(args=argv, prog_name="starterkit")


def put_working_directory_on_path() -> None:
    """Make modules in the current directory importable, as ``python -m`` and uvicorn do.

    A console script's ``sys.path`` starts at the script's own folder, so without this
    ``STARTERKIT_MODEL_MODULES`` or a ``package:path`` migration location of a project that
    is not installed would only be found by ``python -m starterkit``. The folder goes last:
    a ``rich.py`` or ``typer.py`` lying there must not stand in for an installed package.
    """
    cwd = str(Path.cwd())
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)
