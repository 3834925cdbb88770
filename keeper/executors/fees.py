"""Fee inputs of a first attempt, pure (no IO): the base fee a tx must be ready for, and the
priority fee a liquidation bids.

* Base fee: EIP-1559 lets the next block's base fee rise at most 12.5% over the latest
  block's, so a tx priced for ``ceil(latest * 9 / 8)`` fits the next block whatever it
  holds. The node's own "pending" base fee is taken when it is higher (a node that already
  knows the next block's base fee, or anvil's ``anvil_setNextBlockBaseFeePerGas``). The
  guard then makes ``maxFeePerGas = 2 * that + tip``, within its caps.
* Bid: the priority fee per gas is ``bid_wei // gas_limit`` when that beats the configured
  ``priority_fee_gwei``, where ``bid_wei`` is ``[liquidator] bid_share_bps`` of the expected
  profit (in wei). A bigger liquidation bids more and, since ``maxFeePerGas`` carries the
  tip, sorts first in a block ordered by ``maxFeePerGas`` (anvil) or by tip (most
  builders). The guard still caps it (``Guard.initial_fees``): the gas bill never exceeds
  the action's budget, ``max_gas_price_gwei`` or ``max_spend_per_tx_wei``.
"""

from __future__ import annotations

BPS = 10_000
HEADROOM_NUM, HEADROOM_DEN = 9, 8  # EIP-1559: the base fee moves at most 1/8 per block


def next_base_fee_bound(latest_base_fee: int, pending_base_fee: int | None = None) -> int:
    """The base fee a tx sent now must be ready to pay in the next block."""
    if latest_base_fee < 0 or (pending_base_fee is not None and pending_base_fee < 0):
        raise ValueError("a base fee is never negative")
    bound = -(-latest_base_fee * HEADROOM_NUM // HEADROOM_DEN)
    return max(bound, pending_base_fee or 0)


ELASTICITY, CHANGE_DENOMINATOR = 2, 8  # EIP-1559's constants


def next_base_fee(base_fee: int, gas_used: int, gas_limit: int) -> int:
    """The base fee of the block after one with these fields (EIP-1559, exact)."""
    target = gas_limit // ELASTICITY
    if target == 0 or gas_used == target:
        return base_fee
    if gas_used > target:
        return base_fee + max(base_fee * (gas_used - target) // target // CHANGE_DENOMINATOR, 1)
    return base_fee - base_fee * (target - gas_used) // target // CHANGE_DENOMINATOR


def bid_wei(profit_wei: int, bid_share_bps: int) -> int:
    """The share of an action's expected profit (wei) it bids as priority fee, in total."""
    if not 0 <= bid_share_bps < BPS:
        raise ValueError(f"bid_share_bps must be in [0, {BPS}), got {bid_share_bps}")
    return max(profit_wei, 0) * bid_share_bps // BPS


def bid_tip(priority_fee_wei: int, total_bid_wei: int, gas_limit: int) -> int:
    """Priority fee per gas: the bid spread over the gas limit, never below the configured tip."""
    if gas_limit <= 0:
        raise ValueError(f"gas limit must be positive, got {gas_limit}")
    return max(priority_fee_wei, total_bid_wei // gas_limit)
