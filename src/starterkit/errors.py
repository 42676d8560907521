"""The JSON error envelope ``{"detail", "code", "errors"?}`` and the handlers that produce it.

Every error a starterkit app answers goes through here: HTTP exceptions (unknown route, 405
with an ``Allow`` that covers every route of the path), validation errors (422, also for JSON
bodies FastAPI cannot decode), domain errors from services, database outages (503) and, via
the request-context middleware, unhandled exceptions (500).
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterable, Iterator, Mapping, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Host, Match, Mount

from starterkit import exceptions as exc

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import Scope

logger = logging.getLogger("starterkit.errors")


class ErrorCode(StrEnum):
    """Machine-readable error codes; stable across releases."""

    BAD_REQUEST = "bad_request"
    AUTH_ERROR = "auth_error"
    PERMISSION_DENIED = "permission_denied"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    CONFLICT = "conflict"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    HEADERS_TOO_LARGE = "headers_too_large"
    MFA_REQUIRED = "mfa_required"
    REAUTHENTICATION_REQUIRED = "reauthentication_required"
    CSRF_FAILED = "csrf_failed"
    VALIDATION_ERROR = "validation_error"
    RATE_LIMITED = "rate_limited"
    INTERNAL_ERROR = "internal_error"
    SERVICE_UNAVAILABLE = "service_unavailable"


STATUS_CODES: dict[int, ErrorCode] = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.AUTH_ERROR,
    403: ErrorCode.PERMISSION_DENIED,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    431: ErrorCode.HEADERS_TOO_LARGE,
    422: ErrorCode.VALIDATION_ERROR,
    429: ErrorCode.RATE_LIMITED,
    500: ErrorCode.INTERNAL_ERROR,
    503: ErrorCode.SERVICE_UNAVAILABLE,
}

_DOMAIN_STATUS: tuple[tuple[type[exc.StarterKitError], int], ...] = (
    (exc.AuthenticationFailed, 401),
    (exc.PermissionDenied, 403),
    (exc.NotFound, 404),
    (exc.Conflict, 409),
    (exc.InvalidRequest, 400),
)

INTERNAL_ERROR_DETAIL = "Internal server error."
UNAVAILABLE_DETAIL = "The service is temporarily unavailable; try again shortly."
BEARER_CHALLENGE = "Bearer"
# The methods a 405's Allow header can list, in the order it lists them (RFC 9110 §9.3, 5789).
STANDARD_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")


class PayloadTooLarge(HTTPException):
    """Raised while reading a request body that is larger than MAX_BODY_BYTES."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body is larger than {limit} bytes.")


