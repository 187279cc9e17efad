"""One test per edge case of data-migration.md §7, on the real Synapse schema."""
from __future__ import annotations

import ipaddress
from datetime import datetime, timezone

import pytest

from engine.errors import DatabaseError
from migrator.guards import MigrationRefused
from migrator.writer import MasRefused
from mighelpers import PROVIDER_ULID, RUN_START, RUN_START_MS, add_provider, execute, rows, run

ALICE = "@alice:example.org"


def ts(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, timezone.utc)


def user(name: str = ALICE, **cols) -> str:
    cols.setdefault("creation_ts", 1600000000)
    cols.setdefault("password_hash", "$2b$12$abcdefghijklmnopqrstuv0123456789012345678901234567890")
    names = ", ".join(["name", *cols])
    values = ", ".join(["%s"] * (len(cols) + 1))
    return f"INSERT INTO users ({names}) VALUES ({values})", (name, *cols.values())


def seed(uri: str, *statements) -> None:
    for st in statements:
        if isinstance(st, tuple):
            execute(uri, st[0], st[1])
        else:
            execute(uri, st)


def device(uri, user_id=ALICE, device_id="DEV", hidden="false", last_seen="NULL", ip="NULL"):
    execute(uri, f"INSERT INTO devices (user_id, device_id, hidden, last_seen, ip) VALUES "
                 f"(%s, %s, {hidden}, {last_seen}, {ip})", (user_id, device_id))


def token(uri, tid, user_id=ALICE, device_id="DEV", last_validated="NULL", refresh="NULL", used="NULL",
          puppets=None, valid_until="NULL"):
    execute(uri, f"INSERT INTO access_tokens (id, user_id, device_id, token, last_validated, refresh_token_id, used, "
                 f"puppets_user_id, valid_until_ms) VALUES (%s, %s, %s, %s, {last_validated}, {refresh}, {used}, %s, "
                 f"{valid_until})", (tid, user_id, device_id, f"syt_token_{tid}", puppets))


def refresh(uri, rid, user_id=ALICE, device_id="DEV", next_id="NULL"):
    execute(uri, f"INSERT INTO refresh_tokens (id, user_id, device_id, token, next_token_id) VALUES "
                 f"(%s, %s, %s, %s, {next_id})", (rid, user_id, device_id, f"syr_token_{rid}"))


def count(uri, table, where="TRUE") -> int:
    return rows(uri, f"SELECT count(*) FROM {table} WHERE {where}")[0][0]


def nothing_written(mas) -> bool:
    return all(count(mas, t) == 0 for t in ("users", "user_passwords", "compat_sessions", "compat_access_tokens"))


def test_ulid_example_of_the_spec(synapse_db, mas):
    seed(synapse_db, user(creation_ts=1530393962))
    run(synapse_db, mas)
    (uid,) = rows(mas, "SELECT user_id::text FROM users")[0]
    assert uid.startswith("01645296-a610-")


def test_01_appservice_user_and_dependants_skipped(synapse_db, mas):
    seed(synapse_db, user("@bot:example.org", appservice_id="irc", password_hash=""),
         "INSERT INTO user_threepids VALUES ('@bot:example.org', 'email', 'b@x', 1, 1)",
         "INSERT INTO user_external_ids VALUES ('oidc-dex', 's', '@bot:example.org')")
    device(synapse_db, "@bot:example.org")
    token(synapse_db, 1, "@bot:example.org")
    r = run(synapse_db, mas)
    assert nothing_written(mas)
    for entity in ("users", "passwords", "emails", "links", "devices", "access_tokens"):
        assert r.entities[entity].skipped == {"appservice-user": 1}, entity


@pytest.mark.parametrize("name", ["@bot:with:colon:example.org", "@bot:other.server"])
def test_02_03_odd_appservice_user_ids_are_skipped_not_fatal(synapse_db, mas, name):
    seed(synapse_db, user(name, appservice_id="irc"), user())
    device(synapse_db, name)
    r = run(synapse_db, mas)
    assert rows(mas, "SELECT username FROM users") == [("alice",)]
    assert r.entities["devices"].skipped == {"appservice-user": 1}


