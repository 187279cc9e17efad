"""syn2mas command line: parses options, calls engine/translator/migrator, picks a reporter, sets the exit code.

Imports of the heavy modules happen inside the commands so that `syn2mas lint` starts fast.
"""
from __future__ import annotations

import os
import sys

import click

EXIT_USAGE = 1


class _Group(click.Group):
    """Turns every known error into a one-paragraph message and exit 1; never a traceback. Usage errors
    exit 1 too (checks.md 2), where click's default is 2."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:  # an unknown option or a bad value before the command name
            exc.exit_code = EXIT_USAGE
            raise

    def invoke(self, ctx: click.Context):
        from engine.errors import Syn2MasError

        try:
            return super().invoke(ctx)
        except Syn2MasError as exc:
            from engine.reporters.model import visible  # a message may quote data: no terminal controls

            click.echo("error: " + "\n".join(visible(line) for line in str(exc).split("\n")), err=True)
            ctx.exit(EXIT_USAGE)
        except KeyboardInterrupt:
            click.echo("interrupted; nothing was committed", err=True)
            ctx.exit(EXIT_USAGE)
        except click.UsageError as exc:  # an unknown command or option, a missing or invalid value
            exc.exit_code = EXIT_USAGE
            raise
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:  # last resort: a bug must still not print a traceback (or a secret in it)
            if os.environ.get("SYN2MAS_DEBUG"):
                raise
            click.echo(f"internal error ({type(exc).__name__}); nothing was committed. "
                       "Re-run with SYN2MAS_DEBUG=1 for details and report it.", err=True)
            ctx.exit(EXIT_USAGE)


synapse_config_option = click.option(
    "--synapse-config", "synapse_configs", multiple=True, required=True, metavar="FILE",
    help="Synapse configuration file or directory; repeatable, later files replace whole top-level keys.")
mas_config_option = click.option(
    "--config", "mas_configs", multiple=True, metavar="FILE",
    help="MAS configuration file; repeatable, merged as MAS does.")

acknowledgements_option = click.option(
    "--acknowledgements", metavar="FILE", help="Accepted warnings (default: syn2mas-acknowledgements.yaml if present).")
accept_option = click.option("--accept", multiple=True, metavar="RULE=REASON",
                             help="Accept the warnings of RULE for REASON; repeatable.")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="syn2mas")
def main() -> None:
    """Move a Matrix homeserver's authentication from Synapse to MAS without logging anyone out."""


def _connection_options(func):
    """Options shared by `migrate` and `verify`: configurations and database overrides."""
    for option in reversed([
        synapse_config_option,
        mas_config_option,
        click.option("--synapse-database-uri", metavar="URI",
                     help="libpq URI of the Synapse database (replaces its `database` section)."),
        click.option("--synapse-sqlite", metavar="PATH", help="Synapse SQLite database file (read-only)."),
        click.option("--mas-database-uri", metavar="URI", help="libpq URI of the MAS database (replaces "
                                                                "MAS `database`)."),
        click.option("--ignore-missing-auth-providers", is_flag=True,
                     help="Skip links whose Synapse provider has no MAS provider instead of refusing."),
    ]):
        func = option(func)
    return func


def _connection_args(kw: dict):
    from migrator.commands import ConnectionArgs

    return ConnectionArgs(kw.pop("synapse_configs"), kw.pop("mas_configs"), kw.pop("synapse_database_uri"),
                          kw.pop("synapse_sqlite"), kw.pop("mas_database_uri"))


@main.command()
@_connection_options
@click.option("--dry-run", is_flag=True, help="Do everything in one transaction, then roll it back.")
@click.option("--plan", is_flag=True,
              help="Strictly read-only: read Synapse, compute and report everything; MAS is only read.")
@click.option("--report", "report_path", default="syn2mas-migration-report.json", metavar="FILE",
              show_default=True, help="Write the JSON migration report here.")
@click.option("--report-skipped", metavar="DIR",
              help="Also write one CSV per entity with the keys of the skipped rows (no secrets; mode 0600). "
                   "Values are verbatim and device ids are chosen by clients: open the files as text, "
                   "not as spreadsheet formulas.")
