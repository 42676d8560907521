"""The GitHub test server speaks GitHub's OAuth web flow, so end-to-end tests can trust it."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.support.github_server import GitHubEmail, GitHubServer, GitHubUser

CLIENT_ID = "cid"
CLIENT_SECRET = "csecret"
CALLBACK = "http://app.example/auth/github/callback"
VERIFIER = "v" * 43 + "-._~0123456789"
OCTOCAT = GitHubUser(
    id=583231,
    login="octocat",
    name="The Octocat",
    emails=[
        GitHubEmail("octocat@example.com"),
        GitHubEmail("old@example.com", primary=False, verified=False),
    ],
)


def challenge_of(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@pytest.fixture
def github() -> Iterator[GitHubServer]:
    with GitHubServer(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as server:
        server.add_user(OCTOCAT)
        yield server


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as http:
        yield http


def authorize(
    http: httpx.Client, github: GitHubServer, *, action: str = "allow", **query: str
) -> dict[str, list[str]]:
    """Post the consent form; return the query of the redirect back to the client."""
    params = {
        "client_id": CLIENT_ID,
        "redirect_uri": CALLBACK,
        "scope": "read:user user:email",
        "state": "st4te",
        "code_challenge": challenge_of(VERIFIER),
        "code_challenge_method": "S256",
        **query,
    }
    url = f"{github.base_url}/login/oauth/authorize"
    page = http.get(url, params=params)
    assert page.status_code == 200, page.text
    answer = http.post(url, params=params, data={"login": "octocat", "action": action})
    assert answer.status_code == 302, answer.text
    location = urlsplit(answer.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == CALLBACK
    return parse_qs(location.query)


def exchange(
    http: httpx.Client, github: GitHubServer, code: str, verifier: str = VERIFIER
) -> httpx.Response:
    return http.post(
        f"{github.base_url}/login/oauth/access_token",
        data={
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "code": code,
            "redirect_uri": CALLBACK,
            "code_verifier": verifier,
        },
        headers={"Accept": "application/json"},
    )


def test_the_allow_flow_with_pkce_gives_a_token_for_the_user_api(
    github: GitHubServer, client: httpx.Client
) -> None:
    redirected = authorize(client, github)
    assert redirected["state"] == ["st4te"]

    answer = exchange(client, github, redirected["code"][0])

    assert answer.status_code == 200
    token = answer.json()
    assert token["token_type"] == "bearer"
    assert token["scope"] == "read:user,user:email"
    assert token["access_token"].startswith("gho_")
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    user = client.get(f"{github.api_url}/user", headers=bearer).json()
    assert (user["id"], user["login"], user["name"]) == (583231, "octocat", "The Octocat")
    assert user["email"] == "octocat@example.com"
    legacy = {"Authorization": f"token {token['access_token']}"}
    emails = client.get(f"{github.api_url}/user/emails", headers=legacy)
    assert emails.json() == [
        {"email": "octocat@example.com", "primary": True, "verified": True, "visibility": "public"},
        {"email": "old@example.com", "primary": False, "verified": False, "visibility": None},
    ]
    assert github.token_requests[0]["auth_method"] == "post"
    assert github.token_requests[0]["code_verifier"] == VERIFIER


def test_basic_auth_and_the_default_form_encoded_answer(
    github: GitHubServer, client: httpx.Client
) -> None:
    code = authorize(client, github, code_challenge="", code_challenge_method="")["code"][0]

    answer = client.post(
        f"{github.base_url}/login/oauth/access_token",
        data={"code": code, "code_verifier": VERIFIER},  # a verifier without a challenge is fine
        auth=(CLIENT_ID, CLIENT_SECRET),
    )

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/x-www-form-urlencoded")
    fields = parse_qs(answer.text)
    assert fields["token_type"] == ["bearer"]
    assert fields["scope"] == ["read:user,user:email"]
    assert github.token_requests == [
        {"code": code, "code_verifier": VERIFIER, "auth_method": "basic"}
    ]


def test_a_code_works_once(github: GitHubServer, client: httpx.Client) -> None:
    code = authorize(client, github)["code"][0]
    assert exchange(client, github, code).status_code == 200

    again = exchange(client, github, code)

    assert again.status_code == 400
    assert again.json()["error"] == "bad_verification_code"


def test_a_wrong_verifier_is_refused_and_spends_the_code(
    github: GitHubServer, client: httpx.Client
) -> None:
    code = authorize(client, github)["code"][0]

    wrong = exchange(client, github, code, verifier="w" * 43)

    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"
    assert exchange(client, github, code).json()["error"] == "bad_verification_code"


def test_bad_client_credentials_and_expired_codes_are_refused(
    github: GitHubServer, client: httpx.Client
) -> None:
    code = authorize(client, github)["code"][0]
    bad = client.post(
        f"{github.base_url}/login/oauth/access_token",
        data={"client_id": CLIENT_ID, "client_secret": "nope", "code": code},
        headers={"Accept": "application/json"},
    )
    assert (bad.status_code, bad.json()["error"]) == (400, "incorrect_client_credentials")

    github.code_lifetime_seconds = 0
    expired = exchange(client, github, authorize(client, github)["code"][0])
    assert expired.json()["error"] == "bad_verification_code"


def test_errors_can_come_with_status_200_as_on_github(client: httpx.Client) -> None:
    with GitHubServer(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, errors_with_status_200=True
    ) as github:
        answer = exchange(client, github, "no-such-code")

    assert answer.status_code == 200
    assert answer.json()["error"] == "bad_verification_code"


def test_deny_redirects_with_access_denied(github: GitHubServer, client: httpx.Client) -> None:
    redirected = authorize(client, github, action="deny")

    assert redirected["error"] == ["access_denied"]
    assert redirected["error_description"] == ["The user has denied your application access."]
    assert redirected["state"] == ["st4te"]
    assert "code" not in redirected


def test_only_s256_pkce_is_accepted(github: GitHubServer, client: httpx.Client) -> None:
    answer = client.post(
        f"{github.base_url}/login/oauth/authorize",
        params={
            "client_id": CLIENT_ID,
            "redirect_uri": CALLBACK,
            "state": "s",
            "code_challenge": VERIFIER,
            "code_challenge_method": "plain",
        },
        data={"login": "octocat", "action": "allow"},
    )

    assert answer.status_code == 302
    redirected = parse_qs(urlsplit(answer.headers["location"]).query)
    assert redirected["error"] == ["invalid_request"]
    assert redirected["state"] == ["s"]


def test_unknown_clients_and_logins_get_400(github: GitHubServer, client: httpx.Client) -> None:
    url = f"{github.base_url}/login/oauth/authorize"
    unknown_client = client.get(url, params={"client_id": "other", "redirect_uri": CALLBACK})
    assert unknown_client.status_code == 400
    no_redirect = client.get(url, params={"client_id": CLIENT_ID})
    assert no_redirect.status_code == 400
    unknown_login = client.post(
        url,
        params={"client_id": CLIENT_ID, "redirect_uri": CALLBACK},
        data={"login": "nobody", "action": "allow"},
    )
    assert unknown_login.status_code == 400


def test_emails_need_the_user_email_scope(github: GitHubServer, client: httpx.Client) -> None:
    def token_for(scope: str) -> dict[str, str]:
        code = authorize(client, github, scope=scope)["code"][0]
        return {"Authorization": f"Bearer {exchange(client, github, code).json()['access_token']}"}

    narrow = client.get(f"{github.api_url}/user/emails", headers=token_for("read:user"))
    assert (narrow.status_code, narrow.json()["message"]) == (404, "Not Found")
    broad = client.get(f"{github.api_url}/user/emails", headers=token_for("user"))
    assert broad.status_code == 200
    no_token = client.get(f"{github.api_url}/user")
    assert (no_token.status_code, no_token.json()["message"]) == (401, "Bad credentials")
