"""Check rules of scopes `synapse` and `synapse+mas`: loading (with load-time safety checks) and evaluation.

A rule is data (rules/checks/*.yaml, schema engine/rule_schemas/check.yaml). This module turns each rule
into findings against a merged Synapse document and, for `synapse+mas` rules, a merged MAS document.
Database rules are loaded and validated here too (so that every command sees one catalogue), but they
are evaluated by the database checks.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any, Callable

from .configdoc import ConfigDoc
from .errors import RuleFileError
from .expr import compile_expr
from .findings import Finding
from .locations import Location, format_path
from .rulefiles import RuleFile, default_rules_dir, discover
from .sensitive import sensitive_paths
from .varsafety import output_paths, sensitive_hits
from .yamlsource import load_yaml_file

CONFIG_SCOPES = ("synapse", "synapse+mas")
_VARIANT_FIELDS = ("for_each", "when", "at", "vars", "severity", "message", "remediation", "provider", "option")


@dataclass(frozen=True)
class Variant:
    """One way a rule fires: its own condition, location and possibly severity and wording."""

    name: str | None
    for_each: str | None
    when: str | None
    at: str
    vars: dict[str, str]
    severity: str
    message: str
    remediation: str
    provider: str | None
    option: str | None


@dataclass
class CheckRule:
    """A validated check rule with its variants resolved (inherited fields filled in)."""

    id: str
    severity: str
    scope: str
    summary: str
    message: str
    remediation: str
    references: list[str]
    source: RuleFile
    index: int
    raw: dict
    variants: list[Variant] = field(default_factory=list)

    @property
    def where(self) -> Location:
        """The rule's position in its rule file (for errors and `rules explain`)."""
        return self.source.where(("rules", self.index))

    @property
    def severities(self) -> list[str]:
        """Every severity the rule can report (the rule's own, its variants', a downgrade's)."""
        found = {self.severity, *(v.severity for v in self.variants)}
        if self.raw.get("downgrade"):
            found.add(self.raw["downgrade"]["severity"])
        return [s for s in ("error", "warning", "info") if s in found]

    @property
    def acknowledgeable(self) -> bool:
        """checks.md 3.1: only rules that can report a warning can be acknowledged."""
        return "warning" in self.severities

    @property
    def evaluator(self) -> str | None:
        return self.raw.get("evaluator")


@dataclass
class CheckOptions:
    """Switches that change what rules report."""

    ignore_missing_auth_providers: bool = False
    mas_schema: str | None = None
    rules_dir: str | None = None


@dataclass(frozen=True)
class SkippedRule:
    """A rule that was not run because its inputs were not given (info in every report)."""

    rule: str
    reason: str


@dataclass
class CheckRun:
    """What a run of the configuration rules produced."""

    findings: list[Finding] = field(default_factory=list)
    skipped: list[SkippedRule] = field(default_factory=list)
    file_secrets: set[str] = field(default_factory=set)


# ---------------------------------------------------------------- loading

def _variants(rule: dict) -> list[Variant]:
    """Resolve variants: each inherits the rule's fields it does not set; both `when`s must hold."""
    out = []
    for spec in rule.get("variants") or [{}]:
        merged = {k: spec.get(k, rule.get(k)) for k in _VARIANT_FIELDS}
        conditions = [w for w in (rule.get("when"), spec.get("when")) if w]
        when = conditions[0] if len(conditions) == 1 else " && ".join(f"({w})" for w in conditions) or None
        out.append(Variant(
            name=spec.get("name"), for_each=merged["for_each"], when=when, at=merged["at"] or "",
            vars={**(rule.get("vars") or {}), **(spec.get("vars") or {})}, severity=merged["severity"],
            message=merged["message"], remediation=merged["remediation"], provider=merged["provider"],
            option=merged["option"]))
    return out


def _side_paths(paths: list[tuple], scope: str, item_paths: list[tuple]) -> dict[str, list[tuple]]:
    """Split expression paths into Synapse and MAS paths, replacing `item` by what `for_each` iterates."""
    sides: dict[str, list[tuple]] = {"synapse": [], "mas": []}
    for p in paths:
        head, rest = (p[0], p[1:]) if p else (None, ())
        if head == "item":
            for ip in item_paths:
                for side, found in _side_paths([ip + ("[]",) + rest], scope, []).items():
                    sides[side].extend(found)
        elif head == "index":
            continue
        elif scope == "synapse+mas":
            if head is None:
                sides["synapse"].append(())
                sides["mas"].append(())
            elif head in ("synapse", "mas", "mas_raw"):
                sides["mas" if head == "mas_raw" else head].append(rest)
        else:
            sides["synapse"].append(p)
    return sides


