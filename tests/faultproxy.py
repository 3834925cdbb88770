"""A fault-injecting JSON-RPC proxy for tests: loopback only, in front of the test anvil.

``FaultProxy(upstream)`` listens on 127.0.0.1 (a port the OS picks at the first ``start``;
``url`` is known from then on) and forwards each POST to the
upstream node, unless a fault is set:

=============  ==============================================================
``drop``       the connection is closed without an answer
``http500``    HTTP 500 (``http503``, ``http429`` alike: any ``httpNNN``)
``timeout``    no answer until the client gives up (held at most ``HOLD_S``)
``garbage``    HTTP 200 with a body that is not JSON
``wrong_chain`` forwarded, but ``eth_chainId`` answers ``WRONG_CHAIN_ID``
``lag``        forwarded, but ``eth_blockNumber`` answers ``lag_blocks`` less
=============  ==============================================================

``set(fault, times=n)`` applies it to the next ``n`` requests (``None``: until cleared).
``stop()`` takes the endpoint down (connections are refused), ``start()`` brings it back
on the same port. ``methods`` records every method asked, in order (batch members too),
``sent`` the raw transactions that reached the upstream node, and ``peers`` the clients'
addresses (one per TCP connection).
"""

from __future__ import annotations

import asyncio
import json
import socket

import aiohttp
from aiohttp import web

WRONG_CHAIN_ID = 424242
HOLD_S = 30.0  # a "timeout" fault holds a request at most this long


REBIND_S = 5.0  # a restart waits at most this long for its old port to be free again


def _listen(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    return sock


class FaultProxy:
    def __init__(self, upstream: str):
        self.upstream = upstream
        self.port = 0  # bound by the first start (a port probed here could be taken before then)
        self.fault: str | None = None
        self.times: int | None = None
        self.lag_blocks = 0
        self.methods: list[str] = []
        self.sent: list[str] = []
        self.peers: set[tuple] = set()  # the clients' (host, port): one per TCP connection
        self.faulted = 0  # requests a fault was applied to
        self._release = asyncio.Event()  # set by stop(): held requests end
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        assert self.port, "start() the proxy first: its port is the OS's pick"
        return f"http://127.0.0.1:{self.port}"

    def set(self, fault: str | None, times: int | None = None) -> None:
        self.fault, self.times = fault, times

    async def start(self) -> FaultProxy:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        sock = await self._bind()
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        return self

    async def _bind(self) -> socket.socket:
        if not self.port:
            return _listen(0)
        deadline = asyncio.get_running_loop().time() + REBIND_S
        while True:  # back on the same port: a client's socket may hold it a moment
            try:
                return _listen(self.port)
            except OSError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """The endpoint goes down: the port refuses connections until ``start``."""
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def close(self) -> None:
        await self.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _take(self) -> str | None:
        if self.fault is None:
            return None
        fault = self.fault
        if self.times is not None:
            self.times -= 1
            if self.times <= 0:
                self.fault, self.times = None, None
        self.faulted += 1
        return fault

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        body = await request.read()
        try:
            payload = json.loads(body)
        except ValueError:
            return web.Response(status=400)
        calls = payload if isinstance(payload, list) else [payload]
        self.methods += [c.get("method", "?") for c in calls]
        fault = self._take()
        if fault == "drop":
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)  # never reaches the client: the socket is closed
        if fault and fault.startswith("http"):
            return web.Response(status=int(fault[4:]), text="injected")
        if fault == "timeout":
            try:
                await asyncio.wait_for(self._release.wait(), HOLD_S)
            except TimeoutError:
                pass
            return web.Response(status=504)
        if fault == "garbage":
            return web.Response(status=200, text="<html>not json</html>", content_type="text/html")
        self.sent += [c["params"][0] for c in calls if c.get("method") == "eth_sendRawTransaction"]
        assert self._session is not None
        async with self._session.post(self.upstream, data=body,
                                      headers={"Content-Type": "application/json"}) as up:
            answer = await up.json(content_type=None)
        if fault in ("wrong_chain", "lag"):
            answers = answer if isinstance(answer, list) else [answer]
            by_id = {c.get("id"): c.get("method") for c in calls}
            for a in answers:
                method = by_id.get(a.get("id"))
                if fault == "wrong_chain" and method == "eth_chainId":
                    a["result"] = hex(WRONG_CHAIN_ID)
                if fault == "lag" and method == "eth_blockNumber" and "result" in a:
                    a["result"] = hex(max(0, int(a["result"], 16) - self.lag_blocks))
        return web.json_response(answer)
