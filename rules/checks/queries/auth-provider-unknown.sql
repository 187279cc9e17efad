-- auth-provider-unknown-to-synapse: users per provider id the Synapse configuration does not define.
-- Links of application-service users are skipped by the migrator and not counted.
-- cost: 0.02
-- shape: detail
SELECT e.auth_provider AS grp, e.user_id AS sample, e.user_id AS unit
FROM user_external_ids e
LEFT JOIN users u ON u.name = e.user_id
WHERE e.auth_provider <> 'oauth-delegated'
  AND e.auth_provider NOT IN (:known_providers)
  AND u.appservice_id IS NULL