@click.option("--assume-synapse-stopped", is_flag=True,
              help="Trust that Synapse is stopped when syn2mas cannot prove it (read-only role, SQLite).")
@click.option("--strict", is_flag=True, help="Refuse (exit 11, nothing written) while unacknowledged warnings exist.")
@click.option("--workers", type=click.IntRange(min=1, max=64), metavar="N",
              help="Processes reading a PostgreSQL Synapse in parallel (default: one per usable CPU, container "
                   "quota included, up to 8, for 20,000 users or more; 1 reads in the main process).")
@acknowledgements_option
@accept_option
@click.option("--mas-schema", metavar="PATH",
              help="MAS's published config.schema.json, for the configuration checks (default: $SYN2MAS_MAS_SCHEMA).")
@click.pass_context
def migrate(ctx: click.Context, **kw) -> None:
    """Copy users, emails, links, sessions and tokens from Synapse into an empty MAS database, atomically.

    The configuration and database checks of `check` run first: errors refuse (exit 10), and with --strict
    so do unacknowledged warnings (exit 11)."""
    from migrator.commands import MigrateArgs, migrate_command

    conn = _connection_args(kw)
    ctx.exit(migrate_command(conn, MigrateArgs(
        dry_run=kw["dry_run"], plan=kw["plan"], report_path=kw["report_path"],
        ignore_missing_providers=kw["ignore_missing_auth_providers"],
        assume_synapse_stopped=kw["assume_synapse_stopped"], strict=kw["strict"],
        acknowledgements=kw["acknowledgements"], accept=tuple(kw["accept"]), report_skipped=kw["report_skipped"],
        workers=kw["workers"], mas_schema=kw["mas_schema"])))


@main.command()
@_connection_options
@click.option("--report", "report_path", metavar="FILE", help="Write the JSON verification report here.")
@click.option("--migration-report", metavar="FILE",
              help="The report of the migration, to tell Synapse changes since then from missing rows.")
@click.option("--samples", default=100, show_default=True, type=click.IntRange(min=0),
              help="Number of users compared field by field.")
@click.option("--seed", default=0, show_default=True, help="Seed choosing the sampled users.")
@click.pass_context
def verify(ctx: click.Context, **kw) -> None:
    """Reconcile MAS with Synapse: counts per entity and sampled users (exit 10 on any difference)."""
    from migrator.commands import verify_command

    conn = _connection_args(kw)
    ctx.exit(verify_command(conn, report_path=kw["report_path"], migration_report=kw["migration_report"],
                            ignore_missing_providers=kw["ignore_missing_auth_providers"],
                            samples=kw["samples"], seed=kw["seed"]))


def _report_options(func):
    """Options of the commands that report findings (`lint`, `check`): format, output, acknowledgements."""
    for option in reversed([
        click.option("--format", "fmt", default="auto", show_default=True,
                     type=click.Choice(("auto", "text", "json", "sarif", "github", "parsable")),
                     help="Report format; `auto` is `github` under GitHub Actions, else `text`."),
        click.option("--output", metavar="FILE", help="Write the report here instead of standard output."),
        click.option("--sarif-file", metavar="FILE", help="Also write a SARIF report here."),
        acknowledgements_option,
        accept_option,
        click.option("--mas-schema", metavar="PATH",
                     help="MAS's published config.schema.json (default: $SYN2MAS_MAS_SCHEMA)."),
    ]):
        func = option(func)
    return func


def _check_report_outputs(kw: dict, inputs: tuple[str, ...]) -> None:
    """Refuse report paths that would replace an input configuration or a device (engine/outputs.py)."""
    for flag, key in (("--output", "output"), ("--sarif-file", "sarif_file")):
        if kw[key]:
            from engine.outputs import check_output

            check_output(kw[key], flag, inputs, replaced=False)


