"""Aave V3 values as read at a block: reserves, e-mode categories, accounts, the Pool's own
account view. Frozen, int money, scale in the name."""

from __future__ import annotations

from dataclasses import dataclass, field

from keeper.model import Address


@dataclass(frozen=True, slots=True)
class ReserveConfig:
    """Aave V3 ReserveConfigurationMap, decoded (see health.aave_v3.decode_reserve_config)."""

    ltv_bps: int
    liquidation_threshold_bps: int
    liquidation_bonus_bps: int  # 10500 = 5% bonus
    decimals: int
    active: bool
    frozen: bool
    borrowing_enabled: bool
    stable_borrowing_enabled: bool
    paused: bool
    borrowable_in_isolation: bool
    siloed_borrowing: bool
    flashloan_enabled: bool
    reserve_factor_bps: int
    borrow_cap: int
    supply_cap: int
    debt_ceiling: int
    liquidation_protocol_fee_bps: int
    emode_category: int


@dataclass(frozen=True, slots=True)
class Reserve:
    """One Aave V3 reserve as read at a block: all the math needs, nothing more."""

    id: int  # position in Pool.getReservesList() == bit pair in the user configuration
    asset: Address
    symbol: str
    config: ReserveConfig
    a_token: Address
    stable_debt_token: Address
    variable_debt_token: Address
    liquidity_index_ray: int
    variable_borrow_index_ray: int
    current_liquidity_rate_ray: int
    current_variable_borrow_rate_ray: int
    last_update_timestamp: int
    price_base: int  # AaveOracle.getAssetPrice, in the oracle's base unit (1e8 for USD)
    price_source: Address  # the Chainlink-style feed behind the oracle ("" if none)
    liquidation_grace_until: int = 0  # Aave 3.1+: Pool.getLiquidationGracePeriod (0 before 3.1)
    virtual_underlying: int | None = None  # Aave 3.4+: Pool.getVirtualUnderlyingBalance (None: not read)


@dataclass(frozen=True, slots=True)
class EModeCategory:
    id: int
    ltv_bps: int
    liquidation_threshold_bps: int
    liquidation_bonus_bps: int
    price_source: Address  # zero address when the category has no price of its own
    price_base: int  # 0 when price_source is the zero address
    label: str
    # Aave 3.2+: per-asset bitmaps by reserve id (3.0.x: membership is the reserve's category)
    collateral_bitmap: int = 0
    borrowable_bitmap: int = 0
    ltvzero_bitmap: int = 0


@dataclass(frozen=True, slots=True)
class AaveMarketState:
    """One Aave V3 market at one pinned block."""

    pool: Address
    block: int
    timestamp: int
    base_currency_unit: int  # AaveOracle.BASE_CURRENCY_UNIT (1e8 for a USD oracle)
    reserves: tuple[Reserve, ...]  # index == Reserve.id
    emode_categories: dict[int, EModeCategory] = field(default_factory=dict)
    unreliable_assets: frozenset[Address] = frozenset()  # stale / zero / negative feeds
    version: tuple[int, int] = (3, 0)  # Aave V3 math in force: (3, 0) for 3.0.x, (3, 6) for 3.2+
    revision: int = 0  # Pool.POOL_REVISION() when the Pool has it (3.6: 10), else 0

    def by_asset(self, asset: Address) -> Reserve:
        for r in self.reserves:
            if r.asset.lower() == asset.lower():
                return r
        raise KeyError(asset)

    def by_symbol(self, symbol: str) -> Reserve:
        for r in self.reserves:
            if r.symbol.upper() == symbol.upper():
                return r
        raise KeyError(symbol)


@dataclass(frozen=True, slots=True)
class UserReserve:
    """One reserve of one Aave account: raw balances as the tokens store them."""

    reserve_id: int
    scaled_a_token: int  # AToken.scaledBalanceOf
    scaled_variable_debt: int  # VariableDebtToken.scaledBalanceOf
    stable_debt: int  # StableDebtToken.balanceOf at the block (0 when none)


@dataclass(frozen=True, slots=True)
class AaveAccount:
    """Raw on-chain state of one Aave V3 account at a block."""

    account: Address
    user_config: int  # UserConfigurationMap bitmap
    emode: int
    reserves: tuple[UserReserve, ...]  # only reserves whose bits are set in user_config


@dataclass(frozen=True, slots=True)
class AccountData:
    """The six numbers of Pool.getUserAccountData (base currency units, bps, wad)."""

    total_collateral_base: int
    total_debt_base: int
    available_borrows_base: int
    liquidation_threshold_bps: int
    ltv_bps: int
    health_factor_wad: int  # UINT256_MAX when there is no debt
