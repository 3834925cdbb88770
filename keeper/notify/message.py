"""Alert -> words a person can act on. Exact integer formatting, no floats.

Every message says: which account, on which protocol/market, its status (and the one
alerted before), the health factor to 4 decimals (truncated, so never shown healthier
than it is), collateral and debt in USD (oracle base units, 1e8 = 1 USD), how far the
main collateral's price may fall before liquidation, and what the keeper did.
"""

from __future__ import annotations

from dataclasses import dataclass

from keeper.model import Status
from keeper.notify.policy import ESCALATED, FLAGGED, RECOVERED, REMINDER, Alert
from keeper import units
from keeper.units import format_fixed

BASE_DECIMALS = 8  # Aave V3 USD oracle: 1e8 base units per USD

_HEADLINE = {
    FLAGGED: "{status}",
    ESCALATED: "{status} (was {previous})",
    REMINDER: "still {status}",
    RECOVERED: "recovered: now {status} (was {previous})",
}


@dataclass(frozen=True, slots=True)
class Message:
    subject: str  # one line: email subject, and the first line of every text
    text: str  # subject + details, plain text


def status_words(status: Status | None) -> str:
    return "-" if status is None else status.value.replace("_", " ")


def format_hf(hf_wad: int | None) -> str:
    """1.0234 (4 decimals, truncated); "no debt" for no debt; "> 1000" above 1000."""
    return units.format_hf(hf_wad)


def format_usd(base: int, decimals: int = BASE_DECIMALS, unit: str = "USD") -> str:
    """1234567_89000000 -> "$1,234,567.89" (cents truncated toward zero); in another unit
    (a Morpho market counts its loan token): "1,234,567.89 USDC"."""
    text = format_fixed(abs(base), decimals, 2)
    whole, _, cents = text.partition(".")
    sign = "-" if base < 0 else ""
    return f"{sign}${int(whole):,}.{cents}" if unit == "USD" else f"{sign}{int(whole):,}.{cents} {unit}"


def format_amount(alert: Alert, base: int) -> str:
    return format_usd(base, alert.base_decimals, alert.base_unit)


def format_drop(alert: Alert) -> str | None:
    bps = alert.drop_to_liquidation_bps
    if bps is None:
        return None
    if bps == 0:
        return "liquidatable now"
    what = f"the {alert.main_collateral} price" if alert.main_collateral else "the main collateral price"
    return f"if {what} falls {format_fixed(bps, 2)}%"


def headline(alert: Alert) -> str:
    pattern = _HEADLINE.get(alert.kind)
    if pattern is None:  # an executor-driven alert: its kind is the news
        return alert.kind.replace("_", " ")
    status = status_words(alert.status)
    if alert.kind in (FLAGGED, ESCALATED):  # news: the status shouts
        status = status.upper()
    return pattern.format(status=status, previous=status_words(alert.previous))


def render(alert: Alert) -> Message:
    if alert.protocol == "keeper":  # an operator alert (keeper.ops_alerts): no position
        subject = f"[keeper] {headline(alert)}: {alert.action}"
        return Message(subject=subject, text=f"{subject}\n\nBlock {alert.block} · alert {alert.key}")
    short = f"{alert.account[:6]}…{alert.account[-4:]}" if len(alert.account) > 12 else alert.account
    hf = format_hf(alert.health_factor_wad)
    subject = f"[keeper] {headline(alert)}: {short} on {alert.market} (HF {hf})"
    lines = [
        subject,
        "",
        f"Account:       {alert.account}",
        f"Market:        {alert.market} ({alert.protocol})",
        f"Status:        {status_words(alert.status)}"
        + (f" (previously alerted: {status_words(alert.previous)})" if alert.previous else ""),
        f"Health factor: {hf}",
        f"Collateral:    {format_amount(alert, alert.collateral_base)}",
        f"Debt:          {format_amount(alert, alert.debt_base)}",
    ]
    drop = format_drop(alert)
    if drop is not None:
        lines.append(f"Liquidation:   {drop}")
    if not alert.reliable:
        lines.append("Warning:       a price feed of this position is stale or invalid")
    lines.append(f"Keeper action: {alert.action or 'none'}")
    lines.append(f"Block {alert.block} · alert {alert.key}")
    return Message(subject=subject, text="\n".join(lines))
