"""Parallel readers (migrator/parallel.py): the same MAS rows, counts and samples as one process.

Workers import the main connection's snapshot and each read one hash partition of the users; their
rows reach MAS through the main connection's single transaction. Every test compares a parallel run
with a serial one on the same Synapse rows, with the same id key and clock, so ids included every
MAS row must be equal.
"""
from __future__ import annotations

import hashlib
import os

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings

from engine.errors import DatabaseError
from migrator import parallel, queries
from migrator.masschema import ACCOUNT_TABLES, TARGET_TABLES
from migrator.parallel import auto_workers
from migrator.samples import Sampler, UserFacts
from migrator.source import open_source
from mighelpers import MAS_TABLES, SYNAPSE_TABLES, add_provider, execute, rows, run
from test_mig_properties import Model, devices_st, links_st, refresh_st, threepids_st, tokens_st, users_st
from test_mig_sqlite import DEMO_PROVIDER, demo_inserts


def mas_rows(uri: str) -> dict[str, list]:
    return {t: sorted(rows(uri, f"SELECT * FROM {t}"), key=repr) for t in TARGET_TABLES}


def comparable(report) -> dict:
    data = report.to_dict()
    return {k: data[k] for k in ("entities", "anomalies", "reconciliation")}


def reset(uri: str, tables: str) -> None:
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {tables} CASCADE")


def test_parallel_run_writes_exactly_the_serial_rows(synapse_db, mas_db, fresh_mas_db):
    execute(synapse_db, demo_inserts())
    for uri in (mas_db, fresh_mas_db):
        add_provider(uri, DEMO_PROVIDER)
    mapping = {"oidc-dex": DEMO_PROVIDER}
    serial = _run_demo(synapse_db, mas_db, mapping, workers=1)
    parallel = _run_demo(synapse_db, fresh_mas_db, mapping, workers=3)
    assert parallel.reconciled and not parallel.sample_mismatches
    assert comparable(parallel) == comparable(serial)
    serial_rows, parallel_rows = mas_rows(mas_db), mas_rows(fresh_mas_db)
    assert parallel_rows == serial_rows
    assert sum(len(v) for v in parallel_rows.values()) > 20


def _run_demo(synapse_uri: str, mas_uri: str, mapping: dict, workers: int, **opts):
    from migrator.run import MigrateOptions, migrate
    from mighelpers import KEY, RUN_START

    return migrate(synapse_uri, mas_uri, mapping, MigrateOptions(
        server_name="demo.example", id_key=KEY, run_start=RUN_START, workers=workers, sample_size=3, **opts))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(users_st, devices_st, refresh_st, tokens_st, threepids_st, links_st)
def test_parallel_equals_serial_on_generated_rows(_shared_synapse, _shared_mas, fresh_mas_db, users, devices,
                                                  refresh, tokens, threepids, links):
    reset(_shared_synapse, SYNAPSE_TABLES)
    Model(users, devices, refresh, tokens, threepids, links).load(_shared_synapse)
    results = []
    for uri, workers in ((_shared_mas, 1), (fresh_mas_db, 2)):
        reset(uri, MAS_TABLES)
        add_provider(uri)
        report = run(_shared_synapse, uri, workers=workers)
        assert report.reconciled and not report.sample_mismatches
        results.append((comparable(report), mas_rows(uri)))
    assert results[0] == results[1]


def test_a_worker_error_reaches_the_main_process_and_nothing_is_written(synapse_db, mas):
    execute(synapse_db, "INSERT INTO users (name, creation_ts) VALUES ('@a:example.org', 1), ('@b:example.org', 2);"
                        "INSERT INTO devices (user_id, device_id) VALUES ('@a:example.org', 'D'), "
                        "('@gone:example.org', 'D')")
    before = mas_rows(mas)
    messages = []
    for workers in (1, 2):
        with pytest.raises(DatabaseError) as err:
            run(synapse_db, mas, workers=workers, pre_checks=[lambda source: None])
        messages.append(str(err.value))
        assert mas_rows(mas) == before
        assert rows(mas, "SELECT count(*) FROM pg_constraint WHERE conrelid = 'users'::regclass") == [(2,)]
    assert messages[0] == messages[1]
    assert "`devices` row refers to a user that does not exist" in messages[1]
    # right away, a real run takes its EXCLUSIVE NOWAIT locks: no worker session of the failed run is left
    execute(synapse_db, "DELETE FROM devices WHERE user_id = '@gone:example.org'")
    assert run(synapse_db, mas, workers=2).reconciled


