"""The body of `syn2mas check`: configuration rules, then the database rules on both databases, read-only.

Reuses `lint`'s loading, acknowledgements and reporters (engine/lint.py) and the migrator's Synapse
reader (migrator/source.py) and MAS connection settings (migrator/settings.py). Nothing is written to
either database: Synapse is read in a `SERIALIZABLE READ ONLY DEFERRABLE` transaction holding only
ACCESS SHARE locks (safe while Synapse runs), SQLite through a read-only handle, MAS in a read-only
transaction; no MAS schema migration and no provider sync happen.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import psycopg
from psycopg.conninfo import conninfo_to_dict

from migrator.settings import mas_database_uri
from migrator.source import SynapseSource, open_source, sqlite_database

from .checks import CONFIG_SCOPES
from .configdoc import ConfigDoc
from .dbchecks import DbCheckResult, run_database_checks
from .dbfacts import build_facts
from .dbhandles import DbHandle
from .dbconnect import CONNECT_ERRORS, connection_failure
from .errors import ConfigError, DatabaseError, Syn2MasError
from .lint import LintContext, LintOptions, emit, run_config_checks
from .probe import ProbeResult, probe

ALL_SCOPES = CONFIG_SCOPES + ("database",)


@dataclass
class CheckArgs:
    """The options of `syn2mas check` (cli.py fills this from the command line)."""

    synapse_configs: tuple[str, ...]
    mas_configs: tuple[str, ...]
    synapse_database_uri: str | None = None
    synapse_sqlite: str | None = None
    mas_database_uri: str | None = None
    fmt: str = "auto"
    output: str | None = None
    sarif_file: str | None = None
    acknowledgements: str | None = None
    accept: tuple[str, ...] = ()
    ignore_missing_auth_providers: bool = False
    mas_schema: str | None = None
    probe_user: str | None = None
    unavailable: dict[str, str] = field(default_factory=dict)


def synapse_database_spec(args: CheckArgs, synapse: ConfigDoc) -> str | dict | None:
    """What `open_source` opens: the URI or SQLite override, else Synapse's `database` section (None: none)."""
    if args.synapse_database_uri and args.synapse_sqlite:
        raise ConfigError("--synapse-database-uri and --synapse-sqlite are mutually exclusive")
    if args.synapse_database_uri:
        return args.synapse_database_uri
    if args.synapse_sqlite:
        return sqlite_database(args.synapse_sqlite)
    database = synapse.get("database")
    return database if isinstance(database, dict) else None


def mas_database_spec(args: CheckArgs, mas: ConfigDoc | None) -> str | None:
    """libpq connection string of MAS: the override, else MAS's `database` section (None: none given)."""
    if args.mas_database_uri:
        return args.mas_database_uri
    if mas is None or mas.get("database") is None:
        return None
    return mas_database_uri(mas)


def _where(doc: ConfigDoc | None, what: str, option: str | None = None) -> str:
    """``what``, and where it was given: the command-line option, else the configuration's `database`."""
    if option:
        return f"{what} (given with {option})"
    if doc is None:
        return what
    loc = doc.locate(("database",))
    return f"{what} (`database` at {loc.file}:{loc.line})" if loc.file else what


@contextlib.contextmanager
def open_synapse(spec: str | dict, synapse: ConfigDoc, option: str | None = None) -> Iterator[SynapseSource]:
    """The Synapse database read-only, in one snapshot with ACCESS SHARE locks; a failure names what to do
    and where the database was given (``option``, else Synapse's `database` section)."""
    try:
        source = open_source(spec, exclusive=False, lock=True)
    except Syn2MasError as exc:
        raise DatabaseError(
            f"{_where(synapse, 'the Synapse database', option)} cannot be read: {exc.message}",
            hint=exc.hint or "check the `database` section of the Synapse configuration, or pass "
                             "--synapse-database-uri / --synapse-sqlite; nothing was written") from None
    try:
        yield source
    finally:
        source.close()


