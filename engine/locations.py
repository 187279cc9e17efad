"""Positions of findings: file, 1-based line and column, key path; the single place 0-based positions are converted."""
from __future__ import annotations

import re
from dataclasses import dataclass

PathPart = str | int
Path = tuple[PathPart, ...]


@dataclass(frozen=True, order=True)
class Location:
    """Where a finding or a value comes from. ``logical`` is set for database findings (``synapse-db:devices``)."""

    file: str = ""
    line: int = 1
    column: int = 1
    key_path: str = ""
    logical: str | None = None

    def __post_init__(self) -> None:
        if self.line < 1 or self.column < 1:
            raise ValueError(f"positions are 1-based, got line {self.line} column {self.column}")

    @classmethod
    def from_mark(cls, file: str, line0: int, column0: int, key_path: str = "") -> "Location":
        """Convert a YAML library's 0-based mark; the only place such a conversion happens."""
        return cls(file=file, line=line0 + 1, column=column0 + 1, key_path=key_path)


_TOKEN = re.compile(r"\[(\d+)\]|\.?([^.\[\]]+)")


def format_path(path: Path) -> str:
    """``('oidc_providers', 1, 'client_secret')`` -> ``oidc_providers[1].client_secret``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def parse_path(text: str) -> Path:
    """Inverse of :func:`format_path` for plain dotted/indexed paths."""
    parts: list[PathPart] = []
    for index, key in _TOKEN.findall(text):
        parts.append(int(index) if index else key)
    return tuple(parts)
