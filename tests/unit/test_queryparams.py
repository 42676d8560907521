"""query_model: the same parameters, answers and documentation as FastAPI's Query()."""

from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Query
from pydantic import BaseModel, Field

from starterkit.errors import install_error_handlers
from starterkit.queryparams import query_model

pytestmark = pytest.mark.anyio


class Search(BaseModel):
    limit: int = Field(50, ge=1, le=100)
    after: int | None = Field(None, ge=0, description="Where the last page ended.")
    text: str | None = Field(None, max_length=8)


read_search, search_parameters = query_model(Search)


def app_with_both() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/plain")
    async def plain(
        limit: Annotated[int, Query(ge=1, le=100)] = 50,
        after: Annotated[int | None, Query(ge=0, description="Where the last page ended.")] = None,
        text: Annotated[str | None, Query(max_length=8)] = None,
    ) -> dict[str, Any]:
        return {"limit": limit, "after": after, "text": text}

    @app.get("/model", openapi_extra={"parameters": search_parameters})
    async def model(search: Annotated[Search, Depends(read_search)]) -> dict[str, Any]:
        return search.model_dump()

    return app


def test_the_parameters_are_documented_as_query_parameters_would_be() -> None:
    paths = app_with_both().openapi()["paths"]
    assert paths["/model"]["get"]["parameters"] == paths["/plain"]["get"]["parameters"]


@pytest.mark.parametrize(
    "query",
    [
        "",
        "limit=7",
        "limit=7&limit=9",  # repeated: the last counts
        "after=3&text=abc&unknown=1",
        "limit=0",
        "limit=x",
        "after=-1&text=far-too-long",
        "limit=1e3",
    ],
)
async def test_values_and_errors_are_those_of_query_parameters(query: str) -> None:
    transport = httpx.ASGITransport(app=app_with_both())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        plain = await client.get(f"/plain?{query}")
        model = await client.get(f"/model?{query}")
    assert (model.status_code, model.json()) == (plain.status_code, plain.json())
    if plain.status_code == 422:
        assert all(error["loc"][0] == "query" for error in model.json()["errors"])
