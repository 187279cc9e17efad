"""Executor of YAML cases for database rules (style.md 3): `synapse_db:` / `mas_db:` rows per table.

A case is loaded into a database with the real Synapse schema (PostgreSQL; one database per process,
its six tables emptied before each case, or a fresh clone when the case changes the schema) and, for
Synapse rules, also into a SQLite database with the same tables, so that every Synapse rule is proven
on both dialects with the same expectations. MAS cases use the MAS schema fixture the same way. The
YAML runner gives executors no pytest fixtures, so this module starts its own PostgreSQL once per
process (``shared_server``); direct callers may pass ``pg_server``. Case keys:

* ``synapse`` (YAML text; default ``server_name: example.org``), ``mas_config`` (YAML text; default: a
  MAS configuration without providers);
* ``synapse_db`` / ``mas_db``: ``{table: [ {column: value} ]}``; ``synapse_db_prepare`` /
  ``mas_db_prepare``: SQL statements run before the rows are inserted (e.g. dropping a constraint
  that real data may lack);
* ``options``: ``ignore_missing_auth_providers``, ``assume_synapse_stopped``; ``mode``: ``check``
  (default), ``dry-run`` or ``migrate``;
* ``synapse_busy: true``: another client holds a write lock on `users` (PostgreSQL) or has the file
  open (SQLite) while the rules run; ``synapse_role: read-only``: connect as a role with SELECT only;
* ``sqlite: false``: PostgreSQL only (for cases that depend on PostgreSQL roles or locks);
* ``expect``: the findings of the rule under test (and of any other rule an entry names), each a
  mapping of the fields to compare: ``rule``, ``severity``, ``count``, ``samples``, ``table``,
  ``provider``, ``variant``, ``message_contains``. ``expect: []`` asserts silence.

Inline ``# expect:`` markers do not apply: database findings have no line in a case's text.
"""
from __future__ import annotations

import atexit
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
from contextlib import contextmanager
from typing import Any, Iterator

import psycopg
from psycopg import sql

from engine.configdoc import load_mas_config, load_synapse_config
from engine.dbchecks import DbCheckResult, run_database_checks
from engine.dbfacts import build_facts
from engine.dbhandles import DbHandle
from engine.findings import Finding
from migrator import pgserver
from migrator.source import SYNAPSE_TABLES, open_source

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.environ.get("SYN2MAS_SHARED", os.path.join(os.path.dirname(ROOT), "shared"))
SYNAPSE_SCHEMA = os.path.join(SHARED, "synapse", "schema.sql")
MAS_SCHEMA = os.path.join(ROOT, "fixtures", "mas", "schema.sql")
DEFAULT_SYNAPSE = "server_name: example.org\n"
DEFAULT_MAS = "matrix:\n  homeserver: example.org\n"
_FIELDS = ("rule", "severity", "count", "samples", "table", "provider")

_lock = threading.RLock()
_state: dict[str, Any] = {}
_counter = iter(range(1, 1 << 30))


# ---------------------------------------------------------------- servers and schemas

def shared_server() -> pgserver.PgServer:
    """One PostgreSQL for all YAML database cases of this process (stopped at exit)."""
    with _lock:
        if "server" not in _state:
            server = pgserver.start()
            atexit.register(server.stop)
            _state["server"] = server
        return _state["server"]


def _template(server: pgserver.PgServer, kind: str) -> str:
    key = f"template-{kind}-{server.port}"
    with _lock:
        if key not in _state:
            name = f"dbcase_{kind}_template"
            pgserver.create_database(server, name)
            pgserver.load_sql_file(server, name, SYNAPSE_SCHEMA if kind == "synapse" else MAS_SCHEMA)
            _state[key] = name
        return _state[key]


@contextmanager
def clone(server: pgserver.PgServer, kind: str) -> Iterator[str]:
    """A fresh database with the Synapse schema or the MAS fixture; yields its URI, drops it afterwards."""
    template = _template(server, kind)
    name = f"dbcase_{kind}_{os.getpid()}_{next(_counter)}"
    uri = pgserver.create_database(server, name, template=template)
    try:
        yield uri
    finally:
        pgserver.drop_database(server, name)


# What a case may fill; emptied before each case that reuses a database (cloning costs about a
# second per case, truncating a few milliseconds). Cases that change the schema get a fresh clone.
_RESET = {"synapse": SYNAPSE_TABLES,
          "mas": ("users", "user_passwords", "user_emails", "user_unsupported_third_party_ids",
                  "upstream_oauth_links", "compat_sessions", "compat_access_tokens", "compat_refresh_tokens",
                  "upstream_oauth_providers")}


