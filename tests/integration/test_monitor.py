"""The monitor on the real Aave V3 devnet: off-chain health equals the Pool's own view to
the wei, before and after price moves and after interest accrued; flags are exactly the
Pool's HF < 1; discovery resumes from its checkpoint; stale feeds make positions unreliable.
"""

from __future__ import annotations

from keeper.devnet.api import advance_time, apply_price_change, get_price, set_feed_updated_at, set_price
from keeper.devnet.artifacts import load_aave
from keeper.devnet.rpc import calldata, rpc, wait_receipt
from keeper.engine import Engine
from keeper.model import Status
from keeper.units import RAY, UINT256_MAX, WAD


async def scan(engine: Engine):
    block = await engine.rpc.block_number()
    await engine.index(block)
    return block, {p.account: p for p in await engine.full_scan(block)}


async def assert_equal_to_pool(engine: Engine, block: int, positions) -> None:
    w = engine.watches[0]
    accounts = sorted(positions)
    views = await w.adapter.pool_account_data(accounts, block)
    for a, v in zip(accounts, views, strict=True):
        p = positions[a]
        assert p.block == block
        assert (p.collateral_base, p.debt_base, p.liquidation_threshold_bps) == (
            v.total_collateral_base, v.total_debt_base, v.liquidation_threshold_bps), a
        assert (p.health_factor_wad if p.health_factor_wad is not None else UINT256_MAX) == \
            v.health_factor_wad, a


async def test_every_seeded_borrower_is_found_and_matches_the_pool(devnet, engine):
    block, positions = await scan(engine)
    assert set(positions) == set(devnet.info.borrowers)
    await assert_equal_to_pool(engine, block, positions)


async def test_matches_pool_after_price_moves(devnet, engine, w3):
    for symbol, step in (("WETH", "-23%"), ("WBTC", "-17%"), ("USDC", "+3%")):
        await set_price(w3, devnet.info, symbol,
                        apply_price_change(await get_price(w3, devnet.info, symbol), step))
    block, positions = await scan(engine)
    await assert_equal_to_pool(engine, block, positions)


