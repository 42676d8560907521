"""The floor of the benchmarks: a bare FastAPI app served exactly as ``starterkit serve`` would.

``GET /ping`` returns a small dict. Whatever starterkit adds (middleware, auth, the database,
the cache) shows up as the ratio of its endpoints' throughput to this app's, measured in the
same run on the same machine.

To get the same server options (workers, logging and access log, proxy headers, server header,
event loop and HTTP parser) without copying them, this runs the real ``starterkit serve``
command with ``uvicorn.run`` wrapped so that it serves this app instead of starterkit's. If
``serve`` changes how it starts uvicorn, the floor follows.

Usage: ``python benchmarks/floor_app.py --port 8001`` (with the STARTERKIT_* settings that
``starterkit serve`` needs to start).
"""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn
from fastapi import FastAPI

from starterkit.cli import main as starterkit_main


def create_app() -> FastAPI:
    """A FastAPI app with one route and nothing else."""
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    serve_starterkit = uvicorn.run

    def serve_floor(app: Any, **options: Any) -> None:
        assert app == "starterkit.app:create_app", app
        assert options.get("factory") is True, options
        serve_starterkit(create_app, **options)

    # `starterkit serve` imports uvicorn when it runs and looks up uvicorn.run then.
    uvicorn.run = serve_floor
    starterkit_main(["serve", "--port", str(args.port), "--no-migrate"])


if __name__ == "__main__":
    main()
