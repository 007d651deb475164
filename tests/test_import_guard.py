"""A training script without ``if __name__ == "__main__":`` around its ``ts.run`` call, loaded by the command line
(``tunesmith run train.py:train``, the ``--fn train.py:train`` a resume message suggests) or imported by a worker to
load the training function: its ``ts.run`` ran at import, a whole experiment, in the command's process and again in
every worker, whose own workers imported it again (processes without end). Now ``run`` called while tunesmith
imports the user's code is a ConfigError that says to guard it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import tunesmith as ts

pytestmark = pytest.mark.timeout(120)

SCRIPT = textwrap.dedent("""
    import os
    import tunesmith as ts

    def train(config):
        ts.report({"loss": config.get("x", 1)})

    if os.environ.get("RUN_AT_IMPORT") == "1":
        with open(os.environ["IMPORT_LOG"], "a") as f:
            f.write(f"{os.getpid()}\\n")
        os.environ["RUN_AT_IMPORT"] = "0"  # one level at most (without the guard, each level's workers ran another)
        ts.run(train, space={"x": ts.grid([1, 2])}, verbose=0, storage_path=os.environ["NESTED_STORAGE"])
""")


@pytest.fixture
def script(tmp_path, monkeypatch):
    folder = tmp_path / "code"
    folder.mkdir()
    path = folder / "noguard_train.py"
    path.write_text(SCRIPT)
    monkeypatch.setenv("IMPORT_LOG", str(tmp_path / "imports.log"))
    monkeypatch.setenv("NESTED_STORAGE", str(tmp_path / "nested"))
    return path


def test_the_command_line_refuses_a_script_that_runs_an_experiment_when_imported(script, tmp_path):
    env = {**os.environ, "RUN_AT_IMPORT": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    tunesmith = os.path.join(os.path.dirname(sys.executable), "tunesmith")
    res = subprocess.run([tunesmith, "run", f"{script}:train", "--storage-path", str(tmp_path / "results")],
                         capture_output=True, text=True, timeout=100, env=env, cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    assert f"{script}: importing it raised ConfigError: run() was called while" in res.stderr, res.stderr
    assert 'if __name__ == "__main__":' in res.stderr, res.stderr
    assert not (tmp_path / "nested").exists()  # the import ran no experiment
    assert not (tmp_path / "results").exists()
    assert len((tmp_path / "imports.log").read_text().split()) == 1  # imported once, by the command alone


def test_a_worker_importing_the_training_functions_module_runs_no_experiment(script, tmp_path, monkeypatch,
                                                                           results_dir):
    monkeypatch.syspath_prepend(str(script.parent))
    import noguard_train  # the driver imports it as a user's module is, without running the experiment

    monkeypatch.setenv("RUN_AT_IMPORT", "1")  # ... which the workers' imports do
    result = ts.run(noguard_train.train, space={"x": 1}, verbose=0)
    (trial,) = result.trials
    assert trial.status is ts.TrialStatus.ERROR, trial.status
    assert "could not load the training function" in trial.error, trial.error
    assert "run() was called while the training function's module (in a worker" in trial.error, trial.error
    assert 'if __name__ == "__main__":' in trial.error, trial.error
    assert not (tmp_path / "nested").exists()  # no experiment ran inside a worker
    sys.modules.pop("noguard_train", None)
