-- duplicate-upstream-links: (provider, subject) on several links that will be migrated (mapped
-- provider, non-appservice user), per provider. Counted per duplicated subject; samples are the
-- users involved (subjects are never returned).
-- shape: detail
WITH links AS (
  SELECT e.auth_provider, e.external_id, e.user_id
  FROM user_external_ids e
  LEFT JOIN users u ON u.name = e.user_id
  WHERE e.auth_provider IN (:mapped_providers)
    AND u.appservice_id IS NULL
),
dups AS (
  SELECT auth_provider, external_id FROM links GROUP BY auth_provider, external_id HAVING count(*) > 1
)
SELECT l.auth_provider AS grp, l.user_id AS sample, l.external_id AS unit
FROM links l
JOIN dups d ON d.auth_provider = l.auth_provider AND d.external_id = l.external_id
