"""psycopg adapters and wire types for the binary COPY of MAS rows.

The pipeline hands COPY values already in their PostgreSQL binary form wherever that saves a Python
object per value:

- ids are the 128-bit integers of their UUIDs (migrator/ids.py), written by :class:`IdBinaryDumper`,
  registered by the `uuid` oid;
- `timestamptz` values are integers, microseconds since 2000-01-01 UTC (:func:`pg_timestamp`), which is
  exactly the binary form of a `timestamptz` and of an `int8`;
- `inet` values are the bytes of the binary `inet` form (migrator/ipaddr.py :func:`inet_wire`).

COPY declares a type per column (``Copy.set_types``, or a worker's own transformer) only to choose the
dumper; the server reads each field with its column's own receive function. :func:`wire_types` therefore
declares `int8` for `timestamptz` and `bytea` for `inet`, whose dumpers (psycopg's C ones) send the
integer or the bytes unchanged: no `datetime` or `ipaddress` object per value (a third of a microsecond
instead of a microsecond per timestamp, about three microseconds less per IP address).
"""
from __future__ import annotations

import uuid

import psycopg
from psycopg.adapt import AdaptersMap, Buffer, Dumper
from psycopg.pq import Format

from . import masschema

UUID_OID = psycopg.adapters.types["uuid"].oid

# PostgreSQL's timestamp origin, 2000-01-01T00:00:00Z, in Unix milliseconds.
PG_EPOCH_MS = 946_684_800_000
# The range syn2mas accepts: years 1 to 9999 (a Synapse value outside it is a data error).
MIN_TIMESTAMP_MS = -62_135_596_800_000
MAX_TIMESTAMP_MS = 253_402_300_799_999

# Declared COPY type of a column type whose values the pipeline sends in binary form already.
_WIRE_TYPE = {"timestamptz": "int8", "inet": "bytea"}


def pg_timestamp(ms: int) -> int | None:
    """Unix milliseconds as a binary `timestamptz` value (µs since 2000-01-01); None when out of range."""
    return (ms - PG_EPOCH_MS) * 1000 if MIN_TIMESTAMP_MS <= ms <= MAX_TIMESTAMP_MS else None


def wire_types(table: str) -> list[str]:
    """The types COPY declares for ``table``'s COPY_COLUMNS (see the module docstring)."""
    return [_WIRE_TYPE.get(typ, typ) for _, typ in masschema.COPY_COLUMNS[table]]


class IdBinaryDumper(Dumper):
    """A ``uuid`` value in binary: an id's integer, or a ``uuid.UUID`` (provider ids come as such)."""

    format = Format.BINARY
    oid = UUID_OID

    def dump(self, obj: int | uuid.UUID) -> Buffer:
        return (obj if type(obj) is int else obj.int).to_bytes(16, "big")


def use_id_dumper(adapters: AdaptersMap) -> AdaptersMap:
    """Register :class:`IdBinaryDumper` for COPY columns typed ``uuid`` in ``adapters``; returns it."""
    adapters.register_dumper(None, IdBinaryDumper)
    return adapters


COPY_ADAPTERS = use_id_dumper(AdaptersMap(psycopg.adapters))
