"""Database rules against real databases: read-only guarantees, locks, skipping, the migrate hook,
queries side by side on clones of the snapshot.

The per-rule behaviour is covered by the YAML cases in tests/rules/checks/database-*.yaml; these tests
cover what the engine promises around them.
"""
from __future__ import annotations

import os
import sqlite3
import subprocess
import threading
import time

import psycopg
import pytest
from psycopg import errors as pgerrors

from engine.configdoc import load_mas_config, load_synapse_config
from engine import dbchecks
from engine.dbchecks import database_rules, run_database_checks
from engine.dbfacts import build_facts
from engine import dbhandles
from engine.dbhandles import DbHandle, server_is_local
from engine.errors import DatabaseError
from engine.locations import Location
from engine.premigrate import MAS_RECHECK_RULES, mas_recheck, synapse_pre_check
from migrator.guards import MigrationRefused
from migrator.source import SYNAPSE_TABLES, PostgresSource, open_source
from tests.conftest import SHARED
from tests.rulecases.database import make_sqlite, open_mas

SCALE_SCRIPT = os.path.join(SHARED, "bench", "scale-synapse-db.sql")
PROVIDER = "01HZX0G3P0V9Y8C6D5E4F3A2B1"
PROVIDER_UUID = "018ffa08-0ec0-da7c-8619-a5711e350961"


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def configs(tmp_path, synapse_uri: str | None = None, mas_uri: str | None = None):
    synapse = "server_name: example.org\noidc_providers: [{idp_id: dex, issuer: 'https://dex.example.org', " \
              "client_id: synapse}]\n"
    if synapse_uri:
        synapse += f"database: {{name: psycopg2, args: {{dbname: '{synapse_uri.rsplit('/', 1)[1]}', " \
                   f"host: 127.0.0.1, port: {synapse_uri.rsplit(':', 1)[1].split('/')[0]}, user: postgres}}}}\n"
    mas = f"upstream_oauth2:\n  providers:\n    - {{id: {PROVIDER}, synapse_idp_id: oidc-dex, client_id: mas}}\n"
    if mas_uri:
        mas += f"database:\n  uri: '{mas_uri}'\n"
    return (load_synapse_config([write(tmp_path, "homeserver.yaml", synapse)]),
            load_mas_config([write(tmp_path, "mas.yaml", mas)]))


def scale(pg_server, uri: str, n: int) -> None:
    """Fill the Synapse database with the deterministic generator of ../shared/bench (real bcrypt hashes)."""
    psql = os.path.join(pg_server.bindir, "psql")
    subprocess.run([psql, "-X", "-q", "-v", f"n={n}", "-f", SCALE_SCRIPT, uri], check=True, capture_output=True)


def checksums(uri: str) -> dict[str, str]:
    """An order-independent digest of every row of the six tables syn2mas reads."""
    out = {}
    with psycopg.connect(uri) as conn:
        for table in SYNAPSE_TABLES:
            out[table] = conn.execute(f"SELECT count(*) || ':' || coalesce(md5(string_agg(md5(t::text), '' "
                                      f"ORDER BY md5(t::text))), '') FROM {table} t").fetchone()[0]
    return out


def test_every_catalogue_rule_of_section_4_3_exists_with_its_severity():
    severities = {r.id: r.severity for r in database_rules()}
    assert severities == {
        "guests-in-database": "warning", "non-email-threepids": "warning", "oauth-delegated-leftovers": "error",
        "auth-provider-unknown-to-synapse": "error", "auth-provider-missing-in-mas": "error",
        "foreign-server-users": "error", "orphan-rows": "error", "duplicate-upstream-links": "error",
        "case-colliding-usernames": "warning", "invalid-emails": "warning",
        "users-without-login-method": "warning", "hidden-device-tokens": "warning",
        "mas-schema-missing": "error", "mas-provider-not-synced": "error", "mas-database-not-empty": "error",
        "synapse-still-running": "error"}


