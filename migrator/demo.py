"""`syn2mas demo`: generate → check → migrate → verify on a small bundled Synapse (SQLite).

The Synapse database is built from fixtures/demo/synapse.sql into a temporary SQLite file; the MAS
configuration is generated from fixtures/demo/homeserver.yaml (`syn2mas config generate`); MAS is a
throwaway PostgreSQL (migrator.pgserver) loaded with fixtures/mas/schema.sql, with the generated
providers inserted as `mas-cli config sync` would. Everything is deleted afterwards unless ``keep``.
"""
from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile

import click
import psycopg

from engine.configdoc import load_mas_config, load_synapse_config
from engine.premigrate import synapse_pre_check
from translator.generate import GenerateOptions, generate, write_outputs
from translator.randomness import Entropy

from . import guards, masschema, pgserver
from .ids import provider_uuid
from .run import MigrateOptions, migrate
from .settings import provider_mapping
from .source import open_source
from .verify import reconciliation_lines, verify

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_DIR = os.path.join(ROOT, "fixtures", "demo")
MAS_SCHEMA = os.path.join(ROOT, "fixtures", "mas", "schema.sql")


def build_sqlite(sql_path: str, db_path: str) -> None:
    """Create a SQLite Synapse database from an SQL script."""
    with open(sql_path, encoding="utf-8") as fh:
        script = fh.read()
    conn = sqlite3.connect(db_path)
    try:
        conn.executescript(script)
        conn.commit()
    finally:
        conn.close()


def sync_providers(mas_uri: str, mas_providers: list[dict]) -> None:
    """Insert the configured providers like `mas-cli config sync` (only the columns the migration needs)."""
    with psycopg.connect(mas_uri, autocommit=True) as conn:
        for order, p in enumerate(mas_providers):
            conn.execute("INSERT INTO upstream_oauth_providers (upstream_oauth_provider_id, issuer, scope, client_id, "
                         "token_endpoint_auth_method, created_at, ui_order) VALUES (%s, %s, %s, %s, %s, now(), %s)",
                         (provider_uuid(p["id"]), p.get("issuer"), " ".join(sorted(set(p.get("scope", "openid")
                                                                                        .split(" ")))),
                          p["client_id"], p.get("token_endpoint_auth_method", "client_secret_basic"), order))


def run_demo(*, keep: bool = False) -> int:
    """Run the demo; returns the exit code (0 when verification matches)."""
    workdir = tempfile.mkdtemp(prefix="syn2mas-demo-")
    server = None
    try:
        db_path = os.path.join(workdir, "synapse.db")
        build_sqlite(os.path.join(DEMO_DIR, "synapse.sql"), db_path)
        homeserver = os.path.join(DEMO_DIR, "homeserver.yaml")
        synapse = load_synapse_config([homeserver], skip_patch_overlays=True)
        server_name = synapse.get("server_name")

        server = pgserver.start()
        mas_uri = pgserver.create_database(server, "mas")
        pgserver.load_sql_file(server, "mas", MAS_SCHEMA)

        mas_yaml = os.path.join(workdir, "mas.yaml")
        generated = generate([homeserver], GenerateOptions(mas_database_uri=mas_uri), Entropy.system())
        write_outputs(generated, mas_yaml)
        mas = load_mas_config([mas_yaml])
        mapping = provider_mapping(mas)
        click.echo(f"1. generate: MAS configuration from fixtures/demo/homeserver.yaml "
                   f"({len(mapping)} upstream provider(s) mapped); MAS database: a throwaway PostgreSQL")
        sync_providers(mas_uri, mas.get("upstream_oauth2.providers", []))

        # The database check rules of `syn2mas check` (checks.md 4.3) on Synapse; MAS preconditions.
        problems: list[guards.Problem] = []
        with open_source(db_path, lock=False) as source:
            try:
                synapse_pre_check(synapse, mas, dry_run=True)(source)
            except guards.MigrationRefused as refused:
                problems = refused.problems
        with psycopg.connect(mas_uri) as conn:
            problems_mas = (masschema.schema_problems(conn) + masschema.emptiness_problems(conn)
                            + masschema.provider_problems(conn, list(mapping.values())))
        if problems or problems_mas:
            click.echo("2. check: blocking problems found")
            for p in problems:
                click.echo(f"   {p.check_id}: {p.message} ({p.count})")
            for text in problems_mas:
                click.echo(f"   {text}")
            return 10
        click.echo("2. check: no blocking problems in the Synapse or MAS database")

        report = migrate(db_path, mas_uri, mapping,
                         MigrateOptions(server_name=server_name, assume_synapse_stopped=True))
        click.echo(f"3. migrate: committed in {report.timings_s['total']:.2f} s")
        for line in report.summary_lines():
            click.echo("   " + line)

        checked = verify(db_path, mas_uri, mapping, server_name=server_name)
        click.echo("4. verify:")
        for line in reconciliation_lines(checked):
            click.echo("   " + line)
        click.echo("demo finished: " + ("everything matches" if checked.reconciled else "MISMATCHES found"))
        if keep:
            click.echo(f"kept: Synapse SQLite {db_path}; MAS {mas_uri} (data directory {server.datadir})")
        return 0 if checked.reconciled else 10
    finally:
        if not keep:
            if server is not None:
                server.stop()
            shutil.rmtree(workdir, ignore_errors=True)
