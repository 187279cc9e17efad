"""What the MAS database must look like before syn2mas writes into it (data-migration.md §9, §10.1).

Shared by the migrator (which repeats these checks inside its transaction, after locking) and by the
database check rules `mas-schema-missing`, `mas-database-not-empty` and `mas-provider-not-synced`.
Each function returns human-readable problems (never secrets); an empty list means "fine".
"""
from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass

import psycopg

MANIFEST_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mas_manifest.json")

# The eight tables syn2mas writes, in the order the migration fills them.
TARGET_TABLES: tuple[str, ...] = (
    "users", "user_passwords", "user_emails", "user_unsupported_third_party_ids",
    "upstream_oauth_links", "compat_sessions", "compat_access_tokens", "compat_refresh_tokens",
)
# The tables read phases 1-3 fill (phase 4 writes only the compat tables): complete once phase 3 is over.
ACCOUNT_TABLES: tuple[str, ...] = TARGET_TABLES[:5]


@dataclass(frozen=True)
class Release:
    """One supported MAS release: its migrations (version -> (description, checksum bytes or None))."""

    mas_version: str
    latest_version: int
    migration_count: int
    versions_complete: bool
    migrations: dict[int, tuple[str, bytes | None]]


@functools.cache
def supported_releases() -> tuple[Release, ...]:
    """The releases of migrator/mas_manifest.json, oldest first."""
    with open(MANIFEST_PATH, encoding="utf-8") as fh:
        doc = json.load(fh)
    out = []
    for rel in doc["releases"]:
        migs = {int(m["version"]): (m["description"], bytes.fromhex(m["checksum"]) if m["checksum"] else None)
                for m in rel["migrations"]}
        out.append(Release(rel["mas_version"], int(rel["latest_version"]), int(rel["migration_count"]),
                           bool(rel["versions_complete"]), migs))
    return tuple(out)


def _release_problems(rel: Release, applied: dict[int, bytes]) -> list[str]:
    problems = []
    missing = sorted(set(rel.migrations) - set(applied))
    if missing:
        problems.append(f"{len(missing)} migration(s) of MAS {rel.mas_version} are not applied "
                        f"(first missing: {missing[0]}): the MAS schema is too old")
    newest = max(applied) if applied else None
    if newest != rel.latest_version:
        problems.append(f"latest applied MAS migration is {newest}, MAS {rel.mas_version} ends at "
                        f"{rel.latest_version}")
    if rel.versions_complete:
        unknown = sorted(set(applied) - set(rel.migrations))
        if unknown:
            problems.append(f"{len(unknown)} applied migration(s) unknown to MAS {rel.mas_version} "
                            f"(first: {unknown[0]}): MAS is newer than syn2mas supports")
        if len(applied) != rel.migration_count:
            problems.append(f"{len(applied)} migrations applied, MAS {rel.mas_version} has {rel.migration_count}")
    for version, (_, checksum) in sorted(rel.migrations.items()):
        # Checksums are compared only where the manifest records one (see its "about").
        if checksum is not None and version in applied and applied[version] != checksum:
            problems.append(f"migration {version} has a different checksum than in MAS {rel.mas_version}")
            break
    return problems


def schema_problems(conn: psycopg.Connection) -> list[str]:
    """`mas-schema-missing`: the applied migrations must be exactly those of a supported release."""
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
            if not cur.fetchone()[0]:
                return ["the MAS database has no `_sqlx_migrations` table: run `mas-cli database migrate`"]
            cur.execute("SELECT version, success, checksum FROM _sqlx_migrations")
            rows = cur.fetchall()
    except psycopg.Error as exc:
        if conn.broken or conn.closed:
            raise  # the connection was lost: a runtime failure, not a sign of a missing schema
        return [f"cannot read `_sqlx_migrations` ({type(exc).__name__})"]
    failed = sorted(v for v, ok, _ in rows if not ok)
    if failed:
        return [f"MAS migration {failed[0]} is recorded as failed (success = false)"]
    applied = {int(v): bytes(c) for v, _, c in rows}
    best: list[str] | None = None
    for rel in supported_releases():
        problems = _release_problems(rel, applied)
        if not problems:
            return []
        if best is None or len(problems) < len(best):
            best = problems
    return best or ["no supported MAS release"]


def found_version(conn: psycopg.Connection) -> int | None:
    """`SELECT max(version) FROM _sqlx_migrations WHERE success`, or None."""
    with conn.cursor() as cur:
        cur.execute("SELECT max(version) FROM _sqlx_migrations WHERE success")
        row = cur.fetchone()
    return int(row[0]) if row and row[0] is not None else None


