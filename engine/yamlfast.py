"""A fast path for the plain YAML configuration files are written in, so that `lint` need neither import
ruamel nor run its pure-Python scanner (together about a fifth of `lint`'s run time).

:func:`compose` reads block mappings and sequences whose scalars are plain, quoted (single line, no
escapes), flow sequences of such scalars, or literal and folded blocks (``|``, ``|-``, ``>``, ``>-``),
with comments. It returns None for anything else - anchors, aliases, tags, flow mappings, multi-line
plain or quoted scalars, directives, document markers, tabs, merge keys, timestamps, non-decimal
numbers, ... - and engine/yamlsource.py then composes the file with ruamel, which stays the reference
(and reports every error). Nodes look like ruamel's to the builder there: ``id``, ``tag``, ``value``
(the scalar's text) and ``start_mark`` (0-based line and column, as ruamel sets them for keys and
sequence items); scalars also carry ``data``, their value as ruamel's safe constructor builds it,
resolved by ruamel's implicit resolvers for the YAML version (copied below; a test compares them).
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
_ASCII = frozenset(map(chr, range(0x20, 0x7F))) | {"\n"}
_KEY = re.compile(r"([A-Za-z0-9_][A-Za-z0-9_./-]*):(?: |$)")
_FLOW_ITEM = re.compile(r"(?:[A-Za-z0-9_]|-[A-Za-z0-9_./@+-])[A-Za-z0-9_./@+-]*")
_TAIL = re.compile(r"(?: +(?:#.*)?)?")  # what may follow a quoted scalar or a flow sequence on its line
_BLOCK_HEADER = re.compile(r"([|>])(-?)(?: +(?:#.*)?)?")
_DECIMAL = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")
_PLAIN_FLOAT = re.compile(r"[-+]?[0-9]+\.[0-9]+")
# A plain scalar cannot start with these (ruamel's check_plain), except `-`, `?` and `:` followed by a non-space.
_INDICATORS = frozenset("-?:,[]{}#&*!|>'\"%@` ")
_BOOL_VALUES = {"yes": True, "no": False, "y": True, "n": False, "true": True, "false": False, "on": True,
                "off": False}
EMPTY = object()  # returned for a document without content (ruamel composes no document)


class _Unsupported(Exception):
    """Outside the subset: ruamel composes the file."""


class Mark:
    """0-based line and column, as ruamel's marks."""

    __slots__ = ("line", "column")

    def __init__(self, line: int, column: int):
        self.line = line
        self.column = column


class Node:
    """A composed node: ``id`` is `scalar`, `sequence` or `mapping` as in ruamel; scalars carry ``data``."""

    __slots__ = ("id", "tag", "value", "start_mark", "data")

    def __init__(self, kind: str, tag: str, value: Any, line: int, column: int, data: Any = None):
        self.id = kind
        self.tag = tag
        self.value = value
        self.start_mark = Mark(line, column)
        self.data = data


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


def _scalar(text: str, line: int, column: int, version: tuple[int, int], plain: bool = True) -> Node:
    """A scalar node with the value ruamel's safe constructor gives the forms we take; others are unsupported."""
    tag = resolve(text, version) if plain else STR
    if tag == STR:
        data: Any = text
    elif tag == NULL:
        data = None
    elif tag == BOOL:
        data = _BOOL_VALUES[text.lower()]
    elif tag == INT and _DECIMAL.fullmatch(text):
        data = (-1 if text[0] == "-" else 1) * int(text.lstrip("+-"))
    elif tag == FLOAT and _PLAIN_FLOAT.fullmatch(text):
        data = (-1 if text[0] == "-" else 1) * float(text.lstrip("+-"))
    else:
        raise _Unsupported
    return Node("scalar", tag, text, line, column, data)


def _readable(text: str) -> bool:
    """Only characters ruamel's reader accepts, minus those with a meaning we leave to it (tab, CR, NEL,
    LS, PS, BOM). Checked per distinct character: a regex of these ranges takes longer to compile than
    the whole fast path takes to run."""
    for ch in set(text).difference(_ASCII):
        code = ord(ch)
        if not (0xA0 <= code <= 0xD7FF and code not in (0x2028, 0x2029) or 0xE000 <= code <= 0xFFFD
                and code != 0xFEFF or code >= 0x10000):
            return False
    return True


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _tail_ok(tail: str) -> None:
    if not _TAIL.fullmatch(tail):
        raise _Unsupported


