"""Compound III (Comet): reads for one market, written against the REAL Comet interface.

Every function called here exists on a deployed Comet with the same selector and return
layout (CometMainInterface / CometExtInterface; contracts/abi/Comet.json is that subset),
so the adapter reads a real Comet unchanged; keeper's devnet stand-in implements the same.
Reads of a tick are pinned to one block and go through Multicall3 ``aggregate3``:

* ``load_market(block)``: one multicall (block timestamp, numAssets, getAssetInfo(i),
  getPrice of every feed (Comet's own price path) and the feeds' ``latestRoundData`` for
  staleness, totalsBasic, the eight rate immutables, storeFrontPriceFactor, targetReserves,
  baseBorrowMin, getReserves); then the base indexes are accrued in Python to the block's
  timestamp (``accrued=False`` keeps the stored ones, as Comet's ``isLiquidatable`` sees).
  The first call (and any change of numAssets, asset, feed or base token) costs three more
  multicalls for the static part (addresses, scales, symbols).
* ``read_accounts(accounts, market)``: userBasic + userCollateral(account, asset) for
  every asset, batched (1 + numAssets sub-calls per account).
* ``discover(from_block, to_block)``: accounts that can owe base, per log chunk:
  ``Withdraw.src``, ``Transfer.from`` (not the zero address), and ``SupplyCollateral.dst`` /
  ``TransferCollateral.to``. The collateral events are there because a borrow made with a
  base ``transfer`` from an account with no supply emits no event naming the borrower;
  since Comet pays no interest on collateral, collateral suppliers are nearly all borrowers.

The math is in keeper.protocols.compound_v3.math (pure).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import partial

from eth_utils import to_checksum_address

from keeper.chain.abi import (
    addr_arg,
    address_word,
    call_data,
    signed_word,
    string_or_bytes32,
    topic,
    uint_arg,
    word,
    words,
)
from keeper.chain.logs import Log, LogScanner, topic_account
from keeper.chain.multicall import GET_CURRENT_BLOCK_TIMESTAMP, Call, Multicall
from keeper.chain.rpc import Rpc
from keeper.chain.window import ahead
from keeper.errors import SourceError
from keeper.protocols.compound_v3.math import (
    CometAccount,
    CometAssetInfo,
    CometMarket,
    CometRates,
    accrue,
    drop_to_liquidation_bps,
    position_from,
    shock,
)
from keeper.health.status import Thresholds
from keeper.model import Address, Position

ZERO_TOPIC = bytes(32)
SUPPLY = topic("Supply(address,address,uint256)")
TRANSFER = topic("Transfer(address,address,uint256)")
WITHDRAW = topic("Withdraw(address,address,uint256)")
SUPPLY_COLLATERAL = topic("SupplyCollateral(address,address,address,uint256)")
TRANSFER_COLLATERAL = topic("TransferCollateral(address,address,address,uint256)")
WITHDRAW_COLLATERAL = topic("WithdrawCollateral(address,address,address,uint256)")
ABSORB_DEBT = topic("AbsorbDebt(address,address,uint256,uint256)")
ABSORB_COLLATERAL = topic("AbsorbCollateral(address,address,address,uint256,uint256)")
BUY_COLLATERAL = topic("BuyCollateral(address,address,uint256,uint256)")
# event -> positions of the indexed topics naming an account whose position changed
CHANGED_BY = {SUPPLY: (2,), TRANSFER: (1, 2), WITHDRAW: (1,), SUPPLY_COLLATERAL: (2,),
              TRANSFER_COLLATERAL: (1, 2), WITHDRAW_COLLATERAL: (1,), ABSORB_DEBT: (2,),
              ABSORB_COLLATERAL: (2,)}
# event -> the indexed topic naming an account that may owe base from now on
MAY_BORROW = {WITHDRAW: 1, TRANSFER: 1, SUPPLY_COLLATERAL: 2, TRANSFER_COLLATERAL: 2}
RATE_GETTERS = ("supplyKink()", "supplyPerSecondInterestRateSlopeLow()",
                "supplyPerSecondInterestRateSlopeHigh()", "supplyPerSecondInterestRateBase()",
                "borrowKink()", "borrowPerSecondInterestRateSlopeLow()",
                "borrowPerSecondInterestRateSlopeHigh()", "borrowPerSecondInterestRateBase()")
BASE_KEY = "base"  # keys_of / moved: the base (price, indexes, rates); ints are asset offsets


@dataclass(frozen=True, slots=True)
class _Static:
    """What only a Comet upgrade changes: the base token, the feeds, the asset list."""

    base_token: Address
    base_feed: Address
    base_scale: int
    base_symbol: str
    assets: tuple[CometAssetInfo, ...]


def _asset_info(raw: bytes, symbol: str = "") -> CometAssetInfo:
    w = words(raw)
    if len(w) < 8:
        raise SourceError("getAssetInfo: short return data")
    return CometAssetInfo(w[0], address_word(raw, 1), address_word(raw, 2), w[3], w[4], w[5], w[6],
                          w[7], symbol)


class CometAdapter:
    """Reads one Comet market through Multicall3."""

    name = "compound_v3"

    def __init__(self, rpc: Rpc, multicall: Multicall, logs: LogScanner, comet: str, label: str):
        self.rpc = rpc
        self.mc = multicall
        self.logs = logs
        self.comet = to_checksum_address(comet)
        self.label = label
        self.static: _Static | None = None

    # -- market ---------------------------------------------------------------------
    async def connect(self, block: int) -> _Static:
        """Read the static part at ``block`` (two multicalls: numAssets first)."""
        c = self.comet
        head = await self.mc.run_strict([Call(c, call_data(s)) for s in (
            "baseToken()", "baseTokenPriceFeed()", "baseScale()", "numAssets()")], block)
        base, feed = address_word(head[0]), address_word(head[1])
        n = word(head[3])
        infos = [_asset_info(r) for r in await self.mc.run_strict(
            [Call(c, call_data("getAssetInfo(uint8)", uint_arg(i))) for i in range(n)], block)]
        tokens = [base, *(i.asset for i in infos)]
        syms = await self.mc.run([Call(t, call_data("symbol()")) for t in tokens], block)
        names = [string_or_bytes32(r) if ok else t[:8] for t, (ok, r) in zip(tokens, syms)]
        assets = tuple(replace(i, symbol=s) for i, s in zip(infos, names[1:]))
        self.static = _Static(base, feed, word(head[2]), names[0], assets)
        return self.static

    async def load_market(self, block: int, heartbeat_for: Callable[[str], int] | None = None,
                          *, accrued: bool = True) -> CometMarket:
        """The market at ``block`` in one multicall (three more on first use or after an upgrade).

        A price is unreliable when getPrice reverts, or (with ``heartbeat_for``, seconds by
        symbol) when its feed's latestRoundData.updatedAt is older than the heartbeat."""
        market = await self._load(self.static or await self.connect(block), block, heartbeat_for)
        if market is None:  # numAssets, an asset, a feed or the base changed: a Comet upgrade
            market = await self._load(await self.connect(block), block, heartbeat_for)
            if market is None:
                raise SourceError(f"{self.label}: Comet asset list unreadable at block {block}")
        return accrue(market, market.timestamp) if accrued else market

    async def _load(self, st: _Static, block: int,
                    heartbeat_for: Callable[[str], int] | None) -> CometMarket | None:
        c = self.comet
        calls = [Call(self.mc.address, GET_CURRENT_BLOCK_TIMESTAMP),
                 Call(c, call_data("numAssets()")), Call(c, call_data("baseToken()")),
                 Call(c, call_data("baseTokenPriceFeed()")), Call(c, call_data("totalsBasic()")),
                 *(Call(c, call_data(s)) for s in RATE_GETTERS),
                 Call(c, call_data("storeFrontPriceFactor()")), Call(c, call_data("targetReserves()")),
                 Call(c, call_data("baseBorrowMin()")), Call(c, call_data("getReserves()"))]
        head = len(calls)
        feeds = [st.base_feed, *(a.price_feed for a in st.assets)]
        for f in feeds:
            calls += [Call(c, call_data("getPrice(address)", addr_arg(f))), Call(f, call_data("latestRoundData()"))]
        calls += [Call(c, call_data("getAssetInfo(uint8)", uint_arg(a.offset))) for a in st.assets]
        calls += [Call(c, call_data("getCollateralReserves(address)", addr_arg(a.asset))) for a in st.assets]
        res = await self.mc.run(calls, block)
        if not all(ok for ok, _ in res[:head - 1]):
            raise SourceError(f"{self.label}: Comet market read failed at block {block}")
        first, n = head + 2 * len(feeds), len(st.assets)
        infos = [_asset_info(r) if ok else None for ok, r in res[first:first + n]]
        for_sale = {a.asset: word(r) for a, (ok, r) in zip(st.assets, res[first + n:])
                    if ok and len(r) >= 32 and word(r) > 0}  # collateral Comet holds, to sell
        if (word(res[1][1]) != len(st.assets) or address_word(res[2][1]) != st.base_token
                or address_word(res[3][1]) != st.base_feed
                or any(i is None or (i.asset, i.price_feed) != (a.asset, a.price_feed)
                       for i, a in zip(infos, st.assets))):
            return None
        timestamp = word(res[0][1])
        tb = words(res[4][1])
        prices, unreliable = {}, set()
        for k, (asset, symbol) in enumerate([(st.base_token, st.base_symbol),
                                            *((a.asset, a.symbol) for a in st.assets)]):
            (ok_p, p), (ok_f, f) = res[head + 2 * k], res[head + 2 * k + 1]
            prices[asset] = word(p) if ok_p and len(p) >= 32 else 0
            stale = (heartbeat_for is not None and ok_f and len(f) >= 128
                     and timestamp - word(f, 3) > heartbeat_for(symbol))
            if prices[asset] == 0 or stale:
                unreliable.add(asset)
        ok_r, reserves = res[head - 1]
        market = CometMarket(
            comet=c, block=block, timestamp=timestamp, base_token=st.base_token,
            base_scale=st.base_scale, base_supply_index=tb[0], base_borrow_index=tb[1],
            total_supply_base=tb[4], total_borrow_base=tb[5], last_accrual_time=tb[6],
            rates=CometRates(*(word(r) for _, r in res[5:13])),
            assets=tuple(replace(i, symbol=a.symbol) for i, a in zip(infos, st.assets)),  # type: ignore[arg-type]
            prices_e8=prices, store_front_price_factor=word(res[13][1]),
            target_reserves=word(res[14][1]), base_borrow_min=word(res[15][1]),
            base_symbol=st.base_symbol, reserves=signed_word(reserves) if ok_r else 0,
            collateral_reserves=for_sale,
            unreliable_assets=frozenset(unreliable))
        return market

    # -- accounts -------------------------------------------------------------------
    async def read_accounts(self, accounts: Sequence[Address], market: CometMarket) -> list[CometAccount]:
        """userBasic + userCollateral of ``accounts`` at ``market.block``, batched."""
        if not accounts:
            return []
        c, assets = self.comet, market.assets
        calls = []
        for a in accounts:
            arg = addr_arg(a)
            calls.append(Call(c, call_data("userBasic(address)", arg)))
            calls += [Call(c, call_data("userCollateral(address,address)", arg, addr_arg(i.asset)))
                      for i in assets]
        raws = await self.mc.run_strict(calls, market.block)
        out, step = [], 1 + len(assets)
        for k, a in enumerate(accounts):
            basic = raws[k * step]
            bal = {i.asset: word(r) for i, r in zip(assets, raws[k * step + 1:(k + 1) * step])}
            out.append(CometAccount(a, signed_word(basic, 0), {x: b for x, b in bal.items() if b},
                                    word(basic, 3) | word(basic, 4) << 16))  # _reserved: high bits
        return out

    async def iter_accounts(self, accounts: Sequence[Address], market: CometMarket,
                            part: int = 1_000) -> AsyncIterator[list[CometAccount]]:
        """Like ``read_accounts`` but in parts of ``part`` accounts, a few read ahead of the
        caller (keeper.chain.window), yielded as they arrive (so the caller's math overlaps
        the node's work)."""
        async for got in ahead(partial(self.read_accounts, accounts[i:i + part], market)
                               for i in range(0, len(accounts), part)):
            yield got

    async def contract_views(self, accounts: Sequence[Address], block: int) -> list[tuple[int, bool]]:
        """Comet's own (borrowBalanceOf, isLiquidatable) per account: the truth to check against."""
        calls = []
        for a in accounts:
            calls += [Call(self.comet, call_data("borrowBalanceOf(address)", addr_arg(a))),
                      Call(self.comet, call_data("isLiquidatable(address)", addr_arg(a)))]
        raws = await self.mc.run_strict(calls, block)
        return [(word(raws[2 * k]), word(raws[2 * k + 1]) != 0) for k in range(len(accounts))]

    # -- events ---------------------------------------------------------------------
    async def discover(self, from_block: int, to_block: int) -> AsyncIterator[tuple[int, set[Address]]]:
        """Accounts that may owe base (see the module doc), per log chunk, for checkpointing."""
        async for last, logs in self.logs.scan([self.comet], [list(MAY_BORROW)], from_block, to_block):
            yield last, self.touched(logs)[1]

    def event_sources(self, market: CometMarket | None = None) -> list[Address]:
        return [self.comet]

    @staticmethod
    def event_topics() -> list[bytes]:
        return list(CHANGED_BY)

    def touched(self, logs: Iterable[Log]) -> tuple[set[Address], set[Address]]:
        """(accounts whose position an event of this Comet changed, accounts that may owe base).
        Only this Comet's logs count: its Transfer has the same topic as an ERC-20 Transfer."""
        touched, borrowers = set(), set()
        for lg in logs:
            if lg.address.lower() != self.comet.lower() or not lg.topics:
                continue
            t0 = lg.topics[0]
            for i in CHANGED_BY.get(t0, ()):
                if len(lg.topics) > i and lg.topics[i] != ZERO_TOPIC:
                    touched.add(topic_account(lg.topics[i]))
            i = MAY_BORROW.get(t0)
            if i is not None and len(lg.topics) > i and lg.topics[i] != ZERO_TOPIC:
                borrowers.add(topic_account(lg.topics[i]))
        return touched, borrowers

    # -- what the engine asks of every protocol adapter --------------------------------
    def evaluator(self, market: CometMarket) -> _CometEvaluator:
        return _CometEvaluator(market)

    @staticmethod
    def keys_of(acct: CometAccount) -> list[Hashable]:
        """What a move must touch to reach this account: the base, and its collateral offsets."""
        bits = acct.assets_in or 0
        return [BASE_KEY, *(i for i in range(24) if bits >> i & 1)]

    @staticmethod
    def moved(old: CometMarket | None, new: CometMarket) -> set[Hashable]:
        """BASE_KEY when the base price, indexes, rates or reliability moved; offsets of the
        assets whose price, configuration or reliability moved."""
        if old is None or len(old.assets) != len(new.assets):
            return {BASE_KEY, *(a.offset for a in new.assets)}
        flips = old.unreliable_assets ^ new.unreliable_assets
        out: set[Hashable] = set()
        base = new.base_token

        def base_inputs(m: CometMarket) -> tuple:
            return m.base_supply_index, m.base_borrow_index, m.rates, m.price(base)

        if base_inputs(old) != base_inputs(new) or base in flips:
            out.add(BASE_KEY)
        for o, n in zip(old.assets, new.assets):
            if o != n or old.price(o.asset) != new.price(n.asset) or n.asset in flips:
                out.add(n.offset)
        return out

    @staticmethod
    def apply_shocks(market: CometMarket, shocks: dict[str, int]) -> CometMarket:
        """What-if: prices moved by bps per symbol (the base's too), no transaction. Symbols
        this market does not price are ignored (the shock may be meant for another market)."""
        by_symbol = {market.base_symbol.upper(): market.base_token,
                     **{a.symbol.upper(): a.asset for a in market.assets}}
        return shock(market, {by_symbol[s.upper()]: bps for s, bps in shocks.items()
                              if s.upper() in by_symbol})


class _CometEvaluator:
    def __init__(self, market: CometMarket):
        self.market = market

    def position(self, acct: CometAccount, thresholds: Thresholds, with_drop: bool) -> Position:
        return position_from(self.market, acct, thresholds, with_drop=with_drop)

    def drop(self, acct: CometAccount) -> int | None:
        return drop_to_liquidation_bps(self.market, acct)
