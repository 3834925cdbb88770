"""The liquidation and top-up plans against the real Aave V3 Pool on the devnet, to the wei.

Each test reads the market and the accounts with keeper's own reader (Engine.full_scan),
plans with the pure math for the timestamp the transaction will be mined at
(``evm_setNextBlockTimestamp``; the plan uses ``replace(market, timestamp=t)``, so a
few seconds of interest are part of what must match), sends the transaction, and
compares the Pool's own numbers: the LiquidationCall event, token balances, and
getUserAccountData.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from eth_abi import decode
from eth_utils import keccak

from keeper.devnet.api import apply_price_change, get_price, set_price, wait_receipt
from keeper.devnet.artifacts import load_aave
from keeper.devnet.rpc import calldata, rpc
from keeper.engine import Engine
from keeper.protocols.aave_v3.liquidation import (
    CLOSE_FACTOR_HF_THRESHOLD,
    best_liquidation,
    liquidation_pairs,
    plan_liquidation,
)
from keeper.protocols.aave_v3.math import get_normalized_debt, get_normalized_income, ray_div, ray_mul
from keeper.protocols.aave_v3.topup import hf_after, plan_top_up
from keeper.protocols.aave_v3.health import account_data
from keeper.units import UINT256_MAX, WAD

POOL_ABI = load_aave("Pool").abi
ERC20_ABI = load_aave("MintableERC20").abi
SCALED_ABI = load_aave("IScaledBalanceToken").abi
LIQUIDATION_CALL = "0x" + keccak(text="LiquidationCall(address,address,address,uint256,uint256,address,bool)").hex()
GAS = hex(2_000_000)
STEP = 12  # seconds between the read and the transaction's block
TARGET = 14 * WAD // 10


async def read(engine: Engine):
    """(market, accounts, positions) at the latest block, by keeper's own reader."""
    block = await engine.rpc.block_number()
    await engine.index(block)
    positions = {p.account: p for p in await engine.full_scan(block)}
    w = engine.watches[0]
    return w.market, dict(w.accounts), positions


async def send(w3, sender: str, to: str, abi, fn: str, args, timestamp: int | None = None) -> dict:
    if timestamp is not None:
        await rpc(w3, "evm_setNextBlockTimestamp", [timestamp])
    tx = {"from": sender, "to": to, "data": calldata(abi, fn, args), "gas": GAS}
    receipt = await wait_receipt(w3, await rpc(w3, "eth_sendTransaction", [tx]))
    if int(receipt["status"], 16) != 1:  # replay it on the block before, for the revert reason
        before = hex(int(receipt["blockNumber"], 16) - 1)
        try:
            why = await rpc(w3, "eth_call", [tx, before])
        except Exception as e:  # noqa: BLE001 - the reason is all we want from it
            why = e
        raise AssertionError(f"{fn} reverted in block {int(receipt['blockNumber'], 16)} "
                             f"(timestamp {timestamp}): {why}")
    return receipt


async def call(w3, to: str, abi, fn: str, args, block="latest") -> tuple:
    data = await rpc(w3, "eth_call", [{"to": to, "data": calldata(abi, fn, args)}, block])
    outputs = next(f for f in abi if f.get("name") == fn and len(f["inputs"]) == len(args))["outputs"]
    return decode([o["type"] for o in outputs], bytes.fromhex(data[2:]))


async def balance(w3, token: str, who: str) -> int:
    return (await call(w3, token, ERC20_ABI, "balanceOf", [who]))[0]


async def pool_hf(w3, devnet, user: str) -> int:
    return (await call(w3, devnet.info.pool, POOL_ABI, "getUserAccountData", [user]))[5]


async def fund(w3, token: str, who: str, amount: int, spender: str) -> None:
    """MintableERC20.mint(address, uint256) is open to anyone; then approve the Pool."""
    await send(w3, who, token, ERC20_ABI, "mint", [who, amount])
    await send(w3, who, token, ERC20_ABI, "approve", [spender, UINT256_MAX])


async def next_timestamp(w3) -> int:
    return int((await w3.eth.get_block("latest"))["timestamp"]) + STEP


