"""The bodies of `syn2mas migrate` and `syn2mas verify` (cli.py only parses options and exits).

Each returns the process exit code: 0 success, 10 refused (blocking findings) or verification
mismatch, 11 refused by `migrate --strict` (unacknowledged warnings); runtime failures raise
Syn2MasError (exit 1, printed by the CLI without a traceback).
"""
from __future__ import annotations

import logging

import sys
from collections.abc import Callable
from dataclasses import dataclass

import click

from engine.configdoc import ConfigDoc, load_mas_config, load_synapse_config
from engine.errors import ConfigError
from engine.outputs import check_output

from . import guards
from .report import MigrationReport
from .run import MigrateOptions, migrate
from .settings import MigrationSettings, resolve
from .skipped import check_directory
from .source import SynapseSource, SynapseStillRunning
from .verify import reconciliation_lines, verify
from .writer import MasRefused

EXIT_OK = 0
EXIT_REFUSED = 10


@dataclass
class ConnectionArgs:
    """The connection options shared by `migrate` and `verify`."""

    synapse_configs: tuple[str, ...]
    mas_configs: tuple[str, ...]
    synapse_database_uri: str | None = None
    synapse_sqlite: str | None = None
    mas_database_uri: str | None = None

    def load(self) -> tuple[ConfigDoc, ConfigDoc, MigrationSettings]:
        """Load both configurations and resolve the databases and the provider mapping."""
        synapse = load_synapse_config(list(self.synapse_configs), skip_patch_overlays=True)
        mas = load_mas_config(list(self.mas_configs))
        return synapse, mas, self.resolve(synapse, mas)

    def resolve(self, synapse: ConfigDoc, mas: ConfigDoc) -> MigrationSettings:
        """The databases and the provider mapping of already loaded configurations (and the overrides)."""
        return resolve(synapse, mas, synapse_database_uri=self.synapse_database_uri,
                       synapse_sqlite=self.synapse_sqlite, mas_database_uri_override=self.mas_database_uri)

    def settings(self) -> MigrationSettings:
        """The resolved settings only."""
        return self.load()[2]


