"""The MAS configuration rules the published schema does not enforce (mapping.md 6.2), as a table of checks.

Each rule is a function over the merged MAS data that yields :class:`Violation` records: a key path, a
message that names the rule and never a value, and a remediation. Rules read defensively: a value of the
wrong type is the schema's business (reported by :mod:`engine.masvalidate`), so a rule skips it.
"""
from __future__ import annotations

import functools
import os
import re
import stat
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Iterator

from .configdoc import ConfigDoc
from .findings import Finding
from .locations import Path, format_path
from .mailbox import is_valid_mailbox

# Secret and key files are small; a bound keeps a mistaken path (a device, a huge file) harmless.
MAX_FILE_BYTES = 1 << 20
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_HEX64_BYTES = re.compile(rb"[0-9a-fA-F]{64}")
# RFC 6749 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
RULE_ID = "mas-config-invalid"
SCOPE = "synapse+mas"
_SECRET_METHODS = ("client_secret_basic", "client_secret_post", "client_secret_jwt")
_UNVERIFIABLE_FIX = ("Run the lint where the file is readable (as the user MAS runs as), or acknowledge this "
                     "warning if the file only exists on the MAS host.")


@dataclass(frozen=True)
class Violation:
    """One rule violation at ``path``; ``severity`` is ``warning`` for the "unverifiable" variant."""

    rule: str
    path: Path
    message: str
    remediation: str
    severity: str = "error"
    provider: str | None = None
    # Schema keywords failing at the same path that this violation explains better (reported once, here).
    supersedes: tuple[str, ...] = ()


@dataclass(frozen=True)
class FileRead:
    """The bytes of a referenced file, or why it could not be read."""

    content: bytes | None
    reason: str | None = None


class RuleContext:
    """The merged MAS data plus file access relative to ``base_dir`` (MAS resolves paths from its working directory)."""

    def __init__(self, data: dict, base_dir: str | None = None):
        self.data = data
        self.base_dir = base_dir or os.getcwd()

    def section(self, *path: str) -> dict | None:
        """The mapping at ``path``, or None when absent, null or not a mapping."""
        node: Any = self.data
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        return node if isinstance(node, dict) else None

    def resolve(self, value: str) -> str:
        return value if os.path.isabs(value) else os.path.join(self.base_dir, value)

    def read(self, value: str) -> FileRead:
        """Read a referenced file; never raises and never blocks on a pipe or device."""
        path = self.resolve(value)
        try:
            if os.path.isdir(path):
                return FileRead(None, "it is a directory")
            if not stat.S_ISREG(os.stat(path).st_mode):
                return FileRead(None, "it is not a regular file")
            with open(path, "rb") as fh:
                return FileRead(fh.read(MAX_FILE_BYTES + 1))
        except OSError as exc:
            return FileRead(None, (exc.strerror or "cannot read it").lower())

    def list_dir(self, value: str) -> tuple[list[str] | None, str | None]:
        """Regular, non-hidden files of a directory (sorted), or why it could not be listed."""
        path = self.resolve(value)
        try:
            names = sorted(os.listdir(path))
        except OSError as exc:
            return None, (exc.strerror or "cannot list it").lower()
        return [os.path.join(path, n) for n in names
                if not n.startswith(".") and os.path.isfile(os.path.join(path, n))], None


@dataclass(frozen=True)
class MasRule:
    """A row of mapping.md 6.2: id, section, what is a violation, where the rule comes from, and its check."""

    id: str
    section: str
    summary: str
    origin: str
    check: Callable[[RuleContext], Iterable[Violation]]


RULES: list[MasRule] = []


def _rule(rule_id: str, section: str, summary: str, origin: str = "MAS validation"):
    def register(fn: Callable[[RuleContext], Iterable[Violation]]):
        RULES.append(MasRule(rule_id, section, summary, origin, fn))
        return fn
    return register


def rule_table() -> list[dict[str, str]]:
    """The rules as plain data (id, section, summary, origin), in the order of mapping.md 6.2, for docs."""
    return [{"id": r.id, "section": r.section, "summary": r.summary, "origin": r.origin} for r in RULES]


def run_rules(data: Any, base_dir: str | None = None) -> list[Violation]:
    """Every violation of every rule, in table order."""
    if not isinstance(data, dict):
        return []
    ctx = RuleContext(data, base_dir)
    return [v for r in RULES for v in r.check(ctx)]


def violation_finding(doc: ConfigDoc, v: Violation) -> Finding:
    """The ``mas-config-invalid`` finding for one violation, located at its node (``option`` = the MAS rule id)."""
    return Finding(rule=RULE_ID, severity=v.severity, message=v.message, location=doc.locate(v.path), scope=SCOPE,
                   remediation=v.remediation, provider=v.provider, option=v.rule, details={"mas_rule": v.rule})


def rule_findings(doc: ConfigDoc, *, base_dir: str | None = None) -> list[Finding]:
    """The mapping.md 6.2 rules alone (no schema, no jsonschema import), as findings in table order."""
    return [violation_finding(doc, v) for v in run_rules(doc.data, base_dir)]


