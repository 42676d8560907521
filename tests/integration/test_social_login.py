"""Social login end to end: a real OpenID Connect provider and a GitHub-style OAuth 2.0 server
run on loopback; the service talks to them over HTTP like it would to Google or GitHub.

The test plays the browser: it follows the service's redirect to the provider, signs in there
(or denies), follows the provider's redirect back to the callback with the cookies the
service set, and ends at the front end's ``redirect_to`` with a ``code`` or an ``error``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from sqlalchemy import func, select

from starterkit import Settings, StarterKit, User, create_app
from starterkit.db.models import OAuthAccount, OAuthFlow
from tests.conftest import SettingsFactory
from tests.support.auth import API, PASSWORD, FakeClock, bearer, login, signed_up
from tests.support.browser import FRONTEND, OWN_ORIGIN, cookie_client, second_browser, set_cookies
from tests.support.github_server import GitHubEmail, GitHubServer, GitHubUser
from tests.support.lifecycle import events_of, reset, reset_token_for
from tests.support.mfa import enable_totp, second_step
from tests.support.oidc import OIDCProvider, oidc_provider

pytestmark = pytest.mark.anyio

DONE = f"{FRONTEND}/login/done"
SETTINGS_PAGE = f"{FRONTEND}/settings/linked"
GITHUB_CLIENT = ("gh-client", "gh-secret")


@pytest.fixture(scope="module")
def provider() -> Iterator[OIDCProvider]:
    with oidc_provider() as running:
        yield running


@pytest.fixture(scope="module")
def github() -> Iterator[GitHubServer]:
    client_id, client_secret = GITHUB_CLIENT
    with GitHubServer(client_id=client_id, client_secret=client_secret) as running:
        yield running


@dataclass
class Service:
    client: httpx.AsyncClient
    kit: StarterKit
    clock: FakeClock
    provider: OIDCProvider
    github: GitHubServer


@pytest.fixture
def oauth_settings(
    make_settings: SettingsFactory,
    settings: Settings,  # the migrated database
    provider: OIDCProvider,
    github: GitHubServer,
) -> Settings:
    return make_settings(
        oauth_providers={
            "mock": {"issuer": provider.issuer, "client_id": "starterkit", "client_secret": "s"},
            "github": {
                "preset": "github",
                "client_id": GITHUB_CLIENT[0],
                "client_secret": GITHUB_CLIENT[1],
                "github_url": github.base_url,
                "api_url": github.api_url,
            },
        },
        oauth_redirect_urls=[DONE, SETTINGS_PAGE],
        cors_origins=[FRONTEND],
        access_token_expire_minutes=24 * 60,
    )


@pytest.fixture
async def service(
    oauth_settings: Settings, provider: OIDCProvider, github: GitHubServer
) -> AsyncIterator[Service]:
    clock = FakeClock(now=datetime.now(UTC) - timedelta(minutes=30))
    kit = StarterKit(oauth_settings, clock=clock)
    async with cookie_client(create_app(kit=kit)) as client:
        yield Service(client, kit, clock, provider, github)


def query_of(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


async def authorize(service: Service, name: str = "mock", redirect_to: str = DONE) -> str:
    """Start a social login; the provider's URL the browser is sent to."""
    response = await service.client.get(
        f"{API}/auth/oauth/{name}/authorize", params={"redirect_to": redirect_to}
    )
    assert response.status_code == 302, response.text
    location: str = response.headers["location"]
    return location


async def come_back(service: Service, callback_url: str) -> dict[str, str]:
    """Follow the provider's redirect to the callback; the front end's query it ends with."""
    response = await service.client.get(callback_url)
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith((DONE, SETTINGS_PAGE)), location
    return query_of(location)


async def oidc_login(service: Service, sub: str, *, action: str = "allow") -> dict[str, str]:
    """A whole login at the OIDC provider; the front end's query (``code`` or ``error``)."""
    url = await authorize(service)
    return await come_back(service, service.provider.consent(url, sub, action=action))


