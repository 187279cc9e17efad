-- The four rules that read every user (see users-pass.sql), SQLite: SQLite's LIKE ignores case, so the
-- server name is compared as text: everything after the FIRST ':' is the server name (which may itself
-- contain ':' and a port); instr/substr count characters. SQLite databases are small: each part scans
-- `users` in its plainest form.
-- shape: detail
WITH migrated AS (
  SELECT u.name, lower(u.name) AS folded
  FROM users u
  WHERE u.appservice_id IS NULL AND u.name IS NOT NULL
),
colliding AS (
  SELECT folded FROM migrated GROUP BY folded HAVING count(*) > 1
)
SELECT 'guests-in-database' AS grp, u.name AS sample, NULL AS unit
FROM users u
WHERE u.is_guest <> 0
UNION ALL
SELECT 'foreign-server-users', COALESCE(u.name, '(null)'), NULL
FROM users u
WHERE u.appservice_id IS NULL
  AND (u.name IS NULL
       OR substr(u.name, 1, 1) <> '@'
       OR instr(u.name, ':') = 0
       OR substr(u.name, instr(u.name, ':') + 1) <> :server_name)
UNION ALL
SELECT 'case-colliding-usernames', m.name, m.folded
FROM migrated m
JOIN colliding c ON c.folded = m.folded
UNION ALL
SELECT 'users-without-login-method', u.name, NULL
FROM users u
WHERE u.deactivated = 0
  AND u.is_guest = 0
  AND u.appservice_id IS NULL
  AND NOT (:passwords_enabled = 1
           AND u.password_hash IS NOT NULL
           AND octet_length(u.password_hash) = 60  -- bytes, as the PostgreSQL form
           AND substr(u.password_hash, 1, 4) IN ('$2a$', '$2b$', '$2y$'))
  AND NOT EXISTS (SELECT 1 FROM user_external_ids e
                  WHERE e.user_id = u.name AND e.auth_provider IN (:mapped_providers))
