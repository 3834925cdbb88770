"""Compound III (Comet) on the devnet: keeper's stand-in (contracts/src/CometStandIn.sol) over
the Aave devnet's tokens and feeds, read by ``CometAdapter`` through the real Comet interface
(contracts/abi/Comet.json). The pure math (keeper.protocols.compound_v3.math) equals the contract's own
views to the wei after time passes and prices move; absorb and buyCollateral do on chain
exactly what ``absorb_outcome`` and ``quote_collateral`` say; discovery finds exactly the
seeded borrowers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytest_asyncio
from eth_abi import decode
from eth_utils import keccak
from web3.exceptions import ContractCustomError

from keeper.chain.logs import LogScanner, topic_address
from keeper.chain.multicall import Multicall
from keeper.chain.rpc import Rpc
from keeper.devnet.api import (
    advance_time,
    apply_price_change,
    get_price,
    mint,
    set_price,
)
from keeper.devnet.comet import CometInfo, deploy_comet
from keeper.devnet.rpc import calldata, rpc, wait_receipt
from keeper.protocols.compound_v3 import math as cm
from keeper.protocols.compound_v3.reader import (
    ABSORB_COLLATERAL,
    ABSORB_DEBT,
    BUY_COLLATERAL,
    CometAdapter,
)

COMET_ABI = json.loads((Path(__file__).resolve().parents[2] / "contracts/abi/Comet.json").read_text())
ERC20_APPROVE = [{"type": "function", "name": "approve", "stateMutability": "nonpayable",
                  "inputs": [{"name": "s", "type": "address"}, {"name": "a", "type": "uint256"}],
                  "outputs": [{"name": "", "type": "bool"}]}]
N_COMET_BORROWERS = 24
COMET_SEED = 3


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def comet(devnet, w3) -> CometInfo:
    """Deployed once, before the first test's snapshot: every test starts from it."""
    return await deploy_comet(w3, devnet.info, n_borrowers=N_COMET_BORROWERS, seed=COMET_SEED)


@pytest.fixture
async def node(devnet):
    n = Rpc(devnet.rpc_url)
    yield n
    await n.close()


@pytest.fixture
def adapter(node, comet) -> CometAdapter:
    return CometAdapter(node, Multicall(node), LogScanner(node), comet.comet, "comet-devnet")


def contract(w3, comet: CometInfo):
    return w3.eth.contract(address=comet.comet, abi=COMET_ABI)


async def send(w3, sender: str, to: str, data: str, timestamp: int | None = None) -> dict:
    if timestamp is not None:
        await rpc(w3, "evm_setNextBlockTimestamp", [timestamp])
    tx_hash = await rpc(w3, "eth_sendTransaction", [{"from": sender, "to": to, "data": data,
                                                      "gas": hex(3_000_000)}])
    receipt = await wait_receipt(w3, tx_hash)
    assert int(receipt["status"], 16) == 1, f"tx {tx_hash} reverted"
    return receipt


async def move_prices(w3, devnet, steps) -> None:
    for symbol, step in steps:
        await set_price(w3, devnet.info, symbol,
                        apply_price_change(await get_price(w3, devnet.info, symbol), step))


async def test_discovery_finds_exactly_the_seeded_borrowers(comet, adapter, node):
    head = await node.block_number()
    adapter.logs = LogScanner(node, max_range=1)  # one block per chunk: the checkpoints move
    found, lasts = set(), []
    async for last, accounts in adapter.discover(comet.deploy_block, head):
        found |= accounts
        lasts.append(last)
    assert found == set(comet.borrowers)
    assert lasts == list(range(comet.deploy_block, head + 1))


async def test_touched_names_every_seeded_account_and_ignores_erc20_transfers(comet, adapter, node):
    head = await node.block_number()
    logs = await adapter.logs.fetch([comet.comet, comet.base_token], [adapter.event_topics()],
                                    comet.deploy_block, head)
    assert any(lg.address.lower() == comet.base_token.lower() for lg in logs)  # USDC Transfer logs
    touched, borrowers = adapter.touched(logs)
    assert touched == set(comet.borrowers) | set(comet.lenders)
    assert borrowers == set(comet.borrowers)


