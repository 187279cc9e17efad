"""`mas-config-invalid`: MAS's published JSON Schema (with format checking) plus the rules of mapping.md 6.2.

Schema messages are written here from the error's keyword and the schema, never from jsonschema's own text,
which quotes the offending value (it may be a secret). Unknown keys are not errors (MAS ignores them); they
become info notes because they are usually typos.
"""
from __future__ import annotations

import difflib
import functools
import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any, Iterator
from urllib.parse import urlsplit

from jsonschema import Draft7Validator, FormatChecker
from jsonschema.exceptions import ValidationError, best_match

from .configdoc import ConfigDoc
from .errors import ConfigError
from .findings import Finding, sort_findings
from .locations import Location, Path, format_path
from .masrules import RULE_ID, RULES, SCOPE, is_valid_mailbox, run_rules, violation_finding

NOTE_RULE = "note"
ULID_PATTERN = "^[0123456789ABCDEFGHJKMNPQRSTVWXYZ]{26}$"

# RFC 3986: a scheme, then only unreserved, reserved and percent-encoded characters.
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_KEY_NAME = re.compile(r"[A-Za-z][a-z0-9_]*")
_HEXISH = re.compile(r"[0-9a-f]{16,}")
_TYPE_WORDS = {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "true or false",
               "array": "a list", "object": "a mapping", "null": "null"}
_FORMAT_WORDS = {"uri": "an absolute URI such as `https://example.com/`", "hostname": "a host name",
                 "email": "an email address", "ip": "an IP address or network in CIDR form"}


# ---------------------------------------------------------------- format checking

def _check_uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _URI.fullmatch(value):
        return False
    try:
        urlsplit(value)  # rejects, among others, malformed bracketed IPv6 hosts
    except ValueError:
        return False
    return True


def _check_hostname(value: object) -> bool:
    if not isinstance(value, str):
        return True
    name = value[:-1] if value.endswith(".") else value
    return 0 < len(name) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in name.split("."))


def _check_email(value: object) -> bool:
    # The schema's `email` fields hold mailboxes ("Name <a@b>"); MAS-E1/E2 check them strictly per transport.
    return not isinstance(value, str) or "@" in value


def _check_ip(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        ipaddress.ip_network(value, strict=False)  # MAS accepts host bits set, as in 127.0.0.1/8
    except ValueError:
        return False
    return True


def format_checker() -> FormatChecker:
    """Format checks for the formats MAS's schema uses; our own, so results do not depend on optional packages."""
    checker = FormatChecker(formats=())
    for name, fn in (("uri", _check_uri), ("hostname", _check_hostname), ("email", _check_email),
                     ("ip", _check_ip)):
        checker.checks(name)(fn)
    return checker


# ---------------------------------------------------------------- schema loading

@functools.lru_cache(maxsize=8)
def _load_schema(schema_path: str) -> dict:
    try:
        with open(schema_path, encoding="utf-8") as fh:
            schema = json.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read the MAS configuration schema: {exc.strerror}", file=schema_path,
                          hint="pass the path of MAS's docs/config.schema.json") from None
    except ValueError as exc:
        raise ConfigError(f"the MAS configuration schema is not valid JSON: {exc}", file=schema_path) from None
    if not isinstance(schema, dict):
        raise ConfigError("the MAS configuration schema is not a JSON object", file=schema_path)
    return schema


@functools.lru_cache(maxsize=8)
def _compiled(schema_path: str) -> tuple[Draft7Validator, "_Schema"]:
    """The validator (with our format checker) and the subschema index for one schema file, built once."""
    schema = _load_schema(schema_path)
    return Draft7Validator(schema, format_checker=format_checker()), _Schema(schema)


class _Schema:
    """Local ``$ref`` resolution and plain names for subschemas (``DatabaseConfig.max_connections``)."""

    def __init__(self, root: dict):
        self.root = root
        self.names: dict[int, str] = {}
        for name, definition in (root.get("definitions") or {}).items():
            self._name(definition, name)
        for prop, sub in (root.get("properties") or {}).items():
            self._name(sub, prop)

    def _name(self, schema: Any, name: str) -> None:
        if not isinstance(schema, dict):
            return
        self.names.setdefault(id(schema), name)
        for prop, sub in (schema.get("properties") or {}).items():
            if isinstance(sub, dict):
                self.names.setdefault(id(sub), f"{name}.{prop}")

    def resolve(self, schema: Any) -> Any:
        seen = 0
        while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and seen < 32:
            ref = schema["$ref"]
            if not ref.startswith("#/"):
                return schema
            node: Any = self.root
            for part in ref[2:].split("/"):
                node = node.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(node, dict) else None
            schema, seen = node, seen + 1
        return schema


