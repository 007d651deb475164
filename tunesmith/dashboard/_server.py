"""Serving the dashboard app: the standard library's threading HTTP server through ``wsgiref``."""

from __future__ import annotations

import errno
import json
import logging
import socket
import sys
import threading
from http import HTTPStatus
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import quote
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from tunesmith._errors import ConfigError
from tunesmith.dashboard._app import CSP, SECURITY_HEADERS, DashboardApp

log = logging.getLogger("tunesmith")
REQUEST_TIMEOUT_S = 60.0  # the longest a client may stay silent while the server reads its request (or writes)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow browser never keeps the process alive
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(WSGIRequestHandler):
    # a request line refused before the app (no version, a bad one) is answered with a status line and headers,
    # not as HTTP/0.9's bare body
    default_request_version = "HTTP/1.0"

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """What the server refuses before the app (a request line or headers too long, a malformed request line):
        JSON with the app's security headers, like the app's own errors, naming the status and never the request's
        text (the standard library's HTML page quotes it)."""
        self.log_error("code %d, message %s", code, message)
        self.close_connection = True
        status = HTTPStatus(code)
        body = json.dumps({"error": f"{status.value} {status.phrase}: {status.description}"}).encode()
        self.send_response(status.value, status.phrase)
        for name, value in [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                            ("Connection", "close"), ("Cache-Control", "no-store"),
                            ("Content-Security-Policy", CSP + "'none'"), ("X-Frame-Options", "DENY"),
                            *SECURITY_HEADERS]:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle(self) -> None:
        try:
            super().handle()
        except (TimeoutError, ConnectionError) as e:  # a client that stopped sending (or left): let it go, quietly
            log.debug("dashboard: %s from %s", type(e).__name__, self.client_address[0])
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("dashboard: " + format, *args)

    def get_stderr(self) -> Any:
        return sys.stderr


class Dashboard:
    """A running dashboard: ``url``, and ``stop()`` (or use it as a context manager)."""

    def __init__(self, app: DashboardApp, host: str = "127.0.0.1", port: int = 0,
                 request_timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.app = app
        server_class = _Server6 if ":" in host else _Server
        # a client silent this long while sending its request is let go: it no longer holds a thread for good
        handler = type("_Handler", (_Handler,), {"timeout": request_timeout_s})
        try:  # binds the port: one in use (or an address not of this machine) is the caller's to change
            self.server = make_server(host, port, app, server_class=server_class, handler_class=handler)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ConfigError(f"dashboard: port {port} on {host} is in use; pass another port or port=0 (a free "
                                  f"one)") from e
            raise ConfigError(f"dashboard: cannot listen on {host} port {port} ({e.strerror or e}); expected an "
                              f"address of this machine and a port you may use (port=0 picks a free one)") from e
        self.host = host
        self.port = self.server.server_address[1]
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def login_url(self) -> str:
        """The URL to open: ``url`` with ``?token=`` (URL-encoded) when the dashboard has a token. The line
        ``announce`` prints: the token is shown there on purpose, for its user to open, and nowhere else."""
        token = self.app.token
        return self.url + (f"?token={quote(token, safe='')}" if token else "")

    def announce(self) -> str:
        """The first line a dashboard prints: ``tunesmith dashboard: URL`` (``login_url``)."""
        return f"tunesmith dashboard: {self.login_url}"

    def start(self) -> Dashboard:
        """Serve from a daemon thread (beside a run, in a notebook). Starting a running dashboard again does
        nothing; a stopped one cannot start again (its port is closed): a RuntimeError."""
        with self._lock:
            if self._stopped:
                raise RuntimeError("this dashboard was stopped: start a new one (tunesmith.dashboard.start)")
            if self._thread is None:
                self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                                name="tunesmith-dashboard", daemon=True)
                self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.server.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        with self._lock:
            if self._thread is not None and not self._stopped:
                self.server.shutdown()
            self._stopped = True
            self.server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)

    def __enter__(self) -> Dashboard:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
