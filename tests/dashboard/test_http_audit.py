"""The dashboard's HTTP side under hostile requests: every answer is JSON with the right status and the security
headers, never a traceback or an echo of the request; through the app and through the real server's socket."""

from __future__ import annotations

import json
import re
import socket
from typing import Any
from urllib.parse import quote

import pytest
from test_app import call  # noqa: E402  (tests have no packages)

import tunesmith as ts
from tunesmith.dashboard import make_app, start
from tunesmith.executors.simulated import SimulatedBackend


def steps(config: dict[str, Any], ctx: Any) -> Any:
    for step in range(1, 4):
        yield ({"loss": config["x"] / step}, 1.0, None)


@pytest.fixture
def root(results_dir: Any) -> str:
    ts.run(steps, space={"x": ts.grid([1.0, 2.0])}, metric="loss", mode="min", backend=SimulatedBackend({"cpu": 2}),
           verbose=0, name="exp")
    return str(results_dir)


def _session(app: Any) -> dict[str, str]:
    _status, headers, body = call(app, "/e/exp")
    csrf = re.search(r'data-csrf="([0-9a-f]+)"', body.decode()).group(1)  # type: ignore[union-attr]
    return {"Cookie": headers["set-cookie"][0].split(";")[0], "X-Tunesmith-CSRF": csrf}


