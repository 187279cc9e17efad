"""Merged configuration documents: Synapse's top-level replace and MAS's deep merge, with provenance."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .locations import Location, Path, format_path, parse_path
from .yamlsource import LoadedYaml, Note, load_yaml_file

PATCH_MARKER = "syn2mas_delegation_patch"


@dataclass
class ConfigDoc:
    """A merged configuration: plain data, the origin of every key, the files read and load notes."""

    data: dict
    positions: dict[Path, Location] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)

    def locate(self, path: Path | str) -> Location:
        """Location of ``path``; for an absent key, its nearest existing ancestor, else line 1 of the first file."""
        if isinstance(path, str):
            path = parse_path(path)
        key_path = format_path(path)
        probe = tuple(path)
        while probe:
            loc = self.positions.get(probe)
            if loc is not None:
                return Location(loc.file, loc.line, loc.column, key_path)
            probe = probe[:-1]
        first = self.files[0] if self.files else ""
        return Location(first, 1, 1, key_path)

    def get(self, path: Path | str, default: Any = None) -> Any:
        """Value at ``path`` or ``default``; YAML null counts as absent."""
        if isinstance(path, str):
            path = parse_path(path)
        node: Any = self.data
        for part in path:
            if isinstance(part, int):
                if not isinstance(node, list) or part >= len(node):
                    return default
            elif not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return default if node is None else node


def expand_paths(paths: list[str], notes: list[Note]) -> list[str]:
    """Files in order; a directory contributes its ``*.yaml`` files sorted by name (Synapse's rule)."""
    out: list[str] = []
    for p in paths:
        if not p:
            raise ConfigError("an empty path was given for a configuration file",
                              hint="check the command line (an unset shell variable?)")
        if os.path.isdir(p):
            try:
                names = sorted(os.listdir(p))
            except OSError as exc:  # a directory without read or search permission
                raise ConfigError(f"cannot read the configuration directory: {exc.strerror}", file=p,
                                  hint="check the directory's permissions (read and search)") from None
            for name in names:
                full = os.path.join(p, name)
                if os.path.isdir(full):
                    notes.append(Note(f"sub-directory `{full}` is ignored (Synapse reads only files directly "
                                      "inside a configuration directory)", Location(p, 1, 1)))
                elif name.endswith(".yaml") and os.path.isfile(full):
                    out.append(full)
        elif os.path.exists(p):
            out.append(p)
        else:
            raise ConfigError("configuration file not found", file=p,
                              hint="check the path; relative paths are relative to the working directory")
    if paths and not out:
        raise ConfigError("no configuration file to read: the directory holds no `*.yaml` file", file=paths[-1],
                          hint="pass the configuration files, or a directory that holds them")
    return out


def _usable(loaded: LoadedYaml, notes: list[Note], what: str) -> bool:
    if loaded.data is None:
        notes.append(Note(f"empty {what} file skipped", Location(loaded.path, 1, 1)))
        return False
    if not isinstance(loaded.data, dict):
        notes.append(Note(f"{what} file skipped: its document is not a mapping", Location(loaded.path, 1, 1)))
        return False
    return True


def load_synapse_config(paths: list[str], *, skip_patch_overlays: bool = False) -> ConfigDoc:
    """Load Synapse files (YAML 1.1); later files replace whole top-level keys, as Synapse does.

    With ``skip_patch_overlays`` a file carrying the syn2mas delegation marker is left out (mapping.md 7.7.4),
    because it removes the settings that checks and migration still need.
    """
    notes: list[Note] = []
    files = expand_paths(paths, notes)
    doc = ConfigDoc(data={}, files=[], notes=notes)
    winners: dict[str, str] = {}
    shadowed: dict[str, list[tuple[LoadedYaml, Any]]] = {}
    for f in files:
        loaded = load_yaml_file(f, (1, 1))
        notes.extend(loaded.notes)
        if not _usable(loaded, notes, "Synapse configuration"):
            continue
        if skip_patch_overlays and PATCH_MARKER in loaded.data:
            notes.append(Note("file carries the syn2mas delegation patch marker; left out of checks and "
                              "migration, which still need the settings it removes", Location(f, 1, 1)))
            continue
        doc.files.append(f)
        positions_by_key: dict[str, list[tuple[Path, Location]]] = {}
        for p, loc in loaded.positions.items():
            if p:
                positions_by_key.setdefault(p[0], []).append((p, loc))
        for key, value in loaded.data.items():
            skey = key if isinstance(key, str) else str(key)
            if skey in doc.data:
                shadowed.setdefault(skey, []).append((_prev_file(doc, skey), doc.data[skey]))
                for p in [p for p in doc.positions if p and p[0] == skey]:
                    del doc.positions[p]
            doc.data[skey] = value
            winners[skey] = f
            for p, loc in positions_by_key.get(skey, ()):
                doc.positions[p] = loc
    for key, earlier in shadowed.items():
        win = doc.data.get(key)
        for (prev_file, prev_value) in earlier:
            if isinstance(prev_value, dict):
                lost = sorted(str(k) for k in prev_value if not isinstance(win, dict) or k not in win)
                if lost:
                    notes.append(Note(
                        f"`{key}` in {prev_file} is replaced as a whole by {winners[key]} (Synapse merges only "
                        f"top-level keys); its sub-keys {', '.join('`' + k + '`' for k in lost)} are not used",
                        doc.locate((key,))))
    if not doc.files and files:
        doc.files = [files[0]]
    return doc


def _prev_file(doc: ConfigDoc, key: str) -> str:
    loc = doc.positions.get((key,))
    return loc.file if loc else "?"


def _deep_merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = _deep_merge(base[k], v) if k in base else v
        return out
    if isinstance(base, list) and isinstance(over, list):
        return base + over
    return over


def load_mas_config(paths: list[str]) -> ConfigDoc:
    """Load MAS files (YAML 1.2) and merge them as MAS does: mappings recursively, lists concatenated."""
    notes: list[Note] = []
    files = expand_paths(paths, notes)
    doc = ConfigDoc(data={}, files=[], notes=notes)
    for f in files:
        loaded = load_yaml_file(f, (1, 2))
        notes.extend(loaded.notes)
        if not _usable(loaded, notes, "MAS configuration"):
            continue
        offset = _list_lengths(doc.data)
        doc.files.append(f)
        doc.data = _deep_merge(doc.data, loaded.data)
        for p, loc in loaded.positions.items():
            doc.positions[_shift(p, offset)] = loc
    if not doc.files and files:
        doc.files = [files[0]]
    return doc


def _list_lengths(data: Any, prefix: Path = ()) -> dict[Path, int]:
    out: dict[Path, int] = {}
    if isinstance(data, dict):
        for k, v in data.items():
            out.update(_list_lengths(v, prefix + (k,)))
    elif isinstance(data, list):
        out[prefix] = len(data)
    return out


def _shift(path: Path, offsets: dict[Path, int]) -> Path:
    """Re-index list items of a later MAS file, which are appended after the earlier file's items."""
    out: list = []
    for part in path:
        if isinstance(part, int):
            part += offsets.get(tuple(out), 0)
        out.append(part)
    return tuple(out)
