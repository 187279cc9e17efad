"""Name -> function tables that rule files refer to (transforms, collections)."""
from __future__ import annotations

from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)


def registrar(table: dict[str, F]) -> Callable[[str], Callable[[F], F]]:
    """A decorator factory: ``@register("name")`` puts the function into ``table`` under ``name``."""
    def register(name: str) -> Callable[[F], F]:
        def add(fn: F) -> F:
            if name in table:
                raise ValueError(f"{name!r} is registered twice")
            table[name] = fn
            return fn
        return add
    return register
