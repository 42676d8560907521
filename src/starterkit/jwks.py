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


def build_jwks_router(kit: Runtime) -> APIRouter:
    """The JWKS route of ``kit``; mount it without a prefix (``create_app`` does)."""
    router = APIRouter(tags=["keys"])
    # Verifiers may keep the set as long as this process keeps its own copy.
    cache_control = f"public, max-age={kit.settings.keyset_refresh_seconds}"

    @router.get(JWKS_PATH, name="jwks", response_model=None)
    async def jwks() -> JSONResponse:
        """The JSON Web Key Set (RFC 7517) of the keys that sign access tokens: the active
        one, the next one (published before it signs) and those still valid for tokens they
        signed. Each key has `kid` (its RFC 7638 thumbprint), `alg` and `use: sig`."""
        keyring = kit.tokens.keyring
        body: dict[str, Any] = {"keys": []}
        if keyring is not None:
            await keyring.ready()
            body = keyring.jwks()
        return JSONResponse(
            body,
            headers={"Cache-Control": cache_control},
            media_type="application/jwk-set+json",
        )

    return router
