"""`migrate`: Synapse snapshot → checks → one MAS transaction → report (data-migration.md §1, §14.1).

Public API: ``migrate(source, mas_uri, mapping, options) -> MigrationReport``. ``source`` is an open
``SynapseSource`` or anything ``open_source`` accepts (it is then opened and closed here).
"""
from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import psycopg

from engine.errors import DatabaseError

from . import guards, queries
from .ids import IdFactory, provider_uuid
from .parallel import WorkerProcesses, auto_workers, run_parallel
from .pipeline import Pipeline
from .plan import PlanTarget
from .progress import Progress
from .report import ENTITY_TABLES, MigrationReport
from .samples import Sampler
from .skipped import RecordingPipeline, SkippedWriter
from .source import PostgresSource, SynapseSource, open_source
from .writer import MasWriter, mas_failure

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

log = logging.getLogger("syn2mas.migrator")


@dataclass
class MigrateOptions:
    """How to run: server name, flags, and injectable randomness/clock for tests."""

    server_name: str
    dry_run: bool = False
    # `--plan`: read Synapse and compute everything, but only read MAS (migrator/plan.py).
    plan: bool = False
    # `--report-skipped DIR`: write the keys of skipped rows there (migrator/skipped.py).
    report_skipped: str | None = None
    ignore_missing_providers: bool = False
    assume_synapse_stopped: bool = False
    sample_size: int = 100
    sample_seed: int = 0
    id_key: bytes | None = None
    run_start: datetime | None = None
    batch_size: int = 5000  # rows per COPY when reading in this process (workers send payloads by size)
    progress_interval: float = 5.0
    # Reader processes for a PostgreSQL source (migrator/parallel.py); None: one per CPU for large
    # databases, 1: read in this process.
    workers: int | None = None
    # Pre-migration checks, called with the open Synapse source inside the migration's snapshot before
    # anything is written; they raise (e.g. guards.MigrationRefused) to refuse. Empty: the migrator's own
    # guard (guards.ensure_migratable) runs instead.
    pre_checks: list[Callable[[SynapseSource], None]] = field(default_factory=list)
    # Test-only: called with each writer step name; raising there simulates a crash at that step.
    fail_hook: Callable[[str], None] | None = None


