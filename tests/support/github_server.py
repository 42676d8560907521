"""A GitHub-style OAuth 2.0 server on a free loopback port, in a thread of the test process.

"Sign in with GitHub" can only be tested end to end against something that speaks GitHub's
web application flow: the authorize page, the code exchange at ``/login/oauth/access_token``
and the REST API's ``/user`` and ``/user/emails``. github.com itself is out of reach of a
test (no network, no real accounts), and a mocked HTTP client would only check that the
client agrees with its own mock. This is a real HTTP server instead, laid out like GitHub
Enterprise Server: the web base is ``base_url`` and the API base is ``base_url + "/api/v3"``,
so a client written for github.com works once it is pointed at it.

What it mimics from GitHub's documentation, because clients trip over exactly these:

* The token endpoint answers form-encoded (``access_token=...&scope=...&token_type=bearer``)
  unless the request's ``Accept`` header asks for ``application/json``; errors follow the
  same negotiation.
* Granted scopes come back comma-separated (``"read:user,user:email"``), whatever separator
  the authorize request used.
* Only ``S256`` PKCE is supported; ``plain`` is refused.
* Client credentials are accepted in the form body (``client_secret_post``) or in an HTTP
  Basic header (``client_secret_basic``, Authlib's default); each request records which.
* ``/user/emails`` answers 404 to a token without the ``user:email`` (or ``user``) scope.
* The API refuses requests without a ``User-Agent`` header (403), as api.github.com does.

One deliberate difference, switchable: GitHub answers token errors with HTTP 200 and an error
body. By default this server answers them with 400, which standard OAuth clients turn into
an exception; ``errors_with_status_200=True`` reproduces GitHub's real behaviour, for tests
that check the client looks at the body and not only at the status.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import html
import re
import secrets
import socket
import string
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

CODE_LIFETIME_SECONDS = 600.0
"""How long an authorization code is valid: ten minutes, as on GitHub."""

_TOKEN_ALPHABET = string.ascii_letters + string.digits
# RFC 7636: a verifier is 43 to 128 unreserved characters; an S256 challenge is the 43
# characters of an unpadded base64url SHA-256 digest.
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_S256_CHALLENGE = re.compile(r"[A-Za-z0-9\-_]{43}")
_DOCS = "https://docs.github.com"
_TROUBLESHOOTING = f"{_DOCS}/apps/oauth-apps/maintaining-oauth-apps/troubleshooting"
_TOKEN_ERROR_DOCS = f"{_TROUBLESHOOTING}-oauth-app-access-token-request-errors/"
_AUTHORIZE_ERROR_DOCS = f"{_TROUBLESHOOTING}-authorization-request-errors/"
_TOKEN_ERROR_DESCRIPTIONS = {
    "incorrect_client_credentials": "The client_id and/or client_secret passed are incorrect.",
    "bad_verification_code": "The code passed is incorrect or expired.",
    "redirect_uri_mismatch":
        "The redirect_uri MUST match the registered callback URL for this application.",
    "unsupported_grant_type": "The grant type is not supported.",
}  # fmt: skip
# Scopes that include others: "user" grants read and write access to the profile and emails.
_IMPLIED_SCOPES = {"user": ("read:user", "user:email", "user:follow")}


@dataclass
class GitHubEmail:
    """One of a user's email addresses, as ``/user/emails`` lists it."""

    email: str
    primary: bool = True
    verified: bool = True


@dataclass
class GitHubUser:
    """An account that can sign in: ``login`` is what the consent form's ``login`` field names."""

    id: int
    login: str
    name: str | None = None
    emails: list[GitHubEmail] = field(default_factory=list)


@dataclass(frozen=True)
class _Authorization:
    """A valid authorize request: who asks, where to send the answer, what for."""

    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str | None
    code_challenge: str | None


@dataclass(frozen=True)
class _Code:
    """An authorization code the user granted and what it is bound to."""

    authorization: _Authorization
    user: GitHubUser
    issued_at: float


