"""A fresh MAS configuration as `mas-cli config generate` writes it (mapping.md 5); the `--secrets-dir` split (5.11)."""
from __future__ import annotations

import copy
import os
from typing import Any, NamedTuple

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from engine.errors import ConfigError

from .randomness import Entropy

# mapping.md 5.8: MAS's top-level section order; the writer emits sections in this order.
MAS_SECTION_ORDER: tuple[str, ...] = (
    "clients", "http", "database", "telemetry", "templates", "email", "secrets", "passwords", "matrix", "policy",
    "rate_limiting", "upstream_oauth2", "branding", "captcha", "account", "oauth", "experimental",
)
# What a plain generate writes; every other section is at its defaults and so omitted.
FRESH_SECTIONS: tuple[str, ...] = ("http", "database", "email", "secrets", "passwords", "matrix")

# mapping.md 4.10: key order inside an upstream provider, the property order of MAS's published schema.
PROVIDER_KEY_ORDER: tuple[str, ...] = (
    "enabled", "id", "synapse_idp_id", "issuer", "human_name", "brand_name", "client_id", "client_secret_file",
    "client_secret", "token_endpoint_auth_method", "sign_in_with_apple", "token_endpoint_auth_signing_alg",
    "id_token_signed_response_alg", "scope", "discovery_mode", "pkce_method", "fetch_userinfo",
    "userinfo_signed_response_alg", "authorization_endpoint", "userinfo_endpoint", "token_endpoint", "jwks_uri",
    "response_mode", "claims_imports", "additional_authorization_parameters", "forward_login_hint",
    "on_backchannel_logout", "registration_token_required",
)

# mapping.md 5.4: what MAS's code builds (its prose documentation shows 10.0.0.0/8 and 127.0.0.0/8 instead).
DEFAULT_TRUSTED_PROXIES: tuple[str, ...] = (
    "192.168.0.0/16", "172.16.0.0/12", "10.0.0.0/10", "127.0.0.1/8", "fd00::/8", "::1/128",
)
DEFAULT_MAILBOX = '"Authentication Service" <root@localhost>'
DEFAULT_PUBLIC_BASE = "http://[::]:8080/"
# mapping.md 5.2: the four keys MAS generates, in order; EC curves after the RSA key.
FRESH_EC_CURVES: tuple[ec.EllipticCurve, ...] = (ec.SECP256R1(), ec.SECP384R1(), ec.SECP256K1())
RSA_KEY_BITS = 2048


