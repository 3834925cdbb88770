"""Latency of the block path: from a block seen to all of that block's liquidations sent.

    .venv/bin/python bench/latency.py                          # 100 and 400 borrowers, 3 trials each
    .venv/bin/python bench/latency.py --borrowers 400 --trials 1 --keep

No competitor (its reads would share anvil with keeper's): per trial a fresh anvil and devnet
(Aave V3 3.0.2, ``--borrowers`` positions, seeded as bench/race.py seeds them), interval mining
every second, ``keeper run`` live with pushed heads (``[chain] ws_url``), JSON logs at debug
level. Two blocks after keeper's first scan, WETH and WBTC move ``--crash-bps`` in one block B
(``--steps N``: in each of N blocks in a row, a decline); the trial ends ``--tail`` blocks later. From keeper's log, per block N whose liquidations were
sent (a liquidation's action key ends in its decision block), as ms after ``block.seen`` of N:

* *read*: the market, its logs and the dirty accounts read (``block.timing``);
* *evaluated*: the positions the block moves recomputed (``block.timing``);
* *decided*: the first ``decision.made`` (reads and plans done; logged once the decisions are handed to the burst);
* *simulated*: the burst's one batch answered (headers, nonce, ``eth_simulateV1`` of all);
* *signed*: all of them signed and journaled (one committed write);
* *sent*: the last ``tx.sent`` of block N (the broadcast batch answered): the target of issue 10
  (p99 < 20 ms for up to 50 liquidations).

``anvil`` columns are anvil's own time inside those phases (the simulation batch and the
broadcast batch, measured by keeper around the request); *keeper* is the rest. The two
*node floor* columns ask anvil again, after the trial and with no keeper code involved, to
simulate the same liquidations at the same state (block N; best of 3): one ``eth_simulateV1``
of all in nonce order (what the burst sends) and one batch of an independent ``eth_call``
each (what issue 10 names). That is the least the mandatory simulation costs on this node
and machine, before any signing or broadcast. A benchmark, not a test: nothing asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from race import FUNDS, Node, _pct, _ts, move_prices, next_block, send_from  # noqa: E402

from keeper.chain.abi import addr_arg, call_data, uint_arg  # noqa: E402
from keeper.devnet.accounts import LIQUIDATOR, anvil_account  # noqa: E402
from keeper.devnet.anvil import start_anvil, stop_anvil  # noqa: E402
from keeper.devnet.api import deploy  # noqa: E402
from keeper.devnet.state import keeper_config_toml  # noqa: E402

PHASES = ("read", "evaluated", "decided", "simulated", "signed", "sent")


async def fund(node: Node, info) -> None:
    for symbol, amount in FUNDS.items():
        await send_from(node, info.deployer, info.tokens[symbol],
                        call_data("mint(address,uint256)", addr_arg(info.liquidator), uint_arg(amount)))


def _events(log_path: Path):
    """(event, line) of each JSON line of keeper's log."""
    for text in log_path.read_text().splitlines():
        try:
            line = json.loads(text)
        except ValueError:
            continue
        yield line.get("event"), line


def blocks_from_log(log_path: Path) -> list[dict]:
    """Per block with sends: the cumulative phase times (ms after ``block.seen``), the number
    of liquidations sent, and anvil's own ms (simulation + broadcast batches)."""
    seen: dict[int, float] = {}
    timing: dict[int, tuple[float, dict]] = {}
    decided: dict[int, float] = {}
    burst: dict[int, dict] = {}
    sends: dict[int, list[float]] = defaultdict(list)
    hashes: dict[int, list[str]] = defaultdict(list)
    for ev, line in _events(log_path):
        if ev == "block.seen":
            seen.setdefault(int(line["head"]), _ts(line))
        elif ev == "block.timing":
            timing.setdefault(int(line["block"]), (_ts(line), line))
        elif ev == "decision.made":
            decided.setdefault(int(line["block"]), _ts(line))
        elif ev == "burst.sent" and "block" in line:
            burst.setdefault(int(line["block"]), line)
        elif ev == "tx.sent" and str(line.get("action_key", "")).startswith("liq:"):
            block = int(line["action_key"].rsplit(":", 1)[1].split("#")[0])  # "#2": a follow-up
            sends[block].append(_ts(line))
            hashes[block].append(line["tx_hash"])
    out = []
    for block, ts in sorted(sends.items()):
        if block not in seen or block not in burst:
            continue
        t0, b = seen[block], burst[block]
        row = {"block": block, "n": len(ts), "hashes": hashes[block]}
        if block in timing:
            t_end, tl = timing[block]
            start = (t_end - t0) * 1000 - tl["total_ms"]  # the tick began (ms after seen)
            row["read"] = start + tl["read_ms"]
            row["evaluated"] = start + tl["evaluated_ms"]
        if block in decided:
            row["decided"] = (decided[block] - t0) * 1000
        first = min(ts)
        row["signed"] = (first - t0) * 1000 - b["broadcast_ms"]
        row["simulated"] = row["signed"] - b["signed_journaled_ms"]
        row["sent"] = (max(ts) - t0) * 1000
        row["anvil"] = b["simulated_ms"] + b["broadcast_ms"]
        row["sim_ms"], row["sign_ms"], row["bcast_ms"] = b["simulated_ms"], b["signed_journaled_ms"], b["broadcast_ms"]
        out.append(row)
    return out


