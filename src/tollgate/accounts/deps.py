"""Route dependencies of the accounts part: the key store, and callers named by key or JWT."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from tollgate.accounts import service
from tollgate.accounts.keys import KeyStore, key_store
from tollgate.accounts.models import McpAccount
from tollgate.core.deps import RuntimeDep, SessionDep
from tollgate.identity.credentials import ACCOUNT_KEY_OR_USER, AccountKeyCaller, authenticate_bearer
from tollgate.identity.deps import BearerToken, CredentialsDep, require


def get_key_store(runtime: RuntimeDep) -> KeyStore:
    """Dependency form of :func:`key_store`."""
    return key_store(runtime)


__all__ = ["CallerAccount", "KeyStoreDep", "account_of_caller", "get_key_store", "key_store"]

KeyStoreDep = Annotated[KeyStore, Depends(get_key_store)]


async def account_of_caller(
    token: BearerToken, session: SessionDep, credentials: CredentialsDep
) -> McpAccount:
    """The caller's MCP account, named by its key (``mcp_...``) or by the owner's JWT."""
    caller = await authenticate_bearer(
        credentials, token, accept=ACCOUNT_KEY_OR_USER, session=session
    )
    if isinstance(caller, AccountKeyCaller):
        return await service.get_account(session, caller.account_id)
    await require("mcp.account")(caller.user)
    return await service.account_for_user(session, caller.user.id)


CallerAccount = Annotated[McpAccount, Depends(account_of_caller)]
