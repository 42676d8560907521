"""TOTP (RFC 6238) and recovery codes, without storage: make, show and check them.

TOTP is SHA-1, 6 digits, 30-second steps, accepted one step early or late for clock drift.
:func:`matching_step` returns the step a code belongs to, so the caller can refuse any step
not later than the last one accepted: a code works once, even within its window.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import secrets
from datetime import datetime

import pyotp
import segno

DIGITS = 6
STEP_SECONDS = 30
DRIFT_STEPS = 1
RECOVERY_CODE_COUNT = 10
# 10 characters of the 32-letter alphabet: 50 random bits each, shown as xxxxx-xxxxx.
_RECOVERY_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # no 0/o, 1/l confusion
_RECOVERY_LENGTH = 10


def new_totp_secret() -> str:
    """A random TOTP secret: 160 bits in base32, as authenticator apps expect."""
    return pyotp.random_base32(length=32)


def provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    """The ``otpauth://totp/...`` URI an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=account, issuer_name=issuer
    )


def qr_svg(uri: str) -> str:
    """The QR code of ``uri`` as an SVG element, black on white, for a page or an ``<img>``."""
    buffer = io.BytesIO()
    segno.make(uri, error="m").save(
        buffer, kind="svg", scale=4, border=4, light="#fff", title="TOTP setup QR code",
        xmldecl=False, nl=False,
    )  # fmt: skip
    return buffer.getvalue().decode()


def totp_code(secret: str, at: datetime) -> str:
    """The code an authenticator app shows at ``at`` (what tests and the docs compute)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).at(at)


def matching_step(secret: str, code: str, *, now: datetime, after_step: int) -> int | None:
    """The time step ``code`` is valid for, within the drift window and after ``after_step``.

    Returns None for a wrong code, a code of a step already used, and anything that is not
    six digits. Every candidate is compared in constant time.
    """
    code = code.strip().replace(" ", "")
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    current = totp.timecode(now)
    found = None
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), code) and step > after_step:
            found = step
    return found


def new_recovery_codes() -> list[str]:
    """:data:`RECOVERY_CODE_COUNT` new codes, shown to the user once."""
    return [_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]


def _recovery_code() -> str:
    text = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_LENGTH))
    return f"{text[:5]}-{text[5:]}"


def normalize_recovery_code(code: str) -> str:
    """A recovery code as typed (any case, with or without the dash or spaces), canonical."""
    return "".join(code.split()).replace("-", "").lower()


def keyed_digest(text: str, key: bytes) -> str:
    """HMAC-SHA256 of ``text`` in hex: what is stored of a random secret (a recovery code, an
    mfa_token); too random to guess, so no slow hash is needed."""
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def hash_recovery_code(code: str, key: bytes) -> str:
    """The stored form of a recovery code, however it was typed."""
    return keyed_digest(normalize_recovery_code(code), key)
