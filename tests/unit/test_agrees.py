"""``agrees``: keeper's math against the protocol's own view; a difference of one wei (Aave) or
of the verdict (Morpho Blue, Compound V3) is a mismatch that `scan --check` reports."""

from dataclasses import replace

from keeper.model import ContractView, Status
from keeper.protocols.aave_v3.adapter import AaveV3
from keeper.protocols.aave_v3.health import position_from
from keeper.protocols.compound_v3.adapter import CompoundV3
from keeper.protocols.morpho_blue.adapter import MorphoMarketAdapter
from keeper.units import WAD
from tests.unit.test_health_builders import POOL, USDC, USER, WETH, account, market

M = market(WETH, USDC)


def test_aave_agrees_to_the_wei_only():
    pos = position_from(M, account({WETH: 10 * 10**18}, {USDC: 17_000 * 10**6}))
    a = AaveV3(None, None, None, POOL, "m")
    view = ContractView(USER, pos.health_factor_wad < WAD, pos.health_factor_wad, pos.collateral_base, pos.debt_base)
    assert a.agrees(pos, view)
    assert not a.agrees(pos, replace(view, health_factor_wad=pos.health_factor_wad + 1))
    assert not a.agrees(pos, replace(view, debt=pos.debt_base - 1))


def test_morpho_and_comet_agree_on_the_verdict():
    pos = position_from(M, account({WETH: 10 * 10**18}, {USDC: 17_000 * 10**6}))
    assert pos.status == Status.LIQUIDATABLE
    for adapter in (MorphoMarketAdapter.__new__(MorphoMarketAdapter), CompoundV3.__new__(CompoundV3)):
        assert adapter.agrees(pos, ContractView(USER, True))
        assert not adapter.agrees(pos, ContractView(USER, False))
