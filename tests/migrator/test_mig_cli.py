"""`syn2mas demo`, `migrate` and `verify` end to end through click."""
from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

import cli
from mighelpers import SERVER, execute, rows, write_configs

SECRETS = ("syt_", "syr_", "$2b$", "hunter2")


def _write_configs(tmp_path, mas_uri: str) -> tuple[str, str]:
    return write_configs(tmp_path, mas_uri)


def _seed(synapse_db: str) -> None:
    execute(synapse_db, """
        INSERT INTO users (name, password_hash, creation_ts) VALUES ('@a:example.org', '$2b$12$hunter2hash', 1600000000);
        INSERT INTO user_external_ids VALUES ('oidc-dex', 'sub-a', '@a:example.org');
        INSERT INTO devices (user_id, device_id, last_seen) VALUES ('@a:example.org', 'DEV', 1700000000000);
        INSERT INTO access_tokens (id, user_id, device_id, token, last_validated)
            VALUES (1, '@a:example.org', 'DEV', 'syt_secret_token', 1690000000000);
    """)


def test_demo_end_to_end():
    result = CliRunner().invoke(cli.main, ["demo"])
    assert result.exit_code == 0, result.output
    assert "demo finished: everything matches" in result.output
    assert not any(s in result.output for s in SECRETS)


def test_migrate_then_verify(synapse_db, mas, tmp_path):
    _seed(synapse_db)
    execute(synapse_db, "INSERT INTO user_threepids VALUES ('@a:example.org', 'msisdn', '4477009001', 1, 1)")
    hs, mas_yaml = _write_configs(tmp_path, mas)
    report = tmp_path / "report.json"
    runner = CliRunner()
    args = ["--synapse-config", hs, "--config", mas_yaml, "--synapse-database-uri", synapse_db]
    result = runner.invoke(cli.main, ["migrate", *args, "--report", str(report)])
    assert result.exit_code == 0, result.output
    assert "migration committed" in result.output
    doc = json.loads(report.read_text())
    assert doc["schema_version"] == 1 and doc["mode"] == "migrate"
    assert doc["source"] == {"kind": "postgresql", "server_name": SERVER}
    assert doc["entities"]["access_tokens"]["migrated"] == 1
    assert all(r["status"] == "ok" for r in doc["reconciliation"])
    # the pre-migration database checks ran and their non-blocking findings are in the report
    assert all(f["severity"] != "error" for f in doc["findings"])
    assert "non-email-threepids" in {f["rule"] for f in doc["findings"]}
    text = report.read_text() + result.output
    assert not any(s in text for s in SECRETS)
    assert rows(mas, "SELECT username FROM users") == [("a",)]

    result = runner.invoke(cli.main, ["verify", *args])
    assert result.exit_code == 0, result.output
    assert "access_tokens" in result.output and "mismatch" not in result.output

    # Synapse gains a token after the migration: verify reports it and exits 10, without printing it
    execute(synapse_db, "INSERT INTO access_tokens (id, user_id, device_id, token) "
                        "VALUES (2, '@a:example.org', 'DEV', 'syt_later_token')")
    result = runner.invoke(cli.main, ["verify", *args, "--migration-report", str(report)])
    assert result.exit_code == 10
    assert "synapse-changed" in result.output
    assert not any(s in result.output for s in SECRETS)

    # a second migration is refused: MAS is no longer empty
    result = runner.invoke(cli.main, ["migrate", *args, "--report", str(tmp_path / "r2.json")])
    assert result.exit_code == 10
    assert "mas-database-not-empty" in result.output


def test_migrate_refuses_blocking_data_with_exit_10(synapse_db, mas, tmp_path):
    _seed(synapse_db)
    execute(synapse_db, "INSERT INTO user_threepids VALUES ('@ghost:example.org', 'email', 'g@x', 1, 1)")
    hs, mas_yaml = _write_configs(tmp_path, mas)
    result = CliRunner().invoke(cli.main, ["migrate", "--synapse-config", hs, "--config", mas_yaml,
                                           "--synapse-database-uri", synapse_db, "--report",
                                           str(tmp_path / "r.json")])
    assert result.exit_code == 10
    assert "orphan-rows" in result.output and "@ghost:example.org" in result.output
    assert rows(mas, "SELECT count(*) FROM users") == [(0,)]
    assert not os.path.exists(tmp_path / "r.json")


def test_migrate_runtime_failure_is_exit_1_without_traceback(synapse_db, tmp_path):
    hs, mas_yaml = _write_configs(tmp_path, "postgresql://nobody@127.0.0.1:1/none")
    result = CliRunner().invoke(cli.main, ["migrate", "--synapse-config", hs, "--config", mas_yaml,
                                           "--synapse-database-uri", synapse_db])
    assert result.exit_code == 1
    assert "cannot connect to the MAS database" in result.output
    assert "Traceback" not in result.output


def test_migrate_with_providers_that_are_not_a_list_refuses_without_traceback(synapse_db, mas, tmp_path):
    _seed(synapse_db)
    hs, mas_yaml = _write_configs(tmp_path, mas)
    text = open(mas_yaml).read()
    head = text[:text.index("upstream_oauth2:")]
    with open(mas_yaml, "w") as fh:
        fh.write(head + "upstream_oauth2:\n  providers: true\n")
    result = CliRunner().invoke(cli.main, ["migrate", "--synapse-config", hs, "--config", mas_yaml,
                                           "--synapse-database-uri", synapse_db, "--dry-run"])
    assert result.exit_code == 10, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output
    # no MAS provider maps `oidc-dex` now: the links cannot be attached, so the run is refused
    assert "auth-provider-missing-in-mas" in result.output
    assert rows(mas, "SELECT count(*) FROM users") == [(0,)]


@pytest.mark.parametrize("uri, reason", [
    ("postgresql://synapse:Pass%ZZWord-1@db/synapse", "invalid percent-encoded token"),
    # an unencoded `@.` leaves `.` as the host name, which psycopg's resolver refuses with a UnicodeError
    ("postgresql://synapse:PassWord-1@.@db/synapse", "encoding with 'idna' codec failed"),
])
def test_an_unparsable_database_uri_is_reported_without_its_password(mas, tmp_path, uri, reason):
    hs, mas_yaml = _write_configs(tmp_path, mas)
    result = CliRunner().invoke(cli.main, ["migrate", "--synapse-config", hs, "--config", mas_yaml, "--plan",
                                           "--synapse-database-uri", uri])
    assert result.exit_code == 1
    assert f"cannot connect to the Synapse database: {reason}" in result.output
    assert "PassWord-1" not in result.output and "Pass%ZZWord-1" not in result.output
    assert "Traceback" not in result.output
