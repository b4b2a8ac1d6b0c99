"""Pre-registered (confidential) clients and the connected-clients API."""

from __future__ import annotations

from tests.gateway.conftest import Gateway, Member, http_to, new_member
from tests.identity.oauth.conftest import (
    authorize_url,
    connected,
    pkce,
    query_of,
    sign_in_and_consent,
)
from tollgate.identity.models import Role

REDIRECT = "https://app.example.com/oauth/callback"


async def test_preregistered_confidential_client_needs_its_secret(
    oauth_gateway: Gateway, member: Member
) -> None:
    admin = await new_member(oauth_gateway, role=Role.ADMIN)
    async with http_to(oauth_gateway) as http:
        created = await http.post(
            "/api/v1/oauth/clients",
            json={"client_name": "Partner app", "redirect_uris": [REDIRECT], "confidential": True},
            headers=admin.jwt_headers,
        )
        assert created.status_code == 201, created.text
        client = created.json()
        verifier, challenge = pkce()
        url = await authorize_url(oauth_gateway, client["client_id"], REDIRECT, challenge)
        code = query_of(await sign_in_and_consent(http, url, member.email))["code"]
        form = {
            "grant_type": "authorization_code",
            "client_id": client["client_id"],
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": REDIRECT,
        }
        wrong = await http.post("/token", data=form | {"client_secret": "not-it"})
        right = await http.post("/token", data=form | {"client_secret": client["client_secret"]})
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"
    assert right.status_code == 200, right.text


async def test_only_admins_create_clients(oauth_gateway: Gateway, member: Member) -> None:
    async with http_to(oauth_gateway) as http:
        refused = await http.post(
            "/api/v1/oauth/clients",
            json={"client_name": "Mine", "redirect_uris": [REDIRECT]},
            headers=member.jwt_headers,
        )
    assert refused.status_code == 403


async def test_users_see_their_grants_and_admins_see_everyones(
    oauth_gateway: Gateway, member: Member
) -> None:
    admin = await new_member(oauth_gateway, role=Role.ADMIN)
    other = await new_member(oauth_gateway)
    async with http_to(oauth_gateway) as http:
        await connected(oauth_gateway, member, http)
        http.cookies.clear()
        await connected(oauth_gateway, other, http)
        own = (await http.get("/api/v1/oauth/grants", headers=member.jwt_headers)).json()
        everyone = await http.get("/api/v1/oauth/grants?all=true", headers=admin.jwt_headers)
        not_allowed = await http.get("/api/v1/oauth/grants?all=true", headers=member.jwt_headers)
        foreign = await http.delete(
            f"/api/v1/oauth/grants/{everyone.json()[0]['id']}", headers=member.jwt_headers
        )
    assert [g["user_id"] for g in own] == [member.user_id]
    assert sorted(g["user_id"] for g in everyone.json()) == sorted([member.user_id, other.user_id])
    assert not_allowed.status_code == 403
    assert foreign.status_code == 404
