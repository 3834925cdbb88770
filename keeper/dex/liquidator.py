"""Calldata for keeper's liquidator contract (``contracts/src/KeeperLiquidator.sol``), pure.

::

    flash = Flash(FLASH_MORPHO, morpho, amount)         # where the debt token comes from
    data = encode_aave(AaveCall(pool, coll, debt, user, cover), flash, route, deadline,
                       profit_token, min_profit)
    data = encode_morpho(MorphoCall(morpho, params, borrower, seized, 0), route, ...)
    data = encode_comet(CometCall(comet, accounts, asset, min_amount, base_amount), flash, ...)
    liquidator_allow_list(contract)                      # the guard's entries for it
    realized_profit(receipt_logs, contract)              # the Liquidated event's profit
    deploy_code(creation_code, router)                   # creation code + constructor args

``route=None`` sells nothing (the seized collateral is already the token that repays).
The encodings follow the contract's ABI (``contracts/abi/KeeperLiquidator.json``);
``tests/unit/test_liquidator_calls.py`` checks each selector and type against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eth_abi import encode
from eth_utils import keccak

from keeper.dex.route import Route
from keeper.executors.guard import AllowList

FLASH_NONE, FLASH_AAVE, FLASH_MORPHO, FLASH_UNISWAP = 0, 1, 2, 3
KIND_AAVE, KIND_MORPHO, KIND_COMET = 1, 2, 3

_FLASH = "(uint8,address,uint256)"
_SWAP = "(bytes,uint256)"
_AAVE = "(address,address,address,address,uint256)"
_MARKET = "(address,address,address,address,uint256)"
_MORPHO = f"(address,{_MARKET},address,uint256,uint256)"
_COMET = "(address,address[],address,uint256,uint256)"
SIG_AAVE = f"liquidateAave({_AAVE},{_FLASH},{_SWAP},address,uint256)"
SIG_MORPHO = f"liquidateMorpho({_MORPHO},{_SWAP},address,uint256)"
SIG_COMET = f"liquidateComet({_COMET},{_FLASH},{_SWAP},address,uint256)"
SIG_RESCUE = "rescue(address,address)"
ENTRY_POINTS = (SIG_AAVE, SIG_MORPHO, SIG_COMET, SIG_RESCUE)
LIQUIDATED_EVENT = "Liquidated(uint8,address,uint256)"
LIQUIDATED_TOPIC = "0x" + keccak(text=LIQUIDATED_EVENT).hex()


@dataclass(frozen=True, slots=True)
class Flash:
    source: int  # FLASH_NONE / FLASH_AAVE / FLASH_MORPHO / FLASH_UNISWAP
    lender: str  # the Aave Pool, Morpho, or the Uniswap V3 pool (ignored for FLASH_NONE)
    amount: int  # debt token base units

    def as_tuple(self) -> tuple[int, str, int]:
        return self.source, self.lender, self.amount


@dataclass(frozen=True, slots=True)
class AaveCall:
    pool: str
    collateral: str
    debt: str
    user: str
    debt_to_cover: int


@dataclass(frozen=True, slots=True)
class MorphoCall:
    morpho: str
    market: tuple[str, str, str, str, int]  # MarketParams.as_tuple(): loan, collateral, oracle, irm, lltv
    borrower: str
    seized_assets: int
    repaid_shares: int  # exactly one of the two is non-zero, as Morpho wants


@dataclass(frozen=True, slots=True)
class CometCall:
    comet: str
    accounts: tuple[str, ...]  # absorbed first
    asset: str
    min_amount: int
    base_amount: int


def _selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


def _types(signature: str) -> list[str]:
    """Top-level argument types of a signature, e.g. ["(address,uint256)", "address"]."""
    inner, depth, out, cur = signature[signature.index("(") + 1 : -1], 0, [], ""
    for ch in inner:
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
            continue
        depth += {"(": 1, ")": -1}.get(ch, 0)
        cur += ch
    return [*out, cur] if cur else out


def _swap(route: Route | None, deadline: int) -> tuple[bytes, int]:
    return (route.encode_path() if route else b"", deadline)


def _call(signature: str, args: Sequence[object]) -> bytes:
    return _selector(signature) + encode(_types(signature), list(args))


def encode_aave(call: AaveCall, flash: Flash, route: Route | None, deadline: int,
                profit_token: str, min_profit: int) -> bytes:
    """liquidateAave: flash the debt token, Pool.liquidationCall, sell the collateral."""
    a = (call.pool, call.collateral, call.debt, call.user, call.debt_to_cover)
    return _call(SIG_AAVE, [a, flash.as_tuple(), _swap(route, deadline), profit_token, min_profit])


def encode_morpho(call: MorphoCall, route: Route | None, deadline: int,
                  profit_token: str, min_profit: int) -> bytes:
    """liquidateMorpho: Morpho.liquidate with its onMorphoLiquidate callback (no flash)."""
    m = (call.morpho, tuple(call.market), call.borrower, call.seized_assets, call.repaid_shares)
    return _call(SIG_MORPHO, [m, _swap(route, deadline), profit_token, min_profit])


def encode_comet(call: CometCall, flash: Flash, route: Route | None, deadline: int,
                 profit_token: str, min_profit: int) -> bytes:
    """liquidateComet: absorb ``accounts``, flash base, buyCollateral, sell the collateral."""
    c = (call.comet, list(call.accounts), call.asset, call.min_amount, call.base_amount)
    return _call(SIG_COMET, [c, flash.as_tuple(), _swap(route, deadline), profit_token, min_profit])


def encode_rescue(token: str, to: str) -> bytes:
    return _call(SIG_RESCUE, [token, to])


def realized_profit(logs: Sequence[dict], contract: str) -> int | None:
    """The ``Liquidated`` event's profit in a receipt's logs (profit-token base units), or
    None when the contract emitted none (reverted or not ours)."""
    for lg in logs:
        topics = lg.get("topics") or []
        if topics and topics[0] == LIQUIDATED_TOPIC and str(lg.get("address", "")).lower() == contract.lower():
            return int(lg["data"], 16)
    return None


def deploy_code(creation_code: str, router: str) -> str:
    """KeeperLiquidator creation code with its constructor argument (the SwapRouter)."""
    return creation_code + encode(["address"], [router]).hex()


def liquidator_calls(contract: str) -> list[tuple[str, str]]:
    """(contract, signature) of its three liquidation entries and ``rescue``."""
    return [(contract, sig) for sig in ENTRY_POINTS]


def liquidator_allow_list(contract: str) -> AllowList:
    """The guard's entries for the contract. It spends no operator tokens: no ``approve``."""
    return AllowList.of(liquidator_calls(contract))
