"""The database rules as `migrate`'s pre-migration checks (data-migration.md 1 step 3, 14.2).

Before any database is opened, :class:`MigrationChecks` runs the configuration rules (scopes `synapse`
and `synapse+mas`) with `lint`'s own function and acknowledgements (engine/lint.py): an error refuses
(exit 10), and with ``--strict`` so does an unacknowledged warning (exit 11).

`migrate` then opens Synapse once (migrator/source.py) and hands that open source to its pre-check hook
(``MigrateOptions.pre_checks``); the rules below then read the very snapshot that is migrated. Any
error finding refuses the migration before anything is written (exit 10); warnings are printed, kept
for the report, and with ``--strict`` refuse it too (:meth:`MigrationChecks.database_gate`). The MAS
rules are repeated inside the MAS write transaction with :func:`mas_recheck`, after the MAS tables are
locked.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from migrator.guards import MigrationRefused, Problem
from migrator.source import SynapseSource

from .checks import CONFIG_SCOPES
from .configdoc import ConfigDoc
from .dbchecks import DbCheckResult, run_database_checks
from .dbfacts import DbFacts, build_facts
from .dbhandles import DbHandle
from .errors import Syn2MasError
from .findings import Finding
from .lint import LintContext, LintOptions, build_report, emit, run_config_checks, scrub_output

DATABASE_SCOPES = ("database",)
EXIT_ERRORS = 10  # checks.md 2
EXIT_WARNINGS = 11
ALL_SCOPES = CONFIG_SCOPES + DATABASE_SCOPES

MAS_RECHECK_RULES = frozenset({"mas-schema-missing", "mas-database-not-empty", "mas-provider-not-synced"})


def refusal(findings: list[Finding]) -> MigrationRefused | None:
    """The migrator's refusal for the error findings among ``findings`` (None when there is none)."""
    errors = [f for f in findings if f.severity == "error"]
    if not errors:
        return None
    return MigrationRefused([Problem(f.rule, f.message, f.count or 0, list(f.samples[:5])) for f in errors])


def synapse_pre_check(synapse: ConfigDoc, mas: ConfigDoc | None, *, dry_run: bool,
                      ignore_missing_auth_providers: bool = False, assume_synapse_stopped: bool = False,
                      rules_dir: str | None = None,
                      results: list[DbCheckResult] | None = None) -> Callable[[SynapseSource], None]:
    """A ``pre_checks`` callable: run the Synapse rules on the migrator's open source; raise on errors.

    With ``dry_run`` the mode is `dry-run` (no `synapse-still-running`, ACCESS SHARE locks); otherwise
    `migrate`, whose `synapse-still-running` takes the EXCLUSIVE locks if the source has not already.
    Each run's result is appended to ``results`` (for the migration report).
    """
    facts = build_facts(synapse, mas, rules_dir=rules_dir, mode="dry-run" if dry_run else "migrate",
                        ignore_missing_auth_providers=ignore_missing_auth_providers,
                        assume_synapse_stopped=assume_synapse_stopped)

    def check(source: SynapseSource) -> None:
        handle = DbHandle.for_synapse(source, synapse.locate(("database",)))
        result = run_database_checks(facts, synapse=handle, databases=("synapse",), rules_dir=rules_dir)
        if results is not None:
            results.append(result)
        refused = refusal(result.findings)
        if refused is not None:
            raise refused

    return check


def mas_recheck(conn: Any, mas: ConfigDoc, facts: DbFacts, *, rules_dir: str | None = None) -> list[Finding]:
    """Repeat the MAS rules on the migrator's MAS connection (inside its transaction, tables locked).

    ``facts.linked_providers`` should hold the Synapse provider ids that links use (else every MAS
    provider with a `synapse_idp_id` is required to be synced).
    """
    handle = DbHandle.for_mas(conn, mas.locate(("database",)))
    return run_database_checks(facts, mas=handle, databases=("mas",), only=set(MAS_RECHECK_RULES),
                               rules_dir=rules_dir).findings


class StrictRefusal(Syn2MasError):
    """`migrate --strict` found unacknowledged warnings; nothing was written (exit 11, checks.md 3.3)."""

    exit_code = EXIT_WARNINGS

    def __init__(self, rules: list[str]):
        super().__init__("--strict: unacknowledged warnings (" + ", ".join(sorted(set(rules)))
                         + "); the migration was refused, nothing was written",
                         hint="fix the warnings, or accept each reviewed one with --accept RULE=REASON or in the "
                              "acknowledgements file; `syn2mas check` lists them all")