# ---------------------------------------------------------------- helpers

def has(obj: Any, key: str) -> bool:
    """``key`` is set: present and not null (YAML null means absent, as for MAS's optional fields)."""
    return isinstance(obj, dict) and obj.get(key) is not None


def _items(obj: Any, key: str) -> list[tuple[int, dict]]:
    """The mapping items of the list at ``obj[key]`` with their indexes."""
    value = obj.get(key) if isinstance(obj, dict) else None
    return [(i, v) for i, v in enumerate(value) if isinstance(v, dict)] if isinstance(value, list) else []


def _code(path: Path) -> str:
    return f"`{format_path(path)}`"


def _exactly_one(rule: str, obj: dict, base: Path, a: str, b: str, why: str, fix: str) -> Iterator[Violation]:
    """Both or neither of the alternatives ``a`` / ``b`` is a violation."""
    if has(obj, a) and has(obj, b):
        yield Violation(rule, base + (b,), f"{rule}: {_code(base)} sets both `{a}` and `{b}`; {why}", fix)
    elif not has(obj, a) and not has(obj, b):
        yield Violation(rule, base, f"{rule}: {_code(base)} sets neither `{a}` nor `{b}`; {why}", fix)


def _not_both(rule: str, obj: dict, base: Path, a: str, b: str, fix: str) -> Iterator[Violation]:
    if has(obj, a) and has(obj, b):
        yield Violation(rule, base + (b,), f"{rule}: {_code(base)} sets both `{a}` and `{b}`; MAS refuses to "
                        "start because it cannot tell which one to use", fix)


def _not_accepted(rule: str, obj: dict, base: Path, keys: Iterable[str], setting: str) -> Iterator[Violation]:
    """Each of ``keys`` that is set although ``setting`` does not use it."""
    for key in keys:
        if has(obj, key):
            yield Violation(rule, base + (key,), f"{rule}: {_code(base)} sets `{key}`, which {setting} does not "
                            "accept", f"Remove `{key}`, or change {setting}.")


def _pair_rule(rule_id: str, section: Path, a: str, b: str, *, items: str | None = None, why: str | None = None,
               fix: str) -> None:
    """Register a rule over a section (or each mapping of its list ``items``): with ``why``, exactly one of
    ``a``/``b`` must be set; without it, not both."""
    where = format_path(section) + (f".{items}[]" if items else "")
    summary = f"not exactly one of `{a}`, `{b}`" if why else f"both `{a}` and `{b}`"

    def check(ctx: RuleContext) -> Iterator[Violation]:
        obj = ctx.section(*section)
        if obj is None:
            return
        targets = [(section, obj)] if items is None else [(section + (items, i), e) for i, e in _items(obj, items)]
        for base, target in targets:
            if why:
                yield from _exactly_one(rule_id, target, base, a, b, why, fix)
            else:
                yield from _not_both(rule_id, target, base, a, b, fix)

    _rule(rule_id, where, summary)(check)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _unverifiable(rule: str, path: Path, what: str, reason: str | None) -> Violation:
    """The warning variant for a referenced file that cannot be read here (mapping.md 6.1, step 4)."""
    return Violation(rule, path, f"{rule} (unverifiable): {what} cannot be read here ({reason}), so it was not "
                     "checked", _UNVERIFIABLE_FIX, severity="warning")


# ---------------------------------------------------------------- secrets

_pair_rule("MAS-S1", ("secrets",), "encryption", "encryption_file", why="MAS needs exactly one encryption key",
           fix="Keep exactly one of `secrets.encryption` (64 hexadecimal characters) or `secrets.encryption_file`; "
               "never change the key once MAS has encrypted data.")


@_rule("MAS-S2", "secrets.encryption", "not exactly 64 hexadecimal characters (full match)")
def _s2(ctx: RuleContext) -> Iterator[Violation]:
    value = (ctx.section("secrets") or {}).get("encryption")
    if isinstance(value, str) and not _HEX64.fullmatch(value):
        yield Violation("MAS-S2", ("secrets", "encryption"),
                        f"MAS-S2: `secrets.encryption` must be exactly 64 hexadecimal characters (32 bytes) and "
                        f"has {len(value)} characters{'' if len(value) != 64 else ' with non-hexadecimal ones'}; "
                        "the schema's unanchored pattern lets this pass, MAS rejects it",
                        "Generate a key with `openssl rand -hex 32` and put it, quoted, in `secrets.encryption`.",
                        supersedes=("pattern",))


@_rule("MAS-S3", "secrets.encryption_file", "file content is not exactly 64 hexadecimal characters",
       "MAS validation (file)")
