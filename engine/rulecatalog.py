"""The check-rule catalogue for people: `rules list`, `rules explain ID` and the generated docs (`rules docs DIR`).

Everything here is generated from the rule files and their test cases, never maintained by hand.
"""
from __future__ import annotations

import os
from typing import Any

from .checks import CheckRule, load_check_rules, rules_by_id
from .errors import Syn2MasError
from .rulecases import cases_for, default_cases_dir, roles, snippets
from .rulefiles import default_rules_dir


def severities_text(rule: CheckRule) -> str:
    """`error`, or `error/warning` for a rule with an unverifiable or downgraded form."""
    return "/".join(rule.severities)


def list_rows(rules_dir: str | None = None) -> list[dict[str, str]]:
    """One row per check rule, in catalogue order (rule files sorted, rules in file order)."""
    return [{"id": r.id, "severity": severities_text(r), "scope": r.scope, "summary": r.summary,
             "file": os.path.relpath(r.source.path, rules_dir or default_rules_dir()).replace(os.sep, "/")}
            for r in load_check_rules(rules_dir)]


def list_text(rules_dir: str | None = None) -> str:
    """A fixed-width table of the catalogue."""
    rows = list_rows(rules_dir)
    width = {k: max(len(k), *(len(r[k]) for r in rows)) for k in ("id", "severity", "scope")}
    header = {"id": "id", "severity": "severity", "scope": "scope", "summary": "summary"}
    lines = [f"{r['id'].ljust(width['id'])}  {r['severity'].ljust(width['severity'])}  "
             f"{r['scope'].ljust(width['scope'])}  {r['summary']}" for r in [header, *rows]]
    return "\n".join(lines) + "\n"


def get_rule(rule_id: str, rules_dir: str | None = None) -> CheckRule:
    """The rule ``rule_id``; an unknown id is a usage error naming the closest ids."""
    import difflib

    rules = rules_by_id(rules_dir)
    if rule_id not in rules:
        close = difflib.get_close_matches(rule_id, list(rules), n=3)
        raise Syn2MasError(f"unknown rule `{rule_id}`", hint=("did you mean " + ", ".join(f"`{c}`" for c in close))
                           if close else "`syn2mas rules list` shows every rule")
    return rules[rule_id]


def _condition(rule: CheckRule) -> list[tuple[str | None, dict[str, Any]]]:
    """(variant name, its resolved `for_each`, `when`, severity and own message) for each way the rule fires."""
    return [(v.name, {"for_each": v.for_each, "when": " ".join((v.when or "").split()), "severity": v.severity,
                      "message": " ".join(v.message.split()) if v.message != rule.message else None})
            for v in rule.variants]


def _examples(rule: CheckRule, cases_dir: str) -> list[tuple[str, str, dict]]:
    cases = cases_for(cases_dir, rule.source.rel).get(rule.id, {})
    out = []
    for name, case in cases.items():
        kind = roles(case or {}, rule.id)
        label = "fires" if "fires" in kind else "silent" if "silent" in kind else "case"
        out.append((label, name, case or {}))
    return out


def explain_text(rule_id: str, rules_dir: str | None = None, cases_dir: str | None = None) -> str:
    """What `syn2mas rules explain ID` prints: the rule's purpose, severity, fix, conditions and case names."""
    rules_dir = rules_dir or default_rules_dir()
    rule = get_rule(rule_id, rules_dir)
    where = rule.where
    lines = [f"{rule.id} ({severities_text(rule)}, scope {rule.scope})", "", rule.summary, "",
             "Message (template): " + " ".join(rule.message.split()), "",
             "Fix: " + " ".join(rule.remediation.split()), ""]
    for name, cond in _condition(rule):
        label = f"variant `{name}`" if name else "condition"
        parts = [f"for each of {cond['for_each']}" if cond["for_each"] else "",
                 f"when {cond['when']}"]
        if name and cond["severity"]:
            parts.append(f"({cond['severity']})")
        lines.append(f"{label}: " + " ".join(p for p in parts if p))
    if rule.evaluator:
        lines.append(f"evaluated by: {rule.evaluator}")
    lines.append(f"defined in: {os.path.relpath(where.file, rules_dir)}:{where.line}")
    examples = _examples(rule, cases_dir or default_cases_dir(rules_dir))
    if examples:
        lines += ["", "test cases:"] + [f"  {label:6}  {name}" for label, name, _ in examples]
    if rule.references:
        lines += ["", "references:"] + [f"  - {r}" for r in rule.references]
    return "\n".join(lines) + "\n"