async def test_seeded_positions_have_the_planned_spread_of_health(comet, adapter, node):
    market = await adapter.load_market(await node.block_number())
    accounts = await adapter.read_accounts(list(comet.borrowers), market)
    hfs = []
    for acct, plan in zip(accounts, comet.positions, strict=True):
        hf_bps = cm.hf_wad(market, acct) * 10_000 // 10**18
        assert abs(hf_bps - plan["target_hf_bps"]) <= 2, acct.account  # rounding of the amounts
        assert cm.is_borrow_collateralized(market, acct)
        hfs.append(hf_bps)
    assert 10_850 <= min(hfs) < 11_200 and 29_000 < max(hfs) <= 30_000


async def test_market_equals_the_contract(comet, adapter, node, w3):
    await advance_time(w3, 30 * 86_400)
    block = await node.block_number()
    raw = await adapter.load_market(block, accrued=False)
    market = await adapter.load_market(block)
    c = contract(w3, comet)
    assert [a.symbol for a in market.assets] == ["WETH", "WBTC"] and market.base_symbol == "USDC"
    weth = await c.functions.getAssetInfoByAddress(comet.assets["WETH"]).call(block_identifier=block)
    assert weth[3:7] == (10**18, 825 * 10**15, 895 * 10**15, 95 * 10**16)
    assert tuple(weth) == (0, market.assets[0].asset, market.assets[0].price_feed, *weth[3:])
    u = cm.utilization(raw)  # getUtilization reads the stored indexes
    assert u == await c.functions.getUtilization().call(block_identifier=block) > 0
    assert cm.rates_at(raw, u) == (await c.functions.getSupplyRate(u).call(block_identifier=block),
                                   await c.functions.getBorrowRate(u).call(block_identifier=block))
    assert market.reserves == await c.functions.getReserves().call(block_identifier=block)
    assert market.base_borrow_index > raw.base_borrow_index  # 30 days accrued in Python
    total_borrow = cm.present_value_of(market.base_borrow_index, market.total_borrow_base)
    assert total_borrow == await c.functions.totalBorrow().call(block_identifier=block)
    for lender in comet.lenders:
        (acct,) = await adapter.read_accounts([lender], market)
        assert cm.supply_balance(market, acct) == \
            await c.functions.balanceOf(lender).call(block_identifier=block) > 0


@pytest.mark.parametrize("days, steps", [
    (0, ()),
    (200, (("WETH", "-20%"), ("WBTC", "-12%"), ("USDC", "+1%"))),
    (3 * 365, (("WETH", "-31%"), ("WBTC", "+5%"))),
])
async def test_borrow_balance_and_liquidatable_equal_the_contract_to_the_wei(
        comet, adapter, node, w3, devnet, days, steps):
    if days:
        await advance_time(w3, days * 86_400)
    await move_prices(w3, devnet, steps)
    block = await node.block_number()
    market = await adapter.load_market(block)
    raw = await adapter.load_market(block, accrued=False)
    accounts = await adapter.read_accounts(list(comet.borrowers), market)
    views = await adapter.contract_views(list(comet.borrowers), block)
    for acct, (borrow, liquidatable) in zip(accounts, views, strict=True):
        assert acct.principal < 0 and acct.assets_in
        assert cm.borrow_balance(market, acct) == borrow, acct.account
        assert cm.is_liquidatable(raw, acct) == liquidatable, acct.account  # the view: stored indexes
        hf = cm.hf_wad(market, acct)
        assert (hf < 10**18) == cm.is_liquidatable(market, acct)
    if steps and days == 200:  # the -20% WETH move liquidates some, not all
        flags = [v[1] for v in views]
        assert any(flags) and not all(flags)


