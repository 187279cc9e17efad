"""Parameters of the database rules, derived from the configurations (checks.md 4 definitions).

Database rules never read configuration files themselves; they receive these values as query
parameters (``:server_name``, ``:known_providers`` ...) and as expression data (``params``).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from .configdoc import ConfigDoc
from .errors import ConfigError


@dataclass(frozen=True)
class MasProvider:
    """A MAS upstream provider that carries a ``synapse_idp_id``."""

    synapse_idp_id: str
    id: str
    uuid: str | None  # None when `id` is not a ULID (mas-config-invalid reports that)


def ulid_to_uuid(text: str) -> str | None:
    """The UUID form of a ULID string (same 128 bits, data-migration.md 5.1), or None if it is not one."""
    from ulid import ULID

    try:
        return str(uuid.UUID(bytes=ULID.from_str(str(text)).bytes))
    except (ValueError, TypeError):
        return None


def mas_providers(mas: ConfigDoc | None) -> list[MasProvider]:
    """MAS providers with ``synapse_idp_id`` (disabled ones included: the migration maps to them too)."""
    out = []
    entries = mas.get("upstream_oauth2.providers", []) if mas else []
    # Not a list (`providers: true`): no providers here; `mas-config-invalid` reports the value.
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("synapse_idp_id") is not None:
            out.append(MasProvider(str(entry["synapse_idp_id"]), str(entry.get("id", "")),
                                   ulid_to_uuid(entry.get("id", ""))))
    return sorted(out, key=lambda p: (p.synapse_idp_id, p.id))


@dataclass
class DbFacts:
    """Everything database rules may use besides the databases themselves."""

    server_name: str
    known_providers: list[str]
    mapped_providers: list[str]
    passwords_enabled: bool
    providers: list[MasProvider] = field(default_factory=list)
    ignore_missing_auth_providers: bool = False
    mode: str = "check"  # check | dry-run | migrate
    assume_synapse_stopped: bool = False
    # Filled from the Synapse database before MAS rules run (None: Synapse not available).
    linked_providers: list[str] | None = None

    def params(self) -> dict[str, Any]:
        """Query parameters; booleans as 0/1 because SQLite has no boolean type."""
        linked = self.linked_mas_providers()
        return {
            "server_name": self.server_name,
            "known_providers": list(self.known_providers),
            "mapped_providers": list(self.mapped_providers),
            "passwords_enabled": 1 if self.passwords_enabled else 0,
            "linked_provider_keys": [p.synapse_idp_id for p in linked],
            "linked_provider_ids": [p.id for p in linked],
            # An id that is not a ULID cannot be in the database; the nil UUID never is either.
            "linked_provider_uuids": [p.uuid or "00000000-0000-0000-0000-000000000000" for p in linked],
        }

    def flags(self) -> dict[str, Any]:
        return {"ignore_missing_auth_providers": self.ignore_missing_auth_providers, "mode": self.mode,
                "assume_synapse_stopped": self.assume_synapse_stopped}

    def linked_mas_providers(self) -> list[MasProvider]:
        """MAS providers that will receive links: all of them when the Synapse database was not read."""
        if self.linked_providers is None:
            return list(self.providers)
        used = set(self.linked_providers)
        return [p for p in self.providers if p.synapse_idp_id in used]


def build_facts(synapse: ConfigDoc, mas: ConfigDoc | None, *, rules_dir: str | None = None,
                ignore_missing_auth_providers: bool = False, mode: str = "check",
                assume_synapse_stopped: bool = False) -> DbFacts:
    """Facts from the merged configurations.

    Known providers are those of checks.md 4.3: the Synapse OIDC keys, plus `saml`/`cas` when the
    configuration rules `saml2-enabled`/`cas-enabled` fire (evaluated by engine.checks, one definition).
    """
    from .checks import known_provider_ids

    server_name = synapse.get("server_name")
    if not isinstance(server_name, str) or not server_name:
        raise ConfigError("the Synapse configuration has no `server_name`", file=synapse.files[0] if synapse.files
                          else None, hint="database checks compare user ids against it; pass every Synapse "
                                          "configuration file with --synapse-config")
    providers = mas_providers(mas)
    enabled = mas.get("passwords.enabled", True) if mas else True
    return DbFacts(server_name=server_name, known_providers=known_provider_ids(synapse, rules_dir),
                   mapped_providers=sorted({p.synapse_idp_id for p in providers}),
                   passwords_enabled=enabled is not False, providers=providers,
                   ignore_missing_auth_providers=ignore_missing_auth_providers, mode=mode,
                   assume_synapse_stopped=assume_synapse_stopped)
