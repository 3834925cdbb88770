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

from keeper.chain.rpc import Rpc
from keeper.config import load_config
from keeper.devnet.anvil import AnvilProcess, start_anvil, stop_anvil
from keeper.devnet.api import connect, deploy
from keeper.devnet.rpc import rpc
from keeper.devnet.state import DevnetInfo, write_keeper_config
from keeper.engine import Engine
from keeper.store import Store

N_BORROWERS = 24


@dataclass(frozen=True)
class Devnet36:
    info: DevnetInfo
    config_path: Path
    anvil: AnvilProcess


@pytest.fixture(scope="module")
def anvil36(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnvilProcess]:
    proc = start_anvil(port=0, log_path=tmp_path_factory.mktemp("anvil36") / "anvil.log")
    try:
        yield proc
    finally:
        stop_anvil(proc.pid)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def devnet36(anvil36: AnvilProcess, tmp_path_factory: pytest.TempPathFactory) -> Devnet36:
    info = await deploy(anvil36.rpc_url, n_borrowers=N_BORROWERS, seed=3, aave="3.6")
    path = write_keeper_config(info, tmp_path_factory.mktemp("devnet36") / "keeper.toml")
    return Devnet36(info, path, anvil36)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def w3_36(devnet36: Devnet36) -> AsyncIterator[AsyncWeb3]:
    client = connect(devnet36.info.rpc_url)
    try:
        yield client
    finally:
        await client.provider.disconnect()


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
    cfg = load_config(devnet36.config_path)
    cfg = cfg.model_copy(update={"store": cfg.store.model_copy(update={"path": tmp_path / "k.sqlite"})})
    node, store = Rpc(devnet36.info.rpc_url), Store(tmp_path / "k.sqlite")
    yield Engine(cfg, node, store)
    store.close()
    await node.close()
