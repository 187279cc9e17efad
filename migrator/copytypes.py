"""psycopg adapters for the binary COPY of MAS rows.

The migrator keeps ids as the 128-bit integers of their UUIDs (migrator/ids.py); COPY declares its
column types (``Copy.set_types``, or a worker's own transformer), so the dumper chosen for a ``uuid``
column is the one registered for that type's oid. :data:`COPY_ADAPTERS` is psycopg's global map plus
:class:`IdBinaryDumper`; :func:`use_id_dumper` adds it to a connection.
"""
from __future__ import annotations

import uuid

import psycopg
from psycopg.adapt import AdaptersMap, Buffer, Dumper
from psycopg.pq import Format

UUID_OID = psycopg.adapters.types["uuid"].oid


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
