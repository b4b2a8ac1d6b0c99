"""Operators find MCP accounts by a piece of their owner's email (the admin pages' list)."""

from __future__ import annotations

import httpx

from tests.conftest import auth, enable_account, make_user
from tollgate.accounts import service
from tollgate.core.runtime import Runtime


async def _account_of(runtime: Runtime, client: httpx.AsyncClient, email: str) -> int:
    user = await make_user(runtime, email=email, password="")
    enabled = await enable_account(client, auth(runtime, user))
    account_id: int = enabled["account"]["id"]
    return account_id


async def test_accounts_are_found_by_a_piece_of_the_email_with_wildcards_taken_literally(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    plain = await _account_of(runtime, client, "ada@example.com")
    odd = await _account_of(runtime, client, "grace_100%@example.com")
    await _account_of(runtime, client, "linus@example.org")

    async with runtime.sessions() as session:
        by_domain = await service.list_accounts(session, email="EXAMPLE.COM")
        by_percent = await service.list_accounts(session, email="100%")
        by_underscore = await service.list_accounts(session, email="d_@")
        everyone = await service.list_accounts(session, limit=2, offset=1)

    assert (by_domain[0], [a.id for a in by_domain[1]]) == (2, [plain, odd])
    assert [a.id for a in by_percent[1]] == [odd]
    assert by_underscore == (0, [])
    assert everyone[0] == 3
    assert [a.id for a in everyone[1]] == [odd, odd + 1]
