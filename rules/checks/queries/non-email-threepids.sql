-- non-email-threepids: third-party ids that go to `user_unsupported_third_party_ids`, per medium.
-- `email` is matched exactly (case-sensitive), as the migrator does. Threepids of application-service
-- users are not imported and not counted; rows without a user are `orphan-rows`.
-- cost: 0.06
-- shape: detail
SELECT t.medium AS grp, t.user_id AS sample, NULL AS unit
FROM user_threepids t
LEFT JOIN users u ON u.name = t.user_id
WHERE t.medium <> 'email'
  AND u.appservice_id IS NULL
