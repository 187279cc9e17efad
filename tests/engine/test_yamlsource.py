"""YAML loading: Synapse's 1.1 resolution, MAS's 1.2, positions, duplicates, aliases, tags, errors."""
from __future__ import annotations

import pytest

from engine.errors import ConfigError
from engine.yamlsource import MAX_NODES, load_yaml_file, load_yaml_text


@pytest.mark.parametrize("text, expected", [
    ("v: yes", True), ("v: No", False), ("v: on", True), ("v: OFF", False), ("v: 0755", 493),
    ("v: 1_000", 1000), ("v: ~", None), ("v: 1:20", 80), ("v: 0x1f", 31),
])
def test_yaml_11_resolution_matches_synapse(text, expected):
    assert load_yaml_text(text, "hs.yaml", (1, 1)).data["v"] == expected


@pytest.mark.parametrize("text, expected", [("v: yes", "yes"), ("v: on", "on"), ("v: 0755", 755), ("v: true", True)])
def test_yaml_12_resolution_matches_mas(text, expected):
    assert load_yaml_text(text, "mas.yaml", (1, 2)).data["v"] == expected


def test_positions_are_one_based_for_keys_and_items():
    doc = load_yaml_text("a: 1\nlist:\n  - x\n  - {k: v}\n", "f.yaml", (1, 1))
    assert (doc.positions[("a",)].line, doc.positions[("a",)].column) == (1, 1)
    assert (doc.positions[("list", 1)].line, doc.positions[("list", 1)].column) == (4, 5)
    assert doc.positions[("list", 1, "k")].key_path == "list[1].k"
    assert doc.positions[("list", 1, "k")].line == 4


def test_duplicate_key_keeps_last_and_notes_the_first():
    doc = load_yaml_text("a: 1\nb: 2\na: 3\n", "f.yaml", (1, 1))
    assert doc.data == {"a": 3, "b": 2}
    assert doc.positions[("a",)].line == 3
    assert len(doc.notes) == 1 and doc.notes[0].location.line == 1 and "later occurrence" in doc.notes[0].message


def test_merge_keys_and_aliases():
    doc = load_yaml_text("base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  y: 3\n", "f.yaml", (1, 1))
    assert doc.data["use"] == {"x": 1, "y": 3}


def test_alias_bomb_is_bounded():
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for prev, name in zip("abcdefg", "bcdefgh"):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    with pytest.raises(ConfigError) as err:
        load_yaml_text("\n".join(lines), "bomb.yaml", (1, 1))
    assert str(MAX_NODES) in str(err.value) and "bomb.yaml" in str(err.value)


@pytest.mark.parametrize("text, needle", [
    ("a: !include other.yaml", "unsupported YAML tag"),
    ("a: !!python/object:os.system x", "unsupported YAML tag"),
    ("a: [1, 2", "YAML syntax error"),
    ("a: 1\n---\nb: 2\n", "2 YAML documents"),
    ("? [a, b]\n: 1\n", "plain scalar"),
])
def test_bad_documents_are_config_errors_with_file_and_line(text, needle):
    with pytest.raises(ConfigError) as err:
        load_yaml_text(text, "hs.yaml", (1, 1))
    message = str(err.value)
    assert needle in message
    assert message.startswith("hs.yaml:")


def test_empty_document_has_no_data():
    assert load_yaml_text("", "e.yaml", (1, 1)).data is None
    assert load_yaml_text("# only a comment\n", "e.yaml", (1, 1)).data is None


def test_unreadable_and_non_utf8_files(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_yaml_file(str(tmp_path / "missing.yaml"), (1, 1))
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"a: 1\nb: caf\xe9\n")
    with pytest.raises(ConfigError) as err:
        load_yaml_file(str(bad), (1, 1))
    assert "not valid UTF-8" in str(err.value) and ":2" in str(err.value)


@pytest.mark.parametrize("word", ["y", "Y", "n", "N"])
def test_single_letter_y_n_stay_strings_as_in_pyyaml(word):
    doc = load_yaml_text(f"{word}: {word}\n", "hs.yaml", (1, 1))
    assert doc.data == {word: word}


@pytest.mark.parametrize("text, expected", [("1e3", "1e3"), ("1.5", 1.5), ("1.0e+3", 1000.0), (".inf", float("inf")),
                                            ("-2.", -2.0)])
def test_floats_follow_pyyaml_in_yaml_11(text, expected, capsys):
    assert load_yaml_text(f"v: {text}\n", "hs.yaml", (1, 1)).data["v"] == expected
    assert capsys.readouterr().err == ""