class ErrorResponse(JSONResponse):
    """A JSON response that cannot fail to render, whatever text the error echoes."""

    def render(self, content: Any) -> bytes:
        # ensure_ascii escapes lone surrogates instead of raising UnicodeEncodeError.
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def error_response(
    status_code: int,
    detail: str,
    *,
    code: ErrorCode | None = None,
    errors: Sequence[Mapping[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """Build an envelope response; ``code`` defaults from the status code."""
    body: dict[str, Any] = {
        "detail": detail,
        "code": str(code or STATUS_CODES.get(status_code, _fallback_code(status_code))),
    }
    if errors is not None:
        body["errors"] = list(errors)
    response_headers = dict(headers or {})
    if status_code == 401:
        response_headers.setdefault("WWW-Authenticate", BEARER_CHALLENGE)
    return ErrorResponse(body, status_code=status_code, headers=response_headers)


def _fallback_code(status_code: int) -> ErrorCode:
    return ErrorCode.INTERNAL_ERROR if status_code >= 500 else ErrorCode.BAD_REQUEST


async def http_exception_handler(request: Request, error: Exception) -> Response:
    """Starlette/FastAPI ``HTTPException``: unknown routes, 405, 413 and explicit raises."""
    assert isinstance(error, HTTPException)  # noqa: S101 - registered for this type only
    body_problem = _undecodable_body_problem(error)
    if body_problem is not None:
        return validation_error_response(
            [{"loc": ["body"], "msg": body_problem, "type": "json_invalid"}]
        )
    headers = dict(error.headers or {})
    if error.status_code == 405:
        allowed = allowed_methods(request.scope)
        # Only a 405 of the router is corrected; one an endpoint raised itself keeps its Allow.
        if allowed and request.method not in allowed:
            headers["Allow"] = ", ".join(allowed)
    # FastAPI's HTTPException allows any JSON detail; the envelope promises a string.
    detail: object = error.detail
    return error_response(
        error.status_code,
        detail if isinstance(detail, str) else json.dumps(detail),
        headers=headers,
    )


def _undecodable_body_problem(error: HTTPException) -> str | None:
    """Why FastAPI could not decode a JSON body, if that is what this 400 is about.

    FastAPI turns a body that is not UTF-8, or JSON nested deeper than Python's recursion
    limit, into a bare 400 "There was an error parsing the body" that no route documents;
    both are malformed JSON like any other and get the same 422 as a syntax error.
    """
    if error.status_code != 400:
        return None
    if isinstance(error.__cause__, UnicodeDecodeError):
        return "Invalid JSON: the body is not valid UTF-8"
    if isinstance(error.__cause__, RecursionError):
        return "Invalid JSON: the body is nested too deeply"
    return None


def allowed_methods(scope: Scope) -> list[str]:
    """The methods of the resource at the request's path, for a 405's ``Allow`` (RFC 9110).

    Starlette's router answers 405 with the methods of the first route whose path matched,
    but ``GET /items`` and ``POST /items`` are two routes. So every route of the whole app
    whose path matches counts, mounted ones included, each with its own methods (HEAD only
    where the route serves it: Starlette adds it to a ``Route`` with GET, FastAPI does not).
    When templates overlap, the one with the fewest path parameters names the resource:
    ``/users/me`` is the ``/me`` route's, not a ``/users/{user_id}`` whose id is "me".
    Empty when nothing can be found (an opaque mounted app, say).
    """
    router = scope.get("router")  # the outermost router: routing sets it once, at the top
    if router is None:
        return []
    matching = list(_routes_at(getattr(router, "routes", []), _probe(scope), mount_parameters=0))
    if not matching:
        return []
    fewest = min(parameters for parameters, _ in matching)
    allowed = set().union(*(methods for parameters, methods in matching if parameters == fewest))
    ordered = [method for method in STANDARD_METHODS if method in allowed]
    return ordered + sorted(allowed.difference(STANDARD_METHODS))


def _probe(scope: Scope) -> Scope:
    """A fresh scope for the request's path as the outermost router saw it.

    Only what routing reads is copied, so trying routes leaves the real request untouched.
    """
    return {
        "type": "http",
        "method": scope.get("method", "GET"),
        "path": scope["path"],
        # Mounts change root_path on the way in; app_root_path keeps the server's.
        "root_path": scope.get("app_root_path", scope.get("root_path", "")),
        "headers": scope.get("headers", []),
        "path_params": {},
    }


def _routes_at(
    routes: Sequence[Any], scope: Scope, *, mount_parameters: int
) -> Iterator[tuple[int, frozenset[str]]]:
    """``(path parameters, methods)`` of every route whose path matches, through mounts."""
    for route in _flattened(routes):
        match, child_scope = route.matches(scope)
        if match is Match.NONE:
            continue
        parameters = mount_parameters + str(getattr(route, "path", "")).count("{")
        if isinstance(getattr(route, "original_route", route), Mount | Host):
            inner = {**scope, **child_scope}
            yield from _routes_at(route.routes, inner, mount_parameters=parameters)
        else:
            yield parameters, frozenset(route.methods or STANDARD_METHODS)


def _flattened(routes: Sequence[Any]) -> Iterable[Any]:
    """The routes one by one: newer FastAPI keeps an included router as one nested route."""
    try:
        from fastapi.routing import iter_route_contexts  # noqa: PLC0415 - newer FastAPI only
    except ImportError:  # older FastAPI copies included routes into the app's list
        return routes
    return iter_route_contexts(routes)


def validation_error_response(errors: Sequence[Mapping[str, Any]]) -> Response:
    """422 with field errors ``{"loc", "msg", "type"}``; ``detail`` names the first one."""
    detail = "The request is invalid."
    if errors:
        first = errors[0]
        where = ".".join(str(part) for part in first["loc"])
        detail = f"Invalid request: {where}: {first['msg']}" if where else str(first["msg"])
    return error_response(422, detail, errors=errors)


async def validation_exception_handler(_request: Request, error: Exception) -> Response:
    """422 with the field errors; the offending input is never echoed back."""
    raw_errors: Sequence[Any] = getattr(error, "errors", list)()
    return validation_error_response(
        [
            {
                "loc": [
                    part if isinstance(part, int) else str(part) for part in item.get("loc", ())
                ],
                "msg": str(item.get("msg", "")),
                "type": str(item.get("type", "")),
            }
            for item in raw_errors
        ]
    )


async def domain_exception_handler(request: Request, error: Exception) -> Response:
    """Map a service's domain error to its status code."""
    assert isinstance(error, exc.StarterKitError)  # noqa: S101 - registered for this type only
    if isinstance(error, exc.InvalidPassword):
        # A password rule is a validation rule that needs settings, so it is checked late.
        field_error = {"loc": ["body", error.field], "msg": error.detail, "type": "password"}
        return error_response(422, error.detail, errors=[field_error])
    if isinstance(error, exc.RateLimited):
        return error_response(429, error.detail, headers=error.headers)
    if isinstance(error, exc.InvalidToken):
        challenge = 'Bearer error="invalid_token"'
        return error_response(401, error.detail, headers={"WWW-Authenticate": challenge})
    if isinstance(error, exc.ServiceUnavailable):
        logger.error("%s %s: %s", request.method, request.url.path, error.detail)
        return error_response(503, UNAVAILABLE_DETAIL, headers={"Retry-After": "5"})
    code = ErrorCode(error.error_code) if error.error_code else None
    for cls, status_code in _DOMAIN_STATUS:
        if isinstance(error, cls):
            return error_response(status_code, error.detail, code=code)
    logger.error("unmapped domain error %s", type(error).__name__, exc_info=error)
    return error_response(500, INTERNAL_ERROR_DETAIL)


# PostgreSQL SQLSTATEs that say "no connection to be had" rather than "this query is wrong":
# connection exceptions (08), invalid authorization (28), insufficient resources such as too
# many connections (53), operator intervention such as a shutdown or a dropped database (57P),
# and a database that does not exist (3D000).
_UNAVAILABLE_SQLSTATE_PREFIXES = ("08", "28", "53", "57P", "3D000")


def is_unavailable_error(error: BaseException) -> bool:
    """Tell whether an exception means "the database cannot be reached right now"."""
    from sqlalchemy import exc as sa_exc  # noqa: PLC0415 - errors.py stays importable alone

    if isinstance(error, sa_exc.DBAPIError):
        sqlstate = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
        return (
            error.connection_invalidated
            or isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError)
            or (isinstance(sqlstate, str) and sqlstate.startswith(_UNAVAILABLE_SQLSTATE_PREFIXES))
        )
    if isinstance(error, sa_exc.TimeoutError | ConnectionError | TimeoutError | socket.gaierror):
        return True
    # asyncpg reports a refused connection to every resolved address as one plain OSError.
    return isinstance(error, OSError) and str(error).startswith("Multiple exceptions")


def is_schema_error(error: BaseException) -> bool:
    """Tell whether a database error means "starterkit's tables are missing or behind"."""
    orig = getattr(error, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if sqlstate in ("42P01", "42703"):  # PostgreSQL: undefined table, undefined column
        return True
    text = str(orig or "")
    return text.startswith(("no such table", "no such column"))  # SQLite


async def database_exception_handler(request: Request, error: Exception) -> Response:
    """503 while the database is unreachable (the pool recovers by itself), 500 otherwise.

    The body never contains SQL, driver messages or connection details. A schema that is
    missing or behind is a 503 too, with a log line that says to run ``starterkit migrate``.
    """
    if is_schema_error(error):
        logger.error(
            "the database schema is missing or behind (%s during %s %s): run `starterkit migrate`",
            type(error).__name__,
            request.method,
            request.url.path,
        )
        return error_response(503, UNAVAILABLE_DETAIL, headers={"Retry-After": "5"})
    if is_unavailable_error(error):
        logger.warning(
            "database unavailable during %s %s: %s",
            request.method,
            request.url.path,
            type(error).__name__,
        )
        return error_response(503, UNAVAILABLE_DETAIL, headers={"Retry-After": "5"})
    logger.error("database error during %s %s", request.method, request.url.path, exc_info=error)
    return error_response(500, INTERNAL_ERROR_DETAIL)


def install_error_handlers(app: FastAPI) -> None:
    """Register the envelope handlers on ``app``."""
    from fastapi.exceptions import RequestValidationError  # noqa: PLC0415
    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415

    app.add_exception_handler(HTTPException, http_exception_handler)
    app.add_exception_handler(RequestValidationError, validation_exception_handler)
    app.add_exception_handler(exc.StarterKitError, domain_exception_handler)
    app.add_exception_handler(SQLAlchemyError, database_exception_handler)
    app.add_exception_handler(OSError, database_exception_handler)


# --- OpenAPI: the envelope, documented ----------------------------------------------


class FieldError(BaseModel):
    """One invalid input field."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    """The error envelope every error response uses."""

    detail: str
    code: ErrorCode
    errors: list[FieldError] | None = None


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries documenting envelope errors with these statuses."""
    descriptions = {
        400: "The request cannot be honoured.",
        401: "Missing, invalid or expired credentials.",
        403: "Not allowed for this account.",
        404: "Not found, or not yours.",
        409: "Conflicts with existing data.",
        413: "The request body is too large.",
        422: "The input is invalid.",
        429: "Too many requests; retry after `Retry-After` seconds.",
        503: "A dependency (the database) is unavailable.",
    }
    return {
        status: {"model": ErrorBody, "description": descriptions[status]} for status in statuses
    }