@contextmanager
def case_database(server: pgserver.PgServer, kind: str, *, schema_changes: bool) -> Iterator[str]:
    """A database in the pristine state of its template for one case (a fresh clone when ``schema_changes``)."""
    if schema_changes:
        with clone(server, kind) as uri:
            yield uri
        return
    key = f"reusable-{kind}-{server.port}"
    with _lock:
        if key not in _state:
            name = f"dbcase_{kind}_reused_{os.getpid()}"
            _state[key] = pgserver.create_database(server, name, template=_template(server, kind))
    uri = _state[key]
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(sql.SQL("TRUNCATE {} CASCADE").format(sql.SQL(", ").join(map(sql.Identifier, _RESET[kind]))))
    yield uri


def sqlite_schema() -> str:
    """SQLite DDL of the six tables syn2mas reads, derived from the real Synapse schema dump.

    Column types and defaults carry over as they are (SQLite accepts them); unique and primary-key
    constraints come from the dump's ALTER TABLE statements.
    """
    if "sqlite_schema" in _state:
        return _state["sqlite_schema"]
    with open(SYNAPSE_SCHEMA, encoding="utf-8") as fh:
        dump = fh.read()
    out = []
    for table in SYNAPSE_TABLES:
        body = re.search(rf"CREATE TABLE public\.{table} \((.*?)\n\);", dump, re.S)
        assert body, f"{table} not in {SYNAPSE_SCHEMA}"
        columns = [c.strip().rstrip(",") for c in body.group(1).strip().splitlines()]
        keys = re.findall(rf"ALTER TABLE ONLY public\.{table}\n\s+ADD CONSTRAINT \S+ (PRIMARY KEY|UNIQUE) \(([^)]*)\);",
                          dump)
        columns += [f"{kind} ({cols})" for kind, cols in keys]
        out.append(f"CREATE TABLE {table} (\n  " + ",\n  ".join(columns) + "\n);")
    _state["sqlite_schema"] = "\n".join(out)
    return _state["sqlite_schema"]


# ---------------------------------------------------------------- loading rows

def _insert_pg(uri: str, prepare: list[str], tables: dict[str, list[dict]]) -> None:
    with psycopg.connect(uri, autocommit=True) as conn:
        for stmt in prepare or []:
            conn.execute(stmt)
        for table, rows in (tables or {}).items():
            for row in rows or []:
                stmt = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                    sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, row)),
                    sql.SQL(", ").join(sql.Placeholder() * len(row)))
                conn.execute(stmt, list(row.values()))


def make_sqlite(path: str, prepare: list[str], tables: dict[str, list[dict]]) -> None:
    """A SQLite Synapse database at ``path`` with the case's rows."""
    conn = sqlite3.connect(path)
    try:
        conn.executescript(sqlite_schema())
        for stmt in prepare or []:
            conn.execute(stmt)
        for table, rows in (tables or {}).items():
            for row in rows or []:
                cols = ", ".join(f'"{c}"' for c in row)
                conn.execute(f'INSERT INTO "{table}" ({cols}) VALUES ({", ".join("?" * len(row))})',
                             list(row.values()))
        conn.commit()
    finally:
        conn.close()


def _config(text: str, suffix: str, loader):
    with tempfile.NamedTemporaryFile("w", suffix=suffix, delete=False, encoding="utf-8") as fh:
        fh.write(text)
    try:
        return loader([fh.name])
    finally:
        os.unlink(fh.name)


# ---------------------------------------------------------------- busy clients and roles

@contextmanager
def busy_postgres(uri: str) -> Iterator[None]:
    """Another client in the middle of a write transaction on `users`, as a running Synapse would be."""
    with psycopg.connect(uri, autocommit=True, application_name="synapse-worker-1") as conn:
        conn.execute("BEGIN")
        conn.execute("LOCK TABLE users IN ROW EXCLUSIVE MODE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")


@contextmanager
def busy_sqlite(path: str) -> Iterator[None]:
    """Another process holding the SQLite file open."""
    code = ("import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1]); c.execute('SELECT 1 FROM users');"
            "print('ready', flush=True); sys.stdin.read()")
    proc = subprocess.Popen([sys.executable, "-c", code, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)


@contextmanager
def read_only_role(server: pgserver.PgServer, uri: str) -> Iterator[str]:
    """A login role that may only SELECT the Synapse tables; yields a URI connecting as it."""
    role = f"syn2mas_reader_{os.getpid()}_{next(_counter)}"
    dbname = uri.rsplit("/", 1)[1]
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(sql.Identifier(role)))
    try:
        yield f"postgresql://{role}@127.0.0.1:{server.port}/{dbname}"
    finally:
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


# ---------------------------------------------------------------- running

def open_mas(uri: str) -> psycopg.Connection:
    """A MAS connection inside a read-only snapshot, as `check` opens it."""
    conn = psycopg.connect(uri, autocommit=True)
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    return conn


