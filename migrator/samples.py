"""Seeded user samples for verification (data-migration.md §13, point 2).

During a read the N users with the smallest (CRC-32(seed || user id), user id) are kept (independent
of row order, so repeatable), with everything Synapse says about them; afterwards the MAS rows of those
users are compared field by field. Secrets are held only as SHA-256 digests and never printed: a
mismatch names the user id and the field, nothing else.

The rank only has to spread users evenly and be the same in every process: CRC-32 costs a seventh of
a SHA-256 (0.3 against 2 µs, paid for every user of a million-user server), and the user id breaks
its ties, so the sample does not depend on which of two users with the same CRC came first.
"""
from __future__ import annotations

import hashlib
import heapq
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg


def digest(value: str) -> bytes:
    """SHA-256 of a secret, so that samples never keep the secret itself."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


@dataclass
class UserFacts:
    """What MAS must hold for one migrated user."""

    username: str
    can_request_admin: bool
    is_guest: bool
    locked: bool
    deactivated: bool
    password: bytes | None
    emails: set[bytes] = field(default_factory=set)
    unsupported: set[tuple[str, bytes]] = field(default_factory=set)
    links: set[tuple[uuid.UUID, bytes]] = field(default_factory=set)
    devices: set[str] = field(default_factory=set)
    access_tokens: set[bytes] = field(default_factory=set)
    refresh_tokens: set[bytes] = field(default_factory=set)


class _Descending:
    """A user id that sorts in reverse, so that the heap's top is the largest (rank, user id) kept."""

    __slots__ = ("user_id",)

    def __init__(self, user_id: str):
        self.user_id = user_id

    def __lt__(self, other: _Descending) -> bool:
        return other.user_id < self.user_id


class Sampler:
    """Keeps up to ``size`` users, chosen by a seeded hash of their user id."""

    def __init__(self, size: int = 100, seed: int = 0):
        self.size = size
        self._seed_crc = zlib.crc32(str(seed).encode() + b"\x00")
        # (-rank, user id in reverse order, facts): heapq's smallest item is the largest kept (rank, id).
        self._heap: list[tuple[int, _Descending, UserFacts]] = []
        self.users: dict[str, UserFacts] = {}

    def rank(self, user_id: str) -> int:
        """The seeded rank of ``user_id``; the sample holds the users of smallest (rank, user id)."""
        return zlib.crc32(user_id.encode("utf-8", "surrogatepass"), self._seed_crc)

    def offer(self, user_id: str, make_facts: Callable[[], UserFacts]) -> None:
        """Phase 1: consider a migrated user for the sample (``make_facts`` is called only if it is kept)."""
        if self.size <= 0:
            return
        key = -self.rank(user_id)
        heap = self._heap
        if len(heap) < self.size:
            heapq.heappush(heap, (key, _Descending(user_id), make_facts()))
            return
        top_key = heap[0][0]
        if key > top_key or (key == top_key and user_id < heap[0][1].user_id):
            heapq.heapreplace(heap, (key, _Descending(user_id), make_facts()))

    def freeze(self) -> None:
        """End of phase 1: the sample is fixed; later phases add facts to these users."""
        self.users = {kept.user_id: facts for _, kept, facts in self._heap}
        self._heap = []

    def adopt(self, users: dict[str, UserFacts]) -> None:
        """Fix the sample from the partial samples of parallel workers: the users a single pass keeps."""
        if self.size <= 0:
            self.users = {}
            return
        ranked = sorted(users, key=lambda user_id: (self.rank(user_id), user_id))
        self.users = {user_id: users[user_id] for user_id in ranked[: self.size]}
        self._heap = []

    def get(self, user_id: str) -> UserFacts | None:
        """The facts of a sampled user, or None."""
        return self.users.get(user_id)

    def compare(self, conn: psycopg.Connection) -> list[str]:
        """Compare the sampled users with MAS; returns mismatches as "user: field" strings."""
        if not self.users:
            return []
        by_name = {f.username: (uid, f) for uid, f in self.users.items()}
        found: dict[str, UserFacts] = {}
        ids: dict[uuid.UUID, str] = {}
        with conn.cursor() as cur:
            cur.execute("SELECT user_id, username, can_request_admin, is_guest, locked_at IS NOT NULL, "
                        "deactivated_at IS NOT NULL FROM users WHERE username = ANY(%s)", (list(by_name),))
            for mas_id, username, admin, guest, locked, deact in cur.fetchall():
                ids[mas_id] = username
                found[username] = UserFacts(username, admin, guest, locked, deact, None)
            id_list = list(ids)
            cur.execute("SELECT user_id, hashed_password FROM user_passwords WHERE user_id = ANY(%s)", (id_list,))
            for mas_id, hashed in cur.fetchall():
                found[ids[mas_id]].password = digest(hashed)
            cur.execute("SELECT user_id, email FROM user_emails WHERE user_id = ANY(%s)", (id_list,))
            for mas_id, email in cur.fetchall():
                found[ids[mas_id]].emails.add(digest(email))
            cur.execute("SELECT user_id, medium, address FROM user_unsupported_third_party_ids "
                        "WHERE user_id = ANY(%s)", (id_list,))
            for mas_id, medium, address in cur.fetchall():
                found[ids[mas_id]].unsupported.add((medium, digest(address)))
            cur.execute("SELECT user_id, upstream_oauth_provider_id, subject FROM upstream_oauth_links "
                        "WHERE user_id = ANY(%s)", (id_list,))
            for mas_id, provider, subject in cur.fetchall():
                found[ids[mas_id]].links.add((provider, digest(subject)))
            cur.execute("SELECT user_id, device_id FROM compat_sessions WHERE user_id = ANY(%s) "
                        "AND device_id IS NOT NULL", (id_list,))
            for mas_id, device in cur.fetchall():
                found[ids[mas_id]].devices.add(device)
            cur.execute("SELECT s.user_id, t.access_token FROM compat_access_tokens t JOIN compat_sessions s "
                        "USING (compat_session_id) WHERE s.user_id = ANY(%s)", (id_list,))
            for mas_id, token in cur.fetchall():
                found[ids[mas_id]].access_tokens.add(digest(token))
            cur.execute("SELECT s.user_id, t.refresh_token FROM compat_refresh_tokens t JOIN compat_sessions s "
                        "USING (compat_session_id) WHERE s.user_id = ANY(%s)", (id_list,))
            for mas_id, token in cur.fetchall():
                found[ids[mas_id]].refresh_tokens.add(digest(token))
        mismatches = []
        for username, (user_id, want) in sorted(by_name.items()):
            have = found.get(username)
            if have is None:
                mismatches.append(f"{user_id}: user missing in MAS")
                continue
            for name in ("can_request_admin", "is_guest", "locked", "deactivated", "password", "emails",
                         "unsupported", "links", "devices", "access_tokens", "refresh_tokens"):
                if getattr(want, name) != getattr(have, name):
                    mismatches.append(f"{user_id}: {name} differs")
        return mismatches
