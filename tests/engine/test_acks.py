"""Accepting warnings (checks.md 3): the file, `--accept`, matching, expiry and unused entries."""
from __future__ import annotations

import datetime as dt
import textwrap

import pytest

from engine import acks
from engine.errors import ConfigError, Syn2MasError
from engine.findings import Finding
from engine.locations import Location

ACKABLE = {"guests-in-database": True, "oidc-provider-option-unsupported": True, "guest-access-enabled": False,
           "pepper-mismatch": True}
TODAY = dt.date(2026, 6, 1)


def ack_file(tmp_path, text: str) -> str:
    path = tmp_path / "syn2mas-acknowledgements.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def finding(rule="oidc-provider-option-unsupported", severity="warning", **kw) -> Finding:
    loc = kw.pop("location", Location("homeserver.yaml", 3, 5, "oidc_providers[0].idp_icon"))
    return Finding(rule=rule, severity=severity, message="m", location=loc, **kw)


def test_a_valid_file_loads_with_positions(tmp_path):
    path = ack_file(tmp_path, """\
        version: 1
        acknowledgements:
          - rule: guests-in-database
            reason: "Historic guest accounts; approved by ops, ticket OPS-123."
            by: ops@example.org
            until: 2026-12-31
            max_count: 72000
          - rule: oidc-provider-option-unsupported
            reason: "Attribute requirement is enforced by the identity provider itself."
            where: {provider: oidc-corporate, option: attribute_requirements}
        """)
    first, second = acks.load_file(path, ACKABLE)
    assert (first.rule, first.by, first.until, first.max_count) == ("guests-in-database", "ops@example.org",
                                                                   dt.date(2026, 12, 31), 72000)
    assert first.location.line == 3 and second.location.line == 8
    assert second.where == {"provider": "oidc-corporate", "option": "attribute_requirements"}


@pytest.mark.parametrize("entry, line, words", [
    ("- rule: guests-in-database\n    reason: too short", 4, "at least 10 non-blank"),
    ("- rule: guests-in-database\n    reason: '  a b c d e f g h i  '", 4, "at least 10 non-blank"),
    ("- rule: guest-access-enabled\n    reason: We really want guests here.", 3, "cannot be acknowledged"),
    ("- rule: no-such-rule\n    reason: We really want guests here.", 3, "unknown rule `no-such-rule`"),
    ("- rule: guests-in-database\n    reason: Historic guests, OPS-123.\n    where: {user: x}", 5,
     "unknown `where` key"),
    ("- rule: guests-in-database\n    reason: Historic guests, OPS-123.\n    until: next year", 5, "ISO date"),
    ("- rule: guests-in-database\n    reason: Historic guests, OPS-123.\n    max_count: -1", 5, "non-negative"),
    ("- rule: guests-in-database\n    reason: Historic guests, OPS-123.\n    colour: red", 5, "unknown key `colour`"),
    ("- just a string", 3, "must be a mapping"),
])
def test_invalid_entries_name_file_and_line(tmp_path, entry, line, words):
    path = ack_file(tmp_path, "version: 1\nacknowledgements:\n  " + entry + "\n")
    with pytest.raises(ConfigError) as err:
        acks.load_file(path, ACKABLE)
    assert words in str(err.value)
    assert err.value.file == path and err.value.line == line


@pytest.mark.parametrize("text, words", [
    ("version: 2\nacknowledgements: []\n", "version"),
    ("acknowledgements: []\n", "version"),
    ("version: 1\nacknowledgements: {a: 1}\n", "must be a list"),
    ("- a\n- b\n", "must be a mapping"),
    ("version: 1\nextra: 1\n", "unknown top-level key"),
])
def test_invalid_files(tmp_path, text, words):
    with pytest.raises(ConfigError, match=words):
        acks.load_file(ack_file(tmp_path, text), ACKABLE)


def test_a_yaml_syntax_error_is_a_config_error_with_position(tmp_path):
    with pytest.raises(ConfigError) as err:
        acks.load_file(ack_file(tmp_path, "version: 1\nacknowledgements:\n  - rule: [x\n"), ACKABLE)
    assert err.value.line is not None


def test_accept_option():
    (entry,) = acks.parse_accept(["guests-in-database=Historic guests, OPS-123"], ACKABLE)
    assert (entry.rule, entry.reason, entry.where) == ("guests-in-database", "Historic guests, OPS-123", {})
    with pytest.raises(Syn2MasError, match="RULE=REASON"):
        acks.parse_accept(["guests-in-database"], ACKABLE)
    with pytest.raises(Syn2MasError, match="cannot be acknowledged"):
        acks.parse_accept(["guest-access-enabled=We want guests, really."], ACKABLE)
    with pytest.raises(Syn2MasError, match="10 non-blank"):
        acks.parse_accept(["guests-in-database=short"], ACKABLE)


def test_apply_marks_matching_warnings_and_reports_unused_and_expired():
    entries = [
        acks.Acknowledgement("oidc-provider-option-unsupported", "Enforced at the identity provider.",
                             Location("a.yaml", 3, 5), where={"provider": "oidc-corp", "option": "idp_icon"}),
        acks.Acknowledgement("guests-in-database", "Historic guests, OPS-123.", Location("a.yaml", 7, 5),
                             max_count=10),
        acks.Acknowledgement("pepper-mismatch", "Checked by hand on the MAS host.", Location("a.yaml", 9, 5),
                             until=dt.date(2026, 1, 1)),
        acks.Acknowledgement("oidc-provider-option-unsupported", "Nothing matches this selector.",
                             Location("a.yaml", 11, 5), where={"file": "other.yaml"}),
    ]
    icon = finding(provider="oidc-corp", option="idp_icon")
    other = finding(provider="oidc-other", option="idp_icon")
    guests_ok = finding("guests-in-database", count=10,
                        location=Location("hs.yaml", 1, 1, "database", "synapse-db:users"))
    guests_many = finding("guests-in-database", count=11, location=Location("hs.yaml", 1, 1, "database"))
    pepper = finding("pepper-mismatch")
    pepper_error = finding("pepper-mismatch", severity="error")
    notes = acks.apply([icon, other, guests_ok, guests_many, pepper, pepper_error], entries, TODAY)
    assert icon.acknowledged == "Enforced at the identity provider."
    assert other.acknowledged is None
    assert guests_ok.acknowledged and guests_many.acknowledged is None
    assert pepper.acknowledged is None and pepper_error.acknowledged is None  # expired; errors never
    assert sorted((n.rule, n.location.line) for n in notes) == [
        ("expired-acknowledgement", 9), ("unused-acknowledgement", 11)]
    assert all(n.severity == "info" for n in notes)
    assert "file=other.yaml" in [n for n in notes if n.rule == "unused-acknowledgement"][0].message


def test_where_file_and_key_path_match_normalised_paths():
    entry = acks.Acknowledgement("oidc-provider-option-unsupported", "Enforced at the identity provider.",
                                 Location("x", 1, 1), where={"file": "./conf/../homeserver.yaml",
                                                             "key_path": "oidc_providers[0].idp_icon"})
    assert entry.matches(finding())
    assert not entry.matches(finding(location=Location("homeserver.yaml", 3, 5, "oidc_providers[1].idp_icon")))


def test_default_file_is_looked_up_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert acks.default_file() is None
    ack_file(tmp_path, "version: 1\nacknowledgements: []\n")
    assert acks.default_file() == "syn2mas-acknowledgements.yaml"
