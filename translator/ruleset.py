"""Load ``rules/mapping/*.yaml`` into an ordered rule set; every contributor mistake is a RuleFileError with file:line.

cerberus (engine/rule_schemas/mapping.yaml) checks the shape of each file; this module checks what a schema
cannot: exactly one source per writing rule, unique ids, no two rules writing the same target, known transforms
and collections, defined ``vars``, resolvable ``after`` references without cycles, and sensitive targets marked
``sensitive: true``.
"""
from __future__ import annotations

import functools
import inspect
import os
import re
from dataclasses import dataclass, field
from typing import Any

from jinja2 import TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

from engine.errors import RuleFileError, Syn2MasError
from engine.expr import compile_expr
from engine.predicates import CheckFunctions
from engine.locations import Location
from engine.rulefiles import RuleFile, default_rules_dir, discover
from engine.sensitive import is_sensitive

from . import collect, transforms
from .targetpath import Key, Select, TargetPath, TargetPathError, format_target, is_prefix, parse_target

DOCUMENTS = ("mas", "synapse_patch")
_VAR_REF = re.compile(r"\bvars\.([a-z][a-z0-9_]*)")
_SYNTAX = SandboxedEnvironment()


@dataclass(frozen=True)
class Report:
    """The info note a rule emits when it cannot translate something (mapping.md 0.3)."""

    message: str
    at: str | None = None
    remediation: str = ""


@dataclass(frozen=True)
class Case:
    """One alternative of a ``cases`` source: the first whose ``when`` holds gives the value."""

    when: str
    from_expr: str | None
    value: Any
    has_value: bool
    origin: str | None = None


@dataclass(frozen=True)
class ForEach:
    """A file-level iteration over a named collection, optionally writing into ``target[match=item_key]``."""

    collection: str
    target: TargetPath | None
    match: str | None


@dataclass
class Rule:
    """One mapping rule, resolved: parsed target, source, guard, transform and report."""

    id: str
    summary: str
    file: "MappingFile"
    location: Location
    to: TargetPath | None = None
    from_expr: str | None = None
    value: Any = None
    has_value: bool = False
    cases: tuple[Case, ...] = ()
    when: str | None = None
    transform: str | None = None
    args: dict = field(default_factory=dict)
    if_missing: str = "skip"
    default: Any = None
    after: tuple[str, ...] = ()
    excludes: tuple[TargetPath, ...] = ()
    sensitive: bool = False
    origin: str | None = None
    references: tuple[str, ...] = ()
    report: Report | None = None

    @property
    def document(self) -> str:
        return self.file.document

    @property
    def for_each(self) -> ForEach | None:
        return self.file.for_each

    def full_target(self, item_key: Any = "*") -> TargetPath | None:
        """The absolute target; inside a ``for_each`` with a target, below ``target[match=item_key]``."""
        if self.to is None:
            return None
        fe = self.for_each
        if fe is not None and fe.target is not None:
            return fe.target + (Select(fe.match, item_key),) + self.to
        return self.to

    def expressions(self) -> list[str]:
        out = [e for e in (self.from_expr, self.when, self.origin) if e]
        for case in self.cases:
            out.extend(e for e in (case.when, case.from_expr, case.origin) if e)
        return out


@dataclass
class MappingFile:
    """One rule file: its section, target document, vars and optional iteration."""

    source: RuleFile
    section: str
    document: str
    vars: dict[str, str]
    for_each: ForEach | None
    rules: list[Rule] = field(default_factory=list)

    @property
    def path(self) -> str:
        return self.source.path

    def where(self, *path: Any) -> Location:
        return self.source.where(tuple(path))


@dataclass
class RuleSet:
    """All mapping rules in application order, plus the global vars in dependency order."""

    files: list[MappingFile]
    ordered: list[Rule]
    global_vars: list[tuple[str, str]]
    by_id: dict[str, Rule]

    def rules_for(self, document: str) -> list[Rule]:
        return [r for r in self.ordered if r.document == document]


def _fail(message: str, loc: Location, hint: str | None = None) -> RuleFileError:
    return RuleFileError(message, file=loc.file, line=loc.line, column=loc.column, key=loc.key_path or None,
                         hint=hint)


# JMESPath binds `!` tighter than `.`: `!a.b` means `(!a).b`, which is always null. A classic trap.
_BARE_NOT = re.compile(r"!\s*[A-Za-z_][A-Za-z0-9_]*\s*[.\[]")


