"""The Jinja2-free renderer gives Jinja2's text for every template it accepts, and declines the rest."""
from __future__ import annotations

import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from engine.errors import RuleFileError
from engine.render import render
from engine.rulefiles import default_rules_dir
from engine.simpletemplate import try_render

_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)


def _jinja(text: str, variables: dict) -> str | None:
    """Jinja2's normalised output, or None when it raises."""
    try:
        return " ".join(_ENV.from_string(text).render(**variables).split())
    except TemplateError:
        return None


def _same_as_jinja(text: str, variables: dict) -> None:
    quick = try_render(text, variables)
    if quick is not None:
        assert " ".join(quick.split()) == _jinja(text, variables)


@pytest.mark.parametrize("text, variables, expected", [
    ("plain `{x: 1}` text", {}, "plain `{x: 1}` text"),
    ("`{{ key }}` is on ({{ n }})", {"key": "a", "n": 2}, "`a` is on (2)"),
    ("{{ item.grp }}: {{ item.count }}", {"item": {"grp": "g", "count": 3}}, "g: 3"),
    ("a{% if x %}b{% elif not y %}c{% else %}d{% endif %}e", {"x": 0, "y": ""}, "ace"),
    ("{% if a %}{% if b %}ab{% endif %}a{% endif %}", {"a": [1], "b": None}, "a"),
    ("{{ v }} {{ w }} {{ z }}", {"v": None, "w": [1, "x"], "z": True}, "None [1, 'x'] True"),
])
def test_covered_templates_render_as_jinja(text, variables, expected):
    assert try_render(text, variables) == expected
    assert _jinja(text, variables) == expected


@pytest.mark.parametrize("text, variables", [
    ("{{ x | length }}", {"x": []}),                     # filter
    ("{{- x }}", {"x": 1}),                              # whitespace control
    ("{# comment #}", {}),
    ("{{ missing }}", {}),                               # Jinja2 raises (strict undefined)
    ("{{ range }}", {}),                                 # a Jinja2 global, not a variable
    ("{{ none }}", {"none": 1}),                          # a constant in Jinja2
    ("{{ d.items }}", {"d": {"items": 1}}),              # the dict method wins in Jinja2
    ("{{ d.k }}", {"d": {}}),
    ("{{ s.k }}", {"s": "text"}),
    ("{% if x %}unclosed", {"x": 1}),
    ("{% endif %}", {}),
    ("{% if x %}{% else %}{% elif y %}{% endif %}", {"x": 1, "y": 1}),
    ("{% for i in x %}{% endfor %}", {"x": []}),
    ("{{ a and b }}", {"a": 1, "b": 1}),
])
def test_everything_else_is_left_to_jinja(text, variables):
    assert try_render(text, variables) is None


def test_a_branch_not_taken_may_name_a_missing_variable_as_in_jinja():
    assert try_render("{% if x %}{{ missing }}{% endif %}ok", {"x": False}) == "ok"
    with pytest.raises(RuleFileError):
        render("{% if x %}{{ missing }}{% endif %}", {"x": True})


_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                       lambda kids: st.lists(kids, max_size=2) | st.dictionaries(st.sampled_from("abk"), kids,
                                                                                 max_size=2), max_leaves=4)
_PIECES = st.sampled_from([
    "text ", " ", "\n", "{", "}", "%}", "}}", "{x: 1}", "{{ a }}", "{{ b.k }}", "{{ a.a }}", "{{a}}", "{{ c }}",
    "{% if a %}", "{% if not b %}", "{% if b.k %}", "{% elif a %}", "{% elif not c %}", "{% else %}",
    "{% endif %}", "{{ a|length }}", "{{- a }}", "{# c #}", "{{ none }}", "{{ b.keys }}", "{% if a.b.k %}",
])


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, max_size=8).map("".join),
       st.dictionaries(st.sampled_from("abc"), _VALUES, max_size=3))
def test_property_same_text_as_jinja_whenever_covered(text, variables):
    _same_as_jinja(text, variables)


def test_every_catalogue_template_is_either_covered_identically_or_left_to_jinja():
    with open(os.path.join(default_rules_dir(), "checks.compiled.json"), encoding="utf-8") as fh:
        bundle = json.load(fh)
    texts = set()
    for entry in bundle["files"]:
        for rule in entry["data"]["rules"]:
            for spec in [rule] + list(rule.get("variants") or []):
                texts |= {spec[k] for k in ("message", "remediation", "at", "provider", "option")
                          if isinstance(spec.get(k), str)}
    values = [None, "", "x", 0, 2, True, False, [], ["a", "b"], {}]
    for text in sorted(texts):
        for value in values:
            variables = {n: value for n in ("key", "state", "delegated", "overlay", "note", "provider", "count",
                                            "disabled", "invalid", "transport", "reason", "sessions")}
            variables["item"] = variables["check"] = {"grp": value, "count": value, "path": value}
            _same_as_jinja(text, variables)
