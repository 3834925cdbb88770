"""The whole loop on an Aave V3 3.6 devnet, asserting on chain state (as test_keeper_actions
does on 3.0.2): after a crash ``keeper`` with the liquidator liquidates every profitable
liquidatable borrower, each decided liquidation once (a borrower's follow-ups, planned on the
state after its first, are their own actions), the three 3.3-rule borrowers included, with no reverted
or lost liquidation, and skips the dust; a protected account on a 2%-per-block decline never
drops below HF 1.
"""

from __future__ import annotations

from collections import Counter

from eth_utils import to_checksum_address

from keeper.config import load_config
from keeper.devnet.api import apply_price_change, get_price, set_price
from keeper.units import WAD
from keeper.wiring import build_keeper
from tests.integration.devnet36 import _snapshot36, anvil36, devnet36, engine36, w3_36  # noqa: F401
from tests.integration.test_keeper_actions import (
    DUST,
    LIQUIDATOR_KEY,
    config,
    liquidations,
    mint,
    open_dust_position,
    pool_hf,
)
from tests.integration.test_monitor import scan

FUNDS = (("USDC", 10**7 * 10**6), ("DAI", 10**7 * 10**18), ("WETH", 10**4 * 10**18), ("WBTC", 500 * 10**8))


async def test_crash_liquidates_every_profitable_position_once_with_no_revert(devnet36, w3_36, tmp_path):
    info = devnet36.info
    for symbol, amount in FUNDS:
        await mint(w3_36, info, symbol, info.liquidator, amount)
    await open_dust_position(w3_36, info)
    await set_price(w3_36, info, "WETH", apply_price_change(await get_price(w3_36, info, "WETH"), "-30%"))
    start = int((await w3_36.eth.get_block("latest"))["number"])
    borrowers = list(info.borrowers) + [to_checksum_address(DUST)]
    below_one = {b for b in borrowers if await pool_hf(w3_36, info.pool, b) < WAD}
    assert set(info.rule_borrowers.values()) <= below_one and to_checksum_address(DUST) in below_one

    cfg = load_config(config(devnet36, tmp_path, "\n[liquidator]\nenabled = true\nmin_profit_base = 0\n"),
                      env={"KEEPER_PRIVATE_KEY": LIQUIDATOR_KEY})
    k = await build_keeper(cfg)
    try:
        head = await k.rpc.block_number()
        await k.engine.index(head)
        await k.engine.full_scan(head)
        await k.executor.drain()
        rows = k.store.query("SELECT result, detail, account, action_key FROM actions WHERE kind = 'liquidate'")
    finally:
        await k.close()

    assert rows and {r[0] for r in rows} == {"done"}, rows  # nothing lost, reverted or skipped
    ours = [e for e in await liquidations(w3_36, info.pool, start)
            if e["liquidator"] == to_checksum_address(info.liquidator)]
    users = [e["user"] for e in ours]
    # each action mined once: per position its first liquidation and the follow-ups planned
    # on the state after it (keeper.followups, keys "#2"...), nothing twice
    assert Counter(users) == Counter(to_checksum_address(r[2]) for r in rows), "an action was sent twice"
    assert sorted(r[3] for r in rows if "#" not in r[3]) == sorted({r[3].split("#")[0] for r in rows})
    assert set(users) == below_one - {to_checksum_address(DUST)}


async def test_protected_account_never_drops_below_one_on_a_2pct_per_block_decline(devnet36, engine36,
                                                                                    w3_36, tmp_path):
    info = devnet36.info
    _, positions = await scan(engine36)
    weth_main = [p for p in positions.values() if p.main_collateral == "WETH" and p.health_factor_wad
                 and p.account not in info.rule_borrowers.values()]
    target = min(weth_main, key=lambda p: p.health_factor_wad)
    for symbol, amount in FUNDS[:3]:
        await mint(w3_36, info, symbol, info.liquidator, amount)
    extra = (f'\n[[protect]]\naccount = "{target.account}"\ntrigger_hf = "1.15"\ntarget_hf = "1.40"\n'
             'actions = ["repay:USDC", "repay:DAI", "supply:WETH"]\n')
    cfg = load_config(config(devnet36, tmp_path, extra), env={"KEEPER_PRIVATE_KEY": LIQUIDATOR_KEY})
    k = await build_keeper(cfg)
    lowest = 2**256
    try:
        for _ in range(30):  # -2% a block: a 45% fall in all
            await set_price(w3_36, info, "WETH", apply_price_change(await get_price(w3_36, info, "WETH"), "-2%"))
            head = await k.rpc.block_number()
            await k.engine.on_block(head)
            await k.executor.drain()
            lowest = min(lowest, await pool_hf(w3_36, info.pool, target.account))
        done = k.store.query("SELECT realized FROM actions WHERE kind = 'top_up' AND result = 'done'")
    finally:
        await k.close()
    assert lowest >= WAD, f"the protected account fell to {lowest}"
    assert done, "no top-up was made"
    # sized with 3.6's rounding: each top-up brought the Pool's own HF to the target (1.40)
    assert all(int(hf) >= 140 * WAD // 100 for (hf,) in done)
