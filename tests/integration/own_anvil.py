"""Module-scoped anvil + devnet for test modules that mine hundreds of blocks (the deleverage
tests): anvil gets slower per block as its history grows, even after evm_revert, and later
modules on the session anvil that expect a send to be mined at once then fail. A module
imports ``anvil, devnet, w3`` from here to override the session fixtures of conftest.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from web3 import AsyncWeb3

from keeper.devnet.anvil import AnvilProcess
from tests.integration.conftest import Devnet, anvil_for, devnet_on, web3_on


def fixtures(aave: str | None = None):
    """``anvil``, ``devnet`` and ``w3`` module fixtures; ``aave``: the Aave V3 version to deploy
    (None: the devnet's default, 3.0.2)."""
    @pytest.fixture(scope="module")
    def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnvilProcess]:
        with anvil_for(tmp_path_factory) as proc:
            yield proc

    @pytest_asyncio.fixture(scope="module", loop_scope="session")
    async def devnet(anvil: AnvilProcess, tmp_path_factory: pytest.TempPathFactory) -> Devnet:
        return await devnet_on(anvil, tmp_path_factory, **({"aave": aave} if aave else {}))

    @pytest_asyncio.fixture(scope="module", loop_scope="session")
    async def w3(devnet: Devnet) -> AsyncIterator[AsyncWeb3]:
        async with web3_on(devnet.rpc_url) as client:
            yield client

    return anvil, devnet, w3


anvil, devnet, w3 = fixtures()
