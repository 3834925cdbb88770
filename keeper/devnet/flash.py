"""Devnet helpers for capital-free liquidations (tests, bench, demo): one crash that the
DEX follows, every pool's state at a block, every flash source of a token.

::

    await crash(w3, info, minfo, uinfo, "-30%", ("WETH", "WBTC"))   # feeds, Morpho oracles, pools
    pools = await read_pools(rpc, uinfo, block)                      # Hop.key() -> PoolState
    sources = await devnet_flash_sources(rpc, info, minfo, pools, token, block)
    routes = devnet_routes(info, collateral, debt)                   # 1 hop x 2 fees + 2 hops
    t, liq = await next_aave(rpc, engine, info, minfo, uinfo)         # or next_morpho / next_comet
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from web3 import AsyncWeb3

from keeper.chain.logs import LogScanner
from keeper.chain.multicall import Multicall
from keeper.chain.rpc import Rpc
from keeper.devnet.comet import CometInfo
from keeper.devnet.api import apply_price_change, get_price, set_price
from keeper.devnet.morpho import MorphoInfo, follow_feed
from keeper.devnet.state import DevnetInfo
from keeper.devnet.uniswap import UniswapInfo, align_pools
from keeper.dex.capital_free import FlashSource, PoolKey, candidate_routes
from keeper.dex.quoter import read_pool
from keeper.dex.route import Hop, Route
from keeper.dex.sources import flash_sources
from keeper.dex import flash_plans
from keeper.dex.flash_plans import FlashLiquidation
from keeper.dex.v3_pool import PoolState
from keeper.engine import Engine
from keeper.protocols.compound_v3 import math as cm
from keeper.protocols.morpho_blue import math as mm
from keeper.protocols.aave_v3.liquidation import best_liquidation
from keeper.protocols.compound_v3.reader import CometAdapter
from keeper.protocols.morpho_blue.reader import MorphoBlueAdapter


async def crash(w3: AsyncWeb3, info: DevnetInfo, minfo: MorphoInfo | None, uinfo: UniswapInfo,
                change: str = "-30%", symbols: Sequence[str] = ("WETH", "WBTC")) -> None:
    """Move each feed by ``change``, the Morpho oracles with it, then arbitrage the pools."""
    for s in symbols:
        old = await get_price(w3, info, s)
        new = apply_price_change(old, change)
        await set_price(w3, info, s, new)
        if minfo is not None:
            await follow_feed(w3, minfo, s, old, new)
    await align_pools(w3, info, uinfo, {s.upper() for s in symbols})


async def read_pools(rpc: Rpc, uinfo: UniswapInfo, block: int, words: int = 2) -> dict[PoolKey, PoolState]:
    out = {}
    for p in uinfo.pools:
        out[Hop(p.token0, p.fee, p.token1).key()] = await read_pool(rpc, p.address, block, words)
    return out


async def devnet_flash_sources(rpc: Rpc, info: DevnetInfo, minfo: MorphoInfo | None,
                               pools: Mapping[PoolKey, PoolState], token: str,
                               block: int) -> list[FlashSource]:
    symbol = info.symbol_of(token)
    return await flash_sources(rpc, token, block, morpho=minfo.morpho if minfo else None,
                               aave=(info.pool, info.a_tokens[symbol]), uniswap=list(pools.values()))


def devnet_routes(info: DevnetInfo, token_in: str, token_out: str) -> list[Route]:
    return candidate_routes(token_in, token_out, list(info.tokens.values()))


# ---------------------------------------------------------------- the next paying liquidation
# Each finder reads at the latest block, plans for the next block's timestamp ``t`` (the
# caller mines there with evm_setNextBlockTimestamp) and returns (t, plan) for the first
# liquidatable account whose capital-free liquidation pays, or (t, None). The simulation
# runs at the pending block, whose time anvil takes from the clock, not from ``t``: a few
# seconds of interest can move the profit by some wei, so minProfit keeps SLACK_BPS of slack
# (the profit realized at ``t`` is still the plan's, to the wei).

STEP_S = 12
DEADLINE_S = 600
SLACK_BPS = 1  # minProfit = 99.99% of the plan: eth_call simulates at the pending block's time


async def next_timestamp(rpc: Rpc) -> int:
    return int((await rpc.block("latest"))["timestamp"], 16) + STEP_S


async def next_aave(rpc: Rpc, engine: Engine, info: DevnetInfo, minfo: MorphoInfo | None,
                    uinfo: UniswapInfo, *, user: str | None = None, force: int | None = None,
                    min_profit: int | None = None, slack_bps: int = SLACK_BPS) -> tuple[int, FlashLiquidation | None]:
    """Aave V3 via keeper's Engine (its reader and exact math); ``force``: one flash source."""
    block = await rpc.block_number()
    await engine.index(block)
    await engine.full_scan(block)
    w = engine.watches[0]
    t = await next_timestamp(rpc)
    market = replace(w.market, timestamp=t)
    pools = await read_pools(rpc, uinfo, block)
    for account, acct in sorted(w.accounts.items()):
        if user is not None and account != user:
            continue
        q = best_liquidation(market, acct, 0, 0)
        if q is None:
            continue
        q = flash_plans.aave_exact_cover(market, acct, q)
        sources = await devnet_flash_sources(rpc, info, minfo, pools, q.debt_asset, block)
        if force is not None:
            sources = [s for s in sources if s.source == force]
        liq = flash_plans.aave(info.pool, account, q.collateral_asset, q.debt_asset, q.debt_to_repay,
                               q.collateral_to_receive, devnet_routes(info, q.collateral_asset, q.debt_asset),
                               pools, sources, t + DEADLINE_S, min_profit, slack_bps)
        if liq is not None:
            return t, liq
    return t, None


