"""The provider clients on their own, against the loopback servers: what they send, what they
accept, and which failure is which (unavailable vs refused)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from starterkit.cli.oauth_checks import check_oauth_providers
from starterkit.oauth.clients import (
    ExternalIdentity,
    OIDCClient,
    ProviderRefused,
    ProviderUnavailable,
    build_client,
)
from starterkit.oauth.providers import parse_providers
from starterkit.settings import Settings
from tests.support.github_server import GitHubEmail, GitHubServer, GitHubUser
from tests.support.oidc import OIDCProvider, oidc_provider

pytestmark = pytest.mark.anyio

CALLBACK = "http://127.0.0.1:9/callback"
VERIFIER = "v" * 64


@pytest.fixture(scope="module")
def provider() -> Iterator[OIDCProvider]:
    with oidc_provider() as running:
        yield running


def oidc(issuer: str) -> OIDCClient:
    config = parse_providers({"p": {"issuer": issuer, "client_id": "c", "client_secret": "s"}})
    client = build_client(config["p"])
    assert isinstance(client, OIDCClient)
    return client


def code_of(location: str) -> str:
    return parse_qs(urlsplit(location).query)["code"][0]


async def test_an_oidc_login_gives_the_identity(provider: OIDCProvider) -> None:
    provider.add_user("u-1", email="U@Example.com", email_verified=True, name="U")
    client = oidc(provider.issuer)
    url = await client.authorization_url(
        redirect_uri=CALLBACK, state="st", nonce="no", code_verifier=VERIFIER
    )
    sent = parse_qs(urlsplit(url).query)
    assert sent["code_challenge_method"] == ["S256"]
    assert sent["nonce"] == ["no"]
    code = code_of(provider.consent(url, "u-1"))
    identity = await client.identity(
        code=code, redirect_uri=CALLBACK, code_verifier=VERIFIER, nonce="no"
    )
    assert identity == ExternalIdentity(
        subject="u-1", email="u@example.com", email_verified=True, name="U"
    )
    # The code is single use at the provider: a second redemption is a refusal.
    with pytest.raises(ProviderRefused, match="refused the code"):
        await client.identity(code=code, redirect_uri=CALLBACK, code_verifier=VERIFIER, nonce="no")


async def test_a_wrong_nonce_is_refused(provider: OIDCProvider) -> None:
    provider.add_user("u-2", email="u2@example.com")
    client = oidc(provider.issuer)
    url = await client.authorization_url(
        redirect_uri=CALLBACK, state="st", nonce="mine", code_verifier=VERIFIER
    )
    code = code_of(provider.consent(url, "u-2"))
    with pytest.raises(ProviderRefused, match="nonce"):
        await client.identity(code=code, redirect_uri=CALLBACK, code_verifier=VERIFIER, nonce="x")


async def test_an_issuer_without_a_discovery_document_is_unavailable(
    provider: OIDCProvider,
) -> None:
    with pytest.raises(ProviderUnavailable, match="did not answer"):
        await oidc("http://127.0.0.1:9").metadata()
    with pytest.raises(ProviderUnavailable, match="did not answer"):
        await oidc(f"{provider.issuer}/nothing-here").metadata()


async def test_github_gives_the_numeric_id_and_the_verified_primary_email() -> None:
    with GitHubServer(client_id="c", client_secret="s") as github:
        github.add_user(
            GitHubUser(
                id=7,
                login="seven",
                emails=[
                    GitHubEmail("old@example.com", primary=False, verified=True),
                    GitHubEmail("Seven@Example.com", primary=True, verified=True),
                ],
            )
        )
        github.add_user(
            GitHubUser(id=8, login="eight", emails=[GitHubEmail("e@example.com", verified=False)])
        )
        config = parse_providers(
            {
                "gh": {
                    "preset": "github",
                    "client_id": "c",
                    "client_secret": "s",
                    "github_url": github.base_url,
                    "api_url": github.api_url,
                }
            }
        )["gh"]
        client = build_client(config)
        identities = []
        for login in ("seven", "eight"):
            url = await client.authorization_url(
                redirect_uri=CALLBACK, state="st", nonce="unused", code_verifier=VERIFIER
            )
            async with httpx.AsyncClient() as browser:
                consent = await browser.post(url, data={"login": login, "action": "allow"})
            identities.append(
                await client.identity(
                    code=code_of(consent.headers["location"]),
                    redirect_uri=CALLBACK,
                    code_verifier=VERIFIER,
                    nonce="unused",
                )
            )
        assert identities == [
            ExternalIdentity(
                subject="7", email="seven@example.com", email_verified=True, name="seven"
            ),
            ExternalIdentity(subject="8", email=None, email_verified=False, name="eight"),
        ]
        assert {request["auth_method"] for request in github.token_requests} == {"post"}
        with pytest.raises(ProviderRefused, match="refused the code"):
            await client.identity(
                code="wrong", redirect_uri=CALLBACK, code_verifier=VERIFIER, nonce="unused"
            )


def test_check_says_which_providers_answer(provider: OIDCProvider) -> None:
    settings = Settings(
        _env_file=None,
        environment="production",
        database_url="postgresql://app@127.0.0.1:9/app",
        secret_key=secrets.token_urlsafe(48),
        refresh_token_secret=secrets.token_urlsafe(48),
        oauth_providers={
            "up": {"issuer": provider.issuer, "client_id": "c", "client_secret": "s"},
            "down": {"issuer": "http://127.0.0.1:9", "client_id": "c", "client_secret": "s"},
            "gh": {"preset": "github", "client_id": "c", "client_secret": "s"},
        },
        oauth_redirect_urls=["https://app.example/done"],
    )
    status, detail = check_oauth_providers(settings)
    assert status == "warn"
    assert "down: http://127.0.0.1:9/.well-known/openid-configuration did not answer" in detail
    assert "OAUTH_CALLBACK_BASE_URL is unset" in detail
    assert f"up: {provider.issuer} answers" in detail
    assert "gh: GitHub at https://github.com" in detail
