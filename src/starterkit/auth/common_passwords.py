"""Check passwords against a shipped list of common, leaked passwords.

OWASP ASVS 5.0 requirement 6.2.4 asks that a new password be checked against at least the
3,000 most common passwords that satisfy the length policy. ``common-passwords.txt``, shipped
beside this module, holds the most common entries of 8..11 and of 12 or more characters from
a public leaked-password frequency list; its ``#`` header says where it comes from and how it
was filtered.

The list is read on the first check, not at import time, and then kept in memory.
"""

from __future__ import annotations

import functools
from importlib import resources

__all__ = ["is_common_password"]

_PACKAGE = "starterkit.auth"
_RESOURCE = "common-passwords.txt"


@functools.cache
def _load_common_passwords() -> frozenset[str]:
    """Read the shipped common-passwords list once.

    Returns:
        The lower-cased passwords of the list, without its ``#`` comment lines and blank lines.
    """
    text = (resources.files(_PACKAGE) / _RESOURCE).read_text(encoding="utf-8")
    return frozenset(
        line.casefold()
        for line in (raw.strip() for raw in text.splitlines())
        if line and not line.startswith("#")
    )


def is_common_password(password: str) -> bool:
    """Tell whether a password is on the shipped list of common passwords.

    The comparison ignores case: ``"Password1234"`` matches the entry ``password1234``. It is
    an exact match otherwise, so a common password with a character added is not reported.

    Args:
        password: The candidate password, as the user typed it.

    Returns:
        True if the case-folded password is one of the listed common passwords.
    """
    return password.casefold() in _load_common_passwords()
