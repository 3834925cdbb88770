"""How `make demo` tells its story: prices, positions at risk, alerts as the webhook receives
them, the keeper's actions as they land in its SQLite store (tx hash, realized profit), and a
closing table. Presentation only: what happens on chain is decided in keeper.demo.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from rich.console import Console
from rich.table import Table

from keeper.model import Status
from keeper.protocols.registry import display_name
from keeper.units import format_fixed, format_hf

_HF_RAW = re.compile(r"\bhf (\d+)")  # "(hf 1021705309001208014)" in an action's detail
_STYLE = {"safe": "green", "watch": "yellow", "at_risk": "bold yellow", "liquidatable": "bold red"}


def short(addr: str) -> str:
    return f"{addr[:6]}…{addr[-4:]}" if len(addr) > 12 else addr


def usd(base: int, decimals: int = 8) -> str:
    whole, _, cents = format_fixed(abs(base), decimals, 2).partition(".")
    return f"{'-' if base < 0 else ''}${int(whole):,}.{cents or '00'}"


def amount(base: int, decimals: int, unit: str) -> str:
    """``usd`` for USD values; "1,234.56 USDC" for a Morpho market's loan-token values."""
    if unit == "USD":
        return usd(base, decimals)
    whole, _, cents = format_fixed(abs(base), decimals, 2).partition(".")
    return f"{'-' if base < 0 else ''}{int(whole):,}.{cents or '00'} {unit}"


def protocol_name(protocol: str) -> str:
    """How a person reads a protocol's name."""
    return display_name(protocol)


def prices_line(prices_e8: dict[str, int]) -> str:
    return "prices: " + "   ".join(f"{s} {usd(p)}" for s, p in prices_e8.items())


def status_table(positions, title: str) -> Table:
    """Protocol x status counts."""
    t = Table(title=title, title_justify="left")
    t.add_column("protocol")
    for s in Status:
        t.add_column(s.value.replace("_", " "), justify="right", style=_STYLE[s.value])
    for proto in sorted({p.protocol for p in positions}):
        c = Counter(p.status for p in positions if p.protocol == proto)
        t.add_row(protocol_name(proto), *(str(c[s]) for s in Status))
    return t


