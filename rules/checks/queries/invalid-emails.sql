-- invalid-emails: email threepids of migrated users that are (a) malformed or (b) shared by several
-- users, compared ASCII-case-insensitively. :email_pattern comes from the rule (args).
-- textregexeq(s, p) is the function behind PostgreSQL's `s ~ p` (a plain call, so that SQLite, where
-- syn2mas registers a function of that name, runs the same statement); unlike regexp_match it builds
-- no result array, which made this rule five times slower.
--
-- One pass over the addresses keeps the suspects: the invalid ones and those lower() changes. (b)
-- needs no grouping of every address: a group of several rows holds addresses that differ (the
-- UNIQUE (medium, address) constraint of Synapse's schema), so all but at most one member are
-- changed by lower(); the unchanged member, if any, is the folded address itself, found by index.
-- The user is read only for the rows found.
-- The 254-character limit is tested on the byte count first: no address has more characters than
-- bytes, so only the rare long ones pay for counting UTF-8 characters.
-- cost: 0.7
-- shape: detail
WITH suspects AS (
  SELECT t.user_id, t.address, lower(t.address) AS folded,
         ((octet_length(t.address) > 254 AND length(t.address) > 254)
          OR NOT textregexeq(t.address, :email_pattern)) AS invalid
  FROM user_threepids t
  WHERE t.medium = 'email'
    AND (t.address <> lower(t.address) OR (octet_length(t.address) > 254 AND length(t.address) > 254)
         OR NOT textregexeq(t.address, :email_pattern))
),
members AS (
  SELECT s.user_id, s.folded FROM suspects s WHERE s.address <> s.folded
  UNION ALL
  SELECT t.user_id, t.address
  FROM user_threepids t
  WHERE t.medium = 'email'
    AND t.address IN (SELECT s.folded FROM suspects s WHERE s.address <> s.folded AND s.folded = lower(s.folded))
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
SELECT 'invalid' AS grp, s.user_id AS sample, NULL AS unit
FROM suspects s
JOIN users u ON u.name = s.user_id
WHERE s.invalid AND u.appservice_id IS NULL
UNION ALL
SELECT 'shared', m.user_id, NULL
FROM migrated m
JOIN shared s ON s.folded = m.folded
