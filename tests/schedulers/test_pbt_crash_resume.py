"""A PBT/PB2 driver killed (SIGKILL: a crash, the OOM killer) right after the scheduler decided an exploit, then
resumed, on real worker processes and one slot (time-sharing: the trials take turns, so the order of everything is
the scheduler's): the resumed run ends as the uninterrupted one, with the same lineage, iterations and best trial.

The driver holds an exploit until the trial's worker has stopped and stores it then (``Controller._hold``); a crash
in between left the result stored and the exploit nowhere. The resume replayed that result to the scheduler as
decided (its random draws and the source's perturbation point taken) and restarted the trial with its old config:
the exploit was lost and every later draw shifted. Now the last result of a trial the crash left RUNNING is decided
again by the resumed driver, as the results an interruption stopped are."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

import tunesmith as ts

DRIVER = textwrap.dedent("""
    import json, os, signal, sys
    import tunesmith as ts

    def train(config):
        checkpoint = ts.get_checkpoint()
        state = checkpoint.load() if checkpoint is not None else {"w": 0.0, "i": 0}
        for i in range(state["i"], 12):
            state = {"w": state["w"] + config["lr"] * (1 - state["w"]), "i": i + 1}
            ts.report({"loss": 1 - state["w"] + config["noise"] * 0.01},
                      checkpoint=ts.Checkpoint.from_state(dict(state)))

    class KillAt(ts.Callback):
        # the driver dies right after it decided on trial `tid`'s result `iteration`
        def __init__(self, tid, iteration):
            self.tid, self.iteration = tid, iteration

        def on_trial_results(self, trial, results):
            if trial.id == self.tid and any(r.iteration == self.iteration for r in results):
                os.kill(os.getpid(), signal.SIGKILL)

    kind, folder, tid, iteration, resume = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    if kind == "PB2":
        scheduler = ts.PB2(perturbation_interval=4, hyperparam_bounds={"lr": [1e-3, 0.5]}, seed=3)
    else:
        scheduler = ts.PBT(perturbation_interval=4, hyperparam_mutations={"lr": ts.loguniform(1e-3, 0.5)}, seed=3)
    r = ts.run(train, {"lr": ts.loguniform(1e-3, 0.5), "noise": ts.uniform(0, 1)}, metric="loss", mode="min",
               num_samples=6, scheduler=scheduler, seed=7, name="pbt", storage_path=folder, verbose=0,
               max_concurrent=1, resume=resume == "1", callbacks=[KillAt(tid, iteration)])
    print(json.dumps({
        "lineage": [[e["trial_id"], e["iteration"], e["source"], e["source_iteration"]] for e in r.lineage()],
        "iterations": {t.id: t.iteration for t in r.trials},
        "history": {t.id: [h["loss"] for h in r.history(t.id, all_generations=True)] for t in r.trials},
        "best": [r.best.id, r.best.config]}))
""")


def _drive(script: str, kind: str, folder: Any, kill_at: tuple[int, int], resume: bool) -> tuple[int, Any]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(ts.__file__)), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, script, kind, str(folder), *map(str, kill_at), "1" if resume else "0"],
                          capture_output=True, text=True, env=env, timeout=300)
    out = json.loads(done.stdout.splitlines()[-1]) if done.returncode == 0 else done.stderr[-2000:]
    return done.returncode, out


@pytest.mark.parametrize("kind", ["PBT", "PB2"])
def test_a_driver_killed_right_after_an_exploit_decision_resumes_as_the_uninterrupted_run(kind, tmp_path):
    script = str(tmp_path / "driver.py")
    with open(script, "w") as f:
        f.write(DRIVER)
    rc, whole = _drive(script, kind, tmp_path / "whole", (0, 0), False)
    assert rc == 0, whole
    assert len(whole["lineage"]) >= 2, whole["lineage"]  # it exploits
    # killed right after each of the first two exploit decisions (a trial's result at a perturbation point)
    for trial_id, iteration, _source, _at in whole["lineage"][:2]:
        folder = tmp_path / f"cut_{trial_id}_{iteration}"
        rc, out = _drive(script, kind, folder, (trial_id, iteration), False)
        assert rc == -9, (rc, out)  # SIGKILL: it died there
        rc, resumed = _drive(script, kind, folder, (0, 0), True)
        assert rc == 0, resumed
        assert resumed["lineage"] == whole["lineage"], (trial_id, iteration)
        assert resumed["iterations"] == whole["iterations"]
        assert resumed["best"] == whole["best"]
        assert resumed["history"] == whole["history"]
