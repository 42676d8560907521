"""Password hashing (argon2id via libpass) and the rules a new password must meet.

Hashing is CPU-bound and deliberately slow, so it runs in a worker thread, and at most
``max_concurrent_hashes`` run at once: a burst of logins cannot take every core from the
requests that need none.
"""

from __future__ import annotations

import os
from typing import Any

import anyio
import anyio.to_thread
from passlib.context import CryptContext

from starterkit.auth.common_passwords import is_common_password
from starterkit.exceptions import InvalidPassword

PASSWORD_MAX_LENGTH = 256

# OWASP Password Storage Cheat Sheet: argon2id, m=19 MiB, t=2, p=1. min_rounds makes a change
# of time cost alone count as "needs update" (libpass only compares memory and parallelism).
ARGON2_OPTIONS: dict[str, Any] = {
    "argon2__type": "ID",
    "argon2__memory_cost": 19_456,
    "argon2__rounds": 2,
    "argon2__min_rounds": 2,
    "argon2__parallelism": 1,
}


def _default_concurrency() -> int:
    return max(1, (os.cpu_count() or 2) - 1)


class PasswordHasher:
    """Hashes and verifies passwords off the event loop.

    New hashes are argon2id; bcrypt hashes (from older systems) still verify and are reported
    as needing an upgrade. bcrypt refuses input over 72 bytes instead of truncating it.
    """

    def __init__(self, *, max_concurrent_hashes: int | None = None, **options: Any) -> None:
        self._context = CryptContext(
            schemes=["argon2", "bcrypt"],
            deprecated=["bcrypt"],
            bcrypt__truncate_error=True,
            **(ARGON2_OPTIONS | options),
        )
        self._slots = max_concurrent_hashes or _default_concurrency()
        self._limiter: anyio.CapacityLimiter | None = None

    def _capacity(self) -> anyio.CapacityLimiter:
        # Created on first use, inside the running event loop.
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self._slots)
        return self._limiter

    async def hash(self, password: str) -> str:
        """Hash ``password`` with the current default scheme and parameters."""
        result: str = await anyio.to_thread.run_sync(
            self._context.hash, password, limiter=self._capacity()
        )
        return result

    async def verify_and_update(self, password: str, hashed: str) -> tuple[bool, str | None]:
        """Check ``password``; also return a new hash when the stored one is outdated."""
        try:
            ok, new_hash = await anyio.to_thread.run_sync(
                self._context.verify_and_update, password, hashed, limiter=self._capacity()
            )
        except ValueError:  # malformed stored hash, or bcrypt input over 72 bytes
            return False, None
        return bool(ok), new_hash

    async def dummy_verify(self) -> None:
        """Spend the time of one verify, so unknown accounts answer as slowly as known ones."""
        await anyio.to_thread.run_sync(self._context.dummy_verify, limiter=self._capacity())


def check_new_password(
    password: str, *, email: str | None, min_length: int, field: str = "password"
) -> None:
    """Apply the password rules: length in characters, not the email, not a common password.

    There are deliberately no composition rules (NIST SP 800-63B, OWASP ASVS 6.2.5).

    Raises:
        InvalidPassword: naming the rule that was broken (and ``field``, the input it came in).
    """
    problem = None
    length = len(password)
    if length < min_length:
        problem = f"The password must be at least {min_length} characters long."
    elif length > PASSWORD_MAX_LENGTH:
        problem = f"The password must be at most {PASSWORD_MAX_LENGTH} characters long."
    elif email is not None and password.strip().casefold() == email.strip().casefold():
        problem = "The password must not be the same as the email address."
    elif is_common_password(password):
        problem = "The password is too common; choose a less guessable one."
    if problem is not None:
        raise InvalidPassword(problem, field=field)
