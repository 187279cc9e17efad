"""Hostile inputs for `syn2mas config generate` (README step 1; checks.md §2: generate exits 0, or 1 on bad
input): never a traceback, exit 1 names the file, a failure writes nothing (a previous output stays
byte-identical, no temporary file is left behind), and whatever it writes holding secrets is mode 0600.
"""
from __future__ import annotations

import copy
import os
import stat
import tempfile

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cli
from hostile import BASE_MAS, BASE_SYNAPSE, RAW_BYTES, RAW_MUTATIONS, assert_clean, file_text, mutated, to_yaml, write

fast = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))


def listing(directory: str) -> dict[str, bytes]:
    """Every file below ``directory`` with its content."""
    out = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, directory)] = fh.read()
    return out


def generate(hs: str, out: str, *extra: str):
    return CliRunner().invoke(cli.main, ["config", "generate", "--synapse-config", hs, "--output", out,
                                         "--seed", "faults", *extra])


def assert_private(path: str) -> None:
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode == 0o600, f"{path} has mode {oct(mode)}"


def check_outcome(result, hs: str, outdir: str, before: dict[str, bytes], written: list[str],
                  named: bool = True) -> None:
    """The invariants of one generate run into ``outdir`` (which held ``before``)."""
    assert_clean(result, [hs, *written], allowed={0, 1}, named=named)
    after = listing(outdir)
    if result.exit_code == 1:
        assert after == before, "a failed generate changed its outputs: " + ", ".join(
            sorted(set(after) ^ set(before) | {k for k in after if before.get(k) != after[k]}))
        return
    for path in written:
        if os.path.isdir(path):
            for name in os.listdir(path):
                assert_private(os.path.join(path, name))
        else:
            assert_private(path)
    leftovers = [name for name in after if name not in before and os.path.join(outdir, name) not in written
                 and not any(os.path.join(outdir, name).startswith(w + os.sep) for w in written)]
    assert not leftovers, f"files left behind: {leftovers}"


@fast
@given(doc=mutated(BASE_SYNAPSE), secrets_dir=st.booleans(), ascii_only=st.booleans())
def test_generate_hostile_synapse_values(tmp_path_factory, doc, secrets_dir, ascii_only):
    d = tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp())
    hs = write(os.path.join(d, "homeserver.yaml"), to_yaml(doc, ascii_only))
    outdir = os.path.join(d, "out")
    os.mkdir(outdir)
    out, patch, sd = (os.path.join(outdir, n) for n in ("mas.yaml", "delegation.yaml", "secrets"))
    extra = ["--synapse-patch", patch] + (["--secrets-dir", sd] if secrets_dir else [])
    result = generate(hs, out, *extra)
    check_outcome(result, hs, outdir, {}, [out, patch] + ([sd] if secrets_dir else []))
    if result.exit_code == 0:
        lint = CliRunner().invoke(cli.main, ["lint", "--synapse-config", hs, "--config", out])
        assert_clean(lint, [hs, out])


@fast
@given(doc=mutated(BASE_MAS))
def test_generate_updates_a_hostile_existing_mas_file(tmp_path_factory, doc):
    """`--output` names an existing (hostile) MAS configuration, which generate updates in place: on failure
    it stays byte-identical."""
    d = tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp())
    hs = write(os.path.join(d, "homeserver.yaml"), to_yaml(BASE_SYNAPSE))
    outdir = os.path.join(d, "out")
    os.mkdir(outdir)
    out = write(os.path.join(outdir, "mas.yaml"), to_yaml(doc))
    os.chmod(out, 0o600)
    before = listing(outdir)
    check_outcome(generate(hs, out), hs, outdir, before, [out])


@pytest.mark.parametrize("side", ["synapse", "existing-mas"])
@pytest.mark.parametrize("kind", sorted(RAW_MUTATIONS) + sorted(RAW_BYTES))
def test_generate_hostile_files(tmp_path, side, kind):
    outdir = tmp_path / "out"
    outdir.mkdir()
    out = str(outdir / "mas.yaml")
    if side == "synapse":
        hs = write(str(tmp_path / "homeserver.yaml"), file_text(BASE_SYNAPSE, kind))
    else:
        hs = write(str(tmp_path / "homeserver.yaml"), to_yaml(BASE_SYNAPSE))
        write(out, file_text(BASE_MAS, kind))
        os.chmod(out, 0o600)
    before = listing(str(outdir))
    result = generate(hs, out, "--synapse-patch", str(outdir / "delegation.yaml"))
    check_outcome(result, hs, str(outdir), before, [out, str(outdir / "delegation.yaml")])
    if result.exit_code == 1:
        at_fault = hs if side == "synapse" else out
        assert at_fault in result.output or os.path.basename(at_fault) in result.output, result.output


