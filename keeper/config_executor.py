"""The ``[executor]`` table: how keeper signs and what it may spend. Amounts are ints in wei;
``*_gwei`` keys are exact decimal strings ("1.5"), never floats. Used by keeper.config (the
file) and keeper.executors (the sender)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from keeper.config_types import Seconds, _fail, config_path  # shared validators
from keeper.units import parse_fixed

GWEI = 10**9
ETHER = 10**18


def _no_float(value: Any) -> None:
    if isinstance(value, Decimal | float):
        raise _fail(f'{value} is a float, which is not exact: write it as a string, e.g. "{value}"')


def _gwei(value: Any) -> str:
    """A gas price in gwei: int or decimal string, at most 9 decimals (1 wei); kept as text."""
    _no_float(value)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _fail(f'must be a number of gwei written as a string, e.g. "1.5", got {value!r}')
    try:
        wei = parse_fixed(str(value), 9)
    except ValueError:
        raise _fail(f"not a decimal number of gwei (at most 9 decimals): {value!r}") from None
    if wei < 0:
        raise _fail(f"must not be negative, got {value!r}")
    return str(value).strip()


def _wei(value: Any) -> int:
    """An amount of native coin: an int is wei, a string is decimal ETH ("0.05"), both exact."""
    _no_float(value)
    if isinstance(value, int) and not isinstance(value, bool):
        wei = value
    elif isinstance(value, str):
        try:
            wei = parse_fixed(value, 18)
        except ValueError:
            raise _fail(f'not a decimal amount of ETH (e.g. "0.05"): {value!r}') from None
    else:
        raise _fail(f'must be wei as an integer or ETH as a string ("0.05"), got {value!r}')
    if wei <= 0:
        raise _fail(f"must be greater than 0, got {value!r}")
    return wei


GweiText = Annotated[str, BeforeValidator(_gwei)]
Wei = Annotated[int, BeforeValidator(_wei)]


class ExecutorConfig(BaseModel):
    """The ``[executor]`` table. ``mode`` (dry_run | live) is the top-level key of Config.

    The key comes from KEEPER_PRIVATE_KEY (Config.private_key) or from ``keystore`` +
    ``password_file`` (paths relative to the config file); never from this table.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    keystore: Path | None = None
    password_file: Path | None = None
    max_gas_price_gwei: GweiText = "200"  # maxFeePerGas never goes above this
    priority_fee_gwei: GweiText = "1"  # maxPriorityFeePerGas of a first attempt
    max_spend_per_tx_wei: Wei = ETHER // 10  # value + gas_limit * maxFeePerGas, per tx
    max_spend_per_day_wei: Wei = ETHER  # rolling 24 h: spent + in flight + this tx
    replace_after_blocks: int = Field(default=3, strict=True, ge=1)
    max_replacements: int = Field(default=5, strict=True, ge=0)
    receipt_timeout_s: Seconds = 180.0  # total wait for a receipt, replacements included
    poll_interval_s: Seconds = 1.0
    # +50% on the estimate: it runs at the pending block with no time elapsed, while the block
    # that mines it is later, and protocols that accrue interest per second (Morpho Blue, Comet,
    # Aave) then run their accrual too (measured: a Morpho liquidate ran out of gas at +20%)
    gas_margin_bps: int = Field(default=5000, strict=True, ge=0, le=100_000)
    min_gas_balance_wei: Wei | None = None  # below it: an operator alert (keeper.ops_alerts)

    @field_validator("keystore", "password_file", mode="before")
    @classmethod
    def _relative_to_config(cls, value: Any, info: ValidationInfo) -> Path | None:
        return None if value is None else config_path(value, info)

    @model_validator(mode="after")
    def _consistent(self) -> ExecutorConfig:
        if (self.keystore is None) != (self.password_file is None):
            missing = "password_file" if self.password_file is None else "keystore"
            raise _fail(f"keystore and password_file go together: {missing} is missing", missing)
        if self.priority_fee_wei > self.max_gas_price_wei:
            raise _fail("must not exceed max_gas_price_gwei", "priority_fee_gwei")
        return self

    @property
    def max_gas_price_wei(self) -> int:
        return parse_fixed(self.max_gas_price_gwei, 9)

    @property
    def priority_fee_wei(self) -> int:
        return parse_fixed(self.priority_fee_gwei, 9)