def riskiest_table(positions, n: int = 8) -> Table:
    """The ``n`` positions closest to liquidation."""
    t = Table(title=f"closest to liquidation ({n} of {len(positions)})", title_justify="left")
    for col, just in (("account", "left"), ("protocol", "left"), ("health factor", "right"),
                      ("status", "left"), ("collateral", "right"), ("debt", "right"),
                      ("liquidated if", "left")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    debtors = sorted((p for p in positions if p.health_factor_wad is not None),
                     key=lambda p: p.health_factor_wad)
    for p in debtors[:n]:
        drop = ("now" if p.drop_to_liquidation_bps == 0 else
                f"{p.main_collateral or 'collateral'} -{format_fixed(p.drop_to_liquidation_bps, 2)}%"
                if p.drop_to_liquidation_bps is not None else "-")
        t.add_row(short(p.account), protocol_name(p.protocol),
                  format_hf(p.health_factor_wad), f"[{_STYLE[p.status.value]}]{p.status.value}[/]",
                  amount(p.collateral_base, p.base_decimals, p.base_unit),
                  amount(p.debt_base, p.base_decimals, p.base_unit), drop)
    return t


def alert_line(a: dict, decimals: Mapping[str, int] | None = None) -> str:
    """``decimals``: token symbol -> decimals, to show "5970520020951567730 WETH" as "5.9705 WETH"."""
    what = a.get("kind", "?").replace("_", " ")
    if a.get("kind") in ("flagged", "escalated"):
        what = str(a.get("status", "")).replace("_", " ").upper()
    proto = protocol_name(a.get("protocol", ""))
    words = str(a.get("action") or "")
    said = f": {_readable(words, decimals or {})}" if "deleverage" in words else ""  # before and after
    return (f"  [cyan]alert[/]  {what:16} {short(a.get('account', ''))} on {proto} "
            f"(HF {a.get('health_factor', '?')}, debt {a.get('debt_usd', '?')}){said}")


_HF_WORDS = re.compile(r"(health factor(?: to| after| now)?|trigger) (\d{16,})")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_AMOUNT = re.compile(r"\b(\d+) ([A-Z][A-Za-z0-9]{1,9})\b")  # "5970520020951567730 WETH"


def _readable(words: str, decimals: Mapping[str, int]) -> str:
    """An alert's words with wad health factors as "1.2345", amounts of known tokens in
    whole units and addresses shortened."""
    words = _HF_WORDS.sub(lambda m: f"{m.group(1)} {format_hf(int(m.group(2)))}", words)
    words = _AMOUNT.sub(lambda m: (f"{format_fixed(int(m.group(1)), decimals[m.group(2)], 4)} {m.group(2)}"
                                   if m.group(2) in decimals else m.group(0)), words)
    return _ADDRESS.sub(lambda m: short(m.group(0)), words)


def action_line(row: dict) -> str:
    proto = protocol_name(row.get("protocol") or "?")
    kind = {"liquidate": "liquidation", "top_up": "top-up"}.get(row["kind"], row["kind"])
    if is_deleverage(row):
        kind = "deleverage"
    color = "green" if row["result"] == "done" else "yellow"
    profit, expected = realized_profit(row), expected_profit(row)
    extra = (f", realized profit {usd(profit)} after gas" if profit is not None else
             f", expected profit {usd(expected)} after gas" if expected is not None and
             row["result"] == "done" else "")
    if row["result"] != "done" and row["detail"]:
        extra = f" ({_HF_RAW.sub(lambda m: 'HF ' + format_hf(int(m.group(1))), row['detail'])})"
    tx = f" tx {row['tx_hash']}" if row["tx_hash"] else ""
    # a decision naming no account: Comet's collateral for sale, bought at its discount
    what = f"{kind} of {short(row['account'])}" if row["account"] else "purchase of collateral for sale"
    return f"  [{color}]action[/] {what} on {proto}: {row['result']}{tx}{extra}"


def is_deleverage(row: dict) -> bool:
    """A top-up row that was a deleverage (its detail is the contract's Deleveraged event)."""
    return row["kind"] == "top_up" and (row.get("detail") or "").startswith("deleveraged")


def realized_profit(row: dict) -> int | None:
    """A done liquidation's realized profit (USD e8, after gas) on any protocol."""
    if row["kind"] != "liquidate" or row["result"] != "done" or row.get("realized") is None:
        return None
    return int(row["realized"])


def expected_profit(row: dict) -> int | None:
    """The profit after gas keeper expected when it sent a liquidation (USD e8, any protocol)."""
    if row["kind"] != "liquidate" or row.get("expected") is None:
        return None
    return int(row["expected"])


def read_actions(db: Path, after: int = 0) -> list[dict]:
    """Rows of keeper's ``actions`` table with rowid > ``after`` (read-only, while keeper runs)."""
    if not db.exists():
        return []
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=2)
        try:
            con.row_factory = sqlite3.Row
            rows = con.execute("SELECT rowid, * FROM actions WHERE rowid > ? ORDER BY rowid",
                               (after,)).fetchall()
        finally:
            con.close()
    except sqlite3.OperationalError:  # no table yet, or locked for a moment: next poll
        return []
    return [dict(r) for r in rows]


class ActionWatcher:
    """Prints each new row of keeper's ``actions`` table as it appears (a thread)."""

    def __init__(self, db: Path, console: Console, every_s: float = 0.3):
        self.db, self.console, self.every_s = db, console, every_s
        self.rows: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> ActionWatcher:
        self._thread.start()
        return self

    def poll(self) -> None:
        for row in read_actions(self.db, self.rows[-1]["rowid"] if self.rows else 0):
            self.rows.append(row)
            if row["result"] != "skipped":
                self.console.print(action_line(row), highlight=False, soft_wrap=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.poll()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.poll()


def summary_table(before, after, actions: list[dict], alerts: list[dict]) -> Table:
    """The closing table: per protocol, positions before/after, what keeper did, what it earned."""
    t = Table(title="what happened", title_justify="left",
              caption="Compound V3 on the devnet: CometStandIn, a stand-in for tests (contracts/src)")
    for col in ("protocol", "positions", "liquidatable before", "liquidatable after", "alerts",
                "liquidations", "top-ups", "deleverages", "profit after gas"):
        t.add_column(col, justify="left" if col == "protocol" else "right")
    for proto in sorted({p.protocol for p in before}):
        done = [r for r in actions if r.get("protocol") == proto and r["result"] == "done"]
        profits = [x for x in (realized_profit(r) for r in done) if x is not None]
        t.add_row(protocol_name(proto),
                  str(sum(p.protocol == proto for p in before)),
                  str(sum(p.protocol == proto and p.status == Status.LIQUIDATABLE for p in before)),
                  str(sum(p.protocol == proto and p.status == Status.LIQUIDATABLE for p in after)),
                  str(sum(a.get("protocol") == proto for a in alerts)),
                  str(sum(r["kind"] == "liquidate" for r in done)),
                  str(sum(r["kind"] == "top_up" and not is_deleverage(r) for r in done)),
                  str(sum(is_deleverage(r) for r in done)),
                  f"{usd(sum(profits))} realized" if profits else "-")
    return t