def test_partitions_cover_every_row_once(synapse_db):
    execute(synapse_db, "INSERT INTO users (name, creation_ts) SELECT '@u' || g || ':example.org', g "
                        "FROM generate_series(1, 200) g")
    source = open_source(synapse_db)
    try:
        query = "SELECT u.name FROM users u WHERE 1 = 1 /* partition: u.name */"
        whole = sorted(r[0] for r in source.fetchall(queries.for_partition(query, None)))
        parts = [sorted(r[0] for r in source.fetchall(queries.for_partition(query, (k, 3)))) for k in range(3)]
    finally:
        source.close()
    assert len(whole) == 200
    assert sorted(sum(parts, [])) == whole
    assert all(parts), "every worker gets some users"


def test_small_and_sqlite_sources_read_in_one_process(tmp_path, synapse_db):
    from migrator.demo import build_sqlite
    from test_mig_sqlite import DEMO_SQL

    source = open_source(synapse_db)
    try:
        assert auto_workers(source) == 1
    finally:
        source.close()
    db = str(tmp_path / "synapse.db")
    build_sqlite(DEMO_SQL, db)
    sqlite = open_source(db)
    try:
        assert auto_workers(sqlite) == 1
    finally:
        sqlite.close()


@pytest.mark.parametrize(("cpus", "expected"), [(1, 1), (3, 3), (64, 8)])
def test_many_users_read_with_one_worker_per_usable_cpu(synapse_db, monkeypatch, cpus, expected):
    execute(synapse_db, "INSERT INTO users (name, creation_ts) SELECT '@u' || i || ':example.org', 0 "
                        "FROM generate_series(1, 20000) i; ANALYZE users")
    # The count comes from engine/cpus.py (affinity and container quota; tests/engine/test_cpus.py).
    monkeypatch.setattr(parallel, "usable_cpus", lambda: cpus)
    source = open_source(synapse_db)
    try:
        assert auto_workers(source) == expected
    finally:
        source.close()


def test_samples_merged_from_workers_are_the_serial_sample():
    users = [f"@u{i}:example.org" for i in range(300)]
    facts = {u: UserFacts(u, False, False, False, False, None) for u in users}
    serial = Sampler(10, seed=7)
    for u in users:
        serial.offer(u, lambda u=u: facts[u])
    serial.freeze()
    partial: dict[str, UserFacts] = {}
    for part in range(3):
        worker = Sampler(10, seed=7)
        for u in users:
            if int(hashlib.md5(u.encode()).hexdigest(), 16) % 3 == part:
                worker.offer(u, lambda u=u: facts[u])
        worker.freeze()
        partial.update(worker.users)
    merged = Sampler(10, seed=7)
    merged.adopt(partial)
    assert set(merged.users) == set(serial.users) and len(merged.users) == 10


def test_workers_do_not_rerun_the_callers_script(tmp_path, synapse_db, mas_db):
    """A script calling migrate() at top level (no `if __name__ == "__main__"`) runs once, not once per worker."""
    import subprocess
    import sys

    execute(synapse_db, demo_inserts())
    add_provider(mas_db, DEMO_PROVIDER)
    marker = tmp_path / "runs.txt"
    script = tmp_path / "embed.py"
    script.write_text(
        "from migrator.run import MigrateOptions, migrate\n"
        f"open({str(marker)!r}, 'a').write('run\\n')\n"
        f"report = migrate({synapse_db!r}, {mas_db!r}, {{'oidc-dex': {DEMO_PROVIDER!r}}}, "
        "MigrateOptions(server_name='demo.example', workers=2))\n"
        "print(report.entities['users'].migrated)\n")
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": ":".join(sys.path)})
    assert res.returncode == 0, res.stderr[-2000:]
    assert marker.read_text() == "run\n"
    assert int(res.stdout.strip()) == rows(mas_db, "SELECT count(*) FROM users")[0][0] > 0


