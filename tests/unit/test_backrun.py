"""The pure parts of the backrun: decoding feed updates from calldata (every shape the
decoder names), the move in bps, the fees that sort behind the update, and [backrun] config."""

from __future__ import annotations

from eth_abi import encode
from eth_utils import keccak

from keeper.chain.mempool import PendingTx
from keeper.executors.backrun import behind
from keeper.oracle_updates import FeedUpdate, decode_update, shock_bps
from tests.unit.test_config import MINIMAL, error, load

FEED = "0x5FC8d32690cc91D4c39d9d3abcBD16989F875707"
AGG = "0x" + "ab" * 20


def _call(signature: str, types: list[str], args: list) -> bytes:
    return keccak(text=signature)[:4] + encode(types, args)


def test_set_answer_and_update_answer_give_the_argument():
    for sig in ("setAnswer(int256)", "updateAnswer(int256)"):
        assert decode_update(FEED, _call(sig, ["int256"], [123_456])) == FeedUpdate(FEED, 123_456)
    assert decode_update(FEED, _call("setAnswer(int256)", ["int256"], [-5])).answer == -5


def test_ocr2_transmit_gives_the_median_observation():
    report = encode(["uint32", "bytes32", "int192[]", "int192"], [1, b"\x00" * 32, [10, 20, 30, 40], 7])
    data = _call("transmit(bytes32[3],bytes,bytes32[],bytes32[],bytes32)",
                 ["bytes32[3]", "bytes", "bytes32[]", "bytes32[]", "bytes32"],
                 [[b"\x01" * 32] * 3, report, [b"\x02" * 32], [b"\x03" * 32], b"\x04" * 32])
    assert decode_update(AGG, data).answer == 30  # observations[4 // 2], as OCR2Aggregator
    assert decode_update(AGG, data).feed.lower() == AGG


def test_ocr1_transmit_gives_the_median_observation():
    report = encode(["bytes32", "bytes32", "int192[]"], [b"\x00" * 32, b"\x00" * 32, [5, 6, 7]])
    data = _call("transmit(bytes,bytes32[],bytes32[],bytes32)", ["bytes", "bytes32[]", "bytes32[]", "bytes32"],
                 [report, [], [], b"\x00" * 32])
    assert decode_update(AGG, data).answer == 6


def test_forward_names_the_inner_target():
    inner = _call("updateAnswer(int256)", ["int256"], [99])
    data = _call("forward(address,bytes)", ["address", "bytes"], [FEED, inner])
    assert decode_update(AGG, data) == FeedUpdate(FEED, 99)


def test_anything_else_is_not_an_update():
    assert decode_update(FEED, b"") is None
    assert decode_update(None, _call("setAnswer(int256)", ["int256"], [1])) is None
    assert decode_update(FEED, _call("transfer(address,uint256)", ["address", "uint256"], [FEED, 1])) is None
    assert decode_update(FEED, keccak(text="setAnswer(int256)")[:4] + b"\x01") is None  # truncated
    report = encode(["uint32", "bytes32", "int192[]", "int192"], [1, b"\x00" * 32, [], 7])
    empty = _call("transmit(bytes32[3],bytes,bytes32[],bytes32[],bytes32)",
                  ["bytes32[3]", "bytes", "bytes32[]", "bytes32[]", "bytes32"],
                  [[b"\x01" * 32] * 3, report, [], [], b"\x04" * 32])
    assert decode_update(AGG, empty) is None  # no observations, no answer


def test_shock_bps_floors_toward_the_larger_fall():
    assert shock_bps(2000_00000000, 1300_00000000) == -3500
    assert shock_bps(3, 2) == -3334  # -33.33...% floored
    assert shock_bps(100, 101) == 100
    try:
        shock_bps(0, 1)
    except ValueError as e:
        assert "positive" in str(e)
    else:
        raise AssertionError("a zero answer cannot be the base of a move")


def _tx(fee: int, tip: int, nonce: int = 0) -> PendingTx:
    return PendingTx("0x" + "11" * 32, FEED, FEED, b"", nonce, 100_000, 0, fee, tip)


def test_fees_match_the_lowest_update_and_never_tip_above_it():
    f = behind([_tx(50, 2), _tx(40, 3, 1)])
    assert (f.max_fee_per_gas, f.priority_fee_per_gas) == (40, 2)
    f = behind([_tx(10, 10)])  # a legacy update: gasPrice is both
    assert (f.max_fee_per_gas, f.priority_fee_per_gas) == (10, 10)


def test_pending_tx_from_json_reads_legacy_and_1559():
    body = {"hash": "0x" + "22" * 32, "from": FEED, "to": FEED, "input": "0x1234", "nonce": "0x5",
            "gas": "0x10", "value": "0x0"}
    t = PendingTx.from_json({**body, "maxFeePerGas": "0x64", "maxPriorityFeePerGas": "0x2"})
    assert (t.max_fee_per_gas, t.priority_fee_per_gas, t.data, t.nonce) == (100, 2, b"\x12\x34", 5)
    t = PendingTx.from_json({**body, "gasPrice": "0x7"})
    assert (t.max_fee_per_gas, t.priority_fee_per_gas) == (7, 7)


def test_backrun_config_needs_a_websocket_a_liquidator_and_for_bundles_a_relay(tmp_path):
    ws = MINIMAL.replace("[chain]\n", '[chain]\nws_url = "ws://127.0.0.1:8545"\n')
    assert "backrun.enabled" in str(error(tmp_path, MINIMAL + "\n[liquidator]\nenabled = true\n"
                                          "\n[backrun]\nenabled = true\n"))
    assert "backrun.enabled" in str(error(tmp_path, ws + "\n[backrun]\nenabled = true\n"))
    e = error(tmp_path, ws + '\n[liquidator]\nenabled = true\n\n[backrun]\nenabled = true\nsubmitter = "bundle"\n')
    assert "backrun.relay_url" in str(e)
    cfg = load(tmp_path, ws + '\n[liquidator]\nenabled = true\n\n[backrun]\nenabled = true\nsubmitter = "bundle"\n'
                              'relay_url = "http://127.0.0.1:9/key"\n')
    assert cfg.backrun.submitter == "bundle" and "http://127.0.0.1:9/key" in cfg.secrets()
    assert not load(tmp_path, MINIMAL).backrun.enabled
