"""Compound III (Comet) account math and what-ifs, pure: no IO, ints only.

Mirrors Comet.sol / CometCore.sol (compound-finance/comet) down to the rounding: principal
<-> present value at BASE_INDEX_SCALE 1e15 (a borrow's principal rounds UP, all else down),
8-decimal prices and 1e18 factors (``mulPrice``/``mulFactor`` floor), ``signedMulPrice``
with Solidity's signed division, truncating toward zero (``sol_div``), and interest as
``accruedInterestIndices`` (kinked per-second rates, ``index += index * rate * dt / 1e18``).

Indexes: Comet's ``isLiquidatable`` / ``isBorrowCollateralized`` views read the STORED
indexes (last accrual); ``balanceOf`` / ``borrowBalanceOf`` / ``getReserves`` accrue inside
the view, and ``absorb`` accrues before it checks. Functions here use the indexes of the
market they get: ``accrue(market, ts)`` is what a transaction at ``ts`` sees (the default of
``CometAdapter.load_market``); the stored market reproduces the ``isLiquidatable`` view.

Health factor (keeper's; Comet has none): ``hf_wad = sum(collateral value x
liquidateCollateralFactor) * 1e18 // borrow value``, each term rounded as in
``isLiquidatable``, so ``hf_wad < 1e18`` exactly when ``isLiquidatable``. ``None`` with no
borrow (principal >= 0) or one whose value rounds to 0 (Comet never liquidates it).

Errors: ``CometRevert`` (a ValueError) where the contract reverts (BadPrice, BadAsset,
NotLiquidatable; a bad price raises even where Comet's early return skips reading it);
``OverflowError`` where ``safe64`` / ``safe104`` / ``signed104`` would.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from keeper.health.status import DEFAULT_THRESHOLDS, Thresholds, classify
from keeper.model import Address, Position
from keeper.units import BPS, WAD, sol_div

BASE_INDEX_SCALE = 10**15
FACTOR_SCALE = 10**18


class CometRevert(ValueError):
    """The contract would revert here; ``error`` is Comet's custom error name."""

    def __init__(self, error: str, detail: str = "") -> None:
        super().__init__(f"{error}: {detail}" if detail else error)
        self.error = error


@dataclass(frozen=True, slots=True)
class CometAssetInfo:
    """Comet's AssetInfo (getAssetInfo), plus the token's symbol for people."""

    offset: int
    asset: Address
    price_feed: Address
    scale: int  # 10 ** decimals
    borrow_collateral_factor: int  # 1e18 scale
    liquidate_collateral_factor: int
    liquidation_factor: int
    supply_cap: int
    symbol: str = ""


@dataclass(frozen=True, slots=True)
class CometRates:
    """Per-second rate parameters (1e18 scale), as Comet's public immutables hold them."""

    supply_kink: int
    supply_slope_low: int
    supply_slope_high: int
    supply_base: int
    borrow_kink: int
    borrow_slope_low: int
    borrow_slope_high: int
    borrow_base: int


@dataclass(frozen=True, slots=True)
class CometMarket:
    """One Comet market at one block. ``prices_e8`` is keyed by asset (base token included)."""

    comet: Address
    block: int
    timestamp: int
    base_token: Address
    base_scale: int
    base_supply_index: int
    base_borrow_index: int
    total_supply_base: int
    total_borrow_base: int
    last_accrual_time: int
    rates: CometRates
    assets: tuple[CometAssetInfo, ...]  # by offset
    prices_e8: Mapping[Address, int]
    store_front_price_factor: int = 0
    target_reserves: int = 0
    base_borrow_min: int = 0
    base_symbol: str = ""
    reserves: int = 0  # getReserves() at the block (signed)
    collateral_reserves: Mapping[Address, int] = field(default_factory=dict)  # asset -> held, > 0
    unreliable_assets: frozenset[Address] = frozenset()  # getPrice reverted / feed stale

    def price(self, asset: Address) -> int:
        p = self.prices_e8.get(asset)
        if p is None:
            p = next((v for a, v in self.prices_e8.items() if a.lower() == asset.lower()), None)
        if p is None:
            raise KeyError(asset)
        return p

    def asset_info(self, asset: Address) -> CometAssetInfo:
        """getAssetInfoByAddress; BadAsset when the market does not list ``asset``."""
        for info in self.assets:
            if info.asset.lower() == asset.lower():
                return info
        raise CometRevert("BadAsset", asset)


