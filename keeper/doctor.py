"""`keeper doctor`: is the node there, is it the right chain, is every address what it claims?

One ``Check`` (one line) per question: the node, the chain id and Multicall3 here; each
market's own questions by its protocol's adapter (``MarketAdapter.doctor``)."""

from __future__ import annotations

from keeper.chain.abi import call_data, word
from keeper.chain.logs import LogScanner
from keeper.chain.multicall import Call, Multicall
from keeper.chain.rpc import Rpc
from keeper.checks import Check, check
from keeper.config import Config
from keeper.protocols import registry
from keeper.protocols.base import ChainReaders


async def run_doctor(cfg: Config, rpc: Rpc) -> list[Check]:
    checks: list[Check] = []
    block_box: list[int] = []

    async def reachable() -> str:
        block_box.append(await rpc.block_number())
        return f"block {block_box[0]}"

    checks.append(await check("rpc reachable", reachable))
    if not checks[-1].ok:
        return checks
    block = block_box[0]

    async def chain() -> str:
        got = await rpc.chain_id()
        want = cfg.chain.chain_id
        if want is not None and got != want:
            raise ValueError(f"chain id is {got}, config says {want}")
        return f"chain id {got}" + ("" if want is not None else " (not pinned in config)")

    checks.append(await check("chain id", chain))

    async def multicall() -> str:
        if not await rpc.code(cfg.chain.multicall3, block):
            raise ValueError(f"no contract at {cfg.chain.multicall3}")
        mc = Multicall(rpc, cfg.chain.multicall3)
        (ts,) = await mc.run_strict([Call(cfg.chain.multicall3, call_data("getCurrentBlockTimestamp()"))], block)
        return f"Multicall3 at {cfg.chain.multicall3} answers (timestamp {word(ts)})"

    checks.append(await check("multicall3", multicall))
    mc = Multicall(rpc, cfg.chain.multicall3)
    chain = ChainReaders(rpc, mc, LogScanner(rpc, cfg.chain.logs_max_range))
    for m in cfg.markets:
        for _key, adapter in registry.build(m, chain):  # watches of one market share checks
            checks.extend(c for c in await adapter.doctor(block) if c not in checks)
    from keeper.doctor_dex import dex_checks  # [dex] and [liquidator] contract

    checks.extend(await dex_checks(cfg, rpc, block))
    return checks
