"""Named Python predicates of database rules, for what one SQL query cannot express.

A predicate receives the open database and the rule's expression data and returns a dictionary that
is merged into that data (``when``, ``vars`` and the message then read it). Predicates marked
``before_snapshot`` run before any other statement on their database, because they take table locks
and PostgreSQL must grant those before a serializable transaction takes its snapshot.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql

from migrator import masschema
from migrator.source import SYNAPSE_TABLES, PostgresSource, SqliteSource

from .dbhandles import DbHandle


@dataclass(frozen=True)
class Predicate:
    fn: Callable[[DbHandle, dict[str, Any]], dict[str, Any]]
    before_snapshot: bool = False


def mas_schema_state(handle: DbHandle, data: dict[str, Any]) -> dict[str, Any]:
    """`mas-schema-missing`: compare `_sqlx_migrations` with the supported releases (migrator/masschema.py)."""
    with handle.savepoint():
        problems = masschema.schema_problems(handle.conn)
    found = None
    if handle.query("SELECT to_regclass('_sqlx_migrations') IS NOT NULL AS present")[0]["present"]:
        try:
            with handle.savepoint():
                found = masschema.found_version(handle.conn)
        except psycopg.Error:
            found = None
    expected = sorted({r.latest_version for r in masschema.supported_releases()})
    releases = [r.mas_version for r in masschema.supported_releases()]
    return {"problems": problems, "found_version": found, "expected_versions": expected,
            "supported_releases": releases}


def _lock_all(conn: Any, mode: str) -> None:
    for table in SYNAPSE_TABLES:
        conn.execute(sql.SQL("LOCK TABLE {} IN " + mode + " MODE NOWAIT").format(sql.Identifier(table)))


def _pg_sessions(source: PostgresSource) -> list[str]:
    return sorted(f"{app or '(no application name)'} from {addr or 'local socket'}"
                  for app, addr in source.other_sessions())


def synapse_tables_locked(handle: DbHandle, data: dict[str, Any]) -> dict[str, Any]:
    """`synapse-still-running`: can this run lock Synapse out (data-migration.md 2.2)?

    PostgreSQL: the six tables are locked ``EXCLUSIVE NOWAIT`` inside a savepoint; the locks are kept
    for the rest of the transaction when granted (a real migration needs them). When they are not
    granted, ``ACCESS SHARE`` locks are taken instead so the remaining checks still read a stable
    snapshot. SQLite: no other process may have the database file open (``/proc``).
    Returns ``state``: ``stopped``, ``busy``, ``unverifiable`` or ``assumed`` (unverifiable, but the
    operator passed ``--assume-synapse-stopped``), plus ``sessions`` (other clients, identifiers only).
    """
    assume = bool(data.get("flags", {}).get("assume_synapse_stopped"))
    source = handle.source
    if isinstance(source, SqliteSource):
        openers = source.other_openers()
        if openers is None:
            return {"state": "assumed" if assume else "unverifiable", "sessions": [],
                    "reason": "this platform does not show which processes have the SQLite file open"}
        return {"state": "busy" if openers else "stopped", "sessions": [f"process {p}" for p in openers],
                "reason": "other processes have the SQLite file open"}
    assert isinstance(source, PostgresSource)
    state, reason = "stopped", ""
    try:
        with handle.savepoint():
            _lock_all(handle.conn, "EXCLUSIVE")
    except pgerrors.LockNotAvailable:
        state, reason = "busy", "its tables cannot be locked EXCLUSIVE without waiting"
    except pgerrors.InsufficientPrivilege:
        # PostgreSQL grants EXCLUSIVE only to roles that may also write the table.
        state, reason = ("assumed" if assume else "unverifiable"), "the role may only read the Synapse tables"
    if state != "stopped":
        _lock_all(handle.conn, "ACCESS SHARE")
    return {"state": state, "reason": reason, "sessions": _pg_sessions(source) if state != "stopped" else []}


PREDICATES: dict[str, Predicate] = {
    "mas_schema_state": Predicate(mas_schema_state),
    "synapse_tables_locked": Predicate(synapse_tables_locked, before_snapshot=True),
}
