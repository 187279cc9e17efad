"""Target-path grammar of mapping rules: a.b, a[0], a[] (append), a[key=value] (select or create)."""
from __future__ import annotations

import pytest

from translator.targetpath import (Append, Index, Key, Select, TargetPathError, delete_at, format_target, get_at,
                                   parse_target, prune_empty, set_at, shape_of)


@pytest.mark.parametrize("text, segments", [
    ("a.b", (Key("a"), Key("b"))),
    ("a[0].b", (Key("a"), Index(0), Key("b"))),
    ("a[]", (Key("a"), Append())),
    ("passwords.schemes[version=1].secret", (Key("passwords"), Key("schemes"), Select("version", 1), Key("secret"))),
    ("providers[synapse_idp_id=oidc-my.idp]", (Key("providers"), Select("synapse_idp_id", "oidc-my.idp"))),
    ("x[name='1']", (Key("x"), Select("name", "1"))),
])
def test_parse_and_format_round_trip(text, segments):
    assert parse_target(text) == segments
    assert parse_target(format_target(segments)) == segments


@pytest.mark.parametrize("text", ["", ".a", "a..b", "a[", "a[x]", "a.b]", "1a", "a.[0]", "a b"])
def test_malformed_paths_are_rejected(text):
    with pytest.raises(TargetPathError):
        parse_target(text)


def test_select_or_create_and_write_below_it():
    doc: dict = {"passwords": {"schemes": [{"version": 1, "algorithm": "argon2id"}]}}
    set_at(doc, parse_target("passwords.schemes[version=1]"), {"algorithm": "bcrypt"})
    set_at(doc, parse_target("passwords.schemes[version=1].cost"), 14)
    set_at(doc, parse_target("passwords.schemes[version=2]"), {"algorithm": "argon2id"})
    assert doc["passwords"]["schemes"] == [{"version": 1, "algorithm": "bcrypt", "cost": 14},
                                           {"version": 2, "algorithm": "argon2id"}]
    assert get_at(doc, parse_target("passwords.schemes[version=2].algorithm")) == (True, "argon2id")
    assert get_at(doc, parse_target("passwords.schemes[version=3]")) == (False, None)


def test_append_is_idempotent_and_index_extends_by_one():
    doc: dict = {}
    set_at(doc, parse_target("a[]"), "x")
    set_at(doc, parse_target("a[]"), "x")
    set_at(doc, parse_target("a[1].b"), 2)
    assert doc == {"a": ["x", {"b": 2}]}
    with pytest.raises(ValueError):
        set_at(doc, parse_target("a[5]"), 1)


def test_a_scalar_in_the_way_is_replaced_by_a_container():
    doc = {"email": True}
    set_at(doc, parse_target("email.transport"), "smtp")
    assert doc == {"email": {"transport": "smtp"}}


def test_delete_and_prune_empty_parents_but_not_the_stop_prefix():
    doc = {"account": {"x": 1}, "upstream_oauth2": {"providers": [{"id": "A", "claims_imports": {"email": {"a": 1}}}]}}
    assert delete_at(doc, parse_target("account.x"))
    prune_empty(doc, parse_target("account.x"), 0)
    assert "account" not in doc
    path = parse_target("upstream_oauth2.providers[id=A].claims_imports.email.a")
    assert delete_at(doc, path)
    prune_empty(doc, path, 3)
    assert doc["upstream_oauth2"]["providers"] == [{"id": "A"}]
    assert not delete_at(doc, parse_target("nothing.here"))


def test_shape_replaces_positions():
    assert shape_of(parse_target("a.b[k=v].c[0]")) == ("a", "b", "[]", "c", "[]")
