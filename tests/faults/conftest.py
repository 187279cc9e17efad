"""Fixtures of the fault tests: a Synapse database with a few thousand users (the real schema filled by
../shared/bench/scale-synapse-db.sql) and a MAS database with the test provider synced.

Both are session-wide: every fault test must leave MAS exactly as it found it (that is what they test), and
a test that commits empties the MAS tables again (`reset_mas`) and checks the state is back to the baseline.
"""
from __future__ import annotations

import itertools
import os

import pytest

from faulthelpers import Monitor, add_provider, db_state, reset_mas, scale_synapse
from migrator import pgserver

SCALE_USERS = 3000
_n = itertools.count()


def clone(pg_server, template: str, prefix: str) -> tuple[str, str]:
    name = f"{prefix}_{os.getpid()}_{next(_n)}"
    return name, pgserver.create_database(pg_server, name, template=template)


@pytest.fixture(scope="session")
def scaled_synapse(pg_server, synapse_template, shared_dir):
    """The real Synapse schema with SCALE_USERS generated users (never written by any test)."""
    name, uri = clone(pg_server, synapse_template, "faults_synapse")
    scale_synapse(pg_server, shared_dir, uri, SCALE_USERS)
    yield uri
    pgserver.drop_database(pg_server, name)


@pytest.fixture(scope="session")
def small_synapse(pg_server, synapse_template, shared_dir):
    """The real Synapse schema with 30 generated users (`oidc-dex` links), for many quick runs."""
    name, uri = clone(pg_server, synapse_template, "faults_synapse_small")
    scale_synapse(pg_server, shared_dir, uri, 30)
    yield uri
    pgserver.drop_database(pg_server, name)


@pytest.fixture(scope="session")
def second_synapse(pg_server, scaled_synapse):
    """A copy of `scaled_synapse` (a second homeserver's database, for concurrent runs)."""
    name, uri = clone(pg_server, scaled_synapse.rsplit("/", 1)[1], "faults_synapse2")
    yield uri
    pgserver.drop_database(pg_server, name)


@pytest.fixture(scope="session")
def _faults_mas(pg_server, mas_template):
    name, uri = clone(pg_server, mas_template, "faults_mas")
    add_provider(uri)
    yield uri, db_state(uri)
    pgserver.drop_database(pg_server, name)


@pytest.fixture
def target_mas(_faults_mas):
    """The shared MAS database, at its baseline (empty eight tables, provider synced); yields (uri, state)."""
    uri, baseline = _faults_mas
    if db_state(uri) != baseline:
        reset_mas(uri)
    assert db_state(uri) == baseline
    return uri, baseline


@pytest.fixture
def monitor(pg_server):
    mon = Monitor(pg_server.uri())
    yield mon
    mon.close()
