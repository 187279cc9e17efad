-- foreign-server-users (SQLite): non-appservice user ids that data-migration.md 4 cannot turn into a
-- localpart. Valid: '@' + a localpart without ':' + ':' + server_name, i.e. everything after the FIRST
-- ':' is the server name (which may itself contain ':' and a port). instr/substr count characters.
-- shape: detail
SELECT '' AS grp, COALESCE(u.name, '(null)') AS sample, NULL AS unit
FROM users u
WHERE u.appservice_id IS NULL
  AND (u.name IS NULL
       OR substr(u.name, 1, 1) <> '@'
       OR instr(u.name, ':') = 0
       OR substr(u.name, instr(u.name, ':') + 1) <> :server_name)
