"""The database rules' queries give exactly what their plain formulations give, on PostgreSQL and SQLite.

Several rule queries are written for speed at a million users (anti-joins on user ids first, candidate
groups before grouping, one hash join instead of two). Each is pinned here to a reference formulation
that states the rule directly (the catalogue's first versions, which the fragments of the migrator's
read phases feed unchanged): on generated data full of edge cases (missing users, case variants,
hidden and NULL devices, superseded and puppet refresh pairs, foreign and malformed ids, duplicate
links, more than twenty rows per group), both must give the same counts, groups and samples.
"""
from __future__ import annotations

import os
import random
import shutil
import sqlite3

import psycopg
import pytest

from engine.dbchecks import _shape, database_rules
from engine.dbfacts import DbFacts
from engine.dbhandles import DbHandle
from engine.dbquery import load_query
from engine.locations import Location
from engine.rulefiles import default_rules_dir
from migrator.source import open_source
from tests.rulecases.database import make_sqlite

CHECKS = os.path.join(default_rules_dir(), "checks")
SERVER = "example.org"

# The rules' first formulations: direct statements of checks.md 4.3 (and of the provider list that
# `mas-provider-not-synced` needs). `/* include: */` reads the migrator's read-phase fragments.
REFERENCE = {
    "queries/hidden-device-tokens.sql": """
-- shape: detail
WITH tokens AS (
  SELECT p4.user_id, p4.device_id, 'access:' || CAST(p4.id AS TEXT) AS token_key
  FROM /* include: phase4-access-tokens */ p4
  WHERE p4.device_id IS NOT NULL
  UNION
  SELECT p5.user_id, p5.device_id, 'refresh:' || CAST(p5.refresh_id AS TEXT)
  FROM /* include: phase5-refresh-pairs */ p5
),
on_devices AS (
  SELECT t.user_id, t.device_id, t.token_key, d.hidden
  FROM tokens t
  JOIN devices d ON d.user_id = t.user_id AND d.device_id = t.device_id
  JOIN users u ON u.name = t.user_id
  WHERE u.appservice_id IS NULL AND u.deactivated = 0 AND u.is_guest = 0
)
SELECT CASE WHEN hidden IS NULL THEN 'hidden-null' WHEN hidden = TRUE THEN 'hidden' ELSE 'guest-device' END AS grp,
       user_id || ' ' || device_id AS sample, token_key AS unit
FROM on_devices
WHERE hidden IS NULL OR hidden = TRUE OR device_id = 'guest_device'
""",
    "queries/orphan-rows.sql": """
-- shape: detail
SELECT 'user_threepids' AS grp, t.user_id AS sample, NULL AS unit
FROM user_threepids t WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.name = t.user_id)
UNION ALL
SELECT 'user_external_ids', e.user_id, NULL
FROM user_external_ids e WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.name = e.user_id)
UNION ALL
SELECT 'access_tokens', p4.user_id, NULL
FROM /* include: phase4-access-tokens */ p4 WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.name = p4.user_id)
UNION ALL
SELECT 'refresh_tokens', p5.user_id, CAST(p5.refresh_id AS TEXT)
FROM /* include: phase5-refresh-pairs */ p5 WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.name = p5.user_id)
UNION ALL
SELECT 'devices', d.user_id, NULL
FROM devices d WHERE d.hidden IS NOT TRUE AND NOT EXISTS (SELECT 1 FROM users u WHERE u.name = d.user_id)
""",
    "queries/invalid-emails.sql": """
-- shape: detail
WITH emails AS (
  SELECT t.user_id, t.address FROM user_threepids t JOIN users u ON u.name = t.user_id
  WHERE t.medium = 'email' AND u.appservice_id IS NULL
),
shared AS (
  SELECT lower(address) AS folded FROM emails GROUP BY lower(address) HAVING count(DISTINCT user_id) > 1
)
SELECT 'invalid' AS grp, e.user_id AS sample, NULL AS unit
FROM emails e WHERE length(e.address) > 254 OR NOT textregexeq(e.address, :email_pattern)
UNION ALL
SELECT 'shared', e.user_id, NULL FROM emails e JOIN shared s ON s.folded = lower(e.address)
""",
    # The four rules that read every user share one query; each rule's first formulation is one part.
    "queries/users-pass.sql": """
-- shape: detail
WITH migrated AS (
  SELECT u.name, lower(u.name) AS folded FROM users u WHERE u.appservice_id IS NULL AND u.name IS NOT NULL
),
colliding AS (SELECT folded FROM migrated GROUP BY folded HAVING count(*) > 1)
SELECT 'case-colliding-usernames' AS grp, m.name AS sample, m.folded AS unit
FROM migrated m JOIN colliding c ON c.folded = m.folded
UNION ALL
SELECT 'guests-in-database', u.name, NULL FROM users u WHERE u.is_guest <> 0
UNION ALL
SELECT 'foreign-server-users', COALESCE(u.name, '(null)'), NULL
FROM users u
WHERE u.appservice_id IS NULL
  AND 1 <> CASE
    WHEN u.name IS NULL OR length(u.name) < length(CAST(:server_name AS TEXT)) + 2 THEN 0
    WHEN substr(u.name, 1, 1) <> '@' THEN 0
    WHEN substr(u.name, length(u.name) - length(CAST(:server_name AS TEXT))) <> ':' || CAST(:server_name AS TEXT) THEN 0
    WHEN substr(u.name, 2, length(u.name) - length(CAST(:server_name AS TEXT)) - 2) LIKE '%:%' THEN 0
    ELSE 1
  END
UNION ALL
SELECT 'users-without-login-method', u.name, NULL
FROM users u
WHERE u.deactivated = 0 AND u.is_guest = 0 AND u.appservice_id IS NULL
  AND NOT (:passwords_enabled = 1 AND u.password_hash IS NOT NULL
           AND octet_length(u.password_hash) = 60
           AND substr(u.password_hash, 1, 4) IN ('$2a$', '$2b$', '$2y$'))
  AND NOT EXISTS (SELECT 1 FROM user_external_ids e
                  WHERE e.user_id = u.name AND e.auth_provider IN (:mapped_providers))
""",
    "queries/duplicate-upstream-links.sql": """
-- shape: detail
WITH links AS (
  SELECT e.auth_provider, e.external_id, e.user_id FROM user_external_ids e
  LEFT JOIN users u ON u.name = e.user_id
  WHERE e.auth_provider IN (:mapped_providers) AND u.appservice_id IS NULL
),
dups AS (SELECT auth_provider, external_id FROM links GROUP BY auth_provider, external_id HAVING count(*) > 1)
SELECT l.auth_provider AS grp, l.user_id AS sample, l.external_id AS unit
FROM links l JOIN dups d ON d.auth_provider = l.auth_provider AND d.external_id = l.external_id
""",
    "queries/linked-auth-providers.sql": """
SELECT DISTINCT e.auth_provider FROM user_external_ids e
LEFT JOIN users u ON u.name = e.user_id
WHERE u.appservice_id IS NULL
ORDER BY e.auth_provider
""",
}

