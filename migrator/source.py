"""Read-only access to the Synapse database, PostgreSQL or SQLite (data-migration.md §2).

One connection, one consistent read transaction for everything (checks included); rows are streamed in
batches (server-side cursors on PostgreSQL). Nothing is ever written: PostgreSQL runs a
``SERIALIZABLE READ ONLY DEFERRABLE`` transaction, SQLite is opened through a ``mode=ro`` URI with
``query_only``. SQL shared by both dialects uses ``:name`` parameters.
"""
from __future__ import annotations

import abc
import contextlib
import logging
import os
import re
import sqlite3
import urllib.parse
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql

from engine.dbconnect import CONNECT_ERRORS, connection_failure
from engine.errors import DatabaseError, Syn2MasError

from .writer import describe

log = logging.getLogger("syn2mas.migrator")

SYNAPSE_TABLES: tuple[str, ...] = ("users", "user_threepids", "user_external_ids", "devices", "access_tokens",
                                   "refresh_tokens")

# Every column the migrator reads (§2.3). `users.locked` and `users.approved` are optional.
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "users": ("name", "password_hash", "admin", "deactivated", "creation_ts", "is_guest", "appservice_id"),
    "user_threepids": ("user_id", "medium", "address", "added_at"),
    "user_external_ids": ("auth_provider", "external_id", "user_id"),
    "access_tokens": ("id", "user_id", "device_id", "token", "valid_until_ms", "puppets_user_id", "last_validated",
                      "refresh_token_id", "used"),
    "refresh_tokens": ("id", "user_id", "device_id", "token", "next_token_id"),
    "devices": ("user_id", "device_id", "display_name", "last_seen", "ip", "user_agent", "hidden"),
}
OPTIONAL_USER_COLUMNS: tuple[str, ...] = ("locked", "approved")

_PARAM = re.compile(r"(?<!:):([a-z_][a-z0-9_]*)")


class SynapseStillRunning(Syn2MasError):
    """`synapse-still-running`: Synapse (or another client) still uses its database."""

    check_id = "synapse-still-running"


class SynapseSource(abc.ABC):
    """An open, read-only Synapse database inside one transaction."""

    kind: str = ""
    batch_size: int = 10_000
    _user_cols: frozenset[str] = frozenset()

    @abc.abstractmethod
    def batches(self, query: str, params: dict[str, Any] | None = None) -> Iterator[list[tuple]]:
        """Yield the rows of ``query`` in lists of at most ``batch_size``, never the whole result at once."""

    def stream(self, query: str, params: dict[str, Any] | None = None) -> Iterator[tuple]:
        """Yield the rows of ``query`` without holding the whole result in memory."""
        for rows in self.batches(query, params):
            yield from rows

    def fetchall(self, query: str, params: dict[str, Any] | None = None) -> list[tuple]:
        """All rows of a small query (aggregates, samples)."""
        return list(self.stream(query, params))

    def scalar(self, query: str, params: dict[str, Any] | None = None) -> Any:
        """The first column of the first row, or None."""
        rows = self.fetchall(query, params)
        return rows[0][0] if rows else None

    @abc.abstractmethod
    def columns(self, table: str) -> set[str]:
        """Column names of ``table`` (empty when the table does not exist)."""

    @abc.abstractmethod
    def estimate(self, table: str) -> int:
        """Approximate row count for progress (reltuples, or count(*) for SQLite)."""

    @abc.abstractmethod
    def instr(self, haystack: str, needle: str) -> str:
        """SQL for the 1-based position of ``needle`` in ``haystack`` (0 when absent)."""

    @abc.abstractmethod
    def close(self) -> None:
        """End the read transaction (it wrote nothing) and close the connection."""

    def user_columns(self) -> frozenset[str]:
        """Which optional `users` columns exist (after `check_schema`)."""
        return self._user_cols

    def check_schema(self) -> None:
        """Schema guard (§2.1): every column read must exist; `users.locked`/`approved` may be absent."""
        missing = []
        for table, cols in REQUIRED_COLUMNS.items():
            have = self.columns(table)
            if not have:
                missing.append(f"table `{table}`")
                continue
            missing.extend(f"`{table}.{c}`" for c in cols if c not in have)
        if missing:
            raise DatabaseError("the Synapse database lacks " + ", ".join(missing),
                                hint="is this a Synapse database, and has Synapse finished its schema upgrades?")
        self._user_cols = frozenset(c for c in OPTIONAL_USER_COLUMNS if c in self.columns("users"))

    def __enter__(self) -> SynapseSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def _read_errors() -> Iterator[None]:
    """A PostgreSQL error while reading Synapse (connection lost, server shut down) as a DatabaseError."""
    try:
        yield
    except psycopg.Error as exc:
        raise DatabaseError(f"reading the Synapse database failed: {describe(exc)}",
                            hint="check the Synapse database server, then retry") from None