async def next_morpho(rpc: Rpc, info: DevnetInfo, minfo: MorphoInfo, uinfo: UniswapInfo,
                      slack_bps: int = SLACK_BPS) -> tuple[int, FlashLiquidation | None]:
    """Morpho Blue: every share when the collateral covers it, else the largest seizure."""
    adapter = MorphoBlueAdapter(rpc, Multicall(rpc), LogScanner(rpc), minfo.morpho, list(minfo.market_ids), "morpho")
    block = await rpc.block_number()
    t = await next_timestamp(rpc)
    markets = await adapter.load_markets(block, accrued=False)
    pools = await read_pools(rpc, uinfo, block)
    for mid, m in markets.items():
        m = mm.accrue(m, t)
        borrowers = [p["address"] for p in minfo.positions if p["market_id"] == mid]
        for pos in await adapter.read_positions(borrowers, mid, block):
            if pos.borrow_shares == 0 or mm.is_healthy(m, pos):
                continue
            try:
                q, by_shares = mm.liquidate_quote(m, pos, repaid_shares=pos.borrow_shares), True
            except mm.LiquidationRevert:
                q, by_shares = mm.max_liquidation(m, pos), False
            p = m.params
            liq = flash_plans.morpho(minfo.morpho, p.as_tuple(), pos.account, q.seized_assets, q.repaid_shares,
                                     by_shares, q.repaid_assets, devnet_routes(info, p.collateral_token, p.loan_token),
                                     pools, t + DEADLINE_S, slack_bps=slack_bps)
            if liq is not None:
                return t, liq
    return t, None


def base_for(m: cm.CometMarket, asset: str, collateral: int) -> int:
    """The largest base amount whose quoteCollateral does not exceed ``collateral``."""
    lo, hi = 0, 1
    while cm.quote_collateral(m, asset, hi) <= collateral:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if cm.quote_collateral(m, asset, mid) <= collateral else (lo, mid)
    return lo


async def next_comet(rpc: Rpc, info: DevnetInfo, minfo: MorphoInfo | None, cinfo: CometInfo,
                     uinfo: UniswapInfo, slack_bps: int = SLACK_BPS) -> tuple[int, FlashLiquidation | None]:
    """Comet: absorb one account, buy its largest collateral (by value) at the store front."""
    adapter = CometAdapter(rpc, Multicall(rpc), LogScanner(rpc), cinfo.comet, "comet")
    block = await rpc.block_number()
    t = await next_timestamp(rpc)
    market = cm.accrue(await adapter.load_market(block, accrued=False), t)
    accounts = await adapter.read_accounts(list(cinfo.borrowers), market)
    pools = await read_pools(rpc, uinfo, block)
    base = market.base_token
    sources = await devnet_flash_sources(rpc, info, minfo, pools, base, block)
    for acct in accounts:
        if acct.principal >= 0 or not cm.is_liquidatable(market, acct):
            continue
        o = cm.absorb_outcome(market, acct)
        asset, amount, _ = max(o.seized, key=lambda s: s[2])
        base_amount = base_for(o.market_after, asset, amount)
        out = cm.quote_collateral(o.market_after, asset, base_amount)
        liq = flash_plans.comet(cinfo.comet, [acct.account], asset, base, base_amount, out,
                                devnet_routes(info, asset, base), pools, sources, t + DEADLINE_S,
                                slack_bps=slack_bps)
        if liq is not None:
            return t, liq
    return t, None
