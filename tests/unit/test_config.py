"""keeper.config: one test per kind of bad input, each checking its own message."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from keeper.config import Config, Secret, describe, load_config
from keeper.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
PROVIDER = "0x2f39d218133AFaB8F2B819B1066c7E434Ad94E9e"
PRIVATE_KEY = "0x" + "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
ALCHEMY = "https://eth-mainnet.g.alchemy.com/v2/AbCdEfGh0123456789IjKlMnOp"

MINIMAL = f"""
[chain]
rpc_url = "http://127.0.0.1:8545"

[[markets]]
protocol = "aave_v3"
pool_addresses_provider = "{PROVIDER}"
"""


def write(tmp_path: Path, text: str, name: str = "keeper.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Config:
    return load_config(write(tmp_path, text), env=env or {})


def error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, env)
    assert info.value.exit_code == 2
    assert info.value.path == str(tmp_path / "keeper.toml")
    assert str(info.value).startswith(str(tmp_path / "keeper.toml"))
    return info.value


# --- good input ------------------------------------------------------------


def test_minimal_file_gets_the_defaults(tmp_path):
    cfg = load(tmp_path, MINIMAL)
    assert cfg.mode == "dry_run"
    assert cfg.chain.rpc_url.reveal() == "http://127.0.0.1:8545"
    assert cfg.chain.chain_id is None
    assert cfg.chain.multicall3 == "0xcA11bde05977b3631167028862bE2a173976CA11"
    assert (cfg.chain.max_calls_per_multicall, cfg.chain.logs_max_range) == (2000, 10_000)
    assert (cfg.chain.request_timeout_s, cfg.chain.block_poll_interval_s) == (10.0, 0.5)
    assert (cfg.monitor.scan_interval_s, cfg.monitor.index_interval_s) == (15.0, 60.0)
    assert cfg.monitor.watch_hf == 1_500_000_000_000_000_000
    assert cfg.monitor.at_risk_hf == 1_100_000_000_000_000_000
    assert cfg.monitor.liquidation_hf == 1_000_000_000_000_000_000
    assert cfg.monitor.price_heartbeat_s == 86_400
    assert cfg.store.path == tmp_path.resolve() / "keeper.sqlite"
    assert cfg.private_key is None
    (market,) = cfg.markets
    assert (market.protocol, market.name, market.start_block) == ("aave_v3", "aave_v3-0", 0)


def test_thresholds_are_exact_wads_from_strings_and_ints(tmp_path):
    cfg = load(tmp_path, MINIMAL + '[monitor]\nwatch_hf = 2\nat_risk_hf = "1.000000000000000001"\n'
               'liquidation_hf = "1"\n')  # fmt: skip
    assert cfg.monitor.watch_hf == 2 * 10**18
    assert cfg.monitor.at_risk_hf == 10**18 + 1
    assert cfg.monitor.liquidation_hf == 10**18


def test_address_in_any_case_is_checksummed(tmp_path):
    cfg = load(tmp_path, MINIMAL.replace(PROVIDER, PROVIDER.lower()))
    assert cfg.markets[0].pool_addresses_provider == PROVIDER
    cfg = load(tmp_path, MINIMAL.replace(PROVIDER, "0x" + PROVIDER[2:].upper()))
    assert cfg.markets[0].pool_addresses_provider == PROVIDER


def test_seconds_accept_strings_and_toml_floats(tmp_path):
    cfg = load(tmp_path, MINIMAL.replace("[chain]", '[chain]\nblock_poll_interval_s = "0.25"\n'
               "request_timeout_s = 2.5"))  # fmt: skip
    assert (cfg.chain.block_poll_interval_s, cfg.chain.request_timeout_s) == (0.25, 2.5)


def test_heartbeats_by_symbol_ignore_case(tmp_path):
    cfg = load(tmp_path, MINIMAL + "[monitor]\nheartbeats = { WETH = 3600, usdc = 60 }\n")
    assert cfg.monitor.heartbeats == {"WETH": 3600, "usdc": 60}  # as written
    assert cfg.monitor.heartbeat_for("weth") == 3600
    assert cfg.monitor.heartbeat_for("USDC") == 60
    assert cfg.monitor.heartbeat_for("DAI") == 86_400


def test_store_path_is_relative_to_the_config_file(tmp_path, monkeypatch):
    monkeypatch.chdir("/")
    sub = tmp_path / "etc"
    sub.mkdir()
    cfg = load_config(write(sub, MINIMAL + '[store]\npath = "data/k.sqlite"\n'), env={})
    assert cfg.store.path == sub.resolve() / "data" / "k.sqlite"


def test_env_rpc_url_overrides_the_file_and_is_never_shown(tmp_path):
    cfg = load(tmp_path, MINIMAL, env={"KEEPER_RPC_URL": ALCHEMY})
    assert cfg.chain.rpc_url.reveal() == ALCHEMY
    assert cfg.chain.rpc_url.get_secret_value() == ALCHEMY
    for shown in (str(cfg), repr(cfg), str(cfg.chain.rpc_url), repr(cfg.chain.rpc_url),
                  str(describe(cfg)), cfg.model_dump_json()):  # fmt: skip
        assert "AbCdEfGh0123456789IjKlMnOp" not in shown
    assert describe(cfg)["rpc_url"] == "https://eth-mainnet.g.alchemy.com/***"


def test_env_rpc_url_alone_is_enough(tmp_path):
    text = MINIMAL.replace('rpc_url = "http://127.0.0.1:8545"', "chain_id = 1")
    cfg = load(tmp_path, text, env={"KEEPER_RPC_URL": "wss://node.example:8546"})
    assert cfg.chain.rpc_url.reveal() == "wss://node.example:8546"


def test_private_key_comes_from_the_environment(tmp_path):
    cfg = load(tmp_path, MINIMAL, env={"KEEPER_PRIVATE_KEY": PRIVATE_KEY[2:]})
    assert isinstance(cfg.private_key, Secret)
    assert cfg.private_key.reveal() == PRIVATE_KEY  # 0x added
    assert PRIVATE_KEY[2:] not in repr(cfg) + str(describe(cfg))
    assert set(cfg.secrets()) == {"http://127.0.0.1:8545", PRIVATE_KEY}


def test_environment_is_read_by_default(tmp_path, monkeypatch):
    monkeypatch.setitem(os.environ, "KEEPER_RPC_URL", "https://from-env.example")
    cfg = load_config(write(tmp_path, MINIMAL))
    assert cfg.chain.rpc_url.reveal() == "https://from-env.example"


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.toml")), ids=lambda p: p.name)
def test_every_example_config_validates(path):
    cfg = load_config(path, env={"KEEPER_RPC_URL": "https://rpc.example/v2/key"})
    assert cfg.mode == "dry_run"
    assert cfg.markets


def test_example_configs_exist():
    names = {p.name for p in CONFIG_DIR.glob("*.toml")}
    assert {"devnet.toml", "aave-v3-ethereum.toml", "aave-v3-sepolia.toml"} <= names


# --- bad input: one kind each -----------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml", env={})
    assert str(info.value) == f"{tmp_path / 'nope.toml'}: config file not found"
    assert info.value.exit_code == 2


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path, env={})  # a directory


def test_invalid_toml_names_the_line(tmp_path):
    e = error(tmp_path, '[chain]\nrpc_url = "http://x"\nchain_id = = 1\n')
    assert "invalid TOML" in str(e)
    assert "line 3" in str(e)


def test_missing_rpc_url_mentions_the_environment(tmp_path):
    e = error(tmp_path, MINIMAL.replace('rpc_url = "http://127.0.0.1:8545"', "chain_id = 1"))
    assert e.key == "chain.rpc_url"
    assert "missing required key (or set KEEPER_RPC_URL" in str(e)


def test_missing_chain_table(tmp_path):
    e = error(tmp_path, MINIMAL.replace('[chain]\nrpc_url = "http://127.0.0.1:8545"', ""))
    assert e.key == "chain"
    assert "missing required key" in str(e)


def test_missing_pool_addresses_provider(tmp_path):
    e = error(tmp_path, MINIMAL.replace(f'pool_addresses_provider = "{PROVIDER}"', ""))
    assert str(e).endswith("markets[0].pool_addresses_provider: missing required key")


def test_no_markets(tmp_path):
    e = error(tmp_path, '[chain]\nrpc_url = "http://127.0.0.1:8545"\n')
    assert e.key == "markets"
    assert "missing required key" in str(e)


def test_empty_markets(tmp_path):
    e = error(tmp_path, 'markets = []\n[chain]\nrpc_url = "http://127.0.0.1:8545"\n')
    assert e.key == "markets"
    assert "at least one [[markets]] table is required" in str(e)


def test_unknown_key_suggests_the_right_one(tmp_path):
    e = error(tmp_path, MINIMAL.replace("rpc_url =", "rpc_ur ="))
    assert "chain.rpc_ur: unknown key 'rpc_ur' (did you mean 'rpc_url'?)" in str(e)


def test_unknown_key_in_a_market(tmp_path):
    e = error(tmp_path, MINIMAL + "start_blok = 5\n")
    assert e.key == "markets[0].start_blok"
    assert "unknown key 'start_blok' (did you mean 'start_block'?)" in str(e)


def test_misplaced_key_says_where_it_belongs(tmp_path):
    e = error(tmp_path, 'watch_hf = "1.5"\n' + MINIMAL)
    assert e.key == "watch_hf"
    assert "unknown key 'watch_hf' here (it belongs in [monitor])" in str(e)


def test_bad_address(tmp_path):
    e = error(tmp_path, MINIMAL.replace(PROVIDER, "0x12"))
    assert e.key == "markets[0].pool_addresses_provider"
    assert "not a valid address: '0x12'" in str(e)


def test_bad_hex_in_address(tmp_path):
    e = error(tmp_path, MINIMAL.replace(PROVIDER, "0x" + "g" * 40))
    assert "not a valid address" in str(e)


def test_mixed_case_address_with_wrong_checksum(tmp_path):
    wrong = PROVIDER[:-1] + "E"  # last letter 'e' -> 'E' breaks EIP-55
    e = error(tmp_path, MINIMAL.replace(PROVIDER, wrong))
    assert e.key == "markets[0].pool_addresses_provider"
    assert "wrong EIP-55 checksum" in str(e)


def test_zero_pool_addresses_provider(tmp_path):
    e = error(tmp_path, MINIMAL.replace(PROVIDER, "0x" + "0" * 40))
    assert "must not be the zero address" in str(e)


def test_bad_multicall3_address(tmp_path):
    e = error(tmp_path, MINIMAL.replace("[chain]", '[chain]\nmulticall3 = "0xcA11"'))
    assert e.key == "chain.multicall3"
    assert "not a valid address: '0xcA11'" in str(e)


def test_float_threshold_is_refused(tmp_path):
    e = error(tmp_path, MINIMAL + "[monitor]\nwatch_hf = 1.5\n")
    assert e.key == "monitor.watch_hf"
    assert "1.5 is a float, which is not exact" in str(e)
    assert 'write it as a string, e.g. "1.5"' in str(e)


def test_threshold_not_a_number(tmp_path):
    e = error(tmp_path, MINIMAL + '[monitor]\nat_risk_hf = "1,1"\n')
    assert e.key == "monitor.at_risk_hf"
    assert "not a decimal number: '1,1'" in str(e)


def test_threshold_must_be_positive(tmp_path):
    e = error(tmp_path, MINIMAL + '[monitor]\nliquidation_hf = "0"\n')
    assert e.key == "monitor.liquidation_hf"
    assert "must be greater than 0" in str(e)


def test_unordered_thresholds_watch_below_at_risk(tmp_path):
    e = error(tmp_path, MINIMAL + '[monitor]\nwatch_hf = "1.05"\n')
    assert e.key == "monitor.watch_hf"
    assert "must be greater than monitor.at_risk_hf (1.1), got 1.05" in str(e)


def test_unordered_thresholds_at_risk_below_liquidation(tmp_path):
    e = error(tmp_path, MINIMAL + '[monitor]\nat_risk_hf = "1.0"\nliquidation_hf = "1.0"\n')
    assert e.key == "monitor.at_risk_hf"
    assert "must be greater than monitor.liquidation_hf (1), got 1" in str(e)


def test_interval_must_be_positive(tmp_path):
    e = error(tmp_path, MINIMAL + "[monitor]\nscan_interval_s = 0\n")
    assert e.key == "monitor.scan_interval_s"
    assert "must be greater than 0" in str(e)


def test_interval_not_a_number(tmp_path):
    e = error(tmp_path, MINIMAL.replace("[chain]", '[chain]\nrequest_timeout_s = "soon"'))
    assert e.key == "chain.request_timeout_s"
    assert "not a number of seconds: 'soon'" in str(e)


def test_int_setting_must_be_whole_and_positive(tmp_path):
    e = error(tmp_path, MINIMAL.replace("[chain]", "[chain]\nlogs_max_range = 0"))
    assert e.key == "chain.logs_max_range"
    assert "must be greater than 0, got 0" in str(e)
    e = error(tmp_path, MINIMAL.replace("[chain]", '[chain]\nmax_calls_per_multicall = "many"'))
    assert "must be a whole number, got 'many'" in str(e)


def test_negative_start_block(tmp_path):
    e = error(tmp_path, MINIMAL + "start_block = -1\n")
    assert e.key == "markets[0].start_block"
    assert "must be at least 0" in str(e)


def test_rpc_url_must_be_http_or_ws_and_is_not_echoed(tmp_path):
    e = error(tmp_path, MINIMAL.replace("http://127.0.0.1:8545", "ftp://user:hunter2@x"))
    assert e.key == "chain.rpc_url"
    assert "must be an http(s):// or ws(s):// URL (scheme: 'ftp://')" in str(e)
    assert "hunter2" not in str(e)


def test_rpc_url_without_scheme(tmp_path):
    e = error(tmp_path, MINIMAL.replace("http://127.0.0.1:8545", "127.0.0.1:8545"))
    assert "must be an http(s):// or ws(s):// URL" in str(e)


def test_bad_rpc_url_from_env_names_the_variable(tmp_path):
    e = error(tmp_path, MINIMAL, env={"KEEPER_RPC_URL": "localhost-secretkey"})
    assert e.key == "KEEPER_RPC_URL (overrides chain.rpc_url)"
    assert "secretkey" not in str(e)


def test_private_key_in_file_is_refused(tmp_path):
    e = error(tmp_path, f'private_key = "{PRIVATE_KEY}"\n' + MINIMAL)
    assert e.key == "private_key"
    assert "set KEEPER_PRIVATE_KEY in the environment" in str(e)
    assert PRIVATE_KEY[2:] not in str(e)


def test_private_key_in_a_table_is_refused(tmp_path):
    e = error(tmp_path, MINIMAL.replace("[chain]", f'[chain]\nprivate_key = "{PRIVATE_KEY}"'))
    assert e.key == "chain.private_key"
    assert "never read from the file" in str(e)


def test_bad_private_key_in_env_is_not_echoed(tmp_path):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, MINIMAL, env={"KEEPER_PRIVATE_KEY": "0xdeadbeefcafe"})
    assert info.value.key == "KEEPER_PRIVATE_KEY"
    assert "not a private key" in str(info.value)
    assert "deadbeef" not in str(info.value)


def test_bad_mode(tmp_path):
    e = error(tmp_path, 'mode = "yolo"\n' + MINIMAL)
    assert e.key == "mode"
    assert "must be 'dry_run' or 'live', got 'yolo'" in str(e)


def test_unknown_protocol(tmp_path):
    e = error(tmp_path, MINIMAL.replace('"aave_v3"', '"aave_v9"'))
    assert e.key == "markets[0].protocol"
    assert "unknown protocol 'aave_v9' (expected one of: 'aave_v3', 'morpho_blue', 'compound_v3')" in str(e)


def test_missing_protocol(tmp_path):
    e = error(tmp_path, MINIMAL.replace('protocol = "aave_v3"', ""))
    assert str(e).endswith("markets[0].protocol: missing required key")


def test_table_expected(tmp_path):
    e = error(tmp_path, 'monitor = 5\n' + MINIMAL)
    assert e.key == "monitor"
    assert "must be a table, got 5" in str(e)


def test_heartbeat_symbol_given_twice(tmp_path):
    e = error(tmp_path, MINIMAL + "[monitor]\nheartbeats = { WETH = 3600, weth = 60 }\n")
    assert e.key == "monitor.heartbeats"
    assert "a symbol is given twice" in str(e)


def test_heartbeat_must_be_positive(tmp_path):
    e = error(tmp_path, MINIMAL + "[monitor]\nheartbeats = { WETH = 0 }\n")
    assert e.key == "monitor.heartbeats.WETH"
    assert "must be greater than 0, got 0" in str(e)


def test_duplicate_market_names(tmp_path):
    twice = MINIMAL + 'name = "m"\n' + MINIMAL.split("[chain]")[1].split("\n\n", 1)[1]
    e = error(tmp_path, twice + 'name = "m"\n')
    assert e.key == "markets[1].name"
    assert "duplicate market name 'm' (also markets[0].name)" in str(e)


def test_every_problem_is_listed(tmp_path):
    e = error(tmp_path, MINIMAL + 'start_block = "x"\n[monitor]\nscan_interval_s = -1\n')
    assert e.key == "monitor.scan_interval_s"  # the first, by position in the schema
    assert "markets[0].start_block: must be a whole number, got 'x'" in str(e)


def test_morpho_and_compound_markets_validate(tmp_path):
    from keeper.config import load_config

    path = tmp_path / "k.toml"
    mid = "0x" + "ab" * 32
    path.write_text('[chain]\nrpc_url = "http://127.0.0.1:8545"\n\n[[markets]]\nprotocol = "morpho_blue"\n'
                    f'morpho = "0xBBBBBbbBBb9cC5e90e3b3Af64bdAF62C37EEFFCb"\nmarket_ids = ["{mid.upper().replace("0X", "0x")}"]\n'
                    '\n[[markets]]\nprotocol = "compound_v3"\ncomet = "0xc3d688B66703497DAA19211EEdff47f25384cdc3"\n')
    cfg = load_config(path, env={})
    assert cfg.markets[0].market_ids == (mid,)
    assert cfg.markets[1].name == "compound_v3-1"


def test_bad_morpho_market_id(tmp_path):
    from keeper.config import load_config
    from keeper.errors import ConfigError

    path = tmp_path / "k.toml"
    path.write_text('[chain]\nrpc_url = "http://127.0.0.1:8545"\n\n[[markets]]\nprotocol = "morpho_blue"\n'
                    'morpho = "0xBBBBBbbBBb9cC5e90e3b3Af64bdAF62C37EEFFCb"\nmarket_ids = ["0x12"]\n')
    try:
        load_config(path, env={})
    except ConfigError as e:
        assert "markets[0].market_ids[0]" in str(e) and "not a market id" in str(e)
    else:
        raise AssertionError("expected ConfigError")


def test_protect_market_must_name_a_configured_market(tmp_path):
    rule = ('\n[[protect]]\naccount = "0x00000000000000000000000000000000000000aa"\ntrigger_hf = "1.1"\n'
            'target_hf = "1.3"\nactions = ["repay:USDC"]\n')
    e = error(tmp_path, MINIMAL + rule + 'market = "nowhere"\n')
    assert "protect[0].market" in str(e) and "nowhere" in str(e)
    cfg = load(tmp_path, MINIMAL + rule)
    assert cfg.protect[0].market is None


def test_min_profit_usd_and_prices(tmp_path):
    cfg = load(tmp_path, MINIMAL + '\n[liquidator]\nmin_profit_usd = "2.5"\n'
               '\n[prices]\nfeeds = { weth = "0x00000000000000000000000000000000000000aa" }\n')
    assert cfg.liquidator.min_profit_usd_e8 == 250_000_000
    assert cfg.prices.feeds == {"WETH": "0x00000000000000000000000000000000000000AA"}
    assert cfg.gas_coin == "WETH"  # [prices] gas_coin, else the liquidator's gas_price_asset
    assert "min_profit_usd" in str(error(tmp_path, MINIMAL + '\n[liquidator]\nmin_profit_usd = "-1"\n'))
    assert "prices.feeds" in str(error(tmp_path, MINIMAL + '\n[prices]\nfeeds = { WETH = "0x12" }\n'))


def test_ws_url_must_be_a_websocket_and_is_a_secret(tmp_path):
    cfg = load(tmp_path, MINIMAL.replace('[chain]\n', '[chain]\nws_url = "ws://127.0.0.1:8545"\n'))
    assert cfg.chain.ws_url.reveal() == "ws://127.0.0.1:8545"
    assert "ws://127.0.0.1:8545" in cfg.secrets()
    e = error(tmp_path, MINIMAL.replace('[chain]\n', '[chain]\nws_url = "http://127.0.0.1:8545"\n'))
    assert "chain.ws_url" in str(e) and "ws:// or wss://" in str(e)
