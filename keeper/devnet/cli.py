"""``keeper devnet``: a local anvil with a real Aave V3 market (``devnet_app``, a typer app).

::

    keeper devnet up [--borrowers 20] [--port 8545] [--state-dir .devnet] [--seed 1]
    keeper devnet price WETH -30%        # or +10%, or an absolute USD price: 1500.25
    keeper devnet advance 86400          # seconds; 90m, 12h, 30d also work
    keeper devnet down

``up`` leaves anvil running and writes ``<state-dir>/keeper.toml`` (a keeper config for the
devnet) and ``<state-dir>/state.json`` (every address); the other commands read state.json.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from keeper.devnet.api import advance_time, apply_price_change, connect, get_price, set_price
from keeper.devnet.lifecycle import down as devnet_down
from keeper.devnet.lifecycle import read_uniswap, running_devnet, up as devnet_up
from keeper.devnet.uniswap import align_pools
from keeper.devnet.state import CONFIG_FILE, DEFAULT_STATE_DIR, STATE_FILE, read_state
from keeper.errors import KeeperError
from keeper.units import format_fixed

devnet_app = typer.Typer(
    help="A local anvil chain with a real Aave V3 market.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)

StateDir = Annotated[Path, typer.Option("--state-dir", help="where state.json and keeper.toml live")]
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def _fail(e: KeeperError) -> None:
    err.print(f"[bold red]error:[/] {e}", soft_wrap=True)
    raise typer.Exit(1)


@devnet_app.command()
def up(
    borrowers: Annotated[int, typer.Option("--borrowers", "-n", min=0, help="borrowers to seed")] = 20,
    port: Annotated[int, typer.Option(help="anvil port on 127.0.0.1 (0 = any free port)")] = 8545,
    state_dir: StateDir = DEFAULT_STATE_DIR,
    seed: Annotated[int, typer.Option(help="seed of the borrowers' keys and positions")] = 1,
) -> None:
    """Start anvil, deploy Aave V3, seed lenders and borrowers; leave it running."""
    t0 = time.perf_counter()
    try:
        info = asyncio.run(devnet_up(borrowers, port, state_dir, seed))
    except KeeperError as e:
        _fail(e)
    out.print(
        f"devnet up in {time.perf_counter() - t0:.1f} s: anvil pid {info.anvil_pid} at {info.rpc_url}\n"
        f"  PoolAddressesProvider {info.pool_addresses_provider}\n"
        f"  Pool                  {info.pool}\n"
        f"  AaveOracle            {info.oracle}\n"
        f"  reserves              {', '.join(info.tokens)}\n"
        f"  borrowers             {len(info.borrowers)} (lenders {len(info.lenders)})\n"
        f"  keeper config         {state_dir / CONFIG_FILE}\n"
        f"  state                 {state_dir / STATE_FILE}"
    )
    dex = read_uniswap(state_dir)
    if dex is not None:
        uinfo, liquidator = dex
        out.print(f"  Uniswap V3 factory    {uinfo.factory}\n"
                  f"  SwapRouter            {uinfo.router}\n"
                  f"  QuoterV2              {uinfo.quoter}\n"
                  f"  pools                 {len(uinfo.pools)} (0.05% and 0.3%, every pair)\n"
                  f"  KeeperLiquidator      {liquidator} (owner {info.liquidator})")


@devnet_app.command()
def down(state_dir: StateDir = DEFAULT_STATE_DIR) -> None:
    """Stop the devnet's anvil and forget its state."""
    try:
        stopped = devnet_down(state_dir)
    except KeeperError as e:
        _fail(e)
    out.print("devnet stopped" if stopped else "no devnet was running")


@devnet_app.command(context_settings={"ignore_unknown_options": True})
def price(
    asset: Annotated[str, typer.Argument(help="WETH, WBTC, USDC or DAI")],
    value: Annotated[str, typer.Argument(help="-30%, +10% or a USD price such as 1500.25")],
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Move an asset's price feed with a real, mined transaction; then arbitrage the devnet's
    Uniswap V3 pools back to the new oracle price with real swaps."""
    try:
        change = asyncio.run(_price(state_dir, asset, value))
    except KeeperError as e:
        _fail(e)
    out.print(
        f"{change.symbol}: {format_fixed(change.old_e8, 8)} -> {format_fixed(change.new_e8, 8)} USD "
        f"(block {change.block}, tx {change.tx_hash})"
    )


async def _price(state_dir: Path, asset: str, value: str):  # noqa: ANN202
    info = _live(state_dir)
    w3 = connect(info.rpc_url)
    try:
        old = await get_price(w3, info, asset)
        new = apply_price_change(old, value)
        if new <= 0:
            raise KeeperError(f"{value} gives a price of {new}: a USD price must be above zero")
        change = await set_price(w3, info, asset, new)
        morpho_file = state_dir / "morpho.json"
        if morpho_file.exists():  # the devnet's Morpho markets follow the same move
            from keeper.devnet.morpho import MorphoInfo, follow_feed

            minfo = MorphoInfo.from_json(json.loads(morpho_file.read_text()))
            await follow_feed(w3, minfo, asset, old, new)
        dex = read_uniswap(state_dir)
        if dex is not None:  # the market arbitrages the DEX back to the oracle
            await align_pools(w3, info, dex[0], {change.symbol})
        return change
    finally:
        await w3.provider.disconnect()


@devnet_app.command()
def advance(
    duration: Annotated[str, typer.Argument(help="seconds, or with a unit: 90m, 12h, 30d")],
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Move chain time forward and mine a block, so interest accrues."""
    try:
        seconds = parse_duration(duration)
        ts = asyncio.run(_advance(state_dir, seconds))
    except KeeperError as e:
        _fail(e)
    out.print(f"advanced {seconds} s; latest block timestamp {ts}")


async def _advance(state_dir: Path, seconds: int) -> int:
    info = _live(state_dir)
    w3 = connect(info.rpc_url)
    try:
        return await advance_time(w3, seconds)
    finally:
        await w3.provider.disconnect()


def parse_duration(text: str) -> int:
    s = text.strip().lower()
    unit = _UNITS.get(s[-1:], None)
    digits = s[:-1] if unit else s
    if not digits.isdigit():
        raise KeeperError(f"bad duration {text!r} (use e.g. 3600, 90m, 12h, 30d)")
    return int(digits) * (unit or 1)


def _live(state_dir: Path):  # noqa: ANN202
    info = running_devnet(state_dir)
    if info is None:
        read_state(state_dir)  # raises the clear "run up first" error when there is no state
        raise KeeperError(f"the devnet in {state_dir} is not running: run `keeper devnet up`")
    return info
