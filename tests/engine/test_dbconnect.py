"""engine/dbconnect.py: a failed connection's message never shows the password or the connection string."""
from __future__ import annotations

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.dbconnect import CONNECT_ERRORS, connection_failure

# Passwords as admins write them: letters, digits and the punctuation that breaks URIs; long enough not
# to be a piece of libpq's own words (a password "ha" is in "characters").
PASSWORDS = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="'\\\""),
                    min_size=10, max_size=24)


def _failure(conninfo: str, **kwargs) -> str:
    with pytest.raises(CONNECT_ERRORS) as exc:
        psycopg.connect(conninfo, connect_timeout=2, **kwargs)
    return connection_failure(exc.value, conninfo, kwargs.get("password"))


@settings(max_examples=60, deadline=None)
@given(PASSWORDS)
def test_unparsable_connection_strings_never_show_the_password(password):
    for conninfo in (f"postgresql://mas:{password}@[bad/x", f"postgresql://mas:{password}%ZZ@db.example.org/mas",
                     f"host=db.example.org password={password} user"):
        message = _failure(conninfo)
        assert password not in message and conninfo not in message


def test_the_reason_stays_readable():
    message = _failure("postgresql://mas:MASDB%ZZSECRET@db.example.org/mas")
    assert message.startswith("invalid percent-encoded token") and "SECRET" not in message
    assert "percent-encoding" in message


def test_a_refused_connection_keeps_libpq_words_without_the_password():
    message = _failure("postgresql://mas:Refused-Secret@127.0.0.1:1/mas")
    assert "127.0.0.1" in message and "Refused-Secret" not in message
    message = _failure("host=127.0.0.1 port=1 user=mas", password="Keyword-Secret")
    assert "Keyword-Secret" not in message
