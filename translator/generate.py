"""``syn2mas config generate``: Synapse configuration in, MAS configuration and Synapse overlay out.

:func:`generate` computes everything and writes nothing (except the ``--secrets-dir`` files, which are only
written once every input has been read and every rule applied); :func:`write_outputs` writes the MAS file and
the overlay atomically with mode 0600.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

from ruamel.yaml.comments import CommentedMap

from engine.configdoc import ConfigDoc, load_mas_config, load_synapse_config
from engine.errors import ConfigError
from engine.findings import Finding, note, sort_findings
from engine.rulefiles import default_rules_dir
from engine.sensitive import is_sensitive, secret_values
from engine.servername import check_server_name

from .apply import Engine, TraceEntry
from .fresh import fresh_mas_config, write_secrets_dir
from .patch import edit_list, new_patch_document, render_patch
from .randomness import Entropy
from .ruleset import load_ruleset
from .shapes import check_shapes
from .targetpath import get_at, parse_target
from .transforms import normalise_url
from .writer import atomic_write, dump, load_round_trip, move_comment, plain, to_node

COMPAT_MODES = ("syn2mas", "reference")
# checks.md 5: `generate` reports the provider options it cannot translate with the same check rules as `lint`.
GENERATE_CHECKS = ("oidc-provider-skipped", "oidc-provider-option-unsupported")


@dataclass
class GenerateOptions:
    """Command-line options of ``config generate`` (mapping.md 3.2, 3.5, 4.8, 5.10, 5.11, 7.5, 7.7)."""

    output: str | None = None
    from_mas: str | None = None
    tos_uri: str | None = None
    synapse_url: str | None = None
    mas_internal_url: str | None = None
    mas_database_uri: str | None = None
    secrets_dir: str | None = None
    compat: str = "syn2mas"
    rules_dir: str | None = None

    def expression_options(self) -> dict[str, Any]:
        """What rules read as ``options.*``."""
        return {"tos_uri": self.tos_uri, "synapse_url": self.synapse_url,
                "mas_internal_url": self.mas_internal_url, "mas_database_uri": self.mas_database_uri,
                "secrets_dir": self.secrets_dir, "compat": self.compat}


@dataclass
class GenerateResult:
    """The MAS document and overlay texts, findings and notes, the trace, and the edit list."""

    mas_text: str
    patch_text: str
    findings: list[Finding]
    trace: list[TraceEntry]
    edits: list[str]
    mas: dict
    base: str
    secret_files: list[str] = field(default_factory=list)
    secrets: set[str] = field(default_factory=set)


def _check_options(options: GenerateOptions) -> None:
    for flag, value in (("--synapse-url", options.synapse_url), ("--mas-internal-url", options.mas_internal_url),
                        ("--tos-uri", options.tos_uri)):
        if value is not None and (normalise_url(value) is None or not value.lower().startswith(("http://", "https://"))):
            raise ConfigError(f"option {flag}: not an absolute http(s) URL", key=flag,
                              hint="give a URL such as https://example.org/")
    uri = options.mas_database_uri
    if uri is not None and not uri.startswith(("postgres://", "postgresql://")):
        raise ConfigError("option --mas-database-uri: not a PostgreSQL connection URI", key="--mas-database-uri",
                          hint="use postgresql://user@host/database (MAS needs its own, empty database)")
    if options.compat not in COMPAT_MODES:
        raise ConfigError(f"option --compat: must be one of {', '.join(COMPAT_MODES)}", key="--compat")


def _mas_secret(path: tuple) -> bool:
    return is_sensitive("mas", path)


def _base_document(options: GenerateOptions, entropy: Entropy) -> tuple[CommentedMap, str]:
    existing = options.from_mas or (options.output if options.output and os.path.exists(options.output) else None)
    if existing:
        return load_round_trip(existing), existing
    return to_node(fresh_mas_config(entropy), (), _mas_secret), "fresh"


def _load_notes(doc: ConfigDoc) -> list[Finding]:
    return [note(n.message, n.location) for n in doc.notes]


def _check_findings(synapse: ConfigDoc, rules_dir: str | None) -> list[Finding]:
    """The ``oidc-provider-*`` findings, from the check rules that ``lint`` runs too."""
    from engine.checks import CheckOptions, rules_by_id, run_checks

    catalogue = rules_by_id(rules_dir)
    rules = [catalogue[rule_id] for rule_id in GENERATE_CHECKS]
    return run_checks(rules, synapse, None, CheckOptions(rules_dir=rules_dir)).findings


def _orphan_provider_notes(engine: Engine, root: CommentedMap, base: str) -> list[Finding]:
    """Providers of an existing MAS file whose Synapse provider is gone: kept, because links may use them."""
    found, providers = get_at(root, parse_target("upstream_oauth2.providers"))
    if base == "fresh" or not found or not isinstance(providers, list):
        return []
    known = {item.key for item in engine.items("oidc_providers")}
    out = []
    for entry in providers:
        idp = entry.get("synapse_idp_id") if isinstance(entry, dict) else None
        if isinstance(idp, str) and idp.startswith("oidc") and idp not in known:
            out.append(note(f"provider `{idp}` of the existing MAS configuration has no Synapse counterpart any more; "
                            "it is kept unchanged (remove it by hand if no user is linked to it)",
                            engine.synapse.locate(("oidc_providers",)), rule="upstream_oauth2.kept-provider"))
    return out


def _adopt_secret_files(root: Any, converted: Any) -> None:
    """Mirror write_secrets_dir's ``x`` -> ``x_file`` replacements into the round-trip document, in place."""
    if isinstance(root, dict) and isinstance(converted, dict):
        for key in list(root.keys()):
            file_key = f"{key}_file"
            if key not in converted and file_key in converted and file_key not in root:
                keys = list(root.keys())
                pos = keys.index(key)
                move_comment(root, key, file_key)
                del root[key]
                root.insert(pos, file_key, converted[file_key])
            elif key in converted:
                _adopt_secret_files(root[key], converted[key])
    elif isinstance(root, list) and isinstance(converted, list):
        for a, b in zip(root, converted):
            _adopt_secret_files(a, b)


