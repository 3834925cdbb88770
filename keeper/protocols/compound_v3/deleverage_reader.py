"""Compound V3 deleverage inputs and delegation from the node (IO)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from keeper.chain.abi import addr_arg, call_data, selector, uint_arg, word
from keeper.chain.erc20 import balance_call
from keeper.chain.rpc import Rpc
from keeper.dex.deleverage import FLASH_AAVE, FLASH_MORPHO, DexInputs
from keeper.dex.protection_reader import manager_grants, read_sale_pools
from keeper.protocols.base import Delegation


async def read_dex_inputs(rpc: Rpc, factory: str, base: str, collaterals: Iterable[str], lenders: Sequence,
                          block: int) -> DexInputs | None:
    """The pools selling each collateral for ``base``, and the flash lender of ``base`` among
    the watched markets' ``lenders`` (keeper.dex.view.FlashLender) that holds the most of it
    (Morpho Blue, free, on a tie); None when none lends it."""
    held = [(ln, ln.holder_of(base)) for ln in lenders if ln.source in (FLASH_AAVE, FLASH_MORPHO)]
    held = [(ln, h) for ln, h in held if h is not None]
    if not held:
        return None
    raws = await rpc.calls([(base, balance_call(h)) for _, h in held], block)
    ln, available = max(((ln, word(raw)) for (ln, _), raw in zip(held, raws, strict=True)),
                        key=lambda x: (x[1], x[0].source == FLASH_MORPHO))
    if available == 0:
        return None
    premium = word(await rpc.call(ln.lender, selector("FLASHLOAN_PREMIUM_TOTAL()"), block)) \
        if ln.source == FLASH_AAVE else 0
    pools = await read_sale_pools(rpc, factory, [(c, base) for c in collaterals], block)
    return DexInputs(pools, ln.source, ln.lender, premium)


async def delegation(rpc: Rpc, comet: str, borrower: str, contract: str, keeper: str, label: str,
                     block: int) -> list[Delegation]:
    """``allow(contract, true)`` on Comet, and ``setKeeper`` when another key runs keeper."""
    what = (f"allow {contract} to manage your account on Compound V3 ({comet}): the contract "
            f"withdraws {label} collateral only inside a deleverage you or your keeper call, "
            f"repays your base debt with it, sold within max_slippage_bps of Comet's prices, "
            f"and only if your health factor ends at or above the target")
    grant = call_data("allow(address,bool)", addr_arg(contract), uint_arg(1))
    return [Delegation(*d) for d in await manager_grants(rpc, comet, "isAllowed", grant, what, contract,
                                                         borrower, keeper, block)]
