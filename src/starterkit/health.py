"""Liveness, readiness and dependency health: ``/health``, ``/health/live``, ``/health/ready``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from starterkit._version import __version__
from starterkit.errors import ErrorCode
from starterkit.runtime import Runtime

DATABASE_DOWN_DETAIL = "The database is unreachable."
SCHEMA_DETAIL = "The database schema is missing or behind: run `starterkit migrate`."


class HealthReport(BaseModel):
    """State of the service and each dependency."""

    status: Literal["ok", "degraded", "down"]
    database: Literal["up", "down"]
    redis: Literal["up", "down", "disabled"]
    version: str


class HealthFailure(HealthReport):
    """The health report when the service cannot serve (503), with the error envelope fields."""

    detail: str
    code: ErrorCode


class Probe(BaseModel):
    """Answer of a liveness or readiness probe."""

    status: Literal["ok"]


class ProbeFailure(BaseModel):
    """A failed readiness probe (503), in the error envelope."""

    status: Literal["down"]
    detail: str
    code: ErrorCode


_NO_STORE = {"Cache-Control": "no-store"}
_LIVE_BODY = Probe(status="ok").model_dump_json().encode()


def _unavailable(body: BaseModel) -> Response:
    # Returned directly: the declared response_model would drop the envelope fields.
    return JSONResponse(body.model_dump(mode="json"), status_code=503, headers=_NO_STORE)


def build_health_router(kit: Runtime, *, tags: Sequence[str] = ("health",)) -> APIRouter:
    """Health routes for ``kit``. Mount without a prefix; paths start with ``/health``.

    ``/health/live`` never touches a dependency, so an orchestrator does not restart a healthy
    process because the database is away. ``/health`` and ``/health/ready`` answer 503 while the
    database is unreachable; a Redis outage only degrades (200), because limits and cache fall
    back to the process.
    """
    router = APIRouter(tags=list(tags))

    @router.get(
        "/health",
        name="health:status",
        response_model=HealthReport,
        responses={
            503: {
                "model": HealthFailure,
                "description": "The database is unreachable, or its schema is behind.",
            }
        },
    )
    async def health(response: Response) -> HealthReport | Response:
        response.headers.update(_NO_STORE)
        database_up = await kit.ping_database()
        redis = await kit.ping_redis()
        schema = await kit.schema_state() if database_up else "unknown"
        if not database_up or schema in ("missing", "behind"):
            failure = HealthFailure(
                status="down",
                database="up" if database_up else "down",
                redis=redis,
                version=__version__,
                detail=DATABASE_DOWN_DETAIL if not database_up else SCHEMA_DETAIL,
                code=ErrorCode.SERVICE_UNAVAILABLE,
            )
            return _unavailable(failure)
        status: Literal["ok", "degraded"] = "degraded" if redis == "down" else "ok"
        return HealthReport(status=status, database="up", redis=redis, version=__version__)

    @router.get("/health/live", name="health:live", response_model=Probe)
    async def live() -> Response:
        # The same answer every time, as ready bytes: a probe should cost next to nothing.
        return Response(_LIVE_BODY, media_type="application/json", headers=_NO_STORE)

    @router.get(
        "/health/ready",
        name="health:ready",
        response_model=Probe,
        responses={
            503: {
                "model": ProbeFailure,
                "description": "The database is unreachable, or its schema is behind.",
            }
        },
    )
    async def ready(response: Response) -> Probe | Response:
        response.headers.update(_NO_STORE)
        if not await kit.ping_database():
            detail = DATABASE_DOWN_DETAIL
        elif await kit.schema_state() in ("missing", "behind"):
            detail = SCHEMA_DETAIL  # not ready: every API route would fail
        else:
            return Probe(status="ok")
        failure = ProbeFailure(status="down", detail=detail, code=ErrorCode.SERVICE_UNAVAILABLE)
        return _unavailable(failure)

    return router
