"""Named transforms: the Python that mapping rules reference by name for what YAML cannot express.

A transform is ``fn(value, ctx, **args)`` and returns the value to write, :data:`OMIT` (write nothing), or a
:class:`Result` carrying problems. Problems become the rule's ``report`` (a finding or note); their variables
are available to the message template, and their ``at`` is a key path relative to the rule's source.
Transforms never see or return a message text, and never put a secret into a problem.
"""
from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

from engine.expr import synapse_strtobool
from engine.mailbox import is_valid_mailbox
from engine.predicates import is_scope_token, is_url

from .randomness import Entropy
from .registry import registrar


class _Omit:
    def __repr__(self) -> str:
        return "OMIT"


OMIT: Any = _Omit()


@dataclass
class Problem:
    """Something a transform could not translate; ``vars`` feed the rule's report template."""

    kind: str
    at: tuple = ()
    vars: dict[str, Any] = field(default_factory=dict)


@dataclass
class Result:
    """A transform's value (or :data:`OMIT`) and its problems."""

    value: Any = OMIT
    problems: list[Problem] = field(default_factory=list)


@dataclass
class TransformContext:
    """What a transform may use besides its input: the run's entropy and clock, and the target's current value."""

    entropy: Entropy | None
    generated_at: _dt.datetime | None
    existing_found: bool = False
    existing: Any = None


Transform = Callable[..., Any]
TRANSFORMS: dict[str, Transform] = {}
transform = registrar(TRANSFORMS)  # @transform("name"): usable as `transform: name` in mapping rules


def as_result(out: Any) -> Result:
    """Normalise a transform's return value."""
    return out if isinstance(out, Result) else Result(out)


