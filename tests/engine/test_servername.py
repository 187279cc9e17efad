"""engine/servername.py: the server names Synapse accepts (its `parse_and_validate_server_name`)."""
from __future__ import annotations

import pytest

from engine.servername import server_name_problem


@pytest.mark.parametrize("name", ["example.org", "matrix.example.org:8448", "localhost", "1.2.3.4:80", "[::1]",
                                  "[2001:db8::1]:8448", "xn--bcher-kva.example"])
def test_names_synapse_accepts(name):
    assert server_name_problem(name) is None


@pytest.mark.parametrize("name, problem", [
    (12345, "must be a string"), (True, "must be a string"), ("", "not a host name"),
    (" example.org", "not a host name"), ("example.org.", "not a host name"), ("under_score.org", "not a host name"),
    ("example.org:", "invalid port"), ("example.org:https", "invalid port"), ("[::1", "mismatched brackets"),
    ("[not-ipv6]", "invalid IPv6"), ("@user:example.org", "not a host name"),
])
def test_names_synapse_refuses(name, problem):
    assert problem in (server_name_problem(name) or "")
