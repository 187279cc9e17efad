"""Parallel read phases for PostgreSQL sources: worker processes in the migration's snapshot (§12.3).

The row pipeline (migrator/pipeline.py) is CPU-bound Python: ids, timestamps and COPY formatting per
row. With ``workers > 1`` each worker process opens its own read-only connection to Synapse, imports
the snapshot the main connection exported (taken after its locks, so every worker sees exactly the
data the checks saw) and runs the unchanged pipeline on its share of the users: a user and every row
of that user go to worker ``hashtext(user_id) mod N`` (migrator/queries.py), so per-user and
per-device logic (device session times, refresh pairs) never spans two workers.

Workers format their rows as binary COPY payloads and send them through a pipe; the main process
writes each payload into MAS on its single connection and transaction, so atomicity, locks and the
rebuild are exactly those of a serial run. Pipes give back-pressure: memory stays flat.
A worker ends with its per-entity counts, anomalies and sampled users, which the main process sums.
"""
from __future__ import annotations

import ctypes
import logging
import os
import pickle
import resource
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

import psycopg
from psycopg.adapt import Transformer

from engine.cpus import usable_cpus
from engine.dbconnect import CONNECT_ERRORS, connection_failure
from engine.errors import DatabaseError, Syn2MasError

from . import masschema
from .copytypes import COPY_ADAPTERS, wire_types
from .ids import IdFactory
from .pipeline import Pipeline
from .progress import Progress
from .report import MigrationReport
from .samples import Sampler
from .source import PostgresSource

try:  # psycopg >= 3.2
    from psycopg._copy_base import BinaryFormatter
except ImportError:  # pragma: no cover - psycopg 3.1
    from psycopg.copy import BinaryFormatter  # type: ignore[attr-defined,no-redef]

log = logging.getLogger("syn2mas.migrator")

# Below this many users (planner estimate) starting processes costs more than it saves.
AUTO_MIN_USERS = 20_000
MAX_AUTO_WORKERS = 8
# A worker reports progress every this many rows.
TICK_ROWS = 4096
# A worker sends a table's rows once its binary COPY data reaches this size.
PAYLOAD_BYTES = 2 << 20


def auto_workers(source: Any) -> int:
    """Workers for a run when none is asked for: one per usable CPU (affinity and container quota
    included, at most 8) on PostgreSQL with many users."""
    if os.name != "posix" or not isinstance(source, PostgresSource) or source.estimate("users") < AUTO_MIN_USERS:
        return 1  # workers inherit their pipe as a file descriptor: POSIX only
    return max(1, min(usable_cpus(), MAX_AUTO_WORKERS))


@dataclass(frozen=True)
class WorkerSettings:
    """Everything a worker needs, sent to it once (picklable)."""

    conninfo: str
    password: str | None
    snapshot: str
    user_columns: frozenset[str]
    id_key: bytes
    mapping: dict[str, Any]
    server_name: str
    run_start_ms: int
    ignore_missing_providers: bool
    sample_size: int
    sample_seed: int
    parts: int


# -- the worker side ---------------------------------------------------------------------------------
class PayloadSink:
    """Formats each row at once into its table's binary COPY payload; sends a payload once it holds
    ``payload_bytes`` bytes (and every unsent one at :meth:`flush_all`).

    Rows are not kept as tuples: a payload holds about 100 bytes per row instead of several hundred of
    Python objects, so payloads can be large, and each one is one COPY statement in the main process
    (2 MiB, about 20,000 rows, instead of 5,000 rows: a quarter of the statements).
    """

    def __init__(self, pipe: Connection, payload_bytes: int = PAYLOAD_BYTES):
        self.pipe = pipe
        self.payload_bytes = payload_bytes
        registry = psycopg.adapters.types
        self._transformers: dict[str, Transformer] = {}
        for table in masschema.TARGET_TABLES:
            transformer = Transformer(COPY_ADAPTERS)
            transformer.set_dumper_types([registry.get_oid(typ) for typ in wire_types(table)],
                                         psycopg.pq.Format.BINARY)
            self._transformers[table] = transformer
        self._open: dict[str, _Payload] = {}

    def add(self, table: str, row: tuple) -> None:
        """Format one row into ``table``'s payload; a full payload is sent."""
        payload = self._open.get(table)
        if payload is None:
            payload = self._open[table] = _Payload(self._transformers[table])
        chunk = payload.write_row(row)
        if chunk:  # the formatter hands out its buffer in pieces of 32 KiB
            payload.chunks.append(chunk)
            payload.size += len(chunk)
            if payload.size >= self.payload_bytes:
                self.flush(table)

    def flush(self, table: str) -> None:
        """Send ``table``'s payload (nothing when it holds no row)."""
        payload = self._open.pop(table, None)
        if payload is not None:
            payload.chunks.append(payload.end())
            self.pipe.send(("copy", table))
            self.pipe.send_bytes(b"".join(payload.chunks))

    def complete(self, tables: tuple[str, ...]) -> None:
        """Send ``tables``' payloads, then say that this worker has no more rows for them."""
        for table in tables:
            self.flush(table)
        self.pipe.send(("complete", tables))

    def flush_all(self) -> None:
        """Send every payload that holds rows."""
        for table in masschema.TARGET_TABLES:
            self.flush(table)