def _retarget_trace(trace: list[TraceEntry], root: CommentedMap) -> list[TraceEntry]:
    out = []
    for entry in trace:
        if entry.document == "mas":
            path = parse_target(entry.to)
            if not get_at(root, path)[0] and get_at(root, path[:-1] + (type(path[-1])(f"{path[-1].name}_file"),))[0]:
                entry = TraceEntry(entry.to + "_file", entry.source, entry.rule, entry.origin, entry.document)
        out.append(entry)
    return out


def generate(synapse_paths: Sequence[str], options: GenerateOptions, entropy: Entropy) -> GenerateResult:
    """Translate the Synapse configuration at ``synapse_paths`` (mapping.md 1-5, 7).

    Raises :class:`~engine.errors.Syn2MasError` (exit 1) for unreadable or malformed input; nothing is written
    then. Findings (``oidc-provider-*``) and notes never stop generation.
    """
    _check_options(options)
    if not synapse_paths:
        raise ConfigError("no Synapse configuration given", hint="pass --synapse-config FILE (repeatable)")
    ruleset = load_ruleset(options.rules_dir)
    synapse = load_synapse_config(list(synapse_paths), skip_patch_overlays=True)
    check_shapes(synapse, options.rules_dir or default_rules_dir())
    check_server_name(synapse)
    root, base = _base_document(options, entropy)
    engine = Engine(ruleset, synapse, options.expression_options(), entropy, entropy.now(), options.rules_dir)
    engine.run("mas", root)
    trace = list(engine.trace)
    secret_files: list[str] = []
    if options.secrets_dir:
        converted = write_secrets_dir(plain(root), options.secrets_dir, entropy)
        _adopt_secret_files(root, converted.config)
        secret_files = converted.written
        trace = _retarget_trace(trace, root)
    mas_plain = plain(root)
    patch = new_patch_document()
    engine.run("synapse_patch", patch, mas=mas_plain)
    findings = sort_findings(_load_notes(synapse) + _check_findings(synapse, options.rules_dir) + engine.findings
                             + _orphan_provider_notes(engine, root, base))
    secrets = secret_values("synapse", synapse.data) | secret_values("mas", mas_plain)
    return GenerateResult(
        mas_text=dump(root), patch_text=render_patch(patch), findings=findings,
        trace=trace + [t for t in engine.trace if t.document != "mas"], edits=edit_list(patch, synapse),
        mas=mas_plain, base=base, secret_files=secret_files, secrets=secrets)


@dataclass
class PatchResult:
    """The overlay for an existing MAS configuration: its text, the edit list, and the secrets to scrub."""

    text: str
    edits: list[str]
    secrets: set[str]


def synapse_patch(synapse_paths: Sequence[str], mas_paths: Sequence[str], options: GenerateOptions) -> PatchResult:
    """The Synapse overlay that switches delegation on (mapping.md 7.7), for the MAS configuration at
    ``mas_paths`` as it is (`syn2mas synapse-patch`): the same rules as `generate --synapse-patch`, which
    applies them to the configuration it generates. Writes nothing."""
    if not synapse_paths:
        raise ConfigError("no Synapse configuration given", hint="pass --synapse-config FILE (repeatable)")
    if not mas_paths:
        raise ConfigError("no MAS configuration given", hint="pass --config FILE (repeatable)")
    ruleset = load_ruleset(options.rules_dir)
    synapse = load_synapse_config(list(synapse_paths), skip_patch_overlays=True)
    check_shapes(synapse, options.rules_dir or default_rules_dir())
    mas = load_mas_config(list(mas_paths)).data
    entropy = Entropy.system()
    engine = Engine(ruleset, synapse, options.expression_options(), entropy, entropy.now(), options.rules_dir)
    patch = new_patch_document()
    engine.run("synapse_patch", patch, mas=mas)
    return PatchResult(text=render_patch(patch), edits=edit_list(patch, synapse),
                       secrets=secret_values("synapse", synapse.data) | secret_values("mas", mas))


def write_outputs(result: GenerateResult, output: str, synapse_patch: str | None = None) -> None:
    """Write the MAS configuration (and the overlay) atomically with mode 0600."""
    atomic_write(output, result.mas_text)
    if synapse_patch:
        atomic_write(synapse_patch, result.patch_text)


def finding_lines(findings: list[Finding]) -> list[str]:
    """``file:line:col: [severity] message (rule)``, one per finding (the parsable format of style.md 5)."""
    lines = []
    for f in findings:
        loc = f.location
        where = f"{loc.file}:{loc.line}:{loc.column}" if loc.file else "-"
        lines.append(f"{where}: [{f.severity}] {f.message} ({f.rule})")
    return lines
