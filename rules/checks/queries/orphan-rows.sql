-- orphan-rows: rows the migrator reads (data-migration.md 3) whose user_id matches no `users.name`
-- exactly, per table. `users.name` is nullable in Synapse's schema, so NOT EXISTS (not NOT IN).
-- refresh_tokens counts the refresh tokens of phase-5 pairs; devices counts non-hidden devices.
-- shape: detail
SELECT 'user_threepids' AS grp, t.user_id AS sample, NULL AS unit
FROM user_threepids t
WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.name = t.user_id)
UNION ALL
SELECT 'user_external_ids', e.user_id, NULL
FROM user_external_ids e
WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.name = e.user_id)
UNION ALL
SELECT 'access_tokens', p4.user_id, NULL
FROM /* include: phase4-access-tokens */ p4
WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.name = p4.user_id)
UNION ALL
SELECT 'refresh_tokens', p5.user_id, CAST(p5.refresh_id AS TEXT)
FROM /* include: phase5-refresh-pairs */ p5
WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.name = p5.user_id)
UNION ALL
SELECT 'devices', d.user_id, NULL
FROM devices d
WHERE d.hidden IS NOT TRUE
  AND NOT EXISTS (SELECT 1 FROM users u WHERE u.name = d.user_id)
