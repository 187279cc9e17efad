"""`migrate --plan`: the strictly read-only run (data-migration.md §11, last paragraph).

:class:`PlanTarget` stands in for the MAS writer (migrator/writer.py) in ``run.migrate``: the same
preconditions are checked (``masschema.precondition_failure``), but in a `READ ONLY` snapshot, without the
migration's advisory lock, without locking or altering a table; the rows the pipeline produces are only
counted, so that the report (counts, skip reasons, reconciliation of expected against produced rows) is
the one a dry run would give, and MAS is never written.
"""
from __future__ import annotations

import contextlib
import re
from collections import Counter

import psycopg

from engine.dbconnect import CONNECT_ERRORS, connection_failure
from engine.errors import DatabaseError

from . import masschema
from .writer import MasRefused

# The row filters of report.ENTITY_TABLES that reconciliation asks for: `TRUE`, `<column> IS [NOT] NULL`.
_FILTER = re.compile(r"^(?:TRUE|(?P<column>[a-z_]+) IS (?P<negated>NOT )?NULL)$")


class PlanTarget:
    """The MAS side of a plan: read-only precondition checks, then counting instead of writing.

    Offers what ``run.migrate`` uses of ``MasWriter``: ``open``, ``add`` (the pipeline's sink), ``rebuild``,
    ``count``, ``finish``, ``abort`` and the two timings (always 0: nothing is copied or rebuilt).
    """

    def __init__(self, uri: str):
        self.uri = uri
        self.conn: psycopg.Connection | None = None
        self.copy_seconds = 0.0
        self.rebuild_seconds = 0.0
        # (table, None) counts every row; (table, (column index, is null)) the rows by one column's nullness.
        self._rows: Counter = Counter()
        self._column_index = {table: {name: i for i, (name, _) in enumerate(cols)}
                          for table, cols in masschema.COPY_COLUMNS.items()}

    def open(self, provider_ids: list[str]) -> int | None:
        """Check the MAS preconditions in a read-only snapshot (no lock of any kind); returns the schema version."""
        try:
            self.conn = psycopg.connect(self.uri, autocommit=True, application_name="syn2mas-plan")
        except CONNECT_ERRORS as exc:
            raise DatabaseError(f"cannot connect to the MAS database: {connection_failure(exc, self.uri)}") from None
        try:
            self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            failed = masschema.precondition_failure(self.conn, provider_ids)
            if failed:
                raise MasRefused(*failed)
            return masschema.found_version(self.conn)
        except BaseException:
            self.abort()
            raise

    def add(self, table: str, row: tuple) -> None:
        """Count one row (and, for reconciliation's filters, whether each of its columns is NULL)."""
        self._rows[(table, None)] += 1
        for index, value in enumerate(row):
            if value is None:
                self._rows[(table, index)] += 1

    def complete(self, tables: tuple[str, ...]) -> None:
        """Nothing to rebuild early: no index or constraint was touched."""

    def rebuild(self) -> None:
        """Nothing to rebuild: no index or constraint was touched."""

    def count(self, table: str, where: str) -> int:
        """Rows the pipeline produced for ``table`` matching the reconciliation filter ``where``."""
        match = _FILTER.match(where)
        if match is None:
            raise ValueError(f"unsupported reconciliation filter for a plan: {where!r}")
        total = self._rows[(table, None)]
        if match["column"] is None:
            return total
        nulls = self._rows[(table, self._column_index[table][match["column"]])]
        return total - nulls if match["negated"] else nulls

    def finish(self, commit: bool) -> None:
        """End the read-only snapshot (``commit`` is irrelevant: nothing was written)."""
        self.abort()

    def abort(self) -> None:
        """Roll back the read-only snapshot and close; safe to call twice."""
        if self.conn is None or self.conn.closed:
            return
        with contextlib.suppress(psycopg.Error):
            self.conn.execute("ROLLBACK")
        self.conn.close()
