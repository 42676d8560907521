"""Pure ASGI middleware: request ids, the catch-all 500, and the request size limits.

Pure ASGI (not ``BaseHTTPMiddleware``) keeps per-request overhead to a few dict operations and
never buffers bodies.
"""

from __future__ import annotations

import logging
import os
import re
from typing import TYPE_CHECKING

from starterkit.errors import INTERNAL_ERROR_DETAIL, PayloadTooLarge, error_response
from starterkit.logs import REQUEST_ID

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("starterkit.errors")

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_NAME = REQUEST_ID_HEADER.lower().encode()
# A client-supplied id is kept only if it is short and plain, so it cannot forge log lines.
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# On every response (OWASP secure headers): no MIME sniffing, no referrer leaks to other sites,
# no sharing a browsing context with pages of other origins.
_EVERY_RESPONSE = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
# A JSON answer is data, never a document: it may load nothing and be framed by nobody.
_JSON_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
# request.state key under which rate-limit dependencies leave their headers for this middleware.
RATE_LIMIT_HEADERS_KEY = "rate_limit_headers"


class RequestContextMiddleware:
    """Gives every response an ``X-Request-ID`` and turns unhandled errors into a JSON 500.

    The id is taken from the request's ``X-Request-ID`` header when it is safe, otherwise 32
    random hex digits; it is stored as ``request.state.request_id``. Exceptions that escape
    the app are logged with their traceback and answered with the envelope, without details.
    """

    def __init__(self, app: ASGIApp, *, hsts_seconds: int = 0) -> None:
        self.app = app
        self.fixed_headers = list(_EVERY_RESPONSE)
        if hsts_seconds > 0:
            self.fixed_headers.append(
                (b"strict-transport-security", f"max-age={hsts_seconds}".encode())
            )
        self.fixed_names = frozenset(name for name, _ in self.fixed_headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or os.urandom(16).hex()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        id_header = (_REQUEST_ID_NAME, request_id.encode())
        response_started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
                # ASGI header names are lower case, so they are compared as they come.
                headers = list(message.get("headers", ()))
                present = {name for name, _ in headers}
                headers.append(id_header)
                if present.isdisjoint(self.fixed_names):  # the usual case: none of ours set
                    headers += self.fixed_headers
                else:
                    headers += (header for header in self.fixed_headers if header[0] not in present)
                if b"content-security-policy" not in present and _is_json(headers):
                    headers.append(_JSON_CSP)
                limit_headers = state.get(RATE_LIMIT_HEADERS_KEY)
                if limit_headers:
                    headers.extend(
                        (name.lower().encode(), value.encode())
                        for name, value in limit_headers.items()
                        if name.lower().encode() not in present
                    )
                message["headers"] = headers
            await send(message)

        context = REQUEST_ID.set(request_id)  # every log line of this request carries it
        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            logger.exception(
                "unhandled error during %s %s (request id %s)",
                scope.get("method"),
                scope.get("path"),
                request_id,
            )
            if response_started:
                raise
            response = error_response(500, INTERNAL_ERROR_DETAIL)
            await response(scope, receive, send_with_headers)
        finally:
            REQUEST_ID.reset(context)


def _is_json(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"content-type":
            media_type = value.split(b";", 1)[0].strip().lower()
            return media_type == b"application/json" or media_type.endswith(b"+json")
    return False


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == _REQUEST_ID_NAME:
            text = value.decode("latin-1")
            return text if _SAFE_REQUEST_ID.fullmatch(text) else None
    return None


class RequestSizeLimitMiddleware:
    """Answers 431 for request headers over ``max_header_bytes`` and 413 for bodies over
    ``max_body_bytes``.

    Headers are counted as names plus values, before the app runs. A declared
    ``Content-Length`` over the limit is refused before the app runs too; a chunked body is
    counted as it streams and refused as soon as it passes the limit.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_header_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header_bytes = 0
        declared: bytes | None = None
        for name, value in scope["headers"]:
            header_bytes += len(name) + len(value)
            if name == b"content-length":
                declared = value
        if header_bytes > self.max_header_bytes:
            await _refuse(
                scope, receive, send, 431, HEADERS_TOO_LARGE.format(self.max_header_bytes)
            )
            return
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._too_large(scope, receive, send)
            return

        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise PayloadTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except PayloadTooLarge:
            if response_started:
                raise
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _refuse(scope, receive, send, 413, str(PayloadTooLarge(self.max_bytes).detail))


HEADERS_TOO_LARGE = "The request headers are larger than {} bytes."


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
    # The connection is closed after the answer: the rest of the request is not worth reading.
    response = error_response(status, detail, headers={"Connection": "close"})
    await response(scope, receive, send)
