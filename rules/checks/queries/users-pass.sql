-- One pass over `users` for the four rules that read every user (each rule takes its `part`):
--   guests-in-database          guest accounts (`is_guest` is a smallint; any non-zero value is true);
--   foreign-server-users        non-appservice ids that data-migration.md 4 cannot turn into a
--                               localpart (see below);
--   case-colliding-usernames    migrated users whose ids are equal after lower-casing, counted per group;
--   users-without-login-method  active, non-appservice, non-guest users with neither a usable password
--                               (a bcrypt hash: 60 bytes starting $2a$/$2b$/$2y$, and MAS passwords
--                               enabled) nor a link that is migrated. Bytes, not characters: a bcrypt
--                               hash is ASCII, and counting UTF-8 characters cost a third of the scan;
--                               anchored LIKE prefixes are cheaper than substr (PostgreSQL's LIKE is
--                               case-sensitive; SQLite's is not, so its variant keeps substr).
-- Scanning a million users four times cost twice the one scan that keeps the few suspects of all four.
--
-- foreign-server-users, PostgreSQL: valid is '@' + a localpart without ':' + ':' + server_name (split at
-- the FIRST ':'; the server name may itself contain ':' and a port): two LIKE patterns anchored at both
-- ends ('@%:<server>' and, for a ':' inside the localpart, '@%:%:<server>'), with the server name's
-- wildcards escaped; LIKE is far cheaper per row than substr/length on UTF-8 text. SQLite's LIKE ignores
-- case, so SQLite has its own variant (users-pass.sqlite.sql).
--
-- case-colliding-usernames: lower() folds ASCII letters in both dialects (SQLite's built-in, PostgreSQL
-- under Synapse's required C ctype). Comparing whole ids equals comparing localparts: valid ids share the
-- server name. No grouping of every user: the ids of a group differ (`users.name` is UNIQUE), so all but
-- at most one member are changed by lower(); the unchanged member, if any, is the folded id itself, found
-- by index.
-- cost: 0.75
-- shape: detail
WITH flagged AS (
  SELECT u.name,
         u.is_guest <> 0 AS guest,
         u.appservice_id IS NULL
           AND (u.name IS NULL
                OR u.name NOT LIKE ('@%:' || replace(replace(replace(CAST(:server_name AS TEXT), '!', '!!'), '%', '!%'), '_', '!_'))
                     ESCAPE '!'
                OR u.name LIKE ('@%:%:' || replace(replace(replace(CAST(:server_name AS TEXT), '!', '!!'), '%', '!%'), '_', '!_'))
                     ESCAPE '!') AS foreign_id,
         u.appservice_id IS NULL AND u.name <> lower(u.name) AS variant,
         u.deactivated = 0 AND u.is_guest = 0 AND u.appservice_id IS NULL
           AND NOT (:passwords_enabled = 1
                    AND u.password_hash IS NOT NULL  -- (NULL would make the flag NULL, not true)
                    AND octet_length(u.password_hash) = 60
                    AND (u.password_hash LIKE '$2a$%' OR u.password_hash LIKE '$2b$%'
                         OR u.password_hash LIKE '$2y$%')) AS no_password
  FROM users u
),
suspects AS MATERIALIZED (
  SELECT f.* FROM flagged f WHERE f.guest OR f.foreign_id OR f.variant OR f.no_password
),
variants AS (
  SELECT s.name, lower(s.name) AS folded FROM suspects s WHERE s.variant
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
SELECT 'guests-in-database' AS grp, s.name AS sample, NULL AS unit
FROM suspects s
WHERE s.guest
UNION ALL
SELECT 'foreign-server-users', COALESCE(s.name, '(null)'), NULL
FROM suspects s
WHERE s.foreign_id
UNION ALL
SELECT 'case-colliding-usernames', m.name, m.folded
FROM migrated m
JOIN colliding c ON c.folded = m.folded
UNION ALL
SELECT 'users-without-login-method', s.name, NULL
FROM suspects s
WHERE s.no_password
  AND NOT EXISTS (SELECT 1 FROM user_external_ids e
                  WHERE e.user_id = s.name AND e.auth_provider IN (:mapped_providers))