def _check_expression(rule_file: RuleFile, path: tuple, text: str) -> Any:
    try:
        return compile_expr(text)
    except RuleFileError as exc:
        loc = rule_file.where(path)
        raise RuleFileError(exc.message, file=rule_file.path, line=loc.line, column=loc.column,
                            key=format_path(path)) from None


def _check_vars(rule_file: RuleFile, index: int, rule: dict, scope: str, rules_dir: str) -> None:
    """Reject a rule whose `vars` could copy a sensitive value into a message (style.md 2.2, 7)."""
    from .predicates import OPAQUE_FUNCTIONS

    specs = [((), rule)] + [(("variants", i), v) for i, v in enumerate(rule.get("variants") or [])]
    for sub, spec in specs:
        for_each = spec.get("for_each", rule.get("for_each"))
        item_paths = output_paths(compile_expr(for_each).parsed, OPAQUE_FUNCTIONS) if for_each else []
        for name, text in (spec.get("vars") or {}).items():
            where = ("rules", index) + sub + ("vars", name)
            parsed = _check_expression(rule_file, where, text).parsed
            sides = _side_paths(output_paths(parsed, OPAQUE_FUNCTIONS), scope, item_paths)
            hits = [f"{side}:{hit}" for side, paths in sides.items()
                    for hit in sensitive_hits(paths, sensitive_paths(side, rules_dir))]
            if hits:
                loc = rule_file.where(where)
                raise RuleFileError(
                    f"rule `{rule['id']}`: var `{name}` can copy the sensitive value {', '.join(hits)} into a "
                    "message", file=rule_file.path, line=loc.line, column=loc.column, key=format_path(where),
                    hint="messages must never show secrets: compare inside `when` or an opaque predicate instead")


def _check_expressions(rule_file: RuleFile, index: int, rule: dict) -> None:
    specs = [((), rule)] + [(("variants", i), v) for i, v in enumerate(rule.get("variants") or [])]
    for sub, spec in specs:
        for key in ("for_each", "when"):
            if spec.get(key):
                _check_expression(rule_file, ("rules", index) + sub + (key,), spec[key])
    if rule.get("downgrade", {}).get("when"):
        _check_expression(rule_file, ("rules", index, "downgrade", "when"), rule["downgrade"]["when"])


def _check_shape(rule_file: RuleFile, index: int, rule: dict, scope: str) -> None:
    loc = rule_file.where(("rules", index))

    def fail(message: str) -> RuleFileError:
        return RuleFileError(f"rule `{rule['id']}`: {message}", file=rule_file.path, line=loc.line,
                             column=loc.column)

    if scope == "database" or rule.get("evaluator"):
        return
    variants = rule.get("variants") or [{}]
    if not all(rule.get("when") or v.get("when") for v in variants):
        raise fail("every variant needs a `when` (on the rule or on the variant)")
    names = [v.get("name") for v in rule.get("variants") or []]
    if len(names) != len(set(names)):
        raise fail("variant names must be unique within a rule")


def build_rules(rule_file: RuleFile, rules_dir: str, *, check: bool = True) -> list[CheckRule]:
    """The rules of one validated check-rule file; ``check`` applies the load-time checks (a compiled
    bundle has passed them already)."""
    out = []
    file_scope = rule_file.data["scope"]
    for index, rule in enumerate(rule_file.data["rules"]):
        scope = rule.get("scope", file_scope)
        if check:
            _check_shape(rule_file, index, rule, scope)
            _check_expressions(rule_file, index, rule)
            if scope != "database":
                _check_vars(rule_file, index, rule, scope, rules_dir)
        out.append(CheckRule(
            id=rule["id"], severity=rule["severity"], scope=scope, summary=rule["summary"],
            message=rule["message"], remediation=rule["remediation"], references=list(rule.get("references") or []),
            source=rule_file, index=index, raw=rule, variants=_variants(rule)))
    return out


