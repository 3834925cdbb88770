"""The one seam between keeper and the node endpoints. Everything above talks to ``Rpc``.

``Rpc`` holds one or more endpoints (``[chain] rpc_urls``), each a web3.py
``AsyncHTTPProvider`` on kept-alive connections (``keeper.chain.transport``; web3's own retry is off: retries and
failover are decided here, where every endpoint's health is known, see
``keeper.chain.endpoints``):

* **reads** go to the best-scored endpoint; on a transport error, an HTTP error status
  (5xx, 429), a timeout, an answer that is not JSON-RPC, a rate-limit or unknown-block
  JSON-RPC error, the same call goes to the next endpoint (a *failover*), and idempotent
  reads get up to ``ROUNDS`` passes over the endpoints with a short pause between them;
* **eth_sendRawTransaction** is broadcast to every live endpoint at once; accepted by any
  is accepted;
* the **chain id** of an endpoint is checked before its first use and again after every
  rest (a reconnect); an endpoint on another chain serves nothing;
* the **head** is asked of every live endpoint (``block_number``): the best one is the
  head, the others' lag is scored.

A JSON-RPC error that is an answer (a revert, a refused transaction) is not a failure of
the endpoint: it is returned (``raw``) or raised as ``SourceError`` (``request``). Every
transport failure becomes ``SourceError`` naming the endpoint by index and host and the
HTTP status; URLs never reach a message or a log line (``Rpc.__repr__`` hides them too).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import structlog

from keeper.chain import coalesce, yielding
from keeper.chain.endpoints import Endpoint, endpoint_label, order, paced
from keeper.chain.headbook import HeadBook
from keeper.chain.transport import RequestCounter, Transport
from keeper.errors import SourceError

log = structlog.get_logger("keeper.rpc")

ROUNDS = 3  # passes over the endpoints for an idempotent read
HEAD_GRACE_S = 0.1  # after the first head answer, how long the others get
SEND = "eth_sendRawTransaction"
# JSON-RPC errors that mean "ask another endpoint", not "this is the answer"
_OVERLOADED = re.compile(r"rate.?limit|too many requests|capacity|header not found|unknown block"
                         r"|block not found|blockoutofrange|block height is|temporarily", re.I)
_OVERLOAD_CODES = {-32005, 429}


class _Failure(Exception):
    """One endpoint failed one exchange (``reason`` names the HTTP status or what broke)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _reason(e: BaseException) -> str:
    """What went wrong, in words that carry no URL (aiohttp's messages include it)."""
    if isinstance(e, aiohttp.ClientResponseError):
        return f"HTTP {e.status}"
    if isinstance(e, asyncio.TimeoutError | TimeoutError):
        return "timeout"
    if isinstance(e, json.JSONDecodeError | UnicodeDecodeError):
        return "garbage response (not JSON)"
    if isinstance(e, aiohttp.ClientConnectionError | OSError):
        return f"connection failed ({type(e).__name__})"
    return f"failed ({type(e).__name__})"


def _overloaded(response: Any) -> str | None:
    """A JSON-RPC error that asks us to go elsewhere; None for an answer."""
    if isinstance(response, list):
        return None
    if not isinstance(response, dict) or not ("result" in response or "error" in response):
        return "malformed response (not JSON-RPC)"
    err = response.get("error")
    if not err:
        return None
    code = err.get("code") if isinstance(err, dict) else None
    msg = str(err.get("message", err) if isinstance(err, dict) else err)
    if code in _OVERLOAD_CODES or _OVERLOADED.search(msg):
        return f"JSON-RPC error {code}: {msg[:120]}"
    return None


def _unwrap(method: str, response: Any) -> Any:
    if not isinstance(response, dict):
        raise SourceError(f"{method}: malformed response")
    if response.get("error"):
        err = response["error"]
        msg = err.get("message", err) if isinstance(err, dict) else err
        raise SourceError(f"{method} failed: {msg}")
    if "result" not in response:
        raise SourceError(f"{method}: response has no result")
    return response["result"]


Send = Callable[[Any], Awaitable[Any]]


