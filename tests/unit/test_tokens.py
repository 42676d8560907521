"""Access-token rules (RFC 8725): every forged or stale token is refused the same way."""

from __future__ import annotations

import base64
import json
import time
import warnings
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import jwt
import pytest
from jwt.warnings import InsecureKeyLengthWarning

import starterkit.auth.tokens as tokens_module
from starterkit.auth.tokens import TokenService
from starterkit.exceptions import InvalidToken
from tests.support.auth import FakeClock

SECRET = "k" * 20 + "0123456789abcdefghijkl"
REFRESH_SECRET = "r" * 20 + "0123456789abcdefghijkl"


def service(clock: FakeClock | None = None, **overrides: Any) -> TokenService:
    options: dict[str, Any] = {
        "secret_key": SECRET,
        "refresh_secret": REFRESH_SECRET,
        "issuer": "starterkit",
        "audience": "starterkit",
        "access_ttl": timedelta(minutes=15),
        "leeway_seconds": 30,
    }
    options.update(overrides)
    return TokenService(clock=clock or FakeClock(), **options)


def claims(**changes: Any) -> dict[str, Any]:
    now = int(datetime.now(UTC).timestamp())
    base: dict[str, Any] = {
        "sub": "7",
        "iat": now,
        "nbf": now,
        "exp": now + 86_400,  # far enough that a slow run never sees it expire
        "iss": "starterkit",
        "aud": "starterkit",
        "jti": "abc",
        "type": "access",
        "ver": 0,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def forge(
    payload: dict[str, Any], *, key: str = SECRET, alg: str = "HS256", typ: str = "at+jwt"
) -> str:
    with warnings.catch_warnings():  # an attacker does not care that the key is short
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(payload, key, algorithm=alg, headers={"typ": typ})


def unsigned(payload: dict[str, Any], alg: str) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': alg, 'typ': 'at+jwt'})}.{part(payload)}."


def test_issued_token_round_trips_with_every_claim() -> None:
    tokens = service()
    token = tokens.issue_access_token(user_id=7, token_version=3, session_id=11)
    decoded = tokens.decode_access_token(token)
    assert (decoded.user_id, decoded.token_version, decoded.session_id) == (7, 3, 11)
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "HS256", "typ": "at+jwt"}
    payload = jwt.decode(token, options={"verify_signature": False})
    assert set(payload) == {
        "sub", "iat", "nbf", "exp", "iss", "aud", "jti", "type", "ver", "sid", "amr", "auth_time"
    }  # fmt: skip
    assert payload["exp"] - payload["iat"] == 900
    assert (payload["amr"], payload["auth_time"]) == (["pwd"], payload["iat"])
    assert (decoded.amr, decoded.auth_time) == (("pwd",), payload["iat"])


@pytest.mark.parametrize(
    "claims",
    [{"amr": "pwd"}, {"amr": [1]}, {"auth_time": "now"}, {"auth_time": True}, {"amr": None}],
)
def test_malformed_amr_or_auth_time_is_refused(claims: dict[str, Any]) -> None:
    tokens = service()
    payload = jwt.decode(
        tokens.issue_access_token(user_id=7, token_version=3), options={"verify_signature": False}
    )
    with pytest.raises(InvalidToken):
        tokens.decode_access_token(forge({**payload, **claims}))


def test_a_token_from_before_amr_reads_as_a_password_login_at_iat() -> None:
    tokens = service()
    payload = jwt.decode(
        tokens.issue_access_token(user_id=7, token_version=3), options={"verify_signature": False}
    )
    del payload["amr"], payload["auth_time"]
    decoded = tokens.decode_access_token(forge(payload))
    assert (decoded.amr, decoded.auth_time) == (("pwd",), payload["iat"])


def test_every_token_has_its_own_id() -> None:
    tokens = service()
    ids = {
        tokens.decode_access_token(tokens.issue_access_token(user_id=1, token_version=0)).token_id
        for _ in range(20)
    }
    assert len(ids) == 20


