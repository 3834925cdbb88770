"""One endpoint's HTTP transport: web3.py's ``AsyncHTTPProvider`` on kept-alive connections.

web3.py builds its aiohttp session with ``TCPConnector(force_close=True)``: every JSON-RPC
request opens a new TCP connection to the node and closes it after the answer (six per idle
Morpho tick, and every simulation and broadcast of a burst). ``Transport`` keeps web3's
request encoding and answer decoding but posts on a session of its own (``_Sessions``) whose
connections stay open between requests, closed by us after
``KEEPALIVE_S`` idle (shorter than the idle timeouts nodes and their proxies use: geth 120 s,
load balancers 60 s), so the node rarely closes one we are about to use.

When it does (a pooled connection closed by the node between two requests), the request
fails with ``ServerDisconnectedError`` or a reset: a read is sent again once, on a new
connection. ``eth_sendRawTransaction`` is not: its first copy may have reached the node
and been mined, and a copy sent again would then be refused ("nonce too low") as if
another sender had used the nonce. A send's lost answer stays what it was before keep-alive:
unknown, which the journal resolves (receipts, rebroadcast of the same bytes), and with
several endpoints the others have it. A second failure is the endpoint's failure
(``keeper.chain.rpc`` fails over and scores it).

web3's own retry is off: retries and failover are decided in ``keeper.chain.rpc``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp
from web3 import AsyncHTTPProvider

SEND = "eth_sendRawTransaction"
KEEPALIVE_S = 5.0  # an idle pooled connection is closed after this long
STALE = (aiohttp.ServerDisconnectedError, aiohttp.ClientConnectionResetError)


@dataclass
class RequestCounter:
    http_requests: int = 0  # round trips to the nodes
    rpc_calls: int = 0  # JSON-RPC method calls (a batch of 5 counts 1 and 5)
    resent: int = 0  # requests sent again after a kept-alive connection was found closed


class _Sessions:
    """What web3's provider asks of its session manager (``async_make_post_request``), on one
    kept-alive aiohttp session. web3's own manager (web3 8.0.0, pinned) closes every connection
    after one request and takes a lock through a thread pool for each (~0.1 ms, a thread hop)."""

    def __init__(self) -> None:
        self.session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _open(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self.session is None or self.session.closed or self._loop is not loop:
            self._loop = loop  # a session serves the event loop it was made in
            self.session = aiohttp.ClientSession(
                raise_for_status=True,
                connector=aiohttp.TCPConnector(keepalive_timeout=KEEPALIVE_S, enable_cleanup_closed=True))
        return self.session

    async def async_make_post_request(self, endpoint_uri: str, data: Any, **kwargs: Any) -> bytes:
        async with self._open().post(endpoint_uri, data=data, **kwargs) as response:
            return await response.read()

    async def close(self) -> None:
        if self.session is not None and not self.session.closed:
            await self.session.close()
        self.session = None


class Transport(AsyncHTTPProvider):
    def __init__(self, url: str, counter: RequestCounter, timeout_s: float):
        super().__init__(url, request_kwargs={"timeout": aiohttp.ClientTimeout(total=timeout_s)},
                         exception_retry_configuration=None)
        self.counter = counter
        self._request_session_manager = self.sessions = _Sessions()  # type: ignore[assignment]

    async def _send(self, call: Any, resend: bool) -> Any:
        self.counter.http_requests += 1
        try:
            return await call()
        except STALE:  # the node closed the pooled connection: a read once more, on a new one
            if not resend:
                raise
            self.counter.http_requests += 1
            self.counter.resent += 1
            return await call()

    async def make_request(self, method: Any, params: Any) -> Any:
        self.counter.rpc_calls += 1
        return await self._send(lambda: super(Transport, self).make_request(method, params),
                                method != SEND)

    async def make_batch_request(self, batch_requests: list[tuple[Any, Any]]) -> Any:
        self.counter.rpc_calls += len(batch_requests)
        return await self._send(lambda: super(Transport, self).make_batch_request(batch_requests),
                                all(m != SEND for m, _ in batch_requests))

    async def disconnect(self) -> None:
        await self.sessions.close()
