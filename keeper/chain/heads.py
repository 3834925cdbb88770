"""New blocks pushed by the node: ``eth_subscribe("newHeads")`` over WebSocket.

:class:`HeadSubscription` connects to ``[chain] ws_url``, subscribes, and calls ``on_head``
with each announced block number, as it arrives. It never gives up: a refused connection,
a dropped socket or a malformed message is logged (at a decaying rate, like failed reads)
and the subscription is made again after ``retry_s``. While it is down the runner's
polling (``block_poll_interval_s``) carries on, so a node without WebSocket, or a socket
that died, costs latency, never blocks. Heads missed while disconnected need nothing here:
the engine applies every block from the last one it processed up to the head it is given.

Exceptions stay inside: ``run`` returns only when ``stop`` is set (or it is cancelled).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import structlog
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidURI, WebSocketException

from keeper.chain.endpoints import endpoint_label, paced
from keeper.chain.headbook import HeadBook

log = structlog.get_logger("keeper.heads")


class HeadSubscription:
    params: tuple = ("newHeads",)  # what eth_subscribe is asked for (keeper.chain.mempool: pending txs)

    def __init__(self, ws_url: str, on_head: Callable[[int], None], retry_s: float = 1.0,
                 open_timeout_s: float = 10.0, book: HeadBook | None = None):
        self.url, self.on_head = ws_url, on_head
        self.book = book  # keeps each header's fee fields (keeper.chain.headbook)
        self.retry_s, self.open_timeout_s = retry_s, open_timeout_s
        self.connected = asyncio.Event()  # set while subscribed (tests, metrics)
        self.heads = 0  # how many heads were announced
        self.failures = 0  # in a row

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._session(stop)
            except (OSError, TimeoutError, WebSocketException, ValueError, KeyError) as e:
                self.connected.clear()
                self.failures += 1
                if isinstance(e, InvalidURI) or paced(self.failures):
                    log.warning("heads.disconnected", endpoint=endpoint_label(0, self.url), error=str(e) or type(e).__name__,
                                in_a_row=self.failures, reason="polling carries on; subscribing again")
            self.connected.clear()
            try:
                await asyncio.wait_for(stop.wait(), self.retry_s)
            except TimeoutError:
                pass

    async def _session(self, stop: asyncio.Event) -> None:
        async with connect(self.url, open_timeout=self.open_timeout_s, max_size=2**22) as ws:
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe",
                                      "params": list(self.params)}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), self.open_timeout_s))
            if "result" not in reply:
                raise ValueError(f"eth_subscribe refused: {reply.get('error', reply)}")
            sub = reply["result"]
            self.connected.set()
            if self.failures:
                log.info("heads.connected", failed_in_a_row=self.failures)
            self.failures = 0
            stopping = asyncio.ensure_future(stop.wait())
            try:
                while True:
                    recv = asyncio.ensure_future(ws.recv())
                    done, _ = await asyncio.wait({recv, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    if stopping in done:
                        recv.cancel()
                        return
                    msg = json.loads(recv.result())
                    params = msg.get("params") or {}
                    if msg.get("method") == "eth_subscription" and params.get("subscription") == sub:
                        self.deliver(params["result"])
            finally:
                stopping.cancel()

    def deliver(self, result) -> None:
        """One notification's ``result``: here a head."""
        self.heads += 1
        if self.book is not None:
            self.book.note(result)
        self.on_head(int(result["number"], 16))
