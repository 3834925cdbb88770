"""One anvil and one full Aave V3 deployment per test session; each test runs inside an
``evm_snapshot`` / ``evm_revert`` pair, so tests can move prices, time and positions freely.

Fixtures:

* ``devnet`` (session): ``Devnet(info, rpc_url, config_path, anvil)``; ``info`` is the
  ``DevnetInfo`` of the deployment, ``config_path`` a keeper TOML for it in a tmp dir.
* ``w3`` (session): an ``AsyncWeb3`` connected to the devnet.
* ``engine`` (per test): keeper's ``Engine`` on the devnet, its store in the test's tmp dir.
* ``_chain_snapshot`` (autouse): snapshot before each test, revert after it.

``anvil_for``, ``devnet_on``, ``web3_on`` and ``engine_on`` build the same things for the
module-scoped devnets of own_anvil.py and devnet36.py.

No skip when node_modules is missing: ``make test`` installs it, so a missing anvil or
artifact is a broken set-up and fails loudly (DevnetError names the missing path).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from web3 import AsyncWeb3

from keeper.chain.rpc import Rpc
from keeper.config import load_config
from keeper.devnet.anvil import AnvilProcess, start_anvil, stop_anvil
from keeper.devnet.api import connect, deploy
from keeper.devnet.comet import CometInfo, deploy_comet
from keeper.devnet.morpho import MorphoInfo, deploy_morpho
from keeper.devnet.rpc import rpc
from keeper.devnet.state import DevnetInfo, write_keeper_config
from keeper.engine import Engine
from keeper.store import Store

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


@contextmanager
def anvil_for(tmp_path_factory: pytest.TempPathFactory, name: str = "anvil") -> Iterator[AnvilProcess]:
    """An anvil on a free port, its log in a tmp dir; stopped (and its states removed) after."""
    proc = start_anvil(port=0, log_path=tmp_path_factory.mktemp(name) / "anvil.log")
    try:
        yield proc
    finally:
        stop_anvil(proc.pid)


async def devnet_on(anvil: AnvilProcess, tmp_path_factory: pytest.TempPathFactory, n_borrowers: int = N_BORROWERS,
                    seed: int = SEED, **deploy_args) -> Devnet:
    """The devnet deployed on ``anvil`` with a keeper TOML for it (``deploy_args``: e.g. aave="3.6")."""
    info = await deploy(anvil.rpc_url, n_borrowers=n_borrowers, seed=seed, **deploy_args)
    config_path = write_keeper_config(info, tmp_path_factory.mktemp("devnet") / "keeper.toml")
    return Devnet(info=info, rpc_url=anvil.rpc_url, config_path=config_path, anvil=anvil)


@asynccontextmanager
async def deployed(w3: AsyncWeb3, make) -> AsyncIterator:
    """What ``await make()`` deploys, for one module: the chain is reverted to before it
    afterwards, so other modules never see it."""
    before = await rpc(w3, "evm_snapshot", [])
    try:
        yield await make()
    finally:
        if not await rpc(w3, "evm_revert", [before]):
            raise RuntimeError("could not revert the deployment: later modules would see it")


async def morpho_and_comet(w3: AsyncWeb3, info: DevnetInfo, n: int, seed: int) -> tuple[MorphoInfo, CometInfo]:
    """Morpho Blue and the Comet stand-in, ``n`` borrowers each, over the devnet's tokens and feeds."""
    return await deploy_morpho(w3, info, n, seed), await deploy_comet(w3, info, n, seed)


@asynccontextmanager
async def web3_on(rpc_url: str) -> AsyncIterator[AsyncWeb3]:
    client = connect(rpc_url)
    try:
        yield client
    finally:
        await client.provider.disconnect()


@asynccontextmanager
async def engine_on(config_path: Path, rpc_url: str, tmp_path: Path) -> AsyncIterator[Engine]:
    """keeper's Engine on a devnet, its SQLite store in ``tmp_path``."""
    cfg = load_config(config_path)
    cfg = cfg.model_copy(update={"store": cfg.store.model_copy(update={"path": tmp_path / "k.sqlite"})})
    node, store = Rpc(rpc_url), Store(tmp_path / "k.sqlite")
    try:
        yield Engine(cfg, node, store)
    finally:
        store.close()
        await node.close()


@pytest.fixture(scope="session")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnvilProcess]:
    with anvil_for(tmp_path_factory) as proc:
        yield proc


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def devnet(anvil: AnvilProcess, tmp_path_factory: pytest.TempPathFactory) -> Devnet:
    return await devnet_on(anvil, tmp_path_factory)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def w3(devnet: Devnet) -> AsyncIterator[AsyncWeb3]:
    async with web3_on(devnet.rpc_url) as client:
        yield client


@pytest.fixture
async def engine(devnet: Devnet, tmp_path: Path) -> AsyncIterator[Engine]:
    async with engine_on(devnet.config_path, devnet.rpc_url, tmp_path) as eng:
        yield eng


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
