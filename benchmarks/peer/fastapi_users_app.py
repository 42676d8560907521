"""fastapi-users 15's documented SQLAlchemy example, plus an owned items list: the peer.

The parts of the documented full example (``db.py``, ``schemas.py``, ``users.py``, ``app.py``)
are the sections of this one module: a ``SQLAlchemyBaseUserTableUUID`` user table behind
``SQLAlchemyUserDatabase``, a ``UserManager``, bearer tokens signed by ``JWTStrategy``
(HS256), and the routers the example mounts. The items are written the way that project's
users write their own routes: the current user and a session from ``Depends``, one
``select``, a pydantic response model, and no cache (fastapi-users has none).

It runs only in the peer's own venv (:mod:`benchmarks.peer.venv`), served by
``python -m uvicorn fastapi_users_app:app --app-dir benchmarks/peer`` with these variables:

- ``PEER_DATABASE_URL``: ``postgresql+asyncpg://…`` or ``sqlite+aiosqlite:///…``; the tables
  are created at startup.
- ``PEER_SECRET``: the HS256 key of the access tokens and the secret of the reset and
  verification tokens.
"""

# mypy checks this file in starterkit's venv, where fastapi-users is not installed: its
# imports are unknown there, and the classes built on them subclass Any.
# mypy: allow-subclassing-any
# Depends() as a parameter default is how fastapi-users' documentation writes routes.
# ruff: noqa: B008

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import Depends, FastAPI, Query, Request
from fastapi_users import (  # type: ignore[import-not-found]
    BaseUserManager,
    FastAPIUsers,
    UUIDIDMixin,
    schemas,
)
from fastapi_users.authentication import (  # type: ignore[import-not-found]
    AuthenticationBackend,
    BearerTransport,
    JWTStrategy,
)
from fastapi_users.db import (  # type: ignore[import-not-found]
    SQLAlchemyBaseUserTableUUID,
    SQLAlchemyUserDatabase,
)
from fastapi_users_db_sqlalchemy.generics import GUID  # type: ignore[import-not-found]
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import DateTime, ForeignKey, Integer, String, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

DATABASE_URL = os.environ["PEER_DATABASE_URL"]
SECRET = os.environ["PEER_SECRET"]
# One token serves the whole benchmark run.
TOKEN_LIFETIME_SECONDS = 24 * 60 * 60

# --- db.py -----------------------------------------------------------------------------


class Base(DeclarativeBase):
    pass


class User(SQLAlchemyBaseUserTableUUID, Base):
    pass


class Item(Base):
    """One item, owned by one user."""

    __tablename__ = "item"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Indexed: every list filters on the owner.
    owner_id: Mapped[uuid.UUID] = mapped_column(
        GUID, ForeignKey("user.id", ondelete="CASCADE"), index=True
    )
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(String(1000), default=None)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=lambda: datetime.now(UTC)
    )


# The documented example's engine: SQLAlchemy's default pool (5 connections, 10 overflow).
engine = create_async_engine(DATABASE_URL)
async_session_maker = async_sessionmaker(engine, expire_on_commit=False)


async def create_db_and_tables() -> None:
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)


async def get_async_session() -> AsyncGenerator[AsyncSession, None]:
    async with async_session_maker() as session:
        yield session


async def get_user_db(
    session: AsyncSession = Depends(get_async_session),
) -> AsyncGenerator[SQLAlchemyUserDatabase, None]:
    yield SQLAlchemyUserDatabase(session, User)


# --- schemas.py ------------------------------------------------------------------------


class UserRead(schemas.BaseUser[uuid.UUID]):
    pass


class UserCreate(schemas.BaseUserCreate):
    pass


class UserUpdate(schemas.BaseUserUpdate):
    pass


class ItemCreate(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=1000)


class ItemRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    owner_id: uuid.UUID
    title: str
    description: str | None
    created_at: datetime


# --- users.py --------------------------------------------------------------------------


class UserManager(UUIDIDMixin, BaseUserManager[User, uuid.UUID]):
    reset_password_token_secret = SECRET
    verification_token_secret = SECRET

    async def on_after_register(self, user: User, request: Request | None = None) -> None:
        print(f"User {user.id} has registered.")


async def get_user_manager(
    user_db: SQLAlchemyUserDatabase = Depends(get_user_db),
) -> AsyncGenerator[UserManager, None]:
    yield UserManager(user_db)


bearer_transport = BearerTransport(tokenUrl="auth/jwt/login")


def get_jwt_strategy() -> JWTStrategy[User, uuid.UUID]:
    return JWTStrategy(secret=SECRET, lifetime_seconds=TOKEN_LIFETIME_SECONDS)


auth_backend = AuthenticationBackend(
    name="jwt", transport=bearer_transport, get_strategy=get_jwt_strategy
)
fastapi_users = FastAPIUsers[User, uuid.UUID](get_user_manager, [auth_backend])
current_active_user = fastapi_users.current_user(active=True)

# --- app.py ----------------------------------------------------------------------------


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    await create_db_and_tables()
    yield


app = FastAPI(lifespan=lifespan)
app.include_router(fastapi_users.get_auth_router(auth_backend), prefix="/auth/jwt", tags=["auth"])
app.include_router(
    fastapi_users.get_register_router(UserRead, UserCreate), prefix="/auth", tags=["auth"]
)
app.include_router(fastapi_users.get_reset_password_router(), prefix="/auth", tags=["auth"])
app.include_router(fastapi_users.get_verify_router(UserRead), prefix="/auth", tags=["auth"])
app.include_router(
    fastapi_users.get_users_router(UserRead, UserUpdate), prefix="/users", tags=["users"]
)


@app.post("/items", response_model=ItemRead, status_code=201, tags=["items"])
async def create_item(
    item: ItemCreate,
    user: User = Depends(current_active_user),
    session: AsyncSession = Depends(get_async_session),
) -> Item:
    created = Item(owner_id=user.id, title=item.title, description=item.description)
    session.add(created)
    await session.commit()
    return created


@app.get("/items", response_model=list[ItemRead], tags=["items"])
async def list_items(
    limit: int = Query(default=20, ge=1, le=100),
    user: User = Depends(current_active_user),
    session: AsyncSession = Depends(get_async_session),
) -> list[Item]:
    """The user's newest items first."""
    query = select(Item).where(Item.owner_id == user.id).order_by(Item.id.desc()).limit(limit)
    return list((await session.scalars(query)).all())
