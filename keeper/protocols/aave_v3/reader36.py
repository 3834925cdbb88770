"""Reads that only an Aave V3 Pool of the 3.2+ interface (3.6 and the like) answers, for
``AaveV3Adapter``: which math applies, e-mode by per-asset bitmaps, liquidation grace periods.

Version, by probing the views that changed (no registry of deployments needed):

* ``getEModeCategoryCollateralConfig(uint8)`` (3.2+) answers -> (3, 6): 3.6 math and rules;
  its ``POOL_REVISION()`` is kept beside it (10 on a 3.6 PoolInstance);
* it reverts -> (3, 0): the 3.0.x interface and math (forks of it included).

E-mode categories have no count or list in 3.6: ``probe_version`` asks for ids 1..255 once
(at connect) and keeps those with a non-zero liquidation threshold.
"""

from __future__ import annotations

from collections.abc import Sequence

from keeper.chain.abi import addr_arg, call_data, uint_arg, word
from keeper.chain.multicall import Call, Multicall
from keeper.errors import SourceError
from keeper.protocols.aave_v3.model import EModeCategory, Reserve

V30, V36 = (3, 0), (3, 6)
ZERO = "0x0000000000000000000000000000000000000000"
_COLLATERAL_CONFIG = "getEModeCategoryCollateralConfig(uint8)"
_BITMAPS = ("getEModeCategoryCollateralBitmap(uint8)", "getEModeCategoryBorrowableBitmap(uint8)",
            "getEModeCategoryLtvzeroBitmap(uint8)")


async def probe_version(mc: Multicall, pool: str, block: int) -> tuple[tuple[int, int], int, tuple[int, ...]]:
    """(version, POOL_REVISION or 0, e-mode category ids) of ``pool`` at ``block``."""
    return parse_probe(await mc.run(probe_calls(pool), block))


def probe_calls(pool: str) -> list[Call]:
    """The version probe's calls (to run beside others in one multicall: ``parse_probe``)."""
    return [Call(pool, call_data("POOL_REVISION()"))] + [
        Call(pool, call_data(_COLLATERAL_CONFIG, uint_arg(i))) for i in range(1, 256)]


def parse_probe(res: Sequence[tuple[bool, bytes]]) -> tuple[tuple[int, int], int, tuple[int, ...]]:
    ids = range(1, 256)
    ok_rev, raw_rev = res[0]
    revision = word(raw_rev) if ok_rev and len(raw_rev) >= 32 else 0
    configs = res[1:]
    if not all(ok and len(raw) >= 96 for ok, raw in configs):
        return V30, revision, ()
    return V36, revision, tuple(i for i, (_, raw) in zip(ids, configs) if word(raw, 1) != 0)


def calls36(pool: str, emode_ids: Sequence[int], reserves: Sequence[Reserve]) -> list[Call]:
    """Per category: collateral config and the three bitmaps; per reserve: its grace period and
    its virtual underlying balance (what can leave the aToken: liquidated collateral included)."""
    calls = []
    for c in emode_ids:
        calls.append(Call(pool, call_data(_COLLATERAL_CONFIG, uint_arg(c))))
        calls += [Call(pool, call_data(sig, uint_arg(c))) for sig in _BITMAPS]
    for r in reserves:
        calls.append(Call(pool, call_data("getLiquidationGracePeriod(address)", addr_arg(r.asset))))
        calls.append(Call(pool, call_data("getVirtualUnderlyingBalance(address)", addr_arg(r.asset))))
    return calls


def parse36(emode_ids: Sequence[int], reserves: Sequence[Reserve], res: Sequence[tuple[bool, bytes]]
            ) -> tuple[dict[int, EModeCategory], dict[int, dict[str, int]]]:
    """(e-mode categories by id, Reserve fields by reserve id) from ``calls36``'s results."""
    if not all(ok for ok, _ in res):
        raise SourceError("Aave 3.6 e-mode / grace-period read failed")
    emode: dict[int, EModeCategory] = {}
    for k, c in enumerate(emode_ids):
        cfg, coll, borrow, ltv0 = (raw for _, raw in res[4 * k: 4 * k + 4])
        emode[c] = EModeCategory(c, word(cfg, 0), word(cfg, 1), word(cfg, 2), ZERO, 0, "",
                                 collateral_bitmap=word(coll), borrowable_bitmap=word(borrow),
                                 ltvzero_bitmap=word(ltv0))
    per_reserve = res[4 * len(emode_ids):]
    if len(per_reserve) != 2 * len(reserves):
        raise SourceError("Aave 3.6 per-reserve read: wrong number of results")
    fields = {r.id: {"liquidation_grace_until": word(per_reserve[2 * k][1]),
                     "virtual_underlying": word(per_reserve[2 * k + 1][1])}
              for k, r in enumerate(reserves)}
    return emode, fields