DROP_LINK_UNIQUENESS = {
    "postgresql": ["ALTER TABLE user_external_ids DROP CONSTRAINT user_external_ids_auth_provider_external_id_key"],
    "sqlite": ["DROP TABLE user_external_ids",
               "CREATE TABLE user_external_ids (auth_provider TEXT NOT NULL, external_id TEXT NOT NULL, "
               "user_id TEXT NOT NULL)"],
}


def _cased(rng: random.Random, text: str) -> str:
    return "".join(c.upper() if rng.random() < 0.3 else c for c in text)


def generate(seed: int, server: str = SERVER) -> dict[str, list[dict]]:
    """Synapse rows with every case the rules distinguish; Synapse's UNIQUE constraints hold (but the
    one on links, which duplicate-upstream-links is about)."""
    rng = random.Random(seed)
    names: dict[str, dict] = {}
    bases = ["alice", "bob", "carol", "dave", "erin", "frank", "grace"]
    for i in range(240):
        localpart = _cased(rng, rng.choice(bases)) + (str(rng.randrange(4)) if rng.random() < 0.5 else "")
        name = rng.choices([f"@{localpart}:{server}", f"@{localpart}:other.org", f"{localpart}:{server}",
                            f"@{localpart}", f"@{localpart}:x:{server}", f"@{localpart}:{server}.evil",
                            f"@{localpart}:{server.upper()}", f"@:{server}", f"@{localpart}:ex%mple.org"],
                           weights=[40, 2, 1, 1, 1, 1, 1, 1, 1])[0]
        names[name] = {
            "name": name, "creation_ts": 1,
            "appservice_id": "irc" if rng.random() < 0.1 else None,
            "is_guest": rng.choices([0, 1, 2], weights=[17, 2, 1])[0],
            "deactivated": 1 if rng.random() < 0.1 else 0,
            "password_hash": rng.choice([None, "", "$2b$12$" + "x" * 53, "$2a$12$" + "y" * 53, "$2y$10$" + "z" * 53,
                                         "$2b$12$short", "{SSHA}abcdef", "$2x$12$" + "w" * 53,
                                         # 60 bytes but 34 characters; 60 characters but 113 bytes;
                                         # a prefix that only a case-blind comparison accepts
                                         "$2b$12$" + "\u00e9" * 26 + "x", "$2b$12$" + "\u00e9" * 53,
                                         "$2B$12$" + "v" * 53]),
        }
    users = list(names.values())
    ghosts = [f"@ghost{i}:{server}" for i in range(30)] + [f"@{_cased(rng, 'alice')}:{server}"]
    owners = [u["name"] for u in users] + [g for g in ghosts if g not in names]

    addresses = ["a@x.org", "A@x.org", "a@X.ORG", "b@y.org", "B@Y.org", "bad", "two@at@x.org", "sp ace@x.org",
                 "u@exa_mple.org", "d@.x.org", "j\u00fcrgen@m\u00fcller.example", "t@localhost",
                 "x" * 250 + "@x.org", "Q@Q.q", "q@q.Q",
                 # more than 254 bytes but not characters; more than 254 characters, not all ASCII
                 "\u00e9" * 200 + "@x.org", "\u00e9" * 250 + "@x.org"] + [f"user{i}@z.org" for i in range(40)] \
        + [f"User{i}@Z.org" for i in range(0, 40, 3)] + [f"broken{i}" for i in range(25)]
    seen: set[tuple[str, str]] = set()
    threepids = []
    for _ in range(220):
        medium = rng.choices(["email", "msisdn", "Email"], weights=[8, 1, 1])[0]
        address = rng.choice(addresses)
        if (medium, address) in seen:
            continue
        seen.add((medium, address))
        threepids.append({"user_id": rng.choice(owners), "medium": medium, "address": address,
                          "validated_at": 1, "added_at": 1})

    links = [{"auth_provider": rng.choice(["oidc-dex", "oidc-dex", "oidc-gone", "saml", "oauth-delegated"]),
              "external_id": f"sub{rng.randrange(60)}", "user_id": rng.choice(owners)} for _ in range(160)]
    # providers whose links all belong to missing users (kept) or to appservice users (dropped)
    bridged = [u["name"] for u in users if u["appservice_id"]]
    links += [{"auth_provider": "oidc-lost", "external_id": f"l{i}", "user_id": g} for i, g in enumerate(ghosts[:3])]
    links += [{"auth_provider": "oidc-bridge", "external_id": f"b{i}", "user_id": b} for i, b in enumerate(bridged[:3])]

    devices, device_keys = [], set()
    for owner in owners:
        for _ in range(rng.randrange(4)):
            device_id = rng.choice(["PHONE", "LAPTOP", "TABLET", "guest_device", "XSIGNKEY1", "XSIGNKEY2",
                                    "DESKTOPAPP", "WEBCLIENTS"])
            if (owner, device_id) in device_keys:
                continue
            device_keys.add((owner, device_id))
            # ids of a length no flagged device has: their tokens cannot be on one (hidden-device-tokens)
            hidden = False if len(device_id) == 10 else rng.choices([False, True, None], weights=[6, 3, 1])[0]
            devices.append({"user_id": owner, "device_id": device_id, "hidden": hidden})
    device_list = sorted(device_keys)

    refresh_tokens, access_tokens = [], []
    for rid in range(1, 121):
        owner, device_id = rng.choice(device_list) if rng.random() < 0.9 else (rng.choice(owners), "NODEVICE")
        refresh_tokens.append({"id": rid, "user_id": owner, "device_id": device_id, "token": f"syr_{rid}",
                               "next_token_id": None})
    for r in refresh_tokens:
        if rng.random() < 0.3:
            r["next_token_id"] = rng.randrange(1, 121)
    for tid in range(1, 501):
        kind = rng.random()
        token = {"id": tid, "token": f"syt_{tid}", "puppets_user_id": None, "refresh_token_id": None,
                 "used": rng.choice([None, False, True])}
        if kind < 0.25:  # refreshable: usually the pair's user and device, sometimes not
            r = rng.choice(refresh_tokens)
            same = rng.random() < 0.85
            token.update(user_id=r["user_id"] if same else rng.choice(owners),
                         device_id=r["device_id"] if same else rng.choice(["PHONE", "OTHER"]),
                         refresh_token_id=r["id"])
        elif kind < 0.35:
            token.update(user_id=rng.choice(owners), device_id=None)
        else:
            owner, device_id = rng.choice(device_list) if rng.random() < 0.85 else (rng.choice(owners), "GONE")
            token.update(user_id=owner, device_id=device_id)
        if rng.random() < 0.08:
            token["puppets_user_id"] = rng.choice(owners)
        access_tokens.append(token)
    return {"users": users, "user_threepids": threepids, "user_external_ids": links, "devices": devices,
            "refresh_tokens": refresh_tokens, "access_tokens": access_tokens}


