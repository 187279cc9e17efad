"""A fast path for YAML configuration files, so that `lint` need neither import ruamel nor run its pure-Python
scanner (together about a fifth of `lint`'s run time).

libyaml (PyYAML's ``CSafeLoader``) composes the text; this module turns its nodes into what the builder of
engine/yamlsource.py needs, resolving plain scalars by ruamel's implicit resolvers for the YAML version (1.1
for Synapse, 1.2 for MAS; the table is copied below and a test compares it with ruamel's). :func:`compose`
returns None - and yamlsource then composes the file with ruamel, which stays the reference and reports every
error - for anything unusual: no libyaml, any libyaml error, several documents, directives, tabs, aliases,
explicit tags, merge keys, timestamps, non-decimal numbers, ...

The nodes are libyaml's (``id``, ``tag``, ``value``, ``start_mark`` with 0-based ``line`` and ``column``, as
ruamel's); each scalar also carries ``data``, its value as ruamel's safe constructor builds it.
"""
from __future__ import annotations

import functools
import re
from typing import Any

_STD = "tag:yaml.org,2002:"
STR, NULL, BOOL, INT, FLOAT = (f"{_STD}{t}" for t in ("str", "null", "bool", "int", "float"))
MAP, SEQ = f"{_STD}map", f"{_STD}seq"

# ruamel.yaml.resolver.implicit_resolvers: (versions, tag, pattern, first characters), in ruamel's order;
# the empty scalar is filed under the first character "".
RESOLVERS: list[tuple[tuple[tuple[int, int], ...], str, str, tuple[str, ...]]] = [
    (((1, 2),), BOOL, r"^(?:true|True|TRUE|false|False|FALSE)$", tuple("tTfF")),
    (((1, 1),), BOOL, r"""^(?:y|Y|yes|Yes|YES|n|N|no|No|NO
        |true|True|TRUE|false|False|FALSE
        |on|On|ON|off|Off|OFF)$""", tuple("yYnNtTfFoO")),
    (((1, 2),), FLOAT, r"""^(?:
         [-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |[-+]?\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""", tuple("-+0123456789.")),
    (((1, 1),), FLOAT, r"""^(?:
         [-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*  # sexagesimal float
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""", tuple("-+0123456789.")),
    (((1, 2),), INT, r"""^(?:[-+]?0b[0-1_]+
        |[-+]?0o?[0-7_]+
        |[-+]?[0-9_]+
        |[-+]?0x[0-9a-fA-F_]+)$""", tuple("-+0123456789")),
    (((1, 1),), INT, r"""^(?:[-+]?0b[0-1_]+
        |[-+]?0?[0-7_]+
        |[-+]?(?:0|[1-9][0-9_]*)
        |[-+]?0x[0-9a-fA-F_]+
        |[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$""", tuple("-+0123456789")),
    (((1, 2), (1, 1)), f"{_STD}merge", r"^(?:<<)$", tuple("<")),
    (((1, 2), (1, 1)), NULL, r"""^(?: ~
        |null|Null|NULL
        | )$""", ("~", "n", "N", "")),
    (((1, 2), (1, 1)), f"{_STD}timestamp", r"""^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]
        |[0-9][0-9][0-9][0-9] -[0-9][0-9]? -[0-9][0-9]?
        (?:[Tt]|[ \t]+)[0-9][0-9]?
        :[0-9][0-9] :[0-9][0-9] (?:\.[0-9]*)?
        (?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$""", tuple("0123456789")),
    (((1, 2), (1, 1)), f"{_STD}value", r"^(?:=)$", tuple("=")),
    (((1, 2), (1, 1)), f"{_STD}yaml", r"^(?:!|&|\*)$", tuple("!&*")),
]
_DECIMAL = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")
_PLAIN_FLOAT = re.compile(r"[-+]?[0-9]+\.[0-9]+")
_BOOL_VALUES = {"yes": True, "no": False, "y": True, "n": False, "true": True, "false": False, "on": True,
                "off": False}
# The tags our resolver gives, marked so that an explicit tag (which libyaml does not resolve) is told apart.
_MARK = "yamlfast:"
_TAKEN = {f"{_MARK}{tag}": tag for tag in (STR, NULL, BOOL, INT, FLOAT, MAP, SEQ)}
# Texts left to ruamel: directives (`%YAML 1.1` changes the resolution); anchors and tags, or text that may be
# one (`&` or `!` where a token starts: ruamel and libyaml end their names differently, as in `&a:`); and what
# the two read differently: the line breaks NEL, LS, PS and the byte order mark (lines counted otherwise),
# lines of spaces only (before a block scalar's content), tabs (`a:\tb`) and a comment right after a block
# scalar header (`|#`), both of which libyaml takes and ruamel rejects.
_DECLINED = re.compile("^%|(?:^|[ ,\\[{])[&!]|[\t\x85\u2028\u2029\ufeff]|[|>][-+0-9]*#|^ +\r?$", re.M)
EMPTY = object()  # returned for a document without content (ruamel composes no document)


