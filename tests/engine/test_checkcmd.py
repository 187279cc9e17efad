"""`syn2mas check` end to end: exit codes, reports, read-only databases, unreachable databases, `--probe`."""
from __future__ import annotations

import json
import socket
import unicodedata

import bcrypt
import psycopg
from click.testing import CliRunner

from cli import main
from tests.engine.test_dbchecks import PROVIDER, checksums, scale

PEPPER = "synapse-real-test-pepper"  # the pepper of ../shared/bench/scale-synapse-db.sql's real bcrypt hashes


def _parts(uri: str) -> tuple[str, str]:
    hostport, dbname = uri.split("@", 1)[1].split("/", 1)
    return hostport.rsplit(":", 1)[1], dbname


def write_configs(tmp_path, synapse_uri: str, mas_uri: str | None, *, scheme: str = "",
                  provider: bool = False) -> tuple[str, str]:
    """A Synapse and a MAS configuration that are clean for the configuration rules (unless ``provider``:
    Synapse's `oidc_providers` then draws `synapse-delegation-conflict`, a warning)."""
    port, dbname = _parts(synapse_uri)
    synapse = tmp_path / "homeserver.yaml"
    synapse.write_text(
        "server_name: example.org\n"
        "database:\n  name: psycopg2\n  args:\n"
        f"    host: 127.0.0.1\n    port: {port}\n    user: postgres\n    dbname: {dbname}\n    cp_min: 5\n"
        + ("oidc_providers:\n  - {idp_id: dex, issuer: 'https://dex.example.org', client_id: synapse}\n"
           if provider else ""), encoding="utf-8")
    mas = tmp_path / "mas.yaml"
    mas.write_text(
        "matrix: {homeserver: example.org, secret: 'IhKoLn6jWf1qRRZWvqK4hGkXq6oEJ8s2'}\n"
        + (f"database:\n  uri: '{mas_uri}'\n" if mas_uri else "")
        + (f"upstream_oauth2:\n  providers:\n    - {{id: {PROVIDER}, synapse_idp_id: oidc-dex, client_id: mas, "
           "issuer: 'https://dex.example.org', token_endpoint_auth_method: none}\n" if provider else "")
        + (scheme or "passwords:\n  schemes:\n    - {version: 1, algorithm: bcrypt, unicode_normalization: true}\n"
                     "    - {version: 2, algorithm: argon2id}\n"),
        encoding="utf-8")
    return str(synapse), str(mas)


def run(args: list[str], input: str | None = None):
    return CliRunner().invoke(main, ["check", *args], input=input, catch_exceptions=False)


def sql(uri: str, statement: str, params=None) -> None:
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(statement, params)


def mas_state(uri: str) -> tuple:
    with psycopg.connect(uri) as conn:
        return (conn.execute("SELECT count(*), max(version) FROM _sqlx_migrations").fetchone(),
                conn.execute("SELECT count(*) FROM upstream_oauth_providers").fetchone(),
                conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone())


