"""SQLite source: same MAS rows as PostgreSQL for the same Synapse rows; read-only; schema guard."""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3

import pytest

from engine.errors import DatabaseError
from migrator.demo import build_sqlite
from migrator.masschema import TARGET_TABLES
from migrator.source import open_source
from mighelpers import add_provider, execute, rows, run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO_SQL = os.path.join(ROOT, "fixtures", "demo", "synapse.sql")
DEMO_PROVIDER = "01JZ0DEMQ0DEX0PR0V1DER0000"
MAPPING = {"oidc-dex": DEMO_PROVIDER}
SERVER = "demo.example"


def demo_inserts() -> str:
    with open(DEMO_SQL, encoding="utf-8") as fh:
        text = fh.read()
    return text[text.index("INSERT INTO"):]


def mas_rows(uri: str) -> dict[str, list]:
    return {t: sorted(rows(uri, f"SELECT * FROM {t}"), key=repr) for t in TARGET_TABLES}


def run_demo(source, mas_uri):
    from migrator.run import MigrateOptions, migrate
    from mighelpers import KEY, RUN_START

    return migrate(source, mas_uri, MAPPING, MigrateOptions(server_name=SERVER, id_key=KEY, run_start=RUN_START,
                                                            assume_synapse_stopped=True))


def test_sqlite_and_postgresql_give_identical_mas_rows(tmp_path, synapse_db, mas_db, fresh_mas_db):
    db = str(tmp_path / "synapse.db")
    build_sqlite(DEMO_SQL, db)
    execute(synapse_db, demo_inserts())
    for uri in (mas_db, fresh_mas_db):
        add_provider(uri, DEMO_PROVIDER)
    from_sqlite = run_demo(db, mas_db)
    from_pg = run_demo(synapse_db, fresh_mas_db)
    assert from_sqlite.source_kind == "sqlite" and from_pg.source_kind == "postgresql"
    assert from_sqlite.to_dict()["entities"] == from_pg.to_dict()["entities"]
    assert from_sqlite.anomalies == from_pg.anomalies
    # same key, same clock: ids included, every row is the same
    sqlite_rows, pg_rows = mas_rows(mas_db), mas_rows(fresh_mas_db)
    assert sqlite_rows == pg_rows
    assert sum(len(v) for v in sqlite_rows.values()) > 20


def test_sqlite_file_is_never_written(tmp_path, mas_db):
    db = str(tmp_path / "synapse.db")
    build_sqlite(DEMO_SQL, db)
    add_provider(mas_db, DEMO_PROVIDER)
    before = hashlib.sha256(open(db, "rb").read()).hexdigest()
    mtime = os.stat(db).st_mtime_ns
    assert run_demo(db, mas_db).reconciled
    assert hashlib.sha256(open(db, "rb").read()).hexdigest() == before
    assert os.stat(db).st_mtime_ns == mtime
    assert not os.path.exists(db + "-journal") and not os.path.exists(db + "-wal")


def test_sqlite_handle_refuses_writes(tmp_path):
    db = str(tmp_path / "synapse.db")
    build_sqlite(DEMO_SQL, db)
    with open_source(db) as source:
        with pytest.raises(sqlite3.OperationalError):
            source.conn.execute("DELETE FROM users")


def test_sqlite_open_elsewhere_blocks_a_real_run(tmp_path, mas_db):
    db = str(tmp_path / "synapse.db")
    build_sqlite(DEMO_SQL, db)
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", f"import sqlite3, time; c = sqlite3.connect({db!r}); "
                               "c.execute('SELECT 1 FROM users').fetchall(); print('ready', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        from migrator.source import SynapseStillRunning

        with pytest.raises(SynapseStillRunning, match="other process"):
            open_source(db, exclusive=True)
        with open_source(db, exclusive=False) as source:  # a dry run or check is fine
            assert source.kind == "sqlite"
    finally:
        holder.kill()
        holder.wait()


