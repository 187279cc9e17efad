"""Named predicates for check rules: what JMESPath cannot express, exposed to rules as JMESPath functions.

Every function here is pure over its arguments except for reading the secret files a configuration
names. None returns a secret value: comparisons return outcomes ("equal", "differs", "unverifiable")
and which side is set, and provider entries are returned with their sensitive values masked. Contents
of the files read are remembered in ``file_secrets`` so that the reporters can scrub them as well.
"""
from __future__ import annotations

import functools
import os
import re
import urllib.parse
from typing import Any

import jmespath
from jmespath import functions
from jmespath.exceptions import JMESPathError

from .expr import _Functions as BaseFunctions  # the Synapse-semantics functions every rule may use
from .expr import compile_expr
from .locations import format_path
from .sensitive import REDACTED, is_sensitive
from .synapse_providers import collect_providers
from .yamlsource import load_yaml_file

# RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
_URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")


def is_scope_token(value: Any) -> bool:
    """A valid OAuth 2.0 scope token (mapping.md 4.5): non-empty, printable ASCII without space, `"` or `\\`."""
    return isinstance(value, str) and _SCOPE_TOKEN.fullmatch(value) is not None


def is_url(value: Any) -> bool:
    """An absolute URL that MAS's URL parser accepts: a scheme, no spaces, a host for http(s), a valid port."""
    if not isinstance(value, str) or _CONTROL_OR_SPACE.search(value):
        return False
    try:
        parts = urllib.parse.urlsplit(value)
        _ = parts.port  # raises ValueError for a non-numeric or out-of-range port
    except ValueError:
        return False
    if not parts.scheme or not _URL_SCHEME.fullmatch(parts.scheme):
        return False
    if parts.scheme.lower() in ("http", "https"):
        return bool(parts.hostname)
    return True


def strip_sensitive(side: str, value: Any, base: tuple = ()) -> Any:
    """A copy of ``value`` whose sensitive values (rules/sensitive.yaml, paths below ``base``) are replaced by a
    marker: rules can still test that a secret is set, never read it."""
    if isinstance(value, dict):
        return {k: REDACTED if v is not None and is_sensitive(side, base + (k,)) else
                strip_sensitive(side, v, base + (k,)) for k, v in value.items()}
    if isinstance(value, list):
        return [strip_sensitive(side, v, base + (i,)) for i, v in enumerate(value)]
    return value


def synapse_oidc_providers(synapse: Any) -> list[dict]:
    """Synapse's OIDC providers (mapping.md 4.1) as plain data for rules, secrets removed.

    Each entry: ``key``, ``path`` (key path text), ``source`` (`oidc_providers` or `oidc_config`),
    ``skipped`` (the reason `generate` does not convert it, or null), ``duplicate`` and ``config``
    (sensitive values replaced by a marker).
    """
    if not isinstance(synapse, dict):
        return []
    return [{"key": p.key, "path": p.path_text, "source": p.path[0], "skipped": p.skipped,
             "duplicate": p.duplicate, "config": strip_sensitive("synapse", p.config, p.path)}
            for p in collect_providers(synapse)]


def _mas_providers(mas: Any) -> list[tuple[int, dict]]:
    section = mas.get("upstream_oauth2") if isinstance(mas, dict) else None
    providers = section.get("providers") if isinstance(section, dict) else None
    if not isinstance(providers, list):
        return []
    return [(i, p) for i, p in enumerate(providers) if isinstance(p, dict)]


def mas_providers_for(mas: Any, key: Any) -> list[dict]:
    """MAS upstream providers whose `synapse_idp_id` is ``key``: ``index``, ``path``, ``enabled``, ``issuer``."""
    return [{"index": i, "path": format_path(("upstream_oauth2", "providers", i)),
             "enabled": p.get("enabled") is not False, "issuer": p.get("issuer")}
            for i, p in _mas_providers(mas) if p.get("synapse_idp_id") == key]


def provider_pairs(synapse: Any, mas: Any) -> list[dict]:
    """Each converted-or-skipped Synapse provider (duplicates left out) paired with each MAS provider of its key."""
    out: list[dict] = []
    for sp in synapse_oidc_providers(synapse):
        if sp["duplicate"]:
            continue
        for mp in mas_providers_for(mas, sp["key"]):
            out.append({"key": sp["key"], "synapse_path": sp["path"], "synapse_issuer": sp["config"].get("issuer"),
                        "mas_path": mp["path"], "mas_issuer": mp["issuer"], "mas_enabled": mp["enabled"]})
    return out


@functools.lru_cache(maxsize=None)
def rule_data(rules_dir: str, name: str) -> Any:
    """A data file ``rules/<name>.yaml`` (for example the list of known authentication modules)."""
    if not re.fullmatch(r"[a-z0-9-]+", name):
        raise ValueError(f"invalid data file name {name!r}")
    return load_yaml_file(os.path.join(rules_dir, f"{name}.yaml"), (1, 2)).data


