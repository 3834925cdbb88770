"""Adapter conformance: one suite every protocol adapter must pass, subclassed per protocol
(as web3.py subclasses one test suite per backend).

``AdapterConformance`` holds the tests; it is not collected itself (no ``Test`` prefix).
``TestAaveV3Conformance``, ``TestMorphoBlueConformance`` and ``TestCompoundV3Conformance``
provide the hooks, the only protocol-specific code here:

* fixtures ``adapter`` (built on ``keeper.chain`` Rpc / Multicall / LogScanner),
  ``borrowers`` (the seeded ones) and ``start_block`` (where discovery starts);
* ``move_price(symbol, bps)``: a real price transaction on the collateral's oracle;
* ``pin()``: the block to read at (Comet: an ``accrueAccount`` tx first, so its view is current);
* ``truth(adapter, accounts, block)``: the accounts the protocol itself would liquidate;
* ``act(account)``: a real tx that changes the account's position, returns its block;
* ``exposure(adapter, raw, market)``: (collateral symbols, debt symbols) of a raw account.

Morpho Blue and the Comet stand-in are deployed once for this module over the Aave devnet's
tokens and feeds, and reverted at its end, so other modules never see them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from keeper.chain.logs import LogScanner
from keeper.chain.multicall import Multicall
from keeper.chain.rpc import Rpc
from keeper.devnet.api import get_price, mint, set_price
from keeper.devnet.artifacts import load_aave
from keeper.devnet.comet import CometInfo, deploy_comet
from keeper.devnet.morpho import MorphoInfo, deploy_morpho, follow_feed, load_morpho
from keeper.devnet.rpc import calldata, rpc, wait_receipt
from keeper.errors import DevnetError
from keeper.health.status import Thresholds, classify
from keeper.model import Status
from keeper.model import Liquidate, ProtectRule, TopUp
from keeper.prices import PriceBook
from keeper.protocols.aave_v3.adapter import AaveV3
from keeper.protocols.base import MarketAdapter, PlanContext
from keeper.protocols.compound_v3.adapter import CompoundV3
from keeper.protocols.morpho_blue.reader import MorphoBlueAdapter
from keeper.protocols.morpho_blue.adapter import MorphoMarketAdapter
from keeper.executors.guard import AllowList, selector_of

N_BORROWERS = 12
SEED = 11
WAD = 10**18
BPS = 10_000
MAX_UINT = 2**256 - 1
TX_GAS = hex(3_000_000)
COMET_ABI = json.loads((Path(__file__).resolve().parents[2] / "contracts/abi/Comet.json").read_text())
ERC20_ABI = load_aave("MintableERC20").abi
POOL_ABI = load_aave("Pool").abi
THRESHOLDS = Thresholds(WAD, 12 * WAD // 10, 2 * WAD)  # not the defaults: are they honoured?
CRASH = {"WETH": -4_000, "WBTC": -4_000}


def heartbeat(_symbol: str) -> int:
    return 10**9  # no feed is stale here: staleness has its own tests


async def send(w3, sender: str, to: str, data: str) -> int:
    """One mined, successful transaction; returns its block number."""
    tx_hash = await rpc(w3, "eth_sendTransaction", [{"from": sender, "to": to, "data": data,
                                                      "gas": TX_GAS}])
    receipt = await wait_receipt(w3, tx_hash)
    assert int(receipt["status"], 16) == 1, f"tx {tx_hash} to {to} reverted"
    return int(receipt["blockNumber"], 16)


async def approve(w3, owner: str, token: str, spender: str) -> None:
    await send(w3, owner, token, calldata(ERC20_ABI, "approve", [spender, MAX_UINT]))


@dataclass
class Receipt:
    hash: str
    ok: bool
    logs: list
    cost_wei: int


async def execute(w3, sender: str, steps) -> list[Receipt]:
    """Send each TxStep from an unlocked devnet account (approvals first), as keeper would."""
    out = []
    for step in steps:
        for ap in step.approvals:
            await approve(w3, sender, ap.token, ap.spender)
        tx_hash = await rpc(w3, "eth_sendTransaction", [{"from": sender, "to": step.to,
                                                         "data": "0x" + step.data.hex(), "gas": TX_GAS}])
        r = await wait_receipt(w3, tx_hash)
        ok = int(r["status"], 16) == 1
        assert ok or step.optional, f"{step.purpose} reverted"
        out.append(Receipt(tx_hash, ok, r["logs"], int(r["gasUsed"], 16) * int(r["effectiveGasPrice"], 16)))
    return out


async def read_all(adapter, accounts, market) -> list:
    out = []
    async for part in adapter.iter_accounts(accounts, market):
        out.extend(part)
    return out


# ------------------------------------------------------------------ deployments (module)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def morpho_info(devnet, w3) -> AsyncIterator[MorphoInfo]:
    before = await rpc(w3, "evm_snapshot", [])
    try:
        info = await deploy_morpho(w3, devnet.info, N_BORROWERS, SEED)
        liquidator = devnet.info.liquidator  # funded here, so truth can simulate at any block
        await mint(w3, devnet.info, "USDC", liquidator, 10**9 * 10**6)
        await approve(w3, liquidator, devnet.info.tokens["USDC"], info.morpho)
        yield info
    finally:
        if not await rpc(w3, "evm_revert", [before]):
            raise RuntimeError("could not revert the Morpho deployment: later modules would see it")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def comet_info(devnet, w3) -> AsyncIterator[CometInfo]:
    before = await rpc(w3, "evm_snapshot", [])
    try:
        yield await deploy_comet(w3, devnet.info, N_BORROWERS, SEED)
    finally:
        if not await rpc(w3, "evm_revert", [before]):
            raise RuntimeError("could not revert the Comet deployment: later modules would see it")


# ------------------------------------------------------------------ the shared suite


class AdapterConformance:
    """What the engine relies on from every adapter, checked against the protocol's own
    contracts. Subclasses set ``protocol`` (and ``main_symbol`` / ``debt_symbol`` where their
    borrowers hold other tokens) and provide the hooks listed in the module docstring."""

    protocol: str  # the adapter's ``name`` and every Position's ``protocol``
    main_symbol = "WETH"  # a collateral held by some of every subclass's borrowers
    debt_symbol = "USDC"  # a token owed by some of them

    @pytest.fixture(autouse=True)
    async def _bind(self, devnet, w3) -> AsyncIterator[None]:
        self.info, self.w3 = devnet.info, w3
        self.node = Rpc(devnet.rpc_url)
        try:
            yield
        finally:
            await self.node.close()

    # -- hooks ------------------------------------------------------------------------
    async def move_price(self, symbol: str, bps: int) -> None:
        raise NotImplementedError

    async def pin(self) -> int:
        return await self.node.block_number()

    async def truth(self, adapter, accounts: list[str], block: int) -> set[str]:
        raise NotImplementedError

    async def act(self, account: str) -> int:
        raise NotImplementedError

    def exposure(self, adapter, raw, market) -> tuple[set[str], set[str]]:
        raise NotImplementedError

    # -- helpers ----------------------------------------------------------------------
    async def snapshot(self, adapter, borrowers, block: int, thresholds=THRESHOLDS):
        """(market, raw accounts, positions) of ``borrowers`` at ``block``."""
        market = await adapter.load_market(block, heartbeat)
        raws = await read_all(adapter, list(borrowers), market)
        ev = adapter.evaluator(market)
        return market, raws, [ev.position(a, thresholds, True) for a in raws]

    # -- 1. discovery -----------------------------------------------------------------
    async def test_discover_finds_exactly_the_seeded_borrowers(self, adapter, borrowers, start_block):
        head = await self.node.block_number()
        found: set[str] = set()
        lasts = []
        async for last, part in adapter.discover(start_block, head):
            found |= part
            lasts.append(last)
        assert found == set(borrowers)
        assert lasts and lasts[-1] == head and lasts == sorted(lasts)  # checkpoints move forward

    # -- 2. positions at a pinned block -----------------------------------------------
    async def test_positions_at_a_pinned_block(self, adapter, borrowers):
        block = await self.pin()
        await self.move_price(self.main_symbol, -500)  # a later block: the read stays pinned
        market, raws, positions = await self.snapshot(adapter, borrowers, block)
        assert market.block == block
        assert raws == await adapter.read_accounts(list(borrowers), market)  # parts == one read
        assert [a.account for a in raws] == [p.account for p in positions] == list(borrowers)
        assert adapter.name == self.protocol
        for raw, p in zip(raws, positions, strict=True):
            assert p.protocol == self.protocol and p.block == block
            assert type(p.collateral_base) is int and p.collateral_base > 0, p
            assert type(p.debt_base) is int and p.debt_base > 0, p
            assert type(p.health_factor_wad) is int and p.health_factor_wad > 0, p
            assert p.status == classify(p.health_factor_wad, THRESHOLDS), p
            assert p.reliable, p
            collateral, debt = self.exposure(adapter, raw, market)
            assert p.main_collateral in collateral, (p, collateral)
            assert debt, (p, debt)
            drop = p.drop_to_liquidation_bps
            assert drop is None or (type(drop) is int and 0 <= drop <= BPS), p
        later = await self.snapshot(adapter, borrowers, await self.pin())
        assert [p.health_factor_wad for p in later[2]] != [p.health_factor_wad for p in positions]

    # -- 3. what-if shocks ------------------------------------------------------------
    async def test_apply_shocks_lowers_affected_health_and_zero_changes_nothing(self, adapter, borrowers):
        market, raws, positions = await self.snapshot(adapter, borrowers, await self.pin())
        same = adapter.evaluator(adapter.apply_shocks(market, {self.main_symbol: 0}))
        assert [same.position(a, THRESHOLDS, True) for a in raws] == positions
        assert adapter.apply_shocks(market, {self.main_symbol: 0}) == market
        shocked = adapter.evaluator(adapter.apply_shocks(market, {self.main_symbol: -1_500}))
        lowered = 0
        for raw, before in zip(raws, positions, strict=True):
            after = shocked.position(raw, THRESHOLDS, False)
            collateral, debt = self.exposure(adapter, raw, market)
            if self.main_symbol in collateral and self.main_symbol not in debt:
                assert after.health_factor_wad < before.health_factor_wad, (before, after)
                assert after.status.rank >= before.status.rank, (before, after)
                lowered += 1
            elif self.main_symbol not in collateral | debt:
                assert after.health_factor_wad == before.health_factor_wad, (before, after)
        assert lowered > 0

    async def test_apply_shocks_on_the_debt_symbol_lowers_its_debtors_health(self, adapter, borrowers):
        """The engine applies one {SYMBOL: bps} to every market: a rise of what an account owes
        must show in its health factor, whatever the protocol."""
        market, raws, positions = await self.snapshot(adapter, borrowers, await self.pin())
        shocked = adapter.evaluator(adapter.apply_shocks(market, {self.debt_symbol: 1_000}))
        lowered = 0
        for raw, before in zip(raws, positions, strict=True):
            collateral, debt = self.exposure(adapter, raw, market)
            if self.debt_symbol in debt and self.debt_symbol not in collateral:
                after = shocked.position(raw, THRESHOLDS, False)
                assert after.health_factor_wad < before.health_factor_wad, (before, after)
                lowered += 1
        assert lowered > 0

    # -- 4. after a real crash: the evaluator agrees with the protocol ---------------
    async def test_liquidatable_set_equals_the_protocol_after_a_crash(self, adapter, borrowers):
        for symbol, bps in CRASH.items():
            await self.move_price(symbol, bps)
        block = await self.pin()
        _, _, positions = await self.snapshot(adapter, borrowers, block)
        ours = {p.account for p in positions if p.status == Status.LIQUIDATABLE}
        assert ours == await self.truth(adapter, list(borrowers), block)
        assert ours, "the crash should make some account liquidatable"
        assert ours != set(borrowers), "and leave some safe, or the comparison says little"

    # -- 5. price moves reach the holders through keys_of -----------------------------
    async def test_moved_reaches_every_holder_through_keys_of(self, adapter, borrowers):
        old_block = await self.pin()
        old = await adapter.load_market(old_block, heartbeat)
        assert adapter.moved(old, await adapter.load_market(old_block, heartbeat)) == set()
        await self.move_price(self.main_symbol, -1_000)
        new = await adapter.load_market(await self.pin(), heartbeat)
        moved = adapter.moved(old, new)
        assert moved
        assert adapter.moved(None, new)  # nothing in memory yet: everything moved
        raws = await adapter.read_accounts(list(borrowers), new)
        holders = [a for a in raws if self.main_symbol in self.exposure(adapter, a, new)[0]]
        assert holders
        for acct in raws:
            assert adapter.keys_of(acct), acct  # every borrower is reachable by some key
        for acct in holders:
            assert set(adapter.keys_of(acct)) & moved, (acct, moved)

    # -- 6. events name the account that acted -----------------------------------------
    async def test_touched_names_the_borrower_that_acted(self, adapter, borrowers):
        actor = borrowers[0]
        block = await self.act(actor)
        market = await adapter.load_market(block, heartbeat)
        # as Engine.on_block asks for them: the engine's own LogScanner, the adapter's filter
        logs = await LogScanner(self.node).fetch(adapter.event_sources(market),
                                                 [adapter.event_topics()], block, block)
        assert logs
        touched, _new = adapter.touched(logs)
        assert actor in touched
        assert touched & set(borrowers) == {actor}

    # -- 7. drop_to_liquidation_bps is the exact edge ---------------------------------
    async def test_drop_is_the_exact_liquidation_edge(self, adapter, borrowers):
        market, raws, positions = await self.snapshot(adapter, borrowers, await self.pin())
        ev = adapter.evaluator(market)
        checked = 0
        for raw, p in zip(raws, positions, strict=True):
            if p.status == Status.LIQUIDATABLE:
                continue
            drop = ev.drop(raw)
            assert drop == p.drop_to_liquidation_bps, p
            if drop is None:
                continue
            assert 0 < drop <= BPS, p
            at_drop, one_less = (
                adapter.evaluator(adapter.apply_shocks(market, {p.main_collateral: -bps}))
                .position(raw, THRESHOLDS, False).status for bps in (drop, drop - 1))
            assert at_drop == Status.LIQUIDATABLE, (p, drop)
            assert one_less != Status.LIQUIDATABLE, (p, drop)
            checked += 1
        assert checked > 0


    # -- 8. the protocol's own view agrees with keeper's math, account by account -------
    async def test_contract_health_agrees_with_the_math_after_a_crash(self, adapter, borrowers):
        assert isinstance(adapter, MarketAdapter)
        for symbol, bps in CRASH.items():
            await self.move_price(symbol, bps)
        block = await self.pin()
        _, _, positions = await self.snapshot(adapter, borrowers, block)
        views = await adapter.contract_health(list(borrowers), block)
        assert [v.account for v in views] == list(borrowers)
        assert {v.account for v in views if v.liquidatable} == await self.truth(adapter, list(borrowers), block)
        assert all(adapter.agrees(p, v) for p, v in zip(positions, views, strict=True))
        assert any(v.liquidatable for v in views) and not all(v.liquidatable for v in views)

    # -- 9. what the market says about itself: symbols, tokens, prices, spend, allow-list ----
    async def test_market_description(self, adapter, borrowers):
        market = await adapter.load_market(await self.pin(), heartbeat)
        tokens = adapter.tokens(market)
        assert self.main_symbol in tokens.values() and self.debt_symbol in tokens.values()
        assert {s.upper() for s in tokens.values()} <= adapter.symbols(market) | {s.upper() for s in tokens.values()}
        assert self.main_symbol.upper() in adapter.symbols(market)
        assert set(adapter.spend_tokens(market)) <= set(tokens)
        prices = adapter.prices_usd(market)
        assert all(t in tokens and sym == tokens[t] and p > 0 for t, (sym, p) in prices.items())
        assert bool(prices) == self.prices_in_usd
        allow = AllowList.of(adapter.allowed_calls(market))
        assert all(allow.allows(t, selector_of("approve(address,uint256)")) for t in adapter.spend_tokens(market))

    async def test_doctor_passes_on_the_devnet(self, adapter):
        checks = await adapter.doctor(await self.node.block_number())
        assert checks and all(c.ok for c in checks), [c for c in checks if not c.ok]

    # -- 10. plan, encode, send, realized: a liquidation end to end ------------------------
    async def test_planned_liquidation_executes_and_realized_matches_the_plan(self, adapter, borrowers):
        me = self.info.liquidator
        for symbol, amount in (("USDC", 10**9 * 10**6), ("DAI", 10**9 * 10**18)):
            await mint(self.w3, self.info, symbol, me, amount)
        for symbol, bps in CRASH.items():
            await self.move_price(symbol, bps)
        block = await self.pin()
        market, raws, positions = await self.snapshot(adapter, borrowers, block)
        due = [p for p in positions if p.status == Status.LIQUIDATABLE]
        wallet = {t: 10**40 for t in adapter.spend_tokens(market)}
        book = PriceBook()
        book.learn_symbols(adapter.tokens(market))
        book.learn({t: (s, p) for t, (s, p) in adapter.prices_usd(market).items()})
        book.learn_feeds({s: await get_price(self.w3, self.info, s) for s in ("WETH", "WBTC", "USDC", "DAI")})
        ctx = PlanContext(me, wallet, 0, 0, book)
        decisions = adapter.plan_liquidations(market, due, {a.account: a for a in raws}, ctx)
        assert decisions and all(isinstance(d, Liquidate) and d.protocol == self.protocol for d in decisions)
        assert {a for d in decisions for a in d.accounts} <= {p.account for p in due}
        allow = AllowList.of(adapter.allowed_calls(market))
        d = decisions[0]
        steps = adapter.encode(d, me)
        assert steps and all(allow.allows(s.to, s.data) for s in steps)
        ahead = {(t.lower(), sp.lower()) for t, sp in adapter.approvals(market)}  # set up at start-up
        assert all((ap.token.lower(), ap.spender.lower()) in ahead for s in steps for ap in s.approvals)
        assert all(allow.allows(t, selector_of("approve(address,uint256)")) for t, _ in adapter.approvals(market))
        receipts = await execute(self.w3, me, steps)
        outcome = adapter.realized(market, d, receipts, book)
        assert outcome.ok, outcome
        self.check_realized(d, outcome)
        views = await adapter.contract_health(list(d.accounts), await self.node.block_number())
        assert views  # the liquidated accounts still answer

    def check_realized(self, d, outcome) -> None:
        assert outcome.realized == d.expected, (d, outcome)  # to the wei
        assert outcome.gross_profit_usd_e8 is not None and outcome.gross_profit_usd_e8 > 0

    # -- 11. plan, encode, send: a top-up brings the account to its target ---------------------
    async def test_planned_top_up_reaches_the_target(self, adapter, borrowers):
        me = self.info.liquidator
        for symbol, amount in (("USDC", 10**9 * 10**6), ("DAI", 10**9 * 10**18), ("WETH", 10**6 * 10**18)):
            await mint(self.w3, self.info, symbol, me, amount)
        block = await self.pin()
        market, raws, positions = await self.snapshot(adapter, borrowers, block)
        owing = [(p, a) for p, a in zip(positions, raws, strict=True)
                 if p.health_factor_wad and self.debt_symbol in self.exposure(adapter, a, market)[1]]
        pos, acct = min(owing, key=lambda pa: pa[0].health_factor_wad)
        target = pos.health_factor_wad * 13 // 10
        rule = ProtectRule(pos.account, target - 1, target, (("repay", self.debt_symbol),))
        wallet = {t: 10**40 for t in adapter.spend_tokens(market)}
        d = adapter.plan_top_up(market, acct, rule, wallet)
        assert isinstance(d, TopUp) and d.plan.action == "repay" and not d.plan.partial
        assert d.plan.expected_hf_wad >= target
        steps = adapter.encode(d, me)
        assert all(AllowList.of(adapter.allowed_calls(market)).allows(s.to, s.data) for s in steps)
        ahead = {(t.lower(), sp.lower()) for t, sp in adapter.approvals(market)}  # set up at start-up
        assert all((ap.token.lower(), ap.spender.lower()) in ahead for s in steps for ap in s.approvals)
        receipts = await execute(self.w3, me, steps)
        assert adapter.realized(market, d, receipts, PriceBook()).ok
        after = await self.snapshot(adapter, [pos.account], await self.pin())
        assert after[2][0].health_factor_wad >= target * 999 // 1000  # interest since the plan
        assert adapter.plan_top_up(market, acct, rule, {}) is None  # an empty wallet cannot help


# ------------------------------------------------------------------ Aave V3


class TestAaveV3Conformance(AdapterConformance):
    protocol = "aave_v3"

    prices_in_usd = True

    @pytest.fixture
    def adapter(self) -> AaveV3:
        n = self.node
        return AaveV3(n, Multicall(n), LogScanner(n), self.info.pool_addresses_provider, "aave-devnet")

    @pytest.fixture
    def borrowers(self) -> tuple[str, ...]:
        return self.info.borrowers

    @pytest.fixture
    def start_block(self) -> int:
        return self.info.deploy_block

    async def move_price(self, symbol: str, bps: int) -> None:
        old = await get_price(self.w3, self.info, symbol)
        await set_price(self.w3, self.info, symbol, old * (BPS + bps) // BPS)

    async def truth(self, adapter, accounts, block) -> set[str]:
        data = await adapter.pool_account_data(accounts, block)
        return {a for a, d in zip(accounts, data, strict=True) if d.health_factor_wad < WAD}

    async def act(self, account: str) -> int:
        """Supply a little WETH on the account's behalf from a spare wallet."""
        spare, weth = self.info.spare[0], self.info.tokens["WETH"]
        await mint(self.w3, self.info, "WETH", spare, 10**15)
        await approve(self.w3, spare, weth, self.info.pool)
        return await send(self.w3, spare, self.info.pool,
                          calldata(POOL_ABI, "supply", [weth, 10**15, account, 0]))

    def exposure(self, adapter, raw, market) -> tuple[set[str], set[str]]:
        collateral, debt = set(), set()
        for ur in raw.reserves:
            r = market.reserves[ur.reserve_id]
            if ur.scaled_a_token and raw.user_config >> (2 * r.id) & 2:
                collateral.add(r.symbol)
            if ur.scaled_variable_debt or ur.stable_debt:
                debt.add(r.symbol)
        return collateral, debt


