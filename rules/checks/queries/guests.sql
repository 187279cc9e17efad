-- guests-in-database: guest accounts (`is_guest` is a smallint; any non-zero value is true).
-- cost: 0.12
-- shape: detail
SELECT '' AS grp, u.name AS sample, NULL AS unit
FROM users u
WHERE u.is_guest <> 0
