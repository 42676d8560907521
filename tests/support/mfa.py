"""Helpers for tests of the second factor: enable TOTP, compute codes, the two login steps."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from starterkit.mfa.codes import totp_code
from tests.support.auth import API, PASSWORD, FakeClock, bearer, login


@dataclass
class TOTPAccount:
    """An account with TOTP on: its secret, recovery codes and a clock to make codes at."""

    email: str
    secret: str
    recovery_codes: list[str]
    clock: FakeClock

    def code(self) -> str:
        """The app's code now; the clock then moves on a step, so the next code is new."""
        code = totp_code(self.secret, self.clock.now)
        self.clock.advance(seconds=30)
        return code


async def enable_totp(
    client: httpx.AsyncClient, access_token: str, email: str, clock: FakeClock
) -> TOTPAccount:
    """Set up and confirm TOTP for a freshly signed-in account."""
    headers = bearer(access_token)
    setup = await client.post(f"{API}/auth/mfa/totp/setup", headers=headers)
    assert setup.status_code == 200, setup.text
    secret = setup.json()["secret"]
    confirm = await client.post(
        f"{API}/auth/mfa/totp/confirm",
        json={"code": totp_code(secret, clock.now)},
        headers=headers,
    )
    assert confirm.status_code == 200, confirm.text
    clock.advance(seconds=30)
    return TOTPAccount(email, secret, confirm.json()["recovery_codes"], clock)


async def mfa_token(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> str:
    """The first step of a login of an account with a second factor."""
    response = await login(client, email, password)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["mfa_required"] is True, body
    token: str = body["mfa_token"]
    return token


async def second_step(client: httpx.AsyncClient, token: str, **secret: str) -> httpx.Response:
    return await client.post(f"{API}/auth/login/mfa", json={"mfa_token": token, **secret})
