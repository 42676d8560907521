"""``starterkit genkey``: generate the two secrets, printed or written to an env file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from starterkit.cli.errors import friendly_errors


@friendly_errors
def genkey(
    env_file: Annotated[
        Path | None,
        typer.Option(help="Write the secrets into this env file (created with mode 0600)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace secrets already in the env file.")
    ] = False,
    encryption_key: Annotated[
        bool,
        typer.Option(
            "--encryption-key",
            help="Print one new key for ENCRYPTION_KEYS instead (put it first in the list).",
        ),
    ] = False,
) -> None:
    """Generate SECRET_KEY and REFRESH_TOKEN_SECRET; print them or write them to a file."""
    import secrets  # noqa: PLC0415

    if encryption_key:
        from starterkit.encryption import new_encryption_key  # noqa: PLC0415

        typer.echo(new_encryption_key())
        return

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
