"""Multi-factor login: TOTP and recovery codes, the two-step login, step-up, admin reset.

Codes are computed by pyotp from the secret at the service's clock. That clock starts half an
hour in the past and access tokens live a day, so moving it forward (a new code every 30
seconds, an mfa_token's 5 minutes, the 10 minutes of a recent authentication) never makes a
token look issued in the future to the real clock that checks ``nbf`` and ``exp``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from fastapi import Depends
from sqlalchemy import select

from starterkit import Settings, StarterKit, User, create_app
from starterkit.db.models import MFAChallenge, RecoveryCode, TOTPFactor
from starterkit.mfa.codes import totp_code
from tests.conftest import SettingsFactory, app_client
from tests.support.auth import API, PASSWORD, FakeClock, bearer, login, signed_up
from tests.support.lifecycle import events_of, mails_sent, reset, reset_token_for
from tests.support.mfa import TOTPAccount, enable_totp, mfa_token, second_step

pytestmark = pytest.mark.anyio


@dataclass
class Service:
    client: httpx.AsyncClient
    kit: StarterKit
    clock: FakeClock


@pytest.fixture
def mfa_settings(make_settings: SettingsFactory, settings: Settings) -> Settings:
    """Migrated test settings whose access tokens outlive the clock's moves."""
    return settings.model_copy(update={"access_token_expire_minutes": 24 * 60})


async def start(settings: Settings) -> AsyncIterator[Service]:
    clock = FakeClock(now=datetime.now(UTC) - timedelta(minutes=30))
    kit = StarterKit(settings, clock=clock)
    async with app_client(create_app(kit=kit)) as client:
        yield Service(client, kit, clock)


@pytest.fixture
async def service(mfa_settings: Settings) -> AsyncIterator[Service]:
    async for running in start(mfa_settings):
        yield running


async def totp_account(service: Service, email: str) -> TOTPAccount:
    tokens = await signed_up(service.client, email)
    return await enable_totp(service.client, tokens["access_token"], email, service.clock)


async def two_step_login(service: Service, account: TOTPAccount) -> dict[str, str]:
    token = await mfa_token(service.client, account.email)
    response = await second_step(service.client, token, code=account.code())
    assert response.status_code == 200, response.text
    tokens: dict[str, str] = response.json()
    return tokens


async def make_superuser(kit: StarterKit, access_token: str) -> None:
    async with kit.sessionmaker() as session:
        row = await session.get(User, int(str(claims(access_token)["sub"])))
        assert row is not None
        row.is_superuser = True
        await session.commit()