def _s3(ctx: RuleContext) -> Iterator[Violation]:
    value = (ctx.section("secrets") or {}).get("encryption_file")
    if not isinstance(value, str):
        return
    path = ("secrets", "encryption_file")
    read = ctx.read(value)
    if read.content is None:
        yield _unverifiable("MAS-S3", path, "the file named by `secrets.encryption_file`", read.reason)
    elif not _HEX64_BYTES.fullmatch(read.content):
        newline = _HEX64_BYTES.fullmatch(read.content.rstrip(b"\r\n")) is not None
        if newline:
            detail = "it ends with a newline, which MAS counts"
        elif len(read.content) == 64:
            detail = "some of its characters are not hexadecimal"
        else:
            detail = f"it holds {len(read.content)} bytes"
        yield Violation("MAS-S3", path, "MAS-S3: the file named by `secrets.encryption_file` must hold exactly 64 "
                        f"hexadecimal characters; {detail}",
                        "Write the key without a trailing newline, e.g. `openssl rand -hex 32 | tr -d '\\n' > FILE`.")


_pair_rule("MAS-K1", ("secrets",), "key", "key_file", items="keys", why="each key entry needs exactly one source",
           fix="Give each entry of `secrets.keys` either an inline `key` (PEM) or a `key_file`.")
_pair_rule("MAS-K2", ("secrets",), "password", "password_file", items="keys",
           fix="Keep only one of `password` or `password_file` for this key.")


@functools.lru_cache(maxsize=None)
def key_loaders() -> tuple[Callable, Callable, type, type]:
    """``(load_pem_private_key, load_der_private_key, RSA private key type, UnsupportedAlgorithm)``.

    Imported on first use, and from cryptography's Rust bindings, which its public `serialization` module
    re-exports: that module also imports the SSH and cipher code, ~20 ms of `lint` that key loading does not
    need. A release that moves them falls back to the public names (a test checks they are the same).
    """
    from cryptography.exceptions import UnsupportedAlgorithm

    try:
        from cryptography.hazmat.bindings._rust import openssl as rust

        return (rust.keys.load_pem_private_key, rust.keys.load_der_private_key, rust.rsa.RSAPrivateKey,
                UnsupportedAlgorithm)
    except (ImportError, AttributeError):  # pragma: no cover - depends on the cryptography release
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        return (serialization.load_pem_private_key, serialization.load_der_private_key, rsa.RSAPrivateKey,
                UnsupportedAlgorithm)


def key_kind(data: bytes, password: bytes | None) -> str:
    """``rsa``, ``other`` (a readable non-RSA key), ``invalid`` or ``locked`` (encrypted, no usable password)."""
    load_pem, load_der, rsa_private_key, UnsupportedAlgorithm = key_loaders()
    label = re.match(rb"\s*-----BEGIN ([A-Z0-9 ]+)-----", data)
    load = load_pem if label else load_der
    for attempt in ([password, None] if password is not None else [None]):
        try:
            # Only the key type matters here; skipping RSA's consistency checks makes this ~100x faster.
            key = load(data, password=attempt, unsafe_skip_rsa_key_validation=True)
        except TypeError:
            continue  # a password is missing for an encrypted key, or was given for a plain one
        except (ValueError, UnsupportedAlgorithm):
            if attempt is not None:
                continue  # a wrong password; the key may still turn out not to be encrypted
            return "invalid"
        return "rsa" if isinstance(key, rsa_private_key) else "other"
    # Encrypted and no usable password: the PKCS#1 label still tells the algorithm.
    return "rsa" if label and label.group(1) == b"RSA PRIVATE KEY" else "locked"


def _key_entry_kind(ctx: RuleContext, entry: dict) -> tuple[str, str | None]:
    """Kind of one ``secrets.keys[]`` entry, or ``unknown`` with the reason a file could not be read."""
    password: bytes | None = None
    if isinstance(entry.get("password"), str):
        password = entry["password"].encode()
    elif isinstance(entry.get("password_file"), str):
        read = ctx.read(entry["password_file"])
        if read.content is None:
            return "unknown", f"its `password_file`: {read.reason}"
        password = read.content
    if isinstance(entry.get("key"), str):
        return key_kind(entry["key"].encode(), password), None
    if isinstance(entry.get("key_file"), str):
        read = ctx.read(entry["key_file"])
        if read.content is None:
            return "unknown", f"its `key_file`: {read.reason}"
        return key_kind(read.content, password), None
    return "invalid", None


@_rule("MAS-K3", "secrets", "no RSA key among `keys` (and no readable RSA key in `keys_dir`)",
       "MAS documentation (needed for RS256); not checked by MAS at load")
