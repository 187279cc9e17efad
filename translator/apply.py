"""Apply mapping rules to a document: evaluate sources and guards, transform, write, trace and report.

Ownership (mapping.md 5.10): a rule owns its target. When it writes nothing, the target is removed (unless
``if_missing: keep``), so regenerating from changed inputs never leaves a stale value behind, while keys that no
rule owns are never touched.
"""
from __future__ import annotations

import copy
import datetime as _dt
import re
from dataclasses import dataclass, field
from typing import Any

from engine.configdoc import ConfigDoc
from engine.errors import ConfigError, RuleFileError
from engine.findings import Finding, note
from engine.locations import Location, Path, format_path, parse_path
from engine.predicates import Evaluator
from engine.render import render
from engine.rulefiles import default_rules_dir
from engine.sensitive import is_sensitive
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from . import collect
from .randomness import Entropy
from .ruleset import MappingFile, Rule, RuleSet
from .targetpath import Key, TargetPath, delete_at, format_target, get_at, prune_empty, set_at, shape_of
from .transforms import OMIT, TRANSFORMS, Problem, TransformContext, as_result
from .writer import insert_key, set_provenance, to_node

# Names a rule expression sees next to the Synapse top-level keys (a Synapse key of the same name is shadowed).
RESERVED = ("vars", "options", "mas", "item", "item_key", "item_path")
_SIMPLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\])*$")


@dataclass(frozen=True)
class TraceEntry:
    """One write: MAS (or patch) path, its source (``S:path``, ``M:path``, ``option --x`` or ``literal``), rule, origin.

    Never a value.
    """

    to: str
    source: str
    rule: str
    origin: str | None
    document: str = "mas"

    def as_dict(self) -> dict[str, Any]:
        return {"to": self.to, "from": self.source, "rule": self.rule, "origin": self.origin}


@dataclass
class Source:
    """Where a value comes from: a Synapse path (for locations and comments) or another kind of source."""

    kind: str  # "S", "M", "option", "literal"
    path: Path = ()
    name: str = ""

    def text(self) -> str:
        if self.kind == "S":
            return "S:" + format_path(self.path)
        if self.kind == "M":
            return "M:" + format_path(self.path)
        if self.kind == "option":
            return f"option --{self.name.replace('_', '-')}"
        return "literal"


@dataclass
class Scope:
    """The expression data for one rule application, and the item it concerns (for ``for_each`` files)."""

    data: dict
    item: collect.Item | None = None