def setup_logging() -> None:
    """Progress lines (counts only) to stderr."""
    logger = logging.getLogger("syn2mas")
    if not any(getattr(h, "_syn2mas", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        handler._syn2mas = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def ensure_report_writable(path: str, inputs: tuple[str, ...] = ()) -> None:
    """Refuse (exit 1) before any work when the report could not be written at the end, or would
    replace one of the ``inputs`` (the configuration files) or a device."""
    check_output(path, "--report", inputs, replaced=False)


def write_report(report: MigrationReport, path: str) -> bool:
    """Write the report; a failure now (after the work is done) is a warning, never a denial of the commit."""
    try:
        report.write(path)
    except OSError as exc:
        done = {"migrate": "the migration is committed", "dry-run": "the dry run finished",
                "plan": "the plan finished"}.get(
            report.mode, "the results are printed above")
        click.echo(f"warning: {path}: the report could not be written ({exc.strerror or exc}); {done}",
                   err=True)
        return False
    return True


def pre_migration_checks(synapse: ConfigDoc, mas: ConfigDoc, *, dry_run: bool, ignore_missing_providers: bool,
                         assume_synapse_stopped: bool, results: list | None = None,
                         ) -> list[Callable[[SynapseSource], None]]:
    """HOOK: the checks `migrate` runs inside its Synapse snapshot before writing (data-migration.md §1.3).

    Returns callables taking the open SynapseSource; each raises `guards.MigrationRefused` to refuse
    (exit 10). These are the database check rules of checks.md 4.3 (engine/premigrate.py), so `check`
    and `migrate` decide alike; the migrator's own guard (migrator/guards.py) is what `migrate()` runs
    when called without this hook. The MAS-side preconditions are repeated by the writer inside its
    transaction (migrator/writer.py).
    """
    from engine.premigrate import synapse_pre_check

    return [synapse_pre_check(synapse, mas, dry_run=dry_run, ignore_missing_auth_providers=ignore_missing_providers,
                              assume_synapse_stopped=assume_synapse_stopped, results=results)]


@dataclass
class MigrateArgs:
    """The options of `syn2mas migrate` besides the connection (cli.py fills this from the command line)."""

    dry_run: bool = False
    plan: bool = False
    report_path: str | None = None
    ignore_missing_providers: bool = False
    assume_synapse_stopped: bool = False
    strict: bool = False
    acknowledgements: str | None = None
    accept: tuple[str, ...] = ()
    report_skipped: str | None = None
    workers: int | None = None
    mas_schema: str | None = None


def migrate_command(conn: ConnectionArgs, args: MigrateArgs) -> int:
    """`syn2mas migrate [--dry-run | --plan]`: returns the exit code.

    Order (data-migration.md §1): the configuration rules of `lint` (exit 10 on errors, 11 on
    unacknowledged warnings with ``--strict``) before any database is opened; then the Synapse snapshot
    with the database rules (same verdicts); then MAS.
    """
    from engine.lint import LintOptions
    from engine.premigrate import MigrationChecks, StrictRefusal

    setup_logging()
    if args.plan and args.dry_run:
        raise ConfigError("--plan and --dry-run are mutually exclusive",
                          hint="--plan only reads MAS; --dry-run writes everything and rolls it back")
    if not conn.mas_configs:
        raise ConfigError("`migrate` needs the MAS configuration", hint="pass it with --config FILE")
    checks = MigrationChecks.run(
        list(conn.synapse_configs), list(conn.mas_configs),
        LintOptions(ignore_missing_auth_providers=args.ignore_missing_providers, mas_schema=args.mas_schema,
                    acknowledgements=args.acknowledgements, accept=tuple(args.accept)),
        strict=args.strict)
    assert checks.context.mas is not None  # MAS files were given
    settings = conn.resolve(checks.context.synapse, checks.context.mas)
    if args.report_path:
        ensure_report_writable(args.report_path, (*conn.synapse_configs, *conn.mas_configs))
    if args.report_skipped:
        check_directory(args.report_skipped)
    refused = checks.config_gate(sys.stderr)
    if refused:
        return refused
    read_only = args.dry_run or args.plan
    options = MigrateOptions(server_name=settings.server_name, dry_run=args.dry_run, plan=args.plan,
                             ignore_missing_providers=args.ignore_missing_providers,
                             assume_synapse_stopped=args.assume_synapse_stopped, report_skipped=args.report_skipped,
                             workers=args.workers,
                             pre_checks=pre_migration_checks(checks.context.synapse, checks.context.mas,
                                                             dry_run=read_only,
                                                             ignore_missing_providers=args.ignore_missing_providers,
                                                             assume_synapse_stopped=args.assume_synapse_stopped,
                                                             results=checks.database)
                             + [checks.database_gate(sys.stderr)])
    if args.dry_run:
        click.echo("dry run: the eight MAS tables are locked exclusively until the rollback; "
                   "do not run this against a MAS instance that serves users", err=True)
    try:
        report = migrate(settings.synapse_database, settings.mas_uri, settings.mapping, options)
    except StrictRefusal as exc:
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except (guards.MigrationRefused, MasRefused, SynapseStillRunning) as exc:
        click.echo(f"error: {exc}", err=True)
        return EXIT_REFUSED
    report.findings = checks.report_entries()
    report_path = args.report_path
    if report_path and not write_report(report, report_path):
        report_path = None
    print_summary(report, report_path)
    if args.report_skipped:
        click.echo(f"skipped rows listed in {args.report_skipped}")
    return EXIT_OK


def print_summary(report: MigrationReport, report_path: str | None) -> None:
    """Human summary of a migration on stdout."""
    verb = {"dry-run": "dry run finished, rolled back", "plan": "plan finished, MAS only read"}.get(
        report.mode, "migration committed")
    click.echo(f"{verb} in {report.timings_s['total']:.1f} s (MAS schema {report.mas_schema_version})")
    for line in report.summary_lines():
        click.echo("  " + line)
    if report_path:
        click.echo(f"report written to {report_path}")


def verify_command(conn: ConnectionArgs, *, report_path: str | None, migration_report: str | None,
                   ignore_missing_providers: bool, samples: int, seed: int) -> int:
    """`syn2mas verify`: 0 when everything matches, 10 otherwise."""
    setup_logging()
    settings = conn.settings()
    if report_path:
        ensure_report_writable(report_path, (*conn.synapse_configs, *conn.mas_configs))
    report = verify(settings.synapse_database, settings.mas_uri, settings.mapping,
                    server_name=settings.server_name, ignore_missing_providers=ignore_missing_providers,
                    sample_size=samples, sample_seed=seed, migration_report=migration_report)
    for line in reconciliation_lines(report):
        click.echo(line)
    if report_path:
        write_report(report, report_path)
    return EXIT_OK if report.reconciled else EXIT_REFUSED
