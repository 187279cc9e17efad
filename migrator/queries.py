"""The SQL of the read phases (data-migration.md §3), valid on PostgreSQL and SQLite.

The six phases of §3 are read by four streamed queries: users, threepids, external ids, and one for
devices with access and refresh tokens (§3 phases 4-6), so the migrator keeps no per-user or
per-device map in memory. Rows are classified in Python (migrator/pipeline.py); the queries select
every row of the phases' tables so that every skipped row is counted with a reason.

Parameters: ``:run_start`` (milliseconds), used for tokens without `last_validated`.

``/* partition: EXPR */`` marks where a parallel worker (migrator/parallel.py) restricts a query to
its share of the users; ``for_partition`` turns the markers into conditions or drops them. They sit
only on the phase's own table, on the `users` join, and on joins whose rows belong to the same user,
so a worker sees every row of its users and nothing that decides another user's rows.
"""
from __future__ import annotations

import re

_MARKER = re.compile(r"/\* partition: ([a-z_.]+) \*/")


def partition_condition(expr: str, part: int, parts: int) -> str:
    """SQL (PostgreSQL) true for the users of worker ``part`` out of ``parts``: hashtext of the user id."""
    return f"(hashtext({expr}) & 2147483647) % {int(parts)} = {int(part)}"


def for_partition(query: str, partition: tuple[int, int] | None) -> str:
    """``query`` restricted to worker ``partition = (part, parts)``, or whole when it is None."""
    if partition is None:
        return _MARKER.sub("", query)
    part, parts = partition
    return _MARKER.sub(lambda m: "AND " + partition_condition(m.group(1), part, parts), query)

# The owner's columns, in this order, at the end of the threepid and link queries: whether the user
# exists, its creation time (a link's id and time), whether it is an application service's (skipped).
USER_COLS = "u.name IS NOT NULL, u.creation_ts, u.appservice_id IS NOT NULL"


def users_query(optional_cols: frozenset[str]) -> str:
    """Phase 1: every user with flags; absent optional columns read as false / NULL."""
    locked = "u.locked" if "locked" in optional_cols else "0"
    approved = "u.approved" if "approved" in optional_cols else "NULL"
    return ("SELECT u.name, u.password_hash, u.admin, u.deactivated, " + locked + ", u.creation_ts, u.is_guest, "
            "u.appservice_id IS NOT NULL, " + approved + " FROM users u WHERE 1 = 1 /* partition: u.name */")


THREEPIDS = f"""
SELECT t.user_id, t.medium, t.address, t.added_at, {USER_COLS}
FROM user_threepids t LEFT JOIN users u ON u.name = t.user_id /* partition: u.name */
WHERE 1 = 1 /* partition: t.user_id */
"""

LINKS = f"""
SELECT e.user_id, e.auth_provider, e.external_id, {USER_COLS}
FROM user_external_ids e LEFT JOIN users u ON u.name = e.user_id /* partition: u.name */
WHERE 1 = 1 /* partition: e.user_id */
"""

# Phase 4: every user, device and access token (puppets included, to be counted) in one stream,
# ordered so that a user's row comes first, then the user's deviceless tokens, then each device
# followed by its tokens, earliest first. The pipeline (Pipeline.phase_sessions) then knows a device's
# session time (§5.2: its earliest migrated token) when it reaches the device's first migrated token,
# with one device row held at a time: no per-device aggregate, no join of tokens to devices or users.
#
# The three row kinds share eleven columns, each kind using them for its own values, and their yes/no
# facts travel as bits of one integer: every column costs the server a value to sort and send and the
# client one to parse, for each of the millions of rows (1M users: 26 columns with a column per fact
# took 5.7 s of client and 11.1 s of server CPU per worker's half of the stream, these 3.6 and 9.3 s).
# The token rows come first in the UNION because PostgreSQL takes a column's type from the first two
# inputs where they say one.
#
# | column      | 0 user                   | 1 device                  | 2 access token                       |
# | kind        | 0                        | 1                         | 2                                    |
# | user_id     | name                     | user_id                   | user_id                              |
# | device_id   | ''                       | device_id                 | device_id, '' when it has none       |
# | time_ms     | creation_ts (seconds)    | last_seen                 | last_validated, else the run start   |
# | int_a       | admin                    |                           | id                                   |
# | text_a      |                          | display_name              | token                                |
# | int_b       | is_guest                 |                           | valid_until_ms                       |
# | int_c       | deactivated              |                           | the refresh token's id               |
# | text_b      |                          | user_agent                | the refresh token                    |
# | text_c      |                          | ip                        |                                      |
# | flags       | USER_APPSERVICE          | DEVICE_HIDDEN, DEVICE_HIDDEN_NULL, HAS_DEVICE | TOKEN_*, HAS_DEVICE |
#
# A token's refresh pairing facts (§3 phase 5): TOKEN_PAIRED (its refresh token exists for the same
# user and device), TOKEN_SUPERSEDED (the refresh token's successor was used) and TOKEN_LATEST (the
# highest non-puppet access-token id with the same refresh token, user and device: the one pair kept).
# The user flags admin, is_guest and deactivated stay values (the pipeline tests them as Python does),
# only facts the query computes are bits. A user's row and deviceless tokens sort with the device id ''
# (HAS_DEVICE tells the tokens apart), so the user's row comes first in both dialects without relying
# on where NULLs sort (a NULLS FIRST would need SQLite 3.30) or on an extra sort key (15 % more sorting
# time at 1M users). A device whose id is '' sorts among them, after the user's row, as the pipeline
# needs. The token id, last in the sort, makes the order total, so a run is repeatable.
SESSION_COLUMNS = ("kind", "user_id", "device_id", "time_ms", "int_a", "text_a", "int_b", "int_c", "text_b",
                   "text_c", "flags")
