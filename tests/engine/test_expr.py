"""Expression semantics: Synapse's truthiness, not JMESPath's."""
from __future__ import annotations

import pytest

from engine.expr import evaluate, holds, synapse_strtobool
from engine.errors import RuleFileError
from engine.render import render


@pytest.mark.parametrize("value, expected", [
    (None, False), (False, False), (0, False), ("", False), ({}, False), ([], False),
    (1, True), ("x", True), ({"a": 1}, True), (True, True),
])
def test_truthy_is_python_truthiness(value, expected):
    assert holds("truthy(v)", {"v": value}) is expected
    assert holds("truthy(missing)", {}) is False


def test_plain_jmespath_would_treat_zero_as_true_which_is_why_truthy_exists():
    assert evaluate("v && `true`", {"v": 0}) is True
    assert holds("truthy(v)", {"v": 0}) is False


@pytest.mark.parametrize("value, expected", [(True, True), ("true", False), (1, False), (None, False)])
def test_explicit_true(value, expected):
    assert holds("explicit_true(v)", {"v": value}) is expected


@pytest.mark.parametrize("value, expected", [
    ("yes", True), ("On", True), ("1", True), (1, True), (True, True),
    ("no", False), ("off", False), (0, False), (False, False), (None, False), ("maybe", None),
])
def test_synapse_strtobool(value, expected):
    assert synapse_strtobool(value) is expected
    assert holds("synapse_strtobool(v)", {"v": value}) is bool(expected)


def test_invalid_expression_is_a_rule_file_error():
    with pytest.raises(RuleFileError):
        evaluate("a[", {})


def test_render_is_strict_and_sandboxed():
    assert render("`{{ key }}` is on ({{ n }})", {"key": "cas_config", "n": 2}) == "`cas_config` is on (2)"
    with pytest.raises(RuleFileError):
        render("{{ undefined_var }}", {})
    with pytest.raises(RuleFileError):
        render("{{ ''.__class__.__mro__[1].__subclasses__() }}", {})