@pytest.mark.parametrize("name", ["alice:example.org", "@alice", "@alice:other.org", "@a:b:example.org"])
def test_04_foreign_user_blocks_before_writing(synapse_db, mas, name):
    seed(synapse_db, user(name))
    with pytest.raises(MigrationRefused) as exc:
        run(synapse_db, mas)
    assert exc.value.problems[0].check_id == "foreign-server-users"
    assert nothing_written(mas)


def test_05_guest(synapse_db, mas):
    seed(synapse_db, user("@123:example.org", is_guest=1),
         "INSERT INTO user_threepids VALUES ('@123:example.org', 'email', 'g@x', 1, 1000)")
    device(synapse_db, "@123:example.org", "guest_device")
    token(synapse_db, 1, "@123:example.org", "guest_device")
    r = run(synapse_db, mas)
    assert rows(mas, "SELECT username, is_guest FROM users") == [("123", True)]
    assert count(mas, "user_passwords") == 1 and count(mas, "user_emails") == 1
    assert count(mas, "compat_sessions") == 0 and count(mas, "compat_access_tokens") == 0
    assert r.entities["devices"].skipped == {"guest-user": 1}
    assert r.entities["access_tokens"].skipped == {"guest-user": 1}


def test_06_deactivated(synapse_db, mas):
    seed(synapse_db, user(deactivated=1), "INSERT INTO user_external_ids VALUES ('oidc-dex', 's', '@alice:example.org')")
    device(synapse_db)
    token(synapse_db, 1)
    r = run(synapse_db, mas)
    assert rows(mas, "SELECT deactivated_at = created_at, locked_at FROM users") == [(True, None)]
    assert count(mas, "user_passwords") == 1 and count(mas, "upstream_oauth_links") == 1
    assert count(mas, "compat_sessions") == 0
    assert r.entities["devices"].skipped == {"deactivated-user": 1}
    assert r.entities["access_tokens"].skipped == {"deactivated-user": 1}


def test_07_locked(synapse_db, mas):
    seed(synapse_db, user(locked=True))
    device(synapse_db)
    run(synapse_db, mas)
    assert rows(mas, "SELECT locked_at = created_at, deactivated_at FROM users") == [(True, None)]
    assert count(mas, "compat_sessions") == 1


def test_08_admin_sessions(synapse_db, mas):
    seed(synapse_db, user(admin=1))
    device(synapse_db)
    token(synapse_db, 1, device_id=None)
    run(synapse_db, mas)
    assert rows(mas, "SELECT can_request_admin FROM users") == [(True,)]
    # device session and (team decision, §6.6) deviceless session both carry the admin flag
    assert rows(mas, "SELECT device_id IS NULL, is_synapse_admin FROM compat_sessions ORDER BY 1") == \
        [(False, True), (True, True)]


def test_09_uppercase_localpart_verbatim(synapse_db, mas):
    seed(synapse_db, user("@Alice.Bridge:example.org"))
    run(synapse_db, mas)
    assert rows(mas, "SELECT username FROM users") == [("Alice.Bridge",)]


def test_10_null_password(synapse_db, mas):
    seed(synapse_db, user(password_hash=None))
    r = run(synapse_db, mas)
    assert count(mas, "users") == 1 and count(mas, "user_passwords") == 0
    assert r.entities["passwords"].read == 0


def test_11_empty_password_skipped(synapse_db, mas):
    seed(synapse_db, user(password_hash=""))
    r = run(synapse_db, mas)
    assert count(mas, "user_passwords") == 0
    assert r.entities["passwords"].skipped == {"empty-password-hash": 1}


