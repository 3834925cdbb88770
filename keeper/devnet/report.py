"""What `keeper devnet up` tells a person: every protocol's addresses, where the config and
state were written, and how to run keeper in live mode against it (which key, where it is)."""

from __future__ import annotations

import json
from pathlib import Path

from keeper.devnet.lifecycle import COMET_FILE, MORPHO_FILE, UNISWAP_FILE
from keeper.devnet.state import CONFIG_FILE, STATE_FILE, DevnetInfo


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def up_report(info: DevnetInfo, state_dir: Path, seconds: float) -> str:
    """The lines `keeper devnet up` prints (rich markup)."""
    m, c = _read(state_dir / MORPHO_FILE), _read(state_dir / COMET_FILE)
    lines = [f"[bold]devnet up in {seconds:.1f} s[/]: anvil pid {info.anvil_pid} at {info.rpc_url} "
             f"(chain id {info.chain_id})",
             f"[bold]Aave V3[/] {info.aave_version} ("
             + ("compiled from npm @aave-dao/aave-v3-origin sources)" if info.aave_version == "3.6"
                else "npm @aave/core-v3 artifacts)"),
             f"  PoolAddressesProvider {info.pool_addresses_provider}",
             f"  Pool                  {info.pool}",
             f"  AaveOracle            {info.oracle}",
             f"  PoolDataProvider      {info.data_provider}",
             f"  borrowers             {len(info.borrowers)} (lenders {len(info.lenders)})"]
    if m is not None:
        lines += ["[bold]Morpho Blue[/] 1.0.0 (npm @morpho-org/morpho-blue, compiled with solc 0.8.19)",
                  f"  Morpho                {m['morpho']}"]
        lines += [f"  market {m['labels'][i]:<14} {i}" for i in m["market_ids"]]
        lines += [f"  borrowers             {len(m['borrowers'])}"]
    if c is not None:
        lines += ["[bold]Compound V3[/] stand-in (contracts/src/CometStandIn.sol: for tests, not Comet's bytecode)",
                  f"  Comet                 {c['comet']}",
                  f"  base / collateral     {c['base_symbol']} / {', '.join(c['assets'])}",
                  f"  borrowers             {len(c['borrowers'])}"]
    u = _read(state_dir / UNISWAP_FILE)
    if u is not None:
        lines += ["[bold]Uniswap V3[/] (npm v3-core 1.0.1 / v3-periphery 1.4.4), for capital-free liquidation",
                  f"  Uniswap V3 factory    {u['factory']}",
                  f"  SwapRouter            {u['router']}",
                  f"  QuoterV2              {u['quoter']}",
                  f"  pools                 {len(u['pools'])} (0.05% and 0.3%, every pair, at the feed prices)",
                  f"  KeeperLiquidator      {u['liquidator']} (owner: the keeper wallet)"]
    lines += ["[bold]shared[/]",
              f"  tokens                {', '.join(f'{s} {a}' for s, a in info.tokens.items())}",
              f"  price feeds           {', '.join(f'{s} {a}' for s, a in info.feeds.items())}",
              f"  Multicall3            {info.multicall3}",
              f"keeper config           {state_dir / CONFIG_FILE} (all three markets, mode = dry_run)",
              f"state                   {state_dir / STATE_FILE} (every address; {MORPHO_FILE}, {COMET_FILE})",
              f"live mode               the keeper wallet is {info.liquidator}, anvil's public dev account "
              f"#1 (a well-known test key, funded with ETH; its key is dev_keys.liquidator in "
              f"{state_dir / STATE_FILE}):",
              f"                        export KEEPER_PRIVATE_KEY=$(keeper devnet key --state-dir {state_dir})",
              f"                        and set mode = \"live\" at the top of {state_dir / CONFIG_FILE}"]
    return "\n".join(lines)
