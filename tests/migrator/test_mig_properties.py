"""Hypothesis-generated Synapse rows: invariants of the migration (§3, §5, §14.3).

An independent model of the selection rules says which rows must arrive; the MAS database must hold
each of them exactly once, with ULID time parts equal to the source times, and no token without its
session (the rebuilt foreign keys enforce the rest).
"""
from __future__ import annotations

import psycopg
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mighelpers import MAS_TABLES, PROVIDER_ULID, RUN_START_MS, SYNAPSE_TABLES, add_provider, run

KINDS = ("normal", "appservice", "guest", "deactivated")
DEVICE_IDS = ("D1", "D2", "guest_device")
TS = st.one_of(st.none(), st.integers(-10**6, 2 * 10**12))

users_st = st.lists(st.fixed_dictionaries({
    "kind": st.sampled_from(("normal",) * 5 + KINDS), "admin": st.booleans(),
    "creation_ts": st.one_of(st.none(), st.integers(-1000, 2 * 10**9)),
    "password": st.sampled_from([None, "", "$2b$12$hash"]),
}), min_size=2, max_size=5)
devices_st = st.lists(st.tuples(st.integers(0, 4), st.sampled_from(DEVICE_IDS),
                                st.sampled_from([False, False, False, True, None]), TS), max_size=8)
refresh_st = st.lists(st.tuples(st.integers(0, 4), st.sampled_from(("D1", "D1") + DEVICE_IDS + ("D9",)),
                                st.one_of(st.none(), st.integers(0, 5))), min_size=1, max_size=5)
tokens_st = st.lists(st.fixed_dictionaries({
    "user": st.integers(0, 4), "device": st.sampled_from((None, "D1", "D1") + DEVICE_IDS + ("D9",)),
    "last_validated": TS, "puppet": st.sampled_from([False] * 5 + [True]),
    "refresh": st.one_of(st.none(), st.integers(0, 5)), "match_refresh": st.sampled_from([True] * 4 + [False]),
    "used": st.sampled_from([None, False, True]),
}), min_size=2, max_size=12)
threepids_st = st.lists(st.tuples(st.integers(0, 4), st.sampled_from(["email", "msisdn"]), TS), max_size=4)
links_st = st.lists(st.integers(0, 4), max_size=3)


def clamp(ms: int) -> int:
    return max(ms, 0)


class Model:
    """The generated Synapse data and the expected outcome by the rules of §3."""

    def __init__(self, users, devices, refresh, tokens, threepids, links):
        self.users = users
        n = len(users)
        self.devices = {(i, "D1"): (False, None) for i in range(n)}  # most users have a device
        for ui, dev, hidden, last_seen in devices:
            self.devices[(ui % n, dev)] = (hidden, last_seen)
        self.refresh = [(i, ui % n, dev, None if nxt is None or nxt >= len(refresh) else nxt)
                        for i, (ui, dev, nxt) in enumerate(refresh)]
        self.tokens = []
        for i, t in enumerate(tokens):
            ref = t["refresh"] if t["refresh"] is not None and t["refresh"] < len(refresh) else None
            user, dev = t["user"] % n, t["device"]
            if ref is not None:  # mostly a real pair (same user and device as the refresh token)
                user, dev = self.refresh[ref][1:3] if t["match_refresh"] else (user, dev or "D1")
            self.tokens.append({**t, "id": i + 1, "user": user, "refresh": ref, "device": dev})
        self.threepids = [(ui % n, medium, added if added is not None else 0, k) for k, (ui, medium, added)
                          in enumerate(threepids)]
        self.links = sorted({ui % n for ui in links})

    def name(self, i: int) -> str:
        return f"@u{i}:example.org"

    def session_ok(self, ui: int) -> bool:
        return self.users[ui]["kind"] == "normal"

    def device_ok(self, ui: int, dev: str) -> bool:
        return (ui, dev) in self.devices and self.devices[(ui, dev)][0] is not True

    def migrated_tokens(self) -> set[int]:
        out = set()
        for t in self.tokens:
            if t["puppet"] or not self.session_ok(t["user"]):
                continue
            if t["refresh"] is None:
                if t["device"] is None or self.device_ok(t["user"], t["device"]):
                    out.add(t["id"])
                continue
            _, ru, rdev, nxt = self.refresh[t["refresh"]]
            if (ru, rdev) != (t["user"], t["device"]) or not self.device_ok(ru, rdev):
                continue
            if nxt is not None and any(n["refresh"] == nxt and n["used"] is True for n in self.tokens):
                continue
            peers = [p["id"] for p in self.tokens if p["refresh"] == t["refresh"] and not p["puppet"]
                     and (p["user"], p["device"]) == (ru, rdev)]
            if t["id"] == max(peers):
                out.add(t["id"])
        return out

    def load(self, uri: str) -> None:
        with psycopg.connect(uri, autocommit=True) as conn, conn.cursor() as cur:
            cur.executemany("INSERT INTO users (name, password_hash, creation_ts, admin, is_guest, deactivated, "
                            "appservice_id) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                            [(self.name(i), u["password"], u["creation_ts"], int(u["admin"]),
                              int(u["kind"] == "guest"), int(u["kind"] == "deactivated"),
                              "as" if u["kind"] == "appservice" else None) for i, u in enumerate(self.users)])
            cur.executemany("INSERT INTO devices (user_id, device_id, hidden, last_seen) VALUES (%s, %s, %s, %s)",
                            [(self.name(ui), dev, h, ls) for (ui, dev), (h, ls) in self.devices.items()])
            cur.executemany("INSERT INTO refresh_tokens (id, user_id, device_id, token) VALUES (%s, %s, %s, %s)",
                            [(i + 1, self.name(ui), dev, f"syr_{i}") for i, ui, dev, _ in self.refresh])
            cur.executemany("UPDATE refresh_tokens SET next_token_id = %s WHERE id = %s",
                            [(nxt + 1, i + 1) for i, _, _, nxt in self.refresh if nxt is not None])
            cur.executemany("INSERT INTO access_tokens (id, user_id, device_id, token, last_validated, "
                            "puppets_user_id, refresh_token_id, used) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                            [(t["id"], self.name(t["user"]), t["device"], f"syt_{t['id']}", t["last_validated"],
                              self.name(0) if t["puppet"] else None,
                              None if t["refresh"] is None else t["refresh"] + 1, t["used"]) for t in self.tokens])
            cur.executemany("INSERT INTO user_threepids VALUES (%s, %s, %s, 0, %s)",
                            [(self.name(ui), medium, f"addr{k}", added) for ui, medium, added, k in self.threepids])
            cur.executemany("INSERT INTO user_external_ids VALUES ('oidc-dex', %s, %s)",
                            [(f"sub{ui}", self.name(ui)) for ui in self.links])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(users_st, devices_st, refresh_st, tokens_st, threepids_st, links_st)
