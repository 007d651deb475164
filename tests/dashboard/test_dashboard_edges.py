"""The dashboard's edges: bad `dashboard=` options and a port in use refused before an experiment is written (a new
one left unmade, a resumed one as it was), the printed URL carrying its token URL-encoded (run() and the CLI),
and a Dashboard started twice."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

import tunesmith as ts
from tunesmith import dashboard
from tunesmith._errors import ConfigError
from tunesmith._layout import store_path
from tunesmith.store.sqlite import Store


def one_step(config: dict[str, Any]) -> None:
    ts.report({"loss": 1.0})


def run(name: str, **kwargs: Any) -> Any:
    return ts.run(one_step, {"x": ts.uniform(0, 1)}, metric="loss", mode="min", num_samples=2, name=name,
                  verbose=0, **kwargs)


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port of 127.0.0.1 another program is listening on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def browser_get(url: str) -> int:
    """Open a URL as a browser does: following the ?token= visit's redirect with the cookie it set."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    with opener.open(url, timeout=10) as r:
        return int(r.status)


@pytest.mark.parametrize(("option", "expected"), [
    ({"prot": 8788}, r"dashboard: unknown option\(s\) \['prot'\]"),
    ({"host": "0.0.0.0"}, r"dashboard: host '0\.0\.0\.0' is not a loopback address: give a token"),
    ({"token": "short"}, r"dashboard: the token must be at least 8 characters"),
    ({"port": "8788"}, r"dashboard: port must be a whole number from 0 to 65535 \(0 picks a free one\), got '8788'"),
    ({"port": 70000}, r"dashboard: port must be a whole number from 0 to 65535"),
    ({"allow_control": "yes"}, r"dashboard: allow_control must be True or False, got 'yes'"),
    ({"allowed_hosts": "proxy"}, r"dashboard: allowed_hosts must be a list of host names"),
    ("yes", r"dashboard must be True, False or a dict of options"),
])
def test_a_bad_dashboard_option_is_refused_before_the_experiment_is_created(
        results_dir: Any, monkeypatch: Any, option: Any, expected: str) -> None:
    monkeypatch.delenv("TUNESMITH_DASHBOARD_TOKEN", raising=False)
    with pytest.raises(ConfigError, match=expected):
        run("bad_option", dashboard=option)
    assert not os.path.exists(os.path.join(str(results_dir), "bad_option"))  # nothing written, not even the folder
    assert len(run("bad_option").trials) == 2  # the name is free: no half-made experiment


def test_a_dashboard_port_in_use_is_a_config_error_that_leaves_no_experiment(results_dir: Any,
                                                                              taken_port: int) -> None:
    with pytest.raises(ConfigError, match=rf"^dashboard: port {taken_port} on 127\.0\.0\.1 is in use; pass another "
                                          rf"port or port=0 \(a free one\)"):
        run("taken", dashboard={"port": taken_port})
    assert not os.path.exists(store_path(os.path.join(str(results_dir), "taken")))
    assert len(run("taken", dashboard={"port": 0}).trials) == 2  # the same name runs, with the dashboard


def test_a_resume_refused_for_a_port_in_use_leaves_the_experiment_as_it_was(results_dir: Any,
                                                                             taken_port: int) -> None:
    run("done")
    folder = os.path.join(str(results_dir), "done")
    before, events = ts.load(folder), stored_events(folder)
    with pytest.raises(ConfigError, match=rf"port {taken_port} on 127\.0\.0\.1 is in use"):
        run("done", resume=True, dashboard={"port": taken_port})
    after = ts.load(folder)
    assert after.meta["status"] == before.meta["status"] == "finished"
    assert stored_events(folder) == events  # no "resume" event
    assert repr(after) == repr(before)


def stored_events(folder: str) -> list[Any]:
    store = Store(store_path(folder), readonly=True)
    try:
        return store.events()
    finally:
        store.close()


