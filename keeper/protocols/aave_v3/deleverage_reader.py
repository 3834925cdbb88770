"""Aave V3 deleverage inputs from the node (IO): the Uniswap V3 pools that sell a rule's
collateral for its debt, and the Pool's flash-loan premium, at the market's block."""

from __future__ import annotations

from collections.abc import Iterable

from keeper.chain.abi import addr_arg, call_data, selector, uint_arg, word
from keeper.chain.rpc import Rpc
from keeper.dex.protection_reader import keeper_named, read_sale_pools
from keeper.protocols.aave_v3.deleverage import FLASH_AAVE, DexInputs
from keeper.protocols.base import Delegation
from keeper.units import UINT256_MAX


async def read_dex_inputs(rpc: Rpc, pool: str, factory: str, pairs: Iterable[tuple[str, str]],
                          block: int) -> DexInputs:
    """``pairs``: (collateral, debt) token addresses. The flash loan comes from the Pool itself."""
    pools = await read_sale_pools(rpc, factory, pairs, block)
    premium = word(await rpc.call(pool, selector("FLASHLOAN_PREMIUM_TOTAL()"), block))
    return DexInputs(pools, FLASH_AAVE, pool, premium)


async def delegation(rpc: Rpc, market, rule, contract: str, keeper: str, block: int) -> list[Delegation]:
    """The transactions the borrower sends once so that ``contract`` may deleverage it: an
    unlimited aToken allowance per collateral its deleverage actions sell, and ``setKeeper``
    when another key than the borrower's runs keeper. ``done`` says what the chain already has."""
    from keeper.protocols.aave_v3 import encode as enc
    from keeper.protocols.aave_v3.deleverage import pairs

    out: list[Delegation] = []
    listed = {r.symbol.upper(): r for r in market.reserves}
    for coll in dict.fromkeys(c for c, _ in pairs(rule)):
        r = listed.get(coll)
        if r is None:
            continue
        have = word(await rpc.call(r.a_token, enc.allowance(rule.account, contract), block))
        out.append(Delegation(r.a_token, enc.approve(contract, UINT256_MAX), have >= UINT256_MAX // 2,
                              f"approve {contract} to move your a{coll} ({r.a_token}): the contract "
                              f"may withdraw {coll} collateral only inside a deleverage you or your "
                              f"keeper call, sold for your debt within max_slippage_bps of the oracle, "
                              f"and only if your health factor ends at or above the target"))
    for _, debt in pairs(rule)[:1] if rule.boost_above_wad is not None else ():  # the boost's credit delegation
        r = listed.get(debt)
        if r is None:
            continue
        have = word(await rpc.call(r.variable_debt_token, call_data(
            "borrowAllowance(address,address)", addr_arg(rule.account), addr_arg(contract)), block))
        out.append(Delegation(r.variable_debt_token, call_data("approveDelegation(address,uint256)", addr_arg(contract),
                                                               uint_arg(UINT256_MAX)), have >= UINT256_MAX // 2,
                              f"approveDelegation({contract}) on the {debt} variable debt token "
                              f"({r.variable_debt_token}): the contract may open {debt} debt in your name only "
                              f"inside a boost you or your keeper call, buying {pairs(rule)[0][0]} that it supplies "
                              f"for you, and only if your health factor ends within 0.5% of the target"))
    if keeper.lower() != rule.account.lower():
        data, done = await keeper_named(rpc, contract, rule.account, keeper, block)
        out.append(Delegation(contract, data, done, f"name {keeper} as the key that may call the contract for you"))
    return out