@transform("string")
def to_string(value: Any, ctx: TransformContext) -> Any:
    """A scalar as a string (``client_id: 12345`` must reach MAS as ``"12345"``); a mapping or list is a problem."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return Result(OMIT, [Problem("not_a_string", vars={"type": type(value).__name__})])


@transform("integer")
def to_integer(value: Any, ctx: TransformContext, minimum: int | None = None, maximum: int | None = None) -> Any:
    """An integer, also from a numeric string (Synapse accepts ``"587"`` where it casts); with ``minimum``
    or ``maximum``, a value outside them is a problem (``out_of_range``) and is left out."""
    if isinstance(value, bool):
        return Result(OMIT, [Problem("not_an_integer", vars={"type": "bool"})])
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        number = int(value)
    else:
        return Result(OMIT, [Problem("not_an_integer", vars={"type": type(value).__name__})])
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        return Result(OMIT, [Problem("out_of_range", vars={"number": number})])
    return number


def normalise_url(text: Any) -> str | None:
    """Lower-case scheme and host, and give a bare origin a trailing ``/`` (``https://H`` -> ``https://h/``).

    ``None`` when ``text`` is not a URL (engine.predicates.is_url, shared with the check rules).
    """
    if not is_url(text):
        return None
    parts = urlsplit(text)
    if not parts.hostname:
        return text  # e.g. `urn:` or `mailto:`: nothing to normalise
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    if "@" in parts.netloc:
        netloc = parts.netloc.rpartition("@")[0] + "@" + netloc
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", parts.query, parts.fragment))


@transform("url")
def url(value: Any, ctx: TransformContext) -> Any:
    """URL normalisation (mapping.md 3.2 X2, 4.3 endpoints); an unparseable URL is a problem and is omitted."""
    out = normalise_url(value)
    if out is None:
        return Result(OMIT, [Problem("bad_url")])
    return out


@transform("scope")
def scope(value: Any, ctx: TransformContext) -> Any:
    """mapping.md 4.5: drop invalid tokens, deduplicate, sort, join; ``openid`` alone is MAS's default (omitted)."""
    if not isinstance(value, list):
        return Result(OMIT, [Problem("not_a_list", vars={"type": type(value).__name__})])
    problems: list[Problem] = []
    kept: set[str] = set()
    for index, item in enumerate(value):
        if is_scope_token(item):
            kept.add(item)
        else:
            problems.append(Problem("invalid", at=(index,), vars={"scope": str(item)}))
    if not kept:
        problems.append(Problem("empty"))
        return Result("", problems)
    joined = " ".join(sorted(kept))
    return Result(OMIT if joined == "openid" else joined, problems)


@transform("auth_params")
def auth_params(value: Any, ctx: TransformContext, drop: tuple | list = ("response_mode",)) -> Any:
    """mapping.md 4.7: the parameters without ``response_mode``, keys sorted; non-string values are dropped."""
    if not isinstance(value, dict):
        return Result(OMIT, [Problem("not_a_mapping", vars={"type": type(value).__name__})])
    problems: list[Problem] = []
    out: dict[str, str] = {}
    for key in sorted(value, key=str):
        if key in drop:
            continue
        item = value[key]
        if isinstance(item, str):
            out[str(key)] = item
        else:
            problems.append(Problem("not_a_string", at=(key,), vars={"parameter": str(key)}))
    return Result(out if out else OMIT, problems)


@transform("stable_ulid")
def stable_ulid(value: Any, ctx: TransformContext) -> Any:
    """The ULID already at the target (regeneration keeps provider ids, 5.10), else a new one at the run's clock."""
    if ctx.existing_found and isinstance(ctx.existing, str) and ctx.existing:
        return str(ctx.existing)
    if ctx.entropy is None:
        raise ValueError("stable_ulid needs an entropy source")
    return ctx.entropy.ulid(ctx.generated_at)


@transform("omit_keys")
def omit_keys(value: Any, ctx: TransformContext, keys: list | tuple = ()) -> Any:
    """The mapping without ``keys`` (the patch copies ``experimental_features`` without ``msc3861``)."""
    if not isinstance(value, dict):
        return OMIT
    return {k: v for k, v in value.items() if k not in keys}


@transform("notif_from")
def notif_from(value: Any, ctx: TransformContext) -> Any:
    """Synapse's ``notif_from % {"app": app_name}`` (default ``Matrix``), checked to be a mailbox MAS accepts."""
    if not isinstance(value, dict) or not isinstance(value.get("template"), str):
        return Result(OMIT, [Problem("not_a_string")])
    app = value.get("app_name")
    app = "Matrix" if app is None else str(app)
    try:
        text = value["template"] % {"app": app}
    except (KeyError, ValueError, TypeError):
        return Result(OMIT, [Problem("bad_format")])
    if not is_valid_mailbox(text):  # the test lint's MAS-E1 applies: never write what it then refuses
        return Result(OMIT, [Problem("not_a_mailbox")])
    return text


@transform("strtobool")
def strtobool(value: Any, ctx: TransformContext) -> Any:
    """Synapse's ``strtobool(str(v))``; a value Synapse rejects is a problem and counts as false (mapping.md 1.5)."""
    out = synapse_strtobool(value)
    if out is None:
        return Result(False, [Problem("invalid", vars={"value": str(value)})])
    return out


@transform("secret_file_whitespace")
def secret_file_whitespace(value: Any, ctx: TransformContext) -> Any:
    """mapping.md 7.4: Synapse strips one trailing newline, MAS trims all surrounding whitespace.

    The value is the path; a readable file whose secret begins or ends with other whitespace is a problem.
    An unreadable file is not (it may live only on the server).
    """
    if not isinstance(value, str):
        return value
    try:
        with open(value, "rb") as fh:
            raw = fh.read()
    except OSError:
        return value
    synapse_view = raw[:-1] if raw.endswith(b"\n") else raw
    if synapse_view != raw.strip():
        return Result(value, [Problem("whitespace")])
    return value


_FILTER = re.compile(r"\|\s*([A-Za-z_][A-Za-z0-9_]*)")


@transform("template_filters")
def template_filters(value: Any, ctx: TransformContext, known: list | tuple = ()) -> Any:
    """Copy a Jinja template verbatim; each filter outside ``known`` (MAS's filters) is a problem (mapping.md 4.6)."""
    if not isinstance(value, str):
        return Result(OMIT, [Problem("not_a_string", vars={"type": type(value).__name__})])
    unknown = sorted({name for name in _FILTER.findall(value) if name not in known})
    return Result(value, [Problem("unknown_filter", vars={"filter": name}) for name in unknown])