def test_the_cli_says_which_port_is_in_use(results_dir: Any, taken_port: int) -> None:
    cmd = [sys.executable, "-m", "tunesmith.cli", "dashboard", "--port", str(taken_port),
           "--storage-path", str(results_dir)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done
    assert done.stderr.strip() == (f"error: dashboard: port {taken_port} on 127.0.0.1 is in use; pass another port "
                                   f"or port=0 (a free one)"), done.stderr
    assert done.stdout == ""


class OpensThePrintedUrl(ts.Callback):
    """At the experiment's start (the dashboard is being served): open the URL the run printed, as a user would."""

    def __init__(self, capsys: Any) -> None:
        self.capsys = capsys
        self.lines: list[str] = []
        self.status: int | None = None

    def on_experiment_start(self, experiment: Any) -> None:
        out = self.capsys.readouterr().out
        self.lines = [line for line in out.splitlines() if line.startswith("tunesmith dashboard:")]
        self.status = browser_get(self.lines[0].split(": ", 1)[1])


def test_run_prints_the_url_with_its_token_url_encoded(capsys: Any) -> None:
    token = "my token#&=/?%x"
    opened = OpensThePrintedUrl(capsys)
    run("with_token", dashboard={"port": 0, "token": token}, callbacks=[opened])
    assert len(opened.lines) == 1, opened.lines
    assert re.fullmatch(r"tunesmith dashboard: http://127\.0\.0\.1:\d+/\?token=my%20token%23%26%3D%2F%3F%25x",
                        opened.lines[0]), opened.lines
    assert opened.status == 200
    assert token not in capsys.readouterr().out  # printed once, encoded, on the announce line only


def test_run_prints_the_environment_token_with_dashboard_true(capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("TUNESMITH_DASHBOARD_TOKEN", "from-the-environment")
    opened = OpensThePrintedUrl(capsys)
    run("env_token", dashboard=True, callbacks=[opened])
    assert opened.lines and opened.lines[0].endswith("/?token=from-the-environment"), opened.lines
    assert opened.status == 200


def test_the_cli_prints_its_token_url_encoded(results_dir: Any) -> None:
    run("listed")
    cmd = [sys.executable, "-m", "tunesmith.cli", "dashboard", "--port", "0", "--storage-path", str(results_dir),
           "--token", "abc#def&g=h 1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline() if proc.stdout else ""
        match = re.fullmatch(r"tunesmith dashboard: (http://127\.0\.0\.1:\d+/\?token=abc%23def%26g%3Dh%201)\n", first)
        assert match, (first, proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        assert browser_get(match.group(1)) == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_a_second_start_does_nothing_and_stop_ends_the_one_server_thread(results_dir: Any) -> None:
    before = set(threading.enumerate())
    board = dashboard.start(str(results_dir), port=0)
    assert board.start() is board
    served = [t for t in threading.enumerate() if t not in before and t.name == "tunesmith-dashboard"]
    assert len(served) == 1, served
    assert browser_get(board.url + "api/experiments") == 200
    board.stop()
    assert not served[0].is_alive()
    assert not [t for t in threading.enumerate() if t not in before and t.name == "tunesmith-dashboard"]
    with pytest.raises(RuntimeError, match="this dashboard was stopped: start a new one"):
        board.start()


def reports_its_value(config: dict[str, Any]) -> None:
    ts.report({"loss": float(config["v"])})


def test_nan_and_infinities_are_shown_as_such_and_sort_as_numbers(results_dir: Any) -> None:
    ts.run(reports_its_value, {"v": ts.grid(["1.5", "nan", "inf", "-inf"])}, metric="loss", mode="max",
           name="diverged", verbose=0)
    with dashboard.start(str(results_dir), port=0) as board:
        def get(path: str) -> Any:
            with urllib.request.urlopen(board.url + path, timeout=10) as r:
                return json.loads(r.read())

        by_id = {r["id"]: r["metrics"]["loss"] for r in get("api/e/diverged/trials")["rows"]}
        ascending = [r["metrics"]["loss"] for r in get("api/e/diverged/trials?sort=m:loss")["rows"]]
        descending = [r["metrics"]["loss"] for r in get("api/e/diverged/trials?sort=-m:loss")["rows"]]
        summary, listing = get("api/e/diverged/summary"), get("api/experiments")["experiments"]
    assert by_id == {1: 1.5, 2: "nan", 3: "inf", 4: "-inf"}  # not empty cells, as for a trial that reported nothing
    assert ascending == ["-inf", 1.5, "inf", "nan"] and descending == ["inf", 1.5, "-inf", "nan"]
    assert "loss" in summary["metrics"]
    assert summary["best"]["value"] == listing[0]["best"]["value"] == "inf"
    assert ts.load(
        os.path.join(str(results_dir), "diverged")).get_best().last_result["loss"] == float("inf")
