"""Pure pieces every protocol's deleverage shares (keeper's KeeperProtection contract): the DEX
inputs read at a block, the smallest collateral sale that pays a given amount on one Uniswap V3
pool, and the contract's ``Deleveraged`` event. No IO."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from eth_utils import keccak

from keeper.model import Outcome
from keeper.dex.route import Route, RouteError, quote_route
from keeper.dex.v3_math import V3MathError
from keeper.dex.v3_pool import PoolState

FLASH_AAVE, FLASH_MORPHO = 1, 2  # KeeperProtection.FLASH_*
DEFAULT_FEES = (500, 3000)
HORIZON_S = 120  # a deleverage is sized for the state this many seconds after the tick
DEADLINE_S = 1800  # the swap's deadline after the tick
SET_KEEPER = "setKeeper(address)"
DELEVERAGED = keccak(text="Deleveraged(address,address,address,uint256,uint256,uint256,uint256)")
PoolKey = tuple[str, str, int]


@dataclass(frozen=True, slots=True)
class DexInputs:
    """What the IO side read for a deleverage at the market's block: the pools that sell
    collateral for debt (keyed by ``Hop.key()``) and the flash lender."""

    pools: Mapping[PoolKey, PoolState]
    flash_source: int  # FLASH_AAVE | FLASH_MORPHO
    flash_lender: str
    flash_premium_bps: int  # Aave FLASHLOAN_PREMIUM_TOTAL (0 for Morpho Blue)


def pairs_of(actions) -> list[tuple[str, str]]:
    """(COLLATERAL, DEBT) symbols of ("deleverage", "COLLATERAL->DEBT") actions, in order."""
    return [tuple(s.split("->", 1)) for k, s in actions if k == "deleverage"]  # type: ignore[misc]


def single_routes(collateral: str, debt: str, dex: DexInputs, fees: Sequence[int] = DEFAULT_FEES) -> list[Route]:
    """The single-hop routes collateral -> debt whose pool state was read."""
    routes = [Route.single(collateral, fee, debt) for fee in fees]
    return [r for r in routes if r.hops[0].key() in dex.pools]


def smallest_input(route: Route, pools: Mapping[PoolKey, PoolState], need: int, hi: int) -> int | None:
    """Smallest collateral input whose exact output is at least ``need`` (None: not even ``hi``).

    Exact, like a bisection over [0, hi], in fewer quotes: a V3 sale's output per unit falls as
    the input grows, so ``need * x / out(x)`` from any paying ``x`` is still at or above the
    answer, and a few such steps reach the inputs that pay exactly ``need``; the answer is then
    within about one output unit's worth of input below (checked), and a bisection over that
    gap finishes. Every move is checked with a quote, so the answer stays the smallest paying
    input."""
    seen: dict[int, int | None] = {}

    def out(x: int) -> int | None:
        if x not in seen:
            try:
                seen[x] = quote_route(route, pools, x)
            except (V3MathError, RouteError):
                seen[x] = None
        return seen[x]

    def pays(x: int) -> bool:
        o = out(x)
        return o is not None and o >= need

    if hi <= 0 or not pays(hi):
        return None
    lo = None  # an input known not to pay
    for _ in range(24):  # from above toward the answer
        got = out(hi) or 0
        guess = -(-need * hi // got) if got else hi
        if guess >= hi or guess <= 0:
            break
        if not pays(guess):  # rounding: just below the answer; gallop up to a paying input
            lo, step = guess, 1
            while lo + step < hi and not pays(lo + step):
                lo, step = lo + step, step * 2
            hi = min(hi, lo + step)
            break
        hi = guess
    if lo is None:  # one output unit buys about hi / out(hi) input: the answer is that close
        width = 2 * (hi // max(out(hi) or 1, 1) + 1)
        if hi - width > 0 and not pays(hi - width):
            lo = hi - width
    if lo is None:
        step, lo = 1, hi - 1
        while lo > 0 and pays(lo):  # gallop down to an input that does not pay (or 0)
            hi, step = lo, step * 2
            lo = hi - step
        lo = max(lo, 0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if pays(mid) else (mid, hi)
    return hi


def impact_bps(oracle_out: int, out: int) -> int:
    """How far below the oracle's value a swap paid, in bps (0 when it paid more)."""
    return 0 if oracle_out == 0 else max(0, (oracle_out - out) * 10_000 // oracle_out)


def deleveraged(receipts, contract: str, borrower: str) -> tuple[int, int, int, int] | None:
    """(sold, repaid, received, health factor after) from the contract's Deleveraged event."""
    for r in receipts:
        for lg in r.logs:
            t = lg.get("topics", [])
            if (t and bytes.fromhex(t[0][2:]) == DELEVERAGED and str(lg.get("address", "")).lower()
                    == contract.lower() and t[1][-40:].lower() == borrower[2:].lower()):
                data = bytes.fromhex(lg["data"][2:])
                sold, repaid, received, hf = (int.from_bytes(data[32 * i:32 * i + 32], "big") for i in range(4))
                return sold, repaid, received, hf
    return None


def deleverage_outcome(receipts, contract: str, borrower: str, collateral: str, debt: str,
                       oracle_out: int) -> Outcome:
    """What the Deleveraged event says (``realized``: the health factor after), or not ok."""
    got = deleveraged(receipts, contract, borrower)
    if got is None:
        return Outcome(False, detail="mined without a Deleveraged event")
    sold, repaid, received, hf = got
    return Outcome(True, hf, detail=f"deleveraged: sold {sold} of {collateral}, repaid {repaid} of {debt}, "
                                    f"swap paid {received} of {debt} ({impact_bps(oracle_out, received)} bps below the "
                                    f"oracle), health factor after {hf}")
