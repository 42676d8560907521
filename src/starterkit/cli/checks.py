"""The checks behind ``starterkit check``: settings, database, migrations and Redis.

Also :func:`unknown_variables`: ``STARTERKIT_*`` variables that no setting reads, which
pydantic-settings ignores without a word, so a typo would otherwise go unnoticed.
"""

from __future__ import annotations

import asyncio
import difflib
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from starterkit.auth.browser import LOOPBACK_HOSTS
from starterkit.cli.errors import (
    describe_error,
    masked_url,
    missing_database_file,
    no_database_at,
)
from starterkit.envfile import read_env_file
from starterkit.settings import ENV_PREFIX, Settings, env_name

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from starterkit.runtime import Runtime
    from starterkit.signing.service import KeyInfo

Status = Literal["ok", "warn", "fail", "skip"]

# STARTERKIT_* variables that are not settings: those of starterkit's own test suite and fuzz run.
NOT_SETTINGS_PREFIXES = ("STARTERKIT_TEST_", "STARTERKIT_FUZZ_")


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check, with a one-line explanation."""

    name: str
    status: Status
    detail: str


@dataclass(frozen=True)
class UnknownVariable:
    """A ``STARTERKIT_*`` variable no setting reads, and the setting it most resembles."""

    name: str
    closest: str | None

    def __str__(self) -> str:
        return f"{self.name} (did you mean {self.closest}?)" if self.closest else self.name


def unknown_variables(
    environ: Mapping[str, str] | None = None, env_file: Path = Path(".env")
) -> list[UnknownVariable]:
    """The ``STARTERKIT_*`` variables of the environment and ``env_file`` that are no setting.

    Args:
        environ: the environment to look at; ``os.environ`` when omitted.
        env_file: the ``.env`` file Settings reads (the one in the working directory).
    """
    fields = sorted(field.upper() for field in Settings.model_fields)
    known = {env_name(field) for field in fields}
    names = {*(os.environ if environ is None else environ), *read_env_file(env_file)}
    # pydantic-settings matches names case-insensitively, so the check does too.
    unknown = [
        name
        for name in sorted(names)
        if name.upper().startswith(ENV_PREFIX)
        and name.upper() not in known
        and not name.upper().startswith(NOT_SETTINGS_PREFIXES)
    ]
    return [UnknownVariable(name, _closest_variable(name, fields)) for name in unknown]


def _closest_variable(name: str, fields: list[str]) -> str | None:
    # Compared without the prefix that every name shares, which would make anything look close.
    closest = difflib.get_close_matches(name[len(ENV_PREFIX) :].upper(), fields, n=1)
    return env_name(closest[0]) if closest else None


def describe_unknown(unknown: list[UnknownVariable]) -> str:
    """One sentence naming each unknown variable and the setting it was probably meant as."""
    names = ", ".join(map(str, unknown))
    if len(unknown) == 1:
        return f"{names} is not a setting and is ignored"
    return f"{names} are not settings and are ignored"


def run_checks(settings: Settings | None = None) -> list[CheckResult]:
    """Run every check; later checks are skipped when the ones they need failed."""
    from pydantic import ValidationError  # noqa: PLC0415

    from starterkit.settings import settings_problems  # noqa: PLC0415

    # A typo'd variable often explains a failing check, so it is reported first.
    unknown = unknown_variables()
    results = [CheckResult("variables", "warn", describe_unknown(unknown))] if unknown else []
    if settings is None:
        try:
            settings = Settings()
        except ValidationError as error:
            detail = " ".join(settings_problems(error))
            return [
                *results,
                CheckResult("settings", "fail", detail),
                CheckResult("database", "skip", "needs valid settings"),
                CheckResult("migrations", "skip", "needs valid settings"),
                CheckResult("redis", "skip", "needs valid settings"),
            ]
    results.append(CheckResult("settings", "ok", f"environment {settings.environment}"))
    results.extend(check_exposure(settings))
    results.append(check_browser_sessions(settings))
    results.append(_check_oauth(settings))
    database = _check_database(settings)
    results.append(database)
    if database.status == "ok":
        migrations = _check_migrations(settings)
        results.append(migrations)
    else:
        migrations = CheckResult("migrations", "skip", "needs the database")
        results.append(migrations)
    if migrations.status == "ok":
        results.append(check_signing_keys(settings))
    else:
        results.append(CheckResult("keys", "skip", "needs the migrated database"))
    results.append(asyncio.run(_check_redis(settings)))
    return results


def _check_oauth(settings: Settings) -> CheckResult:
    from starterkit.cli.oauth_checks import check_oauth_providers  # noqa: PLC0415 - Authlib

    return CheckResult("oauth", *check_oauth_providers(settings))


def check_exposure(settings: Settings) -> list[CheckResult]:
    """What the service shows beyond its API (the docs, the metrics, HSTS) and how it keeps
    secrets at rest."""
    production = settings.is_production
    if settings.docs_enabled:
        docs = CheckResult(
            "docs",
            "warn" if production else "ok",
            "/docs, /redoc and /openapi.json are public"
            + (" in production (DOCS_ENABLED=true)" if production else ""),
        )
    else:
        docs = CheckResult("docs", "ok", "off")
    if settings.metrics_token is not None:
        metrics = CheckResult("metrics", "ok", "/metrics needs METRICS_TOKEN as a bearer token")
    elif production:
        metrics = CheckResult("metrics", "ok", "/metrics answers 404 (no METRICS_TOKEN)")
    else:
        metrics = CheckResult("metrics", "ok", "/metrics is open (set METRICS_TOKEN to close it)")
    if settings.hsts_seconds:
        hsts = CheckResult(
            "hsts", "ok", f"Strict-Transport-Security max-age={settings.hsts_seconds}"
        )
    else:
        hsts = CheckResult(
            "hsts",
            "warn" if production else "ok",
            "off; set HSTS_SECONDS where only HTTPS reaches the service",
        )
    if settings.encryption_keys:
        count = len(settings.encryption_keys)
        encryption = CheckResult(
            "encryption", "ok", f"ENCRYPTION_KEYS: {count} key{'s' if count > 1 else ''}"
        )
    else:
        encryption = CheckResult(
            "encryption",
            "warn" if production else "ok",
            "TOTP secrets use a key derived from SECRET_KEY; set ENCRYPTION_KEYS so that "
            "SECRET_KEY can change without losing them",
        )
    return [docs, metrics, hsts, encryption]


def check_browser_sessions(settings: Settings) -> CheckResult:
    """Whether browser sessions (cookies) can work for the configured front ends: the CORS
    settings, the site of each front end against PUBLIC_URL's, COOKIE_DOMAIN and Secure.

    Sites are compared by their last two host labels (``app.example.com`` and
    ``api.example.com`` are one site), which misjudges suffixes such as ``co.uk``.
    """
    public = urlsplit(settings.public_url)
    public_host = (public.hostname or "").lower()
    problems = []
    if settings.cors_allow_credentials and not settings.cors_origins:
        problems.append(
            "CORS_ALLOW_CREDENTIALS is true but CORS_ORIGINS is empty: no front end on another "
            "origin can use the session cookies"
        )
    if settings.cors_allow_credentials:
        for origin in settings.cors_origins:
            if _site(origin) != _site(settings.public_url):
                problems.append(
                    f"{origin} is another site than PUBLIC_URL ({settings.public_url}): "
                    "browsers do not send SameSite cookies from it; serve the front end and "
                    "the API under one site (app.example.com and api.example.com)"
                )
    domain = settings.cookie_domain
    if domain and public_host != domain and not public_host.endswith(f".{domain}"):
        problems.append(
            f"COOKIE_DOMAIN={domain} does not contain PUBLIC_URL's host {public_host}: "
            "browsers refuse such cookies"
        )
    plain_http = public.scheme == "http" and public_host not in LOOPBACK_HOSTS
    if plain_http and settings.cookie_secure is not False:
        problems.append(
            f"PUBLIC_URL is plain http ({settings.public_url}): browsers keep the Secure "
            "session cookies only over https"
        )
    if problems:
        return CheckResult("cookies", "warn", "; ".join(problems))
    if settings.cors_origins and settings.cors_allow_credentials:
        origins = ", ".join(settings.cors_origins)
        return CheckResult("cookies", "ok", f"browser sessions from this origin and {origins}")
    return CheckResult(
        "cookies",
        "ok",
        "browser sessions from this origin only (set CORS_ORIGINS and "
        "CORS_ALLOW_CREDENTIALS for a front end on another origin)",
    )


def check_signing_keys(settings: Settings) -> CheckResult:
    """The ``keys`` row of ``starterkit check``: which key signs, and whether it is too old."""
    from starterkit.cli.accounts import run_with_session  # noqa: PLC0415
    from starterkit.cli.keys import token_lifetime  # noqa: PLC0415
    from starterkit.signing.service import list_keys as stored_keys  # noqa: PLC0415

    if settings.jwt_algorithm == "HS256":
        return CheckResult("keys", "ok", "HS256 with SECRET_KEY; no keys to publish")
    lifetime = token_lifetime(settings)

    async def run(kit: Runtime, session: AsyncSession) -> tuple[list[KeyInfo], bool, datetime]:
        keyring = kit.tokens.keyring
        assert keyring is not None  # noqa: S101 - an asymmetric algorithm has one
        usable = (await keyring.refresh(create=False)).signer is not None
        return (
            await stored_keys(session, now=kit.clock(), token_lifetime=lifetime),
            usable,
            kit.clock(),
        )

    found, usable, now = run_with_session(settings, run)
    active = next((key for key in found if key.state == "active"), None)
    if active is None or not usable:
        problem = (
            f"the active key {active.kid} cannot be decrypted with ENCRYPTION_KEYS"
            if active is not None
            else "no signing key yet"
        )
        if settings.is_production:
            return CheckResult(
                "keys", "fail", f"{problem}; run `starterkit keys generate --activate`"
            )
        return CheckResult("keys", "warn", f"{problem}; the service makes one when it starts")
    published = sum(1 for key in found if key.state != "expired")
    age = now - (active.activated_at or active.created_at)
    detail = (
        f"{active.algorithm} key {active.kid} signs ({age.days} days old); {published} published"
    )
    max_age = settings.signing_key_max_age_days
    if age > timedelta(days=max_age):
        return CheckResult(
            "keys",
            "warn",
            f"{detail}; it is older than SIGNING_KEY_MAX_AGE_DAYS={max_age}: rotate it "
            "(`starterkit keys generate`, later `starterkit keys rotate`)",
        )
    return CheckResult("keys", "ok", detail)


def _site(url: str) -> str:
    """``scheme://registrable-domain`` approximately: the last two labels of a name."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    try:
        ipaddress.ip_address(host)
    except ValueError:
        host = ".".join(host.split(".")[-2:])
    return f"{parts.scheme}://{host}"


