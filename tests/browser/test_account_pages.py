"""The mailed links, followed in a real browser: reset a password, log in with it; verify."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from starterkit import StarterKit, create_app
from starterkit.db import migrate
from starterkit.testing import throwaway_settings
from tests.browser.conftest import block_off_host, serving
from tests.support.processes import free_port

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.slow

PASSWORD = "the first long passphrase"
NEW_PASSWORD = "a brand new long passphrase"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, StarterKit]]:
    """The whole service on a loopback port, in this process so the tests can read its mail."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    settings = throwaway_settings(tmp_path, public_url=base_url)
    # In a thread of its own: Playwright's event loop runs in this one.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(migrate.upgrade, settings).result()
    app = create_app(settings)
    with serving(app, port):
        yield base_url, app.state.starterkit


def mailed_link(kit: StarterKit, kind: str) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for mail in reversed(kit.mailer.outbox):
            if mail.kind == kind and mail.link:
                return mail.link
        time.sleep(0.05)
    raise AssertionError(f"no {kind} mail was sent")


def test_a_mailed_reset_link_sets_a_new_password_in_the_browser(
    browser: Browser, served: tuple[str, StarterKit]
) -> None:
    base_url, kit = served
    api = f"{base_url}/api/v1"
    account = {"email": "reader@example.com", "password": PASSWORD}
    assert httpx.post(f"{api}/users", json=account).status_code == 201
    assert httpx.post(f"{api}/auth/forgot-password", json={"email": account["email"]}).is_success
    link = mailed_link(kit, "password_reset")
    assert link.startswith(f"{base_url}/reset-password?token=")

    page = browser.new_page()
    blocked: list[str] = []
    block_off_host(page, blocked)
    page.goto(link)
    # A password the rules refuse is said on the page, and the link keeps working.
    page.fill("#new_password", "short")
    page.fill("#confirm_password", "short")
    page.click("button[type=submit]")
    assert "at least 12 characters" in page.inner_text(".error")
    page.fill("#new_password", NEW_PASSWORD)
    page.fill("#confirm_password", NEW_PASSWORD)
    page.click("button[type=submit]")
    assert page.inner_text("h1") == "Password changed"
    # The link worked once.
    page.goto(link)
    page.fill("#new_password", NEW_PASSWORD + "!")
    page.fill("#confirm_password", NEW_PASSWORD + "!")
    page.click("button[type=submit]")
    assert "invalid, has expired or was already used" in page.inner_text(".error")
    assert blocked == []
    page.close()

    old = httpx.post(f"{api}/auth/login", json=account)
    assert old.status_code == 401
    new = httpx.post(f"{api}/auth/login", json={**account, "password": NEW_PASSWORD})
    assert new.status_code == 200, new.text


def test_a_mailed_verification_link_confirms_the_address_in_the_browser(
    browser: Browser, served: tuple[str, StarterKit]
) -> None:
    base_url, kit = served
    api = f"{base_url}/api/v1"
    account = {"email": "verify@example.com", "password": PASSWORD}
    assert httpx.post(f"{api}/users", json=account).status_code == 201
    assert httpx.post(f"{api}/auth/request-verify", json={"email": account["email"]}).is_success
    link = mailed_link(kit, "verify_email")

    page = browser.new_page()
    page.goto(link)  # opening the link alone changes nothing: mail scanners open links too
    token = httpx.post(f"{api}/auth/login", json=account).json()["access_token"]
    me = httpx.get(f"{api}/users/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["is_verified"] is False
    page.click("button[type=submit]")
    assert page.inner_text("h1") == "Email address confirmed"
    page.close()
    me = httpx.get(f"{api}/users/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["is_verified"] is True
