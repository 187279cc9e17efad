"""Benchmark `syn2mas migrate`, `check` and `lint` against PostgreSQL's raw-copy floor.

    python bench/run.py --users 100000 [--users 1000000] [--repeat 3] [--json bench/results.json]

For each size: a throwaway PostgreSQL (migrator.pgserver, bulk-load settings) gets a Synapse database
with the real schema (../shared/synapse/schema.sql) and N users from ../shared/bench/scale-synapse-db.sql,
and a MAS database from fixtures/mas/schema.sql with the generated providers synced. Then, in one run:

* floor: the six Synapse tables streamed with `COPY ... TO STDOUT (FORMAT BINARY)` into
  `COPY ... FROM STDIN (FORMAT BINARY)` of an empty copy of them (indexes and constraints in place),
  on the same server, in one transaction;
* `syn2mas migrate` (a fresh MAS clone each time) under /usr/bin/time -v: wall time, peak RSS, and the
  report's timings (read, copy, rebuild, per phase);
* `syn2mas check` on the same databases, twice in a row (the first finds PostgreSQL's buffers holding
  the floor's pages, the second Synapse's), `syn2mas lint` on the same configuration files.

Every measurement is repeated (--repeat) and the median is reported with the load average next to it.
A repeat runs the floor, the checks and the migrations one after the other, so that each migration
is also compared with the floor measured just before it (the paired ratios).
tests/bench/test_run.py runs it on a small database for its output, never for its times:
benchmarks are not timed tests.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import psycopg
from psycopg import sql

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from migrator import pgserver  # noqa: E402
from migrator.demo import sync_providers  # noqa: E402

SHARED = os.environ.get("SYN2MAS_SHARED", os.path.join(os.path.dirname(ROOT), "shared"))
SYNAPSE_SCHEMA = os.path.join(SHARED, "synapse", "schema.sql")
GENERATOR = os.path.join(SHARED, "bench", "scale-synapse-db.sql")
MAS_SCHEMA = os.path.join(ROOT, "fixtures", "mas", "schema.sql")
BIN = os.path.dirname(os.path.abspath(sys.executable))
SYN2MAS = os.path.join(BIN, "syn2mas") if os.path.exists(os.path.join(BIN, "syn2mas")) else shutil.which("syn2mas")
TIME = "/usr/bin/time"

# FK order: refresh_tokens before access_tokens (access_tokens.refresh_token_id references it).
FLOOR_TABLES = ("users", "user_threepids", "user_external_ids", "devices", "refresh_tokens", "access_tokens")

# Bulk-load settings for the throwaway server (fsync etc. are already off in pgserver).
PG_SETTINGS = {
    "shared_buffers": "1GB",
    "work_mem": "64MB",
    "maintenance_work_mem": "1GB",
    "max_wal_size": "16GB",
    "checkpoint_timeout": "30min",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "max_parallel_maintenance_workers": "2",
    "max_parallel_workers_per_gather": "2",
    "autovacuum": "off",
    "jit": "off",
}

HOMESERVER = """\
# A typical homeserver.yaml for the benchmark: password logins with a pepper, one OIDC provider.
server_name: example.org
public_baseurl: https://matrix.example.org/
report_stats: false
signing_key_path: /data/example.org.signing.key
media_store_path: /data/media_store
listeners:
  - port: 8008
    tls: false
    type: http
    x_forwarded: true
    bind_addresses: ['::1', '127.0.0.1']
    resources:
      - names: [client, federation]
        compress: false
database:
  name: psycopg2
  args:
    user: postgres
    host: 127.0.0.1
    port: {port}
    dbname: {dbname}
    cp_min: 5
    cp_max: 10
log_config: /data/example.org.log.config
registration_shared_secret: bench-registration-shared-secret
macaroon_secret_key: bench-macaroon-secret-key
form_secret: bench-form-secret
enable_registration: false
password_config:
  enabled: true
  pepper: synapse-real-test-pepper
  policy:
    minimum_length: 10
refreshable_access_token_lifetime: 5m
email:
  smtp_host: mail.example.org
  smtp_port: 587
  notif_from: "Matrix <noreply@example.org>"
  require_transport_security: true
# The generator writes auth_provider `oidc-dex` (Synapse idp_id `dex` becomes `oidc-dex`).
oidc_providers:
  - idp_id: dex
    idp_name: Dex
    issuer: https://dex.example.org/
    client_id: synapse
    client_secret: bench-client-secret
    scopes: [openid, profile, email]
    user_mapping_provider:
      config:
        localpart_template: "{{{{ user.preferred_username }}}}"
        display_name_template: "{{{{ user.name }}}}"
        email_template: "{{{{ user.email }}}}"
