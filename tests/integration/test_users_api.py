"""Registration, the caller's account, password change and superuser administration."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from starterkit import StarterKit
from tests.support.auth import (
    API,
    PASSWORD,
    bearer,
    login,
    make_superuser,
    refresh,
    register,
    signed_up,
)

pytestmark = pytest.mark.anyio

USER_FIELDS = {
    "id",
    "email",
    "full_name",
    "is_active",
    "is_superuser",
    "is_verified",
    "has_password",
    "linked_providers",
    "created_at",
    "updated_at",
}


async def test_me_is_rendered_exactly_as_the_admin_view_of_the_same_account(
    kit: StarterKit, client: httpx.AsyncClient
) -> None:
    # /users/me renders its JSON itself; /users/{id} leaves that to FastAPI's response_model.
    alice = bearer((await signed_up(client, "alice@example.com"))["access_token"])
    await client.patch(f"{API}/users/me", json={"full_name": "Alice Ünicode"}, headers=alice)
    await make_superuser(kit, "root@example.com")
    root = bearer((await login(client, "root@example.com")).json()["access_token"])
    me = await client.get(f"{API}/users/me", headers=alice)
    assert set(me.json()) == USER_FIELDS
    seen_by_root = await client.get(f"{API}/users/{me.json()['id']}", headers=root)
    assert me.content == seen_by_root.content
    for header in ("content-type", "cache-control"):
        assert me.headers[header] == seen_by_root.headers[header], header
    assert me.headers["cache-control"] == "no-store"


async def test_registration_returns_the_user_without_secrets(client: httpx.AsyncClient) -> None:
    response = await register(client, "  New@Example.COM ", full_name="New Person")
    assert response.status_code == 201
    body = response.json()
    assert set(body) == USER_FIELDS
    assert body["email"] == "new@example.com"
    assert (body["is_active"], body["is_superuser"]) == (True, False)
    assert PASSWORD not in response.text
    assert "hash" not in response.text


@pytest.mark.parametrize("field", ["is_superuser", "is_active", "id", "token_version"])
async def test_registration_cannot_set_privileged_fields(
    client: httpx.AsyncClient, field: str
) -> None:
    payload = {"email": "sneaky@example.com", "password": PASSWORD, field: True}
    response = await client.post(f"{API}/users", json=payload)
    assert response.status_code == 422
    assert (await login(client, "sneaky@example.com")).status_code == 401


async def test_duplicate_email_is_409_in_any_case(client: httpx.AsyncClient) -> None:
    assert (await register(client, "dup@example.com")).status_code == 201
    response = await register(client, "DUP@example.com ")
    assert response.status_code == 409
    assert response.json()["code"] == "conflict"


async def test_concurrent_registrations_of_one_email_create_one_account(
    client: httpx.AsyncClient,
) -> None:
    responses = await asyncio.gather(*(register(client, "same@example.com") for _ in range(8)))
    assert sorted(r.status_code for r in responses) == [201] + [409] * 7


@pytest.mark.parametrize(
    ("password", "fragment"),
    [
        ("a" * 11, "at least 12 characters"),
        ("password1234", "too common"),
        ("Rule@Example.com", "same as the email"),
        ("a" * 257, "at most 256"),
    ],
)
async def test_password_rules_are_422_on_the_password_field(
    client: httpx.AsyncClient, password: str, fragment: str
) -> None:
    response = await register(client, "rule@example.com", password)
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation_error"
    assert body["errors"][0]["loc"] == ["body", "password"]
    assert fragment in body["detail"] or fragment in body["errors"][0]["msg"]
    # Nothing was stored: the email is still free.
    assert (await register(client, "rule@example.com")).status_code == 201


@pytest.mark.parametrize(
    "password", ["zq9-lamp-oak", "correct horse battery staple", "b" * 64, "c" * 256]
)
async def test_acceptable_passwords_register_and_log_in(
    client: httpx.AsyncClient, password: str
) -> None:
    assert (await register(client, "ok@example.com", password)).status_code == 201
    assert (await login(client, "ok@example.com", password)).status_code == 200


@pytest.mark.parametrize(
    "payload",
    [
        {"email": "nul@example.com\u0000", "password": PASSWORD},
        {"email": "nul@example.com", "password": PASSWORD, "full_name": "a\u0000b"},
        {"email": "not-an-email", "password": PASSWORD},
        {"email": "x@example.com", "password": PASSWORD, "full_name": "n" * 256},
    ],
)
async def test_invalid_registration_input_is_422(
    client: httpx.AsyncClient, payload: dict[str, str]
) -> None:
    assert (await client.post(f"{API}/users", json=payload)).status_code == 422


async def test_update_me_sets_and_clears_the_full_name(client: httpx.AsyncClient) -> None:
    tokens = await signed_up(client, "me@example.com")
    headers = bearer(tokens["access_token"])
    named = await client.patch(f"{API}/users/me", json={"full_name": "Me Myself"}, headers=headers)
    assert named.json()["full_name"] == "Me Myself"
    untouched = await client.patch(f"{API}/users/me", json={}, headers=headers)
    assert untouched.json()["full_name"] == "Me Myself"
    cleared = await client.patch(f"{API}/users/me", json={"full_name": None}, headers=headers)
    assert cleared.json()["full_name"] is None
    sneaky = await client.patch(f"{API}/users/me", json={"is_superuser": True}, headers=headers)
    assert sneaky.status_code == 422


async def test_wrong_current_password_is_400_and_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    tokens = await signed_up(client, "pw@example.com")
    response = await client.post(
        f"{API}/users/me/password",
        json={"current_password": "not my passphrase", "new_password": "a brand new passphrase"},
        headers=bearer(tokens["access_token"]),
    )
    assert response.status_code == 400
    assert response.json()["code"] == "bad_request"
    assert (await login(client, "pw@example.com")).status_code == 200
    assert (await login(client, "pw@example.com", "a brand new passphrase")).status_code == 401
    assert (
        await client.get(f"{API}/users/me", headers=bearer(tokens["access_token"]))
    ).status_code == 200


async def test_password_change_ends_every_session_and_access_token(
    client: httpx.AsyncClient,
) -> None:
    first = await signed_up(client, "change@example.com")
    second = (await login(client, "change@example.com")).json()
    weak = await client.post(
        f"{API}/users/me/password",
        json={"current_password": PASSWORD, "new_password": "short"},
        headers=bearer(first["access_token"]),
    )
    assert weak.status_code == 422
    assert weak.json()["errors"][0]["loc"] == ["body", "new_password"]

    changed = await client.post(
        f"{API}/users/me/password",
        json={"current_password": PASSWORD, "new_password": "a brand new passphrase"},
        headers=bearer(first["access_token"]),
    )
    assert changed.status_code == 204
    for tokens in (first, second):
        me = await client.get(f"{API}/users/me", headers=bearer(tokens["access_token"]))
        assert me.status_code == 401
        assert (await refresh(client, tokens["refresh_token"])).status_code == 401
    assert (await login(client, "change@example.com")).status_code == 401
    assert (await login(client, "change@example.com", "a brand new passphrase")).status_code == 200


async def test_admin_routes_are_for_superusers_only(client: httpx.AsyncClient) -> None:
    tokens = await signed_up(client, "plain@example.com")
    headers = bearer(tokens["access_token"])
    for method, path in [
        ("GET", "/users"),
        ("GET", "/users/1"),
        ("PATCH", "/users/1"),
        ("DELETE", "/users/1"),
    ]:
        response = await client.request(method, f"{API}{path}", headers=headers, json={})
        assert response.status_code == 403, (method, path)
        assert response.json()["code"] == "permission_denied"
        anonymous = await client.request(method, f"{API}{path}", json={})
        assert anonymous.status_code == 401


@pytest.fixture
async def admin_headers(client: httpx.AsyncClient, kit: StarterKit) -> dict[str, str]:
    await make_superuser(kit, "root@example.com")
    tokens = (await login(client, "root@example.com")).json()
    return bearer(tokens["access_token"])


async def test_superuser_lists_users_with_a_total(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    for n in range(3):
        await register(client, f"u{n}@example.com")
    page = await client.get(f"{API}/users", params={"limit": 2, "offset": 1}, headers=admin_headers)
    assert page.status_code == 200
    body = page.json()
    assert (body["total"], body["limit"], body["offset"]) == (4, 2, 1)
    assert [u["email"] for u in body["items"]] == ["u0@example.com", "u1@example.com"]
    for params in ({"limit": 0}, {"limit": 101}, {"offset": -1}, {"offset": 2**63}):
        assert (
            await client.get(f"{API}/users", params=params, headers=admin_headers)
        ).status_code == 422


async def test_deactivating_a_user_ends_their_tokens_at_once(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    victim = await signed_up(client, "victim@example.com")
    me = (await client.get(f"{API}/users/me", headers=bearer(victim["access_token"]))).json()
    response = await client.patch(
        f"{API}/users/{me['id']}", json={"is_active": False}, headers=admin_headers
    )
    assert response.status_code == 200
    assert response.json()["is_active"] is False
    assert (
        await client.get(f"{API}/users/me", headers=bearer(victim["access_token"]))
    ).status_code == 401
    assert (await refresh(client, victim["refresh_token"])).status_code == 401
    assert (await login(client, "victim@example.com")).status_code == 401

    reactivated = await client.patch(
        f"{API}/users/{me['id']}",
        json={"is_active": True, "is_superuser": True},
        headers=admin_headers,
    )
    assert reactivated.json()["is_superuser"] is True
    assert (await login(client, "victim@example.com")).status_code == 200


async def test_superuser_cannot_lock_themselves_out(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    me = (await client.get(f"{API}/users/me", headers=admin_headers)).json()
    for change in ({"is_active": False}, {"is_superuser": False}):
        response = await client.patch(f"{API}/users/{me['id']}", json=change, headers=admin_headers)
        assert response.status_code == 400
    assert (
        await client.delete(f"{API}/users/{me['id']}", headers=admin_headers)
    ).status_code == 400


async def test_superuser_reads_and_deletes_a_user(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    created = (await register(client, "gone@example.com")).json()
    fetched = await client.get(f"{API}/users/{created['id']}", headers=admin_headers)
    assert fetched.json() == created
    assert (
        await client.delete(f"{API}/users/{created['id']}", headers=admin_headers)
    ).status_code == 204
    assert (
        await client.get(f"{API}/users/{created['id']}", headers=admin_headers)
    ).status_code == 404
    assert (
        await client.delete(f"{API}/users/{created['id']}", headers=admin_headers)
    ).status_code == 404
    for bad in ("0", str(2**63), "abc"):
        assert (await client.get(f"{API}/users/{bad}", headers=admin_headers)).status_code == 422


async def test_openapi_documents_the_bearer_scheme_and_error_responses(
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/openapi.json")).json()
    schemes = spec["components"]["securitySchemes"]
    # One scheme: the access cookie of browser sessions is not declared (see dependencies).
    [scheme] = schemes.values()
    assert scheme["type"] == "oauth2"
    assert scheme["flows"]["password"]["tokenUrl"] == "/api/v1/auth/login"
    me = spec["paths"]["/api/v1/users/me"]["get"]
    assert "401" in me["responses"]
    assert me["security"] == [{"OAuth2PasswordBearer": []}]
    register_op = spec["paths"]["/api/v1/users"]["post"]
    assert {"409", "422"} <= set(register_op["responses"])
    login_body = spec["paths"]["/api/v1/auth/login"]["post"]["requestBody"]["content"]
    assert {"application/json", "application/x-www-form-urlencoded"} <= set(login_body)
    admin = spec["paths"]["/api/v1/users/{user_id}"]["delete"]
    assert {"401", "403", "404"} <= set(admin["responses"])
