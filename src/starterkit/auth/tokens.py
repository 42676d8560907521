"""Access tokens (PyJWT, HS256) and opaque refresh tokens.

Access tokens carry sub, exp, iat, nbf, iss, aud, jti, ``type: access``, the user's token
version (``ver``), the session id (``sid``), how and when the session last authenticated
(``amr``, RFC 8176, and ``auth_time``), with the RFC 9068 header ``typ: at+jwt``. A token
without ``amr``/``auth_time`` (made before they existed) reads as a password login at ``iat``.
Decoding requires every claim, allows only HS256 and answers every failure with the same
:class:`InvalidToken`, so a client cannot learn which check failed.

Refresh tokens are 256 random bits; only HMAC-SHA256(REFRESH_TOKEN_SECRET, token) is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt

from starterkit.db.base import utcnow
from starterkit.exceptions import InvalidToken

ALGORITHM = "HS256"
ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - the RFC 9068 media type, not a secret
REQUIRED_CLAIMS = ["sub", "exp", "iat", "nbf", "iss", "aud", "jti", "type", "ver"]
REFRESH_TOKEN_BYTES = 32
# Verified access tokens remembered per process; a client reuses its token for many requests.
MAX_VERIFIED_TOKENS = 4096

Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """What a verified access token says."""

    user_id: int
    token_version: int
    session_id: int | None
    token_id: str
    expires_at: int
    amr: tuple[str, ...] = ("pwd",)
    auth_time: int = 0


class TokenService:
    """Issues and verifies tokens for one runtime's secrets and settings."""

    def __init__(
        self,
        *,
        secret_key: str,
        refresh_secret: str,
        issuer: str,
        audience: str,
        access_ttl: timedelta,
        leeway_seconds: int,
        clock: Clock = utcnow,
    ) -> None:
        self._secret_key = secret_key
        self._refresh_key = refresh_secret.encode()
        self._issuer = issuer
        self._audience = audience
        self.access_ttl = access_ttl
        self._leeway = leeway_seconds
        self._clock = clock
        self._jwt = jwt.PyJWT(options={"enforce_minimum_key_length": True})
        self._verified: dict[str, AccessClaims] = {}

    def issue_access_token(
        self,
        *,
        user_id: int,
        token_version: int,
        session_id: int | None = None,
        amr: Sequence[str] = ("pwd",),
        auth_time: datetime | None = None,
    ) -> str:
        """A signed access token for the user, valid for ``access_ttl``.

        ``amr`` and ``auth_time`` say how and when the session last proved who it was
        (default: a password, now).
        """
        now = int(self._clock().timestamp())
        claims: dict[str, object] = {
            "sub": str(user_id),
            "iat": now,
            "nbf": now,
            "exp": now + int(self.access_ttl.total_seconds()),
            "iss": self._issuer,
            "aud": self._audience,
            "jti": uuid.uuid4().hex,
            "type": "access",
            "ver": token_version,
            "amr": list(amr),
            "auth_time": int(auth_time.timestamp()) if auth_time is not None else now,
        }
        if session_id is not None:
            claims["sid"] = session_id
        return self._jwt.encode(
            claims, self._secret_key, algorithm=ALGORITHM, headers={"typ": ACCESS_TOKEN_TYPE}
        )

    def decode_access_token(self, token: str) -> AccessClaims:
        """Verify ``token`` and return its claims.

        A token verified before is recognised by its exact text and only its expiry is checked
        again: the signature, issuer and audience of the same bytes cannot have changed, and
        signature checks are the largest fixed cost of an authenticated request. Whether the
        token still matches its user (token version, active) is the caller's job every time.

        Raises:
            InvalidToken: for any problem: signature, algorithm, expiry, issuer, audience, a
                missing claim, or a token that is not an access token.
        """
        claims = self._verified.get(token)
        if claims is not None:
            # The same test as PyJWT's, on the same clock (the system's).
            if claims.expires_at + self._leeway <= time.time():
                raise InvalidToken
            return claims
        claims = self._verify(token)
        verified = self._verified
        if len(verified) >= MAX_VERIFIED_TOKENS:
            del verified[next(iter(verified))]  # the oldest
        verified[token] = claims
        return claims

    def _verify(self, token: str) -> AccessClaims:
        try:
            decoded = self._jwt.decode_complete(
                token,
                self._secret_key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": REQUIRED_CLAIMS, "strict_aud": True},
            )
        except jwt.PyJWTError:
            raise InvalidToken from None
        header, payload = decoded["header"], decoded["payload"]
        sub, ver, sid = payload.get("sub"), payload.get("ver"), payload.get("sid")
        amr, auth_time = payload.get("amr", ["pwd"]), payload.get("auth_time", payload["iat"])
        if (
            header.get("typ") != ACCESS_TOKEN_TYPE
            or payload.get("type") != "access"
            or not isinstance(sub, str)
            or not sub.isascii()
            or not sub.isdigit()
            or not _is_db_int(int(sub))
            or not isinstance(ver, int)
            or isinstance(ver, bool)
            or not (sid is None or (isinstance(sid, int) and not isinstance(sid, bool)))
            or (sid is not None and not _is_db_int(sid))
            or not isinstance(amr, list)
            or not all(isinstance(method, str) for method in amr)
            or not isinstance(auth_time, int)
            or isinstance(auth_time, bool)
        ):
            raise InvalidToken
        return AccessClaims(
            user_id=int(sub),
            token_version=ver,
            session_id=sid,
            token_id=str(payload["jti"]),
            expires_at=int(payload["exp"]),
            amr=tuple(amr),
            auth_time=auth_time,
        )

    def new_refresh_token(self) -> tuple[str, str]:
        """A fresh refresh token and the digest to store for it."""
        token = secrets.token_urlsafe(REFRESH_TOKEN_BYTES)
        return token, self.hash_refresh_token(token)

    def hash_refresh_token(self, token: str) -> str:
        """HMAC-SHA256 of a refresh token under REFRESH_TOKEN_SECRET, in hex."""
        return hmac.new(self._refresh_key, token.encode(), hashlib.sha256).hexdigest()


def _is_db_int(value: int) -> bool:
    """Whether ``value`` can be an id: a database rejects larger ones with an error, a 500."""
    return 0 < value < 2**63