def _facts(case: dict):
    synapse = _config(case.get("synapse") or DEFAULT_SYNAPSE, ".yaml", load_synapse_config)
    mas = _config(case.get("mas_config") or DEFAULT_MAS, ".yaml", load_mas_config)
    opts = case.get("options") or {}
    facts = build_facts(synapse, mas, ignore_missing_auth_providers=bool(opts.get("ignore_missing_auth_providers")),
                        mode=case.get("mode", "check"), assume_synapse_stopped=bool(opts.get("assume_synapse_stopped")))
    return synapse, mas, facts


def _only(rule_id: str, case: dict) -> set[str]:
    return {rule_id} | {e["rule"] for e in case.get("expect") or [] if "rule" in e}


def run_synapse(case: dict, only: set[str], source_spec: str, *, busy=None) -> DbCheckResult:
    """Open ``source_spec`` (URI or SQLite path) read-only and run the selected rules."""
    synapse, mas, facts = _facts(case)
    # A real migrate takes its locks inside the rules (synapse-still-running); the others ACCESS SHARE.
    lock = facts.mode != "migrate"
    with (busy or _nothing)():
        with open_source(source_spec, lock=lock) as source:
            handle = DbHandle.for_synapse(source, synapse.locate(("database",)))
            return run_database_checks(facts, synapse=handle, only=only)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def run_mas(case: dict, only: set[str], uri: str) -> DbCheckResult:
    synapse, mas, facts = _facts(case)
    conn = open_mas(uri)
    try:
        return run_database_checks(facts, mas=DbHandle.for_mas(conn, mas.locate(("database",))), only=only)
    finally:
        conn.close()


def assert_expected(findings: list[Finding], expect: list[dict], where: str) -> None:
    """Every expected entry matches one finding, and no other finding of the compared rules remains."""
    remaining = list(findings)
    for entry in expect:
        match = next((f for f in remaining if _matches(f, entry)), None)
        assert match is not None, f"{where}: no finding matches {entry}; got {[_show(f) for f in remaining]}"
        remaining.remove(match)
    assert not remaining, f"{where}: unexpected findings {[_show(f) for f in remaining]}"


def _matches(f: Finding, entry: dict) -> bool:
    for key, want in entry.items():
        if key == "message_contains":
            if want not in f.message:
                return False
        elif key == "variant":
            if f.details.get("variant") != want:
                return False
        elif key in _FIELDS:
            if getattr(f, key) != want:
                return False
        else:
            raise AssertionError(f"unknown expect key `{key}`")
    return True


def _show(f: Finding) -> dict:
    return {"rule": f.rule, "severity": f.severity, "count": f.count, "samples": f.samples, "table": f.table,
            "provider": f.provider, "variant": f.details.get("variant"), "message": f.message}


def run_db_case(rule_file, rule_id: str, case_name: str, case: dict, *,
                pg_server: pgserver.PgServer | None = None) -> dict[str, list[Finding]]:
    """Run one case of a database rule; returns the findings per dialect (for callers that inspect more)."""
    rule = next(r for r in rule_file.data["rules"] if r["id"] == rule_id)
    server = pg_server or shared_server()
    expect = case.get("expect")
    assert expect is not None, f"{rule_id}/{case_name}: database cases need an `expect:` list"
    only = _only(rule_id, case)
    results: dict[str, list[Finding]] = {}
    if rule.get("database", "synapse") == "mas":
        with case_database(server, "mas", schema_changes=bool(case.get("mas_db_prepare"))) as uri:
            _insert_pg(uri, case.get("mas_db_prepare"), case.get("mas_db"))
            results["postgresql"] = run_mas(case, only, uri).findings
    else:
        with case_database(server, "synapse", schema_changes=bool(case.get("synapse_db_prepare"))) as uri:
            _insert_pg(uri, case.get("synapse_db_prepare"), case.get("synapse_db"))
            busy = (lambda: busy_postgres(uri)) if case.get("synapse_busy") else None
            if case.get("synapse_role") == "read-only":
                with read_only_role(server, uri) as reader:
                    results["postgresql"] = run_synapse(case, only, reader, busy=busy).findings
            else:
                results["postgresql"] = run_synapse(case, only, uri, busy=busy).findings
        if case.get("sqlite", True):
            with tempfile.TemporaryDirectory(prefix="syn2mas-dbcase-") as tmp:
                path = os.path.join(tmp, "homeserver.db")
                make_sqlite(path, case.get("synapse_db_prepare_sqlite", case.get("synapse_db_prepare")),
                            case.get("synapse_db"))
                busy = (lambda: busy_sqlite(path)) if case.get("synapse_busy") else None
                results["sqlite"] = run_synapse(case, only, path, busy=busy).findings
    for dialect, findings in results.items():
        assert_expected(findings, expect, f"{rule_id}/{case_name} ({dialect})")
    return results


