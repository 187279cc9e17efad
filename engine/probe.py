"""`check --probe USER`: verify one user's password against their Synapse hash exactly as MAS will.

MAS verifies imported hashes with its password scheme version 1 (data-migration.md 6.2): the password,
NFKC-normalised when the scheme sets `unicode_normalization`, with the scheme's secret (`secret`, or the
raw bytes of `secret_file`) appended, checked with bcrypt. bcrypt only uses the first 72 bytes (MAS's
bcrypt crate truncates silently, as Synapse's bcrypt did). The password and the hash are never printed
or logged; the result is "match", "mismatch" or why no comparison was possible.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

import bcrypt

from .configdoc import ConfigDoc
from .dbhandles import DbHandle
from .errors import ConfigError

BCRYPT_MAX_BYTES = 72


@dataclass(frozen=True)
class Scheme:
    """What MAS's version-1 password scheme does to a password before bcrypt (never printed: ``secret``)."""

    algorithm: str
    unicode_normalization: bool
    secret: bytes

    def describe(self) -> str:
        parts = [self.algorithm, "NFKC" if self.unicode_normalization else "no normalisation",
                 "with secret" if self.secret else "without secret"]
        return ", ".join(parts)


@dataclass(frozen=True)
class ProbeResult:
    user: str
    outcome: str  # match | mismatch | no-user | no-password | not-bcrypt | no-scheme
    scheme: Scheme | None

    def line(self) -> str:
        how = f" (MAS scheme version 1: {self.scheme.describe()})" if self.scheme else ""
        texts = {
            "match": f"the password of {self.user} matches its Synapse hash as MAS will verify it{how}",
            "mismatch": (f"the password of {self.user} does NOT match its Synapse hash as MAS will verify it{how}; "
                         "if the password is right, compare `passwords.schemes` version 1 (`unicode_normalization`, "
                         "`secret`/`secret_file`) with Synapse's `password_config.pepper`"),
            "no-user": f"{self.user} is not a user of the Synapse database",
            "no-password": f"{self.user} has no password hash in Synapse (SSO-only, guest or appservice user)",
            "not-bcrypt": f"the Synapse password hash of {self.user} is not a bcrypt hash; MAS cannot verify it",
            "no-scheme": "the MAS configuration has no bcrypt password scheme with version 1, so MAS cannot verify "
                         "any imported password (see `password-scheme-missing`)",
        }
        return "probe: " + texts[self.outcome]


def v1_scheme(mas: ConfigDoc | None) -> Scheme | None:
    """MAS's password scheme version 1, with its secret bytes (``secret`` as UTF-8, ``secret_file`` raw)."""
    schemes = mas.get("passwords.schemes", []) if mas else []
    for index, entry in enumerate(schemes or []):
        if not isinstance(entry, dict) or entry.get("version") != 1:
            continue
        secret = b""
        if entry.get("secret") is not None:
            secret = str(entry["secret"]).encode("utf-8")
        elif entry.get("secret_file") is not None:
            path = str(entry["secret_file"])
            try:
                with open(path, "rb") as fh:
                    secret = fh.read()  # not trimmed: MAS appends the file's bytes as they are
            except OSError as exc:
                loc = mas.locate(("passwords", "schemes", index, "secret_file"))
                raise ConfigError(f"cannot read the password scheme's `secret_file` ({exc.strerror})",
                                  file=loc.file, line=loc.line, column=loc.column, key=loc.key_path,
                                  hint="--probe needs the same secret MAS will use") from None
        return Scheme(str(entry.get("algorithm", "")), entry.get("unicode_normalization") is True, secret)
    return None


def password_bytes(password: str, scheme: Scheme) -> bytes:
    """The bytes MAS hands to bcrypt for ``password`` under ``scheme`` (at most 72 are used)."""
    text = unicodedata.normalize("NFKC", password) if scheme.unicode_normalization else password
    return (text.encode("utf-8") + scheme.secret)[:BCRYPT_MAX_BYTES]


def verify(password: str, password_hash: str, scheme: Scheme) -> bool:
    """Whether MAS would accept ``password`` for ``password_hash`` (a bcrypt hash)."""
    try:
        return bcrypt.checkpw(password_bytes(password, scheme), password_hash.encode("ascii"))
    except ValueError:
        return False  # malformed hash: MAS rejects it as well


def user_id(user: str, server_name: str) -> str:
    """``alice`` -> ``@alice:<server_name>``; a full user id is kept as it is."""
    return user if user.startswith("@") else f"@{user}:{server_name}"


def _hash_of(handle: DbHandle, name: str) -> tuple[bool, Any]:
    rows = handle.query("SELECT password_hash FROM users WHERE name = :name", {"name": name})
    return (bool(rows), rows[0]["password_hash"] if rows else None)


def probe(handle: DbHandle, mas: ConfigDoc | None, user: str, server_name: str, password: str) -> ProbeResult:
    """Compare ``password`` with the user's Synapse hash as MAS's version-1 scheme will (read-only)."""
    name = user_id(user, server_name)
    scheme = v1_scheme(mas)
    if scheme is None or scheme.algorithm != "bcrypt":
        return ProbeResult(name, "no-scheme", None)
    found, password_hash = _hash_of(handle, name)
    if not found:
        return ProbeResult(name, "no-user", scheme)
    if not password_hash:
        return ProbeResult(name, "no-password", scheme)
    if not str(password_hash).startswith(("$2a$", "$2b$", "$2y$")):
        return ProbeResult(name, "not-bcrypt", scheme)
    return ProbeResult(name, "match" if verify(password, str(password_hash), scheme) else "mismatch", scheme)
