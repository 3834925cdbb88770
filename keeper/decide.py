"""Pure: positions + policy -> decisions. No IO; decisions are plain values that the dry-run
path, the executors and the tests can all look at.

* ``TopUp``: an account of the user's own fell below its ``trigger_hf``: the smallest
  supply or repay (in the configured order) that brings it back to ``target_hf``, or the
  most the wallet can do (``plan.partial``).
* ``Liquidate``: a liquidatable position whose best (collateral, debt) pair pays more than
  ``min_profit_base`` after gas at the current fee, within the wallet's debt-token balance.

A position whose prices are unreliable (stale, zero or negative feed) gets no decision.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from keeper.health.aave36_liquidation import best_liquidation36
from keeper.health.aave36_math import is_v36
from keeper.health.aave36_topup import plan_top_up36
from keeper.health.aave_liquidation import LiquidationQuote, best_liquidation
from keeper.health.aave_topup import TopUpPlan, plan_top_up
from keeper.model import AaveAccount, AaveMarketState, Address, Position, Status
from keeper.units import mul_div_up


TOP_UP_HORIZON_S = 120  # a top-up is sized for the state this many seconds after the tick


@dataclass(frozen=True, slots=True)
class ProtectRule:
    account: Address
    trigger_hf_wad: int
    target_hf_wad: int
    actions: tuple[tuple[str, str], ...]  # ("supply" | "repay", SYMBOL) in preference order


@dataclass(frozen=True, slots=True)
class Policy:
    protect: Mapping[str, ProtectRule]  # lower-case account -> rule
    liquidate: bool = False
    min_profit_base: int = 0
    liquidation_gas: int = 600_000
    gas_price_asset: str = "WETH"


@dataclass(frozen=True, slots=True)
class TopUp:
    market: str
    account: Address
    block: int
    health_factor_wad: int
    plan: TopUpPlan
    reason: str


@dataclass(frozen=True, slots=True)
class Liquidate:
    market: str
    account: Address
    block: int
    health_factor_wad: int
    quote: LiquidationQuote
    gas_cost_base: int
    profit_base: int
    reason: str


Decision = TopUp | Liquidate


def gas_cost_base(market: AaveMarketState, gas: int, gas_price_wei: int, asset_symbol: str) -> int:
    """Gas in the oracle's base unit: gas * price / 1e18 * native price, rounded up."""
    native = market.by_symbol(asset_symbol)
    unit = 10 ** native.config.decimals
    return mul_div_up(gas * gas_price_wei, native.price_base, unit)


def decide(key: str, market: AaveMarketState, positions: Iterable[Position],
           accounts: Mapping[Address, AaveAccount], policy: Policy,
           wallet: Mapping[Address, int], gas_price_wei: int) -> list[Decision]:
    """Decisions for the positions of one market at ``market.block``."""
    out: list[Decision] = []
    gas_base: int | None = None
    for pos in positions:
        if not pos.reliable or pos.health_factor_wad is None:
            continue
        acct = accounts.get(pos.account)
        if acct is None:
            continue
        rule = policy.protect.get(pos.account.lower())
        if rule is not None:
            if pos.health_factor_wad < rule.trigger_hf_wad:
                # sized for a little later than this block: interest accrues until it is mined
                later = replace(market, timestamp=market.timestamp + TOP_UP_HORIZON_S)
                top_up = plan_top_up36 if is_v36(market) else plan_top_up  # 3.6 rounding
                plan = top_up(later, acct, rule.target_hf_wad,
                                   [(k, later.by_symbol(s).asset) for k, s in rule.actions], wallet)
                if plan is not None and plan.amount > 0:
                    why = (f"health factor {pos.health_factor_wad} below trigger {rule.trigger_hf_wad}; "
                           f"{plan.action} to reach {rule.target_hf_wad}")
                    out.append(TopUp(key, pos.account, market.block, pos.health_factor_wad, plan, why))
            continue  # an own account is protected, never liquidated by its own keeper
        if policy.liquidate and pos.status == Status.LIQUIDATABLE:
            if gas_base is None:
                gas_base = gas_cost_base(market, policy.liquidation_gas, gas_price_wei,
                                         policy.gas_price_asset)
            best = best_liquidation36 if is_v36(market) else best_liquidation  # 3.3 rules
            quote = best(market, acct, gas_base, policy.min_profit_base, wallet)
            if quote is not None:
                profit = quote.profit_base(gas_base)
                why = (f"health factor {pos.health_factor_wad} < 1; profit {profit} base after gas "
                       f"{gas_base} >= minimum {policy.min_profit_base}")
                out.append(Liquidate(key, pos.account, market.block, pos.health_factor_wad, quote,
                                     gas_base, profit, why))
    return out


def policy_from(cfg) -> Policy:  # cfg: keeper.config.Config (not imported: decide stays pure)
    rules = {
        p.account.lower(): ProtectRule(p.account, p.trigger_hf, p.target_hf, tuple(p.parsed_actions()))
        for p in cfg.protect
    }
    lq = cfg.liquidator
    return Policy(rules, lq.enabled, lq.min_profit_base, lq.liquidation_gas, lq.gas_price_asset)
