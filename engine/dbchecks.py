"""Run the database rules (checks.md 4.3) against an open Synapse and/or MAS database, read-only.

Each database is read inside the single read-only transaction its :class:`~engine.dbhandles.DbHandle`
is already in: ``check`` opens it, ``migrate`` passes the very connection it then migrates from, so the
checks see exactly the data that is migrated (data-migration.md 2.2).

Expression data of a rule (for ``for_each``, ``when``, ``vars``, ``downgrade``, and the message):

* ``params``: the query parameters (:meth:`DbFacts.params`); ``flags``: command options;
* a ``-- shape: detail`` query: ``count`` (total), ``samples`` (at most 20, sorted) and ``groups``
  (``[{grp, count, samples}]`` sorted by ``grp``); any other query: ``rows``;
* a ``predicate``: whatever it returns;
* with ``for_each``: ``item`` and ``index``; an item carrying ``count``/``samples`` gives the finding's.
"""
from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from typing import Any

import psycopg

from .checks import CheckRule, SkippedRule, Variant, load_check_rules
from .dbfacts import DbFacts
from .dbhandles import LABEL, DbHandle
from .dbpredicates import PREDICATES
from .dbquery import SAMPLE_LIMIT, load_query
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


def _shape(rows: list[dict[str, Any]], detail: bool) -> dict[str, Any]:
    """Expression data from a query result (see the module docstring)."""
    if not detail:
        return {"rows": rows}
    groups: dict[Any, dict[str, Any]] = {}
    for row in rows:
        g = groups.setdefault(row["grp"], {"grp": row["grp"], "count": int(row["count"]), "samples": []})
        if row["sample"] is not None:
            g["samples"].append(str(row["sample"]))
    ordered = [groups[k] for k in sorted(groups, key=str)]
    for g in ordered:
        g["samples"] = sorted(set(g["samples"]))[:SAMPLE_LIMIT]
    samples = sorted({s for g in ordered for s in g["samples"]})[:SAMPLE_LIMIT]
    return {"groups": ordered, "count": sum(g["count"] for g in ordered), "samples": samples}


class _Runner:
    """Evaluates rules against the handles; one instance per run."""

    def __init__(self, facts: DbFacts, handles: dict[str, DbHandle], checks_dir: str):
        self.facts = facts
        self.handles = handles
        self.checks_dir = checks_dir

    def base(self) -> dict[str, Any]:
        return {"params": self.facts.params(), "flags": self.facts.flags()}

    def data_for(self, rule: CheckRule, handle: DbHandle) -> dict[str, Any]:
        data = self.base()
        query = rule.raw.get("query")
        if query:
            text = load_query(self.checks_dir, query, handle.dialect)
            params = dict(data["params"], **(rule.raw.get("args") or {}))
            data.update(_shape(handle.query(text, params), text.detail))
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

    def run_rule(self, rule: CheckRule, handle: DbHandle) -> list[Finding]:
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
            data = self.data_for(rule, handle)
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


def _linked_providers(handle: DbHandle, checks_dir: str) -> list[str]:
    """Synapse provider ids that links of migrated users use (feeds `mas-provider-not-synced`)."""
    try:
        rows = handle.query(load_query(checks_dir, "queries/linked-auth-providers.sql", handle.dialect))
    except (psycopg.Error, sqlite3.Error) as exc:
        raise DatabaseError(f"reading the providers of `user_external_ids` failed: {_first_line(exc)}") from None
    return sorted(str(r["auth_provider"]) for r in rows)


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

    linked_read = False
    for rule in sorted(selected, key=order):
        database = rule_database(rule)
        handle = handles.get(database)
        if handle is None:
            reason = (unavailable or {}).get(database, f"no {LABEL[database]} given")
            result.skipped.append(SkippedRule(rule.id, reason))
            continue
        predicate = PREDICATES.get(rule.raw.get("predicate", ""))
        if not (predicate and predicate.before_snapshot):
            handle.tune()
        if database == "mas" and not linked_read and "synapse" in handles:
            facts.linked_providers = _linked_providers(handles["synapse"], checks_dir)
            linked_read = True
        result.findings.extend(runner.run_rule(rule, handle))
        result.ran.append(rule.id)
    return result
