"""The databases a database rule can read: Synapse (PostgreSQL or SQLite) and MAS (PostgreSQL), read-only.

A :class:`DbHandle` wraps a connection that is already inside its single read-only transaction (the
migrator's :mod:`migrator.source` opens Synapse that way), adds the location findings point at, and
fetches rows as dictionaries.
"""
from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from migrator.source import PostgresSource, SynapseSource

from .dbquery import expand_lists, plain, used_params
from .locations import Location

# Synapse's `database` section and MAS's: database findings point there (checks.md 1.3).
LOGICAL_PREFIX = {"synapse": "synapse-db", "mas": "mas-db"}
LABEL = {"synapse": "Synapse database", "mas": "MAS database"}


@dataclass
class DbHandle:
    """One open database. ``database`` is ``synapse`` or ``mas``; ``dialect`` ``postgresql`` or ``sqlite``."""

    database: str
    dialect: str
    conn: Any
    location: Location
    source: SynapseSource | None = None
    _savepoints: int = field(default=0, repr=False)
    _tuned: bool = field(default=False, repr=False)

    @classmethod
    def for_synapse(cls, source: SynapseSource, location: Location) -> "DbHandle":
        """Wrap the migrator's open Synapse source (its transaction and locks stay the migrator's)."""
        handle = cls("synapse", source.kind, source.conn, location, source)
        if source.kind == "sqlite":
            source.conn.create_function("regexp_match", 2, regexp_match, deterministic=True)
        return handle

    @classmethod
    def for_mas(cls, conn: Any, location: Location) -> "DbHandle":
        """Wrap a psycopg connection to MAS that is inside a read-only transaction."""
        return cls("mas", "postgresql", conn, location)

    def logical(self, table: str | None) -> str:
        """``synapse-db:users``, ``mas-db`` ..."""
        prefix = LOGICAL_PREFIX[self.database]
        return f"{prefix}:{table}" if table else prefix

    def tune(self) -> None:
        """Session settings for the checks, local to the read transaction (gone at its end).

        The planner overestimates these one-off aggregate queries on large tables, and PostgreSQL then
        spends longer JIT-compiling them than running them (measured: 6.6 s of 8 s at 100k users).
        Called after any table locks: SET takes no snapshot, but locks must come first anyway.
        """
        if self.dialect == "postgresql" and not self._tuned:
            self.conn.execute("SET LOCAL jit = off")
            # Sorting a million token keys in the default 4 MB spills to disk; 32 MB per sort is modest.
            self.conn.execute("SET LOCAL work_mem = '32MB'")
        self._tuned = True

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run one read-only statement and return its rows as dictionaries of plain values."""
        text, values = expand_lists(sql, params or {})
        values = used_params(text, values)
        if self.dialect == "sqlite":
            cur = self.conn.execute(text, values)
            names = [d[0] for d in cur.description or ()]
            rows = cur.fetchall()
            cur.close()
        else:
            with self.conn.cursor() as cur:
                # Same `:name` → `%(name)s` conversion as the migrator's Synapse reader.
                cur.execute(PostgresSource._convert(text), values)
                names = [d.name for d in cur.description or ()]
                rows = cur.fetchall()
        return [{n: plain(v) for n, v in zip(names, row)} for row in rows]

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        """Isolate a statement that may fail, so the surrounding read transaction survives the failure."""
        self._savepoints += 1
        name = f"syn2mas_check_{self._savepoints}"
        self.conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self.conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
            self.conn.execute(f"RELEASE SAVEPOINT {name}")
            raise
        self.conn.execute(f"RELEASE SAVEPOINT {name}")


def regexp_match(value: Any, pattern: Any) -> str | None:
    """PostgreSQL's ``regexp_match(string, pattern)`` for SQLite: the first match, or NULL when none.

    PostgreSQL returns the match as an array; rules only test ``IS NULL``, so the text is enough.
    """
    if value is None or pattern is None:
        return None
    found = re.search(str(pattern), str(value))
    return found.group(0) if found else None
