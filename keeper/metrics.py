"""Prometheus ``/metrics`` and ``/healthz`` for ``keeper run`` (``[metrics] listen``).

One loopback-by-default aiohttp server in keeper's own event loop (no thread). Most values
are read when Prometheus scrapes (a custom collector over the Rpc endpoints, the engine's
positions and the SQLite journal and outbox), so the rest of keeper needs only two hooks:
``Runner`` reports each tick (:meth:`Metrics.tick`) and the head comes from ``Rpc``.

==========================================  =====================================================
metric                                      what
==========================================  =====================================================
keeper_head_block                           the best head any endpoint reported
keeper_head_age_seconds                     seconds since the head last moved
keeper_endpoint_head_lag_blocks{endpoint}   how far each endpoint is behind the best head
keeper_tick_duration_seconds{job}           histogram of tick durations (scan, block, index)
keeper_ticks_total{job,result}              ticks that succeeded (ok) or failed (failed)
keeper_last_tick_success_age_seconds        seconds since a tick last succeeded
keeper_positions{protocol,market,status}    tracked positions by status
keeper_rpc_requests_total{endpoint}         requests sent to each endpoint (batches count 1)
keeper_rpc_errors_total{endpoint}           transport errors, HTTP errors, timeouts, garbage
keeper_rpc_latency_seconds{endpoint}        summary (count, sum) of answered requests
keeper_rpc_endpoint_up{endpoint}            1 while the endpoint serves reads
keeper_rpc_failovers_total                  calls answered by another endpoint after a failure
keeper_transactions{state}                  journal rows by state: signed, sent, mined,
                                            replaced, reverted, dropped, failed
keeper_alerts{state}                        alert deliveries by state (pending, sent, failed)
keeper_gas_balance_wei                      the signer's native balance (when there is one)
==========================================  =====================================================

Endpoints are labelled ``index:host`` (keeper.chain.endpoints.endpoint_label), never by URL.
``/healthz`` answers 200 while the head moved within ``[monitor] stale_head_s`` and a tick
succeeded within ``[metrics] max_tick_age_s``, 503 otherwise, with a JSON body that says which.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.registry import Collector

from keeper.chain.rpc import Rpc
from keeper.errors import SourceError

log = structlog.get_logger("keeper.metrics")
GAS_REFRESH_S = 5.0


class Metrics:
    def __init__(self, rpc: Rpc, *, engine: Any = None, store: Any = None, outbox: Any = None,
                 gas_address: str | None = None, stale_head_s: float = 60.0,
                 max_tick_age_s: float = 120.0):
        self.rpc, self.engine, self.store, self.outbox = rpc, engine, store, outbox
        self.gas_address = gas_address
        self.stale_head_s, self.max_tick_age_s = stale_head_s, max_tick_age_s
        self.started = time.monotonic()
        self.last_tick_ok: float | None = None
        self.gas_balance_wei: int | None = None
        self._gas_at = 0.0
        self.registry = CollectorRegistry(auto_describe=True)
        self.tick_seconds = Histogram("keeper_tick_duration_seconds", "Duration of a tick", ["job"],
                                      registry=self.registry,
                                      buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.ticks = Counter("keeper_ticks", "Ticks by job and result", ["job", "result"],
                             registry=self.registry)
        self.registry.register(_Collector(self))
        self._runner: web.AppRunner | None = None

    # -- hooks ------------------------------------------------------------------------
    def tick(self, job: str, seconds: float, ok: bool) -> None:
        self.tick_seconds.labels(job).observe(seconds)
        self.ticks.labels(job, "ok" if ok else "failed").inc()
        if ok:
            self.last_tick_ok = time.monotonic()

    # -- health -----------------------------------------------------------------------
    def health(self) -> tuple[bool, dict[str, Any]]:
        now = time.monotonic()
        head_age = None if self.rpc.head_changed_at is None else now - self.rpc.head_changed_at
        tick_age = None if self.last_tick_ok is None else now - self.last_tick_ok
        problems = []
        if head_age is None or head_age > self.stale_head_s:
            problems.append(f"no new block for {self.stale_head_s:g} s" if head_age is not None
                            else "no head seen yet")
        if tick_age is None or tick_age > self.max_tick_age_s:
            problems.append(f"no successful tick for {self.max_tick_age_s:g} s" if tick_age is not None
                            else "no successful tick yet")
        body = {"ok": not problems, "head": self.rpc.head, "problems": problems,
                "head_age_s": None if head_age is None else round(head_age, 3),
                "last_tick_age_s": None if tick_age is None else round(tick_age, 3)}
        return not problems, body

    async def refresh_gas(self) -> None:
        if self.gas_address is None or time.monotonic() - self._gas_at < GAS_REFRESH_S:
            return
        try:
            raw = await asyncio.wait_for(self.rpc.request("eth_getBalance", [self.gas_address, "latest"]), 5)
            self.gas_balance_wei, self._gas_at = int(raw, 16), time.monotonic()
        except (SourceError, TimeoutError, ValueError):
            pass  # the gauge keeps its last value; the RPC metrics say why

    # -- the server ---------------------------------------------------------------------
    async def _metrics(self, _request: web.Request) -> web.Response:
        await self.refresh_gas()
        return web.Response(body=generate_latest(self.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _request: web.Request) -> web.Response:
        ok, body = self.health()
        return web.Response(status=200 if ok else 503, text=json.dumps(body),
                            content_type="application/json")

    async def serve(self, listen: str) -> str:
        """Listen on ``host:port`` (port 0: any free one); returns the bound ``host:port``."""
        host, _, port = listen.rpartition(":")
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host.strip("[]") or "127.0.0.1", int(port))
        await site.start()
        sock = site._server.sockets[0] if site._server and site._server.sockets else None  # type: ignore[union-attr]
        bound = f"{host}:{sock.getsockname()[1]}" if sock else listen
        log.info("metrics.serving", listen=bound)
        return bound

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class _Collector(Collector):
    """Values read at scrape time from the objects keeper already has."""

    def __init__(self, m: Metrics):
        self.m = m

    def collect(self) -> Iterator[Any]:
        m, rpc = self.m, self.m.rpc
        yield GaugeMetricFamily("keeper_head_block", "Best head block seen", value=max(rpc.head, 0))
        if rpc.head_changed_at is not None:
            yield GaugeMetricFamily("keeper_head_age_seconds", "Seconds since the head moved",
                                    value=time.monotonic() - rpc.head_changed_at)
        if m.last_tick_ok is not None:
            yield GaugeMetricFamily("keeper_last_tick_success_age_seconds", "Seconds since a tick succeeded",
                                    value=time.monotonic() - m.last_tick_ok)
        yield from _endpoints(rpc)
        positions = GaugeMetricFamily("keeper_positions", "Tracked positions by status",
                                      labels=["protocol", "market", "status"])
        counts: dict[tuple[str, str, str], int] = {}
        for w in getattr(m.engine, "watches", ()):
            for p in w.positions.values():
                key = (p.protocol, w.key, p.status.value)
                counts[key] = counts.get(key, 0) + 1
        for key, n in sorted(counts.items()):
            positions.add_metric(list(key), n)
        yield positions
        yield _by_state("keeper_transactions", "Journal rows by state", m.store,
                        "SELECT state, count(*) FROM tx_journal GROUP BY state")
        yield _by_state("keeper_alerts", "Alert deliveries by state", m.store if m.outbox else None,
                        "SELECT state, count(*) FROM deliveries GROUP BY state")
        if m.gas_balance_wei is not None:
            yield GaugeMetricFamily("keeper_gas_balance_wei", "Signer's native balance", value=m.gas_balance_wei)


def _endpoints(rpc: Rpc) -> Iterator[Any]:
    labels = ["endpoint"]
    requests = CounterMetricFamily("keeper_rpc_requests", "Requests per endpoint", labels=labels)
    errors = CounterMetricFamily("keeper_rpc_errors", "Failed requests per endpoint", labels=labels)
    latency = SummaryMetricFamily("keeper_rpc_latency_seconds", "Latency of answered requests", labels=labels)
    up = GaugeMetricFamily("keeper_rpc_endpoint_up", "1 while the endpoint serves reads", labels=labels)
    lag = GaugeMetricFamily("keeper_endpoint_head_lag_blocks", "Blocks behind the best head", labels=labels)
    for ep in rpc.endpoints:
        requests.add_metric([ep.label], ep.requests)
        errors.add_metric([ep.label], ep.errors)
        latency.add_metric([ep.label], count_value=ep.requests - ep.errors, sum_value=ep.latency_sum_s)
        up.add_metric([ep.label], int(not ep.down and ep.wrong_chain is None))
        lag.add_metric([ep.label], ep.lag(rpc.head))
    yield from (requests, errors, latency, up, lag)
    yield CounterMetricFamily("keeper_rpc_failovers", "Calls answered after a failover", value=rpc.failovers)


def _by_state(name: str, doc: str, store: Any, sql: str) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=["state"])
    if store is not None:
        try:
            rows = store.query(sql)
        except sqlite3.OperationalError:  # the table is made by its owner on first use
            rows = []
        for state, n in rows:
            family.add_metric([state], n)
    return family


async def start_metrics(cfg: Any, k: Any) -> Metrics:
    """The server of ``keeper run`` (cfg: Config, k: keeper.wiring.Keeper)."""
    tx = getattr(k.executor, "tx", None)
    m = Metrics(k.rpc, engine=k.engine, store=k.store, outbox=getattr(k.notifications, "outbox", None),
                gas_address=getattr(tx, "address", None), stale_head_s=cfg.monitor.stale_head_s,
                max_tick_age_s=cfg.metrics.max_tick_age_s)
    try:
        await m.serve(cfg.metrics.listen)
    except OSError as e:
        from keeper.errors import ConfigError

        raise ConfigError(f"cannot listen on {cfg.metrics.listen}: {e.strerror or e}",
                          key="metrics.listen") from None
    return m
