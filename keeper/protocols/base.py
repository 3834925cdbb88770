"""The interface every protocol implements in full. Generic code (engine, decide, respond,
executors, doctor, cli, demo) talks to protocols only through it; a new protocol is one
package under keeper/protocols/ and one line in keeper/protocols/registry.py.

One adapter serves one watched market (an Aave V3 Pool, one Morpho Blue market id, one
Comet). ``M`` is its market state at a pinned block, ``A`` the raw state of one account.

==============================  ===========================================================
IO (chain reads, pinned block)  discover, load_market, iter_accounts, read_accounts,
                                contract_health, doctor
pure                            event_sources, event_topics, touched, evaluator, keys_of,
                                moved, accrued, crossing, projected, liquidation_prices, price_of,
                                apply_shocks, symbols, prices_usd, tokens,
                                spend_tokens, approvals, agrees, plan_top_up, sells,
                                plan_liquidations, after_liquidation, encode, realized,
                                allowed_calls
==============================  ===========================================================
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from keeper.checks import Check
from keeper.chain.logs import Log
from keeper.health.status import Thresholds
from keeper.model import Address, ContractView, Decision, Liquidate, Outcome, Position, ProtectRule, TopUp, TxStep
from keeper.prices import PriceBook

M = TypeVar("M")
A = TypeVar("A")


class Evaluator(Protocol[A]):
    """Health math bound to one market state (per-market values computed once)."""

    def position(self, acct: A, thresholds: Thresholds, with_drop: bool) -> Position: ...

    def drop(self, acct: A) -> int | None: ...


class Receipt(Protocol):
    """What ``realized`` reads of a mined transaction (keeper.executors.TxOutcome is one)."""

    hash: str
    ok: bool
    logs: list[dict]
    cost_wei: int | None


@dataclass(frozen=True)
class PlanContext:
    """What a liquidation planner needs besides the market: the wallet, gas and prices."""

    sender: Address
    wallet: Mapping[Address, int]  # token -> the sender's balance
    gas_usd_e8: int  # one liquidation transaction's gas at the current fee
    min_profit_usd_e8: int
    prices: PriceBook
    receive_a_token: bool = False
    exclude: frozenset[str] = field(default_factory=frozenset)  # lower-case own accounts
    dex: Any = None  # keeper.dex.view.DexView when [liquidator] contract is set: plan capital-free too


class MarketAdapter(ABC, Generic[M, A]):
    name: ClassVar[str]  # the config's ``protocol``
    # ``price_bands`` are boxes: the status holds for every combination of prices inside all of
    # an account's bands at once (not only one key's, the others as they were), so a block
    # moving several keys names the accounts outside any of them (keeper.triggers)
    price_boxes: ClassVar[bool] = False
    label: str  # the watch key (logs, store, alerts)
    market_name: str  # the configured market's name (``[[protect]] market``)

    # -- IO ---------------------------------------------------------------------------
    @abstractmethod
    def discover(self, from_block: int, to_block: int) -> AsyncIterator[tuple[int, set[Address]]]:
        """(last block of a log chunk, borrowers found in it), chunk by chunk."""

    @abstractmethod
    async def load_market(self, block: int, heartbeat_for: Callable[[str], int]) -> M:
        """The market at ``block``: parameters, indexes accrued to the block, prices."""

    @abstractmethod
    def iter_accounts(self, accounts: Sequence[Address], market: M) -> AsyncIterator[list[A]]:
        """Raw account state at ``market``'s block, in parts as they arrive."""

    @abstractmethod
    async def read_accounts(self, accounts: Sequence[Address], market: M) -> list[A]:
        """Raw account state at ``market``'s block, in order."""

    @abstractmethod
    async def contract_health(self, accounts: Sequence[Address],
                              block: int) -> list[ContractView]:
        """The protocol's own view of each account (``scan --check``, the pre-send re-read)."""

    @abstractmethod
    async def doctor(self, block: int) -> list[Check]:
        """One line per question: is every configured address what it claims?"""

    # -- events (pure) ----------------------------------------------------------------
    @abstractmethod
    def event_sources(self, market: M) -> list[Address]: ...

    @abstractmethod
    def event_topics(self) -> list[bytes]: ...

    @abstractmethod
    def touched(self, logs: Iterable[Log]) -> tuple[set[Address], set[Address]]:
        """(accounts whose position the logs changed, new borrowers)."""

    # -- health (pure) ----------------------------------------------------------------
    @abstractmethod
    def evaluator(self, market: M) -> Evaluator[A]: ...

    @abstractmethod
    def keys_of(self, acct: A) -> list[Hashable]:
        """What a market move must touch to reach this account."""

    @abstractmethod
    def moved(self, old: M | None, new: M) -> set[Hashable]:
        """Keys whose inputs (price, indexes, configuration, reliability) changed."""

    @abstractmethod
    def apply_shocks(self, market: M, shocks: dict[str, int]) -> M:
        """What-if: prices moved by bps per symbol; symbols the market lacks are ignored."""

    def price_feeds(self, market: M) -> dict[Address, str]:
        """Chainlink-style feed -> the symbol whose price it sets in this market (what a pending
        update of it moves: keeper.backrun). Empty: none known (no backrun)."""
        return {}

    @abstractmethod
    def symbols(self, market: M) -> set[str]:
        """Upper-case symbols whose price this market uses."""

    @abstractmethod
    def prices_usd(self, market: M) -> dict[Address, tuple[str, int]]:
        """token -> (symbol, USD e8) from this market's own oracle (empty: it has none)."""

    @abstractmethod
    def tokens(self, market: M) -> dict[Address, str]:
        """token -> symbol of every token of the market (what [[protect]] actions name)."""

    @abstractmethod
    def spend_tokens(self, market: M) -> list[Address]:
        """Tokens a liquidation or top-up on this market may spend from the wallet."""

    @abstractmethod
    def approvals(self, market: M) -> list[tuple[Address, Address]]:
        """(token, spender) of every allowance a liquidation or top-up on this market may
        need: the executor sets them up at start-up (and when a new token appears), never
        on the send path."""

    @abstractmethod
    def agrees(self, position: Position, view: ContractView) -> bool:
        """Does keeper's own math agree with the protocol's view, to the wei?"""

    # -- decisions (pure) -------------------------------------------------------------
    @abstractmethod
    def plan_top_up(self, market: M, acct: A, rule: ProtectRule,
                    wallet: Mapping[Address, int]) -> TopUp | None:
        """The smallest supply / repay that brings ``acct`` back to ``rule``'s target (or
        the most the wallet can do, ``plan.partial``); None when no action can help."""

    @abstractmethod
    def plan_liquidations(self, market: M, due: Sequence[Position], accounts: Mapping[Address, A],
                          ctx: PlanContext) -> list[Liquidate]:
        """Profitable liquidations of the liquidatable ``due`` positions."""

    def after_liquidation(self, market: M, acct: A, decision: Liquidate) -> tuple[M, A] | None:
        """Optional: ``market`` and ``acct`` as a later transaction of the same block sees them
        once ``decision`` (planned on them) is mined, to the wei (the protocol's own rounding),
        so that keeper.followups can plan the account's next liquidation into the same burst.
        None: not predicted (default: a protocol whose planner leaves nothing to liquidate,
        Compound V3's absorb, Morpho Blue's largest liquidate)."""
        return None

    def sells(self, market: M) -> bool:
        """Does the protocol itself offer something to buy at this block, with no account to
        liquidate (Comet's collateral reserves)? Then ``plan_liquidations`` runs with none due."""
        return False

    @abstractmethod
    def encode(self, decision: Decision, sender: Address) -> list[TxStep]:
        """The transactions that carry out ``decision``, approvals named, in order."""

    @abstractmethod
    def realized(self, market: M, decision: Decision, receipts: Sequence[Receipt],
                 prices: PriceBook) -> Outcome:
        """What the receipts' logs say happened (a liquidation's seized collateral and gross
        profit in USD e8)."""

    @abstractmethod
    def allowed_calls(self, market: M) -> list[tuple[Address, str]]:
        """(contract, function signature) pairs the guard lets this market's actions call."""

    def flash_lenders(self, market: M) -> list[Any]:
        """keeper.dex.view.FlashLender values: this protocol lends tokens for one transaction
        (capital-free liquidations on any market may borrow from it). Default: none."""
        return []

    # -- triggers computed ahead (optional; keeper.triggers) ---------------------------
    def accrued(self, old: M | None, new: M) -> int | None:
        """When ``old`` -> ``new`` moved every position by interest alone (no price, rate
        base, configuration or share total changed): ``new``'s accrual level, a number that
        never falls and that ``crossing`` is measured in. None otherwise, or when this
        protocol has no such level (default): the engine then recomputes ``moved`` holders."""
        return None

    def crossing(self, market: M, acct: A, hf_wad: int) -> int | None:
        """The lowest accrual level (as ``accrued`` counts it, ``market``'s other inputs held)
        at which ``acct``'s health factor is below ``hf_wad``: exact or lower, never higher.
        None: interest alone never gets it there (no debt)."""
        return None

    def recovery(self, market: M, acct: A, hf_wad: int) -> int | None:
        """Where interest can also RAISE a health factor (Aave: collateral earns): the lowest
        accrual level at which ``acct``'s health factor may be at or above ``hf_wad``, exact
        or lower. None (default): interest alone never raises it (Morpho Blue, Compound V3)."""
        return None

    def level(self, market: M) -> int | None:
        """``market``'s accrual level when each position's crossing depends only on what that
        position holds (Aave: the timestamp; its crossings outlive a move of another reserve,
        so a block that is not interest alone still pops them). None (default): not so."""
        return None

    def projected(self, market: M, bps: int) -> tuple[M, int] | None:
        """``market`` with its accrual level raised by ``bps`` (interest to come, nothing
        else moved) and that level; None when this protocol has no accrual level (default)."""
        return None

    def at_level(self, market: M, level: int) -> M:
        """``market`` with its accrual level raised to ``level`` (kept where it is already
        higher), nothing else moved: a position's bands then only need to hold until its
        own crossing (keeper.triggers.Ahead.keep). Default: ``market`` (no accrual level)."""
        return market

    # keep liquidation_prices for every position after every evaluation (keeper.triggers);
    # False where it costs more than the tick can afford (then it is there on demand)
    price_triggers_ahead: ClassVar[bool] = True

    def liquidation_prices(self, market: M, acct: A) -> list[tuple[Hashable, int, bool]]:
        """(price key, price, falls) per oracle price ``acct``'s health reads: liquidatable
        once that price is at or below ``price`` (falls: a collateral) or at or above it (a
        debt), the other prices as in ``market``. Empty: none known (default)."""
        return []

    def price_of(self, market: M, key: Hashable) -> int | None:
        """The price ``market`` holds for a ``liquidation_prices`` key, in the same unit (a
        pending update then names its positions from the trigger book: keeper.backrun).
        None: not known (default)."""
        return None

    def price_bands(self, market: M, horizon: M, acct: A, low: int | None,
                    high: int | None) -> list[tuple[Hashable, int | None, int | None]] | None:
        """keeper.bands: (price key, lo, hi) per oracle price ``acct``'s health reads: its
        health stays in [low, high) (None: unbounded) for every price of that key in [lo, hi]
        (None: no edge), the other prices as in ``market``, at every accrual level from
        ``market``'s to ``horizon``'s (``projected``; ``market`` itself without one). Exact or
        narrower. None: not known (default; every price move then recomputes ``acct``)."""
        return None

    def price_moved(self, old: M | None, new: M) -> tuple[dict[Hashable, int], int | None] | None:
        """({price key: new price}, accrual level or None) when ``old`` -> ``new`` moved only
        oracle prices and interest (as ``accrued`` counts it); None otherwise (default)."""
        return None

    # -- protection from the position itself (optional) -------------------------------
    async def prepare_protect(self, market: M, rules: Sequence[ProtectRule], lenders: Sequence[Any] = ()) -> None:
        """IO before ``plan_top_up`` for accounts due (e.g. the DEX pools a deleverage sells
        on, at ``market``'s block); ``lenders``: every watched market's ``flash_lenders``.
        Default: nothing to read."""
        return None

    async def protect_delegation(self, market: M, rule: ProtectRule, contract: Address,
                                 keeper: Address) -> list[Delegation]:
        """The borrower's one-time transactions that let ``contract`` deleverage it (``keeper
        protect setup``), each with whether the chain already has it. Default: none."""
        return []

    def protect_calls(self, contract: Address) -> list[tuple[Address, str]]:
        """(contract, signature) pairs a ``[[protect]] contract`` is called with (deleverage).
        Default: this protocol cannot deleverage."""
        return []


@dataclass(frozen=True)
class Delegation:
    """One transaction a borrower sends itself so that a protection contract may act for it."""

    to: Address
    data: bytes
    done: bool  # the chain already has it
    what: str  # what it allows, in plain words


@dataclass(frozen=True)
class ChainReaders:
    """The node IO every adapter shares (keeper.chain): one seam, tested once."""

    rpc: Any  # keeper.chain.rpc.Rpc
    multicall: Any  # keeper.chain.multicall.Multicall
    logs: Any  # keeper.chain.logs.LogScanner
