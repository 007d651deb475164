"""The dashboard as a WSGI application: a small router, the security checks, and the JSON endpoints.

Standard library only (``wsgiref`` types, no framework): the dashboard is part of the core install, like the
report, and runs the same under ``tunesmith dashboard`` (``ThreadingHTTPServer`` through ``wsgiref``) and
under any WSGI server (``gunicorn 'tunesmith.dashboard:app_from_env()'``).

Security, every request: the ``Host`` header must name the bound host, ``localhost`` or a loopback address
(DNS rebinding), unless the server is bound to every interface, where the token guards instead; with a
token (required off loopback) the request carries it in an ``X-Tunesmith-Token`` header or the
``tunesmith_token`` cookie, which a first visit with ``?token=`` sets; control requests (POST, only with
``allow_control``) need the ``X-Tunesmith-CSRF`` header matching the session cookie's token and, when they
name an ``Origin``, come from the dashboard's own scheme://host:port, and may carry an ``Idempotency-Key`` (the
page sends one per click): the same request again is answered as the first time and
applied once (``_commands``). Every answer has a Content-Security-Policy with no inline script; static files come
only from the package.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import ipaddress
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from tunesmith._display import printable
from tunesmith._errors import ConfigError
from tunesmith.dashboard import _commands
from tunesmith.dashboard._data import Experiments, NotFound
from tunesmith.plots.render import _plain
from tunesmith.store.sqlite import StoreError

log = logging.getLogger("tunesmith")

TOKEN_ENV = "TUNESMITH_DASHBOARD_TOKEN"
TOKEN_COOKIE = "tunesmith_token"
SESSION_COOKIE = "tunesmith_session"
TOKEN_HEADER = "HTTP_X_TUNESMITH_TOKEN"
CSRF_HEADER = "HTTP_X_TUNESMITH_CSRF"
KEY_HEADER = "HTTP_IDEMPOTENCY_KEY"
REPLAYED = ("Idempotent-Replayed", "true")  # on the answer to a request whose key named a command already queued
MAX_BODY = 4096
# on every answer, the app's and the server's own refusals alike (with the CSP and frame headers)
SECURITY_HEADERS = [("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"),
                    ("Cross-Origin-Opener-Policy", "same-origin"), ("Cross-Origin-Resource-Policy", "same-origin")]
# No inline script: every script is a packaged file. 'unsafe-eval' because plotly.js draws parallel coordinates
# with WebGL through regl, which compiles its shaders' glue with Function(...) (never with page data); plotly.js
# sets inline styles.
CSP = ("default-src 'none'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; connect-src 'self'; font-src 'self' data:; base-uri 'none'; "
       "form-action 'none'; worker-src blob:; frame-ancestors ")
# who may frame the page: nobody, unless a notebook's dashboard (tunesmith.dashboard.show) asks for pages on
# this machine; a CSP source such as http://localhost:* (no wildcard host, no scheme alone)
_FRAME_SOURCE = re.compile(r"^https?://(localhost|127\.0\.0\.1|\[::1\])(:(\*|[0-9]{1,5}))?\Z")
_STATIC = {  # name -> (package, file, content type): nothing else is ever served from disk
    "dashboard.js": ("tunesmith.dashboard", "dashboard.js", "text/javascript; charset=utf-8"),
    "dashboard.css": ("tunesmith.dashboard", "dashboard.css", "text/css; charset=utf-8"),
    "plotly.min.js": ("tunesmith.plots", "plotly.min.js", "text/javascript; charset=utf-8"),
}
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
# an experiment's folder name, any one (a folder renamed by hand: `my exp`), as PATH_INFO carries it: its
# percent-decoded bytes as latin-1 (PEP 3333), decoded as UTF-8 by _route; _data.Experiments checks the name
_NAME = r"([^/]{1,255})"
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("GET", re.compile(r"^/$"), "page_list"),
    ("GET", re.compile(rf"^/e/{_NAME}/?$"), "page_experiment"),
    ("GET", re.compile(rf"^/e/{_NAME}/t/(\d{{1,9}})/?$"), "page_trial"),
    ("GET", re.compile(r"^/static/([a-z.]+)$"), "static"),
    ("GET", re.compile(r"^/api/experiments$"), "api_list"),
    ("GET", re.compile(rf"^/api/e/{_NAME}/summary$"), "api_summary"),
    ("GET", re.compile(rf"^/api/e/{_NAME}/trials$"), "api_trials"),
    ("GET", re.compile(rf"^/api/e/{_NAME}/curves$"), "api_curves"),
    ("GET", re.compile(rf"^/api/e/{_NAME}/plots$"), "api_plots"),
    ("GET", re.compile(rf"^/api/e/{_NAME}/events$"), "api_events"),
    ("GET", re.compile(rf"^/api/e/{_NAME}/t/(\d{{1,9}})$"), "api_trial"),
    ("POST", re.compile(rf"^/api/e/{_NAME}/control$"), "api_control"),
]


class HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_access(host: str, token: str | None) -> str | None:
    """The dashboard's token (``token``, else ``$TUNESMITH_DASHBOARD_TOKEN``, else None), checked: one is required
    off loopback, and must be at least 8 characters. Raises ConfigError (naming the host, never the token)."""
    token = token if token is not None else (os.environ.get(TOKEN_ENV) or None)
    if not is_loopback(host) and not token:
        raise ConfigError(f"dashboard: host {host!r} is not a loopback address: give a token (--token, token=, or "
                          f"{TOKEN_ENV}) so that only those who have it can see the experiments")
    if token is not None and len(token) < 8:
        raise ConfigError(f"dashboard: the token must be at least 8 characters, got {len(token)}")
    return token


def _is_wildcard(host: str) -> bool:
    return host.strip("[]") in ("0.0.0.0", "::", "")


class DashboardApp:
    """The WSGI callable.

    Args:
        storage_path: the folder of experiment folders.
        name: serve only this experiment of it.
        host: the host the server is bound to (checked against each request's ``Host`` header; a
            non-loopback host needs a token).
        token: the access token; default ``$TUNESMITH_DASHBOARD_TOKEN``. Required unless ``host`` is loopback.
        allow_control: accept control requests (stop a trial or the experiment, more samples or time).
        allowed_hosts: more names the ``Host`` header may carry (a reverse proxy's name).
        frame_ancestors: loopback origins that may show the page in a frame (a notebook on this machine,
            ``http://localhost:*``); default none.
    """

    def __init__(self, storage_path: str, name: str | None = None, *, host: str = "127.0.0.1",
                 token: str | None = None, allow_control: bool = False,
                 allowed_hosts: Iterable[str] = (), frame_ancestors: Iterable[str] = ()) -> None:
        frame_ancestors = tuple(frame_ancestors)
        for source in frame_ancestors:
            if not isinstance(source, str) or not _FRAME_SOURCE.match(source):
                raise ConfigError(f"frame_ancestors: expected loopback origins like 'http://localhost:*', got "
                                  f"{source!r}")
        self._frame_headers = ([("Content-Security-Policy", CSP + " ".join(frame_ancestors))] if frame_ancestors
                               else [("Content-Security-Policy", CSP + "'none'"), ("X-Frame-Options", "DENY")])
        token = check_access(host, token)
        self.experiments = Experiments(storage_path, name)
        self.host = host
        self.token = token
        self.allow_control = allow_control
        self.allowed_hosts = {h.lower() for h in (*_LOOPBACK_NAMES, host, *allowed_hosts)}
        self._secret = secrets.token_bytes(32)
        self._control = threading.Lock()  # one control request at a time: the same key twice sees the first's file

    # -- WSGI ---------------------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        headers: list[tuple[str, str]] = []
        status: int
        try:
            self._check_host(environ)
            if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
                _check_origin(environ)
            redirect = self._check_token(environ, headers)
            if redirect is not None:
                status, body, ctype = HTTPStatus.SEE_OTHER, b"", "text/plain; charset=utf-8"
                headers.append(("Location", redirect))
            else:
                status, body, ctype = self._route(environ, headers)
        except HTTPError as e:
            status, ctype = e.status, "application/json"
            body = json.dumps({"error": e.message}).encode()
        except NotFound as e:
            status, ctype, body = HTTPStatus.NOT_FOUND, "application/json", json.dumps({"error": str(e)}).encode()
        except ConfigError as e:
            status, ctype = HTTPStatus.BAD_REQUEST, "application/json"
            body = json.dumps({"error": str(e)}).encode()
        except StoreError as e:
            status, ctype = HTTPStatus.SERVICE_UNAVAILABLE, "application/json"
            body = json.dumps({"error": str(e)}).encode()
        except Exception:  # noqa: BLE001 - a bug answers 500 and is logged; the server goes on
            log.exception("dashboard: %s %s failed", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
            status, ctype, body = HTTPStatus.INTERNAL_SERVER_ERROR, "application/json", b'{"error": "internal error"}'
        code = HTTPStatus(status)
        headers += [("Content-Type", ctype), ("Content-Length", str(len(body))),
                    *self._frame_headers, *SECURITY_HEADERS]
        if not any(k == "Cache-Control" for k, _v in headers):
            headers.append(("Cache-Control", "no-store"))
        start_response(f"{code.value} {code.phrase}", headers)
        return [body] if environ.get("REQUEST_METHOD") != "HEAD" else [b""]

    # -- security -----------------------------------------------------------------------------------
    def _check_host(self, environ: dict[str, Any]) -> None:
        host = environ.get("HTTP_HOST", "")
        match = re.match(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::\d{1,5})?\Z", host)
        if match is None:
            raise HTTPError(HTTPStatus.BAD_REQUEST, "missing or malformed Host header")
        name = match.group(1).strip("[]").lower()
        if _is_wildcard(self.host) and self.token:
            return  # every interface: any name may reach it; the token guards
        if name not in self.allowed_hosts and not is_loopback(name):  # an address typed, not a name resolved
            raise HTTPError(HTTPStatus.FORBIDDEN, f"Host {name!r} is not the dashboard's ({self.host}); "
                                                  f"DNS rebinding is refused (add it with --allowed-host)")

    def _check_token(self, environ: dict[str, Any], headers: list[tuple[str, str]]) -> str | None:
        """None when the request may go on; a URL to redirect to after a ``?token=`` visit set the cookie."""
        if not self.token:
            return None
        expected = self.token.encode()
        header = environ.get(TOKEN_HEADER)
        given = _header_bytes(header) if header else (_cookies(environ).get(TOKEN_COOKIE) or "").encode()
        if given and hmac.compare_digest(given, expected):
            return None
        query = parse_qs(environ.get("QUERY_STRING", ""))
        offered = (query.get("token") or [""])[0]
        if environ.get("REQUEST_METHOD") == "GET" and offered and hmac.compare_digest(offered.encode(), expected):
            headers.append(("Set-Cookie", f"{TOKEN_COOKIE}={quote(self.token, safe='')}; Path=/; HttpOnly; "
                                          f"SameSite=Strict"))
            # a path of this server, never //host (a PATH_INFO other WSGI servers pass on as sent)
            return quote(b"/" + _header_bytes(environ.get("PATH_INFO", "")).lstrip(b"/"))
        raise HTTPError(HTTPStatus.UNAUTHORIZED, "this dashboard needs its token: open the URL it printed "
                                                 "(with ?token=...) or send the X-Tunesmith-Token header")

    def _session(self, environ: dict[str, Any], headers: list[tuple[str, str]]) -> str:
        session = _cookies(environ).get(SESSION_COOKIE, "")
        if not re.fullmatch(r"[0-9a-f]{32}", session):
            session = secrets.token_hex(16)
            headers.append(("Set-Cookie", f"{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict"))
        return session

    def csrf_token(self, session: str) -> str:
        return hmac.new(self._secret, session.encode(), hashlib.sha256).hexdigest()

    def _check_csrf(self, environ: dict[str, Any]) -> None:
        session = _cookies(environ).get(SESSION_COOKIE, "")
        given = environ.get(CSRF_HEADER, "")
        if not session or not given or not hmac.compare_digest(given.encode(), self.csrf_token(session).encode()):
            raise HTTPError(HTTPStatus.FORBIDDEN, "control requests need the page's CSRF token (reload the page)")

    # -- routing ------------------------------------------------------------------------------------
    def _route(self, environ: dict[str, Any], headers: list[tuple[str, str]]) -> tuple[int, bytes, str]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/") or "/"
        allowed: list[str] = []
        for verb, pattern, handler in _ROUTES:
            match = pattern.fullmatch(path)  # (`$` alone matches before a final newline)
            if match is None:
                continue
            allowed += [verb, "HEAD"] if verb == "GET" else [verb]
            if verb == method or (verb == "GET" and method == "HEAD"):
                try:
                    parsed = parse_qs(environ.get("QUERY_STRING", ""), errors="strict")
                except UnicodeDecodeError:
                    raise HTTPError(HTTPStatus.BAD_REQUEST, "the query string is not UTF-8: percent-encode its "
                                                            "values' UTF-8 bytes") from None
                query = {k: v[-1] for k, v in parsed.items()}
                try:
                    args = [_header_bytes(group).decode("utf-8") for group in match.groups()]
                except UnicodeDecodeError:
                    raise HTTPError(HTTPStatus.NOT_FOUND, "no such page (an address is percent-encoded UTF-8)") \
                        from None
                return getattr(self, handler)(environ, headers, query, *args)
        if allowed:
            headers.append(("Allow", ", ".join(allowed)))
            raise HTTPError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not allowed on {path}")
        raise HTTPError(HTTPStatus.NOT_FOUND, "no such page")

    # -- pages: one shell each; dashboard.js fills it from the API -------------------------------------
    def _page(self, environ: dict[str, Any], headers: list[tuple[str, str]], kind: str, title: str,
              **data: Any) -> tuple[int, bytes, str]:
        session = self._session(environ, headers)
        attrs = {"page": kind, "control": "1" if self.allow_control else "0", "csrf": self.csrf_token(session),
                 **{k: str(v) for k, v in data.items()}}
        if "experiment" in attrs:  # the name as in the page's address, which an HTML attribute keeps as it is (a
            # raw one loses a carriage return or NUL to the HTML parser); and as the page shows it
            attrs["shown"] = printable(attrs["experiment"], one_line=True)
            attrs["experiment"] = quote(attrs["experiment"], safe="")
        # user text as the report writes it: escaped, control characters as their escapes (\x1b, \n)
        body_attrs = " ".join(f'data-{k}="{html.escape(printable(v, one_line=True), quote=True)}"'
                              for k, v in attrs.items())
        page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(printable(title, one_line=True))}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/dashboard.css">
<script src="/static/plotly.min.js" defer></script>
<script src="/static/dashboard.js" defer></script>
</head>
<body {body_attrs}>
<header><a href="/" class="home">tunesmith dashboard</a> <span id="crumb"></span><span id="live"></span></header>
<main id="main"><p class="muted">loading...</p></main>
</body>
</html>
"""
        return HTTPStatus.OK, page.encode(), "text/html; charset=utf-8"

    def page_list(self, environ: dict[str, Any], headers: list[tuple[str, str]], query: dict[str, str]
                  ) -> tuple[int, bytes, str]:
        return self._page(environ, headers, "list", "tunesmith dashboard")

    def page_experiment(self, environ: dict[str, Any], headers: list[tuple[str, str]], query: dict[str, str],
                        name: str) -> tuple[int, bytes, str]:
        self.experiments.folder(name)
        return self._page(environ, headers, "experiment", f"{name} - tunesmith", experiment=name)

    def page_trial(self, environ: dict[str, Any], headers: list[tuple[str, str]], query: dict[str, str],
                   name: str, tid: str) -> tuple[int, bytes, str]:
        self.experiments.folder(name)
        return self._page(environ, headers, "trial", f"{name} trial {int(tid)} - tunesmith", experiment=name,
                          trial=int(tid))

    def static(self, environ: dict[str, Any], headers: list[tuple[str, str]], query: dict[str, str],
               name: str) -> tuple[int, bytes, str]:
        if name not in _STATIC:
            raise HTTPError(HTTPStatus.NOT_FOUND, "no such file")
        package, file, ctype = _STATIC[name]
        body = _static_bytes(package, file)
        headers.append(("Cache-Control", "private, max-age=3600"))
        return HTTPStatus.OK, body, ctype

    # -- API ----------------------------------------------------------------------------------------
    def api_list(self, environ: dict[str, Any], headers: list[tuple[str, str]], query: dict[str, str]
                 ) -> tuple[int, bytes, str]:
        return _json({"experiments": self.experiments.listing(), "now": time.time()})

    def api_summary(self, environ: dict[str, Any], headers: list[tuple[str, str]], query: dict[str, str],
                    name: str) -> tuple[int, bytes, str]:
        return _json({**self.experiments.summary(name), "control": self.allow_control})

    def api_trials(self, environ: dict[str, Any], headers: list[tuple[str, str]], query: dict[str, str],
                   name: str) -> tuple[int, bytes, str]:
        return _json(self.experiments.trials(name, offset=_int(query, "offset", 0), limit=_int(query, "limit", 50),
                                             sort=query.get("sort", "id"), status=query.get("status", ""),
                                             query=query.get("q", "")[:200]))

    def api_curves(self, environ: dict[str, Any], headers: list[tuple[str, str]], query: dict[str, str],
                   name: str) -> tuple[int, bytes, str]:
        metric = query.get("metric", "")
        if not metric or len(metric) > 200:
            raise ConfigError("curves: give metric=<a reported metric>")
        cursors: dict[int, tuple[int, int] | None] = {}
        for part in filter(None, query.get("t", "").split(",")):
            m = re.fullmatch(r"(\d{1,9})(?::(\d{1,12}):(\d{1,12}))?", part)
            if m is None:
                raise ConfigError(f"curves: t must be trial[:iteration:generation],... got {part[:40]!r}")
            cursors[int(m[1])] = (int(m[2]), int(m[3])) if m[2] is not None else None
        return _json(self.experiments.curves(name, metric, cursors, x=_counter(query)))

    def api_plots(self, environ: dict[str, Any], headers: list[tuple[str, str]], query: dict[str, str],
                  name: str) -> tuple[int, bytes, str]:
        from tunesmith.plots.data import FINALS

        metric = query.get("metric") or None
        final = query.get("final") or "last"
        if final not in FINALS:
            raise ConfigError(f"final must be one of {', '.join(FINALS)}, got {final[:40]!r}")
        return _json(self.experiments.plots(name, metric[:200] if metric else None, x=_counter(query), final=final))

    def api_events(self, environ: dict[str, Any], headers: list[tuple[str, str]], query: dict[str, str],
                   name: str) -> tuple[int, bytes, str]:
        return _json(self.experiments.events(name))

    def api_trial(self, environ: dict[str, Any], headers: list[tuple[str, str]], query: dict[str, str],
                  name: str, tid: str) -> tuple[int, bytes, str]:
        return _json(self.experiments.trial(name, int(tid)))

    def api_control(self, environ: dict[str, Any], headers: list[tuple[str, str]], query: dict[str, str],
                    name: str) -> tuple[int, bytes, str]:
        if not self.allow_control:
            raise HTTPError(HTTPStatus.FORBIDDEN, "control is off: start the dashboard with --allow-control")
        self._check_csrf(environ)
        key = environ.get(KEY_HEADER)
        if key is not None:
            key = _commands.check_key(key)  # untrusted: a 400 saying what a key is
        media_type = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()  # case-insensitive (RFC 9110)
        if media_type != "application/json":
            raise HTTPError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "control requests are JSON (Content-Type: "
                                                               "application/json)")
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length > MAX_BODY:
            raise HTTPError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"a control request is a JSON body of at most "
                                                                  f"{MAX_BODY} bytes, got {length}")
        if length <= 0:
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"a control request is a JSON body of at most {MAX_BODY} bytes "
                                                    f"(with its Content-Length)")
        try:
            raw = environ["wsgi.input"].read(length)
        except OSError:  # the server's timeout: the client stopped sending
            raise HTTPError(HTTPStatus.REQUEST_TIMEOUT, f"the body did not arrive: Content-Length said {length} "
                                                        f"bytes") from None
        if len(raw) < length:
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"the body ended after {len(raw)} of its Content-Length "
                                                    f"{length} bytes")
        try:
            command = json.loads(raw.decode("utf-8"), object_pairs_hook=_once)
        except _Twice as e:
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"the body names {e.field[:40]!r} twice: a command names each "
                                                    f"field once") from None
        except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: nested deeper than json can read
            raise HTTPError(HTTPStatus.BAD_REQUEST, "the body is not JSON") from None
        command = _commands.validate(command)  # a bad command is a 400 whatever the experiment's state
        folder = self.experiments.folder(name)
        with self._control:
            if key is not None and self._known(name, folder, command, _commands.command_id(key)):
                # the same request again (a double click, a retry): the first answer, whatever the state now
                headers.append(REPLAYED)
                return _json({"queued": _commands.command_id(key)})
            summary = self.experiments.summary(name)
            if summary["status"] != "running":
                raise HTTPError(HTTPStatus.CONFLICT, f"experiment {name} is not running ({summary['status']})")
            command_id = _commands.write_command(folder, command, key=key)
            # The driver may have ended between the check and the write. Its last look at the inbox comes after it
            # records its end: if it is still running now, that look will find the file; if not, take the file
            # back, unless that look took it first (then its command event says what became of it).
            if self.experiments.summary(name)["status"] != "running" and _commands.take_back(folder, command_id):
                if key is not None and self._known(name, folder, command, command_id):
                    headers.append(REPLAYED)  # a first copy's event landed meanwhile: it stands for this one
                    return _json({"queued": command_id})
                raise HTTPError(HTTPStatus.CONFLICT, f"experiment {name} ended before the command could be applied")
        return _json({"queued": command_id})

    def _known(self, name: str, folder: str, command: dict[str, Any], command_id: str) -> bool:
        """Whether the command ``command_id`` was sent before: still queued, or taken by a driver (its ``command``
        event). A key that named another command is a 422: a new command needs a new key."""
        recorded = _commands.queued(folder, command_id)
        if recorded is None:
            with self.experiments.store(name) as store:
                recorded = next((d for d in store.command_events() if d.get("id") == command_id), None)
        if recorded is None:
            return False
        if not _commands.same_command(command, recorded):
            raise HTTPError(HTTPStatus.UNPROCESSABLE_ENTITY, f"this Idempotency-Key was already used for another "
                                                             f"command than this {command['action']}: send a new "
                                                             f"key with a new command")
        return True


