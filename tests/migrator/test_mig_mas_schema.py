"""The MAS schema fixture, the manifest, and the MAS-side preconditions (§8, §9, §10.1)."""
from __future__ import annotations

import json

import psycopg

from migrator import masschema
from mighelpers import PROVIDER_ULID, add_provider, execute, rows

EIGHT = masschema.TARGET_TABLES


def test_fixture_has_every_named_constraint_and_index(mas_db):
    names = {r[0] for r in rows(mas_db, "SELECT conname FROM pg_constraint")}
    for name in ("users_pkey", "users_username_unique", "user_passwords_user_id_fkey",
                 "user_passwords_upgraded_from_id_fkey", "user_emails_user_id_fkey",
                 "user_unsupported_third_party_ids_pkey", "upstream_oauth_links_subject_unique",
                 "upstream_oauth_links_provider_fkey", "upstream_oauth_link_user_fkey",
                 "compat_sessions_user_session_id_fkey", "compat_access_tokens_access_token_unique",
                 "compat_refresh_tokens_refresh_token_unique", "compat_refresh_tokens_compat_access_token_id_fkey"):
        assert name in names
    indexes = {r[0] for r in rows(mas_db, "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")}
    for name in ("users_lower_username_idx", "users_username_trgm_idx", "user_emails_lower_email_idx",
                 "idx_upstream_oauth_links_orphaned", "upstream_oauth_links_human_account_name_trgm_idx",
                 "compat_sessions_user_fk", "compat_sessions_active_user_idx", "compat_refresh_tokens_access_token_fk"):
        assert name in indexes
    # every referencing table of §8 has its foreign key into the eight
    refs = rows(mas_db, "SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint "
                        "WHERE contype = 'f' AND confrelid = ANY(%s::regclass[]) AND NOT conrelid = ANY(%s::regclass[])",
                (list(EIGHT), list(EIGHT)))
    assert {r[0] for r in refs} == {"user_sessions", "oauth2_sessions", "user_terms", "personal_sessions",
                                    "user_session_authentications", "user_recovery_tickets", "compat_sso_logins",
                                    "upstream_oauth_authorization_sessions"}
    assert not rows(mas_db, "SELECT 1 FROM pg_constraint WHERE contype = 'c' AND conrelid = ANY(%s::regclass[])",
                    (list(EIGHT),))


def test_sqlx_rows_match_manifest(mas_db):
    with open(masschema.MANIFEST_PATH) as fh:
        release = json.load(fh)["releases"][-1]
    want = {(m["version"], m["description"], bytes.fromhex(m["checksum"] or "")) for m in release["migrations"]}
    have = {(v, d, bytes(c)) for v, d, c in rows(mas_db, "SELECT version, description, checksum FROM _sqlx_migrations")}
    assert have == want
    assert max(v for v, _, _ in have) == release["latest_version"] == 20260720134722


def test_fixture_passes_all_preconditions(mas_db):
    add_provider(mas_db)
    with psycopg.connect(mas_db) as conn:
        assert masschema.schema_problems(conn) == []
        assert masschema.emptiness_problems(conn) == []
        assert masschema.provider_problems(conn, [PROVIDER_ULID]) == []
        assert masschema.found_version(conn) == 20260720134722


def test_schema_problems_detected(fresh_mas_db):
    mas_db = fresh_mas_db
    with psycopg.connect(mas_db, autocommit=True) as conn:
        conn.execute("DELETE FROM _sqlx_migrations WHERE version = 20260720134722")
        assert any("latest applied" in p for p in masschema.schema_problems(conn))
        conn.execute("INSERT INTO _sqlx_migrations VALUES (20260720134722, 'x', now(), false, '\\x', -1)")
        assert "success = false" in masschema.schema_problems(conn)[0]
        conn.execute("UPDATE _sqlx_migrations SET success = true WHERE version = 20260720134722")
        conn.execute("DELETE FROM _sqlx_migrations WHERE version = 20250130170011")
        assert any("too old" in p for p in masschema.schema_problems(conn))
        conn.execute("DROP TABLE _sqlx_migrations")
        assert "no `_sqlx_migrations`" in masschema.schema_problems(conn)[0]


def test_emptiness_and_provider_problems(fresh_mas_db):
    mas_db = fresh_mas_db
    execute(mas_db, "INSERT INTO users (user_id, username, created_at) VALUES (gen_random_uuid(), 'x', now());"
                    "CREATE TABLE syn2mas_restore_indices (x int)")
    with psycopg.connect(mas_db) as conn:
        problems = masschema.emptiness_problems(conn)
        assert any("`users` is not empty" in p for p in problems)
        assert any("syn2mas_restore_indices" in p for p in problems)
        assert "not in `upstream_oauth_providers`" in masschema.provider_problems(conn, [PROVIDER_ULID])[0]
    add_provider(mas_db, disabled=True)
    with psycopg.connect(mas_db) as conn:
        assert "disabled" in masschema.provider_problems(conn, [PROVIDER_ULID])[0]