@dataclass
class MigrationChecks:
    """`migrate`'s findings: the configuration rules (run first) and the database rules (in the snapshot).

    The configuration findings come from :func:`engine.lint.run_config_checks`, so `lint`, `check` and
    `migrate` decide alike; acknowledgements are applied with `lint`'s :func:`engine.lint.build_report`.
    Each stage is judged with only the acknowledgements of its own rules, so that a stage does not call an
    acknowledgement meant for the other stage "unused"; the report (:meth:`report_entries`) applies them all.
    """

    config: list[Finding]
    context: LintContext
    strict: bool = False
    # DbCheckResult of the pre-check hook (engine.premigrate.synapse_pre_check appends to this list).
    database: list[DbCheckResult] = field(default_factory=list)

    @classmethod
    def run(cls, synapse_paths: list[str], mas_paths: list[str], options: LintOptions, *,
            strict: bool = False) -> "MigrationChecks":
        """Load both configurations and run their rules; malformed inputs raise (exit 1)."""
        findings, context = run_config_checks(synapse_paths, mas_paths, options)
        return cls(findings, context, strict)

    @property
    def database_findings(self) -> list[Finding]:
        """The findings of the database rules run so far."""
        return [f for result in self.database for f in result.findings]

    def _scoped(self, scopes: tuple[str, ...]) -> LintContext:
        """The lint context with only the acknowledgements of rules in ``scopes`` (same objects, so the
        use counts carry over to the final report)."""
        scope_of = {r.id: r.scope for r in self.context.rules}
        acks = [a for a in self.context.acknowledgements if scope_of.get(a.rule) in scopes]
        return dataclasses.replace(self.context, acknowledgements=acks)

    def _verdict(self, findings: list[Finding], scopes: tuple[str, ...]) -> int:
        """0 clean, 10 errors, 11 unacknowledged warnings (acknowledgements of ``scopes`` applied)."""
        return build_report(findings, self._scoped(scopes), "migrate", scopes).exit_code

    def _print(self, findings: list[Finding], scopes: tuple[str, ...], stream: IO[str]) -> None:
        """Text findings on ``stream``, scrubbed of secrets exactly as `lint` does."""
        emit(findings, self._scoped(scopes), "text", None, command="migrate", scopes=scopes, stream=stream)

    def config_gate(self, stream: IO[str]) -> int:
        """Judge the configuration findings before any database is opened; returns the exit code to stop with
        (10 errors, 11 unacknowledged warnings under ``strict``) or 0 to go on. Errors and warnings are printed."""
        verdict = self._verdict(self.config, CONFIG_SCOPES)
        if any(f.severity in ("error", "warning") for f in self.config):
            self._print(self.config, CONFIG_SCOPES, stream)
        if verdict == EXIT_ERRORS:
            stream.write("migration refused: the configuration has errors; nothing was opened or written\n")
            return verdict
        if verdict == EXIT_WARNINGS and self.strict:
            stream.write(f"error: {StrictRefusal([f.rule for f in self.config if f.blocking])}\n")
            return verdict
        return 0

    def database_gate(self, stream: IO[str]) -> Callable[[SynapseSource], None]:
        """A ``pre_checks`` callable to run after :func:`synapse_pre_check`: prints the database warnings and,
        under ``strict``, raises :class:`StrictRefusal` while any is unacknowledged (before MAS is opened)."""

        def gate(_source: SynapseSource) -> None:
            findings = self.database_findings
            verdict = self._verdict(findings, DATABASE_SCOPES)
            if any(f.severity == "warning" for f in findings):
                self._print(findings, DATABASE_SCOPES, stream)
            if verdict == EXIT_WARNINGS and self.strict:
                raise StrictRefusal([f.rule for f in findings if f.blocking])

        return gate

    def report_entries(self) -> list[dict[str, Any]]:
        """Every finding (acknowledgements and their notes applied) for the migration report (§14.5): ids,
        locations, counts and identifier samples only; messages pass the same scrub as `lint`'s output."""
        findings = self.config + self.database_findings
        report = build_report(findings, self.context, "migrate", ALL_SCOPES)
        secrets = self.context.secrets
        return [{"rule": f.rule, "severity": f.severity, "scope": f.scope,
                 "message": scrub_output(f.message, secrets),
                 "location": {"file": f.location.file or None, "line": f.location.line or None,
                              "key": f.location.key_path or None} if not f.is_database else None,
                 "table": f.table, "count": f.count, "samples": list(f.samples), "acknowledged": f.acknowledged}
                for f in report.findings]