def test_invariants(_shared_synapse, _shared_mas, users, devices, refresh, tokens, threepids, links):
    synapse_uri, mas_uri = _shared_synapse, _shared_mas
    with psycopg.connect(synapse_uri, autocommit=True) as c:
        c.execute(f"TRUNCATE {SYNAPSE_TABLES} CASCADE")
    with psycopg.connect(mas_uri, autocommit=True) as c:
        c.execute(f"TRUNCATE {MAS_TABLES} CASCADE")
    add_provider(mas_uri)
    model = Model(users, devices, refresh, tokens, threepids, links)
    model.load(synapse_uri)
    report = run(synapse_uri, mas_uri, {"oidc-dex": PROVIDER_ULID})
    assert report.reconciled

    with psycopg.connect(mas_uri) as conn:
        q = lambda sql: conn.execute(sql).fetchall()  # noqa: E731
        # users: every non-appservice user exactly once, ULID time = creation time
        got_users = q("SELECT username, user_id FROM users")
        want_users = {f"u{i}": u for i, u in enumerate(users) if u["kind"] != "appservice"}
        assert sorted(n for n, _ in got_users) == sorted(want_users)
        for name, uid in got_users:
            ct = want_users[name]["creation_ts"]
            assert int.from_bytes(uid.bytes[:6], "big") == clamp((ct or 0) * 1000)
        # tokens: exactly the model's selection, each once, ULID time = last_validated or run start
        got_tokens = q("SELECT access_token, compat_access_token_id FROM compat_access_tokens")
        want = model.migrated_tokens()
        event(f"access tokens migrated: {min(len(want), 3)}{'+' if len(want) >= 3 else ''}")
        event(f"refresh pairs migrated: {min(report.entities['refresh_tokens'].migrated, 2)}")
        assert sorted(t for t, _ in got_tokens) == sorted(f"syt_{i}" for i in want)
        by_id = {t["id"]: t for t in model.tokens}
        for token, tid in got_tokens:
            lv = by_id[int(token[4:])]["last_validated"]
            assert int.from_bytes(tid.bytes[:6], "big") == clamp(RUN_START_MS if lv is None else lv)
        # devices: non-hidden devices of session-capable users, each once
        got_devices = sorted(q("SELECT u.username, s.device_id FROM compat_sessions s JOIN users u USING (user_id) "
                               "WHERE s.device_id IS NOT NULL"))
        want_devices = sorted((f"u{ui}", dev) for (ui, dev), (hidden, _) in model.devices.items()
                              if model.session_ok(ui) and hidden is not True)
        assert got_devices == want_devices
        # a device session's time is its earliest migrated token, else last_seen, else run start
        for username, dev, sid in q("SELECT u.username, s.device_id, s.compat_session_id FROM compat_sessions s "
                                    "JOIN users u USING (user_id) WHERE s.device_id IS NOT NULL"):
            ui = int(username[1:])
            times = [RUN_START_MS if t["last_validated"] is None else t["last_validated"] for t in model.tokens
                     if t["id"] in want and (t["user"], t["device"]) == (ui, dev)]
            last_seen = model.devices[(ui, dev)][1]
            expect = min(times) if times else (last_seen if last_seen is not None else RUN_START_MS)
            assert int.from_bytes(sid.bytes[:6], "big") == clamp(expect)
        # every refresh token rides on a migrated access token of the same session
        assert q("SELECT count(*) FROM compat_refresh_tokens r JOIN compat_access_tokens a "
                 "USING (compat_access_token_id) WHERE a.compat_session_id <> r.compat_session_id") == [(0,)]
        # emails and other threepids of non-appservice users, each once
        got_3pids = sorted(q("SELECT email FROM user_emails") + q("SELECT address FROM "
                                                                 "user_unsupported_third_party_ids"))
        assert got_3pids == sorted((f"addr{k}",) for ui, _, _, k in model.threepids
                                   if users[ui]["kind"] != "appservice")
        assert len(q("SELECT 1 FROM upstream_oauth_links")) == \
            len([ui for ui in model.links if users[ui]["kind"] != "appservice"])