_UNITS_KB = {"kB": 1, "MB": 1024, "GB": 1024 ** 2, "TB": 1024 ** 3}


def _kilobytes(setting: str) -> int:
    """A memory setting as SHOW prints it (`4MB`, `65536kB`, `1GB`) in kB; unknown forms count as 0."""
    m = re.fullmatch(r"\s*(\d+)\s*(kB|MB|GB|TB)?\s*", setting)
    return int(m.group(1)) * _UNITS_KB[m.group(2) or "kB"] if m else 0


class PostgresSource(SynapseSource):
    """Synapse on PostgreSQL: one SERIALIZABLE READ ONLY DEFERRABLE transaction, server-side cursors."""

    kind = "postgresql"

    # The phase queries' sorts and hashes (the devices-and-tokens stream, refresh pairs) would spill to
    # disk early with PostgreSQL's default 4 MB; the read transaction raises it for itself, never
    # lowers it.
    WORK_MEM_KB = 64 * 1024

    def __init__(self, conn: psycopg.Connection, snapshot: str | None = None):
        self.conn = conn
        self._n = 0
        if snapshot is None:
            conn.execute("BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE")
        else:
            # A parallel worker (migrator/parallel.py): exactly the main connection's snapshot, which
            # was taken after its locks; REPEATABLE READ may import a SERIALIZABLE transaction's snapshot.
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        # Every cursor is read to the end: plan for total time, not for the first rows.
        conn.execute("SET LOCAL cursor_tuple_fraction = 1.0")
        # The transaction waits while MAS rebuilds indexes (between phases 3 and 4, and at the end), for
        # minutes on a large server: a server-wide idle_in_transaction_session_timeout must not end it.
        conn.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
        # SHOW, unlike a SELECT, takes no snapshot: the snapshot must come after lock_tables().
        if _kilobytes(str(conn.execute("SHOW work_mem").fetchone()[0])) < self.WORK_MEM_KB:
            conn.execute(f"SET LOCAL work_mem = '{self.WORK_MEM_KB}kB'")

    def export_snapshot(self) -> str:
        """Export this transaction's snapshot for parallel workers (valid while the transaction lasts)."""
        with _read_errors():
            return str(self.conn.execute("SELECT pg_export_snapshot()").fetchone()[0])

    def conninfo(self) -> tuple[str, str | None]:
        """(libpq connection string without the password, the password) to open more connections like this one."""
        return self.conn.info.dsn, self.conn.info.password

    @staticmethod
    def _convert(query: str) -> str:
        return _PARAM.sub(r"%(\1)s", query.replace("%", "%%"))

    def batches(self, query: str, params: dict[str, Any] | None = None) -> Iterator[list[tuple]]:
        self._n += 1
        with _read_errors(), self.conn.cursor(name=f"syn2mas_{self._n}") as cur:
            cur.itersize = self.batch_size
            cur.execute(self._convert(query), params or {})
            while True:
                rows = cur.fetchmany(self.batch_size)
                if not rows:
                    break
                yield rows

    def columns(self, table: str) -> set[str]:
        with _read_errors(), self.conn.cursor() as cur:
            cur.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
                        "AND table_name = %s", (table,))
            return {r[0] for r in cur.fetchall()}

    def estimate(self, table: str) -> int:
        with _read_errors(), self.conn.cursor() as cur:
            cur.execute("SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)", (table,))
            row = cur.fetchone()
        return max(int(row[0]), 0) if row and row[0] is not None else 0

    def instr(self, haystack: str, needle: str) -> str:
        return f"strpos({haystack}, {needle})"

    def lock_tables(self, exclusive: bool, assume_stopped: bool) -> None:
        """Lock the six tables (§2.2): EXCLUSIVE for a real run (proves Synapse is stopped), else ACCESS SHARE."""
        mode = "EXCLUSIVE" if exclusive else "ACCESS SHARE"
        self.conn.execute("SAVEPOINT syn2mas_locks")
        try:
            for t in SYNAPSE_TABLES:
                self.conn.execute(sql.SQL("LOCK TABLE {} IN " + mode + " MODE NOWAIT").format(sql.Identifier(t)))
        except pgerrors.UndefinedTable:
            self.conn.execute("ROLLBACK TO SAVEPOINT syn2mas_locks")
            self.check_schema()  # names every missing table and column
            raise
        except pgerrors.LockNotAvailable:
            raise SynapseStillRunning(
                "Synapse (or another client) is still using its database: the Synapse tables cannot be locked",
                hint="stop Synapse and all its workers, then retry") from None
        except pgerrors.InsufficientPrivilege:
            self.conn.execute("ROLLBACK TO SAVEPOINT syn2mas_locks")
            if not assume_stopped:
                raise SynapseStillRunning(
                    "the Synapse database role may only read, so syn2mas cannot prove that Synapse is stopped",
                    hint="stop Synapse and pass --assume-synapse-stopped, or use a role with UPDATE privilege "
                         "on the Synapse tables") from None
            for t in SYNAPSE_TABLES:
                self.conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE NOWAIT").format(sql.Identifier(t)))
            for app, addr in self.other_sessions():
                log.warning("another session is connected to the Synapse database: application %r from %s",
                            app, addr or "local socket")
        self.conn.execute("RELEASE SAVEPOINT syn2mas_locks")

    def other_sessions(self) -> list[tuple[str, str | None]]:
        """(application_name, client address) of other sessions on the Synapse database."""
        with self.conn.cursor() as cur:
            cur.execute("SELECT coalesce(application_name, ''), host(client_addr) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid() ORDER BY 1, 2")
            return [(r[0], r[1]) for r in cur.fetchall()]

    def close(self) -> None:
        if self.conn.closed:
            return
        try:
            self.conn.execute("COMMIT")  # the transaction is read-only: this only ends it
        except psycopg.Error:
            pass  # a lost connection has ended the read-only transaction already
        finally:
            self.conn.close()


