"""Fixtures for the Aave V3 3.6 test modules: one anvil and one 3.6 deployment (npm
@aave-dao/aave-v3-origin sources, compiled once into build/) per module that imports them,
with an ``evm_snapshot`` / ``evm_revert`` pair around each test (the session devnet of
conftest.py is 3.0.2 and untouched by these).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from web3 import AsyncWeb3

from keeper.devnet.anvil import AnvilProcess
from keeper.devnet.api import deploy
from keeper.devnet.rpc import rpc
from keeper.devnet.state import DevnetInfo, write_keeper_config
from tests.integration.conftest import anvil_for, engine_on, web3_on

N_BORROWERS = 24


@dataclass(frozen=True)
class Devnet36:
    info: DevnetInfo
    config_path: Path
    anvil: AnvilProcess


@pytest.fixture(scope="module")
def anvil36(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnvilProcess]:
    with anvil_for(tmp_path_factory, "anvil36") as proc:
        yield proc


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def devnet36(anvil36: AnvilProcess, tmp_path_factory: pytest.TempPathFactory) -> Devnet36:
    info = await deploy(anvil36.rpc_url, n_borrowers=N_BORROWERS, seed=3, aave="3.6")
    path = write_keeper_config(info, tmp_path_factory.mktemp("devnet36") / "keeper.toml")
    return Devnet36(info, path, anvil36)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def w3_36(devnet36: Devnet36) -> AsyncIterator[AsyncWeb3]:
    async with web3_on(devnet36.info.rpc_url) as client:
        yield client


@pytest_asyncio.fixture(autouse=True, loop_scope="session")
async def _snapshot36(w3_36: AsyncWeb3) -> AsyncIterator[None]:
    snapshot = await rpc(w3_36, "evm_snapshot", [])
    try:
        yield
    finally:
        assert await rpc(w3_36, "evm_revert", [snapshot])
        await rpc(w3_36, "evm_setAutomine", [True])


@pytest.fixture
async def engine36(devnet36, tmp_path):
    async with engine_on(devnet36.config_path, devnet36.info.rpc_url, tmp_path) as eng:
        yield eng