def test_12_non_bcrypt_hash_copied(synapse_db, mas):
    seed(synapse_db, user(password_hash="pbkdf2:sha256:legacy"))
    run(synapse_db, mas)
    assert rows(mas, "SELECT hashed_password, version, upgraded_from_id, created_at = "
                     "(SELECT created_at FROM users) FROM user_passwords") == [("pbkdf2:sha256:legacy", 1, None, True)]


def test_13_email(synapse_db, mas):
    seed(synapse_db, user(), "INSERT INTO user_threepids VALUES ('@alice:example.org', 'email', 'a@x.org', 5, 1700000000123)")
    run(synapse_db, mas)
    (eid, email, created) = rows(mas, "SELECT user_email_id, email, created_at FROM user_emails")[0]
    assert email == "a@x.org" and created == ts(1700000000123)
    assert int.from_bytes(eid.bytes[:6], "big") == 1700000000123


def test_14_other_media_unsupported(synapse_db, mas):
    seed(synapse_db, user(),
         "INSERT INTO user_threepids VALUES ('@alice:example.org', 'msisdn', '447700900123', 1, 2000)",
         "INSERT INTO user_threepids VALUES ('@alice:example.org', 'Email', 'A@X.org', 1, 3000)")
    r = run(synapse_db, mas)
    assert sorted(rows(mas, "SELECT medium, address, created_at FROM user_unsupported_third_party_ids")) == \
        [("Email", "A@X.org", ts(3000)), ("msisdn", "447700900123", ts(2000))]
    assert count(mas, "user_emails") == 0
    assert r.entities["unsupported_threepids"].migrated == 2


def test_15_invalid_and_shared_emails_verbatim(synapse_db, mas):
    seed(synapse_db, user(), user("@bob:example.org"),
         "INSERT INTO user_threepids VALUES ('@alice:example.org', 'email', 'not an email', 1, 1)",
         "INSERT INTO user_threepids VALUES ('@alice:example.org', 'email', 'Shared@x.org', 1, 1)",
         "INSERT INTO user_threepids VALUES ('@bob:example.org', 'email', 'shared@x.org', 1, 1)")
    run(synapse_db, mas)
    assert sorted(r[0] for r in rows(mas, "SELECT email FROM user_emails")) == ["Shared@x.org", "not an email",
                                                                              "shared@x.org"]


def test_16_unmapped_provider(synapse_db, mas):
    seed(synapse_db, user(), "INSERT INTO user_external_ids VALUES ('saml', 's1', '@alice:example.org')")
    with pytest.raises(MigrationRefused) as exc:
        run(synapse_db, mas)
    assert exc.value.problems[0].check_id == "auth-provider-missing-in-mas"
    assert nothing_written(mas)
    r = run(synapse_db, mas, ignore_missing_providers=True)
    assert count(mas, "upstream_oauth_links") == 0 and count(mas, "users") == 1
    assert r.entities["links"].skipped == {"unmapped-provider": 1}


@pytest.mark.parametrize("state", ["missing", "disabled"])
def test_17_provider_not_synced(synapse_db, mas_db, state):
    if state == "disabled":
        add_provider(mas_db, disabled=True)
    seed(synapse_db, user(), "INSERT INTO user_external_ids VALUES ('oidc-dex', 's1', '@alice:example.org')")
    with pytest.raises(MasRefused) as exc:
        run(synapse_db, mas_db)
    assert exc.value.check_id == "mas-provider-not-synced"
    assert nothing_written(mas_db)


def test_18_oauth_delegated_leftovers(synapse_db, mas):
    seed(synapse_db, user(), "INSERT INTO user_external_ids VALUES ('oauth-delegated', 's1', '@alice:example.org')")
    with pytest.raises(MigrationRefused) as exc:
        run(synapse_db, mas, ignore_missing_providers=True)
    assert [p.check_id for p in exc.value.problems] == ["oauth-delegated-leftovers"]


