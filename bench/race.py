"""Race keeper against a naive competitor on the devnet with 1 s blocks.

    .venv/bin/python bench/race.py                       # crash and decline, 60 borrowers
    .venv/bin/python bench/race.py --scenario crash --borrowers 200 --trials 2

Per trial: a fresh anvil and devnet (Aave V3 3.0.2, ``--borrowers`` positions), then interval
mining every second (``evm_setIntervalMining``). Both sides hold plenty of every debt token;
the competitor's approvals are in place (keeper sets up its own). Then:

* keeper: ``keeper run`` in live mode as a subprocess with its own key (anvil account 1),
  JSON logs at debug level to a file;
* the competitor (here, in-process, anvil account 3): polls ``eth_blockNumber`` every 200 ms;
  on a new block it reads the latest base fee, calls ``getUserAccountData`` once per borrower
  (no batching) and for each one below 1.0 that it has nothing in flight for, signs and sends
  ``liquidationCall(first collateral, first debt, user, max, false)`` (after an
  ``eth_estimateGas``, as web3 does: a revert there sends nothing) with ``maxFeePerGas =
  2 * baseFee + 1 gwei``; it checks its receipts once per block.

``--backrun mempool``: keeper runs with ``[backrun]`` (pending price updates seen over
WebSocket, liquidations sent behind them, priced to land in the same block B). ``--backrun
bundle``: the same as ``eth_sendBundle`` to the project's loopback relay
(keeper.devnet.relay), which then builds every block (1 s) in place of anvil's interval
mining: bundles first, in order, then the public pool. The share of keeper's liquidations
mined in B is printed (to stderr) per scenario.

Scenarios: ``crash`` (WETH and WBTC -30% in one block B) and ``decline`` (15 blocks in a row,
-2% on both per block). Ten blocks after the last move the race ends. Printed per scenario:

* win share: who emitted the first ``LiquidationCall`` of each liquidated user;
* blocks from the price block B (the latest price block at or before inclusion) to the
  inclusion of each side's successful liquidations;
* liquidation transactions each side sent to the Pool, and how many were mined reverted (and how
  many keeper replaced by a cancel before they could revert, from its log);
* keeper's latency from ``block.seen`` (its runner) to ``tx.sent`` of a liquidation decided
  at that block, p50 / p99 (from its log), and from the block's first ``decision.made`` to
  each ``tx.sent`` (the send path alone).

A benchmark, not a test: nothing here asserts a time. Numbers go to the README table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import httpx
from eth_account import Account
from eth_utils import to_checksum_address

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keeper.chain.abi import addr_arg, call_data, topic, uint_arg, word  # noqa: E402
from keeper.devnet.accounts import LIQUIDATOR, SPARE, anvil_account  # noqa: E402
from keeper.devnet.anvil import start_anvil, stop_anvil  # noqa: E402
from keeper.devnet.api import deploy  # noqa: E402
from keeper.devnet.relay import Relay  # noqa: E402
from keeper.devnet.state import keeper_config_toml  # noqa: E402
from keeper.protocols.aave_v3 import encode as enc  # noqa: E402

GWEI = 10**9
WAD = 10**18
UINT_MAX = 2**256 - 1
LIQUIDATION_CALL = "0x" + topic("LiquidationCall(address,address,address,uint256,uint256,address,bool)").hex()
SET_ANSWER = "setAnswer(int256)"
MOVED = ("WETH", "WBTC")
FUNDS = {"USDC": 10**8 * 10**6, "DAI": 10**8 * 10**18, "WETH": 10**5 * 10**18, "WBTC": 10**4 * 10**8}
TAIL_BLOCKS = 10


class Node:
    """Plain JSON-RPC over one httpx client (each side has its own)."""

    def __init__(self, url: str):
        self.client = httpx.AsyncClient(base_url=url, timeout=30)
        self.ids = 0

    async def __call__(self, method: str, params: list) -> object:
        self.ids += 1
        r = (await self.client.post("", json={"jsonrpc": "2.0", "id": self.ids, "method": method,
                                               "params": params})).json()
        if "error" in r:
            raise RuntimeError(f"{method}: {r['error']}")
        return r["result"]

    async def head(self) -> int:
        return int(await self(("eth_blockNumber"), []), 16)

    async def close(self) -> None:
        await self.client.aclose()


class Competitor:
    """The project's own naive liquidation bot (see the module docstring)."""

    def __init__(self, node: Node, info, key: str):
        self.node, self.info = node, info
        self.acct = Account.from_key(key)
        self.plans = {to_checksum_address(p["address"]): p for p in info.positions}
        self.pending: dict[str, str] = {}  # user -> tx hash
        self.sent = self.reverted = 0
        self.errors: Counter[str] = Counter()
        self.nonce = 0
        self.stop = asyncio.Event()

    def _pick(self, user: str) -> tuple[str, str]:
        p = self.plans[user]
        return self.info.tokens[next(iter(p["collateral"]))], self.info.tokens[next(iter(p["debt"]))]

    async def run(self) -> None:
        self.nonce = int(await self.node("eth_getTransactionCount", [self.acct.address, "pending"]), 16)
        chain_id = int(await self.node("eth_chainId", []), 16)
        seen = await self.node.head()
        while not self.stop.is_set():
            await asyncio.sleep(0.2)
            head = await self.node.head()
            if head <= seen:
                continue
            seen = head
            for user, h in list(self.pending.items()):
                rc = await self.node("eth_getTransactionReceipt", [h])
                if rc is not None:
                    del self.pending[user]
                    self.reverted += int(rc["status"], 16) == 0
            base = int((await self.node("eth_getBlockByNumber", ["latest", False]))["baseFeePerGas"], 16)
            for user in self.plans:
                if user in self.pending:
                    continue
                try:
                    raw = await self.node("eth_call", [{"to": self.info.pool,
                                                        "data": "0x" + enc.account_data(user).hex()}, "latest"])
                except RuntimeError as e:  # a view that reverts: skip the account this block
                    self.errors[str(e)[:80]] += 1
                    continue
                if word(bytes.fromhex(raw[2:]), 5) >= WAD:
                    continue
                collateral, debt = self._pick(user)
                data = enc.liquidation_call(collateral, debt, user, UINT_MAX)
                try:  # as web3 does before a send: the estimate (a revert here sends nothing)
                    gas = int(await self.node("eth_estimateGas", [{"from": self.acct.address, "to": self.info.pool,
                                                                   "data": "0x" + data.hex()}]), 16)
                except RuntimeError:
                    continue
                tx = {"type": 2, "chainId": chain_id, "nonce": self.nonce, "to": self.info.pool,
                      "value": 0, "gas": gas * 12 // 10, "maxPriorityFeePerGas": GWEI,
                      "maxFeePerGas": 2 * base + GWEI, "data": data}
                signed = self.acct.sign_transaction(tx)
                self.pending[user] = await self.node("eth_sendRawTransaction",
                                                     ["0x" + bytes(signed.raw_transaction).hex()])
                self.nonce += 1
                self.sent += 1


