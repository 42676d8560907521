"""Request and response bodies of the social-login routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from starterkit.schemas import InputModel, PlainStr

ExchangeCodeStr = Annotated[PlainStr, Field(min_length=1, max_length=128)]
RedirectURL = Annotated[PlainStr, Field(min_length=1, max_length=2048)]


class ProviderRead(BaseModel):
    """A provider users may sign in with, for a login button."""

    name: str = Field(description="Goes in the paths: `/auth/oauth/{name}/authorize`.")
    display_name: str


class AuthorizationURLRead(BaseModel):
    """Where to send the browser: the provider's sign-in page."""

    authorization_url: str


class LinkRequest(InputModel):
    """Link another provider's identity to the signed-in account."""

    redirect_to: RedirectURL | None = Field(
        default=None,
        description="Where the browser comes back to (`?linked={provider}` or `?error=…`); "
        "one of OAUTH_REDIRECT_URLS, the first by default.",
    )


class ExchangeRequest(InputModel):
    """The `code` a social login sent the browser back with (single use, 60 seconds)."""

    code: ExchangeCodeStr


class OAuthAccountRead(BaseModel):
    """A provider identity linked to the account."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    provider: str
    email: str | None = Field(description="The address the provider gave at the last login.")
    created_at: datetime
    last_login_at: datetime | None
