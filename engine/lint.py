"""The configuration half of `lint` and `check`: load inputs, run the config rules, apply acknowledgements, emit.

`check` builds on the same two calls: ``run_config_checks`` (its findings plus a context with the loaded
documents, skipped rules, secrets and acknowledgements), then its database findings, then ``emit``.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import sys
from dataclasses import dataclass, field
from typing import IO

from . import acks as _acks
from .checks import CONFIG_SCOPES, CheckOptions, CheckRule, SkippedRule, load_check_rules, run_checks
from .configdoc import ConfigDoc, load_mas_config, load_synapse_config
from .errors import ConfigError
from .findings import Finding, sort_findings
from .rulefiles import default_rules_dir
from .sensitive import scrub, secret_values
from .servername import check_server_name

MAS_SCHEMA_ENV = "SYN2MAS_MAS_SCHEMA"
_MIN_SECRET_LEN = 4


@dataclass
class LintOptions:
    """Everything `lint` (and the configuration part of `check`) can be told on the command line."""

    ignore_missing_auth_providers: bool = False
    mas_schema: str | None = None
    acknowledgements: str | None = None
    accept: tuple[str, ...] = ()
    # Read `syn2mas-acknowledgements.yaml` from the working directory when no file is named.
    default_acknowledgements: bool = True
    today: _dt.date | None = None
    rules_dir: str | None = None


@dataclass
class LintContext:
    """The loaded inputs and what the reporters need besides the findings."""

    synapse: ConfigDoc
    mas: ConfigDoc | None
    rules: tuple[CheckRule, ...]
    rules_dir: str
    options: LintOptions
    check_options: CheckOptions
    acknowledgements: list[_acks.Acknowledgement] = field(default_factory=list)
    skipped: list[SkippedRule] = field(default_factory=list)
    secrets: set[str] = field(default_factory=set)
    inputs: list[tuple[str, str]] = field(default_factory=list)


def resolve_mas_schema(option: str | None) -> str | None:
    """`--mas-schema`, else `SYN2MAS_MAS_SCHEMA`, else None (then only the mapping.md 6 rules run)."""
    path = option or os.environ.get(MAS_SCHEMA_ENV) or None
    if path is not None and not os.path.isfile(path):
        raise ConfigError("MAS configuration schema not found", file=path,
                          hint="pass the `docs/config.schema.json` of your MAS release with --mas-schema")
    return path


def _load_acknowledgements(options: LintOptions, rules: tuple[CheckRule, ...]) -> tuple[list, list[str]]:
    acknowledgeable = {r.id: r.acknowledgeable for r in rules}
    path = options.acknowledgements or (_acks.default_file() if options.default_acknowledgements else None)
    entries = _acks.load_file(path, acknowledgeable) if path else []
    entries += _acks.parse_accept(list(options.accept), acknowledgeable)
    return entries, [path] if path else []


def load_context(synapse_paths: list[str], mas_paths: list[str], options: LintOptions) -> LintContext:
    """Load and validate every input before any rule runs, so that a bad file fails fast (exit 1)."""
    rules_dir = options.rules_dir or default_rules_dir()
    rules = load_check_rules(rules_dir)
    synapse = load_synapse_config(list(synapse_paths), skip_patch_overlays=True)
    if synapse.get("server_name") is None:
        raise ConfigError("the Synapse configuration has no `server_name`", file=synapse.files[0] if synapse.files
                          else None, line=1, hint="give every Synapse configuration file Synapse itself reads")
    check_server_name(synapse)
    mas = load_mas_config(list(mas_paths)) if mas_paths else None
    check_options = CheckOptions(ignore_missing_auth_providers=options.ignore_missing_auth_providers,
                                 mas_schema=resolve_mas_schema(options.mas_schema) if mas else None,
                                 rules_dir=rules_dir)
    entries, ack_files = _load_acknowledgements(options, rules)
    secrets = secret_values("synapse", synapse.data) | (secret_values("mas", mas.data) if mas else set())
    inputs = [(f, "synapse") for f in synapse.files] + [(f, "mas") for f in (mas.files if mas else [])]
    inputs += [(f, "acknowledgements") for f in ack_files]
    return LintContext(synapse, mas, rules, rules_dir, options, check_options, entries, [], secrets, inputs)


def _notes(doc: ConfigDoc, scope: str) -> list[Finding]:
    return [Finding(rule="note", severity="info", message=n.message, location=n.location, scope=scope)
            for n in doc.notes]


def run_config_checks(synapse_paths: list[str], mas_paths: list[str],
                      options: LintOptions | None = None) -> tuple[list[Finding], LintContext]:
    """Run the `synapse` and (with MAS files) `synapse+mas` rules; load notes become info findings.

    Raises :class:`engine.errors.Syn2MasError` (exit 1) for unreadable or malformed inputs, including an
    invalid acknowledgements file. Acknowledgements are applied later, by :func:`emit`, so that the
    database findings of `check` are covered too.
    """
    options = options or LintOptions()
    context = load_context(synapse_paths, mas_paths, options)
    run = run_checks(context.rules, context.synapse, context.mas, context.check_options)
    context.skipped.extend(run.skipped)
    context.secrets |= run.file_secrets
    findings = _notes(context.synapse, "synapse") + (_notes(context.mas, "synapse+mas") if context.mas else [])
    return findings + run.findings, context


def scrub_output(text: str, secrets: set[str]) -> str:
    """The last line of defence: remove every secret, also in its JSON- and GitHub-escaped spellings."""
    from .reporters.github import escape_data, escape_property

    variants: set[str] = set()
    for s in secrets:
        if len(s) >= _MIN_SECRET_LEN:
            variants |= {s, json.dumps(s)[1:-1], json.dumps(s, ensure_ascii=False)[1:-1], escape_data(s),
                         escape_property(s)}
    return scrub(text, {v for v in variants if len(v) >= _MIN_SECRET_LEN})


def _encodable(text: str) -> str:
    """Lone surrogates (from a YAML `"\\ud83d"` escape, or an undecodable file name) spelled as `\\udXXX`,
    so that writing the report in UTF-8 cannot fail."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _write(path: str, text: str) -> None:
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise ConfigError(f"cannot write the report: {exc.strerror}", file=path) from None


