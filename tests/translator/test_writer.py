"""The YAML writer: canonical key order, secret styling, provenance comments, atomic 0600 writes."""
from __future__ import annotations

import os
import stat

import pytest

from engine.errors import ConfigError
from translator.writer import atomic_write, dump, insert_key, load_round_trip, set_provenance, to_node


def test_fresh_mappings_come_out_in_schema_order():
    node = to_node({"matrix": {"endpoint": "e", "secret": "s", "kind": "synapse"}, "http": {"issuer": "i"}})
    assert list(node) == ["http", "matrix"]
    assert list(node["matrix"]) == ["kind", "secret", "endpoint"]


def test_new_keys_go_to_their_canonical_place_and_unknown_keys_stay():
    node = to_node({"passwords": {"x_admin_key": 1, "minimum_complexity": 3}})
    insert_key(node["passwords"], "enabled", True, ("passwords", "enabled"))
    insert_key(node["passwords"], "zzz", 1, ("passwords", "zzz"))
    assert list(node["passwords"]) == ["x_admin_key", "enabled", "minimum_complexity", "zzz"]


def test_secrets_are_double_quoted_and_keys_are_block_literals():
    node = to_node({"secrets": {"encryption": "0123", "keys": [{"key": "-----BEGIN-----\nabc\n-----END-----\n"}]},
                    "matrix": {"secret": "12345"}}, (), lambda p: p[0] in ("secrets", "matrix"))
    text = dump(node)
    assert 'encryption: "0123"' in text
    assert "key: |\n" in text
    assert 'secret: "12345"' in text


def test_provenance_comments_are_replaced_but_admin_comments_are_kept(tmp_path):
    path = tmp_path / "mas.yaml"
    path.write_text("matrix:\n  homeserver: a  # from old.yaml:1 server_name\n  # admin note about endpoint\n"
                    "  endpoint: b  # set by hand, do not touch\n")
    doc = load_round_trip(str(path))
    set_provenance(doc["matrix"], "homeserver", "# from new.yaml:3 server_name")
    set_provenance(doc["matrix"], "endpoint", "# from new.yaml:4 public_baseurl")
    text = dump(doc)
    assert "homeserver: a  # from new.yaml:3 server_name\n  # admin note about endpoint\n" in text
    assert "endpoint: b  # set by hand, do not touch" in text
    set_provenance(doc["matrix"], "homeserver", None)
    assert "homeserver: a\n  # admin note about endpoint\n" in dump(doc)


def test_load_round_trip_errors_name_file_and_line(tmp_path):
    path = tmp_path / "mas.yaml"
    path.write_text("matrix:\n  secret: [\n")
    with pytest.raises(ConfigError) as caught:
        load_round_trip(str(path))
    assert caught.value.file == str(path) and caught.value.line == 3
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="not a mapping"):
        load_round_trip(str(path))


def test_atomic_write_creates_0600_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "mas.yaml"
    old_umask = os.umask(0)
    try:
        atomic_write(str(target), "a: 1\n")
    finally:
        os.umask(old_umask)
    assert target.read_text() == "a: 1\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    target.chmod(0o644)
    atomic_write(str(target), "a: 2\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and target.read_text() == "a: 2\n"
    assert sorted(os.listdir(tmp_path)) == ["mas.yaml"]


def test_atomic_write_into_a_missing_directory_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot write"):
        atomic_write(str(tmp_path / "missing" / "mas.yaml"), "a: 1\n")
