"""Aave V3 decisions, pure: the smallest top-up, the most profitable liquidationCall, their
transactions and what a receipt says happened. Values in the oracle's base unit convert to
the price book's USD e8 with ``to_usd`` (the same numbers when the oracle's base is 1e8 USD)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from eth_utils import to_checksum_address

from keeper.chain.abi import topic, word
from keeper.model import Address, Approval, Decision, Liquidate, Outcome, Position, ProtectRule, TopUp, TxStep
from keeper.dex import view
from keeper.followups import spent
from keeper.protocols.aave_v3 import encode as enc
from keeper.protocols.aave_v3 import flash
from keeper.protocols.aave_v3.liquidation import best_liquidation
from keeper.protocols.aave_v3.liquidation36 import best_liquidation36
from keeper.protocols.aave_v3.math36 import is_v36
from keeper.protocols.aave_v3.model import AaveAccount, AaveMarketState
from keeper.protocols.aave_v3.topup import plan_top_up
from keeper.protocols.aave_v3.topup36 import plan_top_up36
from keeper.units import mul_div_down, mul_div_up

TOP_UP_HORIZON_S = 120  # a top-up is sized for the state this many seconds after the tick
LIQUIDATION_CALL = topic("LiquidationCall(address,address,address,uint256,uint256,address,bool)")
DEFICIT_CREATED = topic("DeficitCreated(address,address,uint256)")  # Aave 3.3+ (user, debtAsset)
USD = 10**8


def to_usd(market: AaveMarketState, base: int) -> int:
    return base if market.base_currency_unit == USD else base * USD // market.base_currency_unit


def to_base(market: AaveMarketState, usd_e8: int) -> int:
    unit = market.base_currency_unit
    return usd_e8 if unit == USD else mul_div_up(usd_e8, unit, USD)


def top_up(key: str, market: AaveMarketState, acct: AaveAccount, hf: int, rule: ProtectRule,
           wallet: Mapping[Address, int]) -> TopUp | None:
    """Sized for a little later than this block: interest accrues until it is mined. Actions
    naming a symbol this market lacks are skipped."""
    later = replace(market, timestamp=market.timestamp + TOP_UP_HORIZON_S)
    listed = {r.symbol.upper(): r.asset for r in market.reserves}
    actions = [(k, listed[s.upper()]) for k, s in rule.actions if s.upper() in listed]
    plan_amount = plan_top_up36 if is_v36(market) else plan_top_up  # 3.6 rounds differently
    plan = plan_amount(later, acct, rule.target_hf_wad, actions, wallet) if actions else None
    if plan is None or plan.amount <= 0:
        return None
    why = f"health factor {hf} below trigger {rule.trigger_hf_wad}; {plan.action} to reach {rule.target_hf_wad}"
    return TopUp(key, "aave_v3", acct.account, market.block, hf, plan, why)


def liquidations(key: str, market: AaveMarketState, due: Sequence[Position],
                 accounts: Mapping[Address, AaveAccount], ctx) -> list[Liquidate]:
    """The best (collateral, debt) pair and amount of each position, within what the wallet
    has left once the positions planned before it are paid, and capital-free on the pools
    their sales leave (the burst sends them in this order)."""
    gas_base = to_base(market, ctx.gas_usd_e8)
    min_base = to_base(market, ctx.min_profit_usd_e8)
    v36 = is_v36(market)  # 3.3+ rules: close factor by size, dust, deficit, grace period
    out, wallet = [], ctx.wallet
    for pos in due:
        acct = accounts.get(pos.account)
        if acct is None or pos.health_factor_wad is None:
            continue
        quote = (best_liquidation36(market, acct, gas_base, min_base, wallet, ctx.sender) if v36
                 else best_liquidation(market, acct, gas_base, min_base, wallet))
        own = None
        if quote is not None:
            profit = quote.profit_base(gas_base)
            why = (f"health factor {pos.health_factor_wad} < 1; profit {profit} base after gas "
                   f"{gas_base} >= minimum {min_base}")
            own = Liquidate(key, "aave_v3", (pos.account,), market.block, pos.health_factor_wad,
                            (quote, ctx.receive_a_token), quote.collateral_to_receive,
                            to_usd(market, profit), ctx.gas_usd_e8, why)
        best = flash.choose(key, market, pos, acct, own, ctx)  # own capital unless [liquidator] contract
        if best is not None:
            out.append(best)
            wallet = spent(wallet, encode(market.pool, best))  # a capital-free one spends nothing
            if ctx.dex is not None:  # the next capital-free one meets the pools this one moved
                ctx = replace(ctx, dex=view.after_swap(ctx.dex, best))
    return out


def encode(pool: Address, d: Decision) -> list[TxStep]:
    if isinstance(d, Liquidate) and (steps := view.steps(d, f"liquidate {d.account}")) is not None:
        return steps
    if isinstance(d, Liquidate):
        q, receive_a_token = d.quote
        cover = q.debt_to_repay if q.debt_to_cover is None else q.debt_to_cover  # 3.6: may be max
        data = enc.liquidation_call(q.collateral_asset, q.debt_asset, d.account, cover, receive_a_token)
        return [TxStep(pool, data, f"liquidate {d.account}",
                       (Approval(q.debt_asset, pool, q.debt_to_repay),))]
    p = d.plan
    data = (enc.supply(p.asset, p.amount, d.account) if p.action == "supply"
            else enc.repay(p.asset, p.amount, d.account))
    return [TxStep(pool, data, f"{p.action} for {d.account}", (Approval(p.asset, pool, p.amount),))]


def realized(market: AaveMarketState, d: Decision, receipts) -> Outcome:
    """A liquidation: its LiquidationCall event (debtToCover, liquidatedCollateralAmount),
    valued at the decision's prices. A top-up: mined is done."""
    if not isinstance(d, Liquidate):
        return Outcome(all(r.ok for r in receipts))
    if (capital_free := view.outcome(d, receipts)) is not None:
        return capital_free
    q, _ = d.quote
    for r in receipts:
        for lg in r.logs:
            t = lg.get("topics", [])
            if t and bytes.fromhex(t[0][2:]) == LIQUIDATION_CALL and \
                    to_checksum_address("0x" + t[3][-40:]) == to_checksum_address(d.account):
                data = bytes.fromhex(lg["data"][2:])
                repaid, seized = word(data, 0), word(data, 1)
                coll, debt = market.by_asset(q.collateral_asset), market.by_asset(q.debt_asset)
                gross = (mul_div_down(seized, coll.price_base, 10**coll.config.decimals)
                         - mul_div_up(repaid, debt.price_base, 10**debt.config.decimals))
                deficit = _deficit_created(r.logs, d.account)
                return Outcome(True, seized, to_usd(market, gross),
                               f"repaid {repaid} {debt.symbol}, seized {seized} {coll.symbol}"
                               + (f", deficit created {deficit}" if deficit else ""))
    return Outcome(False, detail="mined without a LiquidationCall event")


def _deficit_created(logs, user: str) -> int:
    """Aave 3.3+: debt burned as deficit for ``user`` in these logs (sum over reserves)."""
    total = 0
    for lg in logs:
        topics = lg.get("topics", [])
        if len(topics) > 1 and bytes.fromhex(topics[0][2:]) == DEFICIT_CREATED \
                and topics[1][-40:].lower() == user[2:].lower():
            total += word(bytes.fromhex(lg["data"][2:]), 0)
    return total
