"""Write ``contracts/abi/*.json`` (the ABIs keeper reads at run time) and their README.

    python -m keeper.devnet.export_abi

ABIs only: bytecode is never written to the repository (the devnet reads it from
node_modules at run time). Re-run after upgrading @aave/core-v3 or changing contracts/src.
"""

from __future__ import annotations

import json
from pathlib import Path

from keeper.devnet.artifacts import NODE_MODULES, OWN_BUILD, ROOT, load_aave, load_own

ABI_DIR = ROOT / "contracts" / "abi"

# output file -> (source kind, artifact name)
EXPORTS = {
    "Pool.json": ("aave", "IPool"),
    "PoolAddressesProvider.json": ("aave", "PoolAddressesProvider"),
    "AaveOracle.json": ("aave", "AaveOracle"),
    "AaveProtocolDataProvider.json": ("aave", "AaveProtocolDataProvider"),
    "AToken.json": ("aave", "AToken"),
    "IScaledBalanceToken.json": ("aave", "IScaledBalanceToken"),
    "VariableDebtToken.json": ("aave", "VariableDebtToken"),
    "StableDebtToken.json": ("aave", "StableDebtToken"),
    "IERC20Detailed.json": ("aave", "IERC20Detailed"),
    "ACLManager.json": ("aave", "ACLManager"),
    "PriceFeed.json": ("own", "PriceFeed"),
    "Multicall3.json": ("own", "IMulticall3"),
    "Comet.json": ("own", "IComet"),
    "MorphoBlue.json": ("morpho", "Morpho"),
    "KeeperLiquidator.json": ("own", "KeeperLiquidator"),
    "KeeperProtection.json": ("own", "KeeperProtection"),
}


def _version(package: str) -> str:
    return json.loads((NODE_MODULES / package / "package.json").read_text())["version"]


def export(abi_dir: Path = ABI_DIR) -> list[Path]:
    abi_dir.mkdir(parents=True, exist_ok=True)
    aave = _version("@aave/core-v3")
    solc = _version("solc")
    viem = _version("viem")
    rows, written = [], []
    for filename, (kind, name) in EXPORTS.items():
        if kind == "morpho":
            from keeper.devnet.morpho import load_morpho  # compiled from the npm sources

            art = load_morpho(name)
        else:
            art = load_aave(name) if kind == "aave" else load_own(name)
        path = abi_dir / filename
        path.write_text(json.dumps(art.abi, indent=1) + "\n")
        written.append(path)
        if kind == "aave":
            src = Path(art.source).relative_to(NODE_MODULES)
            rows.append(f"| `{filename}` | npm `@aave/core-v3@{aave}` | `{src}` (`abi`) |")
        elif kind == "morpho":
            morpho = _version("@morpho-org/morpho-blue")
            rows.append(
                f"| `{filename}` | npm `@morpho-org/morpho-blue@{morpho}` `src/Morpho.sol`, compiled "
                f"with npm `solc@{solc}` by `keeper/devnet/compile_morpho.js` (via-IR, 999999 runs, "
                "paris) | `build/morpho.json` → `Morpho`, plus the events of "
                "`src/libraries/EventsLib.sol` (solc 0.8.19 leaves library events out of the ABI) |"
            )
        else:
            rows.append(
                f"| `{filename}` | `{art.source}`, compiled with npm `solc@{solc}` | "
                f"`{OWN_BUILD.relative_to(ROOT)}` → `{name}` |"
            )
    readme = abi_dir / "README.md"
    readme.write_text(_README.format(rows="\n".join(rows), aave=aave, viem=viem))
    written.append(readme)
    return written


_README = """# contracts/abi

ABI JSON that keeper reads at run time. Only ABIs live here: bytecode is never committed.
The devnet (`keeper/devnet`) reads bytecode from `node_modules` when it deploys.

Regenerate with `python -m keeper.devnet.export_abi` (after `make install`).

| file | from | artifact |
|---|---|---|
{rows}

Notes

- `Pool.json` is the `IPool` interface: the deployed `Pool` adds only its constructor,
  `initialize` and `POOL_REVISION`.
- `AToken.json` includes the `IScaledBalanceToken` functions (`scaledBalanceOf`,
  `getScaledUserBalanceAndSupply`, `scaledTotalSupply`); `IScaledBalanceToken.json` is that
  interface alone, which the debt tokens share.
- `PriceFeed.json` is keeper's devnet stand-in for a Chainlink aggregator
  (`contracts/src/PriceFeed.sol`): the read functions match Chainlink's `AggregatorInterface`
  and `AggregatorV3Interface`, so the same ABI reads real feeds.
- `KeeperLiquidator.json` is keeper's own capital-free liquidator
  (`contracts/src/KeeperLiquidator.sol`, not a stand-in): deployed by
  `keeper liquidator deploy`; `keeper/dex/liquidator.py` encodes its calls.
- `KeeperProtection.json` is keeper's own deleverage contract
  (`contracts/src/KeeperProtection.sol`, not a stand-in): it repays a borrower's debt from its
  own collateral through the delegation the borrower gave it;
  `keeper/protocols/aave_v3/deleverage.py` encodes its calls.
- `Multicall3.json` is compiled from `contracts/src/IMulticall3.sol`, the interface of
  Multicall3 (github.com/mds1/multicall). The runtime code the devnet installs at
  `0xcA11bde05977b3631167028862bE2a173976CA11` comes from npm `viem@{viem}`
  (`multicall3Bytecode`); the integration tests check that every selector of this ABI is in it.
- `Comet.json` is the subset of Compound III's Comet interface that keeper uses (functions,
  structs and events of compound-finance/comet's `CometMainInterface` / `CometExtInterface`,
  same selectors and return layouts), declared as `IComet` in `contracts/src/CometStandIn.sol`.
  The devnet's `CometStandIn` (a stand-in, not Compound's bytecode) implements it, so the
  compiler checks the stand-in against the interface keeper reads a real Comet with.
- Aave artifacts are those of protocol version 3.0.2 as published in `@aave/core-v3@{aave}`
  (`node_modules/@aave/core-v3/artifacts/contracts/...`).
"""


if __name__ == "__main__":
    for p in export():
        print(p.relative_to(ROOT))