@dataclass
class Engine:
    """Runs a rule set over one Synapse configuration; collects the trace and the findings."""

    ruleset: RuleSet
    synapse: ConfigDoc
    options: dict[str, Any]
    entropy: Entropy | None = None
    generated_at: _dt.datetime | None = None
    rules_dir: str | None = None
    trace: list[TraceEntry] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    _base: dict = field(default_factory=dict)
    _items: dict[str, list[collect.Item]] = field(default_factory=dict)
    _item_scopes: dict[tuple[int, str, Path], Scope] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The functions of check rules (is_url, rule_data, ...), so that both rule kinds read Synapse alike.
        self._eval = Evaluator(self.rules_dir or default_rules_dir())
        data = dict(self.synapse.data)
        data["options"] = dict(self.options)
        data["vars"] = {}
        for name, expr in self.ruleset.global_vars:
            data["vars"][name] = self._eval.evaluate(expr, data)
        self._base = data

    # ---- documents -------------------------------------------------------------------------------------------

    def run(self, document: str, root: dict, mas: dict | None = None) -> None:
        """Apply every rule of ``document`` to ``root`` in rule-set order. ``mas`` is visible as ``mas.*``."""
        if mas is not None:
            self._base["mas"] = mas
            self._item_scopes.clear()
        for rule in self.ruleset.rules_for(document):
            fe = rule.for_each
            if fe is None:
                self._apply(rule, Scope(self._base), root)
                continue
            for item in self.items(fe.collection):
                self._apply(rule, self._scope_for(rule.file, item), root)

    def items(self, name: str) -> list[collect.Item]:
        """The (cached) items of a named collection."""
        if name not in self._items:
            self._items[name] = collect.COLLECTIONS[name](self.synapse)
        return self._items[name]

    def _scope_for(self, mf: MappingFile, item: collect.Item) -> Scope:
        cache_key = (id(mf), item.key, item.path)
        scope = self._item_scopes.get(cache_key)
        if scope is None:
            data = dict(self._base)
            data.update(item=item.config, item_key=item.key, item_path=item.path_text)
            data["vars"] = dict(self._base["vars"])
            for name, expr in mf.vars.items():
                data["vars"][name] = self._eval.evaluate(expr, data)
            scope = self._item_scopes[cache_key] = Scope(data, item)
        return scope

    # ---- one rule --------------------------------------------------------------------------------------------

    def _apply(self, rule: Rule, scope: Scope, root: dict) -> None:
        item = scope.item
        target = rule.full_target(item.key if item else "*")
        if rule.when and not self._eval.holds(rule.when, scope.data):
            self._not_written(rule, target, root)
            return
        value, present, source = self._source(rule, scope)
        problems: list[Problem] = []
        if present and rule.transform:
            found, existing = get_at(root, target) if target else (False, None)
            ctx = TransformContext(self.entropy, self.generated_at, found, existing)
            result = as_result(TRANSFORMS[rule.transform](value, ctx, **rule.args))
            value, problems = result.value, result.problems
            present = value is not OMIT
        # Problems of a rule without `report` are reported by a check rule instead (oidc-provider-*).
        for problem in problems if rule.report else ():
            self._report(rule, scope, source, problem)
        if target is None:
            if not rule.transform and (rule.from_expr is None or present):
                self._report(rule, scope, source, None, value if present else None)
            return
        if not present:
            if rule.if_missing == "default":
                value, present = copy.deepcopy(rule.default), True
            elif rule.if_missing == "error":
                raise self._missing_error(rule, source)
            elif rule.if_missing == "report":
                self._report(rule, scope, source, None)
        if not present:
            self._not_written(rule, target, root)
            return
        self._write(rule, target, value, root, source, item)

    def _source(self, rule: Rule, scope: Scope) -> tuple[Any, bool, Source]:
        """The raw value, whether there is one (YAML null counts as absent), and where it comes from."""
        origin = self._source_of(rule.origin, scope) if rule.origin else None
        if rule.has_value:
            return copy.deepcopy(rule.value), True, origin or Source("literal")
        if rule.from_expr is not None:
            value = self._eval.evaluate(rule.from_expr, scope.data)
            return value, value is not None, origin or self._source_of(rule.from_expr, scope) or Source("literal")
        for case in rule.cases:
            if self._eval.holds(case.when, scope.data):
                src = (self._source_of(case.origin, scope) if case.origin else None) or origin
                if case.has_value:
                    return copy.deepcopy(case.value), True, src or Source("literal")
                value = self._eval.evaluate(case.from_expr, scope.data)
                src = src or self._source_of(case.from_expr, scope) or Source("literal")
                return value, value is not None, src
        return None, False, origin or Source("literal")

    def _source_of(self, expr: str, scope: Scope) -> Source | None:
        """The source named by a plain path expression (``item.issuer``, ``options.tos_uri``...), else None."""
        if not _SIMPLE.match(expr):
            return None
        parts = parse_path(expr)
        head, rest = parts[0], tuple(parts[1:])
        item = scope.item
        if head == "item" and item is not None:
            return Source("S", item.path + rest)
        if head in ("item_key", "item_path") and item is not None:
            return Source("S", item.path)
        if head == "options" and rest:
            return Source("option", name=str(rest[0]))
        if head == "mas":
            return Source("M", rest)
        if head in RESERVED:
            return None
        return Source("S", tuple(parts))

    # ---- effects ---------------------------------------------------------------------------------------------

    def _write(self, rule: Rule, target: TargetPath, value: Any, root: dict, source: Source,
               item: collect.Item | None) -> None:
        side = "mas" if rule.document == "mas" else "synapse"
        shape = shape_of(target)
        probe = tuple(seg.name if isinstance(seg, Key) else 0 for seg in target)

        def secret(path: tuple) -> bool:
            return is_sensitive(side, probe + path)

        node = to_node(value, shape, lambda p: rule.sensitive if not p else secret(p))
        try:
            set_at(root, target, node, new_map=CommentedMap, new_list=CommentedSeq, insert=insert_key)
        except ValueError as exc:
            raise RuleFileError(f"rule `{rule.id}` cannot write `{format_target(target)}`: {exc}",
                                file=rule.location.file, line=rule.location.line) from None
        base = target[: len(target) - len(rule.to)]
        for excluded in rule.excludes:
            delete_at(root, base + excluded)
        origin = self._origin(source)
        self.trace.append(TraceEntry(format_target(target), source.text(), rule.id,
                                     f"{origin.file}:{origin.line}:{origin.column}" if origin else None,
                                     rule.document))
        # Provenance comments go into the MAS file only; the overlay's edit list says where each key was.
        if isinstance(target[-1], Key) and rule.document == "mas":
            _found, parent = get_at(root, target[:-1])
            exact = self.synapse.positions.get(source.path) if source.kind == "S" else None
            text = f"# from {exact.file}:{exact.line} {format_path(source.path)}" if exact else None
            set_provenance(parent, target[-1].name, text)

    def _not_written(self, rule: Rule, target: TargetPath | None, root: dict) -> None:
        if target is None or rule.if_missing == "keep":
            return
        if delete_at(root, target):
            fe = rule.for_each
            stop = len(fe.target) + 1 if fe is not None and fe.target is not None else 0
            prune_empty(root, target, stop)

    def _origin(self, source: Source) -> Location | None:
        if source.kind != "S":
            return None
        return self.synapse.locate(source.path)

    def _missing_error(self, rule: Rule, source: Source) -> ConfigError:
        loc = self.synapse.locate(source.path) if source.kind == "S" else Location(
            self.synapse.files[0] if self.synapse.files else "", 1, 1)
        key = format_path(source.path) if source.kind == "S" else rule.id
        return ConfigError(f"required key `{key}` is missing", file=loc.file or None, line=loc.line,
                           column=loc.column, hint=rule.summary)

    def _report(self, rule: Rule, scope: Scope, source: Source, problem: Problem | None,
                value: Any = None) -> None:
        """An info note from the rule's ``report``; its ``at`` (or the source, or the item) is the location."""
        report = rule.report
        if report is None:
            raise RuleFileError(f"rule `{rule.id}` has nothing to report with (no `report`)",
                                file=rule.location.file, line=rule.location.line)
        item = scope.item
        if report.at:
            at = self._source_of(report.at, scope)
            path = at.path if at is not None and at.kind == "S" else ()
        elif source.kind == "S":
            path = source.path + (problem.at if problem else ())
        else:
            path = item.path if item else ()
        variables: dict[str, Any] = {"provider": item.key if item else None,
                                     "key": next((str(p) for p in reversed(path) if isinstance(p, str)), None),
                                     "item_path": item.path_text if item else None,
                                     "kind": problem.kind if problem else None,
                                     # A sensitive rule's value never reaches a message.
                                     "value": None if rule.sensitive or isinstance(value, (dict, list)) else value}
        if problem:
            variables.update(problem.vars)
        finding = note(render(report.message, variables), self.synapse.locate(path), rule=rule.id)
        finding.remediation = render(report.remediation, variables) if report.remediation else ""
        finding.provider = item.key if item else None
        finding.details = {"mapping_rule": rule.id}
        self.findings.append(finding)