class SecretFiles:
    """Reads the secret files a configuration names and remembers their contents for scrubbing."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def read(self, path: Any) -> tuple[bytes | None, str | None]:
        """``(content, None)`` or ``(None, why it cannot be read)``; relative paths are from the working directory."""
        if not isinstance(path, str) or not path:
            return None, "the path is not a string"
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except OSError as exc:
            return None, exc.strerror or type(exc).__name__
        text = raw.decode("utf-8", "replace")
        self.seen.update({text, text.strip()})
        return raw, None


def _v1_scheme(mas: dict) -> tuple[int, dict] | None:
    passwords = mas.get("passwords")
    schemes = passwords.get("schemes") if isinstance(passwords, dict) else None
    for i, scheme in enumerate(schemes if isinstance(schemes, list) else []):
        if isinstance(scheme, dict) and scheme.get("version") == 1:
            return i, scheme
    return None


def _as_bytes(value: Any) -> bytes:
    # surrogatepass: a value with a lone surrogate (from a YAML "\uD800" escape) must not crash the comparison.
    return b"" if value is None else str(value).encode("utf-8", "surrogatepass")


def pepper_check(synapse: Any, mas: Any, files: SecretFiles) -> dict:
    """Compare Synapse's pepper with the secret of MAS scheme version 1 (checks.md `pepper-mismatch`).

    MAS appends the raw bytes of `secret_file` (not trimmed), or `secret` as UTF-8. Absent and empty
    count as equal. Outcome `no_scheme` when MAS has no version-1 scheme (another rule reports that).
    """
    synapse = synapse if isinstance(synapse, dict) else {}
    config = synapse.get("password_config")
    pepper = _as_bytes(config.get("pepper") if isinstance(config, dict) else None)
    found = _v1_scheme(mas if isinstance(mas, dict) else {})
    result: dict[str, Any] = {"outcome": "no_scheme", "synapse_set": bool(pepper), "mas_set": False,
                              "mas_key": None, "path": "passwords.schemes", "file": None, "reason": None,
                              "trailing_newline": False}
    if found is None:
        return result
    index, scheme = found
    base = ("passwords", "schemes", index)
    if scheme.get("secret") is not None:
        secret, key = _as_bytes(scheme["secret"]), "secret"
    elif scheme.get("secret_file") is not None:
        key = "secret_file"
        raw, reason = files.read(scheme["secret_file"])
        result.update(file=scheme["secret_file"], reason=reason)
        if raw is None:
            result.update(outcome="unverifiable", mas_key=key, path=format_path(base + (key,)))
            return result
        secret = raw
        result["trailing_newline"] = raw.endswith(b"\n")
    else:
        secret, key = b"", None
    result.update(mas_set=bool(secret), mas_key=key, path=format_path(base + ((key,) if key else ())),
                  outcome="equal" if secret == pepper else "differs")
    return result


def _synapse_delegation_secret(synapse: dict, files: SecretFiles) -> dict | None:
    """Synapse's side of the shared secret: which key holds it and its (trimmed-if-file) value."""
    mas_block = synapse.get("matrix_authentication_service")
    msc3861 = (synapse.get("experimental_features") or {}).get("msc3861") \
        if isinstance(synapse.get("experimental_features"), dict) else None
    if isinstance(mas_block, dict) and mas_block.get("enabled"):
        section, inline, path_key = "matrix_authentication_service", "secret", "secret_path"
        block = mas_block
    elif isinstance(msc3861, dict) and msc3861.get("enabled"):
        section, inline, path_key = "experimental_features.msc3861", "admin_token", "admin_token_path"
        block = msc3861
    else:
        return None
    if block.get(inline) is not None:
        return {"key": f"{section}.{inline}", "value": str(block[inline]), "file": None, "reason": None}
    if block.get(path_key) is not None:
        raw, reason = files.read(block[path_key])
        value = raw.decode("utf-8", "replace").strip() if raw is not None else None
        return {"key": f"{section}.{path_key}", "value": value, "file": block[path_key], "reason": reason}
    return {"key": section, "value": "", "file": None, "reason": None}


