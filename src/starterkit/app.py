"""The runtime object (:class:`StarterKit`) and the :func:`create_app` factory.

Everything with state hangs off one ``StarterKit`` made from one ``Settings``: the engine, the
session factory, the Redis client and (as they arrive) hasher, limiter storage and cache. Nothing
is created at import time, so any number of apps with different settings can share a process.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from starterkit._version import __version__
from starterkit.auth.account_tokens import AccountTokens, build_account_tokens
from starterkit.auth.dependencies import UserDependency, build_user_dependency
from starterkit.auth.events import purge_events_before
from starterkit.auth.passwords import PasswordHasher
from starterkit.auth.router import build_auth_router
from starterkit.auth.service import SessionLifetimes, purge_expired_sessions
from starterkit.auth.tokens import Clock, TokenService
from starterkit.auth.user_cache import UserCache
from starterkit.background import BackgroundJobs
from starterkit.cache import MemoryBackend, RedisBackend, ResponseCache
from starterkit.db.base import utcnow
from starterkit.db.engine import create_engine, create_read_engine, create_sessionmaker
from starterkit.errors import install_error_handlers
from starterkit.health import build_health_router
from starterkit.hooks import Hooks
from starterkit.items.router import build_items_router
from starterkit.mail import build_mailer
from starterkit.metrics import Metrics, MetricsMiddleware, build_metrics_router
from starterkit.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from starterkit.ratelimit import RateLimits, build_limiter, slowapi_exceeded_handler
from starterkit.settings import Settings
from starterkit.users.router import build_users_router

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from slowapi import Limiter

logger = logging.getLogger("starterkit")

HEALTH_CHECK_TIMEOUT_SECONDS = 2.0

RedisState = Literal["up", "down", "disabled"]


class StarterKit:
    """The runtime of one starterkit service, built from one :class:`Settings`.

    Use it to mount starterkit into your own FastAPI app::

        kit = StarterKit(Settings())
        app = FastAPI(lifespan=kit.lifespan)
        kit.install(app)
        app.include_router(kit.health_router, prefix="/api")

    Creating a ``StarterKit`` opens nothing: connections are made on first use and released by
    :meth:`lifespan` (or :meth:`aclose`).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        token_url: str | None = None,
        clock: Clock = utcnow,
    ) -> None:
        """Build the runtime.

        Args:
            settings: configuration; read from the environment and ``.env`` when omitted.
            token_url: where the auth router's ``/login`` is mounted, for the OpenAPI
                "Authorize" button; defaults to ``{api_prefix}/auth/login``.
            clock: returns the current aware UTC time; tests pass a fake one.
        """
        self.settings = settings if settings is not None else Settings()
        self.clock = clock
        self.token_url = token_url or f"{self.settings.api_prefix}/auth/login"
        self.engine = create_engine(self.settings)
        self.sessionmaker = create_sessionmaker(self.engine)
        # For starterkit's own one-statement reads (the current user, item pages).
        self.read_engine = create_read_engine(self.settings, self.engine)
        self.user_cache = UserCache(self.settings.database_url, self.read_engine)
        self.redis: Redis | None = _create_redis(self.settings.redis_url)
        self.password_hasher = PasswordHasher()
        self.hooks = Hooks()
        self.background = BackgroundJobs()
        self.mailer = build_mailer(self.settings)
        self.cache = ResponseCache(
            RedisBackend(self.redis) if self.redis is not None else MemoryBackend(),
            ttl_seconds=self.settings.cache_ttl_seconds,
            prefix=self.settings.redis_key_prefix,
        )
        self.rate_limits = RateLimits(
            self.redis,
            redis_url=self.settings.redis_url,
            key_prefix=self.settings.redis_key_prefix,
        )
        self.metrics = Metrics(self)
        self.session_lifetimes = SessionLifetimes(
            idle=timedelta(days=self.settings.refresh_token_expire_days),
            absolute=timedelta(days=self.settings.session_max_age_days),
        )
        self.current_user = self.require_user()
        self.current_superuser = self.require_user(superuser=True)
        self.health_router = build_health_router(self)
        self.auth_router = build_auth_router(self)
        self.users_router = build_users_router(self)
        self.items_router = build_items_router(self)
        self.metrics_router = build_metrics_router(self)
        self._purge_task: asyncio.Task[None] | None = None

    def require_user(
        self, *, active: bool = True, verified: bool = False, superuser: bool = False
    ) -> UserDependency:
        """Build a dependency that returns the signed-in user meeting these requirements.

        ``kit.current_user`` is ``require_user()``; ``kit.current_superuser`` is
        ``require_user(superuser=True)``. Missing or bad credentials give 401; a user who
        lacks a required property gets 403.
        """
        return build_user_dependency(self, active=active, verified=verified, superuser=superuser)

    @functools.cached_property
    def limiter(self) -> Limiter:
        """A slowapi ``Limiter`` on this runtime's storage and client-IP key.

        Decorate your own routes with ``@kit.limiter.limit("10/minute")`` (the endpoint needs
        a ``request: Request`` parameter, and ``response: Response`` for the headers); 429s
        use the error envelope. :meth:`install` registers it on the app.
        """
        return build_limiter(self)

    @functools.cached_property
    def tokens(self) -> TokenService:
        """Issues and verifies this runtime's access and refresh tokens."""
        secret_key, refresh_secret = self.token_secrets
        return TokenService(
            secret_key=secret_key,
            refresh_secret=refresh_secret,
            issuer=self.settings.jwt_issuer,
            audience=self.settings.jwt_audience,
            access_ttl=timedelta(minutes=self.settings.access_token_expire_minutes),
            leeway_seconds=self.settings.clock_skew_seconds,
            clock=self.clock,
        )

    @functools.cached_property
    def account_tokens(self) -> AccountTokens:
        """Issues and checks the password-reset and verification tokens of mailed links."""
        return build_account_tokens(self.settings, self.token_secrets[0], clock=self.clock)

    @functools.cached_property
    def token_secrets(self) -> tuple[str, str]:
        """``(SECRET_KEY, REFRESH_TOKEN_SECRET)``; random per process if unset in development."""
        return _resolve_secrets(self.settings)

    @asynccontextmanager
    async def lifespan(self, _app: Any = None) -> AsyncIterator[None]:
        """Lifespan for ``FastAPI(lifespan=kit.lifespan)``; releases connections on shutdown.

        With a lifespan of your own, nest it: ``async with kit.lifespan(app): yield``.
        """
        interval = self.settings.session_purge_interval_seconds
        if interval:
            self._purge_task = asyncio.create_task(self._purge_periodically(interval))
        try:
            yield
        finally:
            if self._purge_task is not None:
                self._purge_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._purge_task
                self._purge_task = None
            await self.aclose()

    async def purge_expired_sessions(self) -> int:
        """Delete expired and long-revoked sessions now; returns how many went."""
        async with self.sessionmaker() as session:
            deleted = await purge_expired_sessions(session, now=self.clock())
            await session.commit()
        return deleted

    async def purge_old_events(self) -> int:
        """Delete audit events older than AUDIT_RETENTION_DAYS; returns how many went."""
        before = self.clock() - timedelta(days=self.settings.audit_retention_days)
        async with self.sessionmaker() as session:
            deleted = await purge_events_before(session, before=before)
            await session.commit()
        return deleted

    async def _purge_periodically(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                sessions = await self.purge_expired_sessions()
                events = await self.purge_old_events()
            except Exception:  # the database may be away; try again next time
                logger.warning("purging expired sessions and old events failed", exc_info=True)
            else:
                logger.debug("purged %d expired sessions and %d old events", sessions, events)

    async def aclose(self) -> None:
        """Close pooled database connections and the Redis client. The kit stays usable.

        Background jobs (mail) get a few seconds to finish first.
        """
        await self.background.drain()
        await self.engine.dispose()
        if self.read_engine.pool is not self.engine.pool:
            await self.read_engine.dispose()
        self.user_cache.close()
        if self.redis is not None:
            await self.redis.aclose()

    async def db_session(self) -> AsyncIterator[AsyncSession]:
        """FastAPI dependency yielding a session; the route decides when to commit."""
        async with self.sessionmaker() as session:
            yield session

    def install(self, app: FastAPI) -> None:
        """Add the error envelope, limiter, metrics, request ids, body limit and CORS to ``app``."""
        from slowapi.errors import RateLimitExceeded  # noqa: PLC0415
        from starlette.middleware.cors import CORSMiddleware  # noqa: PLC0415

        install_error_handlers(app)
        app.state.limiter = self.limiter
        app.add_exception_handler(RateLimitExceeded, slowapi_exceeded_handler)
        settings = self.settings
        if settings.cors_origins:
            app.add_middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_credentials=settings.cors_allow_credentials,
                allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                allow_headers=["Authorization", "Content-Type", "If-None-Match", "X-Request-ID"],
                expose_headers=[
                    "ETag",
                    "Retry-After",
                    "X-Request-ID",
                    "X-RateLimit-Limit",
                    "X-RateLimit-Remaining",
                    "X-RateLimit-Reset",
                ],
            )
        app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
        app.add_middleware(MetricsMiddleware, metrics=self.metrics)
        # Added last, so it is outermost: every response, CORS and 413 included, gets an id.
        app.add_middleware(RequestContextMiddleware)
        app.state.starterkit = self
        _point_token_url_at_login(app)

    async def ping_database(self) -> bool:
        """True if the database answers ``SELECT 1`` within the health-check timeout."""
        try:
            async with asyncio.timeout(HEALTH_CHECK_TIMEOUT_SECONDS):
                async with self.engine.connect() as connection:
                    await connection.execute(text("SELECT 1"))
        except Exception as error:  # noqa: BLE001 - any failure means "down"
            logger.debug("database ping failed: %r", error)
            return False
        return True

    async def ping_redis(self) -> RedisState:
        """``"disabled"`` without REDIS_URL, else whether Redis answers PING in time."""
        if self.redis is None:
            return "disabled"
        try:
            async with asyncio.timeout(HEALTH_CHECK_TIMEOUT_SECONDS):
                await self.redis.ping()
        except Exception as error:  # noqa: BLE001 - any failure means "down"
            logger.debug("redis ping failed: %r", error)
            return "down"
        return "up"