def _post(app: Any, body: bytes, content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
    status, _headers, out = call(app, "/api/e/exp/control", method="POST", body=body,
                                 headers={**_session(app), "Content-Type": content_type})
    return status, json.loads(out)


def test_a_control_body_the_json_parser_cannot_take_is_a_400_not_a_500(root: str) -> None:
    app = make_app(root, allow_control=True)
    for body in (b"[" * 2000 + b"]" * 2000, b'[{"":' * 550 + b"1" + b"}]" * 550):  # under 4096 bytes, too deep
        status, answer = _post(app, body)
        # Python 3.11's json gives up (a RecursionError), 3.13's reads it: a 400 either way, never a 500
        assert status == 400 and answer["error"] in ("the body is not JSON",
                                                     "a command must be a JSON object, got list"), answer


def test_a_control_body_over_the_limit_is_413_and_a_missing_one_400(root: str) -> None:
    app = make_app(root, allow_control=True)
    status, answer = _post(app, b'{"action": "stop_experiment"}' + b" " * 5000)
    assert status == 413 and "4096 bytes" in answer["error"], answer
    status, answer = _post(app, b"")
    assert status == 400 and "4096 bytes" in answer["error"], answer


def test_a_command_naming_a_field_twice_is_refused_not_read_as_its_last(root: str) -> None:
    """{"action": "stop_trial", "action": "stop_experiment"} is no command: the last wins in Python's json, the
    first in others; either way not what a sender meant, and stopping the experiment is not to be guessed."""
    app = make_app(root, allow_control=True)
    status, answer = _post(app, b'{"action": "stop_trial", "trial_id": 1, "action": "stop_experiment"}')
    assert status == 400 and "'action'" in answer["error"] and "twice" in answer["error"], answer


def test_the_content_type_is_application_json_by_its_media_type(root: str) -> None:
    app = make_app(root, allow_control=True)
    body = json.dumps({"action": "stop_experiment"}).encode()
    for wrong in ("application/jsonp", "application/json-seq", "text/plain", ""):
        assert _post(app, body, wrong)[0] == 415, wrong
    for right in ("Application/JSON", "application/json; charset=utf-8", " application/json"):
        status, answer = _post(app, body, right)  # accepted: the experiment has ended, so 409
        assert status == 409 and "not running" in answer["error"], (right, answer)


def test_a_405_says_which_methods_the_address_takes(root: str) -> None:
    app = make_app(root, allow_control=True)
    for path, method, allow in (("/api/e/exp/control", "GET", "POST"), ("/api/e/exp/summary", "POST", "GET, HEAD"),
                                ("/", "DELETE", "GET, HEAD"), ("/api/e/exp/t/1", "OPTIONS", "GET, HEAD")):
        status, headers, body = call(app, path, method=method)
        assert status == 405 and headers.get("allow") == [allow], (path, method, headers.get("allow"))
        assert json.loads(body)["error"] == f"{method} is not allowed on {path}"


def test_a_non_ascii_token_is_taken_from_the_header_as_from_the_cookie(root: str) -> None:
    """A WSGI server hands a header's bytes over as latin-1 (PEP 3333): a UTF-8 token sent in the header is those
    bytes, the same token as the cookie's percent-encoded one."""
    token = "pässwört-123"
    app = make_app(root, host="0.0.0.0", token=token)
    as_wsgi = token.encode().decode("latin-1")  # what the server puts in environ for the header's UTF-8 bytes
    assert call(app, "/api/experiments", headers={"X-Tunesmith-Token": as_wsgi})[0] == 200
    assert call(app, "/api/experiments", headers={"Cookie": f"tunesmith_token={quote(token, safe='')}"})[0] == 200
    assert call(app, "/api/experiments", headers={"X-Tunesmith-Token": token})[0] == 401  # not its bytes


def test_the_token_redirect_never_leaves_the_dashboard(root: str) -> None:
    """Under another WSGI server PATH_INFO may start with //: the Location after a ?token= visit stays a path."""
    token = "s3cret-token-value"
    app = make_app(root, host="0.0.0.0", token=token)
    for path, where in (("//evil.example/x", "/evil.example/x"), ("/e/exp", "/e/exp"), ("", "/")):
        status, headers, _body = call(app, f"{path}?token={token}")
        assert status == 303 and headers["location"] == [where], (path, headers["location"])


def test_a_query_string_that_is_not_utf8_is_a_400_naming_it(root: str) -> None:
    app = make_app(root)
    for path in ("/api/e/exp/trials?q=%FF%FE", "/api/e/exp/trials?sort=m:%FF", "/api/e/exp/plots?metric=%C3",
                 "/api/e/exp/curves?metric=loss&x=%FF&t=1"):
        status, _headers, body = call(app, path)
        assert status == 400 and "UTF-8" in json.loads(body)["error"], (path, body)
    assert call(app, "/api/e/exp/trials?sort=m:na%C3%AFve")[0] == 200


def _raw(port: int, request: bytes) -> tuple[str, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return lines[0], headers, body


def test_what_the_server_refuses_before_the_app_is_json_with_the_security_headers(root: str) -> None:
    board = start(root, port=0)
    try:
        for request, code in ((b"GET /" + b"a" * 70000 + b" HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", 414),
                              (b"GET / HTTP/1.0\r\n" + b"X-A: 1\r\n" * 200 + b"\r\n", 431),
                              (b"GET /<script>x</script> HTTP/9<b>\r\n\r\n", 400),
                              (b"<script>x</script>\r\n\r\n", 400)):
            status, headers, body = _raw(board.port, request)
            assert status.startswith(f"HTTP/1.0 {code} "), (request[:40], status)
            assert headers["content-type"] == "application/json" and headers["x-content-type-options"] == "nosniff"
            assert "default-src 'none'" in headers["content-security-policy"]
            error = json.loads(body)["error"]
            assert "script" not in error and "<b>" not in error and str(code) in error, error
    finally:
        board.stop()


def test_a_client_that_stops_sending_is_let_go_not_waited_for_forever(root: str, capfd: Any) -> None:
    """A connection that never ends its headers, or sends less body than its Content-Length, held a server thread
    for good (no socket timeout): now it is answered 408 (a body cut short) or closed, quietly."""
    from tunesmith.dashboard._server import Dashboard

    app = make_app(root, allow_control=True)
    headers = _session(app)
    board = Dashboard(app, port=0, request_timeout_s=0.5).start()
    try:
        status, _headers, body = _raw(board.port, (
            f"POST /api/e/exp/control HTTP/1.0\r\nHost: 127.0.0.1\r\nCookie: {headers['Cookie']}\r\n"
            f"X-Tunesmith-CSRF: {headers['X-Tunesmith-CSRF']}\r\nContent-Type: application/json\r\n"
            f"Content-Length: 100\r\n\r\n{{").encode())
        assert status.startswith("HTTP/1.0 408 ") and "Content-Length" in json.loads(body)["error"], (status, body)
        with socket.create_connection(("127.0.0.1", board.port), timeout=30) as s:  # a body cut short: refused
            command = b'{"action": "stop_experiment"}'
            s.sendall(f"POST /api/e/exp/control HTTP/1.0\r\nHost: 127.0.0.1\r\nCookie: {headers['Cookie']}\r\n"
                      f"X-Tunesmith-CSRF: {headers['X-Tunesmith-CSRF']}\r\nContent-Type: application/json\r\n"
                      f"Content-Length: 100\r\n\r\n".encode() + command)
            s.shutdown(socket.SHUT_WR)
            answer = b"".join(iter(lambda: s.recv(65536), b""))
            assert answer.startswith(b"HTTP/1.0 400 ") and b"ended after 29 of its Content-Length 100" in answer
        with socket.create_connection(("127.0.0.1", board.port), timeout=30) as s:
            s.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n")  # and nothing more
            assert s.recv(65536) == b""  # closed by the server, not by this test's timeout (an exception)
    finally:
        board.stop()
    assert "Traceback" not in capfd.readouterr().err
