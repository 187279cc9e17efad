"""Query files of database rules: dialect variants, fragments, list parameters, the detail shape."""
from __future__ import annotations

import os
import random
import sqlite3

import psycopg
import pytest

from engine.dbchecks import _shape
from engine.dbhandles import octet_length, textregexeq
from engine.dbquery import SAMPLE_LIMIT, expand_lists, load_query, plain, used_params
from engine.errors import RuleFileError
from engine.rulefiles import default_rules_dir

CHECKS = os.path.join(default_rules_dir(), "checks")


def test_in_list_parameters_expand_to_one_placeholder_per_item():
    text, params = expand_lists("SELECT 1 WHERE x IN (:ids) AND y = :ids_n", {"ids": ["a", "b"], "ids_n": 1})
    assert text == "SELECT 1 WHERE x IN (:ids_0, :ids_1) AND y = :ids_n"
    assert params == {"ids_0": "a", "ids_1": "b", "ids_n": 1}


def test_an_empty_in_list_is_valid_sql_that_matches_nothing():
    text, _ = expand_lists("SELECT 'a' IN (:ids), 'a' NOT IN (:ids)", {"ids": []})
    assert sqlite3.connect(":memory:").execute(text).fetchone() == (0, 1)


def test_a_list_outside_in_stays_a_list_for_postgresql_arrays():
    text, params = expand_lists("SELECT unnest(CAST(:ids AS text[]))", {"ids": ["a"]})
    assert text == "SELECT unnest(CAST(:ids AS text[]))" and params == {"ids": ["a"]}


def test_only_named_parameters_are_passed_and_unknown_names_are_rule_errors():
    assert used_params("SELECT :a, CAST(x AS TEXT)::text", {"a": 1, "b": 2}) == {"a": 1}
    with pytest.raises(RuleFileError, match=":missing"):
        used_params("SELECT :missing", {})


def test_sqlite_gets_a_sqlite_variant_when_one_exists(tmp_path):
    queries = tmp_path / "queries"
    queries.mkdir()
    (queries / "q.sql").write_text("SELECT 'postgresql' AS d\n")
    (queries / "q.sqlite.sql").write_text("-- shape: detail\nSELECT 'sqlite' AS grp, 'x' AS sample, NULL AS unit\n")
    assert load_query(str(tmp_path), "queries/q.sql", "postgresql") == "SELECT 'postgresql' AS d"
    lite = load_query(str(tmp_path), "queries/q.sql", "sqlite")
    assert lite.detail and sqlite3.connect(":memory:").execute(lite).fetchall() == [("sqlite", 1, "x")]


def test_textregexeq_on_sqlite_follows_postgresqls_operator():
    assert textregexeq("a@b.org", "^[^@]+@") == 1 and textregexeq("ab", "@") == 0
    assert textregexeq(None, "x") is None and textregexeq("x", None) is None


def test_octet_length_for_old_sqlite_counts_bytes_as_postgresql_does(synapse_db):
    values = ["", "abc", "j\u00fcrgen", "\U0001f600x", "$2b$12$" + "\u00e9" * 26 + "x"]
    with psycopg.connect(synapse_db) as conn:
        want = [conn.execute("SELECT octet_length(CAST(%s AS TEXT))", (v,)).fetchone()[0] for v in values]
    assert [octet_length(v) for v in values] == want == [0, 3, 7, 5, 60]
    assert octet_length(None) is None and octet_length(b"\x00\xff") == 2 and octet_length(12) == 2


def test_fragments_are_included_as_sub_queries():
    text = load_query(CHECKS, "queries/orphan-rows.sql", "postgresql")
    assert "include:" not in text
    assert "FROM (\n-- Read phase 4" in text and "FROM (\n-- Read phase 5" in text


def test_detail_queries_are_wrapped_so_the_database_counts_and_samples():
    text = load_query(CHECKS, "queries/oauth-delegated-leftovers.sql", "sqlite")
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE user_external_ids (auth_provider TEXT, external_id TEXT, user_id TEXT)")
    conn.executemany("INSERT INTO user_external_ids VALUES ('oauth-delegated', ?, ?)",
                     [(str(i), f"@g{i:02}:x") for i in range(25, 0, -1)])
    rows = conn.execute(text).fetchall()
    assert len(rows) == 20 and {r[1] for r in rows} == {25}
    shaped = _shape([{"grp": g, "count": c, "sample": s} for g, c, s in rows], True)
    assert shaped["count"] == 25 and shaped["samples"] == [f"@g{i:02}:x" for i in range(1, 21)]