class Rpc:
    """Async JSON-RPC access to one chain through one or more endpoints."""

    def __init__(self, urls: str | Sequence[str], timeout_s: float = 10.0, *,
                 chain_id: int | None = None, max_lag_blocks: int = 5):
        urls = [urls] if isinstance(urls, str) else list(urls)
        if not urls:
            raise ValueError("Rpc needs at least one endpoint URL")
        self.counter = RequestCounter()
        self.heads = HeadBook()  # the newest pushed head (keeper.chain.headbook): fees without a read
        self.endpoints = [Endpoint(i, endpoint_label(i, u), Transport(u, self.counter, timeout_s))
                          for i, u in enumerate(urls)]
        self.chain_id_expected = chain_id  # None: the first answer pins it
        self.max_lag_blocks = max_lag_blocks
        self.failovers = 0
        self.head = -1
        self.head_changed_at: float | None = None  # time.monotonic() when the head last moved
        self._background: set[asyncio.Task[Any]] = set()

    @classmethod
    def from_config(cls, chain: Any) -> Rpc:
        """From a ``[chain]`` config table (``rpc_urls``, ``chain_id``, timeouts)."""
        return cls([u.reveal() for u in chain.rpc_urls], chain.request_timeout_s,
                   chain_id=chain.chain_id, max_lag_blocks=chain.max_head_lag_blocks)

    def __repr__(self) -> str:  # never show the URLs: they may hold an API key
        return f"Rpc({', '.join(e.label for e in self.endpoints)})"

    @property
    def provider(self) -> Any:
        """The first endpoint's transport (tests put a scripted node here)."""
        return self.endpoints[0].provider

    @provider.setter
    def provider(self, value: Any) -> None:
        self.endpoints[0].provider = value

    # -- one exchange with one endpoint --------------------------------------------------
    async def _exchange(self, ep: Endpoint, method: str, send: Send) -> Any:
        t0 = time.monotonic()
        try:
            response = await send(ep.provider)
            reason = _overloaded(response)
        except Exception as e:  # noqa: BLE001 - the IO boundary: any transport error is one
            reason = _reason(e)
        if reason is None:
            if ep.succeeded(time.monotonic() - t0):
                ep.events.clear()
                log.info("rpc.endpoint_up", endpoint=ep.label)
            return response
        went_down = ep.failed(reason, time.monotonic())
        n = ep.count("error")
        if paced(n):
            log.warning("rpc.endpoint_error", endpoint=ep.label, method=method, error=reason, count=n)
        if went_down:
            log.warning("rpc.endpoint_down", endpoint=ep.label, error=reason,
                        retry_in_s=round(ep.rest_until - time.monotonic(), 2))
        raise _Failure(reason)

    async def _ready(self, ep: Endpoint) -> bool:
        """Check the chain id of an endpoint not checked since start-up or its last rest."""
        if ep.checked:
            return True
        try:
            got = int(_unwrap("eth_chainId", await self._exchange(
                ep, "eth_chainId", lambda p: p.make_request("eth_chainId", []))), 16)
        except (_Failure, SourceError, ValueError, TypeError):
            return False
        if self.chain_id_expected is None:
            self.chain_id_expected = got
        if got != self.chain_id_expected:
            ep.wrong_chain, ep.last_error = got, f"on chain {got}, expected {self.chain_id_expected}"
            ep.rest(time.monotonic())
            n = ep.count("wrong_chain")
            if paced(n):
                log.error("rpc.wrong_chain", endpoint=ep.label, chain_id=got,
                          expected=self.chain_id_expected, count=n)
            return False
        if ep.wrong_chain is not None:
            log.info("rpc.endpoint_up", endpoint=ep.label, chain_id=got)
        ep.wrong_chain, ep.checked = None, True
        return True

    # -- failover -----------------------------------------------------------------------
    async def _ask(self, method: str, send: Send) -> Any:
        return await yielding.gated(self._ask_now, method, send)  # a scan's reads give way to ticks

    async def _ask_now(self, method: str, send: Send) -> Any:
        last, failed = "no endpoint is up", None  # failed: the first endpoint that failed
        for r in range(ROUNDS):
            for ep in order(self.endpoints, self.max_lag_blocks):
                if not await self._ready(ep):
                    last = f"endpoint {ep.label}: {ep.last_error}"
                    failed = failed or ep
                    continue
                try:
                    response = await self._exchange(ep, method, send)
                except _Failure as f:
                    last = f"endpoint {ep.label}: {f.reason}"
                    failed = failed or ep
                    continue
                if failed is not None and ep is not failed:
                    self.failovers += 1
                    if paced(failed.count("failover")):
                        log.info("rpc.failover", method=method, source=failed.label, to=ep.label)
                return response
            if r + 1 < ROUNDS:
                await asyncio.sleep(0.05 * 2**r)
        raise SourceError(f"{method}: node unreachable or failed ({last})")

    async def _broadcast(self, params: list[Any]) -> Any:
        """eth_sendRawTransaction to every live endpoint at once: the first acceptance is
        returned at once (the other endpoints finish in the background), else the first
        refusal (an answer), else SourceError (unknown whether any node has it)."""
        eps = [ep for ep in order(self.endpoints, self.max_lag_blocks) if await self._ready(ep)]
        if not eps:
            raise SourceError(f"{SEND}: node unreachable or failed (no endpoint is up)")

        async def one(ep: Endpoint) -> Any:
            return await self._exchange(ep, SEND, lambda p: p.make_request(SEND, params))
        tasks = {asyncio.ensure_future(one(ep)): ep for ep in eps}
        pending, answers = set(tasks), {}  # answers: endpoint index -> response or _Failure
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    error = t.exception()
                    if error is not None and not isinstance(error, _Failure):
                        raise error
                    answer = answers[tasks[t].index] = error or t.result()
                    if isinstance(answer, dict) and not answer.get("error"):
                        return answer
        finally:
            for t in pending:
                self._keep_in_background(t)
        refusals = [answers[ep.index] for ep in eps if isinstance(answers.get(ep.index), dict)]
        if refusals:
            return refusals[0]
        reasons = "; ".join(f"endpoint {ep.label}: {answers[ep.index]}" for ep in eps)
        raise SourceError(f"{SEND}: node unreachable or failed ({reasons})")

    def _keep_in_background(self, task: asyncio.Future[Any]) -> None:
        """Let ``task`` finish on its own (its outcome is recorded by _exchange); close()
        cancels what is left."""
        self._background.add(task)  # type: ignore[arg-type]
        task.add_done_callback(self._background.discard)  # type: ignore[arg-type]
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved: no warning

    # -- the API ------------------------------------------------------------------------
    async def raw(self, method: str, params: list[Any]) -> Any:
        """The JSON-RPC response object as the node sent it (an ``error`` included), after
        failover; eth_sendRawTransaction is broadcast."""
        if method == SEND:
            return await self._broadcast(params)
        if (b := coalesce.active()) is not None:  # one batch with the requests sent beside it
            return await b.ask(self._batch_answers, method, params)
        return await self._ask(method, lambda p: p.make_request(method, params))

    async def request(self, method: str, params: list[Any]) -> Any:
        return _unwrap(method, await self.raw(method, params))

    async def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """Several JSON-RPC calls in one HTTP round trip; results in order."""
        if not calls:
            return []
        if len(calls) == 1:
            return [await self.request(*calls[0])]
        if coalesce.active() is not None:
            responses = await asyncio.gather(*(self.raw(m, p) for m, p in calls))
        else:
            responses = await self._batch_answers(calls)
        return [_unwrap(m, r) for (m, _), r in zip(calls, responses, strict=True)]

    async def _batch_answers(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        what = f"batch of {len(calls)}"
        responses = await self._ask(what, lambda p: p.make_batch_request(calls))
        if not isinstance(responses, list):
            raise SourceError(f"{what} refused: {_unwrap('batch', responses)}")
        if len(responses) != len(calls):
            raise SourceError(f"{what}: {len(responses)} answers")
        return responses

    async def batch_raw(self, calls: list[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
        """Like ``batch`` but each answer as the node sent it, a JSON-RPC ``error`` included
        (a simulation that reverts is an answer, not a failure of the batch)."""
        what = f"batch of {len(calls)}"
        responses = await self._ask(what, lambda p: p.make_batch_request(calls))
        if not isinstance(responses, list) or len(responses) != len(calls):
            raise SourceError(f"{what}: not one answer per call")
        return [r if isinstance(r, dict) else {"error": {"message": "malformed answer"}} for r in responses]

    async def broadcast_many(self, raw_txs: list[str]) -> list[dict[str, Any] | None]:
        """Several signed transactions in ONE batch to every live endpoint at once (in order, so
        a node sees consecutive nonces in sequence). Per transaction: the first acceptance of
        any endpoint, else its first refusal, else None (unknown whether a node has it)."""
        eps = [ep for ep in order(self.endpoints, self.max_lag_blocks) if await self._ready(ep)]
        if not eps:
            raise SourceError(f"{SEND}: node unreachable or failed (no endpoint is up)")
        calls = [(SEND, [raw]) for raw in raw_txs]

        async def one(ep: Endpoint) -> list[Any] | None:
            try:
                answer = await self._exchange(ep, SEND, lambda p: p.make_batch_request(calls))
            except _Failure:
                return None
            return answer if isinstance(answer, list) and len(answer) == len(calls) else None
        answers = [a for a in await asyncio.gather(*(one(ep) for ep in eps)) if a is not None]
        out: list[dict[str, Any] | None] = []
        for i in range(len(calls)):
            mine = [a[i] for a in answers if isinstance(a[i], dict)]
            out.append(next((r for r in mine if not r.get("error")), mine[0] if mine else None))
        return out

    async def chain_id(self) -> int:
        return int(await self.request("eth_chainId", []), 16)

    async def block_number(self) -> int:
        """The head: the highest block any live endpoint reports (each one's lag is kept)."""
        if len(self.endpoints) == 1:
            head = int(await self.request("eth_blockNumber", []), 16)
            self.endpoints[0].seen_head(head)
        else:
            head = await self._heads()
        if head > self.head:
            self.head, self.head_changed_at = head, time.monotonic()
        return head

    async def _head_of(self, ep: Endpoint) -> int | None:
        try:
            if not await self._ready(ep):
                return None
            response = await self._exchange(ep, "eth_blockNumber",
                                            lambda p: p.make_request("eth_blockNumber", []))
            head = int(_unwrap("eth_blockNumber", response), 16)
        except (_Failure, SourceError, ValueError, TypeError):
            return None
        ep.seen_head(head)
        return head

    async def _heads(self) -> int:
        eps = order(self.endpoints, self.max_lag_blocks)
        pending = {asyncio.ensure_future(self._head_of(ep)) for ep in eps}
        heads: list[int] = []
        while pending and not heads:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            heads += [h for t in done if (h := t.result()) is not None]
        if pending:  # the slower ones get a moment; past it they finish in the background
            done, pending = await asyncio.wait(pending, timeout=HEAD_GRACE_S)
            heads += [h for t in done if (h := t.result()) is not None]
        for t in pending:
            self._keep_in_background(t)
        if not heads:
            reasons = "; ".join(f"endpoint {e.label}: {e.last_error or 'resting'}" for e in self.endpoints)
            raise SourceError(f"eth_blockNumber: node unreachable or failed ({reasons})")
        best = max(heads)
        for ep in self.endpoints:
            lagging = not ep.down and ep.wrong_chain is None and ep.lag(best) > self.max_lag_blocks
            if lagging and paced(ep.count("lag")):
                log.warning("rpc.endpoint_lagging", endpoint=ep.label, head=ep.head, best=best)
        return best

    async def check_chain_ids(self) -> list[tuple[Endpoint, int | None, str]]:
        """Ask every endpoint its chain id (start-up): (endpoint, chain id or None, error)."""
        async def one(ep: Endpoint) -> tuple[Endpoint, int | None, str]:
            try:
                response = await self._exchange(ep, "eth_chainId",
                                                lambda p: p.make_request("eth_chainId", []))
                return ep, int(_unwrap("eth_chainId", response), 16), ""
            except _Failure as f:
                return ep, None, f.reason
            except (SourceError, ValueError, TypeError) as e:
                return ep, None, str(e)
        return list(await asyncio.gather(*(one(ep) for ep in self.endpoints)))

    async def block(self, number: int | str = "latest") -> dict[str, Any]:
        tag = hex(number) if isinstance(number, int) else number
        result = await self.request("eth_getBlockByNumber", [tag, False])
        if result is None:
            raise SourceError(f"block {number} not found")
        return result

    async def code(self, address: str, block: int | str = "latest") -> bytes:
        tag = hex(block) if isinstance(block, int) else block
        return bytes.fromhex((await self.request("eth_getCode", [address, tag]))[2:])

    async def call(self, to: str, data: bytes, block: int | str = "latest",
                   sender: str | None = None, gas: int | None = None) -> bytes:
        """eth_call pinned to ``block``; returns the raw return data."""
        tx: dict[str, Any] = {"to": to, "data": "0x" + data.hex()}
        if sender:
            tx["from"] = sender
        if gas:
            tx["gas"] = hex(gas)
        tag = hex(block) if isinstance(block, int) else block
        return bytes.fromhex((await self.request("eth_call", [tx, tag]))[2:])

    async def calls(self, requests: list[tuple[str, bytes]], block: int,
                    overrides: dict[str, Any] | None = None) -> list[bytes]:
        """Many eth_calls at one block in one HTTP round trip (``overrides``: eth_call's
        state-override set, e.g. ``{address: {"code": "0x..."}}``)."""
        tag = hex(block)
        extra = [overrides] if overrides else []
        results = await self.batch(
            [("eth_call", [{"to": to, "data": "0x" + data.hex()}, tag, *extra])
             for to, data in requests]
        )
        return [bytes.fromhex(r[2:]) for r in results]

    async def close(self) -> None:
        for t in list(self._background):
            t.cancel()
        for ep in self.endpoints:
            try:
                await ep.provider.disconnect()
            except Exception:  # noqa: BLE001 - closing a session that never opened is not worth raising
                pass
