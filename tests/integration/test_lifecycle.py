"""Forgotten passwords over HTTP, and the tokens and mail behind every account link.

Every test runs on SQLite and, when configured, PostgreSQL. Mail goes to the console backend's
outbox, or to a real SMTP server on loopback; ``kit.background.wait()`` lets the background
jobs that send it finish.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import anyio.to_thread
import httpx
import pytest
from sqlalchemy import update
from starlette.requests import Request

from starterkit import Settings, StarterKit, User, create_app
from starterkit.db import migrate
from starterkit.exceptions import InvalidToken
from starterkit.lifecycle.tokens import TokenPurpose
from starterkit.mail import Mail
from tests.conftest import SettingsFactory, app_client
from tests.support.auth import API, PASSWORD, FakeClock, bearer, login, refresh, register, signed_up
from tests.support.lifecycle import (
    NEW_PASSWORD,
    assert_bad_link,
    clocked_service,
    events_of,
    forgot,
    mails_sent,
    reset,
    reset_token_for,
    token_of,
    verify,
    verify_token_for,
)
from tests.support.processes import free_port
from tests.support.smtp_server import smtp_server

pytestmark = pytest.mark.anyio


@pytest.fixture
async def clocked(
    settings: Settings,
) -> AsyncIterator[tuple[httpx.AsyncClient, StarterKit, FakeClock]]:
    """The service with a clock the test moves."""
    async with clocked_service(settings) as service:
        yield service


# --- forgot and reset password -----------------------------------------------------------------


async def test_a_reset_link_sets_the_password_and_ends_every_session_and_access_token(
    client: httpx.AsyncClient, kit: StarterKit
) -> None:
    tokens = await signed_up(client, "alice@example.com")
    other_device = (await login(client, "alice@example.com")).json()

    assert (await forgot(client, "Alice@Example.com ")).status_code == 202
    [mail] = await mails_sent(kit)
    assert (mail.to, mail.kind, mail.subject) == (
        "alice@example.com",
        "password_reset",
        "Reset your password",
    )
    assert mail.link is not None
    assert mail.link.startswith("http://127.0.0.1:8000/reset-password?token=")
    assert "30 minutes" in mail.text

    answer = await reset(client, token_of(mail))
    assert answer.status_code == 200, answer.text
    assert answer.json()["email"] == "alice@example.com"
    assert answer.json()["is_verified"] is True  # the link proved the mailbox is theirs

    for pair in (tokens, other_device):
        assert (await refresh(client, pair["refresh_token"])).status_code == 401
        me = await client.get(f"{API}/users/me", headers=bearer(pair["access_token"]))
        assert me.status_code == 401
    assert (await login(client, "alice@example.com", PASSWORD)).status_code == 401
    assert (await login(client, "alice@example.com", NEW_PASSWORD)).status_code == 200
    assert await events_of(kit, answer.json()["id"]) == [
        "user_registered",
        "login_succeeded",
        "login_succeeded",
        "password_reset_requested",
        "password_reset",
        "login_failed",
        "login_succeeded",
    ]


async def test_a_reset_token_works_once(client: httpx.AsyncClient, kit: StarterKit) -> None:
    await register(client, "once@example.com")
    token = await reset_token_for(client, kit, "once@example.com")
    assert (await reset(client, token)).status_code == 200
    assert_bad_link(await reset(client, token, "yet another passphrase"))
    assert (await login(client, "once@example.com", NEW_PASSWORD)).status_code == 200


async def test_of_concurrent_uses_of_one_reset_token_exactly_one_wins(
    client: httpx.AsyncClient, kit: StarterKit
) -> None:
    await register(client, "race@example.com")
    token = await reset_token_for(client, kit, "race@example.com")
    answers = await asyncio.gather(
        *(reset(client, token, f"concurrent passphrase {n}") for n in range(4))
    )
    assert sorted(answer.status_code for answer in answers) == [200, 400, 400, 400]
    [winner] = [n for n, answer in enumerate(answers) if answer.status_code == 200]
    assert (
        await login(client, "race@example.com", f"concurrent passphrase {winner}")
    ).status_code == 200


async def test_a_weak_new_password_is_422_and_leaves_the_token_usable(
    client: httpx.AsyncClient, kit: StarterKit
) -> None:
    await register(client, "weak@example.com")
    token = await reset_token_for(client, kit, "weak@example.com")
    weak = await reset(client, token, "password1234")
    assert weak.status_code == 422
    assert weak.json()["errors"][0]["loc"] == ["body", "new_password"]
    assert (await reset(client, token)).status_code == 200


async def test_reset_tokens_expire(
    clocked: tuple[httpx.AsyncClient, StarterKit, FakeClock],
) -> None:
    client, kit, clock = clocked
    await register(client, "late@example.com")
    first = await reset_token_for(client, kit, "late@example.com")
    second = await reset_token_for(client, kit, "late@example.com")
    clock.advance(minutes=29)
    assert (await reset(client, first)).status_code == 200  # still within 30 minutes
    clock.advance(minutes=2, seconds=kit.settings.clock_skew_seconds)
    # The second token is dead twice over: expired, and bound to the old password.
    assert_bad_link(await reset(client, second))

    fresh = await reset_token_for(client, kit, "late@example.com")
    clock.advance(minutes=30, seconds=kit.settings.clock_skew_seconds + 1)
    assert_bad_link(await reset(client, fresh, "one more new passphrase"))
    assert (await login(client, "late@example.com", NEW_PASSWORD)).status_code == 200


def _tampered(token: str) -> list[str]:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = str(int(claims["sub"]) + 1)
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    return [
        f"{header}.{forged}.{signature}",
        f"{header}.{payload}.{flipped}",
        f"{header}.{payload}.",
        "not-a-token",
    ]


async def test_tampered_reset_tokens_are_400(client: httpx.AsyncClient, kit: StarterKit) -> None:
    await register(client, "victim@example.com")
    await register(client, "attacker@example.com")
    token = await reset_token_for(client, kit, "attacker@example.com")
    for forged in _tampered(token):
        assert_bad_link(await reset(client, forged))
    assert (await login(client, "victim@example.com", PASSWORD)).status_code == 200


async def test_tokens_of_one_kind_are_refused_as_any_other_kind(
    client: httpx.AsyncClient, kit: StarterKit
) -> None:
    tokens = await signed_up(client, "kinds@example.com")
    reset_token = await reset_token_for(client, kit, "kinds@example.com")
    verify_token = await verify_token_for(client, kit, "kinds@example.com")

    assert_bad_link(await verify(client, reset_token))
    assert_bad_link(await reset(client, verify_token))
    for foreign in (tokens["access_token"], tokens["refresh_token"]):
        assert_bad_link(await reset(client, foreign))
        assert_bad_link(await verify(client, foreign))
    for mailed in (reset_token, verify_token):
        me = await client.get(f"{API}/users/me", headers=bearer(mailed))
        assert me.status_code == 401
        assert (await refresh(client, mailed)).status_code == 401
    # None of that used the real tokens up.
    assert (await verify(client, verify_token)).status_code == 200
    assert (await reset(client, reset_token)).status_code == 200


async def test_forgot_password_answers_alike_for_known_and_unknown_addresses(
    client: httpx.AsyncClient, kit: StarterKit
) -> None:
    await register(client, "known@example.com")
    known = await forgot(client, "known@example.com")
    unknown = await forgot(client, "unknown@example.com")
    assert known.status_code == unknown.status_code == 202
    assert known.content == unknown.content
    assert "link to reset" in known.json()["detail"]
    assert sorted(known.headers) == sorted(unknown.headers)
    assert [mail.to for mail in await mails_sent(kit)] == ["known@example.com"]


async def test_forgot_password_answers_before_the_mail_is_sent(
    client: httpx.AsyncClient, kit: StarterKit
) -> None:
    await register(client, "slow@example.com")
    sending = asyncio.Event()
    release = asyncio.Event()
    delivered: list[Mail] = []

    async def slow_backend(mail: Mail) -> None:
        sending.set()
        await release.wait()
        delivered.append(mail)

    kit.mailer.backend = slow_backend
    # Were the mail sent before answering, this would wait for `release` and time out.
    answer = await asyncio.wait_for(forgot(client, "slow@example.com"), timeout=10)
    assert answer.status_code == 202
    # The mail job is running and stuck in the backend, and the 202 is already here.
    await asyncio.wait_for(sending.wait(), timeout=10)
    assert delivered == []
    assert kit.background.pending == 1
    release.set()
    await kit.background.wait()
    assert [mail.to for mail in delivered] == ["slow@example.com"]


async def test_forgot_password_hooks_run_in_the_background_and_may_fail(
    client: httpx.AsyncClient, kit: StarterKit, caplog: pytest.LogCaptureFixture
) -> None:
    await register(client, "hooked@example.com")
    seen: list[tuple[str, str, str | None]] = []

    async def on_forgot(user: User, token: str, request: Request | None) -> None:
        assert request is not None
        seen.append((user.email, token, request.headers.get("user-agent")))
        raise RuntimeError("the CRM is down")

    kit.hooks.on_after_forgot_password = on_forgot
    answer = await client.post(
        f"{API}/auth/forgot-password",
        json={"email": "hooked@example.com"},
        headers={"User-Agent": "hook-test"},
    )
    assert answer.status_code == 202
    [mail] = await mails_sent(kit)
    assert seen == [("hooked@example.com", token_of(mail), "hook-test")]
    assert "hook on_after_forgot_password failed" in caplog.text


async def test_inactive_accounts_get_no_reset_mail(
    client: httpx.AsyncClient, kit: StarterKit
) -> None:
    await register(client, "inactive@example.com")
    token = await reset_token_for(client, kit, "inactive@example.com")
    async with kit.sessionmaker() as session:
        await session.execute(update(User).values(is_active=False))
        await session.commit()
    assert (await forgot(client, "inactive@example.com")).status_code == 202
    assert len(await mails_sent(kit)) == 1
    assert_bad_link(await reset(client, token))


async def test_forgot_password_is_limited_per_client_and_per_address(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(
        auth_forgot_password_rate_limit="3/minute", auth_mail_account_rate_limit="2/hour"
    )
    await anyio.to_thread.run_sync(migrate.upgrade, settings)
    async with app_client(create_app(settings)) as client:
        statuses = [(await forgot(client, "a@example.com")).status_code for _ in range(3)]
        assert statuses == [202, 202, 429]  # the third is over the per-address limit
        limited = await forgot(client, "b@example.com")  # a fresh address, but the same client
        assert limited.status_code == 429
        assert limited.json()["code"] == "rate_limited"
        assert int(limited.headers["Retry-After"]) >= 1


async def test_other_spellings_of_an_address_share_its_mail_limit(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(auth_mail_account_rate_limit="2/hour")
    await anyio.to_thread.run_sync(migrate.upgrade, settings)
    async with app_client(create_app(settings)) as client:
        spellings = ["victim@example.com", "Victim@\uff45xample.com", "victim@example\u3002com"]
        statuses = [(await forgot(client, spelling)).status_code for spelling in spellings]
        assert statuses == [202, 202, 429]


async def test_tokens_are_signed_with_keys_of_their_own(kit: StarterKit) -> None:
    user = User(id=7, email="k@example.com", hashed_password="$argon2id$x", is_verified=False)
    reset_token = kit.account_tokens.issue(TokenPurpose.PASSWORD_RESET, user)
    verify_token = kit.account_tokens.issue(TokenPurpose.VERIFY_EMAIL, user)
    assert kit.account_tokens.read(TokenPurpose.PASSWORD_RESET, reset_token).user_id == 7
    # Not even an access-token decoder with the service's SECRET_KEY accepts them.
    for token in (reset_token, verify_token):
        with pytest.raises(InvalidToken):
            kit.tokens.decode_access_token(token)


async def test_a_slow_smtp_server_does_not_delay_the_answer(
    make_settings: SettingsFactory,
) -> None:
    with smtp_server() as server:
        server.handler.gate = threading.Event()  # the server sits on every message
        settings = make_settings(
            email_backend="smtp",
            smtp_host=server.host,
            smtp_port=server.port,
            smtp_tls="none",
            email_from="Accounts <accounts@example.com>",
            public_url="https://app.example",
        )
        await anyio.to_thread.run_sync(migrate.upgrade, settings)
        kit = StarterKit(settings)
        async with app_client(create_app(kit=kit)) as client:
            await register(client, "smtp@example.com")
            assert (await forgot(client, "smtp@example.com")).status_code == 202
            # The 202 is here while the server still holds the message.
            assert await anyio.to_thread.run_sync(server.handler.arrived.wait, 10)
            assert server.handler.received == []
            server.handler.gate.set()
            await kit.background.wait()
            [received] = server.handler.received
            assert received.recipients == ["smtp@example.com"]
            assert received.message["From"] == "Accounts <accounts@example.com>"
            payload = received.message.get_payload(decode=True)  # long lines: quoted-printable
            assert isinstance(payload, bytes)
            body = payload.decode()
            link = next(line for line in body.splitlines() if line.startswith("https://"))
            assert link.startswith("https://app.example/reset-password?token=")
            [token] = parse_qs(urlsplit(link).query)["token"]
            assert (await reset(client, token)).status_code == 200


async def test_a_failing_mail_server_is_logged_and_never_reaches_the_client(
    make_settings: SettingsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(
        email_backend="smtp", smtp_host="127.0.0.1", smtp_port=free_port(), smtp_tls="none"
    )
    await anyio.to_thread.run_sync(migrate.upgrade, settings)
    kit = StarterKit(settings)
    async with app_client(create_app(kit=kit)) as client:
        await register(client, "unlucky@example.com")
        assert (await forgot(client, "unlucky@example.com")).status_code == 202
        await kit.background.wait()
    assert "background job 'password-reset mail' failed" in caplog.text
