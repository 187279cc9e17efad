"""What a failed database connection may say: libpq's first line, without the connection's secrets.

libpq quotes the connection string, or its offending token, when it cannot parse it
(``invalid percent-encoded token: "p%ZZssword"``, ``invalid URI ...: "postgresql://u:pw@[bad"``),
so those messages keep their words and lose every quoted part; the password and the whole
connection string are removed from any message, whatever its kind.
"""
from __future__ import annotations

import re

import psycopg

# What connecting can raise besides psycopg's errors: a host name that is no valid IDNA label (psycopg
# resolves host names itself) raises UnicodeError.
CONNECT_ERRORS: tuple[type[Exception], ...] = (psycopg.Error, UnicodeError)

_QUOTED = re.compile(r'"[^"]*"')
_URI_PASSWORD = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/@?#]*?:([^@/?#]*)@")
_KEYWORD_PASSWORD = re.compile(r"(?:^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)")


def connection_failure(exc: Exception, conninfo: str | None = None, password: str | None = None) -> str:
    """The first line of ``exc``'s message, safe to print for a connection to ``conninfo``."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    if isinstance(exc, (psycopg.ProgrammingError, UnicodeError)):  # the connection string could not be parsed
        first = (_QUOTED.sub('"…"', first)
                 + " (check the connection string; special characters in a URI need percent-encoding)")
    for secret in (password, conninfo, *_passwords(conninfo or "")):
        if secret and len(secret) > 1:
            first = first.replace(secret, "…")
    return first


def _passwords(conninfo: str) -> list[str]:
    """The password of a URI or of a ``key=value`` string, as written (quoted or percent-encoded)."""
    found = [m.group(1) for m in (_URI_PASSWORD.match(conninfo),) if m]
    found += [m.group(1).strip("'") for m in _KEYWORD_PASSWORD.finditer(conninfo)]
    return found
