"""`translator.generate.generate`: determinism, regeneration (mapping.md 5.10), secrets dir (5.11), overlay (7.7)."""
from __future__ import annotations

import datetime as _dt
import json
import os
import stat

import pytest

from engine.errors import ConfigError
from translator.generate import GenerateOptions, generate, write_outputs
from translator.randomness import Entropy
from tests.rulecases.mapping import CLOCK, case_entropy, validation_errors

SYNAPSE = """\
server_name: example.org
public_baseurl: https://matrix.example.org/
password_config:
  pepper: "Pepper-Value-0001"
enable_registration: true
email:
  smtp_host: mail.example.org
  smtp_user: synapse
  smtp_pass: "Smtp-Password-0001"
  notif_from: "%(app)s <noreply@example.org>"
matrix_authentication_service:
  enabled: true
  secret: "Delegation-Secret-000000000000001"
oidc_providers:
  - idp_id: corp
    idp_name: Corporate
    issuer: https://id.example.org/
    client_id: synapse
    client_secret: "Client-Secret-0001"
"""
SECRETS = ["Pepper-Value-0001", "Smtp-Password-0001", "Delegation-Secret-000000000000001", "Client-Secret-0001"]


@pytest.fixture
def homeserver(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "homeserver.yaml").write_text(SYNAPSE)
    return "homeserver.yaml"


def _run(paths, entropy=None, **options):
    return generate(paths, GenerateOptions(**options), entropy or case_entropy())


def test_same_seed_and_clock_give_byte_identical_output(homeserver):
    first = _run([homeserver], Entropy.seeded(7, CLOCK))
    second = _run([homeserver], Entropy.seeded(7, CLOCK))
    assert first.mas_text == second.mas_text and first.patch_text == second.patch_text
    other = _run([homeserver], Entropy.seeded(8, CLOCK))
    assert other.mas_text != first.mas_text  # the seed really drives the secrets


def test_the_result_is_valid_for_mas(homeserver, tmp_path):
    result = _run([homeserver])
    assert validation_errors(result.mas_text, str(tmp_path)) == []


def test_regeneration_is_byte_identical_and_keeps_secrets_ids_and_comments(homeserver, tmp_path):
    first = _run([homeserver], case_entropy(1), output="mas.yaml")
    write_outputs(first, "mas.yaml")
    again = _run([homeserver], case_entropy(2), output="mas.yaml")
    assert again.base == "mas.yaml"
    assert again.mas_text == first.mas_text

    # The admin edits the file: a comment, a key no rule owns, a changed owned value.
    text = first.mas_text.replace("passwords:\n", "# hashing: do not touch v1\npasswords:\n")
    text = text.replace("  minimum_complexity: 3\n", "  minimum_complexity: 4  # raised by ops\n")
    text = text.replace("matrix:\n", "matrix:\n  x_admin_note: kept\n")
    (tmp_path / "mas.yaml").write_text(text)
    # Synapse changes: the pepper goes, a second provider comes.
    changed = SYNAPSE.replace('password_config:\n  pepper: "Pepper-Value-0001"\n', "")
    changed += "  - {idp_id: aaa, issuer: https://aaa.example.org/, client_id: a}\n"
    (tmp_path / "homeserver.yaml").write_text(changed)
    updated = _run([homeserver], case_entropy(3), output="mas.yaml")
    assert updated.mas["secrets"] == first.mas["secrets"]
    assert updated.mas["matrix"]["secret"] == first.mas["matrix"]["secret"]
    assert "secret" not in updated.mas["passwords"]["schemes"][0]
    providers = {p["synapse_idp_id"]: p for p in updated.mas["upstream_oauth2"]["providers"]}
    old_ids = {p["synapse_idp_id"]: p["id"] for p in first.mas["upstream_oauth2"]["providers"]}
    assert providers["oidc-corp"]["id"] == old_ids["oidc-corp"]
    assert providers["oidc-aaa"]["id"] != old_ids["oidc-corp"]
    assert "# hashing: do not touch v1\npasswords:\n" in updated.mas_text
    assert "  minimum_complexity: 4  # raised by ops\n" in updated.mas_text
    assert updated.mas["matrix"]["x_admin_note"] == "kept"
    write_outputs(updated, "mas.yaml")
    assert _run([homeserver], case_entropy(4), output="mas.yaml").mas_text == updated.mas_text


