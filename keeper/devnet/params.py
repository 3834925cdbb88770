"""The devnet market's parameters: reserves, interest-rate strategies, e-mode. Plain values.

Risk parameters follow @aave/deploy-v3's ``markets/aave/reservesConfigs.js`` where it has
them (WETH 80/82.5/105, WBTC 70/75/110); USDC and DAI use values close to Aave's Ethereum
market. All percentages are bps (10000 = 100%), prices are USD with 8 decimals.
"""

from __future__ import annotations

from dataclasses import dataclass

RAY = 10**27
PRICE_DECIMALS = 8  # AaveOracle BASE_CURRENCY_UNIT = 1e8 (USD)
MARKET_ID = "keeper-devnet"


@dataclass(frozen=True, slots=True)
class RateStrategy:
    """DefaultReserveInterestRateStrategy constructor arguments (rays)."""

    name: str
    optimal_usage_ratio: int
    base_variable_borrow_rate: int
    variable_rate_slope1: int
    variable_rate_slope2: int
    stable_rate_slope1: int
    stable_rate_slope2: int
    base_stable_rate_offset: int
    stable_rate_excess_offset: int
    optimal_stable_to_total_debt_ratio: int

    def args(self) -> list[int]:
        return [
            self.optimal_usage_ratio,
            self.base_variable_borrow_rate,
            self.variable_rate_slope1,
            self.variable_rate_slope2,
            self.stable_rate_slope1,
            self.stable_rate_slope2,
            self.base_stable_rate_offset,
            self.stable_rate_excess_offset,
            self.optimal_stable_to_total_debt_ratio,
        ]


def _ray(percent_e2: int) -> int:
    """Ray from hundredths of a percent: 450 -> 4.50% -> 0.045e27."""
    return percent_e2 * RAY // 10_000


# @aave/deploy-v3 markets/aave/rateStrategies.js
VOLATILE_ONE = RateStrategy(
    "rateStrategyVolatileOne", _ray(4500), 0, _ray(700), _ray(30000),
    _ray(700), _ray(30000), _ray(200), _ray(500), _ray(2000),
)  # fmt: skip
STABLE_ONE = RateStrategy(
    "rateStrategyStableOne", _ray(9000), 0, _ray(400), _ray(6000),
    _ray(50), _ray(6000), _ray(100), _ray(800), _ray(2000),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ReserveSpec:
    symbol: str
    name: str
    decimals: int
    price_e8: int
    ltv_bps: int
    liquidation_threshold_bps: int
    liquidation_bonus_bps: int  # 10500 = liquidators get 5% bonus
    reserve_factor_bps: int
    liquidation_protocol_fee_bps: int
    supply_cap: int  # whole tokens, 0 = none
    borrow_cap: int  # whole tokens, 0 = none
    strategy: RateStrategy
    emode_category: int = 0


STABLE_EMODE = 1


@dataclass(frozen=True, slots=True)
class EModeSpec:
    id: int
    ltv_bps: int
    liquidation_threshold_bps: int
    liquidation_bonus_bps: int
    label: str


EMODES = (EModeSpec(STABLE_EMODE, 9300, 9500, 10100, "Stablecoins"),)

RESERVES = (
    ReserveSpec("WETH", "Wrapped Ether", 18, 2_000 * 10**8, 8000, 8250, 10500, 1500, 1000,
                10_000_000, 5_000_000, VOLATILE_ONE),
    ReserveSpec("WBTC", "Wrapped BTC", 8, 60_000 * 10**8, 7000, 7500, 11000, 2000, 1000,
                500_000, 250_000, VOLATILE_ONE),
    ReserveSpec("USDC", "USD Coin", 6, 1 * 10**8, 7700, 8000, 10450, 1000, 1000,
                20_000_000_000, 18_000_000_000, STABLE_ONE, STABLE_EMODE),
    ReserveSpec("DAI", "Dai Stablecoin", 18, 1 * 10**8, 7500, 8000, 10500, 1000, 1000,
                20_000_000_000, 18_000_000_000, STABLE_ONE, STABLE_EMODE),
)  # fmt: skip

FLASHLOAN_PREMIUM_TOTAL_BPS = 5
FLASHLOAN_PREMIUM_PROTOCOL_BPS = 4


def spec(symbol: str) -> ReserveSpec:
    for r in RESERVES:
        if r.symbol == symbol:
            return r
    raise KeyError(symbol)
