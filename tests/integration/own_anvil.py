"""Module-scoped anvil + devnet for test modules that mine hundreds of blocks (the deleverage
tests): anvil gets slower per block as its history grows, even after evm_revert, and later
modules on the session anvil that expect a send to be mined at once then fail. A module
imports ``anvil, devnet, w3`` from here to override the session fixtures of conftest.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from web3 import AsyncWeb3

from keeper.devnet.anvil import AnvilProcess, start_anvil, stop_anvil
from keeper.devnet.api import connect, deploy
from keeper.devnet.state import write_keeper_config
from tests.integration.conftest import N_BORROWERS, SEED, Devnet


def fixtures(aave: str | None = None):
    """``anvil``, ``devnet`` and ``w3`` module fixtures; ``aave``: the Aave V3 version to deploy
    (None: the devnet's default, 3.0.2)."""
    @pytest.fixture(scope="module")
    def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnvilProcess]:
        proc = start_anvil(port=0, log_path=tmp_path_factory.mktemp("anvil") / "anvil.log")
        try:
            yield proc
        finally:
            stop_anvil(proc.pid)

    @pytest_asyncio.fixture(scope="module", loop_scope="session")
    async def devnet(anvil: AnvilProcess, tmp_path_factory: pytest.TempPathFactory) -> Devnet:
        extra = {"aave": aave} if aave else {}
        info = await deploy(anvil.rpc_url, n_borrowers=N_BORROWERS, seed=SEED, **extra)
        config_path = write_keeper_config(info, tmp_path_factory.mktemp("devnet") / "keeper.toml")
        return Devnet(info=info, rpc_url=anvil.rpc_url, config_path=config_path, anvil=anvil)

    @pytest_asyncio.fixture(scope="module", loop_scope="session")
    async def w3(devnet: Devnet) -> AsyncIterator[AsyncWeb3]:
        client = connect(devnet.rpc_url)
        try:
            yield client
        finally:
            await client.provider.disconnect()

    return anvil, devnet, w3


anvil, devnet, w3 = fixtures()
