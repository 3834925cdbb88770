"""Morpho Blue deleverage inputs and delegation from the node (IO)."""

from __future__ import annotations

from keeper.chain.abi import addr_arg, call_data, uint_arg
from keeper.chain.rpc import Rpc
from keeper.dex.deleverage import FLASH_MORPHO, DexInputs
from keeper.dex.protection_reader import manager_grants, read_sale_pools
from keeper.protocols.base import Delegation


async def read_dex_inputs(rpc: Rpc, morpho: str, factory: str, collateral: str, loan: str, block: int) -> DexInputs:
    """The pools selling the market's collateral for its loan token; the flash loan is Morpho's (free)."""
    return DexInputs(await read_sale_pools(rpc, factory, [(collateral, loan)], block), FLASH_MORPHO, morpho, 0)


async def delegation(rpc: Rpc, morpho: str, borrower: str, contract: str, keeper: str, label: str,
                     block: int) -> list[Delegation]:
    """``setAuthorization(contract, true)`` on Morpho, and ``setKeeper`` when another key runs keeper."""
    what = (f"authorize {contract} on Morpho Blue ({morpho}) to manage your positions: the "
            f"contract withdraws {label} collateral only inside a deleverage you or your keeper "
            f"call, sold for your loan token within max_slippage_bps of the market's oracle, and "
            f"only if your health factor ends at or above the target")
    grant = call_data("setAuthorization(address,bool)", addr_arg(contract), uint_arg(1))
    return [Delegation(*d) for d in await manager_grants(rpc, morpho, "isAuthorized", grant, what, contract,
                                                         borrower, keeper, block)]