def now_ms() -> datetime:
    """The UTC clock at millisecond precision (read once per run)."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def to_ms(ts: datetime) -> int:
    """An aware datetime as milliseconds since the epoch."""
    delta = ts - EPOCH
    return delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000


def provider_mapping(mapping: dict[str, str]) -> dict[str, uuid.UUID]:
    """Synapse idp id → MAS provider UUID, from MAS provider ids given as ULID strings (or UUIDs)."""
    return {idp: provider_uuid(pid) for idp, pid in mapping.items()}


def reconcile(report: MigrationReport, count: Callable[[str, str], int]) -> None:
    """Fill ``report.reconciliation``: expected (read − skipped) against rows found in MAS (§13)."""
    report.reconciliation = []
    for entity, stats in report.entities.items():
        table, where = ENTITY_TABLES[entity]
        found = count(table, where)
        report.reconciliation.append({"entity": entity, "expected": stats.expected, "found": found,
                                      "status": "ok" if found == stats.expected else "mismatch"})


def migrate(source: SynapseSource | str | dict, mas_uri: str, mapping: dict[str, str],
            options: MigrateOptions) -> MigrationReport:
    """Migrate Synapse's authentication data into the empty MAS database at ``mas_uri``.

    ``mapping`` maps Synapse provider ids (`auth_provider`) to MAS provider ids (ULID strings). Raises
    ``MigrationRefused`` (exit 10) for blocking data, ``Syn2MasError`` for runtime failures; in every
    failure case MAS is left exactly as it was.
    """
    started = time.monotonic()
    run_start = options.run_start or now_ms()
    mode = "plan" if options.plan else "dry-run" if options.dry_run else "migrate"
    report = MigrationReport(mode=mode, run_start=run_start, server_name=options.server_name,
                             started_at=datetime.now(timezone.utc))
    owns_source = not isinstance(source, SynapseSource)
    # A plan, like a dry run, only needs ACCESS SHARE locks: it is safe while Synapse runs.
    src = open_source(source, exclusive=mode == "migrate", assume_stopped=options.assume_synapse_stopped) \
        if owns_source else source
    skipped: SkippedWriter | None = None
    processes: WorkerProcesses | None = None
    try:
        report.source_kind = src.kind
        workers = _workers(src, options)
        if workers > 1:  # started now, they import their modules while the checks run
            processes = WorkerProcesses(workers)
        checks = options.pre_checks or [lambda s: guards.ensure_migratable(
            s, server_name=options.server_name, mapping=mapping,
            ignore_missing_providers=options.ignore_missing_providers)]
        for check in checks:
            check(src)
        progress = Progress(options.progress_interval)
        writer = PlanTarget(mas_uri) if options.plan else \
            MasWriter(mas_uri, batch_size=options.batch_size, progress=progress, fail_hook=options.fail_hook)
        linked = _linked_providers(src, mapping)
        report.mas_schema_version = writer.open(linked)
        try:
            # A plan has no MAS rows to compare a sample with.
            sampler = Sampler(0 if options.plan else options.sample_size, options.sample_seed)
            id_key = options.id_key if options.id_key is not None else os.urandom(32)
            kwargs = dict(ids=IdFactory(id_key), report=report, sink=writer,
                          mapping=provider_mapping(mapping), server_name=options.server_name,
                          run_start_ms=to_ms(run_start), ignore_missing_providers=options.ignore_missing_providers,
                          progress=progress, sampler=sampler)
            if processes is not None:
                log.info("reading Synapse with %d parallel workers", workers)
                run_parallel(src, writer, processes=processes, report=report, sampler=sampler, progress=progress,
                             settings=dict(id_key=id_key, mapping=kwargs["mapping"], server_name=options.server_name,
                                           run_start_ms=kwargs["run_start_ms"],
                                           ignore_missing_providers=options.ignore_missing_providers,
                                           sample_size=sampler.size, sample_seed=options.sample_seed))
                report.anomalies["unpaired-refresh-token"] += int(
                    src.scalar(queries.UNPAIRED_REFRESH_TOKENS) or 0)
                pipeline = None
            elif options.report_skipped:
                skipped = SkippedWriter(options.report_skipped)
                pipeline = RecordingPipeline(src, skipped=skipped, **kwargs)
            else:
                pipeline = Pipeline(src, **kwargs)
            if pipeline is not None:
                pipeline.run()
            # The main connection's time in COPY and in rebuilding (the account tables' part of which
            # happens before phase 4) is not reading time.
            report.timings_s["read"] = time.monotonic() - started - writer.copy_seconds - writer.rebuild_seconds
            writer.rebuild()
            report.timings_s["copy"] = writer.copy_seconds
            report.timings_s["rebuild"] = writer.rebuild_seconds
            reconcile(report, writer.count)
            report.sample_mismatches = sampler.compare(writer.conn)
            if not report.reconciled:
                raise DatabaseError("reconciliation failed after loading ("
                                    + ", ".join(r["entity"] for r in report.reconciliation if r["status"] != "ok")
                                    + (", sampled users differ" if report.sample_mismatches else "")
                                    + "); nothing was committed")
            writer.finish(commit=mode == "migrate")
        except psycopg.Error as exc:
            writer.abort()
            raise mas_failure(exc) from None
        except BaseException:
            writer.abort()
            raise
        if skipped is not None:
            try:
                skipped.commit()
                skipped = None
            except OSError as exc:  # after the COMMIT: a warning, never a failure of the migration
                log.warning("the skipped-row lists could not be written (%s); the migration is done",
                            exc.strerror or exc)
    finally:
        if processes is not None:
            processes.close()
        if skipped is not None:
            skipped.discard()
        if owns_source:
            src.close()
    report.finished_at = datetime.now(timezone.utc)
    report.timings_s["total"] = time.monotonic() - started
    return report


def _workers(source: SynapseSource, options: MigrateOptions) -> int:
    """How many reader processes: parallel only for PostgreSQL, and not for --plan or --report-skipped,
    whose sinks live in this process."""
    if not isinstance(source, PostgresSource) or options.plan or options.report_skipped:
        return 1
    return max(1, options.workers) if options.workers is not None else auto_workers(source)


def _linked_providers(source: SynapseSource, mapping: dict[str, str]) -> list[str]:
    """MAS provider ids (as configured) that will receive at least one link (`mas-provider-not-synced`)."""
    used = {r[0] for r in source.fetchall(queries.LINKED_PROVIDERS)}
    return sorted({str(mapping[p]) for p in used if p in mapping})
