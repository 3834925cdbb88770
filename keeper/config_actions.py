"""Config of what keeper does about flagged positions: `[[protect]]` and `[liquidator]`.

```toml
[[protect]]
account = "0x..."
trigger_hf = "1.15"
target_hf = "1.40"
actions = ["repay:USDC", "supply:WETH", "deleverage:WETH->USDC"]
contract = "0x..."        # KeeperProtection (`keeper protect setup` deploys one when unset)
max_slippage_bps = 100    # a deleverage's swap may pay at most this much below the oracle
boost_above_hf = "1.80"   # optional: above it, borrow more and buy collateral, down to target_hf

[liquidator]
enabled = true
min_profit_base = 0
```
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from keeper.config_types import Address, HealthFactor, _fail, _Model
from keeper.units import format_fixed, parse_fixed

_ACTION = re.compile(r"^(supply|repay):([A-Za-z0-9._\-]{1,32})$"
                     r"|^deleverage:([A-Za-z0-9._\-]{1,32})->([A-Za-z0-9._\-]{1,32})$")


class ClosePrice(_Model):
    """``close_below_price = { asset = "WETH", usd = "1800" }``: at or below this oracle price,
    repay all of the deleverage's debt from the collateral; the rest stays the borrower's."""

    asset: str
    usd: str

    @field_validator("usd")
    @classmethod
    def _usd(cls, value: str) -> str:
        try:
            if parse_fixed(value, 8) <= 0:
                raise ValueError
        except ValueError:
            raise _fail(f"not a positive USD price with at most 8 decimals: {value!r}") from None
        return value


class ProtectConfig(_Model):
    """An account of the user's own: top it up below ``trigger_hf`` back to ``target_hf``."""

    account: Address
    trigger_hf: HealthFactor
    target_hf: HealthFactor
    actions: tuple[str, ...] = Field(min_length=1)
    market: str | None = None  # a market name; default: every configured market
    contract: Address | None = None  # KeeperProtection, for deleverage:COLLATERAL->DEBT actions
    max_slippage_bps: int = Field(default=100, ge=0, lt=10_000, strict=True)
    close_below_price: ClosePrice | None = None  # stop-loss: repay the debt from collateral
    boost_above_hf: HealthFactor | None = None  # re-leverage to target_hf above this (Aave V3)

    @field_validator("actions", mode="before")
    @classmethod
    def _actions(cls, value: Any) -> Any:
        if not isinstance(value, list | tuple):
            raise _fail('must be a list like ["repay:USDC", "supply:WETH", "deleverage:WETH->USDC"]')
        for v in value:
            if not isinstance(v, str) or not _ACTION.match(v.strip()):
                raise _fail(f"{v!r} is not an action: write supply:SYMBOL, repay:SYMBOL or "
                            f"deleverage:COLLATERAL->DEBT")
        return tuple(v.strip() for v in value)

    @model_validator(mode="after")
    def _ordered(self) -> ProtectConfig:
        if self.target_hf <= self.trigger_hf:
            raise _fail(f"must be greater than trigger_hf ({format_fixed(self.trigger_hf, 18)})",
                        field="target_hf")
        if self.boost_above_hf is not None and self.boost_above_hf <= self.target_hf:
            raise _fail(f"must be greater than target_hf ({format_fixed(self.target_hf, 18)})",
                        field="boost_above_hf")
        if self.boost_above_hf is not None and not any(k == "deleverage" for k, _ in self.parsed_actions()):
            raise _fail("a boost buys the collateral of a deleverage:COLLATERAL->DEBT action with its debt: "
                        "add one", field="boost_above_hf")
        close = self.close_below_price
        if close is not None and not any(k == "deleverage" and s.split("->")[0] == close.asset.upper()
                                         for k, s in self.parsed_actions()):
            raise _fail(f"a stop-loss on {close.asset} sells it: add a deleverage:{close.asset.upper()}->DEBT "
                        "action", field="close_below_price")
        return self

    def close_below(self) -> tuple[str, int] | None:
        c = self.close_below_price
        return None if c is None else (c.asset.upper(), parse_fixed(c.usd, 8))

    def parsed_actions(self) -> list[tuple[Literal["supply", "repay", "deleverage"], str]]:
        """("supply" | "repay", SYMBOL) or ("deleverage", "COLLATERAL->DEBT"), upper-cased."""
        out = []
        for a in self.actions:
            kind, symbol = a.split(":")
            out.append((kind, symbol.upper()))  # type: ignore[arg-type]
        return out


class LiquidatorConfig(_Model):
    """Liquidate for profit: with the keeper's own capital, or capital-free through ``contract``
    (flash liquidity + a swap on ``[dex]``; the contract holds nothing). Profit is counted in
    USD with 8 decimals on every protocol: ``min_profit_usd = "2.50"`` (exact), or
    ``min_profit_base`` in those units directly (250000000)."""

    enabled: bool = False
    min_profit_base: int = Field(default=0, ge=0, strict=True)  # USD e8 (1e8 = $1)
    min_profit_usd: str | None = None  # exact decimal string; wins over min_profit_base
    gas_price_asset: str = "WETH"  # the gas coin's wrapped token (same as [prices] gas_coin)
    liquidation_gas: int = Field(default=600_000, gt=0, strict=True)  # estimate before simulation
    receive_a_token: bool = False  # Aave V3: take the collateral as aTokens
    contract: Address | None = None  # keeper's KeeperLiquidator (`keeper liquidator deploy`)
    # share of a liquidation's expected profit bid as priority fee (keeper.executors.fees);
    # 0: the [executor] priority_fee_gwei alone. Below 10000: a bid of it all leaves no profit.
    bid_share_bps: int = Field(default=0, ge=0, lt=10_000, strict=True)

    @field_validator("min_profit_usd")
    @classmethod
    def _usd(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                if parse_fixed(value, 8) < 0:
                    raise ValueError
            except ValueError:
                raise _fail(f'not a non-negative USD amount with at most 8 decimals: {value!r}') from None
        return value

    @property
    def min_profit_usd_e8(self) -> int:
        return self.min_profit_base if self.min_profit_usd is None else parse_fixed(self.min_profit_usd, 8)


class PricesConfig(_Model):
    """USD prices beside the markets' own oracles. ``feeds``: symbol -> a Chainlink-style feed
    (``latestRoundData``, ``decimals``) in USD, e.g. for the gas coin on a Morpho-only keeper."""

    gas_coin: str | None = None  # symbol of the gas coin's wrapped token (default: liquidator's)
    feeds: dict[str, Address] = Field(default_factory=dict)

    @field_validator("feeds")
    @classmethod
    def _symbols(cls, value: dict[str, str]) -> dict[str, str]:
        if len({s.upper() for s in value}) < len(value):
            raise _fail("a symbol is given twice (symbols ignore case)")
        return {s.upper(): a for s, a in value.items()}