def _point_token_url_at_login(app: FastAPI) -> None:
    """Make the OpenAPI password flow's ``tokenUrl`` the path where ``auth:login`` is mounted.

    The bearer scheme is created before anyone knows the auth router's prefix, so the schema
    is corrected when it is first generated, for whatever prefix the app used.
    """
    from starlette.routing import NoMatchFound  # noqa: PLC0415

    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        try:
            login_path = str(app.url_path_for("auth:login"))
        except NoMatchFound:
            return schema
        for scheme in schema.get("components", {}).get("securitySchemes", {}).values():
            password_flow = scheme.get("flows", {}).get("password")
            if password_flow is not None:
                password_flow["tokenUrl"] = login_path
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _create_redis(url: str) -> Redis | None:
    if not url:
        return None
    from redis.asyncio import Redis  # noqa: PLC0415 - only deployments with Redis pay for it

    # Short timeouts: a Redis outage must degrade requests, not hang them.
    return Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0)


def _resolve_secrets(settings: Settings) -> tuple[str, str]:
    secret_key = settings.secret_key.get_secret_value() if settings.secret_key else None
    refresh = (
        settings.refresh_token_secret.get_secret_value() if settings.refresh_token_secret else None
    )
    if secret_key and refresh:
        return secret_key, refresh
    # Production never gets here: Settings refuses missing secrets there.
    logger.warning(
        "STARTERKIT_SECRET_KEY or STARTERKIT_REFRESH_TOKEN_SECRET is not set; using random "
        "secrets for this process, so tokens will not survive a restart. "
        "Run `starterkit genkey --env-file .env` to keep them."
    )
    return secret_key or secrets.token_urlsafe(48), refresh or secrets.token_urlsafe(48)


def create_app(settings: Settings | None = None, *, kit: StarterKit | None = None) -> FastAPI:
    """Build the whole starterkit service.

    Args:
        settings: configuration; read from the environment and ``.env`` when omitted.
        kit: an existing runtime to serve instead (for example one with a test clock);
            its settings are used and ``settings`` must then be omitted.

    Returns:
        A FastAPI app whose routes live under ``settings.api_prefix``, with its
        :class:`StarterKit` at ``app.state.starterkit``.
    """
    if kit is not None and settings is not None:
        raise TypeError("pass settings or kit, not both")
    kit = kit or StarterKit(settings)
    docs = kit.settings.docs_enabled
    app = FastAPI(
        title="starterkit",
        version=__version__,
        lifespan=kit.lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    kit.install(app)
    prefix = kit.settings.api_prefix
    app.include_router(kit.health_router, prefix=prefix)
    app.include_router(kit.auth_router, prefix=f"{prefix}/auth")
    app.include_router(kit.users_router, prefix=f"{prefix}/users")
    app.include_router(kit.items_router, prefix=f"{prefix}/items")
    app.include_router(kit.metrics_router, prefix=prefix)
    return app