@contextlib.contextmanager
def open_mas(uri: str, mas: ConfigDoc | None, option: str | None = None) -> Iterator[psycopg.Connection]:
    """The MAS database in a read-only snapshot (REPEATABLE READ), rolled back at the end."""
    try:
        extra = {} if "application_name" in conninfo_to_dict(uri) else {"application_name": "syn2mas-check"}
        conn = psycopg.connect(uri, autocommit=True, connect_timeout=10, **extra)
    except CONNECT_ERRORS as exc:
        first = connection_failure(exc, uri)
        raise DatabaseError(
            f"{_where(mas, 'the MAS database', option)} cannot be reached: {first}",
            hint="check `database` in the MAS configuration, or pass --mas-database-uri; nothing was written"
        ) from None
    try:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield conn
    finally:
        with contextlib.suppress(psycopg.Error):
            conn.execute("ROLLBACK")
        conn.close()


def _prompt(text: str) -> str:
    """Read a password without echoing it (click.prompt with hide_input)."""
    import click

    return click.prompt(text, hide_input=True)


def run_check(args: CheckArgs, *, read_password: Callable[[str], str] | None = None,
              on_probe: Callable[[ProbeResult], None] | None = None) -> tuple[list, LintContext, DbCheckResult]:
    """Configuration findings, database findings and the lint context (for :func:`emit`)."""
    if not args.mas_configs:
        raise ConfigError("`check` needs the MAS configuration", hint="pass it with --config FILE")
    options = LintOptions(ignore_missing_auth_providers=args.ignore_missing_auth_providers,
                          mas_schema=args.mas_schema, acknowledgements=args.acknowledgements, accept=args.accept)
    findings, context = run_config_checks(list(args.synapse_configs), list(args.mas_configs), options)
    facts = build_facts(context.synapse, context.mas, rules_dir=context.rules_dir,
                        ignore_missing_auth_providers=args.ignore_missing_auth_providers, mode="check")
    synapse_spec = synapse_database_spec(args, context.synapse)
    mas_uri = mas_database_spec(args, context.mas)
    assert context.mas is not None
    unavailable = dict(args.unavailable)
    if synapse_spec is None:
        unavailable["synapse"] = ("the Synapse configuration has no `database` section (pass --synapse-database-uri "
                                  "or --synapse-sqlite)")
    if mas_uri is None:
        unavailable["mas"] = ("no MAS database given (set `database` in the MAS configuration or pass "
                              "--mas-database-uri)")
    if args.probe_user and synapse_spec is None:
        raise ConfigError("--probe needs the Synapse database", hint="pass --synapse-database-uri or --synapse-sqlite")
    # Ask before any database is opened: a transaction must not wait for a human.
    password = (read_password or _prompt)(f"Password of {args.probe_user}") if args.probe_user else None
    with contextlib.ExitStack() as stack:
        synapse = mas = None
        if synapse_spec is not None:
            given = ("--synapse-database-uri" if args.synapse_database_uri
                     else "--synapse-sqlite" if args.synapse_sqlite else None)
            source = stack.enter_context(open_synapse(synapse_spec, context.synapse, given))
            synapse = DbHandle.for_synapse(source, context.synapse.locate(("database",)))
        if mas_uri is not None:
            conn = stack.enter_context(open_mas(mas_uri, context.mas,
                                                "--mas-database-uri" if args.mas_database_uri else None))
            mas = DbHandle.for_mas(conn, context.mas.locate(("database",)))
        result = run_database_checks(facts, synapse=synapse, mas=mas, rules_dir=context.rules_dir,
                                     unavailable=unavailable)
        if args.probe_user and synapse is not None and password is not None:
            outcome = probe(synapse, context.mas, args.probe_user, facts.server_name, password)
            if on_probe:
                on_probe(outcome)
    context.skipped.extend(result.skipped)
    return findings + result.findings, context, result


def check_command(args: CheckArgs, *, read_password: Callable[[str], str] | None = None,
                  on_probe: Callable[[ProbeResult], None] | None = None) -> int:
    """`syn2mas check`: returns the exit code (0 clean, 10 errors, 11 unacknowledged warnings only)."""
    findings, context, _ = run_check(args, read_password=read_password, on_probe=on_probe)
    return emit(findings, context, args.fmt, args.output, command="check", sarif_file=args.sarif_file,
                scopes=ALL_SCOPES)
