"""The MAS writer: one connection, one transaction, all or nothing (data-migration.md §14.1).

Order: advisory lock → BEGIN → raise maintenance_work_mem (never lower it) → LOCK the eight tables
ACCESS EXCLUSIVE NOWAIT → re-check schema/emptiness/providers → save and drop keys, foreign keys and
indexes (read from the catalogue) → TRUNCATE the (empty) eight → COPY FREEZE rows → per group of
complete tables (the account tables once phase 3 is over, while phase 4 still streams; then the rest):
recreate indexes, then primary/unique keys, then foreign keys, then ANALYZE → reconcile
→ COMMIT (or ROLLBACK for a dry run) → unlock. Any failure before COMMIT rolls back
everything, DDL included, so MAS is exactly as before. A connection lost during COMMIT itself leaves the
outcome open: the server may have committed; :func:`committed_after_lost_connection` finds out.

Error messages never quote PostgreSQL's DETAIL (a unique violation there would print a token).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql

from engine.dbconnect import CONNECT_ERRORS, connection_failure
from engine.errors import DatabaseError, Syn2MasError

from . import masschema
from .copytypes import use_id_dumper, wire_types
from .progress import Progress

log = logging.getLogger("syn2mas.migrator")

# The reference's advisory lock key (HKDF of "syn2mas-maswriter"), so both tools exclude each other (§10.2).
MIGRATION_LOCK_KEY = 6584285998412104315


class MasRefused(Syn2MasError):
    """A precondition on the MAS database failed (`mas-schema-missing`, `mas-database-not-empty`, ...)."""

    def __init__(self, check_id: str, problems: list[str]):
        super().__init__(f"{check_id}: " + "; ".join(problems),
                         hint="run `syn2mas check` for details; nothing was written")
        self.check_id = check_id
        self.problems = problems


def describe(exc: psycopg.Error) -> str:
    """A secret-free description of a PostgreSQL error: SQLSTATE, primary message, constraint."""
    diag = exc.diag
    text = f"{type(exc).__name__}"
    if diag.constraint_name:
        text += f" on constraint `{diag.constraint_name}`"
        if diag.table_name:
            text += f" of table `{diag.table_name}`"
    elif diag.message_primary and not isinstance(exc, (pgerrors.IntegrityError, pgerrors.DataError)):
        text += f": {diag.message_primary}"
    elif exc.sqlstate is None and str(exc).strip():
        # raised by libpq itself (connection lost): its text holds no data values
        text += f": {str(exc).strip().splitlines()[0]}"
    return text


def mas_failure(exc: psycopg.Error) -> DatabaseError:
    """An unexpected PostgreSQL error on the MAS connection (lost connection, server shut down, ...)."""
    return DatabaseError(f"the MAS database failed: {describe(exc)}; nothing was committed",
                         hint="check the MAS database server, then run the migration again")


def _write_failure(table: str, exc: psycopg.Error) -> DatabaseError:
    """A failed COPY into ``table``; text PostgreSQL cannot store (a NUL character, possible only in a SQLite
    Synapse, or bytes the MAS database's encoding lacks) gets a hint that finds it."""
    hint = None
    if isinstance(exc, (pgerrors.CharacterNotInRepertoire, pgerrors.UntranslatableCharacter)):
        hint = ("a Synapse text value holds a NUL character or a character the MAS database's encoding cannot "
                "store; in a SQLite Synapse, find it with `SELECT rowid FROM <table> WHERE instr(<column>, "
                "char(0)) > 0` and correct it")
    return DatabaseError(f"writing `{table}` failed: {describe(exc)}; nothing was committed", hint=hint)


def _rebuild_hint(exc: psycopg.Error, default: str) -> str:
    """What to do when a rebuild step fails: an index entry too large means an oversized value."""
    if isinstance(exc, pgerrors.ProgramLimitExceeded):
        return ("a value is too long for a MAS index entry (about 2,700 bytes): a user id, email address or "
                "token that long; find it in Synapse with `SELECT ... WHERE length(<column>) > 2000`")
    return default


def _copy_statement(table: str) -> sql.Composed:
    """COPY of ``table``'s COPY_COLUMNS from binary data on standard input.

    FREEZE: the tables were emptied by TRUNCATE in this transaction (:meth:`MasWriter.open`), so the rows
    are written frozen and all-visible: no hint-bit writes when MAS first reads them and no freezing
    vacuum of millions of rows later (and no WAL at all where the server runs with `wal_level=minimal`).
    """
    return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY, FREEZE)").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c) for c, _ in masschema.COPY_COLUMNS[table]))


