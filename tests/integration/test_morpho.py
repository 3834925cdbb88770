"""Morpho Blue on the devnet: keeper's pure math (keeper.protocols.morpho_blue.math) and reader
(keeper.protocols.morpho_blue.reader) against the real contract (npm @morpho-org/morpho-blue 1.0.0).

* accrued market == what Morpho stores after an on-chain accrueInterest, to the wei;
* our health says liquidatable exactly when a simulated liquidate succeeds, for every
  borrower after a price drop and one price unit (and one bps) either side of each edge;
* liquidate_quote == the Liquidate event and the state after a real liquidate, to the wei
  (by seized assets, by repaid shares, with bad debt);
* discovery finds exactly the seeded borrowers.

The ``morpho`` fixture deploys once for this module (after the Aave devnet's session set-up,
before the per-test snapshot, so every test starts from it) and reverts the chain to before
it at the end of the module, so other modules never see it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from eth_abi import decode
from web3 import AsyncWeb3

from keeper.chain.abi import topic
from keeper.chain.logs import LogScanner
from keeper.chain.multicall import Multicall
from keeper.chain.rpc import Rpc
from keeper.devnet.api import advance_time, mint
from keeper.devnet.artifacts import load_aave
from keeper.devnet.morpho import MorphoInfo, deploy_morpho, load_morpho, set_morpho_price
from keeper.devnet.rpc import calldata, rpc, wait_receipt
from keeper.errors import DevnetError
from keeper.protocols.morpho_blue.math import (
    MorphoMarket, MorphoPosition, accrue_detail, drop_to_liquidation_bps, is_healthy,
    liquidate_quote, liquidation_price, max_liquidation, shock,
)  # fmt: skip
from keeper.protocols.morpho_blue.reader import MorphoBlueAdapter

N_BORROWERS = 20
SEED = 7
DAY = 86_400
LIQUIDATE = topic("Liquidate(bytes32,address,address,uint256,uint256,uint256,uint256,uint256)")
ACCRUE = topic("AccrueInterest(bytes32,uint256,uint256,uint256)")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def morpho(devnet, w3: AsyncWeb3) -> AsyncIterator[MorphoInfo]:
    before = await rpc(w3, "evm_snapshot", [])
    try:
        yield await deploy_morpho(w3, devnet.info, N_BORROWERS, SEED)
    finally:
        if not await rpc(w3, "evm_revert", [before]):
            raise RuntimeError("could not revert the Morpho deployment: later modules would see it")


@pytest_asyncio.fixture(loop_scope="session")
async def adapter(devnet, morpho: MorphoInfo) -> AsyncIterator[MorphoBlueAdapter]:
    r = Rpc(devnet.rpc_url)
    try:
        yield MorphoBlueAdapter(r, Multicall(r), LogScanner(r), morpho.morpho,
                                list(morpho.market_ids), "morpho-devnet")
    finally:
        await r.close()


async def head(w3: AsyncWeb3) -> tuple[int, int]:
    block = await w3.eth.get_block("latest")
    return int(block["number"]), int(block["timestamp"])


async def send(w3: AsyncWeb3, sender: str, to: str, data: str, timestamp: int | None = None) -> dict:
    if timestamp is not None:
        await rpc(w3, "evm_setNextBlockTimestamp", [timestamp])
    tx = {"from": sender, "to": to, "data": data, "gas": hex(3_000_000)}
    receipt = await wait_receipt(w3, await rpc(w3, "eth_sendTransaction", [tx]))
    assert int(receipt["status"], 16) == 1, receipt
    return receipt


async def positions(adapter: MorphoBlueAdapter, morpho: MorphoInfo, block: int
                    ) -> list[tuple[str, MorphoPosition]]:
    out = []
    for mid in morpho.market_ids:
        accounts = [p["address"] for p in morpho.positions if p["market_id"] == mid]
        out += [(mid, p) for p in await adapter.read_positions(accounts, mid, block)]
    return out


def _calldata(morpho: MorphoInfo, fn: str, *args) -> str:
    return calldata(load_morpho("Morpho").abi, fn, list(args))


def liquidate_data(morpho: MorphoInfo, mid: str, borrower: str, seized: int, shares: int) -> str:
    return _calldata(morpho, "liquidate", morpho.markets[mid].as_tuple(), borrower, seized, shares, b"")


async def fund_liquidator(w3: AsyncWeb3, devnet, morpho: MorphoInfo) -> str:
    liquidator = devnet.info.liquidator
    await mint(w3, devnet.info, "USDC", liquidator, 10**9 * 10**6)
    approve = calldata(load_aave("MintableERC20").abi, "approve", [morpho.morpho, 2**256 - 1])
    await send(w3, liquidator, devnet.info.tokens["USDC"], approve)
    return liquidator


async def simulate(w3: AsyncWeb3, sender: str, to: str, data: str, block: int) -> tuple[bool, str]:
    """eth_call at ``block``: (succeeded, return data or revert message)."""
    try:
        out = await rpc(w3, "eth_call", [{"from": sender, "to": to, "data": data,
                                          "gas": hex(3_000_000)}, hex(block)])
    except DevnetError as e:
        return False, str(e)
    return True, out


async def stored_market(adapter: MorphoBlueAdapter, mid: str, block: int) -> MorphoMarket:
    return (await adapter.load_markets(block, accrued=False))[mid]


def totals(m: MorphoMarket) -> tuple[int, ...]:
    return (m.total_supply_assets, m.total_supply_shares, m.total_borrow_assets,
            m.total_borrow_shares, m.last_update, m.fee)


# ------------------------------------------------------------------ set-up


async def test_seeded_positions_and_discovery(w3, morpho: MorphoInfo, adapter: MorphoBlueAdapter):
    block, _ = await head(w3)
    markets = await adapter.load_markets(block)
    seen = await positions(adapter, morpho, block)
    assert len(seen) == N_BORROWERS
    plan = {p["address"]: p for p in morpho.positions}
    for mid, p in seen:
        assert p.collateral == plan[p.account]["collateral"] and p.borrow_shares > 0
        assert is_healthy(markets[mid], p)
    assert {m.fee for m in markets.values()} == {0, 10**17}
    found: set[str] = set()
    pairs: set[tuple[str, str]] = set()
    async for _, part in adapter.discover(0, block):
        found |= part
    async for _, part in adapter.discover_positions(morpho.deploy_block, block):
        pairs |= part
    assert found == set(morpho.borrowers)
    assert pairs == {(p["market_id"], p["address"]) for p in morpho.positions}


# ------------------------------------------------------------------ (a) interest


async def test_accrued_market_equals_morpho_after_accrue_interest(w3, devnet, morpho, adapter):
    await advance_time(w3, 30 * DAY)
    for mid in morpho.market_ids:
        old = (await stored_market(adapter, mid, (await head(w3))[0])).price
        await set_morpho_price(w3, morpho, mid, old * 9 // 10)
    block, ts = await head(w3)
    ours = await adapter.load_markets(block)  # accrued in Python to ts
    # ``adapter`` reads IrmMock.borrowRateView at the block; this one computes it in Python
    python_rates = MorphoBlueAdapter(adapter.rpc, adapter.mc, adapter.logs, morpho.morpho,
                                     list(morpho.market_ids), "x", mock_irms=[morpho.irm])
    assert await python_rates.load_markets(block) == ours
    for mid in morpho.market_ids:
        assert ours[mid].last_update == ts and ours[mid].total_borrow_assets > 0
        before = await stored_market(adapter, mid, block)
        assert before.last_update < ts
        # same-second block: Morpho accrues to exactly the timestamp we accrued to
        await send(w3, devnet.info.deployer, morpho.morpho,
                   _calldata(morpho, "accrueInterest", morpho.markets[mid].as_tuple()), ts)
        after = await stored_market(adapter, mid, (await head(w3))[0])
        assert totals(after) == totals(ours[mid])

    # a day later, at a timestamp of our choosing: the AccrueInterest event and fee shares too
    await advance_time(w3, DAY)
    for mid in morpho.market_ids:
        block, ts = await head(w3)
        stored = await stored_market(adapter, mid, block)
        expect = accrue_detail(stored, ts + 7)
        fee_before = await adapter.read_positions([morpho.fee_recipient], mid, block)
        receipt = await send(w3, devnet.info.deployer, morpho.morpho,
                             _calldata(morpho, "accrueInterest", morpho.markets[mid].as_tuple()),
                             ts + 7)
        block = int(receipt["blockNumber"], 16)
        assert totals(await stored_market(adapter, mid, block)) == totals(expect.market)
        (event,) = [lg for lg in receipt["logs"] if bytes.fromhex(lg["topics"][0][2:]) == ACCRUE]
        rate, interest, fee_shares = decode(["uint256"] * 3, bytes.fromhex(event["data"][2:]))
        assert (rate, interest, fee_shares) == (expect.borrow_rate, expect.interest, expect.fee_shares)
        assert interest > 0 and (fee_shares > 0) == (stored.fee > 0)
        fee_after = await adapter.read_positions([morpho.fee_recipient], mid, block)
        assert fee_after[0].supply_shares - fee_before[0].supply_shares == fee_shares


async def test_an_idle_block_reads_markets_and_their_rates_in_one_request(w3, devnet, morpho, adapter):
    """The IRM's borrowRateView of the market as last read is asked beside market(id): one
    request when the market is still stored so (an idle block), a second one when an
    interaction changed it; the accrued markets equal IrmMock's rate computed in Python."""
    fresh = MorphoBlueAdapter(adapter.rpc, adapter.mc, adapter.logs, morpho.morpho,
                              list(morpho.market_ids), "fresh")
    python_rates = MorphoBlueAdapter(adapter.rpc, adapter.mc, adapter.logs, morpho.morpho,
                                     list(morpho.market_ids), "x", mock_irms=[morpho.irm])
    counter = adapter.rpc.counter

    async def load(block: int) -> tuple[dict, int]:
        before = counter.http_requests
        got = await fresh.load_markets(block)
        return got, counter.http_requests - before

    await advance_time(w3, DAY)
    block, _ = await head(w3)
    await load(block)  # the first read: params, markets, then the rates
    await advance_time(w3, DAY)  # idle: no interaction, the markets are stored as they were
    block, _ = await head(w3)
    got, requests = await load(block)
    assert requests == 1
    assert got == await python_rates.load_markets(block)
    assert all(m.last_update == got[m.id].timestamp for m in got.values())
    mid = morpho.market_ids[0]  # an interaction: this market is stored anew, the other is not
    await send(w3, devnet.info.deployer, morpho.morpho,
               _calldata(morpho, "accrueInterest", morpho.markets[mid].as_tuple()))
    await advance_time(w3, DAY)
    block, _ = await head(w3)
    got, requests = await load(block)
    assert requests == 2
    assert got == await python_rates.load_markets(block)


