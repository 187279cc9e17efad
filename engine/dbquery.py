"""Read-only SQL of database rules: load a query file (dialect variant, fragments), bind parameters, fetch rows.

Query files live under ``rules/checks/queries/`` and use ``:name`` parameters, like the migrator's SQL.
Conventions:

* ``x IN (:list)`` with a list value expands to one placeholder per item (an empty list becomes an
  empty sub-select, which SQL cannot write as ``IN ()``); a list used anywhere else is passed as-is
  (PostgreSQL arrays, MAS queries only);
* ``/* include: NAME */`` is replaced by ``(<fragments/NAME.sql>)``, so that a read phase of
  data-migration.md §3 is written once;
* ``NAME.sqlite.sql`` next to ``NAME.sql`` replaces it on SQLite where the two dialects cannot share SQL;
* a file containing the line ``-- shape: detail`` returns one row per finding detail with the columns
  ``grp`` (group key, ``''`` when ungrouped), ``sample`` (an identifier) and ``unit`` (what is counted;
  NULL counts rows). The engine wraps it so that the database returns exact counts per group and the
  20 smallest samples per group (in no particular row order), never the whole detail relation;
* a line ``-- planner: enable_hashjoin=off, max_parallel_workers_per_gather=0`` (PostgreSQL planner
  switches ``enable_*=on|off`` and ``max_parallel_workers_per_gather=N`` only, comma separated)
  applies to that statement alone: :meth:`~engine.dbhandles.DbHandle.query` sets them for the
  statement and restores them after it. For plans the planner misjudges (merge joins on indexes that it
  believes dearer than hashing a million rows, parallel workers that double the CPU of such a plan);
* a line ``-- cost: N`` is a scheduling hint: roughly the CPU seconds the statement takes per million
  Synapse users. Queries that run side by side start in decreasing cost, so that the longest do not
  start last (the planner's own estimates misjudge the large hash joins); no line means 0.
"""
from __future__ import annotations

import functools
import os
import re
from typing import Any

from .errors import RuleFileError

SAMPLE_LIMIT = 20
_INCLUDE = re.compile(r"/\*\s*include:\s*([A-Za-z0-9_-]+)\s*\*/")
_DETAIL = re.compile(r"^--\s*shape:\s*detail\s*$", re.M)
_PLANNER = re.compile(r"^--\s*planner:(.*)$", re.M)
_SWITCH = re.compile(r"^(enable_[a-z_]+)\s*=\s*(on|off)$|^(max_parallel_workers_per_gather)\s*=\s*(\d+)$")
_COST = re.compile(r"^--\s*cost:\s*(\d+(?:\.\d+)?)\s*$", re.M)

# Counts and samples are computed in the database: count per group (distinct `unit`, or rows when
# `unit` is NULL), the first SAMPLE_LIMIT distinct samples per group in byte order. A group's samples
# are a superset of that group's share of the overall first SAMPLE_LIMIT, so merging groups stays exact.
_DETAIL_WRAPPER = {
    # SQLite (and the reference for the PostgreSQL form): every distinct sample is ranked.
    "sqlite": """WITH detail AS (
{query}
),
counts AS (
  SELECT grp, CASE WHEN count(unit) = 0 THEN count(*) ELSE count(DISTINCT unit) END AS count
  FROM detail GROUP BY grp
),
ranked AS (
  SELECT grp, sample, row_number() OVER (PARTITION BY grp ORDER BY sample) AS rn
  FROM (SELECT DISTINCT grp, sample FROM detail) d
)
SELECT c.grp AS grp, c.count AS count, r.sample AS sample
FROM counts c LEFT JOIN ranked r ON r.grp = c.grp AND r.rn <= {limit}
ORDER BY c.grp, r.sample""",
    # PostgreSQL, for details of a million rows (every user lacks a login method, say): no sort of the
    # whole detail. Counts hash by group (a DISTINCT count only where units exist); samples come from
    # each group's {head} smallest rows, a bounded heap: that prefix of the sorted samples holds the
    # SAMPLE_LIMIT smallest distinct ones whenever it holds that many distinct ones at all, or is the
    # whole group; otherwise (heavy duplicates) the group's samples are made distinct in full.
    "postgresql": """WITH detail AS MATERIALIZED (
{query}
),
tallies AS (
  SELECT grp, count(*) AS n_rows, count(unit) AS n_units FROM detail GROUP BY grp
),
heads AS (
  SELECT t.grp, h.sample
  FROM tallies t
  CROSS JOIN LATERAL (SELECT d.sample FROM detail d WHERE d.grp = t.grp AND d.sample IS NOT NULL
                      ORDER BY d.sample LIMIT {head}) h
),
enough AS (
  SELECT grp, count(*) < {head} OR count(DISTINCT sample) >= {limit} AS ok FROM heads GROUP BY grp
)
SELECT t.grp AS grp, c.count AS count, s.sample AS sample
FROM tallies t
CROSS JOIN LATERAL (
  SELECT CASE WHEN t.n_units = 0 THEN t.n_rows
              ELSE (SELECT count(*) FROM (SELECT DISTINCT d.unit FROM detail d
                                          WHERE d.grp = t.grp AND d.unit IS NOT NULL) u)
         END AS count,
         COALESCE((SELECT e.ok FROM enough e WHERE e.grp = t.grp), TRUE) AS ok
) c
LEFT JOIN LATERAL (
  SELECT x.sample FROM (SELECT DISTINCT h.sample FROM heads h WHERE h.grp = t.grp) x WHERE c.ok
  UNION ALL
  SELECT y.sample FROM (SELECT d.sample FROM detail d WHERE d.grp = t.grp AND d.sample IS NOT NULL
                        GROUP BY d.sample) y WHERE NOT c.ok
  ORDER BY 1 LIMIT {limit}
) s ON TRUE""",
}
# Rows per group read for the samples before falling back to a full DISTINCT (PostgreSQL form).
SAMPLE_HEAD = 20 * SAMPLE_LIMIT