def test_19_duplicate_links(synapse_db, mas):
    # Synapse's unique key is per auth_provider; two Synapse providers mapped to one MAS provider collide.
    seed(synapse_db, user(), user("@bob:example.org"),
         "INSERT INTO user_external_ids VALUES ('oidc-dex', 'same', '@alice:example.org')",
         "INSERT INTO user_external_ids VALUES ('oidc-old', 'same', '@bob:example.org')")
    with pytest.raises(MigrationRefused) as exc:
        run(synapse_db, mas, mapping={"oidc-dex": PROVIDER_ULID, "oidc-old": PROVIDER_ULID})
    assert exc.value.problems[0].check_id == "duplicate-upstream-links"
    assert nothing_written(mas)


@pytest.mark.parametrize("orphan", [
    "INSERT INTO user_threepids VALUES ('@ghost:example.org', 'email', 'g@x', 1, 1)",
    "INSERT INTO user_external_ids VALUES ('oidc-dex', 'g', '@ghost:example.org')",
    "INSERT INTO devices (user_id, device_id) VALUES ('@ghost:example.org', 'D')",
    "INSERT INTO access_tokens (id, user_id, token) VALUES (9, '@ghost:example.org', 'syt_g')",
    "INSERT INTO access_tokens (id, user_id, token) VALUES (9, '@ALICE:example.org', 'syt_g')",
])
def test_20_orphan_rows_block(synapse_db, mas, orphan):
    seed(synapse_db, user(), orphan)
    with pytest.raises(MigrationRefused) as exc:
        run(synapse_db, mas)
    assert exc.value.problems[0].check_id == "orphan-rows"
    assert nothing_written(mas)


def test_20_hidden_orphan_device_is_not_an_orphan_row(synapse_db, mas):
    seed(synapse_db, user())
    device(synapse_db, "@ghost:example.org", "XSIGN", hidden="true")
    r = run(synapse_db, mas)
    assert r.entities["devices"].skipped == {"hidden-device": 1}


def test_21_puppet_token_counted(synapse_db, mas):
    seed(synapse_db, user(admin=1), user("@bob:example.org"))
    token(synapse_db, 1, device_id=None, puppets="@bob:example.org")
    r = run(synapse_db, mas)
    assert count(mas, "compat_access_tokens") == 0 and count(mas, "compat_sessions") == 0
    assert r.entities["access_tokens"].skipped == {"puppet-token": 1}


def test_22_device_missing(synapse_db, mas):
    seed(synapse_db, user())
    token(synapse_db, 1, device_id="GONE")
    r = run(synapse_db, mas)
    assert count(mas, "compat_access_tokens") == 0
    assert r.entities["access_tokens"].skipped == {"device-missing": 1}


def test_23_deviceless_tokens_get_own_sessions(synapse_db, mas):
    seed(synapse_db, user())
    token(synapse_db, 1, device_id=None, last_validated="1700000000000")
    token(synapse_db, 2, device_id=None, last_validated="1700000005000")
    r = run(synapse_db, mas)
    got = rows(mas, "SELECT s.compat_session_id, s.created_at, s.device_id, t.created_at, t.compat_access_token_id "
                    "FROM compat_sessions s JOIN compat_access_tokens t USING (compat_session_id) ORDER BY 2")
    assert [(g[1], g[2], g[3]) for g in got] == [(ts(1700000000000), None, ts(1700000000000)),
                                                  (ts(1700000005000), None, ts(1700000005000))]
    assert all(int.from_bytes(g[0].bytes[:6], "big") == int.from_bytes(g[4].bytes[:6], "big") for g in got)
    assert r.entities["deviceless_sessions"].migrated == 2