"""


def load() -> str:
    """The 1-minute load average, for the figures' context."""
    return f"{os.getloadavg()[0]:.2f}"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {load()}] {msg}", file=sys.stderr, flush=True)


def psql_path(server: pgserver.PgServer) -> str:
    p = os.path.join(server.bindir, "psql")
    return p if os.path.exists(p) else (shutil.which("psql") or p)


def timed(cmd: list[str], *, ok: tuple[int, ...] = (0,), env: dict | None = None) -> tuple[float, str, str, int]:
    started = time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    elapsed = time.monotonic() - started
    if res.returncode not in ok:
        raise SystemExit(f"{' '.join(cmd[:3])}... exited {res.returncode}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return elapsed, res.stdout, res.stderr, res.returncode


def generate_synapse(server: pgserver.PgServer, dbname: str, users: int) -> float:
    pgserver.create_database(server, dbname, template="synapse_template")
    started = time.monotonic()
    res = subprocess.run([psql_path(server), "-X", "-q", "-v", f"n={users}", "-v", "access_crc=0", "-f", GENERATOR,
                          server.uri(dbname)], capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"the generator failed: {res.stderr[-2000:]}")
    with psycopg.connect(server.uri(dbname), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return time.monotonic() - started


def table_counts(uri: str, tables: tuple[str, ...]) -> dict[str, int]:
    with psycopg.connect(uri) as conn:
        return {t: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()[0]
                for t in tables}


def floor_copy(server: pgserver.PgServer, source_db: str) -> dict[str, float]:
    """COPY the six tables TO STDOUT → FROM STDIN into an empty, indexed copy; seconds per table + total."""
    target = "floor_target"
    pgserver.drop_database(server, target)
    pgserver.create_database(server, target, template="synapse_template")
    times: dict[str, float] = {}
    try:
        with psycopg.connect(server.uri(source_db)) as src, psycopg.connect(server.uri(target)) as dst:
            src.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            started = time.monotonic()
            # The bulk-load path syn2mas takes too: TRUNCATE in the loading transaction, then COPY FREEZE
            # (on this wal_level=minimal cluster neither writes WAL for the table data).
            dst.execute(sql.SQL("TRUNCATE {} CASCADE").format(sql.SQL(", ").join(sql.Identifier(t) for t in FLOOR_TABLES)))
            for table in FLOOR_TABLES:
                t0 = time.monotonic()
                ident = sql.Identifier(table)
                with src.cursor() as rc, dst.cursor() as wc, \
                        rc.copy(sql.SQL("COPY {} TO STDOUT (FORMAT BINARY)").format(ident)) as out, \
                        wc.copy(sql.SQL("COPY {} FROM STDIN (FORMAT BINARY, FREEZE)").format(ident)) as into:
                    for block in out:
                        into.write(block)
                times[table] = time.monotonic() - t0
            dst.commit()
            times["total"] = time.monotonic() - started
    finally:
        pgserver.drop_database(server, target)
    return times


def parse_time_v(path: str) -> tuple[float | None, int | None, float | None]:
    """(wall seconds, peak RSS in KiB, user+system CPU seconds) from /usr/bin/time -v output."""
    text = open(path).read()
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    cpu = sum(float(m) for m in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", text)) or None
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text)
    seconds = None
    if wall:
        parts = [float(p) for p in wall.group(1).split(":")]
        seconds = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    return seconds, int(rss.group(1)) if rss else None, cpu


def phase_times(stderr: str) -> dict[str, float]:
    """Per-phase seconds from the migrator's progress lines (`phase 4 access tokens: done, N rows in T s`)."""
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r"(phase \d [^:]+): done, \d+ rows in ([\d.]+) s", stderr)}


def run_measured(cmd: list[str], workdir: str, *, ok: tuple[int, ...] = (0,)) -> dict:
    """Run ``cmd`` under /usr/bin/time -v when present (else getrusage); wall seconds and peak RSS (MiB)."""
    if os.path.exists(TIME):
        out = os.path.join(workdir, "time.txt")
        wall, stdout, stderr, rc = timed([TIME, "-v", "-o", out] + cmd, ok=ok)
        _, rss_kib, cpu = parse_time_v(out)
    else:
        import resource

        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        wall, stdout, stderr, rc = timed(cmd, ok=ok)
        after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        rss_kib = after if after > before else None  # ru_maxrss is the max over all children so far
        cpu = None
    return {"wall_s": round(wall, 3), "peak_rss_mib": round(rss_kib / 1024, 1) if rss_kib else None,
            "cpu_s": round(cpu, 2) if cpu else None, "load": load(), "exit": rc, "stdout": stdout, "stderr": stderr}