def claims(access_token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(access_token, options={"verify_signature": False})
    return decoded


async def test_enable_totp_then_log_in_with_a_code(service: Service) -> None:
    client = service.client
    tokens = await signed_up(client, "mfa@example.com")
    headers = bearer(tokens["access_token"])
    assert (await client.get(f"{API}/auth/mfa", headers=headers)).json() == {
        "totp": False,
        "recovery_codes_left": 0,
    }
    setup = (await client.post(f"{API}/auth/mfa/totp/setup", headers=headers)).json()
    assert setup["otpauth_uri"].startswith("otpauth://totp/starterkit:mfa%40example.com?")
    assert f"secret={setup['secret']}" in setup["otpauth_uri"]
    assert setup["qr_svg"].startswith("<svg")
    assert "</svg>" in setup["qr_svg"]
    # Pending: login does not ask for it yet.
    pending_login = await login(client, "mfa@example.com")
    assert "access_token" in pending_login.json()
    account = await enable_totp(client, tokens["access_token"], "mfa@example.com", service.clock)
    assert len(account.recovery_codes) == 10
    assert len(set(account.recovery_codes)) == 10
    assert (await client.get(f"{API}/auth/mfa", headers=headers)).json() == {
        "totp": True,
        "recovery_codes_left": 10,
    }

    first = await login(client, "mfa@example.com")
    assert first.status_code == 200
    body = first.json()
    assert body["mfa_required"] is True
    assert body["methods"] == ["totp", "recovery_code"]
    assert body["expires_in"] == 300
    assert "access_token" not in body
    assert "refresh_token" not in body
    assert first.headers["cache-control"] == "no-store"
    done = await second_step(client, body["mfa_token"], code=account.code())
    assert done.status_code == 200, done.text
    pair = done.json()
    assert set(claims(pair["access_token"])["amr"]) == {"pwd", "otp", "mfa"}
    me = await client.get(f"{API}/users/me", headers=bearer(pair["access_token"]))
    assert me.json()["email"] == "mfa@example.com"
    # A refresh keeps how and when the session authenticated.
    refreshed = await client.post(
        f"{API}/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    again = claims(refreshed.json()["access_token"])
    assert again["amr"] == claims(pair["access_token"])["amr"]
    assert again["auth_time"] == claims(pair["access_token"])["auth_time"]
    user_id = me.json()["id"]
    assert {"mfa_enabled", "login_succeeded"} <= set(await events_of(service.kit, user_id))


async def test_secrets_are_stored_encrypted_and_codes_hashed(service: Service) -> None:
    account = await totp_account(service, "stored@example.com")
    async with service.kit.sessionmaker() as session:
        factor = (await session.scalars(select(TOTPFactor))).one()
        stored_codes = list(await session.scalars(select(RecoveryCode.code_hash)))
    assert account.secret not in factor.secret
    assert service.kit.mfa_keys.box.decrypt(factor.secret) == account.secret
    assert len(stored_codes) == 10
    assert not set(account.recovery_codes) & set(stored_codes)


async def test_wrong_reused_and_foreign_codes_are_401_and_change_nothing(
    service: Service,
) -> None:
    client = service.client
    account = await totp_account(service, "codes@example.com")
    other = await totp_account(service, "other@example.com")
    token = await mfa_token(client, account.email)
    wrong = await second_step(client, token, code="000000")
    assert wrong.status_code == 401
    assert wrong.json()["code"] == "auth_error"
    stale = totp_code(account.secret, service.clock.now - timedelta(seconds=90))
    assert (await second_step(client, token, code=stale)).status_code == 401  # expired
    foreign = await second_step(client, token, code=totp_code(other.secret, service.clock.now))
    assert foreign.status_code == 401
    both = await second_step(client, token, code="123456", recovery_code="abcde-fghij")
    assert both.status_code == 422  # one secret or the other, not both; not counted
    for malformed in ("12345",):  # four failures: the fifth would end the token
        assert (await second_step(client, token, code=malformed)).status_code == 401
    code = account.code()
    assert (await second_step(client, token, code=code)).status_code == 200
    # The same code again, within its window, for a new login: refused.
    fresh = await mfa_token(client, account.email)
    assert (await second_step(client, fresh, code=code)).status_code == 401
    # A code of an earlier step than the one used: refused too.
    earlier = totp_code(account.secret, service.clock.now - timedelta(seconds=60))
    assert (await second_step(client, fresh, code=earlier)).status_code == 401
    assert (await second_step(client, fresh, code=account.code())).status_code == 200


async def test_an_mfa_token_works_once_expires_and_dies_after_five_wrong_codes(
    service: Service,
) -> None:
    client = service.client
    account = await totp_account(service, "token@example.com")
    used = await mfa_token(client, account.email)
    assert (await second_step(client, used, code=account.code())).status_code == 200
    assert (await second_step(client, used, code=account.code())).status_code == 401

    late = await mfa_token(client, account.email)
    service.clock.advance(minutes=5, seconds=1)
    expired = await second_step(client, late, code=account.code())
    assert expired.status_code == 401
    assert "log in again" in expired.json()["detail"]

    tried = await mfa_token(client, account.email)
    for _ in range(5):
        assert (await second_step(client, tried, code="000000")).status_code == 401
    assert (await second_step(client, tried, code=account.code())).status_code == 401
    async with service.kit.sessionmaker() as session:
        failures = await session.scalars(select(MFAChallenge.failures))
        assert 5 in list(failures)


async def test_tokens_of_one_kind_never_pass_for_the_other(service: Service) -> None:
    client = service.client
    account = await totp_account(service, "kinds@example.com")
    token = await mfa_token(client, account.email)
    as_access = await client.get(f"{API}/users/me", headers=bearer(token))
    assert as_access.status_code == 401
    pair = await two_step_login(service, account)
    as_mfa = await second_step(client, pair["access_token"], code=account.code())
    assert as_mfa.status_code == 401
    as_mfa = await second_step(client, pair["refresh_token"], code=account.code())
    assert as_mfa.status_code == 401


async def test_a_recovery_code_logs_in_once_and_mails_the_count(service: Service) -> None:
    client = service.client
    account = await totp_account(service, "lost@example.com")
    code = account.recovery_codes[0]
    typed = code.upper().replace("-", " ")  # as someone might type it from paper
    response = await second_step(
        client, await mfa_token(client, account.email), recovery_code=typed
    )
    assert response.status_code == 200, response.text
    again = await second_step(client, await mfa_token(client, account.email), recovery_code=code)
    assert again.status_code == 401
    headers = bearer(response.json()["access_token"])
    status = await client.get(f"{API}/auth/mfa", headers=headers)
    assert status.json() == {"totp": True, "recovery_codes_left": 9}
    [notice] = [m for m in await mails_sent(service.kit) if m.kind == "recovery_code_used"]
    assert notice.to == account.email
    assert "9 unused recovery codes are left" in notice.text
    me = (await client.get(f"{API}/users/me", headers=headers)).json()
    assert "recovery_code_used" in await events_of(service.kit, me["id"])


async def test_regenerated_recovery_codes_replace_the_old_set(service: Service) -> None:
    client = service.client
    tokens = await signed_up(client, "regen@example.com")
    account = await enable_totp(client, tokens["access_token"], "regen@example.com", service.clock)
    fresh = await client.post(
        f"{API}/auth/mfa/recovery-codes", headers=bearer(tokens["access_token"])
    )
    assert fresh.status_code == 200
    new_codes = fresh.json()["recovery_codes"]
    assert len(new_codes) == 10
    assert not set(new_codes) & set(account.recovery_codes)
    old = await second_step(
        client, await mfa_token(client, account.email), recovery_code=account.recovery_codes[0]
    )
    assert old.status_code == 401
    new = await second_step(
        client, await mfa_token(client, account.email), recovery_code=new_codes[0]
    )
    assert new.status_code == 200


async def test_the_form_login_of_an_mfa_account_is_401_mfa_required(service: Service) -> None:
    account = await totp_account(service, "form@example.com")
    response = await service.client.post(
        f"{API}/auth/login", data={"username": account.email, "password": PASSWORD}
    )
    assert response.status_code == 401
    assert response.json()["code"] == "mfa_required"
    wrong = await service.client.post(
        f"{API}/auth/login", data={"username": account.email, "password": "not the password"}
    )
    assert wrong.json()["code"] == "auth_error"  # only a right password learns about the factor


async def test_setup_and_removal_need_a_recent_authentication(service: Service) -> None:
    client = service.client
    tokens = await signed_up(client, "stepup@example.com")
    headers = bearer(tokens["access_token"])
    service.clock.advance(minutes=11)
    stale = await client.post(f"{API}/auth/mfa/totp/setup", headers=headers)
    assert stale.status_code == 403
    assert stale.json()["code"] == "reauthentication_required"
    wrong = await client.post(
        f"{API}/auth/reauthenticate", json={"password": "not the password"}, headers=headers
    )
    assert wrong.status_code == 400
    fresh = await client.post(
        f"{API}/auth/reauthenticate", json={"password": PASSWORD}, headers=headers
    )
    assert fresh.status_code == 200, fresh.text
    new_headers = bearer(fresh.json()["access_token"])
    assert claims(fresh.json()["access_token"])["sid"] == claims(tokens["access_token"])["sid"]
    account = await enable_totp(
        client, fresh.json()["access_token"], "stepup@example.com", service.clock
    )
    # The refresh token of the session now carries the fresh auth_time.
    refreshed = await client.post(
        f"{API}/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert (
        claims(refreshed.json()["access_token"])["auth_time"]
        == claims(fresh.json()["access_token"])["auth_time"]
    )

    service.clock.advance(minutes=11)
    assert (await client.delete(f"{API}/auth/mfa/totp", headers=new_headers)).status_code == 403
    assert (
        await client.post(f"{API}/auth/mfa/recovery-codes", headers=new_headers)
    ).status_code == 403
    by_code = await client.post(
        f"{API}/auth/reauthenticate", json={"code": account.code()}, headers=new_headers
    )
    assert by_code.status_code == 200, by_code.text
    assert set(claims(by_code.json()["access_token"])["amr"]) == {"pwd", "otp", "mfa"}
    latest = bearer(by_code.json()["access_token"])
    assert (await client.delete(f"{API}/auth/mfa/totp", headers=latest)).status_code == 204
    missing = await client.delete(f"{API}/auth/mfa/totp", headers=latest)
    assert missing.status_code == 404  # a factor you do not have
    assert "access_token" in (await login(client, account.email)).json()  # password only again


async def test_a_wrong_confirm_and_a_second_setup_change_nothing(service: Service) -> None:
    client = service.client
    tokens = await signed_up(client, "confirm@example.com")
    headers = bearer(tokens["access_token"])
    unstarted = await client.post(
        f"{API}/auth/mfa/totp/confirm", json={"code": "123456"}, headers=headers
    )
    assert unstarted.status_code == 400
    await client.post(f"{API}/auth/mfa/totp/setup", headers=headers)
    wrong = await client.post(
        f"{API}/auth/mfa/totp/confirm", json={"code": "000000"}, headers=headers
    )
    assert wrong.status_code == 400
    assert (await client.get(f"{API}/auth/mfa", headers=headers)).json()["totp"] is False
    await enable_totp(client, tokens["access_token"], "confirm@example.com", service.clock)
    again = await client.post(f"{API}/auth/mfa/totp/setup", headers=headers)
    assert again.status_code == 409
    no_regen = await signed_up(client, "nocodes@example.com")
    refused = await client.post(
        f"{API}/auth/mfa/recovery-codes", headers=bearer(no_regen["access_token"])
    )
    assert refused.status_code == 400


async def test_a_password_reset_never_skips_the_second_factor(service: Service) -> None:
    client = service.client
    account = await totp_account(service, "reset@example.com")
    waiting = await mfa_token(client, account.email)
    token = await reset_token_for(client, service.kit, account.email)
    assert (await reset(client, token, "a brand new passphrase")).status_code == 200
    # The login that was waiting for its code died with the old password.
    assert (await second_step(client, waiting, code=account.code())).status_code == 401
    after = await mfa_token(client, account.email, "a brand new passphrase")
    assert (await second_step(client, after, code=account.code())).status_code == 200


async def test_a_superuser_resets_a_lost_factor_and_ends_the_sessions(
    service: Service, mfa_settings: Settings
) -> None:
    client = service.client
    account = await totp_account(service, "phone@example.com")
    pair = await two_step_login(service, account)
    me = (await client.get(f"{API}/users/me", headers=bearer(pair["access_token"]))).json()
    admin = await signed_up(client, "admin@example.com")
    await make_superuser(service.kit, admin["access_token"])
    admin_headers = bearer((await login(client, "admin@example.com")).json()["access_token"])
    assert (
        await client.delete(f"{API}/users/{me['id']}/mfa", headers=bearer(pair["access_token"]))
    ).status_code == 403  # not for themselves without being a superuser
    reset_response = await client.delete(f"{API}/users/{me['id']}/mfa", headers=admin_headers)
    assert reset_response.status_code == 204
    assert (
        await client.get(f"{API}/users/me", headers=bearer(pair["access_token"]))
    ).status_code == 401
    refreshed = await client.post(
        f"{API}/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert refreshed.status_code == 401
    assert "access_token" in (await login(client, account.email)).json()
    assert "mfa_reset" in await events_of(service.kit, me["id"])
    assert (
        await client.delete(f"{API}/users/999999/mfa", headers=admin_headers)
    ).status_code == 404


async def test_routes_can_demand_a_second_factor_and_a_recent_login(
    mfa_settings: Settings,
) -> None:
    settings = mfa_settings.model_copy(update={"mfa_required_for_superusers": True})
    clock = FakeClock(now=datetime.now(UTC) - timedelta(minutes=30))
    kit = StarterKit(settings, clock=clock)
    app = create_app(kit=kit)

    # Annotations are strings in this module (and kit is local): dependencies go in the
    # decorator.
    @app.get("/sensitive", dependencies=[Depends(kit.require_user(mfa=True))])
    async def sensitive() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/recent", dependencies=[Depends(kit.require_recent_auth(timedelta(minutes=2)))])
    async def recent() -> dict[str, bool]:
        return {"ok": True}

    async with app_client(app) as client:
        service = Service(client, kit, clock)
        tokens = await signed_up(client, "boss@example.com")
        await make_superuser(kit, tokens["access_token"])
        password_only = bearer((await login(client, "boss@example.com")).json()["access_token"])
        refused = await client.get(f"{API}/users", headers=password_only)
        assert refused.status_code == 403
        assert refused.json()["code"] == "mfa_required"
        assert (await client.get("/sensitive", headers=password_only)).json()[
            "code"
        ] == "mfa_required"
        assert (await client.get("/recent", headers=password_only)).status_code == 200
        account = await enable_totp(client, tokens["access_token"], "boss@example.com", clock)
        strong = bearer((await two_step_login(service, account))["access_token"])
        assert (await client.get(f"{API}/users", headers=strong)).status_code == 200
        assert (await client.get("/sensitive", headers=strong)).status_code == 200
        clock.advance(minutes=3)
        stale = await client.get("/recent", headers=strong)
        assert stale.status_code == 403
        assert stale.json()["code"] == "reauthentication_required"


async def test_the_code_step_is_rate_limited_per_account(mfa_settings: Settings) -> None:
    settings = mfa_settings.model_copy(update={"auth_mfa_rate_limit": "3/minute"})
    async for service in start(settings):
        account = await totp_account(service, "limited@example.com")
        for _ in range(3):
            token = await mfa_token(service.client, account.email)
            assert (await second_step(service.client, token, code="000000")).status_code == 401
        token = await mfa_token(service.client, account.email)
        limited = await second_step(service.client, token, code=account.code())
        assert limited.status_code == 429


async def test_two_uses_of_one_code_at_once_let_exactly_one_in(service: Service) -> None:
    account = await totp_account(service, "race@example.com")
    first = await mfa_token(service.client, account.email)
    second = await mfa_token(service.client, account.email)
    code = account.code()
    results = await asyncio.gather(
        second_step(service.client, first, code=code),
        second_step(service.client, second, code=code),
    )
    assert sorted(r.status_code for r in results) == [200, 401]


async def test_hooks_see_every_factor_change_and_failure(service: Service) -> None:
    seen: list[str] = []

    async def note(name: str) -> None:
        seen.append(name)

    hooks = service.kit.hooks
    hooks.on_after_mfa_enabled = lambda user, request: note("enabled")
    hooks.on_after_mfa_disabled = lambda user, request: note("disabled")
    hooks.on_after_mfa_reset = lambda user, request: note("reset")
    hooks.on_mfa_failed = lambda user_id, request: note("failed")
    hooks.on_recovery_code_used = lambda user, left, request: note(f"recovery {left}")
    client = service.client
    email = "hooks@example.com"
    tokens = await signed_up(client, email)
    account = await enable_totp(client, tokens["access_token"], email, service.clock)
    token = await mfa_token(client, email)
    await second_step(client, token, code="000000")
    done = await second_step(client, token, recovery_code=account.recovery_codes[0])
    assert done.status_code == 200
    headers = bearer(done.json()["access_token"])
    assert (await client.delete(f"{API}/auth/mfa/totp", headers=headers)).status_code == 204
    admin = await signed_up(client, "root@example.com")
    await make_superuser(service.kit, admin["access_token"])
    root = bearer((await login(client, "root@example.com")).json()["access_token"])
    me = (await client.get(f"{API}/users/me", headers=headers)).json()
    assert (await client.delete(f"{API}/users/{me['id']}/mfa", headers=root)).status_code == 204
    assert seen == ["enabled", "failed", "recovery 9", "disabled", "reset"]
    events = await events_of(service.kit, me["id"])
    for event in ("mfa_enabled", "mfa_failed", "recovery_code_used", "mfa_disabled", "mfa_reset"):
        assert event in events
