"""Browser sessions: the three cookies, the CSRF token bound to the session, the origin check.

The client talks to https://testserver and keeps cookies like a browser (Secure ones only over
https, the refresh cookie only on its path), so what it sends back is what a browser would.
Pages of the front end are https://app.example (in CORS_ORIGINS); anything else is foreign.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio.to_thread
import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import func, select

from starterkit import Settings, StarterKit, create_app
from starterkit.auth.browser import ACCESS_COOKIE, CSRF_COOKIE, REFRESH_COOKIE
from starterkit.db import migrate
from starterkit.db.models import AuthSession, Item
from tests.conftest import TEST_REFRESH_SECRET, SettingsFactory
from tests.support.auth import API, PASSWORD, bearer, register, signed_up
from tests.support.browser import (
    FRONTEND,
    OWN_ORIGIN,
    browser_login,
    cookie_client,
    csrf,
    put_cookie,
    second_browser,
    set_cookies,
)

pytestmark = pytest.mark.anyio

FOREIGN = "https://evil.example"
OTHER_SECRET = "another-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"
BROWSER_PATH = f"{API}/auth/browser"


@pytest.fixture
def browser_settings(make_settings: SettingsFactory, settings: Settings) -> Settings:
    """Migrated test settings with the front end's origin allowed to send credentials."""
    return settings.model_copy(update={"cors_origins": [FRONTEND], "cors_allow_credentials": True})


@pytest.fixture
def browser_app(browser_settings: Settings) -> FastAPI:
    return create_app(browser_settings)


