-- oauth-delegated-leftovers: links written by an earlier delegation to MAS.
-- shape: detail
SELECT '' AS grp, e.user_id AS sample, NULL AS unit
FROM user_external_ids e
WHERE e.auth_provider = 'oauth-delegated'
