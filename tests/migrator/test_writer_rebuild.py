"""How the writer rebuilds what it dropped: foreign keys are validated by merging indexes, not hashing; the
account tables are rebuilt and analysed as soon as they are complete, the rest at the end."""
from __future__ import annotations

import psycopg

from migrator.ids import provider_uuid
from migrator.masschema import ACCOUNT_TABLES, TARGET_TABLES
from migrator.writer import MasWriter
from mighelpers import PROVIDER_ULID, rows


def test_foreign_keys_are_validated_without_hash_joins_and_nothing_else_is_affected(mas):
    seen: dict[str, str] = {}
    writer = MasWriter(mas, fail_hook=lambda step: seen.setdefault(
        step, writer.conn.execute("SHOW enable_hashjoin").fetchone()[0]))
    writer.open([str(provider_uuid(PROVIDER_ULID))])
    try:
        writer.rebuild()
        after = writer.conn.execute("SHOW enable_hashjoin").fetchone()[0]
        saved = writer.saved
    finally:
        writer.finish(commit=False)

    def setting(kind: str, name: str, table: str = "") -> str:
        return seen[f"rebuild:{kind} {name}" + (f" on {table}" if table else "")]

    foreign = saved.foreign_own + saved.foreign_in
    assert len(foreign) >= 10 and saved.keys and saved.indexes
    assert {setting("constraint", name, table) for table, name, _ in foreign} == {"off"}
    assert {setting("constraint", name, table) for table, name, _ in saved.keys} == {"on"}
    assert {setting("index", name) for name, _ in saved.indexes} == {"on"}
    assert after == "on"  # reconciliation and everything after it plan as usual
    assert rows(mas, "SELECT count(*) FROM users") == [(0,)]


def test_index_builds_get_more_maintenance_memory_but_never_less_than_the_server_gives(mas):
    dbname = mas.rsplit("/", 1)[1]
    seen = {}
    for configured in ("64MB", "2GB"):
        with psycopg.connect(mas, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{dbname}" SET maintenance_work_mem = \'{configured}\'')
        writer = MasWriter(mas)
        writer.open([str(provider_uuid(PROVIDER_ULID))])
        try:
            seen[configured] = writer.conn.execute("SHOW maintenance_work_mem").fetchone()[0]
        finally:
            writer.finish(commit=False)
    assert seen == {"64MB": "512MB", "2GB": "2GB"}


def _table_of_step(conn: psycopg.Connection, step: str) -> set[str]:
    """The tables an index, constraint or ANALYZE step touches, read from the catalogue."""
    kind, _, rest = step.partition(" ")
    if kind == "statistics":
        return {rest.removeprefix("of ")}
    name = rest.split(" on ")[0]
    if kind == "index":
        return {r[0] for r in conn.execute("SELECT indrelid::regclass::text FROM pg_index "
                                           "WHERE indexrelid = %s::regclass", (name,))}
    found = conn.execute("SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint "
                         "WHERE conname = %s", (name,)).fetchone()
    return {t for t in found if t != "-"}


def test_complete_tables_are_rebuilt_and_analysed_in_the_transaction_the_rest_at_the_end(mas):
    steps: list[str] = []
    hashjoin: dict[str, str] = {}

    def hook(step: str) -> None:
        if step.startswith("rebuild:"):
            steps.append(step.removeprefix("rebuild:"))
            hashjoin[steps[-1]] = writer.conn.execute("SHOW enable_hashjoin").fetchone()[0]

    writer = MasWriter(mas, fail_hook=hook)
    writer.open([str(provider_uuid(PROVIDER_ULID))])
    try:
        conn = writer.conn
        writer.complete(ACCOUNT_TABLES)
        early = list(steps)
        # ANALYZE ran inside the transaction, for these tables only (TRUNCATE had reset them to -1)
        tuples = dict(conn.execute("SELECT relname, reltuples FROM pg_class WHERE relname = ANY(%s)",
                                   (list(TARGET_TABLES),)).fetchall())
        writer.rebuild()
        late = steps[len(early):]
        after = dict(conn.execute("SELECT relname, reltuples FROM pg_class WHERE relname = ANY(%s)",
                                  (list(TARGET_TABLES),)).fetchall())
        touched = {step: _table_of_step(conn, step) for step in steps}
        saved = writer.saved
    finally:
        writer.finish(commit=False)

    assert tuples == {t: (0 if t in ACCOUNT_TABLES else -1) for t in TARGET_TABLES}
    assert after == {t: 0 for t in TARGET_TABLES}
    session_tables = set(TARGET_TABLES) - set(ACCOUNT_TABLES)
    # nothing early touches a table that phase 4 still fills; everything late does
    assert early and late
    assert not any(touched[step] & session_tables for step in early)
    assert all(touched[step] & session_tables for step in late)
    # each saved definition is recreated exactly once, and each table analysed once
    expected = ([f"index {name}" for name, _ in saved.indexes]
                + [f"constraint {name} on {table}" for table, name, _ in
                   saved.keys + saved.foreign_own + saved.foreign_in]
                + [f"statistics of {table}" for table in TARGET_TABLES])
    assert sorted(steps) == sorted(expected)
    # the early foreign keys are validated by merging too
    foreign = {f"constraint {name} on {table}" for table, name, _ in saved.foreign_own + saved.foreign_in}
    assert {hashjoin[step] for step in early if step in foreign} == {"off"}
    assert {hashjoin[step] for step in steps if step not in foreign} == {"on"}


def test_constraints_sharing_a_name_on_two_tables_are_each_rebuilt_with_their_own_table(mas):
    """A constraint name is unique only per table: the same name on an account table and on a compat
    table must not make the early rebuild add the compat table's constraint before its table is loaded."""
    with psycopg.connect(mas, autocommit=True) as conn:
        conn.execute("ALTER TABLE user_emails ADD CONSTRAINT same_name_fk FOREIGN KEY (user_id) "
                     "REFERENCES users (user_id)")
        conn.execute("ALTER TABLE compat_access_tokens ADD CONSTRAINT same_name_fk FOREIGN KEY "
                     "(compat_session_id) REFERENCES compat_sessions (compat_session_id)")
    steps: list[str] = []
    writer = MasWriter(mas, fail_hook=steps.append)
    writer.open([str(provider_uuid(PROVIDER_ULID))])
    try:
        writer.complete(ACCOUNT_TABLES)
        early = list(steps)
        writer.rebuild()
        found = writer.conn.execute("SELECT conrelid::regclass::text FROM pg_constraint WHERE conname = "
                                    "'same_name_fk' ORDER BY 1").fetchall()
    finally:
        writer.finish(commit=False)
    assert "rebuild:constraint same_name_fk on user_emails" in early
    assert "rebuild:constraint same_name_fk on compat_access_tokens" not in early
    assert "rebuild:constraint same_name_fk on compat_access_tokens" in steps
    assert found == [("compat_access_tokens",), ("user_emails",)]
