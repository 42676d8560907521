"""OAUTH_PROVIDERS: what a provider entry may say, and the one sentence for each mistake."""

from __future__ import annotations

import re
from typing import Any

import pytest

from starterkit.oauth.providers import GITHUB_SCOPES, parse_providers


def test_an_issuer_and_the_github_preset_are_read_with_their_defaults() -> None:
    providers = parse_providers(
        '{"company": {"issuer": "https://sso.example/realms/main/", "client_id": " c ",'
        ' "client_secret": "s", "scopes": ["email"]},'
        ' "gh": {"preset": "github", "client_id": "c", "client_secret": "s",'
        ' "github_url": "https://github.example", "api_url": "https://github.example/api/v3"}}'
    )
    company, github = providers["company"], providers["gh"]
    assert (company.kind, company.issuer, company.client_id) == (
        "oidc",
        "https://sso.example/realms/main",
        "c",
    )
    assert company.scopes == ("openid", "email")  # openid is always asked for
    assert company.display_name == "Company"
    assert (github.kind, github.display_name, github.scopes) == ("github", "GitHub", GITHUB_SCOPES)
    assert github.api_url == "https://github.example/api/v3"
    assert "s" not in repr(github)  # never the secret
    assert parse_providers("") == {}
    assert parse_providers({}) == {}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[]", "must be a JSON object of provider name"),
        ({"Google": {}}, "has a provider named 'Google'"),
        ({"g": "x"}, "must give provider 'g' as an object"),
        ({"g": {"issuer": "https://x", "client_id": "c"}}, "needs a client_secret"),
        ({"g": {"issuer": "https://x", "client_id": 1, "client_secret": "s"}}, "as a string"),
        ({"g": {"client_id": "c", "client_secret": "s"}}, "needs an issuer (or a preset)"),
        (
            {
                "g": {
                    "preset": "github",
                    "issuer": "https://x",
                    "client_id": "c",
                    "client_secret": "s",
                }
            },
            "cannot give both preset and issuer",
        ),
        (
            {
                "g": {
                    "issuer": "https://x",
                    "api_url": "https://y",
                    "client_id": "c",
                    "client_secret": "s",
                }
            },
            "cannot give github_url or api_url",
        ),
        (
            {"g": {"issuer": "https://x?a=1", "client_id": "c", "client_secret": "s"}},
            "as an http(s) URL without ? or #",
        ),
        (
            {
                "g": {
                    "issuer": "https://x",
                    "scopes": "openid",
                    "client_id": "c",
                    "client_secret": "s",
                }
            },
            "as a JSON list of strings",
        ),
    ],
)
def test_each_mistake_is_one_sentence(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_providers(value)
