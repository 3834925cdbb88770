"""What may be sent, at what price: pure checks, no IO. TxManager asks before every send.

* Allow-list: (contract, 4-byte selector) pairs. Anything else is refused, naming the
  target and the selector. Each protocol names its own (``allowed_calls``).
* Fees (EIP-1559): ``maxFeePerGas = min(2 * baseFee + tip, ceiling)``; the ceiling is the
  lowest of ``max_gas_price``, ``max_cost_wei // gas_limit`` (the action's own budget) and
  ``(max_spend_per_tx - value) // gas_limit``. A tx whose ceiling is below
  ``baseFee + tip`` is refused: it could not be included now. So ``maxFee * gas_limit``
  never exceeds the action's budget, for the first attempt and every replacement: only
  one tx of a nonce is ever mined, so the bill is bounded by one attempt's worst case.
* Replacement: tip and fee cap both +12.5% (nodes want >= 10%), the cap at least
  ``2 * baseFee + tip``, within the same ceiling; none if that does not fit.
* Bid (keeper.executors.fees): a liquidation may ask for a higher tip than
  ``priority_fee_wei``; it is cut to what the ceiling leaves above the base fee (never below
  the configured tip), so a bid never lifts a bill over a cap.
* Spend per rolling day: spent + in flight + this tx's worst case <= ``max_spend_per_day``.

Every refusal is an :class:`ExecutionError` whose message is the reason (logged by the
manager as ``tx.refused``). ``mode``: "dry_run" stops after simulation; "live" sends.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from eth_abi import decode
from eth_utils import keccak, to_checksum_address

from keeper.errors import ExecutionError
from keeper.protocols.registry import decode_error

if TYPE_CHECKING:
    from keeper.executors import ExecutorConfig

Mode = Literal["dry_run", "live"]
APPROVE = "approve(address,uint256)"
BUMP_NUM, BUMP_DEN = 9, 8  # +12.5%


def selector_of(signature_or_hex: str | bytes) -> bytes:
    """``"approve(address,uint256)"``, ``"0x095ea7b3"`` or 4 raw bytes -> the 4 bytes."""
    if isinstance(signature_or_hex, bytes):
        if len(signature_or_hex) != 4:
            raise ValueError(f"a selector is 4 bytes, got {len(signature_or_hex)}")
        return signature_or_hex
    text = signature_or_hex.strip()
    if text.startswith("0x") and len(text) == 10:
        return bytes.fromhex(text[2:])
    if "(" not in text or not text.endswith(")") or " " in text:
        raise ValueError(f"not a function signature or selector: {signature_or_hex!r}")
    return keccak(text=text)[:4]


@dataclass(frozen=True, slots=True)
class AllowList:
    """Allowed (checksummed contract address, selector) pairs."""

    entries: frozenset[tuple[str, bytes]] = frozenset()

    @classmethod
    def of(cls, pairs: Iterable[tuple[str, str | bytes]]) -> AllowList:
        return cls(frozenset((to_checksum_address(a), selector_of(s)) for a, s in pairs))

    def __or__(self, other: AllowList) -> AllowList:
        return AllowList(self.entries | other.entries)

    def allows(self, to: str, data: bytes) -> bool:
        return (to_checksum_address(to), bytes(data[:4])) in self.entries

    def __len__(self) -> int:
        return len(self.entries)


@dataclass(frozen=True, slots=True)
class Fees:
    max_fee_per_gas: int
    priority_fee_per_gas: int

    def worst_cost(self, gas_limit: int, value: int = 0) -> int:
        return value + gas_limit * self.max_fee_per_gas


@dataclass(frozen=True, slots=True)
class Guard:
    allow: AllowList
    max_gas_price_wei: int
    priority_fee_wei: int
    max_spend_per_tx_wei: int
    max_spend_per_day_wei: int
    mode: Mode = "dry_run"

    @classmethod
    def from_config(cls, cfg: ExecutorConfig, allow: AllowList, mode: Mode = "dry_run") -> Guard:
        return cls(allow, cfg.max_gas_price_wei, cfg.priority_fee_wei, cfg.max_spend_per_tx_wei,
                   cfg.max_spend_per_day_wei, mode)

    @property
    def live(self) -> bool:
        return self.mode == "live"

    def check_target(self, to: str, data: bytes) -> None:
        if not self.allow.allows(to, data):
            shown = "0x" + bytes(data[:4]).hex() if data else "0x (no calldata)"
            raise ExecutionError(f"not in the allow-list: {to_checksum_address(to)} selector {shown}")

    def fee_ceiling(self, gas_limit: int, value: int, max_cost_wei: int) -> tuple[int, str]:
        """The highest maxFeePerGas allowed for this tx, and the name of the bound that set it."""
        if gas_limit <= 0:
            raise ExecutionError(f"gas limit must be positive, got {gas_limit}")
        bounds = (
            (self.max_gas_price_wei, "max_gas_price_gwei"),
            (max_cost_wei // gas_limit, "the action's max_cost_wei"),
            ((self.max_spend_per_tx_wei - value) // gas_limit, "max_spend_per_tx_wei"),
        )
        return min(bounds, key=lambda b: b[0])

    def initial_fees(self, base_fee: int, gas_limit: int, value: int, max_cost_wei: int,
                     bid_tip: int | None = None) -> Fees:
        if value > self.max_spend_per_tx_wei:
            raise ExecutionError(f"value {value} wei above max_spend_per_tx_wei {self.max_spend_per_tx_wei}")
        tip = self.priority_fee_wei
        ceiling, bound = self.fee_ceiling(gas_limit, value, max_cost_wei)
        if bid_tip is not None and bid_tip > tip:  # within the caps: what the ceiling leaves
            tip = max(tip, min(bid_tip, ceiling - base_fee))
        if ceiling < base_fee + tip:
            raise ExecutionError(
                f"gas price too high: base fee {base_fee} + tip {tip} wei/gas, but {bound}"
                f" allows at most {max(ceiling, 0)} wei/gas (gas limit {gas_limit})"
            )
        return Fees(min(2 * base_fee + tip, ceiling), tip)

    def bumped_fees(self, prev: Fees, base_fee: int, gas_limit: int, value: int,
                    max_cost_wei: int) -> Fees | None:
        """Fees of a replacement, or None when a big enough bump does not fit the ceiling."""
        tip = max(_bump(prev.priority_fee_per_gas), prev.priority_fee_per_gas + 1)
        want = max(_bump(prev.max_fee_per_gas), 2 * base_fee + tip)
        ceiling, _ = self.fee_ceiling(gas_limit, value, max_cost_wei)
        fee = min(want, ceiling)
        if fee < _bump(prev.max_fee_per_gas) or fee < tip or fee <= prev.max_fee_per_gas:
            return None
        return Fees(fee, tip)

    def check_daily_spend(self, worst_wei: int, spent_in_day_wei: int) -> None:
        if spent_in_day_wei + worst_wei > self.max_spend_per_day_wei:
            raise ExecutionError(
                f"daily spend cap: {spent_in_day_wei} wei spent or in flight in the last 24 h"
                f" + {worst_wei} wei worst case of this tx > max_spend_per_day_wei"
                f" {self.max_spend_per_day_wei}"
            )


def _bump(x: int) -> int:
    return -(-x * BUMP_NUM // BUMP_DEN)  # ceil(x * 1.125)


# -- revert reasons --------------------------------------------------------------------

_ERROR_STRING = bytes.fromhex("08c379a0")  # Error(string)
_PANIC = bytes.fromhex("4e487b71")  # Panic(uint256)
_PANICS = {0x01: "assert failed", 0x11: "arithmetic overflow or underflow",
           0x12: "division by zero", 0x21: "invalid enum value", 0x31: "pop on empty array",
           0x32: "array index out of bounds", 0x41: "out of memory"}
# Aave V3 (3.0.2) libraries/helpers/Errors.sol: code n is the n-th name ('-': unused code)
AAVE_ERRORS = """
    CALLER_NOT_POOL_ADMIN CALLER_NOT_EMERGENCY_ADMIN CALLER_NOT_POOL_OR_EMERGENCY_ADMIN
    CALLER_NOT_RISK_OR_POOL_ADMIN CALLER_NOT_ASSET_LISTING_OR_POOL_ADMIN CALLER_NOT_BRIDGE
    ADDRESSES_PROVIDER_NOT_REGISTERED INVALID_ADDRESSES_PROVIDER_ID NOT_CONTRACT
    CALLER_NOT_POOL_CONFIGURATOR CALLER_NOT_ATOKEN INVALID_ADDRESSES_PROVIDER
    INVALID_FLASHLOAN_EXECUTOR_RETURN RESERVE_ALREADY_ADDED NO_MORE_RESERVES_ALLOWED
    EMODE_CATEGORY_RESERVED INVALID_EMODE_CATEGORY_ASSIGNMENT RESERVE_LIQUIDITY_NOT_ZERO
    FLASHLOAN_PREMIUM_INVALID INVALID_RESERVE_PARAMS INVALID_EMODE_CATEGORY_PARAMS
    BRIDGE_PROTOCOL_FEE_INVALID CALLER_MUST_BE_POOL INVALID_MINT_AMOUNT INVALID_BURN_AMOUNT
    INVALID_AMOUNT RESERVE_INACTIVE RESERVE_FROZEN RESERVE_PAUSED BORROWING_NOT_ENABLED
    STABLE_BORROWING_NOT_ENABLED NOT_ENOUGH_AVAILABLE_USER_BALANCE
    INVALID_INTEREST_RATE_MODE_SELECTED COLLATERAL_BALANCE_IS_ZERO
    HEALTH_FACTOR_LOWER_THAN_LIQUIDATION_THRESHOLD COLLATERAL_CANNOT_COVER_NEW_BORROW
    COLLATERAL_SAME_AS_BORROWING_CURRENCY AMOUNT_BIGGER_THAN_MAX_LOAN_SIZE_STABLE
    NO_DEBT_OF_SELECTED_TYPE NO_EXPLICIT_AMOUNT_TO_REPAY_ON_BEHALF
    NO_OUTSTANDING_STABLE_DEBT NO_OUTSTANDING_VARIABLE_DEBT UNDERLYING_BALANCE_ZERO
    INTEREST_RATE_REBALANCE_CONDITIONS_NOT_MET HEALTH_FACTOR_NOT_BELOW_THRESHOLD
    COLLATERAL_CANNOT_BE_LIQUIDATED SPECIFIED_CURRENCY_NOT_BORROWED_BY_USER -
    INCONSISTENT_FLASHLOAN_PARAMS BORROW_CAP_EXCEEDED SUPPLY_CAP_EXCEEDED
    UNBACKED_MINT_CAP_EXCEEDED DEBT_CEILING_EXCEEDED UNDERLYING_CLAIMABLE_RIGHTS_NOT_ZERO
    STABLE_DEBT_NOT_ZERO VARIABLE_DEBT_SUPPLY_NOT_ZERO LTV_VALIDATION_FAILED
    INCONSISTENT_EMODE_CATEGORY PRICE_ORACLE_SENTINEL_CHECK_FAILED
    ASSET_NOT_BORROWABLE_IN_ISOLATION RESERVE_ALREADY_INITIALIZED
    USER_IN_ISOLATION_MODE_OR_LTV_ZERO INVALID_LTV INVALID_LIQ_THRESHOLD INVALID_LIQ_BONUS
    INVALID_DECIMALS INVALID_RESERVE_FACTOR INVALID_BORROW_CAP INVALID_SUPPLY_CAP
    INVALID_LIQUIDATION_PROTOCOL_FEE INVALID_EMODE_CATEGORY INVALID_UNBACKED_MINT_CAP
    INVALID_DEBT_CEILING INVALID_RESERVE_INDEX ACL_ADMIN_CANNOT_BE_ZERO
    INCONSISTENT_PARAMS_LENGTH ZERO_ADDRESS_NOT_VALID INVALID_EXPIRATION INVALID_SIGNATURE
    OPERATION_NOT_SUPPORTED DEBT_CEILING_NOT_ZERO ASSET_NOT_LISTED
    INVALID_OPTIMAL_USAGE_RATIO INVALID_OPTIMAL_STABLE_TO_TOTAL_DEBT_RATIO
    UNDERLYING_CANNOT_BE_RESCUED ADDRESSES_PROVIDER_ALREADY_ADDED
    POOL_ADDRESSES_DO_NOT_MATCH STABLE_BORROWING_ENABLED SILOED_BORROWING_VIOLATION
    RESERVE_DEBT_NOT_ZERO FLASHLOAN_DISABLED