def _k3(ctx: RuleContext) -> Iterator[Violation]:
    secrets = ctx.section("secrets")
    if secrets is None:
        return
    kinds: list[str] = []
    unread: list[str] = []
    for i, entry in _items(secrets, "keys"):
        kind, reason = _key_entry_kind(ctx, entry)
        if kind == "rsa":
            return
        kinds.append(kind)
        if reason:
            unread.append(f"`secrets.keys[{i}]` ({reason})")
    if isinstance(secrets.get("keys_dir"), str):
        files, reason = ctx.list_dir(secrets["keys_dir"])
        if files is None:
            unread.append(f"`secrets.keys_dir` ({reason})")
        for f in files or []:
            read = ctx.read(f)
            if read.content is None:
                unread.append(f"a file in `secrets.keys_dir` ({read.reason})")
                continue
            kind = key_kind(read.content, None)
            if kind == "rsa":
                return
            kinds.append(kind)
    path = ("secrets", "keys") if "keys" in secrets else ("secrets",)
    if unread or "locked" in kinds:
        what = ", ".join(unread) if unread else "an encrypted key without a usable password"
        yield Violation("MAS-K3", path, f"MAS-K3 (unverifiable): no RSA signing key was found, and {what} could "
                        "not be inspected", _UNVERIFIABLE_FIX, severity="warning")
        return
    yield Violation("MAS-K3", path, "MAS-K3: `secrets` has no RSA private key; MAS signs ID tokens with RS256 by "
                    "default and clients cannot verify them without one",
                    "Add an RSA key: `openssl genrsa 2048` and put the PEM in a `secrets.keys` entry (`key` or "
                    "`key_file`).")


_pair_rule("MAS-M1", ("matrix",), "secret", "secret_file",
           why="MAS needs exactly one shared secret to talk to the homeserver",
           fix="Keep exactly one of `matrix.secret` or `matrix.secret_file`, and give Synapse the same value.")


# ---------------------------------------------------------------- database

_DB_SPLIT = ("host", "port", "socket", "username", "password", "password_file", "database")
_DB_PAIRS = (("password", "password_file"), ("ssl_ca", "ssl_ca_file"), ("ssl_certificate", "ssl_certificate_file"),
             ("ssl_key", "ssl_key_file"))


@_rule("MAS-D1", "database", "`uri` combined with any of the split connection options")
def _d1(ctx: RuleContext) -> Iterator[Violation]:
    db = ctx.section("database")
    if db is not None and has(db, "uri"):
        for key in (k for k in _DB_SPLIT if has(db, k)):
            yield Violation("MAS-D1", ("database", key), f"MAS-D1: `database.{key}` is set together with "
                            "`database.uri`; MAS accepts either the URI or the separate options, not both",
                            "Put everything into `database.uri`, or remove `database.uri` and use the "
                            "separate options.")


@_rule("MAS-D2", "database", "both members of a pair (`password`/`password_file`, `ssl_*`/`ssl_*_file`)")
def _d2(ctx: RuleContext) -> Iterator[Violation]:
    db = ctx.section("database")
    for a, b in _DB_PAIRS if db is not None else ():
        yield from _not_both("MAS-D2", db, ("database",), a, b, f"Keep only one of `{a}` or `{b}`.")


@_rule("MAS-D3", "database", "a client certificate without a client key, or the reverse")
def _d3(ctx: RuleContext) -> Iterator[Violation]:
    db = ctx.section("database")
    if db is None:
        return
    cert = has(db, "ssl_certificate") or has(db, "ssl_certificate_file")
    key = has(db, "ssl_key") or has(db, "ssl_key_file")
    if cert != key:
        present, missing = ("certificate", "key") if cert else ("key", "certificate")
        yield Violation("MAS-D3", ("database", f"ssl_{missing}"), f"MAS-D3: `database` has a client TLS {present} "
                        f"but no client {missing}; MAS needs both or neither",
                        f"Add `database.ssl_{missing}` or `database.ssl_{missing}_file`, or remove the {present}.")


# ---------------------------------------------------------------- http

def _listeners(ctx: RuleContext) -> list[tuple[int, dict]]:
    return _items(ctx.section("http"), "listeners")


@_rule("MAS-H1", "http.listeners[]", "empty `resources` or empty `binds`")
def _h1(ctx: RuleContext) -> Iterator[Violation]:
    for i, listener in _listeners(ctx):
        for key, what in (("resources", "serves nothing"), ("binds", "listens nowhere")):
            if listener.get(key) == []:
                yield Violation("MAS-H1", ("http", "listeners", i, key), f"MAS-H1: `http.listeners[{i}].{key}` is "
                                f"empty, so the listener {what}; MAS refuses such a listener",
                                f"Add at least one entry to `{key}` or remove the listener.")


def _bind_recognised(bind: dict) -> bool:
    port = bind.get("port")
    return ((_int(port) and 0 <= port <= 65535) or isinstance(bind.get("address"), str)
            or isinstance(bind.get("socket"), str) or "fd" in bind)


@_rule("MAS-H2", "http.listeners[].binds[]", "a bind with none of `port`, `address`, `socket`, `fd`",
       "syn2mas rule")
def _h2(ctx: RuleContext) -> Iterator[Violation]:
    for i, listener in _listeners(ctx):
        for j, bind in _items(listener, "binds"):
            if _bind_recognised(bind):
                continue
            known = [k for k in ("port", "address", "socket") if k in bind]
            why = (f"its `{known[0]}` has the wrong type or range" if known
                   else "it has none of `port`, `address`, `socket` or `fd`")
            yield Violation("MAS-H2", ("http", "listeners", i, "binds", j), f"MAS-H2: `http.listeners[{i}]."
                            f"binds[{j}]` is read by MAS as \"listen on file descriptor 0\" because {why}; this is "
                            "almost certainly a typo",
                            "Use `address: \"[::]:8080\"`, `host` with `port`, `socket: PATH`, or an explicit `fd`.")


