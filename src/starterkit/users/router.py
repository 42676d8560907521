"""``/users`` routes: registration, the caller's own account, and superuser administration.

Built by :func:`build_users_router` for one :class:`StarterKit`; mount it under any prefix.
No ``from __future__ import annotations`` here: FastAPI reads these annotations at runtime.
"""

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from starterkit.auth.events import EventType, list_events, origin_of, record_event
from starterkit.auth.lifecycle_mail import mail_verification
from starterkit.db.models import User
from starterkit.exceptions import InvalidRequest
from starterkit.ratelimit import limit_per_client, limit_per_user, parse_limit, raise_if_refused
from starterkit.schemas import MAX_DB_INT, error_responses
from starterkit.users import service
from starterkit.users.schemas import (
    EventPage,
    EventRead,
    PasswordChange,
    UserCreate,
    UserPage,
    UserRead,
    UserUpdateAdmin,
    UserUpdateMe,
)

if TYPE_CHECKING:
    from starterkit.app import StarterKit

UserId = Annotated[int, Path(ge=1, le=MAX_DB_INT)]


def build_users_router(kit: "StarterKit", *, tags: Sequence[str] = ("users",)) -> APIRouter:
    """The users routes of ``kit``; include it with any prefix (``create_app`` uses /users)."""
    router = APIRouter(tags=list(tags))
    Session = Annotated[AsyncSession, Depends(kit.db_session)]
    CurrentUser = Annotated[User, Depends(kit.current_user)]
    Superuser = Annotated[User, Depends(kit.current_superuser)]
    settings = kit.settings
    register_limit = Depends(limit_per_client(kit, "register", settings.auth_register_rate_limit))
    password_limit = Depends(limit_per_user(kit, "password", settings.auth_password_rate_limit))
    password_limit_item = parse_limit(settings.auth_password_rate_limit)

    @router.post(
        "",
        name="users:register",
        status_code=201,
        response_model=UserRead,
        dependencies=[register_limit],
        responses=error_responses(409, 422, 429),
    )
    async def register(payload: UserCreate, request: Request, session: Session) -> Any:
        """Create an account. It is never a superuser and always starts active.

        The password must be long enough, not the email and not a common password (422
        otherwise); a taken email is 409.
        """
        user = await service.create_user(
            session,
            email=payload.email,
            password=payload.password,
            hasher=kit.password_hasher,
            password_min_length=kit.settings.password_min_length,
            full_name=payload.full_name,
        )
        record_event(
            session,
            event_type=EventType.USER_REGISTERED,
            origin=origin_of(request, settings.trusted_proxies),
            now=kit.clock(),
            user_id=user.id,
        )
        await session.commit()
        await kit.hooks.fire("on_after_register", user, request)
        return user

    @router.get("/me", name="users:me", response_model=UserRead, responses=error_responses(401))
    async def read_me(user: CurrentUser) -> Any:
        """The caller's account."""
        return user

    @router.patch(
        "/me",
        name="users:update_me",
        response_model=UserRead,
        responses=error_responses(400, 401, 409, 422, 429),
    )
    async def update_me(
        payload: UserUpdateMe, request: Request, user: CurrentUser, session: Session
    ) -> Any:
        """Change your display name (`null` clears it) or your email address.

        A new `email` needs `current_password` (400 if wrong, like a password change; these
        attempts count against AUTH_PASSWORD_RATE_LIMIT), is 409 if another account has it,
        makes the account unverified and mails a verification link to the new address.
        """
        session.add(user)  # kit.current_user is detached
        fields = payload.model_fields_set
        if payload.email is not None:
            # Each attempt verifies a password: limit them like password changes.
            state = await kit.rate_limits.hit("password", password_limit_item, str(user.id))
            raise_if_refused(state)
        old_email = user.email
        email_changed = await service.update_own_account(
            session,
            user=user,
            hasher=kit.password_hasher,
            full_name=payload.full_name,
            clear_full_name="full_name" in fields and payload.full_name is None,
            new_email=payload.email,
            current_password=payload.current_password,
        )
        if email_changed:
            record_event(
                session,
                event_type=EventType.EMAIL_CHANGED,
                origin=origin_of(request, settings.trusted_proxies),
                now=kit.clock(),
                user_id=user.id,
                email=old_email,
            )
        await session.commit()
        if email_changed:
            kit.background.spawn(
                mail_verification(kit, email=user.email, request=request),
                name="verification mail",
            )
        return user

    @router.post(
        "/me/password",
        name="users:change_password",
        status_code=204,
        dependencies=[password_limit],
        responses=error_responses(400, 401, 422, 429),
    )
    async def change_password(
        payload: PasswordChange, request: Request, user: CurrentUser, session: Session
    ) -> None:
        """Change your password. Ends every session and access token, this one included.

        A wrong `current_password` is 400 (you are still signed in); a new password that
        breaks the rules is 422.
        """
        session.add(user)  # kit.current_user is detached
        await service.change_password(
            session,
            user=user,
            current_password=payload.current_password,
            new_password=payload.new_password,
            hasher=kit.password_hasher,
            password_min_length=kit.settings.password_min_length,
            now=kit.clock(),
        )
        record_event(
            session,
            event_type=EventType.PASSWORD_CHANGED,
            origin=origin_of(request, settings.trusted_proxies),
            now=kit.clock(),
            user_id=user.id,
        )
        await session.commit()
        await kit.hooks.fire("on_after_password_change", user, request)

    @router.get(
        "",
        name="users:list",
        response_model=UserPage,
        responses=error_responses(401, 403, 422),
    )
    async def list_users(
        _admin: Superuser,
        session: Session,
        limit: Annotated[int, Query(ge=1, le=100)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_DB_INT)] = 0,
    ) -> Any:
        """All accounts in id order (superusers only)."""
        users, total = await service.list_users(session, limit=limit, offset=offset)
        return UserPage(
            items=[UserRead.model_validate(user) for user in users],
            total=total,
            limit=limit,
            offset=offset,
        )

    @router.get(
        "/{user_id}",
        name="users:get",
        response_model=UserRead,
        responses=error_responses(401, 403, 404, 422),
    )
    async def get_user(user_id: UserId, _admin: Superuser, session: Session) -> Any:
        """One account (superusers only)."""
        return await service.get_user(session, user_id)

    @router.patch(
        "/{user_id}",
        name="users:update",
        response_model=UserRead,
        responses=error_responses(400, 401, 403, 404, 422),
    )
    async def update_user(
        user_id: UserId,
        payload: UserUpdateAdmin,
        request: Request,
        admin: Superuser,
        session: Session,
    ) -> Any:
        """Activate, deactivate, promote or demote an account (superusers only).

        Deactivating ends the account's sessions and access tokens at once. You cannot
        deactivate or demote yourself, so the last superuser cannot lock everyone out by
        accident.
        """
        user = await service.get_user(session, user_id)
        if user.id == admin.id and (payload.is_active is False or payload.is_superuser is False):
            raise InvalidRequest("You cannot deactivate or demote your own account.")
        fields = payload.model_fields_set
        was_active = user.is_active
        await service.set_user_flags(
            session,
            user=user,
            now=kit.clock(),
            is_active=payload.is_active,
            is_superuser=payload.is_superuser,
            full_name=payload.full_name,
            clear_full_name="full_name" in fields and payload.full_name is None,
        )
        if user.is_active != was_active:
            event = EventType.USER_REACTIVATED if user.is_active else EventType.USER_DEACTIVATED
            record_event(
                session,
                event_type=event,
                origin=origin_of(request, settings.trusted_proxies),
                now=kit.clock(),
                user_id=user.id,
            )
        await session.commit()
        return user

    @router.get(
        "/{user_id}/events",
        name="users:events",
        response_model=EventPage,
        responses=error_responses(401, 403, 404, 422),
    )
    async def user_events(
        user_id: UserId,
        _admin: Superuser,
        session: Session,
        limit: Annotated[int, Query(ge=1, le=100)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_DB_INT)] = 0,
    ) -> Any:
        """An account's audit log, newest first (superusers only)."""
        await service.get_user(session, user_id)
        found, total = await list_events(session, user_id=user_id, limit=limit, offset=offset)
        return EventPage(
            items=[EventRead.model_validate(event) for event in found],
            total=total,
            limit=limit,
            offset=offset,
        )

    @router.delete(
        "/{user_id}",
        name="users:delete",
        status_code=204,
        responses=error_responses(400, 401, 403, 404, 422),
    )
    async def delete_user(user_id: UserId, admin: Superuser, session: Session) -> Response:
        """Delete an account with its items and sessions (superusers only; not yourself)."""
        user = await service.get_user(session, user_id)
        if user.id == admin.id:
            raise InvalidRequest("You cannot delete your own account.")
        await service.delete_user(session, user=user)
        await session.commit()
        return Response(status_code=204)

    return router
