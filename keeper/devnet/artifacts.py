"""Where the devnet's bytecode and ABIs come from, read at run time (never committed).

* Aave V3: hardhat artifacts of npm ``@aave/core-v3`` under ``node_modules`` (``load_aave``),
  linked to their logic libraries with ``link``.
* Multicall3: the creation code npm ``viem`` ships as ``multicall3Bytecode`` (``multicall3_creation_code``).
* keeper's own Solidity (``contracts/src``): compiled when the package is built
  (``setup_contracts.py`` -> ``keeper/_artifacts``, read by ``keeper.package_data``); in a
  checkout whose sources changed since, by ``keeper/devnet/compile.js`` (npm solc 0.8.19) into
  ``build/contracts.json``, cached until a source changes (``load_own``).

Everything here raises ``DevnetError`` with the path it looked at when something is missing.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path


from keeper.chain.artifacts import (  # noqa: F401  keeper's own build, re-exported
    COMPILE_JS, OWN_BUILD, OWN_SOURCES, Artifact, compile_own, load_own)
from keeper.errors import DevnetError

ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = ROOT / "node_modules"
AAVE_ARTIFACTS = NODE_MODULES / "@aave" / "core-v3" / "artifacts" / "contracts"
ANVIL_BIN = NODE_MODULES / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
VIEM_CONTRACTS_JS = NODE_MODULES / "viem" / "_cjs" / "constants" / "contracts.js"

# Artifact name -> path under @aave/core-v3/artifacts/contracts (only what the devnet uses).
AAVE_PATHS = {
    "PoolAddressesProvider": "protocol/configuration/PoolAddressesProvider.sol",
    "ACLManager": "protocol/configuration/ACLManager.sol",
    "Pool": "protocol/pool/Pool.sol",
    "PoolConfigurator": "protocol/pool/PoolConfigurator.sol",
    "DefaultReserveInterestRateStrategy": "protocol/pool/DefaultReserveInterestRateStrategy.sol",
    "AToken": "protocol/tokenization/AToken.sol",
    "StableDebtToken": "protocol/tokenization/StableDebtToken.sol",
    "VariableDebtToken": "protocol/tokenization/VariableDebtToken.sol",
    "AaveOracle": "misc/AaveOracle.sol",
    "AaveProtocolDataProvider": "misc/AaveProtocolDataProvider.sol",
    "MintableERC20": "mocks/tokens/MintableERC20.sol",
    "IPool": "interfaces/IPool.sol",
    "IScaledBalanceToken": "interfaces/IScaledBalanceToken.sol",
    "IERC20Detailed": "dependencies/openzeppelin/contracts/IERC20Detailed.sol",
    "BorrowLogic": "protocol/libraries/logic/BorrowLogic.sol",
    "BridgeLogic": "protocol/libraries/logic/BridgeLogic.sol",
    "EModeLogic": "protocol/libraries/logic/EModeLogic.sol",
    "FlashLoanLogic": "protocol/libraries/logic/FlashLoanLogic.sol",
    "LiquidationLogic": "protocol/libraries/logic/LiquidationLogic.sol",
    "PoolLogic": "protocol/libraries/logic/PoolLogic.sol",
    "SupplyLogic": "protocol/libraries/logic/SupplyLogic.sol",
    "ConfiguratorLogic": "protocol/libraries/logic/ConfiguratorLogic.sol",
}


def aave_artifact_path(name: str) -> Path:
    try:
        rel = AAVE_PATHS[name]
    except KeyError as e:
        raise DevnetError(f"no Aave artifact path known for {name!r}") from e
    return AAVE_ARTIFACTS / rel / f"{name}.json"


@cache
def load_aave(name: str) -> Artifact:
    """A hardhat artifact of npm @aave/core-v3, e.g. ``load_aave("Pool")``."""
    path = aave_artifact_path(name)
    if not path.is_file():
        raise DevnetError(
            f"Aave V3 artifact missing: {path} (run `npm install` in {ROOT}; make does it)"
        )
    data = json.loads(path.read_text())
    return Artifact(name, data["abi"], data["bytecode"], data.get("linkReferences") or {}, str(path))


def link(artifact: Artifact, libraries: dict[str, str]) -> str:
    """Creation code with every library placeholder range replaced by the library's address."""
    hex_code = artifact.bytecode.removeprefix("0x")
    for libs in artifact.link_references.values():
        for lib, ranges in libs.items():
            if lib not in libraries:
                raise DevnetError(f"{artifact.name} needs library {lib}, which was not deployed")
            addr = libraries[lib].removeprefix("0x").lower()
            for r in ranges:
                start, length = 2 * r["start"], 2 * r["length"]
                hex_code = hex_code[:start] + addr + hex_code[start + length :]
    if "__" in hex_code:
        raise DevnetError(f"{artifact.name}: unlinked placeholder left in bytecode")
    return "0x" + hex_code


@cache
def multicall3_creation_code() -> str:
    """Multicall3's creation code, as npm viem exports it (``multicall3Bytecode``)."""
    if not VIEM_CONTRACTS_JS.is_file():
        raise DevnetError(f"viem missing: {VIEM_CONTRACTS_JS} (run `npm install`)")
    text = VIEM_CONTRACTS_JS.read_text()
    m = re.search(r"exports\.multicall3Bytecode\s*=\s*'(0x[0-9a-fA-F]+)'", text)
    if not m:
        raise DevnetError(f"multicall3Bytecode not found in {VIEM_CONTRACTS_JS}")
    return m.group(1)
