"""Helpers for tests that sign up, log in and call the API as someone."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from starterkit import StarterKit
from starterkit.audit import CLI
from starterkit.users.service import create_user

API = "/api/v1"
PASSWORD = "a long enough passphrase"


@dataclass
class FakeClock:
    """A clock tests move by hand; starts at the real current time."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def register(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD, **extra: Any
) -> httpx.Response:
    return await client.post(f"{API}/users", json={"email": email, "password": password, **extra})


async def login(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD, **headers: str
) -> httpx.Response:
    return await client.post(
        f"{API}/auth/login", json={"email": email, "password": password}, headers=headers
    )


async def signed_up(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD
) -> dict[str, Any]:
    """Register and log in; the token pair."""
    created = await register(client, email, password)
    assert created.status_code == 201, created.text
    response = await login(client, email, password)
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


async def refresh(client: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await client.post(f"{API}/auth/refresh", json={"refresh_token": refresh_token})


async def make_superuser(kit: StarterKit, email: str, password: str = PASSWORD) -> None:
    async with kit.sessionmaker() as session:
        await create_user(
            session,
            email=email,
            password=password,
            hasher=kit.password_hasher,
            password_min_length=kit.settings.password_min_length,
            is_superuser=True,
            origin=CLI,
            now=kit.clock(),
        )
        await session.commit()