async def send_from(node: Node, sender: str, to: str, data: bytes) -> str:
    return await node("eth_sendTransaction", [{"from": sender, "to": to, "data": "0x" + data.hex(),
                                               "gas": hex(500_000)}])


async def setup_funds(node: Node, info, competitor: str) -> None:
    """Automine still on: mint to both sides, the competitor approves the Pool."""
    for symbol, amount in FUNDS.items():
        token = info.tokens[symbol]
        for who in (info.liquidator, competitor):
            await send_from(node, info.deployer, token, call_data("mint(address,uint256)",
                                                                  addr_arg(who), uint_arg(amount)))
        await send_from(node, competitor, token, enc.approve(info.pool, UINT_MAX))


async def next_block(node: Node, after: int) -> int:
    while (h := await node.head()) <= after:
        await asyncio.sleep(0.05)
    return h


async def move_prices(node: Node, info, bps: int) -> int:
    """One setAnswer per moved feed, sent together: both land in one block. Returns it."""
    hashes = []
    for symbol in MOVED:
        feed = info.feeds[symbol]
        raw = await node("eth_call", [{"to": feed, "data": "0x" + call_data("latestAnswer()").hex()}, "latest"])
        new = word(bytes.fromhex(raw[2:])) * (10_000 + bps) // 10_000
        hashes.append(await send_from(node, info.deployer, feed, call_data(SET_ANSWER, uint_arg(new))))
    blocks = set()
    for h in hashes:
        while (rc := await node("eth_getTransactionReceipt", [h])) is None:
            await asyncio.sleep(0.05)
        blocks.add(int(rc["blockNumber"], 16))
    return max(blocks)


