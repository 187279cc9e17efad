"""Load one YAML file into plain Python data plus a position index, with Synapse (1.1) or MAS (1.2) resolution.

We compose the node graph with ruamel.yaml and build the data ourselves, so that we control what
PyYAML-based Synapse does (duplicate keys: last wins), bound alias expansion, reject application tags
and keep the 1-based position of every key and item. Plain files are composed by libyaml through
engine/yamlfast.py instead (nodes of the same shape, no ruamel import); whatever it does not take, or the
builder rejects, goes to ruamel.
"""
from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import ConfigError
from .locations import Location, Path, format_path

# A homeserver.yaml has a few thousand nodes; anything near this bound is an alias bomb.
MAX_NODES = 200_000
_STD = "tag:yaml.org,2002:"
_PYYAML_STRINGS = {"y", "Y", "n", "N"}
_PYYAML_FLOAT = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
    |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X)
_SCALAR_TAGS = {f"{_STD}{t}" for t in ("str", "int", "float", "bool", "null", "timestamp", "binary")}
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass
class Note:
    """An informational remark made while loading (never changes an exit code)."""

    message: str
    location: Location


@dataclass
class LoadedYaml:
    """One file's data, the position of every key/item (by path) and load notes."""

    path: str
    data: Any
    positions: dict[Path, Location] = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)


def _yaml(version: tuple[int, int]):
    from ruamel.yaml import YAML

    y = YAML(typ="safe", pure=True)
    y.version = version
    return y


# Nodes are ruamel's or libyaml's (by engine.yamlfast, with `data` on scalars); both have `id` (`scalar`,
# `sequence`, `mapping`), `tag`, `value` and `start_mark`.
Node = Any


class _InvalidScalar(Exception):
    """The constructor rejected a scalar (ruamel's YAMLError, as text)."""


class _Builder:
    def __init__(self, path: str, construct: Callable[[Node], Any], pyyaml_floats: bool = False):
        self.path = path
        self.pyyaml_floats = pyyaml_floats
        # A scalar node's value; raises _InvalidScalar with the reason it is invalid.
        self.construct = construct
        self.positions: dict[Path, Location] = {}
        self.notes: list[Note] = []
        self.count = 0

    def loc(self, node: Node, path: Path) -> Location:
        mark = node.start_mark
        return Location.from_mark(self.path, mark.line, mark.column, format_path(path))

    def fail(self, node: Node, message: str, path: Path, hint: str | None = None) -> ConfigError:
        mark = node.start_mark
        return ConfigError(message, file=self.path, line=mark.line + 1, column=mark.column + 1,
                           key=format_path(path) or None, hint=hint)

    def build(self, node: Node, path: Path) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise self.fail(node, f"too many YAML nodes (more than {MAX_NODES}); aliases expand without bound here",
                            path, "remove the recursive anchors/aliases (a 'billion laughs' document)")
        if len(path) > 200:
            raise self.fail(node, "YAML nesting is deeper than 200 levels", path)
        tag = node.tag or ""
        if node.id == "mapping":
            if tag not in (f"{_STD}map", f"{_STD}omap", f"{_STD}set"):
                raise self._bad_tag(node, path)
            return self.build_map(node, path)
        if node.id == "sequence":
            if tag != f"{_STD}seq":
                raise self._bad_tag(node, path)
            out = []
            for i, item in enumerate(node.value):
                self.positions[path + (i,)] = self.loc(item, path + (i,))
                out.append(self.build(item, path + (i,)))
            return out
        if tag not in _SCALAR_TAGS:
            raise self._bad_tag(node, path)
        if tag == f"{_STD}bool" and node.value in _PYYAML_STRINGS:
            # ruamel's 1.1 resolver reads y/n as booleans; PyYAML, which Synapse uses, keeps them strings.
            return node.value
        if tag == f"{_STD}float" and self.pyyaml_floats and not _PYYAML_FLOAT.match(node.value):
            # PyYAML's 1.1 floats need a dot (`1e3` stays a string in Synapse); ruamel would warn and convert.
            return node.value
        try:
            value = self.construct(node)
        except _InvalidScalar as exc:
            raise self.fail(node, f"invalid scalar: {exc}", path) from None
        if isinstance(value, str) and _SURROGATE.search(value):
            raise self.fail(node, "a `\\u` escape produces a UTF-16 surrogate (U+D800-U+DFFF), which is not a "
                                  "character", path, "write the character itself, or escape it as `\\UXXXXXXXX` "
                                  "(MAS rejects surrogate escapes)")
        if isinstance(value, (_dt.date, _dt.datetime)):
            return value.isoformat()
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace")
        return value

    def _bad_tag(self, node: Node, path: Path) -> ConfigError:
        return self.fail(node, f"unsupported YAML tag `{node.tag}`", path,
                         "Synapse and MAS load configuration with safe loaders that reject application tags "
                         "such as !include; inline the content instead")

    def key_of(self, knode: Node, path: Path) -> Any:
        if knode.id != "scalar":
            raise self.fail(knode, "a mapping key must be a plain scalar", path)
        key = self.build(knode, path)
        return key

    def build_map(self, node: Node, path: Path) -> dict:
        merged: dict = {}
        merged_pos: dict = {}
        explicit: dict = {}
        first_seen: dict = {}
        for knode, vnode in node.value:
            if knode.tag == f"{_STD}merge":
                sources = vnode.value if vnode.id == "sequence" else [vnode]
                for src in sources:
                    if src.id != "mapping":
                        raise self.fail(src, "a merge key `<<` must refer to a mapping", path)
                    for k, v in self.build_map(src, path).items():
                        if k not in merged:  # earlier sources win in a merge sequence
                            merged[k] = v
                            merged_pos[k] = src
                continue
            key = self.key_of(knode, path)
            try:
                hash(key)
            except TypeError:
                raise self.fail(knode, "a mapping key must be hashable", path) from None
            sub = path + (key if isinstance(key, str) else str(key),)
            if key in explicit:
                first = first_seen[key]
                self.notes.append(Note(
                    f"duplicate key `{format_path(sub)}`: the later occurrence (line {knode.start_mark.line + 1}) "
                    "wins, as in Synapse; remove one of them", self.loc(first, sub)))
            else:
                first_seen[key] = knode
            self.positions[sub] = self.loc(knode, sub)
            explicit[key] = self.build(vnode, sub)
        for k, src in merged_pos.items():
            sub = path + (k if isinstance(k, str) else str(k),)
            if k not in explicit and sub not in self.positions:
                self.positions[sub] = self.loc(src, sub)
        out = dict(merged)
        out.update(explicit)
        return out


