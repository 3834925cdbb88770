"""[chain] rpc_urls / KEEPER_RPC_URLS, endpoint labels without credentials, and durations the
scheduler can hold."""

from __future__ import annotations

import pytest

from keeper.chain.endpoints import DOWN_AFTER, Endpoint, endpoint_label, order, paced
from keeper.config import describe, load_config
from keeper.errors import ConfigError
from tests.unit.test_config import ALCHEMY, MINIMAL, PROVIDER, error, load, write

SEVERAL = f"""
[chain]
rpc_urls = ["http://127.0.0.1:8545", "{ALCHEMY}"]

[[markets]]
protocol = "aave_v3"
pool_addresses_provider = "{PROVIDER}"
"""


def test_one_rpc_url_is_a_list_of_one(tmp_path):
    cfg = load(tmp_path, MINIMAL)
    assert [u.reveal() for u in cfg.chain.rpc_urls] == ["http://127.0.0.1:8545"]
    assert cfg.chain.rpc_url.reveal() == "http://127.0.0.1:8545"


def test_several_endpoints_every_one_a_secret(tmp_path):
    cfg = load(tmp_path, SEVERAL)
    assert [u.reveal() for u in cfg.chain.rpc_urls] == ["http://127.0.0.1:8545", ALCHEMY]
    assert ALCHEMY in cfg.secrets()
    assert "AbCdEfGh0123456789IjKlMnOp" not in str(describe(cfg)) + repr(cfg)
    assert describe(cfg)["rpc_urls"][1] == "https://eth-mainnet.g.alchemy.com/***"


def test_env_urls_replace_the_file(tmp_path):
    cfg = load(tmp_path, SEVERAL, env={"KEEPER_RPC_URLS": f" {ALCHEMY} , http://127.0.0.1:9545 "})
    assert [u.reveal() for u in cfg.chain.rpc_urls] == [ALCHEMY, "http://127.0.0.1:9545"]
    cfg = load(tmp_path, SEVERAL, env={"KEEPER_RPC_URL": "http://127.0.0.1:7545"})
    assert [u.reveal() for u in cfg.chain.rpc_urls] == ["http://127.0.0.1:7545"]


def test_both_env_variables_is_an_error(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, SEVERAL), env={"KEEPER_RPC_URLS": ALCHEMY, "KEEPER_RPC_URL": ALCHEMY})
    assert e.value.key == "KEEPER_RPC_URLS" and "not both" in str(e.value)
    assert "AbCdEfGh" not in str(e.value)


def test_rpc_url_and_rpc_urls_together_is_an_error(tmp_path):
    text = SEVERAL.replace("[chain]\n", '[chain]\nrpc_url = "http://127.0.0.1:1"\n')
    e = error(tmp_path, text)
    assert e.key == "chain.rpc_urls" and "not both" in str(e)


def test_a_bad_url_in_the_list_is_named_and_not_quoted(tmp_path):
    text = SEVERAL.replace(ALCHEMY, "ftp://secret-key-0123456789@host")
    e = error(tmp_path, text)
    assert e.key == "chain.rpc_urls[1]"
    assert "secret-key" not in str(e)


def test_no_endpoint_at_all(tmp_path):
    e = error(tmp_path, MINIMAL.replace('rpc_url = "http://127.0.0.1:8545"\n', 'chain_id = 1\n'))
    assert e.key == "chain.rpc_url" and "KEEPER_RPC_URLS" in str(e)


def test_a_huge_interval_is_a_config_error_not_an_overflow(tmp_path):
    e = error(tmp_path, MINIMAL + "\n[monitor]\nscan_interval_s = 1e30\n")
    assert e.key == "monitor.scan_interval_s" and "at most" in str(e)


def test_endpoint_label_keeps_only_the_host():
    assert endpoint_label(1, ALCHEMY) == "1:eth-mainnet.g.alchemy.com"
    assert endpoint_label(0, "https://user:pw@node.example:8545/x?apikey=1") == "0:node.example"


def test_paced_logs_at_a_decaying_rate():
    assert [n for n in range(1, 70) if paced(n)] == [1, 2, 4, 8, 16, 32, 64]


def test_order_prefers_fast_healthy_endpoints_at_the_head():
    fast, slow, lagging, resting = (Endpoint(i, f"{i}:h", None) for i in range(4))
    for ep, latency in ((fast, 0.01), (slow, 0.2), (lagging, 0.001), (resting, 0.001)):
        ep.succeeded(latency)
    fast.head, slow.head, lagging.head, resting.head = 100, 100, 90, 100
    for _ in range(DOWN_AFTER):
        resting.failed("HTTP 503", now=0.0)
    assert resting.down
    assert order([slow, lagging, resting, fast], max_lag=5, now=0.1) == [fast, slow, lagging]
    # a few errors make a fast endpoint worse than a slow clean one
    fast.failed("timeout", now=0.0)
    fast.failed("timeout", now=0.0)
    assert order([fast, slow], max_lag=5, now=0.1)[0] is slow
