"""The facade: :class:`StarterKit` (a runtime with its routers) and :func:`create_app`.

Everything with state hangs off one runtime made from one ``Settings`` (see
:mod:`starterkit.runtime`); this module adds the routers, installs the middleware and error
handlers on an app, and builds the whole service. Nothing is created at import time, so any
number of apps with different settings can share a process.
"""

from __future__ import annotations

import functools
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from starterkit._version import __version__
from starterkit.apidocs import build_docs_router
from starterkit.auth.router import build_auth_router
from starterkit.errors import install_error_handlers
from starterkit.health import build_health_router
from starterkit.items.router import build_items_router
from starterkit.jwks import build_jwks_router
from starterkit.lifecycle.pages import build_pages_router
from starterkit.metrics import MetricsMiddleware, build_metrics_router
from starterkit.middleware import RequestContextMiddleware, RequestSizeLimitMiddleware
from starterkit.ratelimit.limiter import slowapi_exceeded_handler
from starterkit.runtime import Runtime
from starterkit.settings import Settings
from starterkit.users.router import build_users_router


class StarterKit(Runtime):
    """A starterkit service to mount into your own FastAPI app: the runtime and its routers.

    Use it like this::

        kit = StarterKit(Settings())
        app = FastAPI(lifespan=kit.lifespan)
        kit.install(app)
        app.include_router(kit.health_router, prefix="/api")

    Creating a ``StarterKit`` opens nothing: connections are made on first use and released by
    :meth:`lifespan` (or :meth:`aclose`). Everything but the routers and :meth:`install` comes
    from :class:`~starterkit.runtime.Runtime`.
    """

    # Built on first use, each once per kit.

    @functools.cached_property
    def health_router(self) -> APIRouter:
        """``GET /health``, ``/health/live``, ``/health/ready``; mount it without a prefix."""
        return build_health_router(self)

    @functools.cached_property
    def auth_router(self) -> APIRouter:
        """The ``/auth`` routes: login, refresh, logout, sessions, password reset, verification."""
        return build_auth_router(self)

    @functools.cached_property
    def users_router(self) -> APIRouter:
        """The ``/users`` routes: registration, the caller's account, administration."""
        return build_users_router(self)

    @functools.cached_property
    def items_router(self) -> APIRouter:
        """The ``/items`` routes: the example resource."""
        return build_items_router(self)

    @functools.cached_property
    def jwks_router(self) -> APIRouter:
        """``GET /.well-known/jwks.json``, the public signing keys; mount it without a prefix."""
        return build_jwks_router(self)

    @functools.cached_property
    def pages_router(self) -> APIRouter:
        """``/reset-password`` and ``/verify-email``: the pages mailed links open; no prefix."""
        return build_pages_router(self)

    @functools.cached_property
    def metrics_router(self) -> APIRouter:
        """``GET /metrics`` in Prometheus' text format."""
        return build_metrics_router(
            self.metrics,
            token=self.settings.metrics_token.get_secret_value()
            if self.settings.metrics_token
            else None,
            open_without_token=not self.settings.is_production,
        )

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
                allow_headers=[
                    "Authorization",
                    "Content-Type",
                    "If-None-Match",
                    "X-CSRF-Token",
                    "X-Request-ID",
                ],
                expose_headers=[
                    "ETag",
                    "Retry-After",
                    "X-Request-ID",
                    "X-RateLimit-Limit",
                    "X-RateLimit-Remaining",
                    "X-RateLimit-Reset",
                ],
            )
        app.add_middleware(
            RequestSizeLimitMiddleware,
            max_body_bytes=settings.max_body_bytes,
            max_header_bytes=settings.max_header_bytes,
        )
        app.add_middleware(MetricsMiddleware, metrics=self.metrics)
        # Added last, so it is outermost: every response, CORS and 413 included, gets an id.
        app.add_middleware(RequestContextMiddleware, hsts_seconds=settings.hsts_seconds)
        app.state.starterkit = self
        _point_token_url_at_login(app)


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


def add_routes(app: FastAPI, router: APIRouter, *, prefix: str = "") -> None:
    """Add ``router``'s routes to ``app`` as the app's own routes, under ``prefix``.

    The same routes and OpenAPI document as ``app.include_router(router, prefix=prefix)``, but
    faster to reach: since FastAPI 0.160 an included router stays a nested router that is
    matched twice per request, which cost the probe about 10 µs, a quarter of its time (see
    docs/performance.md). Each route is added the way ``include_router`` itself did it before
    then, so ``app.dependency_overrides`` applies to it. Only for routers of plain API routes.
    """
    for route in router.routes:
        if not isinstance(route, APIRoute):
            raise TypeError(f"add_routes takes API routes only, not {route!r}")
        app.router.add_api_route(
            prefix + route.path,
            route.endpoint,
            response_model=route.response_model,
            status_code=route.status_code,
            tags=route.tags,
            dependencies=route.dependencies,
            summary=route.summary,
            description=route.description,
            response_description=route.response_description,
            responses=route.responses,
            deprecated=route.deprecated,
            methods=route.methods,
            operation_id=route.operation_id,
            response_model_include=route.response_model_include,
            response_model_exclude=route.response_model_exclude,
            response_model_by_alias=route.response_model_by_alias,
            response_model_exclude_unset=route.response_model_exclude_unset,
            response_model_exclude_defaults=route.response_model_exclude_defaults,
            response_model_exclude_none=route.response_model_exclude_none,
            include_in_schema=route.include_in_schema,
            response_class=route.response_class,
            name=route.name,
            route_class_override=type(route),
            callbacks=route.callbacks,
            openapi_extra=route.openapi_extra,
            generate_unique_id_function=route.generate_unique_id_function,
        )


def _split(router: APIRouter, name: str) -> tuple[APIRouter, APIRouter]:
    """Two routers: the routes of ``router`` called ``name``, and the others, in order."""
    named = [route for route in router.routes if getattr(route, "name", None) == name]
    return APIRouter(routes=named), APIRouter(routes=[r for r in router.routes if r not in named])


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
        # The pages come from build_docs_router: assets served here, not from a CDN.
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
    )
    kit.install(app)
    # Routes are matched in this order, one after another (about 1 µs each): the ones that
    # answer most requests first, as routes of the app itself: the probes, the caller's own
    # account, items, the rest of /users. No two of them share a path.
    prefix = kit.settings.api_prefix
    users_me, other_users = _split(kit.users_router, "users:me")
    add_routes(app, kit.health_router, prefix=prefix)
    add_routes(app, users_me, prefix=f"{prefix}/users")
    add_routes(app, kit.items_router, prefix=f"{prefix}/items")
    add_routes(app, other_users, prefix=f"{prefix}/users")
    app.include_router(kit.auth_router, prefix=f"{prefix}/auth")
    app.include_router(kit.metrics_router, prefix=prefix)
    app.include_router(kit.jwks_router)
    if kit.settings.pages_enabled:
        app.include_router(kit.pages_router)
    if docs:
        app.include_router(build_docs_router(openapi_url="/openapi.json", title=app.title))
    return app
