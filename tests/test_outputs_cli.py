"""Output paths (engine/outputs.py) through the commands: checked before any work, so that no output
replaces an input configuration or a device node, hangs on a pipe, or lands where Synapse reads."""
from __future__ import annotations

import os
import stat

import pytest
from click.testing import CliRunner

import cli

SEEDED = ["--seed", "1", "--clock", "2026-08-07T12:00:00Z"]


def invoke(tmp_path, *args: str):
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        return CliRunner().invoke(cli.main, list(args), catch_exceptions=False)
    finally:
        os.chdir(old)


@pytest.fixture
def configs(tmp_path):
    (tmp_path / "homeserver.yaml").write_text("server_name: example.org\n")
    result = invoke(tmp_path, "config", "generate", "--synapse-config", "homeserver.yaml", "--output", "mas.yaml",
                    *SEEDED)
    assert result.exit_code == 0, result.output
    return {name: (tmp_path / name).read_text() for name in ("homeserver.yaml", "mas.yaml")}


def unchanged(tmp_path, configs) -> bool:
    return all((tmp_path / name).read_text() == text for name, text in configs.items())


def test_generate_refuses_a_pipe_or_device_before_writing(tmp_path, configs):
    os.mkfifo(tmp_path / "pipe")
    for target in ("pipe", os.devnull):
        result = invoke(tmp_path, "config", "generate", "--synapse-config", "homeserver.yaml", "--output", target,
                        *SEEDED)
        assert result.exit_code == 1 and "not a regular file" in result.stderr
    assert stat.S_ISFIFO(os.stat(tmp_path / "pipe").st_mode) and stat.S_ISCHR(os.stat(os.devnull).st_mode)


def test_generate_writes_through_a_symbolic_link(tmp_path, configs):
    os.symlink("mas.yaml", tmp_path / "current.yaml")
    result = invoke(tmp_path, "config", "generate", "--synapse-config", "homeserver.yaml", "--output", "current.yaml",
                    "--tos-uri", "https://example.org/tos", *SEEDED)
    assert result.exit_code == 0, result.output
    assert os.path.islink(tmp_path / "current.yaml")
    assert "https://example.org/tos" in (tmp_path / "mas.yaml").read_text()
    assert stat.S_IMODE(os.stat(tmp_path / "mas.yaml").st_mode) == 0o600


def test_generate_keeps_the_mas_file_out_of_a_synapse_configuration_directory(tmp_path, configs):
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "10-db.yaml").write_text("report_stats: false\n")
    result = invoke(tmp_path, "config", "generate", "--synapse-config", "homeserver.yaml", "--synapse-config",
                    "conf.d", "--output", "conf.d/99-mas.yaml", *SEEDED)
    assert result.exit_code == 1 and "inside the Synapse configuration directory" in result.stderr
    assert not (tmp_path / "conf.d" / "99-mas.yaml").exists()
    # the overlay is for Synapse: it may go there
    result = invoke(tmp_path, "config", "generate", "--synapse-config", "homeserver.yaml", "--synapse-config",
                    "conf.d", "--output", "mas.yaml", "--synapse-patch", "conf.d/99-delegation.yaml", *SEEDED)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("flag", ["--output", "--sarif-file"])
@pytest.mark.parametrize("victim", ["homeserver.yaml", "mas.yaml"])
def test_lint_reports_never_replace_a_configuration(tmp_path, configs, flag, victim):
    result = invoke(tmp_path, "lint", "--synapse-config", "homeserver.yaml", "--config", "mas.yaml", flag, victim)
    assert result.exit_code == 1 and "would overwrite an input configuration" in result.stderr
    assert unchanged(tmp_path, configs)


def test_lint_may_report_to_a_device(tmp_path, configs):
    result = invoke(tmp_path, "lint", "--synapse-config", "homeserver.yaml", "--config", "mas.yaml",
                    "--output", os.devnull, "--sarif-file", os.devnull)
    assert result.exit_code in (0, 11), result.output
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


@pytest.mark.parametrize("command", [["migrate", "--plan"], ["verify"]])
def test_migration_reports_never_replace_a_configuration(tmp_path, configs, command):
    result = invoke(tmp_path, *command, "--synapse-config", "homeserver.yaml", "--config", "mas.yaml",
                    "--synapse-database-uri", "postgresql://nobody@127.0.0.1:1/none",
                    "--mas-database-uri", "postgresql://nobody@127.0.0.1:1/none", "--report", "mas.yaml")
    assert result.exit_code == 1 and "would overwrite an input configuration" in result.output
    assert unchanged(tmp_path, configs)
