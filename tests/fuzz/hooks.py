"""Schemathesis hooks for the fuzz run: sign every request in as a dedicated fuzz account.

``run_fuzz.py`` loads this file through ``SCHEMATHESIS_HOOKS`` and passes the accounts in
``STARTERKIT_FUZZ_*`` variables. Two accounts:

- the *admin* (a superuser made with ``starterkit new-user --superuser``) signs the
  superuser-only operations, so they are fuzzed past the 403;
- the *user* (registered through ``POST /users``) signs everything else, so item reads go
  through the per-user cache like a normal client's.

The fuzzer is allowed to do everything a client may, and some operations end the session it
stands on: ``POST /auth/logout-all`` and a password change bump the token version, and the admin
may deactivate or delete the user. Schemathesis answers a 401 by fetching a new token and
replaying the request once; if the user cannot log in any more, :meth:`Account.token`
registers a fresh one. (The admin cannot lose itself: the API refuses to let a superuser
deactivate, demote or delete its own account.)

With ``STARTERKIT_FUZZ_AUTH=cookie`` both accounts log in as a browser would
(``POST /auth/browser/login``) and every request carries the session's cookies, its
``X-CSRF-Token`` and the service's own ``Origin`` instead of a bearer token.
"""

from __future__ import annotations

import os
import threading
import uuid
from typing import Any, NamedTuple

import httpx
import schemathesis
from schemathesis import AuthContext, Case

from starterkit.auth.browser import ACCESS_COOKIE, CSRF_COOKIE, REFRESH_COOKIE

AnyCase = Case[Any]
# Sign in as a browser (cookies, CSRF token) instead of with bearer tokens.
BROWSER = os.environ.get("STARTERKIT_FUZZ_AUTH", "bearer") == "cookie"


# A NamedTuple, not a dataclass: schemathesis loads this file without registering it as a
# module, which dataclasses need for the annotations of their fields.
class Credentials(NamedTuple):
    """What signs a request: a bearer token, or a browser session's access and CSRF tokens."""

    access_token: str
    csrf_token: str | None = None
    refresh_token: str | None = None


# The operations only a superuser may call (listing users, and everything under one user's
# id); everything else runs as the ordinary user.
ADMIN_OPERATIONS = r"^(GET /api/v1/users|[A-Z]+ /api/v1/users/\{user_id\}(/.*)?)$"
# Tokens are refetched after a 401 anyway; this only bounds how long one is reused.
REFRESH_INTERVAL_SECONDS = 120


class Account:
    """Credentials of one fuzz account that logs in on demand."""

    def __init__(self, base_url: str, email: str, password: str, *, re_register: bool) -> None:
        """Remember the account.

        Args:
            base_url: the server, e.g. ``http://127.0.0.1:8000``.
            email: the account's email.
            password: its password.
            re_register: register a new account when this one can no longer log in
                (deleted, deactivated, or its password changed by the fuzzer).
        """
        self.base_url = base_url
        self.email = email
        self.password = password
        self.re_register = re_register
        self._lock = threading.Lock()

    def token(self) -> Credentials:
        """Fresh credentials for this account: an access token (and a CSRF token when it logs
        in as a browser).

        Raises:
            httpx.HTTPStatusError: logging in (or registering anew) failed.
        """
        with self._lock, httpx.Client(base_url=self.base_url, timeout=30) as client:
            response = self._login(client)
            if response.status_code == 401 and self.re_register:
                self.email = f"fuzz-{uuid.uuid4().hex[:12]}@example.com"
                registered = client.post(
                    "/api/v1/users", json={"email": self.email, "password": self.password}
                )
                registered.raise_for_status()
                response = self._login(client)
            response.raise_for_status()
            if not BROWSER:
                return Credentials(response.json()["access_token"])
            return Credentials(
                response.cookies[ACCESS_COOKIE],
                csrf_token=response.json()["csrf_token"],
                refresh_token=response.cookies[REFRESH_COOKIE],
            )

    def _login(self, client: httpx.Client) -> httpx.Response:
        path = "/api/v1/auth/browser/login" if BROWSER else "/api/v1/auth/login"
        credentials = {"email": self.email, "password": self.password}
        return client.post(path, json=credentials, headers={"Origin": self.base_url})


def _account(prefix: str, *, re_register: bool) -> Account:
    env = os.environ
    return Account(
        env["STARTERKIT_FUZZ_BASE_URL"],
        env[f"STARTERKIT_FUZZ_{prefix}_EMAIL"],
        env[f"STARTERKIT_FUZZ_{prefix}_PASSWORD"],
        re_register=re_register,
    )


def _sign(case: AnyCase, credentials: Credentials) -> None:
    if credentials.csrf_token is None:
        case.headers["Authorization"] = f"Bearer {credentials.access_token}"
        return
    case.cookies = {
        **(case.cookies or {}),
        ACCESS_COOKIE: credentials.access_token,
        CSRF_COOKIE: credentials.csrf_token,
        # Sent to every route, not only /auth/browser/*: the others must ignore it.
        REFRESH_COOKIE: credentials.refresh_token or "",
    }
    case.headers["X-CSRF-Token"] = credentials.csrf_token
    case.headers["Origin"] = os.environ["STARTERKIT_FUZZ_BASE_URL"]


# Registered first, so it wins for the operations it applies to.
@schemathesis.auth(refresh_interval=REFRESH_INTERVAL_SECONDS).apply_to(name_regex=ADMIN_OPERATIONS)
class AdminAuth:
    """Signs the superuser-only operations as the fuzz admin."""

    def __init__(self) -> None:
        self.account = _account("ADMIN", re_register=False)

    def get(self, _case: AnyCase, _context: AuthContext) -> Credentials:
        return self.account.token()

    def set(self, case: AnyCase, data: Credentials, _context: AuthContext) -> None:
        _sign(case, data)


@schemathesis.auth(refresh_interval=REFRESH_INTERVAL_SECONDS)
class UserAuth:
    """Signs every other operation as the ordinary fuzz user."""

    def __init__(self) -> None:
        self.account = _account("USER", re_register=True)

    def get(self, _case: AnyCase, _context: AuthContext) -> Credentials:
        return self.account.token()

    def set(self, case: AnyCase, data: Credentials, _context: AuthContext) -> None:
        _sign(case, data)
