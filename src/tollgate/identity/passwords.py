"""Password hashing with argon2id."""

from __future__ import annotations

import asyncio
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()


@cache
def _dummy_hash() -> str:
    """Verified against when the user does not exist, so a miss takes as long as a wrong
    password (made on first use: hashing costs a noticeable fraction of a second)."""
    return _hasher.hash("tollgate-timing-equaliser")


async def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` (computed off the event loop)."""
    return await asyncio.to_thread(_hasher.hash, password)


def _verify(password: str, password_hash: str | None) -> bool:
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(password: str, password_hash: str | None) -> bool:
    """True when ``password`` matches; spends the same effort when there is no hash.

    Runs off the event loop: a check takes a noticeable fraction of a second by design.
    """
    return await asyncio.to_thread(_verify, password, password_hash)