def test_expiry_uses_the_injected_clock_with_leeway() -> None:
    clock = FakeClock()
    tokens = service(clock)
    clock.advance(minutes=-15, seconds=-20)  # expired 20 s ago: inside the 30 s leeway
    within = tokens.issue_access_token(user_id=1, token_version=0)
    clock.advance(seconds=-20)  # expired 40 s ago
    beyond = tokens.issue_access_token(user_id=1, token_version=0)
    assert tokens.decode_access_token(within).user_id == 1
    with pytest.raises(InvalidToken):
        tokens.decode_access_token(beyond)


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(unsigned(claims(), "none"), id="alg-none"),
        pytest.param(unsigned(claims(), "None"), id="alg-None"),
        pytest.param(unsigned(claims(), "NONE"), id="alg-NONE"),
        pytest.param(unsigned(claims(), "nOnE"), id="alg-nOnE"),
        pytest.param(forge(claims(), alg="HS512"), id="hs512-right-key"),
        pytest.param(forge(claims(), key="x" * 40), id="wrong-key"),
        pytest.param(forge(claims(aud="other")), id="wrong-aud"),
        pytest.param(forge(claims(aud=None)), id="missing-aud"),
        pytest.param(forge(claims(iss="https://evil.example")), id="wrong-iss"),
        pytest.param(forge(claims(exp=None)), id="missing-exp"),
        pytest.param(forge(claims(nbf=None)), id="missing-nbf"),
        pytest.param(forge(claims(iat=None)), id="missing-iat"),
        pytest.param(forge(claims(jti=None)), id="missing-jti"),
        pytest.param(forge(claims(ver=None)), id="missing-version"),
        pytest.param(forge(claims(sub=None)), id="missing-sub"),
        pytest.param(forge(claims(exp=int(datetime.now(UTC).timestamp()) - 120)), id="expired"),
        pytest.param(
            forge(claims(nbf=int(datetime.now(UTC).timestamp()) + 86_400)), id="future-nbf"
        ),
        pytest.param(
            forge(claims(iat=int(datetime.now(UTC).timestamp()) + 86_400)), id="future-iat"
        ),
        pytest.param(forge(claims(type="refresh")), id="refresh-type"),
        pytest.param(forge(claims(), typ="JWT"), id="typ-jwt"),
        pytest.param(forge(claims(sub="admin")), id="non-numeric-sub"),
        # Signed with the right key, but no id a database can hold: it used to be a 500.
        pytest.param(forge(claims(sub=str(2**63))), id="out-of-range-sub"),
        pytest.param(forge(claims(sub="0")), id="zero-sub"),
        pytest.param(forge(claims(sub="\u0661")), id="non-ascii-digit-sub"),
        pytest.param(forge(claims(sid=2**64)), id="out-of-range-session"),
        pytest.param(forge(claims(ver="0")), id="string-version"),
        pytest.param(forge(claims(ver=True)), id="bool-version"),
        pytest.param(forge(claims(sid="1")), id="string-session"),
        pytest.param("not.a.token", id="garbage"),
        pytest.param("", id="empty"),
    ],
)
def test_forged_or_invalid_tokens_are_refused(token: str) -> None:
    with pytest.raises(InvalidToken) as caught:
        service().decode_access_token(token)
    assert caught.value.detail == InvalidToken.default_detail


def test_tampered_payload_is_refused() -> None:
    tokens = service()
    header, payload, signature = tokens.issue_access_token(user_id=1, token_version=0).split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=="))
    data["sub"] = "2"
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidToken):
        tokens.decode_access_token(f"{header}.{forged}.{signature}")


@pytest.mark.parametrize(
    "header",
    [
        {"jku": "http://127.0.0.1:9/x"},
        {"x5u": "http://127.0.0.1:9/x.pem"},
        {"jwk": {"kty": "oct", "k": "c2VjcmV0"}},
        {"x5c": ["MIIB"]},
    ],
)
def test_tokens_that_name_their_own_key_are_refused(header: dict[str, Any]) -> None:
    # RFC 8725 §3.10: a key is never taken from the token, and a token that offers one is
    # refused outright, even when correctly signed.
    token = jwt.encode(claims(), SECRET, algorithm="HS256", headers={"typ": "at+jwt", **header})
    with pytest.raises(InvalidToken):
        service().decode_access_token(token)
    plain = jwt.encode(claims(), SECRET, algorithm="HS256", headers={"typ": "at+jwt"})
    assert service().decode_access_token(plain).user_id == 7


def test_refresh_tokens_are_long_random_and_stored_as_hmac() -> None:
    tokens = service()
    seen = set()
    for _ in range(200):
        token, digest = tokens.new_refresh_token()
        assert len(token) >= 43  # 256 bits in base64url
        assert digest == tokens.hash_refresh_token(token)
        assert len(digest) == 64
        assert token not in digest
        seen.add(token)
    assert len(seen) == 200
    other = service(refresh_secret="z" * 40)
    assert other.hash_refresh_token("abc") != tokens.hash_refresh_token("abc")


def test_a_verified_token_is_remembered_but_its_expiry_is_checked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tokens = service()
    token = tokens.issue_access_token(user_id=1, token_version=0)
    first = tokens.decode_access_token(token)

    def no_signature_check(_token: str) -> object:
        raise AssertionError("verified again")

    monkeypatch.setattr(tokens, "_verify", no_signature_check)
    assert tokens.decode_access_token(token) is first
    now = time.time()
    later = SimpleNamespace(time=lambda: now + 15 * 60 + 29)  # inside the 30 s leeway
    monkeypatch.setattr(tokens_module, "time", later)
    assert tokens.decode_access_token(token) is first
    later.time = lambda: now + 15 * 60 + 31
    with pytest.raises(InvalidToken):
        tokens.decode_access_token(token)


def test_only_the_exact_token_text_is_remembered() -> None:
    tokens = service()
    token = tokens.issue_access_token(user_id=1, token_version=0)
    tokens.decode_access_token(token)
    header, payload, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    for forged in (f"{header}.{payload}.{flipped}", token + " ", f"{header}.{payload}."):
        with pytest.raises(InvalidToken):
            tokens.decode_access_token(forged)


def test_remembered_tokens_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens_module, "MAX_VERIFIED_TOKENS", 3)
    tokens = service()
    issued = [tokens.issue_access_token(user_id=n, token_version=0) for n in range(1, 6)]
    for token in issued:
        tokens.decode_access_token(token)
    assert list(tokens._verified) == issued[-3:]
