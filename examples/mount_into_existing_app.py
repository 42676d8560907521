"""starterkit inside an app you already have: ``uvicorn examples.mount_into_existing_app:app``.

Your app keeps its own lifespan, routes and prefixes; starterkit adds accounts, auth, items,
the error envelope and rate limiting where you put them.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request, Response

from starterkit import Settings, StarterKit, User

kit = StarterKit(Settings())


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Your own start-up and shut-down go around starterkit's.
    async with kit.lifespan(app):
        yield


app = FastAPI(title="My shop", lifespan=lifespan)
kit.install(app)  # error envelope, request ids, body limit, CORS, limiter, metrics
app.include_router(kit.auth_router, prefix="/account/auth", tags=["account"])
app.include_router(kit.users_router, prefix="/account/users", tags=["account"])
app.include_router(kit.health_router, prefix="/ops")

CurrentUser = Annotated[User, Depends(kit.current_user)]


@app.get("/hello")
@kit.limiter.limit("10/minute")
async def hello(request: Request, response: Response, user: CurrentUser) -> dict[str, str]:
    """A route of your own: signed-in users only, at most 10 a minute per client."""
    return {"message": f"Hello, {user.email}!"}


@app.get("/admin/stats", dependencies=[Depends(kit.current_superuser)])
async def stats() -> dict[str, int]:
    """Superusers only."""
    return {"cache_hits": kit.cache.hits}
