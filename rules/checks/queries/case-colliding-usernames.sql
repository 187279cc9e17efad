-- case-colliding-usernames: migrated users whose ids are equal after lower-casing, counted per group.
-- lower() folds ASCII letters in both dialects (SQLite's built-in, PostgreSQL under Synapse's required
-- C ctype). Comparing whole ids equals comparing localparts: valid ids share the server name.
-- shape: detail
WITH migrated AS (
  SELECT u.name, lower(u.name) AS folded
  FROM users u
  WHERE u.appservice_id IS NULL AND u.name IS NOT NULL
),
colliding AS (
  SELECT folded FROM migrated GROUP BY folded HAVING count(*) > 1
)
SELECT '' AS grp, m.name AS sample, m.folded AS unit
FROM migrated m
JOIN colliding c ON c.folded = m.folded