@_rule("MAS-H3", "http.listeners[].tls", "certificate/key not exactly one each; both `password` and `password_file`")
def _h3(ctx: RuleContext) -> Iterator[Violation]:
    for i, listener in _listeners(ctx):
        tls = listener.get("tls")
        if not isinstance(tls, dict):
            continue
        base = ("http", "listeners", i, "tls")
        yield from _exactly_one("MAS-H3", tls, base, "certificate", "certificate_file",
                                "TLS needs exactly one certificate chain", "Keep exactly one of `certificate` or "
                                "`certificate_file`.")
        yield from _exactly_one("MAS-H3", tls, base, "key", "key_file", "TLS needs exactly one private key",
                                "Keep exactly one of `key` or `key_file`.")
        yield from _not_both("MAS-H3", tls, base, "password", "password_file",
                             "Keep only one of `password` or `password_file`.")


# ---------------------------------------------------------------- email

def _mailboxes(rule: str, mail: dict) -> Iterator[Violation]:
    for key in ("from", "reply_to"):
        value = mail.get(key)
        if isinstance(value, str) and not is_valid_mailbox(value):
            yield Violation(rule, ("email", key), f"{rule}: `email.{key}` is not a valid mailbox (an address with "
                            "an optional display name); MAS refuses to start with it",
                            f"Write `email.{key}` as `\"Display Name\" <user@example.com>` or `user@example.com`.")


@_rule("MAS-E1", "email (transport smtp)", "`hostname`/`mode` missing, invalid mailbox, incomplete or doubled "
       "credentials, `command` set")
def _e1(ctx: RuleContext) -> Iterator[Violation]:
    mail = ctx.section("email")
    if mail is None or mail.get("transport") != "smtp":
        return
    yield from _mailboxes("MAS-E1", mail)
    for key in ("hostname", "mode"):
        if not has(mail, key):
            yield Violation("MAS-E1", ("email", key), f"MAS-E1: the SMTP transport needs `email.{key}`",
                            "Set `email.hostname` and `email.mode` (`plain`, `starttls` or `tls`).")
    password = has(mail, "password") or has(mail, "password_file")
    if has(mail, "username") != password:
        missing = "password" if has(mail, "username") else "username"
        yield Violation("MAS-E1", ("email", missing), f"MAS-E1: SMTP credentials are incomplete: `email.{missing}` "
                        f"is missing{' (or `password_file`)' if missing == 'password' else ''}",
                        "Set both `email.username` and a password (`password` or `password_file`), or neither.")
    yield from _not_both("MAS-E1", mail, ("email",), "password", "password_file",
                         "Keep only one of `email.password` or `email.password_file`.")
    yield from _not_accepted("MAS-E1", mail, ("email",), ("command",), "`transport: smtp`")


@_rule("MAS-E2", "email (transport sendmail)", "`command` missing; SMTP options set; invalid mailbox")
def _e2(ctx: RuleContext) -> Iterator[Violation]:
    mail = ctx.section("email")
    if mail is None or mail.get("transport") != "sendmail":
        return
    yield from _mailboxes("MAS-E2", mail)
    if not has(mail, "command"):
        yield Violation("MAS-E2", ("email", "command"), "MAS-E2: the sendmail transport needs `email.command`",
                        "Set `email.command`, e.g. `sendmail`.")
    # password_file is the file form of password; MAS rejects it with sendmail as well.
    yield from _not_accepted("MAS-E2", mail, ("email",), ("mode", "hostname", "port", "username", "password",
                                                          "password_file"), "`transport: sendmail`")


# ---------------------------------------------------------------- passwords

def _schemes(ctx: RuleContext) -> list[tuple[int, dict]]:
    return _items(ctx.section("passwords"), "schemes")


@_rule("MAS-P1", "passwords", "`enabled` (default true) with an empty `schemes` list")
def _p1(ctx: RuleContext) -> Iterator[Violation]:
    pw = ctx.section("passwords")
    if pw is not None and pw.get("enabled", True) is not False and pw.get("schemes") == []:
        yield Violation("MAS-P1", ("passwords", "schemes"), "MAS-P1: password login is enabled but "
                        "`passwords.schemes` is empty, so MAS cannot hash or verify any password",
                        "Add a scheme (for migrated Synapse hashes: `{version: 1, algorithm: bcrypt, "
                        "unicode_normalization: true}`) or set `passwords.enabled: false`.")


_pair_rule("MAS-P2", ("passwords",), "secret", "secret_file", items="schemes",
           fix="Keep only one of `secret` or `secret_file`.")


