"""keeper's own compiled contracts and ABIs, read from the package (no Node at run time).

The build step (``setup_contracts.py``) compiles ``contracts/src`` with npm solc into
``keeper/_artifacts/contracts.json`` and copies ``contracts/abi`` to ``keeper/_artifacts/abi``;
both are package data, so an installed wheel carries them. :func:`own_contracts` reads that
file first. Only when it is missing, or when keeper runs from a checkout whose
``contracts/src`` no longer matches the shipped sources (a developer edited a contract), it
falls back to compiling on first use (``compile_own``: ``keeper/devnet/compile.js``, which needs
Node and ``node_modules``) and logs why, once.

:class:`ArtifactsMissing` (a ``DevnetError``) says what was looked at when neither works.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import structlog

from keeper.errors import DevnetError

log = structlog.get_logger("keeper.package_data")

PACKAGE = "keeper._artifacts"
CONTRACTS_FILE = "contracts.json"
# contracts/src next to the package: present in a development checkout, not in a wheel.
CHECKOUT_SOURCES = Path(__file__).resolve().parents[1] / "contracts" / "src"
CHECKOUT_ABI = CHECKOUT_SOURCES.parent / "abi"
ROOT = CHECKOUT_SOURCES.parents[1]
COMPILE_JS = Path(__file__).resolve().parent / "devnet" / "compile.js"
OWN_SOURCES = CHECKOUT_SOURCES
OWN_BUILD = ROOT / "build" / "contracts.json"


class ArtifactsMissing(DevnetError):
    """Neither the package data nor a development compile could give the contracts."""


def shipped_contracts() -> dict[str, Any] | None:
    """The whole contracts.json shipped in the package, or None when it is not there."""
    f = resources.files(PACKAGE).joinpath(CONTRACTS_FILE)
    if not f.is_file():
        return None
    return json.loads(f.read_text())


def source_hashes(src: Path) -> dict[str, str]:
    """sha256 of each ``*.sol`` in ``src`` (what compile.js records as ``sources``)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(src.glob("*.sol"))}


def stale_reason(data: dict[str, Any], src: Path | None = CHECKOUT_SOURCES) -> str | None:
    """Why shipped ``data`` does not match ``src`` (None when it does, or there is no ``src``)."""
    if src is None or not src.is_dir():
        return None  # an installed wheel: the shipped build is the truth
    shipped, now = data.get("sources") or {}, source_hashes(src)
    changed = sorted(n for n in shipped.keys() | now.keys() if shipped.get(n) != now.get(n))
    return f"contracts/src changed since the package was built ({', '.join(changed)})" if changed else None


@cache
def own_contracts() -> dict[str, dict[str, Any]]:
    """Name -> {abi, bytecode, deployedBytecode, linkReferences, source} for contracts/src."""
    data = shipped_contracts()
    reason = f"no package data {PACKAGE}/{CONTRACTS_FILE}" if data is None else stale_reason(data)
    if data is not None and reason is None:
        return data["contracts"]
    log.info("contracts.compile", reason=reason, fallback="npm solc (development checkout)")
    try:
        path = compile_own()
    except DevnetError as e:
        raise ArtifactsMissing(f"{reason}, and compiling failed: {e}") from e
    return json.loads(path.read_text())["contracts"]


def own_contract(name: str) -> dict[str, Any]:
    contracts = own_contracts()
    if name not in contracts:
        raise ArtifactsMissing(f"contract {name!r} not built (have {sorted(contracts)})")
    return contracts[name]


def abi(name: str) -> list[dict[str, Any]]:
    """An ABI of contracts/abi by file stem (``abi("Pool")``): package data, else the checkout."""
    f = resources.files(PACKAGE).joinpath("abi", f"{name}.json")
    if f.is_file():
        return json.loads(f.read_text())
    path = CHECKOUT_ABI / f"{name}.json"
    if path.is_file():
        return json.loads(path.read_text())
    raise ArtifactsMissing(f"no ABI {name!r} in {PACKAGE}/abi or {CHECKOUT_ABI}")


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
