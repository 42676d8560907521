"""The runtime of one service: everything one :class:`Settings` owns, below the routers.

A :class:`Runtime` holds the engines and session factory, the password hasher, the token
services, the rate-limit counters, the response cache, hooks, mail and background jobs, and
builds the dependencies routes use (the signed-in user, a database session, rate limits, the
request's origin for the audit log). Routers take a runtime; they never import
:mod:`starterkit.app`, whose :class:`~starterkit.app.StarterKit` adds the routers to it.

Nothing is created at import time, so any number of runtimes with different settings can share
a process, and creating one opens nothing: connections are made on first use.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import hmac
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

import anyio.to_thread
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection, Request

from starterkit.audit import Origin, purge_events_before
from starterkit.auth.browser import BrowserSessions
from starterkit.auth.dependencies import (
    UserDependency,
    attached_to_session,
    build_user_dependency,
)
from starterkit.auth.passwords import PasswordHasher
from starterkit.auth.service import SessionLifetimes, purge_expired_sessions
from starterkit.auth.tokens import Clock, TokenService
from starterkit.auth.user_cache import StampSource, UserCache, UsersVersion
from starterkit.auth.users_listener import UsersListener, asyncpg_dsn
from starterkit.background import BackgroundJobs
from starterkit.cache import MemoryBackend, RedisBackend, ResponseCache
from starterkit.clientip import client_limit_key, origin_of
from starterkit.database_url import DatabaseKind
from starterkit.db import migrate
from starterkit.db.base import utcnow
from starterkit.db.engine import (
    create_autocommit_engine,
    create_engine,
    create_read_engine,
    create_sessionmaker,
    sqlite_file_of,
)
from starterkit.encryption import SecretBox, derived_key
from starterkit.errors import is_schema_error
from starterkit.hooks import Hooks
from starterkit.installation import InstallationId
from starterkit.lifecycle.tokens import AccountTokens, build_account_tokens
from starterkit.mail import build_mailer
from starterkit.metrics import Metrics
from starterkit.mfa.factors import MFAKeys
from starterkit.ratelimit.counters import RateLimits
from starterkit.ratelimit.dependencies import (
    KeyFunction,
    LimitDependency,
    limit_per_client,
    limit_per_user,
    limit_route,
)
from starterkit.ratelimit.limiter import build_limiter
from starterkit.settings import Settings
from starterkit.signing.keyring import Keyring

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from slowapi import Limiter

    from starterkit.oauth.clients import ProviderClient

logger = logging.getLogger("starterkit")

HEALTH_CHECK_TIMEOUT_SECONDS = 2.0

RedisState = Literal["up", "down", "disabled"]
SchemaState = Literal["ok", "missing", "behind", "unknown"]
_CURRENT_REVISIONS = text("SELECT version_num FROM alembic_version")


class Runtime:
    """What one starterkit service owns, built from one :class:`Settings`.

    :class:`~starterkit.app.StarterKit` is a runtime with routers; use that one in apps.
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
        # For starterkit's own one-statement writes (creating an item).
        self.autocommit_engine = create_autocommit_engine(self.settings, self.engine)
        self.users_listener = _users_listener(self.settings)
        self.user_cache = UserCache(self.read_engine, stamps=_user_stamps(self.settings, self))
        self.redis: Redis | None = _create_redis(self.settings.redis_url)
        # Scopes the keys kept in a shared Redis to this database (see starterkit.installation).
        self.installation = InstallationId(self.read_engine)
        namespace = self.installation.get if self.redis is not None else None
        self.password_hasher = PasswordHasher()
        self.hooks = Hooks()
        self.background = BackgroundJobs()
        self.mailer = build_mailer(self.settings)
        self.cache = ResponseCache(
            RedisBackend(self.redis) if self.redis is not None else MemoryBackend(),
            ttl_seconds=self.settings.cache_ttl_seconds,
            prefix=self.settings.redis_key_prefix,
            namespace=namespace,
        )
        self.rate_limits = RateLimits(
            self.redis,
            redis_url=self.settings.redis_url,
            key_prefix=self.settings.redis_key_prefix,
            namespace=namespace,
        )
        self.metrics = Metrics(self.rate_limits, self.cache)
        self.session_lifetimes = SessionLifetimes(
            idle=timedelta(days=self.settings.refresh_token_expire_days),
            absolute=timedelta(days=self.settings.session_max_age_days),
            reuse_grace=timedelta(seconds=self.settings.refresh_reuse_grace_seconds),
        )
        self.current_user = self.require_user()
        self.current_superuser = self.require_user(superuser=True)
        self.attached_user = self.require_user(attached=True)
        self._purge_task: asyncio.Task[None] | None = None
        self._applied: frozenset[str] | None = None  # revisions last found up to date

    # --- dependencies ---------------------------------------------------------------------

    def require_user(
        self,
        *,
        active: bool = True,
        verified: bool = False,
        superuser: bool = False,
        mfa: bool = False,
        attached: bool = False,
    ) -> UserDependency:
        """Build a dependency that returns the signed-in user meeting these requirements.

        ``kit.current_user`` is ``require_user()``; ``kit.current_superuser`` is
        ``require_user(superuser=True)``; ``kit.attached_user`` is
        ``require_user(attached=True)``. Missing or bad credentials give 401; a user who
        lacks a required property gets 403.

        Args:
            active: refuse deactivated accounts (401).
            verified: refuse accounts whose email is not verified (403).
            superuser: refuse accounts that are not superusers (403); with
                MFA_REQUIRED_FOR_SUPERUSERS also logins without a second factor.
            mfa: refuse logins without a second factor (403 ``mfa_required``).
            attached: return the user added to the request's :meth:`db_session`, for routes
                that change it and commit; otherwise it is detached, which is cheaper to read.
        """
        mfa = mfa or (superuser and self.settings.mfa_required_for_superusers)
        dependency = build_user_dependency(
            self,
            token_url=self.token_url,
            active=active,
            verified=verified,
            superuser=superuser,
            mfa=mfa,
            now=self._now_seconds,
        )
        return attached_to_session(dependency, self.db_session) if attached else dependency

    def require_recent_auth(
        self, max_age: timedelta | None = None, *, mfa: bool = False, attached: bool = False
    ) -> UserDependency:
        """Build a dependency for sensitive routes: the signed-in user, whose session proved
        who it is at most ``max_age`` ago (default RECENT_AUTH_MAX_AGE_MINUTES).

        An older authentication gets 403 ``reauthentication_required``: the client calls
        ``POST /auth/reauthenticate`` with the password or a code and retries with the new
        access token. ``mfa`` also asks for a login with a second factor.
        """
        if max_age is None:
            max_age = timedelta(minutes=self.settings.recent_auth_max_age_minutes)
        dependency = build_user_dependency(
            self,
            token_url=self.token_url,
            mfa=mfa,
            recent_auth_seconds=max_age.total_seconds(),
            now=self._now_seconds,
        )
        return attached_to_session(dependency, self.db_session) if attached else dependency

    def _now_seconds(self) -> float:
        return self.clock().timestamp()

    async def db_session(self) -> AsyncIterator[AsyncSession]:
        """FastAPI dependency yielding a session; the route decides when to commit."""
        async with self.sessionmaker() as session:
            yield session

    def request_origin(self, connection: HTTPConnection) -> Origin:
        """FastAPI dependency: the client IP and user agent of a request, for the audit log."""
        return origin_of(connection, self.settings.trusted_proxies)

    def limit_per_client(self, name: str, limit_text: str) -> LimitDependency:
        """A dependency counting requests against ``limit_text`` per client IP."""
        return limit_per_client(
            self.rate_limits,
            self.settings.trusted_proxies,
            name,
            limit_text,
            ipv6_prefix=self.settings.ipv6_rate_limit_prefix,
        )

    def limit_per_user(self, name: str, limit_text: str) -> LimitDependency:
        """A dependency counting the signed-in user's requests against ``limit_text``."""
        return limit_per_user(self.rate_limits, self.current_user, name, limit_text)

    def rate_limit(
        self,
        limit: str,
        *,
        key: Literal["ip", "user"] | KeyFunction = "ip",
        name: str | None = None,
    ) -> LimitDependency:
        """A dependency that rate-limits the route it is on, on the built-in limits' counters.

        ``@app.get("/search", dependencies=[Depends(kit.rate_limit("10/minute"))])``: every
        window of ``limit`` applies; responses carry ``X-RateLimit-*``, a refusal is 429 in
        the error envelope with ``Retry-After``; counters are shared through Redis and fall
        back to memory when it is away. It works on any route, whatever its parameters.

        Args:
            limit: e.g. ``"10/minute"`` or ``"10/second;100/minute"``.
            key: ``"ip"`` counts per client address (trusted-proxy aware, an IPv6 client by
                its network), ``"user"`` per signed-in user (401 without one), or a function
                of the request (sync or async) returning the key.
            name: share one counter between the routes that give the same name; by default
                each route (method and path) has its own.
        """
        if key == "user":
            return limit_route(self.rate_limits, limit, current_user=self.current_user, name=name)
        if key == "ip":
            key = self._client_key
        return limit_route(self.rate_limits, limit, key=key, name=name)

    def _client_key(self, request: Request) -> str:
        settings = self.settings
        key = client_limit_key(request, settings.trusted_proxies, settings.ipv6_rate_limit_prefix)
        return f"ip:{key}"

    @functools.cached_property
    def limiter(self) -> Limiter:
        """A slowapi ``Limiter`` on this runtime's storage and client-IP key.

        Decorate your own routes with ``@kit.limiter.limit("10/minute")`` (the endpoint needs
        a ``request: Request`` parameter, and ``response: Response`` for the headers); 429s
        use the error envelope. ``kit.install`` registers it on the app.
        """
        return build_limiter(self.settings)

    # --- tokens ---------------------------------------------------------------------------

    @functools.cached_property
    def tokens(self) -> TokenService:
        """Issues and verifies this runtime's access and refresh tokens."""
        secret_key, refresh_secret = self.token_secrets
        settings = self.settings
        access_ttl = timedelta(minutes=settings.access_token_expire_minutes)
        keyring = None
        if settings.jwt_algorithm != "HS256":
            keyring = Keyring(
                self.sessionmaker,
                algorithm=settings.jwt_algorithm,
                box=lambda: self.mfa_keys.box,
                # A retired key verifies until its last tokens (skew allowed) have expired.
                token_lifetime=access_ttl + timedelta(seconds=settings.clock_skew_seconds),
                refresh_seconds=settings.keyset_refresh_seconds,
                create_missing=not settings.is_production,
                clock=self.clock,
            )
        return TokenService(
            secret_key=secret_key,
            refresh_secret=refresh_secret,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            access_ttl=access_ttl,
            leeway_seconds=settings.clock_skew_seconds,
            clock=self.clock,
            keyring=keyring,
        )

    @functools.cached_property
    def account_tokens(self) -> AccountTokens:
        """Issues and checks the password-reset and verification tokens of mailed links."""
        return build_account_tokens(self.settings, self.token_secrets[0], clock=self.clock)

    @functools.cached_property
    def mfa_keys(self) -> MFAKeys:
        """The keys of the second factors: ENCRYPTION_KEYS (or one derived from SECRET_KEY)
        for TOTP secrets, and a key for the HMACs of recovery codes and mfa_tokens."""
        secret_key, refresh_secret = self.token_secrets
        keys = [key.get_secret_value() for key in self.settings.encryption_keys]
        return MFAKeys(
            box=SecretBox(keys or [derived_key(secret_key)]),
            hash_key=hmac.new(refresh_secret.encode(), b"starterkit mfa", "sha256").digest(),
            issuer=self.settings.mfa_issuer,
        )

    @functools.cached_property
    def browser_sessions(self) -> BrowserSessions:
        """Sets the browser-session cookies and checks their CSRF tokens and origins."""
        settings = self.settings
        secret_key = self.token_secrets[0].encode()
        return BrowserSessions(
            csrf_key=hmac.new(secret_key, b"starterkit csrf", "sha256").digest(),
            trusted_origins=[*settings.cors_origins, settings.public_url],
            cookie_domain=settings.cookie_domain,
            secure=settings.cookie_secure,
            development=settings.environment == "development",
        )

    @functools.cached_property
    def oauth_clients(self) -> dict[str, ProviderClient]:
        """The clients of the OAUTH_PROVIDERS, by name (nothing is fetched until first use)."""
        from starterkit.oauth.clients import build_client  # noqa: PLC0415 - Authlib is heavy

        return {
            name: build_client(config) for name, config in self.settings.oauth_providers.items()
        }

    @functools.cached_property
    def token_secrets(self) -> tuple[str, str]:
        """``(SECRET_KEY, REFRESH_TOKEN_SECRET)``; random per process if unset in development."""
        return _resolve_secrets(self.settings)

    # --- lifetime -------------------------------------------------------------------------

    @asynccontextmanager
    async def lifespan(self, _app: Any = None) -> AsyncIterator[None]:
        """Lifespan for ``FastAPI(lifespan=kit.lifespan)``; releases connections on shutdown.

        With a lifespan of your own, nest it: ``async with kit.lifespan(app): yield``.
        """
        await self._read_signing_keys()
        if self.users_listener is not None:
            await self.users_listener.start()
        _freeze_startup_heap()
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

    async def _read_signing_keys(self) -> None:
        """Read the signing keys before the first request (and make the first key outside
        production), so no request waits for that."""
        try:
            await self.tokens.ready()
        except Exception as error:  # noqa: BLE001 - the database may be away or unmigrated
            logger.debug("signing keys not read at start-up: %r", error)

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
        for engine in (self.read_engine, self.autocommit_engine):
            if engine.pool is not self.engine.pool:
                await engine.dispose()
        if self.users_listener is not None:
            await self.users_listener.stop()
        self.user_cache.close()
        if self.redis is not None:
            await self.redis.aclose()

    # --- health ---------------------------------------------------------------------------

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

    async def schema_state(self) -> SchemaState:
        """``"ok"`` when the database is at the latest migrations, else what is wrong.

        ``"missing"``: no migration was ever applied; ``"behind"``: some are pending;
        ``"unknown"``: the database could not be asked. The latest revisions are read from the
        migration scripts when the database's revisions change.
        """
        try:
            async with asyncio.timeout(HEALTH_CHECK_TIMEOUT_SECONDS):
                async with self.engine.connect() as connection:
                    found = await connection.execute(_CURRENT_REVISIONS)
                    current = {str(row[0]) for row in found}
        except Exception as error:  # noqa: BLE001 - reported as a state, not raised
            return "missing" if is_schema_error(error) else "unknown"
        if not current:
            return "missing"
        if frozenset(current) != self._applied:
            if not await anyio.to_thread.run_sync(migrate.up_to_date, self.settings, current):
                return "behind"
            self._applied = frozenset(current)
        return "ok"

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


