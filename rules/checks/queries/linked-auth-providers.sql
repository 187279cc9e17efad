-- Provider ids that links of migrated (non-appservice) users use: the MAS providers that will receive
-- links (`mas-provider-not-synced`).
SELECT DISTINCT e.auth_provider
FROM user_external_ids e
LEFT JOIN users u ON u.name = e.user_id
WHERE u.appservice_id IS NULL
ORDER BY e.auth_provider
