"""Real loopback servers for the notification tests: an HTTP sink (aiohttp.web) and an
SMTP server with STARTTLS (aiosmtpd + a trustme certificate). No mocks of httpx.

``HttpSink`` records every request (method, path, headers, raw body) and can be told to
answer 500 for the next N requests, or to hang. It answers Telegram's ``sendMessage``
with ``{"ok": true, ...}`` as the Bot API does, and everything else with 200 "ok".
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import Message
from typing import Self

import trustme
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    status: int | None = None  # what the sink answered (None: not yet)


class HttpSink:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.failures = 0  # answer 500 to this many more requests
        self.hang_s = 0.0  # sleep this long before answering
        self.telegram_ok = True
        self._runner: web.AppRunner | None = None
        self._release = asyncio.Event()  # ends every hang (on stop, or release())
        self.on_request: Callable[[Request], None] | None = None
        self.base_url = ""

    def fail_next(self, n: int) -> None:
        self.failures = n

    async def _handle(self, request: web.Request) -> web.Response:
        got = Request(request.method, request.path,
                      {k.lower(): v for k, v in request.headers.items()}, await request.read())
        self.requests.append(got)
        if self.on_request is not None:
            self.on_request(got)
        if self.hang_s:
            try:
                await asyncio.wait_for(self._release.wait(), self.hang_s)
            except TimeoutError:
                pass
        response = self._answer(request.path)
        got.status = response.status
        return response

    def _answer(self, path: str) -> web.Response:
        if self.failures > 0:
            self.failures -= 1
            return web.Response(status=500, text="internal error (on purpose)")
        if path.endswith("/sendMessage"):
            if not self.telegram_ok:
                return web.json_response({"ok": False, "description": "chat not found"},
                                         status=400)
            return web.json_response({"ok": True, "result": {"message_id": len(self.requests)}})
        return web.Response(text="ok")

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    def release(self) -> None:
        """Let hanging requests answer now."""
        self._release.set()

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def on(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    def accepted(self, path: str | None = None) -> list[Request]:
        """Requests answered 2xx (to ``path``, or all)."""
        return [r for r in self.requests if r.status is not None and 200 <= r.status < 300
                and (path is None or r.path == path)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_controller(make: Callable[[int], Controller], tries: int = 5) -> Controller:
    """``make(port).start()`` on a free port; another one if the port was taken meanwhile."""
    for _ in range(tries - 1):
        controller = make(free_port())
        try:
            controller.start()
            return controller
        except OSError:
            pass
    controller = make(free_port())
    controller.start()
    return controller


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: Message
    tls: bool  # the session had switched to TLS (STARTTLS) before DATA
    login: str | None


@dataclass
class _Handler:
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server, session, envelope) -> str:
        data = session.auth_data if session.authenticated else None
        login = data.login.decode() if isinstance(data, LoginPassword) else None
        with self.lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                          message_from_bytes(envelope.content, policy=policy.default),
                                          session.ssl is not None, login))
        return "250 OK"


class SmtpServer:
    """aiosmtpd on 127.0.0.1 with STARTTLS required; optional LOGIN/PLAIN credentials."""

    def __init__(self, ca: trustme.CA, *, users: dict[str, str] | None = None):
        self.ca = ca
        self.users = users or {}
        self.handler = _Handler()
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ctx)
        self.port = 0  # chosen by __enter__
        self._make = lambda port: Controller(
            self.handler, hostname="127.0.0.1", port=port, tls_context=server_ctx,
            require_starttls=True, authenticator=self._auth, auth_require_tls=True,
        )
        self.controller: Controller | None = None

    def _auth(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword)
              and self.users.get(auth_data.login.decode()) == auth_data.password.decode())
        # handled=False: aiosmtpd answers "535 credentials invalid" itself
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    @property
    def received(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.received)

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx

    def __enter__(self) -> Self:
        self.controller = start_controller(self._make)
        self.port = self.controller.port
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.controller is not None
        self.controller.stop()


ACCOUNT = "0x00000000000000000000000000000000000000A1"


def make_position(status: str = "at_risk", *, block: int = 100, account: str = ACCOUNT,
                  market: str = "aave-main", hf_wad: int | None = 1_050_000_000_000_000_000,
                  **overrides: object):
    """A Position as the engine hands it over (market = the [[markets]] name)."""
    from keeper.model import Position, Status

    fields: dict[str, object] = {
        "protocol": "aave_v3", "market": market, "account": account, "block": block,
        "collateral_base": 1_234_567_89000000,  # $1,234,567.89
        "debt_base": 1_000_000_00000000,  # $1,000,000.00
        "health_factor_wad": hf_wad, "liquidation_threshold_bps": 8250,
        "status": Status(status), "reliable": True, "main_collateral": "WETH",
        "drop_to_liquidation_bps": 475,
    }
    fields.update(overrides)
    return Position(**fields)  # type: ignore[arg-type]