class _Composer:
    def __init__(self, text: str, version: tuple[int, int]):
        self.lines = text.split("\n")
        self.version = version
        self.i = 0

    def next_content(self) -> int | None:
        """The index of the next line, from ``self.i``, with content: not blank, not a comment."""
        for i in range(self.i, len(self.lines)):
            body = self.lines[i].lstrip(" ")
            if body and body[0] != "#":
                self.i = i
                return i
        self.i = len(self.lines)
        return None

    def block(self, column: int) -> Node:
        """The block collection whose first entry starts at ``column`` of the current line."""
        line = self.lines[self.i]
        if line[column] == "-" and line[column + 1:column + 2] in ("", " "):
            return self.sequence(column, indentless=False)
        return self.mapping(column)

    def mapping(self, column: int) -> Node:
        pairs: list[tuple[Node, Node]] = []
        first = self.i
        while (i := self.next_content()) is not None:
            line = self.lines[i]
            indent = _indent(line)
            if indent < column:
                break
            match = _KEY.match(line, column) if indent == column else None
            if match is None or len(match.group(1)) > 1000:  # ruamel: a simple key is at most 1024 characters
                raise _Unsupported
            key = _scalar(match.group(1), i, column, self.version)
            pairs.append((key, self.value(i, match.end(1), column)))
        return Node("mapping", MAP, pairs, first, column)

    def value(self, i: int, colon: int, column: int) -> Node:
        """The value of the key whose `:` is at ``colon`` of line ``i``, in a mapping at ``column``."""
        rest = self.lines[i][colon + 1:]
        text = rest.lstrip(" ")
        if text and text[0] != "#":
            return self.inline(i, colon + 1 + len(rest) - len(text), column)
        self.i = i + 1
        j = self.next_content()
        if j is not None:
            indent = _indent(self.lines[j])
            if indent > column:
                return self.block(indent)
            line = self.lines[j]
            if indent == column and line[column] == "-" and line[column + 1:column + 2] in ("", " "):
                return self.sequence(column, indentless=True)
        # An empty value is null (its mark is never a key's or an item's, so the builder does not use it).
        return Node("scalar", NULL, "", i, colon + 1, None)

    def sequence(self, column: int, indentless: bool) -> Node:
        items: list[Node] = []
        first = self.i
        while (j := self.next_content()) is not None:
            line = self.lines[j]
            indent = _indent(line)
            if indent < column:
                break
            if indent > column or line[column] != "-" or line[column + 1:column + 2] not in ("", " "):
                if indentless and indent == column:
                    break  # the next key of the mapping this sequence is a value of
                raise _Unsupported
            rest = line[column + 1:]
            text = rest.lstrip(" ")
            if not text or text[0] in "#|>" or text == "-" or text.startswith("- "):
                raise _Unsupported  # empty items, nested compact sequences, block scalar items
            start = column + 1 + len(rest) - len(text)
            if _KEY.match(line, start):
                # A compact mapping (`- key: value`) is a block mapping at the column of its first key.
                self.lines[j] = " " * start + line[start:]
                items.append(self.mapping(start))
            else:
                items.append(self.inline(j, start, column))
        return Node("sequence", SEQ, items, first, column)

    def inline(self, i: int, start: int, column: int) -> Node:
        """The scalar or flow sequence starting at ``start`` of line ``i``, in a collection at ``column``."""
        line = self.lines[i]
        text = line[start:]
        first = text[0]
        if first in "|>":
            return self.block_scalar(i, start, column)
        if first in "'\"":
            node, end = self.quoted(line, i, start)
            _tail_ok(line[end:])
        elif first == "[":
            node = self.flow_sequence(line, i, start)
        elif first not in _INDICATORS or (first in "-?:" and text[1:2] not in ("", " ")):
            cut = text.find(" #")
            body = (text if cut < 0 else text[:cut]).rstrip(" ")
            if ": " in body or body.endswith(":"):
                raise _Unsupported  # ruamel: "mapping values are not allowed here"
            node = _scalar(body, i, start, self.version)
        else:
            raise _Unsupported
        self.i = i + 1
        nxt = self.next_content()
        if nxt is not None and _indent(self.lines[nxt]) > column:
            raise _Unsupported  # a multi-line scalar (or an error)
        return node

    def quoted(self, line: str, i: int, start: int) -> tuple[Node, int]:
        """A single-line quoted scalar at ``start``, and the index after its closing quote."""
        quote = line[start]
        pos = start + 1
        while True:
            end = line.find(quote, pos)
            if end < 0:
                raise _Unsupported  # it continues on the next line
            if quote == "'" and line.startswith("''", end):
                pos = end + 2
                continue
            break
        body = line[start + 1:end]
        if quote == "'":
            body = body.replace("''", "'")
        elif "\\" in body:
            raise _Unsupported  # escapes
        return _scalar(body, i, start, self.version, plain=False), end + 1

    def flow_sequence(self, line: str, i: int, start: int) -> Node:
        items: list[Node] = []
        pos = start + 1
        while line.startswith(" ", pos):
            pos += 1
        if line.startswith("]", pos):
            pos += 1
        else:
            while True:
                if line[pos:pos + 1] in ("'", '"'):
                    node, pos = self.quoted(line, i, pos)
                else:
                    match = _FLOW_ITEM.match(line, pos)
                    if match is None:
                        raise _Unsupported
                    node = _scalar(match.group(), i, pos, self.version)
                    pos = match.end()
                items.append(node)
                while line.startswith(" ", pos):
                    pos += 1
                if line.startswith("]", pos):
                    pos += 1
                    break
                if not line.startswith(",", pos):
                    raise _Unsupported
                pos += 1
                while line.startswith(" ", pos):
                    pos += 1
                if line.startswith("]", pos):
                    raise _Unsupported  # a trailing comma
        _tail_ok(line[pos:])
        return Node("sequence", SEQ, items, i, start)

    def block_scalar(self, i: int, start: int, column: int) -> Node:
        """A literal (`|`, `|-`) or folded (`>`, `>-`) block scalar whose header is at ``start`` of line ``i``:
        ruamel's scan_block_scalar, for content that starts on the next line and has no whitespace-only lines."""
        header = _BLOCK_HEADER.fullmatch(self.lines[i], start)
        if header is None or i + 1 >= len(self.lines):
            raise _Unsupported
        folded = header.group(1) == ">"
        indent = _indent(self.lines[i + 1])
        if indent <= column or not self.lines[i + 1].strip(" "):
            raise _Unsupported  # leading empty lines or an empty scalar
        chunks: list[str] = []
        breaks = 0
        last = len(self.lines) - 1
        j = i + 1
        while j < len(self.lines):
            line = self.lines[j]
            if not line:
                if j == last:
                    break  # the end of the text, not a line break
                breaks += 1
            elif not line.strip(" "):
                raise _Unsupported
            elif _indent(line) < indent:
                break
            else:
                if chunks:
                    # Between two lines: their break and the empty lines' breaks, except that folding turns
                    # a single break between two lines that do not start with a space into a space.
                    if folded and chunks[-1][0] != " " and line[indent] != " ":
                        chunks.append("\n" * breaks if breaks else " ")
                    else:
                        chunks.append("\n" * (breaks + 1))
                chunks.append(line[indent:])
                breaks = 0
            j += 1
        if header.group(2) != "-" and j - breaks - 1 < last:
            chunks.append("\n")  # clip: the last content line's break, when it has one
        self.i = j
        text = "".join(chunks)
        return Node("scalar", STR, text, i, start, text)


def compose(text: str, version: tuple[int, int]) -> Node | object | None:
    """The root node of ``text`` (or :data:`EMPTY`), or None when the text is outside the subset."""
    if not _readable(text):
        return None
    composer = _Composer(text, version)
    if any(line.startswith(("---", "...", "%")) for line in composer.lines):
        return None
    try:
        i = composer.next_content()
        if i is None:
            return EMPTY
        root = composer.block(_indent(composer.lines[i]))
        if composer.next_content() is not None:
            return None
        return root
    except (_Unsupported, RecursionError):
        return None
