-- users-without-login-method: active, non-appservice, non-guest users with neither a usable password
-- (a 60-character bcrypt hash $2a$/$2b$/$2y$, and MAS passwords enabled) nor a link that is migrated.
-- cost: 0.45
-- shape: detail
SELECT '' AS grp, u.name AS sample, NULL AS unit
FROM users u
WHERE u.deactivated = 0
  AND u.is_guest = 0
  AND u.appservice_id IS NULL
  AND NOT (:passwords_enabled = 1
           AND u.password_hash IS NOT NULL
           AND length(u.password_hash) = 60
           AND substr(u.password_hash, 1, 4) IN ('$2a$', '$2b$', '$2y$'))
  AND NOT EXISTS (SELECT 1 FROM user_external_ids e
                  WHERE e.user_id = u.name AND e.auth_provider IN (:mapped_providers))
