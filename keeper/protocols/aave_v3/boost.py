"""Aave V3 boost (re-leverage), pure: when a protected account's health factor is above the rule's
``boost_above_hf``, borrow more of the debt token, buy collateral with it and supply it, so that
the health factor comes down to ``target_hf``. No IO, ints only.

Through ``KeeperProtection.boostAave`` (contracts/src): the Pool's ``flashLoan`` in mode 2 lends
``borrow`` and opens it as the borrower's variable debt after the callback (credit delegation:
the borrower's ``approveDelegation`` to the contract; no premium in that mode); in the callback
the contract buys collateral on one Uniswap V3 pool and supplies it for the borrower. So the
account after it is the account after ``Pool.supply(collateral, bought)`` and a variable borrow
of ``borrow`` (3.0.2: ``rayDiv`` scaled, 3.6: ``rayDivCeil``), and the contract checks on chain
that the Pool's health factor lands in [``min_hf_wad``, ``max_hf_wad``] and that the swap paid
within ``max_slippage_bps`` of the Aave oracle.

``plan_boost``: the largest ``borrow`` whose account stays at or above the target (the health
factor falls as ``borrow`` grows), so it lands just above the target.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from eth_abi import encode
from eth_utils import keccak

from keeper.chain.abi import selector
from keeper.dex.deleverage import DEADLINE_S, DEFAULT_FEES, HORIZON_S, DexInputs, impact_bps, pairs_of
from keeper.dex.route import Route, RouteError, quote_route
from keeper.dex.v3_math import V3MathError
from keeper.model import Address, Outcome, ProtectRule, TopUp, TopUpPlan
from keeper.protocols.aave_v3.deleverage36 import INVALID, steps
from keeper.protocols.aave_v3.liquidation import user_reserve
from keeper.protocols.aave_v3.math import get_normalized_debt, ray_div
from keeper.protocols.aave_v3.math36 import is_v36, normalized_debt, ray_div_ceil
from keeper.protocols.aave_v3.model import AaveAccount, AaveMarketState
from keeper.protocols.aave_v3.topup import _with_row, apply_supply
from keeper.protocols.aave_v3.topup36 import apply_supply36

BOOST_AAVE = "boostAave((address,address,address,address,uint256,uint24,uint256,uint256,uint256,uint256))"
BOOSTED = keccak(text="Boosted(address,address,address,uint256,uint256,uint256)")
NEAR_BPS = 50  # the contract accepts a health factor within 0.5% of the target, either side


@dataclass(frozen=True, slots=True)
class BoostQuote:
    pool: Address
    contract: Address
    borrower: Address
    collateral: Address
    debt: Address
    borrow: int  # debt token units, opened as the borrower's variable debt
    bought: int  # collateral units the swap pays (exact V3 output), supplied for the borrower
    fee: int
    expected_hf_wad: int
    oracle_out: int  # the oracle's value of ``borrow`` in collateral units
    min_hf_wad: int
    max_hf_wad: int
    max_slippage_bps: int
    deadline: int = 0


def apply_borrow(market: AaveMarketState, acct: AaveAccount, asset: Address, amount: int) -> AaveAccount:
    """The account after a variable borrow of ``amount`` (VariableDebtToken.mint: 3.0.2
    ``rayDiv``, 3.6 ``getVTokenMintScaledAmount`` = ``rayDivCeil``); sets the borrowing bit."""
    r = market.by_asset(asset)
    if is_v36(market):
        scaled = ray_div_ceil(amount, normalized_debt(r, market.timestamp))
    else:
        scaled = ray_div(amount, get_normalized_debt(r, market.timestamp))
    row = user_reserve(acct, r.id)
    return _with_row(acct, replace(row, scaled_variable_debt=row.scaled_variable_debt + scaled),
                     acct.user_config | (1 << (2 * r.id)))


def plan_boost(market: AaveMarketState, acct: AaveAccount, target_hf_wad: int, collateral: Address,
               debt: Address, dex: DexInputs, *, pool: Address, contract: Address,
               max_slippage_bps: int) -> BoostQuote | None:
    """The boost that brings ``acct`` down to (just above) ``target_hf_wad``, buying the most
    collateral; None when no pool was read or even the smallest borrow would fall below it."""
    st = steps(market)
    supply = apply_supply36 if is_v36(market) else apply_supply
    c_res, d_res = market.by_asset(collateral), market.by_asset(debt)
    if st.hf(market, acct) <= target_hf_wad:
        return None
    best: BoostQuote | None = None
    for fee in DEFAULT_FEES:
        route = Route.single(debt, fee, collateral)
        if route.hops[0].key() not in dex.pools:
            continue
        seen: dict[int, tuple[int, int]] = {}  # borrow -> (bought, hf)

        def stays(borrow: int) -> bool:
            try:
                bought = quote_route(route, dex.pools, borrow)
                after = apply_borrow(market, supply(market, acct, collateral, bought), debt, borrow)
            except (*INVALID, V3MathError, RouteError):
                return False
            hf = st.hf(market, after)
            seen[borrow] = (bought, hf)
            return hf >= target_hf_wad

        hi = 10 ** d_res.config.decimals  # one token; grow until the health factor falls below the target
        while stays(hi):
            hi *= 2
            if hi > 2**200:
                return None
        lo = hi // 2
        if lo == 0:
            continue
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if stays(mid) else (lo, mid)
        bought, hf = seen[lo]
        oracle_out = (lo * d_res.price_base * 10**c_res.config.decimals
                      // (c_res.price_base * 10**d_res.config.decimals))
        q = BoostQuote(pool, contract, acct.account, collateral, debt, lo, bought, fee, hf, oracle_out,
                       target_hf_wad * (10_000 - NEAR_BPS) // 10_000, target_hf_wad * (10_000 + NEAR_BPS) // 10_000,
                       max_slippage_bps)
        if best is None or q.bought > best.bought:
            best = q
    return best


def boost_top_up(key: str, market: AaveMarketState, acct: AaveAccount, hf: int, rule: ProtectRule,
                 boost_above_wad: int | None, dex: DexInputs | None) -> TopUp | None:
    """Above ``boost_above_wad``: the boost along the rule's first deleverage pair that the
    market lists (it buys that collateral with that debt), as a TopUp whose plan says ``boost``."""
    if boost_above_wad is None or hf <= boost_above_wad or rule.contract is None or dex is None:
        return None
    listed = {r.symbol.upper(): r.asset for r in market.reserves}
    later = replace(market, timestamp=market.timestamp + HORIZON_S)
    for coll, debt in pairs_of(rule.actions):
        if coll not in listed or debt not in listed:
            continue
        q = plan_boost(later, acct, rule.target_hf_wad, listed[coll], listed[debt], dex, pool=market.pool,
                       contract=rule.contract, max_slippage_bps=rule.max_slippage_bps)
        if q is None:
            continue
        q = replace(q, deadline=market.timestamp + DEADLINE_S)
        why = (f"health factor {hf} above boost_above_hf {boost_above_wad}; boost: borrow {q.borrow} {debt} to "
               f"buy {q.bought} {coll} (price impact {impact_bps(q.oracle_out, q.bought)} bps), health factor "
               f"to {q.expected_hf_wad}")
        return TopUp(key, "aave_v3", acct.account, market.block, hf,
                     TopUpPlan("boost", q.collateral, q.bought, q.expected_hf_wad, False, 0), why, q)
    return None


def boost_calldata(q: BoostQuote) -> bytes:
    args = (q.pool, q.borrower, q.collateral, q.debt, q.borrow, q.fee, q.deadline, q.min_hf_wad, q.max_hf_wad,
            q.max_slippage_bps)
    return selector(BOOST_AAVE) + encode(["(address,address,address,address,uint256,uint24,uint256,uint256,"
                                          "uint256,uint256)"], [args])


def realized(q: BoostQuote, receipts) -> Outcome:
    """The contract's Boosted event for the borrower: borrowed, supplied, HF after."""
    for r in receipts:
        for lg in r.logs:
            t = lg.get("topics", [])
            if (t and bytes.fromhex(t[0][2:]) == BOOSTED and str(lg.get("address", "")).lower() == q.contract.lower()
                    and t[1][-40:].lower() == q.borrower[2:].lower()):
                data = bytes.fromhex(lg["data"][2:])
                borrowed, supplied, hf = (int.from_bytes(data[32 * i:32 * i + 32], "big") for i in range(3))
                return Outcome(True, hf, detail=f"boosted: borrowed {borrowed} of {q.debt}, supplied {supplied} of "
                                                f"{q.collateral} ({impact_bps(q.oracle_out, supplied)} bps below the "
                                                f"oracle), health factor after {hf}")
    return Outcome(False, detail="mined without a Boosted event")
