"""User-facing errors: every one names where the problem is and what to do; the CLI prints them without a traceback."""
from __future__ import annotations


class Syn2MasError(Exception):
    """An error the admin can fix; ``str()`` is the complete message (exit code 1)."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 column: int | None = None, key: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.column = column
        self.key = key
        self.hint = hint

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file
            if self.line:
                where += f":{self.line}"
                if self.column:
                    where += f":{self.column}"
            where += ": "
        text = where + self.message
        if self.key:
            text += f" (key `{self.key}`)"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class ConfigError(Syn2MasError):
    """A configuration file cannot be read, parsed or has a value of the wrong shape."""


class RuleFileError(Syn2MasError):
    """A rule file under rules/ is malformed (a contributor's error)."""


class DatabaseError(Syn2MasError):
    """A database cannot be reached or does not look as expected."""
