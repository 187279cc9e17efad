"""Thin writers over one finding record: text, json, sarif, github, parsable (style.md 5)."""
from __future__ import annotations

import importlib
import os
from typing import Mapping

from .model import Report

FORMATS = ("text", "json", "sarif", "github", "parsable")
_MODULES = {"text": "text", "json": "json_report", "sarif": "sarif", "github": "github", "parsable": "parsable"}


def resolve_format(fmt: str, env: Mapping[str, str] | None = None) -> str:
    """`auto` is `github` under GitHub Actions (`GITHUB_ACTIONS=true`), `text` otherwise."""
    if fmt != "auto":
        return fmt
    env = os.environ if env is None else env
    return "github" if env.get("GITHUB_ACTIONS") == "true" else "text"


def render(report: Report, fmt: str, *, color: bool = False) -> str:
    """The report in format ``fmt`` (already resolved), ending with a newline."""
    module = importlib.import_module(f"{__name__}.{_MODULES[fmt]}")
    return module.render(report, color=color)


__all__ = ["FORMATS", "Report", "render", "resolve_format"]
