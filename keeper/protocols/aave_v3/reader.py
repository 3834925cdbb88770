"""Aave V3 (and forks with the same interface): reads for one market.

A market is configured by its PoolAddressesProvider alone; Pool, AaveOracle and
the data provider are found on-chain. Every read of a tick is pinned to one block
and batched through Multicall3. Two per-account phases: user configuration and
e-mode for every account, then only the token balances whose bits are set.
The health math itself lives in keeper.protocols.aave_v3.health (pure, no IO).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import structlog
from eth_abi import decode
from eth_utils import to_checksum_address

from keeper.chain.abi import (address_array, address_word, addr_arg, call_data, checksum, signed_word,
                              string_or_bytes32, topic, uint_arg, word, words)
from keeper.chain.logs import Log, LogScanner, topic_account
from keeper.chain.multicall import GET_CURRENT_BLOCK_TIMESTAMP, Call, Multicall
from keeper.chain.rpc import Rpc
from keeper.errors import DevnetError, SourceError
from keeper.protocols.aave_v3.math import decode_reserve_config
from keeper.protocols.aave_v3.math36 import Evaluator36, is_v36
from keeper.protocols.aave_v3.health import drop_to_liquidation_bps, position_from, shock
from keeper.protocols.aave_v3.fast import view_for
from keeper.health.status import Thresholds
from keeper.model import Address, Position
from keeper.protocols.aave_v3.model import AaveAccount, AaveMarketState, AccountData, EModeCategory, Reserve, UserReserve

from keeper.protocols.aave_v3 import lens as aave_reader
from keeper.protocols.aave_v3 import reader36 as aave36_reads

log = structlog.get_logger("keeper.aave_v3")
ZERO = "0x0000000000000000000000000000000000000000"
BORROW = topic("Borrow(address,address,address,uint256,uint8,uint256,uint16)")
# Every Pool / aToken event whose indexed topics name an account whose position changed.
POOL_EVENTS = [topic(s) for s in (
    "Supply(address,address,address,uint256,uint16)",
    "Withdraw(address,address,address,uint256)",
    "Borrow(address,address,address,uint256,uint8,uint256,uint16)",
    "Repay(address,address,address,uint256,bool)",
    "SwapBorrowRateMode(address,address,uint8)",
    "RebalanceStableBorrowRate(address,address)",
    "ReserveUsedAsCollateralEnabled(address,address)",
    "ReserveUsedAsCollateralDisabled(address,address)",
    "LiquidationCall(address,address,address,uint256,uint256,address,bool)",
    "UserEModeSet(address,uint8)",
    "BalanceTransfer(address,address,uint256,uint256)",
)]


@dataclass(frozen=True, slots=True)
class FeedReading:
    asset: Address
    source: Address
    answer: int
    updated_at: int
    ok: bool  # latestRoundData answered


@dataclass
class _Static:
    """What does not change between ticks (refreshed when the reserve list changes)."""

    pool: Address
    oracle: Address
    data_provider: Address
    assets: list[Address]
    symbols: dict[Address, str]
    version: tuple[int, int] = aave36_reads.V30  # which Aave math applies (aave36_reads)
    revision: int = 0
    emode_ids: tuple[int, ...] = ()  # 3.6: the configured e-mode categories


class AaveV3Adapter:
    """Reads one Aave V3 market through Multicall3."""

    name = "aave_v3"

    def __init__(self, rpc: Rpc, multicall: Multicall, logs: LogScanner,
                 addresses_provider: str, label: str, use_reader: bool = True):
        self.rpc = rpc
        self.mc = multicall
        self.logs = logs
        self.provider = to_checksum_address(addresses_provider)
        self.label = label
        self.static: _Static | None = None
        self.feeds: dict[Address, FeedReading] = {}
        self.has_stable: set[int] = set()  # reserve ids whose stable debt supply is not zero
        self.use_reader = use_reader
        self._second: tuple[_Static, list[Call]] | None = None  # the last market's second read (load_market)

    # -- market ---------------------------------------------------------------------
    async def connect(self, block: int) -> _Static:
        p = self.provider
        pool, oracle, dp = await self.mc.run_strict([
            Call(p, call_data("getPool()")),
            Call(p, call_data("getPriceOracle()")),
            Call(p, call_data("getPoolDataProvider()")),
        ], block)
        pool_a = address_word(pool)
        if pool_a == ZERO:
            raise SourceError(f"{p}: PoolAddressesProvider has no Pool")
        # the reserves list and the version probe in one round trip
        (ok, assets_raw), *probe = await self.mc.run(
            [Call(pool_a, call_data("getReservesList()"))] + aave36_reads.probe_calls(pool_a), block)
        if not ok:
            raise SourceError(f"call to {pool_a} reverted at block {block}")
        assets = address_array(assets_raw)
        sym_raw = await self.mc.run([Call(a, call_data("symbol()")) for a in assets], block)
        symbols = {a: (string_or_bytes32(r) if ok else a[:8]) for a, (ok, r) in zip(assets, sym_raw)}
        version = aave36_reads.parse_probe(probe)
        self.static = _Static(pool_a, address_word(oracle), address_word(dp), assets, symbols, *version)
        log.info("market.version", market=self.label, version=".".join(map(str, version[0])),
                 revision=version[1])
        return self.static

    async def load_market(self, block: int, heartbeat_for: Callable[[str], int]) -> AaveMarketState:
        """Reserves, indexes, prices and feed freshness at ``block``, in one multicall. The
        second read (e-mode categories, the feeds' rounds, stable supplies, 3.6's per-category
        and per-reserve values) depends on the reserves; it goes into the same multicall as
        the last market's reserves name it, and is used when this block's reserves name the
        very same calls (the same calls at the same block: the same answers). Only a block
        that changed them (a new feed, an e-mode category) reads it again after."""
        st = self.static or await self.connect(block)
        calls = [Call(self.mc.address, GET_CURRENT_BLOCK_TIMESTAMP),
                 Call(st.pool, call_data("getReservesList()")),
                 Call(st.oracle, call_data("BASE_CURRENCY_UNIT()"))]
        for a in st.assets:
            calls += [Call(st.pool, call_data("getReserveData(address)", addr_arg(a))),
                      Call(st.oracle, call_data("getAssetPrice(address)", addr_arg(a))),
                      Call(st.oracle, call_data("getSourceOfAsset(address)", addr_arg(a)))]
        guess = self._second[1] if self._second is not None and self._second[0] is st else []
        res = await self.mc.run(calls + guess, block)
        res, guessed = res[:len(calls)], res[len(calls):]
        if not all(ok for ok, _ in res[:3]):
            raise SourceError(f"{self.label}: market header read failed at block {block}")
        timestamp = word(res[0][1])
        if address_array(res[1][1]) != st.assets:  # a reserve was added or dropped
            self.static = None
            return await self.load_market(block, heartbeat_for)
        base_unit = word(res[2][1])
        reserves, sources = [], {}
        for i, a in enumerate(st.assets):
            (ok_rd, rd), (ok_p, pr), (ok_s, src) = res[3 + 3 * i: 6 + 3 * i]
            if not ok_rd:
                raise SourceError(f"{self.label}: getReserveData({a}) failed at block {block}")
            w = words(rd)
            sources[a] = address_word(src) if ok_s else ZERO
            reserves.append(Reserve(
                id=w[7], asset=a, symbol=st.symbols[a], config=decode_reserve_config(w[0]),
                a_token=checksum(w[8].to_bytes(20, "big")),
                stable_debt_token=checksum(w[9].to_bytes(20, "big")),
                variable_debt_token=checksum(w[10].to_bytes(20, "big")),
                liquidity_index_ray=w[1], current_liquidity_rate_ray=w[2],
                variable_borrow_index_ray=w[3], current_variable_borrow_rate_ray=w[4],
                last_update_timestamp=w[6],
                price_base=word(pr) if ok_p else 0, price_source=sources[a]))
        reserves.sort(key=lambda r: r.id)
        second = self._second_calls(reserves)
        self._second = (st, second)
        emode, feeds, grace = await self._emode_and_feeds(
            reserves, block, guessed if second == guess else await self.mc.run(second, block))
        if grace:  # 3.6: grace periods, virtual balances
            reserves = [replace(r, **grace[r.id]) for r in reserves]
        self.feeds = feeds
        unreliable = set()
        for r in reserves:
            f = feeds.get(r.asset)
            limit = heartbeat_for(r.symbol)
            if r.price_base == 0 or f is None or not f.ok or f.answer <= 0 \
                    or timestamp - f.updated_at > limit:
                unreliable.add(r.asset)
        return AaveMarketState(pool=st.pool, block=block, timestamp=timestamp,
                               base_currency_unit=base_unit, reserves=tuple(reserves),
                               emode_categories=emode, unreliable_assets=frozenset(unreliable),
                               version=st.version, revision=st.revision)

    def _second_calls(self, reserves: Sequence[Reserve]) -> list[Call]:
        """The market's second read, as ``reserves`` name it (``_emode_and_feeds`` parses it)."""
        st = self.static
        assert st is not None
        cats, with_feed = _named(reserves)
        calls = [Call(st.pool, call_data("getEModeCategoryData(uint8)", uint_arg(c))) for c in cats]
        calls += [Call(r.price_source, call_data("latestRoundData()")) for r in with_feed]
        calls += [Call(r.stable_debt_token, call_data("totalSupply()")) for r in reserves]
        if st.version >= aave36_reads.V36:
            calls += aave36_reads.calls36(st.pool, st.emode_ids, reserves)
        return calls

    async def _emode_and_feeds(self, reserves: Sequence[Reserve], block: int, res: list[tuple[bool, bytes]]):
        """E-mode categories, feed readings and 3.6's values from ``res``: the results of
        ``_second_calls(reserves)`` at ``block``."""
        st = self.static
        assert st is not None
        cats, with_feed = _named(reserves)
        n = len(cats) + len(with_feed) + len(reserves)
        v36 = st.version >= aave36_reads.V36
        res, res36 = res[:n], res[n:]
        stable = res[n - len(reserves):]
        self.has_stable = {r.id for r, (ok, raw) in zip(reserves, stable)  # 3.2+: no stable token
                           if r.stable_debt_token != ZERO and (not ok or word(raw) > 0)}
        emode: dict[int, EModeCategory] = {}
        for c, (ok, raw) in zip(cats, res[:len(cats)]):
            if not ok:
                raise SourceError(f"{self.label}: getEModeCategoryData({c}) failed")
            ltv, lt, bonus, src, label = decode(["(uint16,uint16,uint16,address,string)"], raw)[0]
            emode[c] = EModeCategory(c, ltv, lt, bonus, to_checksum_address(src), 0, label)
        emode_src = [e for e in emode.values() if e.price_source != ZERO]
        if emode_src:  # a category with its own price: read it through the oracle
            prices = await self.mc.run_strict([
                Call(st.oracle, call_data("getAssetPrice(address)", addr_arg(e.price_source)))
                for e in emode_src], block)
            for e, p in zip(emode_src, prices):
                emode[e.id] = replace(e, price_base=word(p))
        feeds = {}
        for r, (ok, raw) in zip(with_feed, res[len(cats):len(cats) + len(with_feed)]):
            ok = ok and len(raw) >= 160
            feeds[r.asset] = FeedReading(r.asset, r.price_source,
                                         signed_word(raw, 1) if ok else 0,
                                         word(raw, 3) if ok else 0, ok)
        if v36:
            emode, grace = aave36_reads.parse36(st.emode_ids, reserves, res36)
            return emode, feeds, grace
        return emode, feeds, {}

    # -- accounts -------------------------------------------------------------------
    async def read_accounts(self, accounts: Sequence[Address],
                            market: AaveMarketState) -> list[AaveAccount]:
        """Raw state of ``accounts`` at ``market.block``: through the lens contract when the
        node takes state overrides (one eth_call per ~1,000 accounts), else Multicall3."""
        if not accounts:
            return []
        if self.use_reader:
            try:
                return await aave_reader.read_accounts(self.rpc, accounts, market, self.has_stable)
            except (SourceError, DevnetError) as e:
                self.use_reader = False  # e.g. no state overrides on this node: stay on Multicall3
                aave_reader.log_fallback(self.label, e)
        return await self.read_accounts_multicall(accounts, market)

    async def iter_accounts(self, accounts: Sequence[Address],
                            market: AaveMarketState) -> AsyncIterator[list[AaveAccount]]:
        """Like ``read_accounts`` but in parts, as they arrive (for pipelined scans)."""
        if self.use_reader and accounts:
            try:
                async for part in aave_reader.iter_read_accounts(self.rpc, accounts, market,
                                                                 self.has_stable):
                    yield part
                return
            except (SourceError, DevnetError) as e:
                self.use_reader = False
                aave_reader.log_fallback(self.label, e)
        yield await self.read_accounts_multicall(accounts, market)

    async def read_accounts_multicall(self, accounts: Sequence[Address],
                                      market: AaveMarketState) -> list[AaveAccount]:
        """Raw state of ``accounts`` at ``market.block``: two multicall phases."""
        pool, block = market.pool, market.block
        phase1: list[Call] = []
        for a in accounts:
            arg = addr_arg(a)
            phase1.append(Call(pool, call_data("getUserConfiguration(address)", arg)))
            phase1.append(Call(pool, call_data("getUserEMode(address)", arg)))
        r1 = await self.mc.run_strict(phase1, block)
        configs = [word(r1[2 * i]) for i in range(len(accounts))]
        emodes = [word(r1[2 * i + 1]) for i in range(len(accounts))]
        phase2: list[Call] = []
        plan: list[list[tuple[int, int]]] = []  # per account: (reserve id, kind)
        for a, cfg in zip(accounts, configs):
            arg, mine = addr_arg(a), []
            for r in market.reserves:
                bits = (cfg >> (2 * r.id)) & 3
                if bits & 1:  # borrowing
                    phase2.append(Call(r.variable_debt_token, call_data("scaledBalanceOf(address)", arg)))
                    mine.append((r.id, 1))
                    if r.id in self.has_stable:  # stable debt exists in this reserve
                        phase2.append(Call(r.stable_debt_token, call_data("balanceOf(address)", arg)))
                        mine.append((r.id, 2))
                if bits & 2:  # using as collateral
                    phase2.append(Call(r.a_token, call_data("scaledBalanceOf(address)", arg)))
                    mine.append((r.id, 0))
            plan.append(mine)
        r2 = iter(await self.mc.run_strict(phase2, block))
        out = []
        for a, cfg, em, mine in zip(accounts, configs, emodes, plan):
            bal: dict[int, list[int]] = {}
            for rid, kind in mine:
                bal.setdefault(rid, [0, 0, 0])[kind] = word(next(r2))
            out.append(AaveAccount(a, cfg, em, tuple(
                UserReserve(rid, v[0], v[1], v[2]) for rid, v in sorted(bal.items()))))
        return out

    async def pool_account_data(self, accounts: Sequence[Address], block: int) -> list[AccountData]:
        """The Pool's own view (getUserAccountData), batched: the truth we check against."""
        st = self.static or await self.connect(block)
        raws = await self.mc.run_strict([
            Call(st.pool, call_data("getUserAccountData(address)", addr_arg(a))) for a in accounts
        ], block)
        return [AccountData(*words(r)[:6]) for r in raws]

    # -- what the engine asks of every protocol adapter --------------------------------
    def evaluator(self, market: AaveMarketState) -> _AaveEvaluator | Evaluator36:
        """Health math bound to one market state (per-reserve values computed once)."""
        if is_v36(market):
            return Evaluator36(market)
        return _AaveEvaluator(market)

    @staticmethod
    def keys_of(acct: AaveAccount) -> list[int]:
        """What a price/index move must touch to reach this account: its reserve ids."""
        return [ur.reserve_id for ur in acct.reserves]

    @staticmethod
    def moved(old: AaveMarketState | None, new: AaveMarketState) -> set[int]:
        """Reserves whose price, stored indexes, rates, configuration or reliability changed."""
        if old is None or len(old.reserves) != len(new.reserves):
            return {r.id for r in new.reserves}
        flips = old.unreliable_assets ^ new.unreliable_assets
        return {n.id for o, n in zip(old.reserves, new.reserves) if o != n or n.asset in flips}

    @staticmethod
    def apply_shocks(market: AaveMarketState, shocks: dict[str, int]) -> AaveMarketState:
        """What-if: prices moved by bps per symbol, no transaction. Symbols this market does
        not list are ignored (the shock may be meant for another market)."""
        listed = {r.symbol.upper() for r in market.reserves}
        return shock(market, {market.by_symbol(s).asset: bps for s, bps in shocks.items()
                              if s.upper() in listed})

    @staticmethod
    def event_topics() -> list[bytes]:
        return POOL_EVENTS

    # -- events ---------------------------------------------------------------------
    async def discover(self, from_block: int, to_block: int) -> AsyncIterator[tuple[int, set[Address]]]:
        """Borrowers (Borrow.onBehalfOf) per log chunk, for checkpointing as we go."""
        st = self.static or await self.connect(to_block)
        async for last, logs in self.logs.scan([st.pool], [[BORROW]], from_block, to_block):
            yield last, {topic_account(lg.topics[2]) for lg in logs}

    def event_sources(self, market: AaveMarketState) -> list[Address]:
        return [market.pool] + [r.a_token for r in market.reserves]

    @staticmethod
    def touched(logs: Iterable[Log]) -> tuple[set[Address], set[Address]]:
        """(accounts named by position-changing events, new borrowers) in ``logs``."""
        touched, borrowers = set(), set()
        for lg in logs:
            if not lg.topics or lg.topics[0] not in POOL_EVENTS:
                continue
            for t in lg.topics[1:]:
                if t[:12] == bytes(12):
                    touched.add(topic_account(t))
            if lg.topics[0] == BORROW:
                borrowers.add(topic_account(lg.topics[2]))
        return touched, borrowers


class _AaveEvaluator:
    def __init__(self, market: AaveMarketState):
        self.market = market
        self.view = view_for(market)  # memoized: the liquidation plans of this market use it too

    def position(self, acct: AaveAccount, thresholds: Thresholds, with_drop: bool) -> Position:
        return position_from(self.market, acct, "aave_v3", thresholds, with_drop=with_drop,
                             view=self.view)

    def drop(self, acct: AaveAccount) -> int | None:
        return drop_to_liquidation_bps(self.market, acct, self.view)


def _named(reserves: Sequence[Reserve]) -> tuple[list[int], list[Reserve]]:
    """What the market's second read asks about: the e-mode categories the reserves name
    (sorted) and the reserves priced by a feed."""
    return (sorted({r.config.emode_category for r in reserves if r.config.emode_category}),
            [r for r in reserves if r.price_source != ZERO])