def matrix_secret_check(synapse: Any, mas: Any, files: SecretFiles) -> dict:
    """Compare the shared secret of an already-delegating Synapse with MAS `matrix.secret[_file]`.

    Outcome `not_delegated` when Synapse has no delegation enabled; `unverifiable` when a file cannot
    be read. Files are whitespace-trimmed on both sides, as Synapse and MAS do.
    """
    synapse = synapse if isinstance(synapse, dict) else {}
    side = _synapse_delegation_secret(synapse, files)
    result: dict[str, Any] = {"outcome": "not_delegated", "synapse_key": None, "synapse_set": False,
                              "mas_key": None, "mas_set": False, "path": "matrix", "file": None, "reason": None}
    if side is None:
        return result
    result.update(synapse_key=side["key"], synapse_set=bool(side["value"]))
    matrix = (mas or {}).get("matrix") if isinstance(mas, dict) else None
    matrix = matrix if isinstance(matrix, dict) else {}
    mas_value: str | None = ""
    if matrix.get("secret") is not None:
        mas_value, result["mas_key"] = str(matrix["secret"]), "secret"
    elif matrix.get("secret_file") is not None:
        result["mas_key"] = "secret_file"
        raw, reason = files.read(matrix["secret_file"])
        mas_value = raw.decode("utf-8", "replace").strip() if raw is not None else None
        if raw is None:
            result.update(file=matrix["secret_file"], reason=reason)
    if result["mas_key"]:
        result["path"] = f"matrix.{result['mas_key']}"
    result["mas_set"] = bool(mas_value)
    if side["value"] is None:
        result.update(outcome="unverifiable", file=side["file"], reason=side["reason"])
    elif mas_value is None:
        result["outcome"] = "unverifiable"
    else:
        result["outcome"] = "equal" if side["value"] == mas_value else "differs"
    return result


class CheckFunctions(BaseFunctions):
    """The JMESPath functions of check rules: the shared Synapse-semantics ones plus this module's predicates."""

    def __init__(self, rules_dir: str, files: SecretFiles | None = None):
        super().__init__()
        self.rules_dir = rules_dir
        self.files = files or SecretFiles()
        self._memo: dict[tuple, tuple] = {}

    def _once(self, name: str, fn, *args):
        """One result per predicate and arguments within a run: documents do not change while rules run, and
        many variants ask for the same providers or comparison (a secret file is read once)."""
        key = (name,) + tuple(id(a) for a in args)
        if key not in self._memo:
            self._memo[key] = (args, fn(*args))  # keep the arguments alive so that their ids stay unique
        return self._memo[key][1]

    @functions.signature({"types": []})
    def _func_is_url(self, value):
        return is_url(value)

    @functions.signature({"types": []})
    def _func_is_scope_token(self, value):
        return is_scope_token(value)

    @functions.signature({"types": ["string", "null"]}, {"types": ["string"]})
    def _func_rstrip(self, value, chars):
        return value.rstrip(chars) if value is not None else None

    @functions.signature({"types": []})
    def _func_synapse_oidc_providers(self, synapse):
        return self._once("providers", synapse_oidc_providers, synapse)

    @functions.signature({"types": []}, {"types": []})
    def _func_mas_providers_for(self, mas, key):
        return mas_providers_for(mas, key)

    @functions.signature({"types": []}, {"types": []})
    def _func_provider_pairs(self, synapse, mas):
        return provider_pairs(synapse, mas)

    @functions.signature({"types": ["string"]})
    def _func_rule_data(self, name):
        return rule_data(self.rules_dir, name)

    @functions.signature({"types": []}, {"types": []})
    def _func_pepper_check(self, synapse, mas):
        return self._once("pepper", lambda s, m: pepper_check(s, m, self.files), synapse, mas)

    @functions.signature({"types": []}, {"types": []})
    def _func_matrix_secret_check(self, synapse, mas):
        return self._once("matrix", lambda s, m: matrix_secret_check(s, m, self.files), synapse, mas)


# Functions whose result never contains a value of their arguments (booleans, counts, outcomes), or
# whose results have sensitive keys removed. Reading a secret path inside them is not "printing" it,
# which is what the load-time check of rule `vars` (engine.checks) relies on.
OPAQUE_FUNCTIONS = frozenset({
    "truthy", "explicit_true", "synapse_strtobool", "regex_match", "is_string", "is_list", "is_map",
    "length", "type", "contains", "starts_with", "ends_with", "keys", "is_url", "is_scope_token",
    "synapse_oidc_providers", "mas_providers_for", "provider_pairs", "rule_data", "pepper_check",
    "matrix_secret_check",
})


class Evaluator:
    """Evaluates rule expressions with :class:`CheckFunctions`; one per run, so file secrets are per run."""

    def __init__(self, rules_dir: str):
        self.functions = CheckFunctions(rules_dir)
        self._options = jmespath.Options(custom_functions=self.functions)

    @property
    def file_secrets(self) -> set[str]:
        return self.functions.files.seen

    def evaluate(self, text: str, data: Any) -> Any:
        """Value of ``text`` over ``data``; a type error inside the expression counts as "no value"."""
        try:
            return compile_expr(text).search(data, options=self._options)
        except JMESPathError:
            return None

    def holds(self, text: str, data: Any) -> bool:
        """Python truthiness of the value, as in :func:`engine.expr.holds`."""
        return bool(self.evaluate(text, data))