@pytest.fixture
async def web(browser_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client of the service."""
    async with cookie_client(browser_app) as client:
        yield client


@pytest.fixture
def kit(browser_app: FastAPI) -> StarterKit:
    runtime: StarterKit = browser_app.state.starterkit
    return runtime


async def signed_in(web: httpx.AsyncClient, email: str) -> str:
    """Register ``email``, log in with the browser route; the CSRF token."""
    assert (await register(web, email)).status_code == 201
    body = await browser_login(web, email)
    token: str = body["csrf_token"]
    return token


async def count(kit: StarterKit, model: type[Any], **where: Any) -> int:
    async with kit.sessionmaker() as session:
        query = select(func.count()).select_from(model).filter_by(**where)
        return int((await session.execute(query)).scalar_one())


async def create_item(
    web: httpx.AsyncClient, headers: dict[str, str], title: str = "from the browser"
) -> httpx.Response:
    return await web.post(f"{API}/items", json={"title": title}, headers=headers)


# --- the cookies ------------------------------------------------------------------------------


async def test_browser_login_sets_the_three_cookies_with_their_attributes(
    web: httpx.AsyncClient,
) -> None:
    assert (await register(web, "cookies@example.com")).status_code == 201
    response = await web.post(
        f"{BROWSER_PATH}/login",
        json={"email": "cookies@example.com", "password": PASSWORD},
        headers={"Origin": FRONTEND},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user"]["email"] == "cookies@example.com"
    assert body["expires_in"] == 15 * 60
    assert "access_token" not in body
    assert "refresh_token" not in body
    assert response.headers["cache-control"] == "no-store"

    cookies = set_cookies(response)
    access, refresh, token = cookies[ACCESS_COOKIE], cookies[REFRESH_COOKIE], cookies[CSRF_COOKIE]
    assert (access["httponly"], access["samesite"], access["path"]) == (True, "lax", "/")
    assert access["max-age"] == str(15 * 60)
    assert (refresh["httponly"], refresh["samesite"]) == (True, "strict")
    assert refresh["path"] == BROWSER_PATH
    assert abs(int(refresh["max-age"]) - 30 * 24 * 3600) <= 1
    assert (token["httponly"], token["samesite"], token["path"]) == ("", "strict", "/")
    assert token.value == body["csrf_token"]
    assert all(cookie["secure"] is True for cookie in cookies.values())
    assert all(cookie["domain"] == "" for cookie in cookies.values())


async def test_cookie_domain_and_secure_follow_the_settings(
    make_settings: SettingsFactory, settings: Settings
) -> None:
    shared = settings.model_copy(update={"cookie_domain": "example.com", "cookie_secure": False})
    async with cookie_client(create_app(shared)) as web:
        await register(web, "domain@example.com")
        response = await web.post(
            f"{BROWSER_PATH}/login",
            json={"email": "domain@example.com", "password": PASSWORD},
        )
    cookies = set_cookies(response)
    assert {cookie["domain"] for cookie in cookies.values()} == {"example.com"}
    assert {cookie["secure"] for cookie in cookies.values()} == {""}


@pytest.mark.parametrize(
    ("environment", "base_url", "secure"),
    [
        ("development", "http://127.0.0.1:8000", False),
        ("development", "http://localhost:8000", False),
        ("development", "https://127.0.0.1:8000", True),
        ("development", "http://api.example", True),
        ("test", "http://127.0.0.1:8000", True),
    ],
)
async def test_cookies_are_secure_except_in_development_over_http_on_loopback(
    settings: Settings, environment: str, base_url: str, secure: bool
) -> None:
    configured = settings.model_copy(update={"environment": environment})
    app = create_app(configured)
    from tests.conftest import app_client  # noqa: PLC0415

    async with app_client(app, base_url=base_url) as web:
        await register(web, "secure@example.com")
        response = await web.post(
            f"{BROWSER_PATH}/login", json={"email": "secure@example.com", "password": PASSWORD}
        )
    assert response.status_code == 200, response.text
    assert {bool(cookie["secure"]) for cookie in set_cookies(response).values()} == {secure}


# --- using the session ------------------------------------------------------------------------


async def test_the_access_cookie_authenticates_reads_and_writes_with_the_csrf_token(
    web: httpx.AsyncClient, kit: StarterKit
) -> None:
    token = await signed_in(web, "reader@example.com")
    me = await web.get(f"{API}/users/me", headers={"Origin": FRONTEND})
    assert me.status_code == 200, me.text
    assert me.json()["email"] == "reader@example.com"
    assert me.headers["cache-control"] == "no-store"
    created = await create_item(web, csrf(token))
    assert created.status_code == 201, created.text
    listed = await web.get(f"{API}/items")
    assert [item["title"] for item in listed.json()["items"]] == ["from the browser"]
    # The CSRF token stays the same for the session: a second write with it works.
    assert (await create_item(web, csrf(token), "again")).status_code == 201


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Origin": FRONTEND}, id="no-csrf-header"),
        pytest.param(csrf("not-a-token"), id="garbage"),
        pytest.param(
            csrf("AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), id="forged"
        ),
    ],
)
async def test_a_cookie_write_without_the_sessions_csrf_token_is_403_and_changes_nothing(
    web: httpx.AsyncClient, kit: StarterKit, headers: dict[str, str]
) -> None:
    await signed_in(web, "victim@example.com")
    for method in ("POST", "PATCH", "DELETE"):
        response = await web.request(
            method, f"{API}/items" if method == "POST" else f"{API}/users/me",
            json={"title": "forged"} if method == "POST" else {"full_name": "Forged"},
            headers=headers,
        )  # fmt: skip
        assert response.status_code == 403, (method, response.text)
        assert response.json()["code"] == "csrf_failed"
    assert await count(kit, Item) == 0
    me = await web.get(f"{API}/users/me")
    assert me.json()["full_name"] is None
    assert me.json()["is_active"] is True


async def test_a_csrf_header_that_differs_from_the_csrf_cookie_is_refused(
    web: httpx.AsyncClient, kit: StarterKit
) -> None:
    token = await signed_in(web, "double@example.com")
    put_cookie(web, CSRF_COOKIE, "something-else")
    response = await create_item(web, csrf(token))
    assert response.status_code == 403
    assert response.json()["code"] == "csrf_failed"
    assert await count(kit, Item) == 0


async def test_another_sessions_csrf_token_is_refused(
    browser_app: FastAPI, web: httpx.AsyncClient, kit: StarterKit
) -> None:
    await signed_in(web, "victim@example.com")
    # The attacker's own session gives them a valid token, for their session only; even
    # planted in the victim's CSRF cookie (a sibling subdomain can set cookies) it fails.
    async with second_browser(browser_app) as attacker:
        attackers_token = await signed_in(attacker, "attacker@example.com")
    put_cookie(web, CSRF_COOKIE, attackers_token)
    response = await create_item(web, csrf(attackers_token))
    assert response.status_code == 403
    assert response.json()["code"] == "csrf_failed"
    assert await count(kit, Item) == 0


async def test_a_csrf_token_of_another_instances_secret_is_refused(
    browser_settings: Settings, web: httpx.AsyncClient, kit: StarterKit
) -> None:
    await signed_in(web, "victim@example.com")
    session_id = (await web.get(f"{API}/auth/sessions")).json()[0]["id"]
    other = StarterKit(browser_settings.model_copy(update={"secret_key": SecretStr(OTHER_SECRET)}))
    token = other.browser_sessions.new_csrf_token(session_id)
    put_cookie(web, CSRF_COOKIE, token)
    response = await create_item(web, csrf(token))
    assert response.status_code == 403
    assert await count(kit, Item) == 0


async def test_cookies_made_by_another_deployment_are_refused(
    browser_settings: Settings, browser_app: FastAPI, kit: StarterKit, tmp_path: Path
) -> None:
    # Another deployment: its own secrets, its own database (and so its own signing keys),
    # with an account of the same id as one here.
    other_settings = browser_settings.model_copy(
        update={
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'elsewhere.db'}",
            "secret_key": SecretStr(OTHER_SECRET),
            "refresh_token_secret": SecretStr(f"another-{TEST_REFRESH_SECRET}"),
        }
    )
    await anyio.to_thread.run_sync(migrate.upgrade, other_settings)
    async with cookie_client(browser_app) as web:
        assert (await register(web, "twin@example.com")).status_code == 201
    async with cookie_client(create_app(other_settings)) as elsewhere:
        token = await signed_in(elsewhere, "twin@example.com")
        stolen = dict(elsewhere.cookies)
    async with cookie_client(browser_app) as web:
        for name, value in stolen.items():
            put_cookie(web, name, value)
        assert (await web.get(f"{API}/users/me")).status_code == 401
        assert (await create_item(web, csrf(token))).status_code == 401
        refreshed = await web.post(f"{BROWSER_PATH}/refresh", headers=csrf(token))
        assert refreshed.status_code == 401
        assert await count(kit, Item) == 0


@pytest.mark.parametrize(
    "origin", [FOREIGN, "null", "http://app.example", "https://app.example:8443"]
)
async def test_a_page_of_a_foreign_origin_can_neither_read_nor_write(
    web: httpx.AsyncClient, kit: StarterKit, origin: str
) -> None:
    token = await signed_in(web, "victim@example.com")
    read = await web.get(f"{API}/users/me", headers={"Origin": origin})
    assert read.status_code == 403
    assert read.json()["code"] == "csrf_failed"
    assert "reader" not in read.text
    assert "victim" not in read.text
    # Even with the right token (say it leaked), a foreign page may not write.
    written = await create_item(web, {"X-CSRF-Token": token, "Origin": origin})
    assert written.status_code == 403
    assert await count(kit, Item) == 0


async def test_the_services_own_origin_and_requests_without_one_are_trusted(
    web: httpx.AsyncClient,
) -> None:
    token = await signed_in(web, "own@example.com")
    assert (await create_item(web, csrf(token, OWN_ORIGIN))).status_code == 201
    no_origin = {"X-CSRF-Token": token}
    assert (await create_item(web, no_origin)).status_code == 201
    cross_site = {"X-CSRF-Token": token, "Sec-Fetch-Site": "cross-site"}
    assert (await create_item(web, cross_site)).status_code == 403


async def test_login_from_a_foreign_origin_is_refused_and_starts_no_session(
    web: httpx.AsyncClient, kit: StarterKit
) -> None:
    assert (await register(web, "login-csrf@example.com")).status_code == 201
    response = await web.post(
        f"{BROWSER_PATH}/login",
        json={"email": "login-csrf@example.com", "password": PASSWORD},
        headers={"Origin": FOREIGN},
    )
    assert response.status_code == 403
    assert response.json()["code"] == "csrf_failed"
    assert "set-cookie" not in response.headers
    assert await count(kit, AuthSession) == 0


async def test_bearer_clients_need_no_csrf_token(web: httpx.AsyncClient) -> None:
    tokens = await signed_up(web, "native@example.com")
    created = await create_item(web, bearer(tokens["access_token"]))
    assert created.status_code == 201
    # A bearer header wins over cookies; such a request needs no CSRF token either.
    await browser_login(web, "native@example.com")
    assert (await create_item(web, bearer(tokens["access_token"]))).status_code == 201


# --- refresh and logout ---------------------------------------------------------------------


async def test_browser_refresh_rotates_the_cookies_and_keeps_the_csrf_token(
    web: httpx.AsyncClient,
) -> None:
    token = await signed_in(web, "refresh@example.com")
    old_access = web.cookies[ACCESS_COOKIE]
    old_refresh = web.cookies[REFRESH_COOKIE]
    response = await web.post(f"{BROWSER_PATH}/refresh", headers=csrf(token))
    assert response.status_code == 200, response.text
    assert response.json() == {"expires_in": 15 * 60, "csrf_token": token}
    cookies = set_cookies(response)
    assert set(cookies) == {ACCESS_COOKIE, REFRESH_COOKIE, CSRF_COOKIE}
    assert cookies[REFRESH_COOKIE]["path"] == BROWSER_PATH
    assert web.cookies[ACCESS_COOKIE] != old_access
    assert web.cookies[REFRESH_COOKIE] != old_refresh
    assert (await create_item(web, csrf(token))).status_code == 201


async def test_browser_refresh_without_the_csrf_header_is_403_and_consumes_nothing(
    web: httpx.AsyncClient,
) -> None:
    token = await signed_in(web, "nocsrf@example.com")
    refresh_cookie = web.cookies[REFRESH_COOKIE]
    for headers in ({"Origin": FRONTEND}, csrf("wrong"), csrf(token, FOREIGN)):
        refused = await web.post(f"{BROWSER_PATH}/refresh", headers=headers)
        assert refused.status_code == 403, refused.text
        assert refused.json()["code"] == "csrf_failed"
    assert web.cookies[REFRESH_COOKIE] == refresh_cookie
    assert (await web.post(f"{BROWSER_PATH}/refresh", headers=csrf(token))).status_code == 200


async def test_a_replayed_refresh_cookie_revokes_the_browser_session(
    web: httpx.AsyncClient, kit: StarterKit
) -> None:
    token = await signed_in(web, "replay@example.com")
    stolen = web.cookies[REFRESH_COOKIE]
    assert (await web.post(f"{BROWSER_PATH}/refresh", headers=csrf(token))).status_code == 200
    fresh = web.cookies[REFRESH_COOKIE]
    put_cookie(web, REFRESH_COOKIE, stolen, path=BROWSER_PATH)
    replayed = await web.post(f"{BROWSER_PATH}/refresh", headers=csrf(token))
    assert replayed.status_code == 401
    assert await count(kit, AuthSession, revoked_reason="reuse") == 1
    put_cookie(web, REFRESH_COOKIE, fresh, path=BROWSER_PATH)
    assert (await web.post(f"{BROWSER_PATH}/refresh", headers=csrf(token))).status_code == 401


async def test_a_refresh_cookie_sent_to_a_non_browser_route_is_ignored(
    web: httpx.AsyncClient,
) -> None:
    token = await signed_in(web, "wrongroute@example.com")
    refresh_cookie = web.cookies[REFRESH_COOKIE]
    # The cookie's path keeps it off /auth/refresh; sent there by hand it is not read.
    headers = {"Cookie": f"{REFRESH_COOKIE}={refresh_cookie}"}
    response = await web.post(f"{API}/auth/refresh", headers=headers)
    assert response.status_code == 422
    assert (await web.post(f"{API}/auth/logout", headers=headers)).status_code == 422
    # Nor is the refresh token a bearer token.
    assert (await web.get(f"{API}/users/me", headers=bearer(refresh_cookie))).status_code == 401
    assert (await web.post(f"{BROWSER_PATH}/refresh", headers=csrf(token))).status_code == 200


async def test_browser_refresh_without_a_session_is_401(web: httpx.AsyncClient) -> None:
    response = await web.post(f"{BROWSER_PATH}/refresh", headers={"Origin": FRONTEND})
    assert response.status_code == 401
    put_cookie(web, REFRESH_COOKIE, "unknown", path=BROWSER_PATH)
    response = await web.post(f"{BROWSER_PATH}/refresh", headers=csrf("whatever"))
    assert response.status_code == 401


async def test_browser_logout_ends_the_session_and_clears_the_cookies(
    web: httpx.AsyncClient, kit: StarterKit
) -> None:
    token = await signed_in(web, "logout@example.com")
    refused = await web.post(f"{BROWSER_PATH}/logout", headers={"Origin": FRONTEND})
    assert refused.status_code == 403
    assert await count(kit, AuthSession, revoked_at=None) == 1
    refresh_cookie = web.cookies[REFRESH_COOKIE]
    response = await web.post(f"{BROWSER_PATH}/logout", headers=csrf(token))
    assert response.status_code == 204
    cleared = set_cookies(response)
    assert {name: cookie["max-age"] for name, cookie in cleared.items()} == {
        ACCESS_COOKIE: "0",
        REFRESH_COOKIE: "0",
        CSRF_COOKIE: "0",
    }
    assert cleared[REFRESH_COOKIE]["path"] == BROWSER_PATH
    assert dict(web.cookies) == {}
    assert await count(kit, AuthSession, revoked_at=None) == 0
    put_cookie(web, REFRESH_COOKIE, refresh_cookie, path=BROWSER_PATH)
    assert (await web.post(f"{BROWSER_PATH}/refresh", headers=csrf(token))).status_code == 401
    # Without a session, logout only clears: still 204.
    assert (
        await web.post(f"{BROWSER_PATH}/logout", headers={"Origin": FRONTEND})
    ).status_code == 204


async def test_the_csrf_route_gives_the_sessions_token_to_a_page_that_cannot_read_the_cookie(
    web: httpx.AsyncClient,
) -> None:
    assert (await web.get(f"{BROWSER_PATH}/csrf")).status_code == 401
    token = await signed_in(web, "reload@example.com")
    answered = await web.get(f"{BROWSER_PATH}/csrf", headers={"Origin": FRONTEND})
    assert answered.status_code == 200
    assert answered.json() == {"csrf_token": token}
    assert (await web.get(f"{BROWSER_PATH}/csrf", headers={"Origin": FOREIGN})).status_code == 403
    # A lost CSRF cookie is made again, for the same session.
    web.cookies.delete(CSRF_COOKIE)
    renewed = await web.get(f"{BROWSER_PATH}/csrf")
    new_token = renewed.json()["csrf_token"]
    assert new_token != token
    assert web.cookies[CSRF_COOKIE] == new_token
    assert (await create_item(web, csrf(new_token))).status_code == 201


# --- a session like any other ------------------------------------------------------------------


async def test_browser_sessions_are_listed_and_end_with_logout_all(
    browser_app: FastAPI, web: httpx.AsyncClient
) -> None:
    token = await signed_in(web, "everywhere@example.com")
    tokens = (await web.post(
        f"{API}/auth/login", json={"email": "everywhere@example.com", "password": PASSWORD}
    )).json()  # fmt: skip
    listed = (await web.get(f"{API}/auth/sessions")).json()
    assert len(listed) == 2
    assert [item["current"] for item in listed].count(True) == 1
    assert (
        await web.post(f"{API}/auth/logout-all", headers={"Origin": FRONTEND})
    ).status_code == 403
    ended = await web.post(f"{API}/auth/logout-all", headers=csrf(token))
    assert ended.status_code == 204
    assert (await web.get(f"{API}/users/me")).status_code == 401
    assert (await web.post(f"{BROWSER_PATH}/refresh", headers=csrf(token))).status_code == 401
    assert (
        await web.get(f"{API}/users/me", headers=bearer(tokens["access_token"]))
    ).status_code == 401


async def test_a_password_change_ends_the_browser_session(web: httpx.AsyncClient) -> None:
    token = await signed_in(web, "changer@example.com")
    changed = await web.post(
        f"{API}/users/me/password",
        json={"current_password": PASSWORD, "new_password": "another long passphrase"},
        headers=csrf(token),
    )
    assert changed.status_code in (200, 204), changed.text
    assert (await web.get(f"{API}/users/me")).status_code == 401
    assert (await web.post(f"{BROWSER_PATH}/refresh", headers=csrf(token))).status_code == 401


async def test_cors_lets_the_front_end_send_the_csrf_header_with_credentials(
    web: httpx.AsyncClient,
) -> None:
    preflight = await web.options(
        f"{API}/items",
        headers={
            "Origin": FRONTEND,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-csrf-token",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == FRONTEND
    assert preflight.headers["access-control-allow-credentials"] == "true"
    assert "x-csrf-token" in preflight.headers["access-control-allow-headers"].lower()
    foreign = await web.options(
        f"{API}/items",
        headers={"Origin": FOREIGN, "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in foreign.headers