def backruns_from_log(log_path: Path) -> list[dict]:
    """Per backrun (the transactions sent behind one pending update): ms from ``pending.seen``
    of that update to its ``backrun.planned`` (positions named, evaluated on the update's
    price) and to its last ``tx.sent``; and the sender's own phases (``backrun.timing``)."""
    seen: dict[str, float] = {}
    planned: list[float] = []
    sends: dict[str, list[float]] = defaultdict(list)
    timings: list[dict] = []
    for ev, line in _events(log_path):
        if ev == "pending.seen":
            seen.setdefault(line["tx"], _ts(line))
        elif ev == "backrun.planned" and line.get("due"):
            planned.append(_ts(line))
        elif ev == "tx.sent" and line.get("behind"):
            sends[line["behind"]].append(_ts(line))
        elif ev == "backrun.timing":
            timings.append(line)
    out = []
    for behind, ts in sends.items():
        if behind not in seen:
            continue
        t0 = seen[behind]
        row = {"n": len(ts), "sent": (max(ts) - t0) * 1000}
        after = [t for t in planned if t0 <= t <= min(ts)]
        if after:
            row["planned"] = (max(after) - t0) * 1000
        # the sender's own phases, per backrun sent behind this update (two backruns behind the
        # same update when the second update arrived while the first was planned)
        mine = [t for t in timings if min(ts) <= _ts(t) <= max(ts) + 1]
        if mine:
            row["sim_ms"] = max(t["simulated_ms"] for t in mine)  # simulations behind the update(s)
            row["send_ms"] = max(t["sent_ms"] for t in mine)  # sign, journal, broadcast
            row["sims"] = "+".join(f'{t["liquidations"]}x{t["simulations"]}' for t in mine)
        out.append(row)
    return out


async def trial(borrowers: int, seed: int, crash_bps: int, tail: int, workdir: Path, port: int,
                root: Path | None = None, backrun: bool = False, steps: int = 1) -> tuple[list[dict], list[dict]]:
    anvil = start_anvil(port)
    node = Node(anvil.rpc_url)
    keeper = None
    try:
        info = await deploy(anvil.rpc_url, n_borrowers=borrowers, seed=seed)
        await fund(node, info)
        await node("evm_setIntervalMining", [1])
        toml = keeper_config_toml(info).replace(
            "[chain]\n", f'[chain]\nws_url = "{anvil.rpc_url.replace("http://", "ws://")}"\n', 1)
        cfg = workdir / "keeper.toml"
        cfg.write_text('mode = "live"\n' + toml + f'\n[store]\npath = "{workdir / "k.sqlite"}"\n'
                       "\n[liquidator]\nenabled = true\nmin_profit_base = 0\nbid_share_bps = 100\n"
                       + ('\n[backrun]\nenabled = true\nsubmitter = "mempool"\n' if backrun else ""))
        log_path = workdir / "keeper.log"
        env = {**os.environ, "KEEPER_PRIVATE_KEY": anvil_account(LIQUIDATOR).private_key}
        if root is not None:  # another checkout's keeper (e.g. main, for the "before" rows)
            env["PYTHONPATH"] = str(root)
        with open(log_path, "wb") as out:
            keeper = subprocess.Popen([sys.executable, "-m", "keeper", "run", "--config", str(cfg),
                                       "--log-level", "debug", "--log-format", "json"],
                                      stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                      cwd=root)
        deadline = time.monotonic() + 180
        while '"scan.done"' not in log_path.read_text():
            if keeper.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"keeper did not start; see {log_path}")
            await asyncio.sleep(0.2)
        await next_block(node, await next_block(node, await node.head()))
        for _ in range(steps):  # one price block each: a crash (1 step) or a decline
            end = await move_prices(node, info, crash_bps)
        for _ in range(tail):
            end = await next_block(node, end)
        rows = blocks_from_log(log_path)
        for row in rows:
            await node_floor(node, row)
        return rows, backruns_from_log(log_path)
    finally:
        if keeper is not None and keeper.poll() is None:
            keeper.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                keeper.wait(30)
        await node.close()
        stop_anvil(anvil.pid)