def load_yaml_text(text: str, path: str, version: tuple[int, int]) -> LoadedYaml:
    """Parse ``text`` (the content of ``path``) with YAML ``version`` resolution."""
    loaded = load_fast(text, path, version)
    return loaded if loaded is not None else load_with_ruamel(text, path, version)


def load_fast(text: str, path: str, version: tuple[int, int]) -> LoadedYaml | None:
    """:func:`load_yaml_text` by engine.yamlfast, or None when ruamel must compose the text (or report it)."""
    from .yamlfast import EMPTY, compose

    root = compose(text, version)
    if root is None:
        return None
    if root is EMPTY:
        return LoadedYaml(path, None, {}, [])
    builder = _Builder(path, lambda node: node.data, pyyaml_floats=version == (1, 1))
    try:
        data = builder.build(root, ())
    except (ConfigError, RecursionError):
        return None  # ruamel's path reports it, with the same position
    builder.positions[()] = Location(path, 1, 1, "")
    return LoadedYaml(path, data, builder.positions, builder.notes)


def load_with_ruamel(text: str, path: str, version: tuple[int, int]) -> LoadedYaml:
    """:func:`load_yaml_text` with ruamel composing the text: the reference, and the path for every error."""
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    yaml = _yaml(version)
    try:
        docs = list(yaml.compose_all(text))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        col = mark.column + 1 if mark else None
        problem = exc.problem or exc.context or "syntax error"
        raise ConfigError(f"YAML syntax error: {problem}", file=path, line=line, column=col,
                          hint="fix the YAML syntax at this position") from None
    except YAMLError as exc:
        position = getattr(exc, "position", None)  # ruamel's ReaderError: a character YAML does not allow
        if isinstance(position, int) and 0 <= position <= len(text):
            line = text.count("\n", 0, position) + 1
            column = position - (text.rfind("\n", 0, position) + 1) + 1
            code = getattr(exc, "character", None)
            what = f"the character U+{code:04X}" if isinstance(code, int) else "a character"
            raise ConfigError(f"YAML syntax error: {what} is not allowed in YAML", file=path, line=line,
                              column=column, hint="remove it, or write it as an escape in a double-quoted string"
                              ) from None
        raise ConfigError(f"cannot parse YAML: {exc}", file=path) from None
    except RecursionError:
        raise ConfigError("YAML nesting is too deep to parse", file=path) from None
    if len(docs) > 1:
        raise ConfigError(f"the file holds {len(docs)} YAML documents; a configuration file must hold one",
                          file=path, line=docs[1].start_mark.line + 1 if docs[1] is not None else None,
                          hint="remove the `---` separators or split the documents into files")
    constructor = yaml.constructor

    def construct(node: Node) -> Any:
        try:
            return constructor.construct_object(node, deep=True)
        except (YAMLError, ValueError, OverflowError) as exc:  # a date such as 2026-02-30 is a ValueError
            raise _InvalidScalar(str(exc)) from None

    builder = _Builder(path, construct, pyyaml_floats=version == (1, 1))
    root = docs[0] if docs else None
    if root is None:
        return LoadedYaml(path, None, {}, builder.notes)
    try:
        data = builder.build(root, ())
    except RecursionError:
        raise ConfigError("YAML nesting is too deep", file=path) from None
    builder.positions[()] = Location(path, 1, 1, "")
    return LoadedYaml(path, data, builder.positions, builder.notes)


def read_text(path: str) -> str:
    """Read a UTF-8 file, turning OS and decoding errors into :class:`ConfigError`."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise ConfigError("file not found", file=path, hint="check the path (relative paths are relative "
                          "to the working directory)") from None
    except IsADirectoryError:
        raise ConfigError("is a directory, expected a file", file=path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror}", file=path) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError("file is not valid UTF-8", file=path, line=line) from None


def load_yaml_file(path: str, version: tuple[int, int]) -> LoadedYaml:
    """Read and parse one YAML file."""
    return load_yaml_text(read_text(path), path, version)
