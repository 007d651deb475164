"""The dashboard's WSGI app and the driver's command pickup, without a browser: real stores, real runs."""

from __future__ import annotations

import io
import json
import math
import os
import re
import threading
import time
from typing import Any
from urllib.parse import quote

import pytest

import tunesmith as ts
from tunesmith._errors import ConfigError
from tunesmith.dashboard import make_app
from tunesmith.dashboard._commands import commands_dir, write_command
from tunesmith.executors.simulated import SimulatedBackend
from tunesmith.store.sqlite import Store, dumps

XSS = "<script>window.pwned=1</script>"


def call(app: Any, path: str, *, method: str = "GET", host: str = "127.0.0.1:8788", headers: dict[str, str] | None
         = None, body: bytes = b"") -> tuple[int, dict[str, list[str]], bytes]:
    """One request through the WSGI callable, as a server would make it."""
    path, _, query = path.partition("?")
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, "HTTP_HOST": host,
               "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)), "SERVER_NAME": "127.0.0.1",
               "SERVER_PORT": "8788", "wsgi.url_scheme": "http"}
    for k, v in (headers or {}).items():
        key = k.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE",) else "HTTP_" + key] = v
    got: dict[str, Any] = {}

    def start_response(status: str, hdrs: list[tuple[str, str]]) -> None:
        got["status"] = int(status.split()[0])
        got["headers"] = {}
        for k, v in hdrs:
            got["headers"].setdefault(k.lower(), []).append(v)

    out = b"".join(app(environ, start_response))
    return got["status"], got["headers"], out


def pbt_train(config: dict[str, Any], ctx: Any) -> Any:
    state = ctx.checkpoint or {"step": 0, "loss": 1.0}
    while state["step"] < 12:
        state["step"] += 1
        state["loss"] *= 1 - 0.05 * config["lr"]
        yield ({"loss": state["loss"]}, 1.0, dict(state) if state["step"] % 3 == 0 else None)


@pytest.fixture
def finished(results_dir: Any) -> str:
    """A finished PBT experiment (exploits, pauses) whose config holds a secret and markup."""
    pbt = ts.PBT(perturbation_interval=3, hyperparam_mutations={"lr": [0.5, 1.0, 2.0, 4.0]}, seed=0,
                 time_attr="time_total_s", quantile_fraction=0.25)
    ts.run(pbt_train, space={"lr": ts.grid([0.5, 1.0, 2.0, 4.0]), "note": XSS, "api_key": "hunter2-secret"},
           metric="loss", mode="min", scheduler=pbt, backend=SimulatedBackend({"cpu": 4}), verbose=0, name="pbt")
    return str(results_dir)


def api(app: Any, path: str) -> Any:
    status, _h, body = call(app, path)
    assert status == 200, body
    return json.loads(body)


def test_endpoints_mask_secrets_and_show_why_and_lineage(finished: str) -> None:
    app = make_app(finished)
    listing = api(app, "/api/experiments")["experiments"]
    assert [e["name"] for e in listing] == ["pbt"] and listing[0]["trials"] == 4
    assert listing[0]["best"]["metric"] == "loss"
    page = api(app, "/api/e/pbt/trials?sort=-m:loss&limit=2")
    assert page["total"] == 4 and len(page["rows"]) == 2
    losses = [r["metrics"]["loss"] for r in page["rows"]]
    assert losses == sorted(losses, reverse=True)
    assert all(r["config"]["api_key"] == "***" and r["config"]["note"] == XSS for r in page["rows"])
    trial = api(app, "/api/e/pbt/t/1")
    assert trial["config"]["api_key"] == "***" and trial["results_total"] == len(trial["results"]) > 0
    everything = json.dumps([api(app, p) for p in ("/api/e/pbt/summary", "/api/e/pbt/events", "/api/e/pbt/t/2",
                                                   "/api/e/pbt/trials", "/api/e/pbt/plots")])
    assert "hunter2-secret" not in everything
    events = api(app, "/api/e/pbt/events")
    assert events["lineage"], "PBT exploited nothing: the test shows nothing"
    assert all(row["source"] in (1, 2, 3, 4) and row["config"]["api_key"] == "***" for row in events["lineage"])
    assert {w["trial"] for w in events["why"]} == {1, 2, 3, 4}
    plots = api(app, "/api/e/pbt/plots?metric=loss")
    assert {"Best so far", "Parallel coordinates", "Trial timeline"} <= {p["title"] for p in plots["panels"]}


