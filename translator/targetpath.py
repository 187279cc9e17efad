"""Target paths of mapping rules (style.md 2.1): ``a.b``, ``a[0]``, ``a[]`` (append), ``a[key=value]`` (select or create).

A path is parsed once into segments; reading, writing and deleting walk the same segments, so that rules,
ownership (mapping.md 5.10) and the trace all speak about the same node.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Union


@dataclass(frozen=True)
class Key:
    """A mapping key."""

    name: str

    def text(self) -> str:
        return self.name


@dataclass(frozen=True)
class Index:
    """A list position; writing at ``len(list)`` appends."""

    index: int

    def text(self) -> str:
        return f"[{self.index}]"


@dataclass(frozen=True)
class Append:
    """``[]``: append an item, unless an equal item is already there (so that regeneration is idempotent)."""

    def text(self) -> str:
        return "[]"


@dataclass(frozen=True)
class Select:
    """``[key=value]``: the first list item that is a mapping with ``key == value``; created when missing."""

    key: str
    value: Any

    def text(self) -> str:
        # A string that reads as a number is quoted, so that parsing the text gives the string back.
        if isinstance(self.value, str) and re.fullmatch(r"-?\d+", self.value.strip()):
            return f"[{self.key}='{self.value}']"
        return f"[{self.key}={self.value}]"


Segment = Union[Key, Index, Append, Select]
TargetPath = tuple[Segment, ...]

_KEY = r"[A-Za-z_][A-Za-z0-9_-]*"
_KEY_RE = re.compile(_KEY)
_BRACKET = re.compile(rf"\[(?:(?P<index>\d+)|(?P<append>)|(?P<skey>{_KEY})=(?P<sval>[^\]]+))\]")


class TargetPathError(ValueError):
    """A target path that does not follow the grammar."""


def parse_target(text: str) -> TargetPath:
    """Parse ``a.b[0].c[key=value]``; raises :class:`TargetPathError` with the offending position."""
    if not isinstance(text, str) or not text:
        raise TargetPathError("a target path must be a non-empty string")
    segments: list[Segment] = []
    pos = 0
    while pos < len(text):
        if not segments or text[pos] == ".":
            start = pos + 1 if segments else pos
            m = _KEY_RE.match(text, start)
            if not m:
                raise TargetPathError(f"expected a key at position {start + 1} of {text!r}")
            segments.append(Key(m.group(0)))
        elif text[pos] == "[":
            m = _BRACKET.match(text, pos)
            if not m:
                raise TargetPathError(f"expected `[n]`, `[]` or `[key=value]` at position {pos + 1} of {text!r}")
            if m.group("index") is not None:
                segments.append(Index(int(m.group("index"))))
            elif m.group("skey") is not None:
                segments.append(Select(m.group("skey"), _scalar(m.group("sval"))))
            else:
                segments.append(Append())
        else:
            raise TargetPathError(f"expected `.` or `[` at position {pos + 1} of {text!r}")
        pos = m.end()
    return tuple(segments)


def _scalar(text: str) -> Any:
    """Selector values: integers stay integers (``version=1``); quotes may protect a string (``name='1'``)."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return text


def format_target(path: TargetPath) -> str:
    """Inverse of :func:`parse_target` (selectors print their value as is)."""
    out = ""
    for seg in path:
        if isinstance(seg, Key):
            out += ("." if out else "") + seg.name
        else:
            out += seg.text()
    return out


def is_prefix(shorter: TargetPath, longer: TargetPath) -> bool:
    """Whether ``shorter`` is a strict prefix of ``longer`` (a write to it replaces the longer target)."""
    return len(shorter) < len(longer) and longer[: len(shorter)] == shorter


def _item_matches(item: Any, seg: Select) -> bool:
    return isinstance(item, dict) and seg.key in item and item[seg.key] == seg.value


def get_at(root: Any, path: TargetPath) -> tuple[bool, Any]:
    """``(found, value)`` at ``path``; never creates anything. ``[]`` never matches an existing node."""
    node = root
    for seg in path:
        if isinstance(seg, Key):
            if not isinstance(node, dict) or seg.name not in node:
                return False, None
            node = node[seg.name]
        elif isinstance(seg, Index):
            if not isinstance(node, list) or seg.index >= len(node):
                return False, None
            node = node[seg.index]
        elif isinstance(seg, Select):
            if not isinstance(node, list):
                return False, None
            match = next((item for item in node if _item_matches(item, seg)), None)
            if match is None:
                return False, None
            node = match
        else:
            return False, None
    return True, node