async def test_accrued_math_equals_the_view_once_the_comet_accrued(comet, adapter, node, w3, devnet):
    """The view lags (stored indexes); after any accrual at block N+1 it equals our market
    accrued to N+1's timestamp, computed from block N."""
    await advance_time(w3, 2 * 365 * 86_400)
    await move_prices(w3, devnet, (("WETH", "-20%"), ("WBTC", "-20%")))
    block = await node.block_number()
    raw = await adapter.load_market(block, accrued=False)
    accounts = await adapter.read_accounts(list(comet.borrowers), raw)
    t = raw.timestamp + 12
    predicted = cm.accrue(raw, t)
    before = await adapter.contract_views(list(comet.borrowers), block)
    lagging = [a.account for a, v in zip(accounts, before) if cm.is_liquidatable(predicted, a) != v[1]]
    assert lagging  # liquidatable for absorb, not yet for the isLiquidatable view
    await send(w3, devnet.info.spare[0], comet.comet,
               calldata(COMET_ABI, "accrueAccount", [devnet.info.spare[0]]), timestamp=t)
    views = await adapter.contract_views(list(comet.borrowers), block + 1)
    assert [cm.is_liquidatable(predicted, a) for a in accounts] == [v[1] for v in views]
    assert [cm.borrow_balance(predicted, a) for a in accounts] == [v[0] for v in views]
    after = await adapter.load_market(block + 1, accrued=False)
    assert (after.base_supply_index, after.base_borrow_index) == \
        (predicted.base_supply_index, predicted.base_borrow_index)


async def test_quote_collateral_equals_the_contract(comet, adapter, node, w3, devnet):
    await move_prices(w3, devnet, (("WETH", "-7%"), ("USDC", "-0.3%")))
    block = await node.block_number()
    market = await adapter.load_market(block)
    c = contract(w3, comet)
    for symbol in ("WETH", "WBTC"):
        for base_amount in (1, 999_999, 1_950 * 10**6, 123_456_789_012):
            ours = cm.quote_collateral(market, comet.assets[symbol], base_amount)
            assert ours == await c.functions.quoteCollateral(comet.assets[symbol], base_amount).call(
                block_identifier=block), (symbol, base_amount)


def _events(receipt: dict, topic0: bytes) -> list[tuple[list[str], tuple]]:
    out = []
    for lg in receipt["logs"]:
        topics = [bytes.fromhex(t[2:]) for t in lg["topics"]]
        if topics[0] == topic0:
            n = len(bytes.fromhex(lg["data"][2:])) // 32
            out.append(([topic_address(t).lower() for t in topics[1:]],
                        decode(["uint256"] * n, bytes.fromhex(lg["data"][2:]))))
    return out


async def test_absorb_and_buy_collateral_match_the_math(comet, adapter, node, w3, devnet):
    info = devnet.info
    await advance_time(w3, 90 * 86_400)
    await move_prices(w3, devnet, (("WETH", "-24%"), ("WBTC", "-15%")))
    block = await node.block_number()
    raw = await adapter.load_market(block, accrued=False)
    accounts = await adapter.read_accounts(list(comet.borrowers), raw)
    t = raw.timestamp + 12
    market = cm.accrue(raw, t)  # what absorb sees: it accrues first
    flagged = [a for a in accounts if cm.is_liquidatable(market, a)]
    assert flagged and len(flagged) < len(accounts)
    expected = []
    for a in flagged:
        out = cm.absorb_outcome(market, a)
        expected.append(out)
        market = out.market_after
    receipt = await send(w3, info.liquidator, comet.comet,
                         calldata(COMET_ABI, "absorb", [info.liquidator, [a.account for a in flagged]]),
                         timestamp=t)
    debts = _events(receipt, ABSORB_DEBT)
    assert [(ts[1], data) for ts, data in debts] == \
        [(o.account.lower(), (o.base_paid_out, o.usd_value)) for o in expected]
    seized = _events(receipt, ABSORB_COLLATERAL)
    assert [(ts[1], ts[2], data) for ts, data in seized] == \
        [(o.account.lower(), asset.lower(), (amount, value))
         for o in expected for asset, amount, value in o.seized]
    assert all(ts[0] == info.liquidator.lower() for ts, _ in debts + seized)
    now = await adapter.load_market(block + 1, accrued=False)
    assert (now.total_supply_base, now.total_borrow_base) == \
        (market.total_supply_base, market.total_borrow_base)
    for a, o in zip(await adapter.read_accounts([a.account for a in flagged], now), expected):
        assert (a.principal, a.collateral, a.assets_in) == (o.new_principal, {}, 0)

    # buyCollateral: reserves are below targetReserves, so the seized WETH is for sale
    weth = comet.assets["WETH"]
    seized_weth = sum(amount for o in expected for asset, amount, _ in o.seized if asset == weth)
    assert seized_weth > 0 and now.reserves < now.target_reserves
    base_amount = 1_000 * 10**6
    quote = cm.quote_collateral(now, weth, base_amount)
    assert 0 < quote <= seized_weth
    buyer = info.spare[1]
    await mint(w3, info, "USDC", buyer, base_amount)
    await send(w3, buyer, comet.base_token, calldata(ERC20_APPROVE, "approve", [comet.comet, base_amount]))
    c = contract(w3, comet)
    with pytest.raises(ContractCustomError, match=keccak(text="TooMuchSlippage()")[:4].hex()):
        await c.functions.buyCollateral(weth, quote + 1, base_amount, buyer).call({"from": buyer})
    receipt = await send(w3, buyer, comet.comet,
                         calldata(COMET_ABI, "buyCollateral", [weth, quote, base_amount, buyer]))
    assert _events(receipt, BUY_COLLATERAL) == [([buyer.lower(), weth.lower()], (base_amount, quote))]
    assert await c.functions.getCollateralReserves(weth).call() == seized_weth - quote


async def test_one_engine_watches_all_three_protocols(devnet, w3, comet, tmp_path):
    """One config with Aave V3, and Compound V3 (Morpho has its own module): after a crash the
    engine flags exactly the accounts Comet's own isLiquidatable names, at an accrued block."""
    from keeper.config import load_config
    from keeper.devnet.api import apply_price_change, get_price, set_price
    from keeper.engine import Engine
    from keeper.model import Status
    from keeper.store import Store

    path = tmp_path / "keeper.toml"
    path.write_text(devnet.config_path.read_text() + f'\n[store]\npath = "{tmp_path / "k.sqlite"}"\n'
                    f'\n[[markets]]\nprotocol = "compound_v3"\nname = "comet"\ncomet = "{comet.comet}"\n')
    for symbol in ("WETH", "WBTC"):
        await set_price(w3, devnet.info, symbol, apply_price_change(await get_price(w3, devnet.info, symbol), "-25%"))
    # one tx that accrues Comet's indexes, so its isLiquidatable view is current at this block
    tx = {"from": devnet.info.deployer, "to": comet.comet, "gas": hex(500_000),
          "data": "0x" + contract(w3, comet).encode_abi("accrueAccount", [devnet.info.deployer])[2:]}
    await wait_receipt(w3, await rpc(w3, "eth_sendTransaction", [tx]))
    node, store = Rpc(devnet.rpc_url), Store(tmp_path / "k.sqlite")
    try:
        engine = Engine(load_config(path, env={}), node, store)
        block = await node.block_number()
        await engine.index(block)
        got = await engine.full_scan(block)
        mine = [p for p in got if p.protocol == "compound_v3"]
        views = await CometAdapter(node, Multicall(node), LogScanner(node), comet.comet, "c").contract_views(
            [p.account for p in mine], block)
    finally:
        store.close()
        await node.close()
    assert {p.protocol for p in got} == {"aave_v3", "compound_v3"}
    assert {p.account for p in mine} == set(comet.borrowers)
    flagged = {p.account for p in mine if p.status == Status.LIQUIDATABLE}
    assert flagged == {p.account for p, (_, liq) in zip(mine, views) if liq}
    assert flagged, "the crash should make some Comet account liquidatable"
