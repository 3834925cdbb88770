"""``keeper devnet``: a local anvil with real Aave V3 and Morpho Blue markets and a Compound V3
stand-in, on the same tokens and feeds (``devnet_app``, a typer app).

::

    keeper devnet up [--borrowers 20] [--port 8545] [--state-dir .devnet] [--seed 1] [--aave 3.6|3.0.2]
    keeper devnet key                    # the keeper wallet's key (anvil's public dev account #1)
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
from keeper.devnet.state import DEFAULT_STATE_DIR, STATE_FILE, read_state
from keeper.errors import KeeperError
from keeper.units import format_fixed

devnet_app = typer.Typer(
    help="A local anvil chain with real Aave V3 and Morpho Blue markets and a Compound V3 stand-in.",
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
    port: Annotated[int, typer.Option("--port", "-p", help="anvil port on 127.0.0.1 (0 = any free port)")] = 8545,
    state_dir: StateDir = DEFAULT_STATE_DIR,
    seed: Annotated[int, typer.Option(help="seed of the borrowers' keys and positions")] = 1,
    aave: Annotated[str, typer.Option(help="Aave V3 version: 3.6 (compiled from npm sources, "
                                           "what live markets run) or 3.0.2 (npm artifacts)")] = "3.6",
) -> None:
    """Start anvil; deploy Aave V3, Morpho Blue and the Compound V3 stand-in; seed lenders and
    borrowers on each; leave it running. Prints every address, the keeper config it wrote and
    how to run keeper in live mode against it."""
    from keeper.devnet.report import up_report
    from keeper.progress import Steps

    t0 = time.perf_counter()
    try:
        info = asyncio.run(devnet_up(borrowers, port, state_dir, seed, Steps(err), aave))
    except KeeperError as e:
        _fail(e)
    out.print(up_report(info, state_dir, time.perf_counter() - t0))


@devnet_app.command()
def key(state_dir: StateDir = DEFAULT_STATE_DIR) -> None:
    """Print the devnet keeper wallet's private key, for KEEPER_PRIVATE_KEY in live mode.

    It is anvil's dev account #1 of the public test mnemonic (funded with ETH on the devnet),
    kept in <state-dir>/state.json under dev_keys.liquidator. Never use it on a real chain."""
    try:
        info = read_state(state_dir)
    except KeeperError as e:
        _fail(e)
    if "liquidator" not in info.dev_keys:
        _fail(KeeperError(f"{state_dir / STATE_FILE} holds no dev_keys.liquidator"))
    out.print(info.dev_keys["liquidator"])


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
