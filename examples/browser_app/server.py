"""Serve the browser example: one static page, on an origin of its own.

Start the API with this page's origin allowed to send credentials, then this server::

    export STARTERKIT_CORS_ORIGINS='["http://127.0.0.1:8001"]'
    export STARTERKIT_CORS_ALLOW_CREDENTIALS=true
    starterkit serve                       # the API on http://127.0.0.1:8000
    python examples/browser_app/server.py  # the page on http://127.0.0.1:8001

The page reads the API's address from ``/config.json`` (``--api`` sets it).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

HERE = Path(__file__).resolve().parent
STATIC = {"/": "index.html", "/app.js": "app.js", "/app.css": "app.css"}


def build_app(api_url: str) -> Starlette:
    """The page's server: its three files and ``/config.json`` naming the API."""
    parts = urlsplit(api_url)
    api_origin = f"{parts.scheme}://{parts.netloc}"
    # The page loads nothing from elsewhere and talks to its own server and the API only.
    policy = (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        f"connect-src 'self' {api_origin}; form-action 'none'; frame-ancestors 'none'; "
        "base-uri 'none'"
    )

    headers = {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-cache",
    }

    def static(request: Request) -> Response:
        return FileResponse(HERE / STATIC[request.url.path], headers=headers)

    def config(request: Request) -> Response:
        return JSONResponse({"api": api_url.rstrip("/")}, headers=headers)

    return Starlette(
        routes=[*(Route(path, static) for path in STATIC), Route("/config.json", config)]
    )


def main() -> None:
    import uvicorn  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--api", default="http://127.0.0.1:8000/api/v1", help="the API's base URL")
    options = parser.parse_args()
    uvicorn.run(build_app(options.api), host=options.host, port=options.port)


if __name__ == "__main__":
    main()
