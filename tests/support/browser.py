"""Helpers for tests of browser sessions: a client that keeps cookies like a browser, and the
attributes of the cookies a response sets."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from http.cookies import Morsel, SimpleCookie
from typing import Any

import httpx
from fastapi import FastAPI

from tests.conftest import app_client
from tests.support.auth import API, PASSWORD

# The service's own origin as the in-process client addresses it. https, so the client's
# cookie jar keeps and sends the Secure cookies, as a browser would.
OWN_ORIGIN = "https://testserver"
FRONTEND = "https://app.example"


def cookie_client(app: FastAPI) -> AbstractAsyncContextManager[httpx.AsyncClient]:
    """Context manager: ``app`` with its lifespan, and a client at https://testserver."""
    return app_client(app, base_url=OWN_ORIGIN)


def second_browser(app: FastAPI) -> httpx.AsyncClient:
    """Another browser (its own cookie jar) for an app whose lifespan already runs."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url=OWN_ORIGIN)


def set_cookies(response: httpx.Response) -> dict[str, Morsel[str]]:
    """The cookies ``response`` sets, by name, with their attributes."""
    found: dict[str, Morsel[str]] = {}
    for header in response.headers.get_list("set-cookie"):
        parsed: SimpleCookie = SimpleCookie()
        parsed.load(header)
        found.update(parsed)
    return found


async def browser_login(
    client: httpx.AsyncClient,
    email: str,
    password: str = PASSWORD,
    *,
    origin: str = FRONTEND,
) -> dict[str, Any]:
    """Log in with the browser route from ``origin``; the answer's body."""
    response = await client.post(
        f"{API}/auth/browser/login",
        json={"email": email, "password": password},
        headers={"Origin": origin},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def csrf(token: str, origin: str = FRONTEND) -> dict[str, str]:
    """The headers of a page at ``origin`` sending the CSRF token."""
    return {"X-CSRF-Token": token, "Origin": origin}


def put_cookie(client: httpx.AsyncClient, name: str, value: str, *, path: str = "/") -> None:
    """Replace the cookie ``name`` in ``client``'s jar, as a script or a sibling site might."""
    client.cookies.delete(name)
    # The jar files host-only cookies of a dotless host under "<host>.local".
    client.cookies.set(name, value, domain=f"{client.base_url.host}.local", path=path)
