"""The ``oauth`` row of ``starterkit check``: each social-login provider, and whether the
OpenID Connect ones answer with a usable discovery document."""

from __future__ import annotations

import asyncio
from typing import Literal

from starterkit.settings import Settings

CHECK_TIMEOUT_SECONDS = 5.0


def check_oauth_providers(settings: Settings) -> tuple[Literal["ok", "warn"], str]:
    """Fetch the discovery document of every OpenID Connect provider (in parallel, 5 s each)
    and say which answered; name the callback URL each provider must have registered.

    Returns:
        The status and detail of the ``oauth`` row.
    """
    if not settings.oauth_providers:
        return "ok", "no social-login providers (OAUTH_PROVIDERS is empty)"
    problems, fine = asyncio.run(_probe(settings))
    if settings.is_production and not settings.oauth_callback_base_url:
        problems.append(
            "OAUTH_CALLBACK_BASE_URL is unset: the callback URL follows each request's Host "
            "header; set it to the API's public base URL"
        )
    base = settings.oauth_callback_base_url
    if base:
        path = f"{settings.api_prefix}/auth/oauth/{{name}}/callback"
        fine.append(f"register the callback {base}{path} at each provider")
    if problems:
        return "warn", "; ".join([*problems, *fine])
    return "ok", "; ".join(fine)


async def _probe(settings: Settings) -> tuple[list[str], list[str]]:
    from starterkit.oauth.clients import OIDCClient, ProviderUnavailable  # noqa: PLC0415

    async def probe(client: OIDCClient) -> str | None:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
                await client.metadata()
        except ProviderUnavailable as error:
            return f"{client.config.name}: {error}"
        except TimeoutError:
            return f"{client.config.name}: {client.discovery_url} gave no answer within 5 seconds"
        return None

    oidc = [
        OIDCClient(config) for config in settings.oauth_providers.values() if config.kind == "oidc"
    ]
    failures = await asyncio.gather(*(probe(client) for client in oidc))
    problems = [failure for failure in failures if failure is not None]
    failed = {client.config.name for client, failure in zip(oidc, failures, strict=True) if failure}
    fine = []
    for name, config in settings.oauth_providers.items():
        if config.kind == "github":
            fine.append(f"{name}: GitHub at {config.github_url}")
        elif name not in failed:
            fine.append(f"{name}: {config.issuer} answers")
    return problems, fine
