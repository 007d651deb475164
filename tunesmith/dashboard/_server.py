"""Serving the dashboard app: the standard library's threading HTTP server through ``wsgiref``."""

from __future__ import annotations

import logging
import socket
import sys
import threading
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from tunesmith.dashboard._app import DashboardApp

log = logging.getLogger("tunesmith")


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow browser never keeps the process alive
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("dashboard: " + format, *args)

    def get_stderr(self) -> Any:
        return sys.stderr


class Dashboard:
    """A running dashboard: ``url``, and ``stop()`` (or use it as a context manager)."""

    def __init__(self, app: DashboardApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        server_class = _Server6 if ":" in host else _Server
        self.server = make_server(host, port, app, server_class=server_class, handler_class=_Handler)
        self.host = host
        self.port = self.server.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> Dashboard:
        """Serve from a daemon thread (beside a run, in a notebook)."""
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="tunesmith-dashboard", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.server.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        self.server.shutdown() if self._thread is not None else None
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Dashboard:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
