"""Aave V3 (protocol 3.0.2) account math and what-ifs, pure: no IO, ints only.

``account_data(market, acct)`` equals ``Pool.getUserAccountData(user)`` to the wei
when ``market`` and ``acct`` were read at the same block. The what-ifs
(``shock``, ``drop_to_liquidation_bps``) run the same exact math with moved
prices; ``position_from`` and the drop search use ``fast.py`` (the same numbers,
with the per-market work done once per market state).

Prices are keyed like AaveOracle keys them: by asset address. An e-mode
category's ``priceSource`` is such a key too (EModeLogic.getEModeConfiguration
calls ``oracle.getAssetPrice(category.priceSource)``), so moving the price of
asset X also moves every e-mode category whose price source is X.

Errors: ``SourceError`` when the inputs are inconsistent (the account is in an
e-mode category the market does not carry, has bits for a reserve the market
does not carry, or for one with no balances read); ``OverflowError`` where the
contract would revert on overflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from keeper.protocols.aave_v3.math import percent_mul, reserve_ids_in_use
from keeper.protocols.aave_v3.account import (  # noqa: F401  the walk, shared with fast.py
    UserAccountTotals,
    _is_zero_address,
    _reserve,
    _walk,
    emode_configuration,
)
from keeper.protocols.aave_v3.fast import (
    MarketView,
    drop_bps_on,
    fast_totals,
    liquidation_price_on,
    try_fast_totals,
    view_for,
)
from keeper.health.status import (
    DEFAULT_THRESHOLDS,
    HEALTH_FACTOR_LIQUIDATION_THRESHOLD,
    Thresholds,
    classify,
)
from keeper.model import Address, Position
from keeper.protocols.aave_v3.model import AaveAccount, AaveMarketState, AccountData, Reserve
from keeper.units import BPS


def calculate_user_account_data(market: AaveMarketState, acct: AaveAccount) -> UserAccountTotals:
    # Aave V3 GenericLogic.calculateUserAccountData
    return _walk(market, acct)[0]


def calculate_available_borrows(
    total_collateral_base: int, total_debt_base: int, ltv_bps: int
) -> int:
    # Aave V3 GenericLogic.calculateAvailableBorrows
    available = percent_mul(total_collateral_base, ltv_bps)
    return 0 if available < total_debt_base else available - total_debt_base


def account_data(market: AaveMarketState, acct: AaveAccount) -> AccountData:
    # Aave V3 PoolLogic.executeGetUserAccountData (what Pool.getUserAccountData returns)
    t = calculate_user_account_data(market, acct)
    return AccountData(
        total_collateral_base=t.total_collateral_base,
        total_debt_base=t.total_debt_base,
        available_borrows_base=calculate_available_borrows(
            t.total_collateral_base, t.total_debt_base, t.avg_ltv_bps
        ),
        liquidation_threshold_bps=t.avg_liquidation_threshold_bps,
        ltv_bps=t.avg_ltv_bps,
        health_factor_wad=t.health_factor_wad,
    )


# ------------------------------------------------------------------ what-ifs


def _scale_prices(market: AaveMarketState, key: str, num: int, den: int) -> AaveMarketState:
    """Every price keyed by ``key`` (reserve asset or e-mode price source) -> price * num // den."""
    reserves = tuple(
        replace(r, price_base=r.price_base * num // den) if r.asset.lower() == key else r
        for r in market.reserves
    )
    categories = {
        cid: replace(c, price_base=c.price_base * num // den)
        if not _is_zero_address(c.price_source) and c.price_source.lower() == key
        else c
        for cid, c in market.emode_categories.items()
    }
    return replace(market, reserves=reserves, emode_categories=categories)


def _is_price_key(market: AaveMarketState, key: str) -> bool:
    return any(r.asset.lower() == key for r in market.reserves) or any(
        not _is_zero_address(c.price_source) and c.price_source.lower() == key
        for c in market.emode_categories.values()
    )


def shock(market: AaveMarketState, changes: Mapping[Address, int]) -> AaveMarketState:
    """A copy of ``market`` with prices moved by signed bps: -2000 is -20%.

    new = old * (10000 + bps) // 10000, floored (the operands are never negative,
    so floor and Solidity truncation agree). It moves the reserve whose asset is
    the key and every e-mode category whose price source is the key. Other
    reserves that happen to share the same Chainlink feed do NOT move: name
    each asset you want moved. bps below -10000 raise ValueError; an address
    that prices nothing in the market raises KeyError.
    """
    out = market
    seen: set[str] = set()
    for asset, bps in changes.items():
        key = asset.lower()
        if key in seen:
            raise ValueError(f"asset {asset} given twice")
        seen.add(key)
        if type(bps) is not int or bps < -BPS:
            raise ValueError(f"price change must be an int >= -10000 bps, got {bps!r}")
        if not _is_price_key(market, key):
            raise KeyError(asset)
        out = _scale_prices(out, key, BPS + bps, BPS)
    return out


def main_collateral(market: AaveMarketState, acct: AaveAccount) -> Reserve | None:
    """The counted collateral (bit set, LT != 0) with the largest value in base; lowest id wins ties."""
    values = _walk(market, acct)[1]
    if not values:
        return None
    best = max(values, key=lambda i: (values[i], -i))
    return _reserve(market, best)


def price_key(market: AaveMarketState, acct: AaveAccount, reserve: Reserve) -> Address:
    """The oracle key whose price the account's math uses for ``reserve``.

    The e-mode category's price source when the account is in the reserve's
    category and that category has a non-zero price of its own; else the asset.
    """
    if acct.emode != 0 and reserve.config.emode_category == acct.emode:
        _, _, emode_price = emode_configuration(market, acct.emode)
        if emode_price != 0:
            return market.emode_categories[acct.emode].price_source
    return reserve.asset


def _liquidatable(market: AaveMarketState, acct: AaveAccount) -> bool:
    hf = calculate_user_account_data(market, acct).health_factor_wad
    return hf < HEALTH_FACTOR_LIQUIDATION_THRESHOLD


@dataclass(frozen=True, slots=True)
class LiquidationPrice:
    """Where the main collateral's price makes the account liquidatable."""

    key: Address  # the oracle key moved (see price_key)
    current_price: int  # its price now, in the oracle's base unit
    price: int  # the highest integer price <= current_price with HF < 1e18


def liquidation_price(
    market: AaveMarketState, acct: AaveAccount, view: MarketView | None = None
) -> LiquidationPrice | None:
    """The integer price of the main collateral's ``price_key`` where the account turns liquidatable.

    All prices keyed by it move together, as in ``shock`` (so debt in the same
    asset moves too). Invariant: liquidatable at ``price``, not at ``price + 1``
    (or ``price`` is the current price). None when there is no debt, no counted
    collateral, or not even the lowest price liquidates. The lowest price is 0,
    except for an e-mode price source: a category price of 0 means "no
    override" to Aave (the assets fall back to their own prices), so there the
    search stops at 1.

    Exact math on ``view`` (fast.prepare(market), made here when not given): an
    analytic estimate of where HF crosses 1, a bracket widened geometrically
    around it until verified, then bisection (fast._boundary).

    HF is monotone in one price when there is one collateral (or all share one
    LT) and the debt is in other assets: the result is then the unique boundary,
    the blind bisection's (``_liquidation_price_reference``). With mixed LTs,
    Aave's floored average LT can make HF wiggle by up to 1 bps of LT as a price
    moves (test_floored_average_lt_makes_hf_non_monotone_in_price); the result
    is then one boundary inside that wiggle.
    """
    view = view_for(market, view)
    if (totals := try_fast_totals(view, acct)) is None:  # outside the fast path's bounds
        return _liquidation_price_reference(market, acct)
    found = liquidation_price_on(view, acct, totals)
    return None if found is None else LiquidationPrice(*found)


def drop_to_liquidation_bps(
    market: AaveMarketState, acct: AaveAccount, view: MarketView | None = None
) -> int | None:
    """Smallest drop, in bps, of the main collateral's price that makes HF < 1e18.

    0 when the account is liquidatable already; None when it has no debt or
    when even a 100% drop leaves HF >= 1 (the collateral is also the debt, or
    the rest of the collateral covers the debt). From ``liquidation_price``:
    the smallest bps whose shock, ``p0 * (10000 - bps) // 10000``, lands at or
    below the liquidation price, stepped up until ``shock(market, {key: -bps})``
    really is liquidatable (checked with the exact math), so the returned bps
    always liquidates. Pass ``view`` (fast.prepare(market)) to reuse it.
    """
    view = view_for(market, view)
    if (totals := try_fast_totals(view, acct)) is None:  # outside the fast path's bounds
        return _drop_to_liquidation_bps_reference(market, acct)
    return drop_bps_on(view, acct, totals)


def _liquidation_price_reference(market: AaveMarketState, acct: AaveAccount) -> LiquidationPrice | None:
    # ``liquidation_price`` by a blind bisection over [lo, p0] (~40 exact recomputations
    # of a shocked market copy); the reference for tests and the fallback outside fast.py's bounds
    if calculate_user_account_data(market, acct).total_debt_base == 0:
        return None
    main = main_collateral(market, acct)
    if main is None:
        return None
    key = price_key(market, acct, main)
    emode_price = emode_configuration(market, acct.emode)[2] if acct.emode else 0
    source = market.emode_categories[acct.emode].price_source if acct.emode else ""
    overridden = emode_price != 0 and source.lower() == key.lower()
    p0 = main.price_base if key.lower() == main.asset.lower() else emode_price
    lo = 1 if overridden else 0
    if p0 < lo or not _liquidatable(_scale_prices(market, key.lower(), lo, p0 or 1), acct):
        return None
    hi = p0 + 1  # a price above p0 is never tried: at p0 itself we look, too
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _liquidatable(_scale_prices(market, key.lower(), mid, p0), acct):
            lo = mid
        else:
            hi = mid
    return LiquidationPrice(key=key, current_price=p0, price=lo)


def _drop_to_liquidation_bps_reference(market: AaveMarketState, acct: AaveAccount) -> int | None:
    # ``drop_to_liquidation_bps`` on ``_liquidation_price_reference``: reference and fallback
    totals = calculate_user_account_data(market, acct)
    if totals.total_debt_base == 0:
        return None
    if totals.health_factor_wad < HEALTH_FACTOR_LIQUIDATION_THRESHOLD:
        return 0
    lp = _liquidation_price_reference(market, acct)
    if lp is None:
        return None
    key, p0 = lp.key.lower(), lp.current_price
    bps = max(0, BPS + 1 - -(-(lp.price + 1) * BPS // p0))  # p0 * (BPS - bps) // BPS <= price
    while not _liquidatable(_scale_prices(market, key, BPS - bps, BPS), acct):
        bps += 1
        if bps > BPS:  # only prices no bps shock reaches liquidate (e-mode, tiny p0)
            return None
    return bps


def _price_inputs(market: AaveMarketState, acct: AaveAccount) -> tuple[frozenset[Address], bool]:
    """(every asset the account holds or owes, no price it reads is unreliable)."""
    used = [r for i in reserve_ids_in_use(acct.user_config) if (r := _reserve(market, i))]
    price_keys = {r.asset.lower() for r in used}
    if acct.emode != 0 and used:  # an e-mode price source the account's math reads
        source = market.emode_categories[acct.emode].price_source
        if not _is_zero_address(source) and any(r.config.emode_category == acct.emode for r in used):
            price_keys.add(source.lower())
    unreliable = {a.lower() for a in market.unreliable_assets}
    return frozenset(r.asset for r in used), not (price_keys & unreliable)


def position_from(
    market: AaveMarketState,
    acct: AaveAccount,
    protocol: str = "aave_v3",
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    with_drop: bool = True,
    view: MarketView | None = None,
) -> Position:
    """The model.Position of one account: exact account data, status, main collateral, drop.

    ``with_drop=False`` skips the price-drop search, for hot paths that only need
    the health factor and the status. ``view``: fast.prepare(market), to reuse it."""
    view = view_for(market, view)
    fast = try_fast_totals(view, acct)  # None outside its bounds: the exact path decides
    tc, td, _, avg_lt, hf, main = fast or fast_totals(view, acct)
    hf = None if td == 0 else hf
    drop = None
    if with_drop:
        drop = drop_bps_on(view, acct, fast) if fast else _drop_to_liquidation_bps_reference(market, acct)
    inputs = view.meta.get((acct.user_config, acct.emode))
    if inputs is None:
        inputs = view.meta[(acct.user_config, acct.emode)] = _price_inputs(market, acct)
    return Position(
        protocol=protocol,
        market=market.pool,
        account=acct.account,
        block=market.block,
        collateral_base=tc,
        debt_base=td,
        health_factor_wad=hf,
        liquidation_threshold_bps=avg_lt,
        status=classify(hf, thresholds),
        reliable=inputs[1],
        main_collateral=None if main is None else view.assets[main][2],
        drop_to_liquidation_bps=drop,
        assets=inputs[0],
    )
