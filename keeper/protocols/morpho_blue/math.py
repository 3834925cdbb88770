"""Morpho Blue's math, exactly: shares, interest, health, liquidation. Pure ints, no IO.

Mirrors npm ``@morpho-org/morpho-blue`` 1.0.0 (``src/``) down to its rounding, which always
favours the protocol: debt rounds up, collateral and withdrawals round down, and shares carry
virtual shares / assets (SharesMathLib). Each function names the Solidity it copies.

Units: every amount is in the token's base units; ``price`` is ``IOracle.price()``: the value
of 1 base unit of collateral in loan-token base units, scaled by ``ORACLE_PRICE_SCALE`` (1e36),
so a WETH(18)/USDC(6) price of $2000 is ``2000 * 10**(36 + 6 - 18)``. ``lltv``, ``fee``,
rates and health factors are wads. Values handed to ``keeper.model.Position`` are in **loan
token units** (``collateral_base`` = collateral quoted in the loan token as ``_isHealthy``
quotes it, ``debt_base`` = the debt rounded up as ``_isHealthy`` rounds it), not USD.

API::

    m = accrue(market, timestamp)              # what Morpho._accrueInterest would store
    m = accrue(market, timestamp, borrow_rate) # any IRM: pass its borrowRateView
    max_borrow, borrowed, hf_wad = health(m, pos)   # hf None without debt
    is_healthy(m, pos)                          # Morpho._isHealthy
    q = liquidate_quote(m, pos, seized_assets=x)  # or repaid_shares=y: Morpho.liquidate
    q = max_liquidation(m, pos)                 # the largest liquidate() that does not revert
    liquidation_price(m, pos)                   # highest price at which it is liquidatable
    drop_to_liquidation_bps(m, pos)             # smallest price drop that liquidates it
    shock(m, -2000)                             # oracle price -20%
    position_from(m, pos, thresholds)           # -> keeper.model.Position
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

from keeper.health.status import DEFAULT_THRESHOLDS, Thresholds, classify
from keeper.model import Address, Position

WAD = 10**18
BPS = 10_000
UINT128_MAX = 2**128 - 1
UINT256_MAX = 2**256 - 1
ZERO_ADDRESS = "0x" + "00" * 20
# ConstantsLib.sol
MAX_FEE = 25 * 10**16
ORACLE_PRICE_SCALE = 10**36
LIQUIDATION_CURSOR = 3 * 10**17
MAX_LIQUIDATION_INCENTIVE_FACTOR = 115 * 10**16
# SharesMathLib.sol
VIRTUAL_SHARES = 10**6
VIRTUAL_ASSETS = 1
# IrmMock.sol: "365 days"
SECONDS_PER_YEAR = 365 * 24 * 3600


# ---------------------------------------------------------------- MathLib.sol


def mul_div_down(x: int, y: int, d: int) -> int:  # MathLib.mulDivDown
    return x * y // d


def mul_div_up(x: int, y: int, d: int) -> int:  # MathLib.mulDivUp: (x * y + (d - 1)) / d
    return (x * y + (d - 1)) // d


def w_mul_down(x: int, y: int) -> int:  # MathLib.wMulDown
    return x * y // WAD


def w_div_down(x: int, y: int) -> int:  # MathLib.wDivDown
    return x * WAD // y


def w_div_up(x: int, y: int) -> int:  # MathLib.wDivUp
    return (x * WAD + (y - 1)) // y


def w_taylor_compounded(x: int, n: int) -> int:
    """MathLib.wTaylorCompounded: e^(x*n) - 1 to three terms (x a per-second wad rate)."""
    first = x * n
    second = mul_div_down(first, first, 2 * WAD)
    third = mul_div_down(second, first, 3 * WAD)
    return first + second + third


# ---------------------------------------------------------------- SharesMathLib.sol


def to_shares_down(assets: int, total_assets: int, total_shares: int) -> int:
    return mul_div_down(assets, total_shares + VIRTUAL_SHARES, total_assets + VIRTUAL_ASSETS)


def to_assets_down(shares: int, total_assets: int, total_shares: int) -> int:
    return mul_div_down(shares, total_assets + VIRTUAL_ASSETS, total_shares + VIRTUAL_SHARES)


def to_shares_up(assets: int, total_assets: int, total_shares: int) -> int:
    return mul_div_up(assets, total_shares + VIRTUAL_SHARES, total_assets + VIRTUAL_ASSETS)


def to_assets_up(shares: int, total_assets: int, total_shares: int) -> int:
    return mul_div_up(shares, total_assets + VIRTUAL_ASSETS, total_shares + VIRTUAL_SHARES)


# ---------------------------------------------------------------- data


@dataclass(frozen=True, slots=True)
class MarketParams:
    """IMorpho.MarketParams; its keccak is the market id (MarketParamsLib.id)."""

    loan_token: str
    collateral_token: str
    oracle: str
    irm: str
    lltv: int  # wad

    def as_tuple(self) -> tuple[str, str, str, str, int]:
        """The ABI tuple (address, address, address, address, uint256)."""
        return (self.loan_token, self.collateral_token, self.oracle, self.irm, self.lltv)


@dataclass(frozen=True, slots=True)
class MorphoMarket:
    """One Morpho Blue market (IMorpho.Market + its params and oracle price) at a block."""

    id: str  # 0x + 64 hex (bytes32)
    params: MarketParams
    total_supply_assets: int
    total_supply_shares: int
    total_borrow_assets: int
    total_borrow_shares: int
    last_update: int
    fee: int  # wad, <= MAX_FEE
    price: int  # IOracle.price(), ORACLE_PRICE_SCALE
    block: int
    timestamp: int  # the block's timestamp
    unreliable: bool = False  # the oracle failed or answered 0: shown, never acted on


@dataclass(frozen=True, slots=True)
class MorphoPosition:
    """IMorpho.Position of one account in one market."""

    account: str
    supply_shares: int
    borrow_shares: int
    collateral: int


@dataclass(frozen=True, slots=True)
class Accrual:
    """What one Morpho._accrueInterest does (its AccrueInterest event and new state)."""

    market: MorphoMarket
    borrow_rate: int  # per second, wad
    interest: int
    fee_shares: int  # minted to feeRecipient


# ---------------------------------------------------------------- interest


def irm_mock_borrow_rate(m: MorphoMarket) -> int:
    """IrmMock.borrowRateView: utilization (wDivDown) / 365 days; 0 with no supply."""
    if m.total_supply_assets == 0:
        return 0
    return w_div_down(m.total_borrow_assets, m.total_supply_assets) // SECONDS_PER_YEAR


def accrue_detail(m: MorphoMarket, timestamp: int, borrow_rate: int | None = None) -> Accrual:
    """Morpho._accrueInterest at ``timestamp`` (the result's ``timestamp`` moves there too).

    ``borrow_rate``: what ``IIrm.borrowRate(marketParams, market)`` returns for the market as
    stored (before accrual) at that timestamp; None computes IrmMock's rate from the state,
    exact for IrmMock only (for another IRM read its ``borrowRateView`` at the block).
    A market whose irm is the zero address accrues nothing (only lastUpdate moves).
    """
    elapsed = timestamp - m.last_update
    if elapsed < 0:
        raise ValueError(f"timestamp {timestamp} is before the market's lastUpdate {m.last_update}")
    if elapsed == 0:
        return Accrual(m, 0, 0, 0)
    if m.params.irm.lower() == ZERO_ADDRESS:
        return Accrual(replace(m, last_update=timestamp, timestamp=max(m.timestamp, timestamp)),
                       0, 0, 0)
    rate = irm_mock_borrow_rate(m) if borrow_rate is None else borrow_rate
    interest = w_mul_down(m.total_borrow_assets, w_taylor_compounded(rate, elapsed))
    borrow_assets = _u128(m.total_borrow_assets + interest, "totalBorrowAssets")
    supply_assets = _u128(m.total_supply_assets + interest, "totalSupplyAssets")
    fee_shares = 0
    if m.fee != 0:
        fee_amount = w_mul_down(interest, m.fee)
        # the fee is taken out of the total supply: it already holds the whole interest
        fee_shares = to_shares_down(fee_amount, supply_assets - fee_amount, m.total_supply_shares)
    out = replace(m, total_borrow_assets=borrow_assets, total_supply_assets=supply_assets,
                  total_supply_shares=_u128(m.total_supply_shares + fee_shares, "totalSupplyShares"),
                  last_update=timestamp, timestamp=max(m.timestamp, timestamp))
    return Accrual(out, rate, interest, fee_shares)


def accrue(m: MorphoMarket, timestamp: int, borrow_rate: int | None = None) -> MorphoMarket:
    """The market as Morpho._accrueInterest would store it at ``timestamp`` (see accrue_detail)."""
    return accrue_detail(m, timestamp, borrow_rate).market


def _u128(x: int, what: str) -> int:
    if x > UINT128_MAX:  # UtilsLib.toUint128 / checked uint128 arithmetic: Morpho reverts
        raise OverflowError(f"{what} exceeds uint128")
    return x


# ---------------------------------------------------------------- health


def borrowed_assets(m: MorphoMarket, pos: MorphoPosition) -> int:
    """The debt as _isHealthy counts it: borrowShares.toAssetsUp."""
    return to_assets_up(pos.borrow_shares, m.total_borrow_assets, m.total_borrow_shares)


def collateral_value(m: MorphoMarket, pos: MorphoPosition, price: int | None = None) -> int:
    """Collateral quoted in the loan token: collateral.mulDivDown(price, ORACLE_PRICE_SCALE)."""
    return mul_div_down(pos.collateral, m.price if price is None else price, ORACLE_PRICE_SCALE)


def health(m: MorphoMarket, pos: MorphoPosition) -> tuple[int, int, int | None]:
    """(maxBorrow, borrowed, hf_wad) as Morpho._isHealthy computes them, at ``m``'s state.

    hf_wad = maxBorrow * 1e18 / borrowed, rounded down; None when borrowed == 0.
    hf_wad >= 1e18 exactly when maxBorrow >= borrowed (healthy).
    """
    borrowed = borrowed_assets(m, pos)
    max_borrow = w_mul_down(collateral_value(m, pos), m.params.lltv)
    hf = None if borrowed == 0 else max_borrow * WAD // borrowed
    return max_borrow, borrowed, hf


def is_healthy(m: MorphoMarket, pos: MorphoPosition, price: int | None = None) -> bool:
    """Morpho._isHealthy: no borrow shares, or maxBorrow >= borrowed."""
    if pos.borrow_shares == 0:
        return True
    max_borrow = w_mul_down(collateral_value(m, pos, price), m.params.lltv)
    return max_borrow >= borrowed_assets(m, pos)


def liquidation_price(m: MorphoMarket, pos: MorphoPosition) -> int | None:
    """The highest oracle price at which ``pos`` is liquidatable, at ``m``'s debt.

    healthy  <=>  floor(floor(c * p / S) * lltv / WAD) >= b
             <=>  floor(c * p / S) >= ceil(b * WAD / lltv)  =: q
             <=>  p >= ceil(q * S / c)
    so the answer is ceil(q * S / c) - 1. None without debt; with no collateral or a zero
    lltv every price liquidates: UINT256_MAX.
    """
    if pos.borrow_shares == 0:
        return None
    b = borrowed_assets(m, pos)
    if pos.collateral == 0 or m.params.lltv == 0:
        return UINT256_MAX
    q = -(-b * WAD // m.params.lltv)
    return -(-q * ORACLE_PRICE_SCALE // pos.collateral) - 1


def shock(m: MorphoMarket, bps: int) -> MorphoMarket:
    """``m`` with the oracle price moved by signed ``bps`` (-2000 = -20%), floored.

    The price is collateral in loan-token units: a collateral drop of x% is a shock of -x%.
    """
    if type(bps) is not int or bps < -BPS:
        raise ValueError(f"price change must be an int >= -10000 bps, got {bps!r}")
    return replace(m, price=m.price * (BPS + bps) // BPS)


def drop_to_liquidation_bps(m: MorphoMarket, pos: MorphoPosition) -> int | None:
    """Smallest drop in bps of the oracle price (``shock(m, -bps)``) that makes ``pos``
    liquidatable; 0 when it already is, None without debt. Checked with is_healthy."""
    if pos.borrow_shares == 0:
        return None
    if not is_healthy(m, pos):
        return 0
    lp = liquidation_price(m, pos) or 0  # an int: pos has debt
    # smallest bps with p0 * (BPS - bps) // BPS <= lp
    bps = max(0, BPS + 1 - -(-(lp + 1) * BPS // m.price))
    while is_healthy(shock(m, -bps), pos):  # never loops more than once or twice
        bps += 1
    return bps


# ---------------------------------------------------------------- liquidation


class LiquidationRevert(ValueError):
    """Morpho.liquidate would revert (the reason: ErrorsLib message or the underflow)."""


@dataclass(frozen=True, slots=True)
class LiquidationQuote:
    """The Liquidate event's amounts and the state Morpho.liquidate leaves behind."""

    seized_assets: int  # collateral to the liquidator
    repaid_shares: int
    repaid_assets: int  # loan token the liquidator pays
    bad_debt_assets: int  # socialized when the collateral runs out
    bad_debt_shares: int
    market: MorphoMarket  # after the liquidation
    position: MorphoPosition  # after the liquidation


def liquidation_incentive_factor(lltv: int) -> int:
    """Morpho.liquidate: min(MAX_LIQUIDATION_INCENTIVE_FACTOR,
    WAD.wDivDown(WAD - LIQUIDATION_CURSOR.wMulDown(WAD - lltv)))."""
    cursor = w_mul_down(LIQUIDATION_CURSOR, WAD - lltv)
    return min(MAX_LIQUIDATION_INCENTIVE_FACTOR, w_div_down(WAD, WAD - cursor))


def liquidate_quote(
    m: MorphoMarket,
    pos: MorphoPosition,
    seized_assets: int | None = None,
    repaid_shares: int | None = None,
    timestamp: int | None = None,
) -> LiquidationQuote:
    """Morpho.liquidate(marketParams, borrower, seizedAssets, repaidShares), its rounding and
    its bad-debt branch: exactly one amount non-zero. ``timestamp`` (the liquidating block's)
    accrues ``m`` first with IrmMock's rate; without it ``m`` must be accrued to that block.
    Raises LiquidationRevert where Morpho reverts."""
    seized, shares = seized_assets or 0, repaid_shares or 0
    if (seized == 0) == (shares == 0):
        raise LiquidationRevert("inconsistent input")  # UtilsLib.exactlyOneZero
    if timestamp is not None:
        m = accrue(m, timestamp)
    if is_healthy(m, pos):
        raise LiquidationRevert("position is healthy")  # ErrorsLib.HEALTHY_POSITION
    lif = liquidation_incentive_factor(m.params.lltv)
    tba, tbs = m.total_borrow_assets, m.total_borrow_shares
    if seized > 0:
        quoted = mul_div_up(seized, m.price, ORACLE_PRICE_SCALE)
        shares = to_shares_up(w_div_up(quoted, lif), tba, tbs)
    elif m.price == 0:
        raise LiquidationRevert("division by zero (oracle price 0)")
    else:
        seized = mul_div_down(w_mul_down(to_assets_down(shares, tba, tbs), lif),
                              ORACLE_PRICE_SCALE, m.price)
    repaid_assets = to_assets_up(shares, tba, tbs)
    if shares > pos.borrow_shares or shares > tbs:  # checked subtraction: Morpho reverts
        raise LiquidationRevert(f"repaid shares {shares} > borrow shares {pos.borrow_shares}")
    if seized > pos.collateral:
        raise LiquidationRevert(f"seized {seized} > collateral {pos.collateral}")
    borrow_shares = pos.borrow_shares - shares
    tbs -= shares
    tba = max(0, tba - repaid_assets)  # UtilsLib.zeroFloorSub
    collateral = pos.collateral - seized
    tsa = m.total_supply_assets
    bad_shares = bad_assets = 0
    if collateral == 0:
        bad_shares = borrow_shares
        bad_assets = min(tba, to_assets_up(bad_shares, tba, tbs))
        tba -= bad_assets
        if bad_assets > tsa:
            raise LiquidationRevert("totalSupplyAssets underflow")
        tsa -= bad_assets
        tbs -= bad_shares
        borrow_shares = 0
    return LiquidationQuote(
        seized, shares, repaid_assets, bad_assets, bad_shares,
        market=replace(m, total_borrow_assets=tba, total_borrow_shares=tbs, total_supply_assets=tsa),
        position=replace(pos, borrow_shares=borrow_shares, collateral=collateral))


def max_liquidation(m: MorphoMarket, pos: MorphoPosition) -> LiquidationQuote:
    """The largest liquidate() that does not revert: every borrow share when the collateral
    covers what that seizes, else all the collateral (realizing the bad debt left), or just
    under it where rounding up would repay more shares than the position owes."""
    lif = liquidation_incentive_factor(m.params.lltv)
    if m.price:
        owed = to_assets_down(pos.borrow_shares, m.total_borrow_assets, m.total_borrow_shares)
        if mul_div_down(w_mul_down(owed, lif), ORACLE_PRICE_SCALE, m.price) <= pos.collateral:
            return liquidate_quote(m, pos, repaid_shares=pos.borrow_shares)

    def fits(seized: int) -> bool:
        quoted = mul_div_up(seized, m.price, ORACLE_PRICE_SCALE)
        shares = to_shares_up(w_div_up(quoted, lif), m.total_borrow_assets, m.total_borrow_shares)
        return shares <= pos.borrow_shares

    lo, hi = 0, pos.collateral  # fits(lo) (nothing seized), find the largest that fits
    if fits(hi):
        lo = hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    if lo == 0:
        raise LiquidationRevert("nothing to seize")
    return liquidate_quote(m, pos, seized_assets=lo)


# ---------------------------------------------------------------- model.Position


def position_from(
    m: MorphoMarket,
    pos: MorphoPosition,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    collateral_symbol: str | None = None,
    with_drop: bool = True,
    base_unit: str = "USD",
    base_decimals: int = 8,
) -> Position:
    """The model.Position of ``pos`` (``m`` accrued to its block); ``base_unit`` and
    ``base_decimals`` name what the values count (the loan token: the adapter passes them).

    protocol "morpho_blue", market = the market id; collateral_base = collateral quoted in
    the loan token (mulDivDown by the oracle price), debt_base = debt (toAssetsUp), both in
    loan-token base units; liquidation_threshold_bps = lltv in bps (floored);
    main_collateral = ``collateral_symbol`` or the collateral token's address.
    """
    _, borrowed, hf = health(m, pos)
    return Position(
        protocol="morpho_blue",
        market=m.id,
        account=pos.account,
        block=m.block,
        collateral_base=collateral_value(m, pos),
        debt_base=borrowed,
        health_factor_wad=hf,
        liquidation_threshold_bps=m.params.lltv * BPS // WAD,
        status=classify(hf, thresholds),
        reliable=not m.unreliable,
        main_collateral=collateral_symbol or m.params.collateral_token,
        drop_to_liquidation_bps=drop_to_liquidation_bps(m, pos) if with_drop else None,
        assets=_assets(m.params.loan_token, m.params.collateral_token),
        base_unit=base_unit,
        base_decimals=base_decimals,
    )


@functools.lru_cache(maxsize=256)
def _assets(loan: Address, collateral: Address) -> frozenset[Address]:
    """One frozenset per market, shared by its positions (not one per position)."""
    return frozenset({loan, collateral})
