"""Executors: the only code of keeper that signs and sends transactions.

Modules::

    keeper.executors           TxRequest, TxOutcome (values); ExecutorConfig (keeper.config_executor)
    keeper.executors.signer    Signer, load_signer          (the key; never logged)
    keeper.executors.guard     AllowList, Guard, Fees, decode_revert (pure)
    keeper.executors.journal   Journal: the tx_journal table, already_done, reconcile
    keeper.executors.tx        TxManager, NonceManager, build_tx_manager
    keeper.executors.burst     Burst: a tick's liquidations simulated, signed and sent at once

A send goes: guard (allow-list) -> eth_call simulation -> gas estimate -> fees within the
caps -> [dry_run stops here] -> nonce -> sign -> journal row COMMITTED -> broadcast -> wait
for the receipt, replacing the tx (same nonce, higher fees) when it lingers.

This module imports neither web3 nor keeper.config. Amounts are ints in wei.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from eth_utils import is_address, to_checksum_address

from keeper.config_executor import ETHER, GWEI, ExecutorConfig  # noqa: F401  re-exported

@dataclass(frozen=True, slots=True, kw_only=True)
class TxRequest:
    """One transaction an action wants sent. Built by adapters (no IO); sent by TxManager.

    ``action_key`` is the idempotency key (``f"liq:{market}:{account}:{block}"``): a key
    that was sent once is never sent again. ``max_cost_wei`` bounds the gas bill,
    replacements included (e.g. the expected profit).
    """

    to: str
    data: bytes
    purpose: str
    action_key: str
    max_cost_wei: int
    value: int = 0
    gas_limit: int | None = None
    bid_wei: int = 0  # a liquidation's bid, in total (keeper.executors.fees): the tip above the configured one

    def __post_init__(self) -> None:
        if not isinstance(self.to, str) or not is_address(self.to):
            raise ValueError(f"TxRequest.to is not an address: {self.to!r}")
        object.__setattr__(self, "to", to_checksum_address(self.to))
        if not isinstance(self.data, bytes):
            raise TypeError("TxRequest.data must be bytes")
        if not self.action_key or not self.purpose:
            raise ValueError("TxRequest needs an action_key and a purpose")
        for name in ("max_cost_wei", "value", "gas_limit", "bid_wei"):
            v = getattr(self, name)
            if v is None and name == "gas_limit":
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"TxRequest.{name} must be a non-negative int, got {v!r}")

    @property
    def selector(self) -> bytes:
        return self.data[:4]


TxStatus = Literal["mined", "reverted", "dry_run"]


@dataclass(frozen=True, slots=True)
class TxOutcome:
    """What became of a TxRequest. ``dry_run``: simulated only, nothing signed or sent
    (then ``hash``, ``nonce``, ``block``... are None; ``gas_limit``/``max_fee_per_gas``
    are what would have been used). ``reverted``: mined with status 0, gas spent."""

    action_key: str
    status: TxStatus
    hash: str | None = None
    nonce: int | None = None
    block: int | None = None
    gas_used: int | None = None
    effective_gas_price: int | None = None
    cost_wei: int | None = None  # gas_used * effective_gas_price
    gas_limit: int | None = None
    max_fee_per_gas: int | None = None
    logs: tuple[dict[str, Any], ...] = ()  # the receipt's logs, as the node returned them

    @property
    def dry_run(self) -> bool:
        return self.status == "dry_run"

    @property
    def ok(self) -> bool:
        return self.status == "mined"


__all__ = ["ETHER", "GWEI", "ExecutorConfig", "TxOutcome", "TxRequest", "TxStatus"]
