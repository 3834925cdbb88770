"""Aave V3 deleverage, pure: repay debt from the borrower's own collateral through keeper's
KeeperProtection contract (``contracts/src/KeeperProtection.sol``). No IO, ints only.

The contract flash-borrows ``repay`` of the debt token, repays it for the borrower, pulls
``withdraw`` of the collateral's aTokens through the borrower's allowance, withdraws and sells
them on one Uniswap V3 pool, and repays the flash loan (+ the Aave premium); what the swap paid
above that goes to the borrower. So the account after it is the account after
``Pool.repay(debt, repay)`` and an aToken transfer of ``withdraw`` (both at the mining
timestamp), and the sizes must satisfy ``swap(withdraw) >= repay + premium(repay)``.

``plan_deleverage``: the smallest ``repay`` whose account reaches ``target_hf_wad``, with
``withdraw`` the smallest input whose exact V3 output (keeper.dex, the pools' states) covers
the flash loan; the pool fee tier that sells the least collateral wins. The health factor is
monotone in ``repay`` while the swap's cost is below the position's margin (selling
collateral worth ``repay * (1 + cost)`` raises ``C*LT/D`` iff ``HF > LT * (1 + cost)``), which
holds above HF 1 for any pool keeper would use; the binary search checks the end it returns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from eth_abi import encode

from keeper.chain.abi import selector
from keeper.dex.deleverage import (  # noqa: F401  (FLASH_*, DexInputs: this package's API too)
    DEADLINE_S, DEFAULT_FEES, FLASH_AAVE, FLASH_MORPHO, HORIZON_S, SET_KEEPER, DexInputs, deleverage_outcome,
    impact_bps, pairs_of, smallest_input,
)
from keeper.dex.route import Route, quote_route
from keeper.model import Address, Outcome, ProtectRule, TopUp, TopUpPlan
from keeper.protocols.aave_v3.deleverage36 import INVALID, steps, transfer_out30
from keeper.protocols.aave_v3.model import AaveAccount, AaveMarketState
from keeper.protocols.aave_v3.topup import _first_true

DELEVERAGE_AAVE = ("deleverageAave((address,address,address,address,uint256,uint256,uint24,uint256,uint256,"
                   "uint256,uint8,address))")



@dataclass(frozen=True, slots=True)
class DeleverageQuote:
    pool: Address  # the Aave Pool
    contract: Address  # KeeperProtection
    borrower: Address
    collateral: Address
    debt: Address
    repay: int  # debt token units, flash-borrowed and repaid for the borrower
    withdraw: int  # collateral units sold
    fee: int  # the Uniswap V3 pool's fee tier
    expected_out: int  # the swap's exact output
    flash_fee: int
    expected_hf_wad: int
    oracle_out: int  # the oracle's value of ``withdraw`` in debt units (price impact = 1 - out/oracle)
    min_hf_wad: int
    max_slippage_bps: int
    flash_source: int
    flash_lender: Address
    deadline: int = 0  # the swap's deadline (unix seconds)

    @property
    def price_impact_bps(self) -> int:
        return impact_bps(self.oracle_out, self.expected_out)


apply_transfer_out = transfer_out30  # 3.0.2's; deleverage36.steps(market) picks by version


def plan_deleverage(market: AaveMarketState, acct: AaveAccount, target_hf_wad: int, collateral: Address,
                    debt: Address, dex: DexInputs, *, pool: Address, contract: Address,
                    max_slippage_bps: int, min_hf_wad: int | None = None,
                    fees: Sequence[int] = DEFAULT_FEES, repay_exactly: int | None = None) -> DeleverageQuote | None:
    """The deleverage that brings ``acct`` to ``target_hf_wad`` selling the least collateral,
    or None (no debt of ``debt``, no pool, or the target cannot be reached). ``repay_exactly``:
    repay that much (a stop-loss: all of it), whatever the health factor after."""
    d_res, c_res = market.by_asset(debt), market.by_asset(collateral)
    st = steps(market)
    variable, held = st.owed(market, acct, debt), st.held(market, acct, collateral)
    if variable == 0 or held == 0:
        return None
    best: DeleverageQuote | None = None
    for fee in fees:
        route = Route.single(collateral, fee, debt)
        if route.hops[0].key() not in dex.pools:
            continue
        sizes: dict[int, tuple[int, int, int]] = {}  # repay -> (withdraw, flash fee, hf)

        def reaches(repay: int) -> bool:
            flash_fee = st.flash_fee(repay, dex.flash_premium_bps) if dex.flash_source == FLASH_AAVE else 0
            withdraw = smallest_input(route, dex.pools, repay + flash_fee, held)
            if withdraw is None:
                return False
            try:  # Aave repays min(repay, debt): a stop-loss may flash a little more than it owes
                after = st.transfer_out(market, st.repay(market, acct, debt, repay), collateral, withdraw)
            except INVALID:
                return False
            hf = st.hf(market, after)
            sizes[repay] = (withdraw, flash_fee, hf)
            return hf >= target_hf_wad

        if repay_exactly is not None:
            repay = repay_exactly if (reaches(repay_exactly) or repay_exactly in sizes) else None
        else:
            repay = _first_true(reaches, 0, variable)
        if repay is None:
            continue
        withdraw, flash_fee, hf = sizes[repay]
        out = quote_route(route, dex.pools, withdraw)
        oracle_out = (withdraw * c_res.price_base * 10**d_res.config.decimals
                      // (d_res.price_base * 10**c_res.config.decimals))
        q = DeleverageQuote(pool, contract, acct.account, collateral, debt, repay, withdraw, fee, out,
                            flash_fee, hf, oracle_out,
                            target_hf_wad if min_hf_wad is None else min_hf_wad, max_slippage_bps,
                            dex.flash_source, dex.flash_lender)
        if best is None or q.withdraw < best.withdraw:
            best = q
    return best


def as_plan(q: DeleverageQuote) -> TopUpPlan:
    """The generic TopUpPlan a deleverage decision carries (the amount is the collateral sold)."""
    return TopUpPlan("deleverage", q.collateral, q.withdraw, q.expected_hf_wad, False, 0)


def deleverage_calldata(q: DeleverageQuote, deadline: int) -> bytes:
    args = (q.pool, q.borrower, q.collateral, q.debt, q.repay, q.withdraw, q.fee, deadline, q.min_hf_wad,
            q.max_slippage_bps, q.flash_source, q.flash_lender)
    types = "(address,address,address,address,uint256,uint256,uint24,uint256,uint256,uint256,uint8,address)"
    return selector(DELEVERAGE_AAVE) + encode([types], [args])


def set_keeper_calldata(keeper: Address) -> bytes:
    return selector(SET_KEEPER) + encode(["address"], [keeper])


def pairs(rule: ProtectRule) -> list[tuple[str, str]]:
    """(COLLATERAL, DEBT) symbols of the rule's deleverage actions, in preference order."""
    return pairs_of(rule.actions)