def _ts(line: dict) -> float:
    return datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).timestamp()


def keeper_latency(log_path: Path) -> tuple[list[float], list[float]]:
    """ms from ``block.seen`` of block N to each ``tx.sent`` of a liquidation decided at N, and
    from the first ``decision.made`` at N to it (the send path alone)."""
    seen: dict[int, float] = {}
    decided: dict[int, float] = {}
    out, send = [], []
    for text in log_path.read_text().splitlines():
        try:
            line = json.loads(text)
        except ValueError:
            continue
        if line.get("event") == "block.seen":
            seen.setdefault(int(line["head"]), _ts(line))
        elif line.get("event") == "decision.made":
            decided.setdefault(int(line["block"]), _ts(line))
        elif line.get("event") == "tx.sent" and str(line.get("action_key", "")).startswith("liq:"):
            block = int(line["action_key"].rsplit(":", 1)[1].split("#")[0])  # "#2": a follow-up
            if block in seen:
                out.append((_ts(line) - seen[block]) * 1000)
            if block in decided:
                send.append((_ts(line) - decided[block]) * 1000)
    return out, send


def keeper_cancels(log_path: Path) -> int:
    """Liquidations keeper replaced by a cancel before they could revert (``tx.cancelled``)."""
    return log_path.read_text().count('"tx.cancelled"')


async def chain_results(node: Node, info, start: int, end: int, price_blocks: list[int],
                        sides: dict[str, str]) -> dict:
    logs = await node("eth_getLogs", [{"address": info.pool, "topics": [LIQUIDATION_CALL],
                                       "fromBlock": hex(start), "toBlock": hex(end)}])
    first: dict[str, str] = {}
    lag: dict[str, list[int]] = {s: [] for s in sides.values()}
    for lg in sorted(logs, key=lambda x: (int(x["blockNumber"], 16), int(x["logIndex"], 16))):
        user = to_checksum_address("0x" + lg["topics"][3][-40:])
        who = sides.get(to_checksum_address("0x" + lg["data"][2 + 64 * 2 + 24:2 + 64 * 3]), "other")
        block = int(lg["blockNumber"], 16)
        first.setdefault(user, who)
        b = max((p for p in price_blocks if p <= block), default=block)
        lag.setdefault(who, []).append(block - b)
    sent = {s: 0 for s in sides.values()}
    reverted = {s: 0 for s in sides.values()}
    for n in range(start, end + 1):
        block = await node("eth_getBlockByNumber", [hex(n), True])
        for tx in block["transactions"]:
            who = sides.get(to_checksum_address(tx["from"]))
            if who is None or tx["to"] is None or to_checksum_address(tx["to"]) != info.pool:
                continue
            sent[who] += 1
            rc = await node("eth_getTransactionReceipt", [tx["hash"]])
            reverted[who] += int(rc["status"], 16) == 0
    return {"first": Counter(first.values()), "lag": lag, "sent": sent, "reverted": reverted,
            "liquidated": len(first)}


