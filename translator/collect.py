"""Named collections for ``for_each`` mapping files: what YAML cannot enumerate by itself.

``oidc_providers`` is the list of Synapse OIDC providers ``generate`` converts (mapping.md 4.1, 4.2), built on
engine/synapse_providers.py so that the translator, the check rules and the database checks agree on which
providers exist, which are skipped and what their ids are. Skipped providers are reported by the check rule
``oidc-provider-skipped``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from engine.configdoc import ConfigDoc
from engine.locations import Path, format_path
from engine.synapse_providers import collect_providers

from .registry import registrar


@dataclass(frozen=True)
class Item:
    """One element of a collection: its Synapse mapping, its id and where it is."""

    key: str
    path: Path
    config: dict

    @property
    def path_text(self) -> str:
        return format_path(self.path)


Collection = Callable[[ConfigDoc], list[Item]]
COLLECTIONS: dict[str, Collection] = {}
collection = registrar(COLLECTIONS)  # @collection("name"): usable as `for_each: {collection: name}`


@collection("oidc_providers")
def oidc_providers(doc: ConfigDoc) -> list[Item]:
    """The providers ``generate`` converts, sorted by Synapse id in byte order (mapping.md 4.1)."""
    converted = [Item(p.key, p.path, p.config) for p in collect_providers(doc.data) if p.skipped is None]
    return sorted(converted, key=lambda item: item.key.encode("utf-8"))
