"""Hostile Synapse and MAS configurations for `lint`, `check`, `migrate` and `verify` (and `config generate` in
test_fault_generate.py): whatever the files hold, the commands exit 0, 1, 10 or 11 (checks.md §2), never
print a traceback or let an exception escape, and an exit 1 names the file (or the database) at fault.
"""
from __future__ import annotations

import copy
import os

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cli
from faulthelpers import db_state, mas_yaml, synapse_yaml
from hostile import (BASE_MAS, BASE_SYNAPSE, RAW_BYTES, RAW_MUTATIONS, assert_clean, file_text, mutated, to_yaml,
                     write)

FORMATS = ["text", "json", "sarif", "github", "parsable"]
# The database sections are broken in controlled ways only (test_hostile_database_sections): a random
# host name would make libpq look it up.
NO_DB = ("database",)
fast = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


def yaml_of(text: str) -> dict:
    from engine.yamlsource import load_yaml_text

    return load_yaml_text(text, "inline.yaml", (1, 2)).data


def invoke(args: list[str]):
    return CliRunner().invoke(cli.main, args, catch_exceptions=True)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    base_hs = write(str(d / "base-homeserver.yaml"), to_yaml(BASE_SYNAPSE))
    base_mas = write(str(d / "base-mas.yaml"), to_yaml(BASE_MAS))
    return d, base_hs, base_mas


def test_the_base_configurations_are_sound(workdir):
    """The starting point is accepted (with findings): the hostility below is what breaks things."""
    d, hs, mas = workdir
    result = invoke(["lint", "--synapse-config", hs, "--config", mas, "--format", "json"])
    assert_clean(result, [hs, mas], allowed={10, 11})
    assert '"findings"' in result.output


@fast
@given(doc=mutated(BASE_SYNAPSE, NO_DB), fmt=st.sampled_from(FORMATS), ascii_only=st.booleans())
def test_lint_hostile_synapse_values(workdir, doc, fmt, ascii_only):
    d, _, mas = workdir
    hs = write(str(d / "homeserver.yaml"), to_yaml(doc, ascii_only))
    assert_clean(invoke(["lint", "--synapse-config", hs, "--config", mas, "--format", fmt]), [hs, mas])


@fast
@given(doc=mutated(BASE_MAS, NO_DB), fmt=st.sampled_from(FORMATS), ascii_only=st.booleans())
def test_lint_hostile_mas_values(workdir, doc, fmt, ascii_only):
    d, hs, _ = workdir
    mas = write(str(d / "mas.yaml"), to_yaml(doc, ascii_only))
    assert_clean(invoke(["lint", "--synapse-config", hs, "--config", mas, "--format", fmt]), [hs, mas])


@pytest.mark.parametrize("side", ["synapse", "mas"])
@pytest.mark.parametrize("kind", sorted(RAW_MUTATIONS) + sorted(RAW_BYTES))
def test_lint_hostile_files(workdir, side, kind):
    d, hs, mas = workdir
    path = write(str(d / f"{side}-{kind}.yaml"), file_text(BASE_SYNAPSE if side == "synapse" else BASE_MAS, kind))
    if side == "synapse":
        hs = path
    else:
        mas = path
    result = invoke(["lint", "--synapse-config", hs, "--config", mas])
    assert_clean(result, [path])
    if result.exit_code == 1:  # a file that cannot be used is named, not just any file
        assert path in result.output or os.path.basename(path) in result.output, result.output


def _special_paths(d) -> dict[str, str]:
    empty_dir = d / "empty-dir"
    empty_dir.mkdir(exist_ok=True)
    conf_d = d / "conf.d"
    conf_d.mkdir(exist_ok=True)
    (conf_d / "sub").mkdir(exist_ok=True)
    write(str(conf_d / "10-base.yaml"), to_yaml(BASE_SYNAPSE))
    write(str(conf_d / "20-broken.yaml"), "password_config: [\n")
    loop = d / "loop.yaml"
    if not os.path.lexists(loop):
        os.symlink(loop, loop)
    dangling = d / "dangling.yaml"
    if not os.path.lexists(dangling):
        os.symlink(d / "nowhere.yaml", dangling)
    odd = d / "n\u00e4me with spaces & $ymbols.yaml"
    write(str(odd), to_yaml(BASE_SYNAPSE))
    return {"missing": str(d / "missing.yaml"), "empty-dir": str(empty_dir), "conf-dir": str(conf_d),
            "dev-null": "/dev/null", "symlink-loop": str(loop), "dangling-symlink": str(dangling),
            "empty-string": "", "odd-name": str(odd), "root-dir": "/"}