def test_from_mas_updates_another_file(homeserver, tmp_path):
    first = _run([homeserver])
    (tmp_path / "old.yaml").write_text(first.mas_text)
    result = _run([homeserver], case_entropy(9), output="new.yaml", from_mas="old.yaml")
    assert result.base == "old.yaml" and result.mas_text == first.mas_text


def test_a_provider_gone_from_synapse_is_kept_with_a_note(homeserver, tmp_path):
    write_outputs(_run([homeserver], output="mas.yaml"), "mas.yaml")
    (tmp_path / "homeserver.yaml").write_text(SYNAPSE.split("oidc_providers:")[0])
    result = _run([homeserver], output="mas.yaml")
    assert [p["synapse_idp_id"] for p in result.mas["upstream_oauth2"]["providers"]] == ["oidc-corp"]
    assert "upstream_oauth2.kept-provider" in [f.rule for f in result.findings]


def test_no_secret_in_findings_trace_or_edit_list(homeserver):
    result = _run([homeserver])
    printed = json.dumps([t.as_dict() for t in result.trace]) + "\n".join(result.edits)
    printed += "\n".join(f"{f.message} {f.remediation}" for f in result.findings)
    for secret in SECRETS:
        assert secret not in printed
        assert secret in result.mas_text  # the MAS file itself must carry every one of them
    assert SECRETS[2] in result.patch_text  # and the overlay the shared secret
    assert set(SECRETS) <= result.secrets  # what the CLI scrubs from everything it prints


def test_every_trace_entry_has_the_four_fields(homeserver):
    for entry in _run([homeserver]).trace:
        d = entry.as_dict()
        assert set(d) == {"to", "from", "rule", "origin"}
        assert d["from"] == "literal" or d["from"].startswith(("S:", "M:", "option --"))
        assert d["origin"] is None or d["origin"].startswith("homeserver.yaml:")


def test_secrets_dir_moves_secrets_to_0600_files(homeserver, tmp_path):
    result = _run([homeserver], secrets_dir="secrets")
    files = {os.path.basename(p): p for p in result.secret_files}
    assert {"encryption-key", "matrix-secret", "password-pepper"} <= set(files)
    assert (tmp_path / "secrets" / "password-pepper").read_bytes() == b"Pepper-Value-0001"  # no newline
    assert (tmp_path / "secrets" / "matrix-secret").read_bytes() == SECRETS[2].encode()
    for path in files.values():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    scheme = result.mas["passwords"]["schemes"][0]
    assert scheme["secret_file"] == files["password-pepper"] and "secret" not in scheme
    assert "Pepper-Value-0001" not in result.mas_text
    assert result.mas["matrix"]["secret_file"] == files["matrix-secret"]
    assert result.mas_text.index("secret_file:") > result.mas_text.index("unicode_normalization")
    # The overlay then points Synapse at the same file.
    assert f"secret_path: {files['matrix-secret']}" in result.patch_text
    write_outputs(result, "mas.yaml")
    assert _run([homeserver], case_entropy(5), output="mas.yaml", secrets_dir="secrets").mas_text == result.mas_text


def test_overlay_has_header_marker_and_only_needed_keys(homeserver):
    result = _run([homeserver], mas_internal_url="http://mas:8080")
    lines = result.patch_text.splitlines()
    assert lines[0].startswith("# Generated by syn2mas: switches Synapse to MAS. Give this file to Synapse last.")
    assert "syn2mas_delegation_patch: {version: 1}" in lines
    assert "  endpoint: http://mas:8080/" in lines
    body = [line.split(":")[0] for line in lines if line and not line.startswith(("#", " "))]
    assert body == ["syn2mas_delegation_patch", "matrix_authentication_service", "enable_registration",
                    "oidc_providers", "enable_3pid_changes"]
    assert "replace `enable_registration` in homeserver.yaml line 5 with: enable_registration: false" in result.edits
    assert "remove `oidc_providers` from homeserver.yaml line 14" in result.edits
    assert any(e.startswith("replace `matrix_authentication_service` in homeserver.yaml line 11 with:")
               and "<secret: see the patch file>" in e for e in result.edits)