@_rule("MAS-P3", "passwords.schemes[]", "two schemes with the same `version`", "MAS load")
def _p3(ctx: RuleContext) -> Iterator[Violation]:
    seen: dict[Any, int] = {}
    for i, scheme in _schemes(ctx):
        version = scheme.get("version")
        if not _int(version):
            continue
        if version in seen:
            yield Violation("MAS-P3", ("passwords", "schemes", i, "version"), f"MAS-P3: `passwords.schemes[{i}]` "
                            f"repeats the version of `passwords.schemes[{seen[version]}]`; versions must be unique",
                            "Give every scheme its own `version`; the highest one hashes new passwords.")
        else:
            seen[version] = i


@_rule("MAS-P4", "passwords.schemes[].secret_file", "unreadable", "MAS load (file)")
def _p4(ctx: RuleContext) -> Iterator[Violation]:
    for i, scheme in _schemes(ctx):
        if isinstance(scheme.get("secret_file"), str):
            read = ctx.read(scheme["secret_file"])
            if read.content is None:
                yield _unverifiable("MAS-P4", ("passwords", "schemes", i, "secret_file"),
                                    f"the file named by `passwords.schemes[{i}].secret_file`", read.reason)


@_rule("MAS-C1", "captcha", "`service: recaptcha_v2` without both `site_key` and `secret_key`")
def _c1(ctx: RuleContext) -> Iterator[Violation]:
    captcha = ctx.section("captcha")
    if captcha is None or captcha.get("service") != "recaptcha_v2":
        return
    for key in ("site_key", "secret_key"):
        if not has(captcha, key):
            yield Violation("MAS-C1", ("captcha", key), f"MAS-C1: reCAPTCHA v2 needs `captcha.{key}`",
                            "Set both `captcha.site_key` and `captcha.secret_key` from the reCAPTCHA admin console.")


# ---------------------------------------------------------------- upstream providers

def _providers(ctx: RuleContext) -> list[tuple[int, dict]]:
    return _items(ctx.section("upstream_oauth2"), "providers")


def _provider_name(provider: dict) -> str | None:
    for key in ("synapse_idp_id", "id"):
        if isinstance(provider.get(key), str):
            return provider[key]
    return None


ProviderCheck = Callable[[str, dict, Path], Iterator[Violation]]


def _provider_rule(rule_id: str, summary: str, check: ProviderCheck, origin: str = "MAS validation") -> None:
    """Register a per-provider check; its violations carry the provider's Synapse id (or MAS id)."""
    def run(ctx: RuleContext) -> Iterator[Violation]:
        for i, provider in _providers(ctx):
            for v in check(rule_id, provider, ("upstream_oauth2", "providers", i)):
                yield replace(v, provider=_provider_name(provider))
    _rule(rule_id, "upstream_oauth2.providers[]", summary, origin)(run)


def _u1(rule: str, p: dict, base: Path) -> Iterator[Violation]:
    if p.get("discovery_mode", "oidc") != "disabled" and not has(p, "issuer"):
        yield Violation(rule, base + ("issuer",), f"{rule}: {_code(base)} uses OIDC discovery but has no `issuer`",
                        "Set `issuer`, or set `discovery_mode: disabled` and give the endpoints explicitly.")


def _u2(rule: str, p: dict, base: Path) -> Iterator[Violation]:
    method = p.get("token_endpoint_auth_method")
    if method in ("none", "private_key_jwt", "sign_in_with_apple"):
        yield from _not_accepted(rule, p, base, ("client_secret", "client_secret_file"),
                                 f"`token_endpoint_auth_method: {method}`")


def _u3(rule: str, p: dict, base: Path) -> Iterator[Violation]:
    method = p.get("token_endpoint_auth_method")
    if method in _SECRET_METHODS:
        yield from _exactly_one(rule, p, base, "client_secret", "client_secret_file",
                                f"`{method}` needs exactly one client secret",
                                "Keep exactly one of `client_secret` or `client_secret_file`.")


def _u4(rule: str, p: dict, base: Path) -> Iterator[Violation]:
    method = p.get("token_endpoint_auth_method")
    path = base + ("token_endpoint_auth_signing_alg",)
    needs = method in ("client_secret_jwt", "private_key_jwt")
    if needs and not has(p, "token_endpoint_auth_signing_alg"):
        yield Violation(rule, path, f"{rule}: {_code(base)} uses `{method}` but has no "
                        "`token_endpoint_auth_signing_alg`",
                        "Set `token_endpoint_auth_signing_alg` (for example `HS256` or `RS256`).")
    elif isinstance(method, str) and not needs and has(p, "token_endpoint_auth_signing_alg"):
        yield Violation(rule, path, f"{rule}: {_code(base)} sets `token_endpoint_auth_signing_alg`, which "
                        f"`{method}` does not use", "Remove `token_endpoint_auth_signing_alg`.")


