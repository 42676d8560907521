"""Request and response bodies of the users routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

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


Email = Annotated[
    PlainStr,
    # The schema says what the validator accepts, so clients (and the fuzzer) know it.
    Field(max_length=EMAIL_MAX_LENGTH, json_schema_extra={"format": "email"}),
    AfterValidator(_email),
]
"""An email address, validated and normalised (trimmed, lower-cased)."""


def _lookup_email(value: str) -> str:
    from starterkit.users.service import normalize_lookup_email  # noqa: PLC0415

    try:
        return normalize_lookup_email(value)
    except InvalidRequest as error:
        raise ValueError(error.detail) from None


LookupEmail = Annotated[
    PlainStr,
    Field(max_length=EMAIL_MAX_LENGTH, json_schema_extra={"format": "email"}),
    AfterValidator(_lookup_email),
]
"""An address that is only looked up: like :data:`Email`, special-use domains pass too."""

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
    has_password: bool = Field(
        description="False for an account made by a social login, until a password is set "
        "through forgot-password."
    )
    linked_providers: list[str] = Field(
        description="The social-login providers linked to the account (`/auth/oauth/accounts`)."
    )
    created_at: datetime
    updated_at: datetime


class UserUpdateMe(InputModel):
    """What users may change about themselves; a new email needs the current password."""

    full_name: FullName | None = None
    # Omitted means "unchanged"; the schema shows no null, and an explicit null is refused.
    email: Email | SkipJsonSchema[None] = Field(
        default=None,
        description="A new email address. Needs `current_password` (400 without it); the "
        "account becomes unverified and a verification link is mailed to the new address.",
    )
    current_password: Password | SkipJsonSchema[None] = Field(
        default=None, description="Your password, required when changing `email`."
    )

    @model_validator(mode="after")
    def _email_is_not_null(self) -> Self:
        if "email" in self.model_fields_set and self.email is None:
            raise ValueError("email cannot be null")
        return self


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
