"""keeper.dex.view: the capital-free side of a Liquidate, pure: which route is chosen, the one
transaction it sends, and the realized profit read from the contract's event."""

from __future__ import annotations

from dataclasses import dataclass, field

from keeper.dex.capital_free import CapitalFreePlan
from keeper.dex.flash_plans import FlashLiquidation
from keeper.dex.liquidator import FLASH_MORPHO, LIQUIDATED_TOPIC, Flash
from keeper.dex.route import Route
from keeper.dex.view import CapitalFree, DexView, FlashLender, capital_free_decision, outcome, steps
from keeper.model import Liquidate

WETH = "0x" + "11" * 20
USDC = "0x" + "22" * 20
MORPHO = "0x" + "33" * 20
CONTRACT = "0x" + "44" * 20
USER = "0x" + "55" * 20
DEX = DexView(CONTRACT, 7, 1_000, {}, {})
USDC_E8 = 10**8  # $1.00


def flash_liq(profit: int) -> FlashLiquidation:
    route = Route.single(WETH, 500, USDC)
    plan = CapitalFreePlan(route, Flash(FLASH_MORPHO, MORPHO, 1_000 * 10**6), 10**18, 1_000 * 10**6 + profit,
                           1_000 * 10**6, 0, profit)
    return FlashLiquidation("aave_v3", USER, plan, USDC, profit - profit // 1000, b"\x12\x34", None)


def own(profit_usd_e8: int) -> Liquidate:
    return Liquidate("m", "aave_v3", (USER,), 7, 9 * 10**17, ("quote", False), 10**18, profit_usd_e8, 100, "own")


def decide(own_d, liq, min_profit=0, gas=5 * 10**6):
    return capital_free_decision(own_d, liq, DEX, key="m", protocol="aave_v3", accounts=(USER,), block=7,
                                 hf=9 * 10**17, price_usd_e8=USDC_E8, decimals=6, gas_usd_e8=gas,
                                 min_profit_usd_e8=min_profit, symbols={WETH: "WETH", USDC: "USDC"})


def test_capital_free_is_chosen_when_the_wallet_cannot_pay_and_valued_after_gas():
    d = decide(None, flash_liq(30 * 10**6))  # 30 USDC profit, $0.05 gas
    assert isinstance(d.quote, CapitalFree) and d.quote.contract == CONTRACT
    assert d.profit_usd_e8 == 30 * 10**8 - 5 * 10**6
    assert d.expected == 30 * 10**6  # profit-token units, what the contract's event reports
    assert d.route == ("capital-free: flash Morpho flashLoan 1000000000 USDC "
                       f"({MORPHO}); sell {10**18} via WETH -0.05%-> USDC")


def test_the_more_profitable_route_wins_and_ties_go_to_own_capital():
    cf_usd = 30 * 10**8 - 5 * 10**6
    assert decide(own(cf_usd + 1), flash_liq(30 * 10**6)).route == "own capital"
    assert decide(own(cf_usd), flash_liq(30 * 10**6)).route == "own capital"
    assert decide(own(cf_usd - 1), flash_liq(30 * 10**6)).route.startswith("capital-free")
    assert decide(own(cf_usd), None).route == "own capital"


def test_below_the_minimum_profit_nothing_is_decided():
    assert decide(None, flash_liq(30 * 10**6), min_profit=30 * 10**8) is None
    assert decide(None, None) is None
    assert decide(None, flash_liq(10**4), gas=10**7) is None  # a cent of profit, ten cents of gas


def test_one_transaction_to_the_contract_and_no_approvals():
    d = decide(None, flash_liq(30 * 10**6))
    (step,) = steps(d, "liquidate")
    assert step.to == CONTRACT and step.data == b"\x12\x34" and step.approvals == () and not step.optional
    assert steps(own(1), "liquidate") is None


@dataclass
class Receipt:
    logs: list = field(default_factory=list)
    ok: bool = True
    hash: str = "0x" + "ab" * 32
    cost_wei: int | None = 0


def test_realized_profit_is_the_contracts_event_valued_at_the_ticks_price():
    d = decide(None, flash_liq(30 * 10**6))
    event = {"address": CONTRACT, "topics": [LIQUIDATED_TOPIC, "0x" + "00" * 31 + "01", "0x" + "00" * 32],
             "data": hex(29_999_999)}
    o = outcome(d, [Receipt([event])])
    assert o.ok and o.realized == 29_999_999 and o.gross_profit_usd_e8 == 2_999_999_900
    not_ours = dict(event, address=MORPHO)
    assert not outcome(d, [Receipt([not_ours])]).ok
    assert outcome(own(1), [Receipt([event])]) is None


def test_flash_lenders_say_who_holds_each_token():
    morpho = FlashLender(FLASH_MORPHO, MORPHO)
    assert morpho.holder_of(USDC) == MORPHO
    aave = FlashLender(1, "0x" + "66" * 20, ((USDC.upper().replace("0X", "0x"), "0x" + "77" * 20),))
    assert aave.holder_of(USDC) == "0x" + "77" * 20 and aave.holder_of(WETH) is None
