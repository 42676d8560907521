"""The browser example (examples/browser_app) against a real service, in headless Chromium.

Three origins on loopback: the API, the example's page (in CORS_ORIGINS) and a third page that
tries to use the victim's cookies. The page logs in, reads the user, creates items, outlives
its access cookie (3 seconds here) by refreshing, survives a reload and logs out; the third
page can neither write (a form post, a simple fetch, a JSON fetch) nor read a response.

With STARTERKIT_TEST_WRITE_SCREENSHOTS=1 it also writes docs/images/browser-app.png.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from examples.browser_app.server import build_app as build_example
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from starterkit import StarterKit, create_app
from starterkit.db import migrate
from starterkit.testing import throwaway_settings
from tests.browser.conftest import block_off_host, serving
from tests.support.processes import free_port

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

pytestmark = pytest.mark.slow

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "browser-app.png"
EMAIL = "browser@example.com"
PASSWORD = "a long browser passphrase"
ACCESS_SECONDS = 3


@dataclass
class Origins:
    api: str  # the API's base URL (with /api/v1)
    page: str  # the example's origin
    attacker: str  # a third origin, same site (127.0.0.1) as the others
    kit: StarterKit


def attacker_page(api: str) -> str:
    """What a hostile page on another origin tries with the victim's cookies: read the user,
    end all their sessions (a body-less POST, so no JSON parsing stands in the way: only the
    CSRF and origin checks do) with a form and a no-cors fetch, and create an item with JSON."""
    return f"""<!doctype html><html><body>