def worker_peaks(stderr: str) -> list[float]:
    """Peak RSS (MiB) of each parallel worker, from the migrator's last progress line about them."""
    m = re.search(r"peak memory per worker: ([\d., ]+) MiB", stderr)
    return [float(x) for x in m.group(1).split(",")] if m else []


def bench_size(server: pgserver.PgServer, workdir: str, users: int, repeat: int, mas_yaml: str,
               workers: list[int | None]) -> dict:
    result: dict = {"users": users}
    syn_db = f"synapse_{users}"
    log(f"{users} users: generating the Synapse database")
    result["generate_s"] = round(generate_synapse(server, syn_db, users), 1)
    result["synapse_rows"] = table_counts(server.uri(syn_db), FLOOR_TABLES)
    result["synapse_rows"]["total"] = sum(result["synapse_rows"].values())
    log(f"rows: {result['synapse_rows']}")

    homeserver = os.path.join(workdir, f"homeserver-{users}.yaml")
    with open(homeserver, "w") as fh:
        fh.write(HOMESERVER.format(port=server.port, dbname=syn_db))

    # Per repeat: the floor, then check, then the migrations, so that each migration's ratio can be taken
    # to the floor measured minutes before it (this guest's speed drifts within an hour).
    floors, runs, checks, rechecks = [], [], [], []
    for i in range(repeat):
        f = floor_copy(server, syn_db)
        f["load"] = load()
        floors.append(f)
        log(f"floor run {i + 1}: {f['total']:.2f} s")
        for j, n_workers in enumerate(workers):
            mas_db = "mas_run"
            pgserver.drop_database(server, mas_db)
            mas_uri = pgserver.create_database(server, mas_db, template="mas_template")
            common = ["--synapse-config", homeserver, "--config", mas_yaml, "--mas-database-uri", mas_uri]
            if j == 0:  # check once per repeat
                check = run_measured([SYN2MAS, "check", *common, "--format", "json"], workdir, ok=(0, 10, 11))
                checks.append({k: check[k] for k in ("wall_s", "peak_rss_mib", "load", "exit")})
                log(f"check run {i + 1}: {check['wall_s']:.2f} s (exit {check['exit']})")
                # The same check at once again: the first one follows the floor's copy, whose pages
                # have pushed Synapse's out of shared_buffers; this one finds them there.
                again = run_measured([SYN2MAS, "check", *common, "--format", "json"], workdir, ok=(0, 10, 11))
                rechecks.append({k: again[k] for k in ("wall_s", "peak_rss_mib", "load", "exit")})
                log(f"check run {i + 1}, again: {again['wall_s']:.2f} s (exit {again['exit']})")
            report_path = os.path.join(workdir, f"report-{users}-{i}.json")
            extra = ["--workers", str(n_workers)] if n_workers else []
            mig = run_measured([SYN2MAS, "migrate", *common, "--report", report_path, *extra], workdir)
            with open(report_path) as fh:
                report = json.load(fh)
            peaks = worker_peaks(mig["stderr"])
            runs.append({"workers": n_workers or "auto", "wall_s": mig["wall_s"], "peak_rss_mib": mig["peak_rss_mib"],
                         "worker_peak_rss_mib": peaks,
                         "total_peak_rss_mib": round((mig["peak_rss_mib"] or 0) + sum(peaks), 1),
                         "cpu_s": mig["cpu_s"], "load": mig["load"], "timings_s": report["timings_s"],
                         "phases_s": phase_times(mig["stderr"]),
                         "reconciled": all(r["status"] == "ok" for r in report.get("reconciliation", []))})
            result.setdefault("entities", {e: {"read": s["read"], "migrated": s["migrated"]}
                                           for e, s in report["entities"].items()})
            log(f"migrate run {i + 1} (workers {n_workers or 'auto'}): {mig['wall_s']:.2f} s, CPU {mig['cpu_s']} s, "
                f"peak RSS {mig['peak_rss_mib']} MiB + workers {peaks}, timings {report['timings_s']}, "
                f"phases {runs[-1]['phases_s']}")
    pgserver.drop_database(server, "mas_run")
    result["floor_runs"] = floors
    result["floor_s"] = round(statistics.median(f["total"] for f in floors), 3)
    result["migrate_runs"] = runs
    result["check_runs"] = checks
    result["check_again_runs"] = rechecks
    by_workers: dict = {}
    for r in runs:
        by_workers.setdefault(str(r["workers"]), []).append(r)
    result["migrate_by_workers"] = {
        label: {"wall_s": round(statistics.median(r["wall_s"] for r in rs), 3),
                "ratio_to_floor": round(statistics.median(r["wall_s"] for r in rs) / result["floor_s"], 2),
                "total_peak_rss_mib": max(r["total_peak_rss_mib"] for r in rs)}
        for label, rs in by_workers.items()}
    headline = runs[0]["workers"]  # the first --workers setting (default: syn2mas's own choice)
    result["migrate_s"] = result["migrate_by_workers"][str(headline)]["wall_s"]
    result["migrate_peak_rss_mib"] = result["migrate_by_workers"][str(headline)]["total_peak_rss_mib"]
    result["check_s"] = round(statistics.median(c["wall_s"] for c in checks), 3)
    result["check_again_s"] = round(statistics.median(c["wall_s"] for c in rechecks), 3)
    result["ratio_migrate_floor"] = round(result["migrate_s"] / result["floor_s"], 2)
    # Each repeat's first migration (the headline setting) against the floor of the same repeat.
    paired = [r["wall_s"] / f["total"] for r, f in zip(runs[::len(workers)], floors)]
    result["paired_ratios"] = [round(x, 2) for x in paired]
    result["ratio_paired_median"] = round(statistics.median(paired), 2)

    lints = []
    for _ in range(max(repeat, 3)):
        lint = run_measured([SYN2MAS, "lint", "--synapse-config", homeserver, "--config", mas_yaml],
                            workdir, ok=(0, 10, 11))
        lints.append({k: lint[k] for k in ("wall_s", "peak_rss_mib", "load", "exit")})
    result["lint_runs"] = lints
    result["lint_s"] = round(statistics.median(x["wall_s"] for x in lints), 3)

    migrate_s = result["migrate_s"]
    result["rows_per_s"] = {e: round(s["migrated"] / migrate_s) for e, s in result["entities"].items()}
    result["synapse_rows_per_s"] = {"migrate": round(result["synapse_rows"]["total"] / migrate_s),
                                    "floor": round(result["synapse_rows"]["total"] / result["floor_s"])}
    pgserver.drop_database(server, syn_db)
    return result