class _Payload:
    """The binary COPY data (signature, rows, trailer) of one table's rows, built as they come."""

    __slots__ = ("chunks", "end", "size", "write_row")

    def __init__(self, transformer: Transformer):
        formatter = BinaryFormatter(transformer)
        self.write_row = formatter.write_row
        self.end = formatter.end
        self.chunks: list[bytes] = []
        self.size = 0


class ForwardingProgress(Progress):
    """A worker's progress: phase starts, row counts and phase ends go to the main process."""

    def __init__(self, pipe: Connection):
        super().__init__(interval=float("inf"), emit=lambda line: None)
        self.pipe = pipe
        self._pending = 0

    def phase(self, name: str, estimate: int, note: str = "") -> None:
        if self.phase_name:
            self.done()
        self.phase_name = name
        self.pipe.send(("phase", name, estimate, note))

    def tick(self, n: int = 1) -> None:
        self._pending += n
        if self._pending >= TICK_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self.pipe.send(("tick", self.phase_name, self._pending))
            self._pending = 0

    def done(self) -> None:
        if self.phase_name:
            self._flush()
            self.pipe.send(("phase-done", self.phase_name))
            self.phase_name = ""


def _die_with_parent() -> None:
    """Linux: the kernel kills this worker when the main process dies (SIGKILL included)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: a broken pipe ends the worker at its next send
        pass


# A worker is a fresh interpreter started with this code (not multiprocessing's spawn, which would
# re-run the caller's main script in every worker); its settings arrive pickled on standard input.
_WORKER_CODE = "import sys; from migrator.parallel import worker_process; worker_process(int(sys.argv[1]))"


def start_worker(part: int) -> tuple[subprocess.Popen, Connection]:
    """Start worker ``part``; returns the process and the pipe its messages arrive on. The worker imports
    its modules, then waits for its settings (:func:`send_settings`)."""
    read_fd, write_fd = os.pipe()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)  # import the very same modules
    quiet = not os.environ.get("SYN2MAS_DEBUG")  # a worker reports failures as messages, never tracebacks
    try:
        proc = subprocess.Popen([sys.executable, "-c", _WORKER_CODE, str(write_fd)], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL if quiet else None,
                                pass_fds=(write_fd,), env=env)
    except OSError as exc:  # no process could be started (limits, memory): a clear error, not a traceback
        os.close(read_fd)
        raise DatabaseError(f"cannot start parallel worker {part}: {exc.strerror or exc}; nothing was committed",
                            hint="run with --workers 1") from None
    finally:
        os.close(write_fd)
    return proc, Connection(read_fd, writable=False)


def send_settings(proc: subprocess.Popen, settings: WorkerSettings, part: int) -> None:
    """Give a started worker its settings; it then runs."""
    try:
        assert proc.stdin is not None
        proc.stdin.write(pickle.dumps((settings, part)))  # secrets travel by pipe, never argv or environment
        proc.stdin.close()
    except OSError:
        pass  # it died: its pipe ends and the main loop reports it


class WorkerProcesses:
    """The worker interpreters of one run, started early: each imports its modules (about 0.3 s of one
    core) while the checks run, instead of after them. :meth:`close` stops any still running."""

    def __init__(self, count: int):
        self.started: list[tuple[subprocess.Popen, Connection]] = []
        try:
            for part in range(count):
                self.started.append(start_worker(part))
        except BaseException:
            self.close()
            raise

    def __len__(self) -> int:
        return len(self.started)

    def close(self) -> None:
        """Kill the workers still running (none after a finished run) and close their pipes."""
        for proc, receive in self.started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            receive.close()
            if proc.stdin is not None and not proc.stdin.closed:
                try:
                    proc.stdin.close()
                except OSError:
                    pass


def worker_process(fd: int) -> None:
    """The worker interpreter's entry point: read the settings, run, report through pipe ``fd``."""
    try:
        settings, part = pickle.load(sys.stdin.buffer)
    except (EOFError, pickle.UnpicklingError):
        return  # the run ended before it needed this worker
    worker_main(settings, part, Connection(fd, readable=False))


