-- invalid-emails: email threepids of migrated users that are (a) malformed or (b) shared by several
-- users, compared ASCII-case-insensitively. :email_pattern comes from the rule (args). regexp_match is
-- PostgreSQL's (NULL when nothing matches); on SQLite syn2mas registers a function of that name with the
-- same NULL-for-no-match contract, so one statement serves both.
-- shape: detail
WITH emails AS (
  SELECT t.user_id, t.address
  FROM user_threepids t
  JOIN users u ON u.name = t.user_id
  WHERE t.medium = 'email' AND u.appservice_id IS NULL
),
shared AS (
  SELECT lower(address) AS folded FROM emails GROUP BY lower(address) HAVING count(DISTINCT user_id) > 1
)
SELECT 'invalid' AS grp, e.user_id AS sample, NULL AS unit
FROM emails e
WHERE length(e.address) > 254 OR regexp_match(e.address, :email_pattern) IS NULL
UNION ALL
SELECT 'shared', e.user_id, NULL
FROM emails e
JOIN shared s ON s.folded = lower(e.address)