def test_generate_hostile_output_paths(tmp_path):
    """Outputs into a missing directory, onto a directory, onto the input, a secrets directory that is a
    file: exit 1 naming the path, and nothing written anywhere."""
    hs = write(str(tmp_path / "homeserver.yaml"), to_yaml(BASE_SYNAPSE))
    (tmp_path / "a-dir").mkdir()
    write(str(tmp_path / "a-file"), "not a directory")
    cases = [
        (str(tmp_path / "missing" / "mas.yaml"), []),
        (str(tmp_path / "a-dir"), []),
        (hs, []),
        (str(tmp_path / "mas.yaml"), ["--synapse-patch", str(tmp_path / "missing" / "patch.yaml")]),
        (str(tmp_path / "mas.yaml"), ["--synapse-patch", hs]),
        (str(tmp_path / "mas.yaml"), ["--synapse-patch", str(tmp_path / "mas.yaml")]),
        (str(tmp_path / "mas.yaml"), ["--secrets-dir", str(tmp_path / "a-file")]),
        (str(tmp_path / "missing" / "mas.yaml"), ["--secrets-dir", str(tmp_path / "secrets")]),
        (str(tmp_path / "mas.yaml"), ["--secrets-dir", str(tmp_path / "secrets"),
                                      "--synapse-patch", str(tmp_path / "a-dir")]),
        (str(tmp_path / "mas.yaml"), ["--secrets-dir", str(tmp_path / "secrets"),
                                      "--trace", str(tmp_path / "missing" / "trace.json")]),
        (str(tmp_path / "mas.yaml"), ["--trace", str(tmp_path / "missing" / "trace.json")]),
        (str(tmp_path / "mas.yaml"), ["--from-mas", str(tmp_path / "missing.yaml")]),
        (str(tmp_path / "mas.yaml"), ["--from-mas", str(tmp_path / "a-dir")]),
    ]
    before = listing(str(tmp_path))
    for out, extra in cases:
        result = generate(hs, out, *extra)
        named = [out] + [e for e in extra if e.startswith(str(tmp_path))]
        assert_clean(result, named, allowed={1})
        assert listing(str(tmp_path)) == before, (out, extra)
        assert not os.path.exists(tmp_path / "mas.yaml")


@pytest.mark.parametrize("option", ["--tos-uri", "--synapse-url", "--mas-internal-url", "--mas-database-uri"])
@pytest.mark.parametrize("value", ["", "not a url", "javascript:alert(1)", "https://[::1", "http://x:99999/",
                                   "\u00e9\u202e" * 50, "x" * 100_000, "postgresql://u:p@/db?sslmode=bogus"])
def test_generate_hostile_option_values(tmp_path, option, value):
    hs = write(str(tmp_path / "homeserver.yaml"), to_yaml(BASE_SYNAPSE))
    outdir = tmp_path / "out"
    outdir.mkdir()
    result = generate(hs, str(outdir / "mas.yaml"), option, value)
    check_outcome(result, hs, str(outdir), {}, [str(outdir / "mas.yaml")], named=False)
    if result.exit_code == 1:  # a bad option value is named by its option
        assert option in result.output, result.output


def test_generate_hostile_synapse_database_sections(tmp_path):
    """Broken `database` sections (generate reads them only to describe MAS's own database)."""
    from test_fault_configs import SYNAPSE_DATABASES

    for i, database in enumerate(SYNAPSE_DATABASES[::2]):  # every shape class, half the values
        doc = copy.deepcopy(BASE_SYNAPSE)
        doc["database"] = database
        hs = write(str(tmp_path / f"hs-{i}.yaml"), to_yaml(doc))
        outdir = tmp_path / f"out-{i}"
        outdir.mkdir()
        result = generate(hs, str(outdir / "mas.yaml"))
        check_outcome(result, hs, str(outdir), {}, [str(outdir / "mas.yaml")])