# ------------------------------------------------------------------ (b) health


async def test_unhealthy_exactly_when_liquidate_simulation_succeeds(w3, devnet, morpho, adapter):
    liquidator = await fund_liquidator(w3, devnet, morpho)
    await advance_time(w3, 10 * DAY)
    for mid in morpho.market_ids:
        old = (await stored_market(adapter, mid, (await head(w3))[0])).price
        await set_morpho_price(w3, morpho, mid, old * 70 // 100)  # -30%
    block, _ = await head(w3)
    markets = await adapter.load_markets(block)
    outcomes = set()
    for mid, p in await positions(adapter, morpho, block):
        liquidatable = not is_healthy(markets[mid], p)
        shares = max(1, p.borrow_shares // 10)
        ok, out = await simulate(w3, liquidator, morpho.morpho,
                                 liquidate_data(morpho, mid, p.account, 0, shares), block)
        assert ok == liquidatable, (p, out)
        if ok:  # the returned (seizedAssets, repaidAssets) are ours too
            q = liquidate_quote(markets[mid], p, repaid_shares=shares)
            assert decode(["uint256", "uint256"], bytes.fromhex(out[2:])) == \
                (q.seized_assets, q.repaid_assets)
        else:
            assert "position is healthy" in out
        outcomes.add(ok)
    assert outcomes == {True, False}


async def test_liquidatable_edge_to_one_price_unit_and_one_bps(w3, devnet, morpho, adapter):
    liquidator = await fund_liquidator(w3, devnet, morpho)
    await advance_time(w3, 10 * DAY)
    block, ts = await head(w3)
    markets = await adapter.load_markets(block)
    for mid, p in await positions(adapter, morpho, block):
        m = markets[mid]
        lp = liquidation_price(m, p)
        bps = drop_to_liquidation_bps(m, p)
        assert bps is not None and 0 < bps < 10_000
        # every price change lands in a block with the same timestamp: no interest in between
        for price, expect_liquidatable in ((lp + 1, False), (lp, True),
                                           (shock(m, -(bps - 1)).price, False),
                                           (shock(m, -bps).price, True)):
            change = await set_morpho_price(w3, morpho, mid, price, timestamp=ts)
            now = (await adapter.load_markets(change.block))[mid]
            assert now.timestamp == ts and now.price == price
            assert is_healthy(now, p) != expect_liquidatable
            ok, out = await simulate(w3, liquidator, morpho.morpho,
                                     liquidate_data(morpho, mid, p.account, 1, 0), change.block)
            assert ok == expect_liquidatable, (p, price, out)
        await set_morpho_price(w3, morpho, mid, m.price, timestamp=ts)


# ------------------------------------------------------------------ (c) liquidation


async def _liquidate(w3, morpho, liquidator, mid, p, seized, shares, timestamp) -> dict:
    receipt = await send(w3, liquidator, morpho.morpho,
                         liquidate_data(morpho, mid, p.account, seized, shares), timestamp)
    (event,) = [lg for lg in receipt["logs"] if bytes.fromhex(lg["topics"][0][2:]) == LIQUIDATE]
    assert event["topics"][1] == mid
    names = ("repaid_assets", "repaid_shares", "seized_assets", "bad_debt_assets", "bad_debt_shares")
    values = decode(["uint256"] * 5, bytes.fromhex(event["data"][2:]))
    return {"block": int(receipt["blockNumber"], 16), **dict(zip(names, values, strict=True))}


def _as_event(q) -> dict:
    return {k: getattr(q, k) for k in ("repaid_assets", "repaid_shares", "seized_assets",
                                       "bad_debt_assets", "bad_debt_shares")}


async def test_liquidate_quote_equals_real_liquidations(w3, devnet, morpho, adapter):
    liquidator = await fund_liquidator(w3, devnet, morpho)
    await advance_time(w3, 5 * DAY)
    for mid in morpho.market_ids:
        old = (await stored_market(adapter, mid, (await head(w3))[0])).price
        await set_morpho_price(w3, morpho, mid, old * 55 // 100)  # -45%
    block, ts = await head(w3)
    markets = await adapter.load_markets(block)
    victims = [(mid, p) for mid, p in await positions(adapter, morpho, block)
               if not is_healthy(markets[mid], p)]
    by_market = {mid: [p for m, p in victims if m == mid] for mid in morpho.market_ids}
    assert all(len(v) >= 2 for v in by_market.values()), by_market
    done = 0
    for mid, (first, second) in ((mid, v[:2]) for mid, v in by_market.items()):
        # 1) by seized assets, in a block with the same timestamp (market accrued by us to ts)
        block, ts = await head(w3)
        m = (await adapter.load_markets(block))[mid]
        p = (await adapter.read_positions([first.account], mid, block))[0]
        q = liquidate_quote(m, p, seized_assets=p.collateral // 3)
        event = await _liquidate(w3, morpho, liquidator, mid, p, p.collateral // 3, 0, ts)
        assert {k: v for k, v in event.items() if k != "block"} == _as_event(q)
        assert totals(await stored_market(adapter, mid, event["block"])) == totals(q.market)
        assert (await adapter.read_positions([p.account], mid, event["block"]))[0] == q.position
        # 2) by repaid shares, an hour later: liquidate_quote accrues the stored market itself
        block, ts = await head(w3)
        stored = await stored_market(adapter, mid, block)
        p = (await adapter.read_positions([second.account], mid, block))[0]
        q = liquidate_quote(stored, p, repaid_shares=p.borrow_shares // 2, timestamp=ts + 3_600)
        event = await _liquidate(w3, morpho, liquidator, mid, p, 0, p.borrow_shares // 2, ts + 3_600)
        assert {k: v for k, v in event.items() if k != "block"} == _as_event(q)
        assert totals(await stored_market(adapter, mid, event["block"])) == totals(q.market)
        assert (await adapter.read_positions([p.account], mid, event["block"]))[0] == q.position
        done += 2
    assert done == 4


async def test_bad_debt_liquidation_equals_quote(w3, devnet, morpho, adapter):
    liquidator = await fund_liquidator(w3, devnet, morpho)
    for mid in morpho.market_ids:
        block, ts = await head(w3)
        old = (await stored_market(adapter, mid, block)).price
        await set_morpho_price(w3, morpho, mid, old // 10, timestamp=ts)  # -90%: debt > collateral
        block, ts = await head(w3)
        m = (await adapter.load_markets(block))[mid]
        (p,) = await adapter.read_positions([next(
            x["address"] for x in morpho.positions if x["market_id"] == mid)], mid, block)
        q = max_liquidation(m, p)
        assert q.bad_debt_assets > 0 and q.position.collateral == 0 == q.position.borrow_shares
        event = await _liquidate(w3, morpho, liquidator, mid, p, q.seized_assets, 0, ts)
        assert {k: v for k, v in event.items() if k != "block"} == _as_event(q)
        assert totals(await stored_market(adapter, mid, event["block"])) == totals(q.market)
        after = (await adapter.read_positions([p.account], mid, event["block"]))[0]
        assert (after.collateral, after.borrow_shares) == (0, 0)


async def test_touched_names_the_liquidated_borrower(w3, devnet, morpho, adapter):
    liquidator = await fund_liquidator(w3, devnet, morpho)
    mid = morpho.market_ids[0]
    block, ts = await head(w3)
    old = (await stored_market(adapter, mid, block)).price
    change = await set_morpho_price(w3, morpho, mid, old // 10, timestamp=ts)
    (p,) = await adapter.read_positions([morpho.positions[0]["address"]], mid, change.block)
    event = await _liquidate(w3, morpho, liquidator, mid, p, 0, p.borrow_shares // 4, ts)
    logs = await adapter.logs.fetch([morpho.morpho], [], event["block"], event["block"])
    accounts, borrowers = adapter.touched(logs)
    assert accounts == {p.account} and borrowers == set()
    pairs, markets = adapter.touched_positions(logs)
    assert pairs == {(mid, p.account)} and markets == {mid}


# ------------------------------------------------------------------ the engine


async def test_engine_scans_aave_and_morpho_from_one_config(w3, devnet, morpho, tmp_path):
    """One config, both protocols: every seeded Morpho borrower is found in its market, and
    after a crash the engine flags liquidatable exactly where Morpho's liquidate would work."""
    from keeper.config import load_config
    from keeper.engine import Engine
    from keeper.model import Status
    from keeper.store import Store

    ids = ", ".join(f'"{m}"' for m in morpho.market_ids)
    path = tmp_path / "keeper.toml"
    path.write_text(devnet.config_path.read_text() + f'\n[store]\npath = "{tmp_path / "k.sqlite"}"\n'
                    f'\n[[markets]]\nprotocol = "morpho_blue"\nname = "morpho"\n'
                    f'morpho = "{morpho.morpho}"\nmarket_ids = [{ids}]\n')
    cfg = load_config(path, env={})
    node, store = Rpc(devnet.rpc_url), Store(tmp_path / "k.sqlite")
    try:
        engine = Engine(cfg, node, store)
        liquidator = await fund_liquidator(w3, devnet, morpho)
        for mid in morpho.market_ids:
            old = (await MorphoBlueAdapter(node, Multicall(node), LogScanner(node), morpho.morpho,
                                           [mid], "x").load_markets((await head(w3))[0]))[mid].price
            await set_morpho_price(w3, morpho, mid, old * 72 // 100)
        block, _ = await head(w3)
        await engine.index(block)
        got = await engine.full_scan(block)
    finally:
        store.close()
        await node.close()
    by_protocol = {p.protocol for p in got}
    assert by_protocol == {"aave_v3", "morpho_blue"}
    mine = [p for p in got if p.protocol == "morpho_blue"]
    assert {(p.market, p.account) for p in mine} == {(q["market_id"], q["address"]) for q in morpho.positions}
    flagged = set()
    for p in mine:
        (pos,) = [q for q in morpho.positions if q["address"] == p.account]
        shares = 1
        ok, _ = await simulate(w3, liquidator, morpho.morpho,
                               liquidate_data(morpho, p.market, p.account, 0, shares), block)
        assert ok == (p.status == Status.LIQUIDATABLE), p
        flagged.add(ok)
    assert flagged == {True, False}
    assert all(p.base_decimals == 6 for p in mine)  # USDC-denominated values
