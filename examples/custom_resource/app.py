"""The service plus a notes resource: ``uvicorn examples.custom_resource.app:app``.

The shape to copy for a resource of your own: a model (``models.py``), a service of plain
async functions that take the session first and never commit (``service.py``), and a router
factory whose routes parse, call the service, commit and let FastAPI render the response.

``starterkit migrate`` applies the notes migration too, because the settings name its
directory (``STARTERKIT_MIGRATION_LOCATIONS``) and its models module
(``STARTERKIT_MODEL_MODULES``, for ``starterkit migrate check``).
"""

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from examples.custom_resource import service
from examples.custom_resource.models import Note
from starterkit import Settings, StarterKit, User, create_app

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"


def notes_settings(**overrides: Any) -> Settings:
    """Settings that include the notes migrations and models."""
    values: dict[str, Any] = {
        "migration_locations": [str(MIGRATIONS)],
        "model_modules": ["examples.custom_resource.models"],
        **overrides,
    }
    return Settings(**values)


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=500)


class NoteOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    text: str


def notes_router(kit: StarterKit) -> APIRouter:
    """``/notes``: each user writes and lists their own notes."""
    router = APIRouter(tags=["notes"])
    Session = Annotated[AsyncSession, Depends(kit.db_session)]  # noqa: N806
    CurrentUser = Annotated[User, Depends(kit.current_user)]  # noqa: N806

    @router.post("", status_code=201, response_model=NoteOut)
    async def add_note(payload: NoteIn, user: CurrentUser, session: Session) -> Note:
        note = await service.add_note(session, owner=user, text=payload.text)
        await session.commit()
        return note

    @router.get("", response_model=list[NoteOut])
    async def my_notes(user: CurrentUser, session: Session) -> list[Note]:
        return await service.list_notes(session, owner=user)

    return router


def build_app(settings: Settings | None = None) -> FastAPI:
    """The starterkit service with ``/api/v1/notes`` added."""
    app = create_app(settings or notes_settings())
    kit: StarterKit = app.state.starterkit
    app.include_router(notes_router(kit), prefix=f"{kit.settings.api_prefix}/notes")
    return app


app = build_app()
