"""Creating accounts: normalised emails, password rules, and no duplicates even under races."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from starterkit import Settings, StarterKit
from starterkit.audit import CLI
from starterkit.exceptions import EmailTaken, InvalidPassword, InvalidRequest
from starterkit.users.service import (
    create_user,
    get_user_by_email,
    normalize_email,
    normalize_lookup_email,
)

pytestmark = pytest.mark.anyio

PASSWORD = "a long enough passphrase"


@pytest.fixture
async def kit(settings: Settings) -> AsyncIterator[StarterKit]:
    runtime = StarterKit(settings)
    yield runtime
    await runtime.aclose()


async def register(kit: StarterKit, email: str, password: str = PASSWORD) -> int:
    async with kit.sessionmaker() as session:
        user = await create_user(
            session,
            email=email,
            password=password,
            hasher=kit.password_hasher,
            password_min_length=kit.settings.password_min_length,
            origin=CLI,
            now=kit.clock(),
        )
        await session.commit()
        return user.id


def test_emails_are_trimmed_and_lower_cased() -> None:
    assert normalize_email("  Alice@Example.COM ") == "alice@example.com"
    with pytest.raises(InvalidRequest, match="not valid"):
        normalize_email("not-an-email")
    with pytest.raises(InvalidRequest, match="longer than"):
        normalize_email("a" * 320 + "@example.com")


def test_an_address_only_looked_up_may_be_at_a_special_use_domain() -> None:
    # Found by the fuzzer: forgot-password refused x@y.test (a valid `format: email`) with a
    # 422; no account can have such an address, so it is simply not found (and answered 202).
    assert normalize_lookup_email(" V4u#A93@7fm4ekge.TEST ") == "v4u#a93@7fm4ekge.test"
    assert normalize_lookup_email("Alice@Example.com") == "alice@example.com"
    with pytest.raises(InvalidRequest, match="special-use"):
        normalize_email("v4u#a93@7fm4ekge.test")
    for invalid in ("not-an-email", "a b@x.test", "@x.test", "a@b@example.com"):
        with pytest.raises(InvalidRequest):
            normalize_lookup_email(invalid)


async def test_created_user_is_stored_normalised_with_an_argon2_hash(kit: StarterKit) -> None:
    await register(kit, "  Bob@Example.com ")
    async with kit.sessionmaker() as session:
        user = await get_user_by_email(session, "BOB@example.com")
    assert user is not None
    assert user.email == "bob@example.com"
    assert user.hashed_password.startswith("$argon2id$")
    assert PASSWORD not in user.hashed_password
    assert (user.is_active, user.is_superuser, user.is_verified) == (True, False, False)


async def test_duplicate_email_in_any_case_is_taken(kit: StarterKit) -> None:
    await register(kit, "carol@example.com")
    with pytest.raises(EmailTaken):
        await register(kit, " CAROL@example.com")


async def test_weak_password_is_refused_before_anything_is_stored(kit: StarterKit) -> None:
    with pytest.raises(InvalidPassword):
        await register(kit, "dave@example.com", password="password1234")
    async with kit.sessionmaker() as session:
        assert await get_user_by_email(session, "dave@example.com") is None


async def test_concurrent_registrations_of_one_email_create_exactly_one(kit: StarterKit) -> None:
    results = await asyncio.gather(
        *(register(kit, "race@example.com") for _ in range(8)), return_exceptions=True
    )
    created = [r for r in results if isinstance(r, int)]
    assert len(created) == 1, results
    assert all(isinstance(r, EmailTaken) for r in results if not isinstance(r, int))
