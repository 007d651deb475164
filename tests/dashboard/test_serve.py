"""`tunesmith dashboard` as a user starts it (a real process, a real socket), a trial page over a real local run
(its output.log, checkpoints and traceback), and the extend_time command applied by a running driver."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any

import tunesmith as ts
from tunesmith import dashboard
from tunesmith.dashboard._commands import write_command
from tunesmith.store.sqlite import Store


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def noisy(config: dict[str, Any]) -> None:
    print(f"step output with {config['api_key']} and <b>markup</b>", flush=True)
    for step in range(1, 4):
        ts.report({"loss": 1.0 / step}, checkpoint=ts.Checkpoint.from_state({"step": step}))
    if config["fail"]:
        raise ValueError(f"boom with {config['api_key']}")


def test_the_command_prints_its_url_first_serves_the_experiments_and_ends_on_ctrl_c(results_dir: Any) -> None:
    ts.run(noisy, {"fail": False, "api_key": "hunter2-secret"}, metric="loss", mode="min", name="served", verbose=0)
    cmd = [sys.executable, "-m", "tunesmith.cli", "dashboard", "--port", "0", "--storage-path", str(results_dir)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline() if proc.stdout else ""
        match = re.fullmatch(r"tunesmith dashboard: http://127\.0\.0\.1:(\d+)/\n", first)
        assert match, (first, proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        listing = get_json(f"http://127.0.0.1:{match.group(1)}/api/experiments")["experiments"]
        assert [e["name"] for e in listing] == ["served"] and listing[0]["trials"] == 1
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "Traceback" not in err, err
    # any other address needs a token: refused before anything is bound
    refused = subprocess.run([*cmd, "--host", "0.0.0.0"], capture_output=True, text=True, timeout=60,
                             env={k: v for k, v in os.environ.items() if k != "TUNESMITH_DASHBOARD_TOKEN"})
    assert refused.returncode == 2 and "token" in refused.stderr and refused.stdout == "", refused


def test_the_trial_page_shows_its_log_tail_checkpoints_and_traceback_masked(results_dir: Any) -> None:
    result = ts.run(noisy, {"fail": True, "api_key": "hunter2-secret"}, metric="loss", mode="min", name="page",
                    verbose=0)
    assert result.trials[0].status == ts.TrialStatus.ERROR
    served = dashboard.start(str(results_dir), port=0)
    try:
        page = get_json(served.url + "api/e/page/t/1")
    finally:
        served.stop()
    assert "ValueError: boom with ***" in page["error"] and "hunter2" not in json.dumps(page)
    assert "step output with *** and <b>markup</b>" in page["log"]  # text: the page puts it in textContent
    assert [c["iteration"] for c in page["checkpoints"]] == [1, 2, 3]
    assert all(not os.path.isabs(c["path"]) for c in page["checkpoints"])  # relative to the experiment


def waits(config: dict[str, Any]) -> None:
    while True:
        time.sleep(0.02)  # a step's work
        ts.report({"loss": 1.0})


def test_extend_time_from_the_page_lengthens_a_running_experiments_budget(results_dir: Any) -> None:
    exp = os.path.join(str(results_dir), "budget")

    def extend() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if os.path.exists(os.path.join(exp, "experiment.db")):
                s = Store(os.path.join(exp, "experiment.db"), readonly=True)
                try:
                    if any(t["iteration"] >= 1 for t in s.trials()):
                        break
                finally:
                    s.close()
            time.sleep(0.05)
        write_command(exp, {"action": "extend_time", "seconds": 4})

    helper = threading.Thread(target=extend, daemon=True)
    helper.start()
    t0 = time.monotonic()
    result = ts.run(waits, metric="loss", mode="min", name="budget", verbose=0, time_budget_s=4)
    helper.join(5)
    took = time.monotonic() - t0
    commands = [d for _s, _t, kind, _tid, d in result._store.events() if kind == "command"]
    assert [(c["action"], c["applied"], c["detail"]) for c in commands] == [("extend_time", True,
                                                                            "time budget now 8 s")]
    assert took >= 8 - 0.5  # the budget it ran under was the extended one (a run stops within a tick of it)
