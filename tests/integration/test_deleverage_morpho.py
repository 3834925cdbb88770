"""Deleverage on the devnet, Morpho Blue (WETH/USDC market): a protected borrower whose keeper
wallet holds no tokens is deleveraged through KeeperProtection.deleverageMorpho (Morpho's
free flash loan, ``setAuthorization`` as the delegation) while WETH falls 2% a block (Morpho's
oracle and the Uniswap V3 pools follow the feed); the contract's ``Deleveraged`` events land
within 0.5% above the target, Morpho's own check never finds it liquidatable, no ``Liquidate``
event names it, and the contract keeps nothing."""

from __future__ import annotations

from tests.integration.own_anvil import anvil, devnet, w3  # noqa: F401  (own anvil: many blocks)

from eth_abi import encode
from eth_utils import to_checksum_address

from keeper.chain.abi import addr_arg, call_data, selector, uint_arg, word
from keeper.chain.rpc import Rpc
from keeper.config import load_config
from keeper.config_types import Secret
from keeper.devnet.api import apply_price_change, get_price, set_price
from keeper.devnet.artifacts import load_own
from keeper.devnet.lifecycle import morpho_config_toml
from keeper.devnet.morpho import deploy_morpho, follow_feed
from keeper.devnet.rpc import rpc
from keeper.devnet.uniswap import align_pools, deploy_uniswap, dex_config_toml
from keeper.dex.deleverage import DELEVERAGED, SET_KEEPER
from keeper.engine import Engine
from keeper.executors.signer import Signer
from keeper.liquidator_deploy import deploy_checked
from keeper.protocols.morpho_blue.plan import LIQUIDATE_EVENT
from keeper.store import Store
from keeper.units import WAD
from keeper.wiring import build_keeper
from tests.integration.test_deleverage import balance, logs
from tests.integration.test_keeper_actions import LIQUIDATOR_KEY, config, send

TARGET = 130 * WAD // 100
BLOCKS = 14