def falling(config: dict[str, Any], ctx: Any) -> Any:
    for step in range(1, 10):
        yield ({"loss": config["x"] + 1.0 / step}, 1.0, None)


def test_why_names_who_ended_each_trial_and_where(results_dir: Any) -> None:
    """The driver's stop events say who ended a trial: ASHA at a rung, the user's stop rule, the experiment's
    end; the why table says the same, not a guess from the iteration."""
    ts.run(falling, space={"x": ts.grid([0.0, 5.0, 6.0, 7.0, 0.01])}, metric="loss", mode="min", name="why",
           scheduler=ts.ASHA(max_t=9, grace_period=1, reduction_factor=3), stop=lambda tid, r: r["loss"] < 0.2,
           backend=SimulatedBackend({"cpu": 5}), verbose=0, storage_path=str(results_dir))
    why = {w["trial"]: w for w in api(make_app(str(results_dir)), "/api/e/why/events")["why"]}
    solved = why[1]  # loss < 0.2 from iteration 6; the stop may reach the trial one result later
    assert solved["iteration"] in (6, 7)
    assert solved["reason"] == f"met the stop rule (stop=) at iteration {solved['iteration']}"
    asha = [w for w in why.values() if w["reason"].startswith("stopped by ASHA")]
    assert asha, why  # the worse trials were cut at a rung (1 or 3)
    for w in asha:
        assert w["iteration"] in (1, 3) and w["reason"] == f"stopped by ASHA at its rung at iteration {w['iteration']}"
    assert not any("or a stop rule" in w["reason"] for w in why.values())


def test_pages_have_a_strict_csp_no_inline_script_and_escaped_names(finished: str) -> None:
    app = make_app(finished)
    status, headers, body = call(app, "/e/pbt")
    assert status == 200
    csp = headers["content-security-policy"][0]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    assert "frame-ancestors 'none'" in csp
    html = body.decode()
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []  # every script is a packaged file
    assert call(app, "/e/nope")[0] == 404
    assert call(app, "/e/..%2F..")[0] == 404
    for path in ("/static/../../../etc/passwd", "/static/report.py", "/static/README.md", "/e/pbt/../../x"):
        assert call(app, path)[0] == 404, path
    status, headers, js = call(app, "/static/dashboard.js")
    assert status == 200 and headers["content-type"][0].startswith("text/javascript")
    assert b"innerHTML" not in js  # user data goes through textContent only


def test_a_dashboard_started_for_a_notebook_may_be_framed_by_loopback_pages_only(finished: str) -> None:
    """tunesmith.dashboard.show() embeds the page in a notebook (a page on localhost): the dashboard it starts
    lets loopback origins frame it, and no other; a dashboard started otherwise refuses every frame."""
    from tunesmith import dashboard

    started = dashboard.start(finished, port=0, frame_ancestors=dashboard.NOTEBOOK_FRAME_ANCESTORS)
    try:
        app = started.app
        _status, headers, _body = call(app, "/")
        csp = headers["content-security-policy"][0]
        assert "frame-ancestors http://localhost:* http://127.0.0.1:*" in csp and "x-frame-options" not in headers
    finally:
        started.stop()
    _status, headers, _body = call(make_app(finished), "/")
    assert "frame-ancestors 'none'" in headers["content-security-policy"][0]
    assert headers["x-frame-options"] == ["DENY"]
    for bad in ("*", "http://localhost:*\n", "http://localhost:8888\nX-Injected: 1"):  # a newline: header injection
        with pytest.raises(ConfigError, match="frame_ancestors"):
            make_app(finished, frame_ancestors=(bad,))
    frame = dashboard.show(storage_path=finished)
    assert frame.url.startswith("http://127.0.0.1:") and "iframe" in frame._repr_html_()


