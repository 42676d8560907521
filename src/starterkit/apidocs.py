"""``/docs`` and ``/redoc`` with their assets served by the service itself, under a strict CSP.

FastAPI's own pages load Swagger UI and ReDoc from a CDN: behind a firewall, or with no
internet, they stay blank, and no strict Content-Security-Policy is possible. The assets here
come from the ``fastapi-offline`` package (MIT; it ships the Swagger UI and ReDoc bundles and
nothing else of consequence, and is kept up to date with them), so the pages work offline and
may load nothing but their own files. The one inline script, Swagger UI's set-up, is allowed
by its SHA-256 hash.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import FileResponse, HTMLResponse

from starterkit.exceptions import NotFound

STATIC_PATH = "/docs/static"
# The files the pages load, and their media types: nothing else is served from the folder.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def build_docs_router(
    *, openapi_url: str, title: str, tags: Sequence[str] = ("docs",)
) -> APIRouter:
    """``/docs``, ``/docs/oauth2-redirect``, ``/redoc`` and their assets; mount at the root."""
    router = APIRouter(tags=list(tags), include_in_schema=False)
    static = Path(str(files("fastapi_offline") / "static"))
    swagger = get_swagger_ui_html(
        openapi_url=openapi_url,
        title=f"{title} - Swagger UI",
        swagger_js_url=f"{STATIC_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{STATIC_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{STATIC_PATH}/favicon.png",
        oauth2_redirect_url="/docs/oauth2-redirect",
    )
    redirect = get_swagger_ui_oauth2_redirect_html()
    redoc = get_redoc_html(
        openapi_url=openapi_url,
        title=f"{title} - ReDoc",
        redoc_js_url=f"{STATIC_PATH}/redoc.standalone.js",
        redoc_favicon_url=f"{STATIC_PATH}/favicon.png",
        with_google_fonts=False,
    )

    # GET and HEAD, as FastAPI's own pages and any Starlette route answer.
    @router.api_route("/docs", methods=["GET", "HEAD"])
    async def swagger_ui() -> HTMLResponse:
        return _with_policy(swagger)

    @router.api_route("/docs/oauth2-redirect", methods=["GET", "HEAD"])
    async def swagger_ui_redirect() -> HTMLResponse:
        return _with_policy(redirect)

    @router.api_route("/redoc", methods=["GET", "HEAD"])
    async def redoc_page() -> HTMLResponse:
        return _with_policy(redoc, workers=True)

    @router.api_route(f"{STATIC_PATH}/{{name}}", methods=["GET", "HEAD"])
    async def asset(name: str) -> FileResponse:
        media_type = ASSETS.get(name)
        if media_type is None:
            raise NotFound
        return FileResponse(
            static / name,
            media_type=media_type,
            headers={"Cache-Control": "public, max-age=86400"},
        )

    return router


def content_security_policy(html: str, *, workers: bool = False) -> str:
    """The policy of a docs page: its own files, its inline scripts by hash, nothing else.

    Styles may be inline (both UIs set them from JavaScript); ReDoc runs a worker from a
    ``blob:`` URL.
    """
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(html)
    )
    directives = [
        "default-src 'none'",
        f"script-src 'self' {hashes}".rstrip(),
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    ]
    if workers:
        directives.append("worker-src blob:")
    return "; ".join(directives)


def _with_policy(page: HTMLResponse, *, workers: bool = False) -> HTMLResponse:
    html = bytes(page.body).decode()
    policy = content_security_policy(html, workers=workers)
    return HTMLResponse(html, headers={"Content-Security-Policy": policy})