class SqliteSource(SynapseSource):
    """Synapse on SQLite, opened read-only, all reads in one transaction."""

    kind = "sqlite"

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        if os.path.isdir(self.path):
            raise DatabaseError(f"the SQLite database path is a directory: {path}",
                                hint="give the database file itself (Synapse's `database.args.database`)")
        if not os.path.isfile(self.path):
            raise DatabaseError(f"SQLite database not found: {path}")
        uri = "file:" + urllib.parse.quote(self.path) + "?mode=ro"
        try:
            self.conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA query_only = ON")
            self.conn.execute("BEGIN")
            self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # starts the read snapshot
        except sqlite3.Error as exc:
            raise DatabaseError(
                f"cannot open the Synapse SQLite database read-only ({exc.__class__.__name__}: {exc})",
                file=path,
                hint="stop Synapse, copy the database file together with its -wal file, and point "
                     "--synapse-sqlite at the copy") from None

    def batches(self, query: str, params: dict[str, Any] | None = None) -> Iterator[list[tuple]]:
        cur = self.conn.execute(query, params or {})
        try:
            while True:
                rows = cur.fetchmany(self.batch_size)
                if not rows:
                    break
                yield rows
        finally:
            cur.close()

    def columns(self, table: str) -> set[str]:
        return {r[1] for r in self.conn.execute("SELECT * FROM pragma_table_info(?)", (table,)).fetchall()}

    def estimate(self, table: str) -> int:
        return int(self.conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])

    def instr(self, haystack: str, needle: str) -> str:
        return f"instr({haystack}, {needle})"

    def other_openers(self) -> list[int] | None:
        """PIDs of other processes holding the database file open; None when this cannot be determined."""
        if not os.path.isdir("/proc/self/fd"):
            return None
        targets = {os.path.realpath(self.path + suffix) for suffix in ("", "-wal")}
        me = os.getpid()
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == me:
                continue
            fd_dir = f"/proc/{entry}/fd"
            try:
                fds = os.listdir(fd_dir)
            except OSError:
                continue  # gone, or not ours to inspect
            for fd in fds:
                try:
                    if os.path.realpath(os.path.join(fd_dir, fd)) in targets:
                        pids.append(int(entry))
                        break
                except OSError:
                    continue
        return sorted(pids)

    def ensure_stopped(self, assume_stopped: bool) -> None:
        """`synapse-still-running` for SQLite: no other process may have the file open."""
        openers = self.other_openers()
        if openers is None:
            if not assume_stopped:
                raise SynapseStillRunning("cannot tell whether another process uses the SQLite database",
                                          hint="stop Synapse and pass --assume-synapse-stopped")
            return
        if openers:
            raise SynapseStillRunning(f"{len(openers)} other process(es) have the Synapse SQLite database open "
                                      f"(pid {', '.join(map(str, openers[:5]))})",
                                      hint="stop Synapse and all its workers, then retry")

    def close(self) -> None:
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error:
            pass
        self.conn.close()


