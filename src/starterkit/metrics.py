"""Prometheus metrics of one runtime, on a registry of its own (no global state).

Requests are counted and timed by route *template* (``/api/v1/items/{item_id}``), never by raw
path, so label cardinality stays bounded; requests that match no route share the label
``unmatched``. Rate-limit rejections and cache hits/misses are read from the runtime's counters
at scrape time.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from starterkit.cache import ResponseCache
from starterkit.exceptions import AuthenticationFailed, NotFound
from starterkit.logs import ACCESS_LOGGER, AccessLine, write_access_line
from starterkit.ratelimit.counters import RateLimits

# One line per request when enabled (``serve`` enables it; see starterkit.logs).
_access = logging.getLogger(ACCESS_LOGGER)

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Label sets whose metric children are kept at hand (an unmatched path is one "unmatched").
MAX_LABEL_SETS = 1000
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _RuntimeCollector(Collector):
    """Exposes counters the runtime keeps itself (limits, cache) at scrape time."""

    def __init__(self, rate_limits: RateLimits, cache: ResponseCache) -> None:
        self._rate_limits = rate_limits
        self._cache = cache

    def collect(self) -> Iterable[Metric]:
        rejections = CounterMetricFamily(
            "starterkit_rate_limit_rejections",
            "Requests refused with 429, by limit.",
            labels=["limit"],
        )
        for name, count in sorted(self._rate_limits.rejections.items()):
            rejections.add_metric([name], count)
        yield rejections
        cache = CounterMetricFamily(
            "starterkit_cache_requests", "Item cache lookups, by result.", labels=["result"]
        )
        cache.add_metric(["hit"], self._cache.hits)
        cache.add_metric(["miss"], self._cache.misses)
        yield cache


class Metrics:
    """The registry and HTTP metrics of one runtime."""

    def __init__(self, rate_limits: RateLimits, cache: ResponseCache) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "starterkit_http_requests",
            "HTTP requests, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "starterkit_http_request_duration_seconds",
            "Time to the end of the response, by method and route template.",
            ["method", "route"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_RuntimeCollector(rate_limits, cache))
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request and time it."""
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            # prometheus-client finds a label set's child under a lock each time; routes,
            # methods and statuses are few, so each combination's pair is looked up once.
            children = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
            if len(self._children) < MAX_LABEL_SETS:
                self._children[key] = children
        counter, histogram = children
        counter.inc()
        histogram.observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


def route_label(scope: Scope) -> str:
    """The full route template that handled the request, or ``unmatched``.

    A route of an included router may know only its own part of the template
    (``/{item_id}``); the prefix in front of it is literal text the router matched, so it is
    taken from the request path.
    """
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not isinstance(template, str):
        return "unmatched"
    path: object = scope.get("path", "")
    if template == path or not isinstance(path, str):  # the first: a route of the app itself
        return template
    try:
        rendered = template.format(**scope.get("path_params", {}))
    except (KeyError, IndexError, ValueError):
        return template
    if not rendered:  # the route is its router's root: the whole path is literal prefix
        return path
    if path.endswith(rendered):
        return path[: len(path) - len(rendered)] + template
    return template


class MetricsMiddleware:
    """Counts and times every HTTP request (pure ASGI, a few operations per request)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            elapsed = time.perf_counter() - start
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            route = route_label(scope)
            self.metrics.record(method, route, status, elapsed)
            if _access.isEnabledFor(logging.INFO):
                client = (scope.get("client") or ("-",))[0]
                line = AccessLine(client, method, route, status, round(elapsed * 1000, 2))
                write_access_line(_access, line)


def build_metrics_router(
    metrics: Metrics,
    *,
    token: str | None = None,
    open_without_token: bool = True,
    tags: Sequence[str] = ("operations",),
) -> APIRouter:
    """``GET /metrics`` of ``metrics`` (a runtime's); mount it where your scraper looks.

    Args:
        metrics: what to expose.
        token: when set, requests need ``Authorization: Bearer <token>`` (401 otherwise).
        open_without_token: without a token, serve everyone (True) or answer 404 (False,
            production's default: metrics tell outsiders about traffic and errors).
        tags: OpenAPI tags of the route.
    """
    router = APIRouter(tags=list(tags))

    @router.get(
        "/metrics",
        name="metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Metrics."}},
    )
    async def read_metrics(request: Request) -> Response:
        """Prometheus metrics of this process."""
        if token is None and not open_without_token:
            raise NotFound
        if token is not None and not _bearer_matches(request, token):
            raise AuthenticationFailed("This needs the metrics token as a bearer token.")
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return router


def _bearer_matches(request: Request, token: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )
