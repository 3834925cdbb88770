"""Top-up plans for Morpho Blue and Compound III executed on the devnet, on a borrower's
behalf by another funded account, at a pinned next-block timestamp:

* Morpho: repay (by assets; by shares for the full debt) and supplyCollateral planned by
  keeper.protocols.morpho_blue.topup on the market accrued to that timestamp; the health computed
  from the on-chain state after it equals the plan's ``expected_hf_wad`` (>= 1.4), and the
  same call with ``amount - 1`` (in a snapshot) misses 1.4.
* Comet (the stand-in): supplyTo(borrower, base) as a repay and supplyTo(borrower, WETH)
  planned by keeper.protocols.compound_v3.topup; hf_wad from userBasic / userCollateral read back
  through CometAdapter equals the plan's, and ``amount - 1`` misses.

Each protocol is deployed once for this module (snapshot before, evm_revert after the
module); the autouse per-test snapshot of conftest.py isolates the tests from each other.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from web3 import AsyncWeb3

from keeper.chain.logs import LogScanner
from keeper.chain.multicall import Multicall
from keeper.chain.rpc import Rpc
from keeper.devnet.api import apply_price_change, get_price, mint, set_price
from keeper.devnet.artifacts import load_aave
from keeper.devnet.comet import CometInfo, deploy_comet
from keeper.devnet.morpho import (
    MorphoInfo,
    deploy_morpho,
    load_morpho,
    set_morpho_price,
)
from keeper.devnet.rpc import calldata, rpc, wait_receipt
from keeper.protocols.compound_v3 import math as cm
from keeper.protocols.compound_v3.topup import plan_comet_top_up
from keeper.protocols.morpho_blue.math import accrue, health
from keeper.protocols.morpho_blue.topup import full_repay_assets, plan_morpho_top_up, repay_args
from keeper.protocols.compound_v3.reader import CometAdapter
from keeper.protocols.morpho_blue.reader import MorphoBlueAdapter
from keeper.units import UINT256_MAX
from tests.integration.conftest import deployed

SEED = 17
N = 8
TARGET = 14 * 10**17
COMET_ABI = json.loads((Path(__file__).resolve().parents[2] / "contracts/abi/Comet.json").read_text())


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def morpho(devnet, w3: AsyncWeb3) -> AsyncIterator[MorphoInfo]:
    async with deployed(w3, lambda: deploy_morpho(w3, devnet.info, N, SEED)) as info:
        yield info


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def comet(devnet, w3: AsyncWeb3) -> AsyncIterator[CometInfo]:
    async with deployed(w3, lambda: deploy_comet(w3, devnet.info, N, SEED)) as info:
        yield info


@pytest_asyncio.fixture(loop_scope="session")
async def node(devnet) -> AsyncIterator[Rpc]:
    r = Rpc(devnet.rpc_url)
    try:
        yield r
    finally:
        await r.close()


async def head(w3: AsyncWeb3) -> tuple[int, int]:
    block = await w3.eth.get_block("latest")
    return int(block["number"]), int(block["timestamp"])


async def send(w3: AsyncWeb3, sender: str, to: str, data: str, timestamp: int | None = None) -> int:
    """Mine one tx (reverts fail the test); returns its block number."""
    if timestamp is not None:
        await rpc(w3, "evm_setNextBlockTimestamp", [timestamp])
    tx = {"from": sender, "to": to, "data": data, "gas": hex(3_000_000)}
    receipt = await wait_receipt(w3, await rpc(w3, "eth_sendTransaction", [tx]))
    assert int(receipt["status"], 16) == 1, receipt
    return int(receipt["blockNumber"], 16)


async def fund(w3: AsyncWeb3, devnet, payer: str, spender: str, symbols: tuple[str, ...]) -> None:
    erc20 = load_aave("MintableERC20").abi
    for s in symbols:
        await mint(w3, devnet.info, s, payer, 10**30)
        await send(w3, payer, devnet.info.tokens[s], calldata(erc20, "approve", [spender, UINT256_MAX]))


async def token_balance(w3: AsyncWeb3, token: str, who: str) -> int:
    data = calldata(load_aave("MintableERC20").abi, "balanceOf", [who])
    return int(await rpc(w3, "eth_call", [{"to": token, "data": data}, "latest"]), 16)


async def in_snapshot(w3: AsyncWeb3, run, check) -> None:
    """``await check(await run())`` inside an evm_snapshot, reverted after."""
    snap = await rpc(w3, "evm_snapshot", [])
    try:
        await check(await run())
    finally:
        assert await rpc(w3, "evm_revert", [snap])


# ------------------------------------------------------------------ Morpho Blue


def _morpho_call(fn: str, *args) -> str:
    return calldata(load_morpho("Morpho").abi, fn, list(args))


async def _morpho_case(w3, devnet, morpho: MorphoInfo, node: Rpc):
    """WETH/USDC oracle -30%; the borrower with the lowest hf still above 1 (all under 1.4)."""
    payer = devnet.info.spare[0]
    await fund(w3, devnet, payer, morpho.morpho, ("USDC", "WETH"))
    adapter = MorphoBlueAdapter(node, Multicall(node), LogScanner(node), morpho.morpho,
                                list(morpho.market_ids), "morpho-topup", mock_irms=[morpho.irm])
    mid = morpho.market("WETH/USDC")
    block, _ = await head(w3)
    stored = (await adapter.load_markets(block, accrued=False))[mid]
    await set_morpho_price(w3, morpho, mid, stored.price * 70 // 100)
    block, now = await head(w3)
    stored = (await adapter.load_markets(block, accrued=False))[mid]
    ts = now + 600
    m = accrue(stored, ts)  # what repay / the next block sees: IrmMock's rate, exactly
    borrowers = [p["address"] for p in morpho.positions if p["market_id"] == mid]
    positions = await adapter.read_positions(borrowers, mid, block)
    hfs = sorted((health(m, p)[2], p.account) for p in positions)
    _, who = next((h, a) for h, a in hfs if 10**18 <= h < TARGET)
    pos = next(p for p in positions if p.account == who)
    return payer, adapter, mid, m, pos, ts


async def _morpho_exec(w3, morpho, adapter, mid, m, pos, payer, action, amount, ts):
    mp = morpho.markets[mid].as_tuple()
    if action == "repay":
        assets, shares = repay_args(m, pos, amount)
        data = _morpho_call("repay", mp, assets, shares, pos.account, b"")
    else:
        data = _morpho_call("supplyCollateral", mp, amount, pos.account, b"")
    block = await send(w3, payer, morpho.morpho, data, ts)
    after_m = (await adapter.load_markets(block))[mid]  # accrued to ts (repay: already is)
    (after_p,) = await adapter.read_positions([pos.account], mid, block)
    assert after_m.timestamp == ts
    return after_m, after_p


@pytest.mark.parametrize("action, symbol", [("repay", "USDC"), ("supply", "WETH")])
async def test_morpho_plan_reaches_the_target_on_chain_and_is_minimal(
        w3, devnet, morpho, node, action, symbol):
    payer, adapter, mid, m, pos, ts = await _morpho_case(w3, devnet, morpho, node)
    token = devnet.info.tokens[symbol]
    plan = plan_morpho_top_up(m, pos, TARGET, [(action, token)], {token: 10**30})
    assert plan is not None and not plan.partial and plan.amount > 0
    if action == "repay":
        assert plan.amount < full_repay_assets(m, pos)  # not all of it: sent by assets
        assert repay_args(m, pos, plan.amount) == (plan.amount, 0)

    async def miss():
        return await _morpho_exec(w3, morpho, adapter, mid, m, pos, payer, action, plan.amount - 1, ts)

    async def misses(state) -> None:
        assert health(*state)[2] < TARGET

    await in_snapshot(w3, miss, misses)
    paid_before = await token_balance(w3, token, payer)
    after_m, after_p = await _morpho_exec(w3, morpho, adapter, mid, m, pos, payer, action, plan.amount, ts)
    hf = health(after_m, after_p)[2]
    assert hf == plan.expected_hf_wad >= TARGET
    assert paid_before - await token_balance(w3, token, payer) == plan.amount


async def test_morpho_full_repay_goes_by_shares_on_chain(w3, devnet, morpho, node):
    """A target only zero debt reaches: the plan is the full debt, sent by shares."""
    payer, adapter, mid, m, pos, ts = await _morpho_case(w3, devnet, morpho, node)
    usdc = devnet.info.tokens["USDC"]
    plan = plan_morpho_top_up(m, pos, UINT256_MAX, [("repay", usdc)], {usdc: 10**30})
    full = full_repay_assets(m, pos)
    assert plan is not None and (plan.amount, plan.expected_hf_wad) == (full, UINT256_MAX)
    assert repay_args(m, pos, full) == (0, pos.borrow_shares)
    paid_before = await token_balance(w3, usdc, payer)
    _, after_p = await _morpho_exec(w3, morpho, adapter, mid, m, pos, payer, "repay", full, ts)
    assert after_p.borrow_shares == 0 and after_p.collateral == pos.collateral
    assert paid_before - await token_balance(w3, usdc, payer) == full


# ------------------------------------------------------------------ Compound III


def collateral_of(acct: cm.CometAccount, asset: str) -> int:
    return next((v for a, v in acct.collateral.items() if a.lower() == asset.lower()), 0)


async def _comet_case(w3, devnet, comet: CometInfo, node: Rpc):
    """WETH -30% (the shared devnet feed); a WETH-holding borrower with 1 <= hf < 1.4."""
    payer = devnet.info.spare[1]
    await fund(w3, devnet, payer, comet.comet, ("USDC", "WETH"))
    await set_price(w3, devnet.info, "WETH", apply_price_change(await get_price(w3, devnet.info, "WETH"), "-30%"))
    adapter = CometAdapter(node, Multicall(node), LogScanner(node), comet.comet, "comet-topup")
    block, now = await head(w3)
    ts = now + 600
    raw = await adapter.load_market(block, accrued=False)
    market = cm.accrue(raw, ts)  # what supplyBase accrues to, and the hf at the next block
    accounts = await adapter.read_accounts(list(comet.borrowers), raw)
    weth = comet.assets["WETH"]
    hfs = sorted((cm.hf_wad(market, a), a.account) for a in accounts if collateral_of(a, weth))
    _, who = next((h, a) for h, a in hfs if 10**18 <= h < TARGET)
    acct = next(a for a in accounts if a.account == who)
    return payer, adapter, market, acct, ts


async def _comet_exec(w3, comet, adapter, acct, payer, asset, amount, ts):
    block = await send(w3, payer, comet.comet, calldata(COMET_ABI, "supplyTo", [acct.account, asset, amount]), ts)
    after = await adapter.load_market(block)  # accrued to ts
    assert after.timestamp == ts
    (a,) = await adapter.read_accounts([acct.account], after)
    return after, a


@pytest.mark.parametrize("action, symbol", [("repay", "USDC"), ("supply", "WETH")])
async def test_comet_plan_reaches_the_target_on_chain_and_is_minimal(
        w3, devnet, comet, node, action, symbol):
    payer, adapter, market, acct, ts = await _comet_case(w3, devnet, comet, node)
    token = devnet.info.tokens[symbol]
    plan = plan_comet_top_up(market, acct, TARGET, [(action, token)], {token: 10**30})
    assert plan is not None and not plan.partial and plan.amount > 0

    async def miss():
        return await _comet_exec(w3, comet, adapter, acct, payer, token, plan.amount - 1, ts)

    async def misses(state) -> None:
        assert cm.hf_wad(*state) < TARGET

    await in_snapshot(w3, miss, misses)
    paid_before = await token_balance(w3, token, payer)
    after_market, after = await _comet_exec(w3, comet, adapter, acct, payer, token, plan.amount, ts)
    assert cm.hf_wad(after_market, after) == plan.expected_hf_wad >= TARGET
    assert paid_before - await token_balance(w3, token, payer) == plan.amount
    if action == "repay":
        assert after.principal == cm.principal_value(market, cm.present_value(market, acct.principal)
                                                     + plan.amount)
        (borrowed, liquidatable), = await adapter.contract_views([acct.account], await node.block_number())
        assert borrowed == cm.borrow_balance(after_market, after) and not liquidatable
    else:
        assert collateral_of(after, token) == collateral_of(acct, token) + plan.amount