def _catalogue(files: list[tuple[RuleFile, bool]], rules_dir: str) -> tuple[CheckRule, ...]:
    rules: list[CheckRule] = []
    seen: dict[str, CheckRule] = {}
    for rule_file, checked in files:
        for rule in build_rules(rule_file, rules_dir, check=not checked):
            if rule.id in seen:
                first = seen[rule.id].where
                raise RuleFileError(f"rule id `{rule.id}` is also defined at {first.file}:{first.line}",
                                    file=rule.where.file, line=rule.where.line)
            seen[rule.id] = rule
            rules.append(rule)
    return tuple(rules)


def load_rule_files(rules_dir: str) -> list[RuleFile]:
    """Every check-rule file from YAML, validated by schema and by the load-time checks (slow path)."""
    files = discover(rules_dir, "checks")
    _catalogue([(f, False) for f in files], rules_dir)
    return files


def load_check_rules(rules_dir: str | None = None) -> tuple[CheckRule, ...]:
    """Every check rule under ``rules_dir/checks`` (all scopes), validated; ids are unique.

    Files come from the compiled bundle (engine.rulebundle) where it matches them, else from their YAML.
    """
    return _load_check_rules(os.path.abspath(rules_dir or default_rules_dir()))


@functools.lru_cache(maxsize=8)
def _load_check_rules(rules_dir: str) -> tuple[CheckRule, ...]:
    from . import rulebundle

    return _catalogue(rulebundle.load_rule_files(rules_dir), rules_dir)


def rules_by_id(rules_dir: str | None = None) -> dict[str, CheckRule]:
    """The check-rule catalogue keyed by id."""
    return {r.id: r for r in load_check_rules(rules_dir)}


# ---------------------------------------------------------------- evaluation

@functools.lru_cache(maxsize=8)
def mas_defaults(rules_dir: str) -> dict:
    """MAS's defaults for the keys that synapse+mas rules read (rules/mas-defaults.yaml)."""
    data = load_yaml_file(os.path.join(rules_dir, "mas-defaults.yaml"), (1, 2)).data or {}
    return data.get("defaults") or {}


def with_defaults(data: Any, defaults: Any) -> Any:
    """``data`` with every absent (or null) key of ``defaults`` filled in; present values are kept as they are."""
    if data is None:
        return defaults
    if isinstance(data, dict) and isinstance(defaults, dict):
        out = dict(data)
        for k, v in defaults.items():
            out[k] = with_defaults(data.get(k), v)
        return out
    return data


@dataclass
class _Context:
    rules_dir: str
    synapse: ConfigDoc
    mas: ConfigDoc | None
    options: CheckOptions
    evaluator: Any
    roots: dict[str, Any]


def _locate(ctx: _Context, at: str) -> Location:
    side, _, path = at.partition(":") if at.startswith(("mas:", "synapse:")) else ("synapse", "", at)
    doc = ctx.mas if side == "mas" and ctx.mas is not None else ctx.synapse
    return doc.locate(path.strip())


def _severity(ctx: _Context, rule: CheckRule, variant: Variant, root: Any) -> str:
    down = rule.raw.get("downgrade")
    if down and getattr(ctx.options, down["option"], False) and (
            not down.get("when") or ctx.evaluator.holds(down["when"], root)):
        return down["severity"]
    return variant.severity


def _items(ctx: _Context, variant: Variant, root: Any) -> list[tuple[Any, Any]]:
    if not variant.for_each:
        return [(None, None)]
    value = ctx.evaluator.evaluate(variant.for_each, root)
    return list(enumerate(value)) if isinstance(value, list) else []


def _finding(ctx: _Context, rule: CheckRule, variant: Variant, root: Any, index: Any) -> Finding:
    from .render import render  # Jinja2 is only imported when something fires

    values = {name: ctx.evaluator.evaluate(text, root) for name, text in variant.vars.items()}
    values["index"] = index

    def fill(text: str | None) -> str | None:
        if not text:
            return None
        # Most remediations and locations are plain text: skip compiling them as templates.
        return render(text, values) if "{" in text else " ".join(text.split())

    details = {"variant": variant.name} if variant.name else {}
    return Finding(rule=rule.id, severity=_severity(ctx, rule, variant, root), message=fill(variant.message) or "",
                   location=_locate(ctx, fill(variant.at) or ""), scope=rule.scope,
                   remediation=fill(variant.remediation) or "", provider=fill(variant.provider),
                   option=fill(variant.option), details=details)


