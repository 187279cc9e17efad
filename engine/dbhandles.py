"""The databases a database rule can read: Synapse (PostgreSQL or SQLite) and MAS (PostgreSQL), read-only.

A :class:`DbHandle` wraps a connection that is already inside its single read-only transaction (the
migrator's :mod:`migrator.source` opens Synapse that way), adds the location findings point at, and
fetches rows as dictionaries. :meth:`DbHandle.clones` opens more connections on a PostgreSQL Synapse
database in the very same snapshot, so that rule queries can run side by side.
"""
from __future__ import annotations

import contextlib
import ipaddress
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql as pgsql

from migrator.source import SYNAPSE_TABLES, PostgresSource, SynapseSource

from .cpus import usable_cpus
from .dbquery import expand_lists, plain, used_params
from .errors import Syn2MasError
from .locations import Location

# Synapse's `database` section and MAS's: database findings point there (checks.md 1.3).
LOGICAL_PREFIX = {"synapse": "synapse-db", "mas": "mas-db"}
LABEL = {"synapse": "Synapse database", "mas": "MAS database"}

# work_mem of the check transactions unless the server's is larger: the hashes of the largest rule
# queries (a million flagged devices, say) then stay in memory instead of spilling to disk.
WORK_MEM = "64MB"


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
            source.conn.create_function("textregexeq", 2, textregexeq, deterministic=True)
            if sqlite3.sqlite_version_info < (3, 43, 0):  # SQLite has its own octet_length from 3.43
                source.conn.create_function("octet_length", 1, octet_length, deterministic=True)
        return handle

    @classmethod
    def for_mas(cls, conn: Any, location: Location) -> "DbHandle":
        """Wrap a psycopg connection to MAS that is inside a read-only transaction."""
        return cls("mas", "postgresql", conn, location)

    def local_cpus(self) -> int | None:
        """The CPUs this process may use when the PostgreSQL server runs on this machine too (a Unix
        socket or a loopback address), so that they are the server's cores as well; None otherwise."""
        info = getattr(self.conn, "info", None)
        if self.dialect != "postgresql" or info is None or not server_is_local(info.host):
            return None
        return usable_cpus()

    def logical(self, table: str | None) -> str:
        """``synapse-db:users``, ``mas-db`` ..."""
        prefix = LOGICAL_PREFIX[self.database]
        return f"{prefix}:{table}" if table else prefix

    def tune(self, side_by_side: bool = False) -> None:
        """Session settings for the checks, local to the read transaction (gone at its end).

        The planner overestimates these one-off aggregate queries on large tables, and PostgreSQL then
        spends longer JIT-compiling them than running them (measured: 6.6 s of 8 s at 100k users).
        ``work_mem`` is raised to :data:`WORK_MEM`, never lowered (the migrator's transaction may have
        set more). Called after any table locks: the statement takes the snapshot if none exists yet.

        ``side_by_side``: this connection is one of several running the checks at once, which already
        keeps several server processes busy; parallel workers per query would compete with them for the
        same cores (1M users on 2 cores: `check` 3.46 → 3.10 s, the mean of four runs each, without them).
        """
        if self.dialect == "postgresql" and not self._tuned:
            self.conn.execute("SET LOCAL jit = off")
            self.conn.execute("SELECT set_config('work_mem', %(mem)s, true) "
                              "WHERE pg_size_bytes(current_setting('work_mem')) < pg_size_bytes(%(mem)s)",
                              {"mem": WORK_MEM})
            if side_by_side:
                self.conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        self._tuned = True

    def clones(self, count: int) -> list["DbHandle"]:
        """Up to ``count`` more handles that read exactly this handle's snapshot (PostgreSQL Synapse only).

        Each opens a connection like the source's, imports the snapshot this transaction exports
        (REPEATABLE READ may import a SERIALIZABLE snapshot) and takes ACCESS SHARE locks on the six
        tables with NOWAIT: a clone must never queue behind another session's lock request, which
        would itself wait for this transaction. Any failure only means fewer clones (the queries then
        run on this handle); callers close them with :meth:`close`.
        """
        source = self.source
        if not isinstance(source, PostgresSource) or count < 1:
            return []
        try:
            snapshot = source.export_snapshot()
            conninfo, password = source.conninfo()
        except Syn2MasError:
            return []
        out: list[DbHandle] = []
        for _ in range(count):
            conn = None
            try:
                conn = psycopg.connect(conninfo, password=password, autocommit=True, connect_timeout=10)
                clone = PostgresSource(conn, snapshot=snapshot)
                for table in SYNAPSE_TABLES:
                    conn.execute(pgsql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE NOWAIT").format(pgsql.Identifier(table)))
            except psycopg.Error:
                if conn is not None:
                    conn.close()
                break
            out.append(DbHandle(self.database, self.dialect, conn, self.location, clone))
        return out

    def close(self) -> None:
        """End a clone's transaction and close its connection (never called on the handles callers pass)."""
        if self.source is not None:
            self.source.close()

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
            switches = getattr(sql, "planner", ())
            with self.conn.cursor() as cur:
                previous = self._switch(cur, switches)
                # Same `:name` → `%(name)s` conversion as the migrator's Synapse reader.
                cur.execute(PostgresSource._convert(text), values)
                names = [d.name for d in cur.description or ()]
                rows = cur.fetchall()
                self._switch(cur, previous)
        return [{n: plain(v) for n, v in zip(names, row)} for row in rows]

    @staticmethod
    def _switch(cur: Any, switches: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        """Set planner switches for the rest of the transaction; returns their previous values."""
        previous = []
        for name, value in switches:
            cur.execute("SELECT current_setting(%(n)s), set_config(%(n)s, %(v)s, true)", {"n": name, "v": value})
            previous.append((name, str(cur.fetchone()[0])))
        return tuple(previous)

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


def server_is_local(host: str | None) -> bool:
    """Whether libpq's ``host`` (as psycopg's ``conn.info.host`` gives it) is this machine: a Unix
    socket directory, ``localhost`` or a loopback address."""
    if not host or host.startswith("/") or host.startswith("@") or host == "localhost":
        return True  # (no host: libpq's default Unix socket; "@": Linux's abstract socket namespace)
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def textregexeq(value: Any, pattern: Any) -> int | None:
    """PostgreSQL's ``textregexeq(string, pattern)`` (the function of ``string ~ pattern``) for SQLite.

    1 when the pattern matches anywhere in the string, 0 when not, NULL when either is NULL (strict).
    """
    if value is None or pattern is None:
        return None
    return 1 if re.search(str(pattern), str(value)) else 0


def octet_length(value: Any) -> int | None:
    """PostgreSQL's ``octet_length`` for SQLite before 3.43: bytes of a text's UTF-8 (or of a blob).

    NULL for NULL; other values (numbers) count the bytes of their text form, as SQLite's own does.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        return len(value)
    return len(str(value).encode("utf-8", "surrogatepass"))
