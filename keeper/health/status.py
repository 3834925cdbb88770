"""Health factor -> Status, with the thresholds as wad ints."""

from __future__ import annotations

from dataclasses import dataclass

from keeper.model import Status
from keeper.units import UINT256_MAX, WAD

# Aave V3 ValidationLogic.HEALTH_FACTOR_LIQUIDATION_THRESHOLD: liquidationCall needs HF < 1e18
HEALTH_FACTOR_LIQUIDATION_THRESHOLD = WAD


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Status bands, by health factor in wad:

        hf < liquidation_wad  -> LIQUIDATABLE  (Aave: liquidationCall needs HF < 1e18)
        hf < at_risk_wad      -> AT_RISK
        hf < watch_wad        -> WATCH
        otherwise, or no debt -> SAFE

    Equal neighbours are allowed and simply empty the band between them.
    """

    liquidation_wad: int = HEALTH_FACTOR_LIQUIDATION_THRESHOLD
    at_risk_wad: int = 1_100_000_000_000_000_000
    watch_wad: int = 1_500_000_000_000_000_000

    def __post_init__(self) -> None:
        for name in ("liquidation_wad", "at_risk_wad", "watch_wad"):
            value = getattr(self, name)
            if type(value) is not int:
                raise TypeError(f"{name} must be an int in wad, got {value!r}")
        if not 0 < self.liquidation_wad <= self.at_risk_wad <= self.watch_wad:
            raise ValueError(
                "thresholds must satisfy 0 < liquidation_wad <= at_risk_wad <= watch_wad, got "
                f"{self.liquidation_wad}, {self.at_risk_wad}, {self.watch_wad}"
            )


DEFAULT_THRESHOLDS = Thresholds()


def classify(hf_wad: int | None, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> Status:
    """None (no debt) or type(uint256).max -> SAFE; otherwise the first band hf falls below."""
    if hf_wad is None or hf_wad == UINT256_MAX:
        return Status.SAFE
    if hf_wad < thresholds.liquidation_wad:
        return Status.LIQUIDATABLE
    if hf_wad < thresholds.at_risk_wad:
        return Status.AT_RISK
    if hf_wad < thresholds.watch_wad:
        return Status.WATCH
    return Status.SAFE