def test_24_several_tokens_one_session_earliest_time(synapse_db, mas):
    seed(synapse_db, user())
    device(synapse_db, last_seen="1750000000000")
    token(synapse_db, 1, last_validated="1700000009000")
    token(synapse_db, 2, last_validated="1700000001000")
    token(synapse_db, 3)  # NULL: counts as run start
    run(synapse_db, mas)
    assert count(mas, "compat_sessions") == 1
    (sid, created, last_active) = rows(mas, "SELECT compat_session_id, created_at, last_active_at FROM compat_sessions")[0]
    assert int.from_bytes(sid.bytes[:6], "big") == 1700000001000
    assert created == ts(1700000001000) and last_active == ts(1750000000000)
    assert count(mas, "compat_access_tokens", f"compat_session_id = '{sid}'") == 3


def test_24_skipped_tokens_do_not_decide_the_session_time(synapse_db, mas):
    """A superseded pair, a shared pair's lower access token and a puppet token are earlier than the
    migrated tokens; the session time is the earliest migrated token (§5.2), and a device whose only
    token is skipped takes its `last_seen`."""
    seed(synapse_db, user())
    device(synapse_db, last_seen="1750000000000")
    refresh(synapse_db, 2)
    refresh(synapse_db, 1, next_id="2")
    token(synapse_db, 1, refresh="1", last_validated="1000")            # superseded by the use of token 2
    token(synapse_db, 2, refresh="2", used="true", last_validated="5000")
    refresh(synapse_db, 3)
    token(synapse_db, 3, refresh="3", last_validated="2000")            # shared: token 4 keeps the pair
    token(synapse_db, 4, refresh="3", last_validated="6000")
    token(synapse_db, 5, last_validated="500", puppets="@admin:example.org")
    device(synapse_db, device_id="QUIET", last_seen="1760000000000")
    token(synapse_db, 6, device_id="QUIET", last_validated="100", puppets="@admin:example.org")
    r = run(synapse_db, mas)
    times = dict(rows(mas, "SELECT device_id, created_at FROM compat_sessions"))
    assert times == {"DEV": ts(5000), "QUIET": ts(1760000000000)}
    assert sorted(t for (t,) in rows(mas, "SELECT access_token FROM compat_access_tokens")) == \
        ["syt_token_2", "syt_token_4"]
    assert r.entities["access_tokens"].skipped == {"refresh-superseded": 1, "refresh-token-shared": 1,
                                                   "puppet-token": 2}


def test_24_empty_device_id_beside_deviceless_tokens(synapse_db, mas):
    """The read stream sorts deviceless tokens under the device id '' (migrator/queries.py): a real device
    whose id is '' keeps its own session and time, and the deviceless token still gets its own session."""
    seed(synapse_db, user())
    device(synapse_db, device_id="", last_seen="1750000000000")
    token(synapse_db, 1, device_id="", last_validated="3000")
    token(synapse_db, 2, device_id=None, last_validated="1000")
    token(synapse_db, 3, device_id="", last_validated="2000")
    r = run(synapse_db, mas)
    sessions = rows(mas, "SELECT s.device_id, s.created_at, count(a.*) FROM compat_sessions s "
                         "JOIN compat_access_tokens a USING (compat_session_id) GROUP BY 1, 2 ORDER BY 1")
    assert sessions == [("", ts(2000), 2), (None, ts(1000), 1)]
    assert r.entities["deviceless_sessions"].migrated == 1 and r.entities["devices"].migrated == 1


def test_25_superseded_pair_skipped(synapse_db, mas):
    seed(synapse_db, user())
    device(synapse_db)
    refresh(synapse_db, 2)
    refresh(synapse_db, 1, next_id="2")
    token(synapse_db, 1, refresh="1", last_validated="1000")
    token(synapse_db, 2, refresh="2", used="true", last_validated="2000")
    r = run(synapse_db, mas)
    assert rows(mas, "SELECT refresh_token FROM compat_refresh_tokens") == [("syr_token_2",)]
    assert rows(mas, "SELECT access_token FROM compat_access_tokens") == [("syt_token_2",)]
    assert r.entities["access_tokens"].skipped == {"refresh-superseded": 1}
    assert r.entities["refresh_tokens"].skipped == {"refresh-superseded": 1}


