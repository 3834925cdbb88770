"""`[dex]` and `[liquidator] contract`: validated at start-up like every other table."""

from __future__ import annotations

import pytest

from keeper.errors import ConfigError
from tests.unit.test_config import MINIMAL, error, load

FACTORY = "0x1F98431c8aD98523631AE4a59f267346ea31F984"
ROUTER = "0xE592427A0AEce92De3Edee1F18E0157C05861564"
QUOTER = "0x61fFE014bA17989E743c5F6cB21bF9697530B21e"
DEX = f'\n[dex]\nuniswap_v3_factory = "{FACTORY}"\nuniswap_v3_router = "{ROUTER}"\nuniswap_v3_quoter = "{QUOTER}"\n'
CONTRACT = "0x8464135c8F25Da09e49BC8782676a84730C318bC"


def test_dex_and_liquidator_contract(tmp_path):
    cfg = load(tmp_path, MINIMAL + DEX + f'\n[liquidator]\ncontract = "{CONTRACT.lower()}"\n')
    assert (cfg.dex.uniswap_v3_factory, cfg.dex.uniswap_v3_router, cfg.dex.uniswap_v3_quoter) == (FACTORY, ROUTER, QUOTER)
    assert cfg.liquidator.contract == CONTRACT  # checksummed
    assert cfg.dex.configured


def test_defaults_are_unset(tmp_path):
    cfg = load(tmp_path, MINIMAL)
    assert cfg.liquidator.contract is None and not cfg.dex.configured


def test_dex_is_all_or_nothing(tmp_path):
    e = error(tmp_path, MINIMAL + f'\n[dex]\nuniswap_v3_factory = "{FACTORY}"\n')
    assert "dex.uniswap_v3_router" in str(e) and "none" in str(e)


@pytest.mark.parametrize("bad", ['"0x1234"', '"0x0000000000000000000000000000000000000000"', "7"])
def test_bad_dex_address_is_named(tmp_path, bad):
    e = error(tmp_path, MINIMAL + DEX.replace(f'"{ROUTER}"', bad))
    assert "dex.uniswap_v3_router" in str(e)


def test_contract_needs_the_dex(tmp_path):
    e = error(tmp_path, MINIMAL + f'\n[liquidator]\ncontract = "{CONTRACT}"\n')
    assert "liquidator.contract" in str(e) and "[dex]" in str(e)


def test_misplaced_dex_key_points_to_its_table(tmp_path):
    with pytest.raises(ConfigError, match=r"\[dex\]"):
        load(tmp_path, MINIMAL.replace("[chain]", f'[chain]\nuniswap_v3_router = "{ROUTER}"\n'))