def test_schema_guard_names_missing_columns(tmp_path):
    db = str(tmp_path / "synapse.db")
    build_sqlite(DEMO_SQL, db)
    conn = sqlite3.connect(db)
    conn.execute("ALTER TABLE devices DROP COLUMN hidden")
    conn.commit()
    conn.close()
    with pytest.raises(DatabaseError, match=r"`devices.hidden`"):
        open_source(db)


@pytest.mark.parametrize("exclusive", [False, True])
def test_a_postgresql_database_without_synapse_tables_is_named_so(fresh_synapse_db, exclusive):
    """The tables are locked before the schema is read: a missing one is reported as the schema guard
    reports it (as for SQLite), not as an internal error of the LOCK."""
    execute(fresh_synapse_db, "DROP TABLE user_threepids, refresh_tokens CASCADE")
    with pytest.raises(DatabaseError, match=r"lacks table `user_threepids`, table `refresh_tokens`"):
        open_source(fresh_synapse_db, exclusive=exclusive)


def test_missing_locked_column_counts_as_false(fresh_synapse_db, mas):
    execute(fresh_synapse_db, "ALTER TABLE users DROP COLUMN locked; ALTER TABLE users DROP COLUMN approved;"
                              "INSERT INTO users (name, creation_ts) VALUES ('@a:example.org', 1)")
    assert run(fresh_synapse_db, mas).reconciled
    assert rows(mas, "SELECT username, locked_at FROM users") == [("a", None)]


def test_unopenable_sqlite_file_gives_advice(tmp_path):
    with pytest.raises(DatabaseError, match="not found"):
        open_source(str(tmp_path / "missing.db"))
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(DatabaseError, match="copy the database file"):
        open_source(str(bad))


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_the_sessions_stream_names_every_column_and_puts_each_user_first(tmp_path, synapse_db, dialect):
    """queries.SESSION_COLUMNS names each column of queries.SESSIONS (the skipped-row lists find theirs by
    name), and in both dialects every user's row comes before that user's deviceless tokens and devices:
    the order the pipeline's one-device hold relies on."""
    from migrator import queries

    if dialect == "sqlite":
        db = str(tmp_path / "synapse.db")
        build_sqlite(DEMO_SQL, db)
        source = open_source(db)
    else:
        execute(synapse_db, demo_inserts())
        source = open_source(synapse_db)
    try:
        got = source.fetchall(queries.for_partition(queries.SESSIONS, None), {"run_start": 0})
    finally:
        source.close()
    assert got and {len(r) for r in got} == {len(queries.SESSION_COLUMNS)}
    col = {name: i for i, name in enumerate(queries.SESSION_COLUMNS)}
    seen_users: set[str] = set()
    for r in got:
        if r[col["kind"]] == 0:
            seen_users.add(r[col["user_id"]])
        else:
            assert r[col["user_id"]] in seen_users, r
    assert any(r[col["kind"]] == 2 and not r[col["flags"]] & queries.HAS_DEVICE for r in got), \
        "the demo has a deviceless token"


LINK_SEED = """
INSERT INTO users (name, appservice_id) VALUES ('@alice:demo.example', NULL), ('@bridge:demo.example', 'irc');
INSERT INTO user_external_ids (auth_provider, external_id, user_id) VALUES
  ('oidc-dex', 'a', '@alice:demo.example'), ('oidc-dex', 'b', '@bridge:demo.example'),
  ('oidc-bridge', 'c', '@bridge:demo.example'),
  ('oidc-gone', 'd', '@nobody:demo.example'),
  ('oidc-unmapped', 'e', '@alice:demo.example');
"""


def test_providers_that_receive_links_are_those_of_existing_non_appservice_users(tmp_path, synapse_db):
    """`mas-provider-not-synced` is asked about the MAS providers of links the migration writes: a provider
    linked only to application-service users or to no existing user receives none; unmapped ones are not
    MAS providers. Same answer from both dialects."""
    from migrator.run import _linked_providers

    db = str(tmp_path / "links.db")
    build_sqlite(DEMO_SQL, db)
    with sqlite3.connect(db) as conn:
        conn.executescript("DELETE FROM user_external_ids; DELETE FROM users;" + LINK_SEED)
    execute(synapse_db, LINK_SEED)
    mapping = {p: f"01JZ0DEMQ0DEX0PR0V1DER000{i}" for i, p in enumerate(("oidc-dex", "oidc-bridge", "oidc-gone"))}
    for uri in (db, synapse_db):
        with open_source(uri, assume_stopped=True) as source:
            assert _linked_providers(source, mapping) == [mapping["oidc-dex"]]


