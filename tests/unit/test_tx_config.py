"""ExecutorConfig: exact gwei/wei parsing, defaults, paths, clear refusals; TxRequest checks."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from keeper.executors import ETHER, GWEI, ExecutorConfig, TxOutcome, TxRequest

ADDR = "0x" + "ab" * 20


def test_defaults():
    cfg = ExecutorConfig()
    assert cfg.max_gas_price_wei == 200 * GWEI
    assert cfg.priority_fee_wei == 1 * GWEI
    assert cfg.max_spend_per_tx_wei == ETHER // 10 and cfg.max_spend_per_day_wei == ETHER
    assert (cfg.replace_after_blocks, cfg.max_replacements) == (3, 5)
    assert cfg.keystore is None and cfg.password_file is None


@pytest.mark.parametrize(("text", "wei"), [
    ("200", 200 * GWEI), ("1.5", 1_500_000_000), ("0.000000001", 1), (7, 7 * GWEI),
    ("123456789.123456789", 123456789123456789),
])
def test_gwei_is_exact(text, wei):
    assert ExecutorConfig(max_gas_price_gwei=text, priority_fee_gwei="0").max_gas_price_wei == wei


@pytest.mark.parametrize(("value", "message"), [
    (Decimal("1.5"), "is a float, which is not exact"),
    (1.5, "is a float, which is not exact"),
    ("0.0000000001", "at most 9 decimals"),
    ("abc", "not a decimal number of gwei"),
    (True, "must be a number of gwei"),
])
def test_gwei_refusals(value, message):
    with pytest.raises(ValidationError, match=message):
        ExecutorConfig(max_gas_price_gwei=value)


@pytest.mark.parametrize(("value", "wei"), [
    (12345, 12345), ("0.05", 5 * 10**16), ("1", ETHER), ("0.000000000000000001", 1),
])
def test_spend_caps_int_wei_or_decimal_eth(value, wei):
    assert ExecutorConfig(max_spend_per_tx_wei=value).max_spend_per_tx_wei == wei
    assert ExecutorConfig(max_spend_per_day_wei=value).max_spend_per_day_wei == wei


@pytest.mark.parametrize(("value", "message"), [
    (0, "greater than 0"), ("-1", "greater than 0"), (Decimal("0.1"), "float"),
    ("0.1 ETH", "not a decimal amount of ETH"), ("0.0000000000000000001", "not a decimal amount"),
])
def test_spend_cap_refusals(value, message):
    with pytest.raises(ValidationError, match=message):
        ExecutorConfig(max_spend_per_day_wei=value)


def test_keystore_paths_are_relative_to_the_config_file(tmp_path):
    cfg = ExecutorConfig.model_validate({"keystore": "keys/k.json", "password_file": "pw"},
                                        context={"base_dir": tmp_path})
    assert cfg.keystore == (tmp_path / "keys/k.json").resolve()
    assert cfg.password_file == (tmp_path / "pw").resolve()


def test_keystore_needs_password_file_and_back():
    with pytest.raises(ValidationError, match="password_file is missing"):
        ExecutorConfig(keystore=Path("/k.json"))
    with pytest.raises(ValidationError, match="keystore is missing"):
        ExecutorConfig(password_file=Path("/pw"))


def test_other_refusals():
    with pytest.raises(ValidationError, match="must not exceed max_gas_price_gwei"):
        ExecutorConfig(max_gas_price_gwei="1", priority_fee_gwei="2")
    with pytest.raises(ValidationError, match="Extra inputs"):
        ExecutorConfig.model_validate({"private_key": "0x12"})
    with pytest.raises(ValidationError):
        ExecutorConfig(replace_after_blocks=0)
    with pytest.raises(ValidationError, match="greater than 0"):
        ExecutorConfig(receipt_timeout_s="0")


def test_tx_request_checks_and_checksums():
    req = TxRequest(to=ADDR, data=b"\x09\x5e\xa7\xb3" + bytes(64), purpose="p", action_key="k",
                    max_cost_wei=1)
    assert req.to == "0xABaBaBaBABabABabAbAbABAbABabababaBaBABaB" and req.value == 0
    assert req.selector.hex() == "095ea7b3"
    with pytest.raises(ValueError, match="not an address"):
        TxRequest(to="0x12", data=b"", purpose="p", action_key="k", max_cost_wei=1)
    with pytest.raises(ValueError, match="max_cost_wei"):
        TxRequest(to=ADDR, data=b"", purpose="p", action_key="k", max_cost_wei=-1)
    with pytest.raises(ValueError, match="action_key"):
        TxRequest(to=ADDR, data=b"", purpose="p", action_key="", max_cost_wei=1)
    with pytest.raises(TypeError, match="bytes"):
        TxRequest(to=ADDR, data="0x", purpose="p", action_key="k", max_cost_wei=1)  # type: ignore[arg-type]


def test_outcome_flags():
    assert TxOutcome("k", "dry_run").dry_run and not TxOutcome("k", "dry_run").ok
    assert TxOutcome("k", "mined").ok and not TxOutcome("k", "reverted").ok
