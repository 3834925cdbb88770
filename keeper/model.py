"""Plain values that flow between the layers. Frozen, int money, scale in the name.

chain/ + protocols/ read these from a node; health/ turns them into numbers;
decide.py (later) turns reports into decisions; executors act on decisions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

Address = str  # EIP-55 checksum address


class Status(str, Enum):
    """Worst-last ordering: compare with ``Status.rank``."""

    SAFE = "safe"
    WATCH = "watch"
    AT_RISK = "at_risk"
    LIQUIDATABLE = "liquidatable"

    @property
    def rank(self) -> int:
        return _STATUS_RANK[self]


_STATUS_RANK = {Status.SAFE: 0, Status.WATCH: 1, Status.AT_RISK: 2, Status.LIQUIDATABLE: 3}


@dataclass(frozen=True, slots=True)
class Position:
    """One monitored position after the health math: what scan prints and run logs."""

    protocol: str
    market: Address
    account: Address
    block: int
    collateral_base: int
    debt_base: int
    health_factor_wad: int | None  # None when there is no debt
    liquidation_threshold_bps: int
    status: Status
    reliable: bool  # False when a feed it depends on is stale, zero or negative
    main_collateral: str | None = None  # symbol of the largest collateral
    drop_to_liquidation_bps: int | None = None  # price drop of main collateral -> HF < 1
    assets: frozenset[Address] = frozenset()  # every asset it holds or owes
    base_decimals: int = 8  # decimals of collateral_base / debt_base (1e8 USD on Aave V3;
    # the loan token's on Morpho Blue, the base token's on Compound V3)