def evaluate_rule(ctx: _Context, rule: CheckRule) -> list[Finding]:
    """Findings of one declarative rule: every variant, every item, where the conditions hold."""
    base = ctx.roots[rule.scope]
    out = []
    for variant in rule.variants:
        for index, item in _items(ctx, variant, base):
            root = dict(base, item=item, index=index) if variant.for_each else base
            if variant.when and ctx.evaluator.holds(variant.when, root):
                out.append(_finding(ctx, rule, variant, root, index))
    return out


def _mas_config_validation(ctx: _Context, rule: CheckRule) -> list[Finding]:
    """`mas-config-invalid`: MAS's published schema plus mapping.md 6.2, or the 6.2 rules alone without a schema."""
    assert ctx.mas is not None
    if ctx.options.mas_schema:
        from .masvalidate import validate_mas_config  # jsonschema is slow to import: only when a schema is given

        return validate_mas_config(ctx.mas, ctx.options.mas_schema)
    from .masrules import rule_findings

    findings = rule_findings(ctx.mas)
    first = ctx.mas.files[0] if ctx.mas.files else ""
    findings.append(Finding(
        rule="note", severity="info", scope=rule.scope, location=Location(first, 1, 1),
        message="the MAS configuration was checked against the rules of mapping.md section 6 only, not against "
                "MAS's published JSON Schema, because no schema was given",
        remediation="Pass `--mas-schema PATH` (or set `SYN2MAS_MAS_SCHEMA`) to the `config.schema.json` of the "
                    "MAS release you deploy."))
    return findings


EVALUATORS: dict[str, Callable[[_Context, CheckRule], list[Finding]]] = {
    "mas-config-validation": _mas_config_validation,
}


def run_checks(rules: list[CheckRule] | tuple[CheckRule, ...], synapse: ConfigDoc, mas: ConfigDoc | None = None,
               options: CheckOptions | None = None) -> CheckRun:
    """Evaluate the `synapse` and `synapse+mas` rules among ``rules``; without MAS, list the latter as skipped."""
    from .predicates import Evaluator

    options = options or CheckOptions()
    rules_dir = options.rules_dir or default_rules_dir()
    evaluator = Evaluator(rules_dir)
    roots: dict[str, Any] = {"synapse": synapse.data}
    if mas is not None:
        # `mas` is what MAS runs with (its defaults filled in); `mas_raw` what the files say.
        roots["synapse+mas"] = {"synapse": synapse.data, "mas": with_defaults(mas.data, mas_defaults(rules_dir)),
                                "mas_raw": mas.data}
    ctx = _Context(rules_dir, synapse, mas, options, evaluator, roots)
    run = CheckRun()
    for rule in rules:
        if rule.scope not in CONFIG_SCOPES:
            continue
        if rule.scope == "synapse+mas" and mas is None:
            run.skipped.append(SkippedRule(rule.id, "needs the MAS configuration (`--config`)"))
            continue
        if rule.evaluator:
            run.findings.extend(EVALUATORS[rule.evaluator](ctx, rule))
        else:
            run.findings.extend(evaluate_rule(ctx, rule))
    run.file_secrets = set(evaluator.file_secrets)
    return run


def rule_holds(rule_id: str, synapse: ConfigDoc, rules_dir: str | None = None) -> bool:
    """Whether the `synapse`-scope rule ``rule_id`` fires on ``synapse`` (e.g. `saml2-enabled` for known ids)."""
    rule = rules_by_id(rules_dir)[rule_id]
    return bool(run_checks([rule], synapse, None, CheckOptions(rules_dir=rules_dir)).findings)


def known_provider_ids(synapse: ConfigDoc, rules_dir: str | None = None) -> list[str]:
    """checks.md 4.3 "known" providers: the Synapse OIDC keys, `saml` when `saml2-enabled` fires, `cas` when
    `cas-enabled` fires. Sorted."""
    from .synapse_providers import synapse_oidc_keys

    known = set(synapse_oidc_keys(synapse.data))
    if rule_holds("saml2-enabled", synapse, rules_dir):
        known.add("saml")
    if rule_holds("cas-enabled", synapse, rules_dir):
        known.add("cas")
    return sorted(known)
