"""Morpho Blue decisions, pure: the largest ``liquidate`` that does not revert (bad debt
included) within the wallet's loan token, the smallest top-up, their calldata and what a
receipt says happened. Profit is counted in loan-token units, then valued in USD e8 with the
price book's price of the loan token."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from eth_abi import encode as abi_encode
from eth_utils import to_checksum_address

from keeper.chain.abi import selector, topic, word
from keeper.model import Address, Approval, Decision, Liquidate, Outcome, Position, ProtectRule, Status, TopUp, TxStep
from keeper.dex import view
from keeper.prices import PriceBook
from keeper.protocols.morpho_blue import flash
from keeper.protocols.morpho_blue import math as mm
from keeper.protocols.morpho_blue.topup import plan_morpho_top_up, repay_args
from keeper.units import mul_div_down

PARAMS = "(address,address,address,address,uint256)"
LIQUIDATE = f"liquidate({PARAMS},address,uint256,uint256,bytes)"
REPAY = f"repay({PARAMS},uint256,uint256,address,bytes)"
SUPPLY_COLLATERAL = f"supplyCollateral({PARAMS},uint256,address,bytes)"
APPROVE = "approve(address,uint256)"
LIQUIDATE_EVENT = topic("Liquidate(bytes32,address,address,uint256,uint256,uint256,uint256,uint256)")


def liquidations(key: str, m: mm.MorphoMarket, due: Sequence[Position],
                 accounts: Mapping[Address, mm.MorphoPosition], ctx, loan_decimals: int,
                 morpho: Address = "", symbols: Mapping[Address, str] | None = None) -> list[Liquidate]:
    loan = m.params.loan_token
    gas_loan = ctx.prices.tokens_for_usd(loan, ctx.gas_usd_e8, loan_decimals)
    if gas_loan is None or m.unreliable:  # no USD price of the loan token: cannot weigh gas
        return []
    wallet = ctx.wallet.get(loan, 0)
    out = []
    for p in due:
        pos = accounts.get(p.account)
        if pos is None or p.status != Status.LIQUIDATABLE or not p.reliable:
            continue
        own = _own(key, m, p, pos, ctx, loan_decimals, gas_loan, wallet)
        best = flash.choose(key, morpho, m, p, pos, own, ctx, loan_decimals, dict(symbols or {}))
        if best is not None:
            out.append(best)
            if best is own:  # paid from the wallet: the next position plans with the rest
                wallet -= own.quote.repaid_assets
            elif ctx.dex is not None:  # capital-free: the next one meets the pools this one moved
                ctx = replace(ctx, dex=view.after_swap(ctx.dex, best))
    return out


def _own(key: str, m: mm.MorphoMarket, p: Position, pos: mm.MorphoPosition, ctx, loan_decimals: int,
         gas_loan: int, wallet: int) -> Liquidate | None:
    """The largest liquidation the wallet's loan token pays for, if it pays enough."""
    try:
        q = mm.max_liquidation(m, pos)
        if q.repaid_assets > wallet:  # own capital: repay only what the wallet holds
            seized = q.seized_assets * wallet // max(q.repaid_assets, 1)
            for _ in range(4):  # the repay rounds up: a unit or two over the wallet, seize less
                if seized <= 0:
                    return None
                q = mm.liquidate_quote(m, pos, seized_assets=seized)
                if q.repaid_assets <= wallet:
                    break
                seized -= 1 + seized * (q.repaid_assets - wallet) // q.repaid_assets
    except mm.LiquidationRevert:
        return None
    loan = m.params.loan_token
    value = mul_div_down(q.seized_assets, m.price, mm.ORACLE_PRICE_SCALE)
    profit = value - q.repaid_assets - gas_loan
    profit_usd = ctx.prices.value_usd(loan, profit, loan_decimals) or 0
    if profit_usd < ctx.min_profit_usd_e8 or q.repaid_assets > wallet:
        return None
    return Liquidate(key, "morpho_blue", (p.account,), m.block, p.health_factor_wad or 0,
                     q, q.seized_assets, profit_usd, ctx.gas_usd_e8,
                     f"health factor {p.health_factor_wad} < 1; profit {profit} loan units "
                     f"after gas {gas_loan}")


