"""The check-rule engine: load-time safety checks, evaluation semantics, the compiled catalogue, spec conformance."""
from __future__ import annotations

import os
import re
import shutil
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.checks import CheckOptions, known_provider_ids, load_check_rules, rule_holds, rules_by_id, run_checks
from engine.configdoc import ConfigDoc, load_mas_config, load_synapse_config
from engine.errors import RuleFileError
from engine.rulebundle import is_fresh, write_bundle
from engine.rulefiles import default_rules_dir

REAL_RULES = default_rules_dir()
DATA_FILES = ("sensitive.yaml", "mas-defaults.yaml", "auth-modules.yaml", "mas-id-token-algorithms.yaml")


def rules_dir_with(tmp_path, files: dict[str, str]) -> str:
    """A rules directory holding the real data files and the given check-rule files."""
    base = tmp_path / "rules"
    (base / "checks").mkdir(parents=True)
    for name in DATA_FILES:
        shutil.copy(os.path.join(REAL_RULES, name), base / name)
    for name, text in files.items():
        (base / "checks" / name).write_text(textwrap.dedent(text))
    return str(base)


def one_rule(scope: str, body: str) -> str:
    return f"kind: check\nscope: {scope}\nrules:\n" + textwrap.indent(textwrap.dedent(body), "  ")


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


RULE_HEAD = """\
- id: demo-rule
  severity: warning
  summary: A demo rule.
  message: "demo {{ x }}"
  remediation: Fix it.
"""


@pytest.mark.parametrize("scope, extra, leaked", [
    ("synapse", "  when: truthy(password_config)\n  vars: {x: password_config.pepper}\n",
     "synapse:password_config.pepper"),
    ("synapse", "  when: truthy(password_config)\n  vars: {x: password_config}\n", "password_config.pepper"),
    ("synapse", "  when: '`true`'\n  vars: {x: '@'}\n", "password_config.pepper"),
    ("synapse", "  for_each: oidc_providers\n  when: truthy(item)\n  vars: {x: item.client_secret}\n",
     "oidc_providers[].client_secret"),
    ("synapse", "  for_each: oidc_providers[?issuer]\n  when: truthy(item)\n"
                "  vars: {x: \"join(',', [item.client_secret])\"}\n",
     "oidc_providers[].client_secret"),
    ("synapse+mas", "  when: truthy(mas.matrix)\n  vars: {x: to_string(mas.matrix.secret)}\n", "mas:matrix.secret"),
    ("synapse+mas", "  when: truthy(mas.matrix)\n  vars: {x: \"mas_raw.passwords.schemes[0]\"}\n",
     "mas:passwords.schemes[].secret"),
    ("synapse+mas", "  for_each: mas.passwords.schemes\n  when: truthy(item)\n  vars: {x: item}\n",
     "mas:passwords.schemes[].secret"),
])
def test_vars_that_can_copy_a_secret_are_rejected_at_load(tmp_path, scope, extra, leaked):
    rules_dir = rules_dir_with(tmp_path, {"demo.yaml": one_rule(scope, RULE_HEAD + extra)})
    with pytest.raises(RuleFileError) as err:
        load_check_rules(rules_dir)
    assert leaked in err.value.message
    assert err.value.file.endswith("demo.yaml") and err.value.line >= 4
    assert "never show secrets" in (err.value.hint or "")


@pytest.mark.parametrize("scope, extra", [
    ("synapse", "  when: truthy(password_config.pepper)\n  vars: {x: length(password_config.pepper)}\n"),
    ("synapse", "  when: '`true`'\n  vars: {x: password_config.policy}\n"),
    ("synapse", "  for_each: synapse_oidc_providers(@)\n  when: truthy(item)\n  vars: {x: item.config}\n"),
    ("synapse+mas", "  when: '`true`'\n  vars: {x: 'pepper_check(synapse, mas).outcome'}\n"),
    ("synapse+mas", "  when: '`true`'\n  vars: {x: mas.matrix.homeserver}\n"),
])
def test_vars_that_only_decide_or_read_safe_paths_load(tmp_path, scope, extra):
    rules_dir = rules_dir_with(tmp_path, {"demo.yaml": one_rule(scope, RULE_HEAD + extra)})
    (rule,) = load_check_rules(rules_dir)
    assert rule.id == "demo-rule"


