"""A bundle relay and block builder for the devnet: the project's own stand-in for a
Flashbots-style relay, on loopback only. It is NOT a real builder and holds no MEV auction.

It answers ``eth_sendBundle`` (``{"txs": [raw...], "blockNumber": "0x.."}``) over HTTP and
builds the devnet's blocks itself: anvil runs with automine and interval mining off, and
``build()`` (called every ``interval_s`` by ``run``, or by a test) makes the next block:

1. each bundle for that block, in arrival order, is checked: every transaction decodes, the
   bundle simulates in order with every transaction succeeding (``eth_simulateV1`` on
   ``latest``), and its ``maxFeePerGas`` never rises along the bundle (anvil orders a block by
   ``maxFeePerGas``, then arrival: a rising fee would be mined out of order). A bundle that
   fails a check is not included (``rejected`` names why);
2. its transactions already in anvil's pool (the public update it backruns) are dropped
   there (``anvil_dropTransaction``) and all of them sent again, back to back, in order;
   a transaction the node refuses (e.g. its nonce was used) drops the whole bundle. anvil
   drops a sender's later nonces with the dropped one: those are sent again after the bundle;
3. ``evm_mine``: the block holds the bundles and the rest of the public pool. Then the block
   is read back and each included bundle checked to be contiguous and in order
   (``included`` / ``split``).

Bundles for a block that has passed are forgotten, as a relay does; a bundle with the
``replacementUuid`` of an earlier one replaces it.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field

import httpx
from aiohttp import web
from eth_account import Account
from eth_account.typed_transactions import TypedTransaction
from eth_utils import keccak
from hexbytes import HexBytes


@dataclass
class Bundle:
    txs: list[str]
    block: int
    hashes: list[str] = field(default_factory=list)
    uuid: str = ""  # replacementUuid: a later bundle with the same one replaces this one


class Relay:
    def __init__(self, rpc_url: str):
        self.rpc_url = rpc_url
        self.node = httpx.AsyncClient(timeout=30)
        self.bundles: dict[int, list[Bundle]] = defaultdict(list)
        self.included: list[Bundle] = []
        self.split: list[Bundle] = []
        self.rejected: list[tuple[Bundle, str]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._ids = 0
        self._lock = asyncio.Lock()

    async def rpc(self, method: str, params: list):
        self._ids += 1
        r = (await self.node.post(self.rpc_url, json={"jsonrpc": "2.0", "id": self._ids, "method": method,
                                                      "params": params})).json()
        if "error" in r:
            raise RuntimeError(f"{method}: {r['error'].get('message', r['error'])}")
        return r["result"]

    # -- the HTTP side --------------------------------------------------------------------
    async def start(self, port: int = 0) -> str:
        app = web.Application()
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/"  # noqa: SLF001
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        await self.node.aclose()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        rid = body.get("id")
        if body.get("method") != "eth_sendBundle":
            return web.json_response({"jsonrpc": "2.0", "id": rid,
                                      "error": {"code": -32601, "message": "only eth_sendBundle"}})
        try:
            (p,) = body["params"]
            txs, block = list(p["txs"]), int(p["blockNumber"], 16)
            if not txs:
                raise ValueError("empty bundle")
            hashes = ["0x" + keccak(hexstr=t).hex() for t in txs]
        except (KeyError, TypeError, ValueError) as e:
            return web.json_response({"jsonrpc": "2.0", "id": rid,
                                      "error": {"code": -32602, "message": f"invalid bundle: {e}"}})
        bundle = Bundle(txs, block, hashes, str(p.get("replacementUuid") or ""))
        if bundle.uuid:
            for bs in self.bundles.values():
                bs[:] = [b for b in bs if b.uuid != bundle.uuid]
        self.bundles[block].append(bundle)
        return web.json_response({"jsonrpc": "2.0", "id": rid,
                                  "result": {"bundleHash": "0x" + keccak(text="".join(hashes)).hex()}})

    # -- the builder ----------------------------------------------------------------------
    async def run(self, stop: asyncio.Event, interval_s: float = 1.0) -> None:
        """Build a block every ``interval_s`` until ``stop``."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), interval_s)
            except TimeoutError:
                await self.build()

    async def build(self) -> int:
        """Make the next block (see the module docstring); its number."""
        async with self._lock:
            target = int(await self.rpc("eth_blockNumber", []), 16) + 1
            for b in list(self.bundles):
                if b < target:
                    del self.bundles[b]
            placed = [b for b in self.bundles.pop(target, []) if await self._place(b)]
            await self.rpc("evm_mine", [])
            block = await self.rpc("eth_getBlockByNumber", [hex(target), False])
            order = [h.lower() for h in block["transactions"]]
            for b in placed:
                hs = [h.lower() for h in b.hashes]
                i = order.index(hs[0]) if hs[0] in order else -1
                (self.included if i >= 0 and order[i:i + len(hs)] == hs else self.split).append(b)
            return target

    async def _place(self, b: Bundle) -> bool:
        try:
            txs = [TypedTransaction.from_bytes(HexBytes(t)).as_dict() for t in b.txs]
            senders = [Account.recover_transaction(t) for t in b.txs]
        except (ValueError, TypeError, KeyError) as e:
            return self._reject(b, f"a transaction does not decode ({e})")
        fees = [t["maxFeePerGas"] for t in txs]
        if any(later > earlier for earlier, later in zip(fees, fees[1:])):
            return self._reject(b, "maxFeePerGas rises along the bundle: anvil would reorder it")
        calls = [{"from": s, "to": t["to"] if isinstance(t["to"], str) else "0x" + bytes(t["to"]).hex(),
                  "data": "0x" + bytes(t["data"]).hex(), "value": hex(t["value"]), "gas": hex(t["gas"])}
                 for s, t in zip(senders, txs)]
        sim = await self.rpc("eth_simulateV1", [{"blockStateCalls": [{"calls": calls}]}, "latest"])
        bad = [i for i, c in enumerate(sim[0]["calls"]) if int(c["status"], 16) != 1]
        if bad:
            return self._reject(b, f"transaction {bad[0]} of the bundle reverts")
        public = {h for h in b.hashes if await self.rpc("eth_getTransactionByHash", [h]) is not None}
        # dropping a pool transaction drops its sender's later nonces too: keep them to send again
        later = await self._pool_of({s.lower() for s, h in zip(senders, b.hashes) if h in public}, set(b.hashes))
        for h in public:
            await self.rpc("anvil_dropTransaction", [h])
        ok, i = True, 0
        for i, raw in enumerate(b.txs):
            try:
                await self.rpc("eth_sendRawTransaction", [raw])
            except RuntimeError as e:  # the public ones stay in the pool, the private ones go
                ok, why = False, f"the node refused transaction {i}: {e}"
                break
        if not ok:
            for h in b.hashes[:i]:
                if h not in public:
                    await self.rpc("anvil_dropTransaction", [h])
            for j, h in enumerate(b.hashes[i:], i):
                if h in public:
                    await self.rpc("eth_sendRawTransaction", [b.txs[j]])
        for h, raw in later:  # after the bundle, as they were after its transactions in the pool
            if await self.rpc("eth_getTransactionByHash", [h]) is None:
                await self.rpc("eth_sendRawTransaction", [raw])
        return True if ok else self._reject(b, why)

    async def _pool_of(self, senders: set[str], skip: set[str]) -> list[tuple[str, str]]:
        """(hash, raw) of the pool's pending transactions from ``senders``, by nonce."""
        pool = (await self.rpc("txpool_content", [])).get("pending", {})
        out = []
        for sender, by_nonce in pool.items():
            if sender.lower() in senders:
                for n in sorted(by_nonce, key=int):
                    h = by_nonce[n]["hash"]
                    if h not in skip:
                        out.append((h, await self.rpc("eth_getRawTransactionByHash", [h])))
        return out

    def _reject(self, b: Bundle, why: str) -> bool:
        self.rejected.append((b, why))
        return False
