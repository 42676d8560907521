"""The built-in pages of mailed links, over HTTP: escaping, headers, the off switch."""

from __future__ import annotations

import httpx
import pytest

from starterkit import create_app
from tests.conftest import SettingsFactory, app_client

pytestmark = pytest.mark.anyio


async def test_the_pages_escape_the_token_and_load_nothing(client: httpx.AsyncClient) -> None:
    hostile = '"><script>alert(1)</script>'
    for path in ("/reset-password", "/verify-email"):
        page = await client.get(path, params={"token": hostile})
        assert page.status_code == 200
        assert "<script>" not in page.text
        assert "&quot;&gt;&lt;script&gt;" in page.text
        policy = page.headers["content-security-policy"]
        assert policy.startswith("default-src 'none'; style-src 'sha256-")
        assert "form-action 'self'" in policy
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["referrer-policy"] == "no-referrer"


async def test_a_bad_link_or_a_bad_form_is_a_clear_page(client: httpx.AsyncClient) -> None:
    form = {"token": "forged", "new_password": "a long new passphrase", "confirm_password": "x"}
    differ = await client.post("/reset-password", data=form)
    assert differ.status_code == 422
    assert "The two passwords differ." in differ.text
    form["confirm_password"] = form["new_password"]
    forged = await client.post("/reset-password", data=form)
    assert forged.status_code == 400
    assert "invalid, has expired or was already used" in forged.text
    garbage = await client.post(
        "/verify-email", content=b"\xff\xfe", headers={"content-type": "text/plain"}
    )
    assert garbage.status_code == 400


async def test_pages_enabled_false_leaves_the_paths_to_a_front_end(
    make_settings: SettingsFactory,
) -> None:
    async with app_client(create_app(make_settings(pages_enabled=False))) as client:
        for path in ("/reset-password", "/verify-email"):
            response = await client.get(path, params={"token": "t"})
            assert response.status_code == 404
            assert response.json()["code"] == "not_found"
