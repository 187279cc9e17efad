"""Run the database rules (checks.md 4.3) against an open Synapse and/or MAS database, read-only.

Each database is read inside the single read-only transaction its :class:`~engine.dbhandles.DbHandle`
is already in: ``check`` opens it, ``migrate`` passes the very connection it then migrates from, so the
checks see exactly the data that is migrated (data-migration.md 2.2). On PostgreSQL the Synapse rule
queries run side by side on clones of that handle, which import its snapshot (:class:`_Prefetch`);
rules are still evaluated one after the other, in the same order, on the rows fetched.

Expression data of a rule (for ``for_each``, ``when``, ``vars``, ``downgrade``, and the message):

* ``params``: the query parameters (:meth:`DbFacts.params`); ``flags``: command options;
* a ``-- shape: detail`` query: ``count`` (total), ``samples`` (at most 20, sorted) and ``groups``
  (``[{grp, count, samples}]`` sorted by ``grp``); any other query: ``rows``;
* a rule with ``part: NAME`` shares its detail query with other rules (one scan of a large table for
  all of them, run once per check): it sees only the groups ``NAME`` (as ``''``) and ``NAME/x`` (as
  ``x``);
* a ``predicate``: whatever it returns;
* with ``for_each``: ``item`` and ``index``; an item carrying ``count``/``samples`` gives the finding's.
"""
from __future__ import annotations

import contextlib
import os
import queue
import sqlite3
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg

from .checks import CheckRule, SkippedRule, Variant, load_check_rules
from .dbfacts import DbFacts
from .dbhandles import LABEL, DbHandle
from .dbpredicates import PREDICATES
from .dbquery import SAMPLE_LIMIT, QueryText, load_query
from .errors import DatabaseError, RuleFileError
from .expr import evaluate, holds
from .findings import Finding
from .locations import Location
from .render import render
from .rulefiles import default_rules_dir

DATABASES = ("synapse", "mas")
# Commands that run database rules when a rule does not restrict them (checks.md 5).
ALL_MODES = ("check", "dry-run", "migrate")
SCHEMA_RULE = "mas-schema-missing"
# Extra connections that run Synapse rule queries side by side (each query is one server process); the
# handle given by the caller runs none of them, so its transaction is never touched by a failure.
# A server on this machine gets no more of them than it has cores (see side_by_side_count).
PARALLEL_QUERIES = 3
_LINKED = "queries/linked-auth-providers.sql"


@dataclass
class DbCheckResult:
    findings: list[Finding] = field(default_factory=list)
    skipped: list[SkippedRule] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)


def rule_database(rule: CheckRule) -> str:
    return rule.raw.get("database", "synapse")


def runs_in(rule: CheckRule, mode: str) -> bool:
    """Whether ``mode`` (check, dry-run, migrate) runs ``rule`` (field `commands`, default all)."""
    return mode in rule.raw.get("commands", ALL_MODES)


def database_rules(rules_dir: str | None = None) -> list[CheckRule]:
    """The `database`-scope rules of the one check-rule catalogue, in file then rule order."""
    return [r for r in load_check_rules(rules_dir) if r.scope == "database"]


def _shape(rows: list[dict[str, Any]], detail: bool, part: str | None = None) -> dict[str, Any]:
    """Expression data from a query result (see the module docstring); ``part`` selects a rule's groups
    of a shared query."""
    if not detail:
        return {"rows": rows}
    groups: dict[Any, dict[str, Any]] = {}
    for row in rows:
        grp = row["grp"]
        if part is not None:
            grp = _in_part(grp, part)
            if grp is None:
                continue
        g = groups.setdefault(grp, {"grp": grp, "count": int(row["count"]), "samples": []})
        if row["sample"] is not None:
            g["samples"].append(str(row["sample"]))
    ordered = [groups[k] for k in sorted(groups, key=str)]
    for g in ordered:
        g["samples"] = sorted(set(g["samples"]))[:SAMPLE_LIMIT]
    samples = sorted({s for g in ordered for s in g["samples"]})[:SAMPLE_LIMIT]
    return {"groups": ordered, "count": sum(g["count"] for g in ordered), "samples": samples}


def _in_part(grp: Any, part: str) -> str | None:
    """The group key within ``part`` (``part`` → ``''``, ``part/x`` → ``x``), None for another part's."""
    grp = str(grp)
    if grp == part:
        return ""
    return grp[len(part) + 1:] if grp.startswith(part + "/") else None


def _query_key(rule: CheckRule, params: dict[str, Any]) -> str:
    """Rules naming the same query with the same parameters share one run of it."""
    return f"{rule.raw['query']}|{sorted((k, repr(v)) for k, v in params.items())}"


