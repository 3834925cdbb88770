"""Plain values that flow between the layers. Frozen, int money, scale in the name.

chain/ + protocols/ read these from a node; health/ turns them into numbers;
decide.py (later) turns reports into decisions; executors act on decisions.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

Address = str  # EIP-55 checksum address


class Status(str, Enum):
    """Worst-last ordering: compare with ``Status.rank``."""

    SAFE = "safe"
    WATCH = "watch"
    AT_RISK = "at_risk"
    LIQUIDATABLE = "liquidatable"

    @property
    def rank(self) -> int:
        return _STATUS_RANK[self]


_STATUS_RANK = {Status.SAFE: 0, Status.WATCH: 1, Status.AT_RISK: 2, Status.LIQUIDATABLE: 3}


@dataclass(frozen=True, slots=True)
class Position:
    """One monitored position after the health math: what scan prints and run logs."""

    protocol: str
    market: Address
    account: Address
    block: int
    collateral_base: int
    debt_base: int
    health_factor_wad: int | None  # None when there is no debt
    liquidation_threshold_bps: int
    status: Status
    reliable: bool  # False when a feed it depends on is stale, zero or negative
    main_collateral: str | None = None  # symbol of the largest collateral
    drop_to_liquidation_bps: int | None = None  # price drop of main collateral -> HF < 1
    assets: frozenset[Address] = frozenset()  # every asset it holds or owes
    base_unit: str = "USD"  # what collateral_base / debt_base count (a token symbol on Morpho Blue)
    base_decimals: int = 8  # decimals of collateral_base / debt_base (1e8 USD on Aave V3;
    # the loan token's on Morpho Blue, the base token's on Compound V3)


# -- what keeper decides and does: generic values, each carrying the protocol's own quote --

@dataclass(frozen=True, slots=True)
class TopUpPlan:
    """One supply (collateral) or repay (debt) on the account's behalf, sized exactly."""

    action: str  # "supply" | "repay" | "deleverage" (asset, amount: the collateral sold)
    asset: Address
    amount: int  # token base units
    expected_hf_wad: int  # the protocol's HF after the action (UINT256_MAX: no debt left)
    partial: bool  # True: the wallet could not cover the amount that reaches the target
    shortfall: int | None  # tokens missing to reach the target with this action (0 when not
    # partial); None when no amount of this action alone reaches it (repaying all of it is short)


@dataclass(frozen=True, slots=True)
class ProtectRule:
    account: Address
    trigger_hf_wad: int
    target_hf_wad: int
    actions: tuple[tuple[str, str], ...]  # ("supply" | "repay", SYMBOL) or ("deleverage",
    # "COLLATERAL->DEBT"), in preference order
    market: str | None = None  # a configured market name; None: every market
    contract: Address | None = None  # KeeperProtection (deleverage)
    max_slippage_bps: int = 100  # a deleverage's swap vs the oracle
    dex_factory: Address | None = None  # [dex] uniswap_v3_factory: the pools a deleverage sells on
    close_below: tuple[str, int] | None = None  # (SYMBOL, USD e8): stop-loss at or below this price
    boost_above_wad: int | None = None  # re-leverage to the target above this health factor
    closing: bool = False  # this tick's price book has the stop-loss asset at or below close_below


@dataclass(frozen=True, slots=True)
class TopUp:
    """Protect an own account: one supply or repay (``plan``) on its behalf."""

    market: str  # the watch key
    protocol: str
    account: Address
    block: int
    health_factor_wad: int
    plan: TopUpPlan
    reason: str
    quote: object = None  # protocol detail the encoder needs (e.g. Morpho repay shares)

    @property
    def accounts(self) -> tuple[Address, ...]:
        return (self.account,)


@dataclass(frozen=True, slots=True)
class Liquidate:
    """Liquidate ``accounts`` (one on Aave V3 and Morpho Blue; every absorbed account on
    Compound V3). Profit is in USD with 8 decimals, after gas, the one unit across protocols."""

    market: str  # the watch key
    protocol: str
    accounts: tuple[Address, ...]
    block: int
    health_factor_wad: int
    quote: object  # the protocol's own quote (amounts in token base units)
    expected: int  # what the protocol's event will report: collateral seized (token units)
    profit_usd_e8: int  # expected, after gas
    gas_usd_e8: int
    reason: str
    route: str = "own capital"  # or "capital-free: flash ...; sell ... via ..." (keeper.dex.view)
    follows: int = 0  # n > 0: the account's (n+1)-th liquidation of this tick, planned on the
    # state after the previous ones (keeper.followups), sent right behind them

    @property
    def account(self) -> Address:
        return self.accounts[0]

    @property
    def lane(self) -> str | None:
        """Every capital-free liquidation shares one lane: they trade in the same pools, so one
        sent beside another could revert on chain. None: the market's own lane."""
        return None if self.route == "own capital" else "capital-free"


Decision = TopUp | Liquidate


@dataclass(frozen=True, slots=True)
class Approval:
    token: Address
    spender: Address
    amount: int


@dataclass(frozen=True, slots=True)
class TxStep:
    """One transaction of an action, built without IO by the protocol's encoder.

    ``approvals``: allowances the sender must have first (the executor sends an unlimited
    approve only when the allowance is short). ``optional``: a step whose simulation reverts
    is skipped, not a failure of the action (e.g. buying absorbed collateral)."""

    to: Address
    data: bytes
    purpose: str
    approvals: tuple[Approval, ...] = ()
    optional: bool = False


@dataclass(frozen=True, slots=True)
class ContractView:
    """The protocol's own on-chain view of one account: the truth keeper checks against."""

    account: Address
    liquidatable: bool
    health_factor_wad: int | None = None  # None: no debt, or the protocol has no HF view
    collateral: int | None = None  # in the protocol's own unit, where it has one
    debt: int | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the receipts of an action say happened. Profit in USD 1e8, before gas."""

    ok: bool
    realized: int | None = None  # the same quantity as Liquidate.expected (collateral seized)
    gross_profit_usd_e8: int | None = None
    detail: str = ""
