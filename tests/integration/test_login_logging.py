"""Failed logins are logged for operators without the email that was typed (personal data)."""

from __future__ import annotations

import logging

import httpx
import pytest

from tests.support.auth import login, register

pytestmark = pytest.mark.anyio


async def test_failed_logins_are_logged_without_the_typed_email(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    created = await register(client, "known.person@example.com")
    user_id = created.json()["id"]
    with caplog.at_level(logging.INFO, logger="starterkit.auth"):
        assert (
            await login(client, "Known.Person@example.com", "wrong passphrase")
        ).status_code == 401
        assert (await login(client, "typo.person@example.com")).status_code == 401
    messages = [record.getMessage() for record in caplog.records]
    failures = [message for message in messages if message.startswith("login failed")]
    assert failures == [
        f"login failed for user {user_id} from 127.0.0.1",
        "login failed for an unknown email from 127.0.0.1",
    ]
    assert "person@example.com" not in caplog.text.lower()