async def liquidate_and_compare(w3, devnet, engine, user: str, collateral: str, debt: str,
                                cover: int = UINT256_MAX):  # fmt: skip
    """Plan, execute and compare one liquidationCall; returns the plan."""
    info, liquidator = devnet.info, devnet.info.liquidator
    await fund(w3, debt, liquidator, 10**30, info.pool)  # before the read: touches no reserve
    market, accounts, _ = await read(engine)
    t = await next_timestamp(w3)
    at = replace(market, timestamp=t)
    quote = plan_liquidation(at, accounts[user], collateral, debt, cover)
    coll_r = market.by_asset(collateral)
    before = (await balance(w3, collateral, liquidator), await balance(w3, debt, liquidator),
              (await call(w3, coll_r.a_token, SCALED_ABI, "scaledBalanceOf", [info.treasury]))[0])  # fmt: skip
    receipt = await send(w3, liquidator, info.pool, POOL_ABI, "liquidationCall",
                         [collateral, debt, user, cover, False], timestamp=t)  # fmt: skip
    (log,) = [lg for lg in receipt["logs"] if lg["topics"][0] == LIQUIDATION_CALL]
    debt_covered, collateral_out, _, _ = decode(["uint256", "uint256", "address", "bool"],
                                                bytes.fromhex(log["data"][2:]))  # fmt: skip
    assert (debt_covered, collateral_out) == (quote.debt_to_repay, quote.collateral_to_receive)
    after = (await balance(w3, collateral, liquidator), await balance(w3, debt, liquidator),
             (await call(w3, coll_r.a_token, SCALED_ABI, "scaledBalanceOf", [info.treasury]))[0])  # fmt: skip
    assert after[0] - before[0] == quote.collateral_to_receive
    assert before[1] - after[1] == quote.debt_to_repay
    income = get_normalized_income(coll_r, t)
    assert after[2] - before[2] == ray_div(quote.protocol_fee_collateral, income)
    # the borrower's variable debt fell by exactly what the plan repaid
    debt_r = market.by_asset(debt)
    old = next(r for r in accounts[user].reserves if r.reserve_id == debt_r.id).scaled_variable_debt
    new = (await call(w3, debt_r.variable_debt_token, SCALED_ABI, "scaledBalanceOf", [user]))[0]
    assert old - new == ray_div(quote.debt_to_repay, get_normalized_debt(debt_r, t))
    return quote


@pytest.mark.parametrize("crash, at_least", [("-30%", 1), ("-40%", 3)])
async def test_crash_then_liquidate_the_best_pair_of_each_borrower(devnet, engine, w3, crash, at_least):
    # on the seeded devnet -30% leaves one borrower liquidatable, -40% four (both regimes)
    info = devnet.info
    for symbol in ("WETH", "WBTC"):  # WBTC too: more borrowers, 8-decimal collateral
        await set_price(w3, info, symbol, apply_price_change(await get_price(w3, info, symbol), crash))
    market, accounts, positions = await read(engine)
    liquidatable = sorted(a for a, p in positions.items() if p.health_factor_wad is not None
                          and p.health_factor_wad < WAD)  # fmt: skip
    assert len(liquidatable) >= at_least, f"a {crash} crash should make borrowers liquidatable"
    regimes, pairs = set(), set()
    for user in liquidatable[:8]:
        best = best_liquidation(market, accounts[user], gas_cost_base=0, min_profit_base=0)
        assert best is not None
        snapshot = await rpc(w3, "evm_snapshot", [])
        quote = await liquidate_and_compare(w3, devnet, engine, user, best.collateral_asset, best.debt_asset)
        regimes.add(quote.close_factor_bps)
        pairs.add((market.by_asset(quote.collateral_asset).symbol, market.by_asset(quote.debt_asset).symbol))
        assert await rpc(w3, "evm_revert", [snapshot])
    assert len(regimes) == (2 if at_least > 1 else 1)  # both regimes by construction: the next test