def _u5(rule: str, p: dict, base: Path) -> Iterator[Violation]:
    method = p.get("token_endpoint_auth_method")
    path = base + ("sign_in_with_apple",)
    block = p.get("sign_in_with_apple")
    if method == "sign_in_with_apple" and block is None:
        yield Violation(rule, path, f"{rule}: {_code(base)} uses `sign_in_with_apple` but has no "
                        "`sign_in_with_apple` block", "Add `sign_in_with_apple` with `team_id`, `key_id` and "
                        "`private_key` or `private_key_file`.")
    elif isinstance(method, str) and method != "sign_in_with_apple" and block is not None:
        yield Violation(rule, path, f"{rule}: {_code(base)} has a `sign_in_with_apple` block but uses `{method}`",
                        "Remove the block or set `token_endpoint_auth_method: sign_in_with_apple`.")
    if not isinstance(block, dict):
        return
    for key in ("team_id", "key_id"):
        if not has(block, key):
            yield Violation(rule, path + (key,), f"{rule}: {_code(path)} has no `{key}`",
                            f"Set `{key}` from the Apple developer portal.")
    yield from _exactly_one(rule, block, path, "private_key", "private_key_file", "Apple needs exactly one "
                            "signing key", "Keep exactly one of `private_key` or `private_key_file`.")


def _claims(p: dict) -> tuple[dict, str]:
    claims = p.get("claims_imports") if isinstance(p.get("claims_imports"), dict) else {}
    localpart = claims.get("localpart") if isinstance(claims.get("localpart"), dict) else {}
    return claims, localpart.get("action", "ignore")


def _u6(rule: str, p: dict, base: Path) -> Iterator[Violation]:
    claims, local_action = _claims(p)
    if claims.get("skip_confirmation") is not True:
        return
    reasons = [] if local_action == "require" else [f"`localpart.action` is `{local_action}`, not `require`"]
    for attr in ("displayname", "email"):
        sub = claims.get(attr)
        if isinstance(sub, dict) and sub.get("action") == "suggest":
            reasons.append(f"`{attr}.action` is `suggest`")
    if reasons:
        path = base + ("claims_imports", "skip_confirmation")
        yield Violation(rule, path, f"{rule}: {_code(path)} is true but {' and '.join(reasons)}",
                        "With `skip_confirmation`, use `localpart.action: require` and no `suggest` action; or "
                        "drop `skip_confirmation`.")


def _u7(rule: str, p: dict, base: Path) -> Iterator[Violation]:
    claims, local_action = _claims(p)
    localpart = claims.get("localpart")
    conflict = localpart.get("on_conflict") if isinstance(localpart, dict) else None
    if conflict in ("add", "replace", "set") and local_action not in ("force", "require"):
        path = base + ("claims_imports", "localpart", "on_conflict")
        yield Violation(rule, path, f"{rule}: {_code(path)} is `{conflict}` while `localpart.action` is "
                        f"`{local_action}`; it only applies with `force` or `require`",
                        "Set `localpart.action` to `force` or `require`, or remove `on_conflict`.")


def _u8(rule: str, p: dict, base: Path) -> Iterator[Violation]:
    scope = p.get("scope", "openid")
    if not isinstance(scope, str):
        return
    tokens = scope.split(" ")
    if any(t == "" for t in tokens):
        problem = "has an empty scope token (a double, leading or trailing space, or no scope at all)"
    elif not all(_SCOPE_TOKEN.fullmatch(t) for t in tokens):
        problem = "has a character that is not allowed in a scope token (RFC 6749 3.3)"
    else:
        return
    path = base + ("scope",)
    yield Violation(rule, path, f"{rule}: {_code(path)} {problem}; `mas-cli config sync` rejects it",
                    "Write the scopes separated by single spaces, e.g. `openid profile email`.")


_provider_rule("MAS-U1", "`discovery_mode` other than `disabled` without `issuer`", _u1)
_provider_rule("MAS-U2", "`none`, `private_key_jwt` or `sign_in_with_apple` with a client secret", _u2)
_provider_rule("MAS-U3", "a client-secret method without exactly one of `client_secret`, `client_secret_file`", _u3)
_provider_rule("MAS-U4", "`token_endpoint_auth_signing_alg` missing for a JWT method or present for another", _u4)
_provider_rule("MAS-U5", "`sign_in_with_apple` block present/missing for the method, or incomplete", _u5)
_provider_rule("MAS-U6", "`skip_confirmation` without `localpart.action: require`, or with a `suggest` action", _u6)
_provider_rule("MAS-U7", "`localpart.on_conflict` add/replace/set while `localpart.action` is not force/require", _u7)
_provider_rule("MAS-U8", "`scope` is not valid scope tokens separated by single spaces", _u8, "MAS sync")


