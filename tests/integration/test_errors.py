"""Every error is the JSON envelope, with a request id, and never leaks internals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import httpx
import pytest
from fastapi import Body, FastAPI
from pydantic import BaseModel, Field

from starterkit import Settings, create_app
from starterkit.exceptions import Conflict, InvalidRequest, NotFound, PermissionDenied
from tests.conftest import SettingsFactory, app_client

pytestmark = pytest.mark.anyio


class Signup(BaseModel):
    email: str = Field(max_length=50)
    password: str = Field(min_length=12)


def build_app(settings: Settings) -> FastAPI:
    app = create_app(settings)

    @app.post("/echo")
    async def echo(payload: Annotated[dict[str, str], Body()]) -> dict[str, str]:
        return payload

    @app.post("/signup")
    async def signup(payload: Signup) -> dict[str, str]:
        return {"email": payload.email}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals: password=hunter2 SELECT * FROM users")

    @app.get("/domain/{kind}")
    async def domain(kind: str) -> None:
        errors = {
            "bad": InvalidRequest("Bad thing."),
            "forbidden": PermissionDenied(),
            "missing": NotFound(),
            "conflict": Conflict("Taken."),
        }
        raise errors[kind]

    return app


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The envelope does not depend on the database; SQLite is enough here."""
    return f"sqlite:///{tmp_path / 'errors.db'}"


@pytest.fixture
async def client(make_settings: SettingsFactory) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(max_body_bytes=2048, cors_origins=["https://app.example"])
    async with app_client(build_app(settings)) as http:
        yield http


def assert_envelope(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"]
    assert response.headers["x-content-type-options"] == "nosniff"
    body: dict[str, object] = response.json()
    assert body["code"] == code
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body


async def test_unknown_route_is_a_404_envelope(client: httpx.AsyncClient) -> None:
    assert_envelope(await client.get("/no/such/route"), 404, "not_found")


async def test_wrong_method_is_a_405_envelope_with_allow(client: httpx.AsyncClient) -> None:
    response = await client.delete("/api/v1/health")
    assert_envelope(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET"


async def test_validation_error_lists_fields_without_echoing_input(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/signup", json={"email": "a@example.com", "password": "hunter2"})
    body = assert_envelope(response, 422, "validation_error")
    assert body["errors"] == [
        {
            "loc": ["body", "password"],
            "msg": "String should have at least 12 characters",
            "type": "string_too_short",
        }
    ]
    assert "hunter2" not in response.text


async def test_malformed_json_is_a_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/signup", content=b'{"email": ', headers={"content-type": "application/json"}
    )
    assert_envelope(response, 422, "validation_error")


async def test_lone_surrogates_and_nul_bytes_never_give_a_500(client: httpx.AsyncClient) -> None:
    for raw in (b'{"email": "\\ud800", "password": 1}', b'{"email": "\\u0000\\udfff"}'):
        response = await client.post(
            "/signup", content=raw, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422


async def test_declared_body_over_the_limit_is_a_413(client: httpx.AsyncClient) -> None:
    response = await client.post("/echo", json={"x": "a" * 5000})
    assert_envelope(response, 413, "payload_too_large")


async def test_streamed_body_over_the_limit_is_a_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"x": "'
        for _ in range(10):
            yield b"a" * 500
        yield b'"}'

    response = await client.post(
        "/echo", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert_envelope(response, 413, "payload_too_large")


async def test_body_under_the_limit_passes(client: httpx.AsyncClient) -> None:
    response = await client.post("/echo", json={"x": "a" * 1000})
    assert response.status_code == 200
    assert response.json() == {"x": "a" * 1000}


async def test_unhandled_error_is_a_generic_500(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = await client.get("/boom")
    body = assert_envelope(response, 500, "internal_error")
    assert body == {"detail": "Internal server error.", "code": "internal_error"}
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text
    # The details go to the server log, with the request id to find them.
    assert "secret internals" in caplog.text
    assert response.headers["x-request-id"] in caplog.text
    # The process keeps serving.
    assert (await client.get("/api/v1/health/live")).status_code == 200


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("bad", 400, "bad_request"),
        ("forbidden", 403, "permission_denied"),
        ("missing", 404, "not_found"),
        ("conflict", 409, "conflict"),
    ],
)
async def test_domain_errors_map_to_their_status(
    client: httpx.AsyncClient, kind: str, status: int, code: str
) -> None:
    assert_envelope(await client.get(f"/domain/{kind}"), status, code)


async def test_safe_request_id_is_echoed_and_unsafe_one_replaced(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/api/v1/health/live", headers={"X-Request-ID": "abc-123.4"})
    assert response.headers["x-request-id"] == "abc-123.4"
    forged = await client.get("/api/v1/health/live", headers={"X-Request-ID": "a\tb INFO ok"})
    assert forged.headers["x-request-id"] != "a\tb INFO ok"
    assert len(forged.headers["x-request-id"]) == 32


async def test_every_request_gets_its_own_id(client: httpx.AsyncClient) -> None:
    ids = {(await client.get("/api/v1/health/live")).headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5


async def test_cors_allows_listed_origins_only(client: httpx.AsyncClient) -> None:
    preflight = {"Access-Control-Request-Method": "GET"}
    allowed = await client.options(
        "/api/v1/health", headers={"Origin": "https://app.example", **preflight}
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert allowed.headers["x-request-id"]
    evil = await client.options(
        "/api/v1/health", headers={"Origin": "https://evil.example", **preflight}
    )
    assert evil.headers.get("access-control-allow-origin") != "https://evil.example"
    assert "access-control-allow-credentials" not in evil.headers
