"""keeper.demo_story: what the demo prints about keeper's actions, read from a real SQLite
store written the way keeper writes it (the ``actions`` table of keeper.executors.actions)."""

from __future__ import annotations

import sqlite3

from rich.console import Console

from keeper.demo_story import (ActionWatcher, action_line, expected_profit, read_actions,
                               realized_profit)
from keeper.executors.actions import _SCHEMA as SCHEMA  # the table keeper writes

ACCOUNT = "0x997F54213D0a602dE2E9046A5983EcCCE544f185"
TX = "0x" + "ab" * 32


def insert(db, key, market, kind, result, tx=None, detail=None, protocol="aave_v3", realized=None):
    con = sqlite3.connect(db)
    con.execute("INSERT INTO actions (action_key, kind, market, account, block, result, expected, realized, "
                "tx_hash, detail, created_at, protocol) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (key, kind, market, ACCOUNT, 33, result, None, realized, tx, detail, 1.0, protocol))
    con.commit()
    con.close()


def test_actions_are_read_as_they_land_and_told_plainly(tmp_path):
    db = tmp_path / "keeper.sqlite"
    assert read_actions(db) == []  # keeper has not started yet
    con = sqlite3.connect(db)
    con.executescript(SCHEMA)
    con.close()
    insert(db, f"liq:devnet:{ACCOUNT}:33", "devnet", "liquidate", "done", TX, realized="137472525672")
    rows = read_actions(db)
    assert realized_profit(rows[0]) == 137472525672
    assert expected_profit({"kind": "liquidate", "expected": "5"}) == 5  # USD e8, as sent
    assert action_line(rows[0]) == (
        f"  [green]action[/] liquidation of 0x997F…f185 on Aave V3: done tx {TX}, "
        "realized profit $1,374.72 after gas")
    insert(db, f"liq:morpho:0xd55c947f:{ACCOUNT}:34", "morpho:0xd55c947f", "liquidate", "lost",
           detail=f"position no longer liquidatable (hf {2**256 - 1})", protocol="morpho_blue")
    new = read_actions(db, rows[-1]["rowid"])
    assert [r["action_key"][:13] for r in new] == ["liq:morpho:0x"]
    assert realized_profit(new[0]) is None
    assert action_line(new[0]).endswith(
        "on Morpho Blue: lost (position no longer liquidatable (HF no debt))")


def test_the_watcher_prints_each_row_once(tmp_path):
    db = tmp_path / "keeper.sqlite"
    con = sqlite3.connect(db)
    con.executescript(SCHEMA)
    con.close()
    console = Console(record=True, width=200)
    w = ActionWatcher(db, console)
    insert(db, f"liq:comet:{ACCOUNT}:40", "comet", "liquidate", "done", TX, "absorbed 1", "compound_v3",
           realized="250000000")
    w.poll()
    w.poll()
    assert "realized profit $2.50 after gas" in console.export_text(clear=False)
    insert(db, f"topup:devnet:{ACCOUNT}:41", "devnet", "top_up", "skipped", detail="already sent")
    w.stop()  # polls once more
    text = console.export_text()
    assert text.count("action") == 1 and "liquidation of 0x997F…f185 on Compound V3" in text
    assert len(w.rows) == 2  # the skipped one is kept, not printed


def test_a_deleverage_is_told_as_one_with_readable_amounts():
    from keeper.demo_story import alert_line, is_deleverage

    row = {"kind": "top_up", "result": "done", "tx_hash": TX, "account": ACCOUNT, "protocol": "morpho_blue",
           "detail": "deleveraged: sold 5 of 0xabc, repaid 4 of 0xdef, swap paid 4 (0 bps below the oracle), "
                     "health factor after 1300000000000000000", "realized": None, "expected": None}
    assert is_deleverage(row) and not is_deleverage({**row, "detail": "partial: wallet short"})
    assert action_line(row).startswith("  [green]action[/] deleverage of 0x997F…f185 on Morpho Blue: done")
    buy = {**row, "kind": "liquidate", "account": "", "protocol": "compound_v3", "result": "lost", "detail": ""}
    assert action_line(buy) == "  [yellow]action[/] purchase of collateral for sale on Compound V3: lost tx " + TX
    before = {"kind": "deleverage_sent", "protocol": "morpho_blue", "account": ACCOUNT, "health_factor": "1.1279",
              "debt_usd": "28,666.66 USDC",
              "action": "deleverage sent, not yet mined: health factor 1127999980784651490 below trigger "
                        "1160000000000000000; deleverage on Morpho: sell 5970520020951567730 WETH (price impact "
                        "5 bps) to repay 11218316288 USDC"}
    assert alert_line(before, {"WETH": 18, "USDC": 6}).endswith(
        "health factor 1.1279 below trigger 1.1600; deleverage on Morpho: sell 5.9705 WETH (price impact 5 bps) "
        "to repay 11218.3162 USDC")
    assert "action" not in alert_line({**before, "kind": "flagged", "action": None})  # others: as before