@_rule("MAS-U9", "upstream_oauth2.providers", "two providers with the same `id` or `synapse_idp_id`", "syn2mas rule")
def _u9(ctx: RuleContext) -> Iterator[Violation]:
    for key in ("id", "synapse_idp_id"):
        seen: dict[str, int] = {}
        for i, provider in _providers(ctx):
            value = provider.get(key)
            if not isinstance(value, str):
                continue
            if value in seen:
                yield Violation("MAS-U9", ("upstream_oauth2", "providers", i, key), f"MAS-U9: "
                                f"`upstream_oauth2.providers[{i}].{key}` repeats the `{key}` of "
                                f"`upstream_oauth2.providers[{seen[value]}]`; migrated links would map ambiguously",
                                f"Give every provider its own `{key}`.", provider=_provider_name(provider))
            else:
                seen[value] = i


# ---------------------------------------------------------------- clients

def _client_rule(rule_id: str, methods: tuple[str, ...], summary: str, pair: tuple[str, str] | None,
                 refused: tuple[str, ...]) -> None:
    """Register a rule for clients using one of ``methods``: exactly one of ``pair``, none of ``refused``."""
    def check(ctx: RuleContext) -> Iterator[Violation]:
        for i, client in _items(ctx.data, "clients"):
            method = client.get("client_auth_method")
            if method not in methods:
                continue
            base: Path = ("clients", i)
            if pair:
                yield from _exactly_one(rule_id, client, base, *pair, f"`{method}` needs exactly one",
                                        f"Keep exactly one of `{pair[0]}` or `{pair[1]}`.")
            yield from _not_accepted(rule_id, client, base, refused, f"`client_auth_method: {method}`")
    _rule(rule_id, "clients[]", summary)(check)


_CLIENT_SECRETS = ("client_secret", "client_secret_file")
_CLIENT_KEYS = ("jwks", "jwks_uri")
_client_rule("MAS-CL1", ("private_key_jwt",), "`private_key_jwt` without exactly one of `jwks`, `jwks_uri`, or "
             "with a secret", _CLIENT_KEYS, _CLIENT_SECRETS)
_client_rule("MAS-CL2", _SECRET_METHODS, "a client-secret method without exactly one secret, or with "
             "`jwks`/`jwks_uri`", _CLIENT_SECRETS, _CLIENT_KEYS)
_client_rule("MAS-CL3", ("none",), "`none` with a secret, `jwks` or `jwks_uri`", None, _CLIENT_SECRETS + _CLIENT_KEYS)


# ---------------------------------------------------------------- rate limits, telemetry, experimental

_LIMITERS: tuple[Path, ...] = (("login", "per_ip"), ("login", "per_account"), ("registration",),
                               ("account_recovery", "per_ip"), ("account_recovery", "per_address"))


@_rule("MAS-R1", "rate_limiting", "`per_second` not in (0, 1e9] for the login, registration and account recovery "
       "limiters")
def _r1(ctx: RuleContext) -> Iterator[Violation]:
    for limiter in _LIMITERS:
        section = ctx.section("rate_limiting", *limiter)
        value = section.get("per_second") if section else None
        # Written so that NaN fails too.
        if _number(value) and not (0 < value <= 1e9):
            path = ("rate_limiting",) + limiter + ("per_second",)
            yield Violation("MAS-R1", path, f"MAS-R1: {_code(path)} must be greater than 0 and at most 1e9",
                            "Use a positive rate, e.g. `0.05` (one attempt every 20 seconds).")


_SAMPLE_RATES: tuple[Path, ...] = (
    ("telemetry", "sentry", "sample_rate"), ("telemetry", "sentry", "traces_sample_rate"),
    ("telemetry", "tracing", "sample_rate"),
)


@_rule("MAS-T1", "telemetry", "a sample rate outside [0, 1]")
def _t1(ctx: RuleContext) -> Iterator[Violation]:
    for path in _SAMPLE_RATES:
        section = ctx.section(*path[:-1])
        value = section.get(path[-1]) if section else None
        if _number(value) and not (0 <= value <= 1):
            yield Violation("MAS-T1", path, f"MAS-T1: {_code(path)} is a probability and must be between 0 and 1",
                            "Use a value between 0.0 and 1.0.", supersedes=("minimum", "maximum"))


@_rule("MAS-X1", "experimental.session_limit", "`hard_limit < soft_limit`; `hard_limit < 2` with eviction on")
def _x1(ctx: RuleContext) -> Iterator[Violation]:
    limit = ctx.section("experimental", "session_limit")
    if limit is None or not _int(limit.get("hard_limit")):
        return
    hard, soft = limit["hard_limit"], limit.get("soft_limit")
    path = ("experimental", "session_limit", "hard_limit")
    if _int(soft) and hard < soft:
        yield Violation("MAS-X1", path, "MAS-X1: `experimental.session_limit.hard_limit` is lower than `soft_limit`",
                        "Make `hard_limit` at least `soft_limit`.")
    if limit.get("dangerous_hard_limit_eviction") is True and hard < 2:
        yield Violation("MAS-X1", path, "MAS-X1: `dangerous_hard_limit_eviction` needs `hard_limit` of at least 2, "
                        "otherwise a login can evict the user's only device and its encryption keys",
                        "Raise `hard_limit` to 2 or more, or turn `dangerous_hard_limit_eviction` off.")
