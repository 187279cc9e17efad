"""How the writer rebuilds what it dropped: foreign keys are validated by merging indexes, not hashing."""
from __future__ import annotations

import psycopg

from migrator.ids import provider_uuid
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