def test_other_load_errors_name_file_and_line(tmp_path):
    bad_expr = rules_dir_with(tmp_path / "a", {"demo.yaml": one_rule("synapse", RULE_HEAD + "  when: 'a[('\n")})
    with pytest.raises(RuleFileError, match="invalid JMESPath") as err:
        load_check_rules(bad_expr)
    assert err.value.line == 9 and err.value.key == "rules[0].when"
    no_when = rules_dir_with(tmp_path / "b",
                             {"demo.yaml": one_rule("synapse", RULE_HEAD + "  variants:\n    - {name: a}\n")})
    with pytest.raises(RuleFileError, match="needs a `when`"):
        load_check_rules(no_when)
    dup = rules_dir_with(tmp_path / "c", {"a.yaml": one_rule("synapse", RULE_HEAD + "  when: '`true`'\n"),
                                          "b.yaml": one_rule("synapse", RULE_HEAD + "  when: '`true`'\n")})
    with pytest.raises(RuleFileError, match="also defined at"):
        load_check_rules(dup)
    schema = rules_dir_with(tmp_path / "d", {"demo.yaml": one_rule("synapse", RULE_HEAD + "  colour: red\n")})
    with pytest.raises(RuleFileError, match="unknown field"):
        load_check_rules(schema)


def test_synapse_mas_rules_are_skipped_without_mas(tmp_path):
    synapse = load_synapse_config([write(tmp_path, "hs.yaml", "server_name: example.org\n")])
    run = run_checks(load_check_rules(), synapse, None)
    skipped = {s.rule for s in run.skipped}
    assert {"pepper-mismatch", "server-name-mismatch", "mas-config-invalid"} <= skipped
    assert not skipped & {r.id for r in load_check_rules() if r.scope == "synapse"}
    assert all("--config" in s.reason for s in run.skipped)
    assert not [f for f in run.findings if f.scope == "synapse+mas"]


def test_findings_carry_scope_location_provider_option_and_variant(tmp_path):
    synapse = load_synapse_config([write(tmp_path, "hs.yaml", """\
        server_name: example.org
        oidc_providers:
          - idp_id: corp
            issuer: https://id.example.org/
            client_id: synapse
            idp_icon: mxc://x/y
        """)])
    mas = load_mas_config([write(tmp_path, "mas.yaml", """\
        matrix:
          homeserver: example.com
        """)])
    run = run_checks(load_check_rules(), synapse, mas)
    by_rule = {f.rule: f for f in run.findings}
    icon = by_rule["oidc-provider-option-unsupported"]
    assert (icon.provider, icon.option, icon.details["variant"]) == ("oidc-corp", "idp_icon", "idp_icon")
    assert (icon.location.file, icon.location.line, icon.location.column) == (str(tmp_path / "hs.yaml"), 6, 5)
    assert icon.location.key_path == "oidc_providers[0].idp_icon" and icon.scope == "synapse"
    name = by_rule["server-name-mismatch"]
    assert (name.location.file, name.location.line, name.scope) == (str(tmp_path / "mas.yaml"), 2, "synapse+mas")
    # An absent MAS key points at its nearest existing ancestor, else line 1 of the first MAS file.
    scheme = by_rule["password-scheme-not-bcrypt"]
    assert (scheme.location.line, scheme.location.column, scheme.location.key_path) == (
        1, 1, "passwords.schemes[0].algorithm")


def test_downgrade_applies_only_with_its_option(tmp_path):
    rule = RULE_HEAD.replace('"demo {{ x }}"', '"demo"') + (
        "  for_each: '[`1`, `2`]'\n  when: '`true`'\n"
        "  downgrade: {option: ignore_missing_auth_providers, severity: info, when: 'item == `2`'}\n")
    rules_dir = rules_dir_with(tmp_path, {"demo.yaml": one_rule("synapse", rule)})
    synapse = load_synapse_config([write(tmp_path, "hs.yaml", "server_name: x\n")])
    rules = load_check_rules(rules_dir)
    plain = run_checks(rules, synapse, options=CheckOptions(rules_dir=rules_dir))
    assert [f.severity for f in plain.findings] == ["warning", "warning"]
    flagged = run_checks(rules, synapse, options=CheckOptions(ignore_missing_auth_providers=True, rules_dir=rules_dir))
    assert [f.severity for f in flagged.findings] == ["warning", "info"]
    assert rules[0].severities == ["warning", "info"] and rules[0].acknowledgeable


def test_acknowledgeable_means_can_report_a_warning():
    rules = rules_by_id()
    assert rules["pepper-mismatch"].acknowledgeable  # its unverifiable variant is a warning
    assert rules["mas-config-invalid"].acknowledgeable
    assert not rules["guest-access-enabled"].acknowledgeable
    assert not rules["server-name-mismatch"].acknowledgeable


def test_known_provider_ids_follow_the_saml_and_cas_rules(tmp_path):
    synapse = load_synapse_config([write(tmp_path, "hs.yaml", """\
        oidc_providers:
          - {idp_id: corp, client_id: x, issuer: "https://x/"}
        saml2_config: {enabled: true}
        cas_config: {enabled: false, server_url: "https://cas/"}
        """)])
    assert known_provider_ids(synapse) == ["oidc-corp", "saml"]
    assert rule_holds("saml2-enabled", synapse) and not rule_holds("cas-enabled", synapse)


