"""Compound III (Comet) top-up planning for one's own loan, pure: no IO, ints only.

``market`` must be accrued to the top-up block's timestamp (``accrue(stored, ts)``;
CometAdapter.load_market's default accrues to its block): supplyBase accrues before it
moves the principal, and the hf (keeper's, comet.hf_wad) is read at those indexes.

repay = ``Comet.supply(baseToken, amount)`` by the account, or ``supplyTo(account,
baseToken, amount)`` from anyone (Comet.supplyBase): principal' =
principalValue(presentValue(principal) + amount), a borrow's principal rounding up. An
amount above the debt turns the rest into a supply, so a plan repays at most
``borrow_balance`` (= borrowBalanceOf), which leaves principal 0. The debt value only
falls as the amount grows, so a bisection finds the smallest.

supply = ``supply(asset, amount)`` / ``supplyTo`` of a collateral asset
(Comet.supplyCollateral): balance += amount (uint128), and the asset's assetsIn bit is set
when the balance was 0 (updateAssetsIn). The smallest amount is exact in closed form.

Not checked (not in CometMarket): the asset's supply cap (needs totalsCollateral) and
Comet's pause flags. Fee-on-transfer tokens (doTransferIn credits what arrived) are not
modelled.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

from keeper.model import TopUpPlan
from keeper.protocols.compound_v3.math import (
    CometAccount,
    CometMarket,
    CometRevert,
    assets_in,
    borrow_balance,
    hf_wad,
    mul_factor,
    mul_price,
    position_from,
    present_value,
    principal_value,
    signed_mul_price,
)
from keeper.protocols.morpho_blue.topup import first_true
from keeper.model import Address
from keeper.units import UINT256_MAX, WAD

__all__ = ["TopUpPlan", "apply_repay", "apply_supply", "hf_after", "plan_comet_top_up"]
UINT128_MAX = 2**128 - 1


def _balance(acct: CometAccount, asset: Address) -> int:
    return next((v for a, v in acct.collateral.items() if a.lower() == asset.lower()), 0)


def apply_repay(market: CometMarket, acct: CometAccount, amount: int) -> CometAccount:
    """The account after ``supplyTo(acct, baseToken, amount)`` (Comet.supplyBase);
    ``amount == UINT256_MAX`` repays borrowBalanceOf, as supplyInternal does."""
    if not 0 <= amount <= UINT256_MAX:
        raise ValueError(f"amount must be a uint256, got {amount}")
    if amount == UINT256_MAX:
        amount = borrow_balance(market, acct)
    if amount > 2**255 - 1:
        raise OverflowError("InvalidInt256")  # signed256(amount)
    return replace(acct, principal=principal_value(market, present_value(market, acct.principal) + amount))


def apply_supply(market: CometMarket, acct: CometAccount, asset: Address, amount: int) -> CometAccount:
    """The account after ``supplyTo(acct, asset, amount)`` of a collateral asset."""
    info = market.asset_info(asset)  # CometRevert("BadAsset")
    old = _balance(acct, info.asset)
    if amount > UINT128_MAX or old + amount > UINT128_MAX:
        raise OverflowError("InvalidUInt128")  # safe128 / checked uint128 addition
    bits = assets_in(market, acct)
    if old == 0 and amount != 0:  # updateAssetsIn
        bits |= 1 << info.offset
    coll = {a: v for a, v in acct.collateral.items() if a.lower() != info.asset.lower()}
    coll[info.asset] = old + amount
    return replace(acct, collateral=coll, assets_in=bits)


def hf_after(market: CometMarket, acct: CometAccount, action: str, asset: Address, amount: int) -> int:
    """comet.hf_wad after the action; UINT256_MAX when no debt (or a debt worth 0) is left."""
    if action == "repay":
        if asset.lower() != market.base_token.lower():
            raise CometRevert("BadAsset", asset)  # not a repay: a collateral supply
        acct = apply_repay(market, acct, amount)
    elif action == "supply":
        acct = apply_supply(market, acct, asset, amount)
    else:
        raise ValueError(f"unknown top-up action {action!r} (supply or repay)")
    hf = hf_wad(market, acct)
    return UINT256_MAX if hf is None else hf


def _reaches(market: CometMarket, acct: CometAccount, action: str, asset: Address,
             target: int) -> Callable[[int], bool]:  # fmt: skip
    def pred(amount: int) -> bool:
        try:
            return hf_after(market, acct, action, asset, amount) >= target
        except (CometRevert, OverflowError):
            return False
    return pred


def _values(market: CometMarket, acct: CometAccount, skip: Address | None = None) -> tuple[int, int]:
    """(debt value, liquidation value without ``skip``) as isLiquidatable rounds them."""
    debt = 0
    if acct.principal < 0:
        debt = -signed_mul_price(present_value(market, acct.principal), market.price(market.base_token),
                                 market.base_scale)
    bits, liq = assets_in(market, acct), 0
    for info in market.assets:
        if bits >> info.offset & 1 and (skip is None or info.asset.lower() != skip.lower()):
            value = mul_price(_balance(acct, info.asset), market.price(info.asset), info.scale)
            liq += mul_factor(value, info.liquidate_collateral_factor)
    return debt, liq


def _min_repay(market: CometMarket, acct: CometAccount, target: int) -> int | None:
    owed = borrow_balance(market, acct)
    liq = _values(market, acct)[1]
    base_price = market.price(market.base_token)
    # hf >= target <=> debt value <= liq * WAD // target; estimate it in base units
    guess = owed - (liq * WAD // target) * market.base_scale // base_price if base_price > 0 else None
    return first_true(_reaches(market, acct, "repay", market.base_token, target), 0, owed, guess)


def _min_supply(market: CometMarket, acct: CometAccount, asset: Address, target: int) -> int | None:
    """liq_others + floor(floor(b * p / scale) * lcf / 1e18) >= L := ceil(target * debt / WAD)
    <=> floor(b * p / scale) >= q := ceil((L - liq_others) * 1e18 / lcf)
    <=> b >= ceil(q * scale / p)."""
    info = market.asset_info(asset)
    old, price, lcf = _balance(acct, info.asset), market.price(info.asset), info.liquidate_collateral_factor
    counted = bool(assets_in(market, acct) >> info.offset & 1) or old == 0
    if not counted or price <= 0 or lcf == 0:
        return None  # supplying it does not raise the hf
    debt, others = _values(market, acct, skip=info.asset)
    missing = -(-target * debt // WAD) - others
    q = -(-missing * 10**18 // lcf)
    amount = max(1, -(-q * info.scale // price) - old)
    if old + amount > UINT128_MAX:
        return None
    return amount


def _plan_one(market: CometMarket, acct: CometAccount, target: int, action: str, asset: Address,
              balance: int) -> TopUpPlan | None:  # fmt: skip
    if action == "repay":
        asset, needed = market.base_token, _min_repay(market, acct, target)
        useful = min(balance, borrow_balance(market, acct))
    else:
        asset = market.asset_info(asset).asset
        needed = _min_supply(market, acct, asset, target)
        useful = min(balance, UINT128_MAX - _balance(acct, asset))
    if needed is not None and needed <= balance:
        hf = hf_after(market, acct, action, asset, needed)
        if hf < target or _reaches(market, acct, action, asset, target)(needed - 1):
            raise AssertionError(f"{action} {needed}: the exact search disagrees with hf_wad")
        return TopUpPlan(action, asset, needed, hf, False, 0)
    if useful <= 0:
        return None
    hf = hf_after(market, acct, action, asset, useful)
    return TopUpPlan(action, asset, useful, hf, True, None if needed is None else needed - useful)


def plan_comet_top_up(market: CometMarket, acct: CometAccount, target_hf_wad: int,
                      actions: list[tuple[str, Address]], wallet: Mapping[Address, int]) -> TopUpPlan | None:  # fmt: skip
    """The smallest amount of the first action (preference order) the wallet can pay that
    brings comet.hf_wad to >= ``target_hf_wad``; same contract as aave_topup.plan_top_up.

    ``actions``: ("repay", base token) | ("supply", a collateral asset of this market);
    others are skipped. ``wallet``: token -> balance (keys case-insensitive). When no action
    can be paid in full: the partial plan (whole balance; a repay at most the debt) with the
    highest hf, earlier preference on ties, ``partial=True`` and its ``shortfall`` (None:
    this action alone never reaches the target). None when already at target, without
    debt, when a price the hf uses is unreliable (never acted on; a supply of an unreliable
    asset is skipped), or when nothing raises the hf.
    """
    if not 0 < target_hf_wad <= UINT256_MAX:
        raise ValueError(f"target_hf_wad must be a positive uint256, got {target_hf_wad}")
    now = hf_wad(market, acct)
    if now is None or now >= target_hf_wad or not position_from(market, acct, with_drop=False).reliable:
        return None
    balances = {a.lower(): v for a, v in wallet.items()}
    collateral = {i.asset.lower() for i in market.assets}
    bad = {a.lower() for a in market.unreliable_assets}
    best: TopUpPlan | None = None
    for action, token in actions:
        if action not in ("repay", "supply"):
            raise ValueError(f"unknown top-up action {action!r} (supply or repay)")
        t = token.lower()
        if (action == "repay") != (t == market.base_token.lower()) or (
                action == "supply" and (t not in collateral or t in bad or market.price(token) <= 0)):
            continue
        plan = _plan_one(market, acct, target_hf_wad, action, token, balances.get(t, 0))
        if plan is None:
            continue
        if not plan.partial:
            return plan
        if plan.expected_hf_wad > now and (best is None or plan.expected_hf_wad > best.expected_hf_wad):
            best = plan
    return best