# ---------------------------------------------------------------- schema errors in plain words

@dataclass(frozen=True)
class SchemaProblem:
    """One schema violation in plain words: key path, message and fix (no values), keyword, definition name."""

    path: Path
    message: str
    remediation: str
    keyword: str
    where: str


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


def _quote_list(values: list[Any]) -> str:
    return ", ".join(f"`{json.dumps(v)}`" if not isinstance(v, str) else f"`{v}`" for v in values)


def _leaf(error: ValidationError, path: Path) -> tuple[str, str]:
    """Message and remediation for one non-combinator keyword; values come from the schema only."""
    kw, want, inst = error.validator, error.validator_value, error.instance
    key = f"`{format_path(path) or '(top level)'}`"
    fix = f"Correct {key} as described in MAS's configuration reference."
    if kw == "type":
        types = [want] if isinstance(want, str) else list(want)
        words = " or ".join(_TYPE_WORDS.get(t, t) for t in types if t != "null")
        optional = " (or leave it out)" if "null" in types else ""
        if "string" in types and _type_of(inst) in ("integer", "number", "boolean"):
            fix = f"Quote the value of {key}: YAML reads unquoted digits and true/false as other types."
        return f"{key} must be {words}{optional}, not {_TYPE_WORDS.get(_type_of(inst), _type_of(inst))}", fix
    if kw == "format":
        return f"{key} is not {_FORMAT_WORDS.get(want, f'a valid {want}')}", fix
    if kw == "pattern":
        if want == ULID_PATTERN:
            return (f"{key} must be a ULID: 26 characters of Crockford base32 (digits and capital letters "
                    "without I, L, O, U)", f"Generate one with `syn2mas` or any ULID tool and put it in {key}.")
        return f"{key} does not have the expected form (pattern `{want}`)", fix
    bounds = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "greater than",
              "exclusiveMaximum": "less than"}
    if kw in bounds:
        return f"{key} must be {bounds[kw]} {want}", fix
    sizes = {"minItems": "have at least {} entries", "maxItems": "have at most {} entries",
             "minLength": "be at least {} characters long", "maxLength": "be at most {} characters long"}
    if kw in sizes:
        return f"{key} must {sizes[kw].format(want)}", fix
    if kw == "const":
        return f"{key} must be {_quote_list([want])}", fix
    if kw == "enum":
        return f"{key} must be one of {_quote_list(list(want))}", fix
    if kw == "uniqueItems":
        return f"{key} must not repeat entries", fix
    return f"{key} does not satisfy the schema keyword `{kw}`", fix


