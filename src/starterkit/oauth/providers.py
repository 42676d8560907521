"""The OAUTH_PROVIDERS setting: which identity providers users may sign in with (SPEC §12).

A JSON object, name → provider::

    {"google": {"issuer": "https://accounts.google.com",
                "client_id": "…", "client_secret": "…"},
     "github": {"preset": "github", "client_id": "…", "client_secret": "…"}}

Any OpenID Connect provider is named by its issuer: its discovery document
(``{issuer}/.well-known/openid-configuration``) gives the endpoints and the JWKS. The ``github``
preset is OAuth 2.0 plus GitHub's user and emails API; ``github_url`` and ``api_url`` point it
at a GitHub Enterprise Server. This module only reads and checks the setting: nothing here
talks to a provider.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

NAME_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,31}")
PRESETS = ("github",)
GITHUB_URL = "https://github.com"
GITHUB_API_URL = "https://api.github.com"
OIDC_SCOPES = ("openid", "email", "profile")
GITHUB_SCOPES = ("read:user", "user:email")

_KNOWN_KEYS = {
    "client_id",
    "client_secret",
    "issuer",
    "preset",
    "scopes",
    "display_name",
    "github_url",
    "api_url",
}


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """One configured provider.

    Attributes:
        name: the key in OAUTH_PROVIDERS, used in paths (``/auth/oauth/{name}/…``).
        kind: ``oidc`` (an issuer) or ``github`` (the preset).
        display_name: what a login button shows.
        issuer: the OpenID Connect issuer (``oidc`` only).
        github_url: GitHub's web base (authorize and token endpoints).
        api_url: GitHub's API base (user and emails).
    """

    name: str
    kind: Literal["oidc", "github"]
    client_id: str
    client_secret: str
    display_name: str
    scopes: tuple[str, ...]
    issuer: str = ""
    github_url: str = GITHUB_URL
    api_url: str = GITHUB_API_URL

    def __repr__(self) -> str:  # never the client secret
        return f"ProviderConfig(name={self.name!r}, kind={self.kind!r})"


def parse_providers(value: Any) -> dict[str, ProviderConfig]:
    """Read OAUTH_PROVIDERS (JSON text or an already parsed mapping).

    Raises:
        ValueError: one sentence naming the provider and what is wrong with it.
    """
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError(
                'must be a JSON object such as {"google": {"issuer": "https://accounts.'
                'google.com", "client_id": "…", "client_secret": "…"}}'
            ) from None
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object of provider name → settings")
    return {name: _provider(name, entry) for name, entry in value.items()}


def _provider(name: Any, entry: Any) -> ProviderConfig:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"has a provider named {name!r}: names are lower-case letters, digits, - and _ "
            "(at most 32), starting with a letter"
        )
    if not isinstance(entry, dict):
        raise ValueError(f"must give provider {name!r} as an object with client_id and more")
    unknown = sorted(set(entry) - _KNOWN_KEYS)
    if unknown:
        raise ValueError(f"has an unknown key {unknown[0]!r} in provider {name!r}")
    client_id = _text(name, entry, "client_id", required=True)
    client_secret = _text(name, entry, "client_secret", required=True)
    preset = _text(name, entry, "preset")
    issuer = _text(name, entry, "issuer")
    display_name = _text(name, entry, "display_name") or name.replace("_", " ").title()
    scopes = entry.get("scopes")
    if scopes is not None and (
        not isinstance(scopes, list)
        or not all(isinstance(scope, str) and scope.strip() for scope in scopes)
    ):
        raise ValueError(f"needs scopes of provider {name!r} as a JSON list of strings")
    if preset:
        if preset not in PRESETS:
            raise ValueError(f"names an unknown preset {preset!r} for provider {name!r}")
        if issuer:
            raise ValueError(f"cannot give both preset and issuer for provider {name!r}")
        return ProviderConfig(
            name=name,
            kind="github",
            client_id=client_id,
            client_secret=client_secret,
            display_name=_text(name, entry, "display_name") or "GitHub",
            scopes=tuple(scopes) if scopes else GITHUB_SCOPES,
            github_url=_url(name, entry, "github_url", GITHUB_URL),
            api_url=_url(name, entry, "api_url", GITHUB_API_URL),
        )
    if not issuer:
        raise ValueError(f"needs an issuer (or a preset) for provider {name!r}")
    if "github_url" in entry or "api_url" in entry:
        raise ValueError(f"cannot give github_url or api_url to OIDC provider {name!r}")
    issuer = _url(name, entry, "issuer", "")
    wanted = tuple(scopes) if scopes else OIDC_SCOPES
    return ProviderConfig(
        name=name,
        kind="oidc",
        client_id=client_id,
        client_secret=client_secret,
        display_name=display_name,
        scopes=wanted if "openid" in wanted else ("openid", *wanted),
        issuer=issuer,
    )


def _text(name: str, entry: dict[str, Any], key: str, *, required: bool = False) -> str:
    value = entry.get(key, "")
    if not isinstance(value, str):
        raise ValueError(f"needs {key} of provider {name!r} as a string")
    value = value.strip()
    if required and not value:
        raise ValueError(f"needs a {key} for provider {name!r}")
    return value


def _url(name: str, entry: dict[str, Any], key: str, default: str) -> str:
    value = _text(name, entry, key) or default
    if not value.startswith(("https://", "http://")) or "?" in value or "#" in value:
        raise ValueError(f"needs {key} of provider {name!r} as an http(s) URL without ? or #")
    return value.rstrip("/")
