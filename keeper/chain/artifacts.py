"""keeper's own contracts (contracts/src: the lens, the stand-ins, ...) as ``Artifact`` values,
read from the package data the build step wrote (``keeper.package_data``; a development
checkout compiles on first use when its sources changed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from keeper.package_data import compile_own, own_contract  # noqa: F401  (compile_own re-exported)
from keeper.package_data import COMPILE_JS, OWN_BUILD, OWN_SOURCES  # noqa: F401


@dataclass(frozen=True, slots=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str  # 0x-hex creation code, with __$...$__ placeholders when it links libraries
    link_references: dict[str, dict[str, list[dict[str, int]]]]  # file -> lib -> [{start, length}]
    source: str  # where it was read from, for error messages and contracts/abi/README.md
    deployed_bytecode: str = ""  # 0x-hex runtime code (own contracts only)

    def libraries(self) -> set[str]:
        return {lib for libs in self.link_references.values() for lib in libs}


def load_own(name: str) -> Artifact:
    """One of keeper's own contracts, e.g. ``load_own("PriceFeed")``."""
    c = own_contract(name)
    return Artifact(name, c["abi"], c["bytecode"], c.get("linkReferences") or {}, c["source"],
                    c.get("deployedBytecode", ""))