class _Explainer:
    """Turns jsonschema errors into :class:`SchemaProblem` records, following combinators to the real cause."""

    def __init__(self, schema: _Schema):
        self.schema = schema

    def problem(self, error: ValidationError, path: Path, message: str, fix: str) -> SchemaProblem:
        where = self.schema.names.get(id(error.schema), "")
        return SchemaProblem(path, message, fix, str(error.validator), where)

    def explain(self, error: ValidationError) -> Iterator[SchemaProblem]:
        path = tuple(error.absolute_path)
        kw = error.validator
        if kw == "required":
            for name in error.validator_value:
                if isinstance(error.instance, dict) and name not in error.instance:
                    yield self.problem(error, path + (name,), f"`{format_path(path) or '(top level)'}` is missing "
                                       f"the required key `{name}`", f"Add `{format_path(path + (name,))}`.")
        elif kw in ("oneOf", "anyOf"):
            yield from self.alternatives(error, path)
        else:
            yield self.problem(error, path, *_leaf(error, path))

    def alternatives(self, error: ValidationError, path: Path) -> Iterator[SchemaProblem]:
        branches = [self.schema.resolve(b) for b in error.validator_value]
        branches = [b if isinstance(b, dict) else {} for b in branches]
        inst = error.instance
        key = f"`{format_path(path) or '(top level)'}`"
        if all("const" in b for b in branches):
            yield self.problem(error, path, f"{key} must be one of {_quote_list([b['const'] for b in branches])}",
                               f"Use one of the listed values for {key}.")
            return
        real = [i for i, b in enumerate(branches) if b.get("type") != "null"]
        if inst is not None and len(real) == 1:
            # A nullable wrapper (`anyOf: [{$ref: X}, {type: null}]`): explain what is wrong inside X.
            inner = [e for e in error.context if e.relative_schema_path and e.relative_schema_path[0] == real[0]]
            for sub in inner:
                yield from self.explain(sub)
            if inner:
                return
        tag = _discriminator(branches)
        if tag and isinstance(inst, dict):
            allowed = [b["properties"][tag]["const"] for b in branches]
            if tag not in inst:
                yield self.problem(error, path + (tag,), f"{key} is missing the required key `{tag}`",
                                   f"Add `{format_path(path + (tag,))}`: one of {_quote_list(allowed)}.")
                return
            if inst[tag] not in allowed:
                yield self.problem(error, path + (tag,), f"`{format_path(path + (tag,))}` must be one of "
                                   f"{_quote_list(allowed)}", f"Use one of the listed values for "
                                   f"`{format_path(path + (tag,))}`.")
                return
            index = allowed.index(inst.get(tag))
            inner = [e for e in error.context if e.relative_schema_path and e.relative_schema_path[0] == index]
            for sub in inner:
                yield from self.explain(sub)
            if inner:
                return
        if error.context:
            # No structure to go by: explain the sub-error jsonschema ranks as most relevant.
            yield from self.explain(best_match(error.context))
            return
        yield self.problem(error, path, f"{key} does not match any of the forms MAS accepts here",
                           f"Compare {key} with MAS's configuration reference.")


def _discriminator(branches: list[dict]) -> str | None:
    """A property every branch fixes with ``const`` (``name`` for HTTP resources), if any."""
    props = [b.get("properties") or {} for b in branches]
    if not props or not props[0]:
        return None
    for name in props[0]:
        if all(isinstance(p.get(name), dict) and "const" in p[name] for p in props):
            return name
    return None


def schema_problems(schema_path: str, data: Any) -> list[SchemaProblem]:
    """Schema violations of ``data`` in plain words, one per offending key, deduplicated."""
    validator, schema = _compiled(schema_path)
    explainer = _Explainer(schema)
    out: dict[tuple[Path, str], SchemaProblem] = {}
    for error in validator.iter_errors(data):
        for problem in explainer.explain(error):
            out.setdefault((problem.path, problem.message), problem)
    return list(out.values())


# ---------------------------------------------------------------- unknown keys

def unknown_keys(schema_path: str, data: Any) -> list[tuple[Path, list[str]]]:
    """Keys MAS does not know (and ignores), with the keys it does know at that place."""
    validator, schema = _compiled(schema_path)
    found: dict[Path, list[str]] = {}
    _walk_unknown(validator, schema, data, validator.schema, (), found)
    return sorted(found.items(), key=lambda item: format_path(item[0]))


def _expand(validator: Draft7Validator, schema: _Schema, sub: Any, node: Any, *, matching: bool = True,
            depth: int = 0) -> list[dict]:
    """The concrete schemas at a node: references resolved, ``allOf`` flattened and, of ``anyOf``/``oneOf``, the
    branches ``node`` validates against (every branch with ``matching=False``)."""
    sub = schema.resolve(sub)
    if not isinstance(sub, dict) or depth > 16:
        return []
    out = [sub]
    for part in sub.get("allOf") or []:
        out += _expand(validator, schema, part, node, matching=matching, depth=depth + 1)
    for combinator in ("anyOf", "oneOf"):
        for branch in sub.get(combinator) or []:
            if not matching or validator.evolve(schema=branch).is_valid(node):
                out += _expand(validator, schema, branch, node, matching=matching, depth=depth + 1)
    return out


