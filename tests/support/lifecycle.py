"""Helpers for tests of the account lifecycle: mailed links, reset, verify, audit events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import select

from starterkit import Settings, StarterKit, create_app
from starterkit.db.models import AuthEvent
from starterkit.mail import Mail
from tests.conftest import app_client
from tests.support.auth import API, FakeClock

NEW_PASSWORD = "a brand new passphrase"


async def mails_sent(kit: StarterKit) -> list[Mail]:
    """The console outbox, once every background job has finished."""
    await kit.background.wait()
    return list(kit.mailer.outbox)


def token_of(mail: Mail) -> str:
    assert mail.link is not None
    assert mail.link in mail.text
    [token] = parse_qs(urlsplit(mail.link).query)["token"]
    return token


async def forgot(client: httpx.AsyncClient, email: str) -> httpx.Response:
    return await client.post(f"{API}/auth/forgot-password", json={"email": email})


async def reset(
    client: httpx.AsyncClient, token: str, new_password: str = NEW_PASSWORD
) -> httpx.Response:
    return await client.post(
        f"{API}/auth/reset-password", json={"token": token, "new_password": new_password}
    )


async def request_verify(client: httpx.AsyncClient, email: str) -> httpx.Response:
    return await client.post(f"{API}/auth/request-verify", json={"email": email})


async def verify(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post(f"{API}/auth/verify", json={"token": token})


async def reset_token_for(client: httpx.AsyncClient, kit: StarterKit, email: str) -> str:
    assert (await forgot(client, email)).status_code == 202
    return token_of((await mails_sent(kit))[-1])


async def verify_token_for(client: httpx.AsyncClient, kit: StarterKit, email: str) -> str:
    assert (await request_verify(client, email)).status_code == 202
    return token_of((await mails_sent(kit))[-1])


async def events_of(kit: StarterKit, user_id: int) -> list[str]:
    async with kit.sessionmaker() as session:
        found = await session.scalars(
            select(AuthEvent.event_type).where(AuthEvent.user_id == user_id).order_by(AuthEvent.id)
        )
        return list(found)


def assert_bad_link(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.json() == {
        "detail": "The link is invalid, has expired or was already used.",
        "code": "bad_request",
    }


@asynccontextmanager
async def clocked_service(
    settings: Settings,
) -> AsyncIterator[tuple[httpx.AsyncClient, StarterKit, FakeClock]]:
    """The service on ``settings`` with a clock the test moves."""
    clock = FakeClock()
    kit = StarterKit(settings, clock=clock)
    async with app_client(create_app(kit=kit)) as client:
        yield client, kit, clock
