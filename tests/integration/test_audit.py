"""The audit log and hooks: what is recorded, who may read it, and hooks that fail."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from starlette.requests import Request

from starterkit import StarterKit, User, create_app
from starterkit.db.models import AuthEvent
from tests.conftest import app_client
from tests.support.auth import (
    API,
    PASSWORD,
    FakeClock,
    bearer,
    login,
    make_superuser,
    refresh,
    register,
    signed_up,
)

pytestmark = pytest.mark.anyio


async def events_of(client: httpx.AsyncClient, admin: dict[str, str], user_id: int) -> list[str]:
    response = await client.get(f"{API}/users/{user_id}/events", headers=admin)
    assert response.status_code == 200, response.text
    return [event["event_type"] for event in response.json()["items"]]


@pytest.fixture
async def admin(client: httpx.AsyncClient, kit: StarterKit) -> dict[str, str]:
    await make_superuser(kit, "root@example.com")
    return bearer((await login(client, "root@example.com")).json()["access_token"])


async def test_account_events_are_recorded_newest_first(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    tokens = await signed_up(client, "audited@example.com", PASSWORD)
    me = (await client.get(f"{API}/users/me", headers=bearer(tokens["access_token"]))).json()
    await login(client, "audited@example.com", "a wrong passphrase!")
    second = (await login(client, "audited@example.com", **{"User-Agent": "phone/2"})).json()
    rotated = (await refresh(client, second["refresh_token"])).json()
    await refresh(client, second["refresh_token"])  # replay
    await client.post(f"{API}/auth/logout", json={"refresh_token": tokens["refresh_token"]})
    third = (await login(client, "audited@example.com")).json()
    await client.post(
        f"{API}/users/me/password",
        json={"current_password": PASSWORD, "new_password": "a fresh passphrase here"},
        headers=bearer(third["access_token"]),
    )
    await client.patch(f"{API}/users/{me['id']}", json={"is_active": False}, headers=admin)
    assert rotated["refresh_token"]

    assert await events_of(client, admin, me["id"]) == [
        "user_deactivated",
        "password_changed",
        "login_succeeded",
        "logout",
        "refresh_token_reused",
        "login_succeeded",
        "login_failed",
        "login_succeeded",
        "user_registered",
    ]
    page = (
        await client.get(f"{API}/users/{me['id']}/events", headers=admin, params={"limit": 2})
    ).json()
    assert page["total"] == 9
    assert len(page["items"]) == 2
    first = page["items"][0]
    assert set(first) == {"id", "event_type", "email", "ip", "user_agent", "created_at"}
    assert first["ip"] == "127.0.0.1"


async def test_failed_logins_of_unknown_emails_are_recorded_without_a_user(
    client: httpx.AsyncClient, kit: StarterKit
) -> None:
    await login(client, "  Nobody@Example.com", "whatever passphrase")
    async with kit.sessionmaker() as session:
        event = (await session.execute(select(AuthEvent))).scalar_one()
    assert (event.event_type, event.user_id, event.email) == (
        "login_failed",
        None,
        "nobody@example.com",
    )


async def test_events_are_for_superusers_only(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    tokens = await signed_up(client, "plain@example.com")
    me = (await client.get(f"{API}/users/me", headers=bearer(tokens["access_token"]))).json()
    own = await client.get(f"{API}/users/{me['id']}/events", headers=bearer(tokens["access_token"]))
    assert own.status_code == 403
    assert (await client.get(f"{API}/users/{me['id']}/events")).status_code == 401
    assert (await client.get(f"{API}/users/999999/events", headers=admin)).status_code == 404


async def test_events_outlive_a_deleted_account(
    client: httpx.AsyncClient, kit: StarterKit, admin: dict[str, str]
) -> None:
    created = (await register(client, "gone@example.com")).json()
    await client.delete(f"{API}/users/{created['id']}", headers=admin)
    async with kit.sessionmaker() as session:
        orphans = await session.scalar(
            select(func.count()).select_from(AuthEvent).where(AuthEvent.user_id.is_(None))
        )
    assert orphans == 1


async def test_old_events_are_purged(settings: Any) -> None:
    clock = FakeClock()
    kit = StarterKit(settings, clock=clock)
    async with app_client(create_app(kit=kit)) as client:
        await register(client, "old@example.com")
        clock.advance(days=89)
        assert await kit.purge_old_events() == 0
        clock.advance(days=2)
        assert await kit.purge_old_events() == 1


async def test_hooks_run_after_commit_and_a_failing_hook_breaks_nothing(
    client: httpx.AsyncClient, kit: StarterKit, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[tuple[str, Any]] = []

    async def on_register(user: User, request: Request | None) -> None:
        seen.append(("register", user.email))
        raise RuntimeError("the welcome mail server is down")

    async def on_login(user: User, request: Request | None) -> None:
        assert request is not None
        seen.append(("login", request.headers.get("user-agent")))

    async def on_password(user: User, request: Request | None) -> None:
        seen.append(("password", user.email))

    async def on_reuse(user_id: int, session_id: int, request: Request | None) -> None:
        seen.append(("reuse", session_id))

    kit.hooks.on_after_register = on_register
    kit.hooks.on_after_login = on_login
    kit.hooks.on_after_password_change = on_password
    kit.hooks.on_refresh_token_reuse = on_reuse

    assert (await register(client, "hooked@example.com")).status_code == 201
    assert "hook on_after_register failed" in caplog.text
    tokens = (await login(client, "hooked@example.com", **{"User-Agent": "hook-test"})).json()
    await refresh(client, tokens["refresh_token"])
    assert (await refresh(client, tokens["refresh_token"])).status_code == 401
    fresh = (await login(client, "hooked@example.com")).json()
    changed = await client.post(
        f"{API}/users/me/password",
        json={"current_password": PASSWORD, "new_password": "a fresh passphrase here"},
        headers=bearer(fresh["access_token"]),
    )
    assert changed.status_code == 204
    kinds = [kind for kind, _ in seen]
    assert kinds == ["register", "login", "reuse", "login", "password"]
    assert seen[1] == ("login", "hook-test")