_heap_frozen = False


def _freeze_startup_heap() -> None:
    """Once per process, when the first runtime starts: move every object alive now (modules,
    routes, schemas, mappers) out of the garbage collector's sight.

    They live as long as the process, yet each full collection walked all of them: on a
    served cache hit that was a pause of about 40 ms every second or so, the whole p99 of
    the route (docs/performance.md). Only the first start freezes, so a process that builds
    many apps (a test suite) freezes one app's worth, not all of them.
    """
    global _heap_frozen  # noqa: PLW0603 - one process-wide step, by design
    if _heap_frozen:
        return
    _heap_frozen = True
    gc.collect()
    gc.freeze()


def _users_listener(settings: Settings) -> UsersListener | None:
    """On PostgreSQL with USER_CACHE on: the listener for changes of users rows."""
    if not settings.user_cache or settings.database_kind is not DatabaseKind.POSTGRESQL:
        return None
    return UsersListener(asyncpg_dsn(settings.database_url))


def _user_stamps(settings: Settings, runtime: Runtime) -> StampSource | None:
    """What tells the user cache that users rows changed; None turns the cache off."""
    if not settings.user_cache:
        return None
    if runtime.users_listener is not None:
        return runtime.users_listener
    path = sqlite_file_of(settings) if settings.sqlite_fast_paths else None
    return UsersVersion(path) if path is not None else None


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
