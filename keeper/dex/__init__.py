"""Uniswap V3 for liquidations: pure pool math, routes, quotes, and the liquidator's calldata.

Modules::

    keeper.dex.v3_math        TickMath, SqrtPriceMath, SwapMath, FullMath (pure, v3-core 1.0.1)
    keeper.dex.v3_pool        PoolState, swap_exact_input across initialized ticks (pure)
    keeper.dex.route          Route / Hop (one or two hops, fee tiers), path encoding, quote_route
    keeper.dex.quoter         QuoterV2 quotes by eth_call, pool states from the chain (IO)
    keeper.dex.capital_free   flash fees, best (flash source, route), exact profit (pure)
    keeper.dex.liquidator     calldata of KeeperLiquidator's entries, its allow-list (pure)
"""
