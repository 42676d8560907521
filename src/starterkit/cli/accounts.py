"""Account commands: ``new-user``, ``set-password``, ``deactivate``, ``mfa-reset``, ``events``
and ``reencrypt``.

Each calls the same account action as the API (see :mod:`starterkit.users.service`), with the
CLI as the audit log's origin, and commits; the heavy imports happen when a command runs, so
``starterkit --help`` stays fast.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from starterkit.cli.errors import (
    CLIError,
    friendly_errors,
    load_settings,
    migrated_settings,
    require_migrated,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from starterkit.db.models import User
    from starterkit.runtime import Runtime
    from starterkit.settings import Settings

T = TypeVar("T")

Email = Annotated[str, typer.Argument(help="Email address of the account.")]
PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input.")
]


@friendly_errors
def new_user(
    email: Annotated[str, typer.Argument(help="Email address of the new account.")],
    superuser: Annotated[
        bool, typer.Option("--superuser", help="Make the account a superuser.")
    ] = False,
    password_stdin: PasswordStdin = False,
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
    from starterkit.audit import CLI  # noqa: PLC0415
    from starterkit.exceptions import EmailTaken  # noqa: PLC0415
    from starterkit.users.service import create_user  # noqa: PLC0415

    settings = load_settings()
    password = read_password(from_stdin=password_stdin)
    require_migrated(settings)

    async def create(kit: Runtime, session: AsyncSession) -> int:
        user = await create_user(
            session,
            email=email,
            password=password,
            hasher=kit.password_hasher,
            password_min_length=settings.password_min_length,
            full_name=full_name,
            is_superuser=superuser,
            is_verified=verified,
            origin=CLI,
            now=kit.clock(),
        )
        await session.commit()
        return user.id

    try:
        user_id = run_with_session(settings, create)
    except EmailTaken:
        if if_not_exists:
            typer.echo(f"A user with email {email.strip()} already exists; nothing changed.")
            return
        raise CLIError(f"a user with email {email.strip()} already exists") from None
    kind = "superuser" if superuser else "user"
    typer.echo(f"Created {kind} {email.strip().lower()} (id {user_id}).")


@friendly_errors
def set_password(email: Email, password_stdin: PasswordStdin = False) -> None:
    """Set an account's password (same rules as the API) and end all its sessions."""
    from starterkit.audit import CLI  # noqa: PLC0415
    from starterkit.exceptions import NotFound  # noqa: PLC0415
    from starterkit.users import service  # noqa: PLC0415

    settings = migrated_settings()
    password = read_password(from_stdin=password_stdin)

    async def change(kit: Runtime, session: AsyncSession) -> None:
        user = await _user_with_email(session, email)
        await service.set_password(
            session,
            user=user,
            new_password=password,
            hasher=kit.password_hasher,
            password_min_length=settings.password_min_length,
            origin=CLI,
            now=kit.clock(),
            stale=NotFound(f"the account {email.strip()} changed meanwhile; try again"),
        )
        await session.commit()
        await kit.hooks.after_password_change(user, None)

    run_with_session(settings, change)
    typer.echo(f"Password of {email.strip().lower()} changed; all its sessions ended.")


@friendly_errors
def deactivate(email: Email) -> None:
    """Deactivate an account: it can no longer log in, and its sessions end at once."""
    from starterkit.audit import CLI  # noqa: PLC0415
    from starterkit.users.service import update_user  # noqa: PLC0415

    async def run(kit: Runtime, session: AsyncSession) -> bool:
        user = await _user_with_email(session, email)
        if not user.is_active:
            return False
        await update_user(
            session, user=user, actor=None, is_active=False, origin=CLI, now=kit.clock()
        )
        await session.commit()
        return True

    changed = run_with_session(migrated_settings(), run)
    address = email.strip().lower()
    typer.echo(f"Deactivated {address}." if changed else f"{address} was already inactive.")


