"""``up`` and ``down``: a devnet that outlives the command that started it.

::

    info = await up(n_borrowers=20, port=8545, state_dir=Path(".devnet"), seed=1)
    down(Path(".devnet"))   # -> True when an anvil was stopped

``up`` starts anvil (log in ``<state_dir>/anvil.log``), deploys (Aave V3, Morpho Blue, the
Comet stand-in, Uniswap V3 and a KeeperLiquidator owned by the devnet liquidator), and writes
``<state_dir>/state.json``, ``morpho.json``, ``comet.json``, ``uniswap.json`` (with the
liquidator contract; ``read_uniswap``) and ``<state_dir>/keeper.toml`` (with ``[dex]`` and
``[liquidator] contract``). If the deployment fails, the
anvil it started is stopped again. ``down`` stops the anvil recorded in state.json (only if
that PID still is an anvil) and removes state.json; keeper.toml and anvil.log stay.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from keeper.devnet.anvil import is_anvil_running, start_anvil, stop_anvil
from keeper.devnet.api import connect, deploy
from keeper.devnet.comet import CometInfo, deploy_comet
from keeper.devnet.morpho import MorphoInfo, compile_morpho, deploy_morpho
from keeper.devnet.uniswap import (
    UniswapInfo,
    deploy_devnet_liquidator,
    deploy_uniswap,
    dex_config_toml,
)
from keeper.devnet.state import (
    ANVIL_LOG,
    CONFIG_FILE,
    STATE_FILE,
    DevnetInfo,
    read_state,
    write_keeper_config,
    write_state,
)
from keeper.errors import DevnetError
from keeper.progress import Steps

MORPHO_FILE = "morpho.json"
COMET_FILE = "comet.json"
UNISWAP_FILE = "uniswap.json"


def running_devnet(state_dir: Path) -> DevnetInfo | None:
    """The devnet recorded in ``state_dir`` if its anvil is still running."""
    if not (state_dir / STATE_FILE).exists():
        return None
    info = read_state(state_dir)
    if info.anvil_pid is not None and is_anvil_running(info.anvil_pid):
        return info
    return None


async def up(n_borrowers: int, port: int, state_dir: Path, seed: int = 1,
             steps: Steps | None = None, aave: str = "3.6") -> DevnetInfo:
    """Start anvil, deploy the market (Aave ``aave``: "3.0.2" or "3.6") and borrowers, record
    state and the keeper config (``steps`` shows each phase as it runs)."""
    steps = steps or Steps.quiet()
    live = running_devnet(state_dir)
    if live is not None:
        raise DevnetError(
            f"a devnet is already up (anvil pid {live.anvil_pid}, {live.rpc_url}); "
            f"run `keeper devnet down --state-dir {state_dir}` first"
        )
    state_dir.mkdir(parents=True, exist_ok=True)
    with steps.step(f"start anvil on 127.0.0.1:{port or 'a free port'}"):
        proc = start_anvil(port, log_path=state_dir / ANVIL_LOG)
    try:
        source = "compiled from npm @aave-dao/aave-v3-origin" if aave == "3.6" else "npm @aave/core-v3"
        with steps.step(f"Aave V3 {aave}: deploy ({source}), seed {n_borrowers} borrowers"):
            info = await deploy(proc.rpc_url, n_borrowers, seed, aave)
        w3 = connect(proc.rpc_url)
        try:
            with steps.step("Morpho Blue 1.0.0: compile with npm solc 0.8.19 (cached in build/)"):
                compile_morpho()
            with steps.step(f"Morpho Blue: deploy WETH/USDC and WBTC/USDC, seed {n_borrowers} borrowers"):
                minfo = await deploy_morpho(w3, info, n_borrowers, seed)
            with steps.step(f"Compound V3 stand-in (CometStandIn): deploy, seed {n_borrowers} borrowers"):
                cinfo = await deploy_comet(w3, info, n_borrowers, seed)
            with steps.step("Uniswap V3 (npm v3-core 1.0.1 / v3-periphery 1.4.4): 12 pools at the feed prices"):
                uinfo = await deploy_uniswap(w3, info)
            with steps.step("KeeperLiquidator (contracts/src), owned by the keeper wallet"):
                liquidator = await deploy_devnet_liquidator(proc.rpc_url, info.dev_keys["liquidator"], uinfo.router)
        finally:
            await w3.provider.disconnect()
    except BaseException:
        stop_anvil(proc.pid)
        raise
    info = dataclasses.replace(info, anvil_pid=proc.pid, anvil_port=proc.port)
    write_state(info, state_dir)
    (state_dir / MORPHO_FILE).write_text(json.dumps(minfo.to_json(), indent=2))
    write_keeper_config(info, state_dir / CONFIG_FILE)
    (state_dir / COMET_FILE).write_text(json.dumps(cinfo.to_json(), indent=2))
    with (state_dir / CONFIG_FILE).open("a") as f:
        f.write(morpho_config_toml(minfo) + comet_config_toml(cinfo) + dex_config_toml(uinfo, liquidator))
    (state_dir / UNISWAP_FILE).write_text(json.dumps({**uinfo.to_json(), "liquidator": liquidator}, indent=2))
    return info


def read_uniswap(state_dir: Path) -> tuple[UniswapInfo, str] | None:
    """The devnet's Uniswap deployment and liquidator contract, if ``up`` recorded them."""
    path = state_dir / UNISWAP_FILE
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return UniswapInfo.from_json({k: v for k, v in data.items() if k != "liquidator"}), data["liquidator"]


def comet_config_toml(cinfo: CometInfo) -> str:
    """The Compound V3 entry of the devnet's keeper config (the devnet's Comet stand-in)."""
    return (f'\n[[markets]]\nprotocol = "compound_v3"\nname = "comet"\ncomet = "{cinfo.comet}"'
            f"  # CometStandIn: a stand-in for tests\nstart_block = {cinfo.deploy_block}\n")


def morpho_config_toml(minfo: MorphoInfo) -> str:
    """The Morpho Blue market entry of the devnet's keeper config."""
    ids = ", ".join(f'"{m}"' for m in minfo.market_ids)
    return (f'\n[[markets]]\nprotocol = "morpho_blue"\nname = "morpho"\nmorpho = "{minfo.morpho}"\n'
            f"market_ids = [{ids}]  # {', '.join(minfo.labels[m] for m in minfo.market_ids)}\n"
            f"start_block = {minfo.deploy_block}\n")


def down(state_dir: Path) -> bool:
    """Stop the recorded anvil and forget the state. False when nothing was running."""
    path = state_dir / STATE_FILE
    if not path.exists():
        return False
    info = read_state(state_dir)
    stopped = stop_anvil(info.anvil_pid) if info.anvil_pid is not None else False
    path.unlink()
    return stopped
