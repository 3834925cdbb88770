"""KeeperLiquidator calldata, allow-list, flash fees and the capital-free plan (pure)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_abi import decode
from eth_utils import function_abi_to_4byte_selector, keccak

from keeper.dex.capital_free import NO_FLASH, FlashSource, candidate_routes, plan
from keeper.dex.liquidator import (
    ENTRY_POINTS,
    FLASH_AAVE,
    FLASH_MORPHO,
    FLASH_NONE,
    FLASH_UNISWAP,
    LIQUIDATED_TOPIC,
    AaveCall,
    CometCall,
    Flash,
    MorphoCall,
    _types,
    deploy_code,
    encode_aave,
    encode_comet,
    encode_morpho,
    encode_rescue,
    liquidator_allow_list,
)
from keeper.dex.route import Route, quote_route
from tests.unit.test_dex_math import CHAIN_POOL, USDC, WETH

ABI = json.loads((Path(__file__).resolve().parents[2] / "contracts/abi/KeeperLiquidator.json").read_text())
CONTRACT = "0x00000000000000000000000000000000000000c0"
A, B, C, D = ("0x" + f"{i:040x}" for i in (0xA1, 0xB2, 0xC3, 0xD4))


def test_entry_points_match_the_compiled_abi():
    abi_selectors = {function_abi_to_4byte_selector(f) for f in ABI if f.get("type") == "function"}
    for sig in ENTRY_POINTS:
        assert keccak(text=sig)[:4] in abi_selectors, sig
    (event,) = [e for e in ABI if e.get("type") == "event" and e["name"] == "Liquidated"]
    sig = "Liquidated(" + ",".join(i["type"] for i in event["inputs"]) + ")"
    assert "0x" + keccak(text=sig).hex() == LIQUIDATED_TOPIC


def test_aave_calldata_decodes_to_the_fields():
    route = Route.single(WETH, 500, USDC)
    data = encode_aave(AaveCall(A, WETH, USDC, B, 123), Flash(FLASH_MORPHO, C, 123), route, 99, USDC, 7)
    sig = ENTRY_POINTS[0]
    assert data[:4] == keccak(text=sig)[:4]
    call, flash, swap, token, min_profit = decode(_types(sig), data[4:])
    assert call == (A, WETH.lower(), USDC.lower(), B, 123)
    assert flash == (FLASH_MORPHO, C, 123) and swap == (route.encode_path(), 99)
    assert (token, min_profit) == (USDC.lower(), 7)


def test_morpho_and_comet_calldata():
    market = (USDC, WETH, A, B, 86 * 10**16)
    data = encode_morpho(MorphoCall(C, market, D, 0, 555), None, 5, USDC, 1)
    m, swap, _, _ = decode(_types(ENTRY_POINTS[1]), data[4:])
    assert m[1] == tuple(x.lower() if isinstance(x, str) else x for x in market)
    assert (m[3], m[4]) == (0, 555) and swap == (b"", 5)
    data = encode_comet(CometCall(C, (A, B), WETH, 10, 20), Flash(FLASH_NONE, A, 0), None, 5, USDC, 0)
    c, *_ = decode(_types(ENTRY_POINTS[2]), data[4:])
    assert c == (C, (A, B), WETH.lower(), 10, 20)
    assert encode_rescue(A, B)[:4] == keccak(text="rescue(address,address)")[:4]
    assert deploy_code("0x6000", A) == "0x6000" + "00" * 12 + A[2:]


def test_allow_list_has_exactly_the_entries():
    allow = liquidator_allow_list(CONTRACT)
    assert len(allow) == 4
    for sig in ENTRY_POINTS:
        assert allow.allows(CONTRACT, keccak(text=sig)[:4])
    assert not allow.allows(CONTRACT, keccak(text="approve(address,uint256)")[:4])
    assert not allow.allows(A, keccak(text=ENTRY_POINTS[0])[:4])


def test_flash_fees_as_each_lender_charges():
    assert FlashSource(FLASH_AAVE, A, 0, 5).fee_for(1_000_000) == 500  # percentMul, half up
    assert FlashSource(FLASH_AAVE, A, 0, 5).fee_for(1_000) == 1  # 0.5 rounds half up
    assert FlashSource(FLASH_AAVE, A, 0, 5).fee_for(999) == 0
    assert FlashSource(FLASH_UNISWAP, A, 0, 500).fee_for(1) == 1  # mulDivRoundingUp
    assert FlashSource(FLASH_UNISWAP, A, 0, 3000).fee_for(10**6) == 3000
    assert FlashSource(FLASH_MORPHO, A, 0).fee_for(10**30) == 0


POOLS = {Route.single(WETH, 3000, USDC).hops[0].key(): CHAIN_POOL}
ROUTES = [Route.single(WETH, 3000, USDC), Route.single(WETH, 500, USDC)]  # 0.05% has no state here


def test_plan_prefers_the_free_lender_and_counts_the_fee_exactly():
    out = quote_route(ROUTES[0], POOLS, 10**18)
    repay = out * 9 // 10
    aave = FlashSource(FLASH_AAVE, A, 10**30, 5)
    morpho = FlashSource(FLASH_MORPHO, B, 10**30)
    p = plan(10**18, repay, ROUTES, POOLS, [aave, morpho])
    assert p.flash == Flash(FLASH_MORPHO, B, repay) and p.profit == out - repay
    # Morpho holds too little: Aave, with its premium
    p = plan(10**18, repay, ROUTES, POOLS, [aave, FlashSource(FLASH_MORPHO, B, repay - 1)])
    assert p.flash.source == FLASH_AAVE and p.profit == out - repay - aave.fee_for(repay)
    # a Uniswap pool that is also the only route is locked during its own flash: no plan
    assert plan(10**18, repay, ROUTES, POOLS, [FlashSource(FLASH_UNISWAP, CHAIN_POOL.address, 10**30, 3000)]) is None
    # nothing left after the sale: no plan
    assert plan(10**18, out, ROUTES, POOLS, [NO_FLASH]) is None


def test_candidate_routes_cover_single_and_two_hops():
    routes = candidate_routes(WETH, USDC, [WETH, USDC, A])
    assert len(routes) == 2 + 4  # two fee tiers direct, 2x2 through A
    assert all(r.token_in == WETH and r.token_out == USDC for r in routes)


@pytest.mark.parametrize("bad", [[], [Route.single(WETH, 500, USDC)]])  # none, or no pool state
def test_plan_without_a_route_is_none(bad):
    assert plan(10**18, 1, bad, POOLS, [NO_FLASH]) is None


def test_net_profit_after_gas_and_the_choice():
    from keeper.dex.capital_free import net_profit_base, pick

    # 2,291.399030 USDC at $1 (1e8), 576,125 gas at 20 gwei with ETH at $1,400
    net = net_profit_base(2_291_399_030, 10**8, 6, 576_125, 20 * 10**9, 1_400 * 10**8)
    gas_cost = -(-576_125 * 20 * 10**9 * 1_400 * 10**8 // 10**18)  # rounded up: a cost
    assert net == 229_139_903_000 - gas_cost and gas_cost == 1_613_150_000
    assert net_profit_base(1, 10**8, 6, 1, 1, 1) == 100 - 1  # 1e-6 USDC = 100 base units; 1 wei of gas rounds up
    assert pick(10, 11) == "capital_free" and pick(11, 11) == "own" and pick(None, 5) == "capital_free"
    assert pick(0, -3) is None and pick(None, None) is None
