"""A headless Chromium (Debian's ``chromium``) driven by Playwright, on loopback only.

Without ``/usr/bin/chromium`` or the ``playwright`` package the browser tests skip, so a fresh
``pytest`` passes anywhere; with STARTERKIT_TEST_REQUIRE_BROWSER set (``.ci/run`` sets it)
they fail instead, so CI cannot skip them by accident.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import uvicorn

from tests.support.processes import free_port

if TYPE_CHECKING:
    from playwright.sync_api import Browser
    from starlette.types import ASGIApp

CHROMIUM = Path(os.environ.get("STARTERKIT_TEST_CHROMIUM", "/usr/bin/chromium"))
# Without these Chromium keeps dialing out (updates, sync, safe browsing) on a closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium per test module.

    Not per session: Playwright's sync API runs an event loop of its own while it is open,
    and asyncio.run() of other tests (the CLI's) refuses to start inside it.
    """
    missing = None
    try:
        from playwright.sync_api import sync_playwright  # noqa: PLC0415
    except ImportError:
        missing = "the playwright package is not installed"
    if missing is None and not CHROMIUM.exists():
        missing = f"{CHROMIUM} is missing (apt-get install chromium)"
    if missing is not None:
        if os.environ.get("STARTERKIT_TEST_REQUIRE_BROWSER"):
            pytest.fail(f"browser tests are required, but {missing}")
        pytest.skip(missing)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def block_off_host(page: Any, blocked: list[str]) -> None:
    """Abort every request of ``page`` that leaves 127.0.0.1, and note its URL."""

    def route(handle: Any) -> None:
        url = handle.request.url
        if url.startswith(("http://127.0.0.1:", "data:", "blob:")):
            handle.continue_()
        else:
            blocked.append(url)
            handle.abort()

    page.route("**/*", route)


@contextmanager
def serving(app: ASGIApp, port: int | None = None) -> Iterator[str]:
    """Serve ``app`` on a loopback port, in a thread of this process; its base URL.

    A thread, not the test's own loop: Playwright's sync API runs an event loop in this one.
    """
    port = port or free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive(), "the server stopped while starting"
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