async def trial(scenario: str, borrowers: int, seed: int, workdir: Path, bid_share_bps: int,
                ws: bool, backrun: str = "off", port: int = 0) -> dict:
    anvil = start_anvil(port)
    node = Node(anvil.rpc_url)
    keeper = relay = None
    building = asyncio.Event()
    builder = None
    try:
        info = await deploy(anvil.rpc_url, n_borrowers=borrowers, seed=seed)
        competitor = anvil_account(SPARE[0])
        await setup_funds(node, info, competitor.address)
        if backrun == "bundle":  # the project's relay builds every block (1 s), bundles first
            relay = Relay(anvil.rpc_url)
            await relay.start()
            await node("evm_setAutomine", [False])
            builder = asyncio.create_task(relay.run(building, 1.0))
        else:
            await node("evm_setIntervalMining", [1])
        cfg = workdir / "keeper.toml"
        toml = keeper_config_toml(info)
        if ws or backrun != "off":  # pushed heads (and pending txs): anvil serves WebSocket on the same port
            toml = toml.replace("[chain]\n", f'[chain]\nws_url = "{anvil.rpc_url.replace("http://", "ws://")}"\n', 1)
        cfg.write_text('mode = "live"\n' + toml + f'\n[store]\npath = "{workdir / "k.sqlite"}"\n'
                       "\n[liquidator]\nenabled = true\nmin_profit_base = 0\n"
                       + (f"bid_share_bps = {bid_share_bps}\n" if bid_share_bps else "")
                       + (f'\n[backrun]\nenabled = true\nsubmitter = "{backrun}"\n' if backrun != "off" else "")
                       + (f'relay_url = "{relay.url}"\n' if relay is not None else ""))
        log_path = workdir / "keeper.log"
        env = {**os.environ, "KEEPER_PRIVATE_KEY": anvil_account(LIQUIDATOR).private_key}
        with open(log_path, "wb") as out:
            keeper = subprocess.Popen([sys.executable, "-m", "keeper", "run", "--config", str(cfg), "--log-level", "debug",
                                       "--log-format", "json"], stdout=out, stderr=subprocess.STDOUT,
                                      env=env, start_new_session=True)
        deadline = time.monotonic() + 120
        while '"scan.done"' not in log_path.read_text():
            if keeper.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"keeper did not start; see {log_path}")
            await asyncio.sleep(0.2)
        comp = Competitor(Node(anvil.rpc_url), info, competitor.private_key)
        task = asyncio.create_task(comp.run())
        start = await next_block(node, await next_block(node, await node.head()))
        price_blocks = []
        if scenario == "crash":
            price_blocks.append(await move_prices(node, info, -3_000))
        else:
            for _ in range(15):
                b = await move_prices(node, info, -200)
                price_blocks.append(b)
                await next_block(node, b)
        end = price_blocks[-1]
        for _ in range(TAIL_BLOCKS):
            end = await next_block(node, end)
        comp.stop.set()
        await task
        await comp.node.close()
        if comp.errors:
            print(f"# competitor: views that reverted: {dict(comp.errors)}", file=sys.stderr)
        sides = {to_checksum_address(info.liquidator): "keeper", to_checksum_address(competitor.address): "competitor"}
        res = await chain_results(node, info, start, end, price_blocks, sides)
        res["latency_ms"], res["send_ms"] = keeper_latency(log_path)
        res["cancelled"] = keeper_cancels(log_path)
        return res
    finally:
        if keeper is not None and keeper.poll() is None:
            keeper.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                keeper.wait(30)
        if builder is not None:
            building.set()
            await builder
        if relay is not None:
            res_relay = f"bundles included {len(relay.included)}, split {len(relay.split)}, rejected {len(relay.rejected)}"
            print(f"# relay: {res_relay}", file=sys.stderr)
            for _b, why in relay.rejected:
                print(f"# relay rejected a bundle: {why[:200]}", file=sys.stderr)
            await relay.close()
        await node.close()
        stop_anvil(anvil.pid)


