"""Rate limits: per IP and per account, proxy-aware, shared through Redis, outage-proof."""

import uuid
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request, Response

from starterkit import Settings, StarterKit, User, create_app
from tests.conftest import SettingsFactory, app_client
from tests.support.auth import API, PASSWORD, bearer, login, refresh, register, signed_up

pytestmark = pytest.mark.anyio


@pytest.fixture
def limited_settings(settings: Settings) -> SettingsFactory:
    """Settings on the migrated test database with some values changed."""

    def factory(**changes: Any) -> Settings:
        return Settings(_env_file=None, **{**settings.model_dump(), **changes})

    return factory


def assert_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["code"] == "rate_limited"
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["x-ratelimit-remaining"] == "0"
    assert response.headers["x-request-id"]


async def test_login_is_limited_per_client_ip_with_headers(
    limited_settings: SettingsFactory,
) -> None:
    settings = limited_settings(auth_login_rate_limit="3/minute")
    async with app_client(create_app(settings)) as client:
        await register(client, "ip@example.com")
        first = await login(client, "ip@example.com")
        assert first.status_code == 200
        assert first.headers["x-ratelimit-limit"] == "3"
        assert first.headers["x-ratelimit-remaining"] == "2"
        assert int(first.headers["x-ratelimit-reset"]) > 0
        assert (await login(client, "ip@example.com", "wrong passphrase!")).status_code == 401
        assert (await login(client, "ip@example.com")).status_code == 200
        # A client cannot pick a new address with its own X-Forwarded-For.
        assert_limited(await login(client, "ip@example.com", **{"X-Forwarded-For": "203.0.113.1"}))
        assert_limited(await login(client, "other@example.com"))


async def test_trusted_proxy_forwarded_clients_are_counted_separately(
    limited_settings: SettingsFactory,
) -> None:
    settings = limited_settings(auth_login_rate_limit="2/minute", trusted_proxies=["127.0.0.1"])
    async with app_client(create_app(settings)) as client:
        for n in range(4):
            response = await login(client, "x@example.com", **{"X-Forwarded-For": f"203.0.113.{n}"})
            assert response.status_code == 401
        spoof = {"X-Forwarded-For": "198.51.100.1, 203.0.113.9"}
        assert (await login(client, "x@example.com", **spoof)).status_code == 401
        assert (await login(client, "x@example.com", **spoof)).status_code == 401
        # The right-most untrusted hop is the client, whatever it wrote to the left.
        spoof["X-Forwarded-For"] = "198.51.100.2, 203.0.113.9"
        assert_limited(await login(client, "x@example.com", **spoof))


async def test_an_ipv6_client_is_counted_by_its_network_and_mapped_ipv4_as_ipv4(
    limited_settings: SettingsFactory,
) -> None:
    settings = limited_settings(auth_login_rate_limit="2/minute", trusted_proxies=["127.0.0.1"])
    async with app_client(create_app(settings)) as client:

        async def from_ip(address: str) -> httpx.Response:
            return await login(client, "v6@example.com", **{"X-Forwarded-For": address})

        # Two addresses of one /64 share a budget; the next /64 has its own.
        assert (await from_ip("2001:db8:1:2::1")).status_code == 401
        assert (await from_ip("2001:db8:1:2:ffff::9")).status_code == 401
        assert_limited(await from_ip("2001:db8:1:2:1234::5"))
        assert (await from_ip("2001:db8:1:3::1")).status_code == 401
        # An IPv4 client writing itself as IPv4-mapped IPv6 is still the same client.
        assert (await from_ip("198.51.100.7")).status_code == 401
        assert (await from_ip("198.51.100.7")).status_code == 401
        assert_limited(await from_ip("::ffff:198.51.100.7"))