@main.command()
@_connection_options
@_report_options
@click.option("--probe", "probe_user", metavar="USER",
              help="Ask for USER's password (not echoed) and verify it against the Synapse hash as MAS will.")
@click.pass_context
def check(ctx: click.Context, **kw) -> None:
    """Lint both configurations and check both databases, read-only (exit 0 clean, 10 errors, 11 warnings)."""
    from engine.checkcmd import CheckArgs, check_command

    _check_report_outputs(kw, (*kw["synapse_configs"], *kw["mas_configs"]))
    def show(outcome) -> None:
        click.echo(outcome.line(), err=True)

    args = CheckArgs(kw["synapse_configs"], kw["mas_configs"], kw["synapse_database_uri"], kw["synapse_sqlite"],
                     kw["mas_database_uri"], fmt=kw["fmt"], output=kw["output"], sarif_file=kw["sarif_file"],
                     acknowledgements=kw["acknowledgements"], accept=kw["accept"],
                     ignore_missing_auth_providers=kw["ignore_missing_auth_providers"], mas_schema=kw["mas_schema"],
                     probe_user=kw["probe_user"])
    ctx.exit(check_command(args, on_probe=show))


@main.command()
@click.option("--keep", is_flag=True, help="Keep the throwaway PostgreSQL and files, and print where they are.")
@click.pass_context
def demo(ctx: click.Context, keep: bool) -> None:
    """Run generate → check → migrate → verify on a small bundled Synapse into a throwaway PostgreSQL."""
    from migrator.demo import run_demo

    ctx.exit(run_demo(keep=keep))


# ---------------------------------------------------------------- lint

@main.command()
@synapse_config_option
@mas_config_option
@_report_options
@click.option("--ignore-missing-auth-providers", is_flag=True,
              help="Report providers unknown to Synapse (and saml/cas missing in MAS) as warnings.")
@click.pass_context
def lint(ctx: click.Context, synapse_configs, mas_configs, **kw) -> None:
    """Check the Synapse (and MAS) configuration offline; exit 0 clean, 10 errors, 11 warnings, 1 failure."""
    from engine.lint import LintOptions, emit, run_config_checks

    _check_report_outputs(kw, (*synapse_configs, *mas_configs))
    options = LintOptions(ignore_missing_auth_providers=kw["ignore_missing_auth_providers"],
                          mas_schema=kw["mas_schema"], acknowledgements=kw["acknowledgements"],
                          accept=tuple(kw["accept"]))
    findings, context = run_config_checks(list(synapse_configs), list(mas_configs), options)
    ctx.exit(emit(findings, context, kw["fmt"], kw["output"], command="lint", sarif_file=kw["sarif_file"]))


# ---------------------------------------------------------------- config generate

@main.group("config")
def config_group() -> None:
    """Generate the MAS configuration (and the Synapse overlay) from Synapse's configuration."""


@config_group.command("generate")
@synapse_config_option
@click.option("--output", required=True, metavar="FILE",
              help="MAS configuration to write; an existing file is updated, keeping its secrets, ids and comments.")
@click.option("--synapse-patch", metavar="FILE", help="Also write the Synapse overlay that switches delegation on.")
@click.option("--from-mas", metavar="FILE", help="Update this existing MAS configuration instead of --output's.")
@click.option("--tos-uri", metavar="URL", help="Terms of service URL for MAS (replaces Synapse's user_consent).")
@click.option("--synapse-url", metavar="URL", help="URL on which MAS reaches Synapse (default: public_baseurl).")
@click.option("--mas-internal-url", metavar="URL", help="URL on which Synapse reaches MAS (default: MAS public_base).")
@click.option("--mas-database-uri", metavar="URI", help="MAS's own, empty PostgreSQL database.")
@click.option("--secrets-dir", metavar="DIR", help="Write secrets and keys to files here and reference them.")
@click.option("--compat", type=click.Choice(["syn2mas", "reference"]), default="syn2mas", show_default=True,
              help="`reference` reproduces MAS's converter for user_profile_method and back-channel logout.")