async def setup(devnet, w3, tmp_path):
    """Morpho, the pools, the contract, the riskiest WETH/USDC borrower above HF 1.17 and its
    delegation (``setAuthorization`` and ``setKeeper``)."""
    info = devnet.info
    minfo = await deploy_morpho(w3, info, 8, 5)
    uinfo = await deploy_uniswap(w3, info)
    node = Rpc(devnet.rpc_url, timeout_s=60.0)
    morpho_toml = morpho_config_toml(minfo)
    try:
        code = load_own("KeeperProtection").bytecode + encode(["address"], [uinfo.router]).hex()
        contract = await deploy_checked(node, Signer(Secret(LIQUIDATOR_KEY)), code, {"router()": uinfo.router})
        (tmp_path / "scan.toml").write_text(devnet.config_path.read_text() + morpho_toml)
        store = Store(tmp_path / "scan.sqlite")
        eng = Engine(load_config(tmp_path / "scan.toml"), node, store)
        head = await node.block_number()
        await eng.index(head)
        positions = await eng.full_scan(head)
        store.close()
    finally:
        await node.close()
    weth_usdc = [p for p in positions if p.protocol == "morpho_blue" and p.main_collateral == "WETH"
                 and p.health_factor_wad and p.health_factor_wad > 117 * WAD // 100]
    borrower = min(weth_usdc, key=lambda p: p.health_factor_wad).account
    await rpc(w3, "anvil_impersonateAccount", [borrower])
    await rpc(w3, "anvil_setBalance", [borrower, hex(10**18)])
    await send(w3, borrower, minfo.morpho, call_data("setAuthorization(address,bool)", addr_arg(contract), uint_arg(1)))
    await send(w3, borrower, contract, call_data(SET_KEEPER, addr_arg(info.liquidator)))
    await rpc(w3, "anvil_stopImpersonatingAccount", [borrower])
    return minfo, uinfo, contract, borrower


def rule(minfo, uinfo, borrower: str, contract: str, trigger: str = "1.15", close: str = "") -> str:
    return (morpho_config_toml(minfo) + dex_config_toml(uinfo, None)
            + f'\n[[protect]]\naccount = "{borrower}"\nmarket = "morpho"\ntrigger_hf = "{trigger}"\n'
              f'target_hf = "1.30"\nactions = ["repay:USDC", "deleverage:WETH->USDC"]\n'
              f'contract = "{contract}"\nmax_slippage_bps = 100\n' + close)


async def decline(w3, info, minfo, uinfo, k) -> None:
    """WETH -2% on the feeds, Morpho's oracles and the pools; one keeper tick."""
    old = await get_price(w3, info, "WETH")
    new = apply_price_change(old, "-2%")
    await set_price(w3, info, "WETH", new)
    await follow_feed(w3, minfo, "WETH", old, new)
    await align_pools(w3, info, uinfo, {"WETH"})
    await k.engine.on_block(await k.rpc.block_number())
    await k.executor.drain()


async def test_morpho_decline_is_deleveraged_to_the_target_and_never_liquidatable(devnet, w3, tmp_path):
    info = devnet.info
    minfo, uinfo, contract, borrower = await setup(devnet, w3, tmp_path)
    start = int(await rpc(w3, "eth_blockNumber", []), 16)
    k = await build_keeper(load_config(config(devnet, tmp_path, rule(minfo, uinfo, borrower, contract)),
                                       env={"KEEPER_PRIVATE_KEY": LIQUIDATOR_KEY}))
    try:
        watch = next(w for w in k.engine.watches if w.adapter.name == "morpho_blue"
                     and minfo.labels[w.adapter.id] == "WETH/USDC")
        for _ in range(BLOCKS):
            await decline(w3, info, minfo, uinfo, k)
            (view,) = await watch.adapter.contract_health([borrower], await k.rpc.block_number())
            assert not view.liquidatable
        done = k.store.query("SELECT realized FROM actions WHERE kind = 'top_up' AND result = 'done'")
    finally:
        await k.close()
    events = [e for e in await logs(w3, contract, DELEVERAGED, start)
              if to_checksum_address("0x" + e["topics"][1][-40:]) == borrower]
    assert len(events) >= 2 and len(done) == len(events)
    for e in events:
        data = bytes.fromhex(e["data"][2:])
        sold, repaid, received, hf = (int.from_bytes(data[32 * i:32 * i + 32], "big") for i in range(4))
        assert TARGET <= hf <= TARGET + TARGET * 5 // 1000, hf
        assert received >= repaid > 0 and sold > 0
    assert not [e for e in await logs(w3, minfo.morpho, LIQUIDATE_EVENT, start)
                if to_checksum_address("0x" + e["topics"][3][-40:]) == borrower]
    for token in info.tokens.values():
        assert await balance(w3, token, contract) == 0


async def test_morpho_stop_loss_closes_the_debt_when_the_price_crosses_and_leaves_the_rest(devnet, w3, tmp_path):
    info = devnet.info
    minfo, uinfo, contract, borrower = await setup(devnet, w3, tmp_path)
    mid = minfo.market("WETH/USDC")
    start = int(await rpc(w3, "eth_blockNumber", []), 16)
    stop = await get_price(w3, info, "WETH") * 93 // 100  # crossed on the 4th -2% block
    close = f'close_below_price = {{ asset = "WETH", usd = "{stop // 10**8}.{stop % 10**8:08d}" }}\n'
    k = await build_keeper(load_config(config(devnet, tmp_path, rule(minfo, uinfo, borrower, contract, "1.01", close)),
                                       env={"KEEPER_PRIVATE_KEY": LIQUIDATOR_KEY}))
    usdc0 = await balance(w3, info.tokens["USDC"], borrower)
    closed_at = None
    try:
        for n in range(6):
            await decline(w3, info, minfo, uinfo, k)
            if closed_at is None and (await position(w3, minfo.morpho, mid, borrower))[0] == 0:
                closed_at = (n, await get_price(w3, info, "WETH"))
        done = k.store.query("SELECT detail FROM actions WHERE kind = 'top_up' AND result = 'done'")
    finally:
        await k.close()
    assert closed_at is not None, "the stop-loss never closed the USDC debt"
    n, price = closed_at
    assert price <= stop and n == 3  # on the first block at or below the stop, not before
    (event,) = await logs(w3, contract, DELEVERAGED, start)
    shares, collateral = await position(w3, minfo.morpho, mid, borrower)
    assert shares == 0 and collateral > 0  # what was not sold stays the borrower's collateral
    assert await balance(w3, info.tokens["USDC"], borrower) >= usdc0  # the swap's surplus is the borrower's
    assert len(done) == 1 and "deleveraged: sold" in done[0][0], done
    for token in info.tokens.values():
        assert await balance(w3, token, contract) == 0
    assert not [e for e in await logs(w3, minfo.morpho, LIQUIDATE_EVENT, start)
                if to_checksum_address("0x" + e["topics"][3][-40:]) == borrower]


async def position(w3, morpho: str, market_id: str, who: str) -> tuple[int, int]:
    """(borrowShares, collateral) of Morpho.position."""
    data = "0x" + (selector("position(bytes32,address)") + encode(["bytes32", "address"],
                                                                   [bytes.fromhex(market_id[2:]), who])).hex()
    raw = bytes.fromhex((await rpc(w3, "eth_call", [{"to": morpho, "data": data}, "latest"]))[2:])
    return word(raw, 1), word(raw, 2)
