"""Shared fixtures: one real PostgreSQL per test session, template databases cloned per test."""
from __future__ import annotations

import itertools
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from migrator import pgserver  # noqa: E402

SHARED = os.environ.get("SYN2MAS_SHARED", os.path.join(os.path.dirname(ROOT), "shared"))
SYNAPSE_SCHEMA = os.path.join(SHARED, "synapse", "schema.sql")
MAS_JSON_SCHEMA = os.path.join(SHARED, "mas", "config.schema.json")
MAS_SCHEMA_FIXTURE = os.path.join(ROOT, "fixtures", "mas", "schema.sql")

_counter = itertools.count()


def pytest_addoption(parser):
    parser.addoption("--update-goldens", action="store_true", default=False,
                     help="rewrite expected outputs under fixtures/*/expected")


@pytest.fixture(scope="session")
def shared_dir() -> str:
    assert os.path.isdir(SHARED), f"reference material not found at {SHARED} (set SYN2MAS_SHARED)"
    return SHARED


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL server for the whole session, stopped at the end."""
    server = pgserver.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def synapse_template(pg_server) -> str:
    """A database holding the real Synapse schema (../shared/synapse/schema.sql)."""
    name = "synapse_template"
    pgserver.create_database(pg_server, name)
    pgserver.load_sql_file(pg_server, name, SYNAPSE_SCHEMA)
    return name


@pytest.fixture(scope="session")
def mas_template(pg_server) -> str:
    """A database holding our MAS schema fixture (fixtures/mas/schema.sql)."""
    name = "mas_template"
    pgserver.create_database(pg_server, name)
    pgserver.load_sql_file(pg_server, name, MAS_SCHEMA_FIXTURE)
    return name


def _clone(pg_server, template: str, prefix: str):
    name = f"{prefix}_{os.getpid()}_{next(_counter)}"
    uri = pgserver.create_database(pg_server, name, template=template)
    return name, uri


@pytest.fixture
def synapse_db(pg_server, synapse_template):
    """A fresh copy of the Synapse schema for one test; yields its URI."""
    name, uri = _clone(pg_server, synapse_template, "synapse")
    yield uri
    pgserver.drop_database(pg_server, name)


@pytest.fixture
def mas_db(pg_server, mas_template):
    """A fresh copy of the MAS schema fixture for one test; yields its URI."""
    name, uri = _clone(pg_server, mas_template, "mas")
    yield uri
    pgserver.drop_database(pg_server, name)
