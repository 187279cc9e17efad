"""Hostile Synapse rows (data-migration.md §7, §14.2): what the real schema allows (NULLs, odd IPs, huge and
odd-unicode strings, control characters, upper-case and unicode localparts, shared refresh tokens) migrates
as §7 says; what `migrate` cannot take (foreign users, orphans, duplicate links, leftovers, unmapped
providers) is reported by `check` with the rule id and refused by `migrate` (exit 10, nothing written).
Synapse is checked unchanged after every command.
"""
from __future__ import annotations

import json

import psycopg
import pytest

from faulthelpers import db_state, diff_states, execute, reset_mas, rows, run_cli, write_configs

WEIRD = "\u202eevil\u200b\x07\x1b[31m\u00e9\u0301\U0001f600\ufeff\t\r\n"
HUGE = "D" * 10_000
# Rows the migration must take (§7 rows 5-12, 14, 15, 26-39), with hostile strings everywhere text is free.
MIGRATABLE = f"""
INSERT INTO users (name, password_hash, creation_ts, admin, is_guest, deactivated, appservice_id, locked) VALUES
  ('@plain:example.org', '$2b$12$abcdefghijklmnopqrstuuMZk1Q1.o0dSWXn0hTw4PBHY8iH0qv2u', 1600000000, 0, 0, 0, NULL, false),
  ('@Upper.Case:example.org', 'not-bcrypt', NULL, 1, 0, 0, NULL, true),
  ('@upper.case:example.org', '', -5, 0, 0, 0, NULL, false),
  ('@ünïcödé_\u00e9\u0301:example.org', NULL, 1600000001, 0, 0, 0, NULL, false),
  ('@guest1:example.org', NULL, 1600000002, 0, 1, 0, NULL, false),
  ('@gone:example.org', NULL, 1600000003, 0, 0, 1, NULL, false),
  ('@bridge_x:other.server', NULL, 1600000004, 0, 0, 0, 'bridge', false),
  ('@bridge:with:colon:example.org', NULL, 1600000005, 0, 0, 0, 'bridge', false);
INSERT INTO user_threepids VALUES
  ('@plain:example.org', 'email', %(weird)s, 1, 1000),
  ('@plain:example.org', 'Email', 'MiXeD@Example.ORG', 1, 1000),
  ('@Upper.Case:example.org', 'email', %(huge)s, 1, 1000),
  ('@upper.case:example.org', 'msisdn', '+15555550100', 1, 1000),
  ('@ünïcödé_\u00e9\u0301:example.org', 'email', 'not an email', 1, -1000),
  ('@gone:example.org', 'email', 'gone@example.org', 1, 1000);
INSERT INTO user_external_ids VALUES ('oidc-dex', %(weird)s, '@plain:example.org'),
                                     ('oidc-dex', %(huge)s, '@Upper.Case:example.org'),
                                     ('oidc-dex', 'sub-guest', '@guest1:example.org');
INSERT INTO devices (user_id, device_id, display_name, last_seen, ip, user_agent, hidden) VALUES
  ('@plain:example.org', 'DEV1', %(huge)s, 1700000000000, '-', %(weird)s, false),
  ('@plain:example.org', 'DEV2', %(weird)s, NULL, 'garbage', NULL, NULL),
  ('@plain:example.org', 'DEV3', NULL, -1, '10.0.0.1:8080', %(huge)s, false),
  ('@plain:example.org', 'DEV4', '', 1, '[::1]', '', false),
  ('@plain:example.org', 'DEV5', 'x', 2, 'fe80::1%%eth0', 'x', false),
  ('@plain:example.org', 'DEV6', 'x', 3, '010.000.000.001', 'x', false),
  ('@plain:example.org', 'DEV7', 'x', 4, '::ffff:1.2.3.4', 'x', false),
  ('@plain:example.org', 'HIDDEN', 'master signing key', NULL, NULL, NULL, true),
  ('@plain:example.org', 'guest_device', NULL, 5, '2001:db8::1', NULL, false),
  ('@Upper.Case:example.org', %(weird)s, %(weird)s, 6, '192.168.1.1', NULL, false),
  ('@guest1:example.org', 'guest_device', NULL, 7, '127.0.0.1', NULL, false),
  ('@bridge_x:other.server', 'BRIDGEDEV', NULL, 8, NULL, NULL, false);
INSERT INTO refresh_tokens (id, user_id, device_id, token, next_token_id) VALUES
  (1, '@plain:example.org', 'DEV1', 'syr_shared_refresh', NULL);
INSERT INTO access_tokens (id, user_id, device_id, token, valid_until_ms, puppets_user_id, last_validated,
                           refresh_token_id, used) VALUES
  (1, '@plain:example.org', 'DEV1', 'syt_pair_old', 1, NULL, NULL, 1, false),
  (2, '@plain:example.org', 'DEV1', 'syt_pair_new', NULL, NULL, -7, 1, NULL),
  (3, '@plain:example.org', 'DEV2', 'syt_on_null_hidden', NULL, NULL, 5, NULL, NULL),
  (4, '@plain:example.org', 'HIDDEN', 'syt_on_hidden', NULL, NULL, 5, NULL, NULL),
  (5, '@plain:example.org', 'NODEVICE', 'syt_no_device_row', NULL, NULL, 5, NULL, NULL),
  (6, '@plain:example.org', NULL, 'syt_deviceless', NULL, NULL, NULL, NULL, NULL),
  (7, '@plain:example.org', NULL, 'syt_puppet', NULL, '@Upper.Case:example.org', 5, NULL, NULL),
  (8, '@plain:example.org', 'guest_device', 'syt_non_guest_guest_device', 0, NULL, 5, NULL, NULL),
  (9, '@Upper.Case:example.org', %(weird)s, 'syt_weird_device', NULL, NULL, 5, NULL, NULL),
  (10, '@bridge_x:other.server', 'BRIDGEDEV', 'syt_bridge', NULL, NULL, 5, NULL, NULL);
"""
TOKENS = ("syt_pair_old", "syt_pair_new", "syt_on_null_hidden", "syt_on_hidden", "syt_no_device_row",
          "syt_deviceless", "syt_puppet", "syt_non_guest_guest_device", "syt_weird_device", "syt_bridge",
          "syr_shared_refresh", "$2b$12$abcdefghijklmnopqrstuu", "not-bcrypt", "MiXeD@Example.ORG",
          "gone@example.org", "+15555550100")

