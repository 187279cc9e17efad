-- foreign-server-users: non-appservice user ids that data-migration.md 4 cannot turn into a localpart.
-- Valid: '@' + a localpart without ':' + ':' + server_name (split at the FIRST ':'; the server name may
-- itself contain ':' and a port). Written with substr/length only, so that PostgreSQL and SQLite share
-- it; the CASE keeps substr from ever seeing a negative length.
-- shape: detail
SELECT '' AS grp, COALESCE(u.name, '(null)') AS sample, NULL AS unit
FROM users u
WHERE u.appservice_id IS NULL
  AND 1 <> CASE
    WHEN u.name IS NULL OR length(u.name) < length(CAST(:server_name AS TEXT)) + 2 THEN 0
    WHEN substr(u.name, 1, 1) <> '@' THEN 0
    WHEN substr(u.name, length(u.name) - length(CAST(:server_name AS TEXT))) <> ':' || CAST(:server_name AS TEXT) THEN 0
    WHEN substr(u.name, 2, length(u.name) - length(CAST(:server_name AS TEXT)) - 2) LIKE '%:%' THEN 0
    ELSE 1
  END