def _end_transaction(conn: psycopg.Connection) -> None:
    """End the read transaction and close. ROLLBACK waits for the server, so the worker's locks are
    released before the main process hears from it (closing alone is asynchronous on the server)."""
    try:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.execute("ROLLBACK")
    except psycopg.Error:
        pass  # a lost connection has ended the transaction already
    finally:
        conn.close()


def worker_main(settings: WorkerSettings, part: int, pipe: Connection) -> None:
    """Entry point of worker ``part``: run the phases on its users, send rows, counts and samples."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    try:
        try:
            conn = psycopg.connect(settings.conninfo, password=settings.password, autocommit=True)
        except CONNECT_ERRORS as exc:
            raise DatabaseError(f"a parallel worker cannot connect to the Synapse database: "
                                f"{connection_failure(exc, settings.conninfo, settings.password)}",
                                hint="allow more connections, or run with --workers 1") from None
        pipe.send(("backend", conn.info.backend_pid))
        try:
            source = PostgresSource(conn, snapshot=settings.snapshot)
            source._user_cols = settings.user_columns
            report = MigrationReport(mode="worker", run_start=None, server_name=settings.server_name)  # type: ignore[arg-type]
            sampler = Sampler(settings.sample_size, settings.sample_seed)
            sink = PayloadSink(pipe)
            progress = ForwardingProgress(pipe)
            pipeline = Pipeline(source, ids=IdFactory(settings.id_key), report=report, sink=sink,
                                mapping=settings.mapping, server_name=settings.server_name,
                                run_start_ms=settings.run_start_ms,
                                ignore_missing_providers=settings.ignore_missing_providers,
                                progress=progress, sampler=sampler, partition=(part, settings.parts))
            pipeline.run_phases()
            progress.done()
            sink.flush_all()
        finally:
            _end_transaction(conn)
        counts = {name: (s.read, s.migrated, dict(s.skipped)) for name, s in report.entities.items()}
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        pipe.send(("done", counts, dict(report.anomalies), sampler.users, peak_kib))
    except Syn2MasError as exc:
        pipe.send(("error", exc.message, exc.hint))
    except BrokenPipeError:
        pass  # the main process is gone
    except BaseException as exc:  # never a traceback with row data: the type names the failure
        try:
            pipe.send(("error", f"a parallel worker failed unexpectedly ({type(exc).__name__})", None))
        except OSError:
            pass
    finally:
        pipe.close()


# -- the main side -----------------------------------------------------------------------------------
def _receive(pipe: Connection, part: int, read: Any) -> Any:
    """``read()`` from worker ``part``'s pipe; a worker gone before it finished is a clear error."""
    try:
        return read()
    except EOFError:
        raise DatabaseError(f"parallel worker {part} ended without finishing; nothing was committed",
                            hint="run the migration again, or with --workers 1") from None


class PhaseBoard:
    """Merges the workers' progress into the usual per-phase lines (the oldest unfinished phase)."""

    def __init__(self, progress: Progress, workers: int):
        self.progress = progress
        self.workers = workers
        self.phases: dict[str, dict[str, int]] = {}
        self.notes: dict[str, str] = {}
        self.current: str | None = None

    def started(self, name: str, estimate: int, note: str = "") -> None:
        self.phases.setdefault(name, {"estimate": estimate, "rows": 0, "done": 0})
        self.notes.setdefault(name, note)
        if self.current is None:
            self._show(name)

    def tick(self, name: str, rows: int) -> None:
        self.phases[name]["rows"] += rows
        if name == self.current:
            self.progress.tick(rows)

    def finished(self, name: str) -> None:
        self.phases[name]["done"] += 1
        while self.current is not None and self.phases[self.current]["done"] >= self.workers:
            self.progress.done()
            later = [n for n, p in self.phases.items() if p["done"] < self.workers]
            self.current = None
            if later:
                self._show(later[0])

    def _show(self, name: str) -> None:
        self.current = name
        self.progress.phase(name, self.phases[name]["estimate"], self.notes.get(name, ""))
        if self.phases[name]["rows"]:
            self.progress.tick(self.phases[name]["rows"])


