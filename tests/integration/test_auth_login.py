"""Login and access tokens over HTTP: the checklist of weaknesses common starters have."""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime

import httpx
import jwt
import pytest
from passlib.hash import bcrypt
from sqlalchemy import select, update

from starterkit import StarterKit, User
from tests.support.auth import API, PASSWORD, bearer, login, register, signed_up

pytestmark = pytest.mark.anyio


async def test_json_login_returns_an_uncacheable_token_pair(client: httpx.AsyncClient) -> None:
    await register(client, "ann@example.com")
    response = await login(client, " ANN@example.com ")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 15 * 60
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    me = await client.get(f"{API}/users/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["email"] == "ann@example.com"
    assert me.headers["cache-control"] == "no-store"


async def test_oauth2_form_login_works_for_the_swagger_authorize_button(
    client: httpx.AsyncClient,
) -> None:
    await register(client, "form@example.com")
    response = await client.post(
        f"{API}/auth/login",
        data={"username": "form@example.com", "password": PASSWORD, "grant_type": "password"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "bearer"
    missing = await client.post(f"{API}/auth/login", data={"username": "form@example.com"})
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["loc"] == ["body", "password"]


async def test_malformed_login_bodies_are_422_not_500(client: httpx.AsyncClient) -> None:
    for content, kind in [
        (b"", "application/json"),
        (b"{", "application/json"),
        (b'{"email": "a@example.com", "password": "x", "admin": true}', "application/json"),
        (b'{"email": "\\u0000", "password": "\\ud800"}', "application/json"),
        (b"\xff\xfe", "application/x-www-form-urlencoded"),
        (b"email=a", "text/plain"),
    ]:
        response = await client.post(
            f"{API}/auth/login", content=content, headers={"content-type": kind}
        )
        assert response.status_code == 422, (content, response.text)
        assert response.json()["code"] == "validation_error"


async def test_unknown_email_wrong_password_and_inactive_user_look_identical(
    client: httpx.AsyncClient, kit: StarterKit
) -> None:
    await register(client, "known@example.com")
    await register(client, "inactive@example.com")
    async with kit.sessionmaker() as session:
        await session.execute(
            update(User).where(User.email == "inactive@example.com").values(is_active=False)
        )
        await session.commit()

    responses = [
        await login(client, "nobody@example.com"),
        await login(client, "known@example.com", "a wrong passphrase!"),
        await login(client, "inactive@example.com"),
        await login(client, "not an email at all"),
    ]
    assert {r.status_code for r in responses} == {401}
    assert len({r.content for r in responses}) == 1
    assert {r.headers["www-authenticate"] for r in responses} == {"Bearer"}
    assert responses[0].json() == {"detail": "Incorrect email or password.", "code": "auth_error"}


async def test_unknown_email_costs_a_hash_verification(client: httpx.AsyncClient) -> None:
    await register(client, "timed@example.com")

    async def median(email: str, password: str) -> float:
        samples = []
        for _ in range(9):
            start = time.perf_counter()
            response = await login(client, email, password)
            samples.append(time.perf_counter() - start)
            assert response.status_code == 401
        return statistics.median(samples)

    wrong_password = await median("timed@example.com", "a wrong passphrase!")
    unknown_email = await median("ghost@example.com", "a wrong passphrase!")
    # Without the dummy verification an unknown email answers in a fraction of the time.
    assert unknown_email > 0.6 * wrong_password
    assert unknown_email < 1.6 * wrong_password


async def test_passwords_are_compared_exactly_without_truncation(
    client: httpx.AsyncClient,
) -> None:
    long_password = "p" * 60 + "q" * 40
    assert (await register(client, "long@example.com", long_password)).status_code == 201
    assert (await login(client, "long@example.com", long_password[:72])).status_code == 401
    assert (await login(client, "long@example.com", long_password)).status_code == 200

    spaced = "  Correct Horse Battery  "
    assert (await register(client, "spaced@example.com", spaced)).status_code == 201
    assert (await login(client, "spaced@example.com", spaced.strip())).status_code == 401
    assert (await login(client, "spaced@example.com", spaced.lower())).status_code == 401
    assert (await login(client, "spaced@example.com", spaced)).status_code == 200


async def test_unicode_passwords_count_characters_and_log_in(client: httpx.AsyncClient) -> None:
    password = "пароль密码🔑🔑🔑🔑🔑🔑"  # 12 code points, 38 bytes
    assert (await register(client, "uni@example.com", password)).status_code == 201
    assert (await login(client, "uni@example.com", password)).status_code == 200


async def test_every_login_issues_new_tokens(client: httpx.AsyncClient) -> None:
    first = await signed_up(client, "twice@example.com")
    second = (await login(client, "twice@example.com")).json()
    assert first["access_token"] != second["access_token"]
    assert first["refresh_token"] != second["refresh_token"]


async def test_legacy_bcrypt_hash_is_upgraded_on_login_once(
    client: httpx.AsyncClient, kit: StarterKit
) -> None:
    await register(client, "legacy@example.com")
    async with kit.sessionmaker() as session:
        await session.execute(
            update(User)
            .where(User.email == "legacy@example.com")
            .values(hashed_password=bcrypt.using(rounds=10).hash(PASSWORD))
        )
        await session.commit()

    async def stored_hash() -> str:
        async with kit.sessionmaker() as session:
            user = (
                await session.execute(select(User).where(User.email == "legacy@example.com"))
            ).scalar_one()
            return user.hashed_password

    assert (await login(client, "legacy@example.com")).status_code == 200
    upgraded = await stored_hash()
    assert upgraded.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert (await login(client, "legacy@example.com")).status_code == 200
    assert await stored_hash() == upgraded


async def test_no_token_or_a_token_in_the_url_is_401(client: httpx.AsyncClient) -> None:
    tokens = await signed_up(client, "url@example.com")
    for response in (
        await client.get(f"{API}/users/me"),
        await client.get(f"{API}/users/me", params={"access_token": tokens["access_token"]}),
        await client.get(f"{API}/users/me", headers={"Authorization": "Basic abc"}),
        await client.get(f"{API}/users/me", headers={"Authorization": "Bearer"}),
    ):
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["code"] == "auth_error"


async def test_forged_tokens_are_401_over_http(client: httpx.AsyncClient) -> None:
    tokens = await signed_up(client, "forge@example.com")
    payload = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    none_token = jwt.encode(payload, key="", algorithm="none", headers={"typ": "at+jwt"})
    wrong_key = jwt.encode(payload, "w" * 48, algorithm="HS256", headers={"typ": "at+jwt"})
    expired = dict(payload, exp=int(datetime.now(UTC).timestamp()) - 120)
    expired_token = jwt.encode(expired, "w" * 48, algorithm="HS256", headers={"typ": "at+jwt"})
    bodies = set()
    for token in (none_token, wrong_key, expired_token, tokens["refresh_token"], "x.y.z"):
        response = await client.get(f"{API}/users/me", headers=bearer(token))
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        bodies.add(response.content)
    assert len(bodies) == 1  # nothing tells which check failed


async def test_refresh_token_endpoint_rejects_an_access_token(client: httpx.AsyncClient) -> None:
    tokens = await signed_up(client, "swap@example.com")
    response = await client.post(
        f"{API}/auth/refresh", json={"refresh_token": tokens["access_token"]}
    )
    assert response.status_code == 401


async def test_no_default_accounts_exist(client: httpx.AsyncClient) -> None:
    for email, password in [
        ("admin", "admin"),
        ("admin@example.com", "password"),
        ("root", "root"),
    ]:
        assert (await login(client, email, password)).status_code == 401


async def test_tokens_and_passwords_never_reach_the_log(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    tokens = await signed_up(client, "quiet@example.com")
    await login(client, "quiet@example.com", "a wrong passphrase!")
    await client.get(f"{API}/users/me", headers=bearer(tokens["access_token"]))
    await client.post(f"{API}/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    for secret in (
        PASSWORD,
        "a wrong passphrase!",
        tokens["access_token"],
        tokens["refresh_token"],
    ):
        assert secret not in caplog.text


async def test_log_lines_cannot_be_forged_through_the_email(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    await login(client, "bob\n2026-01-01 INFO login ok user=admin", "whatever password")
    assert not any("\n" in record.getMessage() for record in caplog.records)
