"""Config of what keeper does about flagged positions: `[[protect]]` and `[liquidator]`.

```toml
[[protect]]
account = "0x..."
trigger_hf = "1.15"
target_hf = "1.40"
actions = ["repay:USDC", "supply:WETH"]

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
from keeper.units import format_fixed

_ACTION = re.compile(r"^(supply|repay):([A-Za-z0-9._\-]{1,32})$")


class ProtectConfig(_Model):
    """An account of the user's own: top it up below ``trigger_hf`` back to ``target_hf``."""

    account: Address
    trigger_hf: HealthFactor
    target_hf: HealthFactor
    actions: tuple[str, ...] = Field(min_length=1)
    market: str | None = None  # a market name; default: every configured market

    @field_validator("actions", mode="before")
    @classmethod
    def _actions(cls, value: Any) -> Any:
        if not isinstance(value, list | tuple):
            raise _fail('must be a list like ["repay:USDC", "supply:WETH"]')
        for v in value:
            if not isinstance(v, str) or not _ACTION.match(v.strip()):
                raise _fail(f"{v!r} is not an action: write supply:SYMBOL or repay:SYMBOL")
        return tuple(v.strip() for v in value)

    @model_validator(mode="after")
    def _ordered(self) -> ProtectConfig:
        if self.target_hf <= self.trigger_hf:
            raise _fail(f"must be greater than trigger_hf ({format_fixed(self.trigger_hf, 18)})",
                        field="target_hf")
        return self

    def parsed_actions(self) -> list[tuple[Literal["supply", "repay"], str]]:
        out = []
        for a in self.actions:
            kind, symbol = a.split(":")
            out.append((kind, symbol.upper()))  # type: ignore[arg-type]
        return out


class LiquidatorConfig(_Model):
    """Liquidate for profit: with the keeper's own capital, or capital-free through ``contract``
    (flash liquidity + a swap on ``[dex]``; the contract holds nothing)."""

    enabled: bool = False
    min_profit_base: int = Field(default=0, ge=0, strict=True)  # oracle base units (1e8 USD)
    gas_price_asset: str = "WETH"  # the reserve whose price prices gas (the chain's native coin)
    liquidation_gas: int = Field(default=600_000, gt=0, strict=True)  # estimate before simulation
    receive_a_token: bool = False
    contract: Address | None = None  # keeper's KeeperLiquidator (`keeper liquidator deploy`)