def test_a_rule_part_sees_only_its_groups_of_a_shared_query():
    rows = [{"grp": "a", "count": 2, "sample": "x"}, {"grp": "a", "count": 2, "sample": "y"},
            {"grp": "a/one", "count": 1, "sample": "z"}, {"grp": "ab", "count": 7, "sample": "w"},
            {"grp": "b", "count": 3, "sample": "v"}]
    shaped = _shape(rows, True, "a")
    assert [(g["grp"], g["count"], g["samples"]) for g in shaped["groups"]] == [("", 2, ["x", "y"]), ("one", 1, ["z"])]
    assert shaped["count"] == 3 and shaped["samples"] == ["x", "y", "z"]
    assert _shape(rows, True, "c") == {"groups": [], "count": 0, "samples": []}


def test_planner_switches_and_cost_hints_are_read_from_their_comment_lines(tmp_path):
    queries = tmp_path / "queries"
    queries.mkdir()
    (queries / "q.sql").write_text("-- planner: enable_hashjoin=off, enable_nestloop = on, "
                                   "max_parallel_workers_per_gather=0\n-- cost: 1.5\nSELECT 1\n")
    (queries / "plain.sql").write_text("SELECT 1\n")
    (queries / "bad.sql").write_text("-- planner: work_mem=1GB\nSELECT 1\n")
    text = load_query(str(tmp_path), "queries/q.sql", "postgresql")
    assert text.planner == (("enable_hashjoin", "off"), ("enable_nestloop", "on"),
                            ("max_parallel_workers_per_gather", "0")) and text.cost == 1.5
    plain_text = load_query(str(tmp_path), "queries/plain.sql", "postgresql")
    assert plain_text.planner == () and plain_text.cost == 0
    with pytest.raises(RuleFileError, match="not `work_mem=1GB`"):
        load_query(str(tmp_path), "queries/bad.sql", "postgresql")


def _detail_rows(seed: int) -> list[tuple]:
    """(grp, sample, unit) rows: heavy and light duplication, NULL samples and units, one group of NULLs."""
    rng = random.Random(seed)
    rows = [("dups", f"s{rng.randrange(30):02}", None) for _ in range(3000)]        # fallback: 30 values
    rows += [("many", f"m{i:04}", f"u{i % 7}") for i in rng.sample(range(2000), 900)]  # head holds enough
    rows += [("many", f"m{rng.randrange(2000):04}", None) for _ in range(300)]
    rows += [("few", rng.choice(["b", "a", None]), rng.choice([None, "x", "y"])) for _ in range(9)]
    rows += [("nulls", None, None) for _ in range(4)]
    rows += [("", f"@user{i}:example.org", None) for i in range(25)]
    rng.shuffle(rows)
    return rows


def _expected(rows: list[tuple]) -> dict:
    groups = {}
    for grp, sample, unit in rows:
        groups.setdefault(grp, []).append((sample, unit))
    out = []
    for grp in sorted(groups):
        units = {u for _, u in groups[grp] if u is not None}
        out.append({"grp": grp, "count": len(units) if units else len(groups[grp]),
                    "samples": sorted({s for s, _ in groups[grp] if s is not None})[:SAMPLE_LIMIT]})
    samples = sorted({s for g in out for s in g["samples"]})[:SAMPLE_LIMIT]
    return {"groups": out, "count": sum(g["count"] for g in out), "samples": samples}


@pytest.mark.parametrize("seed", [1, 2])
def test_both_detail_wrappers_count_and_sample_exactly(seed, tmp_path, synapse_db):
    rows = _detail_rows(seed)
    values = ", ".join("(" + ", ".join("NULL" if v is None else f"'{v}'" for v in row) + ")" for row in rows)
    queries = tmp_path / "queries"
    queries.mkdir()
    (queries / "d.sql").write_text(f"-- shape: detail\nWITH v(grp, sample, unit) AS (VALUES {values})\n"
                                   "SELECT grp, sample, unit FROM v\n")
    want = _expected(rows)
    lite = load_query(str(tmp_path), "queries/d.sql", "sqlite")
    got_lite = sqlite3.connect(":memory:").execute(lite).fetchall()
    assert _shape([{"grp": g, "count": c, "sample": s} for g, c, s in got_lite], True) == want
    with psycopg.connect(synapse_db) as conn:
        for text in (load_query(str(tmp_path), "queries/d.sql", "postgresql"), lite):  # both forms on PostgreSQL
            assert text.detail
            got = conn.execute(text).fetchall()
            assert _shape([{"grp": g, "count": c, "sample": s} for g, c, s in got], True) == want


def test_query_paths_must_stay_under_rules_checks():
    with pytest.raises(RuleFileError, match="under rules/checks"):
        load_query(CHECKS, "../sensitive.yaml", "sqlite")


def test_database_values_become_plain_data():
    assert plain(memoryview(b"\x01\xff")) == "01ff"
    assert plain(True) is True and plain(None) is None
