"""keeper.notify.message: what a person reads, formatted exactly from ints."""

from __future__ import annotations

from keeper.model import Status
from keeper.notify.message import format_drop, format_hf, format_usd, render
from keeper.notify.policy import AlertState, Rule, action_alert, decide
from keeper.units import UINT256_MAX
from tests.notify_servers import ACCOUNT, make_position

RULE = Rule(frozenset({Status.WATCH, Status.AT_RISK, Status.LIQUIDATABLE}), 3600)


def test_health_factor_has_four_decimals_truncated():
    assert format_hf(1_050_000_000_000_000_000) == "1.0500"
    assert format_hf(999_999_999_999_999_999) == "0.9999"  # never shown as 1.0000
    assert format_hf(10**18) == "1.0000"
    assert format_hf(123_456_789_012_345_678_901) == "123.4567"
    assert format_hf(None) == format_hf(UINT256_MAX) == "no debt"


def test_usd_from_base_units():
    assert format_usd(1_234_567_89000000) == "$1,234,567.89"
    assert format_usd(0) == "$0.00"
    assert format_usd(5) == "$0.00"  # 5e-8 USD
    assert format_usd(1_00000000) == "$1.00"
    assert format_usd(12_345_678) == "$0.12"
    assert format_usd(-250_000_000) == "-$2.50"
    big = 10**30  # far beyond float precision: still exact
    assert format_usd(big) == "$" + f"{10**22:,}" + ".00"
    # a Morpho Blue position counts its loan token, with that token's decimals
    assert format_usd(42_606_123456, 6, "USDC") == "42,606.12 USDC"
    assert format_usd(-5 * 10**17, 18, "WETH") == "-0.50 WETH"


def test_drop_words():
    pos = make_position("at_risk")
    alert, _ = decide(None, pos, RULE, 0)
    assert format_drop(alert) == "if the WETH price falls 4.75%"
    alert, _ = decide(None, make_position("liquidatable", drop_to_liquidation_bps=0), RULE, 0)
    assert format_drop(alert) == "liquidatable now"
    alert, _ = decide(None, make_position("watch", drop_to_liquidation_bps=None), RULE, 0)
    assert format_drop(alert) is None


def test_escalation_message_says_everything_a_person_needs():
    pos = make_position("liquidatable", hf_wad=987_654_321_000_000_000, block=4242)
    alert, _ = decide(AlertState(Status.AT_RISK, 0, 4000), pos, RULE, 10,
                      action="dry run: would top up 1.5 WETH")
    msg = render(alert)
    assert msg.subject == (f"[keeper] LIQUIDATABLE (was at risk): {ACCOUNT[:6]}…{ACCOUNT[-4:]}"
                           " on aave-main (HF 0.9876)")
    assert msg.text.startswith(msg.subject + "\n")
    for needed in (ACCOUNT, "aave-main (aave_v3)", "Status:        liquidatable",
                   "previously alerted: at risk", "Health factor: 0.9876",
                   "Collateral:    $1,234,567.89", "Debt:          $1,000,000.00",
                   "Liquidation:   if the WETH price falls 4.75%",
                   "Keeper action: dry run: would top up 1.5 WETH", "Block 4242", alert.key):
        assert needed in msg.text, needed
    assert "." not in str(alert.health_factor_wad)  # ints in, words out


def test_recovered_reminder_and_action_headlines():
    rec, _ = decide(AlertState(Status.LIQUIDATABLE, 0, 1), make_position("safe", hf_wad=None,
                    drop_to_liquidation_bps=None), RULE, 5)
    assert "recovered: now safe (was liquidatable)" in render(rec).subject
    assert "HF no debt" in render(rec).subject
    assert "Keeper action: none" in render(rec).text
    rem, _ = decide(AlertState(Status.AT_RISK, 0, 1), make_position("at_risk"), RULE, 3600)
    assert "] still at risk: " in render(rem).subject
    act = action_alert(make_position("liquidatable"), "liquidated",
                       "liquidated 0xabc for profit $12.34", 7)
    assert "] liquidated: " in render(act).subject
    assert "Keeper action: liquidated 0xabc for profit $12.34" in render(act).text


def test_unreliable_prices_are_called_out():
    alert, _ = decide(None, make_position("at_risk", reliable=False), RULE, 0)
    assert "stale or invalid" in render(alert).text
