"""`migrate --report-skipped DIR`: one CSV per entity with the keys of the skipped rows (data-migration.md §14.5).

Keys only: user id, device id, medium, provider, the Synapse row ids of access and refresh tokens, and
the skip reason; never a token, hash, address or external subject. Files are created with mode 0600
under temporary names and renamed into place only when the run succeeded (:meth:`SkippedWriter.commit`),
so a refused or failed run leaves no partial list behind.

The pipeline (migrator/pipeline.py) is not changed for this: :class:`RecordingPipeline` remembers the row
each phase is classifying, and :class:`RecordingStats` (the report's per-entity counters) writes that
row's keys whenever a row is counted as skipped. A normal run pays nothing for it.
"""
from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from typing import IO, Any

from engine.errors import ConfigError

from . import queries
from .pipeline import Pipeline
from .report import ENTITIES, EntityStats, MigrationReport

# The key columns of each entity's CSV (the reason is always the last column).
COLUMNS: dict[str, tuple[str, ...]] = {
    "users": ("user_id",),
    "passwords": ("user_id",),
    "emails": ("user_id", "medium"),
    "unsupported_threepids": ("user_id", "medium"),
    "links": ("user_id", "provider"),
    "devices": ("user_id", "device_id"),
    "deviceless_sessions": ("access_token_id", "user_id"),
    "access_tokens": ("access_token_id", "user_id", "device_id"),
    "refresh_tokens": ("refresh_token_id", "access_token_id", "user_id", "device_id"),
}

# Positions of the key columns in each phase's row (the SELECT lists of migrator/queries.py). Phase 1's
# query is built at run time, so it is looked up by table; the others by their query text.
_USERS_POSITIONS = {"user_id": 0}
_POSITIONS: dict[str, dict[str, int]] = {
    queries.THREEPIDS: {"user_id": 0, "medium": 1},
    queries.LINKS: {"user_id": 0, "provider": 1},
    queries.SESSIONS: {key: queries.SESSION_COLUMNS.index(column) for key, column in (
        ("user_id", "user_id"), ("device_id", "device_id"), ("access_token_id", "int_a"),
        ("refresh_token_id", "int_c"))},
}
_SUFFIX = ".partial"


def check_directory(path: str) -> None:
    """Refuse (exit 1) before any work when the CSV files could not be written at the end."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError("--report-skipped must name a directory", file=path)
    parent = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError("cannot write the skipped-rows lists: the directory (or its parent) is missing or "
                          "not writable", file=path, hint="choose another --report-skipped directory")


def _open_private(path: str) -> IO[str]:
    """A new file readable by its owner only (0600, whatever the umask), truncated if it existed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "w", encoding="utf-8", newline="")


class SkippedWriter:
    """The nine CSV files of one run, streamed (no per-row memory), committed or discarded at the end."""

    def __init__(self, directory: str):
        self.directory = directory
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self._files: dict[str, IO[str]] = {}
        self._writers: dict[str, Any] = {}
        try:
            for entity in ENTITIES:
                fh = _open_private(self._path(entity) + _SUFFIX)
                self._files[entity] = fh
                self._writers[entity] = csv.writer(fh, lineterminator="\n")
                self._writers[entity].writerow([*COLUMNS[entity], "reason"])
        except OSError as exc:
            self.discard()
            raise ConfigError(f"cannot write the skipped-row lists: {exc.strerror or exc}", file=directory,
                              hint="choose another --report-skipped directory; nothing was written") from None

    def _path(self, entity: str) -> str:
        return os.path.join(self.directory, f"skipped-{entity}.csv")

    def write(self, entity: str, keys: list[Any], reason: str) -> None:
        """One skipped row: its keys (NULL as empty) and the reason."""
        self._writers[entity].writerow(["" if k is None else k for k in keys] + [reason])

    def paths(self) -> Iterator[str]:
        """The final file names, in entity order."""
        return (self._path(e) for e in ENTITIES)

    def commit(self) -> None:
        """Close and move the files into place."""
        for entity, fh in self._files.items():
            fh.close()
            os.replace(self._path(entity) + _SUFFIX, self._path(entity))

    def discard(self) -> None:
        """Close and delete the partial files (the run failed or was refused)."""
        for entity, fh in self._files.items():
            fh.close()
            try:
                os.unlink(self._path(entity) + _SUFFIX)
            except FileNotFoundError:
                pass


class RecordingStats(EntityStats):
    """An entity's counters that also write the keys of each skipped row."""

    def __init__(self, entity: str, pipeline_row: "RecordingPipeline", out: SkippedWriter):
        super().__init__()
        self._entity = entity
        self._row = pipeline_row
        self._out = out

    def skip(self, reason: str) -> None:
        """Count the skip, then write the current row's keys for this entity."""
        super().skip(reason)
        self._out.write(self._entity, self._row.keys(COLUMNS[self._entity]), reason)


class RecordingPipeline(Pipeline):
    """The migration pipeline, remembering the row being classified so that skips can name it."""

    def __init__(self, source: Any, *, report: MigrationReport, skipped: SkippedWriter, **kwargs: Any):
        # Before Pipeline.__init__, which keeps a reference to report.entities.
        report.entities = {e: RecordingStats(e, self, skipped) for e in ENTITIES}
        super().__init__(source, report=report, **kwargs)
        self._current: tuple = ()
        self._positions: dict[str, int] = {}

    def _stream(self, phase: str, tables: tuple[str, ...], query: str, note: str = "") -> Any:
        self._positions = _USERS_POSITIONS if tables == ("users",) else _POSITIONS[query]
        for row in super()._stream(phase, tables, query, note):
            self._current = row
            yield row

    def keys(self, columns: tuple[str, ...]) -> list[Any]:
        """The values of ``columns`` in the current row (a column the phase lacks is a programming error)."""
        return [self._current[self._positions[c]] for c in columns]