class QueryText(str):
    """SQL text ready to bind; ``detail`` tells whether it returns the wrapped detail shape, ``planner``
    holds the statement's planner switches as (name, value) pairs, ``cost`` its scheduling hint."""

    detail: bool = False
    planner: tuple[tuple[str, str], ...] = ()
    cost: float = 0.0


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise RuleFileError(f"cannot read query file ({exc.strerror})", file=path) from None


def _strip(sql: str) -> str:
    """Drop a trailing semicolon so that the text can be nested as a sub-query."""
    return sql.strip().rstrip(";").strip()


@functools.lru_cache(maxsize=256)
def load_query(checks_dir: str, rel: str, dialect: str) -> QueryText:
    """The SQL of ``rel`` (relative to ``rules/checks``) for ``dialect`` (``postgresql`` or ``sqlite``)."""
    path = os.path.normpath(os.path.join(checks_dir, rel))
    if not path.startswith(os.path.normpath(checks_dir) + os.sep) or not path.endswith(".sql"):
        raise RuleFileError(f"query `{rel}` must be a .sql file under rules/checks/", file=path)
    if dialect == "sqlite" and os.path.exists(path[:-4] + ".sqlite.sql"):
        path = path[:-4] + ".sqlite.sql"
    text = _read(path)
    fragments = os.path.join(os.path.dirname(path), "fragments")

    def include(match: re.Match) -> str:
        return "(\n" + _strip(_read(os.path.join(fragments, match.group(1) + ".sql"))) + "\n)"

    body = _INCLUDE.sub(include, text)
    detail = bool(_DETAIL.search(text))
    if detail:
        wrapper = _DETAIL_WRAPPER["sqlite" if dialect == "sqlite" else "postgresql"]
        body = wrapper.format(query=_strip(body), limit=SAMPLE_LIMIT, head=SAMPLE_HEAD)
    out = QueryText(_strip(body))
    out.detail = detail
    out.planner = _planner_switches(text, path)
    cost = _COST.search(text)
    out.cost = float(cost.group(1)) if cost else 0.0
    return out


def _planner_switches(text: str, path: str) -> tuple[tuple[str, str], ...]:
    out = []
    for line in _PLANNER.findall(text):
        for item in filter(None, (part.strip() for part in line.split(","))):
            match = _SWITCH.match(item)
            if not match:
                raise RuleFileError(f"`-- planner:` takes `enable_<name>=on|off` and "
                                    f"`max_parallel_workers_per_gather=N` items, not `{item}`", file=path)
            name, value = (match.group(1), match.group(2)) if match.group(1) else (match.group(3), match.group(4))
            out.append((name, value))
    return tuple(out)


def expand_lists(sql: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Expand ``IN (:name)`` for list parameters into ``IN (:name_0, :name_1, ...)``."""
    out = dict(params)

    def repl(match: re.Match) -> str:
        name = match.group(1)
        values = params.get(name)
        if not isinstance(values, (list, tuple)):
            return match.group(0)
        out.pop(name, None)
        if not values:
            # Both dialects accept an empty sub-select where `IN ()` is a syntax error in PostgreSQL.
            return "IN (SELECT CAST(NULL AS TEXT) WHERE 1 = 0)"
        names = [f"{name}_{i}" for i in range(len(values))]
        out.update(zip(names, values))
        return "IN (" + ", ".join(":" + n for n in names) + ")"

    text = re.sub(r"\bIN\s*\(\s*:([a-z_][a-z0-9_]*)\s*\)", repl, sql, flags=re.I)
    return text, out


def used_params(sql: str, params: dict[str, Any]) -> dict[str, Any]:
    """Only the parameters the statement names (sqlite3 rejects unused names; psycopg ignores them)."""
    names = set(re.findall(r"(?<!:):([a-z_][a-z0-9_]*)", sql))
    missing = sorted(n for n in names if n not in params)
    if missing:
        raise RuleFileError(f"query uses unknown parameter(s) {', '.join(':' + m for m in missing)}")
    return {k: v for k, v in params.items() if k in names}


def plain(value: Any) -> Any:
    """Database values as JSON-like data for expressions: bytes as hex, other objects as text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return str(value)
