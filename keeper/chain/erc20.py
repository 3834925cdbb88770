"""Token balances and allowances, batched through Multicall3 at a pinned block."""

from __future__ import annotations

from collections.abc import Sequence

from keeper.chain.abi import addr_arg, call_data, word
from keeper.chain.multicall import Call, Multicall


async def balances(mc: Multicall, tokens: Sequence[str], owner: str, block: int | str) -> dict[str, int]:
    """``owner``'s balance of each token (0 where ``balanceOf`` fails)."""
    raws = await mc.run([Call(t, call_data("balanceOf(address)", addr_arg(owner))) for t in tokens], block)
    return {t: word(raw) if ok and len(raw) >= 32 else 0 for t, (ok, raw) in zip(tokens, raws)}


def balance_call(owner: str) -> bytes:
    return call_data("balanceOf(address)", addr_arg(owner))


def allowance_call(token: str, owner: str, spender: str) -> bytes:
    return call_data("allowance(address,address)", addr_arg(owner), addr_arg(spender))


def approve_call(spender: str, amount: int) -> bytes:
    from keeper.chain.abi import uint_arg

    return call_data("approve(address,uint256)", addr_arg(spender), uint_arg(amount))
