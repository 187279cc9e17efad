"""Output paths checked before any work: a report or configuration written at the end must neither
destroy an input, nor replace a device or hang on a pipe, nor fail after the work is done.

Used by `config generate` and `synapse-patch` (files replaced atomically), `lint` and `check` (--output,
--sarif-file) and `migrate` and `verify` (--report), whose reports are written in place. As root,
`config generate --output /dev/null` would otherwise replace the device node with a file of secrets,
and `lint --output mas.yaml` the configuration with a report.
"""
from __future__ import annotations

import os
import stat
from collections.abc import Iterable

from .errors import ConfigError


def check_output(path: str, flag: str, inputs: Iterable[str] = (), *, replaced: bool = True) -> None:
    """Refuse (exit 1) ``path`` for option ``flag`` when it is one of the ``inputs`` or a directory, or its
    directory is not writable. A file that is ``replaced`` (written aside, then renamed over the path)
    must also be new or regular; a report written in place may go to a device or a pipe (`/dev/null`,
    a shell's process substitution)."""
    try:
        found = os.stat(path)  # through a symbolic link: the file written is its target
    except FileNotFoundError:
        found = None
    except OSError as exc:
        raise ConfigError(f"option {flag}: cannot use this path ({exc.strerror})", file=path, key=flag) from None
    if found is not None and (stat.S_ISDIR(found.st_mode) or replaced and not stat.S_ISREG(found.st_mode)):
        kind = "a directory" if stat.S_ISDIR(found.st_mode) else "not a regular file (a device, pipe or socket)"
        raise ConfigError(f"option {flag}: the path is {kind}", file=path, key=flag,
                          hint="give the name of a new or ordinary file; nothing was written")
    real = os.path.realpath(path)
    for given in inputs:
        if os.path.isfile(given) and os.path.realpath(given) == real:
            raise ConfigError(f"option {flag}: would overwrite an input configuration", file=path, key=flag,
                              hint="write the output to another file; nothing was written")
    if found is not None and not replaced:
        if not os.access(path, os.W_OK):
            raise ConfigError(f"option {flag}: the file is not writable", file=path, key=flag,
                              hint="choose another file; nothing was written")
        return  # written in place: its directory does not matter
    directory = os.path.dirname(real)
    if not os.path.isdir(directory):
        raise ConfigError(f"option {flag}: the directory does not exist", file=path, key=flag,
                          hint="create the directory first; nothing was written")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(f"option {flag}: the directory is not writable", file=path, key=flag,
                          hint="choose another directory; nothing was written")


def inside_directory(path: str, directories: Iterable[str]) -> str | None:
    """The first of ``directories`` (existing ones) that holds ``path``, or None."""
    real = os.path.realpath(path)
    for directory in directories:
        if os.path.isdir(directory):
            root = os.path.realpath(directory)
            if os.path.commonpath([root, real]) == root:
                return directory
    return None