@dataclass(frozen=True, slots=True)
class CometAccount:
    """userBasic + userCollateral of one account. ``assets_in``: Comet's bit set (bit i =
    asset offset i), or None to derive it from the non-zero balances."""

    account: Address
    principal: int  # signed: < 0 is a borrow
    collateral: Mapping[Address, int] = field(default_factory=dict)
    assets_in: int | None = None


# ------------------------------------------------------------------ CometCore / CometMath


def _checked(n: int, bits: int, error: str) -> int:
    if n >= 2**bits:
        raise OverflowError(error)
    return n


def mul_factor(n: int, factor: int) -> int:
    return n * factor // FACTOR_SCALE


def mul_price(n: int, price: int, from_scale: int) -> int:
    return n * price // from_scale


def signed_mul_price(n: int, price: int, from_scale: int) -> int:
    """Comet signedMulPrice: Solidity int division, truncating toward zero."""
    return sol_div(n * price, from_scale)


def present_value_of(index: int, principal: int) -> int:
    """presentValueSupply / presentValueBorrow (the same formula): rounded down."""
    return principal * index // BASE_INDEX_SCALE


def principal_value_supply(index: int, present: int) -> int:
    return _checked(present * BASE_INDEX_SCALE // index, 104, "InvalidUInt104")  # down


def principal_value_borrow(index: int, present: int) -> int:
    return _checked((present * BASE_INDEX_SCALE + index - 1) // index, 104, "InvalidUInt104")  # up


def present_value(market: CometMarket, principal: int) -> int:
    """CometCore.presentValue: signed base balance (negative = debt) at the market's indexes."""
    if principal >= 0:
        return present_value_of(market.base_supply_index, principal)
    return -present_value_of(market.base_borrow_index, -principal)


def principal_value(market: CometMarket, present: int) -> int:
    """CometCore.principalValue: signed principal; a borrow's rounds up (toward more debt)."""
    if present >= 0:
        return _checked(principal_value_supply(market.base_supply_index, present), 103, "InvalidInt104")
    return -_checked(principal_value_borrow(market.base_borrow_index, -present), 103, "InvalidInt104")


# ------------------------------------------------------------------ interest


def utilization(market: CometMarket) -> int:
    """getUtilization (1e18 scale) at the market's indexes."""
    total_supply = present_value_of(market.base_supply_index, market.total_supply_base)
    total_borrow = present_value_of(market.base_borrow_index, market.total_borrow_base)
    return 0 if total_supply == 0 else total_borrow * FACTOR_SCALE // total_supply


def _kinked(u: int, kink: int, base: int, low: int, high: int) -> int:
    if u <= kink:
        return _checked(base + mul_factor(low, u), 64, "InvalidUInt64")
    return _checked(base + mul_factor(low, kink) + mul_factor(high, u - kink), 64, "InvalidUInt64")


def rates_at(market: CometMarket, u: int) -> tuple[int, int]:
    """(getSupplyRate(u), getBorrowRate(u)): per second, 1e18 scale."""
    r = market.rates
    return (_kinked(u, r.supply_kink, r.supply_base, r.supply_slope_low, r.supply_slope_high),
            _kinked(u, r.borrow_kink, r.borrow_base, r.borrow_slope_low, r.borrow_slope_high))


def accrue(market: CometMarket, timestamp: int) -> CometMarket:
    """The market as Comet's accrueInternal leaves it at ``timestamp`` (base indexes; keeper
    does not need the rewards tracking indexes)."""
    elapsed = timestamp - market.last_accrual_time
    if elapsed < 0:
        raise ValueError(f"timestamp {timestamp} is before the last accrual {market.last_accrual_time}")
    if elapsed == 0:
        return replace(market, timestamp=timestamp)
    supply, borrow = rates_at(market, utilization(market))
    s, b = market.base_supply_index, market.base_borrow_index
    s = _checked(s + _checked(mul_factor(s, supply * elapsed), 64, "InvalidUInt64"), 64, "overflow")
    b = _checked(b + _checked(mul_factor(b, borrow * elapsed), 64, "InvalidUInt64"), 64, "overflow")
    return replace(market, timestamp=timestamp, base_supply_index=s, base_borrow_index=b,
                   last_accrual_time=timestamp)


def borrow_balance(market: CometMarket, acct: CometAccount) -> int:
    """borrowBalanceOf when ``market`` is accrued to the block's timestamp."""
    return present_value_of(market.base_borrow_index, -acct.principal) if acct.principal < 0 else 0


def supply_balance(market: CometMarket, acct: CometAccount) -> int:
    """balanceOf when ``market`` is accrued to the block's timestamp."""
    return present_value_of(market.base_supply_index, acct.principal) if acct.principal > 0 else 0


# ------------------------------------------------------------------ health


def assets_in(market: CometMarket, acct: CometAccount) -> int:
    if acct.assets_in is not None:
        return acct.assets_in
    return sum(1 << i.offset for i in market.assets if _balance(acct, i.asset))


def _balance(acct: CometAccount, asset: Address) -> int:
    b = acct.collateral.get(asset)
    if b is None:
        b = next((v for a, v in acct.collateral.items() if a.lower() == asset.lower()), 0)
    return b


def _price(market: CometMarket, asset: Address, strict: bool) -> int:
    p = market.price(asset)
    if p <= 0 and strict:
        raise CometRevert("BadPrice", asset)
    return max(p, 0)


@dataclass(frozen=True, slots=True)
class _Totals:
    debt_value: int  # -signedMulPrice(presentValue(principal)), price scale (1e8 USD)
    collateral_value: int  # sum of mulPrice(balance) over the assets in assetsIn
    liquidation_value: int  # sum of mulFactor(that, liquidateCollateralFactor)
    borrow_value: int  # sum of mulFactor(that, borrowCollateralFactor)
    main: CometAssetInfo | None  # largest collateral by value; lowest offset wins ties

    def hf_wad(self) -> int | None:
        return None if self.debt_value == 0 else self.liquidation_value * WAD // self.debt_value


def _totals(market: CometMarket, acct: CometAccount, strict: bool = True) -> _Totals:
    debt = 0
    if acct.principal < 0:
        base_price = _price(market, market.base_token, strict)
        debt = -signed_mul_price(present_value(market, acct.principal), base_price, market.base_scale)
    bits = assets_in(market, acct)
    coll = liq = bor = 0
    main, main_value = None, -1
    for info in market.assets:
        if bits >> info.offset & 1:
            value = mul_price(_balance(acct, info.asset), _price(market, info.asset, strict), info.scale)
            coll += value
            liq += mul_factor(value, info.liquidate_collateral_factor)
            bor += mul_factor(value, info.borrow_collateral_factor)
            if value > main_value:
                main, main_value = info, value
    return _Totals(debt, coll, liq, bor, main)


def liquidation_margin(market: CometMarket, acct: CometAccount) -> int:
    """Comet's liquidity with liquidateCollateralFactor (price scale, signed): < 0 liquidates."""
    t = _totals(market, acct)
    return t.liquidation_value - t.debt_value


def is_liquidatable(market: CometMarket, acct: CometAccount) -> bool:
    """Comet.isLiquidatable at the market's indexes (its early returns change nothing)."""
    return acct.principal < 0 and liquidation_margin(market, acct) < 0


def is_borrow_collateralized(market: CometMarket, acct: CometAccount) -> bool:
    """Comet.isBorrowCollateralized at the market's indexes."""
    if acct.principal >= 0:
        return True
    t = _totals(market, acct)
    return t.borrow_value >= t.debt_value


def hf_wad(market: CometMarket, acct: CometAccount) -> int | None:
    """liquidation-weighted collateral value * 1e18 // borrow value (see the module doc)."""
    return None if acct.principal >= 0 else _totals(market, acct).hf_wad()


# ------------------------------------------------------------------ liquidation


def quote_collateral(market: CometMarket, asset: Address, base_amount: int) -> int:
    """Comet.quoteCollateral: collateral for ``base_amount`` at the store front price, the
    asset's price discounted by storeFrontPriceFactor * (1 - liquidationFactor)."""
    info = market.asset_info(asset)
    asset_price = _price(market, info.asset, True)
    discount = mul_factor(market.store_front_price_factor, FACTOR_SCALE - info.liquidation_factor)
    discounted = mul_factor(asset_price, FACTOR_SCALE - discount)
    base_price = _price(market, market.base_token, True)
    return base_price * base_amount * info.scale // discounted // market.base_scale


@dataclass(frozen=True, slots=True)
class AbsorbOutcome:
    """What ``absorb`` does to one account (its AbsorbCollateral / AbsorbDebt events)."""

    account: Address
    seized: tuple[tuple[Address, int, int], ...]  # (asset, collateralAbsorbed, usdValue)
    base_paid_out: int  # AbsorbDebt.basePaidOut
    usd_value: int  # AbsorbDebt.usdValue (price scale)
    old_balance: int
    new_balance: int  # >= 0: what the account keeps, as a supply
    new_principal: int
    market_after: CometMarket  # totals moved as absorb moves them


def absorb_outcome(market: CometMarket, acct: CometAccount) -> AbsorbOutcome:
    """Comet.absorbInternal for one account; ``market`` accrued to the absorb's timestamp
    (absorb accrues first). Raises CometRevert("NotLiquidatable") as the contract does."""
    if not is_liquidatable(market, acct):
        raise CometRevert("NotLiquidatable", acct.account)
    old_balance = present_value(market, acct.principal)
    base_price = _price(market, market.base_token, True)
    bits = assets_in(market, acct)
    delta_value, seized = 0, []
    for info in market.assets:
        if bits >> info.offset & 1:
            amount = _balance(acct, info.asset)
            value = mul_price(amount, _price(market, info.asset, True), info.scale)
            delta_value += mul_factor(value, info.liquidation_factor)
            seized.append((info.asset, amount, value))
    delta_balance = delta_value * market.base_scale // base_price  # divPrice
    new_balance = max(old_balance + delta_balance, 0)
    new_principal = principal_value(market, new_balance)
    # repayAndSupplyAmount(old < 0, new >= old)
    repay, supply = (new_principal - acct.principal, 0) if new_principal <= 0 \
        else (-acct.principal, new_principal)
    after = replace(market, total_borrow_base=market.total_borrow_base - repay,
                    total_supply_base=_checked(market.total_supply_base + supply, 104, "overflow"))
    paid = new_balance - old_balance
    return AbsorbOutcome(acct.account, tuple(seized), paid, mul_price(paid, base_price, market.base_scale),
                         old_balance, new_balance, new_principal, after)


# ------------------------------------------------------------------ what-ifs


def shock(market: CometMarket, changes: Mapping[Address, int]) -> CometMarket:
    """A copy of ``market`` with prices moved by signed bps (-2000 is -20%):
    new = old * (10000 + bps) // 10000. The base token can be moved too. bps below -10000
    raise ValueError; an asset the market does not price raises KeyError."""
    prices = dict(market.prices_e8)
    if len({a.lower() for a in changes}) != len(changes):
        raise ValueError("an asset is given twice")
    for asset, bps in changes.items():
        if type(bps) is not int or bps < -BPS:
            raise ValueError(f"price change must be an int >= -10000 bps, got {bps!r}")
        key = next((a for a in prices if a.lower() == asset.lower()), None)
        if key is None:
            raise KeyError(asset)
        prices[key] = prices[key] * (BPS + bps) // BPS
    return replace(market, prices_e8=prices)


def drop_to_liquidation_bps(market: CometMarket, acct: CometAccount,
                            asset: Address | None = None) -> int | None:
    """Smallest drop, in bps, of ``asset``'s price (default: the main collateral) that makes
    the account liquidatable (the price shocked as ``shock`` does, the others held). 0 when
    liquidatable already; None with no borrow, no collateral, or when even a 100% drop leaves
    it safe. A collateral's in closed form (its term is the only one the price moves:
    liquidatable <=> term(x) < r, solved as triggers.liquidation_prices does); equal to a
    bisection on the exact math (tests/unit/test_comet_math.py). The base token's price only
    moves the debt: its drop never liquidates (None); an asset the market does not price
    raises KeyError."""
    if acct.principal >= 0:
        return None
    t = _totals(market, acct, strict=False)
    if t.liquidation_value < t.debt_value:
        return 0
    info = t.main if asset is None else next(
        (i for i in market.assets if i.asset.lower() == asset.lower()), None)
    if info is None:
        if asset is not None and asset.lower() != market.base_token.lower():
            raise KeyError(asset)
        return None
    bal = _balance(acct, info.asset) if assets_in(market, acct) >> info.offset & 1 else 0
    price = _price(market, info.asset, False)
    term = mul_factor(mul_price(bal, price, info.scale), info.liquidate_collateral_factor)
    r = t.debt_value - (t.liquidation_value - term)  # liquidatable <=> term(x) < r
    if bal == 0 or info.liquidate_collateral_factor == 0 or r <= 0:
        return None  # the price does not reach the account's health, or never far enough
    v = -(-r * FACTOR_SCALE // info.liquidate_collateral_factor) - 1  # term(x) < r <=> mulPrice <= v
    edge = -(-(v + 1) * info.scale // bal) - 1  # the highest liquidating price; below ``price`` here
    # the smallest d with price * (10000 - d) // 10000 <= edge
    return BPS * (price - edge - 1) // price + 1


def position_from(market: CometMarket, acct: CometAccount,
                  thresholds: Thresholds = DEFAULT_THRESHOLDS, with_drop: bool = True) -> Position:
    """The model.Position of one account (protocol "compound_v3"): values in the price scale
    (1e8 USD), ``liquidation_threshold_bps`` = the value-weighted liquidateCollateralFactor.
    A price that is not positive (getPrice would revert) counts as 0 and makes it unreliable."""
    t = _totals(market, acct, strict=False)
    hf = None if acct.principal >= 0 else t.hf_wad()
    bits = assets_in(market, acct)
    held = {info.asset for info in market.assets if bits >> info.offset & 1}
    if acct.principal != 0:
        held.add(market.base_token)
    bad = {a.lower() for a in market.unreliable_assets}
    reliable = not any(a.lower() in bad or market.price(a) <= 0 for a in held)
    return Position(
        protocol="compound_v3", market=market.comet, account=acct.account, block=market.block,
        collateral_base=t.collateral_value, debt_base=t.debt_value, health_factor_wad=hf,
        liquidation_threshold_bps=t.liquidation_value * BPS // t.collateral_value if t.collateral_value else 0,
        status=classify(hf, thresholds), reliable=reliable,
        main_collateral=None if t.main is None else (t.main.symbol or t.main.asset),
        drop_to_liquidation_bps=drop_to_liquidation_bps(market, acct) if with_drop and reliable else None,
        assets=_shared(frozenset(held)))


_SETS: dict[frozenset[Address], frozenset[Address]] = {}


def _shared(assets: frozenset[Address]) -> frozenset[Address]:
    """One object per distinct asset set, shared by the positions holding it."""
    if len(_SETS) > 4096:
        _SETS.clear()
    return _SETS.setdefault(assets, assets)
