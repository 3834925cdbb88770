"""Compound V3 decisions, pure.

Liquidation: ``absorb`` every liquidatable account (the protocol takes the collateral and
the debt), then ``buyCollateral`` of what was absorbed at the store-front discount with the
wallet's base token; profit = collateral value - base paid - gas, in the feeds' 1e8 USD.
Absorbing pays nothing on-chain by itself, so it is decided only when the purchase after it
pays for both. The purchases are optional steps: Comet sells only while its reserves are
under target, and a purchase whose simulation reverts is skipped.
With nobody left to absorb and collateral for sale (``getCollateralReserves``, reserves under
target: e.g. an absorb whose purchases a crash interrupted), the purchases alone are decided
from the block's state (``buy_reserves``).
Top-up: ``supplyTo`` of base (repay) or of a collateral asset.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from eth_utils import to_checksum_address

from keeper.chain.abi import addr_arg, call_data, topic, uint_arg, word
from keeper.model import Address, Approval, Decision, Liquidate, Outcome, Position, ProtectRule, Status, TopUp, TxStep
from keeper.dex import view
from keeper.protocols.compound_v3 import math as cm
from keeper.protocols.compound_v3.flash import base_for
from keeper.protocols.compound_v3 import flash
from keeper.protocols.compound_v3.topup import plan_comet_top_up
from keeper.units import mul_div_down, mul_div_up

ABSORB = "absorb(address,address[])"
BUY = "buyCollateral(address,uint256,uint256,address)"
SUPPLY_TO = "supplyTo(address,address,uint256)"
APPROVE = "approve(address,uint256)"
BUY_COLLATERAL = topic("BuyCollateral(address,address,uint256,uint256)")
ABSORB_DEBT = topic("AbsorbDebt(address,address,uint256,uint256)")


def liquidations(key: str, m: cm.CometMarket, due: Iterable[Position],
                 accounts: Mapping[Address, cm.CometAccount], ctx, comet: Address = "") -> list[Liquidate]:
    """At most one decision per tick: absorb all liquidatable accounts, then buy."""
    todo = [p for p in due if p.status == Status.LIQUIDATABLE and p.reliable and p.account in accounts]
    seized: dict[Address, int] = {}
    after, absorbed = m, []
    for p in todo:
        try:
            o = cm.absorb_outcome(after, accounts[p.account])
        except cm.CometRevert:
            continue
        absorbed.append(p)
        after = o.market_after
        for asset, amount, _value in o.seized:
            seized[asset] = seized.get(asset, 0) + amount
    if not absorbed:
        return buy_reserves(key, m, ctx)
    own = _own(key, m, after, absorbed, seized, ctx)
    best = flash.choose(key, comet, m, after, absorbed, seized, own, ctx)  # own unless a contract
    return [best] if best is not None else []


def _own(key: str, m: cm.CometMarket, after: cm.CometMarket, absorbed: list[Position],
         seized: Mapping[Address, int], ctx) -> Liquidate | None:
    """Buy what the wallet's base token pays for, if that pays for the absorb too."""
    buys, profit = _buys(after, seized, ctx)
    if profit < ctx.min_profit_usd_e8:
        return None
    return Liquidate(key, "compound_v3", tuple(p.account for p in absorbed), m.block,
                     min(p.health_factor_wad or 0 for p in absorbed), tuple(buys),
                     sum(o for _, _, o in buys), profit, ctx.gas_usd_e8,
                     f"{len(absorbed)} liquidatable; buy {len(buys)} collateral(s) at the "
                     f"store-front discount, profit {profit} (1e8 USD) after gas {ctx.gas_usd_e8}")


def for_sale(m: cm.CometMarket) -> bool:
    """Comet sells collateral it holds while its reserves are under target (buyCollateral
    reverts NotForSale when ``reserves >= 0 && reserves >= targetReserves``)."""
    return bool(m.collateral_reserves) and m.reserves < m.target_reserves


def buy_reserves(key: str, m: cm.CometMarket, ctx) -> list[Liquidate]:
    """Nobody left to absorb, collateral for sale (an absorb whose purchases a crash
    interrupted, or anyone else's): buy it, decided from this block's state alone. No
    account is liquidated: the decision names none, and every purchase is a required step."""
    if not for_sale(m) or ctx.dex is not None:
        # a capital-free keeper ([liquidator] contract) holds no inventory: its absorbs buy in
        # the same transaction, and buying the protocol's collateral would leave it holding some
        return []
    held = {a: n for a, n in m.collateral_reserves.items() if a not in m.unreliable_assets}
    buys, profit = _buys(m, held, ctx)
    if not buys or profit < ctx.min_profit_usd_e8:
        return []
    return [Liquidate(key, "compound_v3", (), m.block, 0, tuple(buys), sum(o for _, _, o in buys),
                      profit, ctx.gas_usd_e8,
                      f"Comet holds collateral for sale (reserves {m.reserves} under target "
                      f"{m.target_reserves}); buy {len(buys)} at the store-front discount, "
                      f"profit {profit} (1e8 USD) after gas {ctx.gas_usd_e8}")]


