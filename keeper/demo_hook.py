"""A local webhook receiver for the demo: prints each alert keeper sends (loopback only)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


class _Handler(BaseHTTPRequestHandler):
    sink: Callable[[dict], None] = staticmethod(lambda _a: None)

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            self.sink(json.loads(body))
        finally:
            self.send_response(200)
            self.end_headers()

    def log_message(self, *_args: object) -> None:  # quiet
        return


def start_webhook(sink: Callable[[dict], None]) -> tuple[ThreadingHTTPServer, str]:
    handler = type("Handler", (_Handler,), {"sink": staticmethod(sink)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/hook"
