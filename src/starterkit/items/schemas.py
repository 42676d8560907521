"""Request and response bodies of the items routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from starterkit.db.models import DESCRIPTION_MAX_LENGTH, TITLE_MAX_LENGTH
from starterkit.schemas import InputModel, PlainStr

Title = Annotated[PlainStr, Field(min_length=1, max_length=TITLE_MAX_LENGTH)]
Description = Annotated[PlainStr, Field(max_length=DESCRIPTION_MAX_LENGTH)]


class ItemCreate(InputModel):
    """A new item; also the body of PUT, where an omitted description becomes null."""

    title: Title
    description: Description | None = None


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


class ItemPatch(InputModel):
    """A partial update: omitted fields stay, an explicit null clears the description."""

    # Optional but not nullable: the schema must not advertise a null (not even as the
    # default) that the API refuses.
    title: Title | SkipJsonSchema[None] = Field(default=None, json_schema_extra=_no_default)
    description: Description | None = None

    @model_validator(mode="after")
    def _title_not_null(self) -> ItemPatch:
        if "title" in self.model_fields_set and self.title is None:
            raise ValueError("title cannot be null; omit it to keep the current title")
        return self


class ItemRead(BaseModel):
    """An item as the API shows it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    description: str | None
    owner_id: int
    created_at: datetime
    updated_at: datetime


class ItemPage(BaseModel):
    """A page of items, newest first.

    Offset pages (``?offset=``) carry ``total`` and ``offset``; keyset pages (``?cursor=``) skip
    the count and leave both null. ``next_cursor`` fetches the page after this one, or is null
    on the last page.
    """

    items: list[ItemRead]
    total: int | None
    limit: int
    offset: int | None
    next_cursor: str | None