def _constraint_label(table: str, name: str) -> str:
    """A constraint's rebuild step label (constraint names are unique only per table)."""
    return f"constraint {name} on {table}"


@dataclass
class SavedDefinitions:
    """Constraint and index definitions of the eight tables, read from the catalogue before dropping."""

    foreign_in: list[tuple[str, str, str]] = field(default_factory=list)   # (table, name, definition)
    foreign_own: list[tuple[str, str, str]] = field(default_factory=list)
    keys: list[tuple[str, str, str]] = field(default_factory=list)         # primary and unique
    indexes: list[tuple[str, str]] = field(default_factory=list)           # (name, CREATE INDEX ...)
    # step label ("index <name>", "constraint <name> on <table>": a constraint name is unique only per
    # table) → the target tables it needs complete (its own table if it is one, and the one a foreign
    # key references if that is one)
    needs: dict[str, frozenset[str]] = field(default_factory=dict)


def committed_after_lost_connection(uri: str, backend_pid: int, *, wait_s: float = 30.0) -> bool | None:
    """Whether a migration whose connection was lost during COMMIT got committed (None: unknown).

    Its server process is waited for first: it finishes a COMMIT it has received whatever happened to
    the client, so the tables are only looked at once it is gone. They were checked empty under the
    migration's locks, so rows in `users` mean that its COMMIT went through.
    """
    try:
        with psycopg.connect(uri, autocommit=True, connect_timeout=10, application_name="syn2mas-probe") as conn:
            deadline = time.monotonic() + wait_s
            while conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (backend_pid,)).fetchone():
                if time.monotonic() > deadline:
                    return None
                time.sleep(0.1)
            return bool(conn.execute("SELECT EXISTS (SELECT 1 FROM users)").fetchone()[0])
    except psycopg.Error:
        return None


