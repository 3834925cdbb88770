"""[[protect]] and [liquidator]: exact thresholds, actions checked, errors name the key."""

import pytest

from keeper.config import load_config
from keeper.errors import ConfigError
from keeper.units import WAD

BASE = '[chain]\nrpc_url = "http://127.0.0.1:8545"\n\n[[markets]]\nprotocol = "aave_v3"\n' \
       'pool_addresses_provider = "0x2f39d218133AFaB8F2B819B1066c7E434Ad94E9e"\n'
ACCOUNT = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def load(tmp_path, extra: str):
    path = tmp_path / "k.toml"
    path.write_text(BASE + extra)
    return load_config(path, env={})


def test_protect_and_liquidator_minimal(tmp_path):
    cfg = load(tmp_path, f'\n[[protect]]\naccount = "{ACCOUNT}"\ntrigger_hf = "1.15"\n'
                         'target_hf = "1.40"\nactions = ["repay:USDC", "supply:WETH"]\n'
                         '\n[liquidator]\nenabled = true\nmin_profit_base = 0\n')
    (p,) = cfg.protect
    assert p.trigger_hf == 115 * WAD // 100 and p.target_hf == 140 * WAD // 100
    assert p.parsed_actions() == [("repay", "USDC"), ("supply", "WETH")]
    assert cfg.liquidator.enabled and cfg.liquidator.min_profit_base == 0
    assert cfg.mode == "dry_run"


def test_protect_target_must_exceed_trigger(tmp_path):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, f'\n[[protect]]\naccount = "{ACCOUNT}"\ntrigger_hf = "1.4"\n'
                       'target_hf = "1.2"\nactions = ["repay:USDC"]\n')
    assert "protect[0].target_hf" in str(e.value) and "greater than trigger_hf" in str(e.value)


def test_protect_bad_action(tmp_path):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, f'\n[[protect]]\naccount = "{ACCOUNT}"\ntrigger_hf = "1.1"\n'
                       'target_hf = "1.2"\nactions = ["borrow:USDC"]\n')
    assert "protect[0].actions" in str(e.value) and "supply:SYMBOL, repay:SYMBOL" in str(e.value)


def test_protect_deleverage_action_needs_the_dex(tmp_path):
    rule = (f'\n[[protect]]\naccount = "{ACCOUNT}"\ntrigger_hf = "1.1"\ntarget_hf = "1.2"\n'
            'actions = ["repay:USDC", "deleverage:WETH->USDC"]\nmax_slippage_bps = 50\n')
    with pytest.raises(ConfigError) as e:
        load(tmp_path, rule)
    assert "protect[0].actions" in str(e.value) and "[dex]" in str(e.value)
    dex = ('\n[dex]\nuniswap_v3_factory = "0x1F98431c8aD98523631AE4a59f267346ea31F984"\n'
           'uniswap_v3_router = "0xE592427A0AEce92De3Edee1F18E0157C05861564"\n'
           'uniswap_v3_quoter = "0x61fFE014bA17989E743c5F6cB21bF9697530B21e"\n')
    cfg = load(tmp_path, rule + dex)
    assert cfg.protect[0].parsed_actions() == [("repay", "USDC"), ("deleverage", "WETH->USDC")]
    assert cfg.protect[0].max_slippage_bps == 50
    with pytest.raises(ConfigError, match="not an action"):
        load(tmp_path, rule.replace("WETH->USDC", "WETH->") + dex)


def test_negative_min_profit(tmp_path):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, "\n[liquidator]\nmin_profit_base = -1\n")
    assert "liquidator.min_profit_base" in str(e.value)


def test_bid_share_bps_default_and_value(tmp_path):
    assert load(tmp_path, "").liquidator.bid_share_bps == 0
    assert load(tmp_path, "\n[liquidator]\nbid_share_bps = 250\n").liquidator.bid_share_bps == 250


@pytest.mark.parametrize("value", ["10000", "-1", '"1%"', "1.5"])
def test_bid_share_bps_refused_names_the_key(tmp_path, value):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, f"\n[liquidator]\nbid_share_bps = {value}\n")
    assert "liquidator.bid_share_bps" in str(e.value)


DEX = ('\n[dex]\nuniswap_v3_factory = "0x1F98431c8aD98523631AE4a59f267346ea31F984"\n'
       'uniswap_v3_router = "0xE592427A0AEce92De3Edee1F18E0157C05861564"\n'
       'uniswap_v3_quoter = "0x61fFE014bA17989E743c5F6cB21bF9697530B21e"\n')


def test_protect_stop_loss_needs_a_deleverage_selling_its_asset(tmp_path):
    dex = DEX
    rule = (f'\n[[protect]]\naccount = "{ACCOUNT}"\ntrigger_hf = "1.1"\ntarget_hf = "1.2"\n'
            'actions = ["deleverage:WETH->USDC"]\n')
    cfg = load(tmp_path, rule + 'close_below_price = { asset = "weth", usd = "1800.5" }\n' + dex)
    assert cfg.protect[0].close_below() == ("WETH", 180_050_000_000)
    with pytest.raises(ConfigError, match="close_below_price.*deleverage:WBTC->DEBT"):
        load(tmp_path, rule + 'close_below_price = { asset = "WBTC", usd = "1" }\n' + dex)
    with pytest.raises(ConfigError, match="positive USD price"):
        load(tmp_path, rule + 'close_below_price = { asset = "WETH", usd = "-1" }\n' + dex)


def test_protect_boost_above_hf_is_above_the_target_and_needs_a_deleverage_pair(tmp_path):
    from keeper.decide import policy_from

    dex = DEX
    rule = (f'\n[[protect]]\naccount = "{ACCOUNT}"\ntrigger_hf = "1.1"\ntarget_hf = "1.3"\n'
            'actions = ["deleverage:WETH->USDC"]\n')
    cfg = load(tmp_path, rule + 'boost_above_hf = "1.45"\n' + dex)
    assert policy_from(cfg).protect[ACCOUNT.lower()].boost_above_wad == 145 * WAD // 100
    assert policy_from(load(tmp_path, rule + dex)).protect[ACCOUNT.lower()].boost_above_wad is None
    with pytest.raises(ConfigError, match="protect\\[0\\].boost_above_hf.*greater than target_hf"):
        load(tmp_path, rule + 'boost_above_hf = "1.3"\n' + dex)
    with pytest.raises(ConfigError, match="protect\\[0\\].boost_above_hf.*deleverage:COLLATERAL->DEBT"):
        load(tmp_path, rule.replace("deleverage:WETH->USDC", "repay:USDC") + 'boost_above_hf = "1.5"\n')
