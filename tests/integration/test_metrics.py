"""/metrics: Prometheus text labelled by route template, with limit and cache counters."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from starterkit import Settings, create_app
from tests.conftest import app_client
from tests.support.auth import API, bearer, login, signed_up

pytestmark = pytest.mark.anyio


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_count_requests_by_route_template(settings: Settings) -> None:
    limited = Settings(
        _env_file=None, **{**settings.model_dump(), "auth_login_rate_limit": "1/minute"}
    )
    async with app_client(create_app(limited)) as client:
        headers = bearer((await signed_up(client, "m@example.com"))["access_token"])
        item = (await client.post(f"{API}/items", json={"title": "x"}, headers=headers)).json()
        for _ in range(3):
            await client.get(f"{API}/items/{item['id']}", headers=headers)
        await client.get(f"{API}/items/987654", headers=headers)
        for path in ("/nope/1", "/nope/2", "/nope/3"):
            await client.get(path)
        assert (await login(client, "m@example.com")).status_code == 429

        response = await client.get(f"{API}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    route = f"{API}/items/{{item_id}}"
    ok = (
        "starterkit_http_requests_total",
        (("method", "GET"), ("route", route), ("status", "200")),
    )
    missing = (
        "starterkit_http_requests_total",
        (("method", "GET"), ("route", route), ("status", "404")),
    )
    unmatched = (
        "starterkit_http_requests_total",
        (("method", "GET"), ("route", "unmatched"), ("status", "404")),
    )
    assert found[ok] == 3
    created = (("method", "POST"), ("route", f"{API}/items"), ("status", "201"))
    assert found[("starterkit_http_requests_total", created)] == 1
    assert found[missing] == 1
    assert found[unmatched] == 3  # raw paths never become labels
    assert not any("/nope/" in str(labels) for _, labels in found)
    histogram = (
        "starterkit_http_request_duration_seconds_count",
        (("method", "GET"), ("route", route)),
    )
    assert found[histogram] == 4
    assert found[("starterkit_rate_limit_rejections_total", (("limit", "login"),))] == 1
    assert found[("starterkit_cache_requests_total", (("result", "hit"),))] == 2
    assert found[("starterkit_cache_requests_total", (("result", "miss"),))] >= 1


async def test_each_app_has_its_own_registry(settings: Settings) -> None:
    one, two = create_app(settings), create_app(settings)
    async with app_client(one) as first, app_client(two) as second:
        for _ in range(3):
            await first.get(f"{API}/health/live")
        text = (await second.get(f"{API}/metrics")).text
    assert f'route="{API}/health/live"' not in text


async def test_metrics_are_documented(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert f"{API}/metrics" in paths


PRODUCTION: dict[str, Any] = {
    "environment": "production",
    "database_url": "postgresql://app@127.0.0.1:1/app",  # never connected to here
    "secret_key": "s" * 20 + "0123456789abcdefghijkl",
    "refresh_token_secret": "r" * 20 + "0123456789abcdefghijkl",
}


async def test_production_hides_metrics_and_docs_unless_asked() -> None:
    app = create_app(Settings(_env_file=None, **PRODUCTION))
    async with app_client(app) as client:
        for path in ("/api/v1/metrics", "/docs", "/redoc", "/openapi.json"):
            response = await client.get(path)
            assert response.status_code == 404, path
            assert response.json()["code"] == "not_found"
    shown = create_app(Settings(_env_file=None, **PRODUCTION, docs_enabled=True))
    async with app_client(shown) as client:
        assert (await client.get("/openapi.json")).status_code == 200


@pytest.mark.parametrize("environment", ["development", "production"])
async def test_a_metrics_token_is_required_wherever_it_is_set(environment: str) -> None:
    values: dict[str, Any] = {**PRODUCTION, "environment": environment, "metrics_token": "m" * 40}
    app = create_app(Settings(_env_file=None, **values))
    async with app_client(app) as client:
        missing = await client.get("/api/v1/metrics")
        assert missing.status_code == 401
        assert missing.json()["code"] == "auth_error"
        wrong = await client.get("/api/v1/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = await client.get("/api/v1/metrics", headers={"Authorization": f"Bearer {'m' * 40}"})
        assert right.status_code == 200
        assert "starterkit_http_requests" in right.text