def _walk_unknown(validator: Draft7Validator, schema: _Schema, node: Any, sub: Any, path: Path,
                  found: dict[Path, list[str]]) -> None:
    concrete = _expand(validator, schema, sub, node)
    if isinstance(node, dict):
        props: dict[str, list[Any]] = {}
        for s in concrete:
            for name, child in (s.get("properties") or {}).items():
                props.setdefault(name, []).append(child)
        # A key of a branch that does not match (`host` in a bind read as a file descriptor) is known to MAS;
        # the rules, not this note, explain what is wrong there.
        everywhere = {name for s in _expand(validator, schema, sub, node, matching=False)
                      for name in (s.get("properties") or {})}
        free = any("additionalProperties" in s or "patternProperties" in s for s in concrete)
        for key, value in node.items():
            # YAML 1.2 allows non-string keys (`1: x`); name them as text, never as a list index.
            sub_path = path + (key if isinstance(key, str) else str(key),)
            if key in props:
                for child in props[key]:
                    _walk_unknown(validator, schema, value, child, sub_path, found)
            elif everywhere and key not in everywhere and not free:
                found[sub_path] = sorted(everywhere)
    elif isinstance(node, list):
        items = [s["items"] for s in concrete if isinstance(s.get("items"), dict)]
        for index, value in enumerate(node):
            for child in items:
                _walk_unknown(validator, schema, value, child, path + (index,), found)


# ---------------------------------------------------------------- entry point

def validate_mas_config(doc: ConfigDoc, schema_path: str, *, base_dir: str | None = None) -> list[Finding]:
    """Check a merged MAS configuration: schema (with formats), mapping.md 6.2 rules, unknown-key notes.

    Returns sorted findings: one ``mas-config-invalid`` (scope ``synapse+mas``) per violation at the offending
    node, severity ``error`` (``warning`` when a referenced file cannot be read), plus ``info`` notes for
    unknown keys. Relative file paths in the configuration are read from ``base_dir`` (default: the working
    directory, as MAS does). Raises :class:`ConfigError` when the schema itself cannot be read.
    """
    violations = run_rules(doc.data, base_dir)
    # A rule that explains a schema failure at the same key more precisely replaces it (MAS-S2, MAS-T1).
    covered = {(v.path, keyword) for v in violations for keyword in v.supersedes}
    findings = [violation_finding(doc, v) for v in violations]
    for problem in schema_problems(schema_path, doc.data):
        if (problem.path, problem.keyword) not in covered:
            findings.append(_schema_finding(doc, problem))
    for path, known in unknown_keys(schema_path, doc.data):
        findings.append(_unknown_note(doc, path, known))
    return sort_findings(findings)


def _schema_finding(doc: ConfigDoc, p: SchemaProblem) -> Finding:
    where = f" ({p.where})" if p.where else ""
    return Finding(rule=RULE_ID, severity="error", message=f"schema{where}: {p.message}; MAS refuses to start",
                   location=doc.locate(p.path), scope=SCOPE, remediation=p.remediation, option=f"schema:{p.keyword}",
                   details={"schema_keyword": p.keyword, "schema_definition": p.where})


def looks_like_key_name(name: str) -> bool:
    """Whether an unknown key may be printed: a short snake_case word, not something like a misplaced secret.

    A mis-indented value (``encryption:`` followed by the key on the next line, one level up) turns a secret
    into a mapping key; such a key is never echoed.
    """
    return len(name) <= 40 and bool(_KEY_NAME.fullmatch(name)) and not _HEXISH.fullmatch(name)


def _unknown_note(doc: ConfigDoc, path: Path, known: list[str]) -> Finding:
    name, parent = str(path[-1]), format_path(path[:-1])
    where = "at the top level" if len(path) == 1 else f"in `{parent}`"
    fix = "Fix the spelling or remove the key; MAS's configuration reference lists the keys."
    if not looks_like_key_name(name):
        at = doc.locate(path)
        return Finding(rule=NOTE_RULE, severity="info", scope=SCOPE, option="unknown-key",
                       location=Location(at.file, at.line, at.column, parent),
                       message=f"a key {where} is not a key MAS knows and does not look like a key name (it may be "
                               "a misplaced value, so it is not shown); MAS ignores it",
                       remediation="Check the indentation at this line; " + fix)
    guess = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"; did you mean `{guess[0]}`?" if guess else ""
    return Finding(rule=NOTE_RULE, severity="info", scope=SCOPE, location=doc.locate(path), option="unknown-key",
                   message=f"`{format_path(path)}` is not a key MAS knows {where}, so MAS ignores it{hint}",
                   remediation=fix)


__all__ = ["RULE_ID", "RULES", "SchemaProblem", "format_checker", "is_valid_mailbox", "looks_like_key_name",
           "schema_problems", "unknown_keys", "validate_mas_config"]
