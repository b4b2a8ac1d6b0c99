"""The admin users API of seed 004: /api/v1/admin/users[/me|/{user_id}]."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import PASSWORD, auth, make_user
from tollgate.core.runtime import Runtime
from tollgate.identity.models import Role, User

USERS = "/api/v1/admin/users"
ME = f"{USERS}/me"
LOGIN = "/api/v1/auth/login"
NEW_PASSWORD = "a-brand-new-passphrase"


async def token_user(runtime: Runtime, **fields: Any) -> User:
    """A stored user without a password, who signs in by token only (no argon2 work)."""
    return await make_user(runtime, password="", **fields)


def new_user(**overrides: Any) -> dict[str, Any]:
    """A create-user body."""
    return {"username": "newbie", "email": "newbie@example.com", "password": NEW_PASSWORD} | (
        overrides
    )


def assert_no_password(response: httpx.Response, *passwords: str) -> None:
    assert "password" not in response.text
    assert "argon2" not in response.text
    for password in (PASSWORD, NEW_PASSWORD, *passwords):
        assert password not in response.text


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["detail"]["code"] == code


async def superuser_of(runtime: Runtime) -> tuple[User, dict[str, str]]:
    user = await token_user(runtime, username="root", is_superuser=True)
    return user, auth(runtime, user)


async def login(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post(LOGIN, data={"username": username, "password": password})


async def test_me_returns_the_caller_without_password(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await token_user(runtime, username="plain")
    response = await client.get(ME, headers=auth(runtime, user))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == user.id
    assert body["username"] == "plain"
    assert body["email"] == "plain@example.com"
    assert body["role"] == Role.USER
    assert body["is_superuser"] is False
    assert body["is_active"] is True
    assert_no_password(response)


async def test_admin_lists_users_and_filters_by_role(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    admin = await token_user(runtime, username="op", role=Role.ADMIN)
    plain = await token_user(runtime, username="plain")
    response = await client.get(USERS, headers=auth(runtime, admin))
    assert response.status_code == 200, response.text
    assert [u["id"] for u in response.json()] == [admin.id, plain.id]
    assert_no_password(response)

    admins = await client.get(USERS, params={"role": "admin"}, headers=auth(runtime, admin))
    assert [u["id"] for u in admins.json()] == [admin.id]
    page = await client.get(USERS, params={"limit": 1, "offset": 1}, headers=auth(runtime, admin))
    assert [u["id"] for u in page.json()] == [plain.id]
    bad = await client.get(USERS, params={"role": "root"}, headers=auth(runtime, admin))
    assert bad.status_code == 422


async def test_plain_user_cannot_list_users(client: httpx.AsyncClient, runtime: Runtime) -> None:
    user = await token_user(runtime)
    assert_error(await client.get(USERS, headers=auth(runtime, user)), 403, "permission_denied")


async def test_listing_users_needs_a_token(client: httpx.AsyncClient) -> None:
    assert (await client.get(USERS)).status_code == 401


async def test_user_created_without_a_role_is_a_plain_user_who_can_sign_in(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, headers = await superuser_of(runtime)
    body = new_user(email="Newbie@Example.com", display_name="New Bie")
    response = await client.post(USERS, json=body, headers=headers)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["username"] == "newbie"
    assert created["email"] == "newbie@example.com"
    assert created["display_name"] == "New Bie"
    assert created["role"] == Role.USER
    assert created["is_superuser"] is False
    assert_no_password(response)

    signed_in = await login(client, "newbie", NEW_PASSWORD)
    assert signed_in.status_code == 200, signed_in.text


async def test_superuser_creates_an_admin_when_asked(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, headers = await superuser_of(runtime)
    response = await client.post(USERS, json=new_user(role="admin"), headers=headers)
    assert response.status_code == 201, response.text
    assert response.json()["role"] == Role.ADMIN
    assert response.json()["is_superuser"] is False


async def test_superuser_flag_makes_the_new_user_an_admin(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, headers = await superuser_of(runtime)
    response = await client.post(
        USERS, json=new_user(role="user", is_superuser=True), headers=headers
    )
    assert response.status_code == 201, response.text
    assert response.json()["role"] == Role.ADMIN
    assert response.json()["is_superuser"] is True


async def test_plain_admin_cannot_create_change_or_delete_users(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    admin = await token_user(runtime, username="op", role=Role.ADMIN)
    other = await token_user(runtime, username="other")
    headers = auth(runtime, admin)
    assert_error(
        await client.post(USERS, json=new_user(), headers=headers), 403, "permission_denied"
    )
    changed = await client.put(f"{USERS}/{other.id}", json={"role": "admin"}, headers=headers)
    assert_error(changed, 403, "permission_denied")
    assert_error(
        await client.delete(f"{USERS}/{other.id}", headers=headers), 403, "permission_denied"
    )
    promoted = await client.put(f"{USERS}/{admin.id}", json={"is_superuser": True}, headers=headers)
    assert_error(promoted, 403, "permission_denied")

    still = await client.get(USERS, headers=headers)
    assert {u["username"]: u["role"] for u in still.json()} == {"op": "admin", "other": "user"}


@pytest.mark.parametrize(
    "clash",
    [
        {"username": "taken", "email": "fresh@example.com"},
        {"username": "fresh", "email": "taken@example.com"},
        {"username": "fresh", "email": "TAKEN@Example.com"},
    ],
)
async def test_duplicate_username_or_email_is_a_conflict(
    client: httpx.AsyncClient, runtime: Runtime, clash: dict[str, str]
) -> None:
    _, headers = await superuser_of(runtime)
    await token_user(runtime, username="taken", email="taken@example.com")
    response = await client.post(USERS, json=new_user(**clash), headers=headers)
    assert_error(response, 409, "user_exists")
    names = [u["username"] for u in (await client.get(USERS, headers=headers)).json()]
    assert names == ["root", "taken"]


@pytest.mark.parametrize(
    "body",
    [
        new_user(password="short"),
        new_user(username="no spaces allowed"),
        new_user(username="ab"),
        new_user(email="not-an-email"),
        new_user(role="superuser"),
        new_user(password_hash="x"),
    ],
)
async def test_invalid_new_user_is_refused(
    client: httpx.AsyncClient, runtime: Runtime, body: dict[str, Any]
) -> None:
    _, headers = await superuser_of(runtime)
    response = await client.post(USERS, json=body, headers=headers)
    assert_error(response, 422, "validation_error")
    assert len((await client.get(USERS, headers=headers)).json()) == 1


async def test_superuser_updates_a_user_and_the_new_password_works(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, headers = await superuser_of(runtime)
    user = await make_user(runtime, username="changing")
    change = {
        "email": "Changed@Example.com",
        "display_name": "Changed",
        "password": NEW_PASSWORD,
        "role": "admin",
    }
    response = await client.put(f"{USERS}/{user.id}", json=change, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["email"] == "changed@example.com"
    assert body["display_name"] == "Changed"
    assert body["role"] == Role.ADMIN
    assert_no_password(response)

    assert (await login(client, "changing", PASSWORD)).status_code == 401
    assert (await login(client, "changing", NEW_PASSWORD)).status_code == 200
    assert (await login(client, "changed@example.com", NEW_PASSWORD)).status_code == 200


async def test_update_leaves_omitted_fields_alone(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, headers = await superuser_of(runtime)
    user = await make_user(runtime, username="steady", role=Role.ADMIN)
    response = await client.put(
        f"{USERS}/{user.id}", json={"display_name": "Steady"}, headers=headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["email"] == "steady@example.com"
    assert response.json()["role"] == Role.ADMIN
    assert (await login(client, "steady", PASSWORD)).status_code == 200


async def test_update_to_an_email_in_use_is_a_conflict(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, headers = await superuser_of(runtime)
    await token_user(runtime, username="first", email="first@example.com")
    second = await token_user(runtime, username="second")
    response = await client.put(
        f"{USERS}/{second.id}", json={"email": "FIRST@example.com"}, headers=headers
    )
    assert_error(response, 409, "user_exists")
    me = await client.get(ME, headers=auth(runtime, second))
    assert me.json()["email"] == "second@example.com"


async def test_deactivated_user_can_no_longer_sign_in_or_use_tokens(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, headers = await superuser_of(runtime)
    user = await make_user(runtime, username="leaving")
    token_headers = auth(runtime, user)
    response = await client.put(f"{USERS}/{user.id}", json={"is_active": False}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["is_active"] is False
    assert (await login(client, "leaving", PASSWORD)).status_code == 401
    assert (await client.get(ME, headers=token_headers)).status_code == 401


@pytest.mark.parametrize(
    "change", [{"is_superuser": False}, {"role": "user"}, {"is_active": False}]
)
async def test_superuser_cannot_demote_or_deactivate_themselves(
    client: httpx.AsyncClient, runtime: Runtime, change: dict[str, Any]
) -> None:
    root, headers = await superuser_of(runtime)
    response = await client.put(f"{USERS}/{root.id}", json=change, headers=headers)
    assert_error(response, 409, "cannot_demote_self")
    me = (await client.get(ME, headers=headers)).json()
    assert (me["role"], me["is_superuser"], me["is_active"]) == ("admin", True, True)


async def test_superuser_may_change_their_own_details(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    root, headers = await superuser_of(runtime)
    response = await client.put(
        f"{USERS}/{root.id}", json={"display_name": "Root", "is_superuser": True}, headers=headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["display_name"] == "Root"


async def test_superuser_demotes_another_superuser(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, headers = await superuser_of(runtime)
    other = await token_user(runtime, username="other-root", is_superuser=True)
    response = await client.put(
        f"{USERS}/{other.id}", json={"is_superuser": False}, headers=headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["is_superuser"] is False
    created = await client.post(USERS, json=new_user(), headers=auth(runtime, other))
    assert_error(created, 403, "permission_denied")


async def test_superuser_deletes_a_user(client: httpx.AsyncClient, runtime: Runtime) -> None:
    _, headers = await superuser_of(runtime)
    user = await make_user(runtime, username="doomed")
    response = await client.delete(f"{USERS}/{user.id}", headers=headers)
    assert response.status_code == 204, response.text
    assert response.content == b""
    names = [u["username"] for u in (await client.get(USERS, headers=headers)).json()]
    assert names == ["root"]
    assert_error(await client.delete(f"{USERS}/{user.id}", headers=headers), 404, "user_not_found")
    assert (await login(client, "doomed", PASSWORD)).status_code == 401


async def test_superuser_cannot_delete_themselves(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    root, headers = await superuser_of(runtime)
    response = await client.delete(f"{USERS}/{root.id}", headers=headers)
    assert_error(response, 409, "cannot_delete_self")
    assert (await client.get(ME, headers=headers)).status_code == 200


@pytest.mark.parametrize("user_id", ["0", "-1", "99999999999", "2147483648", "abc"])
async def test_bad_user_ids_are_refused_as_invalid(
    client: httpx.AsyncClient, runtime: Runtime, user_id: str
) -> None:
    _, headers = await superuser_of(runtime)
    put = await client.put(f"{USERS}/{user_id}", json={"display_name": "x"}, headers=headers)
    assert_error(put, 422, "validation_error")
    assert_error(
        await client.delete(f"{USERS}/{user_id}", headers=headers), 422, "validation_error"
    )


async def test_unknown_user_id_is_not_found(client: httpx.AsyncClient, runtime: Runtime) -> None:
    root, headers = await superuser_of(runtime)
    missing = root.id + 1000
    put = await client.put(f"{USERS}/{missing}", json={"display_name": "x"}, headers=headers)
    assert_error(put, 404, "user_not_found")
    assert_error(await client.delete(f"{USERS}/{missing}", headers=headers), 404, "user_not_found")
    largest = await client.delete(f"{USERS}/2147483647", headers=headers)
    assert_error(largest, 404, "user_not_found")


async def test_update_refuses_unknown_fields_and_short_passwords(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, headers = await superuser_of(runtime)
    user = await make_user(runtime, username="guarded")
    for change in ({"username": "renamed"}, {"password": "short"}, {"role": "owner"}):
        response = await client.put(f"{USERS}/{user.id}", json=change, headers=headers)
        assert_error(response, 422, "validation_error")
    assert (await login(client, "guarded", PASSWORD)).status_code == 200