@pytest.mark.parametrize("target_hf_bps, close_factor", [(9_750, 5_000), (9_000, 10_000)])
async def test_both_close_factor_regimes(devnet, engine, w3, target_hf_bps, close_factor):
    # a borrower with only WETH collateral and a stablecoin debt: HF is proportional to the WETH price
    info = devnet.info
    market, accounts, positions = await read(engine)
    weth = market.by_symbol("WETH")
    user = next(a for a in sorted(accounts) if positions[a].health_factor_wad
                and [r.reserve_id for r in accounts[a].reserves if r.scaled_a_token] == [weth.id])  # fmt: skip
    hf = positions[user].health_factor_wad
    old = await get_price(w3, info, "WETH")
    await set_price(w3, info, "WETH", old * target_hf_bps * WAD // (10_000 * hf))
    market, accounts, positions = await read(engine)
    t = await next_timestamp(w3)
    hf_then = account_data(replace(market, timestamp=t), accounts[user]).health_factor_wad
    assert (hf_then <= CLOSE_FACTOR_HF_THRESHOLD) == (close_factor == 10_000) and hf_then < WAD
    (pair,) = [(c, d) for c, d in liquidation_pairs(market, accounts[user])]
    quote = await liquidate_and_compare(w3, devnet, engine, user, pair[0].asset, pair[1].asset)
    assert quote.close_factor_bps == close_factor
    assert await pool_hf(w3, devnet, user) > hf_then  # the liquidation helped


async def test_partial_cover_in_emode_uses_the_category_bonus(devnet, engine, w3):
    info = devnet.info
    market, accounts, positions = await read(engine)
    # stablecoin e-mode borrowers (USDC collateral, DAI debt): push USDC down until one is liquidatable
    emode = sorted(a for a in accounts if accounts[a].emode == 1)
    assert emode
    user = min(emode, key=lambda a: positions[a].health_factor_wad)
    hf = positions[user].health_factor_wad
    old = await get_price(w3, info, "USDC")
    await set_price(w3, info, "USDC", old * 97 * WAD // (100 * hf))
    market, accounts, _ = await read(engine)
    usdc, dai = market.by_symbol("USDC"), market.by_symbol("DAI")
    scaled = next(r.scaled_variable_debt for r in accounts[user].reserves if r.reserve_id == dai.id)
    cover = ray_mul(scaled, get_normalized_debt(dai, market.timestamp)) // 3  # under the 50% cap
    quote = await liquidate_and_compare(w3, devnet, engine, user, usdc.asset, dai.asset, cover=cover)
    assert quote.debt_to_repay == cover and quote.close_factor_bps == 5_000
    # the category's 1% bonus, not USDC's own 4.5%: seized value = repaid value * 1.01
    bonus = market.emode_categories[1].liquidation_bonus_bps
    assert bonus != usdc.config.liquidation_bonus_bps
    seized = (quote.collateral_to_receive + quote.protocol_fee_collateral) * usdc.price_base // 10**6
    repaid = cover * dai.price_base // 10**18
    assert abs(seized - repaid * bonus // 10_000) <= 2 * usdc.price_base // 10**6  # 2 micro-USDC


@pytest.mark.parametrize("action", ["supply", "repay"])
async def test_top_up_reaches_the_target_and_one_less_does_not(devnet, engine, w3, action):
    info = devnet.info
    await set_price(w3, info, "WETH", apply_price_change(await get_price(w3, info, "WETH"), "-10%"))
    market, accounts, positions = await read(engine)
    weth, usdc = market.by_symbol("WETH"), market.by_symbol("USDC")
    borrowing_usdc = [
        a for a in sorted(accounts)
        if positions[a].health_factor_wad and WAD < positions[a].health_factor_wad < TARGET
        and any(r.reserve_id == usdc.id and r.scaled_variable_debt for r in accounts[a].reserves)
        and any(r.reserve_id == weth.id and r.scaled_a_token for r in accounts[a].reserves)
    ]  # fmt: skip
    assert borrowing_usdc, "no borrower with WETH collateral and USDC debt between HF 1 and 1.4"
    user = borrowing_usdc[0]
    asset = weth.asset if action == "supply" else usdc.asset
    await rpc(w3, "anvil_impersonateAccount", [user])
    try:
        plan = plan_top_up(market, accounts[user], TARGET, [(action, asset)], {asset: 10**40})
        assert plan is not None and not plan.partial
        await fund(w3, asset, user, plan.amount * 2, info.pool)  # interest may move it a little
        market, accounts, _ = await read(engine)
        t = await next_timestamp(w3)
        at = replace(market, timestamp=t)
        plan = plan_top_up(at, accounts[user], TARGET, [(action, asset)], {asset: 10**40})
        held = await balance(w3, asset, user)
        assert held >= plan.amount
        assert hf_after(at, accounts[user], action, asset, plan.amount - 1) < TARGET  # minimal...
        for amount, reaches in ((plan.amount - 1, False), (plan.amount, True)):  # ...on chain too
            snapshot = await rpc(w3, "evm_snapshot", [])
            args = [asset, amount, user, 0] if action == "supply" else [asset, amount, 2, user]
            await send(w3, user, info.pool, POOL_ABI, action, args, timestamp=t)
            hf = await pool_hf(w3, devnet, user)
            assert (hf >= TARGET) is reaches
            if reaches:
                assert hf == plan.expected_hf_wad
            assert await rpc(w3, "evm_revert", [snapshot])
    finally:
        await rpc(w3, "anvil_stopImpersonatingAccount", [user])