def connection_kwargs(database: dict[str, Any]) -> dict[str, Any]:
    """libpq keywords from a Synapse ``database`` section (§2.1): every ``args`` key except ``cp_*``."""
    if not isinstance(database.get("args") or {}, dict):
        raise DatabaseError("`database.args` must be a mapping of connection settings", key="database.args")
    args = dict(database.get("args") or {})
    if "dbname" in args and "database" in args:
        raise DatabaseError("the Synapse database section sets both `dbname` and `database`", key="database.args",
                            hint="keep only `dbname`")
    if "database" in args:
        args["dbname"] = args.pop("database")
    kwargs = {k: (str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
              for k, v in args.items() if not k.startswith("cp_") and v is not None}
    kwargs.setdefault("application_name", "syn2mas-synapse")
    return kwargs


def _connect_pg(conninfo: str, kwargs: dict[str, Any]) -> psycopg.Connection:
    try:
        return psycopg.connect(conninfo, autocommit=True, **kwargs)
    except CONNECT_ERRORS as exc:
        failure = connection_failure(exc, conninfo, kwargs.get("password"))
        raise DatabaseError(f"cannot connect to the Synapse database: {failure}") from None


def sqlite_database(path: str) -> dict[str, Any]:
    """``--synapse-sqlite PATH`` as a Synapse ``database`` section, so that no file name (one holding
    ``=``, say) is ever taken for a libpq connection string."""
    return {"name": "sqlite3", "args": {"database": path}}


def open_source(database: str | dict[str, Any], *, exclusive: bool = False, assume_stopped: bool = False,
                lock: bool = True) -> SynapseSource:
    """Open the Synapse database read-only in one snapshot.

    ``database`` is a libpq URI (``postgresql://...``), a SQLite file path, or Synapse's ``database``
    configuration section. With ``exclusive`` (a real migration) the tables are locked EXCLUSIVE NOWAIT
    (PostgreSQL) or the file must not be open elsewhere (SQLite); otherwise ACCESS SHARE.
    """
    source: SynapseSource
    if isinstance(database, dict):
        name = database.get("name", "sqlite3")
        if name in ("psycopg2", "psycopg", "postgres", "postgresql"):
            source = PostgresSource(_connect_pg("", connection_kwargs(database)))
        elif name in ("sqlite3", "sqlite"):
            path = (database.get("args") or {}).get("database")
            if not path:
                raise DatabaseError("the Synapse database section has no `args.database` file", key="database.args")
            source = SqliteSource(str(path))
        else:
            raise DatabaseError(f"unsupported Synapse database engine `{name}`", key="database.name",
                                hint="Synapse supports `psycopg2` and `sqlite3`")
    elif database.startswith(("postgresql://", "postgres://")) or "=" in database:
        source = PostgresSource(_connect_pg(database, {"application_name": "syn2mas-synapse"}
                                            if "application_name" not in database else {}))
    else:
        source = SqliteSource(database)
    try:
        # Locks first: the serialisable snapshot is taken by the first query, and it must not predate
        # the EXCLUSIVE locks, or writes Synapse commits while we wait for them would be missed.
        if lock and isinstance(source, PostgresSource):
            source.lock_tables(exclusive, assume_stopped)
        elif lock and exclusive and isinstance(source, SqliteSource):
            source.ensure_stopped(assume_stopped)
        source.check_schema()
    except BaseException:
        source.close()
        raise
    return source
