"""Synapse's `server_name` as Synapse itself accepts it (its `parse_and_validate_server_name`): a host
name, an IPv4 address or a bracketed IPv6 address, with an optional port. Synapse refuses to start with
anything else, so `lint`, `check`, `migrate` and `generate` stop on it too (exit 1, file and line)."""
from __future__ import annotations

import ipaddress
import re
from typing import Any

from .configdoc import ConfigDoc
from .errors import ConfigError

_HOST = re.compile(r"\A[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*\Z")


def server_name_problem(value: Any) -> str | None:
    """Why Synapse would refuse ``value`` as its `server_name`, or None when it accepts it."""
    if not isinstance(value, str):
        return "must be a string"
    if value.endswith("]") or value.startswith("["):
        host, port = value, None
        if "]:" in value:
            host, port = value.rsplit(":", 1)
        if not (host.startswith("[") and host.endswith("]")):
            return "has mismatched brackets"
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return "holds an invalid IPv6 address"
    else:
        host, _, port = value.rpartition(":") if ":" in value else (value, "", None)
        if not _HOST.match(host):
            return "is not a host name (letters, digits, `-` and `.`), with an optional port"
    if port is not None:
        try:
            int(port)  # as Synapse parses it
        except ValueError:
            return "has an invalid port"
    return None


def check_server_name(doc: ConfigDoc) -> None:
    """Raise a ConfigError at `server_name` when Synapse would refuse it (a missing one is the caller's)."""
    value = doc.get("server_name")
    problem = None if value is None else server_name_problem(value)
    if problem:
        loc = doc.locate(("server_name",))
        raise ConfigError(f"`server_name` {problem}; Synapse refuses to start with it", file=loc.file or None,
                          line=loc.line, column=loc.column, key="server_name",
                          hint="correct it in the Synapse configuration (and never change it on a running server)")