def _insert_pg(uri: str, tables: dict[str, list[dict]]) -> None:
    with psycopg.connect(uri, autocommit=True) as conn:
        for stmt in DROP_LINK_UNIQUENESS["postgresql"]:
            conn.execute(stmt)
        for table in ("users", "user_threepids", "user_external_ids", "devices", "refresh_tokens", "access_tokens"):
            rows = tables[table]
            cols = [c for c in rows[0] if c != "next_token_id"]  # set below: it references refresh_tokens
            with conn.cursor() as cur:
                cur.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})",
                                [[row[c] for c in cols] for row in rows])
        with conn.cursor() as cur:
            cur.executemany("UPDATE refresh_tokens SET next_token_id = %s WHERE id = %s",
                            [(r["next_token_id"], r["id"]) for r in tables["refresh_tokens"] if r["next_token_id"]])


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory) -> str:
    """A `checks` directory holding the reference queries next to the real fragments."""
    root = tmp_path_factory.mktemp("reference_checks")
    shutil.copytree(os.path.join(CHECKS, "queries", "fragments"), root / "queries" / "fragments")
    for rel, text in REFERENCE.items():
        (root / rel).write_text(text, encoding="utf-8")
    return str(root)


def _rule_args() -> dict:
    args: dict = {}
    for rule in database_rules():
        args.update(rule.raw.get("args") or {})
    return args