async def test_matches_pool_after_interest_accrues(devnet, engine, w3):
    await advance_time(w3, 10 * 365 * 86_400)  # years: the devnet is lightly utilized
    block, positions = await scan(engine)
    market = engine.watches[0].market
    assert all(r.variable_borrow_index_ray >= RAY for r in market.reserves)
    # stored indexes only move when a reserve is touched; the normalized ones move with time
    from keeper.protocols.aave_v3.math import get_normalized_debt
    assert any(get_normalized_debt(r, market.timestamp) > RAY + RAY // 100 for r in market.reserves)
    await assert_equal_to_pool(engine, block, positions)


async def test_flags_exactly_the_positions_the_pool_reports_below_one(devnet, engine, w3):
    for symbol in ("WETH", "WBTC"):
        await set_price(w3, devnet.info, symbol,
                        apply_price_change(await get_price(w3, devnet.info, symbol), "-30%"))
    block, positions = await scan(engine)
    views = await engine.watches[0].adapter.pool_account_data(sorted(positions), block)
    pool_below_one = {a for a, v in zip(sorted(positions), views) if v.health_factor_wad < WAD}
    flagged = {a for a, p in positions.items() if p.status == Status.LIQUIDATABLE}
    assert pool_below_one, "the crash should make some positions liquidatable"
    assert flagged == pool_below_one


async def test_what_if_shock_equals_the_real_price_move(devnet, engine, w3):
    block = await engine.rpc.block_number()
    await engine.index(block)
    what_if = {p.account: p for p in await engine.full_scan(block, {"WETH": -2000})}
    old = await get_price(w3, devnet.info, "WETH")
    same_time = int((await w3.eth.get_block(block))["timestamp"])  # no interest in between
    await set_price(w3, devnet.info, "WETH", old * 8000 // 10_000, timestamp=same_time)
    _, real = await scan(engine)
    assert {a: p.health_factor_wad for a, p in what_if.items()} == \
        {a: p.health_factor_wad for a, p in real.items()}


async def test_drop_to_liquidation_is_where_the_pool_agrees(devnet, engine, w3):
    _, positions = await scan(engine)
    weth = [p for p in positions.values() if p.main_collateral == "WETH" and p.drop_to_liquidation_bps]
    target = min(weth, key=lambda p: p.drop_to_liquidation_bps)
    bps = target.drop_to_liquidation_bps
    old = await get_price(w3, devnet.info, "WETH")
    snapshot = await rpc(w3, "evm_snapshot", [])
    await set_price(w3, devnet.info, "WETH", old * (10_000 - bps) // 10_000)
    (view,) = await engine.watches[0].adapter.pool_account_data([target.account], await engine.rpc.block_number())
    assert view.health_factor_wad < WAD  # that drop liquidates
    await rpc(w3, "evm_revert", [snapshot])
    await set_price(w3, devnet.info, "WETH", old * (10_000 - (bps - 1)) // 10_000)
    (view,) = await engine.watches[0].adapter.pool_account_data([target.account], await engine.rpc.block_number())
    assert view.health_factor_wad >= WAD  # one bps less does not


async def test_stale_feed_makes_its_positions_unreliable(devnet, engine, w3):
    block = await w3.eth.get_block("latest")
    await set_feed_updated_at(w3, devnet.info, "WBTC", int(block["timestamp"]) - 2 * 86_400)
    _, positions = await scan(engine)
    wbtc = devnet.info.tokens["WBTC"]
    holders = {a for a, p in positions.items() if wbtc in p.assets}
    assert holders
    assert {a for a, p in positions.items() if not p.reliable} == holders


async def test_discovery_resumes_from_its_checkpoint(devnet, engine, w3):
    head = await engine.rpc.block_number()
    await engine.index(head)
    key = engine.watches[0].key
    assert engine.store.get_checkpoint(key) == head
    before = engine.rpc.counter.http_requests
    await engine.index(head)  # nothing new: no log request at all
    assert engine.rpc.counter.http_requests == before
    assert len(engine.store.accounts(key)) == len(devnet.info.borrowers)


async def test_block_tick_rereads_only_what_changed(devnet, engine, w3):
    block, positions = await scan(engine)
    old = await get_price(w3, devnet.info, "WBTC")
    change = await set_price(w3, devnet.info, "WBTC", old * 7 // 10)
    changed = {p.account: p for p in await engine.on_block(change.block)}
    wbtc = devnet.info.tokens["WBTC"]
    holders = {a for a, p in positions.items() if wbtc in p.assets}
    # one price moved: only the holders whose status band it leaves (keeper.bands) are
    # recomputed, and every status then equals a full recompute's
    assert set(changed) <= holders and changed
    kept = {a: p.status for a, p in engine.watches[0].positions.items()}
    _, fresh = await scan(engine)
    assert all(changed[a].health_factor_wad == fresh[a].health_factor_wad for a in changed)
    assert kept == {a: p.status for a, p in fresh.items()}
    assert {a for a in holders if fresh[a].status != positions[a].status} <= set(changed)


async def test_lens_reader_and_multicall_read_the_same_accounts(devnet, engine, w3):
    await advance_time(w3, 30 * 86_400)
    block, positions = await scan(engine)
    w = engine.watches[0]
    assert w.adapter.use_reader, "the lens path should work on anvil"
    accounts = sorted(positions) + list(devnet.info.lenders)  # lenders: collateral, no debt
    via_lens = await w.adapter.read_accounts(accounts, w.market)
    via_multicall = await w.adapter.read_accounts_multicall(accounts, w.market)
    assert via_lens == via_multicall
    assert any(len(a.reserves) >= 3 for a in via_lens)


async def test_an_idle_block_reads_the_aave_market_in_one_request(devnet, engine, w3):
    """The market's second read (e-mode categories, the feeds' rounds, stable supplies) goes
    into the first multicall as the last market named it: one request per block while the
    reserves name the same calls; a block whose reserves name others (WETH's source replaced
    on the AaveOracle) reads it again after. Either way the market equals the one a fresh
    adapter reads (both reads in turn)."""
    from keeper.protocols.aave_v3.reader import AaveV3Adapter

    adapter = engine.watches[0].adapter
    counter, info = adapter.rpc.counter, devnet.info

    def heartbeat(_symbol: str) -> int:
        return 10**9

    async def load(block: int) -> tuple[object, int]:
        before = counter.http_requests
        got = await adapter.load_market(block, heartbeat)
        return got, counter.http_requests - before

    async def fresh(block: int) -> object:
        return await AaveV3Adapter(adapter.rpc, adapter.mc, adapter.logs, info.pool_addresses_provider,
                                   "fresh").load_market(block, heartbeat)

    await load(await engine.rpc.block_number())
    await advance_time(w3, 3_600)
    block = await engine.rpc.block_number()
    got, requests = await load(block)
    assert requests == 1
    assert got == await fresh(block)
    oracle = load_aave("AaveOracle").abi  # WETH now priced by WBTC's feed: another latestRoundData
    tx = {"from": info.deployer, "to": info.oracle, "gas": hex(1_000_000),
          "data": calldata(oracle, "setAssetSources", [[info.tokens["WETH"]], [info.feeds["WBTC"]]])}
    assert int((await wait_receipt(w3, await rpc(w3, "eth_sendTransaction", [tx])))["status"], 16) == 1
    block = await engine.rpc.block_number()
    got, requests = await load(block)
    assert requests == 2
    weth = next(r for r in got.reserves if r.asset == info.tokens["WETH"])
    assert weth.price_source == info.feeds["WBTC"]
    assert got == await fresh(block)
    await advance_time(w3, 60)
    block = await engine.rpc.block_number()
    got, requests = await load(block)  # the new calls are the guess now
    assert requests == 1 and got == await fresh(block)


async def test_a_tick_over_two_price_moves_rereads_only_what_the_boxes_name(devnet, engine, w3):
    """WETH and WBTC both moved since the last tick (one block each, or one block: the tick
    compares the market it last read with the new one): Aave's bands are boxes, so only the
    accounts outside a moved key's band are recomputed, not every holder of either, and every
    status then equals a full recompute's."""
    info = devnet.info
    block, positions = await scan(engine)
    for symbol in ("WETH", "WBTC"):
        change = await set_price(w3, info, symbol, await get_price(w3, info, symbol) * 97 // 100)
    changed = {p.account: p for p in await engine.on_block(change.block)}
    moved = {info.tokens["WETH"], info.tokens["WBTC"]}
    holders = {a for a, p in positions.items() if moved & set(p.assets)}
    assert set(changed) < holders  # not all of them (a tick moving two prices recomputed every holder)
    kept = {a: p.status for a, p in engine.watches[0].positions.items()}
    _, fresh = await scan(engine)
    assert all(changed[a].health_factor_wad == fresh[a].health_factor_wad for a in changed)
    assert kept == {a: p.status for a, p in fresh.items()}
    assert {a for a in holders if fresh[a].status != positions[a].status} <= set(changed)
