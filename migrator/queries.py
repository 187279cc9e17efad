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

# The owner's columns, in this order, at the end of the threepid and link queries.
USER_COLS = ("u.name IS NOT NULL, u.creation_ts, u.admin, u.is_guest, u.deactivated, "
             "u.appservice_id IS NOT NULL")


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
# The row kinds share one column list (NULL where a kind has no value; a NULL costs PostgreSQL one
# bit in the sort). The token rows come first in the UNION because PostgreSQL takes a column's type
# from the first two inputs where they say one; the casts type the device columns there.
#   0 user:   name, creation_ts, admin, is_guest, deactivated, appservice
#   1 device: user_id, device_id, display_name, last_seen, ip, user_agent, hidden
#   2 token:  user_id, device_id, created (last_validated, else the run start), id, token, expiry,
#             whether it has a refresh token, puppet, and the refresh pairing facts (§3 phase 5):
#             `paired` (its refresh token exists for the same user and device), the refresh token's
#             id and token, `superseded` (the refresh token's successor was used), and `latest`
#             (the highest non-puppet access-token id with the same refresh token, user and device:
#             the one pair that is kept).
# A user's row and deviceless tokens sort with the device id '' (`has_device_id` tells the tokens apart),
# so the user's row comes first in both dialects without relying on where NULLs sort (a NULLS FIRST
# would need SQLite 3.30) or on an extra sort key (15 % more sorting time at 1M users). A device whose
# id is '' sorts among them, after the user's row, as the pipeline needs. The token id, last in the
# sort, makes the order total, so a run is repeatable.
SESSION_COLUMNS = ("kind", "user_id", "device_id", "created_ms", "token_id", "token", "valid_until_ms",
                   "has_refresh", "puppet", "paired", "refresh_token_id", "refresh_token", "superseded",
                   "latest", "display_name", "last_seen", "ip", "user_agent", "hidden", "hidden_null",
                   "creation_ts", "admin", "guest", "deactivated", "appservice", "has_device_id")

SESSIONS = """
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
SELECT 2, a.user_id, COALESCE(a.device_id, ''), COALESCE(a.last_validated, :run_start), a.id, a.token, a.valid_until_ms,
       a.refresh_token_id IS NOT NULL, a.puppets_user_id IS NOT NULL,
       (r.id IS NOT NULL AND r.user_id = a.user_id AND r.device_id = a.device_id) IS TRUE,
       r.id, r.token, s.rid IS NOT NULL, (a.id = l.max_id) IS TRUE,
       NULL, CAST(NULL AS BIGINT), NULL, NULL, CAST(NULL AS BOOLEAN), CAST(NULL AS BOOLEAN),
       NULL, NULL, NULL, NULL, NULL, a.device_id IS NOT NULL
FROM access_tokens a
LEFT JOIN refresh_tokens r ON r.id = a.refresh_token_id
LEFT JOIN superseded s ON s.rid = r.next_token_id
LEFT JOIN latest l ON l.rid = a.refresh_token_id AND l.user_id = a.user_id AND l.device_id = a.device_id
WHERE 1 = 1 /* partition: a.user_id */
UNION ALL
SELECT 0, u.name, '', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, NULL, NULL, NULL,
       u.creation_ts, u.admin, u.is_guest, u.deactivated, u.appservice_id IS NOT NULL, NULL
FROM users u
WHERE 1 = 1 /* partition: u.name */
UNION ALL
SELECT 1, d.user_id, d.device_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       d.display_name, d.last_seen, d.ip, d.user_agent, d.hidden IS TRUE, d.hidden IS NULL,
       NULL, NULL, NULL, NULL, NULL, TRUE
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
