"""The live dashboard: ``tunesmith dashboard``, ``tunesmith.run(..., dashboard=True)`` or :func:`serve`.

A WSGI application (:func:`make_app`) served by the standard library's threading HTTP server: no new
dependency, and any WSGI server can host the same app. It reads each experiment's store read-only, never
writes it, and with ``allow_control`` leaves control commands for the driver as files (``_commands``).
The controller imports ``_commands`` from here, so this module imports the server lazily.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tunesmith.dashboard._frame import DashboardFrame

__all__ = ["NOTEBOOK_FRAME_ANCESTORS", "Dashboard", "DashboardApp", "make_app", "serve", "show", "start"]

# the pages a dashboard started for a notebook (show) may be framed by: notebooks served from this machine
NOTEBOOK_FRAME_ANCESTORS = ("http://localhost:*", "http://127.0.0.1:*")


def make_app(storage_path: str | None = None, name: str | None = None, *, host: str = "127.0.0.1",
             token: str | None = None, allow_control: bool = False, allowed_hosts: tuple[str, ...] = (),
             frame_ancestors: tuple[str, ...] = ()) -> Any:
    """The dashboard as a WSGI callable (for ``gunicorn``-style hosting, or tests).

    Args:
        storage_path: the folder of experiment folders; default ``$TUNESMITH_RESULTS`` or
            ``./tunesmith_results``.
        name: serve only this experiment.
        host: the name requests must carry in their ``Host`` header (and, off loopback, the token).
        token: access token; default ``$TUNESMITH_DASHBOARD_TOKEN``; required unless ``host`` is loopback.
        allow_control: accept stop / more samples / more time requests from the page.
        allowed_hosts: more names the ``Host`` header may carry (a reverse proxy's).
        frame_ancestors: loopback origins that may frame the page (``NOTEBOOK_FRAME_ANCESTORS``); default none.
    """
    from tunesmith._layout import default_storage
    from tunesmith.dashboard._app import DashboardApp

    root = os.path.abspath(storage_path if storage_path is not None else default_storage())
    return DashboardApp(root, name, host=host, token=token, allow_control=allow_control,
                        allowed_hosts=allowed_hosts, frame_ancestors=frame_ancestors)


def start(storage_path: str | None = None, name: str | None = None, *, host: str = "127.0.0.1", port: int = 0,
          token: str | None = None, allow_control: bool = False, allowed_hosts: tuple[str, ...] = (),
          frame_ancestors: tuple[str, ...] = ()) -> Any:
    """Serve the dashboard from a background thread and return the running :class:`Dashboard` (``.url``,
    ``.stop()``). ``port=0`` picks a free port."""
    from tunesmith.dashboard._server import Dashboard

    app = make_app(storage_path, name, host=host, token=token, allow_control=allow_control,
                   allowed_hosts=allowed_hosts, frame_ancestors=frame_ancestors)
    return Dashboard(app, host, port).start()


_started: dict[tuple[str | None, str | None], Any] = {}  # dashboards show() started, reused by later calls


def show(url: str | None = None, *, storage_path: str | None = None, name: str | None = None,
         height: int = 600) -> DashboardFrame:
    """Embed the live dashboard in a notebook cell.

    Args:
        url: a running dashboard's address (``tunesmith dashboard`` prints it); default: start one on
            127.0.0.1 and a free port in this kernel (once: later calls reuse it) that notebooks on this
            machine may frame (``NOTEBOOK_FRAME_ANCESTORS``).
        storage_path, name: what a dashboard started here serves (as for ``tunesmith dashboard``).
        height: the frame's height in pixels.

    Raises:
        ConfigError: ``url`` not an http(s) address, or ``height`` not a whole number >= 50.
    """
    from urllib.parse import urlsplit

    from tunesmith._errors import ConfigError
    from tunesmith.dashboard._frame import DashboardFrame

    if url is None:
        key = (storage_path, name)
        if key not in _started:
            _started[key] = start(storage_path, name, port=0, frame_ancestors=NOTEBOOK_FRAME_ANCESTORS)
        url = str(_started[key].url)
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise ConfigError(f"url: expected an http(s) address like http://127.0.0.1:8788/, got {url!r}")
    if isinstance(height, bool) or not isinstance(height, int) or height < 50:
        raise ConfigError(f"height: expected pixels as a whole number >= 50, got {height!r}")
    return DashboardFrame(url, height)


def serve(storage_path: str | None = None, name: str | None = None, *, host: str = "127.0.0.1", port: int = 8788,
          token: str | None = None, allow_control: bool = False, allowed_hosts: tuple[str, ...] = (),
          announce: Any = print) -> None:
    """Serve the dashboard until interrupted; ``announce`` gets the URL line first
    (``tunesmith dashboard: URL``, with ``?token=...`` URL-encoded when there is a token).

    Raises:
        ConfigError: a bad host or token, or a port in use (or not one this process may listen on).
    """
    from tunesmith.dashboard._server import Dashboard

    app = make_app(storage_path, name, host=host, token=token, allow_control=allow_control,
                   allowed_hosts=allowed_hosts)
    dashboard = Dashboard(app, host, port)
    announce(dashboard.announce())
    try:
        dashboard.serve_forever()
    finally:
        dashboard.server.server_close()


RUN_OPTIONS = ("host", "port", "token", "allow_control", "allowed_hosts")  # what run(dashboard={...}) passes on


def check_run_option(option: Any) -> dict[str, Any] | None:
    """``run(dashboard=...)`` checked before the run writes anything: None for False, else the options for
    :func:`start` (True: none). Raises ConfigError naming the bad option and what was expected."""
    from tunesmith._errors import ConfigError

    if option is False or option is None:
        return None
    if option is not True and not isinstance(option, dict):
        raise ConfigError(f"dashboard must be True, False or a dict of options ({', '.join(RUN_OPTIONS)}), got "
                          f"{option!r}")
    options = dict(option) if isinstance(option, dict) else {}
    unknown = sorted(set(options) - set(RUN_OPTIONS), key=str)
    if unknown:
        raise ConfigError(f"dashboard: unknown option(s) {unknown}; expected {', '.join(RUN_OPTIONS)}")
    host, port = options.get("host", "127.0.0.1"), options.get("port", 0)
    if not isinstance(host, str) or not host:
        raise ConfigError(f"dashboard: host must be an address to bind (e.g. '127.0.0.1'), got {host!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"dashboard: port must be a whole number from 0 to 65535 (0 picks a free one), got "
                          f"{port!r}")
    token = options.get("token")
    if token is not None and not isinstance(token, str):
        raise ConfigError(f"dashboard: token must be a string, got {type(token).__name__}")
    if not isinstance(options.get("allow_control", False), bool):
        raise ConfigError(f"dashboard: allow_control must be True or False, got {options['allow_control']!r}")
    allowed = options.get("allowed_hosts", ())
    if isinstance(allowed, str) or not isinstance(allowed, (list, tuple)) or \
            not all(isinstance(h, str) and h for h in allowed):
        raise ConfigError(f"dashboard: allowed_hosts must be a list of host names (e.g. ['tune.example.com']), got "
                          f"{allowed!r}")
    # imported here: the app imports the plots (NumPy), which a run without a dashboard never needs
    from tunesmith.dashboard._app import check_access

    check_access(host, token)
    return {**options, "allowed_hosts": tuple(allowed)} if "allowed_hosts" in options else options


def __getattr__(name: str) -> Any:
    if name == "Dashboard":
        from tunesmith.dashboard._server import Dashboard

        return Dashboard
    if name == "DashboardApp":
        from tunesmith.dashboard._app import DashboardApp

        return DashboardApp
    raise AttributeError(name)
