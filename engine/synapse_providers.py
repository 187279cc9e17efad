"""Synapse's OIDC providers and the keys it stored in `user_external_ids.auth_provider` (mapping.md 4.1, 4.2).

Shared by the check rules (through `engine.predicates`), the database checks and the translator, so that
every part of syn2mas agrees on which provider ids exist.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .expr import py_truthy
from .locations import Path, format_path


@dataclass(frozen=True)
class SynapseProvider:
    """One OIDC provider as Synapse reads it; ``skipped`` says why `generate` does not convert it."""

    key: str
    path: Path
    config: dict = field(default_factory=dict)
    skipped: str | None = None
    duplicate: bool = False

    @property
    def path_text(self) -> str:
        return format_path(self.path)


def provider_key(idp_id: Any) -> str:
    """Synapse's key for an `idp_id`: absent or `oidc` gives `oidc`, anything else `oidc-<idp_id>`."""
    if idp_id is None or idp_id == "oidc":
        return "oidc"
    return f"oidc-{idp_id}"


def legacy_section_enabled(synapse: dict) -> bool:
    """The legacy `oidc_config` counts only when `truthy(oidc_config)` and `truthy(oidc_config.enabled)`."""
    section = synapse.get("oidc_config")
    return py_truthy(section) and isinstance(section, dict) and py_truthy(section.get("enabled"))


def _entries(synapse: dict) -> list[tuple[Path, dict, bool]]:
    # Synapse reads `oidc_providers` first, then the legacy section (synapse/config/oidc.py).
    out: list[tuple[Path, dict, bool]] = []
    providers = synapse.get("oidc_providers")
    if isinstance(providers, list):
        for i, entry in enumerate(providers):
            out.append((("oidc_providers", i), entry if isinstance(entry, dict) else {}, False))
    if legacy_section_enabled(synapse):
        out.append((("oidc_config",), synapse["oidc_config"], True))
    return out


def _skip_reason(config: dict, legacy: bool) -> str | None:
    if legacy and config.get("issuer") is None:
        return "the enabled legacy `oidc_config` has no `issuer` (Synapse would refuse to start)"
    if config.get("client_id") is None:
        return "it has no `client_id`"
    return None


def collect_providers(synapse: dict) -> list[SynapseProvider]:
    """Every Synapse OIDC provider in reading order, with its key and why it is skipped (if it is).

    A later provider whose key repeats an earlier one is kept in the list, marked ``duplicate``:
    Synapse refuses such a configuration; `generate` keeps the first (mapping.md 4.1).
    """
    seen: dict[str, Path] = {}
    out: list[SynapseProvider] = []
    for path, config, legacy in _entries(synapse or {}):
        key = provider_key(config.get("idp_id"))
        if key in seen:
            reason = f"its key `{key}` repeats the provider at `{format_path(seen[key])}`, which is kept"
            out.append(SynapseProvider(key, path, config, reason, duplicate=True))
            continue
        seen[key] = path
        out.append(SynapseProvider(key, path, config, _skip_reason(config, legacy)))
    return out


def synapse_oidc_keys(synapse: dict) -> list[str]:
    """The "Synapse OIDC keys" of checks.md 4: every provider key, skipped ones included, sorted."""
    return sorted({p.key for p in collect_providers(synapse)})