# A container factory lets the writer create ruamel CommentedMap/CommentedSeq (with canonical key order)
# instead of plain dicts; ``insert(mapping, key, value, shape)`` places a new key at its canonical position.
MapFactory = Callable[[], dict]
ListFactory = Callable[[], list]
Inserter = Callable[[dict, str, Any, tuple], None]


def _plain_insert(mapping: dict, key: str, value: Any, shape: tuple) -> None:
    mapping[key] = value


def shape_of(path: TargetPath) -> tuple:
    """The schema location of ``path``: keys kept, every list position replaced by ``[]``."""
    return tuple(seg.name if isinstance(seg, Key) else "[]" for seg in path)


class PathConflict(ValueError):
    """Writing would need to replace a non-container value on the way (e.g. ``email: true`` then ``email.x``)."""


def set_at(root: dict, path: TargetPath, value: Any, *, new_map: MapFactory = dict, new_list: ListFactory = list,
           insert: Inserter = _plain_insert) -> None:
    """Write ``value`` at ``path``, creating missing mappings, lists and selected items on the way.

    An existing scalar in the way is replaced by a container: the rule owns the target, and MAS would reject
    the old value anyway.
    """
    node: Any = root
    walked: list[Segment] = []
    for i, seg in enumerate(path):
        last = i == len(path) - 1
        nxt = None if last else path[i + 1]
        walked.append(seg)

        def fresh_child() -> Any:
            return new_map() if isinstance(nxt, Key) else new_list()

        if isinstance(seg, Key):
            if last:
                if seg.name in node:
                    node[seg.name] = value  # in place: keeps the key's position and its comments
                else:
                    insert(node, seg.name, value, shape_of(tuple(walked)))
                return
            child = node.get(seg.name)
            if not isinstance(child, (dict, list)) or (isinstance(nxt, Key) != isinstance(child, dict)):
                child = fresh_child()
                if seg.name in node:
                    node[seg.name] = child
                else:
                    insert(node, seg.name, child, shape_of(tuple(walked)))
            node = child
        elif isinstance(seg, Index):
            if seg.index > len(node):
                raise PathConflict(f"cannot write list position {seg.index} of a list with {len(node)} items")
            if last:
                if seg.index == len(node):
                    node.append(value)
                else:
                    node[seg.index] = value
                return
            if seg.index == len(node):
                node.append(fresh_child())
            elif not isinstance(node[seg.index], (dict, list)):
                node[seg.index] = fresh_child()
            node = node[seg.index]
        elif isinstance(seg, Append):
            if last:
                if value not in node:
                    node.append(value)
                return
            child = fresh_child()
            node.append(child)
            node = child
        else:
            index = next((j for j, item in enumerate(node) if _item_matches(item, seg)), None)
            if index is None:
                item = new_map()
                insert(item, seg.key, seg.value, shape_of(tuple(walked)) + (seg.key,))
                node.append(item)
                index = len(node) - 1
            if last:
                entry = node[index]
                if isinstance(value, dict):
                    # Replace the item's content but keep the selector key first, as it identifies the item.
                    for k in [k for k in entry if k != seg.key and k not in value]:
                        del entry[k]
                    for k, v in value.items():
                        if k == seg.key:
                            continue
                        if k in entry:
                            entry[k] = v
                        else:
                            insert(entry, k, v, shape_of(tuple(walked)) + (k,))
                else:
                    node[index] = value
                return
            node = node[index]


def delete_at(root: Any, path: TargetPath) -> bool:
    """Remove the node at ``path`` (a key, list position or selected item); ``True`` when something was removed."""
    if not path:
        return False
    found, parent = get_at(root, path[:-1])
    if not found:
        return False
    seg = path[-1]
    if isinstance(seg, Key):
        if isinstance(parent, dict) and seg.name in parent:
            del parent[seg.name]
            return True
    elif isinstance(seg, Index):
        if isinstance(parent, list) and seg.index < len(parent):
            del parent[seg.index]
            return True
    elif isinstance(seg, Select):
        if isinstance(parent, list):
            for j, item in enumerate(parent):
                if _item_matches(item, seg):
                    del parent[j]
                    return True
    return False


def prune_empty(root: Any, path: TargetPath, stop: int) -> None:
    """Remove mappings left empty along ``path`` (deepest first), keeping the first ``stop`` segments.

    Used after an owned key was removed: MAS omits a section at its defaults, so an empty ``account: {}``
    or ``claims_imports.localpart: {}`` should disappear with its last key.
    """
    for depth in range(len(path) - 1, stop, -1):
        found, node = get_at(root, path[:depth])
        if found and isinstance(node, dict) and not node:
            delete_at(root, path[:depth])
        else:
            return