def _check_database(settings: Settings) -> CheckResult:
    async def ping() -> None:
        from sqlalchemy import text  # noqa: PLC0415

        from starterkit.db.engine import create_engine  # noqa: PLC0415

        engine = create_engine(settings)
        try:
            async with asyncio.timeout(10), engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        finally:
            await engine.dispose()

    url = masked_url(settings.database_url)
    missing = missing_database_file(settings)
    if missing is not None:  # connecting would create it, empty
        return CheckResult("database", "fail", no_database_at(missing))
    try:
        asyncio.run(ping())
    except Exception as error:  # noqa: BLE001 - reported, not raised
        return CheckResult("database", "fail", f"{url}: {describe_error(error)}")
    return CheckResult("database", "ok", url)


def _check_migrations(settings: Settings) -> CheckResult:
    from starterkit.db import migrate  # noqa: PLC0415

    try:
        current = migrate.current_revisions(settings)
        heads = migrate.head_revisions(settings)
        applied = migrate.up_to_date(settings, current)
    except Exception as error:  # noqa: BLE001 - reported, not raised
        return CheckResult("migrations", "fail", describe_error(error))
    at = ", ".join(sorted(current)) or "base"
    if not applied:
        return CheckResult(
            "migrations",
            "fail",
            f"at {at}, latest is {', '.join(sorted(heads))}; run `starterkit migrate`",
        )
    return CheckResult("migrations", "ok", f"at {at} (latest)")


async def _check_redis(settings: Settings) -> CheckResult:
    if not settings.redis_url:
        return CheckResult("redis", "skip", "REDIS_URL is empty: in-process limiter and cache")
    from redis.asyncio import Redis  # noqa: PLC0415

    client = Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=2)
    try:
        await client.ping()
    except Exception as error:  # noqa: BLE001 - reported, not raised
        return CheckResult("redis", "fail", f"not reachable: {error}")
    finally:
        await client.aclose()
    return CheckResult("redis", "ok", "reachable")
