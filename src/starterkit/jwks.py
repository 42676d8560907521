"""``GET /.well-known/jwks.json``: the public keys that verify this service's access tokens.

Another service verifies starterkit tokens with nothing but this URL (PyJWT's
``PyJWKClient``, any JOSE library): it fetches the set, picks the key named by the token's
``kid`` and checks the signature with that key's ``alg``. With JWT_ALGORITHM=HS256 the set is
empty: an HMAC secret is never published.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from starterkit.runtime import Runtime

JWKS_PATH = "/.well-known/jwks.json"
JWK_SET_TYPE = "application/jwk-set+json"  # RFC 7517 §8.5.1
_JWK_SET_SCHEMA = {
    "type": "object",
    "required": ["keys"],
    "properties": {
        "keys": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["kty", "kid", "alg", "use"],
                "properties": {
                    "kty": {"type": "string"},
                    "kid": {"type": "string"},
                    "alg": {"type": "string", "enum": ["EdDSA", "ES256", "RS256"]},
                    "use": {"type": "string", "enum": ["sig"]},
                },
            },
        }
    },
}


class JWKSetResponse(JSONResponse):
    """A JWK Set, with its own media type."""

    media_type = JWK_SET_TYPE


def build_jwks_router(kit: Runtime) -> APIRouter:
    """The JWKS route of ``kit``; mount it without a prefix (``create_app`` does)."""
    router = APIRouter(tags=["keys"])
    # Verifiers may keep the set as long as this process keeps its own copy.
    cache_control = f"public, max-age={kit.settings.keyset_refresh_seconds}"

    @router.get(
        JWKS_PATH,
        name="jwks",
        response_model=None,
        response_class=JWKSetResponse,
        responses={200: {"content": {JWK_SET_TYPE: {"schema": _JWK_SET_SCHEMA}}}},
    )
    async def jwks() -> JWKSetResponse:
        """The JSON Web Key Set (RFC 7517) of the keys that sign access tokens: the active
        one, the next one (published before it signs) and those still valid for tokens they
        signed. Each key has `kid` (its RFC 7638 thumbprint), `alg` and `use: sig`."""
        keyring = kit.tokens.keyring
        body: dict[str, Any] = {"keys": []}
        if keyring is not None:
            await keyring.ready()
            body = keyring.jwks()
        return JWKSetResponse(body, headers={"Cache-Control": cache_control})

    return router
