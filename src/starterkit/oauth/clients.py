"""Talking to identity providers: the authorization URL, the code exchange and who signed in.

The protocol is Authlib's: its OAuth 2.0 client builds the authorization URL (with the PKCE
S256 challenge) and redeems the code with the verifier; its OpenID Connect claims classes,
over joserfc, validate the ID token (OIDC Core §3.1.3.7: signature by a key of the provider's
JWKS, ``iss``, ``aud``, ``azp``, ``exp``, ``iat``, ``nonce``, ``at_hash``). This module adds
what a service needs around it: the discovery document fetched once and checked against the
configured issuer, the JWKS cached and fetched again for an unknown key, timeouts, and two
kinds of failure (the provider cannot be reached; the provider's answer is refused).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import httpx2
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oauth2.rfc6749.errors import OAuth2Error
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from starterkit.oauth.providers import ProviderConfig

logger = logging.getLogger("starterkit.oauth")

TIMEOUT_SECONDS = 10.0
METADATA_TTL_SECONDS = 3600.0
JWKS_REFETCH_SECONDS = 10.0  # at most one fetch for an unknown key per provider this often
ID_TOKEN_LEEWAY_SECONDS = 60
# Symmetric and "none" are never accepted, whatever a discovery document lists.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
GITHUB_ACCEPT = "application/vnd.github+json"


class ProviderUnavailable(Exception):
    """The provider could not be reached, or answered what no provider should."""


class ProviderRefused(Exception):
    """The provider's answer cannot be trusted or used: ``reason`` says why, for the log."""


@dataclass(frozen=True, slots=True)
class ExternalIdentity:
    """Who signed in at the provider.

    Attributes:
        subject: the provider's stable id of the user (``sub``; GitHub's numeric id).
        email: the address the provider gave, lower-cased, if any.
        email_verified: whether the provider asserts the user controls ``email``.
        name: a display name, if the provider gave one.
    """

    subject: str
    email: str | None
    email_verified: bool
    name: str | None = None


class ProviderClient(Protocol):
    """One provider, as the routes use it."""

    config: ProviderConfig

    async def authorization_url(
        self, *, redirect_uri: str, state: str, nonce: str, code_verifier: str
    ) -> str:
        """The provider's page to send the browser to."""

    async def identity(
        self, *, code: str, redirect_uri: str, code_verifier: str, nonce: str
    ) -> ExternalIdentity:
        """Redeem ``code`` and say who signed in."""


def build_client(config: ProviderConfig) -> ProviderClient:
    """The client of one configured provider."""
    if config.kind == "github":
        return GitHubClient(config)
    return OIDCClient(config)


def _session(config: ProviderConfig, redirect_uri: str, **options: Any) -> AsyncOAuth2Client:
    return AsyncOAuth2Client(
        client_id=config.client_id,
        client_secret=config.client_secret,
        scope=" ".join(config.scopes),
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        timeout=TIMEOUT_SECONDS,
        follow_redirects=False,
        **options,
    )


async def _fetch_token(
    session: AsyncOAuth2Client, url: str, *, code: str, code_verifier: str
) -> dict[str, Any]:
    try:
        token: dict[str, Any] = await session.fetch_token(
            url, code=code, code_verifier=code_verifier, headers={"Accept": "application/json"}
        )
    except (OAuth2Error, OAuthError) as error:  # an error status, or 200 with an error body
        raise ProviderRefused(f"the token endpoint refused the code: {error.error}") from None
    except httpx2.HTTPError as error:
        raise ProviderUnavailable(f"the token endpoint did not answer: {error}") from None
    except ValueError as error:  # an answer that is not a token at all
        raise ProviderRefused(f"the token endpoint answered no token: {error}") from None
    if not isinstance(token.get("access_token"), str):
        raise ProviderRefused("the token endpoint answered no access token")
    return token


