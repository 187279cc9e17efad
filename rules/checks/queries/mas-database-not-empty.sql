-- mas-database-not-empty: which of the eight target tables hold a row (data-migration.md 10.1), and
-- leftover tables of an interrupted reference run. An interrupted run renames the targets to
-- syn2mas__<name>, so a target may be missing: query_to_xml runs the row probe only for tables that
-- exist (CASE evaluates it lazily: it is a volatile function), instead of failing the whole statement.
SELECT v.pos, v.name AS table_name,
       to_regclass(v.name) IS NOT NULL AS present,
       CASE WHEN to_regclass(v.name) IS NULL THEN FALSE
            ELSE query_to_xml(format('SELECT 1 AS found FROM %I LIMIT 1', v.name), false, true, '')::text <> ''
       END AS has_rows
FROM (VALUES (1, 'users'), (2, 'user_passwords'), (3, 'user_emails'), (4, 'user_unsupported_third_party_ids'),
             (5, 'upstream_oauth_links'), (6, 'compat_sessions'), (7, 'compat_access_tokens'),
             (8, 'compat_refresh_tokens')) AS v(pos, name)
UNION ALL
SELECT 100, c.relname::text, TRUE, TRUE
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY (current_schemas(false))
  AND c.relkind IN ('r', 'p')
  AND (c.relname IN ('syn2mas_restore_constraints', 'syn2mas_restore_indices') OR c.relname LIKE 'syn2mas\_\_%')
ORDER BY 1, 2