# Each blocking case: the rows, and the rule `check` reports (checks.md 4.3; data-migration.md §14.2).
BLOCKING = {
    "foreign-server-user": ("INSERT INTO users (name, creation_ts) VALUES ('@someone:other.server', 1)",
                            "foreign-server-users"),
    "null-user-name": ("INSERT INTO users (name, creation_ts) VALUES (NULL, 1)", "foreign-server-users"),
    "colon-in-localpart": ("INSERT INTO users (name, creation_ts) VALUES ('@a:b:example.org', 1)",
                           "foreign-server-users"),
    "no-at-sign": ("INSERT INTO users (name, creation_ts) VALUES ('plain:example.org', 1)", "foreign-server-users"),
    "orphan-threepid": ("INSERT INTO user_threepids VALUES ('@ghost:example.org', 'email', 'g@x', 1, 1)",
                        "orphan-rows"),
    "orphan-device": ("INSERT INTO devices (user_id, device_id) VALUES ('@ghost:example.org', 'D')", "orphan-rows"),
    "orphan-token": ("INSERT INTO access_tokens (id, user_id, token) VALUES (99, '@ghost:example.org', 'syt_ghost')",
                     "orphan-rows"),
    "orphan-case-mismatch": ("INSERT INTO user_external_ids VALUES ('oidc-dex', 'sub-x', '@PLAIN:example.org')",
                             "orphan-rows"),
    # the real schema has a unique key on (auth_provider, external_id); a database that lost it (restored
    # from a partial dump, hand-edited) is what this rule is for
    "duplicate-links": ("ALTER TABLE user_external_ids DROP CONSTRAINT user_external_ids_auth_provider_external_id_key;"
                        "INSERT INTO users (name, creation_ts) VALUES ('@twin:example.org', 1);"
                        "INSERT INTO user_external_ids VALUES ('oidc-dex', 'same-subject', '@plain:example.org'),"
                        " ('oidc-dex', 'same-subject', '@twin:example.org')", "duplicate-upstream-links"),
    "oauth-delegated": ("INSERT INTO user_external_ids VALUES ('oauth-delegated', 'x', '@plain:example.org')",
                        "oauth-delegated-leftovers"),
    "unknown-provider": ("INSERT INTO user_external_ids VALUES ('oidc-removed', 'x', '@plain:example.org')",
                         "auth-provider-unknown-to-synapse"),
}


@pytest.fixture
def world(tmp_path, synapse_db, target_mas):
    mas_uri, baseline = target_mas
    hs, mas = write_configs(tmp_path, synapse_db, mas_uri)
    with psycopg.connect(synapse_db, autocommit=True) as c:
        c.execute(psycopg.ClientCursor(c).mogrify(MIGRATABLE, {"weird": WEIRD, "huge": HUGE}))
    return tmp_path, synapse_db, mas_uri, baseline, hs, mas


