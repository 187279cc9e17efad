"""`syn2mas lint` and `syn2mas rules ...` end to end through click: exit codes, formats, errors without tracebacks."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from cli import main
from tests.conftest import MAS_JSON_SCHEMA, ROOT

CLEAN = "server_name: example.org\n"


@pytest.fixture
def run(tmp_path, monkeypatch):
    """Invoke the CLI in a scratch directory; files are given as name -> text."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.delenv("SYN2MAS_MAS_SCHEMA", raising=False)

    def invoke(args: list[str], files: dict[str, str] | None = None, env: dict | None = None):
        for name, text in (files or {}).items():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text(textwrap.dedent(text))
        return CliRunner().invoke(main, args, env=env, catch_exceptions=False)

    return invoke


def test_clean_configuration_exits_0(run):
    result = run(["lint", "--synapse-config", "hs.yaml"], {"hs.yaml": CLEAN})
    assert result.exit_code == 0, result.output
    assert "ready to migrate" in result.output
    skipped = next(line for line in result.output.splitlines() if line.startswith("skipped"))
    assert skipped.startswith("skipped (needs the MAS configuration (`--config`)): ")
    assert len(skipped.split(": ", 1)[1].split(", ")) == 13


def test_warnings_exit_11_and_errors_exit_10(run):
    warn = run(["lint", "--synapse-config", "hs.yaml"], {"hs.yaml": CLEAN + "enable_registration: true\n"})
    assert warn.exit_code == 11, warn.output
    err = run(["lint", "--synapse-config", "hs.yaml"], {"hs.yaml": CLEAN + "allow_guest_access: true\n"})
    assert err.exit_code == 10
    assert "2:1  error    `allow_guest_access` is on" in err.output


def test_accepting_the_warnings_exits_0_and_lists_them_as_accepted(run):
    files = {"hs.yaml": CLEAN + "enable_registration: true\n"}
    result = run(["lint", "--synapse-config", "hs.yaml",
                  "--accept", "registration-enabled=Registration closes on migration day, OPS-7.",
                  "--accept", "synapse-delegation-conflict=The overlay is applied after migrate."], files)
    assert result.exit_code == 0, result.output
    assert "Accepted" in result.output and "2 accepted" in result.output


def test_default_acknowledgements_file_and_unused_entries(run):
    files = {"hs.yaml": CLEAN + "enable_registration: true\n", "syn2mas-acknowledgements.yaml": """\
        version: 1
        acknowledgements:
          - rule: registration-enabled
            reason: Registration closes on migration day, OPS-7.
          - rule: synapse-delegation-conflict
            reason: The overlay is applied after migrate.
            where: {option: enable_registration}
          - rule: sqlite-database
            reason: We do not even use SQLite, but keep this.
        """}
    result = run(["lint", "--synapse-config", "hs.yaml", "--format", "parsable"], files)
    assert result.exit_code == 0, result.output
    assert "syn2mas-acknowledgements.yaml:8:5: [info] unused acknowledgement: no `sqlite-database` warning" \
        in result.output
    assert result.output.count("[accepted]") == 2


def test_invalid_acknowledgements_file_exits_1_with_file_and_line(run):
    files = {"hs.yaml": CLEAN, "acks.yaml": "version: 1\nacknowledgements:\n  - rule: guest-access-enabled\n"
                                            "    reason: We want guests, approved.\n"}
    result = run(["lint", "--synapse-config", "hs.yaml", "--acknowledgements", "acks.yaml"], files)
    assert result.exit_code == 1
    assert "acks.yaml:3:" in result.output and "cannot be acknowledged" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("files, args, words", [
    ({"hs.yaml": "server_name: example.org\nfoo: [1, 2\n"}, [], "hs.yaml:3:1: YAML syntax error"),
    ({"hs.yaml": "allow_guest_access: true\n"}, [], "no `server_name`"),
    ({"hs.yaml": "server_name: example.org\nfoo: a\x00b\n"}, [],
     "hs.yaml:2:7: YAML syntax error: the character U+0000 is not allowed in YAML"),
    ({"hs.yaml": "server_name: 12345\n"}, [], "hs.yaml:1:1: `server_name` must be a string"),
    ({"hs.yaml": "server_name: ' example.org'\n"}, [], "hs.yaml:1:1: `server_name` is not a host name"),
    ({"hs.yaml": "server_name: 'example.org:port'\n"}, [], "`server_name` has an invalid port"),
    ({"hs.yaml": "server_name: '[::1'\n"}, [], "`server_name` has mismatched brackets"),
    ({"hs.yaml": CLEAN + "x: !include other.yaml\n"}, [], "unsupported YAML tag"),
    ({}, [], "configuration file not found"),
    ({"hs.yaml": CLEAN, "mas.yaml": "matrix: {homeserver: x\n"}, ["--config", "mas.yaml"], "mas.yaml:2:1: YAML syntax"),
    ({"hs.yaml": CLEAN, "mas.yaml": "matrix: {}\n"}, ["--config", "mas.yaml", "--mas-schema", "nope.json"],
     "schema not found"),
    ({"hs.yaml": CLEAN}, ["--accept", "no-such-rule=A reason long enough"], "unknown rule `no-such-rule`"),
    ({"hs.yaml": CLEAN, "acks.yaml": "version: 1\nacknowledgements:\n  - rule: registration-enabled\n"
                                     "    reason: Open until the switch, approved.\n    until: 2026-02-30\n"},
     ["--acknowledgements", "acks.yaml"], "acks.yaml:5:12: invalid scalar: day is out of range for month"),
])
def test_bad_input_exits_1_with_position_and_no_traceback(run, files, args, words):
    result = run(["lint", "--synapse-config", "hs.yaml", *args], files)
    assert result.exit_code == 1
    assert words in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args", [["--bogus"], ["--format", "xml"], ["--output"]])