def pem_private_key(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    """Unencrypted PEM in OpenSSL's traditional form: PKCS#1 ``RSA PRIVATE KEY`` or SEC1 ``EC PRIVATE KEY``.

    The SEC1 form carries the named curve and the public key, exactly like the keys MAS generates.
    """
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode("ascii")


def fresh_secrets(entropy: Entropy) -> dict[str, Any]:
    """``secrets``: 32-byte encryption key as 64 lower-case hex digits and four inline keys without ``kid``."""
    keys = [{"key": pem_private_key(entropy.rsa_key(RSA_KEY_BITS))}]
    keys += [{"key": pem_private_key(entropy.ec_key(curve))} for curve in FRESH_EC_CURVES]
    return {"encryption": entropy.hex(32), "keys": keys}


def fresh_http() -> dict[str, Any]:
    """``http``: the public ``web`` listener on [::]:8080 and the ``internal`` health listener on localhost:8081."""
    web_resources = ["discovery", "human", "oauth", "compat", "graphql", "assets"]
    return {
        "listeners": [
            {
                "name": "web",
                # graphql without the playground and assets without a path: both at their defaults.
                "resources": [{"name": name} for name in web_resources],
                "binds": [{"address": "[::]:8080"}],
                "proxy_protocol": False,
            },
            {
                "name": "internal",
                "resources": [{"name": "health"}],
                "binds": [{"host": "localhost", "port": 8081}],
                "proxy_protocol": False,
            },
        ],
        "trusted_proxies": list(DEFAULT_TRUSTED_PROXIES),
        "public_base": DEFAULT_PUBLIC_BASE,
        "issuer": DEFAULT_PUBLIC_BASE,
    }


def fresh_database() -> dict[str, Any]:
    """``database``: the default URI and pool settings (timeouts in seconds)."""
    return {
        "uri": "postgresql://",
        "max_connections": 10,
        "min_connections": 0,
        "connect_timeout": 30,
        "idle_timeout": 600,
        "max_lifetime": 1800,
    }


def fresh_email() -> dict[str, Any]:
    """``email``: the blackhole transport with MAS's default sender."""
    return {"from": DEFAULT_MAILBOX, "reply_to": DEFAULT_MAILBOX, "transport": "blackhole"}


def fresh_passwords() -> dict[str, Any]:
    """``passwords``: enabled, one argon2id scheme as version 1, minimum complexity 3."""
    return {"enabled": True, "schemes": [{"version": 1, "algorithm": "argon2id"}], "minimum_complexity": 3}


def fresh_matrix(entropy: Entropy) -> dict[str, Any]:
    """``matrix``: a Synapse on localhost:8008 and a 32-character alphanumeric shared secret."""
    return {
        "kind": "synapse",
        "homeserver": "localhost:8008",
        "secret": entropy.alnum(32),
        "endpoint": "http://localhost:8008/",
    }


def fresh_mas_config(entropy: Entropy) -> dict[str, Any]:
    """What ``mas-cli config generate`` writes (mapping.md 5), top-level keys in MAS's section order."""
    # Randomness is drawn in a fixed order (secrets, then matrix) so that a seeded run is reproducible.
    secrets_section = fresh_secrets(entropy)
    sections = {
        "http": fresh_http(),
        "database": fresh_database(),
        "email": fresh_email(),
        "secrets": secrets_section,
        "passwords": fresh_passwords(),
        "matrix": fresh_matrix(entropy),
    }
    return order_sections(sections)


def order_sections(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with its top-level keys in MAS's section order; unknown keys keep their order at the end."""
    known = [k for k in MAS_SECTION_ORDER if k in config]
    rest = [k for k in config if k not in MAS_SECTION_ORDER]
    return {k: config[k] for k in known + rest}


class SecretsDirResult(NamedTuple):
    """The configuration rewritten to ``*_file`` references, and the files written (absolute paths)."""

    config: dict[str, Any]
    written: list[str]


def write_secrets_dir(config: dict[str, Any], directory: str, entropy: Entropy) -> SecretsDirResult:
    """Move inline secrets of ``config`` into files under ``directory`` and reference them (mapping.md 5.11).

    Written: ``secrets.encryption`` (file ``encryption-key``), every inline ``secrets.keys[].key``
    (``key-<n>-<kind>.pem``), ``matrix.secret`` (``matrix-secret``) and the password scheme secrets
    (version 1, the Synapse pepper: ``password-pepper``; others ``password-secret-v<version>``). The encryption
    key, matrix secret and scheme secrets have no trailing newline: MAS compares their raw bytes. Files get
    mode 0600 and are written atomically; an existing file with other content is never overwritten (it may
    hold the encryption key of a running MAS). ``config`` itself is not modified.
    """
    out = copy.deepcopy(config)
    base = os.path.abspath(directory)
    writer = _SecretWriter(base, entropy)
    secrets_section = out.get("secrets")
    if isinstance(secrets_section, dict):
        if isinstance(secrets_section.get("encryption"), str):
            path = writer.write("encryption-key", secrets_section["encryption"].encode())
            _replace_key(secrets_section, "encryption", "encryption_file", path)
        for index, entry in enumerate(secrets_section.get("keys") or []):
            if isinstance(entry, dict) and isinstance(entry.get("key"), str):
                name = f"key-{index + 1}{_key_kind(entry)}.pem"
                _replace_key(entry, "key", "key_file", writer.write(name, entry["key"].encode()))
    matrix = out.get("matrix")
    if isinstance(matrix, dict) and isinstance(matrix.get("secret"), str):
        _replace_key(matrix, "secret", "secret_file", writer.write("matrix-secret", matrix["secret"].encode()))
    passwords = out.get("passwords")
    for scheme in (passwords.get("schemes") or []) if isinstance(passwords, dict) else []:
        # An empty pepper appends nothing and counts as absent (mapping.md 3.1, P4).
        if isinstance(scheme, dict) and isinstance(scheme.get("secret"), str) and scheme["secret"]:
            version = scheme.get("version")
            name = "password-pepper" if version == 1 else f"password-secret-v{version}"
            _replace_key(scheme, "secret", "secret_file", writer.write(name, scheme["secret"].encode()))
    return SecretsDirResult(out, writer.written)


def _key_kind(entry: dict[str, Any]) -> str:
    """``-rsa``, ``-ec-secp256r1``...: a readable suffix for an unencrypted PEM key; empty when unknown."""
    if entry.get("password") or entry.get("password_file"):
        return ""
    try:
        key = serialization.load_pem_private_key(entry["key"].encode(), password=None)
    except (ValueError, TypeError):
        return ""
    if isinstance(key, rsa.RSAPrivateKey):
        return "-rsa"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"-ec-{key.curve.name}"
    return ""


def _replace_key(mapping: dict[str, Any], old: str, new: str, value: Any) -> None:
    """Replace ``old`` by ``new`` in place, keeping its position so that the written YAML diff stays small."""
    items = [(new, value) if k == old else (k, v) for k, v in mapping.items() if k != new]
    mapping.clear()
    mapping.update(items)


class _SecretWriter:
    """Writes secret files with mode 0600 through a temporary file and a rename."""

    def __init__(self, directory: str, entropy: Entropy):
        self.directory = directory
        self.entropy = entropy
        self.written: list[str] = []

    def write(self, name: str, content: bytes) -> str:
        path = os.path.join(self.directory, name)
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            if os.path.lexists(path):
                with open(path, "rb") as fh:
                    if fh.read() == content:
                        return path
                raise ConfigError("a different secret file already exists here; refusing to overwrite it",
                                  file=path, hint="it may hold a secret a running MAS uses: reference it from "
                                  "the MAS configuration, or move it away and run again")
            tmp = os.path.join(self.directory, f".{name}.{self.entropy.hex(6)}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.fchmod(fd, 0o600)  # the umask may have narrowed the mode; never widen beyond 0600 either
                with os.fdopen(fd, "wb") as fh:
                    fh.write(content)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            raise ConfigError(f"cannot write secret file: {exc.strerror}", file=path,
                              hint="check that the --secrets-dir directory is writable") from None
        self.written.append(path)
        return path
