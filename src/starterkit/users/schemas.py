"""Request and response bodies of the users routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from starterkit.auth.passwords import PASSWORD_MAX_LENGTH
from starterkit.db.models import EMAIL_MAX_LENGTH
from starterkit.exceptions import InvalidRequest
from starterkit.schemas import InputModel, PlainStr


def _email(value: str) -> str:
    from starterkit.users.service import normalize_email  # noqa: PLC0415 - keeps schemas light

    try:
        return normalize_email(value)
    except InvalidRequest as error:
        raise ValueError(error.detail) from None


Email = Annotated[PlainStr, Field(max_length=EMAIL_MAX_LENGTH + 64), AfterValidator(_email)]
"""An email address, validated and normalised (trimmed, lower-cased)."""

Password = Annotated[PlainStr, Field(min_length=1, max_length=PASSWORD_MAX_LENGTH)]
FullName = Annotated[PlainStr, Field(max_length=255)]


class UserCreate(InputModel):
    """Registration. Flags such as ``is_superuser`` cannot be set here."""

    email: Email
    password: Password
    full_name: FullName | None = None


class UserRead(BaseModel):
    """An account as the API shows it (never the password hash)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    full_name: str | None
    is_active: bool
    is_superuser: bool
    is_verified: bool
    created_at: datetime
    updated_at: datetime


class UserUpdateMe(InputModel):
    """What users may change about themselves."""

    full_name: FullName | None = None


class PasswordChange(InputModel):
    """Change the password; the current one confirms it is really the owner."""

    current_password: Password
    new_password: Password


class UserUpdateAdmin(InputModel):
    """What a superuser may change about any account."""

    full_name: FullName | None = None
    is_active: bool | None = None
    is_superuser: bool | None = None


class EventRead(BaseModel):
    """One audit-log event."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    event_type: str
    email: str | None
    ip: str | None
    user_agent: str | None
    created_at: datetime


class EventPage(BaseModel):
    """A page of audit-log events, newest first."""

    items: list[EventRead]
    total: int
    limit: int
    offset: int


class UserPage(BaseModel):
    """A page of users."""

    items: list[UserRead]
    total: int
    limit: int
    offset: int
