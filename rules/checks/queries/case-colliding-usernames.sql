-- case-colliding-usernames: migrated users whose ids are equal after lower-casing, counted per group.
-- lower() folds ASCII letters in both dialects (SQLite's built-in, PostgreSQL under Synapse's required
-- C ctype). Comparing whole ids equals comparing localparts: valid ids share the server name.
--
-- Without grouping every user: the ids of a group differ (`users.name` is UNIQUE in Synapse's schema),
-- so all but at most one member are changed by lower(); the unchanged member, if any, is the folded
-- id itself, found by index.
-- cost: 0.27
-- shape: detail
WITH variants AS (
  SELECT u.name, lower(u.name) AS folded
  FROM users u
  WHERE u.appservice_id IS NULL AND u.name <> lower(u.name)
),
migrated AS (
  SELECT v.name, v.folded FROM variants v
  UNION ALL
  SELECT u.name, u.name
  FROM users u
  WHERE u.appservice_id IS NULL
    AND u.name IN (SELECT v.folded FROM variants v WHERE v.folded = lower(v.folded))
),
colliding AS (
  SELECT folded FROM migrated GROUP BY folded HAVING count(*) > 1
)
SELECT '' AS grp, m.name AS sample, m.folded AS unit
FROM migrated m
JOIN colliding c ON c.folded = m.folded
