"""Canonical key order of the MAS document: the property order of MAS's published schema.

New keys are inserted at their canonical position relative to the keys already present, so a fresh file comes
out in schema order (small diffs against ``mas-cli config generate``) and an existing file keeps the admin's
order for everything else (mapping.md 4.10, 5.8, 5.10).
"""
from __future__ import annotations

from typing import Any

from .fresh import MAS_SECTION_ORDER, PROVIDER_KEY_ORDER

_IMPORT = ("action", "template")
# Shapes are key paths with every list position written as "[]" (see targetpath.shape_of).
KEY_ORDERS: dict[tuple, tuple[str, ...]] = {
    (): MAS_SECTION_ORDER,
    ("http",): ("listeners", "trusted_proxies", "public_base", "issuer"),
    ("database",): ("uri", "host", "port", "socket", "username", "password", "password_file", "database",
                    "ssl_mode", "ssl_ca", "ssl_ca_file", "ssl_certificate", "ssl_certificate_file", "ssl_key",
                    "ssl_key_file", "max_connections", "min_connections", "connect_timeout", "idle_timeout",
                    "max_lifetime"),
    ("email",): ("from", "reply_to", "transport", "mode", "hostname", "port", "username", "password",
                 "password_file", "command"),
    ("secrets",): ("encryption_file", "encryption", "keys", "keys_dir"),
    ("passwords",): ("enabled", "schemes", "minimum_complexity"),
    ("passwords", "schemes", "[]"): ("version", "algorithm", "unicode_normalization", "cost", "secret",
                                     "secret_file"),
    ("matrix",): ("kind", "homeserver", "secret_file", "secret", "endpoint"),
    ("upstream_oauth2",): ("providers",),
    ("upstream_oauth2", "providers", "[]"): PROVIDER_KEY_ORDER,
    ("upstream_oauth2", "providers", "[]", "sign_in_with_apple"): ("private_key_file", "private_key", "team_id",
                                                                   "key_id"),
    ("upstream_oauth2", "providers", "[]", "claims_imports"): ("subject", "skip_confirmation", "localpart",
                                                               "displayname", "email", "account_name"),
    ("upstream_oauth2", "providers", "[]", "claims_imports", "subject"): ("template",),
    ("upstream_oauth2", "providers", "[]", "claims_imports", "localpart"): ("action", "template", "on_conflict"),
    ("upstream_oauth2", "providers", "[]", "claims_imports", "displayname"): _IMPORT,
    ("upstream_oauth2", "providers", "[]", "claims_imports", "email"): _IMPORT,
    ("branding",): ("service_name", "policy_uri", "tos_uri", "imprint"),
    ("captcha",): ("service", "site_key", "secret_key"),
    ("account",): ("email_change_allowed", "displayname_change_allowed", "password_registration_enabled",
                   "password_registration_email_required", "password_change_allowed", "password_recovery_enabled",
                   "password_registration_token_required", "account_deactivation_allowed",
                   "login_with_email_allowed", "registration_token_required"),
}


def canonical_position(existing: list[Any], key: str, order: tuple[str, ...] | None) -> int:
    """Where ``key`` goes among ``existing`` keys: before the first known key that sorts after it, else last.

    Keys the order does not know (an admin's additions) never move; an unknown new key goes last.
    """
    if not order or key not in order:
        return len(existing)
    rank = order.index(key)
    for pos, other in enumerate(existing):
        if other in order and order.index(other) > rank:
            return pos
    return len(existing)


def order_for(shape: tuple) -> tuple[str, ...] | None:
    """The canonical key order of the mapping at ``shape`` (its own path), if the schema gives one."""
    return KEY_ORDERS.get(tuple(shape))
