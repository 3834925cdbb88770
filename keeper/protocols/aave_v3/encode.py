"""Calldata for the Aave V3 actions keeper takes. No IO: TxRequests are built here and sent
only by keeper.executors."""

from __future__ import annotations

from keeper.chain.abi import addr_arg, call_data, uint_arg

UINT256_MAX = 2**256 - 1
APPROVE = "approve(address,uint256)"
POOL_ACTIONS = (  # what keeper calls on a Pool: the guard's allow-list for it
    "liquidationCall(address,address,address,uint256,bool)",
    "supply(address,uint256,address,uint16)",
    "repay(address,uint256,uint256,address)",
)
VARIABLE_RATE = 2


def approve(spender: str, amount: int) -> bytes:
    return call_data("approve(address,uint256)", addr_arg(spender), uint_arg(amount))


def liquidation_call(collateral: str, debt: str, user: str, debt_to_cover: int,
                     receive_a_token: bool = False) -> bytes:
    return call_data("liquidationCall(address,address,address,uint256,bool)", addr_arg(collateral),
                     addr_arg(debt), addr_arg(user), uint_arg(debt_to_cover),
                     uint_arg(1 if receive_a_token else 0))


def supply(asset: str, amount: int, on_behalf_of: str) -> bytes:
    return call_data("supply(address,uint256,address,uint16)", addr_arg(asset), uint_arg(amount),
                     addr_arg(on_behalf_of), uint_arg(0))


def repay(asset: str, amount: int, on_behalf_of: str) -> bytes:
    return call_data("repay(address,uint256,uint256,address)", addr_arg(asset), uint_arg(amount),
                     uint_arg(VARIABLE_RATE), addr_arg(on_behalf_of))


def balance_of(owner: str) -> bytes:
    return call_data("balanceOf(address)", addr_arg(owner))


def allowance(owner: str, spender: str) -> bytes:
    return call_data("allowance(address,address)", addr_arg(owner), addr_arg(spender))


def account_data(user: str) -> bytes:
    return call_data("getUserAccountData(address)", addr_arg(user))


def allowed_calls(pool: str, tokens) -> list[tuple[str, str]]:
    """Pool.liquidationCall/supply/repay on ``pool`` and ERC20.approve on each reserve token."""
    return [(pool, sig) for sig in POOL_ACTIONS] + [(t, APPROVE) for t in tokens]
