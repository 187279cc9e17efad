"""Helpers for the migrator tests: run SQL, run a migration with fixed randomness, read MAS rows."""
from __future__ import annotations

from datetime import datetime, timezone

import psycopg
from migrator.run import MigrateOptions, migrate

SERVER = "example.org"
PROVIDER_ULID = "01HZX0G3P0V9Y8C6D5E4F3A2B1"  # the MAS config id of the test OIDC provider
RUN_START = datetime(2026, 8, 1, 12, 0, 0, tzinfo=timezone.utc)
RUN_START_MS = 1785585600000
KEY = b"k" * 32
# Tables emptied between tests (CASCADE also empties tables referencing them).
SYNAPSE_TABLES = "users, user_threepids, user_external_ids, devices, access_tokens, refresh_tokens"
MAS_TABLES = ("users, user_passwords, user_emails, user_unsupported_third_party_ids, upstream_oauth_links, "
              "compat_sessions, compat_access_tokens, compat_refresh_tokens, upstream_oauth_providers, "
              "user_sessions, oauth2_sessions, user_terms, personal_sessions, user_session_authentications, "
              "user_recovery_tickets, compat_sso_logins, upstream_oauth_authorization_sessions")


def write_configs(directory, mas_uri: str, *, synapse_extra: str = "", pepper: str | None = None) -> tuple[str, str]:
    """A Synapse and a MAS configuration that pass every configuration rule except one warning
    (`synapse-delegation-conflict`: Synapse still lists its OIDC provider, as before any migration).

    ``pepper`` sets Synapse's `password_config.pepper` and the same secret on MAS scheme version 1.
    """
    hs = directory / "homeserver.yaml"
    hs.write_text(f"server_name: {SERVER}\ndatabase:\n  name: psycopg2\n  args:\n    dbname: unused\n"
                  "oidc_providers:\n  - idp_id: dex\n    issuer: https://dex.example.org/\n    client_id: synapse\n"
                  + (f"password_config:\n  pepper: {pepper}\n" if pepper else "") + synapse_extra)
    mas = directory / "mas.yaml"
    mas.write_text(f"matrix:\n  homeserver: {SERVER}\n  secret: test-matrix-shared-secret\n"
                   f"database:\n  uri: '{mas_uri}'\n"
                   "passwords:\n  schemes:\n    - version: 1\n      algorithm: bcrypt\n"
                   "      unicode_normalization: true\n"
                   + (f"      secret: {pepper}\n" if pepper else "")
                   + "    - version: 2\n      algorithm: argon2id\n"
                   f"upstream_oauth2:\n  providers:\n    - id: {PROVIDER_ULID}\n      synapse_idp_id: oidc-dex\n"
                   "      issuer: https://dex.example.org/\n      client_id: synapse\n"
                   "      token_endpoint_auth_method: none\n")
    return str(hs), str(mas)


def execute(uri: str, statements: str, params: dict | None = None) -> None:
    """Run SQL (several statements allowed without params) in autocommit mode."""
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(statements, params)


def rows(uri: str, query: str, params: tuple | dict | None = None) -> list[tuple]:
    """All rows of a query."""
    with psycopg.connect(uri) as conn:
        return conn.execute(query, params).fetchall()


def add_provider(mas_uri: str, ulid: str = PROVIDER_ULID, disabled: bool = False) -> None:
    """What `mas-cli config sync` would have written for the test provider."""
    from migrator.ids import ulid_to_uuid

    execute(mas_uri, "INSERT INTO upstream_oauth_providers (upstream_oauth_provider_id, scope, client_id, "
                     "token_endpoint_auth_method, created_at, disabled_at) VALUES (%(id)s, 'openid', 'client', "
                     "'client_secret_basic', now(), CASE WHEN %(d)s THEN now() END)",
            {"id": ulid_to_uuid(ulid), "d": disabled})


def run(synapse, mas_uri: str, mapping: dict | None = None, **opts):
    """Migrate with the fixed key and run start of these tests."""
    options = MigrateOptions(server_name=SERVER, id_key=KEY, run_start=RUN_START, **opts)
    return migrate(synapse, mas_uri, {"oidc-dex": PROVIDER_ULID} if mapping is None else mapping, options)