def test_an_input_carrying_the_overlay_marker_is_left_out(homeserver, tmp_path):
    overlay = _run([homeserver]).patch_text
    (tmp_path / "zz-overlay.yaml").write_text(overlay)
    result = _run([homeserver, "zz-overlay.yaml"])
    assert [p["synapse_idp_id"] for p in result.mas["upstream_oauth2"]["providers"]] == ["oidc-corp"]
    assert any("delegation patch marker" in f.message for f in result.findings)


def test_split_configuration_replaces_top_level_keys_with_a_note(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "homeserver.yaml").write_text("server_name: example.org\npassword_config: {pepper: p1-value}\n")
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "10-policy.yaml").write_text("password_config: {policy: {minimum_length: 12}}\n")
    result = _run(["homeserver.yaml", "conf.d"])
    assert "secret" not in result.mas["passwords"]["schemes"][0]  # Synapse's rule: no deep merge
    assert any("replaced as a whole" in f.message and "`pepper`" in f.message for f in result.findings)


def test_null_sections_mean_absent(tmp_path, monkeypatch):
    """mapping.md 1.4: every section the reference chokes on when null loads cleanly here."""
    monkeypatch.chdir(tmp_path)
    nulls = ["cas_config", "saml2_config", "jwt_config", "oidc_config", "oidc_providers", "password_config", "email",
             "user_consent", "modules", "password_providers", "experimental_features",
             "matrix_authentication_service"]
    (tmp_path / "hs.yaml").write_text("server_name: example.org\n" + "".join(f"{k}:\n" for k in nulls) +
                                      "database:\n  name: psycopg2\n  args:\n")
    result = _run(["hs.yaml"])
    assert result.mas["passwords"]["enabled"] is True and "upstream_oauth2" not in result.mas
    assert result.mas["email"]["transport"] == "blackhole"
    assert [f.rule for f in result.findings] == ["account.login-with-email-note"]
    (tmp_path / "hs.yaml").write_text(
        "server_name: example.org\noidc_providers:\n  - idp_id: a\n    issuer: https://id.example.org/\n"
        "    client_id: a\n    user_mapping_provider:\n    additional_authorization_parameters:\n"
        "  - idp_id: b\n    issuer: https://id.example.org/\n    client_id: b\n    user_mapping_provider:\n"
        "      config:\n")
    providers = _run(["hs.yaml"]).mas["upstream_oauth2"]["providers"]
    assert [sorted(p) for p in providers] == [sorted(providers[0])] * 2
    assert "claims_imports" not in providers[0] and "additional_authorization_parameters" not in providers[0]


@pytest.mark.parametrize("text, line, key", [
    ("server_name: x\noidc_providers: {a: 1}\n", 2, "oidc_providers"),
    ("server_name: x\nemail: true\n", 2, "email"),
    ("server_name: x\noidc_providers:\n  - issuer: [a]\n    client_id: c\n", 3, "oidc_providers[0].issuer"),
    ("public_baseurl: https://x/\n", 1, None),
])
def test_wrong_shapes_and_missing_server_name_stop_with_file_and_line(tmp_path, monkeypatch, text, line, key):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hs.yaml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        _run(["hs.yaml"])
    assert caught.value.file == "hs.yaml" and caught.value.line == line
    if key:
        assert caught.value.key == key


@pytest.mark.parametrize("option, value", [("synapse_url", "ftp://x/"), ("tos_uri", "terms"),
                                           ("mas_database_uri", "mysql://x"), ("compat", "other")])
def test_bad_option_values_are_usage_errors(homeserver, option, value):
    with pytest.raises(ConfigError, match=f"--{option.replace('_', '-')}"):
        _run([homeserver], **{option: value})


def test_ulids_carry_the_generation_clock(homeserver):
    at = _dt.datetime(2026, 8, 7, 12, 0, tzinfo=_dt.timezone.utc)
    result = _run([homeserver], Entropy.seeded(1, at))
    ulid = result.mas["upstream_oauth2"]["providers"][0]["id"]
    assert ulid[:10] == Entropy.seeded(2, at).ulid(at)[:10]
