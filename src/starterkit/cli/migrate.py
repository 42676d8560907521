"""``starterkit migrate``: apply or inspect the migrations (starterkit's and your own)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from starterkit.cli.errors import (
    friendly_errors,
    load_settings,
    masked_url,
    migrated_settings,
    missing_database_file,
)
from starterkit.logs import say

if TYPE_CHECKING:
    from starterkit.settings import Settings

app = typer.Typer(
    help="Apply or inspect the database migrations (default: upgrade to the latest).",
    invoke_without_command=True,
)


def upgrade_database(settings: Settings, revision: str) -> None:
    """Apply migrations up to ``revision``, with progress on stderr; quiet when up to date."""
    from rich.console import Console  # noqa: PLC0415

    from starterkit.db import migrate  # noqa: PLC0415

    console = Console(stderr=True)
    if revision != "heads" or migrate.pending_revisions(settings):
        with console.status(f"Applying migrations to {masked_url(settings.database_url)}…"):
            _quiet_alembic()
            migrate.upgrade(settings, revision)
        after = ", ".join(sorted(migrate.current_revisions(settings))) or "base"
        say(f"Database migrated to {after}.")
    if revision == "heads":
        _first_signing_key(settings)


def _first_signing_key(settings: Settings) -> None:
    """A fresh install signs with a key of JWT_ALGORITHM with no step of its own."""
    from starterkit.cli.keys import first_key_if_missing  # noqa: PLC0415

    kid = first_key_if_missing(settings)
    if kid is not None:
        say(f"Made signing key {kid} ({settings.jwt_algorithm}).")


def _quiet_alembic() -> None:
    import logging  # noqa: PLC0415

    logging.getLogger("alembic").setLevel(logging.WARNING)


@app.callback()
def _migrate_default(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        upgrade()


@app.command()
@friendly_errors
def upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "heads",
) -> None:
    """Apply migrations up to REVISION (default: the latest)."""
    from starterkit.db import migrate  # noqa: PLC0415

    settings = load_settings()
    if revision == "heads" and not migrate.pending_revisions(settings):
        typer.echo("Database is already at the latest revision.", err=True)
        _first_signing_key(settings)
        return
    upgrade_database(settings, revision)


@app.command()
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


@app.command()
@friendly_errors
def current() -> None:
    """Show the revision the database is at."""
    from starterkit.db import migrate  # noqa: PLC0415

    settings = load_settings()
    missing = missing_database_file(settings)
    if missing is not None:
        typer.echo("base")
        typer.echo(f"There is no database at {missing} yet: run `starterkit migrate`.", err=True)
        return
    revisions = migrate.current_revisions(settings)
    heads = migrate.head_revisions(settings)
    for revision in sorted(revisions) or ["base"]:
        typer.echo(f"{revision}{' (head)' if revision in heads else ''}")
    if not migrate.up_to_date(settings, revisions):
        typer.echo("Pending migrations: run `starterkit migrate`.", err=True)


@app.command()
@friendly_errors
def history() -> None:
    """List the shipped migrations, newest first."""
    from alembic.script import ScriptDirectory  # noqa: PLC0415

    from starterkit.db import migrate  # noqa: PLC0415

    script = ScriptDirectory.from_config(migrate.alembic_config(load_settings()))
    for revision in script.walk_revisions():
        down = revision.down_revision or "base"
        typer.echo(f"{down} -> {revision.revision}: {revision.doc}")


@app.command()
@friendly_errors
def revision(
    message: Annotated[str, typer.Option("--message", "-m", help="What the migration does.")],
    autogenerate: Annotated[
        bool,
        typer.Option(
            "--autogenerate", help="Compare your models (MODEL_MODULES) with the database."
        ),
    ] = False,
    empty: Annotated[
        bool,
        typer.Option("--empty", help="With --autogenerate, write a file even without changes."),
    ] = False,
    branch: Annotated[
        str | None,
        typer.Option(help="Branch label of your first migration (default: your package's name)."),
    ] = None,
) -> None:
    """Write a migration for your own models into MIGRATION_LOCATIONS (never starterkit's)."""
    from starterkit.cli.errors import CLIError  # noqa: PLC0415
    from starterkit.db import migrate  # noqa: PLC0415

    settings = load_settings()
    migrate.require_revision_settings(settings, autogenerate=autogenerate)
    if autogenerate:
        missing = missing_database_file(settings)
        if missing is not None or migrate.pending_revisions(settings):
            raise CLIError(
                "--autogenerate compares with a database at the latest revision; run "
                "`starterkit migrate` first"
            )
    _quiet_alembic()
    written = migrate.write_revision(
        settings, message, autogenerate=autogenerate, empty=empty, branch=branch
    )
    if written is None:
        typer.echo("No changes in your models; nothing written (--empty writes a file anyway).")
        return
    typer.echo(f"Wrote {written}; apply it with `starterkit migrate`.")


@app.command("check")
@friendly_errors
def check() -> None:
    """Fail if the models have changes that no migration contains."""
    from starterkit.db import migrate  # noqa: PLC0415

    settings = migrated_settings()
    _quiet_alembic()
    migrate.check(settings)
    typer.echo("Models and migrations match.")
