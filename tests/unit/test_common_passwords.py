"""Tests for the shipped common-passwords list and its checker."""

from __future__ import annotations

import secrets
from importlib import resources

from starterkit.auth.common_passwords import _load_common_passwords, is_common_password


def _shipped_lines() -> list[str]:
    text = (resources.files("starterkit.auth") / "common-passwords.txt").read_text(encoding="utf-8")
    return text.splitlines()


def _shipped_entries() -> list[str]:
    return [line for line in _shipped_lines() if line and not line.startswith("#")]


def test_long_common_password_is_detected() -> None:
    assert is_common_password("password1234")
    assert is_common_password("qwerty123456")


def test_detection_ignores_case() -> None:
    assert is_common_password("PASSWORD1234")
    assert is_common_password("Password1234")
    assert is_common_password("QwErTy123456")


def test_common_password_of_eight_to_eleven_characters_is_detected() -> None:
    assert is_common_password("password")
    assert is_common_password("Baseball")


def test_random_token_is_not_common() -> None:
    token = secrets.token_urlsafe(15)
    assert len(token) == 20
    assert not is_common_password(token)


def test_match_is_exact() -> None:
    assert not is_common_password("password1234 ")
    assert not is_common_password("xpassword1234")


def test_shipped_list_meets_the_policy() -> None:
    entries = _shipped_entries()
    assert len(entries) == len(set(entries)), "entries must be unique"
    assert all(8 <= len(entry) <= 256 for entry in entries)
    assert all(entry == entry.lower() == entry.casefold() for entry in entries)
    assert sum(len(entry) >= 12 for entry in entries) >= 3000
    assert sum(8 <= len(entry) <= 11 for entry in entries) >= 3000
    # Most common first.
    assert entries[0] == "password"
    assert entries.index("password") < entries.index("password1234")


def test_every_shipped_entry_is_detected() -> None:
    entries = _shipped_entries()
    assert _load_common_passwords() == frozenset(entries)
    assert all(is_common_password(entry.upper()) for entry in entries)


def test_comment_lines_are_not_passwords() -> None:
    lines = _shipped_lines()
    comments = [line for line in lines if line.startswith("#")]
    assert lines[0].startswith("#")
    assert any("2026-11-26" in line for line in comments)
    loaded = _load_common_passwords()
    for comment in comments:
        assert comment not in loaded
        assert comment.casefold() not in loaded
        assert not is_common_password(comment)
    assert "" not in loaded
    assert not any(entry.startswith("#") for entry in loaded)


def test_list_is_loaded_once_on_first_use() -> None:
    _load_common_passwords.cache_clear()
    assert _load_common_passwords.cache_info().currsize == 0
    is_common_password("password1234")
    is_common_password("not-a-common-password-at-all")
    info = _load_common_passwords.cache_info()
    assert info.currsize == 1
    assert info.misses == 1
    assert info.hits == 1