class _Unsupported(Exception):
    """Outside what the fast path takes: ruamel composes the file."""


@functools.lru_cache(maxsize=None)
def _resolvers(version: tuple[int, int]) -> dict[str, list[tuple[str, re.Pattern]]]:
    table: dict[str, list[tuple[str, re.Pattern]]] = {}
    for versions, tag, pattern, first in RESOLVERS:
        if version in versions:
            for ch in first:
                table.setdefault(ch, []).append((tag, pattern))
    return table


@functools.lru_cache(maxsize=None)
def _regex(pattern: str) -> re.Pattern:
    return re.compile(pattern, re.X)


def resolve(text: str, version: tuple[int, int]) -> str:
    """The tag ruamel's implicit resolvers give the plain scalar ``text``."""
    for tag, pattern in _resolvers(version).get(text[:1], ()):
        if _regex(pattern).match(text):
            return tag
    return STR


@functools.lru_cache(maxsize=None)
def _loader_class():
    """PyYAML's libyaml loader with ruamel's resolution, or None without libyaml."""
    try:
        from yaml import CSafeLoader, YAMLError
        from yaml.nodes import ScalarNode
    except ImportError:
        return None

    class Loader(CSafeLoader):
        version: tuple[int, int] = (1, 2)

        def resolve(self, kind, value, implicit):
            # Called by libyaml's composer for nodes without a tag (or with the non-specific `!`), with
            # ruamel's (and PyYAML's) implicit flags: (plain, quoted) for scalars, a bool for collections.
            if kind is ScalarNode:
                if implicit[0]:
                    tag = resolve(value, self.version)
                    if not (tag in (STR, NULL, BOOL) or tag == INT and _DECIMAL.fullmatch(value)
                            or tag == FLOAT and _PLAIN_FLOAT.fullmatch(value)):
                        raise _Unsupported  # merge keys, timestamps, non-decimal numbers, ...
                    return _MARK + tag
                if implicit[1]:
                    return _MARK + STR
                raise _Unsupported
            if not implicit:
                raise _Unsupported  # a collection tagged `!`
            return _MARK + (MAP if kind.id == "mapping" else SEQ)

    return Loader, YAMLError


def _data(tag: str, text: str) -> Any:
    """The value ruamel's safe constructor gives a scalar of the forms the resolver above lets through."""
    if tag == STR:
        return text
    if tag == NULL:
        return None
    if tag == BOOL:
        return _BOOL_VALUES[text.lower()]
    if tag == INT:
        return (-1 if text[0] == "-" else 1) * int(text.lstrip("+-"))
    return (-1 if text[0] == "-" else 1) * float(text.lstrip("+-"))


def _finish(node: Any, seen: set[int], flow: bool = False) -> None:
    """Give ``node`` and its children their standard tags and scalars their ``data``; an alias (a node met
    twice), an explicitly tagged node or a plain scalar with `?` in a flow collection (where ruamel's plain
    scalars end) is unsupported."""
    if id(node) in seen:
        raise _Unsupported
    seen.add(id(node))
    tag = _TAKEN.get(node.tag)
    if tag is None:
        raise _Unsupported
    node.tag = tag
    if node.id == "scalar":
        if flow and not node.style and "?" in node.value:
            raise _Unsupported
        node.data = _data(tag, node.value)
        return
    flow = flow or bool(node.flow_style)
    if node.id == "sequence":
        for item in node.value:
            _finish(item, seen, flow)
    else:
        for key, value in node.value:
            _finish(key, seen, flow)
            _finish(value, seen, flow)


def compose(text: str, version: tuple[int, int]) -> Any:
    """The root node of ``text`` (or :data:`EMPTY`), or None when ruamel must compose the text."""
    if _DECLINED.search(text):
        return None
    loader_class = _loader_class()
    if loader_class is None:
        return None
    Loader, YAMLError = loader_class
    loader = Loader(text)
    loader.version = version
    try:
        root = loader.get_single_node()
        if root is None:
            return EMPTY
        if root.id == "scalar":
            return None  # not a configuration (and a block scalar at column 0 ends differently)
        _finish(root, set())
        return root
    except (_Unsupported, YAMLError, RecursionError):
        return None
    finally:
        loader.dispose()
