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
from keeper.protocols.aave_v3.reader import AaveV3Adapter
from keeper.protocols.compound_v3.reader import CometAdapter
from keeper.protocols.morpho_blue.reader import MorphoBlueAdapter
from keeper.protocols.morpho_blue.adapter import MorphoMarketAdapter

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


# ------------------------------------------------------------------ Aave V3


class TestAaveV3Conformance(AdapterConformance):
    protocol = "aave_v3"

    @pytest.fixture
    def adapter(self) -> AaveV3Adapter:
        n = self.node
        return AaveV3Adapter(n, Multicall(n), LogScanner(n), self.info.pool_addresses_provider,
                             "aave-devnet")

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

    @pytest.fixture
    def adapter(self) -> CometAdapter:
        n = self.node
        return CometAdapter(n, Multicall(n), LogScanner(n), self.comet.comet, "comet-devnet")

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
        views = await adapter.contract_views(accounts, block)
        return {a for a, (_, liquidatable) in zip(accounts, views, strict=True) if liquidatable}

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