def closing(market: AaveMarketState, rule: ProtectRule) -> bool:
    """The rule's stop-loss price is reached on this market's oracle (USD markets only)."""
    if rule.close_below is None or market.base_currency_unit != 10**8:
        return False
    r = next((r for r in market.reserves if r.symbol.upper() == rule.close_below[0]), None)
    return r is not None and r.price_base <= rule.close_below[1]


def close_top_up(key: str, market: AaveMarketState, acct: AaveAccount, hf: int, rule: ProtectRule,
                 dex: DexInputs | None) -> TopUp | None:
    """Stop-loss: repay all of the debt token of the first deleverage action selling the
    stop-loss asset, from that collateral; what is not sold stays the borrower's."""
    if rule.contract is None or dex is None or rule.close_below is None:
        return None
    later = replace(market, timestamp=market.timestamp + HORIZON_S)
    listed = {r.symbol.upper(): r for r in market.reserves}
    for coll, debt in pairs(rule):
        if coll != rule.close_below[0] or debt not in listed or coll not in listed:
            continue
        d_res = listed[debt]
        owed = steps(later).owed(later, acct, d_res.asset)
        if owed == 0:
            continue
        q = plan_deleverage(later, acct, 2**256 - 1, listed[coll].asset, d_res.asset, dex, pool=market.pool,
                            contract=rule.contract, max_slippage_bps=rule.max_slippage_bps, repay_exactly=owed)
        if q is None:
            continue
        q = replace(q, deadline=market.timestamp + DEADLINE_S, min_hf_wad=min(q.expected_hf_wad, rule.target_hf_wad))
        why = (f"{coll} at or below the stop-loss {rule.close_below[1]} (USD e8): close, sell {q.withdraw} "
               f"{coll} (price impact {q.price_impact_bps} bps) to repay all {q.repay} {debt}")
        return TopUp(key, "aave_v3", acct.account, market.block, hf, as_plan(q), why, q)
    return None


def deleverage_top_up(key: str, market: AaveMarketState, acct: AaveAccount, hf: int, rule: ProtectRule,
                      dex: DexInputs | None) -> TopUp | None:
    """The first of the rule's deleverage actions that reaches the target, as a TopUp whose
    plan says ``deleverage`` and whose quote is the DeleverageQuote; None when none can (or
    the rule names no contract or the pools were not read). Sized with the market's own
    version's rounding (deleverage36.steps)."""
    if rule.contract is None or dex is None:
        return None
    later = replace(market, timestamp=market.timestamp + HORIZON_S)
    listed = {r.symbol.upper(): r.asset for r in market.reserves}
    for coll, debt in pairs(rule):
        if coll not in listed or debt not in listed:
            continue
        q = plan_deleverage(later, acct, rule.target_hf_wad, listed[coll], listed[debt], dex,
                            pool=market.pool, contract=rule.contract, max_slippage_bps=rule.max_slippage_bps)
        if q is not None:
            q = replace(q, deadline=market.timestamp + DEADLINE_S)
            why = (f"health factor {hf} below trigger {rule.trigger_hf_wad}; deleverage: sell {q.withdraw} "
                   f"{coll} (price impact {q.price_impact_bps} bps) to repay {q.repay} {debt}, "
                   f"health factor to {q.expected_hf_wad}")
            return TopUp(key, "aave_v3", acct.account, market.block, hf, as_plan(q), why, q)
    return None


def realized(q: DeleverageQuote, receipts) -> Outcome:
    """The contract's Deleveraged event for the borrower: sold, repaid, received, HF after."""
    return deleverage_outcome(receipts, q.contract, q.borrower, q.collateral, q.debt, q.oracle_out)