@pytest.mark.parametrize("used", ["false", "NULL"])
def test_26_unused_successor_keeps_both_pairs(synapse_db, mas, used):
    seed(synapse_db, user())
    device(synapse_db)
    refresh(synapse_db, 2)
    refresh(synapse_db, 1, next_id="2")
    token(synapse_db, 1, refresh="1", last_validated="1000")
    token(synapse_db, 2, refresh="2", used=used, last_validated="2000")
    run(synapse_db, mas)
    assert count(mas, "compat_refresh_tokens") == 2 and count(mas, "compat_sessions") == 1
    # each refresh token points at its own paired access token, all on the one session
    assert rows(mas, "SELECT r.refresh_token, a.access_token, r.created_at = a.created_at, "
                     "r.compat_session_id = a.compat_session_id FROM compat_refresh_tokens r "
                     "JOIN compat_access_tokens a USING (compat_access_token_id) ORDER BY 1") == \
        [("syr_token_1", "syt_token_1", True, True), ("syr_token_2", "syt_token_2", True, True)]


def test_27_refresh_token_missing_or_its_device_missing(synapse_db, mas):
    seed(synapse_db, user())
    device(synapse_db)
    refresh(synapse_db, 1, device_id="OTHER")     # pairs with a token of another device: not a pair
    token(synapse_db, 1, refresh="1")
    refresh(synapse_db, 2, device_id="GONE")      # its device row is missing
    token(synapse_db, 2, device_id="GONE", refresh="2")
    r = run(synapse_db, mas)
    assert count(mas, "compat_access_tokens") == 0
    assert r.entities["access_tokens"].skipped == {"refresh-token-missing": 1, "device-missing": 1}


def test_28_refresh_token_shared_keeps_highest_access_token(synapse_db, mas):
    seed(synapse_db, user())
    device(synapse_db)
    refresh(synapse_db, 1)
    token(synapse_db, 5, refresh="1")
    token(synapse_db, 9, refresh="1")
    token(synapse_db, 7, refresh="1")
    r = run(synapse_db, mas)
    assert rows(mas, "SELECT a.access_token FROM compat_refresh_tokens r JOIN compat_access_tokens a "
                     "USING (compat_access_token_id)") == [("syt_token_9",)]
    assert count(mas, "compat_access_tokens") == 1
    assert r.entities["access_tokens"].skipped == {"refresh-token-shared": 2}
    assert r.entities["refresh_tokens"].read == 1 and r.entities["refresh_tokens"].migrated == 1


def test_29_expired_token_imported_and_counted(synapse_db, mas):
    seed(synapse_db, user())
    device(synapse_db)
    token(synapse_db, 1, valid_until="1000")
    r = run(synapse_db, mas)
    assert rows(mas, "SELECT expires_at FROM compat_access_tokens") == [(ts(1000),)]
    assert r.anomalies["expired"] == 1


def test_30_last_validated_null_is_run_start(synapse_db, mas):
    seed(synapse_db, user())
    device(synapse_db)
    token(synapse_db, 1)
    run(synapse_db, mas)
    (tid, created) = rows(mas, "SELECT compat_access_token_id, created_at FROM compat_access_tokens")[0]
    assert created == RUN_START and int.from_bytes(tid.bytes[:6], "big") == RUN_START_MS


def test_31_creation_ts_null_is_epoch(synapse_db, mas):
    seed(synapse_db, user(creation_ts=None))
    r = run(synapse_db, mas)
    (uid, created) = rows(mas, "SELECT user_id, created_at FROM users")[0]
    assert created == ts(0) and uid.bytes[:6] == bytes(6)
    assert r.anomalies["creation-ts-missing"] == 1