def _origin(scheme: str, netloc: str) -> str:
    """``scheme://host:port``, lowercased, the scheme's default port dropped (a browser writes it in neither the
    Host header nor Origin)."""
    scheme, netloc = scheme.lower(), netloc.lower()
    default = {"http": ":80", "https": ":443"}.get(scheme)
    if default and netloc.endswith(default):
        netloc = netloc[:-len(default)]
    return f"{scheme}://{netloc}"


def _check_origin(environ: dict[str, Any]) -> None:
    """A request that changes something and names an ``Origin`` (a browser's, on every POST) must come from the
    dashboard's own page: the scheme it is served with and the host and port the request's Host header names
    (checked before). No Origin (curl, a script) goes on to the token and CSRF checks."""
    given = environ.get("HTTP_ORIGIN")
    if given is None:
        return
    own = _origin(environ.get("wsgi.url_scheme", "http"), environ.get("HTTP_HOST", ""))
    scheme, sep, netloc = given.partition("://")
    if not sep or "/" in netloc or _origin(scheme, netloc) != own:
        raise HTTPError(HTTPStatus.FORBIDDEN, f"a control request's Origin must be this dashboard's ({own}); a "
                                              f"page of another origin may not send one")


def _static_bytes(package: str, file: str, _cache: dict[tuple[str, str], bytes] = {}) -> bytes:  # noqa: B006
    key = (package, file)
    if key not in _cache:
        base = resources.files(package)
        _cache[key] = (base / "static" / file).read_bytes()
    return _cache[key]


