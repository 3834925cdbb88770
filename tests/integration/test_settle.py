"""Triggers kept after the block tick (``Engine.settle``, as ``keeper run`` does) against
triggers kept in it, on the devnet's three protocols: two engines follow the same blocks,
one settling in the tick, one after it. Their statuses agree at every block, the positions
left unsettled are recomputed by the next block, and what a settle keeps equals what the
tick would have kept (the same inputs), books included."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from keeper.addresses import checksum
from keeper.bands import _rows
from keeper.devnet.api import get_price, set_price
from keeper.devnet.comet import CometInfo
from keeper.devnet.lifecycle import comet_config_toml, morpho_config_toml
from keeper.devnet.morpho import MorphoInfo, follow_feed
from keeper.devnet.rpc import rpc
from tests.integration.conftest import deployed, engine_on, morpho_and_comet


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def others(devnet, w3) -> AsyncIterator[tuple[MorphoInfo, CometInfo]]:
    async with deployed(w3, lambda: morpho_and_comet(w3, devnet.info, 12, 5)) as both:
        yield both


async def move(w3, devnet, minfo, bps: int) -> int:
    """WETH moved by ``bps`` on its feed and on Morpho's oracles; the last block."""
    old = await get_price(w3, devnet.info, "WETH")
    change = await set_price(w3, devnet.info, "WETH", old * (10_000 + bps) // 10_000)
    await follow_feed(w3, minfo, "WETH", change.old_e8, change.new_e8)
    return int(await rpc(w3, "eth_blockNumber", []), 16)


def statuses(engine) -> dict:
    """Health factors may differ by the interest of a block: the settling engine recomputed
    its stale positions at a later block than the other kept them."""
    return {w.key: {a: p.status for a, p in w.positions.items()} for w in engine.watches}


def recomputed_at(engine, block: int) -> dict[str, set[str]]:
    return {w.key: {a for a, p in w.positions.items() if p.block == block} for w in engine.watches}


def kept(w, a: str) -> tuple:
    ah = w.ahead
    return (ah.crossings.level.get(a) if ah.crossings is not None else None,
            ah.prices.of.get(a) if ah.prices is not None else None,
            ah.bands.of.get(a) if ah.bands is not None else None)


def books_match_bands(w) -> bool:
    """The bands' sorted lists, as edited block after block, equal lists built fresh."""
    fresh: dict = {}
    for a, flat in w.ahead.bands.of.items():
        for lk, v in _rows(flat):
            fresh.setdefault(lk, []).append((v, a))
    lists = {lk: rows for lk, rows in w.ahead.bands.book.read().items() if rows}
    return lists == {lk: sorted(rows) for lk, rows in fresh.items()}


async def test_triggers_settled_after_the_tick_equal_those_kept_in_it(devnet, w3, others, tmp_path: Path):
    minfo, cinfo = others
    path = tmp_path / "keeper.toml"
    path.write_text(devnet.config_path.read_text() + morpho_config_toml(minfo) + comet_config_toml(cinfo))
    async with engine_on(path, devnet.rpc_url, tmp_path / "a") as inline, \
            engine_on(path, devnet.rpc_url, tmp_path / "b") as beside:
        beside.settle_beside = True
        head = int(await rpc(w3, "eth_blockNumber", []), 16)
        for e in (inline, beside):
            await e.index(head)
            await e.full_scan(head)
        assert {w.key for w in beside.watches if w.ahead is not None} == {w.key for w in beside.watches}

        b1 = await move(w3, devnet, minfo, -1_200)
        await inline.on_block(b1)
        await beside.on_block(b1)
        assert statuses(beside) == statuses(inline)
        stale1 = {w.key: w.ahead.stale() for w in beside.watches}
        assert stale1 == recomputed_at(beside, b1) == recomputed_at(inline, b1)
        assert sum(map(len, stale1.values())) > 0
        assert all(not w.ahead.pending for w in inline.watches)  # settled in the tick

        b2 = await move(w3, devnet, minfo, 500)  # no settle in between: the stale ones come again
        await inline.on_block(b2)
        await beside.on_block(b2)
        assert statuses(beside) == statuses(inline)
        again = recomputed_at(beside, b2)
        assert all(stale1[k] <= again[k] for k in stale1)
        assert all(w.ahead.stale() == again[w.key] for w in beside.watches)

        n = sum(len(w.ahead.pending) for w in beside.watches)
        assert await beside.settle(asyncio.Lock()) == n
        assert not any(w.ahead.stale() for w in beside.watches)
        same = recomputed_at(inline, b2)
        for wi, wb in zip(inline.watches, beside.watches, strict=True):
            assert {a: kept(wb, a) for a in same[wi.key]} == {a: kept(wi, a) for a in same[wi.key]}
            assert books_match_bands(wb) and books_match_bands(wi)

        b3 = await move(w3, devnet, minfo, -3_000)  # a crash: the liquidatable ones agree too
        await inline.on_block(b3)
        await beside.on_block(b3)
        assert statuses(beside) == statuses(inline)
        assert [w.ahead.liquidatable for w in beside.watches] == [w.ahead.liquidatable for w in inline.watches]
        assert any(w.ahead.liquidatable for w in beside.watches)
        stored = [r[0] for e in (inline, beside) for r in e.store.query("SELECT account FROM positions")]
        assert stored and all(a == checksum(a) for a in stored)  # the engine's accounts are EIP-55 already