def _run(tmp_path, synapse_uri, *args):
    before = db_state(synapse_uri)
    res = run_cli(list(args), cwd=str(tmp_path))
    after = db_state(synapse_uri)
    assert after == before, "Synapse changed: " + "; ".join(diff_states(before, after))
    out = res.stdout + res.stderr
    assert "Traceback" not in out and "internal error" not in out, out[-3000:]
    for token in TOKENS:
        assert token not in out, f"{token!r} printed"
    return res


def test_hostile_rows_migrate_as_specified(world):
    tmp_path, synapse_uri, mas_uri, baseline, hs, mas = world
    conn = ["--synapse-config", hs, "--config", mas]
    res = _run(tmp_path, synapse_uri, "check", *conn, "--format", "json")
    assert res.returncode == 11, res.stdout + res.stderr  # warnings only: nothing here blocks
    rules = {f["rule"] for f in json.loads(res.stdout)["findings"] if f["severity"] == "warning"}
    assert {"case-colliding-usernames", "invalid-emails", "non-email-threepids", "hidden-device-tokens",
            "guests-in-database", "users-without-login-method"} <= rules, rules

    res = _run(tmp_path, synapse_uri, "migrate", *conn, "--dry-run", "--report", "dry.json")
    assert res.returncode == 0, res.stderr
    assert db_state(mas_uri) == baseline
    res = _run(tmp_path, synapse_uri, "migrate", *conn, "--report", "report.json")
    assert res.returncode == 0, res.stderr
    report_text = (tmp_path / "report.json").read_text()
    for token in TOKENS + (HUGE, WEIRD):
        assert token not in report_text
    report = json.loads(report_text)
    assert all(r["status"] == "ok" for r in report["reconciliation"])
    ent, anomalies = report["entities"], report["anomalies"]
    assert ent["users"]["migrated"] == 6 and ent["users"]["skipped"] == {"appservice-user": 2}
    assert ent["passwords"]["skipped"] == {"empty-password-hash": 1}
    # §7 rows 37-38: `-` is NULL silently; garbage, a port, brackets, a zone id and leading zeros are counted
    assert anomalies["invalid-ip"] == 5
    assert anomalies["creation-ts-missing"] == 1 and anomalies["hidden-null-device"] == 1
    assert anomalies["non-guest-guest-device"] == 1
    skipped = ent["access_tokens"]["skipped"]
    assert skipped["hidden-device"] == 1 and skipped["device-missing"] == 1 and skipped["puppet-token"] == 1
    assert skipped["appservice-user"] == 1

    # what MAS holds: strings verbatim, bad IPs as NULL, the upper-case user and its lower-case twin both
    assert rows(mas_uri, "SELECT username FROM users ORDER BY username") == [
        ("Upper.Case",), ("gone",), ("guest1",), ("plain",), ("upper.case",), ("ünïcödé_\u00e9\u0301",)]
    assert rows(mas_uri, "SELECT count(*) FROM compat_sessions WHERE human_name = %s", (HUGE,)) == [(1,)]
    assert rows(mas_uri, "SELECT count(*) FROM compat_sessions WHERE device_id = %s AND human_name = %s",
                (WEIRD, WEIRD)) == [(1,)]
    ips = dict(rows(mas_uri, "SELECT device_id, host(last_active_ip) FROM compat_sessions WHERE device_id LIKE 'DEV%%'"))
    assert [ips[f"DEV{i}"] for i in range(1, 7)] == [None] * 6 and ips["DEV7"] is not None
    assert rows(mas_uri, "SELECT count(*) FROM user_emails WHERE email = %s", (WEIRD,)) == [(1,)]
    assert rows(mas_uri, "SELECT count(*) FROM upstream_oauth_links WHERE subject = %s", (HUGE,)) == [(1,)]

    res = _run(tmp_path, synapse_uri, "verify", *conn, "--migration-report", "report.json")
    assert res.returncode == 0, res.stdout + res.stderr
    reset_mas(mas_uri)


@pytest.mark.parametrize("case", sorted(BLOCKING))
def test_blocking_rows_are_reported_and_refused(world, case):
    tmp_path, synapse_uri, mas_uri, baseline, hs, mas = world
    statements, rule = BLOCKING[case]
    execute(synapse_uri, statements)
    conn = ["--synapse-config", hs, "--config", mas]
    res = _run(tmp_path, synapse_uri, "check", *conn, "--format", "json")
    assert res.returncode == 10, res.stdout + res.stderr
    errors = {f["rule"] for f in json.loads(res.stdout)["findings"] if f["severity"] == "error"}
    assert rule in errors, errors
    res = _run(tmp_path, synapse_uri, "migrate", *conn, "--report", "report.json")
    assert res.returncode == 10, res.stdout + res.stderr
    assert rule in res.stderr
    assert not (tmp_path / "report.json").exists()
    assert db_state(mas_uri) == baseline
