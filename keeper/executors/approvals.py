"""Allowances in place before they are needed: the executor's start-up step (and, later, a
background step when a market lists a new token), never the send path's.

Each adapter names the (token, spender) pairs its actions may need (``approvals(market)``).
:meth:`Approvals.ensure` reads every allowance in one batch of ``eth_call`` at the head,
sends an unlimited ``approve`` for each one that is short and whose token the wallet holds
(all at once, through TxManager:
allow-list, simulation, journal, caps) and waits for them together. A pair whose allowance
is at least :data:`READY` is *ready*: the send path (``ActionExecutor._ensure_allowance``)
then reads nothing and approves nothing for it. ``READY`` is half of ``2**256``: an unlimited
allowance that tokens decrement on each ``transferFrom`` stays far above it.

In ``dry_run`` mode an approve is only simulated: nothing becomes ready, and the send path
simulates it again where it is needed (the existing behaviour).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import structlog

from keeper.chain.abi import word
from keeper.chain.erc20 import allowance_call, approve_call, balance_call
from keeper.chain.rpc import Rpc
from keeper.errors import ExecutionError, SourceError
from keeper.executors import TxRequest

log = structlog.get_logger("keeper.executors")
UINT256_MAX = 2**256 - 1
READY = 2**255


def _key(token: str, spender: str) -> str:
    return f"{token}:{spender}".lower()


class Approvals:
    def __init__(self, tx, rpc: Rpc, budget_wei: int):
        """``tx``: the TxManager; ``budget_wei``: the gas bill one approve may cost at most."""
        self.tx, self.rpc, self.budget_wei = tx, rpc, budget_wei
        self.ready: set[str] = set()
        self.deferred: set[str] = set()  # the wallet held none of the token: approved on first use
        self._busy: set[str] = set()  # being read or approved now
        self.tasks: set[asyncio.Task] = set()

    def is_ready(self, token: str, spender: str) -> bool:
        return _key(token, spender) in self.ready

    def missing(self, pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """The pairs not ready and not being handled, each once, in order."""
        seen: set[str] = set()
        out = []
        for token, spender in pairs:
            k = _key(token, spender)
            if k not in self.ready and k not in self._busy and k not in self.deferred and k not in seen:
                seen.add(k)
                out.append((token, spender))
        return out

    def ensure_soon(self, pairs: Iterable[tuple[str, str]]) -> asyncio.Task | None:
        """Start :meth:`ensure` in the background for pairs not seen yet (a new reserve):
        the tick that noticed it does not wait."""
        new = self.missing(pairs)
        if not new:
            return None
        task = asyncio.create_task(self._quietly(new))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def _quietly(self, pairs: list[tuple[str, str]]) -> None:
        try:
            await self.ensure(pairs)
        except SourceError as e:  # the send path still checks allowances of pairs not ready
            log.warning("approvals.failed", pairs=len(pairs), error=str(e))

    async def ensure(self, pairs: Iterable[tuple[str, str]]) -> int:
        """Make every pair ready (see the module docstring); returns how many approves were
        mined. A failed approve is logged and left to the send path."""
        todo = self.missing(pairs)
        if not todo:
            return 0
        keys = {_key(t, s) for t, s in todo}
        self._busy |= keys
        try:
            owner = self.tx.address
            block = await self.rpc.block_number()
            have = await self.rpc.calls([(t, allowance_call(t, owner, s)) for t, s in todo], block)
            tokens = list(dict.fromkeys(t for t, _ in todo))
            held = await self.rpc.calls([(t, balance_call(owner)) for t in tokens], block)
            empty = {t for t, raw in zip(tokens, held, strict=True) if len(raw) < 32 or word(raw) == 0}
            short = []
            for (token, spender), raw in zip(todo, have, strict=True):
                if len(raw) >= 32 and word(raw) >= READY:
                    self.ready.add(_key(token, spender))
                elif token in empty:  # e.g. a capital-free keeper holds only the gas coin: no gas
                    self.deferred.add(_key(token, spender))  # spent; the send path approves later
                else:
                    short.append((token, spender))
            results = await asyncio.gather(*(self._approve(t, s, block) for t, s in short))
        finally:
            self._busy -= keys
        sent = sum(results)
        log.info("approvals.ready", ready=len(todo) - len(short) + sent, sent=sent, pairs=len(todo),
                 reason="allowances in place before any action needs them")
        return sent

    async def _approve(self, token: str, spender: str, block: int) -> bool:
        req = TxRequest(to=token, data=approve_call(spender, UINT256_MAX),
                        purpose=f"approve {spender} (start-up)",
                        action_key=f"approve:{token}:{spender}:{block}", max_cost_wei=self.budget_wei)
        try:
            out = await self.tx.send(req)
        except ExecutionError as e:
            log.warning("approvals.refused", token=token, spender=spender, reason=str(e))
            return False
        if out.ok:
            self.ready.add(_key(token, spender))
            return True
        if not out.dry_run:
            log.warning("approvals.reverted", token=token, spender=spender, tx_hash=out.hash)
        return False
