"""Every error is the JSON envelope, with a request id, and never leaks internals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Body, FastAPI, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, Router

from starterkit import Settings, StarterKit, create_app
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

    @app.post("/archive")
    async def archive() -> None:
        # An endpoint that refuses a method itself, with an Allow of its own choosing.
        raise HTTPException(405, headers={"Allow": "GET"})

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


JSON = {"content-type": "application/json"}
FORM = "application/x-www-form-urlencoded"


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


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("OPTIONS", "/api/v1/items", "GET, POST"),
        ("DELETE", "/api/v1/items", "GET, POST"),
        ("POST", "/api/v1/items/3", "GET, PUT, PATCH, DELETE"),
        ("OPTIONS", "/api/v1/users/me", "GET, PATCH"),
        ("PUT", "/api/v1/users/7", "GET, PATCH, DELETE"),
        ("OPTIONS", "/api/v1/users", "GET, POST"),
        # Starlette's own routes serve HEAD with GET; FastAPI's do not.
        ("POST", "/docs", "GET, HEAD"),
    ],
)
async def test_allow_of_a_405_lists_every_method_of_the_resource(
    client: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    # Found by the fuzzer: OPTIONS /api/v1/items answered `Allow: POST`, the methods of the
    # first route whose path matched, though GET /api/v1/items is served too.
    response = await client.request(method, path)
    assert_envelope(response, 405, "method_not_allowed")
    assert response.headers["allow"] == allow


async def test_a_405_an_endpoint_raises_keeps_its_own_allow(client: httpx.AsyncClient) -> None:
    response = await client.post("/archive")
    assert_envelope(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET"


async def test_allow_of_a_405_counts_included_and_mounted_routers(
    make_settings: SettingsFactory,
) -> None:
    kit = StarterKit(make_settings())
    app = FastAPI(lifespan=kit.lifespan)
    kit.install(app)

    async def plain(_request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    # Routers included into routers, and a Starlette router mounted under a prefix.
    inner, outer = APIRouter(), APIRouter()
    inner.add_api_route("/reports", plain, methods=["GET"])
    outer.include_router(inner, prefix="/v2")
    outer.add_api_route("/v2/reports", plain, methods=["PUT"])
    app.include_router(outer, prefix="/shop")
    app.mount(
        "/legacy",
        Router(
            [Route("/things", plain, methods=["GET"]), Route("/things", plain, methods=["POST"])]
        ),
    )
    async with app_client(app) as client:
        included = await client.delete("/shop/v2/reports")
        mounted = await client.delete("/legacy/things")
    assert_envelope(included, 405, "method_not_allowed")
    assert included.headers["allow"] == "GET, PUT"
    assert_envelope(mounted, 405, "method_not_allowed")
    assert mounted.headers["allow"] == "GET, HEAD, POST"


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


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/signup"),
        ("POST", "/api/v1/users"),
        ("PATCH", "/api/v1/users/me"),
        ("POST", "/api/v1/auth/refresh"),
        ("POST", "/api/v1/auth/logout"),
        ("POST", "/api/v1/auth/login"),
    ],
)
async def test_a_json_body_that_is_not_utf8_is_a_422(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    # Found by the fuzzer: b"\xff" as application/json answered FastAPI's undocumented 400
    # "There was an error parsing the body".
    response = await client.request(
        method, path, content=b'{"refresh_token": "\xff"}', headers=JSON
    )
    assert_envelope(response, 422, "validation_error")
    errors: list[dict[str, Any]] = response.json()["errors"]
    [error] = errors
    assert error["loc"] == ["body"]
    assert error["type"] == "json_invalid"
    # The login route parses its body itself, with pydantic's wording.
    assert error["msg"].startswith("Invalid JSON: ")


async def test_json_nested_too_deeply_is_a_422(make_settings: SettingsFactory) -> None:
    # Deeper than Python's recursion limit, which FastAPI also answered with a bare 400. Deep
    # enough for 3.13 too, whose decoder recurses further before it gives up.
    deep = b"[" * 50_000 + b"]" * 50_000
    async with app_client(build_app(make_settings())) as client:
        response = await client.post("/api/v1/users", content=deep, headers=JSON)
    body = assert_envelope(response, 422, "validation_error")
    assert body["errors"] == [
        {
            "loc": ["body"],
            "msg": "Invalid JSON: the body is nested too deeply",
            "type": "json_invalid",
        }
    ]


@pytest.mark.parametrize(
    ("path", "content", "content_type", "loc"),
    [
        ("/api/v1/users", b'{"email": "a@example.com", "pass', "application/json", "body"),
        ("/api/v1/auth/refresh", b"", "application/json", "body"),
        ("/api/v1/auth/login", b'{"email": ', "application/json", "body"),
        ("/api/v1/auth/login", b"username=\xff&password=\xfe", FORM, "body.username"),
        ("/api/v1/auth/login", b"username=a%40example.com", FORM, "body.password"),
        ("/api/v1/auth/login", b"%%%", FORM, "body.username"),
    ],
)
async def test_other_malformed_bodies_stay_422(
    client: httpx.AsyncClient, path: str, content: bytes, content_type: str, loc: str
) -> None:
    response = await client.post(path, content=content, headers={"content-type": content_type})
    assert_envelope(response, 422, "validation_error")
    errors: list[dict[str, Any]] = response.json()["errors"]
    locs = [".".join(map(str, error["loc"])) for error in errors]
    assert any(found.startswith(loc) for found in locs), locs


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


async def test_headers_over_the_limit_are_a_431_before_the_app_runs(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(max_header_bytes=8192)
    async with app_client(create_app(settings)) as client:
        big = {"x-filler": "a" * 8192}
        response = await client.get("/api/v1/health/live", headers=big)
        assert_envelope(response, 431, "headers_too_large")
        assert response.headers["connection"] == "close"
        # Many small headers count together.
        many = {f"x-filler-{n}": "a" * 500 for n in range(20)}
        assert_envelope(
            await client.get("/api/v1/health/live", headers=many), 431, "headers_too_large"
        )
        # Refused before any route runs, a login included.
        login = await client.post(
            "/api/v1/auth/login", json={"email": "a@example.com", "password": "x" * 12}, headers=big
        )
        assert_envelope(login, 431, "headers_too_large")
        usual = await client.get("/api/v1/health/live", headers={"x-filler": "a" * 4000})
        assert usual.status_code == 200


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


async def test_every_response_carries_the_security_headers(client: httpx.AsyncClient) -> None:
    for path in ("/api/v1/health/live", "/nothing-here", "/docs"):
        response = await client.get(path)
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["cross-origin-opener-policy"] == "same-origin"
        assert "strict-transport-security" not in response.headers  # HSTS_SECONDS is 0
    # JSON (answers and errors alike) may load nothing and be framed by nobody.
    for path in ("/api/v1/health/live", "/nothing-here"):
        csp = (await client.get(path)).headers["content-security-policy"]
        assert csp == "default-src 'none'; frame-ancestors 'none'"
    # The docs pages have a policy of their own: their own files, and nothing else.
    docs = (await client.get("/docs")).headers["content-security-policy"]
    assert "script-src 'self' 'sha256-" in docs
    assert "http" not in docs


async def test_hsts_is_sent_when_configured(make_settings: SettingsFactory) -> None:
    async with app_client(create_app(make_settings(hsts_seconds=31536000))) as client:
        response = await client.get("/api/v1/health/live")
    assert response.headers["strict-transport-security"] == "max-age=31536000"


async def test_database_errors_never_carry_the_values_of_a_statement(
    kit: StarterKit, caplog: pytest.LogCaptureFixture
) -> None:
    # Their log records would otherwise hold typed emails and password hashes.
    try:
        for engine in (kit.engine, kit.read_engine):
            async with engine.connect() as connection:
                with pytest.raises(DBAPIError) as caught:
                    await connection.execute(
                        text("SELECT * FROM no_such_table WHERE email = :email"),
                        {"email": "secret-person@example.com"},
                    )
            assert "secret-person" not in str(caught.value)
            assert "no_such_table" in str(caught.value)
    finally:
        await kit.aclose()  # no lifespan ran to close the connections
