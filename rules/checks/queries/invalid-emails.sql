-- invalid-emails: email threepids of migrated users that are (a) malformed or (b) shared by several
-- users, compared ASCII-case-insensitively. :email_pattern comes from the rule (args).
-- textregexeq(s, p) is the function behind PostgreSQL's `s ~ p` (a plain call, so that SQLite, where
-- syn2mas registers a function of that name, runs the same statement); unlike regexp_match it builds
-- no result array, which made this rule five times slower.
--
-- (b) without grouping every address: a group of several rows holds addresses that differ (the
-- UNIQUE (medium, address) constraint of Synapse's schema), so all but at most one member are
-- changed by lower(); the unchanged member, if any, is the folded address itself, found by index.
-- The user is read only for the rows found.
-- cost: 1
-- shape: detail
WITH variants AS (
  SELECT t.user_id, lower(t.address) AS folded
  FROM user_threepids t
  WHERE t.medium = 'email' AND t.address <> lower(t.address)
),
members AS (
  SELECT v.user_id, v.folded FROM variants v
  UNION ALL
  SELECT t.user_id, t.address
  FROM user_threepids t
  WHERE t.medium = 'email'
    AND t.address IN (SELECT v.folded FROM variants v WHERE v.folded = lower(v.folded))
),
migrated AS (
  SELECT m.user_id, m.folded
  FROM members m
  JOIN users u ON u.name = m.user_id
  WHERE u.appservice_id IS NULL
),
shared AS (
  SELECT folded FROM migrated GROUP BY folded HAVING count(DISTINCT user_id) > 1
)
SELECT 'invalid' AS grp, t.user_id AS sample, NULL AS unit
FROM user_threepids t
JOIN users u ON u.name = t.user_id
WHERE t.medium = 'email'
  AND (length(t.address) > 254 OR NOT textregexeq(t.address, :email_pattern))
  AND u.appservice_id IS NULL
UNION ALL
SELECT 'shared', m.user_id, NULL
FROM migrated m
JOIN shared s ON s.folded = m.folded
