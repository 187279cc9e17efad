-- Read phase 4 (data-migration.md 3): non-refreshable access tokens the migrator selects.
-- Not a puppet token, no refresh token, and either deviceless or with an existing device row.
SELECT a.id, a.user_id, a.device_id
FROM access_tokens a
WHERE a.puppets_user_id IS NULL
  AND a.refresh_token_id IS NULL
  AND (a.device_id IS NULL
       OR EXISTS (SELECT 1 FROM devices d WHERE d.user_id = a.user_id AND d.device_id = a.device_id))
