-- auth-provider-missing-in-mas: users per known provider id that no MAS provider maps (`synapse_idp_id`).
-- cost: 0.01
-- shape: detail
SELECT e.auth_provider AS grp, e.user_id AS sample, e.user_id AS unit
FROM user_external_ids e
LEFT JOIN users u ON u.name = e.user_id
WHERE e.auth_provider IN (:known_providers)
  AND e.auth_provider NOT IN (:mapped_providers)
  AND u.appservice_id IS NULL