@pytest.mark.parametrize("which", ["missing", "empty-dir", "conf-dir", "dev-null", "symlink-loop",
                                   "dangling-symlink", "empty-string", "odd-name", "root-dir"])
@pytest.mark.parametrize("side", ["synapse", "mas"])
def test_lint_special_paths(workdir, which, side):
    d, hs, mas = workdir
    path = _special_paths(d)[which]
    args = ["lint", "--synapse-config", path if side == "synapse" else hs, "--config", path if side == "mas" else mas]
    result = invoke(args)
    if not path:
        assert_clean(result, [], allowed={1}, named=False)
        assert "empty path" in result.output
        return
    assert_clean(result, [path, hs, mas])
    if result.exit_code == 1:
        assert path in result.output or os.path.basename(path) in result.output, result.output


def test_lint_output_paths(workdir):
    """`--output`/`--sarif-file` into a missing directory or onto a directory: exit 1 naming the path."""
    d, hs, mas = workdir
    for option in ("--output", "--sarif-file"):
        for target in (str(d / "no-such-dir" / "out.json"), str(d)):
            result = invoke(["lint", "--synapse-config", hs, "--config", mas, option, target])
            assert_clean(result, [target])
            assert result.exit_code == 1, result.output
            assert target in result.output, result.output


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(hs_doc=mutated(BASE_SYNAPSE, NO_DB), mas_doc=mutated(BASE_MAS, NO_DB))
def test_check_hostile_configs_no_database_reachable(workdir, hs_doc, mas_doc):
    """Both database sections point at a closed port: exit 1 naming the database key's file, or an
    earlier configuration failure naming its file."""
    d, _, _ = workdir
    hs = write(str(d / "check-homeserver.yaml"), to_yaml(hs_doc))
    mas = write(str(d / "check-mas.yaml"), to_yaml(mas_doc))
    result = invoke(["check", "--synapse-config", hs, "--config", mas])
    assert_clean(result, [hs, mas], databases=True)
    assert result.exit_code == 1


# Database sections broken in every way that keeps libpq on this machine.
SYNAPSE_DATABASES = [
    {"name": "psycopg2", "args": {"host": "127.0.0.1", "port": "not-a-port"}},
    {"name": "psycopg2", "args": {"host": "127.0.0.1", "port": [5432]}},
    {"name": "psycopg2", "args": {"host": "127.0.0.1", "port": {"a": 1}}},
    {"name": "psycopg2", "args": {"host": "127.0.0.1", "port": -1}},
    {"name": "psycopg2", "args": {"host": "127.0.0.1", "port": 99999999}},
    {"name": "psycopg2", "args": {"host": "127.0.0.1", "port": 1, "sslmode": "bogus"}},
    {"name": "psycopg2", "args": {"host": "127.0.0.1", "port": 1, "dbname": "a", "database": "b"}},
    {"name": "psycopg2", "args": {"host": "127.0.0.1", "port": 1, "user": True, "password": 12345}},
    {"name": "psycopg2", "args": {"host": "127.0.0.1", "port": 1, "options": "-c statement_timeout=\u00e9"}},
    {"name": "psycopg2", "args": {"host": "/nonexistent/socket/dir"}},
    {"name": "psycopg2", "args": {"host": "127.0.0.1", "port": 1, "not_a_libpq_keyword": "x"}},
    {"name": "psycopg2", "args": {"host": "127.0.0.1", "port": 1, "dbname": "x\u0000y"}},
    {"name": "psycopg2", "args": ["host", "127.0.0.1"]},
    {"name": "psycopg2", "args": "host=127.0.0.1 port=1"},
    {"name": "psycopg2", "args": None},
    {"name": "psycopg2"},
    {"name": "mysql", "args": {"host": "127.0.0.1"}},
    {"name": ["psycopg2"], "args": {}},
    {"name": "sqlite3", "args": {"database": "/nonexistent/homeserver.db"}},
    {"name": "sqlite3", "args": {"database": "/"}},
    {"name": "sqlite3", "args": {"database": "/dev/null"}},
    {"name": "sqlite3", "args": {"database": "GARBAGE"}},
    {"name": "sqlite3", "args": {"database": 5}},
    {"name": "sqlite3", "args": {}},
    {"name": "sqlite3"},
    "postgresql://127.0.0.1:1/synapse",
    ["psycopg2"],
    5,
]
MAS_DATABASES = [
    {"uri": "postgresql://127.0.0.1:1/mas"},
    {"uri": "postgresql://[::1"},
    {"uri": "not a uri at all \u00e9"},
    {"uri": "host=127.0.0.1 port=1 sslmode=bogus"},
    {"uri": 5},
    {"uri": ["postgresql://127.0.0.1:1/mas"]},
    {"host": "127.0.0.1", "port": "abc"},
    {"host": "127.0.0.1", "port": 1, "ssl_mode": "bogus"},
    {"host": "127.0.0.1", "port": 1, "username": {"a": 1}},
    {"socket": "/nonexistent/socket/dir"},
    "postgresql://127.0.0.1:1/mas",
    [1, 2],
]


