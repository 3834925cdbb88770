"""Signer: the key is never shown, signs correctly; load_signer names what is wrong."""

from __future__ import annotations

import json
import pickle

import pytest
from eth_account import Account

from keeper import log
from keeper.config import Secret
from keeper.errors import ConfigError
from keeper.executors.signer import Signer, load_signer

KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
ADDRESS = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


@pytest.fixture(autouse=True)
def _forget_secrets():
    yield
    log.clear_secrets()


def test_address_and_no_key_in_repr():
    s = Signer(Secret(KEY))
    assert s.address == ADDRESS
    for text in (repr(s), str(s), f"{s}"):
        assert KEY[2:] not in text.lower() and ADDRESS in text
    with pytest.raises(TypeError):
        pickle.dumps(s)


def test_key_is_registered_for_redaction():
    Signer(Secret(KEY))
    assert KEY[2:] not in log.scrub(f"oops {KEY} and {KEY[2:].upper()}").lower()


def test_signs_an_eip1559_tx_recoverable_to_the_address():
    s = Signer(Secret(KEY))
    tx = {"type": 2, "chainId": 31337, "nonce": 3, "to": "0x" + "11" * 20, "value": 5, "data": b"",
          "gas": 21_000, "maxFeePerGas": 2 * 10**9, "maxPriorityFeePerGas": 10**9}
    signed = s.sign(tx)
    assert signed.raw.startswith("0x02") and len(signed.hash) == 66
    assert Account.recover_transaction(signed.raw) == ADDRESS


def test_invalid_key():
    with pytest.raises(ConfigError, match="not a valid secp256k1 private key"):
        Signer(Secret("0x" + "00" * 32))


def write_keystore(tmp_path, password="correct horse battery"):
    ks = tmp_path / "key.json"
    ks.write_text(json.dumps(Account.encrypt(KEY, password, kdf="pbkdf2", iterations=2)))
    pw = tmp_path / "pw.txt"
    pw.write_text(password + "\n")
    return ks, pw


def test_keystore_with_password_file(tmp_path):
    ks, pw = write_keystore(tmp_path)
    assert load_signer(None, ks, pw).address == ADDRESS
    assert "correct horse" not in log.scrub("password correct horse battery")


def test_env_key():
    assert load_signer(Secret(KEY), None, None).address == ADDRESS


@pytest.mark.parametrize(("setup", "message"), [
    ("nothing", "no signing key: set KEEPER_PRIVATE_KEY"),
    ("both", "two signing keys"),
    ("no_password_file", "needs executor.password_file"),
    ("keystore_missing", "file not found"),
    ("password_file_missing", "file not found"),
    ("wrong_password", "wrong password"),
    ("not_json", "keystore is not JSON"),
    ("not_keystore", "not a V3 keystore"),
])
def test_load_signer_refusals(tmp_path, setup, message):
    ks, pw = write_keystore(tmp_path)
    args = {
        "nothing": (None, None, None),
        "both": (Secret(KEY), ks, pw),
        "no_password_file": (None, ks, None),
        "keystore_missing": (None, tmp_path / "nope.json", pw),
        "password_file_missing": (None, ks, tmp_path / "nope.txt"),
        "wrong_password": (None, ks, pw),
        "not_json": (None, ks, pw),
        "not_keystore": (None, ks, pw),
    }[setup]
    if setup == "wrong_password":
        pw.write_text("nope\n")
    if setup == "not_json":
        ks.write_text("{not json")
    if setup == "not_keystore":
        ks.write_text('{"address": "x"}')
    with pytest.raises(ConfigError, match=message) as info:
        load_signer(*args)
    assert KEY[2:] not in str(info.value)