def test_32_device_without_tokens(synapse_db, mas):
    seed(synapse_db, user())
    device(synapse_db, device_id="SEEN", last_seen="1750000000000")
    device(synapse_db, device_id="NEVER")
    run(synapse_db, mas)
    assert sorted(rows(mas, "SELECT device_id, created_at FROM compat_sessions")) == \
        [("NEVER", RUN_START), ("SEEN", ts(1750000000000))]


def test_33_unapproved_user_imported_locked(synapse_db, mas):
    seed(synapse_db, user(approved=False), user("@bob:example.org", approved=None))
    r = run(synapse_db, mas)
    assert sorted(rows(mas, "SELECT username, locked_at IS NOT NULL FROM users")) == [("alice", True), ("bob", False)]
    assert r.anomalies["unapproved"] == 1


def test_34_hidden_device_and_its_tokens_skipped(synapse_db, mas):
    seed(synapse_db, user())
    device(synapse_db, hidden="true")
    token(synapse_db, 1)
    refresh(synapse_db, 1)
    token(synapse_db, 2, refresh="1")
    r = run(synapse_db, mas)
    assert count(mas, "compat_sessions") == 0 and count(mas, "compat_access_tokens") == 0
    assert r.entities["devices"].skipped == {"hidden-device": 1}
    assert r.entities["access_tokens"].skipped == {"hidden-device": 2}
    assert r.entities["refresh_tokens"].skipped == {"hidden-device": 1}


def test_35_hidden_null_device_migrated_with_tokens(synapse_db, mas):
    seed(synapse_db, user())
    device(synapse_db, hidden="NULL")
    token(synapse_db, 1)
    r = run(synapse_db, mas)
    assert count(mas, "compat_sessions") == 1 and count(mas, "compat_access_tokens") == 1
    assert r.anomalies["hidden-null-device"] == 1


def test_36_guest_device_of_non_guest_migrated(synapse_db, mas):
    seed(synapse_db, user())
    device(synapse_db, device_id="guest_device")
    token(synapse_db, 1, device_id="guest_device")
    r = run(synapse_db, mas)
    assert rows(mas, "SELECT device_id FROM compat_sessions") == [("guest_device",)]
    assert count(mas, "compat_access_tokens") == 1
    assert r.anomalies["non-guest-guest-device"] == 1


def test_37_ip_dash_is_null_silently(synapse_db, mas):
    seed(synapse_db, user())
    device(synapse_db, ip="'-'")
    r = run(synapse_db, mas)
    assert rows(mas, "SELECT last_active_ip FROM compat_sessions") == [(None,)]
    assert r.anomalies["invalid-ip"] == 0


def test_38_ip_parsing(synapse_db, mas):
    seed(synapse_db, user())
    good = {"G1": "203.0.113.7", "G2": "2001:db8::1", "G3": "::ffff:192.0.2.1"}
    bad = {"B1": "203.0.113.7:8448", "B2": "[2001:db8::1]", "B3": "fe80::1%eth0", "B4": "192.168.001.010",
           "B5": "garbage", "B6": "256.1.1.1", "B7": "::ffff:192.0.2.01"}
    for dev, ip in {**good, **bad}.items():
        execute(synapse_db, "INSERT INTO devices (user_id, device_id, ip) VALUES (%s, %s, %s)", (ALICE, dev, ip))
    r = run(synapse_db, mas)
    got = dict(rows(mas, "SELECT device_id, last_active_ip FROM compat_sessions"))
    for dev, ip in good.items():
        assert got[dev] == ipaddress.ip_address(ip)
    assert all(got[d] is None for d in bad)
    assert r.anomalies["invalid-ip"] == len(bad)
    assert rows(mas, "SELECT host(last_active_ip), masklen(last_active_ip) FROM compat_sessions "
                     "WHERE device_id = 'G1'") == [("203.0.113.7", 32)]