def test_a_worker_that_cannot_connect_fails_the_run_with_advice(synapse_db, mas_db):
    """A role limited to one connection: the workers' connections are refused; nothing is written."""
    execute(synapse_db, demo_inserts())
    execute(synapse_db, "DROP ROLE IF EXISTS syn2mas_one_conn; "
                        "CREATE ROLE syn2mas_one_conn LOGIN CONNECTION LIMIT 1; "
                        "GRANT SELECT ON ALL TABLES IN SCHEMA public TO syn2mas_one_conn")
    limited = synapse_db.replace("postgres@", "syn2mas_one_conn@", 1)
    add_provider(mas_db, DEMO_PROVIDER)
    before = mas_rows(mas_db)
    try:
        with pytest.raises(DatabaseError) as err:
            _run_demo(limited, mas_db, {"oidc-dex": DEMO_PROVIDER}, workers=2, dry_run=True)
    finally:
        execute(synapse_db, "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM syn2mas_one_conn; "
                            "DROP ROLE syn2mas_one_conn")
    assert "parallel worker cannot connect" in str(err.value) and "--workers 1" in str(err.value)
    assert mas_rows(mas_db) == before


@pytest.mark.parametrize("workers", [1, 2])
def test_account_tables_are_rebuilt_once_all_their_rows_are_written(synapse_db, mas_db, workers):
    """The account tables' indexes, keys and statistics are built once every reader has sent all their
    rows (data-migration.md §3: phase 4 writes only the compat tables), before the compat tables' own;
    in one process, before phase 4 writes anything."""
    execute(synapse_db, demo_inserts())
    add_provider(mas_db, DEMO_PROVIDER)
    steps: list[str] = []
    report = _run_demo(synapse_db, mas_db, {"oidc-dex": DEMO_PROVIDER}, workers=workers, fail_hook=steps.append)
    assert report.reconciled

    def positions(pred) -> list[int]:
        return [i for i, step in enumerate(steps) if pred(step)]

    accounts = set(ACCOUNT_TABLES)
    account_copies = positions(lambda s: s.startswith("copy:") and s[5:] in accounts)
    compat_copies = positions(lambda s: s.startswith("copy:compat_"))
    users_rebuilt = positions(lambda s: s in ("rebuild:index users_username_trgm_idx",
                                              "rebuild:statistics of users"))
    compat_rebuilt = positions(lambda s: s.startswith("rebuild:") and "compat_" in s)
    assert account_copies and compat_copies and len(users_rebuilt) == 2 and compat_rebuilt
    assert max(account_copies) < min(users_rebuilt)
    assert max(users_rebuilt) < min(compat_rebuilt)
    if workers == 1:
        assert max(users_rebuilt) < min(compat_copies)


def _children() -> list[int]:
    """This process's live child processes (Linux: /proc/<pid>/task/<tid>/children)."""
    found: list[int] = []
    for tid in os.listdir(f"/proc/{os.getpid()}/task"):
        try:
            with open(f"/proc/{os.getpid()}/task/{tid}/children") as f:
                found += [int(p) for p in f.read().split()]
        except FileNotFoundError:  # the thread has ended since the listing
            continue
    return found


def test_workers_start_before_the_checks_and_a_refused_run_leaves_none(synapse_db, mas):
    """The worker interpreters import their modules while the checks run; when a check refuses the
    migration they are stopped, and nothing is written."""
    execute(synapse_db, demo_inserts())
    seen: list[int] = []

    def refuse(source) -> None:
        seen.extend(_children())
        raise DatabaseError("refused by the test")

    before, others = mas_rows(mas), set(_children())  # a database server may be a child of the tests too
    with pytest.raises(DatabaseError, match="refused by the test"):
        run(synapse_db, mas, workers=2, pre_checks=[refuse])
    assert len(set(seen) - others) == 2
    assert not (set(seen) - others) & set(_children())  # killed and reaped
    assert mas_rows(mas) == before