def github_consent(authorization_url: str, login: str, *, action: str = "allow") -> str:
    """Sign in as ``login`` on the GitHub-style server's page (or deny): where it sends the
    browser."""
    response = httpx.post(authorization_url, data={"login": login, "action": action})
    assert response.status_code == 302, response.text
    location: str = response.headers["location"]
    return location


async def exchange(service: Service, code: str) -> httpx.Response:
    return await service.client.post(f"{API}/auth/oauth/exchange", json={"code": code})


async def tokens_of(service: Service, sub: str) -> dict[str, Any]:
    landed = await oidc_login(service, sub)
    assert "code" in landed, landed
    response = await exchange(service, landed["code"])
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def me(service: Service, access_token: str) -> dict[str, Any]:
    response = await service.client.get(f"{API}/users/me", headers=bearer(access_token))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def count(service: Service, model: type[Any]) -> int:
    async with service.kit.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


def amr(access_token: str) -> list[str]:
    claims = jwt.decode(access_token, options={"verify_signature": False})
    return list(claims["amr"])


async def test_a_new_user_signs_in_with_an_openid_connect_provider(service: Service) -> None:
    providers = await service.client.get(f"{API}/auth/oauth/providers")
    assert providers.json() == [
        {"name": "mock", "display_name": "Mock"},
        {"name": "github", "display_name": "GitHub"},
    ]
    service.provider.add_user("new-1", email="New.One@Example.com", email_verified=True, name="N")
    url = await authorize(service)
    sent = query_of(url)
    assert url.startswith(f"{service.provider.issuer}/oauth2/authorize?")
    assert sent["code_challenge_method"] == "S256"
    assert len(sent["code_challenge"]) == 43
    assert sent["redirect_uri"] == f"{OWN_ORIGIN}{API}/auth/oauth/mock/callback"
    assert sent["state"]
    assert sent["nonce"]
    assert "openid" in sent["scope"].split()
    landed = await come_back(service, service.provider.consent(url, "new-1"))
    response = await exchange(service, landed["code"])
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    tokens = response.json()
    assert amr(tokens["access_token"]) == ["ext"]
    user = await me(service, tokens["access_token"])
    assert user["email"] == "new.one@example.com"
    assert user["is_verified"] is True
    assert user["has_password"] is False
    assert user["linked_providers"] == ["mock"]
    assert user["full_name"] == "N"
    # No password was ever set: none logs in, not even the stored marker.
    assert (await login(service.client, "new.one@example.com", "!")).status_code == 401
    accounts = await service.client.get(
        f"{API}/auth/oauth/accounts", headers=bearer(tokens["access_token"])
    )
    assert [(a["provider"], a["email"]) for a in accounts.json()] == [
        ("mock", "new.one@example.com")
    ]
    refreshed = await service.client.post(
        f"{API}/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert amr(refreshed.json()["access_token"]) == ["ext"]
    events = await events_of(service.kit, user["id"])
    assert events[:4] == ["user_registered", "oauth_linked", "oauth_login", "login_succeeded"]


async def test_a_returning_user_signs_in_to_the_same_account(service: Service) -> None:
    service.provider.add_user("back-1", email="back@example.com", email_verified=True)
    first = await me(service, (await tokens_of(service, "back-1"))["access_token"])
    # The provider's address changed since: the identity, not the email, finds the account.
    service.provider.add_user("back-1", email="renamed@example.com", email_verified=True)
    second = await me(service, (await tokens_of(service, "back-1"))["access_token"])
    assert second["id"] == first["id"]
    assert second["email"] == "back@example.com"
    assert await count(service, OAuthAccount) == 1


async def test_a_verified_email_links_the_identity_to_the_existing_account(
    service: Service,
) -> None:
    existing = await signed_up(service.client, "alice@example.com")
    alice = await me(service, existing["access_token"])
    service.provider.add_user("alice-sub", email="Alice@example.com", email_verified=True)
    linked = await me(service, (await tokens_of(service, "alice-sub"))["access_token"])
    assert linked["id"] == alice["id"]
    assert linked["has_password"] is True
    assert linked["linked_providers"] == ["mock"]
    assert (await login(service.client, "alice@example.com")).status_code == 200


async def test_an_unverified_email_of_an_existing_account_is_refused(service: Service) -> None:
    existing = await signed_up(service.client, "victim@example.com")
    victim = await me(service, existing["access_token"])
    service.provider.add_user("attacker", email="victim@example.com", email_verified=False)
    landed = await oidc_login(service, "attacker")
    assert landed == {"error": "email_not_verified"}
    assert await count(service, OAuthAccount) == 0
    assert (await events_of(service.kit, victim["id"]))[-1] == "oauth_login_failed"


async def test_a_new_account_with_an_unverified_email_is_unverified_and_a_reset_unlinks_it(
    service: Service,
) -> None:
    """The pre-account takeover: someone signs up through a provider with another person's
    unverified address. The mailbox's owner resets the password and has the account alone."""
    service.provider.add_user("squatter", email="owner@example.com", email_verified=False)
    tokens = await tokens_of(service, "squatter")
    squatted = await me(service, tokens["access_token"])
    assert squatted["is_verified"] is False
    assert squatted["has_password"] is False
    token = await reset_token_for(service.client, service.kit, "owner@example.com")
    assert (await reset(service.client, token)).status_code == 200
    assert await count(service, OAuthAccount) == 0
    assert (await oidc_login(service, "squatter")) == {"error": "email_not_verified"}


async def test_a_wrong_missing_or_replayed_state_is_refused(service: Service) -> None:
    service.provider.add_user("state-1", email="state@example.com", email_verified=True)
    url = await authorize(service)
    callback = service.provider.consent(url, "state-1")
    callback_path = urlsplit(callback).path
    assert await come_back(service, f"{callback_path}?code=x&state=forged") == {
        "error": "invalid_state"
    }
    assert await come_back(service, f"{callback_path}?code=x") == {"error": "invalid_state"}
    # Another browser (no binding cookie) cannot finish this browser's login.
    async with second_browser(service.client._transport.app) as other:  # type: ignore[attr-defined]
        response = await other.get(callback)
        assert query_of(response.headers["location"]) == {"error": "invalid_state"}
    # The flow was used up by that attempt: the real browser's replay is refused too.
    assert await come_back(service, callback) == {"error": "invalid_state"}
    assert await count(service, User) == 0
    # A fresh login, then its callback replayed.
    url = await authorize(service)
    callback = service.provider.consent(url, "state-1")
    assert "code" in await come_back(service, callback)
    assert await come_back(service, callback) == {"error": "invalid_state"}


async def test_a_state_of_another_provider_is_refused(service: Service) -> None:
    url = await authorize(service)
    state = query_of(url)["state"]
    landed = await come_back(service, f"{API}/auth/oauth/github/callback?code=x&state={state}")
    assert landed == {"error": "invalid_state"}


@pytest.mark.parametrize(
    ("claims", "what"),
    [
        ({"nonce": "another login's nonce"}, "nonce"),
        ({"aud": "another-client"}, "audience"),
        ({"aud": ["another-client"], "azp": "starterkit"}, "audience-azp"),
        ({"iss": "https://impostor.example"}, "issuer"),
        ({"exp": 1_000_000_000, "iat": 999_999_000}, "expiry"),
    ],
)
async def test_a_bad_id_token_is_refused(
    service: Service, claims: dict[str, Any], what: str
) -> None:
    service.provider.add_user(f"bad-{what}", email=f"{what}@example.com", email_verified=True)
    service.provider.tamper(**claims)
    landed = await oidc_login(service, f"bad-{what}")
    assert landed == {"error": "provider_error"}, what
    assert await count(service, User) == 0


async def test_a_redirect_off_the_allow_list_is_refused(service: Service) -> None:
    for target in ("https://evil.example/login/done", f"{FRONTEND}/elsewhere", "//evil.example"):
        response = await service.client.get(
            f"{API}/auth/oauth/mock/authorize", params={"redirect_to": target}
        )
        assert response.status_code == 400, target
        assert response.json()["code"] == "bad_request"
    # The query of an allowed URL is kept; the code is added to it.
    service.provider.add_user("q-1", email="q@example.com", email_verified=True)
    url = await authorize(service, redirect_to=f"{DONE}?next=/items")
    callback = service.provider.consent(url, "q-1")
    response = await service.client.get(callback)
    landed = query_of(response.headers["location"])
    assert landed["next"] == "/items"
    assert "code" in landed
    assert await count(service, OAuthFlow) == 0


async def test_an_unknown_provider_is_404_and_json_authorize_answers_the_url(
    service: Service,
) -> None:
    response = await service.client.get(f"{API}/auth/oauth/nope/authorize")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    response = await service.client.get(
        f"{API}/auth/oauth/mock/authorize", headers={"Accept": "application/json"}
    )
    assert response.status_code == 200
    assert response.json()["authorization_url"].startswith(service.provider.issuer)
    cookie = set_cookies(response)["starterkit_oauth"]
    assert cookie["httponly"]
    assert cookie["samesite"].lower() == "lax"
    assert cookie["path"] == f"{API}/auth/oauth"


async def test_a_denied_consent_comes_back_as_access_denied(service: Service) -> None:
    service.provider.add_user("shy", email="shy@example.com", email_verified=True)
    assert await oidc_login(service, "shy", action="deny") == {"error": "access_denied"}
    assert await count(service, User) == 0


async def test_an_exchange_code_works_once_and_for_a_minute(service: Service) -> None:
    service.provider.add_user("ex-1", email="ex@example.com", email_verified=True)
    landed = await oidc_login(service, "ex-1")
    assert (await exchange(service, landed["code"])).status_code == 200
    again = await exchange(service, landed["code"])
    assert again.status_code == 401
    assert again.json()["detail"] == "The code is invalid, was used or has expired; sign in again."
    late = await oidc_login(service, "ex-1")
    service.clock.advance(seconds=61)
    assert (await exchange(service, late["code"])).status_code == 401
    assert (await exchange(service, "made-up")).status_code == 401


async def test_an_inactive_user_is_refused_at_the_callback_and_at_the_exchange(
    service: Service,
) -> None:
    service.provider.add_user("off-1", email="off@example.com", email_verified=True)
    landed = await oidc_login(service, "off-1")  # the account exists now; its code is pending
    async with service.kit.sessionmaker() as session:
        user = await session.scalar(select(User).where(User.email == "off@example.com"))
        assert user is not None
        user.is_active = False
        await session.commit()
    assert (await exchange(service, landed["code"])).status_code == 401
    assert await oidc_login(service, "off-1") == {"error": "account_disabled"}


async def test_an_account_with_totp_still_needs_its_code(service: Service) -> None:
    tokens = await signed_up(service.client, "totp@example.com")
    account = await enable_totp(
        service.client, tokens["access_token"], "totp@example.com", service.clock
    )
    service.provider.add_user("totp-sub", email="totp@example.com", email_verified=True)
    landed = await oidc_login(service, "totp-sub")
    challenge = await exchange(service, landed["code"])
    assert challenge.status_code == 200
    body = challenge.json()
    assert body["mfa_required"] is True
    assert "access_token" not in body
    wrong = await second_step(service.client, body["mfa_token"], code="000000")
    assert wrong.status_code == 401
    finished = await second_step(service.client, body["mfa_token"], code=account.code())
    assert finished.status_code == 200, finished.text
    assert amr(finished.json()["access_token"]) == ["ext", "otp", "mfa"]


async def test_the_browser_exchange_sets_the_session_cookies(service: Service) -> None:
    service.provider.add_user("br-1", email="browser@example.com", email_verified=True)
    landed = await oidc_login(service, "br-1")
    foreign = await service.client.post(
        f"{API}/auth/browser/oauth/exchange",
        json={"code": landed["code"]},
        headers={"Origin": "https://evil.example"},
    )
    assert foreign.status_code == 403  # a page elsewhere cannot log this browser in
    response = await service.client.post(
        f"{API}/auth/browser/oauth/exchange",
        json={"code": landed["code"]},
        headers={"Origin": FRONTEND},
    )
    assert response.status_code == 200, response.text
    assert {"starterkit_access", "starterkit_refresh", "starterkit_csrf"} <= set(
        set_cookies(response)
    )
    assert response.json()["user"]["linked_providers"] == ["mock"]
    user = await service.client.get(f"{API}/users/me")
    assert user.status_code == 200
    assert user.json()["email"] == "browser@example.com"


async def test_linking_and_unlinking_providers(service: Service) -> None:
    tokens = await signed_up(service.client, "linker@example.com")
    headers = bearer(tokens["access_token"])
    service.provider.add_user("link-1", email="other-address@example.com", email_verified=True)
    response = await service.client.post(
        f"{API}/auth/oauth/mock/link", json={"redirect_to": SETTINGS_PAGE}, headers=headers
    )
    assert response.status_code == 200, response.text
    url = response.json()["authorization_url"]
    landed = await come_back(service, service.provider.consent(url, "link-1"))
    assert landed == {"linked": "mock"}
    user = await me(service, tokens["access_token"])
    assert user["linked_providers"] == ["mock"]
    # The linked identity now signs in to this account.
    assert (await me(service, (await tokens_of(service, "link-1"))["access_token"]))["id"] == (
        user["id"]
    )
    [account] = (await service.client.get(f"{API}/auth/oauth/accounts", headers=headers)).json()
    # Someone else cannot see or remove it.
    other = await signed_up(service.client, "other@example.com")
    gone = await service.client.delete(
        f"{API}/auth/oauth/accounts/{account['id']}", headers=bearer(other["access_token"])
    )
    assert gone.status_code == 404
    # Nor link the same identity to their account.
    response = await service.client.post(
        f"{API}/auth/oauth/mock/link", json={}, headers=bearer(other["access_token"])
    )
    url = response.json()["authorization_url"]
    landed = await come_back(service, service.provider.consent(url, "link-1"))
    assert landed == {"error": "identity_in_use"}
    unlinked = await service.client.delete(
        f"{API}/auth/oauth/accounts/{account['id']}", headers=headers
    )
    assert unlinked.status_code == 204
    assert (await me(service, tokens["access_token"]))["linked_providers"] == []
    assert "oauth_unlinked" in await events_of(service.kit, user["id"])


async def test_linking_needs_a_recent_authentication(service: Service) -> None:
    tokens = await signed_up(service.client, "stale@example.com")
    service.clock.advance(minutes=11)
    response = await service.client.post(
        f"{API}/auth/oauth/mock/link", json={}, headers=bearer(tokens["access_token"])
    )
    assert response.status_code == 403
    assert response.json()["code"] == "reauthentication_required"


async def test_the_last_way_to_sign_in_cannot_be_unlinked(service: Service) -> None:
    service.provider.add_user("only-1", email="only@example.com", email_verified=True)
    tokens = await tokens_of(service, "only-1")
    headers = bearer(tokens["access_token"])
    [account] = (await service.client.get(f"{API}/auth/oauth/accounts", headers=headers)).json()
    response = await service.client.delete(
        f"{API}/auth/oauth/accounts/{account['id']}", headers=headers
    )
    assert response.status_code == 400
    assert "only way to sign in" in response.json()["detail"]
    assert (await me(service, tokens["access_token"]))["linked_providers"] == ["mock"]


async def test_a_new_user_signs_in_with_github(service: Service) -> None:
    service.github.add_user(
        GitHubUser(
            id=4242,
            login="octo",
            name="Octo Cat",
            emails=[
                GitHubEmail("octo@users.noreply.example", primary=False, verified=True),
                GitHubEmail("Octo@Example.com", primary=True, verified=True),
            ],
        )
    )
    url = await authorize(service, "github")
    assert url.startswith(f"{service.github.base_url}/login/oauth/authorize?")
    landed = await come_back(service, github_consent(url, "octo"))
    response = await exchange(service, landed["code"])
    assert response.status_code == 200, response.text
    user = await me(service, response.json()["access_token"])
    assert (user["email"], user["is_verified"], user["full_name"]) == (
        "octo@example.com",
        True,
        "Octo Cat",
    )
    assert user["linked_providers"] == ["github"]
    # PKCE: the server checked the verifier against the challenge of the authorize request.
    last = service.github.token_requests[-1]
    assert len(last["code_verifier"]) >= 43
    async with service.kit.sessionmaker() as session:
        subject = await session.scalar(select(OAuthAccount.subject))
    assert subject == "4242"  # the numeric id: a login can be renamed


async def test_github_without_a_verified_primary_email_is_refused(service: Service) -> None:
    service.github.add_user(
        GitHubUser(
            id=777,
            login="unverified",
            emails=[GitHubEmail("unverified@example.com", primary=True, verified=False)],
        )
    )
    url = await authorize(service, "github")
    assert await come_back(service, github_consent(url, "unverified")) == {
        "error": "email_required"
    }
    assert await count(service, User) == 0


async def test_a_github_denial_or_refused_code_comes_back_as_an_error(service: Service) -> None:
    service.github.add_user(
        GitHubUser(id=31337, login="no", emails=[GitHubEmail("no@example.com")])
    )
    url = await authorize(service, "github")
    denied = github_consent(url, "no", action="deny")
    assert await come_back(service, denied) == {"error": "access_denied"}
    # GitHub answers a bad code with HTTP 200 and an error body; it is still refused.
    service.github.errors_with_status_200 = True
    try:
        url = await authorize(service, "github")
        callback = github_consent(url, "no")
        state = query_of(callback)["state"]
        forged = f"{urlsplit(callback).path}?code=not-the-code&state={state}"
        assert await come_back(service, forged) == {"error": "provider_error"}
    finally:
        service.github.errors_with_status_200 = False
    assert await count(service, User) == 0


async def test_two_concurrent_exchanges_of_one_code_make_one_session(service: Service) -> None:
    service.provider.add_user("race-1", email="race@example.com", email_verified=True)
    landed = await oidc_login(service, "race-1")
    first, second = await asyncio.gather(
        exchange(service, landed["code"]), exchange(service, landed["code"])
    )
    assert sorted([first.status_code, second.status_code]) == [200, 401]


async def test_the_oauth_login_hook_runs_with_whether_the_account_is_new(
    service: Service,
) -> None:
    seen: list[tuple[str, str, bool]] = []

    async def hook(user: User, provider: str, created: bool, _request: Any) -> None:
        seen.append((user.email, provider, created))

    service.kit.hooks.on_after_oauth_login = hook
    service.provider.add_user("hook-1", email="hook@example.com", email_verified=True)
    await tokens_of(service, "hook-1")
    await tokens_of(service, "hook-1")
    assert seen == [("hook@example.com", "mock", True), ("hook@example.com", "mock", False)]


async def test_an_unreachable_provider_is_503_at_authorize(
    make_settings: SettingsFactory, settings: Settings
) -> None:
    unreachable = make_settings(
        oauth_providers={
            "down": {"issuer": "http://127.0.0.1:9", "client_id": "c", "client_secret": "s"}
        },
        oauth_redirect_urls=[DONE],
    )
    async with cookie_client(create_app(unreachable)) as client:
        response = await client.get(f"{API}/auth/oauth/down/authorize")
    assert response.status_code == 503
    assert response.json()["code"] == "service_unavailable"


async def test_password_login_of_a_social_account_takes_as_long_as_a_wrong_password(
    service: Service,
) -> None:
    """The stored marker is no hash: the login must still spend a hash's time on it."""
    calls: list[str] = []
    hasher = service.kit.password_hasher
    original = hasher.dummy_verify

    async def counted() -> None:
        calls.append("dummy")
        await original()

    hasher.dummy_verify = counted  # type: ignore[method-assign]
    service.provider.add_user("timing", email="timing@example.com", email_verified=True)
    await tokens_of(service, "timing")
    assert (await login(service.client, "timing@example.com", PASSWORD)).status_code == 401
    assert calls == ["dummy"]