def run_parallel(source: PostgresSource, writer: Any, *, processes: WorkerProcesses, settings: dict[str, Any],
                 report: MigrationReport, sampler: Sampler, progress: Progress) -> None:
    """Run the read phases in the started ``processes``, writing their rows through ``writer`` (MasWriter).

    ``settings`` holds WorkerSettings' run fields (id_key, mapping, server_name, ...). On any failure
    every worker is stopped and the error raised: the caller rolls the MAS transaction back.
    """
    workers = len(processes)
    conninfo, password = source.conninfo()
    try:
        snapshot = source.export_snapshot()
    except DatabaseError as exc:
        raise DatabaseError(f"{exc.message} (exporting the snapshot for parallel workers)",
                            hint="run with --workers 1") from None
    full = WorkerSettings(conninfo=conninfo, password=password, snapshot=snapshot,
                          user_columns=source.user_columns(), parts=workers, **settings)
    procs: list[subprocess.Popen] = []
    pipes: dict[Connection, int] = {}
    board = PhaseBoard(progress, workers)
    completed: Counter[tuple[str, ...]] = Counter()  # how many workers have finished each group of tables
    samples: dict[str, Any] = {}
    peaks: list[int] = []
    backends: list[int] = []
    try:
        for part, (proc, receive) in enumerate(processes.started):
            send_settings(proc, full, part)
            procs.append(proc)
            pipes[receive] = part
        while pipes:
            for pipe in wait(list(pipes)):
                message = _receive(pipe, pipes[pipe], pipe.recv)
                kind = message[0]
                if kind == "copy":  # the payload follows as raw bytes (no pickled copy of it)
                    writer.write_payload(message[1], _receive(pipe, pipes[pipe], pipe.recv_bytes))
                elif kind == "complete":  # once every worker has sent all its rows of these tables
                    completed[message[1]] += 1
                    if completed[message[1]] == workers:
                        writer.complete(message[1])
                elif kind == "tick":
                    board.tick(message[1], message[2])
                elif kind == "phase":
                    board.started(*message[1:])
                elif kind == "phase-done":
                    board.finished(message[1])
                elif kind == "backend":
                    backends.append(message[1])
                elif kind == "done":
                    _merge(report, message[1], message[2])
                    samples.update(message[3])
                    peaks.append(message[4])
                    del pipes[pipe]
                    pipe.close()
                elif kind == "error":
                    raise DatabaseError(message[1], hint=message[2])
        for proc in procs:
            proc.wait()
        sampler.adopt(samples)
        log.info("parallel workers finished; peak memory per worker: %s MiB",
                 ", ".join(f"{kib / 1024:.0f}" for kib in sorted(peaks)))
    finally:
        killed = False
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
                killed = True
        if killed:
            _wait_backends_gone(source, backends)
        for pipe in pipes:
            pipe.close()


def _wait_backends_gone(source: PostgresSource, pids: list[int], timeout: float = 5.0) -> None:
    """After killing workers, wait (briefly) until the server has ended their sessions, so that their
    locks do not outlive the run: a killed client's session ends asynchronously on the server."""
    deadline = time.monotonic() + timeout
    try:
        while pids and time.monotonic() < deadline:
            row = source.conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)).fetchone()
            if not row or not row[0]:
                return
            time.sleep(0.02)
    except psycopg.Error:
        pass  # the main connection failed too: its own end releases what it can


def _merge(report: MigrationReport, counts: dict[str, tuple[int, int, dict[str, int]]],
           anomalies: dict[str, int]) -> None:
    for name, (read, migrated, skipped) in counts.items():
        stats = report.entities[name]
        stats.read += read
        stats.migrated += migrated
        stats.skipped.update(Counter(skipped))
    report.anomalies.update(Counter(anomalies))

