"""Named predicates of check rules (engine/predicates.py) and Synapse's provider keys (engine/synapse_providers.py)."""
from __future__ import annotations

import pytest

from engine.predicates import (
    Evaluator,
    SecretFiles,
    is_scope_token,
    is_url,
    mas_providers_for,
    matrix_secret_check,
    pepper_check,
    provider_pairs,
    strip_sensitive,
    synapse_oidc_providers,
)
from engine.rulefiles import default_rules_dir
from engine.sensitive import REDACTED
from engine.synapse_providers import collect_providers, provider_key, synapse_oidc_keys


@pytest.mark.parametrize("value, ok", [
    ("https://id.example.org/authorize", True), ("http://[::1]:8080/x", True), ("urn:ietf:x", True),
    ("not a url", False), ("http://", False), ("https://h:99999/", False), ("/relative/path", False),
    ("http://[::1/", False), (None, False), (42, False), ("https://h/ x", False),
])
def test_is_url(value, ok):
    assert is_url(value) is ok


@pytest.mark.parametrize("value, ok", [
    ("openid", True), ("urn:matrix:org.matrix.msc2967.client:api:*", True), ("!#[]~", True),
    ("", False), ("bad scope", False), ('a"b', False), ("a\\b", False), ("é", False), (None, False), (1, False),
])
def test_is_scope_token(value, ok):
    assert is_scope_token(value) is ok


@pytest.mark.parametrize("idp_id, key", [(None, "oidc"), ("oidc", "oidc"), ("google", "oidc-google"), (7, "oidc-7")])
def test_provider_key_follows_synapse(idp_id, key):
    assert provider_key(idp_id) == key


def test_collect_providers_reads_list_then_enabled_legacy_section_and_marks_skips():
    synapse = {
        "oidc_providers": [
            {"idp_id": "a", "issuer": "https://a/", "client_id": "x"},
            {"idp_id": "b", "issuer": "https://b/"},
            {"idp_id": "a", "issuer": "https://a2/", "client_id": "y"},
            "not a mapping",
        ],
        "oidc_config": {"enabled": True, "client_id": "legacy"},
    }
    found = collect_providers(synapse)
    assert [(p.key, p.path_text) for p in found] == [
        ("oidc-a", "oidc_providers[0]"), ("oidc-b", "oidc_providers[1]"), ("oidc-a", "oidc_providers[2]"),
        ("oidc", "oidc_providers[3]"), ("oidc", "oidc_config")]
    assert found[0].skipped is None
    assert "client_id" in found[1].skipped
    assert found[2].duplicate and "oidc_providers[0]" in found[2].skipped
    assert found[4].duplicate  # the list entry without idp_id already took `oidc`
    assert synapse_oidc_keys(synapse) == ["oidc", "oidc-a", "oidc-b"]


def test_legacy_section_needs_enabled_and_counts_missing_issuer():
    assert collect_providers({"oidc_config": {"issuer": "https://x/", "client_id": "c"}}) == []
    assert collect_providers({"oidc_config": {"enabled": 0, "issuer": "https://x/", "client_id": "c"}}) == []
    (legacy,) = collect_providers({"oidc_config": {"enabled": True, "idp_id": "corp", "client_id": "c"}})
    assert legacy.key == "oidc-corp" and "issuer" in legacy.skipped
    assert collect_providers({"oidc_providers": None, "oidc_config": None}) == []


def test_provider_entries_never_carry_secret_values():
    synapse = {"oidc_providers": [{"client_id": "x", "issuer": "https://a/", "client_secret": "s3cret-value",
                                   "client_secret_jwt_key": {"key": "PRIVATE", "jwt_header": {"alg": "ES256"}}}]}
    (entry,) = synapse_oidc_providers(synapse)
    assert entry["config"]["client_secret"] == REDACTED
    assert entry["config"]["client_secret_jwt_key"] == {"key": REDACTED, "jwt_header": {"alg": "ES256"}}
    assert "s3cret-value" not in repr(entry) and "PRIVATE" not in repr(entry)
    assert synapse["oidc_providers"][0]["client_secret"] == "s3cret-value"  # the input is not modified


def test_strip_sensitive_keeps_null_and_other_keys():
    data = {"matrix": {"secret": None, "homeserver": "h"}}
    assert strip_sensitive("mas", data) == data
    assert strip_sensitive("mas", {"matrix": {"secret": "x"}}) == {"matrix": {"secret": REDACTED}}


def test_mas_providers_for_and_pairs():
    mas = {"upstream_oauth2": {"providers": [
        {"synapse_idp_id": "oidc-a", "issuer": "https://a"},
        {"synapse_idp_id": "oidc-a", "issuer": "https://a/", "enabled": False},
        "junk",
        {"synapse_idp_id": "oidc-b"},
    ]}}
    assert mas_providers_for(mas, "oidc-a") == [
        {"index": 0, "path": "upstream_oauth2.providers[0]", "enabled": True, "issuer": "https://a"},
        {"index": 1, "path": "upstream_oauth2.providers[1]", "enabled": False, "issuer": "https://a/"}]
    assert mas_providers_for(None, "oidc-a") == [] and mas_providers_for({"upstream_oauth2": None}, "x") == []
    synapse = {"oidc_providers": [{"idp_id": "a", "issuer": "https://a/", "client_id": "c"},
                                  {"idp_id": "a", "issuer": "https://dup/", "client_id": "d"}]}
    pairs = provider_pairs(synapse, mas)
    assert [(p["mas_path"], p["synapse_issuer"], p["mas_issuer"]) for p in pairs] == [
        ("upstream_oauth2.providers[0]", "https://a/", "https://a"),
        ("upstream_oauth2.providers[1]", "https://a/", "https://a/")]


