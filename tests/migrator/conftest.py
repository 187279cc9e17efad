"""Fixtures for the migrator tests."""
from __future__ import annotations

import pytest

from mighelpers import add_provider


@pytest.fixture
def mas(mas_db):
    """The MAS fixture database with the test provider synced."""
    add_provider(mas_db)
    return mas_db
