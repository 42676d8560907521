"""A route's query parameters read into one pydantic model, for routes that every client polls.

FastAPI (0.16x) analyses each ``Query()`` parameter's annotation again on every request: the
items list's four parameters cost about 33 µs a request, as much as the rest of FastAPI's work
for it (see docs/performance.md). :func:`query_model` reads the same parameters with one
validation of a model whose fields were analysed once, answers bad values with the same 422
(``loc`` ``["query", name]``), and documents the same OpenAPI parameters.

Usage::

    class PageQuery(BaseModel):
        limit: int = Field(50, ge=1, le=100)

    page_query, parameters = query_model(PageQuery)

    @router.get("/things", openapi_extra={"parameters": parameters})
    async def things(query: Annotated[PageQuery, Depends(page_query)]) -> ...
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def query_model(
    model: type[M],
) -> tuple[Callable[[Request], Awaitable[M]], list[dict[str, Any]]]:
    """A dependency that reads ``model`` from the query string, and its OpenAPI parameters.

    Each field is an optional query parameter of the same name; a repeated parameter counts
    once (the last, as FastAPI does); parameters the model does not name are ignored.
    """
    names = tuple(model.model_fields)

    async def read_query(request: Request) -> M:
        received = request.query_params
        try:
            return model.model_validate(
                {name: received[name] for name in names if name in received}
            )
        except ValidationError as error:
            raise RequestValidationError(
                [{**detail, "loc": ("query", *detail["loc"])} for detail in error.errors()]
            ) from None

    read_query.__name__ = f"read_{model.__name__}"
    return read_query, _openapi_parameters(model)


def _openapi_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """The ``parameters`` FastAPI would document for the model's fields as ``Query()``s."""
    schema = model.model_json_schema()
    parameters = []
    for name, field in model.model_fields.items():
        property_schema = dict(schema["properties"][name])
        if property_schema.get("default", "") is None:
            del property_schema["default"]  # FastAPI leaves a null default out
        parameter: dict[str, Any] = {"name": name, "in": "query", "required": False}
        if field.description:
            parameter["description"] = field.description
        parameter["schema"] = property_schema
        parameters.append(parameter)
    return parameters