@friendly_errors
def mfa_reset(email: Email) -> None:
    """Remove an account's second factors and end its sessions (a lost phone): the next login
    asks for the password only."""
    from starterkit.audit import CLI  # noqa: PLC0415
    from starterkit.mfa.service import reset_mfa  # noqa: PLC0415

    async def run(kit: Runtime, session: AsyncSession) -> bool:
        user = await _user_with_email(session, email)
        had = await reset_mfa(session, user=user, origin=CLI, now=kit.clock())
        await session.commit()
        await kit.hooks.after_mfa_reset(user, None)
        return had

    had = run_with_session(migrated_settings(), run)
    address = email.strip().lower()
    if had:
        typer.echo(f"Removed the second factors of {address}; all its sessions ended.")
    else:
        typer.echo(f"{address} had no second factor; all its sessions ended.")


@friendly_errors
def reencrypt() -> None:
    """Encrypt every stored TOTP secret and signing key with the first key of ENCRYPTION_KEYS
    (after adding a new key in front); then the older keys can be dropped."""
    from starterkit.encryption import UndecryptableSecret  # noqa: PLC0415
    from starterkit.mfa.service import reencrypt_secrets  # noqa: PLC0415
    from starterkit.signing.service import reencrypt_keys  # noqa: PLC0415

    async def run(kit: Runtime, session: AsyncSession) -> int:
        try:
            changed = await reencrypt_secrets(session, keys=kit.mfa_keys)
            changed += await reencrypt_keys(session, box=kit.mfa_keys.box)
        except UndecryptableSecret:
            raise CLIError(
                "a stored secret cannot be decrypted with any key of ENCRYPTION_KEYS; put "
                "back the key it was encrypted with (nothing was changed)"
            ) from None
        await session.commit()
        return changed

    changed = run_with_session(migrated_settings(), run)
    typer.echo(f"Re-encrypted {changed} secrets with the newest key.")


@friendly_errors
def events(
    email: Email,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 50,
) -> None:
    """Show an account's audit log (logins, logouts, password changes, ...)."""
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    from starterkit.audit import list_events  # noqa: PLC0415

    async def run(_kit: Runtime, session: AsyncSession) -> list[tuple[str, str, str, str]]:
        user = await _user_with_email(session, email)
        found, _ = await list_events(session, user_id=user.id, limit=limit, offset=0)
        return [
            (
                event.created_at.isoformat(timespec="seconds"),
                event.event_type,
                event.ip or "",
                event.user_agent or "",
            )
            for event in found
        ]

    rows = run_with_session(migrated_settings(), run)
    table = Table(title=f"events of {email.strip().lower()}")
    for column in ("time (UTC)", "event", "ip", "user agent"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    Console(width=max(100, Console().width)).print(table)


def read_password(*, from_stdin: bool) -> str:
    """The password from one line of standard input, or asked twice (hidden) at a terminal."""
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


def run_with_session(
    settings: Settings, work: Callable[[Runtime, AsyncSession], Awaitable[T]]
) -> T:
    """Run ``work`` with a runtime for ``settings`` and a session; close both afterwards."""
    import asyncio  # noqa: PLC0415 - costs `starterkit --help` 30 ms at the top

    @asynccontextmanager
    async def opened() -> AsyncIterator[tuple[Runtime, AsyncSession]]:
        from starterkit.runtime import Runtime  # noqa: PLC0415

        kit = Runtime(settings)
        try:
            async with kit.sessionmaker() as session:
                yield kit, session
        finally:
            await kit.aclose()

    async def run() -> T:
        async with opened() as (kit, session):
            return await work(kit, session)

    return asyncio.run(run())


async def _user_with_email(session: AsyncSession, email: str) -> User:
    from starterkit.users.service import get_user_by_email  # noqa: PLC0415

    user = await get_user_by_email(session, email)
    if user is None:
        raise CLIError(f"no user with email {email.strip()}")
    return user
