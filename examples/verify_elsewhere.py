"""Another service that accepts starterkit access tokens, knowing only the JWKS URL.

It holds no secret of starterkit's: PyJWT's ``PyJWKClient`` fetches the public keys from
``/.well-known/jwks.json``, caches them, and fetches them again when a token names a key it has
not seen (after a ``starterkit keys rotate``), so neither service restarts. Run it next to
``starterkit serve``::

    STARTERKIT_JWKS_URL=http://127.0.0.1:8000/.well-known/jwks.json \\
        uvicorn examples.verify_elsewhere:app --port 8002

    curl -H "Authorization: Bearer $ACCESS_TOKEN" http://127.0.0.1:8002/whoami

It checks what a signature can prove (the key, expiry, issuer and audience); a logout-all or
deactivation reaches it only when the token expires, so keep access tokens short-lived.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import jwt
from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

JWKS_URL = os.environ.get("STARTERKIT_JWKS_URL", "http://127.0.0.1:8000/.well-known/jwks.json")
AUDIENCE = os.environ.get("STARTERKIT_JWT_AUDIENCE", "starterkit")
ISSUER = os.environ.get("STARTERKIT_JWT_ISSUER", "starterkit")
# The asymmetric algorithms starterkit signs with; never HS256, whose "key" would be public.
ALGORITHMS = ["EdDSA", "ES256", "RS256"]

# A token naming a key not in the cached set makes the client fetch the set again, at most once
# per cooldown (PyJWT's default is 30 s, which would refuse the first tokens of a rotation that
# long); the whole set is fetched again every `lifespan` seconds anyway.
JWKS_COOLDOWN_SECONDS = 5.0
jwks = jwt.PyJWKClient(
    JWKS_URL, cache_keys=True, lifespan=300, timeout=5, cooldown_duration=JWKS_COOLDOWN_SECONDS
)
bearer = HTTPBearer(auto_error=False)


def access_claims(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> dict[str, Any]:
    """The verified claims of the request's starterkit access token, or 401.

    A plain ``def``: FastAPI runs it in a worker thread, since fetching the JWKS blocks.
    """
    if credentials is None:
        raise HTTPException(401, "Not authenticated.", headers={"WWW-Authenticate": "Bearer"})
    try:
        signing_key = jwks.get_signing_key_from_jwt(credentials.credentials)
        if signing_key.algorithm_name not in ALGORITHMS:
            raise jwt.InvalidAlgorithmError(signing_key.algorithm_name)
        claims: dict[str, Any] = jwt.decode(
            credentials.credentials,
            signing_key.key,
            algorithms=[signing_key.algorithm_name],  # the key's algorithm, not the token's
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "iat", "nbf", "sub", "aud", "iss"]},
        )
    except (jwt.PyJWTError, jwt.PyJWKClientError):
        raise HTTPException(
            401, "The token is invalid or has expired.", headers={"WWW-Authenticate": "Bearer"}
        ) from None
    if claims.get("type") != "access":
        raise HTTPException(401, "Not an access token.", headers={"WWW-Authenticate": "Bearer"})
    return claims


app = FastAPI(title="verifies starterkit tokens")


@app.get("/whoami")
def whoami(claims: Annotated[dict[str, Any], Depends(access_claims)]) -> dict[str, Any]:
    """Who the token says the caller is."""
    return {"user_id": int(claims["sub"]), "session_id": claims.get("sid")}
