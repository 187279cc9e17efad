"""`migrate`'s configuration checks and `--strict` (checks.md 1.1, 3, 5), `--plan` (data-migration.md §11) and
`--report-skipped` (§14.5), end to end on the real PostgreSQL fixtures."""
from __future__ import annotations

import csv
import json
import os
import stat

import psycopg
import pytest
from click.testing import CliRunner

import cli
from migrator.report import ENTITIES
from migrator.skipped import COLUMNS
from migrator.writer import MIGRATION_LOCK_KEY, MasRefused
from tests.conftest import MAS_JSON_SCHEMA
from mighelpers import add_provider, execute, rows, run, write_configs
from test_mig_edge_cases import device, refresh, seed, token, user

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none"
# What must never appear in any output: token values, hashes, addresses, external subjects, the pepper.
SECRETS = ("syt_", "syr_", "$2b$", "bot-address", "4477009001", "subject-", "synapse-only-pepper")
DELEGATION = "synapse-delegation-conflict"  # the configuration warning of the write_configs pair
THREEPIDS = "non-email-threepids"            # a database warning (phone numbers cannot log in to MAS)


def mas_state(uri: str) -> dict:
    """The MAS catalogue (tables, columns, constraints, indexes) and the rows of every table."""
    with psycopg.connect(uri) as conn:
        def q(sql: str) -> list:
            return conn.execute(sql).fetchall()

        tables = [r[0] for r in q("SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                                  "WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 1")]
        return {
            "columns": q("SELECT table_name, column_name, data_type, is_nullable, column_default "
                         "FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2"),
            "constraints": q("SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
                             "WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2"),
            "indexes": q("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"),
            "rows": {t: q(f'SELECT * FROM "{t}" ORDER BY 1') for t in tables},
        }


def cli_migrate(hs: str, mas_yaml: str, *args: str, synapse: str = UNREACHABLE):
    """`syn2mas migrate` through click (stderr kept apart, so the findings can be told from the summary)."""
    runner = CliRunner()
    return runner.invoke(cli.main, ["migrate", "--synapse-config", hs, "--config", mas_yaml,
                                    "--synapse-database-uri", synapse, *args])


def seed_small(synapse_db: str) -> None:
    """One user with a device, a token, a link and a phone number (the database warning `non-email-threepids`)."""
    seed(synapse_db, user(),
         "INSERT INTO user_external_ids VALUES ('oidc-dex', 'subject-a', '@alice:example.org')",
         "INSERT INTO user_threepids VALUES ('@alice:example.org', 'msisdn', '4477009001', 1, 1)")
    device(synapse_db)
    token(synapse_db, 1)


def seed_edge_cases(synapse_db: str) -> None:
    """Rows for every skip reason of §14.5 (and migrated rows next to them)."""
    seed(synapse_db,
         user(),
         user("@bot:example.org", appservice_id="irc", password_hash=""),
         user("@123:example.org", is_guest=1),
         user("@gone:example.org", deactivated=1),
         user("@empty:example.org", password_hash=""),
         "INSERT INTO user_threepids VALUES ('@bot:example.org', 'email', 'bot-address@x.org', 1, 1)",
         "INSERT INTO user_threepids VALUES ('@alice:example.org', 'msisdn', '4477009001', 1, 1)",
         "INSERT INTO user_external_ids VALUES ('oidc-dex', 'subject-dex', '@alice:example.org')",
         "INSERT INTO user_external_ids VALUES ('saml', 'subject-saml', '@alice:example.org')")
    device(synapse_db)
    device(synapse_db, device_id="HIDDEN", hidden="true")
    device(synapse_db, "@123:example.org", "guest_device")
    device(synapse_db, "@gone:example.org", "GONEDEV")
    token(synapse_db, 1)                                                # migrated
    token(synapse_db, 2, device_id=None, puppets="@empty:example.org")  # puppet-token
    token(synapse_db, 3, device_id="NODEV")                             # device-missing
    token(synapse_db, 4, device_id="HIDDEN")                            # hidden-device
    token(synapse_db, 5, "@123:example.org", "guest_device")            # guest-user
    token(synapse_db, 6, "@gone:example.org", None)                     # deactivated-user, deviceless
    token(synapse_db, 7, device_id=None)                                # migrated, deviceless
    refresh(synapse_db, 11)
    refresh(synapse_db, 10, next_id="11")
    token(synapse_db, 20, refresh="10", last_validated="1000")          # refresh-superseded (10 too)
    token(synapse_db, 21, refresh="11", used="true", last_validated="2000")
    refresh(synapse_db, 13, device_id="OTHER")
    token(synapse_db, 22, refresh="13")                                 # refresh-token-missing (another device's)
    refresh(synapse_db, 12)
    token(synapse_db, 23, refresh="12")                                 # refresh-token-shared
    token(synapse_db, 24, refresh="12")


# ---------------------------------------------------------------- configuration checks


def test_pepper_mismatch_refuses_with_exit_10_before_any_database(mas, tmp_path):
    """Synapse's pepper differs from MAS scheme 1's secret (`pepper-mismatch`, an error): exit 10 before
    either database is opened (Synapse is unreachable, which would be exit 1), MAS untouched, no report."""
    hs, mas_yaml = write_configs(tmp_path, mas, synapse_extra="password_config:\n  pepper: synapse-only-pepper\n")
    before = mas_state(mas)
    report = tmp_path / "r.json"
    result = cli_migrate(hs, mas_yaml, "--report", str(report))
    assert result.exit_code == 10, result.stderr
    assert "pepper-mismatch" in result.stderr and "nothing was opened or written" in result.stderr
    assert not any(s in result.stderr + result.stdout for s in SECRETS)
    assert mas_state(mas) == before
    assert not report.exists()
    # the same for a dry run and a plan
    for mode in ("--dry-run", "--plan"):
        assert cli_migrate(hs, mas_yaml, mode, "--report", str(report)).exit_code == 10
    assert mas_state(mas) == before


def test_matching_pepper_migrates_and_config_warnings_reach_the_report(synapse_db, mas, tmp_path):
    """The same pepper on both sides passes; the remaining configuration warning is printed and recorded."""
    seed_small(synapse_db)
    hs, mas_yaml = write_configs(tmp_path, mas, pepper="shared-pepper-value")
    report = tmp_path / "r.json"
    result = cli_migrate(hs, mas_yaml, "--report", str(report), synapse=synapse_db)
    assert result.exit_code == 0, result.stderr
    assert DELEGATION in result.stderr and THREEPIDS in result.stderr
    assert "shared-pepper-value" not in result.stderr + result.stdout + report.read_text()
    findings = {f["rule"]: f for f in json.loads(report.read_text())["findings"]}
    assert findings[DELEGATION]["scope"] == "synapse" and findings[DELEGATION]["severity"] == "warning"
    assert findings[DELEGATION]["location"]["file"] == hs and findings[DELEGATION]["acknowledged"] is None
    assert findings[THREEPIDS]["scope"] == "database" and findings[THREEPIDS]["location"] is None
    assert rows(mas, "SELECT username FROM users") == [("alice",)]


def test_acknowledgements_file_marks_warnings_in_the_report(synapse_db, mas, tmp_path):
    """Acknowledgements (file and --accept) cover configuration and database warnings alike; an entry that
    matches nothing is an info note."""
    seed_small(synapse_db)
    hs, mas_yaml = write_configs(tmp_path, mas)
    acks = tmp_path / "acks.yaml"
    acks.write_text("version: 1\nacknowledgements:\n"
                    f"  - rule: {THREEPIDS}\n    reason: Phone numbers are kept for reference only, OPS-1.\n"
                    "  - rule: guests-in-database\n    reason: No guests on this server, but just in case.\n")
    report = tmp_path / "r.json"
    result = cli_migrate(hs, mas_yaml, "--report", str(report), "--acknowledgements", str(acks),
                         "--accept", f"{DELEGATION}=The overlay is applied after the migration.",
                         synapse=synapse_db)
    assert result.exit_code == 0, result.stderr
    findings = {f["rule"]: f for f in json.loads(report.read_text())["findings"]}
    assert findings[THREEPIDS]["acknowledged"] == "Phone numbers are kept for reference only, OPS-1."
    assert findings[DELEGATION]["acknowledged"] == "The overlay is applied after the migration."
    assert "guests-in-database" in findings["unused-acknowledgement"]["message"]


# ---------------------------------------------------------------- --strict


def test_strict_unacknowledged_config_warning_is_exit_11_before_any_database(mas, tmp_path):
    hs, mas_yaml = write_configs(tmp_path, mas)
    before = mas_state(mas)
    report = tmp_path / "r.json"
    result = cli_migrate(hs, mas_yaml, "--strict", "--report", str(report))
    assert result.exit_code == 11, result.stderr
    assert DELEGATION in result.stderr and "--strict" in result.stderr
    assert mas_state(mas) == before and not report.exists()
    # without --strict the warning does not stop migrate: it gets as far as the (unreachable) Synapse database
    assert cli_migrate(hs, mas_yaml, "--report", str(report)).exit_code == 1


@pytest.mark.parametrize("mode", [[], ["--dry-run"]])
def test_strict_unacknowledged_database_warning_is_exit_11_and_nothing_written(synapse_db, mas, tmp_path, mode):
    """The configuration warning is accepted, the database warning found in the snapshot is not: exit 11,
    MAS untouched (it was not even opened), Synapse unchanged, no report."""
    seed_small(synapse_db)
    hs, mas_yaml = write_configs(tmp_path, mas)
    before = mas_state(mas)
    synapse_before = rows(synapse_db, "SELECT name FROM users")
    report = tmp_path / "r.json"
    result = cli_migrate(hs, mas_yaml, *mode, "--strict", "--report", str(report),
                         "--accept", f"{DELEGATION}=The overlay is applied after the migration.", synapse=synapse_db)
    assert result.exit_code == 11, result.stderr
    assert THREEPIDS in result.stderr and "--strict" in result.stderr
    assert not any(s in result.stderr + result.stdout for s in SECRETS)
    assert mas_state(mas) == before and not report.exists()
    assert rows(synapse_db, "SELECT name FROM users") == synapse_before


def test_strict_with_every_warning_acknowledged_migrates(synapse_db, mas, tmp_path):
    seed_small(synapse_db)
    hs, mas_yaml = write_configs(tmp_path, mas)
    report = tmp_path / "r.json"
    result = cli_migrate(hs, mas_yaml, "--strict", "--report", str(report),
                         "--accept", f"{DELEGATION}=The overlay is applied after the migration.",
                         "--accept", f"{THREEPIDS}=Phone numbers are kept for reference only.", synapse=synapse_db)
    assert result.exit_code == 0, result.stderr
    assert "migration committed" in result.stdout
    assert rows(mas, "SELECT username FROM users") == [("alice",)]
    doc = json.loads(report.read_text())
    assert {f["rule"] for f in doc["findings"] if f["severity"] == "warning" and not f["acknowledged"]} == set()


def test_strict_database_error_is_still_exit_10(synapse_db, mas, tmp_path):
    """Errors win over --strict: an orphan row refuses with 10, whatever is acknowledged."""
    seed_small(synapse_db)
    execute(synapse_db, "INSERT INTO user_threepids VALUES ('@ghost:example.org', 'email', 'g@x', 1, 1)")
    hs, mas_yaml = write_configs(tmp_path, mas)
    before = mas_state(mas)
    result = cli_migrate(hs, mas_yaml, "--strict", "--report", str(tmp_path / "r.json"),
                         "--accept", f"{DELEGATION}=The overlay is applied after the migration.", synapse=synapse_db)
    assert result.exit_code == 10 and "orphan-rows" in result.stderr
    assert mas_state(mas) == before


# ---------------------------------------------------------------- --plan


def test_plan_counts_equal_a_dry_run_and_mas_is_untouched(synapse_db, mas):
    seed_edge_cases(synapse_db)
    before = mas_state(mas)
    planned = run(synapse_db, mas, plan=True, ignore_missing_providers=True).to_dict()
    assert mas_state(mas) == before
    dry = run(synapse_db, mas, dry_run=True, ignore_missing_providers=True).to_dict()
    assert mas_state(mas) == before
    assert planned["mode"] == "plan" and dry["mode"] == "dry-run"
    for key in ("entities", "anomalies", "reconciliation", "target", "source"):
        assert planned[key] == dry[key], key
    assert all(r["status"] == "ok" for r in planned["reconciliation"])
    assert planned["entities"]["access_tokens"]["migrated"] == 4  # 1, 7, 21, 24
    assert planned["timings_s"]["copy"] == 0 and planned["timings_s"]["rebuild"] == 0


def test_plan_takes_no_lock_and_runs_beside_a_live_mas(synapse_db, mas, tmp_path):
    """Another session holds the migration lock and writes to `users` (as a running MAS would): a dry run is
    refused (exit 1), the plan completes, reports `mode: plan` and leaves MAS exactly as it was."""
    seed_small(synapse_db)
    hs, mas_yaml = write_configs(tmp_path, mas)
    before = mas_state(mas)
    with psycopg.connect(mas, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        other.execute("BEGIN")
        other.execute("LOCK TABLE users IN ROW EXCLUSIVE MODE")
        dry = cli_migrate(hs, mas_yaml, "--dry-run", "--report", str(tmp_path / "dry.json"), synapse=synapse_db)
        assert dry.exit_code == 1 and "another migration is running" in dry.stderr
        report = tmp_path / "plan.json"
        result = cli_migrate(hs, mas_yaml, "--plan", "--report", str(report), synapse=synapse_db)
        assert result.exit_code == 0, result.stderr
        held = rows(mas, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted")[0][0]
        assert held == 1  # only the other session's
        other.execute("ROLLBACK")
    assert "plan finished, MAS only read" in result.stdout
    doc = json.loads(report.read_text())
    assert doc["mode"] == "plan" and doc["entities"]["users"]["migrated"] == 1
    assert all(r["status"] == "ok" for r in doc["reconciliation"])
    assert mas_state(mas) == before


def test_plan_refuses_where_a_real_run_would(synapse_db, mas):
    """The MAS preconditions are checked read-only: a non-empty MAS refuses the plan as it refuses a run."""
    seed_small(synapse_db)
    run(synapse_db, mas)
    before = mas_state(mas)
    with pytest.raises(MasRefused) as exc:
        run(synapse_db, mas, plan=True)
    assert exc.value.check_id == "mas-database-not-empty"
    assert mas_state(mas) == before


@pytest.mark.parametrize("plan", [False, True])
def test_tables_renamed_by_an_interrupted_reference_run_refuse_as_not_empty(synapse_db, mas, plan):
    """The reference tool renames the MAS tables while it runs (`syn2mas__users`, ...); after an
    interrupted run, the refusal names the leftovers, as `check`'s `mas-database-not-empty` does, rather
    than advising `mas-cli database migrate`, which would find nothing to do."""
    seed_small(synapse_db)
    execute(mas, "ALTER TABLE users RENAME TO syn2mas__users")
    try:
        before = mas_state(mas)
        with pytest.raises(MasRefused) as exc:
            run(synapse_db, mas, plan=plan)
        assert exc.value.check_id == "mas-database-not-empty"
        assert "MAS table `users` is missing" in exc.value.problems
        assert any("`syn2mas__users`" in p for p in exc.value.problems)
        assert mas_state(mas) == before
    finally:
        execute(mas, "ALTER TABLE syn2mas__users RENAME TO users")  # the fixture's database is reused


def test_plan_and_dry_run_are_exclusive(mas, tmp_path):
    hs, mas_yaml = write_configs(tmp_path, mas)
    result = cli_migrate(hs, mas_yaml, "--plan", "--dry-run")
    assert result.exit_code == 1 and "mutually exclusive" in result.stderr


# ---------------------------------------------------------------- --report-skipped


def read_csv(directory, entity: str) -> list[dict]:
    with open(os.path.join(directory, f"skipped-{entity}.csv"), newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("mode", ["dry_run", "plan", "migrate"])
def test_report_skipped_lists_every_skipped_row_by_key(synapse_db, mas, tmp_path, mode):
    seed_edge_cases(synapse_db)
    out = tmp_path / "skipped"
    opts = {"dry_run": True} if mode == "dry_run" else {"plan": True} if mode == "plan" else {}
    report = run(synapse_db, mas, ignore_missing_providers=True, report_skipped=str(out), **opts)
    assert sorted(os.listdir(out)) == sorted(f"skipped-{e}.csv" for e in ENTITIES)
    for entity in ENTITIES:
        path = out / f"skipped-{entity}.csv"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        listed = read_csv(out, entity)
        with open(path, encoding="utf-8") as fh:
            assert fh.readline().strip() == ",".join([*COLUMNS[entity], "reason"])
        # one line per skipped row, with the reasons the report counts
        reasons: dict[str, int] = {}
        for line in listed:
            reasons[line["reason"]] = reasons.get(line["reason"], 0) + 1
        assert reasons == dict(report.entities[entity].skipped), entity
    text = "".join((out / f).read_text() for f in os.listdir(out))
    assert not any(s in text for s in SECRETS)
    tokens = {(r["access_token_id"], r["reason"]) for r in read_csv(out, "access_tokens")}
    assert tokens == {("2", "puppet-token"), ("3", "device-missing"), ("4", "hidden-device"), ("5", "guest-user"),
                      ("6", "deactivated-user"), ("20", "refresh-superseded"), ("22", "refresh-token-missing"),
                      ("23", "refresh-token-shared")}
    assert read_csv(out, "refresh_tokens") == [{"refresh_token_id": "10", "access_token_id": "20",
                                                "user_id": "@alice:example.org", "device_id": "DEV",
                                                "reason": "refresh-superseded"}]
    assert read_csv(out, "links") == [{"user_id": "@alice:example.org", "provider": "saml",
                                       "reason": "unmapped-provider"}]
    assert read_csv(out, "emails") == [{"user_id": "@bot:example.org", "medium": "email", "reason": "appservice-user"}]
    assert read_csv(out, "deviceless_sessions") == [{"access_token_id": "6", "user_id": "@gone:example.org",
                                                     "reason": "deactivated-user"}]
    assert {(r["user_id"], r["device_id"], r["reason"]) for r in read_csv(out, "devices")} == {
        ("@alice:example.org", "HIDDEN", "hidden-device"), ("@123:example.org", "guest_device", "guest-user"),
        ("@gone:example.org", "GONEDEV", "deactivated-user")}
    assert sorted((r["user_id"], r["reason"]) for r in read_csv(out, "passwords")) == [
        ("@bot:example.org", "appservice-user"), ("@empty:example.org", "empty-password-hash")]

def test_report_skipped_leaves_nothing_when_the_run_fails(synapse_db, mas, tmp_path):
    """A failure before COMMIT: MAS rolled back, and no skipped-row list (partial or final) is left behind."""
    seed_edge_cases(synapse_db)
    out = tmp_path / "skipped"

    def crash(step: str) -> None:
        if step == "before-commit":
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError):
        run(synapse_db, mas, ignore_missing_providers=True, report_skipped=str(out), fail_hook=crash)
    assert os.listdir(out) == []
    assert rows(mas, "SELECT count(*) FROM users") == [(0,)]


def test_report_skipped_through_the_cli(synapse_db, mas, tmp_path):
    seed_small(synapse_db)
    token(synapse_db, 2, device_id="NODEV")
    hs, mas_yaml = write_configs(tmp_path, mas)
    out = tmp_path / "lists"
    result = cli_migrate(hs, mas_yaml, "--dry-run", "--report", str(tmp_path / "r.json"), "--report-skipped",
                         str(out), synapse=synapse_db)
    assert result.exit_code == 0, result.stderr
    assert f"skipped rows listed in {out}" in result.stdout
    assert read_csv(out, "access_tokens") == [{"access_token_id": "2", "user_id": "@alice:example.org",
                                               "device_id": "NODEV", "reason": "device-missing"}]
    # a file where the directory should be: exit 1 before any work
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = cli_migrate(hs, mas_yaml, "--dry-run", "--report-skipped", str(blocker), synapse=synapse_db)
    assert result.exit_code == 1 and "--report-skipped" in result.stderr


def test_add_provider_fixture_is_what_the_plan_checks(synapse_db, mas_db):
    """Without the provider synced, the plan refuses with `mas-provider-not-synced`, like a run."""
    seed_small(synapse_db)
    with pytest.raises(MasRefused) as exc:
        run(synapse_db, mas_db, plan=True)
    assert exc.value.check_id == "mas-provider-not-synced"
    add_provider(mas_db)
    assert run(synapse_db, mas_db, plan=True).entities["links"].migrated == 1


# ---------------------------------------------------------------- --mas-schema


def test_mas_schema_makes_migrate_validate_the_mas_configuration_first(synapse_db, mas, tmp_path):
    """With MAS's published schema, the configuration checks of `migrate` are those of `check --mas-schema`:
    this MAS file has no `secrets` section, which the schema requires, so migrate refuses before any database;
    a schema path that does not exist is a usage error naming it."""
    seed_small(synapse_db)
    hs, mas_yaml = write_configs(tmp_path, mas)
    before = mas_state(mas)
    report = tmp_path / "r.json"
    refused = cli_migrate(hs, mas_yaml, "--mas-schema", MAS_JSON_SCHEMA, "--report", str(report), synapse=synapse_db)
    assert refused.exit_code == 10, refused.stderr
    assert "mas-config-invalid" in refused.stderr and "secrets" in refused.stderr
    missing = cli_migrate(hs, mas_yaml, "--mas-schema", str(tmp_path / "nope.json"), synapse=synapse_db)
    assert missing.exit_code == 1
    assert "MAS configuration schema not found" in missing.stderr and "nope.json" in missing.stderr
    assert mas_state(mas) == before and not report.exists()
