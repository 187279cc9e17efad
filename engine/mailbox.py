"""Whether a text is one email mailbox as MAS reads `email.from` and `email.reply_to` (rule MAS-E1).

MAS parses them with lettre: RFC 5322's ``[display-name] <local@domain>`` or ``local@domain``, where the
display name may hold periods (RFC 5322's obsolete phrase, as in ``Example Inc. <noreply@example.org>``
or Synapse's default sender for an ``app_name`` such as ``example.org``) but comments in parentheses
are refused. Python's parser flags the periods as obsolete syntax and takes comments, so both are
settled here before its verdict.
"""
from __future__ import annotations

import functools
import re

# The common spellings, which the stdlib parser accepts without defects (a property test holds the two
# together); anything else goes to the parser, whose import costs `lint` ~20 ms.
_DOT_ATOM = r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
PLAIN_MAILBOX = re.compile(rf"[A-Za-z0-9]+(?: [A-Za-z0-9]+)* <{_DOT_ATOM}>|{_DOT_ATOM}")

# What the stdlib parser reports for periods in a display name ("comment found without atom" is its
# reading of the space after a trailing period, as in "Inc. <...>"); lettre accepts both.
_PHRASE_PERIODS = frozenset({"period in 'phrase'", "comment found without atom"})


@functools.lru_cache(maxsize=None)
def _header_factory():
    """``email.policy.default.header_factory`` (a default ``HeaderRegistry``), imported on first use."""
    from email.headerregistry import HeaderRegistry

    return HeaderRegistry()


def is_valid_mailbox(text: str) -> bool:
    """One mailbox MAS accepts: ``Name <local@domain>`` or ``local@domain``, no comment, no line break."""
    if not text.strip() or "\r" in text or "\n" in text:
        return False
    return PLAIN_MAILBOX.fullmatch(text) is not None or (not _has_comment(text) and parses_as_mailbox(text))


def _has_comment(text: str) -> bool:
    """A parenthesis outside a quoted string: an RFC 5322 comment (or a stray one), which lettre refuses."""
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char in "()" and not quoted:
            return True
    return False


def parses_as_mailbox(text: str) -> bool:
    """The stdlib parser's verdict: one mailbox, no defect but periods in the display name, no group
    syntax, a local part and a domain."""
    try:
        header = _header_factory()("from", text)
    except Exception:  # the stdlib parser raises assorted errors (even IndexError) on malformed input
        return False
    if any(type(d).__name__ != "ObsoleteHeaderDefect" or str(d) not in _PHRASE_PERIODS for d in header.defects):
        return False
    if len(header.groups) != 1 or header.groups[0].display_name is not None:
        return False
    addresses = header.addresses
    return len(addresses) == 1 and bool(addresses[0].username) and bool(addresses[0].domain)