def test_all_rules_on_generated_data_leave_synapse_unchanged(pg_server, synapse_db, mas_db, tmp_path):
    scale(pg_server, synapse_db, 300)
    before = checksums(synapse_db)
    synapse, mas = configs(tmp_path)
    facts = build_facts(synapse, mas)
    with open_source(synapse_db, lock=True) as source:
        conn = open_mas(mas_db)
        try:
            result = run_database_checks(facts, synapse=DbHandle.for_synapse(source, synapse.locate("database")),
                                         mas=DbHandle.for_mas(conn, mas.locate("database")))
        finally:
            conn.close()
    assert checksums(synapse_db) == before
    fired = {f.rule: f for f in result.findings}
    # The generator's guests (~1%) and hidden cross-signing devices are reported; the provider is not synced.
    assert fired["guests-in-database"].count >= 1
    assert fired["mas-provider-not-synced"].provider == "oidc-dex"
    assert "orphan-rows" not in fired and "foreign-server-users" not in fired
    assert result.skipped == []
    assert sorted(result.ran) == sorted(r.id for r in database_rules() if r.id != "synapse-still-running")


@pytest.mark.parametrize("upstream", ["{providers: true}", "{providers: {id: x}}", "true", "[1, 2]"])
def test_malformed_mas_providers_give_no_facts_instead_of_a_crash(tmp_path, upstream):
    synapse = load_synapse_config([write(tmp_path, "homeserver.yaml", "server_name: example.org\n")])
    mas = load_mas_config([write(tmp_path, "mas.yaml", f"upstream_oauth2: {upstream}\n")])
    assert build_facts(synapse, mas).providers == []


def test_the_synapse_snapshot_is_read_only(synapse_db):
    with open_source(synapse_db, lock=True) as source:
        assert source.conn.execute("SHOW transaction_read_only").fetchone()[0] == "on"
        assert source.conn.execute("SHOW transaction_isolation").fetchone()[0] == "serializable"
        assert source.conn.execute("SHOW transaction_deferrable").fetchone()[0] == "on"
        with pytest.raises(pgerrors.ReadOnlySqlTransaction):
            source.conn.execute("INSERT INTO users (name) VALUES ('@mallory:example.org')")
    with psycopg.connect(synapse_db) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 0