def test_clean_databases_exit_0(synapse_db, mas_db, tmp_path):
    sql(synapse_db, "INSERT INTO users (name, password_hash) VALUES ('@alice:example.org', %s)",
        (bcrypt.hashpw(b"x", bcrypt.gensalt(4)).decode(),))
    synapse, mas = write_configs(tmp_path, synapse_db, mas_db)
    result = run(["--synapse-config", synapse, "--config", mas, "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [f["rule"] for f in report["findings"] if f["severity"] != "info"] == []


def test_warnings_exit_11_until_accepted_and_errors_exit_10(synapse_db, mas_db, tmp_path):
    sql(synapse_db, "INSERT INTO users (name, is_guest) VALUES ('@guest:example.org', 1)")
    synapse, mas = write_configs(tmp_path, synapse_db, mas_db)
    base = ["--synapse-config", synapse, "--config", mas]
    assert run(base).exit_code == 11
    accepted = run(base + ["--accept", "guests-in-database=Historic guests, approved in OPS-123",
                           "--format", "json"])
    assert accepted.exit_code == 0, accepted.output
    (guest,) = [f for f in json.loads(accepted.stdout)["findings"] if f["rule"] == "guests-in-database"]
    assert guest["acknowledged"] and guest["count"] == 1 and guest["samples"] == ["@guest:example.org"]
    sql(synapse_db, "INSERT INTO devices (user_id, device_id) VALUES ('@ghost:example.org', 'PHONE')")
    blocked = run(base + ["--format", "parsable"])
    assert blocked.exit_code == 10
    assert "orphan-rows" in blocked.stdout and f"{synapse}:2:1:" in blocked.stdout


def test_check_changes_neither_database(pg_server, synapse_db, mas_db, tmp_path):
    scale(pg_server, synapse_db, 200)
    before_synapse, before_mas = checksums(synapse_db), mas_state(mas_db)
    synapse, mas = write_configs(tmp_path, synapse_db, mas_db, provider=True)
    result = run(["--synapse-config", synapse, "--config", mas, "--format", "json"])
    assert result.exit_code == 10  # the provider is not synced: check reports it, it never syncs it
    assert any(f["rule"] == "mas-provider-not-synced" for f in json.loads(result.stdout)["findings"])
    assert checksums(synapse_db) == before_synapse
    assert mas_state(mas_db) == before_mas


def test_mas_rules_are_skipped_without_a_mas_database(synapse_db, tmp_path):
    synapse, mas = write_configs(tmp_path, synapse_db, None)
    result = run(["--synapse-config", synapse, "--config", mas, "--format", "json"])
    assert result.exit_code == 0, result.output
    skipped = {s["rule"] for s in json.loads(result.stdout)["skipped_rules"]}
    assert {"mas-schema-missing", "mas-database-not-empty", "mas-provider-not-synced"} <= skipped


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_synapse_database_exits_1_with_what_to_do(mas_db, tmp_path):
    dead = f"postgresql://postgres@127.0.0.1:{_closed_port()}/synapse"
    synapse, mas = write_configs(tmp_path, dead, mas_db)
    result = CliRunner().invoke(main, ["check", "--synapse-config", synapse, "--config", mas])
    assert result.exit_code == 1
    assert "the Synapse database (`database` at" in result.stderr and "cannot be read" in result.stderr
    assert "hint:" in result.stderr and "Traceback" not in result.output + result.stderr


def test_unreachable_mas_database_exits_1_with_what_to_do(synapse_db, tmp_path):
    synapse, mas = write_configs(tmp_path, synapse_db, f"postgresql://postgres@127.0.0.1:{_closed_port()}/mas")
    result = CliRunner().invoke(main, ["check", "--synapse-config", synapse, "--config", mas])
    assert result.exit_code == 1
    assert "the MAS database (`database` at" in result.stderr and "--mas-database-uri" in result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_a_database_given_on_the_command_line_is_blamed_as_given(mas_db, tmp_path):
    """A failure names the option that gave the database, not the configuration's `database` section."""
    synapse, mas = write_configs(tmp_path, f"postgresql://postgres@127.0.0.1:{_closed_port()}/synapse", mas_db)
    (tmp_path / "data").mkdir()
    result = CliRunner().invoke(main, ["check", "--synapse-config", synapse, "--config", mas,
                                       "--synapse-sqlite", str(tmp_path / "data")])
    assert result.exit_code == 1
    assert "the Synapse database (given with --synapse-sqlite) cannot be read: the SQLite database path is a " \
           "directory" in result.stderr
    result = CliRunner().invoke(main, ["check", "--synapse-config", synapse, "--config", mas,
                                       "--synapse-database-uri", f"postgresql://postgres@127.0.0.1:{_closed_port()}/s"])
    assert result.exit_code == 1 and "(given with --synapse-database-uri)" in result.stderr
    assert "`database` at" not in result.stderr


def test_probe_matches_a_real_synapse_hash_with_the_pepper(pg_server, synapse_db, tmp_path):
    scale(pg_server, synapse_db, 20)
    with psycopg.connect(synapse_db) as conn:
        user, stored = conn.execute("SELECT name, password_hash FROM users WHERE password_hash LIKE '$2%' "
                                    "ORDER BY name LIMIT 1").fetchone()
    scheme = ("passwords:\n  schemes:\n"
              f"    - {{version: 1, algorithm: bcrypt, unicode_normalization: true, secret: '{PEPPER}'}}\n")
    synapse, mas = write_configs(tmp_path, synapse_db, None, scheme=scheme)
    args = ["--synapse-config", synapse, "--config", mas, "--probe", user, "--format", "json"]
    good = run(args, input="scale-password\n")
    assert "probe: the password of " + user + " matches" in good.stderr
    bad = run(args, input="scale-passwort\n")
    assert "does NOT match" in bad.stderr
    for result in (good, bad):
        text = result.output + result.stderr
        assert "scale-password" not in text and "scale-passwort" not in text
        assert stored not in text and PEPPER not in text


def test_probe_applies_nfkc_and_the_raw_bytes_of_secret_file(synapse_db, tmp_path):
    password = "Ｐａｓｓ\u00c5ord"  # full-width letters and a precomposed Å: NFKC changes the bytes
    pepper = "pep"
    digest = bcrypt.hashpw(unicodedata.normalize("NFKC", password).encode() + pepper.encode(), bcrypt.gensalt(4))
    sql(synapse_db, "INSERT INTO users (name, password_hash) VALUES ('@alice:example.org', %s)", (digest.decode(),))
    (tmp_path / "pepper").write_bytes(b"pep")
    (tmp_path / "pepper-nl").write_bytes(b"pep\n")

    def probe(scheme_line: str) -> str:
        scheme = f"passwords:\n  schemes:\n    - {scheme_line}\n"
        synapse, mas = write_configs(tmp_path, synapse_db, None, scheme=scheme)
        return run(["--synapse-config", synapse, "--config", mas, "--probe", "alice"], input=password + "\n").stderr

    pepper_file = tmp_path / "pepper"
    assert "matches" in probe(f"{{version: 1, algorithm: bcrypt, unicode_normalization: true, "
                              f"secret_file: '{pepper_file}'}}")
    assert "does NOT match" in probe(f"{{version: 1, algorithm: bcrypt, secret_file: '{pepper_file}'}}")
    assert "does NOT match" in probe(f"{{version: 1, algorithm: bcrypt, unicode_normalization: true, "
                                     f"secret_file: '{tmp_path / 'pepper-nl'}'}}")  # the newline is part of it
    assert "has no bcrypt password scheme with version 1" in probe("{version: 1, algorithm: argon2id}")


def test_probe_of_an_unknown_or_passwordless_user(synapse_db, tmp_path):
    sql(synapse_db, "INSERT INTO users (name) VALUES ('@sso:example.org')")
    synapse, mas = write_configs(tmp_path, synapse_db, None)
    base = ["--synapse-config", synapse, "--config", mas]
    assert "is not a user of the Synapse database" in run(base + ["--probe", "@nobody:example.org"], "x\n").stderr
    assert "has no password hash" in run(base + ["--probe", "sso"], "x\n").stderr
