"""Password-reset and verification tokens: purpose, signature, claims, expiry and binding."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from starterkit.db.models import User
from starterkit.exceptions import InvalidAccountToken
from starterkit.lifecycle.tokens import AccountTokens, TokenPurpose
from tests.support.auth import FakeClock

SECRET = "account-token-test-secret-0123456789abcdefghijklmnop"
RESET = TokenPurpose.PASSWORD_RESET
VERIFY = TokenPurpose.VERIFY_EMAIL


def make_tokens(clock: FakeClock, **overrides: object) -> AccountTokens:
    options: dict[str, object] = {
        "secret_key": SECRET,
        "issuer": "starterkit",
        "audience": "starterkit",
        "lifetimes": {RESET: timedelta(minutes=30), VERIFY: timedelta(hours=24)},
        "leeway_seconds": 0,
        "clock": clock,
    }
    options.update(overrides)
    return AccountTokens(**options)  # type: ignore[arg-type]


def make_user(**values: object) -> User:
    fields: dict[str, object] = {
        "id": 5,
        "email": "a@example.com",
        "hashed_password": "$argon2id$v=19$m=19456,t=2,p=1$salt$hash",
        "is_verified": False,
    }
    fields.update(values)
    return User(**fields)


def resign(token: str, purpose: TokenPurpose, **changes: object) -> str:
    """The token's claims with ``changes``, correctly signed with the purpose's key."""
    key = hmac.new(SECRET.encode(), f"starterkit {purpose} token".encode(), hashlib.sha256)
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False}) | changes
    return jwt.encode(claims, key.digest(), algorithm="HS256", headers={"typ": header["typ"]})


def test_a_token_reads_back_and_matches_only_the_state_it_was_made_for() -> None:
    tokens = make_tokens(FakeClock())
    user = make_user()
    claims = tokens.read(RESET, tokens.issue(RESET, user))
    assert claims.user_id == 5
    assert tokens.matches(claims, user)
    assert not tokens.matches(claims, make_user(hashed_password="$argon2id$other"))
    assert not tokens.matches(claims, make_user(email="b@example.com"))
    assert not tokens.matches(claims, make_user(id=6))
    verify = tokens.read(VERIFY, tokens.issue(VERIFY, user))
    assert tokens.matches(verify, user)
    assert not tokens.matches(verify, make_user(is_verified=True))


def test_the_fingerprint_does_not_reveal_the_password_hash() -> None:
    tokens = make_tokens(FakeClock())
    user = make_user()
    payload = jwt.decode(tokens.issue(RESET, user), options={"verify_signature": False})
    assert user.hashed_password not in str(payload)
    assert hashlib.sha256(user.hashed_password.encode()).hexdigest() not in str(payload)
    assert len(payload["fp"]) == 22  # 128 bits, base64url


@pytest.mark.parametrize(
    "changes",
    [
        {"type": "access"},
        {"aud": "starterkit"},
        {"iss": "someone-else"},
        {"sub": "five"},
        {"exp": "tomorrow"},
        {"fp": 42},
    ],
)
def test_claims_of_another_shape_are_refused_even_when_signed(changes: dict[str, object]) -> None:
    tokens = make_tokens(FakeClock())
    forged = resign(tokens.issue(RESET, make_user()), RESET, **changes)
    with pytest.raises(InvalidAccountToken):
        tokens.read(RESET, forged)


def test_expiry_and_not_before_follow_the_runtime_clock() -> None:
    clock = FakeClock(datetime(2030, 1, 1, tzinfo=UTC))
    tokens = make_tokens(clock)
    token = tokens.issue(RESET, make_user())
    clock.advance(minutes=30)
    assert tokens.read(RESET, token).user_id == 5  # exactly at expiry: still valid
    clock.advance(seconds=1)
    with pytest.raises(InvalidAccountToken):
        tokens.read(RESET, token)
    early = make_tokens(FakeClock(datetime(2029, 12, 31, tzinfo=UTC)))
    with pytest.raises(InvalidAccountToken):
        early.read(RESET, token)  # not valid before it was issued


def test_unsigned_and_foreign_tokens_are_refused() -> None:
    tokens = make_tokens(FakeClock())
    token = tokens.issue(VERIFY, make_user())
    claims = jwt.decode(token, options={"verify_signature": False})
    unsigned = jwt.encode(claims, "", algorithm="none", headers={"typ": "verify-email+jwt"})
    other_secret = make_tokens(FakeClock(), secret_key="another-secret-0123456789abcdefghijklmn")
    for bad in (unsigned, other_secret.issue(VERIFY, make_user()), "", "a.b.c"):
        with pytest.raises(InvalidAccountToken):
            tokens.read(VERIFY, bad)
    with pytest.raises(InvalidAccountToken):
        tokens.read(RESET, token)