# ------------------------------------------------------------------ Morpho Blue


class TestMorphoBlueConformance(AdapterConformance):
    """Each devnet market behind its own MorphoMarketAdapter, as the engine watches them."""

    protocol = "morpho_blue"
    prices_in_usd = False  # Morpho's oracles price collateral in loan tokens

    @pytest.fixture(autouse=True, params=["WETH/USDC", "WBTC/USDC"])
    def _bind_morpho(self, request, _bind, morpho_info: MorphoInfo) -> None:
        self.morpho = morpho_info
        self.mid = morpho_info.market(request.param)
        self.main_symbol, self.debt_symbol = request.param.split("/")

    @pytest.fixture
    def adapter(self) -> MorphoMarketAdapter:
        n = self.node
        base = MorphoBlueAdapter(n, Multicall(n), LogScanner(n), self.morpho.morpho,
                                 list(self.morpho.market_ids), "morpho-devnet")
        return MorphoMarketAdapter(base, self.mid)

    @pytest.fixture
    def borrowers(self) -> tuple[str, ...]:
        return tuple(p["address"] for p in self.morpho.positions if p["market_id"] == self.mid)

    @pytest.fixture
    def start_block(self) -> int:
        return self.morpho.deploy_block

    async def move_price(self, symbol: str, bps: int) -> None:
        old = await get_price(self.w3, self.info, symbol)
        await follow_feed(self.w3, self.morpho, symbol, old, old * (BPS + bps) // BPS)

    async def truth(self, adapter, accounts, block) -> set[str]:
        """Accounts whose ``liquidate`` (1 share, by the funded liquidator) succeeds at ``block``."""
        abi = load_morpho("Morpho").abi
        params = self.morpho.markets[self.mid].as_tuple()
        out = set()
        for a in accounts:
            tx = {"from": self.info.liquidator, "to": self.morpho.morpho, "gas": TX_GAS,
                  "data": calldata(abi, "liquidate", [params, a, 0, 1, b""])}
            try:
                await rpc(self.w3, "eth_call", [tx, hex(block)])
            except DevnetError as e:
                assert "position is healthy" in str(e), e  # not some other failure
                continue
            out.add(a)
        return out

    async def act(self, account: str) -> int:
        """Supply a little collateral on the account's behalf from a spare wallet."""
        spare = self.info.spare[0]
        token = self.morpho.markets[self.mid].collateral_token
        await mint(self.w3, self.info, self.main_symbol, spare, 10**4)
        await approve(self.w3, spare, token, self.morpho.morpho)
        params = self.morpho.markets[self.mid].as_tuple()
        return await send(self.w3, spare, self.morpho.morpho, calldata(
            load_morpho("Morpho").abi, "supplyCollateral", [params, 10**4, account, b""]))

    def exposure(self, adapter, raw, market) -> tuple[set[str], set[str]]:
        p = market.params
        return ({adapter.token_symbols[p.collateral_token]} if raw.collateral else set(),
                {adapter.token_symbols[p.loan_token]} if raw.borrow_shares else set())


# ------------------------------------------------------------------ Compound V3


class TestCompoundV3Conformance(AdapterConformance):
    """The Comet stand-in over the Aave devnet's tokens and feeds."""

    protocol = "compound_v3"

    @pytest.fixture(autouse=True)
    def _bind_comet(self, _bind, comet_info: CometInfo) -> None:
        self.comet = comet_info

    prices_in_usd = True

    @pytest.fixture
    def adapter(self) -> CompoundV3:
        n = self.node
        return CompoundV3(n, Multicall(n), LogScanner(n), self.comet.comet, "comet-devnet")

    def check_realized(self, d, outcome) -> None:
        """The store-front sells at quoteCollateral of the state after the absorbs, which keeper
        predicts: the collateral bought is at most what the plan expected, profit positive."""
        assert 0 < outcome.realized <= d.expected, (d, outcome)
        assert outcome.gross_profit_usd_e8 > 0

    @pytest.fixture
    def borrowers(self) -> tuple[str, ...]:
        return self.comet.borrowers

    @pytest.fixture
    def start_block(self) -> int:
        return self.comet.deploy_block

    async def move_price(self, symbol: str, bps: int) -> None:
        old = await get_price(self.w3, self.info, symbol)  # Comet reads the Aave devnet's feeds
        await set_price(self.w3, self.info, symbol, old * (BPS + bps) // BPS)

    async def pin(self) -> int:
        """A block where Comet accrued (an accrueAccount tx): its isLiquidatable view reads
        the stored indexes, which are then those the adapter accrues to in Python."""
        me = self.info.deployer
        return await send(self.w3, me, self.comet.comet, calldata(COMET_ABI, "accrueAccount", [me]))

    async def truth(self, adapter, accounts, block) -> set[str]:
        """Comet's own isLiquidatable, read directly (not through contract_health)."""
        raws = [bytes.fromhex((await rpc(self.w3, "eth_call", [{"to": self.comet.comet, "data": calldata(
            COMET_ABI, "isLiquidatable", [a])}, hex(block)]))[2:]) for a in accounts]
        return {a for a, raw in zip(accounts, raws, strict=True) if int.from_bytes(raw[-32:], "big")}

    async def act(self, account: str) -> int:
        """Supply a little WETH collateral to the account from a spare wallet (supplyTo)."""
        spare, weth = self.info.spare[0], self.comet.assets["WETH"]
        await mint(self.w3, self.info, "WETH", spare, 10**15)
        await approve(self.w3, spare, weth, self.comet.comet)
        return await send(self.w3, spare, self.comet.comet,
                          calldata(COMET_ABI, "supplyTo", [account, weth, 10**15]))

    def exposure(self, adapter, raw, market) -> tuple[set[str], set[str]]:
        collateral = {a.symbol for a in market.assets if raw.collateral.get(a.asset)}
        return collateral, {market.base_symbol} if raw.principal < 0 else set()
