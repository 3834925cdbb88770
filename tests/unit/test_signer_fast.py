"""keeper's own EIP-1559 encoding and signature (keeper.executors.signer, the burst's hot
path) gives the very bytes eth-account gives, for any fields."""

from __future__ import annotations

from eth_account import Account
from eth_utils import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from keeper.config import Secret
from keeper.executors.signer import Signer

KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # anvil #1
SIGNER = Signer(Secret(KEY))


@settings(max_examples=200, deadline=None)
@given(chain_id=st.integers(1, 2**64), nonce=st.integers(0, 2**64 - 2), tip=st.integers(0, 2**128),
       extra=st.integers(0, 2**128), gas=st.integers(21_000, 2**63), value=st.integers(0, 2**200),
       to=st.binary(min_size=20, max_size=20), data=st.binary(max_size=300))
def test_the_fast_path_signs_exactly_as_eth_account(chain_id, nonce, tip, extra, gas, value, to, data):
    tx = {"type": 2, "chainId": chain_id, "nonce": nonce, "to": to_checksum_address(to), "value": value,
          "data": data, "gas": gas, "maxFeePerGas": tip + extra, "maxPriorityFeePerGas": tip}
    ours = SIGNER.sign(tx)
    theirs = Account.sign_transaction(tx, KEY)
    assert ours.raw == "0x" + bytes(theirs.raw_transaction).hex()
    assert ours.hash == "0x" + bytes(theirs.hash).hex()
    assert Account.recover_transaction(ours.raw) == SIGNER.address
