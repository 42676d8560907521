"""``starterkit serve``: uvicorn with starterkit's app factory and logging."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from starterkit._version import __version__
from starterkit.cli.errors import CLIError, friendly_errors, load_settings
from starterkit.cli.migrate import upgrade_database
from starterkit.logs import say

if TYPE_CHECKING:
    from starterkit.settings import Settings


@friendly_errors
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(min=1, max=65535, envvar="PORT", help="Port to listen on."),
    ] = 8000,
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
    access_log: Annotated[
        bool, typer.Option(help="Log one line per request (method, route, status, duration).")
    ] = True,
    app: Annotated[
        str,
        typer.Option(
            help="MODULE:FACTORY of the app to serve: a function that returns it (your "
            "project's, from `starterkit new`)."
        ),
    ] = "starterkit.app:create_app",
) -> None:
    """Serve the API with uvicorn; in development, migrate first and create missing secrets."""
    import uvicorn  # noqa: PLC0415

    from starterkit.cli.checks import describe_unknown, unknown_variables  # noqa: PLC0415
    from starterkit.logs import logging_config  # noqa: PLC0415

    unknown = unknown_variables()
    if unknown:
        # A warning, not an error: the variable may belong to another version or tool.
        say(f"{describe_unknown(unknown)}.", warning=True)
    settings = load_settings()
    if settings.environment == "development":
        settings = _ensure_dev_secrets(settings)
        _link_mails_here(settings, host, port)
        if not no_migrate:
            upgrade_database(settings, "heads")
    if settings.is_production:
        _require_signing_key(settings)
    for warning in serve_warnings(settings, host=host, workers=workers):
        say(warning, warning=True)
    say(
        f"starterkit {__version__} ({settings.environment}) on http://{host}:{port}"
        + (f" - docs at http://{host}:{port}/docs" if settings.docs_enabled else "")
    )
    uvicorn.run(
        app,
        factory=True,
        host=host,
        port=port,
        reload=reload,
        workers=None if reload else workers,
        proxy_headers=proxy_headers or forwarded_allow_ips is not None,
        forwarded_allow_ips=forwarded_allow_ips,
        server_header=False,
        access_log=False,  # starterkit.access writes the access lines (see starterkit.logs)
        log_config=logging_config(settings.log_format, access_log=access_log),
    )


def _require_signing_key(settings: Settings) -> None:
    """Production never makes a key on its own: without one, refuse to start.

    A database that cannot be asked (away, not migrated yet) is left to the health checks,
    which say so; serving then starts as it always did.
    """
    from starterkit.cli.keys import signing_key_problem  # noqa: PLC0415

    try:
        problem = signing_key_problem(settings)
    except Exception:  # noqa: BLE001 - reported by /health and the logs instead
        return
    if problem is not None:
        raise CLIError(problem.rstrip("."))


def serve_warnings(settings: Settings, *, host: str, workers: int) -> list[str]:
    """What about this way of serving deserves a second look, one sentence each."""
    warnings = []
    if workers > 1 and not settings.redis_url:
        warnings.append(
            f"{workers} workers without REDIS_URL: each keeps its own rate-limit counters and "
            "cache, so limits allow up to that many times as much; set REDIS_URL to share them"
        )
    loopback = host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")
    if settings.environment == "development" and not loopback:
        warnings.append(
            f"development mode on {host}: others can reach this server, and the console mail "
            "backend writes password-reset links into this log; use ENVIRONMENT=production "
            "with a real mail backend for anything others use"
        )
    return warnings


def _link_mails_here(settings: Settings, host: str, port: int) -> None:
    """Unless PUBLIC_URL is set, make mailed links point at this server (development only).

    The workers read their settings from the environment, which they inherit from here.
    """
    import os  # noqa: PLC0415

    from starterkit.settings import env_name  # noqa: PLC0415

    if "public_url" in settings.model_fields_set:
        return
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - compared
    if ":" in shown:
        shown = f"[{shown}]"
    os.environ[env_name("public_url")] = f"http://{shown}:{port}"


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
    say(
        f"Generated {' and '.join(written)} into {path.resolve()} (mode 0600); "
        "keep that file out of version control."
    )
    return load_settings()
