"""Pure liquidation decisions for Morpho Blue and Compound V3 (keeper.decide does Aave V3).

* Morpho Blue: the largest ``liquidate`` that does not revert (bad debt included), capped
  by the wallet's loan token; profit = seized collateral at the oracle price - repaid
  assets - gas, in loan-token units.
* Compound V3: ``absorb`` every liquidatable account (the protocol takes the collateral
  and the debt), then ``buyCollateral`` of what was absorbed, at the store-front discount,
  with the wallet's base token; profit = collateral value - base paid - gas, in the price
  feeds' 1e8 USD. Absorbing pays nothing on-chain by itself, so it is decided only when
  the purchase after it pays for both transactions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from keeper.protocols.compound_v3 import math as cm
from keeper.protocols.morpho_blue import math as mm
from keeper.model import Address, Position, Status
from keeper.units import mul_div_down, mul_div_up


@dataclass(frozen=True, slots=True)
class MorphoLiquidate:
    market: str
    account: Address
    block: int
    health_factor_wad: int
    morpho: Address
    params: mm.MarketParams
    seized_assets: int
    repaid_assets: int
    profit_loan: int  # loan-token units, after gas
    reason: str
    budget_wei: int = 0  # most gas the action may spend (its expected profit, in wei)


@dataclass(frozen=True, slots=True)
class CometAbsorb:
    market: str
    accounts: tuple[Address, ...]
    block: int
    comet: Address
    buys: tuple[tuple[Address, int, int], ...]  # (asset, base amount, min collateral out)
    profit_base: int  # 1e8 USD, after gas
    reason: str
    budget_wei: int = 0


def decide_morpho(key: str, m: mm.MorphoMarket, positions: Iterable[Position],
                  accounts: Mapping[Address, mm.MorphoPosition], morpho: Address,
                  wallet_loan: int, gas_cost_loan: int, min_profit_loan: int) -> list[MorphoLiquidate]:
    out = []
    for p in positions:
        if p.status != Status.LIQUIDATABLE or not p.reliable or m.unreliable:
            continue
        pos = accounts.get(p.account)
        if pos is None:
            continue
        try:
            q = mm.max_liquidation(m, pos)
            if q.repaid_assets > wallet_loan:  # own capital: repay only what the wallet holds
                seized = q.seized_assets * wallet_loan // max(q.repaid_assets, 1)
                if seized == 0:
                    continue
                q = mm.liquidate_quote(m, pos, seized_assets=seized)
        except mm.LiquidationRevert:
            continue
        value = mul_div_down(q.seized_assets, m.price, mm.ORACLE_PRICE_SCALE)
        profit = value - q.repaid_assets - gas_cost_loan
        if profit < min_profit_loan or q.repaid_assets > wallet_loan:
            continue
        out.append(MorphoLiquidate(key, p.account, m.block, p.health_factor_wad or 0, morpho,
                                   m.params, q.seized_assets, q.repaid_assets, profit,
                                   f"health factor {p.health_factor_wad} < 1; profit {profit} "
                                   f"loan units after gas {gas_cost_loan}"))
    return out


def _base_for(m: cm.CometMarket, asset: Address, collateral: int) -> int:
    """The largest base amount whose quoteCollateral does not exceed ``collateral`` (what the
    protocol holds: buying more reverts with InsufficientReserves), by bisection."""
    lo, hi = 0, 1
    while cm.quote_collateral(m, asset, hi) < collateral:
        hi *= 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if cm.quote_collateral(m, asset, mid) >= collateral:
            hi = mid
        else:
            lo = mid
    return hi if cm.quote_collateral(m, asset, hi) <= collateral else hi - 1


def decide_comet(key: str, m: cm.CometMarket, positions: Iterable[Position],
                 accounts: Mapping[Address, cm.CometAccount], wallet_base: int,
                 gas_cost_base: int, min_profit_base: int) -> list[CometAbsorb]:
    """At most one decision per tick: absorb all liquidatable accounts, then buy."""
    todo = [p.account for p in positions
            if p.status == Status.LIQUIDATABLE and p.reliable and p.account in accounts]
    if not todo:
        return []
    seized: dict[Address, int] = {}
    after = m
    absorbed = []
    for a in todo:
        try:
            o = cm.absorb_outcome(after, accounts[a])
        except cm.CometRevert:
            continue
        absorbed.append(a)
        after = o.market_after
        for asset, amount, _value in o.seized:
            seized[asset] = seized.get(asset, 0) + amount
    if not absorbed:
        return []
    buys, profit, budget = [], -gas_cost_base, wallet_base
    base_price = after.price(after.base_token)
    for asset, amount in sorted(seized.items()):
        if amount == 0 or budget == 0:
            continue
        base = min(_base_for(after, asset, amount), budget)
        out_amount = min(cm.quote_collateral(after, asset, base), amount)
        info = after.asset_info(asset)
        value = mul_div_down(out_amount, after.price(asset), info.scale)
        cost = mul_div_up(base, base_price, after.base_scale)
        if value - cost <= 0:
            continue
        buys.append((asset, base, out_amount))
        profit += value - cost
        budget -= base
    if profit < min_profit_base:
        return []
    return [CometAbsorb(key, tuple(absorbed), m.block, m.comet, tuple(buys), profit,
                        f"{len(absorbed)} liquidatable; buy {len(buys)} collateral(s) at the "
                        f"store-front discount, profit {profit} (1e8 USD) after gas {gas_cost_base}")]


# ------------------------------------------------------------------ top-ups

@dataclass(frozen=True, slots=True)
class OtherTopUp:
    """A top-up on Morpho Blue (repay / supplyCollateral) or Compound V3 (supplyTo)."""

    market: str
    account: Address
    block: int
    health_factor_wad: int
    protocol: str  # "morpho_blue" | "compound_v3"
    target: Address  # the Morpho or Comet contract
    plan: object  # keeper.protocols.aave_v3.topup.TopUpPlan
    params: mm.MarketParams | None  # Morpho only
    repay_shares: int  # Morpho full repay goes by shares (0 otherwise)
    reason: str


def decide_top_ups(key: str, market, positions: Iterable[Position], accounts: Mapping[Address, object],
                   rules: Mapping[str, object], symbols: Mapping[str, str],
                   wallet: Mapping[Address, int], target: Address) -> list[OtherTopUp]:
    """Protected accounts below their trigger on a Morpho or Comet market. ``symbols``: token
    address -> symbol of the market's tokens; ``rules``: lower-case account -> ProtectRule."""
    from keeper.protocols.compound_v3.topup import plan_comet_top_up
    from keeper.protocols.morpho_blue.topup import plan_morpho_top_up, repay_args

    by_symbol = {s.upper(): a for a, s in symbols.items()}
    later = []
    for p in positions:
        rule = rules.get(p.account.lower())
        acct = accounts.get(p.account)
        if rule is None or acct is None or p.health_factor_wad is None or not p.reliable:
            continue
        if p.health_factor_wad >= rule.trigger_hf_wad:
            continue
        actions = [(k, by_symbol[s.upper()]) for k, s in rule.actions if s.upper() in by_symbol]
        if isinstance(market, mm.MorphoMarket):
            plan = plan_morpho_top_up(market, acct, rule.target_hf_wad, actions, wallet)
            if plan is None or plan.amount <= 0:
                continue
            shares = repay_args(market, acct, plan.amount)[1] if plan.action == "repay" else 0
            later.append(OtherTopUp(key, p.account, market.block, p.health_factor_wad, "morpho_blue",
                                    target, plan, market.params, shares,
                                    f"health factor {p.health_factor_wad} below trigger; {plan.action}"))
        else:
            plan = plan_comet_top_up(market, acct, rule.target_hf_wad, actions, wallet)
            if plan is None or plan.amount <= 0:
                continue
            later.append(OtherTopUp(key, p.account, market.block, p.health_factor_wad, "compound_v3",
                                    target, plan, None, 0,
                                    f"health factor {p.health_factor_wad} below trigger; {plan.action}"))
    return later
