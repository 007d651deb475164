"""``add_samples`` from the dashboard: the request goes through the page's real control endpoint, the driver
raises the experiment's ``num_samples`` and creates the trials a run with that many would have, a resume
honours the raised count, and a searcher with nothing more to suggest says so in the command's event."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import threading
import time
from typing import Any

import pytest

import tunesmith as ts
from tunesmith.dashboard import make_app
from tunesmith.dashboard._commands import write_command
from tunesmith.searchers._base import FINISHED, Searcher
from tunesmith.store.sqlite import Store


def held_train(config: dict[str, Any]) -> None:
    """Reports until the test creates the release file (bounded: 30 s)."""
    for i in range(3000):
        ts.report({"loss": config["x"] / (i + 1)})
        if os.path.exists(config["release"]):
            return
        time.sleep(0.01)


def _request(app: Any, path: str, method: str = "GET", body: bytes = b"",
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "", "HTTP_HOST": "127.0.0.1:8788",
               "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)), "wsgi.url_scheme": "http"}
    for k, v in (headers or {}).items():
        key = k.upper().replace("-", "_")
        environ[key if key == "CONTENT_TYPE" else "HTTP_" + key] = v
    got: dict[str, Any] = {}

    def start_response(status: str, hdrs: list[tuple[str, str]]) -> None:
        got["status"], got["headers"] = int(status.split()[0]), {k.lower(): v for k, v in hdrs}

    out = b"".join(app(environ, start_response))
    return got["status"], got["headers"], out


def _post_from_page(root: str, name: str, command: dict[str, Any]) -> None:
    """What the page's button does: load the page (session cookie + CSRF token), POST the command."""
    app = make_app(root, allow_control=True)
    _status, headers, page = _request(app, f"/e/{name}")
    csrf = re.search(r'data-csrf="([0-9a-f]+)"', page.decode()).group(1)  # type: ignore[union-attr]
    status, _h, body = _request(app, f"/api/e/{name}/control", "POST", json.dumps(command).encode(),
                                {"Content-Type": "application/json", "Cookie": headers["set-cookie"].split(";")[0],
                                 "X-Tunesmith-CSRF": csrf})
    assert status == 200, body


def _wait(db_path: str, cond: Any, timeout: float = 30.0) -> Any:
    """Poll the store read-only until ``cond(store)`` is truthy (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(db_path):
            try:
                store = Store(db_path, readonly=True)
            except Exception:  # noqa: BLE001 - not published yet
                store = None
            if store is not None:
                try:
                    got = cond(store)
                finally:
                    store.close()
                if got:
                    return got
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout} s")


def _commands(store: Store) -> list[dict[str, Any]]:
    return [data for _s, _t, kind, _tid, data in store.events() if kind == "command"]


def test_add_samples_from_the_page_creates_the_trials_a_larger_num_samples_would(results_dir: Any,
                                                                                tmp_path: Any) -> None:
    release = str(tmp_path / "release")
    db = os.path.join(str(results_dir), "more", "experiment.db")

    def control() -> None:
        _wait(db, lambda s: len(s.trials()) == 2 and all(t["iteration"] >= 1 for t in s.trials()))
        _post_from_page(str(results_dir), "more", {"action": "add_samples", "n": 1})
        _wait(db, _commands)
        open(release, "w").close()

    helper = threading.Thread(target=control, daemon=True)
    helper.start()
    result = ts.run(held_train, space={"x": ts.grid([1.0, 2.0]), "release": release}, num_samples=1,
                    max_concurrent=2, metric="loss", mode="min", verbose=0, name="more", time_budget_s=60)
    helper.join(5)
    # the grid crossed with num_samples=2: each grid point twice, in the order a run with 2 would make them
    assert [t.config["x"] for t in result.trials] == [1.0, 2.0, 1.0, 2.0]
    assert all(t.status.value == "TERMINATED" for t in result.trials)
    [event] = _commands(result._store)
    assert event["action"] == "add_samples" and event["applied"] is True
    assert "num_samples 1 -> 2" in event["detail"]
    assert result._store.meta()["num_samples_added"] == 1
    summary = make_app(str(results_dir)).experiments.summary("more")
    assert summary["num_samples"] == 2


def test_a_resume_honours_the_samples_added(results_dir: Any, tmp_path: Any) -> None:
    """add_samples, then the run is interrupted (Ctrl-C) before the new trials start: resuming with the run's own
    num_samples creates them. (A stop_experiment from the page would be kept by the resume: nothing would start.)"""
    release = str(tmp_path / "release")
    exp = os.path.join(str(results_dir), "again")
    db = os.path.join(exp, "experiment.db")

    def control() -> None:
        _wait(db, lambda s: len(s.trials()) == 2 and all(t["iteration"] >= 1 for t in s.trials()))
        write_command(exp, {"action": "add_samples", "n": 2})
        _wait(db, _commands)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: the run stops at the top of its loop's next pass

    helper = threading.Thread(target=control, daemon=True)
    helper.start()
    space = {"x": ts.grid([1.0, 2.0]), "release": release}
    with pytest.raises(KeyboardInterrupt):
        ts.run(held_train, space=space, num_samples=1, max_concurrent=2, metric="loss", mode="min", verbose=0,
               name="again", time_budget_s=60)
    helper.join(5)
    store = Store(db, readonly=True)
    try:
        assert len(store.trials()) == 2
        assert [e["applied"] for e in _commands(store)] == [True]
    finally:
        store.close()
    open(release, "w").close()
    resumed = ts.run(held_train, space=space, num_samples=1, max_concurrent=2, metric="loss", mode="min",
                     verbose=0, name="again", resume=True, time_budget_s=60)
    assert [t.config["x"] for t in resumed.trials] == [1.0, 2.0] * 3
    assert resumed._store.meta()["num_samples_added"] == 2
    assert resumed._store.meta()["spec"]["num_samples"] == 1  # the run's own count: a second resume adds 2 again


class FixedConfigs(Searcher):
    """A finite list of configs, whatever num_samples says (a grid that cannot grow)."""

    def __init__(self, configs: list[dict[str, Any]]) -> None:
        self.configs = configs
        self._i = 0

    def setup(self, space: dict[str, Any], metric: Any, mode: Any, num_samples: int) -> None:
        super().setup(space, metric, mode, num_samples)
        self._i = 0

    def suggest(self, trial_id: int) -> Any:
        if self._i >= len(self.configs):
            return FINISHED
        self._i += 1
        return dict(self.configs[self._i - 1])


def test_add_samples_to_an_exhausted_searcher_says_so_in_the_commands_event(results_dir: Any, tmp_path: Any) -> None:
    release = str(tmp_path / "release")
    exp = os.path.join(str(results_dir), "fixed")
    db = os.path.join(exp, "experiment.db")

    def control() -> None:
        _wait(db, lambda s: len(s.trials()) == 2 and all(t["iteration"] >= 1 for t in s.trials()))
        write_command(exp, {"action": "add_samples", "n": 3})
        _wait(db, _commands)
        open(release, "w").close()

    helper = threading.Thread(target=control, daemon=True)
    helper.start()
    result = ts.run(held_train, space={"x": 0.0, "release": release},
                    searcher=FixedConfigs([{"x": 1.0, "release": release}, {"x": 2.0, "release": release}]),
                    num_samples=2, metric="loss", mode="min", verbose=0, name="fixed", time_budget_s=60)
    helper.join(5)
    assert len(result.trials) == 2
    [event] = _commands(result._store)
    assert event["applied"] is False and "no more configs" in event["detail"]
    assert "num_samples_added" not in result._store.meta()