async def node_floor(node: Node, row: dict, repeat: int = 3) -> None:
    """The node's own time for the simulation of ``row``'s liquidations, asked again after the
    trial at the state keeper simulated them on (block N, anvil keeps recent states), best of
    ``repeat``: ``floor_v1``, one ``eth_simulateV1`` of all in nonce order (what the burst
    sends), and ``floor_calls``, one batch of an independent ``eth_call`` each. No keeper code
    runs: this is what the simulation costs on this node and machine at the least."""
    txs = [await node("eth_getTransactionByHash", [h]) for h in row["hashes"]]
    calls = [{"from": t["from"], "to": t["to"], "data": t["input"], "value": "0x0"}
             for t in sorted(txs, key=lambda t: int(t["nonce"], 16))]
    tag = hex(row["block"])
    v1, batch = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        got = await node("eth_simulateV1", [{"blockStateCalls": [{"calls": calls}], "validation": False}, tag])
        v1.append((time.perf_counter() - t0) * 1000)
        if any(int(c["status"], 16) != 1 for c in got[0]["calls"]):
            return  # not the state keeper simulated on (no floor for this block)
        t0 = time.perf_counter()
        r = await node.client.post("", json=[{"jsonrpc": "2.0", "id": k, "method": "eth_call", "params": [c, tag]}
                                             for k, c in enumerate(calls)])
        r.json()
        batch.append((time.perf_counter() - t0) * 1000)
    row["floor_v1"], row["floor_calls"] = min(v1), min(batch)


def pct(values: list[float], q: float) -> str:
    return _pct(values, q, 1)


def report(label: str, rows: list[dict]) -> str:
    cells = [label, str(len(rows)), "-".join(sorted({str(r["n"]) for r in rows}, key=int)) or "-"]
    for ph in (*PHASES, "anvil", "floor_v1", "floor_calls"):
        vals = [r[ph] for r in rows if ph in r]
        cells.append(f"{pct(vals, 0.5)} / {pct(vals, 0.99)}")
    keeper_own = [r["sent"] - r["anvil"] for r in rows]
    cells.insert(len(cells) - 2, f"{pct(keeper_own, 0.5)} / {pct(keeper_own, 0.99)}")
    return "| " + " | ".join(cells) + " |"


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--borrowers", default="100,400", help="comma-separated sizes, one row each")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--crash-bps", type=int, default=-4_000, help="WETH and WBTC move in block B")
    ap.add_argument("--steps", type=int, default=1, help="price blocks in a row, each moving --crash-bps "
                    "(e.g. --steps 15 --crash-bps -200: issue 10's 15-step 2%%-per-block decline)")
    ap.add_argument("--tail", type=int, default=5, help="blocks after B before the trial ends")
    ap.add_argument("--port", type=int, default=0, help="anvil's port (0: a free one)")
    ap.add_argument("--keep", action="store_true", help="keep the work dirs (keeper logs)")
    ap.add_argument("--backrun", action="store_true", help="keeper runs [backrun] (mempool): the crash's "
                    "updates are seen pending; pending seen -> sent is printed too")
    ap.add_argument("--keeper-root", type=Path, help="run the keeper of another checkout (its keeper/ "
                    "package and built artifacts), e.g. main's, for a before/after comparison")
    args = ap.parse_args()
    print("ms after block.seen, p50 / p99 over the blocks with sends; cumulative phases")
    print("| borrowers | blocks | liquidations per block | read | evaluated | decided | simulated | signed+journaled"
          " | **sent (all)** | anvil's own (sim + broadcast) | keeper's own (sent - anvil)"
          " | node floor: eth_simulateV1 of all | node floor: eth_call each, one batch |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in (int(x) for x in args.borrowers.split(",")):
        rows: list[dict] = []
        backruns: list[dict] = []
        for t in range(args.trials):
            workdir = Path(tempfile.mkdtemp(prefix=f"latency-{size}-"))
            got, br = await trial(size, 1 + t, args.crash_bps, args.tail, workdir, args.port, args.keeper_root,
                                  args.backrun, args.steps)
            backruns.extend(br)
            for r in br:
                print(f"# {size} trial {t} backrun: {r['n']} sent, "
                      + ", ".join(f"{k} {r[k]:.1f}" for k in ("planned", "sent", "sim_ms", "send_ms") if k in r)
                      + f" (backruns: liquidations x simulations {r.get('sims', '-')})",
                      file=sys.stderr, flush=True)
            for r in got:
                print(f"# {size} trial {t} block {r['block']}: {r['n']} sent, "
                      + ", ".join(f"{k} {r[k]:.1f}" for k in (*PHASES, "sim_ms", "sign_ms", "bcast_ms", "floor_v1", "floor_calls")
                                if k in r),
                      file=sys.stderr, flush=True)
            rows.extend(got)
            if args.keep:
                print(f"# {size} trial {t}: {workdir}", file=sys.stderr)
        print(report(str(size), rows), flush=True)
        if backruns:
            cells = [f"{size} backrun", str(len(backruns)), "-".join(sorted({str(r["n"]) for r in backruns}, key=int))]
            for ph in ("planned", "sent", "sim_ms", "send_ms"):
                vals = [r[ph] for r in backruns if ph in r]
                cells.append(f"{pct(vals, 0.5)} / {pct(vals, 0.99)}")
            print("| " + " | ".join(cells) + " |  (backrun, ms after pending.seen: planned / all sent;"
                  " the sender's simulations / sign+journal+broadcast)", flush=True)
        big = [r for r in rows if r["n"] >= max(r2["n"] for r2 in rows) // 2] if rows else []
        if big and len(big) != len(rows):
            print(report(f"{size} (bursts of {min(r['n'] for r in big)}+)", big), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