def test_a_non_loopback_bind_needs_a_token_and_every_request_must_carry_it(finished: str,
                                                                          monkeypatch: Any) -> None:
    monkeypatch.delenv("TUNESMITH_DASHBOARD_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="--token"):
        make_app(finished, host="0.0.0.0")
    token = "s3cret-token-value"
    app = make_app(finished, host="0.0.0.0", token=token)
    for path in ("/", "/api/experiments", "/static/dashboard.js", "/api/e/pbt/t/1"):
        assert call(app, path, host="10.1.2.3:8788")[0] == 401, path
    assert call(app, "/api/experiments", headers={"X-Tunesmith-Token": "wrong-token-value"})[0] == 401
    assert call(app, "/api/experiments", headers={"X-Tunesmith-Token": token})[0] == 200
    status, headers, _ = call(app, f"/e/pbt?token={token}")
    assert status == 303 and headers["location"] == ["/e/pbt"]  # the token leaves the address bar
    cookie = headers["set-cookie"][0].split(";")[0]
    assert "HttpOnly" in headers["set-cookie"][0] and "SameSite=Strict" in headers["set-cookie"][0]
    assert call(app, "/api/experiments", headers={"Cookie": cookie})[0] == 200
    monkeypatch.setenv("TUNESMITH_DASHBOARD_TOKEN", token)
    assert call(make_app(finished, host="0.0.0.0"), "/", headers={"X-Tunesmith-Token": token})[0] == 200


def test_a_wrong_host_header_is_refused(finished: str) -> None:
    app = make_app(finished)
    for host in ("evil.example:8788", "evil.example", "127.0.0.1.evil.example", ""):
        assert call(app, "/api/experiments", host=host)[0] in (400, 403), host
    for host in ("127.0.0.1:8788", "localhost:8788", "[::1]:8788", "127.0.0.2:8788", "LOCALHOST"):  # any loopback
        assert call(app, "/api/experiments", host=host)[0] == 200, host
    proxied = make_app(finished, allowed_hosts=("tune.internal",))
    assert call(proxied, "/api/experiments", host="tune.internal")[0] == 200


def _csrf(app: Any) -> tuple[str, str]:
    status, headers, body = call(app, "/e/pbt")
    csrf = re.search(r'data-csrf="([0-9a-f]+)"', body.decode()).group(1)  # type: ignore[union-attr]
    return headers["set-cookie"][0].split(";")[0], csrf


def test_control_is_opt_in_and_needs_the_sessions_csrf_token(finished: str) -> None:
    body = json.dumps({"action": "stop_experiment"}).encode()
    json_type = {"Content-Type": "application/json"}
    off = make_app(finished)
    cookie, csrf = _csrf(off)
    assert call(off, "/api/e/pbt/control", method="POST", body=body,
                headers={**json_type, "Cookie": cookie, "X-Tunesmith-CSRF": csrf})[0] == 403
    app = make_app(finished, allow_control=True)
    cookie, csrf = _csrf(app)
    other_cookie, _ = _csrf(app)
    assert call(app, "/api/e/pbt/control", method="POST", body=body, headers={**json_type, "Cookie": cookie})[0] == 403
    assert call(app, "/api/e/pbt/control", method="POST", body=body,
                headers={**json_type, "Cookie": other_cookie, "X-Tunesmith-CSRF": csrf})[0] == 403
    assert call(app, "/api/e/pbt/control", method="GET")[0] == 405
    ok = {**json_type, "Cookie": cookie, "X-Tunesmith-CSRF": csrf}
    bad = json.dumps({"action": "rm -rf"}).encode()
    assert call(app, "/api/e/pbt/control", method="POST", body=bad, headers=ok)[0] == 400
    # a finished experiment takes no commands: nothing is written
    assert call(app, "/api/e/pbt/control", method="POST", body=body, headers=ok)[0] == 409
    assert not os.path.exists(commands_dir(os.path.join(finished, "pbt")))


def test_curves_append_what_is_new_and_replace_what_a_restart_superseded(tmp_path: Any) -> None:
    folder = tmp_path / "root" / "exp"
    store = Store(str(folder / "experiment.db"), create=True)
    with store.transaction() as db:
        store.set_meta(db, "spec", {"metric": "loss", "mode": "min"})
        store.insert_trial(db, 1, {"x": 1}, {}, "RUNNING")
        store.insert_trial(db, 2, {"x": 2}, {}, "RUNNING")
        store.append_results(db, [(1, i, float(i), time.time(), dumps({"loss": 10.0 - i})) for i in range(1, 6)])
        store.append_results(db, [(2, i, float(i), time.time(), dumps({"loss": 1.0})) for i in range(1, 5001)])
        store.update_trial(db, 1, iteration=5)
        store.update_trial(db, 2, iteration=5000)
    store.publish()
    app = make_app(str(tmp_path / "root"))
    first = api(app, "/api/e/exp/curves?metric=loss&t=1,2")
    one, two = first["trials"]["1"], first["trials"]["2"]
    assert one["mode"] == "replace" and one["x"] == [1, 2, 3, 4, 5] and one["y"] == [9.0, 8.0, 7.0, 6.0, 5.0]
    assert len(two["x"]) <= 1000 and two["x"][-1] == 5000  # thinned, the last point kept
    cursor = "1:{}:{}".format(*one["cursor"])
    assert api(app, f"/api/e/exp/curves?metric=loss&t={cursor}")["trials"]["1"]["mode"] == "same"
    with store.transaction() as db:
        store.append_results(db, [(1, i, float(i), time.time(), dumps({"loss": 10.0 - i})) for i in (6, 7)])
        store.update_trial(db, 1, iteration=7)
    grown = api(app, f"/api/e/exp/curves?metric=loss&t={cursor}")["trials"]["1"]
    assert grown["mode"] == "append" and grown["x"] == [6, 7]
    cursor = "1:{}:{}".format(*grown["cursor"])
    # paused at 7 (a poll sees it waiting), then restarted from the checkpoint at 3 with new results up to 8:
    # what the page showed after 3 is replaced
    with store.transaction() as db:
        store.log_event(db, "pause", 1, {"iteration": 7})
        store.update_trial(db, 1, status="PAUSED")
    waiting = api(app, f"/api/e/exp/curves?metric=loss&t={cursor}")["trials"]["1"]
    assert waiting["mode"] == "replace" and waiting["x"] == list(range(1, 8))
    cursor = "1:{}:{}".format(*waiting["cursor"])
    with store.transaction() as db:
        store.truncate_results(db, 1, 3)
        store.update_trial(db, 1, status="RUNNING", iteration=3)
        store.append_results(db, [(1, i, float(i), time.time(), dumps({"loss": 100.0 + i})) for i in range(4, 9)])
        store.update_trial(db, 1, iteration=8)
    redone = api(app, f"/api/e/exp/curves?metric=loss&t={cursor}")["trials"]["1"]
    assert redone["mode"] == "replace" and redone["x"] == list(range(1, 9))
    assert redone["y"] == [9.0, 8.0, 7.0, 104.0, 105.0, 106.0, 107.0, 108.0]
    store.close()


def slow_train(config: dict[str, Any]) -> None:
    for i in range(2000):
        ts.report({"loss": config["x"] / (i + 1)})
        time.sleep(0.01)


def test_the_driver_applies_valid_commands_refuses_others_and_logs_both(results_dir: Any) -> None:
    """A real run: a command file stops one trial within seconds; a malformed file and a link are refused,
    logged and removed; the dashboard's app never wrote the store."""
    exp = os.path.join(str(results_dir), "ctl")
    outside = results_dir.parent / "outside.json"
    outside.write_text(json.dumps({"action": "stop_experiment"}))
    sent: dict[str, float] = {}

    def control() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                s = Store(os.path.join(exp, "experiment.db"), readonly=True)
            except Exception:  # noqa: BLE001 - not created yet
                time.sleep(0.05)
                continue
            try:
                if any(t["iteration"] >= 5 for t in s.trials()) and len(s.trials()) == 2:
                    break
            finally:
                s.close()
            time.sleep(0.05)
        folder = commands_dir(exp)
        write_command(exp, {"action": "add_samples", "n": 3})
        with open(os.path.join(folder, "0" * 32 + ".json"), "w") as f:
            f.write('{"action": "stop_trial", "trial_id": "1; rm"}')
        os.symlink(outside, os.path.join(folder, "1" * 32 + ".json"))
        sent["t"] = time.monotonic()
        write_command(exp, {"action": "stop_trial", "trial_id": 1})
        while time.monotonic() < deadline:
            s = Store(os.path.join(exp, "experiment.db"), readonly=True)
            try:
                if s.trials()[0]["status"] == "TERMINATED":
                    sent["stopped_after"] = time.monotonic() - sent["t"]
                    break
            finally:
                s.close()
            time.sleep(0.05)
        write_command(exp, {"action": "stop_experiment"})

    helper = threading.Thread(target=control, daemon=True)
    helper.start()
    t0 = time.monotonic()
    result = ts.run(slow_train, space={"x": ts.grid([1.0, 2.0])}, metric="loss", mode="min", verbose=0, name="ctl",
                    time_budget_s=25)
    helper.join(5)
    stopped = result.trials[0]
    assert stopped.status.value == "TERMINATED" and stopped.iteration < 2000
    assert sent["stopped_after"] < 5
    assert time.monotonic() - t0 < 20  # ended by the stop_experiment command, not the time budget
    events = [(kind, tid, data) for _s, _t, kind, tid, data in result._store.events() if kind == "command"]
    applied = [e for e in events if e[2]["applied"]]
    assert [(e[1], e[2]["action"]) for e in applied] == [(None, "add_samples"), (1, "stop_trial"),
                                                         (None, "stop_experiment")]
    refused = [e[2]["detail"] for e in events if not e[2]["applied"]]
    assert any("trial_id must be" in d for d in refused)
    assert any("link" in d or "cannot be opened" in d for d in refused)
    assert os.listdir(commands_dir(exp)) == []  # every file looked at is gone
    assert outside.exists()  # the link was removed, not its target
    assert result.trials[1].status.value == "TERMINATED"
    stops = {tid: data["reason"] for _s, _t, kind, tid, data in result._store.events() if kind == "stop"}
    assert stops.pop(1) == "dashboard" and set(stops.values()) == {"experiment"}  # no scheduler's early stop


def odd_train(config: dict[str, Any]) -> None:
    for i in range(3):  # a non-ASCII metric name (JSON stores it escaped), NaN beside the objective, an ESC in a name
        diverged = i == 1 and config["x"] == 1
        ts.report({"précision": config["x"] + i, "loss": 1.0 / (i + 1), "grad_norm": math.nan if diverged else 1.0,
                   "\x1bq": i})


def test_odd_but_legal_configs_names_and_values_are_served(results_dir: Any) -> None:
    """A config value None or of mixed types, NaN in results, metric names SQLite's JSON paths cannot spell: the
    experiment list, the summary's best and the curves answer, with the values the trials reported."""
    space = {"x": ts.grid([1, 5, 3]), "clip": ts.grid([None, 1.0]), "batch": ts.grid(["auto", 32])}
    rs = ts.run(odd_train, space=space, metric="précision", mode="max", verbose=0, name="odd")
    best = next(t.id for t in rs.trials if t.config["x"] == 5)
    loaded = ts.load(rs.path)  # the finished store, read by SQLite where it can
    assert loaded.get_best(scope="all").id == best and [t.id for t in loaded.top(1, scope="all")] == [best]
    assert loaded.get_best().id == best
    assert [t.config["x"] for t in loaded.top(3)] == [5, 5, 5]
    app = make_app(str(results_dir))
    (row,) = api(app, "/api/experiments")["experiments"]
    assert row["status"] != "unreadable" and row["best"]["value"] == 7
    assert row["best"]["trial"] in {t.id for t in rs.trials if t.config["x"] == 5}
    summary = api(app, "/api/e/odd/summary")
    assert summary["best"] == row["best"] and set(summary["params"]) == {"x", "clip", "batch"}
    assert {"précision", "loss", "grad_norm", "\x1bq"} <= set(summary["metrics"])
    diverged = next(t.id for t in rs.trials if t.config["x"] == 1)
    for tid, metric, expected in ((best, "précision", [5, 6, 7]), (best, "\x1bq", [0, 1, 2]),
                                  (diverged, "précision", [1, 2, 3]), (diverged, "loss", [1.0, 0.5, 1 / 3]),
                                  (diverged, "grad_norm", [1.0, None, 1.0])):
        curve = api(app, f"/api/e/odd/curves?metric={quote(metric)}&t={tid}")["trials"][str(tid)]
        assert curve["x"] == [1, 2, 3] and curve["y"] == pytest.approx(expected), metric


def test_the_table_pages_and_sorts_in_sqlite_as_it_does_in_python(tmp_path: Any) -> None:
    """The default views (sorted by id, status, iteration or failures, no text filter) are paged by SQLite; the
    same page as the general path's: ties by id, statuses filtered, configs masked."""
    folder = tmp_path / "root" / "exp"
    store = Store(str(folder / "experiment.db"), create=True)
    statuses = ["TERMINATED", "ERROR", "RUNNING", "PAUSED"]
    with store.transaction() as db:
        store.set_meta(db, "spec", {"metric": "loss", "mode": "min"})
        for tid in range(1, 31):
            store.insert_trial(db, tid, {"x": tid, "api_key": "hunter2-secret"}, {}, statuses[tid % 4])
            store.update_trial(db, tid, iteration=tid % 5, num_failures=tid % 3)
    store.publish()
    store.close()
    app = make_app(str(tmp_path / "root"))
    index = {"id": "id", "status": "status", "iteration": "iteration", "failures": "failures"}
    everything = api(app, "/api/e/exp/trials?limit=200")["rows"]
    for sort in ("id", "-id", "status", "-status", "iteration", "-iteration", "failures", "-failures"):
        for status in ("", "ERROR,PAUSED"):
            rows = [r for r in everything if not status or r["status"] in status.split(",")]
            field = index[sort.lstrip("-")]
            expected = sorted(rows, key=lambda r, f=field: r[f], reverse=sort.startswith("-"))[5:12]
            page = api(app, f"/api/e/exp/trials?sort={sort}&status={status}&offset=5&limit=7")
            assert page["total"] == len(rows)
            assert [r["id"] for r in page["rows"]] == [r["id"] for r in expected], (sort, status)
            assert all(r["config"]["api_key"] == "***" for r in page["rows"])


def test_curves_and_plots_take_any_reported_counter_as_x_and_a_final(tmp_path: Any) -> None:
    """The RL views on the page: curves against ``timesteps`` (cursors still by iteration), and the report's
    panels drawn with the chosen x and "final"."""
    folder = tmp_path / "root" / "exp"
    store = Store(str(folder / "experiment.db"), create=True)
    with store.transaction() as db:
        store.set_meta(db, "spec", {"metric": "reward", "mode": "max"})
        for tid in (1, 2):
            store.insert_trial(db, tid, {"lr": 0.1 * tid, "seed": 0}, {}, "TERMINATED")
            store.append_results(db, [(tid, i, float(i), time.time(), dumps({"reward": tid * i, "timesteps": 256 * i}))
                                      for i in range(1, 6)])
            store.update_trial(db, tid, iteration=5, last_result=dumps({"reward": tid * 5, "timesteps": 1280}))
    store.publish()
    store.close()
    app = make_app(str(tmp_path / "root"))
    one = api(app, "/api/e/exp/curves?metric=reward&x=timesteps&t=1")["trials"]["1"]
    assert one["x"] == [256, 512, 768, 1024, 1280] and one["y"] == [1, 2, 3, 4, 5] and one["cursor"][0] == 5
    assert api(app, "/api/e/exp/curves?metric=reward&x=timesteps&t=1:5:1")["trials"]["1"]["mode"] == "same"
    plots = api(app, "/api/e/exp/plots?metric=reward&x=timesteps&final=best")
    assert plots["x"] == "timesteps" and plots["final"] == "best"
    assert call(app, "/api/e/exp/plots?metric=reward&final=median")[0] == 400
    assert call(app, "/api/e/exp/curves?metric=reward&x=" + "a" * 300 + "&t=1")[0] == 400


def tail_train(config: dict[str, Any]) -> None:
    from tunesmith.dashboard._data import LOG_TAIL_BYTES

    line = f"\rstep using key {config['api_key']} "  # a progress bar: one long line, no newline
    print(line * (2 * LOG_TAIL_BYTES // len(line) + 7) + config["pad"], end="", flush=True)  # pad: where it cuts
    ts.report({"x": 1})


def test_the_log_tail_cut_inside_a_secret_shows_none_of_it(results_dir: Any) -> None:
    """The tail starts wherever the last 32 KiB start: at a line's start (after a newline or a carriage return),
    never inside a secret whose start it cut off (the rest of it was shown)."""
    secret = "sk-SUPERSECRET123"
    for pad in (1, 5, 9, 13):  # the cut falls inside the secret at its start, middle and end
        name = f"tail{pad}"
        ts.run(tail_train, space={"api_key": secret, "pad": "x" * pad}, verbose=0, name=name)
        log = api(make_app(str(results_dir)), f"/api/e/{name}/t/1")["log"]
        assert log and "***" in log
        assert not any(secret[i:] in log for i in range(len(secret) - 3)), (pad, log[:80])


def test_a_post_from_another_origin_is_refused_and_one_without_origin_is_not(finished: str) -> None:
    """The Origin header, when a browser sends one, must be the dashboard's own scheme://host:port (the Host the
    request names); a request without one (curl, a script) goes on to the other checks."""
    body = json.dumps({"action": "stop_experiment"}).encode()
    app = make_app(finished, allow_control=True)
    cookie, csrf = _csrf(app)
    ok = {"Content-Type": "application/json", "Cookie": cookie, "X-Tunesmith-CSRF": csrf}
    for origin in ("http://evil.example", "http://127.0.0.1:9999", "https://127.0.0.1:8788", "http://localhost:8788",
                   "null", "http://127.0.0.1:8788/x"):
        status, headers, out = call(app, "/api/e/pbt/control", method="POST", body=body,
                                    headers={**ok, "Origin": origin})
        assert status == 403 and headers["content-type"] == ["application/json"], origin
        assert "Origin" in json.loads(out)["error"] and "http://127.0.0.1:8788" in json.loads(out)["error"], out
    # its own origin, or none: past the origin check (to the finished experiment's 409)
    for extra in ({"Origin": "http://127.0.0.1:8788"}, {"Origin": "HTTP://127.0.0.1:8788"}, {}):
        assert call(app, "/api/e/pbt/control", method="POST", body=body, headers={**ok, **extra})[0] == 409, extra
    status, _h, _b = call(app, "/api/e/pbt/control", method="POST", body=body, host="localhost",
                          headers={**ok, "Origin": "http://localhost:80"})
    assert status == 409  # the default port, written or not, is the same origin


def test_a_trial_page_limit_outside_1_to_200_is_a_400_naming_it(finished: str) -> None:
    app = make_app(finished)
    for limit in ("0", "201", "999999"):
        status, _h, out = call(app, f"/api/e/pbt/trials?limit={limit}")
        assert status == 400, limit
        error = json.loads(out)["error"]
        assert error == f"limit must be a whole number from 1 to 200 (trials a page), got {limit}", error
    for limit, rows in (("1", 1), ("200", 4)):
        assert len(api(app, f"/api/e/pbt/trials?limit={limit}")["rows"]) == rows


def test_folders_renamed_to_any_name_are_listed_and_served_and_links_are_not(results_dir: Any) -> None:
    """A folder renamed by hand (spaces, unicode, quotes, markup) is listed and served through its percent-encoded
    address, its name data in the JSON and escaped in the page; a link to an experiment folder is never followed."""
    import shutil
    import urllib.request

    import tunesmith.dashboard

    ts.run(odd_train, space={"x": 1, "clip": None, "batch": 32}, metric="loss", mode="min", verbose=0, name="base")
    odd = ["my exp", "café 日本", "q\"uo'te <b>&amp;", ".old", "-v2", "100%25"]
    for name in odd:
        shutil.copytree(results_dir / "base", results_dir / name)
    os.symlink(results_dir / "base", results_dir / "linked exp")
    os.symlink(results_dir / "base", results_dir / "linked")
    board = tunesmith.dashboard.start(str(results_dir), port=0)
    try:
        def get(path: str) -> tuple[int, bytes]:
            try:
                with urllib.request.urlopen(board.url.rstrip("/") + path) as answer:
                    return answer.status, answer.read()
            except urllib.error.HTTPError as e:
                return e.code, e.read()

        status, out = get("/api/experiments")
        assert status == 200
        assert sorted(e["name"] for e in json.loads(out)["experiments"]) == sorted(["base", *odd])
        for name in odd:
            status, out = get(f"/api/e/{quote(name, safe='')}/summary")
            assert status == 200 and json.loads(out)["name"] == name, (name, out)
            status, out = get(f"/api/e/{quote(name, safe='')}/t/1")
            assert status == 200 and json.loads(out)["id"] == 1, (name, out)
            status, out = get(f"/e/{quote(name, safe='')}")
            page = out.decode()
            assert status == 200 and f'data-experiment="{quote(name, safe="")}"' in page, (name, page)  # as addressed
            assert f'data-shown="{html_escape(name)}"' in page, (name, page)
            assert f"<title>{html_escape(name)} - tunesmith</title>" in page, page
        assert "<b>" not in get(f"/e/{quote(odd[2], safe='')}")[1].decode()
        for name in ("linked exp", "linked"):
            assert get(f"/api/e/{quote(name, safe='')}/summary")[0] == 404, name
        assert get("/api/e/%2e%2e/summary")[0] == 404 and get("/api/e/%FF/summary")[0] == 404
    finally:
        board.stop()


def html_escape(text: str) -> str:
    import html

    return html.escape(text, quote=True)
