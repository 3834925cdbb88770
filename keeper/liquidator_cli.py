"""``keeper liquidator``: keeper's capital-free liquidator contract.

::

    keeper liquidator deploy --config FILE     # prints the new contract's address

Deploys ``contracts/src/KeeperLiquidator.sol`` from the configured key (``KEEPER_PRIVATE_KEY``
or ``[executor] keystore``), owned by that key, swapping through ``[dex] uniswap_v3_router``.
Put the printed address in ``[liquidator] contract``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from keeper.errors import ConfigError, KeeperError

liquidator_app = typer.Typer(help="keeper's capital-free liquidator contract.", no_args_is_help=True,
                             add_completion=False, pretty_exceptions_enable=False)
err = Console(stderr=True, highlight=False)
out = Console(highlight=False, soft_wrap=True)


@liquidator_app.command()
def deploy(config: Annotated[Path, typer.Option("--config", "-c", help="keeper TOML config file")]) -> None:
    """Deploy KeeperLiquidator from the configured key; print its address."""
    try:
        address = asyncio.run(_deploy(config))
    except KeeperError as e:
        err.print(f"[bold red]error:[/] {e}", soft_wrap=True)
        raise typer.Exit(e.exit_code if isinstance(e, ConfigError) else 1) from None
    out.print(address)


async def _deploy(config: Path) -> str:
    from keeper.chain.rpc import Rpc
    from keeper.config import load_config
    from keeper.executors.signer import load_signer
    from keeper.liquidator_deploy import deploy_liquidator
    from keeper.log import register_secret

    cfg = load_config(config)
    for secret in cfg.secrets():
        register_secret(secret)
    if cfg.dex.uniswap_v3_router is None:
        raise ConfigError("the liquidator swaps through [dex] uniswap_v3_router: set it first",
                          key="dex.uniswap_v3_router")
    signer = load_signer(cfg.private_key, cfg.executor.keystore, cfg.executor.password_file)
    rpc = Rpc(cfg.chain.rpc_url.get_secret_value(), cfg.chain.request_timeout_s)
    try:
        return await deploy_liquidator(rpc, signer, cfg.dex.uniswap_v3_router, cfg.chain.chain_id)
    finally:
        await rpc.close()
