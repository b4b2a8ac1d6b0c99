"""Keyring, envelopes bound to their row, token hashing, and key rotation of stored rows."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tollgate.core.crypto import CryptoError, Keyring, generate_key_spec, hash_token, new_token
from tollgate.core.database import transaction
from tollgate.core.encrypted import EncryptedColumn, associated_data, reencrypt_all
from tollgate.core.runtime import Runtime


def test_envelope_opens_with_the_same_associated_data() -> None:
    ring = Keyring.parse(generate_key_spec())
    envelope = ring.encrypt_text("s3cret-token", "integrations.secret:7")
    assert "s3cret-token" not in envelope
    assert ring.decrypt_text(envelope, "integrations.secret:7") == "s3cret-token"


def test_envelope_moved_to_another_row_does_not_open() -> None:
    ring = Keyring.parse(generate_key_spec())
    envelope = ring.encrypt_text("s3cret-token", "integrations.secret:7")
    with pytest.raises(CryptoError):
        ring.decrypt_text(envelope, "integrations.secret:8")


def test_tampered_envelope_does_not_open() -> None:
    ring = Keyring.parse(generate_key_spec())
    version, kid, payload = ring.encrypt_text("value", "t.c:1").split(".")
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    with pytest.raises(CryptoError):
        ring.decrypt_text(f"{version}.{kid}.{flipped}", "t.c:1")


def test_two_encryptions_of_the_same_value_differ() -> None:
    ring = Keyring.parse(generate_key_spec())
    assert ring.encrypt_text("same", "t.c:1") != ring.encrypt_text("same", "t.c:1")


def test_new_primary_key_encrypts_and_old_keys_still_decrypt() -> None:
    old_spec, new_spec = generate_key_spec(), generate_key_spec()
    old_ring = Keyring.parse(old_spec)
    sealed_by_old = old_ring.encrypt_text("value", "t.c:1")
    rotated = Keyring.parse(f"{new_spec},{old_spec}")
    assert rotated.decrypt_text(sealed_by_old, "t.c:1") == "value"
    assert rotated.needs_rotation(sealed_by_old)
    sealed_by_new = rotated.encrypt_text("value", "t.c:1")
    assert sealed_by_new.split(".")[1] == new_spec.split(":")[0]
    assert not rotated.needs_rotation(sealed_by_new)
    with pytest.raises(CryptoError):
        old_ring.decrypt_text(sealed_by_new, "t.c:1")


@pytest.mark.parametrize("spec", ["", "nokey", "k1:c2hvcnQ", "k1:" + "A" * 43 + ",bad"])
def test_malformed_keyring_is_refused(spec: str) -> None:
    with pytest.raises(CryptoError):
        Keyring.parse(spec)


def test_tokens_are_stored_as_sha256_hex() -> None:
    token = new_token("mcp_", 32)
    assert token.startswith("mcp_")
    assert len(token) == 36
    assert hash_token(token) == hashlib.sha256(token.encode()).hexdigest()


_metadata = MetaData()
_secrets_table = Table(
    "rotation_test_secrets",
    _metadata,
    Column("id", Integer, primary_key=True),
    Column("secret", String(1000)),
)
_SECRET_COLUMNS = (EncryptedColumn(_secrets_table, "secret"),)


@pytest.fixture
async def secrets_table(runtime: Runtime) -> AsyncIterator[AsyncEngine]:
    """A real table holding envelopes, dropped afterwards."""
    engine = runtime.engine
    async with engine.begin() as connection:
        await connection.run_sync(_metadata.create_all)
    try:
        yield engine
    finally:
        async with engine.begin() as connection:
            await connection.run_sync(_metadata.drop_all)


async def test_rotation_reencrypts_stored_rows_under_the_new_key(
    runtime: Runtime, secrets_table: AsyncEngine
) -> None:
    old_ring = runtime.keyring
    async with secrets_table.begin() as connection:
        for row_id in range(1, 4):
            envelope = old_ring.encrypt_text(
                f"value-{row_id}", associated_data("rotation_test_secrets", "secret", row_id)
            )
            await connection.execute(insert(_secrets_table).values(id=row_id, secret=envelope))
    new_spec = generate_key_spec()
    new_ring = Keyring.parse(f"{new_spec},{runtime.settings.encryption_keys}")

    async with transaction(runtime.sessions) as session:
        counts = await reencrypt_all(session, new_ring, _SECRET_COLUMNS)
    assert counts["rotation_test_secrets.secret"] == 3

    async with runtime.sessions() as session:
        rows = (await session.execute(select(_secrets_table))).all()
    only_new = Keyring.parse(new_spec)
    for row_id, envelope in rows:
        assert envelope.split(".")[1] == new_ring.primary_id
        aad = associated_data("rotation_test_secrets", "secret", row_id)
        assert only_new.decrypt_text(envelope, aad) == f"value-{row_id}"

    async with transaction(runtime.sessions) as session:
        again = await reencrypt_all(session, new_ring, _SECRET_COLUMNS)
    assert again["rotation_test_secrets.secret"] == 0