@dataclass(frozen=True)
class _Token:
    """An access token: whose it is and which scopes it carries."""

    user: GitHubUser
    scopes: tuple[str, ...]


class _TokenError(Exception):
    """A refused code exchange, answered with GitHub's ``error`` code."""

    def __init__(self, error: str, description: str | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.description = description or _TOKEN_ERROR_DESCRIPTIONS.get(error, error)


class GitHubServer:
    """GitHub's OAuth web application flow and user API, served on 127.0.0.1.

    Use it as a context manager; the server runs while the block does::

        with GitHubServer(client_id="cid", client_secret="csecret") as github:
            github.add_user(GitHubUser(1, "octocat", emails=[GitHubEmail("o@example.com")]))
            ...  # point the client at github.base_url and github.api_url

    A user signs in by posting the consent form: ``POST /login/oauth/authorize?<query>`` with
    the form fields ``login`` (a known user's login) and ``action`` (``allow`` or ``deny``).

    Attributes:
        base_url: The web base (``/login/oauth/authorize``, ``/login/oauth/access_token``).
        api_url: The REST API base, ``base_url + "/api/v3"`` as on GitHub Enterprise Server.
        token_requests: Every form the token endpoint received, in order, each with an extra
            ``"auth_method"`` key: ``"basic"`` (HTTP Basic header), ``"post"`` (credentials in
            the form) or ``"none"``.
        code_lifetime_seconds: How long a new authorization code is valid (a test may lower
            it to see a code expire).
    """

    def __init__(
        self, *, client_id: str, client_secret: str, errors_with_status_200: bool = False
    ) -> None:
        """Prepare the server; it listens from ``__enter__`` on.

        Args:
            client_id: The one registered OAuth app's client ID.
            client_secret: Its client secret.
            errors_with_status_200: Answer token errors with HTTP 200, as GitHub really does,
                instead of 400.
        """
        self.client_id = client_id
        self.client_secret = client_secret
        self.errors_with_status_200 = errors_with_status_200
        self.code_lifetime_seconds = CODE_LIFETIME_SECONDS
        self.token_requests: list[dict[str, str]] = []
        self._users: dict[str, GitHubUser] = {}
        self._codes: dict[str, _Code] = {}
        self._tokens: dict[str, _Token] = {}
        # add_user runs in the test's thread, the handlers in the server's.
        self._lock = threading.Lock()
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        port: int = self._socket.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        self.api_url = f"{self.base_url}/api/v3"
        config = uvicorn.Config(
            self._app(),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
            ws="none",  # no websockets import (and none of its deprecation warnings)
        )
        self._server = _QuickServer(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name=f"github-server-{port}",
            daemon=True,
        )

    def add_user(self, user: GitHubUser) -> None:
        """Make ``user`` able to sign in (replacing any user of the same login)."""
        with self._lock:
            self._users[user.login.lower()] = user

    def __enter__(self) -> GitHubServer:
        """Start serving and wait until the server accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError("the GitHub test server did not start")
            time.sleep(0.005)
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop serving: close every connection and wait for the server's thread."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._socket.close()

    # --- the app -----------------------------------------------------------------------

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/login/oauth/authorize", self._authorize_page, methods=["GET"]),
                Route("/login/oauth/authorize", self._authorize_decision, methods=["POST"]),
                Route("/login/oauth/access_token", self._access_token, methods=["POST"]),
                Route("/api/v3/user", self._api_user, methods=["GET"]),
                Route("/api/v3/user/emails", self._api_user_emails, methods=["GET"]),
            ]
        )

    # --- /login/oauth/authorize --------------------------------------------------------

    async def _authorize_page(self, request: Request) -> Response:
        """The consent page: a form naming the user and allowing or denying access."""
        checked = self._check_authorization(request)
        if isinstance(checked, Response):
            return checked
        action = html.escape(str(request.url), quote=True)
        scopes = html.escape(", ".join(checked.scopes) or "(public data only)")
        page = (
            "<!doctype html><title>Authorize application</title>"
            f"<h1>Authorize {html.escape(checked.client_id)}</h1><p>Scopes: {scopes}</p>"
            f'<form method="post" action="{action}">'
            '<label>Login <input name="login" autocomplete="username"></label>'
            '<button name="action" value="allow">Authorize</button>'
            '<button name="action" value="deny">Cancel</button></form>'
        )
        return HTMLResponse(page)

    async def _authorize_decision(self, request: Request) -> Response:
        """The consent form's answer: redirect back with a code, or with access_denied."""
        checked = self._check_authorization(request)
        if isinstance(checked, Response):
            return checked
        form = _parse_form(await request.body())
        action = form.get("action")
        if action == "deny":
            return _redirect(
                checked.redirect_uri,
                error="access_denied",
                error_description="The user has denied your application access.",
                error_uri=f"{_AUTHORIZE_ERROR_DOCS}#access-denied",
                state=checked.state,
            )
        if action != "allow":
            return PlainTextResponse("action must be allow or deny", status_code=400)
        with self._lock:
            user = self._users.get(form.get("login", "").lower())
            if user is None:
                return PlainTextResponse("Incorrect username or password.", status_code=400)
            code = secrets.token_hex(10)
            self._codes[code] = _Code(checked, user, time.monotonic())
        return _redirect(checked.redirect_uri, code=code, state=checked.state)

    def _check_authorization(self, request: Request) -> _Authorization | Response:
        """The authorize query parsed, or the answer that refuses it.

        An unknown client or a missing redirect_uri is answered here (there is nowhere safe to
        redirect to); a bad PKCE request is redirected back with ``error=invalid_request``.
        """
        query = request.query_params
        client_id = query.get("client_id", "")
        if not hmac.compare_digest(client_id.encode(), self.client_id.encode()):
            return PlainTextResponse("Unknown client_id", status_code=400)
        redirect_uri = query.get("redirect_uri", "")
        if not redirect_uri:
            return PlainTextResponse("redirect_uri is required", status_code=400)
        state = query.get("state")
        challenge = query.get("code_challenge") or None
        method = query.get("code_challenge_method") or None
        problem = None
        if challenge is not None and method is None:
            # RFC 7636 makes a missing method "plain", which GitHub does not support.
            problem = "code_challenge_method is required; only S256 is supported."
        elif method is not None and method != "S256":
            problem = "code_challenge_method must be S256; plain is not supported."
        elif challenge is not None and not _S256_CHALLENGE.fullmatch(challenge):
            problem = "code_challenge must be an unpadded base64url SHA-256 digest."
        if problem is not None:
            return _redirect(
                redirect_uri, error="invalid_request", error_description=problem, state=state
            )
        return _Authorization(
            client_id=client_id,
            redirect_uri=redirect_uri,
            scopes=_parse_scopes(query.get("scope", "")),
            state=state,
            code_challenge=challenge,
        )

    # --- /login/oauth/access_token -----------------------------------------------------

    async def _access_token(self, request: Request) -> Response:
        """Exchange a code for a token, answering in JSON or form encoding as asked."""
        form = _parse_form(await request.body())
        basic = _basic_credentials(request.headers.get("authorization", ""))
        auth_method = (
            "basic" if basic is not None else "post" if "client_secret" in form else "none"
        )
        with self._lock:
            self.token_requests.append({**form, "auth_method": auth_method})
        wants_json = "application/json" in request.headers.get("accept", "").lower()
        try:
            self._authenticate_client(form, basic)
            token = self._exchange(form)
        except _TokenError as refused:
            body = {
                "error": refused.error,
                "error_description": refused.description,
                "error_uri": f"{_TOKEN_ERROR_DOCS}#{refused.error.replace('_', '-')}",
            }
            # GitHub itself answers 200 with an error body; clients must check for "error".
            status = 200 if self.errors_with_status_200 else 400
            return _token_response(body, wants_json=wants_json, status_code=status)
        return _token_response(token, wants_json=wants_json, status_code=200)

    def _authenticate_client(
        self, form: dict[str, str], basic: tuple[str, str] | _Malformed | None
    ) -> None:
        """Check the client's ID and secret, from the Basic header or else from the form."""
        if isinstance(basic, _Malformed):
            raise _TokenError("incorrect_client_credentials")
        if basic is not None:
            client_id, client_secret = basic
            if form.get("client_id", client_id) != client_id:
                raise _TokenError("incorrect_client_credentials")
        else:
            client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        id_ok = hmac.compare_digest(client_id.encode(), self.client_id.encode())
        secret_ok = hmac.compare_digest(client_secret.encode(), self.client_secret.encode())
        if not (id_ok and secret_ok):
            raise _TokenError("incorrect_client_credentials")

    def _exchange(self, form: dict[str, str]) -> dict[str, str]:
        """Redeem the form's code for a new access token, or refuse it.

        A code is spent by the first exchange that names it, even one refused for its
        redirect_uri or PKCE verifier: a code is never worth a second try.
        """
        grant_type = form.get("grant_type", "authorization_code")
        if grant_type != "authorization_code":
            raise _TokenError("unsupported_grant_type")
        with self._lock:
            code = self._codes.pop(form.get("code", ""), None)
        if code is None or code.authorization.client_id != self.client_id:
            raise _TokenError("bad_verification_code")
        if time.monotonic() - code.issued_at >= self.code_lifetime_seconds:
            raise _TokenError("bad_verification_code")
        redirect_uri = form.get("redirect_uri")
        if redirect_uri and redirect_uri != code.authorization.redirect_uri:
            raise _TokenError("redirect_uri_mismatch")
        challenge = code.authorization.code_challenge
        if challenge is not None:
            verifier = form.get("code_verifier", "")
            if not verifier:
                raise _TokenError("invalid_grant", "The code_verifier is missing.")
            if not _VERIFIER.fullmatch(verifier):
                raise _TokenError("invalid_grant", "The code_verifier is malformed.")
            if not hmac.compare_digest(_s256(verifier), challenge):
                raise _TokenError("invalid_grant", "The code_verifier does not match.")
        access_token = "gho_" + "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(36))
        scopes = code.authorization.scopes
        with self._lock:
            self._tokens[access_token] = _Token(code.user, scopes)
        return {"access_token": access_token, "token_type": "bearer", "scope": ",".join(scopes)}

    # --- /api/v3 -----------------------------------------------------------------------

    async def _api_user(self, request: Request) -> Response:
        """The signed-in user's profile; ``email`` is the primary verified address or null."""
        token = self._api_token(request)
        if isinstance(token, Response):
            return token
        user = token.user
        primary = next((e.email for e in user.emails if e.primary and e.verified), None)
        profile = {
            "login": user.login,
            "id": user.id,
            "node_id": base64.b64encode(f"04:User{user.id}".encode()).decode(),
            "avatar_url": f"{self.base_url}/avatars/u/{user.id}",
            "url": f"{self.api_url}/users/{user.login}",
            "html_url": f"{self.base_url}/{user.login}",
            "type": "User",
            "site_admin": False,
            "name": user.name,
            "company": None,
            "blog": "",
            "location": None,
            "email": primary,
            "bio": None,
            "created_at": "2020-01-01T00:00:00Z",
            "updated_at": "2020-01-01T00:00:00Z",
        }
        return _api_response(profile, token)

    async def _api_user_emails(self, request: Request) -> Response:
        """The user's addresses; 404 unless the token has the ``user:email`` scope."""
        token = self._api_token(request)
        if isinstance(token, Response):
            return token
        if "user:email" not in _effective_scopes(token.scopes):
            return _api_error("Not Found", 404, token)
        emails = [
            {
                "email": e.email,
                "primary": e.primary,
                "verified": e.verified,
                "visibility": "public" if e.primary else None,
            }
            for e in token.user.emails
        ]
        return _api_response(emails, token, accepted_scopes="user")

    def _api_token(self, request: Request) -> _Token | Response:
        """The request's access token, or the answer that refuses the request."""
        if not request.headers.get("user-agent"):
            message = (
                "Request forbidden by administrative rules. "
                "Please make sure your request has a User-Agent header."
            )
            return PlainTextResponse(message, status_code=403)
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        token = None
        if scheme.lower() in {"bearer", "token"}:
            with self._lock:
                token = self._tokens.get(credentials.strip())
        if token is None:
            return _api_error("Bad credentials", 401)
        return token


class _QuickServer(uvicorn.Server):
    """A uvicorn server that notices ``should_exit`` within 10 ms instead of 100 ms.

    Every test that starts a server waits for it to stop; uvicorn's own loop checks ten times
    a second, which made stopping the slowest part of a quick test.
    """

    async def main_loop(self) -> None:
        """Tick every 10 ms until ``on_tick`` says to stop (it also refreshes the Date header)."""
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864000
            await asyncio.sleep(0.01)


class _Malformed:
    """An Authorization: Basic header that does not decode to ``id:secret``."""


def _basic_credentials(header: str) -> tuple[str, str] | _Malformed | None:
    """The client ID and secret of an HTTP Basic header (RFC 6749 2.3.1), if there is one."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return _Malformed()
    client_id, colon, client_secret = decoded.partition(":")
    if not colon:
        return _Malformed()
    # OAuth clients form-encode both parts before joining them (RFC 6749 2.3.1).
    return unquote(client_id.replace("+", " ")), unquote(client_secret.replace("+", " "))


def _parse_form(body: bytes) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body; the first of repeated fields wins."""
    form: dict[str, str] = {}
    for name, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
        form.setdefault(name, value)
    return form


def _parse_scopes(scope: str) -> tuple[str, ...]:
    """Requested scopes, space- or comma-separated, without repeats, in order."""
    return tuple(dict.fromkeys(s for s in re.split(r"[\s,]+", scope) if s))


def _effective_scopes(scopes: tuple[str, ...]) -> set[str]:
    """The scopes granted plus those they include (``user`` includes ``user:email``)."""
    effective = set(scopes)
    for scope in scopes:
        effective.update(_IMPLIED_SCOPES.get(scope, ()))
    return effective


def _s256(verifier: str) -> str:
    """The S256 code challenge of a PKCE verifier: unpadded base64url of its SHA-256."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _redirect(redirect_uri: str, **params: str | None) -> RedirectResponse:
    """A 302 to ``redirect_uri`` with ``params`` (those not None) added to its query."""
    parts = urlsplit(redirect_uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [(name, value) for name, value in params.items() if value is not None]
    return RedirectResponse(urlunsplit(parts._replace(query=urlencode(query))), status_code=302)


def _token_response(body: dict[str, str], *, wants_json: bool, status_code: int) -> Response:
    """A token endpoint answer: JSON if the client asked for it, else form-encoded."""
    if wants_json:
        return JSONResponse(body, status_code=status_code)
    return Response(
        urlencode(body),
        status_code=status_code,
        media_type="application/x-www-form-urlencoded; charset=utf-8",
    )


def _api_response(content: object, token: _Token, *, accepted_scopes: str = "") -> JSONResponse:
    """A REST API answer with GitHub's scope headers."""
    headers = {
        "X-OAuth-Scopes": ", ".join(token.scopes),
        "X-Accepted-OAuth-Scopes": accepted_scopes,
    }
    return JSONResponse(content, headers=headers)


def _api_error(message: str, status_code: int, token: _Token | None = None) -> JSONResponse:
    """A REST API error body, as GitHub words it."""
    body = {"message": message, "documentation_url": f"{_DOCS}/rest", "status": str(status_code)}
    headers = {"X-OAuth-Scopes": ", ".join(token.scopes)} if token is not None else {}
    return JSONResponse(body, status_code=status_code, headers=headers)