def _json(obj: Any) -> tuple[int, bytes, str]:
    text = json.dumps(_plain(obj), separators=(",", ":"), allow_nan=False, default=str)
    return HTTPStatus.OK, text.encode(), "application/json"


def _counter(query: dict[str, str]) -> str:
    """The learning curves' x axis: ``training_iteration`` or any counter the trials report (``timesteps``)."""
    x = query.get("x") or "training_iteration"
    if len(x) > 200:
        raise ConfigError(f"x must be a reported counter's name (at most 200 characters), got {x[:40]!r}...")
    return x


def _int(query: dict[str, str], key: str, default: int) -> int:
    value = query.get(key)
    if value is None:
        return default
    if not re.fullmatch(r"\d{1,9}", value):
        raise ConfigError(f"{key} must be a non-negative integer, got {value[:20]!r}")
    return int(value)


class _Twice(ValueError):
    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


def _once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose every field is named once (json keeps the last of two, other parsers the first)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Twice(key)
        out[key] = value
    return out


def _header_bytes(value: str) -> bytes:
    """A header's (or PATH_INFO's) bytes as sent: a WSGI server hands them over decoded as latin-1 (PEP 3333)."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:  # not what a WSGI server passes: no bytes it could have been sent as
        return value.encode("utf-8")


def _cookies(environ: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in environ.get("HTTP_COOKIE", "").split(";"):
        if "=" in part:
            k, v = part.strip().split("=", 1)
            out.setdefault(k, unquote(v))
    return out