def _buys(m: cm.CometMarket, available: Mapping[Address, int], ctx) -> tuple[list, int]:
    """Purchases of ``available`` collateral with the wallet's base, each worth more than it
    costs: [(asset, base, collateral out)], and their profit after one transaction's gas."""
    buys, profit, budget = [], -ctx.gas_usd_e8, ctx.wallet.get(m.base_token, 0)
    base_price = m.price(m.base_token)
    for asset, amount in sorted(available.items()):
        if amount == 0 or budget == 0:
            continue
        base = min(base_for(m, asset, amount), budget)
        out_amount = min(cm.quote_collateral(m, asset, base), amount)
        value = mul_div_down(out_amount, m.price(asset), m.asset_info(asset).scale)
        cost = mul_div_up(base, base_price, m.base_scale)
        if value - cost <= 0:
            continue
        buys.append((asset, base, out_amount))
        profit += value - cost
        budget -= base
    return buys, profit


def top_up(key: str, m: cm.CometMarket, acct: cm.CometAccount, hf: int, rule: ProtectRule,
           wallet: Mapping[Address, int]) -> TopUp | None:
    by_symbol = {m.base_symbol.upper(): m.base_token, **{a.symbol.upper(): a.asset for a in m.assets}}
    actions = [(k, by_symbol[s.upper()]) for k, s in rule.actions if s.upper() in by_symbol]
    plan = plan_comet_top_up(m, acct, rule.target_hf_wad, actions, wallet) if actions else None
    if plan is None or plan.amount <= 0:
        return None
    return TopUp(key, "compound_v3", acct.account, m.block, hf, plan,
                 f"health factor {hf} below trigger {rule.trigger_hf_wad}; {plan.action}")


def encode(comet: Address, base_token: Address, d: Decision, sender: Address) -> list[TxStep]:
    if isinstance(d, Liquidate) and (steps := view.steps(d, f"absorb {len(d.accounts)} on Comet")) is not None:
        return steps
    if isinstance(d, Liquidate):
        steps = [TxStep(comet, call_data(ABSORB, addr_arg(sender), _addresses(d.accounts)),
                        f"absorb {len(d.accounts)} on Comet")] if d.accounts else []
        for asset, base, min_out in d.quote:  # after an absorb optional; alone, the action itself
            steps.append(TxStep(comet, call_data(BUY, addr_arg(asset), uint_arg(min_out), uint_arg(base),
                                                 addr_arg(sender)),
                                f"buy {asset} from Comet", (Approval(base_token, comet, base),),
                                optional=bool(d.accounts)))
        return steps
    p = d.plan
    return [TxStep(comet, call_data(SUPPLY_TO, addr_arg(d.account), addr_arg(p.asset), uint_arg(p.amount)),
                   f"{p.action} for {d.account} on Comet", (Approval(p.asset, comet, p.amount),))]


def _addresses(items) -> bytes:
    """An address[] as the only dynamic argument after one static word: offset, length, items."""
    return (uint_arg(64) + uint_arg(len(items)) + b"".join(addr_arg(a) for a in items))


def realized(m: cm.CometMarket, d: Decision, receipts) -> Outcome:
    """AbsorbDebt per absorbed account, BuyCollateral (baseAmount, collateralAmount) per
    purchase (the receipts are the keeper's own transactions), at the decision's prices."""
    if not isinstance(d, Liquidate):
        return Outcome(all(r.ok for r in receipts))
    if (capital_free := view.outcome(d, receipts)) is not None:
        return capital_free
    absorbed, bought, gross = 0, 0, 0
    base_price = m.price(m.base_token)
    for r in receipts:
        for lg in r.logs:
            t = lg.get("topics", [])
            if not t:
                continue
            t0 = bytes.fromhex(t[0][2:])
            if t0 == ABSORB_DEBT:
                absorbed += 1
            elif t0 == BUY_COLLATERAL:
                asset = to_checksum_address("0x" + t[2][-40:])
                data = bytes.fromhex(lg["data"][2:])
                base, amount = word(data, 0), word(data, 1)
                bought += amount
                gross += (mul_div_down(amount, m.price(asset), m.asset_info(asset).scale)
                          - mul_div_up(base, base_price, m.base_scale))
    if absorbed == 0 and d.accounts:
        return Outcome(False, detail="mined without an AbsorbDebt event")
    if not d.accounts and bought == 0:
        return Outcome(False, detail="mined without a BuyCollateral event")
    return Outcome(True, bought, gross, f"absorbed {absorbed}, bought {bought} collateral units")


def allowed_calls(comet: Address, tokens: Iterable[Address]) -> list[tuple[Address, str]]:
    return [(comet, ABSORB), (comet, BUY), (comet, SUPPLY_TO)] + [(t, APPROVE) for t in tokens]
