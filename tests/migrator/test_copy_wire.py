"""The binary COPY forms of migrator/copytypes.py: timestamps as integers, IP addresses as `inet` bytes."""
from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from psycopg.types.net import InetBinaryDumper

from migrator.copytypes import MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS, pg_timestamp, wire_types
from migrator.ipaddr import inet_wire, parse_ip

PG_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)
UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@given(st.integers(min_value=MIN_TIMESTAMP_MS, max_value=MAX_TIMESTAMP_MS))
@example(MIN_TIMESTAMP_MS).via("year 1")
@example(MAX_TIMESTAMP_MS).via("year 9999")
@example(0).via("the Unix epoch")
def test_pg_timestamp_is_microseconds_since_2000(ms):
    as_datetime = UNIX_EPOCH + timedelta(milliseconds=ms)
    assert pg_timestamp(ms) == (as_datetime - PG_EPOCH) // timedelta(microseconds=1)


@pytest.mark.parametrize("ms", [MIN_TIMESTAMP_MS - 1, MAX_TIMESTAMP_MS + 1, -(1 << 62), 1 << 62])
def test_pg_timestamp_refuses_what_datetime_cannot_hold(ms):
    assert pg_timestamp(ms) is None


def test_wire_types_replace_only_timestamps_and_addresses():
    assert wire_types("compat_sessions") == ["uuid", "uuid", "text", "text", "int8", "bool", "int8", "bytea", "text"]
    assert wire_types("user_passwords") == ["uuid", "uuid", "text", "int8", "int4"]


def _reference_inet(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    return bytes(InetBinaryDumper(type(address)).dump(address))


DOTTED = st.lists(st.sampled_from(["0", "1", "9", "01", "00", "10", "99", "199", "255", "256", "300", "1000", "",
                                   " 1", "1 ", "+1", "-1", "0x1", "１"]), min_size=1, max_size=6).map(".".join)
IPV6 = st.ip_addresses(v=6).map(str)


@given(st.one_of(DOTTED, IPV6, st.ip_addresses(v=4).map(str), st.text(max_size=20), st.none()))
@example("1.2.3.4\x00").via("an embedded NUL")
@example("\udc80").via("a lone surrogate")
@example("::ffff:1.2.3.004").via("embedded IPv4 with a leading zero")
@example("fe80::1%eth0").via("a zone id")
def test_inet_wire_agrees_with_parse_ip(value):
    address, invalid = parse_ip(value)
    wire, wire_invalid = inet_wire(value)
    assert wire_invalid == invalid
    assert wire == (None if address is None else _reference_inet(address))


def test_the_server_reads_the_wire_forms_as_their_column_types(mas_db):
    # COPY declares int8 and bytea only to pick psycopg's dumpers; the server must read the columns'
    # own types from the same bytes.
    with psycopg.connect(mas_db, autocommit=True) as conn:
        conn.execute("CREATE TEMPORARY TABLE wire (at timestamptz, ip inet)")
        ms = 1_600_000_000_123
        with conn.cursor().copy("COPY wire (at, ip) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "bytea"])
            copy.write_row((pg_timestamp(ms), inet_wire("203.0.113.7")[0]))
            copy.write_row((pg_timestamp(MAX_TIMESTAMP_MS), inet_wire("2001:db8::1")[0]))
        got = conn.execute("SELECT at, host(ip), masklen(ip) FROM wire ORDER BY at").fetchall()
    assert got == [(UNIX_EPOCH + timedelta(milliseconds=ms), "203.0.113.7", 32),
                   (UNIX_EPOCH + timedelta(milliseconds=MAX_TIMESTAMP_MS), "2001:db8::1", 128)]
