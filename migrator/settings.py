"""What `migrate` and `verify` need from the two configurations (and the command-line overrides).

Synapse: `server_name` and the `database` section (§2.1). MAS: the target database (`database.uri`, or
its host/port/username/password/database keys) and the provider mapping (`upstream_oauth2.providers[]`
`synapse_idp_id` → `id`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg.conninfo import make_conninfo

from engine.configdoc import ConfigDoc
from engine.errors import ConfigError

from .source import sqlite_database

# MAS `database` keys → libpq keywords (MAS's ssl_mode values use underscores).
_MAS_DB_KEYS = {"host": "host", "socket": "host", "port": "port", "username": "user", "password": "password",
                "database": "dbname", "ssl_mode": "sslmode", "ssl_ca_file": "sslrootcert",
                "ssl_certificate_file": "sslcert", "ssl_key_file": "sslkey"}


@dataclass
class MigrationSettings:
    """Resolved inputs of a migration; ``mas_uri`` is a libpq connection string (may hold a password)."""

    server_name: str
    synapse_database: str | dict[str, Any]
    mas_uri: str
    mapping: dict[str, str]
    passwords_enabled: bool


def mas_database_uri(mas: ConfigDoc) -> str:
    """libpq connection string of the MAS database from its configuration."""
    db = mas.get("database", {}) or {}
    if not isinstance(db, dict):
        raise _config_error(mas, "database", "MAS `database` must be a mapping",
                            hint="set `database.uri`, or `host`, `port`, `username`, `password` and `database`")
    if db.get("uri"):
        return str(db["uri"])
    kwargs = {}
    for key, kw in _MAS_DB_KEYS.items():
        value = db.get(key)
        if value is not None:
            kwargs[kw] = str(value).replace("_", "-") if key == "ssl_mode" else str(value)
    return make_conninfo("", **kwargs)


def provider_mapping(mas: ConfigDoc) -> dict[str, str]:
    """Synapse provider id → MAS provider id (ULID string), disabled providers included (§6.5)."""
    mapping: dict[str, str] = {}
    entries = mas.get("upstream_oauth2.providers", []) or []
    # Not a list (`providers: true`): no providers here; the configuration gate refuses the run with
    # `mas-config-invalid`, naming the file and line, before any database is opened.
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        if not isinstance(entry, dict) or entry.get("synapse_idp_id") is None:
            continue
        idp = str(entry["synapse_idp_id"])
        if idp in mapping:
            raise ConfigError(f"two MAS providers have `synapse_idp_id: {idp}`",
                              key=f"upstream_oauth2.providers[{i}].synapse_idp_id",
                              hint="each Synapse provider maps to exactly one MAS provider")
        mapping[idp] = str(entry.get("id", ""))
    return mapping


def _config_error(doc: ConfigDoc, key: str, message: str, hint: str) -> ConfigError:
    """A ConfigError at ``key`` (or its nearest existing ancestor) in the file that sets it."""
    loc = doc.locate(key)
    return ConfigError(message, file=loc.file or None, line=loc.line if loc.file else None,
                       column=loc.column if loc.file else None, key=key, hint=hint)


def resolve(synapse: ConfigDoc, mas: ConfigDoc, *, synapse_database_uri: str | None = None,
            synapse_sqlite: str | None = None, mas_database_uri_override: str | None = None) -> MigrationSettings:
    """Combine the configurations and the command-line overrides."""
    server_name = synapse.get("server_name") or mas.get("matrix.homeserver")
    if not isinstance(server_name, str) or not server_name:
        raise _config_error(synapse, "server_name", "the Synapse configuration has no `server_name`",
                            hint="pass every Synapse configuration file with --synapse-config")
    if synapse_database_uri and synapse_sqlite:
        raise ConfigError("--synapse-database-uri and --synapse-sqlite are mutually exclusive")
    database: str | dict[str, Any]
    if synapse_database_uri:
        database = synapse_database_uri
    elif synapse_sqlite:
        database = sqlite_database(synapse_sqlite)
    else:
        database = synapse.get("database")
        if not isinstance(database, dict):
            raise _config_error(synapse, "database", "the Synapse configuration has no `database` section",
                                hint="pass --synapse-database-uri or --synapse-sqlite")
        if not isinstance(database.get("args") or {}, dict):
            raise _config_error(synapse, "database.args", "`database.args` must be a mapping of connection "
                                "settings", hint="Synapse reads `args` as keyword arguments of its database driver")
    return MigrationSettings(server_name=server_name, synapse_database=database,
                             mas_uri=mas_database_uri_override or mas_database_uri(mas),
                             mapping=provider_mapping(mas),
                             passwords_enabled=mas.get("passwords.enabled", True) is not False)
