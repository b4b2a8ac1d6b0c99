"""Columns stored as AES-GCM envelopes, bound to their row, and their key rotation."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Table, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tollgate.core.crypto import Keyring

ROTATION_BATCH_SIZE = 500
"""Rows re-encrypted per statement batch: bounded memory on big tables."""


@dataclass(frozen=True)
class EncryptedColumn:
    """A column whose values are envelopes; its table's ``id`` is bound as associated data."""

    table: Table
    column: str


_REGISTRY: list[EncryptedColumn] = []


def register_encrypted_column(table: Table, column: str) -> EncryptedColumn:
    """Declare that ``table.column`` holds envelopes, so key rotation re-encrypts it."""
    entry = EncryptedColumn(table, column)
    if entry not in _REGISTRY:
        _REGISTRY.append(entry)
    return entry


def unregister_encrypted_column(entry: EncryptedColumn) -> None:
    """Forget a registration (used by tests that define their own tables)."""
    if entry in _REGISTRY:
        _REGISTRY.remove(entry)


def encrypted_columns() -> tuple[EncryptedColumn, ...]:
    """Every registered encrypted column."""
    return tuple(_REGISTRY)


def associated_data(table_name: str, column: str, row_id: object) -> str:
    """What binds an envelope to its row: moving it to another row or column breaks it."""
    return f"{table_name}.{column}:{row_id}"


async def reencrypt_column(session: AsyncSession, keyring: Keyring, entry: EncryptedColumn) -> int:
    """Re-seal every value of one column not yet under the primary key."""
    table, column = entry.table, entry.table.c[entry.column]
    rotated, last_id = 0, None
    while True:
        query = select(table.c.id, column).where(column.is_not(None)).order_by(table.c.id)
        if last_id is not None:
            query = query.where(table.c.id > last_id)
        rows = (await session.execute(query.limit(ROTATION_BATCH_SIZE))).all()
        if not rows:
            return rotated
        for row_id, envelope in rows:
            if keyring.needs_rotation(envelope):
                aad = associated_data(table.name, entry.column, row_id)
                fresh = keyring.encrypt(keyring.decrypt(envelope, aad), aad)
                await session.execute(
                    update(table).where(table.c.id == row_id).values({entry.column: fresh})
                )
                rotated += 1
        last_id = rows[-1][0]


async def reencrypt_all(session: AsyncSession, keyring: Keyring) -> dict[str, int]:
    """Re-seal every registered column; returns how many values each needed."""
    return {
        f"{entry.table.name}.{entry.column}": await reencrypt_column(session, keyring, entry)
        for entry in encrypted_columns()
    }