@click.option("--trace", "trace_file", metavar="FILE", help="Write the trace (MAS key, source, rule, origin) as JSON.")
@click.option("--lint", "then_lint", is_flag=True,
              help="Then lint the Synapse configuration with the MAS configuration written, and exit as lint does "
                   "(0 clean, 10 errors, 11 warnings).")
@click.option("--seed", hidden=True, help="Tests only: deterministic secrets, keys and ids (warns).")
@click.option("--clock", hidden=True, help="Tests only: the generation time (ISO 8601).")
@click.pass_context
def config_generate(ctx: click.Context, synapse_configs, synapse_patch, trace_file, then_lint, seed, clock,
                    **kw) -> None:
    """Translate Synapse's configuration into MAS's; exit 0 (notes on stderr), 1 on bad input; with --lint,
    lint's exit code."""
    from translator.command import run
    from translator.generate import GenerateOptions

    code = run(list(synapse_configs), GenerateOptions(**kw), synapse_patch=synapse_patch, trace_file=trace_file,
               seed=seed, clock=clock)
    if then_lint:
        from engine.lint import LintOptions, emit, run_config_checks

        findings, context = run_config_checks(list(synapse_configs), [kw["output"]], LintOptions())
        code = emit(findings, context, "text", command="lint")
    ctx.exit(code)


@main.command("synapse-patch")
@synapse_config_option
@mas_config_option
@click.option("--output", required=True, metavar="FILE", help="The Synapse overlay to write (mode 0600).")
@click.option("--mas-internal-url", metavar="URL", help="URL on which Synapse reaches MAS (default: MAS public_base).")
@click.pass_context
def synapse_patch(ctx: click.Context, synapse_configs, mas_configs, output, mas_internal_url) -> None:
    """Write the Synapse overlay that switches delegation on, for an existing MAS configuration (as
    `config generate --synapse-patch` does for the one it generates); exit 0, 1 on bad input."""
    from translator.command import run_synapse_patch
    from translator.generate import GenerateOptions

    ctx.exit(run_synapse_patch(list(synapse_configs), list(mas_configs), output,
                               GenerateOptions(mas_internal_url=mas_internal_url)))


# ---------------------------------------------------------------- the rule catalogue

@main.group("rules")
def rules_group() -> None:
    """Inspect, lint and document the check rules."""


@rules_group.command("list")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def rules_list(fmt: str) -> None:
    """Every check rule: id, severity, scope, summary."""
    from engine import rulecatalog

    if fmt == "json":
        import json

        click.echo(json.dumps(rulecatalog.list_rows(), indent=2))
    else:
        click.echo(rulecatalog.list_text(), nl=False)


@rules_group.command("explain")
@click.argument("rule_id")
def rules_explain(rule_id: str) -> None:
    """What RULE_ID reports, why, how to fix it, its conditions and test cases."""
    from engine.rulecatalog import explain_text

    click.echo(explain_text(rule_id), nl=False)


@rules_group.command("lint")
@click.pass_context
def rules_lint(ctx: click.Context) -> None:
    """Lint the rule files: templates, functions, and a firing and a silent test case for every rule."""
    from engine.rulelint import lint_rules

    problems = lint_rules()
    for problem in problems:
        click.echo(str(problem))
    click.echo(f"{len(problems)} problem{'s' if len(problems) != 1 else ''}" if problems else "rules are sound")
    ctx.exit(1 if problems else 0)


@rules_group.command("compile")
def rules_compile() -> None:
    """Validate the check rules and write rules/checks.compiled.json, which `lint` loads instead of the YAML."""
    from engine.rulebundle import write_bundle
    from engine.rulefiles import default_rules_dir

    click.echo(f"wrote {write_bundle(default_rules_dir())}")


@rules_group.command("docs")
@click.argument("out_dir", metavar="DIR")
def rules_docs(out_dir: str) -> None:
    """Write one Markdown page per check rule (with its test cases as examples) and an index into DIR."""
    from engine.rulecatalog import write_docs

    written = write_docs(out_dir)
    click.echo(f"wrote {len(written)} files to {out_dir}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
