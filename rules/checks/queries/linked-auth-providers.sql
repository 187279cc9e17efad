-- Provider ids that links of migrated (non-appservice) users use: the MAS providers that will receive
-- links (`mas-provider-not-synced`). A link counts unless its user exists and is an application
-- service user; per provider the search stops at the first such link instead of joining every link.
-- cost: 0.13
SELECT p.auth_provider
FROM (SELECT DISTINCT auth_provider FROM user_external_ids) p
WHERE EXISTS (SELECT 1
              FROM user_external_ids e
              WHERE e.auth_provider = p.auth_provider
                AND NOT EXISTS (SELECT 1 FROM users u WHERE u.name = e.user_id AND u.appservice_id IS NOT NULL))
ORDER BY p.auth_provider