class MasWriter:
    """Streams rows into the eight MAS tables inside a single transaction."""

    def __init__(self, uri: str, *, batch_size: int = 5000, maintenance_work_mem: str = "512MB",
                 progress: Progress | None = None, fail_hook: Callable[[str], None] | None = None):
        self.uri = uri
        self.batch_size = batch_size
        self.maintenance_work_mem = maintenance_work_mem
        self.progress = progress or Progress()
        # Test hook: called with a step name at each step; raising there simulates a crash at that step.
        self.fail_hook = fail_hook or (lambda step: None)
        self.conn: psycopg.Connection | None = None
        self._locked = False
        self._buffers: dict[str, list[tuple]] = {t: [] for t in masschema.TARGET_TABLES}
        self.saved = SavedDefinitions()
        self.copy_seconds = 0.0
        self.rebuild_seconds = 0.0
        self._complete: set[str] = set()   # target tables whose every row has been written
        self._rebuilt: set[str] = set()    # step labels of the indexes and constraints already recreated

    # -- opening ---------------------------------------------------------------------------------
    def open(self, provider_ids: list[str]) -> int | None:
        """Lock, begin, lock tables, re-check MAS, drop constraints; returns the MAS schema version."""
        try:
            self.conn = psycopg.connect(self.uri, autocommit=True, application_name="syn2mas")
            use_id_dumper(self.conn.adapters)  # ids arrive as integers (migrator/ids.py)
        except CONNECT_ERRORS as exc:
            raise DatabaseError(f"cannot connect to the MAS database: {connection_failure(exc, self.uri)}") from None
        try:
            row = self.conn.execute("SELECT pg_try_advisory_lock(%s)", (MIGRATION_LOCK_KEY,)).fetchone()
            if not row[0]:
                raise DatabaseError("another migration is running against this MAS database",
                                    hint="wait for it to finish; only one migration may run at a time")
            self._locked = True
            self.fail_hook("locked")
            self.conn.execute("BEGIN")
            # Raised for the index builds, never lowered below what the server's administrator set.
            self.conn.execute("SELECT set_config('maintenance_work_mem', %(mem)s, true) WHERE "
                              "pg_size_bytes(current_setting('maintenance_work_mem')) < pg_size_bytes(%(mem)s)",
                              {"mem": self.maintenance_work_mem})
            self._lock_tables()
            failed = masschema.precondition_failure(self.conn, provider_ids)
            if failed:
                raise MasRefused(*failed)
            version = masschema.found_version(self.conn)
            self.fail_hook("checked")
            self._save_definitions()
            self._drop_definitions()
            # The targets are empty (checked above under ACCESS EXCLUSIVE locks held since): TRUNCATE
            # changes nothing visible, but gives them new files, which COPY FREEZE requires.
            self.conn.execute(sql.SQL("TRUNCATE {}").format(
                sql.SQL(", ").join(sql.Identifier(t) for t in masschema.TARGET_TABLES)))
            self.fail_hook("dropped")
            return version
        except psycopg.Error as exc:
            self.abort()
            raise mas_failure(exc) from None
        except BaseException:
            self.abort()
            raise

    def _lock_tables(self) -> None:
        tables = sql.SQL(", ").join(sql.Identifier(t) for t in masschema.TARGET_TABLES)
        try:
            self.conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE NOWAIT").format(tables))
        except pgerrors.LockNotAvailable:
            raise DatabaseError("MAS appears to be running: its tables are in use",
                                hint="stop MAS (and anything else using its database) during the migration") from None
        except pgerrors.UndefinedTable:
            self.conn.execute("ROLLBACK")  # the failed LOCK aborted the transaction; look around outside it
            if masschema.leftover_tables(self.conn):
                # An interrupted reference run renamed them: the same refusal as `check` gives.
                raise MasRefused("mas-database-not-empty", masschema.emptiness_problems(self.conn)) from None
            raise MasRefused("mas-schema-missing", ["the MAS tables do not exist: is this a MAS database? "
                                                    "run `mas-cli database migrate`"]) from None

    def _save_definitions(self) -> None:
        targets = list(masschema.TARGET_TABLES)
        saved = self.saved
        with self.conn.cursor() as cur:
            # The tables by oid, not by regclass text (which is schema-qualified outside the search path).
            cur.execute("""
                SELECT c.conrelid::regclass::text, c.conname, c.contype, pg_get_constraintdef(c.oid),
                       c.conrelid = ANY(%(t)s::regclass[]),
                       ARRAY(SELECT t FROM unnest(%(t)s::text[]) t
                             WHERE t::regclass IN (c.conrelid, NULLIF(c.confrelid, 0)))
                FROM pg_constraint c
                WHERE (c.contype IN ('p', 'u', 'f') AND c.conrelid = ANY(%(t)s::regclass[]))
                   OR (c.contype = 'f' AND c.confrelid = ANY(%(t)s::regclass[]))
                ORDER BY c.conrelid::regclass::text, c.conname""", {"t": targets})
            for table, name, kind, definition, own, needs in cur.fetchall():
                if kind == "f":
                    (saved.foreign_own if own else saved.foreign_in).append((table, name, definition))
                else:
                    saved.keys.append((table, name, definition))
                saved.needs[_constraint_label(table, name)] = frozenset(needs)
            cur.execute("""
                SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid),
                       ARRAY(SELECT t FROM unnest(%(t)s::text[]) t WHERE t::regclass = i.indrelid)
                FROM pg_index i
                WHERE i.indrelid = ANY(%(t)s::regclass[])
                  AND NOT EXISTS (SELECT 1 FROM pg_constraint c
                                  WHERE c.conindid = i.indexrelid AND c.contype IN ('p', 'u', 'x'))
                ORDER BY 1""", {"t": targets})
            for name, definition, needs in cur.fetchall():
                saved.indexes.append((name, definition))
                saved.needs[f"index {name}"] = frozenset(needs)

    def _drop_definitions(self) -> None:
        # Dependency order: foreign keys from other tables, own foreign keys, keys, then plain indexes.
        for table, name, _ in self.saved.foreign_in + self.saved.foreign_own + self.saved.keys:
            self.conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                sql.SQL(table), sql.Identifier(name)))
        for name, _ in self.saved.indexes:
            self.conn.execute(sql.SQL("DROP INDEX {}").format(sql.SQL(name)))

    # -- loading ---------------------------------------------------------------------------------
    def add(self, table: str, row: tuple) -> None:
        """Queue one row; a full buffer is written with COPY."""
        buf = self._buffers[table]
        buf.append(row)
        if len(buf) >= self.batch_size:
            self._flush(table)

    def _flush(self, table: str) -> None:
        rows = self._buffers[table]
        if not rows:
            return
        started = time.monotonic()
        try:
            with self.conn.cursor() as cur, cur.copy(_copy_statement(table)) as copy:
                copy.set_types(wire_types(table))
                for row in rows:
                    copy.write_row(row)
        except psycopg.Error as exc:
            raise _write_failure(table, exc) from None
        self._buffers[table] = []
        self.copy_seconds += time.monotonic() - started
        self.fail_hook(f"copy:{table}")

    def write_payload(self, table: str, payload: bytes) -> None:
        """COPY ``payload`` (complete binary COPY data of COPY_COLUMNS rows, from a parallel worker) into ``table``."""
        started = time.monotonic()
        try:
            with self.conn.cursor() as cur, cur.copy(_copy_statement(table)) as copy:
                copy.write(payload)
        except psycopg.Error as exc:
            raise _write_failure(table, exc) from None
        self.copy_seconds += time.monotonic() - started
        self.fail_hook(f"copy:{table}")

    def flush_all(self) -> None:
        """Write every buffered row."""
        for table in masschema.TARGET_TABLES:
            self._flush(table)

    # -- finishing -------------------------------------------------------------------------------
    def complete(self, tables: tuple[str, ...]) -> None:
        """Every row of ``tables`` has been written: rebuild what needs only complete tables, and ANALYZE
        them (``rebuild_seconds`` counts the time).

        The account tables are complete once phase 3 is over, so their indexes, keys and foreign keys are
        built while phase 4 still streams (with parallel workers, during the Synapse server's sort of
        phase 4, when this connection would otherwise wait): the trigram index alone is seconds of one
        core at a million users, which no longer adds to the end of the run.
        """
        for table in tables:
            self._flush(table)
        self._complete.update(tables)
        started = time.monotonic()
        saved = self.saved
        steps = [(f"index {name}", sql.SQL(definition)) for name, definition in saved.indexes]
        keys = self._constraint_steps(saved.keys)
        foreign = self._constraint_steps(saved.foreign_own + saved.foreign_in)
        ready = {label for label, _ in steps + keys + foreign
                 if label not in self._rebuilt and saved.needs[label] <= self._complete}
        self._run_steps([step for step in steps if step[0] in ready])
        self._run_steps([step for step in keys if step[0] in ready])
        # Validating a foreign key is one anti-join of the referencing table with the referenced one.
        # Planned as usual it hashes the referenced table (a million users, once per referencing table);
        # both sides have a fresh B-tree on the key by now and their rows are all-visible (COPY FREEZE),
        # so merging the two indexes costs less than half (1M users: 5.6 -> 2.4 s for the eleven keys).
        self.conn.execute("SET LOCAL enable_hashjoin = off")
        self._run_steps([step for step in foreign if step[0] in ready])
        self.conn.execute("RESET enable_hashjoin")
        self._rebuilt |= ready
        # Inside the transaction: reconciliation and the sample comparison then plan with statistics
        # (without them the comparison scanned whole tables), and a committed MAS has them at once.
        self._run_steps([(f"statistics of {table}", sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
                         for table in tables], verb="computing",
                        hint="check the MAS database server (ANALYZE only reads the new rows), then run the "
                             "migration again")
        self.rebuild_seconds += time.monotonic() - started

    def rebuild(self) -> None:
        """Write what is buffered and rebuild everything not rebuilt yet: indexes, then primary/unique
        keys, then foreign keys (which validates them), then ANALYZE the tables not analysed yet."""
        late = [t for t in self._complete if self._buffers[t]]
        if late:  # a programming error: these rows would never be written
            raise RuntimeError(f"rows were added to {', '.join(late)} after the table was complete")
        self.complete(tuple(t for t in masschema.TARGET_TABLES if t not in self._complete))

    @staticmethod
    def _constraint_steps(saved: list[tuple[str, str, str]]) -> list[tuple[str, sql.Composable]]:
        return [(_constraint_label(table, name), sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
            sql.SQL(table), sql.Identifier(name), sql.SQL(definition))) for table, name, definition in saved]

    def _run_steps(self, steps: list[tuple[str, sql.Composable]], verb: str = "rebuilding",
                   hint: str = "run `syn2mas check`; the Synapse data violates a MAS constraint") -> None:
        for label, stmt in steps:
            self.progress.step(f"{verb} {label}")
            try:
                self.conn.execute(stmt)
            except psycopg.Error as exc:
                raise DatabaseError(f"{verb} {label} failed: {describe(exc)}; nothing was committed",
                                    hint=_rebuild_hint(exc, hint)) from None
            self.fail_hook(f"rebuild:{label}")

    def count(self, table: str, where: str) -> int:
        """Rows of ``table`` matching the fixed filter ``where`` (reconciliation)."""
        return int(self.conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE " + where).format(
            sql.Identifier(table))).fetchone()[0])

    def finish(self, commit: bool) -> None:
        """COMMIT (real run) or ROLLBACK (dry run), release the lock."""
        self.fail_hook("before-commit")
        backend = self.conn.info.backend_pid
        try:
            self.conn.execute("COMMIT" if commit else "ROLLBACK")
        except psycopg.Error as exc:
            lost = self.conn.broken
            self.abort()
            if not (commit and lost):
                verb = "COMMIT" if commit else "ROLLBACK"
                raise DatabaseError(f"{verb} failed: {describe(exc)}; nothing was committed") from None
            # The server may have committed before the connection went: ask it.
            committed = committed_after_lost_connection(self.uri, backend)
            if committed is None:
                raise DatabaseError(
                    f"the connection to the MAS database was lost during COMMIT ({describe(exc)}), and whether "
                    "the migration was committed could not be found out",
                    hint="if MAS's `users` table now holds rows, the migration was committed: run "
                         "`syn2mas verify`; if it is empty, run the migration again") from None
            if not committed:
                raise DatabaseError(f"the connection to the MAS database was lost during COMMIT ({describe(exc)}); "
                                    "nothing was committed (MAS's tables are still empty)",
                                    hint="check the MAS database server, then run the migration again") from None
            log.warning("the connection to the MAS database was lost during COMMIT, but the migration was "
                        "committed; run `syn2mas verify` to compare it with Synapse")
            return
        self._unlock()
        self.conn.close()

    def _unlock(self) -> None:
        if self._locked and self.conn is not None and not self.conn.closed:
            try:
                self.conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
            except psycopg.Error:
                pass  # the session lock ends with the connection anyway
            self._locked = False

    def abort(self) -> None:
        """Roll back everything and close; safe to call twice."""
        if self.conn is None or self.conn.closed:
            return
        try:
            if self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                self.conn.execute("ROLLBACK")
        except psycopg.Error:
            pass
        self._unlock()
        self.conn.close()
