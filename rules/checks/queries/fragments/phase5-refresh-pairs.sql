-- Read phase 5 (data-migration.md 3): refresh/access pairs the migrator selects.
-- The refresh token's device must exist; the access token shares its user and device; a pair is
-- dropped when the successor refresh token's access token was already used (the client moved on).
-- Puppet tokens never form a pair (the migrator skips them as `puppet-token`).
SELECT r.id AS refresh_id, a.id AS access_id, r.user_id, r.device_id
FROM refresh_tokens r
JOIN devices d ON d.user_id = r.user_id AND d.device_id = r.device_id
JOIN access_tokens a ON a.refresh_token_id = r.id AND a.user_id = r.user_id AND a.device_id = r.device_id
WHERE a.refresh_token_id IS NOT NULL  -- implied by the join; stated so the planner filters before joining
  AND a.puppets_user_id IS NULL
  AND (r.next_token_id IS NULL
       OR NOT EXISTS (SELECT 1 FROM access_tokens n WHERE n.refresh_token_id = r.next_token_id AND n.used = TRUE))
