"""All or nothing on MAS (§14.1), nothing ever written to Synapse (§14.4), locks (§10.2, §2.2)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import psycopg
import pytest

from engine.errors import DatabaseError
from migrator.source import SynapseStillRunning
from migrator.writer import MIGRATION_LOCK_KEY
from mighelpers import PROVIDER_ULID, SERVER, add_provider, execute, rows, run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIX = ("users", "user_threepids", "user_external_ids", "devices", "access_tokens", "refresh_tokens")
STEPS = ["locked", "checked", "dropped", "copy:users", "copy:compat_refresh_tokens",
         "rebuild:index users_lower_username_idx", "rebuild:constraint users_pkey on users",
         "rebuild:constraint user_sessions_user_id_fkey on user_sessions", "before-commit"]


def populate(synapse_db: str) -> None:
    execute(synapse_db, """
        INSERT INTO users (name, password_hash, creation_ts, admin) VALUES
            ('@a:example.org', '$2b$12$x', 1600000000, 1), ('@b:example.org', NULL, 1600000100, 0);
        INSERT INTO user_threepids VALUES ('@a:example.org', 'email', 'a@x', 1, 1000),
                                          ('@b:example.org', 'msisdn', '123', 1, 1000);
        INSERT INTO user_external_ids VALUES ('oidc-dex', 'sub-b', '@b:example.org');
        INSERT INTO devices (user_id, device_id, last_seen, ip) VALUES ('@a:example.org', 'D1', 5, '10.0.0.1'),
                                                                        ('@b:example.org', 'D2', 6, NULL);
        INSERT INTO refresh_tokens (id, user_id, device_id, token) VALUES (1, '@b:example.org', 'D2', 'syr_1');
        INSERT INTO access_tokens (id, user_id, device_id, token, last_validated, refresh_token_id) VALUES
            (1, '@a:example.org', 'D1', 'syt_1', 10, NULL), (2, '@a:example.org', NULL, 'syt_2', 11, NULL),
            (3, '@b:example.org', 'D2', 'syt_3', 12, 1);
    """)


def schema_dump(pg_server, uri: str) -> str:
    dbname = uri.rsplit("/", 1)[1]
    res = subprocess.run([os.path.join(pg_server.bindir, "pg_dump"), "--schema-only", "--no-owner",
                          pg_server.uri(dbname)], capture_output=True, text=True, check=True)
    # pg_dump's \restrict/\unrestrict lines carry a random key that differs per dump
    return "\n".join(line for line in res.stdout.splitlines() if not line.startswith(("\\restrict", "\\unrestrict")))


def mas_state(pg_server, uri: str) -> tuple[str, list]:
    """Schema-only dump plus the row counts of every table."""
    tables = [r[0] for r in rows(uri, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")]
    counts = [(t, rows(uri, f'SELECT count(*) FROM "{t}"')[0][0]) for t in tables]
    return schema_dump(pg_server, uri), counts


def synapse_checksums(uri: str) -> dict[str, str]:
    out = {}
    for t in SIX:
        out[t] = rows(uri, f"SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM {t} x")[0][0]
    return out


@pytest.mark.parametrize("step", STEPS)
def test_failure_at_each_step_leaves_mas_exactly_as_before(pg_server, synapse_db, mas, step):
    populate(synapse_db)
    before = mas_state(pg_server, mas)

    def hook(name: str) -> None:
        if name == step:
            raise RuntimeError(f"injected failure at {name}")

    with pytest.raises(RuntimeError, match="injected"):
        run(synapse_db, mas, fail_hook=hook)
    assert mas_state(pg_server, mas) == before
    # the advisory lock was released: a new run succeeds
    run(synapse_db, mas)
    assert rows(mas, "SELECT count(*) FROM users") == [(2,)]


@pytest.mark.parametrize("step", ["dropped", "copy:compat_sessions", "rebuild:constraint users_pkey on users"])
def test_killed_process_leaves_mas_exactly_as_before(pg_server, synapse_db, mas, step):
    populate(synapse_db)
    before = mas_state(pg_server, mas)
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {ROOT!r})
        from migrator.run import MigrateOptions, migrate
        def hook(name):
            if name == {step!r}:
                os.kill(os.getpid(), signal.SIGKILL)
        migrate({synapse_db!r}, {mas!r}, {{"oidc-dex": {PROVIDER_ULID!r}}},
                MigrateOptions(server_name={SERVER!r}, fail_hook=hook))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    # the server notices the dropped connection and rolls back; wait for the backend to go away
    with psycopg.connect(mas, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))  # blocks until the dead session ends
        conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    assert mas_state(pg_server, mas) == before


def test_committed_run_keeps_schema_identical_and_synapse_unchanged(pg_server, synapse_db, mas):
    populate(synapse_db)
    schema_before = schema_dump(pg_server, mas)
    synapse_before = synapse_checksums(synapse_db)
    report = run(synapse_db, mas)
    assert report.reconciled
    assert schema_dump(pg_server, mas) == schema_before
    assert synapse_checksums(synapse_db) == synapse_before
    assert rows(mas, "SELECT count(*) FROM compat_access_tokens") == [(3,)]
    # ANALYZE ran after the commit
    assert rows(mas, "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'users'") == [(True,)]
    # COPY FREEZE into the truncated tables: their pages are all-visible at once (no vacuum has run)
    assert rows(mas, "SELECT relpages > 0 AND relallvisible = relpages FROM pg_class "
                     "WHERE relname IN ('users', 'compat_access_tokens')") == [(True,), (True,)]


def test_dry_run_leaves_nothing_but_reports_everything(pg_server, synapse_db, mas):
    populate(synapse_db)
    before = mas_state(pg_server, mas)
    synapse_before = synapse_checksums(synapse_db)
    report = run(synapse_db, mas, dry_run=True)
    assert report.mode == "dry-run" and report.reconciled
    assert report.entities["access_tokens"].migrated == 3
    assert {r["entity"]: r["found"] for r in report.reconciliation}["users"] == 2
    assert mas_state(pg_server, mas) == before
    assert synapse_checksums(synapse_db) == synapse_before


def test_conflicting_row_fails_the_rebuild_and_rolls_back(pg_server, synapse_db, fresh_mas_db):
    """A deliberately conflicting trigger makes the last step fail; MAS is untouched, the token not printed."""
    mas = fresh_mas_db
    add_provider(mas)
    populate(synapse_db)
    execute(mas, """
        CREATE FUNCTION dup() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO compat_access_tokens SELECT gen_random_uuid(), NEW.compat_session_id, NEW.access_token,
              NEW.created_at, NULL WHERE NOT EXISTS (SELECT 1 FROM compat_access_tokens WHERE compat_access_token_id
              <> NEW.compat_access_token_id AND access_token = NEW.access_token); RETURN NEW; END $$;
        CREATE TRIGGER dup AFTER INSERT ON compat_access_tokens FOR EACH ROW EXECUTE FUNCTION dup();
    """)
    before = mas_state(pg_server, mas)
    with pytest.raises(DatabaseError) as exc:
        run(synapse_db, mas)
    assert "compat_access_tokens_access_token_unique" in str(exc.value)
    assert "syt_" not in str(exc.value)
    assert mas_state(pg_server, mas) == before


def test_second_concurrent_run_is_refused(synapse_db, mas):
    populate(synapse_db)
    with psycopg.connect(mas, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        with pytest.raises(DatabaseError, match="another migration is running"):
            run(synapse_db, mas)
    assert rows(mas, "SELECT count(*) FROM users") == [(0,)]


def test_running_mas_is_detected(synapse_db, mas):
    populate(synapse_db)
    with psycopg.connect(mas) as other:
        other.execute("SELECT count(*) FROM compat_sessions")  # holds ACCESS SHARE until the end
        with pytest.raises(DatabaseError, match="MAS appears to be running"):
            run(synapse_db, mas)


def test_running_synapse_blocks_a_real_run_but_not_a_dry_run(synapse_db, mas):
    populate(synapse_db)
    with psycopg.connect(synapse_db) as synapse:
        synapse.execute("UPDATE devices SET last_seen = last_seen")  # a writer holds ROW EXCLUSIVE
        with pytest.raises(SynapseStillRunning):
            run(synapse_db, mas)
        assert run(synapse_db, mas, dry_run=True).reconciled
        synapse.rollback()


def test_read_only_role_needs_assume_synapse_stopped(synapse_db, mas):
    populate(synapse_db)
    execute(synapse_db, "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'reader') THEN "
                        "CREATE ROLE reader LOGIN; END IF; END $$; GRANT SELECT ON ALL TABLES IN SCHEMA public "
                        "TO reader")
    reader_uri = synapse_db.replace("postgres@", "reader@")
    with pytest.raises(SynapseStillRunning, match="--assume-synapse-stopped"):
        run(reader_uri, mas)
    assert run(reader_uri, mas, assume_synapse_stopped=True).reconciled



def test_the_read_transaction_survives_a_server_idle_in_transaction_timeout(synapse_db):
    """The Synapse transaction waits while MAS rebuilds indexes (minutes on a large server); a
    server-wide idle_in_transaction_session_timeout must not end it between two reads."""
    import time

    from migrator.source import open_source

    populate(synapse_db)
    dbname = synapse_db.rsplit("/", 1)[1]
    with psycopg.connect(synapse_db, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{dbname}" SET idle_in_transaction_session_timeout = \'300ms\'')
    try:
        source = open_source(synapse_db)
        try:
            assert source.scalar("SELECT count(*) FROM users") == 2
            time.sleep(1.0)  # idle in the transaction for longer than the server allows
            assert source.scalar("SELECT count(*) FROM devices") == 2
        finally:
            source.close()
    finally:
        with psycopg.connect(synapse_db, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{dbname}" RESET idle_in_transaction_session_timeout')
