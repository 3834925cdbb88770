"""Morpho Blue: reads for a set of markets of one Morpho contract, at a pinned block.

Market params are immutable once a market exists, so ``idToMarketParams`` is read once per
market (the first ``load_markets``); after that one Multicall3 ``aggregate3`` per tick holds
the block timestamp (``getCurrentBlockTimestamp``), every ``market(id)`` and every oracle's
``price()``. Interest is then accrued to the block's timestamp in Python
(keeper.protocols.morpho_blue.math.accrue), as ``_accrueInterest`` would at that block: with IrmMock's
formula for the IRMs listed in ``mock_irms``, else with the IRM's own ``borrowRateView`` of
the stored market at the same block (exact for any IRM): asked in the same multicall with
the market as last read, which is right whenever the market is still stored so (no
interaction since: every idle block), else in a second multicall.
Positions (``position(id, user)``) are batched through Multicall3. Borrowers are found from
``Borrow`` / ``SupplyCollateral`` events (their ``onBehalf``), chunked by LogScanner.

API::

    adapter = MorphoBlueAdapter(rpc, multicall, logs, morpho, [market_id, ...], "morpho-devnet")
    markets = await adapter.load_markets(block)            # {id: MorphoMarket}, accrued
    positions = await adapter.read_positions(accounts, market_id, block)
    async for last_block, borrowers in adapter.discover(from_block, to_block): ...
    accounts, new_borrowers = adapter.touched(logs)        # from one block's logs
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Iterable, Sequence

from eth_utils import keccak, to_checksum_address

from keeper.chain.abi import addr_arg, call_data, topic, uint_arg, word, words
from keeper.chain.logs import Log, LogScanner, topic_account
from keeper.chain.multicall import GET_CURRENT_BLOCK_TIMESTAMP, Call, Multicall
from keeper.chain.rpc import Rpc
from keeper.errors import SourceError
from keeper.protocols.morpho_blue.math import MarketParams, MorphoMarket, MorphoPosition, accrue
from keeper.model import Address

ZERO = "0x0000000000000000000000000000000000000000"
PARAMS_TYPE = "(address,address,address,address,uint256)"
MARKET_TYPE = "(uint128,uint128,uint128,uint128,uint128,uint128)"
BORROW_RATE_VIEW = f"borrowRateView({PARAMS_TYPE},{MARKET_TYPE})"

# EventsLib.sol; (topic, index of the topic holding the account whose position changed)
BORROW = topic("Borrow(bytes32,address,address,address,uint256,uint256)")
SUPPLY_COLLATERAL = topic("SupplyCollateral(bytes32,address,address,uint256)")
POSITION_EVENTS = {
    topic("Supply(bytes32,address,address,uint256,uint256)"): 3,
    topic("Withdraw(bytes32,address,address,address,uint256,uint256)"): 2,
    BORROW: 2,
    topic("Repay(bytes32,address,address,uint256,uint256)"): 3,
    SUPPLY_COLLATERAL: 3,
    topic("WithdrawCollateral(bytes32,address,address,address,uint256)"): 2,
    topic("Liquidate(bytes32,address,address,uint256,uint256,uint256,uint256,uint256)"): 3,
}
# events that change a market's totals (besides the position events above)
MARKET_EVENTS = {
    topic("AccrueInterest(bytes32,uint256,uint256,uint256)"),
    topic("SetFee(bytes32,uint256)"),
}


def market_id(params: MarketParams) -> str:
    """MarketParamsLib.id: keccak256 of the five ABI words of MarketParams, 0x-hex."""
    return "0x" + keccak(_params_words(params)).hex()


def normalize_id(mid: str) -> str:
    raw = mid.lower().removeprefix("0x")
    if len(raw) != 64 or raw.strip("0123456789abcdef"):
        raise ValueError(f"not a Morpho market id (bytes32 hex): {mid!r}")
    return "0x" + raw


def _params_words(p: MarketParams) -> bytes:
    return b"".join((addr_arg(p.loan_token), addr_arg(p.collateral_token), addr_arg(p.oracle),
                     addr_arg(p.irm), uint_arg(p.lltv)))


def _stored_words(m: MorphoMarket) -> tuple[int, ...]:
    """IMorpho.market(id)'s six words, as stored (before any accrual in Python)."""
    return (m.total_supply_assets, m.total_supply_shares, m.total_borrow_assets, m.total_borrow_shares,
            m.last_update, m.fee)


