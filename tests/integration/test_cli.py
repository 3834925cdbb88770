"""The `keeper` command as a person runs it: scan (table, JSON, what-if), doctor, run with
SIGTERM, and bad config (exit 2, a message that names the key, no traceback)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from keeper.units import UINT256_MAX

KEEPER = [sys.executable, "-m", "keeper"]


def keeper(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*KEEPER, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def config_copy(devnet, tmp_path: Path, extra: str = "") -> Path:
    text = devnet.config_path.read_text() + f'\n[store]\npath = "{tmp_path / "k.sqlite"}"\n' + extra
    path = tmp_path / "keeper.toml"
    path.write_text(text)
    return path


def test_scan_json_has_one_object_per_position(devnet, tmp_path):
    out = keeper("scan", "--config", str(config_copy(devnet, tmp_path)), "--json", "--check")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert {r["account"] for r in rows} == set(devnet.info.borrowers)
    for r in rows:
        assert r["protocol"] == "aave_v3" and r["market"] == devnet.info.pool
        assert isinstance(r["collateral_base"], int) and isinstance(r["debt_base"], int)
        assert r["health_factor"] is None or isinstance(r["health_factor"], int)
        assert r["status"] in {"safe", "watch", "at_risk", "liquidatable"}
        assert isinstance(r["block"], int)
    hfs = [r["health_factor"] if r["health_factor"] is not None else UINT256_MAX for r in rows]
    assert hfs == sorted(hfs)  # sorted by health factor
    assert "0 mismatches" in out.stderr


def test_scan_shock_lowers_health_factors(devnet, tmp_path):
    cfg = str(config_copy(devnet, tmp_path))
    base = {json.loads(x)["account"]: json.loads(x) for x in keeper("scan", "-c", cfg, "--json").stdout.splitlines()}
    out = keeper("scan", "-c", cfg, "--json", "--shock", "WETH=-20%")
    assert out.returncode == 0, out.stderr
    shocked = {json.loads(x)["account"]: json.loads(x) for x in out.stdout.splitlines()}
    weth = devnet.info.tokens["WETH"]
    lower = [a for a in shocked if shocked[a]["health_factor"] is not None
             and shocked[a]["health_factor"] < base[a]["health_factor"]]
    assert lower, "a 20% WETH drop lowers someone's health factor"
    assert weth  # the table path: human output names the what-if
    table = keeper("scan", "-c", cfg, "--shock", "WETH=-20%")
    assert "what-if WETH -20%" in table.stdout


def test_scan_rejects_a_bad_shock(devnet, tmp_path):
    out = keeper("scan", "-c", str(config_copy(devnet, tmp_path)), "--shock", "WETH=-20")
    assert out.returncode == 2
    assert "ASSET=PCT%" in out.stderr and "Traceback" not in out.stderr


def test_doctor_passes_on_the_devnet(devnet, tmp_path):
    out = keeper("doctor", "--config", str(config_copy(devnet, tmp_path)))
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert any("multicall3" in line and line.startswith("ok") for line in lines)
    assert any("pool" in line and "points back" in line for line in lines)


def test_doctor_fails_on_wrong_chain_id_and_wrong_address(devnet, tmp_path):
    text = config_copy(devnet, tmp_path).read_text().replace("chain_id = 31337", "chain_id = 1")
    text = text.replace(devnet.info.pool_addresses_provider, devnet.info.tokens["USDC"])
    path = tmp_path / "wrong.toml"
    path.write_text(text)
    out = keeper("doctor", "--config", str(path))
    assert out.returncode == 2  # problems `keeper run` refuses to start with (keeper.preflight)
    fails = [line for line in out.stdout.splitlines() if line.startswith("FAIL")]
    assert any("chain id is 31337, config says 1" in line for line in fails)
    assert any("addresses provider" in line for line in fails)


def test_bad_config_exits_2_naming_the_key(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[chain]\nrpc_url = "http://127.0.0.1:8545"\n\n[[markets]]\n'
                    'protocol = "aave_v3"\npool_addresses_provider = "0x12"\n')
    out = keeper("scan", "--config", str(path))
    assert out.returncode == 2
    assert "markets[0].pool_addresses_provider" in out.stderr
    assert "Traceback" not in out.stderr


def test_run_flags_a_crash_and_stops_cleanly_on_sigterm(devnet, tmp_path, w3):
    import asyncio

    from keeper.devnet.api import apply_price_change, connect, get_price, set_price

    cfg = config_copy(devnet, tmp_path, "\n[monitor]\nscan_interval_s = 2\n")
    proc = subprocess.Popen([*KEEPER, "run", "--config", str(cfg)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if '"scan.done"' in line:
                break

        async def crash():
            node = connect(devnet.rpc_url)
            for sym in ("WETH", "WBTC"):
                await set_price(node, devnet.info, sym,
                                apply_price_change(await get_price(node, devnet.info, sym), "-35%"))
        asyncio.run(crash())
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if '"liquidatable"' in line:
                break
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)
        lines.append(rest)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = "".join(lines)
    events = [json.loads(x) for x in text.splitlines() if x.startswith("{")]
    flagged = [e for e in events if e["event"] == "position.flagged" and e["status"] == "liquidatable"]
    assert flagged, text[-2000:]
    assert all({"account", "block", "protocol", "market", "health_factor"} <= set(e) for e in flagged)
    assert proc.returncode == 0
    assert any(e["event"] == "keeper.stopped" for e in events)


def test_scan_rejects_a_shock_on_an_asset_no_market_prices(devnet, tmp_path):
    out = keeper("scan", "-c", str(config_copy(devnet, tmp_path)), "--shock", "FOO=-20%")
    assert out.returncode == 2
    assert "FOO" in out.stderr and "no configured market prices it" in out.stderr
