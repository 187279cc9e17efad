"""`syn2mas rules lint`: the rule files lint themselves (style.md 3, 8.3).

Beyond what loading already enforces (schema, unique ids, no sensitive `vars`), this checks that
templates only use declared variables, expressions only call known functions, and that every rule has
a firing and a silent test case at the mirrored path under tests/rules/.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from .checks import CheckRule, load_check_rules
from .errors import Syn2MasError
from .expr import compile_expr
from .rulecases import default_cases_dir, load_case_file, roles
from .rulefiles import default_rules_dir, discover

_TEMPLATE_FIELDS = ("message", "remediation", "at", "provider", "option")


@dataclass(frozen=True)
class Problem:
    """One lint problem at ``file``:``line``."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


def _known_functions(rules_dir: str) -> set[str]:
    from .predicates import CheckFunctions

    return set(CheckFunctions.FUNCTION_TABLE)


def _called(node: dict) -> set[str]:
    names = {node["value"]} if node.get("type") == "function_expression" else set()
    for kid in node.get("children", []):
        if isinstance(kid, dict):
            names |= _called(kid)
    return names


def _template_problems(rule: CheckRule) -> list[str]:
    from jinja2 import meta
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment()
    out = []
    for variant in rule.variants:
        declared = set(variant.vars) | {"index"}
        for name in _TEMPLATE_FIELDS:
            text = getattr(variant, name)
            if not text:
                continue
            missing = sorted(meta.find_undeclared_variables(env.parse(text)) - declared)
            if missing:
                where = f" (variant `{variant.name}`)" if variant.name else ""
                out.append(f"rule `{rule.id}`{where}: `{name}` uses undeclared variable(s) {', '.join(missing)}; "
                           "templates see only `vars` and `index`")
    return sorted(set(out))


def _expression_problems(rule: CheckRule, known: set[str]) -> list[str]:
    out = []
    texts = [t for v in rule.variants for t in (v.for_each, v.when, *v.vars.values()) if t]
    for text in texts:
        unknown = sorted(_called(compile_expr(text).parsed) - known)
        if unknown:
            out.append(f"rule `{rule.id}`: unknown function(s) {', '.join(unknown)} in `{' '.join(text.split())}`")
    return sorted(set(out))


def _case_problems(rule: CheckRule, cases: dict, case_file: str) -> list[str]:
    mine = cases.get(rule.id)
    if not mine:
        return [f"rule `{rule.id}` has no test cases in {case_file}"]
    found = set().union(*(roles(case or {}, rule.id) for case in mine.values()))
    return [f"rule `{rule.id}` has no {kind} case in {case_file}" for kind in ("fires", "silent") if kind not in found]


def lint_rules(rules_dir: str | None = None, cases_dir: str | None = None) -> list[Problem]:
    """Every problem of the rule catalogue and its cases; an empty list means the catalogue is sound.

    A rule file that cannot be loaded at all (schema, sensitive vars) is reported as its single problem.
    """
    rules_dir = rules_dir or default_rules_dir()
    cases_dir = cases_dir or default_cases_dir(rules_dir)
    try:
        rules = load_check_rules(rules_dir)
        mapping_files = discover(rules_dir, "mapping")
    except Syn2MasError as exc:
        return [Problem(exc.file or rules_dir, exc.line or 1, exc.message)]
    problems: list[Problem] = []
    known = _known_functions(rules_dir)
    case_cache: dict[str, dict] = {}
    for rule in rules:
        rel = rule.source.rel
        case_path = os.path.join(cases_dir, rel)
        if rel not in case_cache:
            case_cache[rel] = load_case_file(case_path) if os.path.isfile(case_path) else {}
        messages = _expression_problems(rule, known) + _case_problems(rule, case_cache[rel], f"tests/rules/{rel}")
        if rule.scope != "database":
            messages = _template_problems(rule) + messages
        problems += [Problem(rule.source.path, rule.where.line, m) for m in messages]
    for mapping_file in mapping_files:
        case_path = os.path.join(cases_dir, mapping_file.rel)
        cases = load_case_file(case_path) if os.path.isfile(case_path) else {}
        for index, rule in enumerate(mapping_file.data.get("rules") or []):
            if not cases.get(rule.get("id")):
                loc = mapping_file.where(("rules", index))
                problems.append(Problem(mapping_file.path, loc.line,
                                        f"rule `{rule.get('id')}` has no test cases in tests/rules/{mapping_file.rel}"))
    problems += _orphan_cases(rules_dir, cases_dir, rules, mapping_files)
    from .rulebundle import bundle_path, is_fresh

    if not is_fresh(rules_dir):
        problems.append(Problem(bundle_path(rules_dir), 1, "the compiled catalogue is missing or stale, so `lint` "
                                "parses the YAML on every run; regenerate it with `syn2mas rules compile`"))
    return sorted(problems, key=lambda p: (p.file, p.line, p.message))


def _orphan_cases(rules_dir: str, cases_dir: str, rules, mapping_files) -> list[Problem]:
    """Case files without a rule file, and cases keyed by an id their rule file does not define."""
    ids: dict[str, set[str]] = {}
    for rule in rules:
        ids.setdefault(rule.source.rel, set()).add(rule.id)
    for mf in mapping_files:
        ids.setdefault(mf.rel, set()).update(r.get("id") for r in mf.data.get("rules") or [])
    out = []
    for sub in ("checks", "mapping"):
        for root, dirs, files in os.walk(os.path.join(cases_dir, sub)):
            dirs.sort()
            for name in sorted(f for f in files if f.endswith(".yaml")):
                path = os.path.join(root, name)
                rel = os.path.relpath(path, cases_dir)
                if rel not in ids:
                    out.append(Problem(path, 1, f"no rule file rules/{rel} for these cases"))
                    continue
                for rule_id in load_case_file(path):
                    if rule_id not in ids[rel]:
                        out.append(Problem(path, 1, f"cases for `{rule_id}`, which rules/{rel} does not define"))
    return out
