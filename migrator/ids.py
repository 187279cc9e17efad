"""MAS primary keys: ULIDs stored as UUIDs (data-migration.md §5).

Bits 127..80 are the millisecond timestamp (negative clamps to 0); bits 79..0 are the first 80 bits of
HMAC-SHA256(K, kind || 0x00 || natural key) with a per-run random key K. The same entity therefore gets
the same id in every phase of a run without any lookup table, while ids stay unguessable from outside.
"""
from __future__ import annotations

import hashlib
import os
import uuid

MAX_ULID_MS = (1 << 48) - 1


_new = object.__new__
_set = object.__setattr__
_UNKNOWN = uuid.SafeUUID.unknown


def _fast_uuid(value: int) -> uuid.UUID:
    """uuid.UUID(int=value) without the argument checks (value is known to fit 128 bits); ~5x faster."""
    u = _new(uuid.UUID)
    _set(u, "int", value)
    _set(u, "is_safe", _UNKNOWN)
    return u


class IdFactory:
    """Derives the UUIDs of one run; ``key`` is injectable for tests (32 random bytes by default).

    HMAC-SHA256 is computed from precomputed inner/outer SHA-256 states (RFC 2104 with the key padded
    to the 64-byte block), with the inner state also advanced past ``kind || 0x00`` once per kind:
    the same bytes as ``hmac.digest``, about three times faster per id (OpenSSL 3 re-initialises
    an HMAC context for every one-shot call).
    """

    def __init__(self, key: bytes | None = None):
        self._key = key if key is not None else os.urandom(32)
        block = self._key if len(self._key) <= 64 else hashlib.sha256(self._key).digest()
        block = block.ljust(64, b"\x00")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
        self._kinds: dict[str, object] = {}

    def _inner_for(self, kind: str):
        state = self._inner.copy()
        state.update(kind.encode("utf-8", "surrogatepass") + b"\x00")
        self._kinds[kind] = state
        return state

    def make(self, ms: int, kind: str, *natural_key: object) -> uuid.UUID:
        """UUID for entity ``kind`` with time ``ms`` (milliseconds) and the given natural key parts."""
        inner = (self._kinds.get(kind) or self._inner_for(kind)).copy()
        if len(natural_key) == 1 and type(natural_key[0]) is str:
            inner.update(natural_key[0].encode("utf-8", "surrogatepass"))
        else:
            inner.update("\x1f".join(map(str, natural_key)).encode("utf-8", "surrogatepass"))
        outer = self._outer.copy()
        outer.update(inner.digest())
        random80 = int.from_bytes(outer.digest()[:10], "big")
        t = int(ms)
        t = 0 if t < 0 else (MAX_ULID_MS if t > MAX_ULID_MS else t)
        return _fast_uuid((t << 80) | random80)


def ulid_ms(value: uuid.UUID) -> int:
    """The millisecond timestamp of a ULID stored as UUID."""
    return int.from_bytes(value.bytes[:6], "big")


def ulid_to_uuid(text: str) -> uuid.UUID:
    """A ULID string (26 Crockford base32 characters, as in the MAS configuration) as a UUID."""
    from ulid import ULID

    return uuid.UUID(bytes=ULID.from_str(text).bytes)


def provider_uuid(value: object) -> uuid.UUID:
    """A MAS provider id from the configuration (ULID string) or already a UUID (object or text)."""
    if isinstance(value, uuid.UUID):
        return value
    text = str(value)
    return ulid_to_uuid(text) if len(text) == 26 else uuid.UUID(text)