def _rate_call(p: MarketParams, stored: tuple[int, ...]) -> bytes:
    """borrowRateView(params, market) with the market's six stored words."""
    return call_data(BORROW_RATE_VIEW, _params_words(p), *(uint_arg(v) for v in stored))


def _id_arg(mid: str) -> bytes:
    return bytes.fromhex(mid[2:])


def _address(w: int) -> Address:
    return to_checksum_address(w.to_bytes(20, "big"))


class MorphoBlueAdapter:
    """Reads markets and positions of one Morpho Blue contract through Multicall3."""

    name = "morpho_blue"

    def __init__(self, rpc: Rpc, multicall: Multicall, logs: LogScanner, morpho: str,
                 market_ids: Sequence[str], label: str, mock_irms: Collection[str] = ()):
        self.rpc = rpc
        self.mc = multicall
        self.logs = logs
        self.morpho = to_checksum_address(morpho)
        self.market_ids = [normalize_id(m) for m in market_ids]
        self.label = label
        self.mock_irms = {a.lower() for a in mock_irms}
        self.params: dict[str, MarketParams] = {}  # immutable per market: read once
        self._stored: dict[str, tuple[int, ...]] = {}  # market(id)'s six words as last read

    # -- markets --------------------------------------------------------------------
    async def market_params(self, block: int) -> dict[str, MarketParams]:
        """idToMarketParams of every configured market (read once, then cached)."""
        todo = [m for m in self.market_ids if m not in self.params]
        if todo:
            raws = await self.mc.run_strict([
                Call(self.morpho, call_data("idToMarketParams(bytes32)", _id_arg(m))) for m in todo
            ], block)
            for mid, raw in zip(todo, raws, strict=True):
                w = words(raw)
                if len(w) < 5:
                    raise SourceError(f"{self.label}: idToMarketParams({mid}) returned {len(raw)} bytes")
                p = MarketParams(*(_address(x) for x in w[:4]), w[4])
                if p.loan_token == ZERO or market_id(p) != mid:
                    raise SourceError(f"{self.label}: market {mid} does not exist on {self.morpho}")
                self.params[mid] = p
        return {m: self.params[m] for m in self.market_ids}

    async def load_markets(self, block: int, accrued: bool = True) -> dict[str, MorphoMarket]:
        """Every configured market at ``block``, accrued to the block's timestamp.

        ``accrued=False``: the market as stored (``lastUpdate`` may be older than the block).
        Start what-ifs at a later timestamp from that: accruing in two steps compounds
        differently from Morpho's one step, by a few wei."""
        params = await self.market_params(block)
        calls = [Call(self.mc.address, GET_CURRENT_BLOCK_TIMESTAMP)]
        for mid, p in params.items():
            calls += [Call(self.morpho, call_data("market(bytes32)", _id_arg(mid))),
                      Call(p.oracle, call_data("price()"))]
        # the IRM's rate of the market as last read, in the same multicall: exact when the
        # market is still stored as it was (no interaction since: every idle block)
        guesses = {mid: stored for mid, stored in self._stored.items()
                   if accrued and mid in params and self._needs_rate(params[mid])}
        calls += [Call(params[mid].irm, _rate_call(params[mid], stored)) for mid, stored in guesses.items()]
        res = await self.mc.run(calls, block)
        if not res[0][0]:
            raise SourceError(f"{self.label}: getCurrentBlockTimestamp failed at block {block}")
        timestamp = word(res[0][1])
        raw: dict[str, MorphoMarket] = {}
        for i, (mid, p) in enumerate(params.items()):
            (ok_m, m), (ok_p, pr) = res[1 + 2 * i], res[2 + 2 * i]
            w = words(m) if ok_m else []
            if len(w) < 6:
                raise SourceError(f"{self.label}: market({mid}) failed at block {block}")
            if w[4] == 0:
                raise SourceError(f"{self.label}: market {mid} is not created at block {block}")
            price = word(pr) if ok_p and len(pr) >= 32 else 0
            raw[mid] = MorphoMarket(mid, p, *w[:6], price=price, block=block, timestamp=timestamp,
                                    unreliable=price == 0)
            self._stored[mid] = _stored_words(raw[mid])
        if not accrued:
            return raw
        known = {}
        for (mid, stored), (ok, r) in zip(guesses.items(), res[1 + 2 * len(params):], strict=True):
            if ok and len(r) >= 32 and stored == self._stored[mid]:
                known[mid] = word(r)
        rates = known | await self._borrow_rates([m for m in raw.values() if m.id not in known], block)
        return {mid: accrue(m, timestamp, rates.get(mid)) for mid, m in raw.items()}

    def _needs_rate(self, p: MarketParams) -> bool:
        return p.irm != ZERO and p.irm.lower() not in self.mock_irms

    async def _borrow_rates(self, markets: list[MorphoMarket], block: int) -> dict[str, int]:
        """IIrm.borrowRateView(params, stored market) at ``block`` for the markets that accrue
        now with an IRM not in ``mock_irms`` (for those, accrue computes IrmMock's rate)."""
        todo = [m for m in markets if m.timestamp > m.last_update and self._needs_rate(m.params)]
        if not todo:
            return {}
        raws = await self.mc.run_strict([Call(m.params.irm, _rate_call(m.params, _stored_words(m)))
                                         for m in todo], block)
        return {m.id: word(r) for m, r in zip(todo, raws, strict=True)}

    # -- positions ------------------------------------------------------------------
    async def read_positions(self, accounts: Sequence[Address], market_id: str,
                             block: int) -> list[MorphoPosition]:
        """``position(id, user)`` of every account at ``block``, in order (zeros when none)."""
        mid = normalize_id(market_id)
        raws = await self.mc.run_strict([
            Call(self.morpho, call_data("position(bytes32,address)", _id_arg(mid), addr_arg(a)))
            for a in accounts], block)
        out = []
        for a, raw in zip(accounts, raws, strict=True):
            w = words(raw)
            if len(w) < 3:
                raise SourceError(f"{self.label}: position({mid}, {a}) returned {len(raw)} bytes")
            out.append(MorphoPosition(a, w[0], w[1], w[2]))
        return out

    # -- events ---------------------------------------------------------------------
    def _topics(self, events: list[bytes]) -> list[list[str]]:
        return [["0x" + t.hex() for t in events], self.market_ids]

    async def discover_positions(self, from_block: int, to_block: int
                                 ) -> AsyncIterator[tuple[int, set[tuple[str, Address]]]]:
        """(last block of the chunk, {(market id, account)}) from Borrow / SupplyCollateral
        ``onBehalf`` in the configured markets, chunk by chunk (to checkpoint as we go)."""
        topics = self._topics([BORROW, SUPPLY_COLLATERAL])
        async for last, logs in self.logs.scan([self.morpho], topics, from_block, to_block):
            found = set()
            for lg in logs:
                where = POSITION_EVENTS[lg.topics[0]]
                found.add(("0x" + lg.topics[1].hex(), topic_account(lg.topics[where])))
            yield last, found

    async def discover(self, from_block: int, to_block: int) -> AsyncIterator[tuple[int, set[Address]]]:
        """(last block of the chunk, borrowers found in it), like AaveV3Adapter.discover."""
        async for last, found in self.discover_positions(from_block, to_block):
            yield last, {account for _, account in found}

    def event_sources(self) -> list[Address]:
        return [self.morpho]

    def touched_positions(self, logs: Iterable[Log]) -> tuple[set[tuple[str, Address]], set[str]]:
        """({(market id, account)} whose position changed, market ids whose totals changed)
        in ``logs``, for the configured markets of this Morpho only."""
        positions, markets = set(), set()
        ours = set(self.market_ids)
        for lg in logs:
            if lg.address.lower() != self.morpho.lower() or len(lg.topics) < 2:
                continue
            mid = "0x" + lg.topics[1].hex()
            if mid not in ours:
                continue
            where = POSITION_EVENTS.get(lg.topics[0])
            if where is not None and len(lg.topics) > where:
                positions.add((mid, topic_account(lg.topics[where])))
                markets.add(mid)
            elif lg.topics[0] in MARKET_EVENTS:
                markets.add(mid)
        return positions, markets

    def touched(self, logs: Iterable[Log]) -> tuple[set[Address], set[Address]]:
        """(accounts whose position changed, new borrowers) in ``logs``, like AaveV3Adapter."""
        logs = list(logs)
        positions, _ = self.touched_positions(logs)
        borrowers = {topic_account(lg.topics[2]) for lg in logs
                     if lg.topics and lg.topics[0] == BORROW and len(lg.topics) > 2
                     and lg.address.lower() == self.morpho.lower()
                     and "0x" + lg.topics[1].hex() in self.market_ids}
        return {a for _, a in positions}, borrowers

