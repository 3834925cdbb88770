"""Morpho Blue behind keeper.protocols.base, one market id at a time. A Morpho market is
isolated (one collateral, one loan token), so the engine keeps one Watch per market id; they
share one MorphoBlueAdapter (reader.py: its reads and per-block cache). Math in math.py,
planners and calldata in plan.py and topup.py, doctor checks in doctor.py.

Morpho Blue has no health-factor view: its own verdict (``contract_health``) is whether a
``liquidate`` of one share would pass the health check, simulated with ``eth_call``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from functools import partial

from keeper.chain.abi import call_data, selector, string_or_bytes32
from keeper.chain.logs import Log
from keeper.chain.multicall import Call
from keeper.chain.window import ahead
from keeper.checks import Check
from keeper.dex.liquidator import FLASH_MORPHO
from keeper.dex.view import FlashLender
from keeper.errors import SourceError
from keeper.model import ContractView, Decision, Liquidate, Outcome, ProtectRule, TopUp, TxStep
from keeper.prices import PriceBook
from keeper.protocols.base import MarketAdapter, PlanContext
from keeper.dex.deleverage import deleverage_outcome, pairs_of
from keeper.protocols.morpho_blue import deleverage as dl
from keeper.protocols.morpho_blue import plan, triggers
from keeper.protocols.morpho_blue.deleverage_reader import delegation, read_dex_inputs
from keeper.protocols.morpho_blue.doctor import morpho_checks
from keeper.protocols.morpho_blue import math as math
from keeper.protocols.morpho_blue.math import MorphoMarket, MorphoPosition
from keeper.health.status import Thresholds
from keeper.model import Address, Position
from keeper.protocols.morpho_blue.reader import MARKET_EVENTS, POSITION_EVENTS, MorphoBlueAdapter

EVENTS = list(POSITION_EVENTS) + list(MARKET_EVENTS)


class MorphoMarketAdapter(MarketAdapter[MorphoMarket, MorphoPosition]):
    name = "morpho_blue"

    def __init__(self, base: MorphoBlueAdapter, market_id: str, label: str | None = None,
                 market_name: str | None = None):
        self.base = base
        self.id = market_id
        self.label = label or f"{base.label}:{market_id[:10]}"
        self.market_name = market_name or base.label
        self.token_symbols: dict[str, str] = {}  # token address -> symbol
        self.decimals: dict[str, int] = {}
        self._cache: tuple[int, dict[str, MorphoMarket]] | None = None
        self._dex = None  # (block, keeper.dex.deleverage.DexInputs) of the last prepare_protect

    async def load_market(self, block: int, _heartbeat_for: Callable[[str], int]) -> MorphoMarket:
        cache = self.base.__dict__.setdefault("_block_cache", {})
        if block not in cache:  # one read per block for all of this Morpho's markets
            cache.clear()
            cache[block] = await self.base.load_markets(block)
        m = cache[block][self.id]
        if not self.token_symbols:
            await self._tokens(m, block)
        return m

    async def _tokens(self, m: MorphoMarket, block: int) -> None:
        tokens = [m.params.collateral_token, m.params.loan_token]
        res = await self.base.mc.run([Call(t, call_data(sig)) for t in tokens
                                      for sig in ("symbol()", "decimals()")], block)
        for i, t in enumerate(tokens):
            (ok_s, s), (ok_d, d) = res[2 * i], res[2 * i + 1]
            self.token_symbols[t] = string_or_bytes32(s) if ok_s else t[:8]
            self.decimals[t] = int.from_bytes(d[-32:], "big") if ok_d and d else 18

    async def iter_accounts(self, accounts: Sequence[Address], market: MorphoMarket,
                            part: int = 1_000) -> AsyncIterator[list[MorphoPosition]]:
        """In parts of ``part`` accounts, a few read ahead of the caller (keeper.chain.window)."""
        async for got in ahead(partial(self.read_accounts, accounts[i:i + part], market)
                               for i in range(0, len(accounts), part)):
            yield got

    async def read_accounts(self, accounts: Sequence[Address], market: MorphoMarket
                            ) -> list[MorphoPosition]:
        return await self.base.read_positions(accounts, self.id, market.block)

    def evaluator(self, market: MorphoMarket) -> _Evaluator:
        return _Evaluator(market, self.token_symbols.get(market.params.collateral_token),
                          self.decimals.get(market.params.loan_token, 18),
                          self.token_symbols.get(market.params.loan_token, "loan token"))

    @staticmethod
    def keys_of(pos: MorphoPosition) -> list[str]:
        return ["market"]  # every position of an isolated market moves with it

    @staticmethod
    def moved(old: MorphoMarket | None, new: MorphoMarket) -> set[str]:
        if old is None or replace(old, block=0, timestamp=0) != replace(new, block=0, timestamp=0):
            return {"market"}
        return set()

    @staticmethod
    def accrued(old: MorphoMarket | None, new: MorphoMarket) -> int | None:
        return triggers.accrued(old, new)

    @staticmethod
    def crossing(market: MorphoMarket, acct: MorphoPosition, hf_wad: int) -> int | None:
        return triggers.crossing(market, acct, hf_wad)

    @staticmethod
    def projected(market: MorphoMarket, bps: int) -> tuple[MorphoMarket, int]:
        return triggers.projected(market, bps)

    @staticmethod
    def at_level(market: MorphoMarket, level: int) -> MorphoMarket:
        return triggers.at_level(market, level)

    @staticmethod
    def liquidation_prices(market: MorphoMarket, acct: MorphoPosition) -> list[tuple[str, int, bool]]:
        return triggers.liquidation_prices(market, acct)

    @staticmethod
    def price_of(market: MorphoMarket, key: str) -> int | None:
        return market.price if key == market.params.oracle.lower() else None

    @staticmethod
    def price_bands(market: MorphoMarket, horizon: MorphoMarket, acct: MorphoPosition, low: int | None,
                    high: int | None) -> list[tuple[str, int | None, int | None]]:
        return triggers.price_bands(market, horizon, acct, low, high)

    @staticmethod
    def price_moved(old: MorphoMarket | None, new: MorphoMarket) -> tuple[dict[str, int], int] | None:
        return triggers.price_moved(old, new)

    def apply_shocks(self, market: MorphoMarket, shocks: dict[str, int]) -> MorphoMarket:
        """The oracle price is collateral in loan-token units: a collateral move scales it,
        a loan-token move divides it (floored). Other symbols are ignored."""
        coll = self.token_symbols.get(market.params.collateral_token, "").upper()
        loan = self.token_symbols.get(market.params.loan_token, "").upper()
        up = {k.upper(): v for k, v in shocks.items()}
        price = market.price
        if coll in up:
            price = price * (10_000 + up[coll]) // 10_000
        if loan in up:
            if up[loan] <= -10_000:
                raise ValueError(f"{loan} cannot fall by 100% or more")
            price = price * 10_000 // (10_000 + up[loan])
        return replace(market, price=price)

    def event_sources(self, _market: MorphoMarket) -> list[Address]:
        return [self.base.morpho]

    @staticmethod
    def event_topics() -> list[bytes]:
        return EVENTS

    def touched(self, logs: Iterable[Log]) -> tuple[set[Address], set[Address]]:
        logs = [lg for lg in logs if len(lg.topics) > 1 and "0x" + lg.topics[1].hex() == self.id]
        return self.base.touched(logs)

    async def discover(self, from_block: int, to_block: int) -> AsyncIterator[tuple[int, set[Address]]]:
        async for last, found in self.base.discover_positions(from_block, to_block):
            yield last, {a for mid, a in found if mid == self.id}

    @staticmethod
    def account_of(pos: MorphoPosition) -> Address:
        return pos.account

    # -- the protocol's own view and doctor ----------------------------------------------
    async def contract_health(self, accounts: Sequence[Address], block: int) -> list[ContractView]:
        """Liquidatable when Morpho's ``liquidate`` of one share gets past its health check
        (``eth_call`` from the zero address: what fails after the check is the payment)."""
        params = await self._params(block)
        out = []
        for a in accounts:
            data = selector(plan.LIQUIDATE) + plan.abi_encode(
                [plan.PARAMS, "address", "uint256", "uint256", "bytes"], [params.as_tuple(), a, 0, 1, b""])
            try:
                await self.base.rpc.call(self.base.morpho, data, block)
                liquidatable = True
            except SourceError as e:
                liquidatable = "position is healthy" not in str(e)
            out.append(ContractView(a, liquidatable))
        return out

    async def doctor(self, block: int) -> list[Check]:
        return await morpho_checks(self.market_name, self.base.morpho, [self.id], self.base.rpc, block)

    async def _params(self, block: int):
        if self.id not in self.base.params:
            await self.base.market_params(block)
        return self.base.params[self.id]

    # -- prices, tokens, checks ------------------------------------------------------------
    def symbols(self, market: MorphoMarket) -> set[str]:
        return {s.upper() for s in self.token_symbols.values()}

    def prices_usd(self, market: MorphoMarket) -> dict[Address, tuple[str, int]]:
        return {}  # the oracle prices collateral in loan tokens, not in USD

    def tokens(self, market: MorphoMarket) -> dict[Address, str]:
        return dict(self.token_symbols)

    def spend_tokens(self, market: MorphoMarket) -> list[Address]:
        return [market.params.loan_token, market.params.collateral_token]

    def approvals(self, market: MorphoMarket) -> list[tuple[Address, Address]]:
        return [(t, self.base.morpho) for t in self.spend_tokens(market)]  # plan.encode's Approvals

    def agrees(self, position: Position, view: ContractView) -> bool:
        from keeper.model import Status

        return (position.status == Status.LIQUIDATABLE) == view.liquidatable

    # -- decisions -------------------------------------------------------------------------
    def plan_top_up(self, market: MorphoMarket, acct: MorphoPosition, rule: ProtectRule,
                    wallet: Mapping[Address, int]) -> TopUp | None:
        """A wallet top-up first; a deleverage when the wallet cannot pay the whole target.
        The rule's stop-loss first, whatever the HF, when the price book has its asset at or
        below ``close_below`` (``rule.closing``; Morpho's oracle prices nothing in USD)."""
        hf = math.health(market, acct)[2]
        dex = self._dex[1] if self._dex is not None and self._dex[0] == market.block else None
        if rule.closing and (c := dl.morpho_deleverage_top_up(self.label, market, acct, hf or 0, rule,
                                                               self.token_symbols, dex, self.base.morpho,
                                                               close=True)):
            return c
        d = plan.top_up(self.label, market, acct, hf or 0, rule, self.token_symbols, wallet)
        if (d is None or d.plan.partial) and self._sells_here(market, rule):
            return dl.morpho_deleverage_top_up(self.label, market, acct, hf or 0, rule, self.token_symbols, dex,
                                               self.base.morpho) or d
        return d

    def _sells_here(self, market: MorphoMarket, rule: ProtectRule) -> bool:
        s = self.token_symbols
        pair = (s.get(market.params.collateral_token, "").upper(), s.get(market.params.loan_token, "").upper())
        return pair in pairs_of(rule.actions)

    async def prepare_protect(self, market: MorphoMarket, rules: Sequence[ProtectRule], lenders=()) -> None:
        factory = next((r.dex_factory for r in rules if r.dex_factory and r.contract
                        and self._sells_here(market, r)), None)
        if factory is not None:
            self._dex = (market.block, await read_dex_inputs(self.base.rpc, self.base.morpho, factory,
                                                             market.params.collateral_token,
                                                             market.params.loan_token, market.block))

    async def protect_delegation(self, market: MorphoMarket, rule: ProtectRule, contract: Address, keeper: Address):
        if not self._sells_here(market, rule):
            return []
        label = self.token_symbols.get(market.params.collateral_token, "")
        return await delegation(self.base.rpc, self.base.morpho, rule.account, contract, keeper, label, market.block)

    def protect_calls(self, contract: Address) -> list[tuple[Address, str]]:
        return [(contract, dl.DELEVERAGE_MORPHO)]

    def plan_liquidations(self, market: MorphoMarket, due: Sequence[Position],
                          accounts: Mapping[Address, MorphoPosition], ctx: PlanContext) -> list[Liquidate]:
        return plan.liquidations(self.label, market, due, accounts, ctx, self._loan_decimals(market),
                                 self.base.morpho, self.token_symbols)

    def encode(self, decision: Decision, sender: Address) -> list[TxStep]:
        if isinstance(decision, TopUp) and isinstance(decision.quote, dl.MorphoDeleverageQuote):
            q = decision.quote
            return [TxStep(q.contract, dl.deleverage_calldata(q), f"deleverage {decision.account} on Morpho")]
        return plan.encode(self.base.morpho, self.base.params[self.id], decision)

    def realized(self, market: MorphoMarket, decision: Decision, receipts, prices: PriceBook) -> Outcome:
        if isinstance(decision, TopUp) and isinstance(decision.quote, dl.MorphoDeleverageQuote):
            q = decision.quote
            return deleverage_outcome(receipts, q.contract, q.borrower, q.collateral, q.debt, q.oracle_out)
        return plan.realized(market, decision, receipts, prices, self._loan_decimals(market))

    def allowed_calls(self, market: MorphoMarket) -> list[tuple[Address, str]]:
        return plan.allowed_calls(self.base.morpho, market.params)

    def flash_lenders(self, market: MorphoMarket) -> list[FlashLender]:
        """Morpho Blue's free flashLoan of anything it holds (every market's tokens)."""
        return [FlashLender(FLASH_MORPHO, self.base.morpho)]

    def _loan_decimals(self, market: MorphoMarket) -> int:
        return self.decimals.get(market.params.loan_token, 18)


class _Evaluator:
    def __init__(self, market: MorphoMarket, symbol: str | None, loan_decimals: int, loan_symbol: str):
        self.market, self.symbol, self.loan_decimals = market, symbol, loan_decimals
        self.loan_symbol = loan_symbol  # Morpho values count loan tokens, not USD

    def position(self, pos: MorphoPosition, thresholds: Thresholds, with_drop: bool) -> Position:
        return math.position_from(self.market, pos, thresholds, self.symbol, with_drop,
                                  self.loan_symbol, self.loan_decimals)

    def drop(self, pos: MorphoPosition) -> int | None:
        return math.drop_to_liquidation_bps(self.market, pos)


def build(mk, chain) -> list[tuple[str, MorphoMarketAdapter]]:
    """One watch per market id; they share one reader (one read per block for all)."""
    base = MorphoBlueAdapter(chain.rpc, chain.multicall, chain.logs, mk.morpho, mk.market_ids, mk.name)
    return [(f"{mk.name}:{mid[:10]}", MorphoMarketAdapter(base, mid, f"{mk.name}:{mid[:10]}", mk.name))
            for mid in base.market_ids]
