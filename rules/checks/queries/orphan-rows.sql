-- orphan-rows: rows the migrator reads (data-migration.md 3) whose user_id matches no `users.name`
-- exactly, per table. `users.name` is nullable in Synapse's schema, so NOT EXISTS (not NOT IN).
-- refresh_tokens counts the refresh tokens of phase-5 pairs; devices counts non-hidden devices.
--
-- The missing users are found first, with anti-joins on user ids only (threepids and links share one,
-- whose two sorted inputs PostgreSQL merges); the rows are then read for those few users. Phase-4
-- tokens with a device and every phase-5 pair sit on a device row of their own user, so the devices'
-- missing users cover them, and only deviceless tokens need their own anti-join. The anti-joins merge
-- the user-id indexes of Synapse's schema with `users_name_key`: half the CPU of hashing a million
-- user ids per table, which the planner prefers; parallel workers would each read all of
-- `users_name_key` again (twice the CPU, no sooner done). The deviceless tokens come from an
-- index-only scan of `access_tokens_device_id` (user_id, device_id), whose `device_id IS NULL`
-- test reads only the index: the planner prefers a scan of the whole heap, three times the pages
-- and, above a quarter of shared_buffers, read again through a small ring on every check (1M
-- users: 0.25 s against 0.05 s). No part of this query needs a sequential scan.
-- planner: enable_hashjoin=off, enable_seqscan=off, max_parallel_workers_per_gather=0
-- cost: 1.2
-- shape: detail
WITH missing AS (
  SELECT x.src, x.user_id
  FROM (SELECT 'user_threepids' AS src, t.user_id FROM user_threepids t
        UNION ALL
        SELECT 'user_external_ids', e.user_id FROM user_external_ids e) x
  WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.name = x.user_id)
  UNION ALL
  SELECT DISTINCT 'devices', d.user_id
  FROM devices d
  WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.name = d.user_id)
  UNION ALL
  SELECT DISTINCT 'deviceless', a.user_id
  FROM access_tokens a
  WHERE a.device_id IS NULL
    AND NOT EXISTS (SELECT 1 FROM users u WHERE u.name = a.user_id)
)
SELECT m.src AS grp, m.user_id AS sample, NULL AS unit
FROM missing m
WHERE m.src IN ('user_threepids', 'user_external_ids')
UNION ALL
SELECT 'devices', d.user_id, NULL
FROM devices d
WHERE d.hidden IS NOT TRUE
  AND d.user_id IN (SELECT m.user_id FROM missing m WHERE m.src = 'devices')
UNION ALL
SELECT 'access_tokens', p4.user_id, NULL
FROM /* include: phase4-access-tokens */ p4
WHERE p4.user_id IN (SELECT m.user_id FROM missing m WHERE m.src IN ('devices', 'deviceless'))
UNION ALL
SELECT 'refresh_tokens', p5.user_id, CAST(p5.refresh_id AS TEXT)
FROM /* include: phase5-refresh-pairs */ p5
WHERE p5.user_id IN (SELECT m.user_id FROM missing m WHERE m.src = 'devices')