""".split()  # noqa: SIM905


def decode_revert(data: bytes, message: str = "") -> str:
    """Revert data -> words: ``Aave error 26 INVALID_AMOUNT`` (3.0.x), ``Aave error
    MustNotLeaveDust()`` (3.2+), ``ERC20: transfer amount
    exceeds balance``, ``panic 0x11 (arithmetic overflow or underflow)``, ``custom error
    0x1234abcd``; with no data, the node's ``message``."""
    if data[:4] == _ERROR_STRING:
        try:
            (reason,) = decode(["string"], data[4:])
        except Exception:  # noqa: BLE001  malformed ABI from the contract: show the bytes instead
            return f"Error(string) with undecodable data 0x{data.hex()}"
        if reason.isdigit() and 0 < int(reason) <= len(AAVE_ERRORS) and AAVE_ERRORS[int(reason) - 1] != "-":
            return f"Aave error {reason} {AAVE_ERRORS[int(reason) - 1]}"
        return reason or "reverted with an empty reason"
    if data[:4] == _PANIC and len(data) >= 36:
        code = int.from_bytes(data[4:36], "big")
        return f"panic 0x{code:02x} ({_PANICS.get(code, 'unknown panic code')})"
    if len(data) >= 4 and (named := decode_error(data)) is not None:
        return named  # a protocol's custom error, e.g. "Aave error MustNotLeaveDust()"
    if len(data) >= 4:
        return f"custom error 0x{data[:4].hex()}" + (f" data 0x{data[4:].hex()}" if data[4:] else "")
    return message or "reverted without a reason"