def _compare(handle: DbHandle, reference_dir: str) -> dict[str, object]:
    facts = DbFacts(server_name=SERVER, known_providers=["oidc-dex", "saml"], mapped_providers=["oidc-dex"],
                    passwords_enabled=True)
    params = dict(facts.params(), **_rule_args())
    seen = {}
    for rel in REFERENCE:
        new = load_query(CHECKS, rel, handle.dialect)
        old = load_query(reference_dir, rel, handle.dialect)
        got, want = (_shape(handle.query(q, params), q.detail) for q in (new, old))
        assert got == want, f"{rel} ({handle.dialect}) differs from its reference formulation"
        seen[rel] = got
    return seen


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rewritten_queries_equal_their_reference_on_postgresql_and_sqlite(seed, synapse_db, reference_dir, tmp_path):
    tables = generate(seed)
    _insert_pg(synapse_db, tables)
    path = str(tmp_path / "homeserver.db")
    make_sqlite(path, DROP_LINK_UNIQUENESS["sqlite"], tables)
    results = {}
    for spec in (synapse_db, path):
        with open_source(spec, lock=True) as source:
            handle = DbHandle.for_synapse(source, Location())
            handle.tune()
            results[source.kind] = _compare(handle, reference_dir)
    assert results["postgresql"] == results["sqlite"]
    # The data exercises what it should: every group fires, and some beyond the sample limit.
    found = results["postgresql"]
    assert {g["grp"] for g in found["queries/orphan-rows.sql"]["groups"]} == {
        "user_threepids", "user_external_ids", "access_tokens", "refresh_tokens", "devices"}
    assert {g["grp"] for g in found["queries/hidden-device-tokens.sql"]["groups"]} == {
        "hidden", "hidden-null", "guest-device"}
    assert {g["grp"] for g in found["queries/invalid-emails.sql"]["groups"]} == {"invalid", "shared"}
    users = {g["grp"]: g["count"] for g in found["queries/users-pass.sql"]["groups"]}
    assert users["case-colliding-usernames"] > 1
    assert found["queries/duplicate-upstream-links.sql"]["count"] > 0
    assert users["foreign-server-users"] > 20
    assert users["guests-in-database"] > 0 and users["users-without-login-method"] > 0
    linked = [r["auth_provider"] for r in found["queries/linked-auth-providers.sql"]["rows"]]
    assert "oidc-lost" in linked and "oidc-bridge" not in linked
    assert any(g["count"] > 20 for g in found["queries/orphan-rows.sql"]["groups"])