def build_report(findings: list[Finding], context: LintContext, command: str,
                 scopes: tuple[str, ...] = CONFIG_SCOPES):
    """Apply acknowledgements (adding notes for unused or expired entries) and assemble the report."""
    from .reporters.model import InputFile, Report, RuleInfo, rules_digest

    today = context.options.today or _dt.date.today()
    notes = _acks.apply(findings, context.acknowledgements, today)
    rules = [RuleInfo(r.id, r.severity, r.scope, r.summary, r.remediation) for r in context.rules if r.scope in scopes]
    inputs = [InputFile.of(path, kind) for path, kind in context.inputs]
    return Report(command, sort_findings(findings + notes), list(context.skipped), inputs, rules,
                  rules_digest(context.rules_dir))


def emit(findings: list[Finding], context: LintContext, fmt: str = "text", output: str | None = None, *,
         command: str = "lint", sarif_file: str | None = None, scopes: tuple[str, ...] = CONFIG_SCOPES,
         stream: IO[str] | None = None) -> int:
    """Print (or write to ``output``) the report in ``fmt`` (`auto` resolved here) and return the exit code.

    Everything written passes through :func:`scrub_output` with the secrets of the loaded configurations
    and of the secret files the rules read.
    """
    from .reporters import render, resolve_format

    report = build_report(findings, context, command, scopes)
    fmt = resolve_format(fmt)
    stream = stream or sys.stdout
    color = (fmt == "text" and output is None and "NO_COLOR" not in os.environ
             and hasattr(stream, "isatty") and stream.isatty())
    text = _encodable(scrub_output(render(report, fmt, color=color), context.secrets))
    if sarif_file:
        _write(sarif_file, _encodable(scrub_output(render(report, "sarif"), context.secrets)))
    if output:
        _write(output, text)
    else:
        stream.write(text)
        stream.flush()
    return report.exit_code
