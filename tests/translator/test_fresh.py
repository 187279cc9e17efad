"""The fresh MAS configuration (mapping.md 5), the injectable entropy (5.9) and --secrets-dir (5.11)."""
from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import os
import re
import stat

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from ulid import ULID

from engine.configdoc import ConfigDoc
from engine.errors import ConfigError
from engine.masvalidate import validate_mas_config
from translator.fresh import (
    FRESH_SECTIONS, MAS_SECTION_ORDER, PROVIDER_KEY_ORDER, fresh_mas_config, order_sections, pem_private_key,
    write_secrets_dir,
)
from translator.randomness import (
    ALNUM, CURVE_ORDERS, SEEDED_WARNING, TEST_ENV_VAR, Entropy, is_probable_prime, seeded_rsa_key,
)

CLOCK = dt.datetime(2025, 3, 4, 5, 6, 7, 891234, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def schema_path(shared_dir) -> str:
    return os.path.join(shared_dir, "mas", "config.schema.json")


@pytest.fixture(scope="module")
def fresh() -> dict:
    return fresh_mas_config(Entropy.seeded(7, CLOCK))


@pytest.fixture(scope="module")
def fresh_again() -> dict:
    return fresh_mas_config(Entropy.seeded(7, CLOCK))


@pytest.fixture(scope="module")
def fresh_other_seed() -> dict:
    return fresh_mas_config(Entropy.seeded(8, CLOCK))


# ---------------------------------------------------------------- the sections of mapping.md 5


def test_top_level_sections_and_order(fresh):
    assert tuple(fresh) == FRESH_SECTIONS == ("http", "database", "email", "secrets", "passwords", "matrix")
    assert [s for s in MAS_SECTION_ORDER if s in fresh] == list(fresh)


def test_http_section_is_what_mas_generates(fresh):
    assert fresh["http"] == {
        "listeners": [
            {"name": "web",
             "resources": [{"name": n} for n in ("discovery", "human", "oauth", "compat", "graphql", "assets")],
             "binds": [{"address": "[::]:8080"}], "proxy_protocol": False},
            {"name": "internal", "resources": [{"name": "health"}], "binds": [{"host": "localhost", "port": 8081}],
             "proxy_protocol": False},
        ],
        "trusted_proxies": ["192.168.0.0/16", "172.16.0.0/12", "10.0.0.0/10", "127.0.0.1/8", "fd00::/8",
                            "::1/128"],
        "public_base": "http://[::]:8080/",
        "issuer": "http://[::]:8080/",
    }
    assert list(fresh["http"]) == ["listeners", "trusted_proxies", "public_base", "issuer"]
    assert list(fresh["http"]["listeners"][0]) == ["name", "resources", "binds", "proxy_protocol"]


def test_database_email_passwords_sections(fresh):
    assert list(fresh["database"].items()) == [("uri", "postgresql://"), ("max_connections", 10),
                                               ("min_connections", 0), ("connect_timeout", 30),
                                               ("idle_timeout", 600), ("max_lifetime", 1800)]
    mailbox = '"Authentication Service" <root@localhost>'
    assert list(fresh["email"].items()) == [("from", mailbox), ("reply_to", mailbox), ("transport", "blackhole")]
    assert list(fresh["passwords"].items()) == [("enabled", True), ("schemes", [{"version": 1,
                                                                                 "algorithm": "argon2id"}]),
                                                ("minimum_complexity", 3)]


def test_matrix_section(fresh):
    matrix = fresh["matrix"]
    assert list(matrix) == ["kind", "homeserver", "secret", "endpoint"]
    assert (matrix["kind"], matrix["homeserver"], matrix["endpoint"]) == ("synapse", "localhost:8008",
                                                                          "http://localhost:8008/")
    assert re.fullmatch(r"[A-Za-z0-9]{32}", matrix["secret"])


def test_encryption_key_is_64_lower_case_hex(fresh):
    assert list(fresh["secrets"]) == ["encryption", "keys"]
    assert re.fullmatch(r"[0-9a-f]{64}", fresh["secrets"]["encryption"])


def _der(pem: str) -> bytes:
    body = "".join(line for line in pem.strip().splitlines() if not line.startswith("-----"))
    return base64.b64decode(body)


def _children(der: bytes) -> list[tuple[int, bytes]]:
    """The (tag, content) pairs inside the outer DER SEQUENCE."""
    assert der[0] == 0x30

    def read(buf: bytes, pos: int) -> tuple[int, bytes, int]:
        tag, length, pos = buf[pos], buf[pos + 1], pos + 2
        if length & 0x80:
            n = length & 0x7F
            length, pos = int.from_bytes(buf[pos:pos + n], "big"), pos + n
        return tag, buf[pos:pos + length], pos + length

    _, body, _ = read(der, 0)
    out, pos = [], 0
    while pos < len(body):
        tag, content, pos = read(body, pos)
        out.append((tag, content))
    return out


def test_four_keys_with_labels_algorithms_and_encodings(fresh):
    keys = fresh["secrets"]["keys"]
    assert [list(k) for k in keys] == [["key"]] * 4  # inline, no kid
    labels = [re.match(r"-----BEGIN ([A-Z ]+)-----\n", k["key"]).group(1) for k in keys]
    assert labels == ["RSA PRIVATE KEY", "EC PRIVATE KEY", "EC PRIVATE KEY", "EC PRIVATE KEY"]
    assert all("\r" not in k["key"] and k["key"].endswith("-----\n") for k in keys)
    loaded = [serialization.load_pem_private_key(k["key"].encode(), password=None) for k in keys]
    assert isinstance(loaded[0], rsa.RSAPrivateKey) and loaded[0].key_size == 2048
    assert loaded[0].public_key().public_numbers().e == 65537
    assert [k.curve.name for k in loaded[1:]] == ["secp256r1", "secp384r1", "secp256k1"]
    # PKCS#1: version and eight integers. SEC1: version, private key, [0] named curve OID, [1] public key.
    assert [tag for tag, _ in _children(_der(keys[0]["key"]))] == [0x02] * 9
    for k in keys[1:]:
        children = _children(_der(k["key"]))
        assert [tag for tag, _ in children] == [0x02, 0x04, 0xA0, 0xA1]
        assert children[2][1][0] == 0x06


def test_fresh_config_passes_schema_and_all_section_6_rules(fresh, schema_path):
    assert validate_mas_config(ConfigDoc(data=copy.deepcopy(fresh)), schema_path) == []


def test_production_entropy_config_is_valid_and_random(schema_path):
    one = fresh_mas_config(Entropy.system())
    two = fresh_mas_config(Entropy.system())
    assert validate_mas_config(ConfigDoc(data=one), schema_path) == []
    assert one["secrets"]["encryption"] != two["secrets"]["encryption"]
    assert one["secrets"]["keys"][0]["key"] != two["secrets"]["keys"][0]["key"]
    assert serialization.load_pem_private_key(one["secrets"]["keys"][0]["key"].encode(), None).key_size == 2048


def test_seeded_runs_are_identical(fresh, fresh_again):
    assert json.dumps(fresh) == json.dumps(fresh_again)


def test_different_seeds_differ_everywhere(fresh, fresh_other_seed):
    assert fresh["secrets"]["encryption"] != fresh_other_seed["secrets"]["encryption"]
    assert fresh["matrix"]["secret"] != fresh_other_seed["matrix"]["secret"]
    for mine, other in zip(fresh["secrets"]["keys"], fresh_other_seed["secrets"]["keys"]):
        assert mine["key"] != other["key"]


def test_schema_orders_match_the_published_schema(schema_path):
    with open(schema_path) as fh:
        schema = json.load(fh)
    assert tuple(schema["properties"]) == MAS_SECTION_ORDER
    assert tuple(schema["definitions"]["Provider"]["properties"]) == PROVIDER_KEY_ORDER


def test_order_sections_puts_unknown_keys_last():
    cfg = {"zzz": 1, "matrix": {}, "clients": [], "secrets": {}}
    assert list(order_sections(cfg)) == ["clients", "secrets", "matrix", "zzz"]


# ---------------------------------------------------------------- Entropy


def test_seeded_warns_outside_tests_on_every_use(monkeypatch, capsys):
    monkeypatch.delenv(TEST_ENV_VAR, raising=False)
    Entropy.seeded(1, CLOCK)
    Entropy.seeded(1, CLOCK)
    assert capsys.readouterr().err.count(SEEDED_WARNING) == 2


def test_seeded_is_silent_under_pytest(monkeypatch, capsys):
    monkeypatch.setenv(TEST_ENV_VAR, "tests/translator/test_fresh.py::x (call)")
    Entropy.seeded(1, CLOCK)
    assert capsys.readouterr().err == ""


def test_system_entropy_never_warns(monkeypatch, capsys):
    monkeypatch.delenv(TEST_ENV_VAR, raising=False)
    Entropy.system().token_bytes(4)
    assert capsys.readouterr().err == ""


def test_now_is_utc_with_millisecond_precision():
    assert Entropy.seeded(1, CLOCK).now() == dt.datetime(2025, 3, 4, 5, 6, 7, 891000, tzinfo=dt.timezone.utc)
    naive = Entropy.seeded(1, dt.datetime(2025, 1, 1, 12, 0, 0, 1999))
    assert naive.now().tzinfo == dt.timezone.utc and naive.now().microsecond == 1000
    plus_two = dt.timezone(dt.timedelta(hours=2))
    assert Entropy.seeded(1, dt.datetime(2025, 1, 1, 14, tzinfo=plus_two)).now().hour == 12
    assert Entropy.seeded(1, lambda: CLOCK).now().microsecond == 891000
    system_now = Entropy.system().now()
    assert system_now.tzinfo == dt.timezone.utc and system_now.microsecond % 1000 == 0


def test_random_helpers_shapes():
    e = Entropy.seeded("shapes", CLOCK)
    assert len(e.token_bytes(17)) == 17 and e.token_bytes(0) == b""
    assert re.fullmatch(r"[0-9a-f]{64}", e.hex(32))
    text = e.alnum(4000)
    assert len(text) == 4000 and set(text) == set(ALNUM)  # uniform enough to hit every character
    assert all(0 <= e.randbelow(7) < 7 for _ in range(100))
    with pytest.raises(ValueError):
        e.token_bytes(-1)
    with pytest.raises(ValueError):
        e.randbelow(0)


def test_seeded_stream_is_reproducible_and_seed_dependent():
    a, b, c = Entropy.seeded(1, CLOCK), Entropy.seeded(1, CLOCK), Entropy.seeded(2, CLOCK)
    assert [a.hex(8), a.alnum(10), a.ulid()] == [b.hex(8), b.alnum(10), b.ulid()]
    assert Entropy.seeded(1, CLOCK).hex(8) != c.hex(8)
    assert Entropy.seeded("1", CLOCK).hex(8) != Entropy.seeded(1, CLOCK).hex(8)


def test_ulid_time_part_and_randomness():
    e = Entropy.seeded(3, CLOCK)
    first, second = e.ulid(), e.ulid()
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{26}", first)
    clock_ms = (CLOCK - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(milliseconds=1)
    assert ULID.from_str(first).milliseconds == clock_ms == ULID.from_str(second).milliseconds
    assert first[:10] == second[:10] and first[10:] != second[10:]
    at = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    assert ULID.from_str(e.ulid(at)).datetime == at
    assert ULID.from_str(Entropy.system().ulid(at)).milliseconds == 1577836800000


def test_miller_rabin_known_values():
    e = Entropy.seeded(0, CLOCK)
    primes = [2, 3, 5, 1999, 2003, 2 ** 61 - 1, 2 ** 127 - 1]
    composites = [0, 1, 4, 561, 1105, 2001, 2 ** 64 + 1, (2 ** 61 - 1) * (2 ** 31 - 1), 3215031751]
    assert all(is_probable_prime(p, e) for p in primes)
    assert not any(is_probable_prime(c, e) for c in composites)


def test_seeded_rsa_key_is_consistent_and_deterministic():
    key = seeded_rsa_key(Entropy.seeded(5, CLOCK), 1024)
    again = seeded_rsa_key(Entropy.seeded(5, CLOCK), 1024)
    assert key.key_size == 1024 and pem_private_key(key) == pem_private_key(again)
    signature = key.sign(b"m", padding.PKCS1v15(), hashes.SHA256())
    key.public_key().verify(signature, b"m", padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(ValueError):
        seeded_rsa_key(Entropy.seeded(5, CLOCK), 511)


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1(), ec.SECP256K1()], ids=lambda c: c.name)
def test_curve_orders_and_seeded_ec_keys(curve):
    order = CURVE_ORDERS[curve.name]
    ec.derive_private_key(order - 1, curve)
    with pytest.raises(ValueError):
        ec.derive_private_key(order, curve)
    one = Entropy.seeded(9, CLOCK).ec_key(curve)
    assert one.curve.name == curve.name
    assert pem_private_key(one) == pem_private_key(Entropy.seeded(9, CLOCK).ec_key(curve))
    signature = one.sign(b"m", ec.ECDSA(hashes.SHA256()))
    one.public_key().verify(signature, b"m", ec.ECDSA(hashes.SHA256()))


def test_seeded_ec_key_rejects_unknown_curve():
    with pytest.raises(ValueError):
        Entropy.seeded(1, CLOCK).ec_key(ec.SECP521R1())


# ---------------------------------------------------------------- --secrets-dir


@pytest.fixture
def with_pepper(fresh) -> dict:
    cfg = copy.deepcopy(fresh)
    cfg["passwords"]["schemes"] = [{"version": 1, "algorithm": "bcrypt", "unicode_normalization": True,
                                    "secret": "pepper-value"},
                                   {"version": 2, "algorithm": "argon2id", "secret": "v2-secret"}]
    return cfg


def test_secrets_dir_writes_files_and_references_them(with_pepper, tmp_path, schema_path):
    target = tmp_path / "secrets"
    original = copy.deepcopy(with_pepper)
    result = write_secrets_dir(with_pepper, str(target), Entropy.seeded(1, CLOCK))
    assert with_pepper == original  # input untouched
    cfg = result.config
    names = sorted(os.path.basename(p) for p in result.written)
    assert names == ["encryption-key", "key-1-rsa.pem", "key-2-ec-secp256r1.pem", "key-3-ec-secp384r1.pem",
                     "key-4-ec-secp256k1.pem", "matrix-secret", "password-pepper", "password-secret-v2"]
    assert list(cfg["secrets"]) == ["encryption_file", "keys"]
    assert list(cfg["matrix"]) == ["kind", "homeserver", "secret_file", "endpoint"]
    assert all(list(k) == ["key_file"] for k in cfg["secrets"]["keys"])
    expected = {
        cfg["secrets"]["encryption_file"]: original["secrets"]["encryption"],
        cfg["matrix"]["secret_file"]: original["matrix"]["secret"],
        cfg["passwords"]["schemes"][0]["secret_file"]: "pepper-value",
        cfg["passwords"]["schemes"][1]["secret_file"]: "v2-secret",
    }
    for path, content in expected.items():
        assert os.path.isabs(path)
        assert open(path, "rb").read() == content.encode()  # no trailing newline
    for k, orig in zip(cfg["secrets"]["keys"], original["secrets"]["keys"]):
        assert open(k["key_file"]).read() == orig["key"]
    for path in result.written:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o700
    assert not [n for n in os.listdir(target) if n.endswith(".tmp")]
    assert validate_mas_config(ConfigDoc(data=cfg), schema_path) == []


def test_secrets_dir_mode_ignores_umask(fresh, tmp_path):
    old = os.umask(0o277)
    try:
        result = write_secrets_dir(fresh, str(tmp_path), Entropy.seeded(1, CLOCK))
    finally:
        os.umask(old)
    assert {stat.S_IMODE(os.stat(p).st_mode) for p in result.written} == {0o600}


def test_secrets_dir_rerun_is_idempotent_and_never_overwrites(with_pepper, tmp_path):
    first = write_secrets_dir(with_pepper, str(tmp_path), Entropy.seeded(1, CLOCK))
    again = write_secrets_dir(with_pepper, str(tmp_path), Entropy.seeded(1, CLOCK))
    assert again.written == [] and again.config == first.config
    changed = copy.deepcopy(with_pepper)
    changed["matrix"]["secret"] = "another-secret-value"
    with pytest.raises(ConfigError) as err:
        write_secrets_dir(changed, str(tmp_path), Entropy.seeded(1, CLOCK))
    assert "another-secret-value" not in str(err.value) and "matrix-secret" in str(err.value)
    assert open(first.config["matrix"]["secret_file"]).read() == with_pepper["matrix"]["secret"]


def test_secrets_dir_leaves_file_references_and_empty_pepper_alone(fresh, tmp_path):
    cfg = copy.deepcopy(fresh)
    cfg["secrets"] = {"encryption_file": "/etc/mas/enc", "keys": [{"key_file": "/etc/mas/k.pem"}]}
    cfg["matrix"] = {"kind": "synapse", "homeserver": "x", "secret_file": "/etc/mas/m", "endpoint": "http://x/"}
    cfg["passwords"]["schemes"] = [{"version": 1, "algorithm": "bcrypt", "secret": ""}]
    result = write_secrets_dir(cfg, str(tmp_path / "d"), Entropy.seeded(1, CLOCK))
    assert result.written == [] and result.config == cfg


def test_secrets_dir_unwritable_directory_is_a_config_error(fresh, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError) as err:
        write_secrets_dir(fresh, str(blocker / "sub"), Entropy.seeded(1, CLOCK))
    assert "cannot write secret file" in str(err.value)
