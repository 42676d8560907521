"""Access tokens (PyJWT) and opaque refresh tokens.

Access tokens carry sub, exp, iat, nbf, iss, aud, jti, ``type: access``, the user's token
version (``ver``), the session id (``sid``), how and when the session last authenticated
(``amr``, RFC 8176, and ``auth_time``), with the RFC 9068 header ``typ: at+jwt``. A token
without ``amr``/``auth_time`` (made before they existed) reads as a password login at ``iat``.
Decoding requires every claim and answers every failure with the same :class:`InvalidToken`,
so a client cannot learn which check failed.

With a :class:`~starterkit.signing.keyring.Keyring` (JWT_ALGORITHM EdDSA, ES256 or RS256)
tokens are signed by the active key and name it in ``kid``; verification takes the key from
the keyring only, with the one algorithm of that key (RFC 8725 §3.1), and refuses tokens
without a ``kid``, with an unknown one, or with ``jku``/``x5u``/``jwk``/``x5c`` headers (keys
are never taken from the token). Without one, tokens are HS256 under SECRET_KEY. A kid-less
HS256 token issued before the first asymmetric key was activated stays valid until it expires,
so moving a deployment from HS256 logs nobody out.

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
from typing import TYPE_CHECKING, Any

import jwt

from starterkit.db.base import utcnow
from starterkit.exceptions import InvalidToken

if TYPE_CHECKING:
    from starterkit.signing.keyring import Keyring

ALGORITHM = "HS256"  # without a keyring
# Header parameters that would let a token choose its own key (RFC 8725 §3.10): refused.
KEY_HEADERS = frozenset({"jku", "x5u", "jwk", "x5c"})
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
    key_id: str | None = None


class UnknownSigningKey(InvalidToken):
    """The token names a key this process does not know (yet)."""


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
        keyring: Keyring | None = None,
    ) -> None:
        """Build the service.

        Args:
            secret_key: SECRET_KEY: signs (HS256) without a keyring; with one, verifies only
                the kid-less HS256 tokens of before the first asymmetric key.
            refresh_secret: REFRESH_TOKEN_SECRET, the HMAC key of stored refresh tokens.
            issuer: ``iss`` of access tokens.
            audience: ``aud`` of access tokens.
            access_ttl: the access-token lifetime.
            leeway_seconds: the clock skew allowed on ``exp``, ``nbf`` and ``iat``.
            clock: the current aware UTC time.
            keyring: the asymmetric signing keys; None for HS256.
        """
        self._keyring = keyring
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
        if self._keyring is None:
            return self._jwt.encode(
                claims, self._secret_key, algorithm=ALGORITHM, headers={"typ": ACCESS_TOKEN_TYPE}
            )
        kid, algorithm, key = self._keyring.signer()
        headers = {"typ": ACCESS_TOKEN_TYPE, "kid": kid}
        return self._jwt.encode(claims, key, algorithm=algorithm, headers=headers)

    @property
    def keyring(self) -> Keyring | None:
        """The asymmetric signing keys, or None for HS256."""
        return self._keyring

    async def ready(self, *, create: bool = True) -> None:
        """Make sure the signing keys are read and fresh (a no-op for HS256).

        Outside production this makes the first key when there is none; inside a transaction
        pass ``create=False`` (see :meth:`Keyring.ready`).
        """
        if self._keyring is not None:
            await self._keyring.ready(create=create)

    async def verify_access_token(self, token: str) -> AccessClaims:
        """:meth:`decode_access_token` with fresh keys: a token naming a key this process has
        not read yet (another instance rotated) makes it read the keys again once.

        Raises:
            InvalidToken: see :meth:`decode_access_token`.
        """
        await self.ready()
        try:
            return self.decode_access_token(token)
        except UnknownSigningKey:
            if self._keyring is None or not await self._keyring.refresh_for_unknown_kid():
                raise InvalidToken from None
        return self.decode_access_token(token)

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
            # Its key may have left the keyset since (retired, and its tokens' time is up).
            if claims.key_id is None or self._keyring is None:
                return claims
            if self._keyring.verifier(claims.key_id) is not None:
                return claims
            del self._verified[token]
        claims = self._verify(token)
        verified = self._verified
        if len(verified) >= MAX_VERIFIED_TOKENS:
            del verified[next(iter(verified))]  # the oldest
        verified[token] = claims
        return claims

    def _verify(self, token: str) -> AccessClaims:
        key, algorithm, kid = self._key_for(token)
        try:
            decoded = self._jwt.decode_complete(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": REQUIRED_CLAIMS, "strict_aud": True},
            )
        except jwt.PyJWTError:
            raise InvalidToken from None
        header, payload = decoded["header"], decoded["payload"]
        if kid is None and self._keyring is not None and not self._before_keys(payload):
            raise InvalidToken
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
            key_id=kid,
        )

    def _key_for(self, token: str) -> tuple[Any, str, str | None]:
        """``(key, its one algorithm, kid)`` to verify ``token`` with, from the header.

        Raises:
            UnknownSigningKey: a kid this process does not know.
            InvalidToken: a malformed header, a key-bearing header, or no kid where one is
                needed.
        """
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken from None
        if KEY_HEADERS & header.keys():
            raise InvalidToken
        kid = header.get("kid")
        if self._keyring is None:
            return self._secret_key, ALGORITHM, None
        if kid is None:
            # Only a kid-less HS256 token of the SECRET_KEY era (checked after decoding).
            return self._secret_key, ALGORITHM, None
        if not isinstance(kid, str):
            raise InvalidToken
        verifier = self._keyring.verifier(kid)
        if verifier is None:
            raise UnknownSigningKey
        return verifier.key, verifier.algorithm, kid

    def _before_keys(self, payload: dict[str, Any]) -> bool:
        """Whether a verified kid-less HS256 token was issued before the first asymmetric key
        was activated, and lives no longer than an access token does."""
        keyset = self._keyring.keyset if self._keyring is not None else None
        first = keyset.first_activation if keyset is not None else None
        iat, exp = payload.get("iat"), payload.get("exp")
        if first is None or not isinstance(iat, int) or not isinstance(exp, int):
            return False
        lifetime = self.access_ttl.total_seconds() + self._leeway
        return iat <= first.timestamp() and exp - iat <= lifetime

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
