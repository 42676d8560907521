"""``starterkit keys``: list, generate, rotate and retire the keys that sign access tokens.

The keys live in the database (private parts encrypted with ENCRYPTION_KEYS), so every
instance shares them and follows a change within KEYSET_REFRESH_SECONDS. The rotation
procedure is in the docs (Signing keys): ``generate`` (published, not signing), wait until
verifiers have fetched the JWKS, ``rotate`` (the new key signs), and once the old key's tokens
have expired it can go with ``retire``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from starterkit.cli.errors import CLIError, friendly_errors, migrated_settings
from starterkit.logs import say

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from starterkit.runtime import Runtime
    from starterkit.settings import Settings
    from starterkit.signing.jwk import AsymmetricAlgorithm
    from starterkit.signing.service import KeyInfo

app = typer.Typer(help="List, generate, rotate and retire the keys that sign access tokens.")

HS256_IN_USE = (
    "JWT_ALGORITHM is HS256: access tokens are signed with SECRET_KEY and there are no keys; "
    "set JWT_ALGORITHM=EdDSA (or ES256, RS256) to sign with keys"
)


def token_lifetime(settings: Settings) -> timedelta:
    """How long a retired key stays valid: the access-token lifetime and the clock skew."""
    return timedelta(
        minutes=settings.access_token_expire_minutes, seconds=settings.clock_skew_seconds
    )


def _algorithm(settings: Settings) -> AsymmetricAlgorithm:
    if settings.jwt_algorithm == "HS256":
        raise CLIError(HS256_IN_USE)
    return settings.jwt_algorithm


@app.command("list")
@friendly_errors
def list_keys() -> None:
    """Show every signing key, newest first: kid, algorithm, state and dates."""
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    from starterkit.cli.accounts import run_with_session  # noqa: PLC0415
    from starterkit.signing.service import list_keys as stored_keys  # noqa: PLC0415

    settings = migrated_settings()

    async def run(kit: Runtime, session: AsyncSession) -> list[KeyInfo]:
        return await stored_keys(session, now=kit.clock(), token_lifetime=token_lifetime(settings))

    found = run_with_session(settings, run)
    if not found:
        typer.echo("No signing keys yet: `starterkit keys generate --activate` makes one.")
        return
    table = Table("kid", "algorithm", "state", "created", "activated", "retired")
    for key in found:
        table.add_row(
            key.kid,
            key.algorithm,
            key.state,
            f"{key.created_at:%Y-%m-%d %H:%M}",
            f"{key.activated_at:%Y-%m-%d %H:%M}" if key.activated_at else "",
            f"{key.retired_at:%Y-%m-%d %H:%M}" if key.retired_at else "",
        )
    Console(width=160).print(table)


@app.command()
@friendly_errors
def generate(
    activate: Annotated[
        bool,
        typer.Option(
            "--activate",
            help="Sign with it at once (only for a first key: verifiers elsewhere may not "
            "have fetched it yet).",
        ),
    ] = False,
) -> None:
    """Make a new key of JWT_ALGORITHM: published in the JWKS, signing after `keys rotate`."""
    from starterkit.cli.accounts import run_with_session  # noqa: PLC0415
    from starterkit.signing.service import generate_key  # noqa: PLC0415

    settings = migrated_settings()
    algorithm = _algorithm(settings)

    async def run(kit: Runtime, session: AsyncSession) -> str:
        key = await generate_key(
            session, algorithm=algorithm, box=kit.mfa_keys.box, now=kit.clock(), activate=activate
        )
        await session.commit()
        return key.kid

    kid = run_with_session(settings, run)
    if activate:
        say(f"Made signing key {kid} ({algorithm}); it signs new tokens now.")
    else:
        say(
            f"Made signing key {kid} ({algorithm}); it is published and signs after "
            "`starterkit keys rotate`."
        )


@app.command()
@friendly_errors
def rotate() -> None:
    """Sign with the newest generated key (or a new one); the old key keeps verifying."""
    from starterkit.cli.accounts import run_with_session  # noqa: PLC0415
    from starterkit.signing.service import rotate_keys  # noqa: PLC0415

    settings = migrated_settings()
    algorithm = _algorithm(settings)

    async def run(kit: Runtime, session: AsyncSession) -> str:
        key = await rotate_keys(session, algorithm=algorithm, box=kit.mfa_keys.box, now=kit.clock())
        await session.commit()
        return key.kid

    kid = run_with_session(settings, run)
    say(
        f"Signing key {kid} is active; running instances use it within "
        f"{settings.keyset_refresh_seconds} s. Retire the previous key with `starterkit keys "
        "retire KID`."
    )


@app.command()
@friendly_errors
def retire(kid: Annotated[str, typer.Argument(help="The kid of the key to retire.")]) -> None:
    """Retire a key: it verifies until the tokens it signed have expired, then it is gone."""
    from starterkit.cli.accounts import run_with_session  # noqa: PLC0415
    from starterkit.exceptions import StarterKitError  # noqa: PLC0415
    from starterkit.signing.service import retire_key  # noqa: PLC0415

    settings = migrated_settings()
    _algorithm(settings)
    lifetime = token_lifetime(settings)

    async def run(kit: Runtime, session: AsyncSession) -> None:
        try:
            await retire_key(session, kid=kid, now=kit.clock(), token_lifetime=lifetime)
        except StarterKitError as error:
            raise CLIError(error.detail.rstrip(".")) from None
        await session.commit()

    run_with_session(settings, run)
    minutes = int(lifetime.total_seconds() // 60)
    say(f"Retired signing key {kid}; it stays published and valid for {minutes} more minutes.")


def first_key_if_missing(settings: Settings) -> str | None:
    """After migrating: make and activate the first signing key when there is no usable
    one (an asymmetric JWT_ALGORITHM only); its kid, or None when nothing was needed."""
    if settings.jwt_algorithm == "HS256":
        return None
    if settings.secret_key is None and not settings.encryption_keys:
        # This process's random secret would encrypt the private key for nobody else; the
        # first `serve` (which writes SECRET_KEY into .env first) makes the key instead.
        return None
    from starterkit.cli.accounts import run_with_session  # noqa: PLC0415

    async def run(kit: Runtime, _session: AsyncSession) -> str | None:
        keyring = kit.tokens.keyring
        assert keyring is not None  # noqa: S101 - an asymmetric algorithm has one
        before = await keyring.refresh(create=False)
        if before.signer is not None:
            return None
        keyset = await keyring.refresh(create=True, force_create=True)
        return keyset.signer[0] if keyset.signer is not None else None

    return run_with_session(settings, run)


def signing_key_problem(settings: Settings) -> str | None:
    """Why tokens cannot be signed with this database's keys (None: they can)."""
    if settings.jwt_algorithm == "HS256":
        return None
    from starterkit.cli.accounts import run_with_session  # noqa: PLC0415
    from starterkit.signing.keyring import NO_KEYS  # noqa: PLC0415

    async def run(kit: Runtime, _session: AsyncSession) -> bool:
        keyring = kit.tokens.keyring
        assert keyring is not None  # noqa: S101 - an asymmetric algorithm has one
        return (await keyring.refresh(create=False)).signer is not None

    if run_with_session(settings, run):
        return None
    return NO_KEYS.format(algorithm=settings.jwt_algorithm)