def emptiness_problems(conn: psycopg.Connection) -> list[str]:
    """`mas-database-not-empty`: the eight tables hold no row and no reference-tool leftovers exist.

    An interrupted reference migration leaves the tables renamed (`syn2mas__users`, ...): a target
    table that is missing is then named among the problems instead of failing the query."""
    problems = []
    with conn.cursor() as cur:
        for table in TARGET_TABLES:
            cur.execute("SELECT to_regclass(%s) IS NOT NULL", (table,))
            if not cur.fetchone()[0]:
                problems.append(f"MAS table `{table}` is missing")
                continue
            cur.execute(f"SELECT 1 FROM {table} LIMIT 1")  # noqa: S608 - fixed table names
            if cur.fetchone():
                problems.append(f"MAS table `{table}` is not empty")
    leftovers = leftover_tables(conn)
    if leftovers:
        problems.append("leftovers of an interrupted reference migration: " + ", ".join(f"`{t}`" for t in leftovers))
    return problems


def leftover_tables(conn: psycopg.Connection) -> list[str]:
    """The tables an interrupted run of the reference tool leaves: its restore lists and the renamed
    MAS tables (`syn2mas__<table>`)."""
    with conn.cursor() as cur:
        cur.execute("SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = current_schema() AND c.relkind = 'r' AND (relname IN "
                    "('syn2mas_restore_constraints', 'syn2mas_restore_indices') OR relname LIKE 'syn2mas\\_\\_%') "
                    "ORDER BY relname")
        return [r[0] for r in cur.fetchall()]


def provider_problems(conn: psycopg.Connection, provider_ids: list[str]) -> list[str]:
    """`mas-provider-not-synced`: each provider (ULID string) must exist in the database and be enabled."""
    from .ids import provider_uuid

    problems = []
    with conn.cursor() as cur:
        for pid in sorted(set(provider_ids)):
            cur.execute("SELECT disabled_at IS NOT NULL FROM upstream_oauth_providers "
                        "WHERE upstream_oauth_provider_id = %s", (provider_uuid(pid),))
            row = cur.fetchone()
            if row is None:
                problems.append(f"MAS provider {pid} is not in `upstream_oauth_providers`: run `mas-cli config sync`")
            elif row[0]:
                problems.append(f"MAS provider {pid} is disabled in `upstream_oauth_providers`")
    return problems


def precondition_failure(conn: psycopg.Connection, provider_ids: list[str]) -> tuple[str, list[str]] | None:
    """The first failed MAS precondition as (check id, problems), or None: `mas-schema-missing`, then
    `mas-database-not-empty`, then `mas-provider-not-synced` (provider ids as ULID strings).

    Shared by the writer (inside its transaction, tables locked) and `migrate --plan` (read-only), so that a
    plan refuses exactly where a real run would.
    """
    for check_id, problems in (("mas-schema-missing", lambda: schema_problems(conn)),
                               ("mas-database-not-empty", lambda: emptiness_problems(conn)),
                               ("mas-provider-not-synced", lambda: provider_problems(conn, provider_ids))):
        found = problems()
        if found:
            return check_id, found
    return None


# Columns syn2mas fills in each target table, with their PostgreSQL types (for binary COPY), in the
# order the pipeline emits row tuples. Columns not listed keep their default (NULL).
COPY_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "users": (("user_id", "uuid"), ("username", "text"), ("created_at", "timestamptz"),
              ("locked_at", "timestamptz"), ("can_request_admin", "bool"), ("is_guest", "bool"),
              ("deactivated_at", "timestamptz")),
    "user_passwords": (("user_password_id", "uuid"), ("user_id", "uuid"), ("hashed_password", "text"),
                       ("created_at", "timestamptz"), ("version", "int4")),
    "user_emails": (("user_email_id", "uuid"), ("user_id", "uuid"), ("email", "text"), ("created_at", "timestamptz")),
    "user_unsupported_third_party_ids": (("user_id", "uuid"), ("medium", "text"), ("address", "text"),
                                         ("created_at", "timestamptz")),
    "upstream_oauth_links": (("upstream_oauth_link_id", "uuid"), ("upstream_oauth_provider_id", "uuid"),
                             ("user_id", "uuid"), ("subject", "text"), ("created_at", "timestamptz")),
    "compat_sessions": (("compat_session_id", "uuid"), ("user_id", "uuid"), ("device_id", "text"),
                        ("human_name", "text"), ("created_at", "timestamptz"), ("is_synapse_admin", "bool"),
                        ("last_active_at", "timestamptz"), ("last_active_ip", "inet"), ("user_agent", "text")),
    "compat_access_tokens": (("compat_access_token_id", "uuid"), ("compat_session_id", "uuid"),
                             ("access_token", "text"), ("created_at", "timestamptz"), ("expires_at", "timestamptz")),
    "compat_refresh_tokens": (("compat_refresh_token_id", "uuid"), ("compat_session_id", "uuid"),
                              ("compat_access_token_id", "uuid"), ("refresh_token", "text"),
                              ("created_at", "timestamptz")),
}
