"""Morpho Blue deleverage inputs and delegation from the node (IO)."""

from __future__ import annotations

from keeper.chain.abi import addr_arg, call_data, selector, uint_arg, word
from keeper.chain.rpc import Rpc
from keeper.dex.deleverage import FLASH_MORPHO, DexInputs
from keeper.dex.protection_reader import keeper_named, read_sale_pools
from keeper.protocols.base import Delegation


async def read_dex_inputs(rpc: Rpc, morpho: str, factory: str, collateral: str, loan: str, block: int) -> DexInputs:
    """The pools selling the market's collateral for its loan token; the flash loan is Morpho's (free)."""
    return DexInputs(await read_sale_pools(rpc, factory, [(collateral, loan)], block), FLASH_MORPHO, morpho, 0)


async def delegation(rpc: Rpc, morpho: str, borrower: str, contract: str, keeper: str, label: str,
                     block: int) -> list[Delegation]:
    """``setAuthorization(contract, true)`` on Morpho, and ``setKeeper`` when another key runs keeper."""
    ok = word(await rpc.call(morpho, selector("isAuthorized(address,address)") + addr_arg(borrower)
                             + addr_arg(contract), block)) == 1
    out = [Delegation(morpho, call_data("setAuthorization(address,bool)", addr_arg(contract), uint_arg(1)), ok,
                      f"authorize {contract} on Morpho Blue ({morpho}) to manage your positions: the "
                      f"contract withdraws {label} collateral only inside a deleverage you or your keeper "
                      f"call, sold for your loan token within max_slippage_bps of the market's oracle, and "
                      f"only if your health factor ends at or above the target")]
    if keeper.lower() != borrower.lower():
        data, done = await keeper_named(rpc, contract, borrower, keeper, block)
        out.append(Delegation(contract, data, done, f"name {keeper} as the key that may call the contract for you"))
    return out
