-- duplicate-upstream-links: (provider, subject) on several links that will be migrated (mapped
-- provider, non-appservice user), per provider. Counted per duplicated subject; samples are the
-- users involved (subjects are never returned).
-- Subjects that occur more than once at all are found first, by grouping the links alone; only
-- their links then join `users`.
-- cost: 0.09
-- shape: detail
WITH repeated AS (
  SELECT e.auth_provider, e.external_id
  FROM user_external_ids e
  WHERE e.auth_provider IN (:mapped_providers)
  GROUP BY e.auth_provider, e.external_id
  HAVING count(*) > 1
),
links AS (
  SELECT e.auth_provider, e.external_id, e.user_id
  FROM user_external_ids e
  JOIN repeated r ON r.auth_provider = e.auth_provider AND r.external_id = e.external_id
  LEFT JOIN users u ON u.name = e.user_id
  WHERE u.appservice_id IS NULL
),
dups AS (
  SELECT auth_provider, external_id FROM links GROUP BY auth_provider, external_id HAVING count(*) > 1
)
SELECT l.auth_provider AS grp, l.user_id AS sample, l.external_id AS unit
FROM links l
JOIN dups d ON d.auth_provider = l.auth_provider AND d.external_id = l.external_id
