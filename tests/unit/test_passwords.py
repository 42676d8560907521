from __future__ import annotations

import asyncio
import re

import pytest
from passlib.hash import argon2, bcrypt

from starterkit.auth.passwords import PasswordHasher, check_new_password
from starterkit.exceptions import InvalidPassword

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery staple"


async def test_new_hashes_are_argon2id_with_the_owasp_parameters() -> None:
    hashed = await PasswordHasher().hash(PASSWORD)
    assert re.match(r"^\$argon2id\$v=19\$m=19456,t=2,p=1\$", hashed)
    assert hashed != await PasswordHasher().hash(PASSWORD)  # salted


async def test_verify_accepts_only_the_exact_password() -> None:
    hasher = PasswordHasher()
    hashed = await hasher.hash("  Correct Horse  ")
    assert await hasher.verify_and_update("  Correct Horse  ", hashed) == (True, None)
    for variant in ("Correct Horse", "correct horse  ", "  CORRECT HORSE  "):
        assert await hasher.verify_and_update(variant, hashed) == (False, None)


async def test_legacy_bcrypt_hash_verifies_and_is_upgraded_to_argon2id() -> None:
    legacy = bcrypt.using(rounds=10).hash(PASSWORD)
    ok, new_hash = await PasswordHasher().verify_and_update(PASSWORD, legacy)
    assert ok
    assert new_hash is not None
    assert new_hash.startswith("$argon2id$")


async def test_bcrypt_never_truncates_long_passwords() -> None:
    long_password = "x" * 100
    legacy = bcrypt.using(rounds=10, truncate_error=False).hash(long_password[:72])
    ok, _ = await PasswordHasher().verify_and_update(long_password, legacy)
    assert not ok


async def test_a_lower_time_cost_alone_triggers_an_upgrade() -> None:
    weaker = argon2.using(type="ID", memory_cost=19_456, rounds=1, parallelism=1).hash(PASSWORD)
    hasher = PasswordHasher()
    ok, new_hash = await hasher.verify_and_update(PASSWORD, weaker)
    assert ok
    assert new_hash is not None
    assert ",t=2," in new_hash
    assert await hasher.verify_and_update(PASSWORD, new_hash) == (True, None)


async def test_malformed_stored_hash_is_a_failed_verify() -> None:
    assert await PasswordHasher().verify_and_update(PASSWORD, "not-a-hash") == (False, None)


async def test_hashing_runs_off_the_event_loop() -> None:
    hasher = PasswordHasher(max_concurrent_hashes=1)
    ticks = 0
    hashing = asyncio.gather(*(hasher.hash(PASSWORD) for _ in range(3)), hasher.dummy_verify())
    while not hashing.done():
        ticks += 1
        await asyncio.sleep(0)
    await hashing
    # Three hashes take tens of milliseconds; on the loop they would allow no ticks at all.
    assert ticks > 50


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("a" * 7, "at least 8 characters"),
        ("a" * 257, "at most 256 characters"),
        ("Alice@Example.com", "same as the email"),
        ("Password1234", "too common"),
        ("iloveyou", "too common"),
    ],
)
def test_password_rules(password: str, message: str) -> None:
    with pytest.raises(InvalidPassword, match=message):
        check_new_password(password, email="alice@example.com", min_length=8)


def test_length_counts_characters_not_bytes_and_has_no_composition_rules() -> None:
    check_new_password("пароль密码🔑🔑🔑🔑🔑🔑", email=None, min_length=12)
    check_new_password("correct horse battery staple", email="a@example.com", min_length=12)
    check_new_password("a" * 256, email=None, min_length=12)