async def test_a_forwarded_address_with_a_long_zone_is_stored_without_it(
    limited_settings: SettingsFactory,
) -> None:
    # A zone id made the address longer than the 45-character ip columns: 500 on PostgreSQL.
    settings = limited_settings(trusted_proxies=["127.0.0.1"])
    async with app_client(create_app(settings)) as client:
        zoned = {"X-Forwarded-For": "fe80::1%" + "z" * 200}
        await register(client, "zone@example.com")
        assert (await login(client, "zone@example.com", "wrong guess!", **zoned)).status_code == 401
        response = await login(client, "zone@example.com", **zoned)
        assert response.status_code == 200, response.text
        sessions = await client.get(
            f"{API}/auth/sessions", headers=bearer(response.json()["access_token"])
        )
        assert [s["ip"] for s in sessions.json()] == ["fe80::1"]


async def test_failed_logins_are_limited_per_account_and_successes_do_not_count(
    limited_settings: SettingsFactory,
) -> None:
    settings = limited_settings(auth_login_account_rate_limit="3/hour")
    async with app_client(create_app(settings)) as client:
        await register(client, "victim@example.com")
        await register(client, "happy@example.com")
        for _ in range(5):
            assert (await login(client, "happy@example.com")).status_code == 200
        for _ in range(3):
            assert (
                await login(client, " Victim@example.com", "guess guess guess")
            ).status_code == 401
        # Even the right password waits now: the account is under attack.
        assert_limited(await login(client, "victim@example.com"))
        assert (await login(client, "happy@example.com")).status_code == 200


@pytest.mark.parametrize(
    "spelling",
    [
        "victim@\uff45xample.com",  # a full-width e
        "victim@example\u3002com",  # an ideographic full stop
        "VICTIM@EXAMPLE.COM ",
    ],
)
async def test_other_spellings_of_an_address_share_its_login_counter(
    limited_settings: SettingsFactory, spelling: str
) -> None:
    settings = limited_settings(auth_login_account_rate_limit="3/hour")
    async with app_client(create_app(settings)) as client:
        await register(client, "victim@example.com")
        # The spelling reaches the account: its right password logs in...
        assert (await login(client, spelling)).status_code == 200
        for _ in range(3):
            assert (await login(client, "victim@example.com", "guess guess")).status_code == 401
        # ...and once the plain spelling is locked, so is this one, and the other way round.
        assert_limited(await login(client, spelling, "guess guess"))
        assert_limited(await login(client, spelling))


async def test_refresh_register_and_password_change_are_limited(
    limited_settings: SettingsFactory,
) -> None:
    settings = limited_settings(
        auth_refresh_rate_limit="2/minute",
        auth_register_rate_limit="3/hour",
        auth_password_rate_limit="1/hour",
    )
    async with app_client(create_app(settings)) as client:
        tokens = await signed_up(client, "a@example.com")
        assert (await register(client, "b@example.com")).status_code == 201
        assert (await register(client, "b@example.com")).status_code == 409  # counts too
        assert_limited(await register(client, "c@example.com"))

        token = tokens["refresh_token"]
        for _ in range(2):
            response = await refresh(client, token)
            assert response.status_code == 200
            token = response.json()["refresh_token"]
        assert_limited(await refresh(client, token))

        headers = bearer(tokens["access_token"])
        wrong = {"current_password": "not the password", "new_password": "another passphrase"}
        first = await client.post(f"{API}/users/me/password", json=wrong, headers=headers)
        assert first.status_code == 400
        assert first.headers["x-ratelimit-remaining"] == "0"
        assert_limited(await client.post(f"{API}/users/me/password", json=wrong, headers=headers))


async def test_every_window_of_a_multi_window_limit_applies(
    limited_settings: SettingsFactory,
) -> None:
    # Before, only the first window ("5/minute") was applied and the hour never filled up.
    settings = limited_settings(auth_register_rate_limit="5/minute;2/hour")
    async with app_client(create_app(settings)) as client:
        first = await register(client, "one@example.com")
        assert first.status_code == 201
        # The headers describe the window with the fewest requests left: the hour.
        assert first.headers["x-ratelimit-limit"] == "2"
        assert first.headers["x-ratelimit-remaining"] == "1"
        assert (await register(client, "two@example.com")).status_code == 201
        refused = await register(client, "three@example.com")
        assert_limited(refused)
        assert refused.headers["x-ratelimit-limit"] == "2"