@functools.lru_cache(maxsize=1)
def known_functions() -> frozenset[str]:
    """JMESPath functions available to mapping rules: the built-ins plus those of engine/predicates.py."""
    return frozenset(CheckFunctions(default_rules_dir()).FUNCTION_TABLE)


def _function_names(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["value"]] if node.get("type") == "function_expression" else []
        for child in node.get("children", ()):
            found.extend(_function_names(child))
        return found
    return []


def _check_expr(text: str, loc: Location) -> None:
    try:
        parsed = compile_expr(text)
    except Syn2MasError as exc:
        raise _fail(exc.message, loc) from None
    unknown = [name for name in _function_names(parsed.parsed) if name not in known_functions()]
    if unknown:
        # A misspelt function would fail at every evaluation and silently count as "no value".
        raise _fail(f"unknown function `{unknown[0]}()` in {text!r}", loc)
    if _BARE_NOT.search(text.replace("!=", "  ")):
        raise _fail(f"`!` applies to the first name only in {text!r}", loc,
                    "JMESPath reads `!a.b` as `(!a).b`; write `!(a.b)`")


def _check_template(text: str, loc: Location) -> None:
    try:
        _SYNTAX.parse(text)
    except TemplateSyntaxError as exc:
        raise _fail(f"invalid message template: {exc.message}", loc) from None


def _target(text: str, loc: Location) -> TargetPath:
    try:
        return parse_target(text)
    except TargetPathError as exc:
        raise _fail(f"invalid target path: {exc}", loc,
                    "use `a.b`, `a[0]`, `a[]` or `a[key=value]`") from None


def _parse_file(rf: RuleFile) -> MappingFile:
    data = rf.data
    fe = None
    if data.get("for_each"):
        spec = data["for_each"]
        loc = rf.where(("for_each", "collection"))
        if spec["collection"] not in collect.COLLECTIONS:
            raise _fail(f"unknown collection `{spec['collection']}`", loc,
                        f"known: {', '.join(sorted(collect.COLLECTIONS))}")
        target = _target(spec["target"], rf.where(("for_each", "target"))) if spec.get("target") else None
        fe = ForEach(spec["collection"], target, spec.get("match"))
    mf = MappingFile(rf, data["section"], data.get("document", "mas"), dict(data.get("vars") or {}), fe)
    for name, expr in mf.vars.items():
        _check_expr(expr, rf.where(("vars", name)))
    for i, raw in enumerate(data["rules"]):
        mf.rules.append(_parse_rule(mf, i, raw))
    return mf


def _parse_rule(mf: MappingFile, i: int, raw: dict) -> Rule:
    def where(*keys: Any) -> Location:
        return mf.where("rules", i, *keys)

    rule = Rule(id=raw["id"], summary=raw["summary"], file=mf, location=where("id"))
    sources = [k for k in ("from", "value", "cases") if k in raw]
    if "to" in raw:
        rule.to = _target(raw["to"], where("to"))
        if len(sources) != 1:
            raise _fail(f"rule `{rule.id}` writes `{raw['to']}` and needs exactly one of `from`, `value`, `cases` "
                        f"(has {', '.join(sources) or 'none'})", where("to"))
        if mf.for_each is not None and mf.for_each.target is None:
            raise _fail(f"rule `{rule.id}` has a `to`, but its file's `for_each` has no `target`", where("to"))
    else:
        if "report" not in raw:
            raise _fail(f"rule `{rule.id}` has neither `to` nor `report`: it would do nothing", where("id"))
        if "value" in raw or "cases" in raw:
            raise _fail(f"rule `{rule.id}` has a source but no `to`", where(sources[-1]))
    rule.from_expr = raw.get("from")
    if "value" in raw:
        rule.value, rule.has_value = raw["value"], True
    rule.cases = tuple(Case(c["when"], c.get("from"), c.get("value"), "value" in c, c.get("origin"))
                       for c in raw.get("cases") or ())
    for j, case in enumerate(rule.cases):
        if case.from_expr is None and not case.has_value:
            raise _fail(f"case {j + 1} of rule `{rule.id}` needs `from` or `value`", where("cases", j))
    rule.when = raw.get("when")
    rule.if_missing = raw.get("if_missing", "skip")
    if "default" in raw:
        if rule.if_missing != "default":
            raise _fail(f"rule `{rule.id}` has a `default` but `if_missing` is not `default`", where("default"))
        rule.default = raw["default"]
    elif rule.if_missing == "default":
        raise _fail(f"rule `{rule.id}` has `if_missing: default` without a `default`", where("if_missing"))
    if rule.if_missing == "report" and "report" not in raw:
        raise _fail(f"rule `{rule.id}` has `if_missing: report` without a `report`", where("if_missing"))
    rule.transform = raw.get("transform")
    rule.args = dict(raw.get("args") or {})
    if rule.args and not rule.transform:
        raise _fail(f"rule `{rule.id}` has `args` without a `transform`", where("args"))
    if rule.transform:
        _check_transform(rule.transform, rule.args, where("transform"))
    rule.after = tuple(raw.get("after") or ())
    rule.excludes = tuple(_target(t, where("excludes", k)) for k, t in enumerate(raw.get("excludes") or ()))
    rule.sensitive = bool(raw.get("sensitive", False))
    rule.origin = raw.get("origin")
    rule.references = tuple(raw.get("references") or ())
    if "report" in raw:
        rep = raw["report"]
        rule.report = Report(rep["message"], rep.get("at"), rep.get("remediation", ""))
        _check_template(rule.report.message, where("report", "message"))
        _check_template(rule.report.remediation, where("report", "remediation"))
        if rule.report.at:
            _check_expr(rule.report.at, where("report", "at"))
    for key, expr in (("from", rule.from_expr), ("when", rule.when), ("origin", rule.origin)):
        if expr:
            _check_expr(expr, where(key))
    for j, case in enumerate(rule.cases):
        _check_expr(case.when, where("cases", j, "when"))
        if case.from_expr:
            _check_expr(case.from_expr, where("cases", j, "from"))
        if case.origin:
            _check_expr(case.origin, where("cases", j, "origin"))
    return rule