class OIDCClient:
    """Any OpenID Connect provider, from its issuer's discovery document."""

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._keys: KeySet | None = None
        self._keys_at = 0.0

    @property
    def discovery_url(self) -> str:
        return f"{self.config.issuer}/.well-known/openid-configuration"

    async def metadata(self) -> dict[str, Any]:
        """The discovery document (fetched at most once an hour).

        Raises:
            ProviderUnavailable: it cannot be fetched, is not JSON, names another issuer or
                lacks an endpoint.
        """
        if self._metadata is not None and time.monotonic() - self._metadata_at < (
            METADATA_TTL_SECONDS
        ):
            return self._metadata
        document = await self._get_json(self.discovery_url)
        if not isinstance(document, dict):
            raise ProviderUnavailable(f"{self.discovery_url} is not a JSON object")
        # OIDC Discovery §4.3: the document must be the configured issuer's own.
        if document.get("issuer") != self.config.issuer:
            raise ProviderUnavailable(
                f"{self.discovery_url} names the issuer {document.get('issuer')!r}, not "
                f"{self.config.issuer!r}"
            )
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(document.get(key), str):
                raise ProviderUnavailable(f"{self.discovery_url} has no {key}")
        self._metadata, self._metadata_at = document, time.monotonic()
        return document

    async def authorization_url(
        self, *, redirect_uri: str, state: str, nonce: str, code_verifier: str
    ) -> str:
        metadata = await self.metadata()
        async with _session(self.config, redirect_uri) as session:
            url, _ = session.create_authorization_url(
                metadata["authorization_endpoint"],
                state=state,
                code_verifier=code_verifier,
                nonce=nonce,
            )
        return str(url)

    async def identity(
        self, *, code: str, redirect_uri: str, code_verifier: str, nonce: str
    ) -> ExternalIdentity:
        metadata = await self.metadata()
        methods = metadata.get("token_endpoint_auth_methods_supported") or []
        auth_method = (
            "client_secret_post"
            if "client_secret_basic" not in methods and "client_secret_post" in methods
            else "client_secret_basic"
        )
        async with _session(
            self.config, redirect_uri, token_endpoint_auth_method=auth_method
        ) as session:
            token = await _fetch_token(
                session, metadata["token_endpoint"], code=code, code_verifier=code_verifier
            )
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise ProviderRefused("the token endpoint answered no ID token")
        claims = await self._validate_id_token(
            id_token, access_token=token["access_token"], nonce=nonce, metadata=metadata
        )
        email = claims.get("email")
        return ExternalIdentity(
            subject=str(claims["sub"]),
            email=email.strip().lower() if isinstance(email, str) and email.strip() else None,
            email_verified=claims.get("email_verified") is True,
            name=claims.get("name") if isinstance(claims.get("name"), str) else None,
        )

    async def _validate_id_token(
        self, id_token: str, *, access_token: str, nonce: str, metadata: dict[str, Any]
    ) -> CodeIDToken:
        listed = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithms = [alg for alg in listed if alg in ASYMMETRIC_ALGORITHMS]
        registry = JWSRegistry(algorithms=algorithms, strict_check_header=False)
        try:
            try:
                decoded = jwt.decode(id_token, await self._key_set(), registry=registry)
            except InvalidKeyIdError:  # a key the provider published since the last fetch
                decoded = jwt.decode(id_token, await self._key_set(force=True), registry=registry)
            claims = CodeIDToken(
                decoded.claims,
                decoded.header,
                {
                    "iss": {"essential": True, "value": self.config.issuer},
                    "aud": {"essential": True, "value": self.config.client_id},
                    "sub": {"essential": True},
                },
                {"nonce": nonce, "client_id": self.config.client_id, "access_token": access_token},
            )
            claims.validate(leeway=ID_TOKEN_LEEWAY_SECONDS)
        except JoseError as error:
            raise ProviderRefused(f"the ID token is not valid: {error}") from None
        if claims.get("nonce") != nonce:  # Authlib skips the check when no nonce was sent
            raise ProviderRefused("the ID token's nonce is not this login's")
        return claims

    async def _key_set(self, *, force: bool = False) -> KeySet:
        stale = time.monotonic() - self._keys_at >= JWKS_REFETCH_SECONDS
        if self._keys is None or (force and stale):
            metadata = await self.metadata()
            document = await self._get_json(metadata["jwks_uri"])
            try:
                self._keys = KeySet.import_key_set(document)
            except (JoseError, TypeError, ValueError, KeyError) as error:
                problem = f"the provider's JWKS is not a key set: {error}"
                raise ProviderUnavailable(problem) from None
            self._keys_at = time.monotonic()
        return self._keys

    async def _get_json(self, url: str) -> Any:
        try:
            async with httpx2.AsyncClient(timeout=TIMEOUT_SECONDS) as client:
                response = await client.get(url, headers={"Accept": "application/json"})
            response.raise_for_status()
            return response.json()
        except httpx2.HTTPError as error:
            raise ProviderUnavailable(f"{url} did not answer: {error}") from None
        except ValueError:
            raise ProviderUnavailable(f"{url} did not answer JSON") from None


class GitHubClient:
    """GitHub (or a GitHub Enterprise Server): OAuth 2.0 and the user and emails API.

    GitHub issues no ID token, so who signed in comes from the API with the new access token;
    the subject is the numeric user id (a login can be renamed), and only a verified primary
    address counts as the user's email.
    """

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config

    async def authorization_url(
        self, *, redirect_uri: str, state: str, nonce: str, code_verifier: str
    ) -> str:
        async with _session(self.config, redirect_uri) as session:
            url, _ = session.create_authorization_url(
                f"{self.config.github_url}/login/oauth/authorize",
                state=state,
                code_verifier=code_verifier,
            )
        return str(url)

    async def identity(
        self, *, code: str, redirect_uri: str, code_verifier: str, nonce: str
    ) -> ExternalIdentity:
        async with _session(
            self.config,
            redirect_uri,
            token_endpoint_auth_method="client_secret_post",  # noqa: S106 - a method name
        ) as session:
            token = await _fetch_token(
                session,
                f"{self.config.github_url}/login/oauth/access_token",
                code=code,
                code_verifier=code_verifier,
            )
        headers = {"Authorization": f"Bearer {token['access_token']}", "Accept": GITHUB_ACCEPT}
        user = await self._get_json("/user", headers)
        if not isinstance(user, dict) or not isinstance(user.get("id"), int):
            raise ProviderRefused("GitHub's /user answer has no id")
        emails = await self._get_json("/user/emails", headers)
        primary = next(
            (
                entry["email"]
                for entry in (emails if isinstance(emails, list) else [])
                if isinstance(entry, dict)
                and entry.get("primary") is True
                and entry.get("verified") is True
                and isinstance(entry.get("email"), str)
            ),
            None,
        )
        name = user.get("name") or user.get("login")
        return ExternalIdentity(
            subject=str(user["id"]),
            email=primary.strip().lower() if primary else None,
            email_verified=primary is not None,
            name=name if isinstance(name, str) else None,
        )

    async def _get_json(self, path: str, headers: dict[str, str]) -> Any:
        url = f"{self.config.api_url}{path}"
        try:
            async with httpx2.AsyncClient(timeout=TIMEOUT_SECONDS) as client:
                response = await client.get(url, headers=headers)
        except httpx2.HTTPError as error:
            raise ProviderUnavailable(f"{url} did not answer: {error}") from None
        if response.status_code != 200:
            raise ProviderRefused(f"{url} answered {response.status_code}")
        try:
            return response.json()
        except ValueError:
            raise ProviderRefused(f"{url} did not answer JSON") from None
