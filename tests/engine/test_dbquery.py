"""Query files of database rules: dialect variants, fragments, list parameters, the detail shape."""
from __future__ import annotations

import os
import sqlite3

import pytest

from engine.dbchecks import _shape
from engine.dbhandles import textregexeq
from engine.dbquery import expand_lists, load_query, plain, used_params
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


def test_fragments_are_included_as_sub_queries():
    text = load_query(CHECKS, "queries/orphan-rows.sql", "postgresql")
    assert "include:" not in text
    assert "FROM (\n-- Read phase 4" in text and "FROM (\n-- Read phase 5" in text


def test_detail_queries_are_wrapped_so_the_database_counts_and_samples():
    text = load_query(CHECKS, "queries/guests.sql", "sqlite")
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE users (name TEXT, is_guest SMALLINT)")
    conn.executemany("INSERT INTO users VALUES (?, 1)", [(f"@g{i:02}:x",) for i in range(25, 0, -1)])
    rows = conn.execute(text).fetchall()
    assert len(rows) == 20 and {r[1] for r in rows} == {25}
    shaped = _shape([{"grp": g, "count": c, "sample": s} for g, c, s in rows], True)
    assert shaped["count"] == 25 and shaped["samples"] == [f"@g{i:02}:x" for i in range(1, 21)]


def test_planner_switches_and_cost_hints_are_read_from_their_comment_lines(tmp_path):
    queries = tmp_path / "queries"
    queries.mkdir()
    (queries / "q.sql").write_text("-- planner: enable_hashjoin=off, enable_nestloop = on\n-- cost: 1.5\nSELECT 1\n")
    (queries / "plain.sql").write_text("SELECT 1\n")
    (queries / "bad.sql").write_text("-- planner: work_mem=1GB\nSELECT 1\n")
    text = load_query(str(tmp_path), "queries/q.sql", "postgresql")
    assert text.planner == (("enable_hashjoin", "off"), ("enable_nestloop", "on")) and text.cost == 1.5
    plain_text = load_query(str(tmp_path), "queries/plain.sql", "postgresql")
    assert plain_text.planner == () and plain_text.cost == 0
    with pytest.raises(RuleFileError, match="enable_<name>=on|off"):
        load_query(str(tmp_path), "queries/bad.sql", "postgresql")


def test_query_paths_must_stay_under_rules_checks():
    with pytest.raises(RuleFileError, match="under rules/checks"):
        load_query(CHECKS, "../sensitive.yaml", "sqlite")


def test_database_values_become_plain_data():
    assert plain(memoryview(b"\x01\xff")) == "01ff"
    assert plain(True) is True and plain(None) is None
