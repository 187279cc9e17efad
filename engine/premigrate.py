"""The database rules as `migrate`'s pre-migration checks (data-migration.md 1 step 3, 14.2).

`migrate` opens Synapse once (migrator/source.py) and hands that open source to its pre-check hook
(``MigrateOptions.pre_checks``); the rules below then read the very snapshot that is migrated. Any
error finding refuses the migration before anything is written (exit 10); warnings are returned for
the report (and for ``--strict``). The MAS rules are repeated inside the MAS write transaction with
:func:`mas_recheck`, after the MAS tables are locked.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from migrator.guards import MigrationRefused, Problem
from migrator.source import SynapseSource

from .configdoc import ConfigDoc
from .dbchecks import DbCheckResult, run_database_checks
from .dbfacts import DbFacts, build_facts
from .dbhandles import DbHandle
from .findings import Finding

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
