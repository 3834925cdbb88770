"""One anvil and one full Aave V3 deployment per test session; each test runs inside an
``evm_snapshot`` / ``evm_revert`` pair, so tests can move prices, time and positions freely.

Fixtures:

* ``devnet`` (session): ``Devnet(info, rpc_url, config_path, anvil)``; ``info`` is the
  ``DevnetInfo`` of the deployment, ``config_path`` a keeper TOML for it in a tmp dir.
* ``w3`` (session): an ``AsyncWeb3`` connected to the devnet.
* ``_chain_snapshot`` (autouse): snapshot before each test, revert after it.

No skip when node_modules is missing: ``make test`` installs it, so a missing anvil or
artifact is a broken set-up and fails loudly (DevnetError names the missing path).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from web3 import AsyncWeb3

from keeper.devnet.anvil import AnvilProcess, start_anvil, stop_anvil
from keeper.devnet.api import connect, deploy
from keeper.devnet.rpc import rpc
from keeper.devnet.state import DevnetInfo, write_keeper_config

N_BORROWERS = 30
SEED = 1



def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration with ``integration``."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.integration)


@dataclass(frozen=True)
class Devnet:
    info: DevnetInfo
    rpc_url: str
    config_path: Path
    anvil: AnvilProcess


@pytest.fixture(scope="session")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnvilProcess]:
    log = tmp_path_factory.mktemp("anvil") / "anvil.log"
    proc = start_anvil(port=0, log_path=log)
    try:
        yield proc
    finally:
        stop_anvil(proc.pid)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def devnet(anvil: AnvilProcess, tmp_path_factory: pytest.TempPathFactory) -> Devnet:
    info = await deploy(anvil.rpc_url, n_borrowers=N_BORROWERS, seed=SEED)
    config_path = write_keeper_config(info, tmp_path_factory.mktemp("devnet") / "keeper.toml")
    return Devnet(info=info, rpc_url=anvil.rpc_url, config_path=config_path, anvil=anvil)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def w3(devnet: Devnet) -> AsyncIterator[AsyncWeb3]:
    client = connect(devnet.rpc_url)
    try:
        yield client
    finally:
        await client.provider.disconnect()


@pytest_asyncio.fixture(autouse=True, loop_scope="session")
async def _chain_snapshot(w3: AsyncWeb3) -> AsyncIterator[None]:
    snapshot = await rpc(w3, "evm_snapshot", [])
    try:
        yield
    finally:
        reverted = await rpc(w3, "evm_revert", [snapshot])
        await rpc(w3, "evm_setAutomine", [True])  # a test may have turned it off
        if not reverted:
            raise RuntimeError(f"evm_revert({snapshot}) failed: later tests would see this state")
