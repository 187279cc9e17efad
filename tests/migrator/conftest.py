"""Fixtures for the migrator tests.

Cloning a database from a template takes about 2 s, so the migrator tests override `synapse_db` and
`mas_db` with one clone per session that is emptied (TRUNCATE) before each test; tests that change a
schema use the `fresh_*` fixtures, which clone as tests/conftest.py does.
"""
from __future__ import annotations

import itertools
import os

import psycopg
import pytest

from migrator import pgserver
from mighelpers import MAS_TABLES, SYNAPSE_TABLES, add_provider

_n = itertools.count()


def _clone(pg_server, template: str, prefix: str) -> tuple[str, str]:
    name = f"{prefix}_{os.getpid()}_{next(_n)}"
    return name, pgserver.create_database(pg_server, name, template=template)


@pytest.fixture(scope="session")
def _shared_synapse(pg_server, synapse_template):
    name, uri = _clone(pg_server, synapse_template, "mig_synapse")
    yield uri
    pgserver.drop_database(pg_server, name)


@pytest.fixture(scope="session")
def _shared_mas(pg_server, mas_template):
    name, uri = _clone(pg_server, mas_template, "mig_mas")
    yield uri
    pgserver.drop_database(pg_server, name)


@pytest.fixture
def synapse_db(_shared_synapse):
    """The real Synapse schema, with the six tables syn2mas reads emptied."""
    with psycopg.connect(_shared_synapse, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {SYNAPSE_TABLES} CASCADE")
    return _shared_synapse


@pytest.fixture
def mas_db(_shared_mas):
    """The MAS schema fixture, emptied."""
    with psycopg.connect(_shared_mas, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {MAS_TABLES} CASCADE")
    return _shared_mas


@pytest.fixture
def fresh_mas_db(pg_server, mas_template):
    """A private clone of the MAS schema fixture, for tests that change the schema."""
    name, uri = _clone(pg_server, mas_template, "mig_mas_fresh")
    yield uri
    pgserver.drop_database(pg_server, name)


@pytest.fixture
def fresh_synapse_db(pg_server, synapse_template):
    """A private clone of the Synapse schema, for tests that change the schema."""
    name, uri = _clone(pg_server, synapse_template, "mig_synapse_fresh")
    yield uri
    pgserver.drop_database(pg_server, name)


@pytest.fixture
def mas(mas_db):
    """The MAS fixture database with the test provider synced."""
    add_provider(mas_db)
    return mas_db
