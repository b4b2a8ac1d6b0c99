"""Secrets at rest and tokens: a keyring of AES-GCM keys, envelopes, token hashing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ENVELOPE_VERSION = "v1"
"""Bumped if the envelope layout ever changes, so old rows stay readable."""

NONCE_BYTES = 12
"""The nonce length AES-GCM is specified for; random nonces are safe at this key usage."""

AES_KEY_BYTES = 32
"""AES-256."""

MASK = "********"
"""What a secret looks like in any response, log line or audit row."""


class CryptoError(Exception):
    """An envelope cannot be opened: unknown key id, tampering, or wrong associated data."""


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class Keyring:
    """AES-GCM keys by id; the first is the primary, used for every new envelope."""

    keys: dict[str, bytes]
    primary_id: str

    @classmethod
    def parse(cls, spec: str) -> Keyring:
        """Read ``"kid:base64key,kid2:base64key2"`` (primary first)."""
        keys: dict[str, bytes] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            kid, sep, encoded = part.partition(":")
            if not sep or not kid or ":" in encoded or "." in kid:
                raise CryptoError("encryption keys must look like 'kid:base64key,...'")
            key = _b64decode(encoded)
            if len(key) != AES_KEY_BYTES:
                raise CryptoError(f"encryption key {kid!r} must be {AES_KEY_BYTES} bytes")
            keys[kid] = key
        if not keys:
            raise CryptoError("no encryption key configured")
        return cls(keys=keys, primary_id=next(iter(keys)))

    def encrypt(self, plaintext: bytes, associated_data: str) -> str:
        """Seal ``plaintext`` under the primary key, bound to ``associated_data``."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self.keys[self.primary_id]).encrypt(
            nonce, plaintext, associated_data.encode()
        )
        return f"{ENVELOPE_VERSION}.{self.primary_id}.{_b64encode(nonce + sealed)}"

    def decrypt(self, envelope: str, associated_data: str) -> bytes:
        """Open an envelope made by any key of the ring, checking its associated data."""
        version, kid, payload = self._split(envelope)
        key = self.keys.get(kid)
        if version != ENVELOPE_VERSION or key is None:
            raise CryptoError(f"no key {kid!r} to open this envelope")
        raw = _b64decode(payload)
        try:
            return AESGCM(key).decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], associated_data.encode()
            )
        except InvalidTag as exc:
            raise CryptoError("envelope does not open: tampered or bound to another row") from exc

    def encrypt_text(self, plaintext: str, associated_data: str) -> str:
        """:meth:`encrypt` for text."""
        return self.encrypt(plaintext.encode(), associated_data)

    def decrypt_text(self, envelope: str, associated_data: str) -> str:
        """:meth:`decrypt` for text."""
        return self.decrypt(envelope, associated_data).decode()

    def needs_rotation(self, envelope: str) -> bool:
        """True when the envelope was sealed by a key other than the primary."""
        return self._split(envelope)[1] != self.primary_id

    @staticmethod
    def _split(envelope: str) -> tuple[str, str, str]:
        parts = envelope.split(".")
        if len(parts) != 3:
            raise CryptoError("not an envelope")
        return parts[0], parts[1], parts[2]


def generate_key_spec() -> str:
    """A new ``kid:base64key`` entry for a keyring."""
    return f"k{secrets.token_hex(4)}:{_b64encode(os.urandom(AES_KEY_BYTES))}"


def hash_token(token: str) -> str:
    """SHA-256 hex digest of a token: what is stored instead of the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(prefix: str, length: int = 32) -> str:
    """``prefix`` + ``length`` random URL-safe characters."""
    return prefix + secrets.token_urlsafe(length)[:length]


def constant_time_equal(a: str, b: str) -> bool:
    """Compare two secrets without leaking where they differ."""
    return hmac.compare_digest(a.encode(), b.encode())
