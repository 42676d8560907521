"""``/docs`` and ``/redoc`` render in a real browser with every off-host request blocked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from starterkit import __version__
from tests.browser.conftest import block_off_host
from tests.support.processes import running_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder: Path = tmp_path_factory.mktemp("served")
    with running_server(folder) as (url, _):
        yield url


@pytest.mark.parametrize(
    ("path", "rendered"),
    [
        ("/docs", ".swagger-ui .info .title"),
        ("/redoc", "redoc h1"),
    ],
)
def test_the_docs_render_offline_under_their_csp(
    browser: Browser, base_url: str, path: str, rendered: str
) -> None:
    page = browser.new_page()
    blocked: list[str] = []
    violations: list[str] = []
    block_off_host(page, blocked)
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    response = page.goto(f"{base_url}{path}")
    assert response is not None
    assert response.status == 200
    page.wait_for_selector(rendered, timeout=15_000)
    assert "starterkit" in page.inner_text(rendered)
    assert __version__ in page.content()
    # The routes of the schema are there, read from /openapi.json of this server.
    page.wait_for_function("document.body.innerText.includes('/api/v1/auth/login')", timeout=15_000)
    assert blocked == []
    # ReDoc's "API docs by Redocly" footer asks for its logo from cdn.redoc.ly: the policy
    # refuses it before any request leaves. Nothing of the page's own is ever refused.
    assert [text for text in violations if "https://cdn.redoc.ly/" not in text] == []
    page.close()
