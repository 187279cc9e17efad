"""`verify`: reconcile MAS against a fresh Synapse snapshot (data-migration.md §13).

Re-runs the read phases without writing (same selection rules, same skip reasons) to compute the
expected counts, compares them with the rows in MAS, compares a seeded sample of users field by
field (secrets by equality of digests, never printed), and checks that every linked provider exists.
Both databases are only read.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any

import psycopg
from psycopg import sql

from engine.dbconnect import CONNECT_ERRORS, connection_failure
from engine.errors import DatabaseError
from engine.reporters.model import visible

from .ids import IdFactory
from .pipeline import NullSink, Pipeline
from .progress import Progress
from .report import MigrationReport
from .run import now_ms, provider_mapping, reconcile, to_ms
from .samples import Sampler
from .source import SynapseSource, open_source

EXIT_MISMATCH = 10


def _previous_expected(path: str | None) -> dict[str, int]:
    """Expected counts recorded by the migration's own report, if given."""
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except OSError as exc:
        raise DatabaseError(f"cannot read the migration report: {exc.strerror}", file=path) from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        line = f" (line {exc.lineno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise DatabaseError(f"the migration report is not JSON{line}", file=path,
                            hint="give the file `syn2mas migrate --report` wrote") from None
    try:
        return {name: int(e["read"]) - sum(int(v) for v in e["skipped"].values())
                for name, e in doc["entities"].items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise DatabaseError("the migration report is not one `syn2mas migrate` wrote: it lacks "
                            "`entities` with their `read` and `skipped` counts", file=path,
                            hint="give the file `syn2mas migrate --report` wrote") from None


def verify(source: SynapseSource | str | dict[str, Any], mas_uri: str, mapping: dict[str, str], *,
           server_name: str, ignore_missing_providers: bool = False, sample_size: int = 100, sample_seed: int = 0,
           migration_report: str | None = None, progress_interval: float = 5.0) -> MigrationReport:
    """Reconcile; ``report.reconciled`` tells the outcome (exit 0, else 10)."""
    started = time.monotonic()
    run_start = now_ms()
    report = MigrationReport(mode="verify", run_start=run_start, server_name=server_name,
                             started_at=datetime.now(timezone.utc))
    sampler = Sampler(sample_size, sample_seed)
    owns = not isinstance(source, SynapseSource)
    src = open_source(source, exclusive=False) if owns else source
    try:
        report.source_kind = src.kind
        Pipeline(src, ids=IdFactory(), report=report, sink=NullSink(), mapping=provider_mapping(mapping),
                 server_name=server_name, run_start_ms=to_ms(run_start),
                 ignore_missing_providers=ignore_missing_providers, progress=Progress(progress_interval),
                 sampler=sampler).run()
    finally:
        if owns:
            src.close()
    previous = _previous_expected(migration_report)
    try:
        conn = psycopg.connect(mas_uri, application_name="syn2mas-verify")
    except CONNECT_ERRORS as exc:
        raise DatabaseError(f"cannot connect to the MAS database: {connection_failure(exc, mas_uri)}") from None
    with conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")

        def count(table: str, where: str) -> int:
            return int(conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE " + where).format(
                sql.Identifier(table))).fetchone()[0])

        try:
            reconcile(report, count)
            for row in report.reconciliation:
                old = previous.get(row["entity"])
                if row["status"] != "ok" and old is not None and old == row["found"]:
                    row["status"] = "synapse-changed"  # MAS holds what was migrated; Synapse moved on since
            dangling = int(conn.execute(
                "SELECT count(*) FROM upstream_oauth_links l WHERE NOT EXISTS (SELECT 1 FROM upstream_oauth_providers "
                "p WHERE p.upstream_oauth_provider_id = l.upstream_oauth_provider_id)").fetchone()[0])
            report.reconciliation.append({"entity": "link_providers", "expected": 0, "found": dangling,
                                          "status": "ok" if dangling == 0 else "mismatch"})
            report.sample_mismatches = sampler.compare(conn)
            row = conn.execute("SELECT max(version) FROM _sqlx_migrations WHERE success").fetchone()
            report.mas_schema_version = int(row[0]) if row and row[0] is not None else None
        except psycopg.Error as exc:
            raise DatabaseError(f"reading the MAS database failed ({type(exc).__name__}); is it a MAS database?") \
                from None
    report.finished_at = datetime.now(timezone.utc)
    report.timings_s["total"] = time.monotonic() - started
    return report


def reconciliation_lines(report: MigrationReport) -> list[str]:
    """The reconciliation table as text lines (entity, expected, found, status)."""
    lines = [f"{'entity':22} {'expected':>10} {'found':>10}  status"]
    for r in report.reconciliation:
        lines.append(f"{r['entity']:22} {r['expected']:>10} {r['found']:>10}  {r['status']}")
    if report.sample_mismatches:
        lines.append(f"sampled users that differ: {len(report.sample_mismatches)}")
        lines.extend("  " + visible(m) for m in report.sample_mismatches[:20])  # user ids come from the data
    return lines