<form id="form" method="post" action="{api}/auth/logout-all" target="sink"></form>
<iframe name="sink"></iframe>
<script>
const api = "{api}";
const results = {{}};
async function attempt(name, request) {{
  try {{
    const response = await request();
    results[name] = "read " + response.status + " " + (await response.text());
  }} catch (error) {{
    results[name] = "blocked";
  }}
}}
(async () => {{
  await attempt("read", () => fetch(api + "/users/me", {{credentials: "include"}}));
  await attempt("simple-post", () => fetch(api + "/auth/logout-all", {{
    method: "POST", credentials: "include", mode: "no-cors"
  }}).then(() => {{ throw new Error("opaque"); }}));
  await attempt("json-post", () => fetch(api + "/items", {{
    method: "POST", credentials: "include",
    headers: {{"Content-Type": "application/json"}}, body: '{{"title": "by a JSON fetch"}}'
  }}));
  document.getElementById("form").submit();
  window.results = results;
}})();
</script></body></html>"""


@pytest.fixture
def origins(tmp_path: Path) -> Iterator[Origins]:
    api_port, page_port, attacker_port = free_port(), free_port(), free_port()
    api_base = f"http://127.0.0.1:{api_port}"
    page_origin = f"http://127.0.0.1:{page_port}"
    settings = throwaway_settings(
        tmp_path,
        environment="development",  # plain http on loopback: cookies without Secure
        public_url=api_base,
        cors_origins=[page_origin],
        cors_allow_credentials=True,
        clock_skew_seconds=0,
    )
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(migrate.upgrade, settings).result()
    kit = StarterKit(settings)
    # Access tokens (and so the access cookie) that expire while the test watches.
    kit.tokens.access_ttl = timedelta(seconds=ACCESS_SECONDS)
    api = f"{api_base}/api/v1"
    hostile = Starlette(routes=[Route("/", lambda _: HTMLResponse(attacker_page(api)))])
    with (
        serving(create_app(kit=kit), api_port),
        serving(build_example(api), page_port),
        serving(hostile, attacker_port),
    ):
        yield Origins(api, page_origin, f"http://127.0.0.1:{attacker_port}", kit)


def titles(page: Page) -> list[str]:
    return [text.strip() for text in page.locator("#items li").all_inner_texts()]


def add_item(page: Page, title: str) -> None:
    page.fill("#title", title)
    page.click("#new-item button")
    page.wait_for_function(
        "title => [...document.querySelectorAll('#items li')].some(li => li.textContent === title)",
        arg=title,
    )


def session_cookies(context: BrowserContext) -> dict[str, Any]:
    return {c["name"]: c for c in context.cookies() if c["name"].startswith("starterkit_")}


def items_of_the_account(api: str) -> list[str]:
    login = httpx.post(f"{api}/auth/login", json={"email": EMAIL, "password": PASSWORD})
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    listed = httpx.get(f"{api}/items?limit=50", headers=headers)
    return sorted(item["title"] for item in listed.json()["items"])


def test_the_example_page_uses_a_cookie_session_that_other_origins_cannot(
    browser: Browser, origins: Origins
) -> None:
    api = origins.api
    assert httpx.post(f"{api}/users", json={"email": EMAIL, "password": PASSWORD}).is_success
    context = browser.new_context(viewport={"width": 560, "height": 420})
    page = context.new_page()
    blocked: list[str] = []
    block_off_host(page, blocked)
    page.goto(origins.page)
    page.wait_for_selector("body[data-ready=true]")
    assert page.is_visible("#login")

    # Log in: the session is in cookies; JavaScript sees only the CSRF one.
    page.fill("#email", EMAIL)
    page.fill("#password", PASSWORD)
    page.click("#login button")
    page.wait_for_selector("#who")
    assert page.inner_text("#who") == EMAIL
    assert not page.is_visible("#login")
    cookies = session_cookies(context)
    assert set(cookies) == {"starterkit_access", "starterkit_refresh", "starterkit_csrf"}
    assert cookies["starterkit_access"]["httpOnly"] is True
    assert cookies["starterkit_access"]["sameSite"] == "Lax"
    assert cookies["starterkit_refresh"]["httpOnly"] is True
    assert cookies["starterkit_refresh"]["sameSite"] == "Strict"
    assert cookies["starterkit_refresh"]["path"] == "/api/v1/auth/browser"
    assert cookies["starterkit_csrf"]["httpOnly"] is False
    readable = page.evaluate("document.cookie")
    assert "starterkit_csrf=" in readable
    assert "starterkit_access" not in readable
    assert "starterkit_refresh" not in readable

    add_item(page, "Buy milk")
    first_access = cookies["starterkit_access"]["value"]

    # The access cookie expires; the next call answers 401, the page refreshes and retries.
    deadline = time.monotonic() + ACCESS_SECONDS + 5
    while "starterkit_access" in session_cookies(context):
        assert time.monotonic() < deadline, "the access cookie did not expire"
        time.sleep(0.2)
    add_item(page, "Call the bank")
    renewed = session_cookies(context)
    assert renewed["starterkit_access"]["value"] != first_access

    # A reload keeps the session: the page asks the API for the session's CSRF token.
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert page.inner_text("#who") == EMAIL
    assert titles(page) == ["Call the bank", "Buy milk"]
    if os.environ.get("STARTERKIT_TEST_WRITE_SCREENSHOTS"):
        page.screenshot(path=str(SCREENSHOT), full_page=True)

    # A page of another origin, in the same browser (so the cookies are there to abuse).
    hostile = context.new_page()
    hostile.goto(origins.attacker)
    hostile.wait_for_function("window.results !== undefined", timeout=10_000)
    results = hostile.evaluate("window.results")
    assert results == {"read": "blocked", "simple-post": "blocked", "json-post": "blocked"}
    hostile.wait_for_timeout(500)  # the form post's answer
    hostile.close()
    assert items_of_the_account(api) == ["Buy milk", "Call the bank"]
    # The session survived the attempts to end it: the page goes on working.
    add_item(page, "Water the plants")

    # Log out: the session ends and the cookies go.
    page.click("#logout")
    page.wait_for_selector("#login", state="visible")
    assert not page.is_visible("#signed-in")
    # The browser's cookie store catches up with the answer a moment after the page does.
    deadline = time.monotonic() + 5
    while session_cookies(context):
        assert time.monotonic() < deadline, session_cookies(context)
        time.sleep(0.1)
    status = page.evaluate(
        "async api => (await fetch(api + '/users/me', {credentials: 'include'})).status", api
    )
    assert status == 401
    assert blocked == []
    context.close()
