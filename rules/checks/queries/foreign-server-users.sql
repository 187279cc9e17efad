-- foreign-server-users: non-appservice user ids that data-migration.md 4 cannot turn into a localpart.
-- Valid: '@' + a localpart without ':' + ':' + server_name (split at the FIRST ':'; the server name may
-- itself contain ':' and a port).
-- PostgreSQL: two LIKE patterns anchored at both ends ('@%:<server>' and, for a ':' inside the
-- localpart, '@%:%:<server>'), with the server name's wildcards escaped; LIKE is far cheaper per row
-- than substr/length on UTF-8 text. SQLite's LIKE ignores case, so it has its own variant (.sqlite.sql).
-- cost: 0.25
-- shape: detail
SELECT '' AS grp, COALESCE(u.name, '(null)') AS sample, NULL AS unit
FROM users u
WHERE u.appservice_id IS NULL
  AND (u.name IS NULL
       OR u.name NOT LIKE ('@%:' || replace(replace(replace(CAST(:server_name AS TEXT), '!', '!!'), '%', '!%'), '_', '!_'))
            ESCAPE '!'
       OR u.name LIKE ('@%:%:' || replace(replace(replace(CAST(:server_name AS TEXT), '!', '!!'), '%', '!%'), '_', '!_'))
            ESCAPE '!')