def machine() -> dict:
    mem_kib = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    return {"cores": os.cpu_count(), "memory_gib": round(mem_kib / 1024 / 1024, 1), "python": platform.python_version(),
            "kernel": platform.release()}


def cpu_probe() -> float:
    """Nanoseconds per step of a fixed pure-Python loop (best of five): how fast this guest's CPU is right
    now. Its speed drifts by 15-20 % within an hour, so invocations compare only through this figure."""
    def steps(n: int) -> int:
        total = 0
        for i in range(n):
            total += i & 7
        return total

    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        steps(2_000_000)
        best = min(best, time.perf_counter() - started)
    return round(best / 2_000_000 * 1e9, 1)


def print_summary(results: dict) -> None:
    m = results["machine"]
    print(f"machine: {m['cores']} cores, {m['memory_gib']} GiB, {m['postgresql']}, Python {m['python']}")
    print(f"CPU probe (ns per step of a Python loop; lower is faster): {results['cpu_probe_ns']['before']} "
          f"before, {results['cpu_probe_ns']['after']} after")
    for r in results["sizes"]:
        print(f"\n== {r['users']:,} users ({r['synapse_rows']['total']:,} Synapse rows) ==")
        print(f"floor (raw COPY of six tables)  {r['floor_s']:8.2f} s   runs "
              + ", ".join(f"{f['total']:.2f} (load {f['load']})" for f in r["floor_runs"]))
        print(f"migrate                         {r['migrate_s']:8.2f} s   runs "
              + ", ".join(f"{x['wall_s']:.2f} (load {x['load']})" for x in r["migrate_runs"]))
        print(f"  ratio migrate / floor         {r['ratio_migrate_floor']:8.2f}   each repeat against its own floor: "
              + ", ".join(f"{x:.2f}" for x in r["paired_ratios"]))
        print(f"  peak RSS (main + workers)     {r['migrate_peak_rss_mib']:8.1f} MiB")
        for label, m in r["migrate_by_workers"].items():
            print(f"  --workers {label:<6} {m['wall_s']:8.2f} s, {m['ratio_to_floor']:.2f}x floor, "
                  f"{m['total_peak_rss_mib']:.1f} MiB")
        t = r["migrate_runs"][len(r["migrate_runs"]) // 2]["timings_s"]
        print("  report timings (one run)      " + ", ".join(f"{k} {v:.2f}" for k, v in t.items()))
        mid = r["migrate_runs"][len(r["migrate_runs"]) // 2]
        print("  phases (same run)             " + ", ".join(f"{k} {v:.1f}" for k, v in mid["phases_s"].items()))
        print(f"  migrate CPU (user+sys)        {mid['cpu_s']} s")
        print(f"  reconciled                    {all(x['reconciled'] for x in r['migrate_runs'])}")
        print(f"check                           {r['check_s']:8.2f} s   runs "
              + ", ".join(f"{x['wall_s']:.2f} (load {x['load']})" for x in r["check_runs"]))
        print(f"check, at once again            {r['check_again_s']:8.2f} s   runs "
              + ", ".join(f"{x['wall_s']:.2f} (load {x['load']})" for x in r["check_again_runs"]))
        print(f"lint                            {r['lint_s']:8.2f} s   runs "
              + ", ".join(f"{x['wall_s']:.2f}" for x in r["lint_runs"]))
        print("rows/s migrated per entity:     " + ", ".join(f"{k} {v:,}" for k, v in r["rows_per_s"].items()))
        print(f"Synapse rows/s: migrate {r['synapse_rows_per_s']['migrate']:,}, "
              f"floor {r['synapse_rows_per_s']['floor']:,}")
    sizes = results["sizes"]
    if len(sizes) > 1:
        small, big = sizes[0], sizes[-1]
        print(f"\npeak RSS {big['users']:,} vs {small['users']:,}: "
              f"{big['migrate_peak_rss_mib'] / small['migrate_peak_rss_mib']:.2f}x")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, action="append", help="number of users (repeatable)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement (median reported)")
    ap.add_argument("--json", help="write the figures here as JSON")
    ap.add_argument("--base-dir", help="where the throwaway cluster lives (default: the temp dir)")
    ap.add_argument("--workers", type=int, action="append",
                    help="also time `migrate --workers N` (repeatable; default: only syn2mas's own choice)")
    args = ap.parse_args()
    sizes = args.users or [100_000]
    if SYN2MAS is None:
        raise SystemExit("syn2mas is not installed next to this Python (pip install -e .)")
    # Time syn2mas as pip installs it from a wheel, with its modules compiled once: an editable install
    # under PYTHONDONTWRITEBYTECODE (set in some CI images) would compile every module on every run.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    timed([sys.executable, "-m", "compileall", "-q", "-x", r"[/\\](tests|bench|\.venv)[/\\]", ROOT])
    # SIGTERM (kill) ends the run like Ctrl-C, so the throwaway cluster is stopped and deleted.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = tempfile.mkdtemp(prefix="syn2mas-bench-")
    os.chmod(workdir, 0o755)
    log("starting PostgreSQL")
    server = pgserver.start(base_dir=args.base_dir, settings=PG_SETTINGS)
    try:
        pgserver.create_database(server, "synapse_template")
        pgserver.load_sql_file(server, "synapse_template", SYNAPSE_SCHEMA)
        mas_uri = pgserver.create_database(server, "mas_template")
        pgserver.load_sql_file(server, "mas_template", MAS_SCHEMA)
        with psycopg.connect(server.uri()) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
        # One MAS configuration (its provider ids are fresh) for every size, its providers synced into
        # the MAS template as `mas-cli config sync` would.
        hs = os.path.join(workdir, "homeserver-providers.yaml")
        with open(hs, "w") as fh:
            fh.write(HOMESERVER.format(port=server.port, dbname="synapse_template"))
        mas_yaml = os.path.join(workdir, "mas.yaml")
        timed([SYN2MAS, "config", "generate", "--synapse-config", hs, "--output", mas_yaml,
               "--mas-database-uri", mas_uri])
        from engine.configdoc import load_mas_config

        sync_providers(mas_uri, load_mas_config([mas_yaml]).get("upstream_oauth2.providers", []))
        results = {"machine": {**machine(), "postgresql": f"PostgreSQL {version}"}, "settings": PG_SETTINGS,
                   "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "sizes": [],
                   "cpu_probe_ns": {"before": cpu_probe()}}
        log(f"CPU probe: {results['cpu_probe_ns']['before']} ns per loop step")
        for n in sizes:
            results["sizes"].append(bench_size(server, workdir, n, args.repeat, mas_yaml, [None] + (args.workers or [])))
        results["cpu_probe_ns"]["after"] = cpu_probe()
        print_summary(results)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(results, fh, indent=2)
                fh.write("\n")
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
