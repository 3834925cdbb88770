"""Morpho Blue (1.0.0) top-up planning for one's own loan, pure: no IO, ints only.

``m`` must be the market as the top-up transaction sees it: accrued to that block's
timestamp (``accrue(stored, ts)``; Morpho.repay accrues first, supplyCollateral does not
accrue but the health of the next block is read at the accrued state anyway).

repay (Morpho.repay on the loan token, onBehalf = the borrower): ``amount`` below the
position's whole debt is a repay BY ASSETS, ``repay(mp, amount, 0, onBehalf, "")``:
shares = amount.toSharesDown(totalBorrowAssets, totalBorrowShares), borrowShares and
totalBorrowShares fall by them, totalBorrowAssets = zeroFloorSub(totalBorrowAssets, amount).
``amount == full_repay_assets(m, pos)`` (= borrowShares.toAssetsUp: what Morpho charges for
every share) is a repay BY SHARES, ``repay(mp, 0, borrowShares, onBehalf, "")``: by assets
that amount can convert to MORE shares than the position owes (the subtraction reverts) or
to fewer (dust shares stay), so ``repay_args`` gives the executor the right arguments.
Every amount in [1, full) is a valid repay by assets (its shares never exceed the
position's), and the debt left falls monotonically as the amount grows, so a bisection
finds the smallest.

supply (Morpho.supplyCollateral of the collateral token): collateral += amount (uint128).
The smallest amount is exact in closed form (floors inverted), then verified.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

from keeper.model import TopUpPlan
from keeper.protocols.morpho_blue.math import (
    ORACLE_PRICE_SCALE,
    UINT128_MAX,
    UINT256_MAX,
    WAD,
    MorphoMarket,
    MorphoPosition,
    health,
    to_assets_up,
    to_shares_down,
)

__all__ = ["MorphoTopUpRevert", "TopUpPlan", "apply_repay", "apply_supply", "first_true",
           "full_repay_assets", "hf_after", "plan_morpho_top_up", "repay_args"]


class MorphoTopUpRevert(ValueError):
    """Morpho would revert (ErrorsLib message or the checked arithmetic that fails)."""


def full_repay_assets(m: MorphoMarket, pos: MorphoPosition) -> int:
    """What repaying every borrow share costs: borrowShares.toAssetsUp (= health()'s debt)."""
    return to_assets_up(pos.borrow_shares, m.total_borrow_assets, m.total_borrow_shares)


def repay_args(m: MorphoMarket, pos: MorphoPosition, amount: int) -> tuple[int, int]:
    """(assets, shares) for Morpho.repay: by shares for the full debt, else by assets."""
    if pos.borrow_shares and amount == full_repay_assets(m, pos):
        return 0, pos.borrow_shares
    return amount, 0


def apply_repay(m: MorphoMarket, pos: MorphoPosition, amount: int) -> tuple[MorphoMarket, MorphoPosition]:
    """Market and position after repaying ``amount`` of the loan token (see ``repay_args``)."""
    assets, shares = repay_args(m, pos, amount)
    tba, tbs = m.total_borrow_assets, m.total_borrow_shares
    if (assets == 0) == (shares == 0):
        raise MorphoTopUpRevert("inconsistent input")  # UtilsLib.exactlyOneZero
    if assets:
        shares = to_shares_down(assets, tba, tbs)
    else:
        assets = to_assets_up(shares, tba, tbs)
    if shares > pos.borrow_shares or shares > tbs:
        raise MorphoTopUpRevert(f"repaid shares {shares} > borrow shares {pos.borrow_shares}")
    market = replace(m, total_borrow_shares=tbs - shares, total_borrow_assets=max(0, tba - assets))
    return market, replace(pos, borrow_shares=pos.borrow_shares - shares)


def apply_supply(pos: MorphoPosition, amount: int) -> MorphoPosition:
    """The position after ``supplyCollateral(mp, amount, onBehalf, "")``."""
    if amount <= 0:
        raise MorphoTopUpRevert("zero assets")  # ErrorsLib.ZERO_ASSETS
    if pos.collateral + amount > UINT128_MAX:
        raise MorphoTopUpRevert("collateral exceeds uint128")  # toUint128 / checked add
    return replace(pos, collateral=pos.collateral + amount)


def hf_after(m: MorphoMarket, pos: MorphoPosition, action: str, amount: int) -> int:
    """health()'s hf after the action; UINT256_MAX when no debt is left. Raises
    MorphoTopUpRevert where Morpho reverts."""
    if action == "repay":
        m, pos = apply_repay(m, pos, amount)
    elif action == "supply":
        pos = apply_supply(pos, amount)
    else:
        raise ValueError(f"unknown top-up action {action!r} (supply or repay)")
    hf = health(m, pos)[2]
    return UINT256_MAX if hf is None else hf


def first_true(pred: Callable[[int], bool], lo: int, hi: int, guess: int | None = None) -> int | None:
    """Smallest x in (lo, hi] with pred(x), for pred monotone (false..true) with pred(lo)
    false; None if not pred(hi). A guess in (lo, hi) is bracketed first (+-2**-20 of it,
    widened 4x until verified), then bisection."""
    if hi <= lo or not pred(hi):
        return None
    if guess is not None and lo < guess < hi:
        step = max(1, guess >> 20)
        while True:
            a, b = max(lo, guess - step), min(hi, guess + step)
            if not (a > lo and pred(a)) and (b == hi or pred(b)):
                lo, hi = a, b
                break
            step *= 4
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if pred(mid) else (mid, hi)
    return hi


def _reaches(m: MorphoMarket, pos: MorphoPosition, action: str, target: int) -> Callable[[int], bool]:
    def pred(amount: int) -> bool:
        try:
            return hf_after(m, pos, action, amount) >= target
        except MorphoTopUpRevert:
            return False
    return pred


def _min_repay(m: MorphoMarket, pos: MorphoPosition, target: int) -> int | None:
    max_borrow, debt, _ = health(m, pos)
    # hf = max_borrow * WAD // debt >= target  <=>  debt <= max_borrow * WAD // target
    guess = debt - max_borrow * WAD // target
    return first_true(_reaches(m, pos, "repay", target), 0, debt, guess)


def _min_supply(m: MorphoMarket, pos: MorphoPosition, target: int) -> int | None:
    """maxBorrow = floor(floor(c * p / S) * lltv / WAD) >= M := ceil(target * debt / WAD)
    <=> floor(c * p / S) >= q := ceil(M * WAD / lltv)  <=>  c >= ceil(q * S / p)."""
    lltv, price = m.params.lltv, m.price
    if lltv == 0 or price == 0:
        return None  # collateral is worth nothing here
    debt = health(m, pos)[1]
    need_max_borrow = -(-target * debt // WAD)
    q = -(-need_max_borrow * WAD // lltv)
    amount = max(1, -(-q * ORACLE_PRICE_SCALE // price) - pos.collateral)
    if pos.collateral + amount > UINT128_MAX:
        return None
    return amount


def _plan_one(m: MorphoMarket, pos: MorphoPosition, target: int, action: str, balance: int
              ) -> TopUpPlan | None:  # fmt: skip
    if action == "repay":
        asset, needed = m.params.loan_token, _min_repay(m, pos, target)
        useful = min(balance, full_repay_assets(m, pos))
    else:
        asset, needed = m.params.collateral_token, _min_supply(m, pos, target)
        useful = min(balance, UINT128_MAX - pos.collateral)
    if needed is not None and needed <= balance:
        hf = hf_after(m, pos, action, needed)
        if hf < target or _reaches(m, pos, action, target)(needed - 1):
            raise AssertionError(f"{action} {needed}: the exact search disagrees with health()")
        return TopUpPlan(action, asset, needed, hf, False, 0)
    if useful <= 0:
        return None
    try:
        hf = hf_after(m, pos, action, useful)
    except MorphoTopUpRevert:
        return None
    return TopUpPlan(action, asset, useful, hf, True, None if needed is None else needed - useful)


def plan_morpho_top_up(m: MorphoMarket, pos: MorphoPosition, target_hf_wad: int,
                       actions: list[tuple[str, str]], wallet: Mapping[str, int]) -> TopUpPlan | None:  # fmt: skip
    """The smallest amount of the first action (preference order) the wallet can pay that
    brings health()'s hf to >= ``target_hf_wad``; same contract as aave_topup.plan_top_up.

    ``actions``: ("repay", loan token) | ("supply", collateral token); an action whose token
    is not this market's loan (repay) / collateral (supply) token is skipped. ``wallet``:
    token -> balance (keys case-insensitive). A repay plan whose amount equals
    ``full_repay_assets`` must be sent by shares (``repay_args``). When no action can be paid
    in full: the partial plan (whole balance; a repay at most the debt) with the highest hf,
    earlier preference on ties, ``partial=True`` and its ``shortfall`` (None: this action
    alone never reaches the target). None when already at target, without debt, when the
    market is unreliable (oracle failed / 0: never acted on), or when nothing raises the hf.
    """
    if not 0 < target_hf_wad <= UINT256_MAX:
        raise ValueError(f"target_hf_wad must be a positive uint256, got {target_hf_wad}")
    now = health(m, pos)[2]
    if now is None or now >= target_hf_wad or m.unreliable:
        return None
    balances = {a.lower(): v for a, v in wallet.items()}
    tokens = {"repay": m.params.loan_token.lower(), "supply": m.params.collateral_token.lower()}
    best: TopUpPlan | None = None
    for action, token in actions:
        if action not in tokens:
            raise ValueError(f"unknown top-up action {action!r} (supply or repay)")
        if token.lower() != tokens[action]:
            continue
        plan = _plan_one(m, pos, target_hf_wad, action, balances.get(token.lower(), 0))
        if plan is None:
            continue
        if not plan.partial:
            return plan
        if plan.expected_hf_wad > now and (best is None or plan.expected_hf_wad > best.expected_hf_wad):
            best = plan
    return best