def test_the_mas_snapshot_is_read_only(mas_db):
    conn = open_mas(mas_db)
    try:
        with pytest.raises(pgerrors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO upstream_oauth_providers (upstream_oauth_provider_id, scope, client_id, "
                         "token_endpoint_auth_method, created_at) VALUES (gen_random_uuid(), 'openid', 'x', "
                         "'none', now())")
    finally:
        conn.close()


def test_the_sqlite_handle_is_read_only(tmp_path):
    path = str(tmp_path / "homeserver.db")
    make_sqlite(path, [], {"users": [{"name": "@alice:example.org"}]})
    with open_source(path, lock=True) as source:
        with pytest.raises(sqlite3.OperationalError, match="readonly|read-only"):
            source.conn.execute("INSERT INTO users (name) VALUES ('@mallory:example.org')")
    assert sqlite3.connect(path).execute("SELECT count(*) FROM users").fetchone()[0] == 1


def _locks(uri: str, pid: int) -> dict[str, str]:
    with psycopg.connect(uri) as conn:
        rows = conn.execute("SELECT c.relname, l.mode FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                            "WHERE l.pid = %s AND c.relname = ANY(%s) AND l.granted",
                            (pid, list(SYNAPSE_TABLES))).fetchall()
    return dict(rows)


def test_check_holds_only_access_share_locks_so_synapse_can_keep_writing(synapse_db, tmp_path):
    synapse, mas = configs(tmp_path)
    with open_source(synapse_db, lock=True) as source:
        run_database_checks(build_facts(synapse, mas), synapse=DbHandle.for_synapse(source, synapse.locate("database")))
        assert _locks(synapse_db, source.conn.info.backend_pid) == {t: "AccessShareLock" for t in SYNAPSE_TABLES}
        with psycopg.connect(synapse_db, autocommit=True) as writer:
            writer.execute("SET lock_timeout = '2s'")
            writer.execute("INSERT INTO users (name) VALUES ('@new:example.org')")


def test_a_real_migration_keeps_the_exclusive_locks_it_proved_synapse_stopped_with(synapse_db, tmp_path):
    synapse, mas = configs(tmp_path)
    facts = build_facts(synapse, mas, mode="migrate")
    with open_source(synapse_db, lock=False) as source:
        result = run_database_checks(facts, synapse=DbHandle.for_synapse(source, synapse.locate("database")),
                                     databases=("synapse",))
        assert "synapse-still-running" in result.ran and result.findings == []
        assert _locks(synapse_db, source.conn.info.backend_pid) == {t: "ExclusiveLock" for t in SYNAPSE_TABLES}
        with psycopg.connect(synapse_db, autocommit=True) as writer:
            writer.execute("SET lock_timeout = '200ms'")
            with pytest.raises(pgerrors.LockNotAvailable):
                writer.execute("INSERT INTO users (name) VALUES ('@new:example.org')")


def test_rules_of_a_database_that_is_not_given_are_listed_as_skipped(synapse_db, tmp_path):
    synapse, mas = configs(tmp_path)
    with open_source(synapse_db, lock=True) as source:
        result = run_database_checks(build_facts(synapse, mas),
                                     synapse=DbHandle.for_synapse(source, synapse.locate("database")),
                                     unavailable={"mas": "no MAS database given"})
    assert sorted(s.rule for s in result.skipped) == sorted(MAS_RECHECK_RULES)
    assert {s.reason for s in result.skipped} == {"no MAS database given"}


def test_findings_point_at_the_database_key_with_a_logical_location(synapse_db, tmp_path):
    with psycopg.connect(synapse_db, autocommit=True) as conn:
        conn.execute("INSERT INTO user_threepids VALUES ('@ghost:example.org', 'email', 'g@example.org', 1, 1)")
    synapse, mas = configs(tmp_path, synapse_uri=synapse_db)
    with open_source(synapse_db, lock=True) as source:
        result = run_database_checks(build_facts(synapse, mas), only={"orphan-rows"},
                                     synapse=DbHandle.for_synapse(source, synapse.locate("database")))
    (finding,) = result.findings
    assert (finding.location.file, finding.location.line, finding.location.key_path) == \
        (synapse.files[0], 3, "database")
    assert finding.location.logical == "synapse-db:user_threepids"
    assert finding.scope == "database" and finding.table == "user_threepids"
    assert "DELETE FROM user_threepids WHERE user_id NOT IN (SELECT name FROM users WHERE name IS NOT NULL);" \
        in finding.remediation


def test_a_failing_synapse_query_is_a_database_error_not_a_traceback(synapse_db, tmp_path):
    with psycopg.connect(synapse_db, autocommit=True) as conn:
        conn.execute("ALTER TABLE user_threepids RENAME COLUMN medium TO kind")
    synapse, mas = configs(tmp_path)
    # Bypass the migrator's schema guard: the rule's own failure must still be reported cleanly.
    pg = PostgresSource(psycopg.connect(synapse_db, autocommit=True))
    try:
        with pytest.raises(DatabaseError, match="`non-email-threepids` failed on the Synapse database"):
            run_database_checks(build_facts(synapse, mas), only={"non-email-threepids"},
                                synapse=DbHandle.for_synapse(pg, synapse.locate("database")))
    finally:
        pg.close()


def test_a_rule_part_of_a_query_without_detail_shape_is_a_rule_file_error(synapse_db, tmp_path):
    import copy

    from engine.errors import RuleFileError

    rule = copy.deepcopy(next(r for r in database_rules() if r.id == "guests-in-database"))
    rule.raw["query"] = "queries/linked-auth-providers.sql"  # plain rows, no groups to take a part of
    synapse, mas = configs(tmp_path)
    with open_source(synapse_db, lock=True) as source:
        with pytest.raises(RuleFileError, match="`part` needs a `-- shape: detail` query"):
            run_database_checks(build_facts(synapse, mas), rules=[rule],
                                synapse=DbHandle.for_synapse(source, synapse.locate("database")))


def test_pre_migration_hook_refuses_on_the_migrators_own_snapshot(synapse_db, mas_db, tmp_path):
    from migrator.run import MigrateOptions, migrate

    with psycopg.connect(synapse_db, autocommit=True) as conn:
        conn.execute("INSERT INTO users (name, creation_ts) VALUES ('@alice:example.org', 1)")
        conn.execute("INSERT INTO devices (user_id, device_id) VALUES ('@ghost:example.org', 'PHONE')")
    synapse, mas = configs(tmp_path)
    results: list = []
    hook = synapse_pre_check(synapse, mas, dry_run=True, results=results)
    with pytest.raises(MigrationRefused) as refused:
        migrate(synapse_db, mas_db, {"oidc-dex": PROVIDER},
                MigrateOptions(server_name="example.org", dry_run=True, pre_checks=[hook]))
    assert [p.check_id for p in refused.value.problems] == ["orphan-rows"]
    assert results[0].ran and "synapse-still-running" not in results[0].ran  # dry run: never locks Synapse out
    with psycopg.connect(mas_db) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 0


def test_mas_recheck_on_a_write_connection_reports_what_appeared_since_check(mas_db, tmp_path):
    synapse, mas = configs(tmp_path)
    facts = build_facts(synapse, mas, mode="migrate")
    facts.linked_providers = ["oidc-dex"]
    with psycopg.connect(mas_db) as conn:  # a write transaction, as the migrator's
        conn.execute("INSERT INTO upstream_oauth_providers (upstream_oauth_provider_id, scope, client_id, "
                     "token_endpoint_auth_method, created_at) VALUES (%s, 'openid', 'mas', 'none', now())",
                     (PROVIDER_UUID,))
        assert mas_recheck(conn, mas, facts) == []
        conn.execute("INSERT INTO users (user_id, username, created_at) VALUES (gen_random_uuid(), 'x', now())")
        assert [f.rule for f in mas_recheck(conn, mas, facts)] == ["mas-database-not-empty"]
        conn.rollback()


# ---------------------------------------------------------------- queries side by side (clones)

def _opened_clones(monkeypatch) -> list[int]:
    """Record how many clones each run opened."""
    opened: list[int] = []
    original = DbHandle.clones

    def clones(self, count):
        out = original(self, count)
        opened.append(len(out))
        return out

    monkeypatch.setattr(DbHandle, "clones", clones)
    return opened


def test_clones_read_exactly_the_handles_snapshot_read_only(synapse_db):
    with psycopg.connect(synapse_db, autocommit=True) as conn:
        conn.execute("INSERT INTO users (name) VALUES ('@before:example.org')")
    with open_source(synapse_db, lock=True) as source:  # its snapshot is taken (schema check)
        handle = DbHandle.for_synapse(source, Location())
        with psycopg.connect(synapse_db, autocommit=True) as conn:
            conn.execute("INSERT INTO users (name) VALUES ('@after:example.org')")
        clones = handle.clones(2)
        try:
            assert len(clones) == 2
            for clone in clones:
                assert clone.query("SELECT name FROM users") == [{"name": "@before:example.org"}]
                assert clone.conn.execute("SHOW transaction_read_only").fetchone()[0] == "on"
                assert clone.conn.execute("SHOW transaction_isolation").fetchone()[0] == "repeatable read"
                assert _locks(synapse_db, clone.conn.info.backend_pid) == {t: "AccessShareLock" for t in SYNAPSE_TABLES}
                with pytest.raises(pgerrors.ReadOnlySqlTransaction):
                    clone.conn.execute("INSERT INTO users (name) VALUES ('@mallory:example.org')")
        finally:
            for clone in clones:
                clone.close()
        assert all(clone.conn.closed for clone in clones)


def test_sqlite_has_no_clones(tmp_path):
    path = str(tmp_path / "homeserver.db")
    make_sqlite(path, [], {"users": [{"name": "@alice:example.org"}]})
    with open_source(path, lock=True) as source:
        assert DbHandle.for_synapse(source, Location()).clones(3) == []


def test_clones_never_queue_behind_a_waiting_lock_request(synapse_db, tmp_path):
    """Another session waits for ACCESS EXCLUSIVE behind the check's own locks: a clone asking for its locks
    would queue behind it (a deadlock nobody detects), so it gives up at once and the rules run serially."""
    synapse, mas = configs(tmp_path)
    with open_source(synapse_db, lock=True) as source:
        handle = DbHandle.for_synapse(source, synapse.locate("database"))
        waiter = psycopg.connect(synapse_db, autocommit=True)
        thread = threading.Thread(target=lambda: _lock_and_release(waiter))
        thread.start()
        try:
            for _ in range(100):
                with psycopg.connect(synapse_db) as probe:
                    if probe.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()[0]:
                        break
                time.sleep(0.05)
            assert handle.clones(2) == []
            result = run_database_checks(build_facts(synapse, mas), synapse=handle, databases=("synapse",))
            assert result.ran
        finally:
            source.close()
            thread.join(timeout=30)
            waiter.close()
    assert not thread.is_alive()


def _lock_and_release(conn) -> None:
    conn.execute("BEGIN")
    conn.execute("LOCK TABLE devices IN ACCESS EXCLUSIVE MODE")
    conn.execute("ROLLBACK")


def test_side_by_side_and_serial_runs_find_the_same(pg_server, synapse_db, mas_db, tmp_path, monkeypatch):
    scale(pg_server, synapse_db, 300)
    with psycopg.connect(synapse_db, autocommit=True) as conn:  # a few findings beyond the generator's
        conn.execute("INSERT INTO devices (user_id, device_id) VALUES ('@ghost:example.org', 'PHONE')")
        conn.execute("INSERT INTO users (name) VALUES ('@Scale_0000001:example.org'), ('@bob:other.org')")
        conn.execute("INSERT INTO user_threepids VALUES ('@ghost:example.org', 'msisdn', '4477', 1, 1)")
    synapse, mas = configs(tmp_path)
    monkeypatch.setattr(dbhandles, "usable_cpus", lambda: 8)  # the test server is local: allow three
    opened = _opened_clones(monkeypatch)
    shared_runs = []
    real_query = DbHandle.query

    def counting_query(self, sql, params=None):
        if "One pass over `users`" in sql:
            shared_runs.append(parallel_now[0])
        return real_query(self, sql, params)

    monkeypatch.setattr(DbHandle, "query", counting_query)
    parallel_now = [0]

    def run(parallel: int) -> list[tuple]:
        parallel_now[0] = parallel
        monkeypatch.setattr(dbchecks, "PARALLEL_QUERIES", parallel)
        with open_source(synapse_db, lock=True) as source:
            conn = open_mas(mas_db)
            try:
                result = run_database_checks(build_facts(synapse, mas),
                                             synapse=DbHandle.for_synapse(source, synapse.locate("database")),
                                             mas=DbHandle.for_mas(conn, mas.locate("database")))
            finally:
                conn.close()
        return [(f.rule, f.severity, f.table, f.provider, f.count, f.samples, f.message) for f in result.findings]

    serial, side_by_side = run(0), run(3)
    assert opened == [0, 3]
    assert side_by_side == serial
    assert {"orphan-rows", "case-colliding-usernames", "foreign-server-users", "guests-in-database",
            "non-email-threepids", "mas-provider-not-synced"} <= {f[0] for f in serial}
    # the four rules that read every user share one query, run once per check in either mode
    assert shared_runs == [0, 3]


@pytest.mark.parametrize("host", ["/var/run/postgresql", "", None, "@abstract", "localhost", "127.0.0.1",
                                  "127.0.1.1", "::1"])
def test_a_socket_or_loopback_server_is_local(host):
    assert server_is_local(host)


@pytest.mark.parametrize("host", ["db.example.org", "10.0.0.5", "2001:db8::1", "localhost.example.org"])
def test_a_server_by_name_or_other_address_is_remote(host):
    assert not server_is_local(host)


@pytest.mark.parametrize("cpus, expected", [(1, 1), (2, 2), (3, 3), (16, 3)])
def test_a_local_server_gets_no_more_side_by_side_queries_than_cores(pg_server, synapse_db, tmp_path, monkeypatch,
                                                                     cpus, expected):
    scale(pg_server, synapse_db, 20)
    synapse, mas = configs(tmp_path)
    monkeypatch.setattr(dbhandles, "usable_cpus", lambda: cpus)
    opened = _opened_clones(monkeypatch)
    with open_source(synapse_db, lock=True) as source:
        handle = DbHandle.for_synapse(source, synapse.locate("database"))
        assert server_is_local(source.conn.info.host)  # the test cluster runs on this machine
        assert handle.local_cpus() == cpus
        run_database_checks(build_facts(synapse, mas), synapse=handle, databases=("synapse",))
    assert opened == [expected]


def test_a_query_failing_on_a_clone_fails_like_a_serial_run(synapse_db, tmp_path, monkeypatch):
    with psycopg.connect(synapse_db, autocommit=True) as conn:
        conn.execute("ALTER TABLE user_threepids RENAME COLUMN medium TO kind")
    synapse, mas = configs(tmp_path)
    opened = _opened_clones(monkeypatch)
    pg = PostgresSource(psycopg.connect(synapse_db, autocommit=True))  # bypasses the migrator's schema guard
    try:
        with pytest.raises(DatabaseError, match="`non-email-threepids` failed on the Synapse database"):
            run_database_checks(build_facts(synapse, mas), only={"guests-in-database", "non-email-threepids",
                                                                  "invalid-emails"},
                                synapse=DbHandle.for_synapse(pg, synapse.locate("database")))
        assert opened and opened[0] > 0  # the clone's failure was not reported: the serial re-run's was
    finally:
        pg.close()


def test_the_migrate_hook_runs_side_by_side_in_the_migrators_snapshot(synapse_db, mas_db, tmp_path, monkeypatch):
    from migrator.run import MigrateOptions, migrate

    with psycopg.connect(synapse_db, autocommit=True) as conn:
        conn.execute("INSERT INTO users (name, creation_ts) VALUES ('@alice:example.org', 1)")
        conn.execute("INSERT INTO user_threepids VALUES ('@ghost:example.org', 'email', 'g@example.org', 1, 1)")
    synapse, mas = configs(tmp_path)
    opened = _opened_clones(monkeypatch)
    results: list = []
    hook = synapse_pre_check(synapse, mas, dry_run=False, assume_synapse_stopped=True, results=results)
    with pytest.raises(MigrationRefused) as refused:
        migrate(synapse_db, mas_db, {"oidc-dex": PROVIDER},
                MigrateOptions(server_name="example.org", pre_checks=[hook], assume_synapse_stopped=True))
    assert [p.check_id for p in refused.value.problems] == ["orphan-rows"]
    assert "synapse-still-running" in results[0].ran and opened and opened[0] > 0


def test_tune_raises_work_mem_and_never_lowers_it(mas_db):
    with psycopg.connect(mas_db, autocommit=True) as conn:
        for before, after in (("4MB", "64MB"), ("256MB", "256MB")):
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            conn.execute(f"SET LOCAL work_mem = '{before}'")
            DbHandle.for_mas(conn, Location()).tune()
            assert conn.execute("SHOW work_mem").fetchone()[0] == after
            assert conn.execute("SHOW jit").fetchone()[0] == "off"
            conn.execute("ROLLBACK")
            assert conn.execute("SHOW work_mem").fetchone()[0] == "4MB"  # local to the transaction


def test_planner_switches_hold_for_their_statement_only(synapse_db, tmp_path):
    queries = tmp_path / "queries"
    queries.mkdir()
    (queries / "q.sql").write_text("-- planner: enable_seqscan=off, enable_hashjoin=off\n"
                                   "SELECT current_setting('enable_seqscan') AS s, current_setting('enable_hashjoin') AS h\n")
    from engine.dbquery import load_query

    text = load_query(str(tmp_path), "queries/q.sql", "postgresql")
    with open_source(synapse_db, lock=True) as source:
        handle = DbHandle.for_synapse(source, Location())
        assert handle.query(text) == [{"s": "off", "h": "off"}]
        assert handle.query("SELECT current_setting('enable_seqscan') AS s") == [{"s": "on"}]


def test_orphan_rows_reads_only_indexes_of_the_large_tables(synapse_db):
    # Its anti-joins merge user-id indexes; the deviceless tokens come from `access_tokens_device_id`,
    # not from a scan of the whole heap (which the planner prefers without the query's switches).
    from engine.dbquery import QueryText, load_query
    from engine.rulefiles import default_rules_dir

    text = load_query(os.path.join(default_rules_dir(), "checks"), "queries/orphan-rows.sql", "postgresql")
    explain = QueryText("EXPLAIN (COSTS OFF) " + text)
    explain.planner = text.planner
    with open_source(synapse_db, lock=True) as source:
        handle = DbHandle.for_synapse(source, Location())
        plan = "\n".join(r["QUERY PLAN"] for r in handle.query(explain))
        bare = "\n".join(r["QUERY PLAN"] for r in handle.query("EXPLAIN (COSTS OFF) " + text))
    # (an index-only scan on a large table; the test's small one gets a bitmap scan of the index)
    assert "Scan on access_tokens_device_id" in plan or "Scan using access_tokens_device_id" in plan
    assert "Seq Scan" not in plan
    assert "Seq Scan on access_tokens" in bare  # the switch is what keeps the heap out


def test_a_clone_keeps_serving_after_a_failed_statement(synapse_db):
    with open_source(synapse_db, lock=True) as source:
        prefetch = dbchecks._Prefetch(DbHandle.for_synapse(source, Location()), 1)
        try:
            assert len(prefetch.clones) == 1
            prefetch.submit("bad", "SELECT no_such_column FROM users")
            prefetch.submit("good", "SELECT count(*) AS n FROM users")
            assert prefetch.rows("bad") is None  # the caller re-runs it and reports the error
            assert prefetch.rows("good") == [{"n": 0}]
            assert prefetch.rows("never-submitted") is None
        finally:
            prefetch.close()
        assert prefetch.clones[0].conn.closed
