"""Unit-level behaviour of the migrator's small modules (no database needed)."""
from __future__ import annotations

import re
import uuid

import psycopg
import pytest

from engine.errors import DatabaseError
from migrator.ids import IdFactory, as_uuid, provider_uuid, ulid_ms
from migrator.ipaddr import parse_ip
from migrator.pipeline import localpart
from migrator.progress import Progress
from migrator.source import connection_kwargs


def test_ids_are_stable_per_key_and_time_prefixed():
    a, b = IdFactory(b"1" * 32), IdFactory(b"2" * 32)
    x = a.make(1530393962000, "users", "@a:example.org")
    assert x == a.make(1530393962000, "users", "@a:example.org")
    assert str(as_uuid(x)).startswith("01645296-a610-")
    assert ulid_ms(x) == 1530393962000
    y = b.make(1530393962000, "users", "@a:example.org")
    assert ulid_ms(y) == ulid_ms(x) and y != x
    assert a.make(0, "users", "@a:example.org") != a.make(0, "user_passwords", "@a:example.org")
    assert ulid_ms(a.make(-5, "users", "x")) == 0
    assert IdFactory().make(1, "k", "x") != IdFactory().make(1, "k", "x")  # fresh random key per run


def test_id_random_bits_are_keyed_blake2b_of_kind_and_natural_key():
    import hashlib

    key = bytes(range(32))
    x = IdFactory(key).make(7, "user_emails", "@a:example.org", "email", "a@example.org")
    mac = hashlib.blake2b(b"user_emails\x00@a:example.org\x1femail\x1fa@example.org", key=key, digest_size=10)
    assert x == (7 << 80) | int.from_bytes(mac.digest(), "big")
    # the 0x00 after the kind keeps kinds apart even when kind + key spell the same bytes
    assert IdFactory(key).make(0, "user", "sx") != IdFactory(key).make(0, "users", "x")
    # keys longer than BLAKE2b's 64 bytes are accepted (hashed down), and still matter
    assert IdFactory(b"a" * 100).make(0, "users", "x") != IdFactory(b"b" * 100).make(0, "users", "x")


def test_a_kind_maker_gives_the_ids_make_gives():
    ids = IdFactory(b"k" * 32)
    sessions = ids.maker("compat_sessions")
    assert ids.maker("compat_sessions") is sessions  # one per kind
    assert sessions(5, "@a:example.org", "DEV") == ids.make(5, "compat_sessions", "@a:example.org", "DEV")
    assert ids.maker("compat_access_tokens")(9, 42) == ids.make(9, "compat_access_tokens", "42")
    # out-of-range times clamp to the 48 bits of a ULID timestamp
    assert ulid_ms(sessions(1 << 60, "x")) == (1 << 48) - 1 and ulid_ms(sessions(-1, "x")) == 0
    assert as_uuid(sessions(5, "x")).int == sessions(5, "x") and ulid_ms(as_uuid(sessions(5, "x"))) == 5


def test_the_copy_id_dumper_writes_ids_and_uuids_as_postgresql_uuids():
    from psycopg.types.uuid import UUIDBinaryDumper

    from migrator.copytypes import COPY_ADAPTERS, UUID_OID, IdBinaryDumper

    value = uuid.UUID("01645296-a610-7e3c-9d1a-0123456789ab")
    reference = bytes(UUIDBinaryDumper(uuid.UUID).dump(value))
    dumper = IdBinaryDumper(int)
    assert dumper.dump(value.int) == reference and dumper.dump(value) == reference
    assert COPY_ADAPTERS.get_dumper_by_oid(UUID_OID, psycopg.pq.Format.BINARY).__name__ == "IdBinaryDumper"
    # psycopg's global adapters are left alone
    assert psycopg.adapters.get_dumper_by_oid(UUID_OID, psycopg.pq.Format.BINARY).__name__ != "IdBinaryDumper"


def test_provider_uuid_accepts_ulid_and_uuid():
    u = provider_uuid("01ARZ3NDEKTSV4RRFFQ69G5FAV")
    assert u == uuid.UUID("01563e3a-b5d3-d676-4c61-efb99302bd5b")
    assert provider_uuid(str(u)) == u


@pytest.mark.parametrize("value,expected", [
    ("1.2.3.4", ("1.2.3.4", False)), ("0.0.0.0", ("0.0.0.0", False)), ("::1", ("::1", False)),
    ("2001:DB8::1", ("2001:db8::1", False)), (None, (None, False)), ("-", (None, False)),
    ("01.2.3.4", (None, True)), ("1.2.3.4:80", (None, True)), ("[::1]", (None, True)), ("fe80::1%lo", (None, True)),
    ("1.2.3", (None, True)), (" 1.2.3.4", (None, True)), ("", (None, True)), ("::ffff:1.2.3.004", (None, True)),
])
def test_parse_ip(value, expected):
    address, invalid = parse_ip(value)
    assert (None if address is None else str(address), invalid) == expected


@pytest.mark.parametrize("user_id,local", [
    ("@alice:example.org", "alice"), ("@Bob:example.org", "Bob"), ("@a:example.org:8448", None),
    ("alice:example.org", None), ("@alice", None), ("@a:b:example.org", None), ("@:example.org", ""),
])
def test_localpart(user_id, local):
    assert localpart(user_id, "example.org") == local


def test_localpart_with_port_in_server_name():
    assert localpart("@a:example.org:8448", "example.org:8448") == "a"