def test_usage_errors_exit_1(run, args):
    """checks.md 2: usage errors exit 1 (click's own default is 2), with click's message."""
    result = run(["lint", "--synapse-config", "hs.yaml", *args], {"hs.yaml": CLEAN})
    assert result.exit_code == 1 and "Error:" in result.output


def test_an_unknown_command_exits_1(run):
    result = run(["lnit"])
    assert result.exit_code == 1 and "No such command" in result.output


def test_an_unreadable_configuration_directory_exits_1_naming_it(tmp_path):
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "hs.yaml").write_text(CLEAN)
    os.chmod(tmp_path / "conf.d", 0)
    try:
        # root reads any directory: where the tests run as root (as in CI), without that capability
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
        done = subprocess.run([*prefix, sys.executable, "-m", "cli", "lint", "--synapse-config", "conf.d"],
                              cwd=tmp_path, env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True,
                              timeout=60)
    finally:
        os.chmod(tmp_path / "conf.d", 0o700)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "conf.d: cannot read the configuration directory: Permission denied" in done.stderr
    assert "Traceback" not in done.stderr


def test_output_file_and_sarif_file(run, tmp_path):
    result = run(["lint", "--synapse-config", "hs.yaml", "--format", "json", "--output", "report.json",
                  "--sarif-file", "report.sarif"], {"hs.yaml": CLEAN + "allow_guest_access: true\n"})
    assert result.exit_code == 10 and result.output == ""
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["summary"]["exit_code"] == 10 and doc["command"] == "lint"
    assert doc["inputs"] == [{"path": "hs.yaml", "kind": "synapse", "sha256": doc["inputs"][0]["sha256"]}]
    sarif = json.loads((tmp_path / "report.sarif").read_text())
    assert sarif["runs"][0]["results"][0]["ruleId"] == "guest-access-enabled"


def test_format_auto_is_github_under_actions(run):
    result = run(["lint", "--synapse-config", "hs.yaml"], {"hs.yaml": CLEAN + "allow_guest_access: true\n"},
                 env={"GITHUB_ACTIONS": "true"})
    assert result.output.startswith("::group::hs.yaml\n::error file=hs.yaml,line=2,col=1,title=guest-access-enabled::")


def test_lint_with_mas_configuration_and_schema(run):
    files = {"hs.yaml": CLEAN + "password_config: {pepper: 'the-pepper-value'}\n", "mas.yaml": """\
        matrix:
          homeserver: example.org
          secret: "0123456789abcdef"
        passwords:
          schemes:
            - {version: 1, algorithm: bcrypt, unicode_normalization: true, secret: "the-pepper-value"}
            - {version: 2, algorithm: argon2id}
        """}
    result = run(["lint", "--synapse-config", "hs.yaml", "--config", "mas.yaml", "--mas-schema", MAS_JSON_SCHEMA,
                  "--format", "json"], files)
    doc = json.loads(result.output)
    rules = {f["rule"] for f in doc["findings"]}
    assert "pepper-mismatch" not in rules and "server-name-mismatch" not in rules
    assert "mas-config-invalid" in rules  # no `secrets`: the schema requires them
    assert doc["skipped_rules"] == []
    without_schema = run(["lint", "--synapse-config", "hs.yaml", "--config", "mas.yaml"], files)
    assert "mapping.md section 6 only" in without_schema.output


