"""`keeper doctor` for capital-free liquidation: the `[dex]` contracts and `[liquidator] contract`.

* factory: code, and ``feeAmountTickSpacing(500) == 10`` / ``(3000) == 60`` (a V3 factory);
* router and quoter: code, and their ``factory()`` is the configured factory (the periphery
  finds pools through it; a router of another deployment would swap elsewhere);
* liquidator contract: code, its ``router()`` is ``[dex] uniswap_v3_router``, and its
  ``owner()`` is the configured signing key (when ``KEEPER_PRIVATE_KEY`` is set: only the
  owner can call it).
"""

from __future__ import annotations

from eth_utils import keccak, to_checksum_address

from keeper.chain.rpc import Rpc
from keeper.config import Config
from keeper.checks import Check, check


def _sel(signature: str) -> bytes:
    return keccak(text=signature)[:4]


async def _address_of(rpc: Rpc, contract: str, signature: str, block: int) -> str:
    return to_checksum_address((await rpc.call(contract, _sel(signature), block))[12:32])


async def dex_checks(cfg: Config, rpc: Rpc, block: int) -> list[Check]:
    dex, out = cfg.dex, []
    if dex.configured:
        async def factory() -> str:
            if not await rpc.code(dex.uniswap_v3_factory, block):
                raise ValueError(f"no contract at {dex.uniswap_v3_factory}")
            for fee, spacing in ((500, 10), (3000, 60)):
                raw = await rpc.call(dex.uniswap_v3_factory, _sel("feeAmountTickSpacing(uint24)")
                                     + fee.to_bytes(32, "big"), block)
                if int.from_bytes(raw[:32], "big") != spacing:
                    raise ValueError(f"feeAmountTickSpacing({fee}) is not {spacing}: not a Uniswap V3 factory")
            return f"Uniswap V3 factory at {dex.uniswap_v3_factory}"

        out.append(await check("dex: factory", factory))
        for name, address in (("router", dex.uniswap_v3_router), ("quoter", dex.uniswap_v3_quoter)):
            async def periphery(address: str = address, name: str = name) -> str:
                if not await rpc.code(address, block):
                    raise ValueError(f"no contract at {address}")
                got = await _address_of(rpc, address, "factory()", block)
                if got != dex.uniswap_v3_factory:
                    raise ValueError(f"{name} at {address} uses factory {got}, not {dex.uniswap_v3_factory}")
                return f"{name} at {address} uses the configured factory"

            out.append(await check(f"dex: {name}", periphery))
    contract = cfg.liquidator.contract
    if contract is not None:
        async def liquidator() -> str:
            if not await rpc.code(contract, block):
                raise ValueError(f"no contract at {contract}")
            router = await _address_of(rpc, contract, "router()", block)
            if router != dex.uniswap_v3_router:
                raise ValueError(f"it swaps through {router}, not [dex] uniswap_v3_router {dex.uniswap_v3_router}")
            owner = await _address_of(rpc, contract, "owner()", block)
            if cfg.private_key is not None:
                from keeper.executors.signer import Signer

                signer = Signer(cfg.private_key).address
                if owner != signer:
                    raise ValueError(f"owned by {owner}, but the signing key is {signer}: only the owner can call it")
            return f"KeeperLiquidator at {contract}, owner {owner}"

        out.append(await check("liquidator: contract", liquidator))
    return out