def test_connection_kwargs_like_synapse():
    kw = connection_kwargs({"name": "psycopg2", "args": {"user": "s", "password": "p", "database": "syn",
                                                         "host": "db", "port": 5433, "cp_min": 5, "cp_max": 10,
                                                         "sslmode": "verify-full", "keepalives_idle": 10}})
    assert kw == {"user": "s", "password": "p", "dbname": "syn", "host": "db", "port": "5433",
                  "sslmode": "verify-full", "keepalives_idle": "10", "application_name": "syn2mas-synapse"}
    assert connection_kwargs({"args": {"application_name": "mine"}})["application_name"] == "mine"
    with pytest.raises(DatabaseError, match="both `dbname` and `database`"):
        connection_kwargs({"args": {"dbname": "a", "database": "b"}})


def test_progress_lines_every_interval_with_rate_and_eta():
    now = [0.0]
    lines: list[str] = []
    p = Progress(interval=5.0, clock=lambda: now[0], emit=lines.append)
    p.phase("phase 1 users", 4096)
    assert lines == ["phase 1 users: started, ~4096 rows"]
    for _ in range(1024):
        p.tick()
    assert len(lines) == 1      # less than 5 s passed
    now[0] = 6.0
    for _ in range(1024):
        p.tick()
    assert lines[1:] == ["phase 1 users: 2048 rows read, 341 rows/s, ~50% of ~4096, ETA 0:06"]
    p.done()
    assert lines[-1] == "phase 1 users: done, 2048 rows in 6.0 s"


def test_progress_rate_counts_from_the_first_rows_of_a_phase_that_starts_with_a_sort():
    """A phase whose query sorts sends nothing for a while: the start line says why, and the rate (so
    the ETA) is measured from the first rows, not from the start."""
    now = [0.0]
    lines: list[str] = []
    p = Progress(interval=5.0, clock=lambda: now[0], emit=lines.append)
    p.phase("phase 4 devices and tokens", 100_000, "the server sorts them first")
    now[0] = 7.0
    p.tick(10_000)              # the first batch, after the sort
    now[0] = 12.0
    p.tick(10_000)
    assert lines == ["phase 4 devices and tokens: started, ~100000 rows; the server sorts them first",
                     "phase 4 devices and tokens: 20000 rows read, 2,000 rows/s, ~20% of ~100000, ETA 0:40"]
    p.done()
    assert lines[-1] == "phase 4 devices and tokens: done, 20000 rows in 12.0 s"


def test_mas_database_uri_from_config_keys(tmp_path):
    from psycopg.conninfo import conninfo_to_dict

    from engine.configdoc import load_mas_config
    from migrator.settings import mas_database_uri

    cfg = tmp_path / "mas.yaml"
    cfg.write_text("database:\n  host: db.internal\n  port: 5433\n  username: mas\n  password: pw\n"
                   "  database: masdb\n  ssl_mode: verify_full\n")
    assert conninfo_to_dict(mas_database_uri(load_mas_config([str(cfg)]))) == {
        "host": "db.internal", "port": "5433", "user": "mas", "password": "pw", "dbname": "masdb",
        "sslmode": "verify-full"}
    cfg.write_text("database:\n  uri: postgresql://mas@h/db\n")
    assert mas_database_uri(load_mas_config([str(cfg)])) == "postgresql://mas@h/db"


def test_provider_mapping_and_server_name(tmp_path):
    from engine.configdoc import load_mas_config, load_synapse_config
    from engine.errors import ConfigError
    from migrator.settings import resolve

    hs = tmp_path / "hs.yaml"
    hs.write_text("server_name: example.org\ndatabase:\n  name: sqlite3\n  args:\n    database: /x.db\n")
    mas = tmp_path / "mas.yaml"
    mas.write_text("upstream_oauth2:\n  providers:\n    - id: 01ARZ3NDEKTSV4RRFFQ69G5FAV\n      synapse_idp_id: oidc-a\n"
                   "    - id: 01ARZ3NDEKTSV4RRFFQ69G5FAW\n")
    s = resolve(load_synapse_config([str(hs)]), load_mas_config([str(mas)]))
    assert s.server_name == "example.org" and s.mapping == {"oidc-a": "01ARZ3NDEKTSV4RRFFQ69G5FAV"}
    assert s.synapse_database == {"name": "sqlite3", "args": {"database": "/x.db"}}
    assert resolve(load_synapse_config([str(hs)]), load_mas_config([str(mas)]),
                   synapse_sqlite="/y.db").synapse_database == {"name": "sqlite3", "args": {"database": "/y.db"}}
    mas.write_text("upstream_oauth2:\n  providers:\n    - id: A\n      synapse_idp_id: oidc-a\n"
                   "    - id: B\n      synapse_idp_id: oidc-a\n")
    with pytest.raises(ConfigError, match="two MAS providers"):
        resolve(load_synapse_config([str(hs)]), load_mas_config([str(mas)]))


@pytest.mark.parametrize("content, words", [
    ("{not json", "is not JSON (line 1)"), ("[1, 2]", "lacks `entities`"),
    ('{"entities": {"users": {"read": 3}}}', "lacks `entities`"), (None, "cannot read the migration report"),
])
def test_verify_names_what_is_wrong_with_a_migration_report(tmp_path, content, words):
    from migrator.verify import _previous_expected

    path = tmp_path / "report.json"
    if content is None:
        path.mkdir()  # a directory where the file should be
    else:
        path.write_text(content)
    with pytest.raises(DatabaseError, match=re.escape(words)):
        _previous_expected(str(path))


def test_verify_reads_the_expected_counts_of_a_migration_report(tmp_path):
    from migrator.verify import _previous_expected

    path = tmp_path / "report.json"
    path.write_text('{"entities": {"users": {"read": 5, "skipped": {"guest-user": 2}}}}')
    assert _previous_expected(str(path)) == {"users": 3}