@pytest.mark.parametrize("database", SYNAPSE_DATABASES, ids=lambda v: repr(v)[:40])
def test_check_and_migrate_hostile_synapse_database_section(workdir, database):
    d, _, mas = workdir
    doc = copy.deepcopy(BASE_SYNAPSE)
    doc["database"] = database
    if isinstance(database, dict) and database.get("args") == {"database": "GARBAGE"}:
        write(str(d / "GARBAGE"), b"this is not an SQLite database" * 100)
        database["args"]["database"] = str(d / "GARBAGE")
    hs = write(str(d / "db-homeserver.yaml"), to_yaml(doc))
    for command in (["check"], ["migrate", "--dry-run", "--report", str(d / "r.json")], ["verify"]):
        result = invoke([*command, "--synapse-config", hs, "--config", mas])
        assert_clean(result, [hs, mas], databases=True)
        if command[0] == "migrate" and result.exit_code == 10:
            # The base configurations have errors: `migrate` refuses on them before opening any database
            # (checks.md 5); a section too malformed to resolve is still exit 1, as asserted below.
            assert "nothing was opened or written" in result.output, result.output
            continue
        assert result.exit_code == 1, result.output
    assert not os.path.exists(d / "r.json")


@pytest.mark.parametrize("database", MAS_DATABASES, ids=lambda v: repr(v)[:40])
def test_check_and_migrate_hostile_mas_database_section(workdir, small_synapse, database):
    """The Synapse side is sound (and matches the data), so every command gets as far as MAS."""
    d, _, _ = workdir
    hs = write(str(d / "small-homeserver.yaml"), synapse_yaml(small_synapse))
    doc = yaml_of(mas_yaml("postgresql://127.0.0.1:1/unused"))
    doc["database"] = database
    mas = write(str(d / "db-mas.yaml"), to_yaml(doc))
    before = db_state(small_synapse)
    for command in (["check"], ["migrate", "--dry-run", "--report", str(d / "r.json")], ["verify"]):
        result = invoke([*command, "--synapse-config", hs, "--config", mas])
        assert_clean(result, [hs, mas], databases=True)
        assert result.exit_code == 1, result.output
        assert "MAS database" in result.output or mas in result.output, result.output
    assert not os.path.exists(d / "r.json")
    assert db_state(small_synapse) == before


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(hs_doc=mutated(BASE_SYNAPSE, NO_DB), mas_doc=mutated(BASE_MAS, NO_DB))
def test_check_and_dry_run_hostile_configs_on_real_databases(workdir, small_synapse, target_mas, hs_doc, mas_doc):
    """Hostile configurations against the real databases (`check`, then `migrate --dry-run`): only known
    exit codes, and both databases end exactly as they were."""
    d, _, _ = workdir
    mas_uri, baseline = target_mas
    hs = write(str(d / "real-homeserver.yaml"), to_yaml(hs_doc))
    mas = write(str(d / "real-mas.yaml"), to_yaml(mas_doc))
    before = db_state(small_synapse)
    overrides = ["--synapse-database-uri", small_synapse, "--mas-database-uri", mas_uri]
    result = invoke(["check", "--synapse-config", hs, "--config", mas, *overrides])
    assert_clean(result, [hs, mas])
    result = invoke(["migrate", "--dry-run", "--synapse-config", hs, "--config", mas, *overrides,
                     "--report", str(d / "dry.json")])
    assert_clean(result, [hs, mas], allowed={0, 1, 10})
    assert db_state(small_synapse) == before
    assert db_state(mas_uri) == baseline