USER_APPSERVICE = 1
DEVICE_HIDDEN, DEVICE_HIDDEN_NULL = 1, 2
TOKEN_REFRESH, TOKEN_PUPPET, TOKEN_PAIRED, TOKEN_SUPERSEDED, TOKEN_LATEST = 1, 2, 4, 8, 16
HAS_DEVICE = 32

SESSIONS = f"""
WITH superseded AS (
    SELECT DISTINCT refresh_token_id AS rid FROM access_tokens
    WHERE used IS TRUE AND refresh_token_id IS NOT NULL
), latest AS (
    SELECT refresh_token_id AS rid, user_id, device_id,
           MAX(CASE WHEN puppets_user_id IS NULL THEN id END) AS max_id
    FROM access_tokens
    WHERE refresh_token_id IS NOT NULL /* partition: user_id */
    GROUP BY refresh_token_id, user_id, device_id
)
SELECT 2, a.user_id, COALESCE(a.device_id, ''), COALESCE(a.last_validated, :run_start), a.id, a.token,
       a.valid_until_ms, r.id, r.token, CAST(NULL AS TEXT),
       CASE WHEN a.refresh_token_id IS NOT NULL THEN {TOKEN_REFRESH} ELSE 0 END
       + CASE WHEN a.puppets_user_id IS NOT NULL THEN {TOKEN_PUPPET} ELSE 0 END
       + CASE WHEN r.user_id = a.user_id AND r.device_id = a.device_id THEN {TOKEN_PAIRED} ELSE 0 END
       + CASE WHEN s.rid IS NOT NULL THEN {TOKEN_SUPERSEDED} ELSE 0 END
       + CASE WHEN a.id = l.max_id THEN {TOKEN_LATEST} ELSE 0 END
       + CASE WHEN a.device_id IS NOT NULL THEN {HAS_DEVICE} ELSE 0 END
FROM access_tokens a
LEFT JOIN refresh_tokens r ON r.id = a.refresh_token_id
LEFT JOIN superseded s ON s.rid = r.next_token_id
LEFT JOIN latest l ON l.rid = a.refresh_token_id AND l.user_id = a.user_id AND l.device_id = a.device_id
WHERE 1 = 1 /* partition: a.user_id */
UNION ALL
SELECT 0, u.name, '', u.creation_ts, u.admin, NULL, u.is_guest, u.deactivated, NULL, NULL,
       CASE WHEN u.appservice_id IS NOT NULL THEN {USER_APPSERVICE} ELSE 0 END
FROM users u
WHERE 1 = 1 /* partition: u.name */
UNION ALL
SELECT 1, d.user_id, d.device_id, d.last_seen, NULL, d.display_name, NULL, NULL, d.user_agent, d.ip,
       CASE WHEN d.hidden IS TRUE THEN {DEVICE_HIDDEN} ELSE 0 END
       + CASE WHEN d.hidden IS NULL THEN {DEVICE_HIDDEN_NULL} ELSE 0 END + {HAS_DEVICE}
FROM devices d
WHERE 1 = 1 /* partition: d.user_id */
ORDER BY 2, 3, 1, 4, 5
"""

# Refresh tokens no access token pairs with (informational anomaly).
UNPAIRED_REFRESH_TOKENS = """
SELECT count(*) FROM refresh_tokens r
WHERE NOT EXISTS (SELECT 1 FROM access_tokens a
                  WHERE a.refresh_token_id = r.id AND a.user_id = r.user_id AND a.device_id = r.device_id)
"""

# Synapse providers with at least one link of an existing, non-application-service user (the MAS
# providers that will receive links: `mas-provider-not-synced`). Per provider the search stops at the
# first such link, instead of joining every link with `users` (1M users: 0.09 s against 0.48 s on
# three server processes).
LINKED_PROVIDERS = """
SELECT p.auth_provider
FROM (SELECT DISTINCT auth_provider FROM user_external_ids) p
WHERE EXISTS (SELECT 1
              FROM user_external_ids e
              JOIN users u ON u.name = e.user_id
              WHERE e.auth_provider = p.auth_provider AND u.appservice_id IS NULL)
"""