def _pct(values: list[float], q: float, digits: int = 0) -> str:
    if not values:
        return "-"
    s = sorted(values)
    return f"{s[min(len(s) - 1, int(q * len(s)))]:.{digits}f}"


def report(scenario: str, borrowers: int, results: list[dict]) -> str:
    first = sum((r["first"] for r in results), Counter())
    total = sum(r["liquidated"] for r in results)
    lags = {side: Counter(x for r in results for x in r["lag"].get(side, [])) for side in ("keeper", "competitor")}
    sent = {s: sum(r["sent"][s] for r in results) for s in ("keeper", "competitor")}
    rev = {s: sum(r["reverted"][s] for r in results) for s in ("keeper", "competitor")}
    lat = [x for r in results for x in r["latency_ms"]]
    send = [x for r in results for x in r["send_ms"]]
    cancelled = sum(r.get("cancelled", 0) for r in results)

    def hist(c: Counter) -> str:
        return " ".join(f"B+{k}:{v}" for k, v in sorted(c.items())) or "-"
    return (f"| {scenario} | {borrowers} | {len(results)} | {first['keeper']} of {total} | "
            f"{hist(lags['keeper'])} | {hist(lags['competitor'])} | {rev['keeper']} of {sent['keeper']}"
            f"{f' ({cancelled} cancelled)' if cancelled else ''} | "
            f"{rev['competitor']} of {sent['competitor']} | {_pct(lat, 0.5)} / {_pct(lat, 0.99)} "
            f"({len(lat)} sends) | {_pct(send, 0.5)} / {_pct(send, 0.99)} |")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", choices=("crash", "decline", "both"), default="both")
    ap.add_argument("--borrowers", type=int, default=60)
    ap.add_argument("--trials", type=int, default=1)
    ap.add_argument("--bid-share-bps", type=int, default=100, help="keeper's [liquidator] bid_share_bps (0: none)")
    ap.add_argument("--no-ws", action="store_true", help="keeper polls for blocks (no [chain] ws_url)")
    ap.add_argument("--keep", action="store_true", help="keep the work dirs (keeper logs)")
    ap.add_argument("--backrun", choices=("off", "mempool", "bundle"), default="off",
                    help="keeper's [backrun]: liquidations behind the pending update, through the pool or as a "
                         "bundle to the project's relay (which then builds the blocks)")
    ap.add_argument("--port", type=int, default=0, help="anvil's port (0: a free one)")
    args = ap.parse_args()
    print("| scenario | borrowers | trials | keeper first | keeper: B to inclusion | competitor: B to inclusion"
          " | keeper reverted of sent | competitor reverted of sent | keeper seen->sent ms p50 / p99"
          " | keeper decided->sent ms p50 / p99 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for scenario in (("crash", "decline") if args.scenario == "both" else (args.scenario,)):
        results = []
        for t in range(args.trials):
            workdir = Path(tempfile.mkdtemp(prefix=f"race-{scenario}-"))
            results.append(await trial(scenario, args.borrowers, 1 + t, workdir, args.bid_share_bps,
                                       not args.no_ws, args.backrun, args.port))
            if args.keep:
                print(f"# {scenario} trial {t}: {workdir}", file=sys.stderr)
        print(report(scenario, args.borrowers, results), flush=True)
        in_b = sum(1 for r in results for x in r["lag"].get("keeper", []) if x == 0)
        mined = sum(len(r["lag"].get("keeper", [])) for r in results)
        print(f"# {scenario}: keeper liquidations mined in the price block B: {in_b} of {mined}"
              + (f" ({100 * in_b // mined}%)" if mined else ""), file=sys.stderr, flush=True)


if __name__ == "__main__":
    asyncio.run(main())
