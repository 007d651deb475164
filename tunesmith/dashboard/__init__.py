"""The live dashboard: ``tunesmith dashboard``, ``tunesmith.run(..., dashboard=True)`` or :func:`serve`.

A WSGI application (:func:`make_app`) served by the standard library's threading HTTP server: no new
dependency, and any WSGI server can host the same app. It reads each experiment's store read-only, never
writes it, and with ``allow_control`` leaves control commands for the driver as files (``_commands``).
The controller imports ``_commands`` from here, so this module imports the server lazily.
"""

from __future__ import annotations

import os
from typing import Any

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
    from tunesmith.dashboard._app import DashboardApp
    from tunesmith.results import default_storage

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


def show(url: str | None = None, *, storage_path: str | None = None, name: str | None = None,
         height: int = 600) -> Any:
    """Embed the live dashboard in a notebook cell: ``url`` of a running one, or one started in this kernel
    (once) that notebooks on this machine may frame. See :func:`tunesmith._notebook.show`."""
    from tunesmith._notebook import show as _show

    return _show(url, storage_path=storage_path, name=name, height=height)


def serve(storage_path: str | None = None, name: str | None = None, *, host: str = "127.0.0.1", port: int = 8788,
          token: str | None = None, allow_control: bool = False, allowed_hosts: tuple[str, ...] = (),
          announce: Any = print) -> None:
    """Serve the dashboard until interrupted; ``announce`` gets the URL line first."""
    from tunesmith.dashboard._server import Dashboard

    app = make_app(storage_path, name, host=host, token=token, allow_control=allow_control,
                   allowed_hosts=allowed_hosts)
    dashboard = Dashboard(app, host, port)
    announce(f"tunesmith dashboard: {dashboard.url}")
    try:
        dashboard.serve_forever()
    finally:
        dashboard.server.server_close()


def __getattr__(name: str) -> Any:
    if name == "Dashboard":
        from tunesmith.dashboard._server import Dashboard

        return Dashboard
    if name == "DashboardApp":
        from tunesmith.dashboard._app import DashboardApp

        return DashboardApp
    raise AttributeError(name)
