"""Aave V3 interest crossings on the devnet (keeper.protocols.aave_v3.interest): blocks in
which only time moves (``evm_increaseTime``) recompute only the positions whose crossing has
come (and the liquidatable ones), and after each the statuses equal those of a fresh engine's
full scan, which re-reads every account."""

from __future__ import annotations

from keeper.config import load_config
from keeper.chain.rpc import Rpc
from keeper.devnet.api import advance_time, apply_price_change, get_price, set_price
from keeper.engine import Engine
from keeper.model import Status
from keeper.store import Store

STEPS = (12, 3_600, 86_400, 365 * 86_400, 3 * 365 * 86_400, 10 * 365 * 86_400)


async def test_aave_idle_blocks_recompute_only_crossings_and_equal_a_full_scan(devnet, w3, tmp_path):
    info = devnet.info
    for symbol in ("WETH", "WBTC"):  # spread the borrowers over the bands, a few near each edge
        await set_price(w3, info, symbol, apply_price_change(await get_price(w3, info, symbol), "-12%"))
    cfg = load_config(devnet.config_path)  # feeds never stale here: only time moves the market
    cfg = cfg.model_copy(update={"monitor": cfg.monitor.model_copy(update={"price_heartbeat_s": 10**10,
                                                                         "heartbeats": {}})})
    node = Rpc(devnet.rpc_url)
    stores = [Store(tmp_path / "ahead.sqlite"), Store(tmp_path / "full.sqlite")]
    ahead, full = Engine(cfg, node, stores[0]), Engine(cfg, node, stores[1], ahead=False)
    changed_by_time, recomputed = 0, []
    try:
        head = await node.block_number()
        await ahead.index(head)
        await ahead.full_scan(head)
        w = ahead.watches[0]
        assert w.ahead is not None and w.ahead.crossings is not None and len(w.ahead.crossings) > 0
        before = {p.account: p.status for p in ahead.positions()}
        for dt in STEPS:
            await advance_time(w3, dt)
            block = await node.block_number()
            old = w.market
            mine = await ahead.on_block(block)
            assert w.ahead.accrued(old, w.market) == w.market.timestamp  # time alone moved it
            recomputed.append(len(mine))
            await full.index(block)
            truth = {p.account: p.status for p in await full.full_scan(block)}
            now = {p.account: p.status for p in ahead.positions()}
            assert now == truth, f"after +{dt} s"
            changed_by_time += sum(1 for a, s in now.items() if before.get(a) != s)
            before = now
    finally:
        for s in stores:
            s.close()
        await node.close()
    liquidatable = sum(1 for s in before.values() if s == Status.LIQUIDATABLE)
    assert recomputed[0] <= liquidatable + 1 < len(before)  # an idle 12 s: (almost) nothing recomputed
    assert changed_by_time > 0, "no status changed by interest: the test did not exercise a crossing"
