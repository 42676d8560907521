"""Request and response bodies of the auth routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from starterkit.auth.passwords import PASSWORD_MAX_LENGTH
from starterkit.db.models import EMAIL_MAX_LENGTH
from starterkit.schemas import InputModel, PlainStr
from starterkit.users.schemas import UserRead

# Login takes the email as typed: a malformed one simply fails like a wrong password.
LoginEmail = Annotated[PlainStr, Field(min_length=1, max_length=EMAIL_MAX_LENGTH + 64)]
LoginPassword = Annotated[PlainStr, Field(min_length=1, max_length=PASSWORD_MAX_LENGTH)]
RefreshTokenStr = Annotated[PlainStr, Field(min_length=1, max_length=2048)]


class LoginRequest(InputModel):
    """JSON login. The OAuth2 form (``username``, ``password``) is accepted too."""

    email: LoginEmail
    password: LoginPassword


class TokenPair(BaseModel):
    """Tokens for a session. Send the access token as ``Authorization: Bearer …``."""

    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - a token type, not a secret
    expires_in: int = Field(description="Seconds until the access token expires.")


class RefreshRequest(InputModel):
    """A refresh token, for ``/auth/refresh`` and ``/auth/logout``."""

    refresh_token: RefreshTokenStr


class SessionRead(BaseModel):
    """One active login of the caller."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    user_agent: str | None
    ip: str | None
    current: bool = Field(default=False, description="The session of the calling token.")


class BrowserSessionRead(BaseModel):
    """A browser session's state after login or refresh; its tokens are in HttpOnly cookies."""

    expires_in: int = Field(description="Seconds until the access cookie expires.")
    csrf_token: str = Field(
        description="Send it as `X-CSRF-Token` with every POST, PUT, PATCH and DELETE. The "
        "`starterkit_csrf` cookie holds it too; it stays the same for the whole session."
    )


class BrowserLoginRead(BrowserSessionRead):
    """A browser login: who signed in, and the session's CSRF token."""

    user: UserRead


class CSRFTokenRead(BaseModel):
    """The CSRF token of the caller's browser session."""

    csrf_token: str
