"""Signed, single-purpose tokens for the links in mails: password reset and email verification.

Nothing about them is stored. A token is a JWT (HS256) that names its user and carries a
*fingerprint* of the account state it was issued for; it works only while that state lasts:

- a **password-reset** token is bound to the user's email and current password hash, so it dies
  the moment the password changes (including by its own use) or the email does;
- a **verification** token is bound to the email and to the account being unverified, so it
  dies once used or once the email changes.

Each purpose signs with its own key, derived from SECRET_KEY with HMAC, and has its own
``typ`` header, ``type`` claim and audience: no token of one kind is ever accepted as another,
nor as an access token (and no access token as one of these). Expiry is checked against the
runtime's clock, so tests can move time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, TypeGuard

import jwt

from starterkit.auth.tokens import Clock
from starterkit.db.base import utcnow
from starterkit.db.models import User
from starterkit.exceptions import InvalidAccountToken

if TYPE_CHECKING:
    from starterkit.settings import Settings

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["sub", "exp", "iat", "nbf", "iss", "aud", "jti", "type", "fp"]


class TokenPurpose(StrEnum):
    """What a token may be used for; also its ``type`` claim."""

    PASSWORD_RESET = "password-reset"  # noqa: S105 - a purpose, not a secret
    VERIFY_EMAIL = "verify-email"


@dataclass(frozen=True, slots=True)
class AccountTokenClaims:
    """What a token with a valid signature, purpose and expiry says."""

    purpose: TokenPurpose
    user_id: int
    fingerprint: str


class AccountTokens:
    """Issues and checks password-reset and verification tokens for one runtime."""

    def __init__(
        self,
        *,
        secret_key: str,
        issuer: str,
        audience: str,
        lifetimes: dict[TokenPurpose, timedelta],
        leeway_seconds: int,
        clock: Clock = utcnow,
    ) -> None:
        """Set up the token kinds.

        Args:
            secret_key: SECRET_KEY; each purpose signs with a key derived from it.
            issuer: ``iss`` of every token (JWT_ISSUER).
            audience: JWT_AUDIENCE; each purpose gets ``{audience}:{purpose}``.
            lifetimes: how long a token of each purpose is valid.
            leeway_seconds: clock difference allowed between instances.
            clock: returns the current aware UTC time.
        """
        self._keys = {
            purpose: hmac.new(
                secret_key.encode(), f"starterkit {purpose} token".encode(), hashlib.sha256
            ).digest()
            for purpose in TokenPurpose
        }
        self._issuer = issuer
        self._audience = audience
        self.lifetimes = dict(lifetimes)
        self._leeway = leeway_seconds
        self._clock = clock
        self._jwt = jwt.PyJWT(options={"enforce_minimum_key_length": True})

    def issue(self, purpose: TokenPurpose, user: User) -> str:
        """A token for ``purpose``, bound to ``user``'s current state."""
        now = int(self._clock().timestamp())
        claims = {
            "sub": str(user.id),
            "iat": now,
            "nbf": now,
            "exp": now + int(self.lifetimes[purpose].total_seconds()),
            "iss": self._issuer,
            "aud": self._audience_of(purpose),
            "jti": uuid.uuid4().hex,
            "type": str(purpose),
            "fp": self.fingerprint(purpose, user),
        }
        return self._jwt.encode(
            claims, self._keys[purpose], algorithm=ALGORITHM, headers={"typ": _typ(purpose)}
        )

    def read(self, purpose: TokenPurpose, token: str) -> AccountTokenClaims:
        """Check the signature, purpose and expiry of ``token``; return its claims.

        The caller must still compare the fingerprint with the user's current state
        (:meth:`matches`).

        Raises:
            InvalidAccountToken: for any problem, always with the same message.
        """
        try:
            decoded = self._jwt.decode_complete(
                token,
                self._keys[purpose],
                algorithms=[ALGORITHM],
                audience=self._audience_of(purpose),
                issuer=self._issuer,
                # exp and nbf are checked below, against the runtime's clock.
                options={
                    "require": REQUIRED_CLAIMS,
                    "strict_aud": True,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError:
            raise InvalidAccountToken from None
        header, payload = decoded["header"], decoded["payload"]
        sub, exp, nbf, fp = (payload.get(key) for key in ("sub", "exp", "nbf", "fp"))
        now = self._clock().timestamp()
        if (
            header.get("typ") != _typ(purpose)
            or payload.get("type") != str(purpose)
            or not isinstance(sub, str)
            or not sub.isdigit()
            or not _is_int(exp)
            or not _is_int(nbf)
            or not isinstance(fp, str)
            or now > exp + self._leeway
            or now < nbf - self._leeway
        ):
            raise InvalidAccountToken
        return AccountTokenClaims(purpose=purpose, user_id=int(sub), fingerprint=fp)

    def matches(self, claims: AccountTokenClaims, user: User) -> bool:
        """Whether ``user`` is still in the state the token was issued for."""
        return user.id == claims.user_id and hmac.compare_digest(
            claims.fingerprint, self.fingerprint(claims.purpose, user)
        )

    def fingerprint(self, purpose: TokenPurpose, user: User) -> str:
        """A keyed digest of the account state a token of ``purpose`` is bound to.

        Keyed, so the token (whose payload anyone can read) says nothing about the password
        hash; 128 bits, so it cannot be guessed.
        """
        if purpose is TokenPurpose.PASSWORD_RESET:
            state = [str(user.id), user.email, user.hashed_password]
        else:
            state = [str(user.id), user.email, "verified" if user.is_verified else "unverified"]
        digest = hmac.new(self._keys[purpose], "\x1f".join(state).encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(digest.digest()[:16]).rstrip(b"=").decode()

    def _audience_of(self, purpose: TokenPurpose) -> str:
        return f"{self._audience}:{purpose}"


def build_account_tokens(settings: Settings, secret_key: str, *, clock: Clock) -> AccountTokens:
    """The account tokens of a runtime: its secret key, issuer, audience and lifetimes."""
    return AccountTokens(
        secret_key=secret_key,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        lifetimes={
            TokenPurpose.PASSWORD_RESET: timedelta(minutes=settings.password_reset_token_minutes),
            TokenPurpose.VERIFY_EMAIL: timedelta(hours=settings.verify_token_hours),
        },
        leeway_seconds=settings.clock_skew_seconds,
        clock=clock,
    )


def _typ(purpose: TokenPurpose) -> str:
    return f"{purpose}+jwt"


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