def test_patch_overlay_is_left_out_with_a_note(run):
    files = {"hs.yaml": CLEAN + "enable_registration: true\n",
             "zz-patch.yaml": "syn2mas_delegation_patch: {version: 1}\nenable_registration: false\n"}
    result = run(["lint", "--synapse-config", "hs.yaml", "--synapse-config", "zz-patch.yaml"], files)
    assert result.exit_code == 11  # the overlay's `enable_registration: false` is not applied
    assert "delegation patch marker" in result.output


def test_rules_list_and_explain(run):
    listed = run(["rules", "list"])
    assert listed.exit_code == 0
    assert any(line.startswith("pepper-mismatch ") and "error/warning" in line for line in listed.output.splitlines())
    as_json = json.loads(run(["rules", "list", "--format", "json"]).output)
    assert {"id": "saml2-enabled", "severity": "warning", "scope": "synapse"}.items() <= \
        next(r for r in as_json if r["id"] == "saml2-enabled").items()
    explained = run(["rules", "explain", "saml2-enabled"])
    assert explained.exit_code == 0
    assert "defined in: checks/auth.yaml:" in explained.output and "fires   fires_when_sp_config_is_present" \
        in explained.output
    unknown = run(["rules", "explain", "saml-enabled"])
    assert unknown.exit_code == 1 and "did you mean `saml2-enabled`" in unknown.output


def test_rules_docs_are_generated_from_rules_and_cases(run, tmp_path):
    result = run(["rules", "docs", "out"])
    assert result.exit_code == 0
    page = (tmp_path / "out" / "pepper-mismatch.md").read_text()
    assert page.startswith("# `pepper-mismatch`")
    assert "### fires: fires for trailing newline in secret file" in page and "secret_file: pepper.txt" in page
    assert "### silent: silent when inline secret matches" in page
    index = (tmp_path / "out" / "index.md").read_text()
    assert "[`saml2-enabled`](saml2-enabled.md)" in index


def test_rules_lint_and_compile_on_a_catalogue(run, tmp_path):
    rules = tmp_path / "cat" / "rules"
    (rules / "checks").mkdir(parents=True)
    for name in ("sensitive.yaml", "mas-defaults.yaml", "auth-modules.yaml", "mas-id-token-algorithms.yaml"):
        (rules / name).write_text(open(os.path.join(ROOT, "rules", name)).read())
    (rules / "checks" / "demo.yaml").write_text(textwrap.dedent("""\
        kind: check
        scope: synapse
        rules:
          - id: demo-rule
            severity: warning
            summary: Demo.
            when: truthy(demo)
            at: demo
            message: "`demo` is {{ state }}"
            remediation: Remove it.
        """))
    cases = tmp_path / "cat" / "tests" / "rules" / "checks"
    cases.mkdir(parents=True)
    (cases / "demo.yaml").write_text("demo-rule:\n  fires:\n    synapse: |\n      demo: 1   # expect: demo-rule\n")
    env = {"SYN2MAS_RULES_DIR": str(rules)}
    problems = run(["rules", "lint"], env=env)
    assert problems.exit_code == 1
    assert "undeclared variable(s) state" in problems.output
    assert "rule `demo-rule` has no silent case" in problems.output
    assert "compiled catalogue is missing or stale" in problems.output
    compiled = run(["rules", "compile"], env=env)
    assert compiled.exit_code == 0 and (rules / "checks.compiled.json").exists()
    assert "compiled catalogue" not in run(["rules", "lint"], env=env).output


def test_syn2mas_rules_lint_passes_on_the_shipped_catalogue():
    """style.md 3: `syn2mas rules lint` is also a test (every rule has a firing and a silent case, ...)."""
    from engine.rulelint import lint_rules

    problems = lint_rules()
    assert not problems, "\n".join(map(str, problems))


def test_lint_imports_no_validator_and_no_schema_library(tmp_path):
    """`lint` stays fast: the compiled catalogue spares cerberus, jsonschema loads only with --mas-schema; plain
    files and messages spare ruamel (libyaml by engine/yamlfast.py) and Jinja2 (engine/simpletemplate.py)."""
    (tmp_path / "hs.yaml").write_text(CLEAN + "allow_guest_access: true\npassword_config:\n  enabled: true\n")
    (tmp_path / "mas.yaml").write_text("matrix:\n  homeserver: example.org\nemail:\n  from: Matrix <a@example.org>\n")
    heavy = ("cerberus", "jsonschema", "ruamel", "jinja2", "email.headerregistry",
             "cryptography.hazmat.primitives.serialization")
    code = ("import sys, cli\n"
            "try:\n    cli.main(['lint', '--synapse-config', 'hs.yaml', '--config', 'mas.yaml'])\n"
            "except SystemExit as e:\n    code = e.code\n"
            f"print('EXIT', code, [m for m in {heavy!r} if m in sys.modules])\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": ROOT}, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "EXIT 10 []", out.stdout + out.stderr
