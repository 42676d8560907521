"""Request and response bodies of the second-factor and step-up routes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal, Self

from pydantic import BaseModel, Field

from starterkit.auth.schemas import LoginPassword
from starterkit.schemas import InputModel, PlainStr

if TYPE_CHECKING:
    from starterkit.mfa.factors import PendingMFA

TOTPCode = Annotated[
    PlainStr, Field(min_length=1, max_length=16, description="The 6 digits the app shows.")
]
RecoveryCodeStr = Annotated[
    PlainStr, Field(min_length=1, max_length=64, description="One of the recovery codes.")
]
MFAToken = Annotated[PlainStr, Field(min_length=1, max_length=2048)]


class MFAChallengeRead(BaseModel):
    """The password was right; send a code with this token to ``/auth/login/mfa``."""

    mfa_required: Literal[True] = True
    mfa_token: str
    methods: list[str] = Field(description="What the second step accepts.")
    expires_in: int = Field(description="Seconds until the mfa_token expires.")

    @classmethod
    def of(cls, pending: PendingMFA) -> Self:
        """The answer for a login waiting for its second factor."""
        return cls(
            mfa_token=pending.mfa_token,
            methods=list(pending.methods),
            expires_in=pending.expires_in,
        )


class MFACodeLogin(InputModel):
    """The second step of a login with a code from the authenticator app."""

    mfa_token: MFAToken
    code: TOTPCode


class MFARecoveryLogin(InputModel):
    """The second step of a login with a recovery code."""

    mfa_token: MFAToken
    recovery_code: RecoveryCodeStr


# Either shape, never both: the schema says so too (each refuses unknown fields).
MFALoginRequest = MFACodeLogin | MFARecoveryLogin


class MFAStatusRead(BaseModel):
    """The caller's second factors."""

    totp: bool
    recovery_codes_left: int


class TOTPSetupRead(BaseModel):
    """A pending TOTP factor: scan the QR code (or type the secret), then confirm a code."""

    secret: str = Field(description="Base32, for typing into an app by hand.")
    otpauth_uri: str
    qr_svg: str = Field(description="The QR code of otpauth_uri, an SVG element.")


class TOTPConfirmRequest(InputModel):
    """A code from the app, proving it has the secret."""

    code: TOTPCode


class RecoveryCodesRead(BaseModel):
    """Single-use codes for a login without the app. Shown once: keep them safe."""

    recovery_codes: list[str]


class ReauthenticateWithPassword(InputModel):
    """Re-authentication with the account's password."""

    password: LoginPassword


class ReauthenticateWithCode(InputModel):
    """Re-authentication with a TOTP code."""

    code: TOTPCode


# Either shape, never both (each refuses unknown fields).
ReauthenticateRequest = ReauthenticateWithPassword | ReauthenticateWithCode


class AccessTokenRead(BaseModel):
    """A new access token for the same session."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - a token type, not a secret
    expires_in: int
