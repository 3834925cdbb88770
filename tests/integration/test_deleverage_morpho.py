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

from keeper.chain.abi import addr_arg, call_data, uint_arg
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


async def test_morpho_decline_is_deleveraged_to_the_target_and_never_liquidatable(devnet, w3, tmp_path):
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

    start = int(await rpc(w3, "eth_blockNumber", []), 16)
    extra = (morpho_toml + dex_config_toml(uinfo, None)
             + f'\n[[protect]]\naccount = "{borrower}"\nmarket = "morpho"\ntrigger_hf = "1.15"\n'
               f'target_hf = "1.30"\nactions = ["repay:USDC", "deleverage:WETH->USDC"]\n'
               f'contract = "{contract}"\nmax_slippage_bps = 100\n')
    k = await build_keeper(load_config(config(devnet, tmp_path, extra), env={"KEEPER_PRIVATE_KEY": LIQUIDATOR_KEY}))
    try:
        watch = next(w for w in k.engine.watches if w.adapter.name == "morpho_blue"
                     and minfo.labels[w.adapter.id] == "WETH/USDC")
        for _ in range(BLOCKS):
            old = await get_price(w3, info, "WETH")
            new = apply_price_change(old, "-2%")
            await set_price(w3, info, "WETH", new)
            await follow_feed(w3, minfo, "WETH", old, new)
            await align_pools(w3, info, uinfo, {"WETH"})
            await k.engine.on_block(await k.rpc.block_number())
            await k.executor.drain()
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