def top_up(key: str, m: mm.MorphoMarket, pos: mm.MorphoPosition, hf: int, rule: ProtectRule,
           symbols: Mapping[Address, str], wallet: Mapping[Address, int]) -> TopUp | None:
    by_symbol = {s.upper(): a for a, s in symbols.items()}
    actions = [(k, by_symbol[s.upper()]) for k, s in rule.actions if s.upper() in by_symbol]
    plan = plan_morpho_top_up(m, pos, rule.target_hf_wad, actions, wallet) if actions else None
    if plan is None or plan.amount <= 0:
        return None
    shares = repay_args(m, pos, plan.amount)[1] if plan.action == "repay" else 0
    return TopUp(key, "morpho_blue", pos.account, m.block, hf, plan,
                 f"health factor {hf} below trigger {rule.trigger_hf_wad}; {plan.action}", shares)


def encode(morpho: Address, params: mm.MarketParams, d: Decision) -> list[TxStep]:
    if isinstance(d, Liquidate) and (steps := view.steps(d, f"liquidate {d.account} on Morpho")) is not None:
        return steps
    if isinstance(d, Liquidate):
        q = d.quote
        data = selector(LIQUIDATE) + abi_encode([PARAMS, "address", "uint256", "uint256", "bytes"],
                                                [params.as_tuple(), d.account, q.seized_assets, 0, b""])
        return [TxStep(morpho, data, f"liquidate {d.account} on Morpho",
                       (Approval(params.loan_token, morpho, q.repaid_assets),))]
    p = d.plan
    if p.action == "repay":  # a full repay goes by shares, so no dust of debt is left
        assets, shares = (0, d.quote) if d.quote else (p.amount, 0)
        data = selector(REPAY) + abi_encode([PARAMS, "uint256", "uint256", "address", "bytes"],
                                            [params.as_tuple(), assets, shares, d.account, b""])
    else:
        data = selector(SUPPLY_COLLATERAL) + abi_encode([PARAMS, "uint256", "address", "bytes"],
                                                        [params.as_tuple(), p.amount, d.account, b""])
    return [TxStep(morpho, data, f"{p.action} for {d.account} on Morpho",
                   (Approval(p.asset, morpho, p.amount),))]


def realized(m: mm.MorphoMarket, d: Decision, receipts, prices: PriceBook, loan_decimals: int) -> Outcome:
    """The Liquidate event (repaidAssets, repaidShares, seizedAssets, ...) of the borrower."""
    if not isinstance(d, Liquidate):
        return Outcome(all(r.ok for r in receipts))
    if (capital_free := view.outcome(d, receipts)) is not None:
        return capital_free
    for r in receipts:
        for lg in r.logs:
            t = lg.get("topics", [])
            if t and bytes.fromhex(t[0][2:]) == LIQUIDATE_EVENT and \
                    to_checksum_address("0x" + t[3][-40:]) == to_checksum_address(d.account):
                data = bytes.fromhex(lg["data"][2:])
                repaid, seized = word(data, 0), word(data, 2)
                gross = mul_div_down(seized, m.price, mm.ORACLE_PRICE_SCALE) - repaid
                usd = prices.value_usd(m.params.loan_token, gross, loan_decimals)
                return Outcome(True, seized, usd, f"repaid {repaid}, seized {seized} (loan units gross {gross})")
    return Outcome(False, detail="mined without a Liquidate event")


def allowed_calls(morpho: Address, params: mm.MarketParams) -> list[tuple[Address, str]]:
    return ([(morpho, LIQUIDATE), (morpho, REPAY), (morpho, SUPPLY_COLLATERAL)]
            + [(t, APPROVE) for t in (params.loan_token, params.collateral_token)])
