"""Fixtures of the translator tests: a writable copy of the shipped rules, the test entropy."""
from __future__ import annotations

import shutil

import pytest

from engine.rulefiles import default_rules_dir


@pytest.fixture
def rules_copy(tmp_path):
    """A copy of the shipped rules directory that a test may change (pass it as ``rules_dir``)."""
    target = tmp_path / "rules"
    shutil.copytree(default_rules_dir(), target, ignore=shutil.ignore_patterns("__pycache__"))
    return target
