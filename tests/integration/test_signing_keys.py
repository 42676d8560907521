"""Asymmetric signing keys: EdDSA by default, the JWKS, rotation across instances, retirement,
and every kind of forged token (RFC 8725), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from starterkit import Settings, StarterKit, create_app
from starterkit.signing import service as keys
from starterkit.signing.jwk import public_jwk
from tests.conftest import app_client
from tests.support.auth import API, FakeClock, bearer, login, signed_up

pytestmark = pytest.mark.anyio

JWKS = "/.well-known/jwks.json"


async def started(settings: Settings, clock: FakeClock | None = None) -> AsyncIterator[Any]:
    kit = StarterKit(settings, clock=clock) if clock else StarterKit(settings)
    async with app_client(create_app(kit=kit)) as client:
        yield client, kit


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, StarterKit]]:
    async for running in started(settings):
        yield running


def header_of(token: str) -> dict[str, Any]:
    return jwt.get_unverified_header(token)


def unverified(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def resigned(token: str, key: Any, *, alg: str = "EdDSA", **header: Any) -> str:
    """The claims of ``token`` signed again by ``key`` with the given header."""
    return jwt.encode(unverified(token), key, algorithm=alg, headers={"typ": "at+jwt", **header})


async def me(client: httpx.AsyncClient, token: str) -> int:
    return (await client.get(f"{API}/users/me", headers=bearer(token))).status_code


async def test_a_default_install_signs_with_eddsa_and_publishes_the_key(
    service: tuple[httpx.AsyncClient, StarterKit],
) -> None:
    client, _ = service
    tokens = await signed_up(client, "eddsa@example.com")
    header = header_of(tokens["access_token"])
    assert header["alg"] == "EdDSA"
    assert header["typ"] == "at+jwt"
    published = await client.get(JWKS)
    assert published.status_code == 200
    assert published.headers["content-type"] == "application/jwk-set+json"
    assert published.headers["cache-control"] == "public, max-age=30"
    [jwk] = published.json()["keys"]
    assert jwk["kid"] == header["kid"]
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == ("OKP", "Ed25519", "EdDSA", "sig")
    assert "d" not in jwk  # never the private part
    # Anyone with the JWKS verifies the token: PyJWT picks the key by kid.
    key = jwt.PyJWK(jwk).key
    claims = jwt.decode(tokens["access_token"], key, algorithms=["EdDSA"], audience="starterkit")
    assert claims["type"] == "access"
    assert await me(client, tokens["access_token"]) == 200


@pytest.mark.parametrize(("algorithm", "kty"), [("ES256", "EC"), ("RS256", "RSA")])
async def test_es256_and_rs256_sign_and_verify(
    settings: Settings, algorithm: str, kty: str
) -> None:
    async for client, _ in started(settings.model_copy(update={"jwt_algorithm": algorithm})):
        tokens = await signed_up(client, "other-alg@example.com")
        assert header_of(tokens["access_token"])["alg"] == algorithm
        [jwk] = (await client.get(JWKS)).json()["keys"]
        assert (jwk["kty"], jwk["alg"]) == (kty, algorithm)
        assert await me(client, tokens["access_token"]) == 200


async def test_hs256_publishes_no_key(settings: Settings) -> None:
    async for client, _ in started(settings.model_copy(update={"jwt_algorithm": "HS256"})):
        tokens = await signed_up(client, "hmac@example.com")
        assert header_of(tokens["access_token"]) == {"alg": "HS256", "typ": "at+jwt"}
        assert (await client.get(JWKS)).json() == {"keys": []}


async def test_forged_and_confused_tokens_are_refused(
    service: tuple[httpx.AsyncClient, StarterKit],
) -> None:
    client, kit = service
    token = (await signed_up(client, "victim@example.com"))["access_token"]
    kid = header_of(token)["kid"]
    [jwk] = (await client.get(JWKS)).json()["keys"]
    stranger = ed25519.Ed25519PrivateKey.generate()
    public_bytes = base64.urlsafe_b64decode(jwk["x"] + "==")
    forged = {
        "resigned by another key under the same kid": resigned(token, stranger, kid=kid),
        "another key's own kid": resigned(
            token, stranger, kid=public_jwk(stranger, "EdDSA")["kid"]
        ),
        "no kid": resigned(token, stranger),
        "no kid, the right key": resigned(token, _private_key(kit)),
        "HS256 with the public key as the secret": _hs256(token, public_bytes, kid=kid),
        "HS256 with the JWK text as the secret": _hs256(token, json.dumps(jwk).encode(), kid=kid),
        "unsigned": _unsigned(token, kid),
        "a kid that is not a string": _eddsa_raw(token, _private_key(kit), kid=7),
        "a key in the header": resigned(
            token, stranger, kid=kid, jwk=public_jwk(stranger, "EdDSA")
        ),
        "a key URL in the header": resigned(
            token, _private_key(kit), kid=kid, jku="http://127.0.0.1:9/jwks.json"
        ),
    }
    for name, bad in forged.items():
        assert await me(client, bad) == 401, name
    assert await me(client, token) == 200


async def test_a_rotation_reaches_another_instance_and_old_tokens_stay_valid(
    settings: Settings,
) -> None:
    fast = settings.model_copy(update={"keyset_refresh_seconds": 1})
    async for client_a, kit_a in started(fast):
        async for client_b, _ in started(fast):
            before = (await signed_up(client_a, "rotate@example.com"))["access_token"]
            old_kid = header_of(before)["kid"]
            # Generated: published at once by both instances, signing nothing yet.
            async with kit_a.sessionmaker() as session:
                new = await keys.generate_key(
                    session, algorithm="EdDSA", box=kit_a.mfa_keys.box, now=kit_a.clock()
                )
                await session.commit()
            await asyncio.sleep(1.1)
            kids_b = {k["kid"] for k in (await client_b.get(JWKS)).json()["keys"]}
            assert kids_b == {old_kid, new.kid}
            login_b = await login(client_b, "rotate@example.com")
            assert header_of(login_b.json()["access_token"])["kid"] == old_kid
            # Rotated on A: B signs with the new key within KEYSET_REFRESH_SECONDS.
            async with kit_a.sessionmaker() as session:
                await keys.rotate_keys(
                    session, algorithm="EdDSA", box=kit_a.mfa_keys.box, now=kit_a.clock()
                )
                await session.commit()
            after_a = (await login(client_a, "rotate@example.com")).json()["access_token"]
            # A read the keys a moment ago; within the refresh interval it may still sign
            # with the old one, never with anything unknown.
            assert header_of(after_a)["kid"] in {old_kid, new.kid}
            await asyncio.sleep(1.1)
            after_b = (await login(client_b, "rotate@example.com")).json()["access_token"]
            assert header_of(after_b)["kid"] == new.kid
            # Tokens of both keys work on both instances.
            for token in (before, after_a, after_b):
                assert await me(client_a, token) == 200
                assert await me(client_b, token) == 200


async def test_an_instance_verifies_a_new_key_before_its_next_refresh(
    settings: Settings,
) -> None:
    slow = settings.model_copy(update={"keyset_refresh_seconds": 3600})
    async for client_a, kit_a in started(slow):
        async for client_b, _ in started(slow):
            await signed_up(client_a, "early@example.com")
            await client_b.get(JWKS)  # B has read the keys; it will not read them for an hour
            async with kit_a.sessionmaker() as session:
                await keys.rotate_keys(
                    session, algorithm="EdDSA", box=kit_a.mfa_keys.box, now=kit_a.clock()
                )
                await session.commit()
            await kit_a.tokens.keyring.refresh()
            token = (await login(client_a, "early@example.com")).json()["access_token"]
            # The unknown kid makes B read the keys at once.
            assert await me(client_b, token) == 200


async def test_a_retired_key_verifies_until_its_tokens_expired_then_leaves_the_jwks(
    settings: Settings,
) -> None:
    clock = FakeClock()
    async for client, kit in started(settings, clock):
        token = (await signed_up(client, "retire@example.com"))["access_token"]
        old_kid = header_of(token)["kid"]
        async with kit.sessionmaker() as session:
            with pytest.raises(Exception, match="is the active signing key"):
                await keys.retire_key(
                    session, kid=old_kid, now=clock(), token_lifetime=timedelta(minutes=15)
                )
            clock.advance(seconds=1)
            await keys.rotate_keys(session, algorithm="EdDSA", box=kit.mfa_keys.box, now=clock())
            await keys.retire_key(
                session, kid=old_kid, now=clock(), token_lifetime=timedelta(minutes=15)
            )
            await session.commit()
        await kit.tokens.keyring.refresh()
        assert await me(client, token) == 200  # retired, but its tokens are still current
        assert old_kid in {k["kid"] for k in (await client.get(JWKS)).json()["keys"]}
        clock.advance(minutes=16)
        await kit.tokens.keyring.refresh()
        assert old_kid not in {k["kid"] for k in (await client.get(JWKS)).json()["keys"]}
        # The token itself (by the real clock) has not expired: the key's absence refuses it,
        # although this process verified it before.
        assert await me(client, token) == 401


async def test_an_hs256_deployment_moves_to_eddsa_without_logging_anyone_out(
    settings: Settings,
) -> None:
    hs256 = settings.model_copy(update={"jwt_algorithm": "HS256"})
    async for client, _ in started(hs256):
        old = await signed_up(client, "mover@example.com")
    async for client, _ in started(settings):  # JWT_ALGORITHM=EdDSA, the same database
        # The access token of the HS256 era works until it expires ...
        assert await me(client, old["access_token"]) == 200
        # ... and its refresh token gives an EdDSA pair.
        refreshed = await client.post(
            f"{API}/auth/refresh", json={"refresh_token": old["refresh_token"]}
        )
        assert refreshed.status_code == 200
        assert header_of(refreshed.json()["access_token"])["alg"] == "EdDSA"
        # An HS256 token made after the switch (by someone holding SECRET_KEY) is refused.
        late = dict(unverified(old["access_token"]))
        now = int(datetime.now(UTC).timestamp()) + 5
        late.update(iat=now, nbf=now, exp=now + 600)
        secret = settings.secret_key.get_secret_value()  # type: ignore[union-attr]
        forged = jwt.encode(late, secret, algorithm="HS256", headers={"typ": "at+jwt"})
        assert await me(client, forged) == 401


def _private_key(kit: StarterKit) -> Any:
    keyring = kit.tokens.keyring
    assert keyring is not None
    return keyring.signer()[2]


def _hs256(token: str, secret: bytes, **header: Any) -> str:
    def part(data: dict[str, Any]) -> bytes:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=")

    signing_input = (
        part({"alg": "HS256", "typ": "at+jwt", **header}) + b"." + part(unverified(token))
    )
    signature = base64.urlsafe_b64encode(
        hmac.new(secret, signing_input, hashlib.sha256).digest()
    ).rstrip(b"=")
    return (signing_input + b"." + signature).decode()


def _eddsa_raw(token: str, key: ed25519.Ed25519PrivateKey, **header: Any) -> str:
    """Signed by hand: PyJWT refuses to write some of the headers an attacker would."""

    def part(data: dict[str, Any]) -> bytes:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=")

    signing_input = (
        part({"alg": "EdDSA", "typ": "at+jwt", **header}) + b"." + part(unverified(token))
    )
    signature = base64.urlsafe_b64encode(key.sign(signing_input)).rstrip(b"=")
    return (signing_input + b"." + signature).decode()


def _unsigned(token: str, kid: str) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'at+jwt', 'kid': kid})}.{part(unverified(token))}."


async def test_the_last_keys_read_stay_in_use_while_the_database_is_away(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    async for client, kit in started(settings.model_copy(update={"keyset_refresh_seconds": 1})):
        token = (await signed_up(client, "away@example.com"))["access_token"]
        keyring = kit.tokens.keyring
        before = await keyring.ready()

        class Unreachable:
            async def __aenter__(self) -> None:
                raise ConnectionRefusedError("the database is away")

            async def __aexit__(self, *_: object) -> None:
                return None

        reachable = keyring._sessionmaker
        keyring._sessionmaker = Unreachable
        try:
            await asyncio.sleep(1.1)
            with caplog.at_level("WARNING", logger="starterkit.signing"):
                kept = await keyring.ready()
            assert kept.verifiers == before.verifiers
            assert "keeping the last ones" in caplog.text
            claims = await kit.tokens.verify_access_token(token)
            assert claims.key_id == header_of(token)["kid"]
        finally:
            keyring._sessionmaker = reachable