async def test_each_app_reads_its_own_limits(limited_settings: SettingsFactory) -> None:
    strict = create_app(limited_settings(auth_login_rate_limit="1/minute"))
    lenient = create_app(limited_settings(auth_login_rate_limit="50/minute"))
    async with app_client(strict) as one, app_client(lenient) as two:
        assert (await login(one, "n@example.com")).status_code == 401
        assert_limited(await login(one, "n@example.com"))
        for _ in range(3):
            assert (await login(two, "n@example.com")).status_code == 401


@pytest.fixture
def redis_settings(limited_settings: SettingsFactory, redis_url: str) -> Settings:
    return limited_settings(
        redis_url=redis_url,
        redis_key_prefix=f"test-{uuid.uuid4().hex}:",
        auth_login_rate_limit="4/minute",
    )


async def test_limits_are_shared_by_instances_using_one_redis(redis_settings: Settings) -> None:
    async with (
        app_client(create_app(redis_settings)) as one,
        app_client(create_app(redis_settings)) as two,
    ):
        for client in (one, two, one, two):
            assert (await login(client, "shared@example.com")).status_code == 401
        assert_limited(await login(one, "shared@example.com"))
        assert_limited(await login(two, "shared@example.com"))


async def test_unreachable_redis_falls_back_to_memory_limits(
    limited_settings: SettingsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    settings = limited_settings(redis_url="redis://127.0.0.1:1/0", auth_login_rate_limit="2/minute")
    async with app_client(create_app(settings)) as client:
        assert (await login(client, "down@example.com")).status_code == 401
        assert (await login(client, "down@example.com")).status_code == 401
        assert_limited(await login(client, "down@example.com"))  # never fails open
        health = await client.get(f"{API}/health")
        assert health.status_code == 200
        assert health.json()["status"] == "degraded"
    assert caplog.text.count("rate-limit storage (Redis) failed") == 1


def app_with_own_limited_route(settings: Settings) -> tuple[FastAPI, StarterKit]:
    kit = StarterKit(settings)
    app = FastAPI(lifespan=kit.lifespan)
    kit.install(app)
    app.include_router(kit.auth_router, prefix="/auth")
    app.include_router(kit.users_router, prefix="/users")

    @app.get("/hello")
    @kit.limiter.limit("2/minute")
    async def hello(
        request: Request, response: Response, user: Annotated[User, Depends(kit.current_user)]
    ) -> dict[str, Any]:
        return {"hello": user.email}

    return app, kit


async def test_kit_limiter_decorates_your_own_routes(settings: Settings) -> None:
    app, _ = app_with_own_limited_route(settings)
    async with app_client(app) as client:
        await client.post("/users", json={"email": "own@example.com", "password": PASSWORD})
        token = (
            await client.post(
                "/auth/login", json={"email": "own@example.com", "password": PASSWORD}
            )
        ).json()["access_token"]
        first = await client.get("/hello", headers=bearer(token))
        assert first.json() == {"hello": "own@example.com"}
        assert first.headers["x-ratelimit-limit"] == "2"
        assert (await client.get("/hello", headers=bearer(token))).status_code == 200
        assert_limited(await client.get("/hello", headers=bearer(token)))


async def test_kit_limiter_with_redis_down_never_500s(settings: Settings) -> None:
    app, _ = app_with_own_limited_route(
        settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    )
    async with app_client(app) as client:
        await client.post("/users", json={"email": "own@example.com", "password": PASSWORD})
        token = (
            await client.post(
                "/auth/login", json={"email": "own@example.com", "password": PASSWORD}
            )
        ).json()["access_token"]
        statuses = [
            (await client.get("/hello", headers=bearer(token))).status_code for _ in range(3)
        ]
    assert statuses == [200, 200, 429]


async def test_openapi_documents_429_on_limited_routes(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path, method in [
        ("/api/v1/auth/login", "post"),
        ("/api/v1/auth/refresh", "post"),
        ("/api/v1/users", "post"),
        ("/api/v1/users/me/password", "post"),
    ]:
        assert "429" in paths[path][method]["responses"], path
