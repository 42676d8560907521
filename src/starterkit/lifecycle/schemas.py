"""Request and response bodies of the account recovery and verification routes."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from starterkit.auth.schemas import LoginPassword
from starterkit.schemas import InputModel, PlainStr
from starterkit.users.schemas import LookupEmail

# Reset and verification tokens are JWTs of a few hundred characters.
AccountTokenStr = Annotated[PlainStr, Field(min_length=1, max_length=2048)]


class EmailRequest(InputModel):
    """An email address, for ``/auth/forgot-password`` and ``/auth/request-verify``."""

    email: LookupEmail


class ResetPasswordRequest(InputModel):
    """The token from a password-reset mail, and the new password."""

    token: AccountTokenStr
    new_password: LoginPassword


class VerifyRequest(InputModel):
    """The token from a verification mail."""

    token: AccountTokenStr


class Accepted(BaseModel):
    """The request was taken; what follows happens in the background."""

    detail: str
