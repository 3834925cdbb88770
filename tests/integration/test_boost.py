"""Boost (re-leverage) on the devnet, Aave V3: a protected borrower whose health factor rises above
the rule's ``boost_above_hf`` (WETH up, the Uniswap V3 pools arbitraged back to the oracle each
block) is re-leveraged by the whole keeper (live, each block) through
``KeeperProtection.boostAave``: the Pool's flash loan in mode 2 opens USDC debt in its name (its
credit delegation to the contract), the contract buys WETH with it and supplies it for the
borrower. Asserted on chain: each ``Boosted`` event's health factor (the Pool's, inside the
transaction) is within 0.5% of the target, the borrower's debt and collateral both grew, and the
contract keeps nothing. Runs on 3.0.2 here and on 3.6 in test_deleverage36."""

from __future__ import annotations

from tests.integration.own_anvil import anvil, devnet, w3  # noqa: F401  (own anvil: many blocks)

from eth_utils import to_checksum_address

from keeper.chain.abi import addr_arg, call_data, uint_arg, word
from keeper.config import load_config
from keeper.devnet.api import apply_price_change, get_price, set_price
from keeper.devnet.rpc import rpc
from keeper.devnet.uniswap import align_pools, dex_config_toml
from keeper.protocols.aave_v3.boost import BOOSTED
from keeper.units import WAD
from keeper.wiring import build_keeper
from tests.integration.test_deleverage import balance, logs, rule, setup
from tests.integration.test_keeper_actions import LIQUIDATOR_KEY, config, pool_hf, send

TARGET = 130 * WAD // 100


async def test_a_rise_above_boost_above_hf_is_re_leveraged_to_the_target(devnet, w3, tmp_path):
    info, uinfo, contract, borrower = await setup(devnet, w3, tmp_path)
    usdc_debt, a_weth = info.variable_debt_tokens["USDC"], info.a_tokens["WETH"]
    await rpc(w3, "anvil_impersonateAccount", [borrower])
    await send(w3, borrower, usdc_debt, call_data("approveDelegation(address,uint256)", addr_arg(contract),
                                                  uint_arg(2**256 - 1)))
    await rpc(w3, "anvil_stopImpersonatingAccount", [borrower])
    debt0, coll0 = await balance(w3, usdc_debt, borrower), await balance(w3, a_weth, borrower)
    start = int(await rpc(w3, "eth_blockNumber", []), 16)
    extra = dex_config_toml(uinfo, None) + rule(borrower, contract, 100) + 'boost_above_hf = "1.45"\n'
    k = await build_keeper(load_config(config(devnet, tmp_path, extra), env={"KEEPER_PRIVATE_KEY": LIQUIDATOR_KEY}))
    hfs = []
    try:
        for step in ("+20%", "+4%", "+4%", "+4%", "+4%", "+4%", "+4%"):
            await set_price(w3, info, "WETH", apply_price_change(await get_price(w3, info, "WETH"), step))
            await align_pools(w3, info, uinfo, {"WETH"})
            await k.engine.on_block(await k.rpc.block_number())
            await k.executor.drain()
            hfs.append(await pool_hf(w3, info.pool, borrower))
        done = k.store.query("SELECT detail FROM actions WHERE kind = 'top_up' AND result = 'done'")
    finally:
        await k.close()
    events = [e for e in await logs(w3, contract, BOOSTED, start)
              if to_checksum_address("0x" + e["topics"][1][-40:]) == borrower]
    assert len(events) >= 2 and len(done) == len(events), (hfs, done)
    assert all(d.startswith("boosted: borrowed") for (d,) in done), done
    for e in events:
        data = bytes.fromhex(e["data"][2:])
        borrowed, supplied, hf = (word(data, i) for i in range(3))
        assert abs(hf - TARGET) <= TARGET * 5 // 1000, hf  # within 0.5% of the target
        assert borrowed > 0 and supplied > 0
    assert max(hfs) < 145 * WAD // 100 * 104 // 100  # never left far above boost_above_hf
    assert await balance(w3, usdc_debt, borrower) > debt0 and await balance(w3, a_weth, borrower) > coll0
    for token in info.tokens.values():  # the contract keeps nothing
        assert await balance(w3, token, contract) == 0
