"""Email verification over HTTP: the links, ALLOW_UNVERIFIED_LOGIN, require_user(verified=True)
and changing the email address (with the PATCH /users/me race regression).

Every test runs on SQLite and, when configured, PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
import httpx
import pytest
from fastapi import Depends, FastAPI
from sqlalchemy import delete
from starlette.requests import Request

from starterkit import Settings, StarterKit, User, create_app
from starterkit.db import migrate
from tests.conftest import SettingsFactory, app_client
from tests.support.auth import API, PASSWORD, FakeClock, bearer, login, register, signed_up
from tests.support.lifecycle import (
    assert_bad_link,
    clocked_service,
    events_of,
    mails_sent,
    request_verify,
    reset,
    reset_token_for,
    token_of,
    verify,
    verify_token_for,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
async def clocked(
    settings: Settings,
) -> AsyncIterator[tuple[httpx.AsyncClient, StarterKit, FakeClock]]:
    """The service with a clock the test moves."""
    async with clocked_service(settings) as service:
        yield service


# --- email verification ------------------------------------------------------------------------


async def test_a_verification_link_verifies_the_email_once(
    client: httpx.AsyncClient, kit: StarterKit, caplog: pytest.LogCaptureFixture
) -> None:
    tokens = await signed_up(client, "verify@example.com")
    verified: list[str] = []

    async def on_verify(user: User, request: Request | None) -> None:
        verified.append(user.email)
        raise RuntimeError("the welcome mail failed")

    requested: list[tuple[str, str]] = []

    async def on_request_verify(user: User, token: str, request: Request | None) -> None:
        requested.append((user.email, token))

    kit.hooks.on_after_verify = on_verify
    kit.hooks.on_after_request_verify = on_request_verify
    assert (await request_verify(client, "verify@example.com")).status_code == 202
    [mail] = await mails_sent(kit)
    assert requested == [("verify@example.com", token_of(mail))]
    assert (mail.kind, mail.subject) == ("verify_email", "Confirm your email address")
    assert mail.link is not None
    assert mail.link.startswith("http://127.0.0.1:8000/verify-email?token=")

    answer = await verify(client, token_of(mail))
    assert answer.status_code == 200
    assert answer.json()["is_verified"] is True
    assert verified == ["verify@example.com"]
    assert "hook on_after_verify failed" in caplog.text
    me = await client.get(f"{API}/users/me", headers=bearer(tokens["access_token"]))
    assert me.json()["is_verified"] is True
    assert_bad_link(await verify(client, token_of(mail)))
    assert "email_verified" in await events_of(kit, me.json()["id"])

    # Nothing left to verify: no mail, the same 202.
    again = await request_verify(client, "verify@example.com")
    unknown = await request_verify(client, "nobody@example.com")
    assert again.status_code == unknown.status_code == 202
    assert again.content == unknown.content
    assert len(await mails_sent(kit)) == 1


async def test_verification_tokens_expire(
    clocked: tuple[httpx.AsyncClient, StarterKit, FakeClock],
) -> None:
    client, kit, clock = clocked
    await register(client, "slowpoke@example.com")
    token = await verify_token_for(client, kit, "slowpoke@example.com")
    clock.advance(hours=24, seconds=kit.settings.clock_skew_seconds + 1)
    assert_bad_link(await verify(client, token))


async def test_unverified_accounts_cannot_log_in_when_the_setting_says_so(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(allow_unverified_login=False)
    await anyio.to_thread.run_sync(migrate.upgrade, settings)
    kit = StarterKit(settings)
    async with app_client(create_app(kit=kit)) as client:
        await register(client, "strict@example.com")
        refused = await login(client, "strict@example.com")
        assert refused.status_code == 403
        assert refused.json() == {
            "detail": "Verify your email address before you log in.",
            "code": "permission_denied",
        }
        # A wrong password says nothing about verification: the same 401 as an unknown email.
        wrong = await login(client, "strict@example.com", "not the passphrase")
        unknown = await login(client, "nobody@example.com", "not the passphrase")
        assert wrong.status_code == unknown.status_code == 401
        assert wrong.content == unknown.content

        token = await verify_token_for(client, kit, "strict@example.com")
        assert (await verify(client, token)).status_code == 200
        assert (await login(client, "strict@example.com")).status_code == 200


async def test_require_user_verified_refuses_unverified_accounts_with_403(
    settings: Settings,
) -> None:
    kit = StarterKit(settings)
    app = FastAPI(lifespan=kit.lifespan)
    kit.install(app)
    app.include_router(kit.auth_router, prefix="/auth")
    app.include_router(kit.users_router, prefix="/users")
    verified_user = kit.require_user(verified=True)

    @app.get("/reports")
    # A default, not Annotated: this module's annotations are strings, and FastAPI could not
    # resolve a local name inside one.
    async def reports(user: User = Depends(verified_user)) -> dict[str, str]:  # noqa: B008
        return {"for": user.email}

    async with app_client(app) as client:
        assert (
            await client.post("/users", json={"email": "r@example.com", "password": PASSWORD})
        ).status_code == 201
        tokens = (
            await client.post("/auth/login", json={"email": "r@example.com", "password": PASSWORD})
        ).json()
        refused = await client.get("/reports", headers=bearer(tokens["access_token"]))
        assert refused.status_code == 403
        assert refused.json()["code"] == "permission_denied"
        await client.post("/auth/request-verify", json={"email": "r@example.com"})
        [mail] = await mails_sent(kit)
        assert (
            await client.post("/auth/verify", json={"token": token_of(mail)})
        ).status_code == 200
        allowed = await client.get("/reports", headers=bearer(tokens["access_token"]))
        assert allowed.json() == {"for": "r@example.com"}


# --- email change ------------------------------------------------------------------------------


async def change_me(client: httpx.AsyncClient, access_token: str, **body: Any) -> httpx.Response:
    return await client.patch(f"{API}/users/me", json=body, headers=bearer(access_token))


async def test_changing_the_email_needs_the_password_and_makes_the_account_unverified(
    client: httpx.AsyncClient, kit: StarterKit
) -> None:
    tokens = await signed_up(client, "mover@example.com")
    old_link = await verify_token_for(client, kit, "mover@example.com")
    old_reset = await reset_token_for(client, kit, "mover@example.com")
    access = tokens["access_token"]

    wrong = await change_me(client, access, email="moved@example.com", current_password="nope")
    assert wrong.status_code == 400
    assert wrong.json()["code"] == "bad_request"
    missing = await change_me(client, access, email="moved@example.com")
    assert missing.status_code == 400
    assert missing.json()["code"] == "bad_request"
    assert "current_password is required" in missing.json()["detail"]
    assert (
        await change_me(client, access, email=None, current_password=PASSWORD)
    ).status_code == 422
    me = await client.get(f"{API}/users/me", headers=bearer(access))
    assert me.json()["email"] == "mover@example.com"

    await register(client, "taken@example.com")
    taken = await change_me(client, access, email="Taken@example.com", current_password=PASSWORD)
    assert taken.status_code == 409

    moved = await change_me(
        client, access, email=" Moved@Example.com", current_password=PASSWORD, full_name="Mo"
    )
    assert moved.status_code == 200, moved.text
    assert (moved.json()["email"], moved.json()["full_name"]) == ("moved@example.com", "Mo")
    assert moved.json()["is_verified"] is False
    # The old address's link died with the change; the new address got its own.
    assert_bad_link(await verify(client, old_link))
    assert_bad_link(await reset(client, old_reset))
    new_mail = (await mails_sent(kit))[-1]
    assert new_mail.to == "moved@example.com"
    assert (await login(client, "mover@example.com")).status_code == 401
    assert (await login(client, "moved@example.com")).status_code == 200
    assert (await verify(client, token_of(new_mail))).status_code == 200
    assert "email_changed" in await events_of(kit, moved.json()["id"])


async def test_an_unchanged_email_keeps_the_account_verified(
    client: httpx.AsyncClient, kit: StarterKit
) -> None:
    tokens = await signed_up(client, "stay@example.com")
    await verify(client, await verify_token_for(client, kit, "stay@example.com"))
    same = await change_me(
        client, tokens["access_token"], email="STAY@example.com", current_password=PASSWORD
    )
    assert same.status_code == 200
    assert same.json()["is_verified"] is True
    assert len(await mails_sent(kit)) == 1


async def test_an_account_deleted_during_its_own_update_is_401_not_500(
    client: httpx.AsyncClient, kit: StarterKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: the flush of PATCH /users/me raised StaleDataError (a 500)."""
    tokens = await signed_up(client, "doomed@example.com")
    verify_password = kit.password_hasher.verify_and_update

    async def verify_while_the_account_is_deleted(
        password: str, hashed: str
    ) -> tuple[bool, str | None]:
        result = await verify_password(password, hashed)
        async with kit.sessionmaker() as other:  # a superuser deletes it at this very moment
            await other.execute(delete(User).where(User.email == "doomed@example.com"))
            await other.commit()
        return result

    monkeypatch.setattr(
        kit.password_hasher, "verify_and_update", verify_while_the_account_is_deleted
    )
    answer = await change_me(
        client, tokens["access_token"], email="saved@example.com", current_password=PASSWORD
    )
    assert answer.status_code == 401
    assert answer.json()["code"] == "auth_error"


async def test_concurrent_updates_of_one_account_never_fail_with_500(
    client: httpx.AsyncClient,
) -> None:
    tokens = await signed_up(client, "busy@example.com")
    answers = await asyncio.gather(
        *(change_me(client, tokens["access_token"], full_name=f"Name {n}") for n in range(8))
    )
    assert {answer.status_code for answer in answers} == {200}
    me = await client.get(f"{API}/users/me", headers=bearer(tokens["access_token"]))
    assert me.json()["full_name"] in {f"Name {n}" for n in range(8)}