def test_a_sqlite_path_holding_an_equals_sign_is_read_as_a_file(tmp_path, mas_db):
    """`--synapse-sqlite` names a file whatever its characters: `a=b/` is not a libpq keyword."""
    from click.testing import CliRunner

    import cli
    from mighelpers import write_configs

    folder = tmp_path / "host=db"
    folder.mkdir()
    db = str(folder / "homeserver.db")
    build_sqlite(DEMO_SQL, db)
    hs, mas_yaml = write_configs(tmp_path, mas_db)
    result = CliRunner().invoke(cli.main, ["check", "--synapse-config", hs, "--config", mas_yaml,
                                           "--synapse-sqlite", db, "--format", "json"])
    assert result.exit_code in (0, 10, 11), result.output
    rules = {finding["rule"] for finding in json.loads(result.output)["findings"]}
    assert {"guests-in-database", "hidden-device-tokens"} <= rules  # the demo file's rows were read


def _mutated_demo(tmp_path, mas_db: str, mutation: str) -> str:
    """The demo's SQLite Synapse with ``mutation`` applied, and its provider in MAS."""
    db = str(tmp_path / "synapse.db")
    build_sqlite(DEMO_SQL, db)
    conn = sqlite3.connect(db)
    conn.execute(mutation)
    conn.commit()
    conn.close()
    add_provider(mas_db, DEMO_PROVIDER)
    return db


@pytest.mark.parametrize("mutation, phase", [
    ("UPDATE users SET creation_ts = 'yesterday' WHERE name = (SELECT min(name) FROM users)", "phase 1 users"),
    ("UPDATE users SET password_hash = X'2432622431' WHERE name = (SELECT min(name) FROM users)", "phase 1 users"),
    ("UPDATE devices SET user_agent = CAST(X'FFFE' AS TEXT) WHERE rowid = (SELECT min(rowid) FROM devices)",
     "phase 4"),
])
def test_odd_sqlite_values_name_the_phase_and_how_to_find_them(tmp_path, mas_db, mutation, phase):
    """SQLite keeps text in an integer column, a blob for a text, or bytes that are not UTF-8: the run stops
    with the phase and a query to find the row, not with an internal error, and nothing is written."""
    with pytest.raises(DatabaseError) as exc:
        run_demo(_mutated_demo(tmp_path, mas_db, mutation), mas_db)
    assert exc.value.message.startswith(phase) and "unexpected type or encoding" in exc.value.message
    assert "typeof(<column>)" in exc.value.hint
    assert rows(mas_db, "SELECT count(*) FROM users") == [(0,)]


@pytest.mark.parametrize("mutation, hint", [
    ("UPDATE devices SET display_name = 'phone' || char(0) || 'x' WHERE rowid = (SELECT min(rowid) FROM devices)",
     "instr(<column>, char(0))"),
    # (random hex: PostgreSQL compresses index entries, so a repeated letter would fit)
    ("UPDATE user_threepids SET address = lower(hex(randomblob(30000))) || '@example.org' "
     "WHERE rowid = (SELECT min(rowid) FROM user_threepids WHERE medium = 'email')", "length(<column>) > 2000"),
])
def test_values_postgresql_cannot_store_or_index_get_a_hint_to_find_them(tmp_path, mas_db, mutation, hint):
    """A SQLite Synapse can hold a NUL character or a 60 kB address; MAS's PostgreSQL cannot store or index
    them. The run fails with a way to find the row, and nothing is written."""
    with pytest.raises(DatabaseError) as exc:
        run_demo(_mutated_demo(tmp_path, mas_db, mutation), mas_db)
    assert hint in exc.value.hint and "nothing was committed" in exc.value.message
    assert rows(mas_db, "SELECT count(*) FROM users") == [(0,)]
