"""Health factor -> Status bands."""

import pytest
from hypothesis import given, strategies as st

from keeper.health.status import DEFAULT_THRESHOLDS, Thresholds, classify
from keeper.model import Status
from keeper.units import UINT256_MAX, WAD


@pytest.mark.parametrize(
    "hf, status",
    [
        (None, Status.SAFE),  # no debt
        (UINT256_MAX, Status.SAFE),  # what the Pool returns with no debt
        (0, Status.LIQUIDATABLE),
        (WAD - 1, Status.LIQUIDATABLE),  # Aave: liquidationCall needs HF < 1e18
        (WAD, Status.AT_RISK),  # exactly 1.0 is NOT liquidatable
        (1_099_999_999_999_999_999, Status.AT_RISK),
        (1_100_000_000_000_000_000, Status.WATCH),
        (1_499_999_999_999_999_999, Status.WATCH),
        (1_500_000_000_000_000_000, Status.SAFE),
        (10 * WAD, Status.SAFE),
    ],
)
def test_default_bands(hf, status):
    assert classify(hf) is status
    assert classify(hf, DEFAULT_THRESHOLDS) is status


def test_default_values():
    t = Thresholds()
    assert (t.liquidation_wad, t.at_risk_wad, t.watch_wad) == (WAD, 11 * WAD // 10, 15 * WAD // 10)


def test_custom_thresholds():
    t = Thresholds(liquidation_wad=WAD, at_risk_wad=WAD * 2, watch_wad=WAD * 3)
    assert classify(WAD * 3 // 2, t) is Status.AT_RISK
    assert classify(WAD * 5 // 2, t) is Status.WATCH
    assert classify(WAD * 3, t) is Status.SAFE


def test_equal_thresholds_empty_a_band():
    t = Thresholds(WAD, WAD, 2 * WAD)
    assert classify(WAD - 1, t) is Status.LIQUIDATABLE
    assert classify(WAD, t) is Status.WATCH  # no AT_RISK band left


@pytest.mark.parametrize(
    "args",
    [
        (WAD, 2 * WAD, 15 * WAD // 10),  # watch below at_risk
        (2 * WAD, WAD, 3 * WAD),  # at_risk below liquidation
        (0, WAD, 2 * WAD),  # liquidation must be positive
    ],
)
def test_unordered_thresholds_are_refused(args):
    with pytest.raises(ValueError, match="liquidation_wad <= at_risk_wad <= watch_wad"):
        Thresholds(*args)


def test_non_int_thresholds_are_refused():
    with pytest.raises(TypeError):
        Thresholds(1.0, 2 * WAD, 3 * WAD)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Thresholds(True, 2 * WAD, 3 * WAD)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=UINT256_MAX), st.integers(min_value=0, max_value=UINT256_MAX))
def test_lower_hf_is_never_safer(a, b):
    lo, hi = sorted((a, b))
    assert classify(lo).rank >= classify(hi).rank
