"""Building blocks shared by the request and response schemas of every router."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

MAX_DB_INT = 2**63 - 1
NO_NUL_PATTERN = r"^[^\x00]*$"
"""The JSON Schema ``pattern`` (ECMA-262) of a :data:`PlainStr`: no NUL character."""


def _plain_text(value: str) -> str:
    # NUL cannot be stored by PostgreSQL and lone surrogates cannot be encoded at all; both
    # would otherwise surface as a 500 deep in the driver.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


class _NoNulPattern:
    """Declares in the JSON schema the NUL rule that :func:`_plain_text` enforces.

    Without it a client (or a fuzzer) reading the schema would consider strings with NUL
    valid and be surprised by the 422.
    """

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(core_schema)
        json_schema["pattern"] = NO_NUL_PATTERN
        return json_schema


PlainStr = Annotated[str, AfterValidator(_plain_text), _NoNulPattern()]
"""A string that every database and JSON encoder can store: no NUL, no lone surrogates."""


class InputModel(BaseModel):
    """Base of request bodies: unknown fields and values of the wrong JSON type are errors.

    Strict mode: ``0`` or ``"true"`` is not a boolean and ``5`` is not a string. Coercing them
    would accept input the OpenAPI schema declares invalid.
    """

    model_config = ConfigDict(extra="forbid", strict=True)
