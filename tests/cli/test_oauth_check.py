"""``starterkit check`` and ``serve`` with social-login providers: a provider that answers, one
that does not, and a provider configuration that cannot work."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from starterkit.cli import app
from tests.support.oidc import OIDCProvider, oidc_provider

runner = CliRunner()


@pytest.fixture
def provider() -> Iterator[OIDCProvider]:
    with oidc_provider() as running:
        yield running


@pytest.fixture
def db_env(monkeypatch: pytest.MonkeyPatch, database_url: str) -> str:
    monkeypatch.setenv("STARTERKIT_DATABASE_URL", database_url)
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    return database_url


def flat(output: str) -> str:
    """The output's words, without the table's borders and wrapping."""
    return " ".join(output.replace("│", " ").split())


def providers(**entries: dict[str, str]) -> str:
    return json.dumps(
        {name: {"client_id": "c", "client_secret": "s", **entry} for name, entry in entries.items()}
    )


@pytest.mark.usefixtures("db_env")
def test_check_says_which_providers_answer(
    monkeypatch: pytest.MonkeyPatch, provider: OIDCProvider
) -> None:
    monkeypatch.setenv(
        "STARTERKIT_OAUTH_PROVIDERS",
        providers(
            company={"issuer": provider.issuer},
            gone={"issuer": "http://127.0.0.1:9"},
            github={"preset": "github"},
        ),
    )
    monkeypatch.setenv("STARTERKIT_OAUTH_REDIRECT_URLS", '["https://app.example/done"]')
    monkeypatch.setenv("STARTERKIT_OAUTH_CALLBACK_BASE_URL", "https://api.example")
    result = runner.invoke(app, ["check"])
    text = flat(result.output)
    assert result.exit_code == 0, result.output  # a provider outage is a warning
    assert f"company: {provider.issuer} answers" in text
    assert "gone: http://127.0.0.1:9/.well-known/openid-configuration did not answer" in text
    assert "github: GitHub at https://github.com" in text
    assert "https://api.example/api/v1/auth/oauth/{name}/callback" in text


@pytest.mark.usefixtures("db_env")
def test_check_without_providers_says_so() -> None:
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 0, result.output
    assert "no social-login providers" in flat(result.output)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("{not json", "STARTERKIT_OAUTH_PROVIDERS must be a JSON object such as"),
        (providers(google={}), "needs an issuer (or a preset) for provider 'google'"),
        (providers(gitlab={"preset": "gitlab"}), "names an unknown preset 'gitlab'"),
        ('{"g": {"issuer": "https://x"}}', "needs a client_id for provider 'g'"),
        (providers(g={"issuer": "ftp://x"}), "needs issuer of provider 'g' as an http(s) URL"),
        (providers(g={"issuer": "https://x", "scope": "openid"}), "unknown key 'scope'"),
    ],
)
def test_a_bad_provider_configuration_is_one_sentence(
    monkeypatch: pytest.MonkeyPatch, database_url: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv("STARTERKIT_DATABASE_URL", database_url)
    monkeypatch.setenv("STARTERKIT_OAUTH_PROVIDERS", value)
    monkeypatch.setenv("STARTERKIT_OAUTH_REDIRECT_URLS", "https://app.example/done")
    for command in (["check"], ["serve"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 1, result.output
        assert fragment in flat(result.output), result.output
        assert "Traceback" not in result.output


def test_providers_without_redirect_urls_are_refused(
    monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    monkeypatch.setenv("STARTERKIT_DATABASE_URL", database_url)
    monkeypatch.setenv("STARTERKIT_OAUTH_PROVIDERS", providers(g={"issuer": "https://x"}))
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 1
    assert "STARTERKIT_OAUTH_REDIRECT_URLS needs at least one URL" in result.output