def _check_transform(name: str, args: dict, loc: Location) -> None:
    fn = transforms.TRANSFORMS.get(name)
    if fn is None:
        raise _fail(f"unknown transform `{name}`", loc, f"known: {', '.join(sorted(transforms.TRANSFORMS))}")
    try:
        inspect.signature(fn).bind(None, None, **args)
    except TypeError as exc:
        raise _fail(f"bad arguments for transform `{name}`: {exc}", loc) from None


def _check_sensitive(rule: Rule) -> None:
    target = rule.full_target(0)
    if target is None:
        return
    side = "mas" if rule.document == "mas" else "synapse"
    # Sensitivity patterns index lists with `[]`; a selected item is a list position too.
    probe = tuple(seg.name if isinstance(seg, Key) else 0 for seg in target)
    marked = is_sensitive(side, probe)
    if marked and not rule.sensitive:
        raise _fail(f"rule `{rule.id}` writes the secret `{format_target(target)}` (rules/sensitive.yaml) and must "
                    "say `sensitive: true`", rule.location)
    if rule.sensitive and not marked:
        raise _fail(f"rule `{rule.id}` is `sensitive` but `{format_target(target)}` is not listed in "
                    "rules/sensitive.yaml", rule.location, "add the MAS path to rules/sensitive.yaml")


def _target_key(rule: Rule) -> tuple[str, str] | None:
    target = rule.full_target("*")
    return None if target is None else (rule.document, format_target(target))


def _order(rules: list[Rule], by_id: dict[str, Rule]) -> list[Rule]:
    """Application order: MAS rules before patch rules; `after` and target prefixes as edges; else file order."""
    index = {id(r): n for n, r in enumerate(rules)}
    preds: dict[int, set[int]] = {n: set() for n in range(len(rules))}
    for n, rule in enumerate(rules):
        for dep in rule.after:
            if dep not in by_id:
                raise _fail(f"rule `{rule.id}` is `after` an unknown rule `{dep}`", rule.location)
            preds[n].add(index[id(by_id[dep])])
    targets = [(n, r.document, r.full_target("*")) for n, r in enumerate(rules) if r.to is not None]
    for n, doc, t in targets:
        for m, doc2, t2 in targets:
            if doc == doc2 and is_prefix(t2, t):
                preds[n].add(m)  # the container write replaces the item, so the key inside comes later
        if doc == "synapse_patch":
            preds[n].update(m for m, r in enumerate(rules) if r.document == "mas")
    done: list[int] = []
    placed: set[int] = set()
    while len(done) < len(rules):
        ready = [n for n in range(len(rules)) if n not in placed and preds[n] <= placed]
        if not ready:
            stuck = rules[_on_cycle(preds, placed)]
            raise _fail(f"rule `{stuck.id}` is part of an `after` cycle", stuck.location)
        done.append(ready[0])
        placed.add(ready[0])
    return [rules[n] for n in done]


