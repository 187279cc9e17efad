"""Emit YAML with ruamel round-trip: canonical key order, secret styling, provenance comments, atomic 0600 writes.

The same document object serves a fresh configuration and an existing one loaded for regeneration
(mapping.md 5.10), so comments and key order of an existing file survive, and writing the same data twice gives
the same bytes.
"""
from __future__ import annotations

import io
import os
import re
import tempfile
from typing import Any, Callable

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark, MarkedYAMLError, YAMLError
from ruamel.yaml.scalarbool import ScalarBoolean
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, LiteralScalarString
from ruamel.yaml.tokens import CommentToken

from engine.errors import ConfigError
from engine.yamlsource import load_yaml_text, read_text

from .keyorder import canonical_position, order_for

# A provenance comment: "# from <file>:<line> <synapse key path>". Never a value.
PROVENANCE = re.compile(r"^# from \S+:\d+ \S+$")


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.width = 4096  # never fold long strings: a fold would change bytes between runs on different data
    y.indent(mapping=2, sequence=2, offset=0)  # the layout `mas-cli config generate` writes
    y.preserve_quotes = True
    return y


def style(value: Any, sensitive: bool) -> Any:
    """Multi-line strings (PEM keys) as block literals; other secrets double-quoted, so they never load as numbers."""
    if isinstance(value, str) and not isinstance(value, (DoubleQuotedScalarString, LiteralScalarString)):
        if "\n" in value:
            return LiteralScalarString(value)
        if sensitive:
            return DoubleQuotedScalarString(value)
    return value


def to_node(value: Any, shape: tuple = (), is_sensitive: Callable[[tuple], bool] | None = None,
            path: tuple = ()) -> Any:
    """Plain data as ruamel containers; mappings in canonical key order, strings styled by sensitivity."""
    if isinstance(value, dict):
        out = CommentedMap()
        for key in value:
            insert_key(out, key, to_node(value[key], shape + (key,), is_sensitive, path + (key,)), shape + (key,))
        return out
    if isinstance(value, list):
        return CommentedSeq(to_node(v, shape + ("[]",), is_sensitive, path + (i,)) for i, v in enumerate(value))
    return style(value, bool(is_sensitive and is_sensitive(path)))


def insert_key(mapping: dict, key: str, value: Any, shape: tuple) -> None:
    """Add ``key`` (whose own shape is ``shape``) at its canonical position among the keys already present."""
    if key in mapping:
        mapping[key] = value
        return
    keys = list(mapping.keys())
    pos = canonical_position(keys, key, order_for(shape[:-1]))
    if isinstance(mapping, CommentedMap) and pos < len(keys):
        mapping.insert(pos, key, value)
    else:
        mapping[key] = value


def plain(node: Any) -> Any:
    """ruamel containers and scalar strings back to plain dict/list/str (for expressions and validation)."""
    if isinstance(node, dict):
        return {str(k) if not isinstance(k, (str, int)) else k: plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    if isinstance(node, (bool, ScalarBoolean)) or node is None:
        return bool(node) if node is not None else None
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return node


def _eol_entry(mapping: CommentedMap, key: Any) -> list | None:
    entry = mapping.ca.items.get(key)
    if entry and len(entry) > 2 and entry[2] is not None:
        return entry
    return None


def _token(text: str) -> CommentToken:
    # Always a new token at column 0 with one leading space: the emitter then puts it two spaces after the
    # value, whatever column an earlier run left it at, so output depends on the data only.
    return CommentToken(text, CommentMark(0))


def set_provenance(mapping: Any, key: Any, text: str | None) -> None:
    """Make the end-of-line comment of ``key`` our provenance ``text`` (or drop ours when ``text`` is None).

    Only comments we wrote are replaced; an admin's comment on the line stays and then no provenance is added.
    Full-line comments that ruamel stores after the end-of-line part (they precede the next key) are kept.
    """
    if not isinstance(mapping, CommentedMap) or key not in mapping:
        return
    if isinstance(mapping[key], (dict, list)):
        return  # comments on container keys are attached inside the child by ruamel; we only comment scalars
    entry = _eol_entry(mapping, key)
    rest = ""
    if entry is not None:
        first, _sep, rest = entry[2].value.partition("\n")
        if first.strip() and not PROVENANCE.match(first.strip()):
            return
    if text:
        value = f" {text}\n{rest}"
    elif rest.strip():
        value = "\n" + rest
    else:
        if entry is not None:
            entry[2] = None
        return
    if entry is None:
        mapping.ca.items[key] = [None, None, _token(value), None]
    else:
        entry[2] = _token(value)


def move_comment(mapping: Any, old: Any, new: Any) -> None:
    """Carry the comments of key ``old`` over to ``new`` (used when a secret moves to a ``*_file`` key)."""
    if isinstance(mapping, CommentedMap) and old in mapping.ca.items:
        mapping.ca.items[new] = mapping.ca.items.pop(old)


_DUPLICATE_VALUES = re.compile(r" with value .*", re.DOTALL)


def load_round_trip(path: str) -> CommentedMap:
    """Load an existing MAS configuration (YAML 1.2) keeping comments, order and quoting."""
    text = read_text(path)
    # The safe loader first: it bounds alias expansion and nesting and rejects tags (a round-trip load alone
    # would expand an alias bomb until memory runs out); its errors carry file:line:column.
    load_yaml_text(text, path, (1, 2))
    try:
        data = _yaml().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "syntax error"
        # ruamel names a duplicate key's two values, which may be secrets (a pepper, a client secret)
        problem = _DUPLICATE_VALUES.sub("", problem)
        raise ConfigError(f"YAML syntax error: {problem}", file=path,
                          line=mark.line + 1 if mark else None, column=mark.column + 1 if mark else None,
                          hint="fix the existing MAS configuration, or remove it to generate a fresh one") from None
    except YAMLError as exc:
        raise ConfigError(f"cannot parse YAML: {exc}", file=path) from None
    if data is None:
        return CommentedMap()
    if not isinstance(data, CommentedMap):
        raise ConfigError("the existing MAS configuration is not a mapping", file=path, line=1,
                          hint="remove it to generate a fresh one")
    return data


def dump(doc: Any) -> str:
    """The YAML text of ``doc``."""
    buf = io.StringIO()
    _yaml().dump(doc, buf)
    return buf.getvalue()


def atomic_write(path: str, text: str, mode: int = 0o600) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory and a rename, with ``mode``.

    A symbolic link is written through: its target gets the new content and the link stays."""
    path = os.path.realpath(path)
    directory = os.path.dirname(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise ConfigError(f"cannot write file: {exc.strerror}", file=path,
                          hint="check that the directory exists and is writable") from None
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise ConfigError(f"cannot write file: {exc.strerror}", file=path) from None
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
