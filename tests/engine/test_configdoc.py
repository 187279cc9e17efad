"""Merging several configuration files: Synapse's top-level replace, MAS's deep merge."""
from __future__ import annotations

import pytest

from engine.configdoc import load_mas_config, load_synapse_config
from engine.errors import ConfigError


def write(tmp_path, name, text):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def test_synapse_later_file_replaces_whole_top_level_keys(tmp_path):
    a = write(tmp_path, "homeserver.yaml", "server_name: ex.org\npassword_config:\n  enabled: true\n  pepper: p1\n")
    b = write(tmp_path, "conf.d/10-policy.yaml", "password_config:\n  policy: {minimum_length: 12}\n")
    doc = load_synapse_config([a, b])
    assert doc.data["password_config"] == {"policy": {"minimum_length": 12}}
    assert doc.locate("password_config.policy").file == b
    assert doc.locate("server_name").file == a
    shadow = [n for n in doc.notes if "replaced as a whole" in n.message]
    assert len(shadow) == 1 and "`enabled`" in shadow[0].message and "`pepper`" in shadow[0].message


def test_directory_reads_yaml_files_sorted_and_notes_subdirectories(tmp_path):
    write(tmp_path, "conf.d/20-b.yaml", "x: second\n")
    write(tmp_path, "conf.d/10-a.yaml", "x: first\ny: 1\n")
    write(tmp_path, "conf.d/ignored.txt", "x: never\n")
    write(tmp_path, "conf.d/sub/30.yaml", "x: never\n")
    doc = load_synapse_config([str(tmp_path / "conf.d")])
    assert doc.data == {"x": "second", "y": 1}
    assert any("sub-directory" in n.message for n in doc.notes)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_synapse_config([str(tmp_path / "nope.yaml")])


def test_empty_and_non_mapping_files_are_skipped_with_a_note(tmp_path):
    a = write(tmp_path, "a.yaml", "")
    b = write(tmp_path, "b.yaml", "- just\n- a list\n")
    c = write(tmp_path, "c.yaml", "server_name: ex.org\n")
    doc = load_synapse_config([a, b, c])
    assert doc.data == {"server_name": "ex.org"}
    assert len([n for n in doc.notes if "skipped" in n.message]) == 2


def test_patch_overlay_is_left_out_of_reads_when_asked(tmp_path):
    a = write(tmp_path, "hs.yaml", "server_name: ex.org\npassword_config: {pepper: p}\n")
    b = write(tmp_path, "zz-mas.yaml", "syn2mas_delegation_patch: {version: 1}\npassword_config: {enabled: false}\n")
    assert load_synapse_config([a, b]).data["password_config"] == {"enabled": False}
    doc = load_synapse_config([a, b], skip_patch_overlays=True)
    assert doc.data["password_config"] == {"pepper": "p"}
    assert any("delegation patch marker" in n.message for n in doc.notes)


def test_locate_absent_key_points_at_nearest_ancestor(tmp_path):
    a = write(tmp_path, "hs.yaml", "server_name: ex.org\nemail:\n  smtp_host: mail\n")
    doc = load_synapse_config([a])
    loc = doc.locate("email.smtp_port")
    assert (loc.line, loc.column, loc.key_path) == (2, 1, "email.smtp_port")
    top = doc.locate("nothing.here")
    assert (top.file, top.line, top.column) == (a, 1, 1)


def test_get_treats_null_as_absent(tmp_path):
    a = write(tmp_path, "hs.yaml", "cas_config:\noidc_providers:\n")
    doc = load_synapse_config([a])
    assert doc.get("cas_config", {}) == {}
    assert doc.get("oidc_providers", []) == []


def test_mas_merge_is_deep_and_concatenates_lists(tmp_path):
    a = write(tmp_path, "mas.yaml", "matrix: {homeserver: ex.org, secret: s}\nclients: [{client_id: a}]\n")
    b = write(tmp_path, "mas2.yaml", "matrix: {endpoint: 'http://syn/'}\nclients: [{client_id: b}]\n")
    doc = load_mas_config([a, b])
    assert doc.data["matrix"] == {"homeserver": "ex.org", "secret": "s", "endpoint": "http://syn/"}
    assert [c["client_id"] for c in doc.data["clients"]] == ["a", "b"]
    assert doc.locate("clients[1].client_id").file == b
    assert doc.locate("clients[0].client_id").file == a