USERS_PASS_PARAMS = {"passwords_enabled": 1, "mapped_providers": []}


def test_the_sqlite_foreign_server_variant_escapes_nothing_it_should_not(tmp_path):
    """A server name with LIKE wildcards: PostgreSQL escapes them, SQLite compares the text itself."""
    server = "ex_mple%.org"
    users = [{"name": n} for n in ("@a:ex_mple%.org", "@b:exAmple%.org", "@c:ex_mpleX.org", "@d:ex_mple%.orgx")]
    path = str(tmp_path / "homeserver.db")
    make_sqlite(path, [], {"users": users})
    with open_source(path, lock=True) as source:
        handle = DbHandle.for_synapse(source, Location())
        text = load_query(CHECKS, "queries/users-pass.sql", "sqlite")
        shaped = _shape(handle.query(text, dict(USERS_PASS_PARAMS, server_name=server)), True, "foreign-server-users")
    assert shaped["samples"] == ["@b:exAmple%.org", "@c:ex_mpleX.org", "@d:ex_mple%.orgx"]


def test_the_postgresql_foreign_server_query_escapes_like_wildcards(synapse_db):
    users = ["@a:ex_mple%.org", "@b:exAmple%.org", "@c:ex_mpleX.org", "@d:ex_mple%.orgx", "@e!:ex_mple%.org",
             "@f:x:ex_mple%.org"]
    with psycopg.connect(synapse_db, autocommit=True) as conn:
        for name in users:
            conn.execute("INSERT INTO users (name) VALUES (%s)", (name,))
    with open_source(synapse_db, lock=True) as source:
        handle = DbHandle.for_synapse(source, Location())
        text = load_query(CHECKS, "queries/users-pass.sql", "postgresql")
        shaped = _shape(handle.query(text, dict(USERS_PASS_PARAMS, server_name="ex_mple%.org")), True,
                        "foreign-server-users")
    assert shaped["samples"] == ["@b:exAmple%.org", "@c:ex_mpleX.org", "@d:ex_mple%.orgx", "@f:x:ex_mple%.org"]