def _on_cycle(preds: dict[int, set[int]], placed: set[int]) -> int:
    """A rule on a cycle: walk unplaced predecessors until one repeats."""
    node = next(n for n in preds if n not in placed)
    seen: list[int] = []
    while node not in seen:
        seen.append(node)
        node = min(p for p in preds[node] if p not in placed)
    return node


def _order_vars(files: list[MappingFile]) -> list[tuple[str, str]]:
    defined: dict[str, tuple[str, MappingFile]] = {}
    for mf in files:
        if mf.for_each is not None:
            continue
        for name, expr in mf.vars.items():
            if name in defined:
                raise _fail(f"var `{name}` is defined twice (first in {defined[name][1].path})",
                            mf.where("vars", name))
            defined[name] = (expr, mf)
    ordered: list[tuple[str, str]] = []
    state: dict[str, int] = {}

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if state.get(name) == 2:
            return
        expr, mf = defined[name]
        if state.get(name) == 1:
            raise _fail(f"vars form a cycle: {' -> '.join(chain + (name,))}", mf.where("vars", name))
        state[name] = 1
        for dep in _VAR_REF.findall(expr):
            if dep not in defined:
                raise _fail(f"var `{name}` uses the undefined `vars.{dep}`", mf.where("vars", name))
            visit(dep, chain + (name,))
        state[name] = 2
        ordered.append((name, expr))

    for name in defined:
        visit(name, ())
    for mf in files:
        if mf.for_each is None:
            continue
        local: list[str] = []
        for name, expr in mf.vars.items():
            if name in defined:
                raise _fail(f"var `{name}` of a `for_each` file shadows a global var", mf.where("vars", name))
            for dep in _VAR_REF.findall(expr):
                if dep not in defined and dep not in local:
                    raise _fail(f"var `{name}` uses `vars.{dep}`, which is not defined before it",
                                mf.where("vars", name))
            local.append(name)
    _check_var_uses(files, set(defined))
    return ordered


def _check_var_uses(files: list[MappingFile], global_names: set[str]) -> None:
    for mf in files:
        names = global_names | set(mf.vars)
        for rule in mf.rules:
            for expr in rule.expressions():
                for dep in _VAR_REF.findall(expr):
                    if dep not in names:
                        raise _fail(f"rule `{rule.id}` uses the undefined `vars.{dep}`", rule.location)


def _fingerprint(rules_dir: str) -> tuple:
    """Every rule file's path, size and modification time: a changed file invalidates the cache."""
    out = []
    for sub in ("mapping", "sensitive.yaml"):
        base = os.path.join(rules_dir, sub)
        paths = [base] if os.path.isfile(base) else [os.path.join(root, f) for root, _d, files in os.walk(base)
                                                     for f in files if f.endswith(".yaml")]
        for path in sorted(paths):
            st = os.stat(path)
            out.append((path, st.st_size, st.st_mtime_ns))
    return tuple(out)


_CACHE: dict[str, tuple[tuple, "RuleSet"]] = {}


def load_ruleset(rules_dir: str | None = None) -> RuleSet:
    """Discover, validate and order every mapping rule under ``rules_dir/mapping`` (default: the shipped rules).

    Parsing the rule files is the slowest part of a run, so a validated rule set is kept per directory until a
    file in it changes (tests generate hundreds of times per process).
    """
    rules_dir = os.path.abspath(rules_dir or default_rules_dir())
    stamp = _fingerprint(rules_dir)
    cached = _CACHE.get(rules_dir)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    ruleset = _load(rules_dir)
    _CACHE[rules_dir] = (stamp, ruleset)
    return ruleset


def _load(rules_dir: str) -> RuleSet:
    files = [_parse_file(rf) for rf in discover(rules_dir, "mapping")]
    by_id: dict[str, Rule] = {}
    targets: dict[tuple[str, str], Rule] = {}
    rules: list[Rule] = []
    for mf in files:
        for rule in mf.rules:
            if rule.id in by_id:
                first = by_id[rule.id].location
                raise _fail(f"rule id `{rule.id}` is already used at {first.file}:{first.line}", rule.location)
            by_id[rule.id] = rule
            key = _target_key(rule)
            if key is not None:
                if key in targets:
                    first = targets[key].location
                    raise _fail(f"rules `{targets[key].id}` ({first.file}:{first.line}) and `{rule.id}` both write "
                                f"`{key[1]}`", mf.where("rules", mf.rules.index(rule), "to"),
                                "merge them into one rule (use `cases` for alternatives)")
                targets[key] = rule
            _check_sensitive(rule)
            rules.append(rule)
    global_vars = _order_vars(files)
    return RuleSet(files, _order(rules, by_id), global_vars, by_id)
