"""Which configuration paths a JMESPath expression can copy into its result (for the sensitive-`vars` check).

A rule's `vars` feed its message. A var whose result may contain a value read from a path of
rules/sensitive.yaml, or from an ancestor of one (a whole section holding a secret), is rejected when
the rule is loaded. Conditions (`when`, comparisons, opaque predicates) only decide, they never copy,
so paths read inside them do not count.
"""
from __future__ import annotations

import re
from typing import Iterable

ANY_INDEX = "[]"
ANY_KEY = "*"
Path = tuple[str, ...]


def _compose(lefts: list[Path], rights: list[Path]) -> list[Path]:
    return [left + right for left in lefts for right in rights]


def _collapse(path: Path) -> Path:
    out: list[str] = []
    for part in path:
        if part == ANY_INDEX and out and out[-1] == ANY_INDEX:
            continue  # a[][] and a[] read the same items as far as secrets go
        out.append(part)
    return tuple(out)


def output_paths(node: dict, opaque: frozenset[str]) -> list[Path]:
    """Paths (relative to the current node) whose values may appear in the result of ``node``."""
    kind = node["type"]
    kids = node.get("children", [])
    if kind == "field":
        return [(node["value"],)]
    if kind in ("current", "identity"):
        return [()]
    if kind in ("literal", "comparator", "not_expression", "index", "slice", "expref"):
        return []
    if kind in ("subexpression", "pipe"):  # the parser may flatten a.b.c into one node with three children
        paths = output_paths(kids[0], opaque)
        for kid in kids[1:]:
            paths = _compose(paths, output_paths(kid, opaque))
        return paths
    if kind == "index_expression":
        return _compose(output_paths(kids[0], opaque), [(ANY_INDEX,)])
    if kind == "flatten":
        return _compose(output_paths(kids[0], opaque), [(ANY_INDEX,)])
    if kind in ("projection", "filter_projection"):
        # children: left, right (and the filter's comparator, which only decides)
        return _compose(_compose(output_paths(kids[0], opaque), [(ANY_INDEX,)]), output_paths(kids[1], opaque))
    if kind == "value_projection":
        return _compose(_compose(output_paths(kids[0], opaque), [(ANY_KEY,)]), output_paths(kids[1], opaque))
    if kind in ("or_expression", "and_expression", "multi_select_list", "multi_select_dict"):
        return [p for kid in kids for p in output_paths(kid, opaque)]
    if kind == "key_val_pair":
        return output_paths(kids[0], opaque)
    if kind == "function_expression":
        name = node["value"]
        if name in opaque:
            return []
        if name == "map":  # map(&expr, list): expr applied to each item of list
            return _compose(_compose(output_paths(kids[1], opaque), [(ANY_INDEX,)]),
                            output_paths(kids[0]["children"][0], opaque))
        return [p for kid in kids for p in output_paths(kid, opaque)]
    # Unknown node types are treated as copying the whole current value: safe by default.
    return [()]


def pattern_parts(pattern: str) -> Path:
    """`oidc_providers[].client_secret` -> ('oidc_providers', '[]', 'client_secret')."""
    return _collapse(tuple(re.findall(r"\[\]|[^.\[\]]+", pattern)))


def _part_matches(a: str, b: str) -> bool:
    return a == b or ANY_KEY in (a, b)  # `*` may stand for a key or an index: err on the safe side


def overlaps(path: Path, pattern: Path) -> bool:
    """True when ``path`` is a sensitive path, inside one, or an ancestor of one."""
    path = _collapse(path)
    return all(_part_matches(a, b) for a, b in zip(path, pattern, strict=False))  # a prefix either way


def sensitive_hits(paths: Iterable[Path], patterns: Iterable[str]) -> list[str]:
    """The sensitive patterns that any of ``paths`` overlaps, sorted."""
    parsed = [(p, pattern_parts(p)) for p in patterns]
    return sorted({text for path in paths for text, parts in parsed if overlaps(path, parts)})
