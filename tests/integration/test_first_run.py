"""A first run as a new user sees it: `keeper devnet up` names every protocol's addresses,
the config it wrote and the live-mode key; `make demo`'s story is readable (progress first,
no raw JSON flood, no Python error text, a summary table at the end, keeper's log in a file)."""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys
from pathlib import Path

KEEPER = [sys.executable, "-m", "keeper"]


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200"})


def test_devnet_up_prints_every_protocol_and_how_to_go_live(tmp_path):
    state = tmp_path / "devnet"
    up = run(*KEEPER, "devnet", "up", "--port", "0", "--borrowers", "2", "--state-dir", str(state))
    try:
        assert up.returncode == 0, up.stderr
        info = json.loads((state / "state.json").read_text())
        morpho = json.loads((state / "morpho.json").read_text())
        comet = json.loads((state / "comet.json").read_text())
        for addr in (info["pool_addresses_provider"], info["pool"], info["oracle"], morpho["morpho"],
                     *morpho["market_ids"], comet["comet"], info["multicall3"], info["liquidator"]):
            assert addr in up.stdout
        assert str(state / "keeper.toml") in up.stdout and "KEEPER_PRIVATE_KEY" in up.stdout
        for step in ("Aave V3", "Morpho Blue", "Compound V3"):  # progress on stderr
            assert step in up.stderr
        key = run(*KEEPER, "devnet", "key", "--state-dir", str(state))
        assert key.stdout.strip() == info["dev_keys"]["liquidator"]
        from eth_account import Account

        assert Account.from_key(key.stdout.strip()).address == info["liquidator"]
    finally:
        run(*KEEPER, "devnet", "down", "--state-dir", str(state))


def test_devnet_help_names_port_and_all_protocols():
    out = run(*KEEPER, "devnet", "up", "--help")
    assert "--port" in out.stdout and "Morpho Blue" in out.stdout and "Compound V3" in out.stdout
    assert "a real Aave V3 market" not in run(*KEEPER, "--help").stdout


def test_demo_tells_a_story_and_logs_to_a_file(tmp_path):
    d = tmp_path / "demo"
    out = run(sys.executable, "-m", "keeper.demo", "--borrowers", "10", "--pause", "0.5",
              "--dir", str(d), timeout=600)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    lines = text.splitlines()
    assert "keeper demo" in lines[0]
    assert sum(line.lstrip().startswith("{") for line in lines) < 30
    for bad in ("Traceback", "Unclosed client session", "Task exception was never retrieved"):
        assert bad not in text
    assert not [line for line in lines if re.match(r"\s*\w+(Error|Exception)\b", line)]
    assert "price  WETH -6%" in text and "positions before the crash" in text
    # the deleverage scene: twin loans, the protected one deleveraged and never liquidated, the other liquidated
    (saved,) = [x for x in lines if x.startswith("protected   twin")]
    (other,) = [x for x in lines if x.startswith("unprotected twin")]
    assert "deleveraged" in saved and "LIQUIDATED" not in saved and "LIQUIDATED" in other, (saved, other)
    keeper_log = d / "keeper.log"
    assert str(keeper_log) in text
    events = [json.loads(x) for x in keeper_log.read_text().splitlines() if x.startswith("{")]
    assert any(e["event"] == "tick.done" or e["event"].startswith("index") for e in events)
    tail = "\n".join(lines[-12:])
    assert "what happened" in "\n".join(lines[-16:]) and "Aave V3" in tail and "Morpho Blue" in tail
    assert not (Path.cwd() / "keeper.log").exists()