def _fence(text: str, lang: str = "yaml") -> list[str]:
    return [f"```{lang}", text.rstrip("\n"), "```"]


def doc_page(rule: CheckRule, rules_dir: str, cases_dir: str) -> str:
    """The Markdown page of one rule, with its test cases as examples (so every example is known to run)."""
    rel = os.path.relpath(rule.source.path, rules_dir).replace(os.sep, "/")
    lines = [f"# `{rule.id}`", "", rule.summary, "",
             "| severity | scope | defined in |", "| --- | --- | --- |",
             f"| {severities_text(rule)} | {rule.scope} | `rules/{rel}` line {rule.where.line} |", "",
             "## What it reports", "", "Message template (Jinja, over the rule's `vars`):", "",
             *_fence(" ".join(rule.message.split()), "jinja"), "",
             "## How to fix", "", " ".join(rule.remediation.split()), ""]
    conditions = _condition(rule)
    if not rule.evaluator and rule.scope != "database":
        lines += ["## Condition", ""]
        for name, cond in conditions:
            if name:
                lines.append(f"Variant `{name}`" + (f" ({cond['severity']})" if cond["severity"] else "") + ":")
                lines.append("")
            if cond["for_each"]:
                lines += [f"For each item of `{cond['for_each']}`:", ""]
            lines += _fence(cond["when"], "text") + [""]
            if cond["message"]:
                lines += ["Message:", ""] + _fence(cond["message"], "jinja") + [""]
    elif rule.evaluator:
        lines += ["## Condition", "", f"Evaluated in Python (`{rule.evaluator}`): MAS's published JSON Schema and the "
                  "rules of mapping.md section 6.", ""]
    examples = _examples(rule, cases_dir)
    if examples:
        lines += ["## Examples", "", "From the rule's test cases (`tests/rules/" + rel + "`); `# expect:` marks the "
                  "line a finding is reported on, `# ok:` a line where it is not.", ""]
        for label, name, case in examples:
            lines += [f"### {label}: {name.replace('_', ' ')}", ""]
            for snip in snippets(case):
                lines += [f"`{snip.name}`:", ""] + _fence(snip.text, "yaml" if snip.role != "data" else "text") + [""]
            if case.get("synapse_db") or case.get("mas_db"):
                import json

                rows = {k: case[k] for k in ("synapse_db", "mas_db") if case.get(k)}
                lines += ["Database rows:", ""] + _fence(json.dumps(rows, indent=2, default=str), "json") + [""]
    if rule.references:
        lines += ["## References", ""] + [f"- {r}" for r in rule.references] + [""]
    return "\n".join(lines)


def write_docs(out_dir: str, rules_dir: str | None = None, cases_dir: str | None = None) -> list[str]:
    """Write `<id>.md` for every check rule plus `index.md`; returns the files written, sorted."""
    rules_dir = rules_dir or default_rules_dir()
    cases_dir = cases_dir or default_cases_dir(rules_dir)
    os.makedirs(out_dir, exist_ok=True)
    written = []
    rules = load_check_rules(rules_dir)
    for rule in rules:
        path = os.path.join(out_dir, f"{rule.id}.md")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(doc_page(rule, rules_dir, cases_dir))
        written.append(path)
    index = ["# syn2mas check rules", "", "Generated by `syn2mas rules docs` from `rules/checks/` and their test "
             "cases; do not edit.", "", "| rule | severity | scope | summary |", "| --- | --- | --- | --- |"]
    index += [f"| [`{r.id}`]({r.id}.md) | {severities_text(r)} | {r.scope} | {r.summary} |" for r in rules]
    path = os.path.join(out_dir, "index.md")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(index) + "\n")
    written.append(path)
    return sorted(written)
