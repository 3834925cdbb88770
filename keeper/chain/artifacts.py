"""keeper's own contracts (contracts/src: the lens, the price-feed stand-in, ...): their
solc build, read at run time. Compiled by ``keeper/devnet/compile.js`` (npm solc 0.8.19) into
``build/contracts.json``, cached until a source changes (``load_own``). Raises ``DevnetError``
with the path it looked at when something is missing."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from keeper.errors import DevnetError

ROOT = Path(__file__).resolve().parents[2]
COMPILE_JS = ROOT / "keeper" / "devnet" / "compile.js"
OWN_SOURCES = ROOT / "contracts" / "src"
OWN_BUILD = ROOT / "build" / "contracts.json"


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


def compile_own(timeout_s: float = 120.0) -> Path:
    """Run compile.js (no-op when the cache in build/ matches contracts/src); return the output."""
    try:
        proc = subprocess.run(
            ["node", str(COMPILE_JS), str(OWN_SOURCES), str(OWN_BUILD)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except FileNotFoundError as e:
        raise DevnetError("node is not installed (needed to compile contracts/src)") from e
    except subprocess.TimeoutExpired as e:
        raise DevnetError(f"compiling contracts/src took longer than {timeout_s:.0f} s") from e
    if proc.returncode != 0:
        raise DevnetError(f"compiling contracts/src failed:\n{proc.stderr.strip()}")
    return OWN_BUILD


@cache
def _own_build() -> dict[str, Any]:
    compile_own()
    return json.loads(OWN_BUILD.read_text())["contracts"]


def load_own(name: str) -> Artifact:
    """One of keeper's own contracts, e.g. ``load_own("PriceFeed")`` (compiled on first use)."""
    contracts = _own_build()
    if name not in contracts:
        raise DevnetError(f"contract {name!r} not in {OWN_BUILD} (have {sorted(contracts)})")
    c = contracts[name]
    return Artifact(name, c["abi"], c["bytecode"], c.get("linkReferences") or {}, c["source"],
                    c.get("deployedBytecode", ""))