def test_compiled_catalogue_is_used_when_fresh(tmp_path):
    import json

    rules_dir = rules_dir_with(tmp_path, {"demo.yaml": one_rule("synapse", RULE_HEAD + "  when: '`true`'\n")})
    assert not is_fresh(rules_dir)
    path = write_bundle(rules_dir)
    assert is_fresh(rules_dir)
    bundle = json.loads(open(path).read())
    bundle["files"][0]["data"]["rules"][0]["summary"] = "Read from the bundle."  # digest unchanged
    open(path, "w").write(json.dumps(bundle))
    (rule,) = load_check_rules(rules_dir)
    assert rule.summary == "Read from the bundle." and rule.where.line == 4


def test_a_stale_entry_falls_back_to_the_yaml_of_that_file_only(tmp_path):
    import json

    rule_a = one_rule("synapse", RULE_HEAD + "  when: '`true`'\n")
    rule_b = rule_a.replace("demo-rule", "other-rule")
    rules_dir = rules_dir_with(tmp_path, {"a.yaml": rule_a, "b.yaml": rule_b})
    path = write_bundle(rules_dir)
    bundle = json.loads(open(path).read())
    for entry in bundle["files"]:
        entry["data"]["rules"][0]["summary"] = "Read from the bundle."
    open(path, "w").write(json.dumps(bundle))
    (tmp_path / "rules" / "checks" / "b.yaml").write_text(rule_b.replace("A demo rule.", "Changed on disk."))
    assert not is_fresh(rules_dir)
    a, b = load_check_rules(rules_dir)
    assert (a.id, a.summary) == ("demo-rule", "Read from the bundle.")
    assert (b.id, b.summary) == ("other-rule", "Changed on disk.")


def test_the_shipped_compiled_catalogue_is_fresh():
    assert is_fresh(REAL_RULES), "rules/checks.compiled.json is stale: run `syn2mas rules compile` (or " \
                                 "`python cli.py rules compile`) after changing rules/checks or the rule engine"


def _spec_rows(shared_dir: str) -> dict[str, tuple[str, str]]:
    text = open(os.path.join(shared_dir, "spec", "checks.md"), encoding="utf-8").read()
    section = text[text.index("### 4.1"):text.index("### 4.3")]
    rows = re.findall(r"^\| `([a-z0-9-]+)` \| ([^|]+) \| (synapse(?:\+mas)?) \|", section, re.M)
    return {rid: (sev.strip(), scope) for rid, sev, scope in rows}


def test_catalogue_matches_checks_md_sections_4_1_and_4_2(shared_dir):
    spec = _spec_rows(shared_dir)
    assert len(spec) == 27  # 14 rules in 4.1, 13 in 4.2
    rules = rules_by_id()
    for rule_id, (severity, scope) in spec.items():
        assert rule_id in rules, f"checks.md rule `{rule_id}` is missing"
        rule = rules[rule_id]
        assert rule.scope == scope, rule_id
        assert rule.severity == severity.split()[0], f"{rule_id}: {rule.severity} vs {severity}"
        if "unverifiable" in severity:
            assert "warning" in rule.severities, rule_id


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 2) | st.sampled_from(["", "x", "true", "oidc", "bcrypt", "sqlite3"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["enabled", "module", "config", "idp_id", "client_id", "issuer", "version", "algorithm",
                         "secret", "secret_file", "schemes", "providers", "pepper", "msc3861", "name"]),
        inner, max_size=4),
    max_leaves=12)
_SYNAPSE_KEYS = ["saml2_config", "cas_config", "jwt_config", "password_providers", "modules", "ldap_config",
                 "password_config", "database", "oidc_providers", "oidc_config", "email", "user_consent",
                 "enable_registration", "disable_registration", "matrix_authentication_service",
                 "experimental_features", "login_via_existing_session", "allow_guest_access", "server_name"]
_MAS_KEYS = ["passwords", "matrix", "upstream_oauth2", "email", "captcha", "branding", "secrets"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(_SYNAPSE_KEYS), _json_values, max_size=8),
       st.dictionaries(st.sampled_from(_MAS_KEYS), _json_values, max_size=5))
def test_rules_never_crash_on_values_of_the_wrong_shape(synapse_data, mas_data):
    synapse = ConfigDoc(data=synapse_data, files=["hs.yaml"])
    mas = ConfigDoc(data=mas_data, files=["mas.yaml"])
    run = run_checks([r for r in load_check_rules() if not r.evaluator], synapse, mas)  # MAS schema: masvalidate
    assert all(f.location.line >= 1 and f.message for f in run.findings)
