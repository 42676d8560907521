"""The checks behind ``starterkit check``: settings, database, migrations and Redis."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

from starterkit.settings import Settings

Status = Literal["ok", "fail", "skip"]


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check, with a one-line explanation."""

    name: str
    status: Status
    detail: str


def run_checks(settings: Settings | None = None) -> list[CheckResult]:
    """Run every check; later checks are skipped when the ones they need failed."""
    from pydantic import ValidationError  # noqa: PLC0415

    from starterkit.settings import settings_problems  # noqa: PLC0415

    if settings is None:
        try:
            settings = Settings()
        except ValidationError as error:
            detail = " ".join(settings_problems(error))
            return [
                CheckResult("settings", "fail", detail),
                CheckResult("database", "skip", "needs valid settings"),
                CheckResult("migrations", "skip", "needs valid settings"),
                CheckResult("redis", "skip", "needs valid settings"),
            ]
    results = [CheckResult("settings", "ok", f"environment {settings.environment}")]
    database = _check_database(settings)
    results.append(database)
    if database.status == "ok":
        results.append(_check_migrations(settings))
    else:
        results.append(CheckResult("migrations", "skip", "needs the database"))
    results.append(asyncio.run(_check_redis(settings)))
    return results


def _check_database(settings: Settings) -> CheckResult:
    from starterkit.cli import describe_error, masked_url  # noqa: PLC0415

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
    try:
        asyncio.run(ping())
    except Exception as error:  # noqa: BLE001 - reported, not raised
        return CheckResult("database", "fail", f"{url}: {describe_error(error)}")
    return CheckResult("database", "ok", url)


def _check_migrations(settings: Settings) -> CheckResult:
    from starterkit.cli import describe_error  # noqa: PLC0415
    from starterkit.db import migrate  # noqa: PLC0415

    try:
        current = migrate.current_revisions(settings)
        heads = migrate.head_revisions(settings)
    except Exception as error:  # noqa: BLE001 - reported, not raised
        return CheckResult("migrations", "fail", describe_error(error))
    at = ", ".join(sorted(current)) or "base"
    if current != heads:
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