def _mas_v1(**scheme):
    return {"passwords": {"schemes": [{"version": 2, "algorithm": "argon2id"}, dict(version=1, **scheme)]}}


def test_pepper_check_outcomes(tmp_path):
    files = SecretFiles()
    synapse = {"password_config": {"pepper": "pep"}}
    assert pepper_check(synapse, _mas_v1(secret="pep"), files)["outcome"] == "equal"
    differs = pepper_check(synapse, _mas_v1(secret="other"), files)
    assert differs["outcome"] == "differs" and differs["path"] == "passwords.schemes[1].secret"
    none = pepper_check(synapse, _mas_v1(), files)
    assert (none["outcome"], none["synapse_set"], none["mas_set"], none["path"]) == (
        "differs", True, False, "passwords.schemes[1]")
    assert pepper_check({"password_config": {"pepper": ""}}, _mas_v1(), files)["outcome"] == "equal"
    assert pepper_check({}, {"passwords": {"schemes": []}}, files)["outcome"] == "no_scheme"


def test_pepper_check_reads_raw_file_bytes(tmp_path):
    files = SecretFiles()
    synapse = {"password_config": {"pepper": "pep"}}
    (tmp_path / "exact").write_bytes(b"pep")
    (tmp_path / "newline").write_bytes(b"pep\n")
    assert pepper_check(synapse, _mas_v1(secret_file=str(tmp_path / "exact")), files)["outcome"] == "equal"
    nl = pepper_check(synapse, _mas_v1(secret_file=str(tmp_path / "newline")), files)
    assert nl["outcome"] == "differs" and nl["trailing_newline"] is True and nl["mas_key"] == "secret_file"
    missing = pepper_check(synapse, _mas_v1(secret_file=str(tmp_path / "missing")), files)
    assert missing["outcome"] == "unverifiable" and missing["reason"] and missing["file"].endswith("missing")
    assert "pep\n" in files.seen and "pep" in files.seen  # remembered for scrubbing


def test_matrix_secret_check(tmp_path):
    files = SecretFiles()
    (tmp_path / "s").write_text("  shared\n")
    stable = {"matrix_authentication_service": {"enabled": True, "secret_path": str(tmp_path / "s")}}
    assert matrix_secret_check(stable, {"matrix": {"secret": "shared"}}, files)["outcome"] == "equal"
    assert matrix_secret_check(stable, {"matrix": {"secret_file": str(tmp_path / "s")}}, files)["outcome"] == "equal"
    differs = matrix_secret_check(stable, {"matrix": {"secret": "other"}}, files)
    assert differs["outcome"] == "differs" and differs["synapse_key"] == "matrix_authentication_service.secret_path"
    assert differs["path"] == "matrix.secret"
    msc = {"experimental_features": {"msc3861": {"enabled": True, "admin_token": "tok"}}}
    assert matrix_secret_check(msc, {"matrix": {"secret": "tok"}}, files)["outcome"] == "equal"
    unreadable = matrix_secret_check(msc, {"matrix": {"secret_file": str(tmp_path / "nope")}}, files)
    assert unreadable["outcome"] == "unverifiable" and unreadable["file"].endswith("nope")
    off = {"matrix_authentication_service": {"enabled": False, "secret": "x"}}
    assert matrix_secret_check(off, {"matrix": {"secret": "y"}}, files)["outcome"] == "not_delegated"
    assert matrix_secret_check(msc, {}, files)["mas_set"] is False


def test_evaluator_exposes_predicates_and_reads_a_file_once(tmp_path):
    secret = tmp_path / "pepper"
    secret.write_bytes(b"p")
    evaluator = Evaluator(default_rules_dir())
    root = {"synapse": {"password_config": {"pepper": "p"}},
            "mas": _mas_v1(secret_file=str(secret))}
    assert evaluator.evaluate("pepper_check(synapse, mas).outcome", root) == "equal"
    secret.write_bytes(b"changed")  # a second rule in the same run sees the same result
    assert evaluator.evaluate("pepper_check(synapse, mas).outcome", root) == "equal"
    assert evaluator.holds("is_url('https://x/') && !is_scope_token('a b')", {})
    assert evaluator.evaluate("rstrip('https://x//', '/')", {}) == "https://x"
    assert "shared_secret_authenticator.SharedSecretAuthProvider" in evaluator.evaluate(
        "rule_data('auth-modules').modules", {})
    assert evaluator.evaluate("length(`1`)", {}) is None  # a type error is "no value", never an exception
