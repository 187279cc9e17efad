"""`syn2mas config generate` as the admin runs it: exit codes, files written, nothing secret printed."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

import cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEEDED = ["--seed", "1", "--clock", "2026-08-07T12:00:00Z"]


def _invoke(args, cwd):
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(cli.main, ["config", "generate", *args], catch_exceptions=False)
    finally:
        os.chdir(old)


def test_generate_writes_both_files_0600_and_reports_on_stderr(tmp_path):
    (tmp_path / "homeserver.yaml").write_text(
        "server_name: example.org\nenable_registration: true\noidc_providers:\n"
        "  - {idp_id: a, issuer: 'https://id.example.org/', client_id: a, idp_icon: 'mxc://x/y'}\n")
    result = _invoke(["--synapse-config", "homeserver.yaml", "--output", "mas.yaml", "--synapse-patch", "patch.yaml",
                      "--trace", "trace.json", *SEEDED], tmp_path)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    for name in ("mas.yaml", "patch.yaml"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert "homeserver.yaml:4:" in result.stderr and "[warning] Provider `oidc-a`: `idp_icon`" in result.stderr
    assert "wrote a fresh configuration to mas.yaml" in result.stderr
    assert "replace `enable_registration` in homeserver.yaml line 2 with: enable_registration: false" in result.stderr
    assert result.stderr.rstrip().endswith("1 warning, 1 note")
    trace = json.loads((tmp_path / "trace.json").read_text())
    assert trace["compat"] == "syn2mas"
    assert {"to": "matrix.homeserver", "from": "S:server_name", "rule": "matrix.homeserver",
            "origin": "homeserver.yaml:1:1", "document": "mas"} in trace["trace"]
    again = _invoke(["--synapse-config", "homeserver.yaml", "--output", "mas.yaml", "--seed", "2"], tmp_path)
    assert again.exit_code == 0 and "updated mas.yaml" in again.stderr


def test_generate_then_lint_exits_as_lint_does(tmp_path):
    """`generate --lint` (checks.md 5): the output is written, then linted with the Synapse configuration."""
    (tmp_path / "homeserver.yaml").write_text("server_name: example.org\n")
    clean = _invoke(["--synapse-config", "homeserver.yaml", "--output", "mas.yaml", "--lint", *SEEDED], tmp_path)
    assert clean.exit_code == 0, clean.output
    assert (tmp_path / "mas.yaml").exists() and "0 errors, 0 warnings" in clean.stdout
    (tmp_path / "homeserver.yaml").write_text("server_name: example.org\nallow_guest_access: true\n")
    guests = _invoke(["--synapse-config", "homeserver.yaml", "--output", "mas.yaml", "--lint", *SEEDED], tmp_path)
    assert guests.exit_code == 10, guests.output
    assert "2:1  error" in guests.stdout and "guest-access-enabled" in guests.stdout
    without = _invoke(["--synapse-config", "homeserver.yaml", "--output", "mas.yaml", *SEEDED], tmp_path)
    assert without.exit_code == 0 and without.stdout == ""


def test_synapse_patch_for_an_existing_mas_configuration(tmp_path):
    """`syn2mas synapse-patch` (mapping.md 7.7) writes, for a MAS configuration as it is, the overlay that
    `generate --synapse-patch` writes with the configuration it generates; its secret stays in the file."""
    (tmp_path / "homeserver.yaml").write_text(
        "server_name: example.org\nenable_registration: true\n"
        "matrix_authentication_service: {enabled: false, secret: Old-Disabled-Secret-000000000001}\n")
    generated = _invoke(["--synapse-config", "homeserver.yaml", "--output", "mas.yaml", "--synapse-patch",
                         "generated-patch.yaml", *SEEDED], tmp_path)
    assert generated.exit_code == 0, generated.output

    def patch(*args):
        old = os.getcwd()
        os.chdir(tmp_path)
        try:
            return CliRunner().invoke(cli.main, ["synapse-patch", "--synapse-config", "homeserver.yaml",
                                                 "--config", "mas.yaml", *args], catch_exceptions=False)
        finally:
            os.chdir(old)

    result = patch("--output", "patch.yaml")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "patch.yaml").read_text() == (tmp_path / "generated-patch.yaml").read_text()
    assert stat.S_IMODE((tmp_path / "patch.yaml").stat().st_mode) == 0o600
    assert "replace `enable_registration` in homeserver.yaml line 2 with: enable_registration: false" in result.stderr
    secret = "Old-Disabled-Secret-000000000001"
    assert secret in (tmp_path / "patch.yaml").read_text() and secret not in result.output
    # the admin then moves MAS to another address: the overlay follows the MAS configuration as it is
    mas_text = (tmp_path / "mas.yaml").read_text()
    (tmp_path / "mas.yaml").write_text(mas_text.replace("public_base: http://[::]:8080/",
                                                        "public_base: https://auth.example.org/"))
    assert patch("--output", "patch.yaml").exit_code == 0
    assert "endpoint: https://auth.example.org/" in (tmp_path / "patch.yaml").read_text()
    before = (tmp_path / "mas.yaml").read_text()
    refused = patch("--output", "mas.yaml")
    assert refused.exit_code == 1 and "would overwrite an input configuration" in refused.stderr
    assert (tmp_path / "mas.yaml").read_text() == before


def test_a_duplicate_key_in_the_existing_mas_file_is_reported_without_its_values(tmp_path):
    (tmp_path / "homeserver.yaml").write_text("server_name: example.org\n")
    (tmp_path / "mas.yaml").write_text("matrix:\n  homeserver: example.org\n  secret: Pepper-Secret-42\n"
                                       "  secret: Pepper-Secret-42-v2\n")
    result = _invoke(["--synapse-config", "homeserver.yaml", "--output", "mas.yaml", *SEEDED], tmp_path)
    assert result.exit_code == 1
    assert 'mas.yaml:4:3: YAML syntax error: found duplicate key "secret"' in result.stderr
    assert "Pepper-Secret" not in result.output


@pytest.mark.parametrize("value", ["1234", "''", "'matrix example.org'"])
def test_a_server_name_synapse_refuses_stops_generate(tmp_path, value):
    (tmp_path / "homeserver.yaml").write_text(f"report_stats: false\nserver_name: {value}\n")
    result = _invoke(["--synapse-config", "homeserver.yaml", "--output", "mas.yaml", *SEEDED], tmp_path)
    _assert_usage_error(result, tmp_path, "homeserver.yaml:2:1: `server_name`", "Synapse refuses to start with it")


def _assert_usage_error(result, tmp_path, *fragments):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.stderr
    assert not (tmp_path / "mas.yaml").exists()


def test_malformed_yaml_exits_1_with_file_and_line(tmp_path):
    (tmp_path / "homeserver.yaml").write_text("server_name: x\npassword_config: [\n")
    result = _invoke(["--synapse-config", "homeserver.yaml", "--output", "mas.yaml"], tmp_path)
    _assert_usage_error(result, tmp_path, "error: homeserver.yaml:3:1: YAML syntax error")


def test_wrong_types_exit_1_with_file_line_and_key(tmp_path):
    (tmp_path / "homeserver.yaml").write_text("server_name: x\noidc_providers:\n  idp_id: a\n")
    result = _invoke(["--synapse-config", "homeserver.yaml", "--output", "mas.yaml"], tmp_path)
    _assert_usage_error(result, tmp_path, "error: homeserver.yaml:2:1: `oidc_providers` must be a list, not a mapping",
                        "(key `oidc_providers`)")


def test_unsupported_tag_missing_file_and_bad_existing_output_exit_1(tmp_path):
    (tmp_path / "tagged.yaml").write_text("server_name: !include name.yaml\n")
    _assert_usage_error(_invoke(["--synapse-config", "tagged.yaml", "--output", "mas.yaml"], tmp_path), tmp_path,
                        "tagged.yaml:1:14", "unsupported YAML tag")
    _assert_usage_error(_invoke(["--synapse-config", "missing.yaml", "--output", "mas.yaml"], tmp_path), tmp_path,
                        "missing.yaml", "not found")
    (tmp_path / "homeserver.yaml").write_text("server_name: x\n")
    (tmp_path / "old.yaml").write_text("matrix: {secret: [\n")
    _assert_usage_error(_invoke(["--synapse-config", "homeserver.yaml", "--output", "mas.yaml", "--from-mas",
                                 "old.yaml"], tmp_path), tmp_path, "old.yaml:2:1")


def test_outputs_never_overwrite_an_input_or_each_other(tmp_path):
    (tmp_path / "homeserver.yaml").write_text("server_name: x\n")
    result = _invoke(["--synapse-config", "homeserver.yaml", "--output", "./homeserver.yaml"], tmp_path)
    assert result.exit_code == 1 and "would overwrite an input configuration" in result.stderr
    assert (tmp_path / "homeserver.yaml").read_text() == "server_name: x\n"
    result = _invoke(["--synapse-config", "homeserver.yaml", "--output", "out.yaml", "--synapse-patch", "out.yaml"],
                     tmp_path)
    _assert_usage_error(result, tmp_path, "options --output and --synapse-patch name the same file")


def test_the_installed_command_runs_without_a_traceback(tmp_path):
    (tmp_path / "homeserver.yaml").write_text("server_name: x\nemail: 5\n")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "cli.py"), "config", "generate", "--synapse-config",
                           "homeserver.yaml", "--output", "mas.yaml"], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": ROOT})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "homeserver.yaml:2:1: `email` must be a mapping or false, not a number" in proc.stderr


_SECRET = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x24FF, blacklist_categories=("Cs", "Cc")),
                  min_size=10, max_size=40).map(lambda s: "Zq" + s)


@pytest.fixture(scope="module")
def existing_mas(tmp_path_factory) -> str:
    """A MAS configuration to update, so that the property runs do not each generate RSA keys."""
    workdir = tmp_path_factory.mktemp("base")
    (workdir / "homeserver.yaml").write_text("server_name: example.org\n")
    assert _invoke(["--synapse-config", "homeserver.yaml", "--output", "mas.yaml", *SEEDED], workdir).exit_code == 0
    return str(workdir / "mas.yaml")


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pepper=_SECRET, client_secret=_SECRET, smtp_pass=_SECRET, captcha=_SECRET, shared=_SECRET)
def test_secrets_never_reach_stdout_or_stderr(tmp_path_factory, existing_mas, pepper, client_secret, smtp_pass,
                                              captcha, shared):
    workdir = tmp_path_factory.mktemp("secrets")
    config = {
        "server_name": "example.org",
        "password_config": {"pepper": pepper, "policy": {"minimum_length": 8}},
        "enable_registration": True, "enable_registration_captcha": True,
        "recaptcha_public_key": "site-key", "recaptcha_private_key": captcha,
        "email": {"smtp_host": "mail.example.org", "smtp_user": "u", "smtp_pass": smtp_pass, "notif_from": "a@b.org"},
        "matrix_authentication_service": {"enabled": True, "secret": shared},
        "oidc_providers": [{"idp_id": "a", "issuer": "https://id.example.org/", "client_id": "c",
                            "client_secret": client_secret, "client_secret_path": "/etc/s", "idp_icon": "mxc://x",
                            "client_auth_method": "none", "scopes": ["openid", "bad scope"]}],
    }
    # JSON is YAML; the dump quotes every secret however odd its characters.
    (workdir / "homeserver.yaml").write_text(json.dumps(config, ensure_ascii=False))
    result = _invoke(["--synapse-config", "homeserver.yaml", "--output", "mas.yaml", "--synapse-patch", "patch.yaml",
                      "--from-mas", existing_mas], workdir)
    assert result.exit_code == 0, result.stderr
    printed = result.stdout + result.stderr
    for secret in (pepper, client_secret, smtp_pass, captcha, shared):
        assert secret not in printed
    # ...while the files carry them, exactly (quoted so that YAML gives them back unchanged).
    written = YAML(typ="safe", pure=True).load((workdir / "mas.yaml").read_text(encoding="utf-8"))
    assert written["passwords"]["schemes"][0]["secret"] == pepper
    assert written["email"]["password"] == smtp_pass and written["matrix"]["secret"] == shared
    assert written["captcha"]["secret_key"] == captcha