def test_39_negative_timestamps_clamp_ulid_time(synapse_db, mas):
    seed(synapse_db, user(creation_ts=-5),
         "INSERT INTO user_threepids VALUES ('@alice:example.org', 'email', 'a@x', 1, -7000)")
    device(synapse_db)
    token(synapse_db, 1, last_validated="-9000")
    run(synapse_db, mas)
    (uid, created) = rows(mas, "SELECT user_id, created_at FROM users")[0]
    assert uid.bytes[:6] == bytes(6) and created == ts(-5000)
    (eid, ecreated) = rows(mas, "SELECT user_email_id, created_at FROM user_emails")[0]
    assert eid.bytes[:6] == bytes(6) and ecreated == ts(-7000)
    (tid, tcreated) = rows(mas, "SELECT compat_access_token_id, created_at FROM compat_access_tokens")[0]
    assert tid.bytes[:6] == bytes(6) and tcreated == ts(-9000)
    assert rows(mas, "SELECT created_at FROM compat_sessions") == [(ts(0),)]


def test_39b_times_beyond_the_years_1_to_9999_are_written_at_the_bound_and_counted(synapse_db, mas):
    """A unit mistake or a broken clock never stops the migration, which `check` would not have
    announced (§14.2): the value is written as the nearest bound MAS can read, and counted."""
    seed(synapse_db, user(), user("@bob:example.org", creation_ts=10**13),  # seconds: year 318857
         "INSERT INTO user_threepids VALUES ('@alice:example.org', 'email', 'a@x', 1, -10000000000000000)")
    device(synapse_db, last_seen=str(10**15))  # year 33658
    token(synapse_db, 1, last_validated=str(10**15), valid_until=str(10**17))
    report = run(synapse_db, mas)
    year_9999 = datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=timezone.utc)
    year_1 = datetime(1, 1, 1, tzinfo=timezone.utc)
    assert rows(mas, "SELECT username, created_at FROM users ORDER BY 1") == [("alice", ts(1_600_000_000_000)),
                                                                            ("bob", year_9999)]
    assert rows(mas, "SELECT created_at FROM user_emails") == [(year_1,)]
    # the session's start comes from its token's id time, which ULIDs cap at year 10889: written at the bound
    assert rows(mas, "SELECT created_at, last_active_at FROM compat_sessions") == [(year_9999, year_9999)]
    assert rows(mas, "SELECT created_at, expires_at FROM compat_access_tokens") == [(year_9999, year_9999)]
    # bob's creation, the email, last_seen, the session's start, the token's creation and expiry
    assert report.anomalies["timestamp-out-of-range"] == 6
    assert all(r["status"] == "ok" for r in report.reconciliation)


def test_40_synapse_only_flags_not_migrated(synapse_db, mas):
    seed(synapse_db, user(shadow_banned=True, suspended=True, user_type="support", consent_version="1"))
    run(synapse_db, mas)
    assert rows(mas, "SELECT username, locked_at, deactivated_at, can_request_admin, is_guest FROM users") == \
        [("alice", None, None, False, False)]


def test_20_orphan_rows_outside_the_phase_selections_do_not_block(synapse_db, mas):
    """Rows that orphan-rows does not count (not selected by phases 4/5) must not stop the migration."""
    seed(synapse_db, user())
    device(synapse_db, "@ghost:example.org", hidden="true")
    refresh(synapse_db, 2, user_id="@ghost:example.org", device_id="GONE")
    refresh(synapse_db, 1, user_id="@ghost:example.org", next_id="2")
    token(synapse_db, 1, "@ghost:example.org", refresh="1")                         # superseded pair
    token(synapse_db, 2, "@ghost:example.org", device_id="GONE", refresh="2", used="true")  # device missing
    token(synapse_db, 3, "@ghost:example.org", device_id="GONE")                    # device missing
    token(synapse_db, 4, "@ghost:example.org", device_id=None, puppets=ALICE)       # puppet
    r = run(synapse_db, mas)
    assert r.entities["access_tokens"].skipped == {"hidden-device": 1, "device-missing": 2, "puppet-token": 1}
    assert count(mas, "users") == 1