class _Runner:
    """Evaluates rules against the handles; one instance per run."""

    def __init__(self, facts: DbFacts, handles: dict[str, DbHandle], checks_dir: str):
        self.facts = facts
        self.handles = handles
        self.checks_dir = checks_dir
        self._shared: dict[str, list[dict[str, Any]]] = {}  # rows of queries rules share (`part`)

    def base(self) -> dict[str, Any]:
        return {"params": self.facts.params(), "flags": self.facts.flags()}

    def query_of(self, rule: CheckRule, handle: DbHandle) -> tuple[QueryText, dict[str, Any]] | None:
        """The rule's SQL and parameters (None: the rule has no query)."""
        query = rule.raw.get("query")
        if not query:
            return None
        text = load_query(self.checks_dir, query, handle.dialect)
        return text, dict(self.facts.params(), **(rule.raw.get("args") or {}))

    def data_for(self, rule: CheckRule, handle: DbHandle, rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Expression data of ``rule``; ``rows`` are its query's rows when they were fetched already."""
        data = self.base()
        query = self.query_of(rule, handle)
        if query:
            text, params = query
            part = rule.raw.get("part")
            if part is not None and not text.detail:
                where = rule.where
                raise RuleFileError(f"rule `{rule.id}`: `part` needs a `-- shape: detail` query, and "
                                    f"`{rule.raw['query']}` is not one", file=where.file, line=where.line)
            if part is None:
                rows = handle.query(text, params) if rows is None else rows
            else:
                key = _query_key(rule, params)
                if rows is None:
                    rows = self._shared[key] if key in self._shared else handle.query(text, params)
                self._shared[key] = rows
            data.update(_shape(rows, text.detail, part))
        name = rule.raw.get("predicate")
        if name:
            if name not in PREDICATES:
                where = rule.where
                raise RuleFileError(f"rule `{rule.id}`: unknown predicate `{name}`", file=where.file, line=where.line)
            data.update(PREDICATES[name].fn(handle, data))
        return data

    def severity(self, rule: CheckRule, variant: Variant, ctx: dict[str, Any]) -> str:
        down = rule.raw.get("downgrade")
        if down and self.facts.flags().get(down["option"]) and (not down.get("when") or holds(down["when"], ctx)):
            return down["severity"]
        return variant.severity

    def evaluate(self, rule: CheckRule, handle: DbHandle, data: dict[str, Any]) -> list[Finding]:
        out = []
        for variant in rule.variants:
            items: list[Any] = [None]
            if variant.for_each:
                items = evaluate(variant.for_each, data) or []
            for index, item in enumerate(items):
                ctx = dict(data, item=item, index=index)
                if not holds(variant.when or "count > `0`", ctx):
                    continue
                for name, expr in variant.vars.items():
                    ctx[name] = evaluate(expr, ctx)
                out.append(self.finding(rule, variant, handle, ctx))
        return out

    def finding(self, rule: CheckRule, variant: Variant, handle: DbHandle, ctx: dict[str, Any]) -> Finding:
        # An item that carries its own count (a group) gives the finding's count and samples.
        item = ctx.get("item")
        source = item if isinstance(item, dict) and "count" in item else ctx
        table = render(rule.raw["table"], ctx) if rule.raw.get("table") else None
        loc = handle.location
        return Finding(
            rule=rule.id, severity=self.severity(rule, variant, ctx), scope="database",
            message=render(variant.message, ctx), remediation=render(variant.remediation, ctx),
            location=Location(loc.file, loc.line, loc.column, loc.key_path, handle.logical(table)),
            provider=render(variant.provider, ctx) if variant.provider else None, table=table,
            count=_int_or_none(source.get("count")), samples=_samples(source.get("samples")),
            details={"variant": variant.name} if variant.name else {})

    def run_rule(self, rule: CheckRule, handle: DbHandle, rows: list[dict[str, Any]] | None = None) -> list[Finding]:
        if handle.database == "mas":
            # A failing statement on MAS means "not (fully) a MAS database" (data-migration.md 10.1); the
            # savepoint keeps the transaction usable for the remaining rules.
            try:
                with handle.savepoint():
                    data = self.data_for(rule, handle)
            except psycopg.Error as exc:
                return [self.schema_failure(rule, handle, exc)]
            return self.evaluate(rule, handle, data)
        try:
            data = self.data_for(rule, handle, rows)
        except (psycopg.Error, sqlite3.Error) as exc:
            raise DatabaseError(
                f"database rule `{rule.id}` failed on the {LABEL[handle.database]}: {_first_line(exc)}",
                file=rule.where.file,
                hint="is this a Synapse database with a complete schema? Nothing was written.") from None
        return self.evaluate(rule, handle, data)

    def schema_failure(self, rule: CheckRule, handle: DbHandle, exc: Exception) -> Finding:
        loc = handle.location
        return Finding(
            rule=SCHEMA_RULE, severity="error", scope="database",
            message=(f"the check `{rule.id}` could not read the MAS database ({_first_line(exc)}); is this a MAS "
                     "database whose schema `mas-cli database migrate` has created?"),
            remediation=("Point `database` of the MAS configuration (or --mas-database-uri) at the MAS database "
                         "and run `mas-cli database migrate` with the supported MAS release."),
            location=Location(loc.file, loc.line, loc.column, loc.key_path, handle.logical(None)),
            details={"failed_rule": rule.id})


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _samples(value: Any) -> list[str]:
    """checks.md 1.3: at most 20 identifiers, sorted (byte order of their UTF-8, like the databases')."""
    if not isinstance(value, list):
        return []
    return sorted({str(v) for v in value if v is not None})[:SAMPLE_LIMIT]


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _linked_providers(handle: DbHandle, checks_dir: str, rows: list[dict[str, Any]] | None = None) -> list[str]:
    """Synapse provider ids that links of migrated users use (feeds `mas-provider-not-synced`)."""
    if rows is None:
        try:
            rows = handle.query(load_query(checks_dir, _LINKED, handle.dialect))
        except (psycopg.Error, sqlite3.Error) as exc:
            raise DatabaseError(f"reading the providers of `user_external_ids` failed: {_first_line(exc)}") from None
    return sorted(str(r["auth_provider"]) for r in rows)


class _Prefetch:
    """Rows of Synapse queries, fetched side by side on clones of the handle (one snapshot, see
    :meth:`DbHandle.clones`): one thread per clone takes the queries in submission order.

    :meth:`rows` waits for a query's rows; it returns None when the query was not submitted or failed on
    its clone, and the caller then runs the query on its own handle as a serial run would, so errors
    surface exactly as before. A failed statement is rolled back to a savepoint, so its clone stays
    usable. Without clones (SQLite, or none could be opened) nothing is submitted.
    """

    def __init__(self, handle: DbHandle, count: int):
        self.clones: list[DbHandle] = []
        self._idle: queue.SimpleQueue[DbHandle] = queue.SimpleQueue()
        for clone in handle.clones(count):
            try:
                clone.tune(side_by_side=True)
            except psycopg.Error:
                clone.close()
                continue
            self.clones.append(clone)
            self._idle.put(clone)
        self._local = threading.local()
        self._pool = (ThreadPoolExecutor(max_workers=len(self.clones), initializer=self._bind)
                      if self.clones else None)
        self._futures: dict[str, Future] = {}

    def _bind(self) -> None:
        self._local.clone = self._idle.get_nowait()

    def submit(self, key: str, text: str, params: dict[str, Any] | None = None) -> None:
        if self._pool is not None:
            self._futures[key] = self._pool.submit(self._fetch, text, params)

    def _fetch(self, text: str, params: dict[str, Any] | None) -> list[dict[str, Any]] | None:
        clone: DbHandle = self._local.clone
        try:
            with clone.savepoint():
                return clone.query(text, params)
        except Exception:  # noqa: BLE001 - re-run on the caller's handle, which reports it
            return None

    def rows(self, key: str) -> list[dict[str, Any]] | None:
        future = self._futures.pop(key, None)
        return future.result() if future is not None else None

    def close(self) -> None:
        """Close the clones; queries nobody waited for (a rule failed first) are cancelled on the server."""
        if self._pool is not None:
            running = [f for f in self._futures.values() if not f.cancel() and not f.done()]
            if running:
                for clone in self.clones:
                    with contextlib.suppress(psycopg.Error):
                        clone.conn.cancel()
            self._pool.shutdown(wait=True)
        for clone in self.clones:
            clone.close()


def run_database_checks(facts: DbFacts, *, synapse: DbHandle | None = None, mas: DbHandle | None = None,
                        rules: list[CheckRule] | None = None, only: set[str] | None = None,
                        databases: tuple[str, ...] = DATABASES, rules_dir: str | None = None,
                        unavailable: dict[str, str] | None = None) -> DbCheckResult:
    """Run the database rules for ``facts.mode`` on the handles given.

    ``databases`` selects whose rules are considered; a considered rule whose database has no handle is
    reported in ``skipped`` (reason from ``unavailable``, or a default). ``only`` restricts the run to
    some rule ids (``migrate`` repeats the MAS rules inside its write transaction). Synapse rules run
    first; predicates that lock tables run before any other statement.
    """
    rules_dir = rules_dir or default_rules_dir()
    checks_dir = os.path.join(rules_dir, "checks")
    selected = [r for r in (rules if rules is not None else database_rules(rules_dir))
                if runs_in(r, facts.mode) and (only is None or r.id in only) and rule_database(r) in databases]
    handles = {name: h for name, h in (("synapse", synapse), ("mas", mas)) if h is not None}
    runner = _Runner(facts, handles, checks_dir)
    result = DbCheckResult()

    def order(rule: CheckRule) -> tuple:
        predicate = PREDICATES.get(rule.raw.get("predicate", ""))
        return (DATABASES.index(rule_database(rule)), 0 if predicate and predicate.before_snapshot else 1)

    def before_snapshot(rule: CheckRule) -> bool:
        predicate = PREDICATES.get(rule.raw.get("predicate", ""))
        return bool(predicate and predicate.before_snapshot)

    ordered = sorted(selected, key=order)
    reads_linked = "synapse" in handles and any(rule_database(r) == "mas" for r in ordered) and "mas" in handles
    prefetch: _Prefetch | None = None
    linked_read = False
    try:
        for rule in ordered:
            database = rule_database(rule)
            handle = handles.get(database)
            if handle is None:
                reason = (unavailable or {}).get(database, f"no {LABEL[database]} given")
                result.skipped.append(SkippedRule(rule.id, reason))
                continue
            if not before_snapshot(rule):
                handle.tune()
            if database == "synapse" and prefetch is None and not before_snapshot(rule):
                # After the lock-taking predicates: clones import the snapshot those locks protect.
                prefetch = _start_prefetch(runner, handle, [r for r in ordered if rule_database(r) == "synapse"
                                                            and not before_snapshot(r)], reads_linked)
            if database == "mas" and not linked_read and "synapse" in handles:
                rows = prefetch.rows(_LINKED) if prefetch else None
                facts.linked_providers = _linked_providers(handles["synapse"], checks_dir, rows)
                linked_read = True
            rows = prefetch.rows(_prefetch_key(runner, rule, handle)) if prefetch and database == "synapse" else None
            result.findings.extend(runner.run_rule(rule, handle, rows))
            result.ran.append(rule.id)
    finally:
        if prefetch is not None:
            prefetch.close()
    return result


def side_by_side_count(handle: DbHandle) -> int:
    """How many clones run the queries: PARALLEL_QUERIES, but no more than the cores of a server that
    runs on this machine. Queries beyond the cores only take turns on them and evict each other's
    pages (1M users, server on the 2-core bench machine: 2.72 s with two clones against 3.04 s with
    three, medians of six alternating runs). A remote server's cores are unknown: it gets three."""
    local = handle.local_cpus()
    return PARALLEL_QUERIES if local is None else min(PARALLEL_QUERIES, max(1, local))


def _start_prefetch(runner: _Runner, handle: DbHandle, rules: list[CheckRule], linked: bool) -> _Prefetch:
    """Submit the queries of ``rules`` (and the linked providers' when ``linked``) to clones of ``handle``,
    the costliest first (``-- cost:`` hints, then catalogue order), so that the longest ones do not
    start last and keep the run waiting for them alone."""
    prefetch = _Prefetch(handle, side_by_side_count(handle) if len(rules) + linked > 1 else 0)
    if not prefetch.clones:
        return prefetch
    queries: dict[str, tuple[QueryText, dict[str, Any] | None]] = {}
    for rule in rules:
        try:
            query = runner.query_of(rule, handle)
        except RuleFileError:
            continue  # the serial run reports it at this rule's turn
        if query:
            queries.setdefault(_prefetch_key(runner, rule, handle, query), query)
    if linked:
        queries[_LINKED] = (load_query(runner.checks_dir, _LINKED, handle.dialect), None)
    for key, (text, params) in sorted(queries.items(), key=lambda q: -q[1][0].cost):
        prefetch.submit(key, text, params)
    return prefetch


def _prefetch_key(runner: _Runner, rule: CheckRule, handle: DbHandle,
                  query: tuple[QueryText, dict[str, Any]] | None = None) -> str:
    """The prefetch key of a rule's query: its id, or the shared query's key for a rule with `part`.

    A shared query's rows are taken (and cached by the runner) by the first of its rules; the others
    then find them in the runner's cache.
    """
    if rule.raw.get("part") is None:
        return rule.id
    if query is None:
        try:
            query = runner.query_of(rule, handle)
        except RuleFileError:
            return rule.id
        if query is None:
            return rule.id
    return _query_key(rule, query[1])
