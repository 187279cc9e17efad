"""The SQL of the six read phases (data-migration.md §3), valid on PostgreSQL and SQLite.

Each phase is one streamed query that joins what it needs from `users` (flags, creation time) and
the device session time (earliest migrated token, aggregated in SQL), so the migrator keeps no
per-user or per-device map in memory. Rows are classified in Python (migrator/pipeline.py); the
queries select every row of the phase's table so that every skipped row is counted with a reason.

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

# The owner's columns, in this order, at the end of the user-dependent phase queries.
USER_COLS = ("u.name IS NOT NULL, u.creation_ts, u.admin, u.is_guest, u.deactivated, "
             "u.appservice_id IS NOT NULL")

# Access tokens that end up migrated with a device session, and the resulting session time (§5.2).
# superseded: refresh tokens whose access token was already used (so their predecessor is superseded).
# refresh_kept: non-puppet device tokens with a refresh token, with their pairing facts; max_id is the
#   highest access-token id pairing with the same refresh token, user and device (one pair per refresh
#   token, §3 phase 5). The window runs over these tokens only, not over every token: the others form
#   their own partitions (refresh_token_id NULL) and all count.
# device_times: per device, the earliest created_at among the tokens phases 4 and 5 migrate.
# Only equi-joins on single keys and window/aggregate passes: plans stay hash/sort based at any size.
_SUPERSEDED_AND_KEPT = """
WITH superseded AS (
    SELECT DISTINCT refresh_token_id AS rid FROM access_tokens
    WHERE used IS TRUE AND refresh_token_id IS NOT NULL
), refresh_kept AS (
    SELECT a.user_id, a.device_id, a.id, a.last_validated, r.id AS rid, s.rid AS superseded_rid,
           MAX(a.id) OVER (PARTITION BY a.refresh_token_id, a.user_id, a.device_id) AS max_id
    FROM access_tokens a
    LEFT JOIN refresh_tokens r ON r.id = a.refresh_token_id AND r.user_id = a.user_id AND r.device_id = a.device_id
    LEFT JOIN superseded s ON s.rid = r.next_token_id
    WHERE a.puppets_user_id IS NULL AND a.device_id IS NOT NULL AND a.refresh_token_id IS NOT NULL
      /* partition: a.user_id */
)"""

def _device_times(paired_only: bool) -> str:
    """The `device_times` CTE: over every device (phases 4 and 6), or, for phase 5 whose tokens sit on
    few devices, only over the devices that have a token with a refresh token (`pair_devices`).

    For each device it covers, the minimum runs over the same tokens either way, so the session time
    (and id) is the same in every phase; the full aggregate (a group per device, two million at 1M
    users, hashed and joined) cost phase 5 most of its time.
    """
    pairs = """, pair_devices AS (
    SELECT DISTINCT a.user_id, a.device_id FROM access_tokens a
    WHERE a.refresh_token_id IS NOT NULL AND a.device_id IS NOT NULL /* partition: a.user_id */
)""" if paired_only else ""
    join = "\n        JOIN pair_devices p ON p.user_id = a.user_id AND p.device_id = a.device_id" if paired_only else ""
    return pairs + f""", device_times AS (
    SELECT user_id, device_id, MIN(first_ms) AS first_ms FROM (
        SELECT a.user_id, a.device_id, COALESCE(a.last_validated, :run_start) AS first_ms
        FROM access_tokens a{join}
        WHERE a.puppets_user_id IS NULL AND a.device_id IS NOT NULL AND a.refresh_token_id IS NULL
          /* partition: a.user_id */
        UNION ALL
        SELECT k.user_id, k.device_id, COALESCE(k.last_validated, :run_start)
        FROM refresh_kept k
        WHERE k.rid IS NOT NULL AND k.superseded_rid IS NULL AND k.id = k.max_id
    ) t
    GROUP BY user_id, device_id
)
"""


_CTES = _SUPERSEDED_AND_KEPT + _device_times(paired_only=False)


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

# Phase 4: every access token without a refresh token (puppets included, to be counted).
ACCESS_TOKENS = _CTES + f"""
SELECT a.id, a.user_id, a.device_id, a.token, a.valid_until_ms, a.last_validated,
       a.puppets_user_id IS NOT NULL, d.device_id IS NOT NULL, d.hidden IS TRUE, dt.first_ms, d.last_seen,
       {USER_COLS}
FROM access_tokens a
LEFT JOIN users u ON u.name = a.user_id /* partition: u.name */
LEFT JOIN devices d ON d.user_id = a.user_id AND d.device_id = a.device_id /* partition: d.user_id */
LEFT JOIN device_times dt ON dt.user_id = a.user_id AND dt.device_id = a.device_id
WHERE a.refresh_token_id IS NULL /* partition: a.user_id */
"""

# Phase 5: every access token with a refresh token, with its pairing facts. The window gives, per
# (refresh token, user, device), the highest non-puppet access-token id: the one pair that is kept.
REFRESH_PAIRS = _SUPERSEDED_AND_KEPT + _device_times(paired_only=True) + f"""
SELECT a.id, a.user_id, a.device_id, a.token, a.valid_until_ms, a.last_validated,
       a.puppets_user_id IS NOT NULL,
       (r.id IS NOT NULL AND r.user_id = a.user_id AND r.device_id = a.device_id) IS TRUE,
       r.id, r.token, d.device_id IS NOT NULL, d.hidden IS TRUE, s.rid IS NOT NULL,
       a.id = MAX(CASE WHEN a.puppets_user_id IS NULL THEN a.id END)
              OVER (PARTITION BY a.refresh_token_id, a.user_id, a.device_id),
       dt.first_ms, d.last_seen,
       {USER_COLS}
FROM access_tokens a
LEFT JOIN users u ON u.name = a.user_id /* partition: u.name */
LEFT JOIN refresh_tokens r ON r.id = a.refresh_token_id
LEFT JOIN devices d ON d.user_id = r.user_id AND d.device_id = r.device_id
LEFT JOIN superseded s ON s.rid = r.next_token_id
LEFT JOIN device_times dt ON dt.user_id = a.user_id AND dt.device_id = a.device_id
WHERE a.refresh_token_id IS NOT NULL /* partition: a.user_id */
"""

# Phase 6: every device.
DEVICES = _CTES + f"""
SELECT d.user_id, d.device_id, d.display_name, d.last_seen, d.ip, d.user_agent, d.hidden IS TRUE,
       d.hidden IS NULL, dt.first_ms, {USER_COLS}
FROM devices d
LEFT JOIN users u ON u.name = d.user_id /* partition: u.name */
LEFT JOIN device_times dt ON dt.user_id = d.user_id AND dt.device_id = d.device_id
WHERE 1 = 1 /* partition: d.user_id */
"""

# Refresh tokens no access token pairs with (informational anomaly).
UNPAIRED_REFRESH_TOKENS = """
SELECT count(*) FROM refresh_tokens r
WHERE NOT EXISTS (SELECT 1 FROM access_tokens a
                  WHERE a.refresh_token_id = r.id AND a.user_id = r.user_id AND a.device_id = r.device_id)
"""
