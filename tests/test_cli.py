"""The command line: every command through click's CliRunner, and once as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from typing import Any

import pytest
from click.testing import CliRunner
from proc_helpers import in_a_terminal

import tunesmith as ts
from tunesmith.cli import cli, load_target

pytestmark = pytest.mark.timeout(120)

TRAIN = textwrap.dedent("""
    import tunesmith as ts

    def train(config):
        for i in range(1, 4):
            ts.report({"loss": config["lr"] * 10 / i + config["seed"], "acc": i})

    def bad(config):
        ts.report({"loss": 1.0})
        raise ValueError("boom in the trial")

    if __name__ == "__main__":
        raise SystemExit("the __main__ block must not run")
""")
SPACE = "lr: {loguniform: [1e-3, 1e-1]}\nseed: {grid: [0, 1]}\nopt: {name: adam}\n"


@pytest.fixture(autouse=True)
def _restore_import_state() -> Any:
    """Loading a training file adds a module and a sys.path entry; keep tests independent."""
    path = list(sys.path)
    yield
    for name in [m for m in sys.modules if m.startswith(("train_", "mod_", "resumable_"))]:
        del sys.modules[name]
    sys.path[:] = path


@pytest.fixture
def project(tmp_path: Any) -> Any:
    """A folder with a training file (unique module name) and a space file."""
    module = f"train_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(TRAIN)
    (tmp_path / "space.yaml").write_text(SPACE)
    return tmp_path, module


def invoke(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def run_ok(project: Any, results: Any, name: str = "exp") -> Any:
    folder, module = project
    res = invoke("run", f"{folder / module}.py:train", "--space", str(folder / "space.yaml"), "--metric", "loss",
                 "--mode", "min", "--num-samples", "2", "--name", name, "--storage-path", str(results),
                 "--stop", "training_iteration=2", "--verbose", "0", "--seed", "1")
    assert res.exit_code == 0, res.output
    return res


@pytest.mark.parametrize("command", [[], ["run"], ["ls"], ["show"], ["report"], ["resume"], ["trust"], ["rm"]])
def test_help_for_every_command(command: list[str]) -> None:
    res = invoke(*command, "--help")
    assert res.exit_code == 0
    assert res.output.startswith("Usage: ")


def test_run_a_file_then_ls_show_report(project: Any, results_dir: Any) -> None:
    res = run_ok(project, results_dir)
    assert "experiment exp: 4 trials (4 terminated)" in res.output
    rs = ts.load(str(results_dir / "exp"))
    assert len(rs.trials) == 4 and all(t.iteration == 2 for t in rs.trials)  # --stop applied
    assert {t.config["seed"] for t in rs.trials} == {0, 1} and rs.trials[0].config["opt"] == {"name": "adam"}
    assert f"best {rs.best.name} by its last result: loss=" in res.output  # which "best" it means

    res = invoke("ls", "--storage-path", str(results_dir))
    assert res.exit_code == 0
    assert "exp" in res.output and "finished" in res.output and f"({rs.best.name})" in res.output
    listed = json.loads(invoke("ls", "--storage-path", str(results_dir), "--json").output)
    assert [(e["name"], e["status"], e["trials"]) for e in listed] == [("exp", "finished", 4)]
    assert listed[0]["best"]["value"] == rs.best.metrics["loss"]

    shown = json.loads(invoke("show", "exp", "--storage-path", str(results_dir), "--json").output)
    losses = [t["last_result"]["loss"] for t in shown["trials"]]
    assert losses == sorted(losses)  # default: best first
    assert shown["trials"][0]["name"] == rs.best.name
    shown = json.loads(invoke("show", "exp", "--storage-path", str(results_dir), "--json", "--sort=-lr",
                              "--limit", "3").output)
    lrs = [t["config"]["lr"] for t in shown["trials"]]
    assert len(lrs) == 3 and lrs == sorted(lrs, reverse=True)
    res = invoke("show", "exp", "--storage-path", str(results_dir))
    assert res.exit_code == 0 and "trial_00001" in res.output and "opt/name" in res.output
    assert "best first by each trial's last loss (min)" in res.output
    res = invoke("show", "exp", "--storage-path", str(results_dir), "--sort", "nothing")
    assert res.exit_code == 2 and "nothing" in res.output

    out = results_dir / "r.html"
    res = invoke("report", "exp", "--storage-path", str(results_dir), "-o", str(out), "--pareto", "loss:min,acc:max")
    assert res.exit_code == 0, res.output
    assert "Pareto front" in res.output and out.exists()
    assert "Parameter sensitivity" not in res.output  # the only grid dimension is the seed
    assert "Parameter importance" in res.output
    assert out.read_text().count('class="plot"') == 7
    res = invoke("report", "exp", "--storage-path", str(results_dir), "--pareto", "loss")
    assert res.exit_code == 2 and "--pareto" in res.output


def test_report_x_axis_is_any_reported_counter(project: Any, results_dir: Any) -> None:
    run_ok(project, results_dir)
    out = results_dir / "x.html"
    res = invoke("report", "exp", "--storage-path", str(results_dir), "-o", str(out), "--x", "time_total_s",
                 "--final", "mean_last")
    assert res.exit_code == 0, res.output
    assert '"title":{"text":"time_total_s"}' in out.read_text()  # the learning curves' x axis
    res = invoke("report", "exp", "--storage-path", str(results_dir), "--x", "episodes")
    assert res.exit_code == 2 and "'episodes'" in res.output


def test_report_of_a_metric_no_trial_reported_is_a_usage_error(project: Any, results_dir: Any) -> None:
    """As ``--x``: a typo in ``--metric`` or ``--pareto`` names what the trials reported, exit 2, no file."""
    run_ok(project, results_dir)
    out = results_dir / "typo.html"
    for option in (["--metric", "los"], ["--pareto", "loss:min,acc_:max"]):
        res = invoke("report", "exp", "--storage-path", str(results_dir), "-o", str(out), *option)
        assert res.exit_code == 2, res.output
        assert repr(option[1].split(",")[-1].split(":")[0]) in res.output and "'acc', 'loss'" in res.output
        assert not out.exists()


def test_a_report_or_export_path_that_cannot_be_written_is_a_usage_error_naming_it(project: Any, results_dir: Any,
                                                                                     tmp_path: Any) -> None:
    """A file where a folder is needed, or a folder that cannot be made: exit 2, the option and the path named,
    and no temporary file name of ours in the message."""
    run_ok(project, results_dir)
    (tmp_path / "f").write_text("a file")
    for args, option in ((["report", "-o", str(tmp_path / "f" / "r.html")], "-o"),
                         (["report", "-o", "/proc/r.html"], "-o"),
                         (["export", "--to", str(tmp_path / "f" / "out")], "--to")):
        res = invoke(*args[:1], "exp", "--storage-path", str(results_dir), *args[1:])
        assert res.exit_code == 2, res.output
        assert option in res.output and repr(args[-1]) in res.output, res.output
        assert ".tmp" not in res.output and "Error:" in res.output
        assert ("is a file, where a folder is needed" in res.output) is (args[-1].startswith(str(tmp_path)))


def test_watch_period_and_export_folder_and_storage_variable_edges(project: Any, results_dir: Any,
                                                                    tmp_path: Any, monkeypatch: Any) -> None:
    run_ok(project, results_dir)
    res = invoke("show", "exp", "--storage-path", str(results_dir), "--watch", "1e10")
    assert res.exit_code == 2 and "at most" in res.output  # was an OverflowError from time.sleep
    monkeypatch.chdir(tmp_path)
    res = invoke("export", "exp", "--storage-path", str(results_dir), "--to", "")
    assert res.exit_code == 2 and "--to" in res.output  # was: the trial folders written into the current folder
    assert not list(tmp_path.glob("trial_*"))
    monkeypatch.setenv("TUNESMITH_RESULTS", "")  # set but empty: as unset, not the current folder itself
    assert ts.run(lambda c: ts.report({"x": 1}), name="here", verbose=0).path == str(tmp_path / "tunesmith_results"
                                                                                      / "here")


def test_show_cuts_a_long_value_to_a_cell_and_json_keeps_it_whole(results_dir: Any) -> None:
    """An LLM prompt of 10 kB in the config: one line per trial in the table (rich folded it into thousands of
    lines), its start and its length shown; ``--json`` gives it whole."""
    prompt = "You are a helpful assistant. " * 350
    ts.run(lambda c: ts.report({"score": len(c["prompt"])}), space={"prompt": ts.grid([prompt, prompt[:20]])},
           metric="score", mode="max", name="llm", verbose=0)
    res = invoke("show", "llm", "--storage-path", str(results_dir))
    assert res.exit_code == 0, res.output
    assert len(res.output.splitlines()) < 15, res.output[:2000]
    assert f"({len(prompt):,} characters)" in res.output and "You are a helpful" in res.output
    shown = json.loads(invoke("show", "llm", "--storage-path", str(results_dir), "--json").output)
    assert {t["config"]["prompt"] for t in shown["trials"]} == {prompt, prompt[:20]}


def test_a_failed_trial_exits_1(project: Any, results_dir: Any) -> None:
    folder, module = project
    res = invoke("run", f"{folder / module}.py:bad", "--storage-path", str(results_dir), "--name", "bad",
                 "--verbose", "0")
    assert res.exit_code == 1
    assert "1 trial(s) failed" in res.output and "ValueError: boom in the trial" in res.output
    assert "Traceback" not in res.output


@pytest.mark.parametrize("args, message", [
    (["--space", "SPACE_BAD"], 'space["lr"]: loguniform expected low < high'),
    (["--space", "missing.yaml"], "cannot read the space file"),
    (["--stop", "loss"], "--stop: expected KEY=NUMBER"),
    (["--resources", "cpu=lots"], "--resources: expected KEY=NUMBER"),
    (["--metric", "loss"], "mode must be 'min' or 'max'"),
    (["--num-samples", "0"], "--num-samples must be"),
])
def test_config_errors_exit_2_on_one_line(project: Any, results_dir: Any, args: list[str], message: str) -> None:
    folder, module = project
    (folder / "bad.yaml").write_text("lr: {loguniform: [1, 0.1]}\n")
    args = [str(folder / "bad.yaml") if a == "SPACE_BAD" else a for a in args]
    res = invoke("run", f"{folder / module}.py:train", "--storage-path", str(results_dir), "--verbose", "0", *args)
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert res.output.startswith("error: ") and res.output.count("\n") == 1 and "Traceback" not in res.output


def test_bad_targets_exit_2(project: Any, results_dir: Any) -> None:
    folder, module = project
    for target, message in [(f"{folder / module}.py", "expected MODULE:FN"),
                            (f"{folder / module}.py:nope", "has no 'nope'"),
                            (f"{folder}/absent.py:train", "no such file"),
                            ("no_such_module_xyz:train", "cannot import module")]:
        res = invoke("run", target, "--storage-path", str(results_dir))
        assert res.exit_code == 2 and message in res.output, (target, res.output)


def test_debug_shows_the_traceback(project: Any, results_dir: Any) -> None:
    folder, module = project
    res = CliRunner().invoke(cli, ["--debug", "run", f"{folder / module}.py:nope", "--storage-path",
                                   str(results_dir)])
    assert res.exit_code == 1 and isinstance(res.exception, ts.ConfigError)  # raised, not turned into a line


def test_load_target_file_module_and_module_path(project: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, module = project
    fn = load_target(f"{folder / module}.py:train")
    assert fn.__module__ == module and sys.modules[module].__file__ == str(folder / f"{module}.py")
    assert str(folder) in sys.path  # so worker processes can import it by name
    assert load_target(f"{folder / module}.py:train") is fn  # loading again reuses the module
    other = folder / "other"
    other.mkdir()
    (other / f"{module}.py").write_text(TRAIN)
    with pytest.raises(ts.ConfigError, match="already imported"):
        load_target(f"{other / module}.py:train")
    monkeypatch.chdir(folder)
    mod2 = f"mod_{uuid.uuid4().hex[:8]}"
    (folder / f"{mod2}.py").write_text("def fn(config):\n    return None\nvalue = 3\n")
    assert load_target(f"{mod2}:fn").__name__ == "fn"
    with pytest.raises(ts.ConfigError, match="not a function"):
        load_target(f"{mod2}:value")


def test_unknown_experiment_exits_2(results_dir: Any) -> None:
    for command in (["show", "nope"], ["report", "nope"], ["resume", "nope"], ["rm", "nope", "--yes"]):
        res = invoke(*command, "--storage-path", str(results_dir))
        assert res.exit_code == 2 and "nope" in res.output, (command, res.output)


def test_ls_of_an_empty_folder(results_dir: Any) -> None:
    res = invoke("ls", "--storage-path", str(results_dir / "none"))
    assert res.exit_code == 0 and "no experiments" in res.output
    assert json.loads(invoke("ls", "--storage-path", str(results_dir / "none"), "--json").output) == []


def test_resume_rebuilds_the_stored_run_arguments(project: Any, results_dir: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import functools

    from tunesmith import _run
    from tunesmith.schedulers.asha import ASHA
    from tunesmith.space import grid, loguniform

    folder, module = project
    res = invoke("run", f"{folder / module}.py:train", "--space", str(folder / "space.yaml"), "--metric", "loss",
                 "--mode", "min", "--name", "exp", "--storage-path", str(results_dir), "--stop",
                 "training_iteration=2", "--scheduler", "asha", "--seed", "3", "--max-concurrent", "2",
                 "--verbose", "0")
    assert res.exit_code == 0, res.output
    calls: list[dict[str, Any]] = []
    real = _run.run

    @functools.wraps(real)
    def spy(fn: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append({"fn": fn, **kwargs})
        return real(fn, *args, **kwargs)

    monkeypatch.setattr(_run, "run", spy)
    monkeypatch.chdir(folder)  # the stored function is MODULE:FN, imported from the current folder
    res = invoke("resume", "exp", "--storage-path", str(results_dir), "--verbose", "0", "--trust-stored-fn")
    assert res.exit_code == 0, res.output
    assert "experiment exp: 2 trials (2 terminated)" in res.output  # finished trials are not run again
    (call,) = calls
    assert call["fn"].__name__ == "train" and call["resume"] is True and call["name"] == "exp"
    assert call["space"] == {"lr": loguniform(1e-3, 1e-1), "seed": grid([0, 1]), "opt": {"name": "adam"}}
    assert (call["metric"], call["mode"], call["num_samples"], call["max_concurrent"]) == ("loss", "min", 1, 2)
    assert call["stop"] == {"training_iteration": 2}
    assert isinstance(call["scheduler"], ASHA) and call["searcher"].seed == 3

    monkeypatch.setattr(_run, "run", lambda fn, **kwargs: None)  # a run() without resume=
    res = invoke("resume", "exp", "--storage-path", str(results_dir))
    assert res.exit_code == 2 and "not available yet" in res.output


RESUMABLE = textwrap.dedent("""
    import os, time
    import tunesmith as ts

    def train(config):
        with open(os.path.join(os.path.dirname(__file__), f"starts_{config['seed']}.txt"), "a") as f:
            f.write("start\\n")
        if config["seed"] == 0:
            ts.report({"loss": 1.0})
            return
        for i in range(3000):  # reports until the test lets it finish (bounded: about a minute)
            ts.report({"loss": 2.0 + i})
            if os.path.exists(os.path.join(os.path.dirname(__file__), "go")):
                return
            time.sleep(0.02)
""")


def test_resume_after_the_driver_was_stopped(tmp_path: Any, results_dir: Any) -> None:
    import signal
    import time

    module = f"resumable_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(RESUMABLE)
    (tmp_path / "space.yaml").write_text("seed: {grid: [0, 1]}\n")
    env = {**os.environ, "TUNESMITH_RESULTS": str(results_dir)}
    driver = subprocess.Popen(
        [sys.executable, "-m", "tunesmith.cli", "run", f"{module}.py:train", "--space", "space.yaml", "--metric",
         "loss", "--mode", "min", "--name", "crashy", "--verbose", "0", "--max-concurrent", "2"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:  # until seed 0 finished and seed 1 reported: then stop the driver mid-experiment
            assert driver.poll() is None and time.monotonic() < deadline, driver.communicate()
            try:
                trials = ts.load(str(results_dir / "crashy")).trials
            except Exception:  # noqa: BLE001 - the driver is still creating the store
                trials = []
            if [t.status.value for t in trials] == ["TERMINATED", "RUNNING"] and trials[1].iteration > 0:
                break
            time.sleep(0.05)
        driver.send_signal(signal.SIGINT)  # Ctrl-C
        _out, err = driver.communicate(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 130, err
    assert ts.load(str(results_dir / "crashy")).status == "interrupted"

    (tmp_path / "go").write_text("")
    res = subprocess.run([sys.executable, "-m", "tunesmith.cli", "resume", "crashy", "--verbose", "0", "--fn",
                          f"{module}.py:train"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    rs = ts.load(str(results_dir / "crashy"))
    assert rs.status == "finished" and [t.status.value for t in rs.trials] == ["TERMINATED", "TERMINATED"]
    assert (tmp_path / "starts_0.txt").read_text().count("start") == 1  # the finished trial did not run again
    assert (tmp_path / "starts_1.txt").read_text().count("start") == 2


SCRIPT = textwrap.dedent("""
    import os
    import tunesmith as ts

    class CtrlC(ts.Callback):
        def on_trial_complete(self, trial):
            if not os.path.exists("go"):
                raise KeyboardInterrupt  # what the user's Ctrl-C does once the first trial has completed

    def train(config):
        ts.report({"loss": config["x"]})

    if __name__ == "__main__":
        ts.run(train, {"x": ts.grid([1, 2, 3])}, name="script", max_concurrent=1, verbose=0, callbacks=[CtrlC()])
""")


def test_an_experiment_run_as_python_script_py_says_how_to_resume_it(tmp_path: Any, results_dir: Any) -> None:
    """Its function is __main__:train in the store, which the command line cannot import: the interrupt's hint
    and `tunesmith resume` name the script to give as --fn (they said `tunesmith resume script`, then
    '__main__ has no 'train'' after --trust-stored-fn), and that works."""
    (tmp_path / "train.py").write_text(SCRIPT)
    env = {**os.environ, "TUNESMITH_RESULTS": str(results_dir)}
    cut = subprocess.run([sys.executable, "train.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=60)
    assert cut.returncode != 0 and "KeyboardInterrupt" in cut.stderr
    hint = f"tunesmith resume script --fn {tmp_path / 'train.py'}:train"
    assert hint in cut.stderr, cut.stderr[-2000:]
    for trusted in ([], ["--trust-stored-fn"]):
        res = subprocess.run([sys.executable, "-m", "tunesmith.cli", "resume", "script", "--verbose", "0", *trusted],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
                             stdin=subprocess.DEVNULL)
        assert res.returncode == 2 and hint in res.stderr and "python" in res.stderr, res.stderr
    (tmp_path / "go").write_text("")
    res = subprocess.run([sys.executable, "-m", "tunesmith.cli", "resume", "script", "--verbose", "0", "--fn",
                          "train.py:train"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    rs = ts.load(str(results_dir / "script"))
    assert rs.status == "finished" and sorted(t.config["x"] for t in rs.trials) == [1, 2, 3]


STUBBORN = textwrap.dedent("""
    import time
    import tunesmith as ts

    def train(config):
        ts.report({"loss": 1.0})
        time.sleep(120)  # reports nothing more: a stop reaches it only when the grace ends
""")


def test_a_second_ctrl_c_while_trials_stop_still_ends_the_run_interrupted(tmp_path: Any, results_dir: Any) -> None:
    """Ctrl-C, then Ctrl-C again while the driver gives the trials their grace to stop: no grace, but the
    experiment is recorded "interrupted" (it was left "running", so ``ls`` said crashed), exit 130, no traceback."""
    import signal
    import time

    module = f"resumable_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(STUBBORN)
    env = {**os.environ, "TUNESMITH_RESULTS": str(results_dir)}
    driver = subprocess.Popen(
        [sys.executable, "-m", "tunesmith.cli", "run", f"{module}.py:train", "--name", "stubborn", "--verbose", "0"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:  # until the trial reported: it sleeps then
            assert driver.poll() is None and time.monotonic() < deadline, driver.communicate()
            try:
                trials = ts.load(str(results_dir / "stubborn")).trials
            except Exception:  # noqa: BLE001 - the driver is still creating the store
                trials = []
            if trials and trials[0].iteration > 0:
                break
            time.sleep(0.05)
        driver.send_signal(signal.SIGINT)
        assert driver.stderr is not None
        said = []
        while not said or "interrupted: stopping 1 running trials" not in said[-1]:  # it waits for the trial now
            said.append(driver.stderr.readline())
            assert said[-1], said  # not the end of its output first
        driver.send_signal(signal.SIGINT)
        _out, err = driver.communicate(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 130, err
    assert "Traceback" not in err, err
    assert ts.load(str(results_dir / "stubborn")).status == "interrupted"


def test_rm_asks_and_refuses_paths_outside_the_storage_root(project: Any, results_dir: Any, tmp_path: Any) -> None:
    run_ok(project, results_dir)
    target = results_dir / "exp"
    res = invoke("rm", "exp", "--storage-path", str(results_dir), input="n\n")
    assert res.exit_code == 1 and target.exists()
    res = invoke("rm", "exp", "--storage-path", str(results_dir))  # no answer (no terminal): not removed
    assert res.exit_code == 1 and target.exists()

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "experiment.db").write_text("")
    os.symlink(outside, results_dir / "link")
    for name in ("../outside", str(outside), "link", ".", ".."):
        res = invoke("rm", name, "--storage-path", str(results_dir), "--yes")
        assert res.exit_code == 2 and "refusing" in res.output, (name, res.output)
    assert outside.exists() and (outside / "experiment.db").exists()
    (results_dir / "plain").mkdir()
    res = invoke("rm", "plain", "--storage-path", str(results_dir), "--yes")
    assert res.exit_code == 2 and (results_dir / "plain").exists()  # not an experiment

    res = invoke("rm", "exp", "--storage-path", str(results_dir), input="y\n")
    assert res.exit_code == 0 and not target.exists()
    run_ok(project, results_dir, name="exp2")
    res = invoke("rm", str(results_dir / "exp2"), "--storage-path", str(results_dir), "--yes")
    assert res.exit_code == 0 and not (results_dir / "exp2").exists()


def test_rm_of_a_link_to_an_experiment_in_the_storage_path_removes_neither(project: Any, results_dir: Any) -> None:
    # `alias` names a link: removing what it points to (another experiment) is not what "rm alias" says
    run_ok(project, results_dir, name="victim")
    os.symlink("victim", results_dir / "alias")
    res = invoke("rm", "alias", "--storage-path", str(results_dir), "--yes")
    assert res.exit_code == 2 and "refusing" in res.output and "link" in res.output, res.output
    assert (results_dir / "victim" / "experiment.db").exists() and os.path.islink(results_dir / "alias")


def test_rm_shows_an_odd_experiment_name_escaped(project: Any, results_dir: Any) -> None:
    run_ok(project, results_dir, name="plain")
    odd = "ev\x1b[2Jil\nx"
    os.rename(results_dir / "plain", results_dir / odd)
    res = invoke("rm", odd, "--storage-path", str(results_dir), input="n\n")
    assert res.exit_code == 1 and "\x1b" not in res.output and "ev\\x1b[2Jil\\nx" in res.output, repr(res.output)
    res = invoke("rm", odd, "--storage-path", str(results_dir), "--yes")
    assert res.exit_code == 0 and "\x1b" not in res.output and "\n" not in res.output.rstrip("\n"), repr(res.output)
    assert not (results_dir / odd).exists()


def _nan_trial(config: dict[str, Any]) -> None:
    ts.report({"loss": float("nan"), "up": float("inf"), "down": -float("inf"), "ok": 1.5})


def test_show_and_ls_json_are_strict_json_with_nan_and_infinities_as_null(results_dir: Any) -> None:
    # NaN / Infinity are not JSON: a script in another language (JSON.parse, jq) could not read the output
    ts.run(_nan_trial, {"c": ts.grid([float("nan"), 2.0])}, metric="ok", mode="max", verbose=0, name="nans")

    def strict(text: str) -> Any:
        def refuse(token: str) -> Any:
            raise AssertionError(f"not JSON: {token}")

        return json.loads(text, parse_constant=refuse)

    shown = strict(invoke("show", "nans", "--storage-path", str(results_dir), "--json").output)
    assert [t["last_result"]["loss"] for t in shown["trials"]] == [None, None]
    assert [t["last_result"]["ok"] for t in shown["trials"]] == [1.5, 1.5]
    assert sorted(t["config"]["c"] for t in shown["trials"] if t["config"]["c"] is not None) == [2.0]
    listed = strict(invoke("ls", "--storage-path", str(results_dir), "--json").output)
    assert listed[0]["name"] == "nans" and listed[0]["best"]["value"] == 1.5


def test_ls_lists_the_other_experiments_when_one_has_a_damaged_creation_time(project: Any, results_dir: Any) -> None:
    import sqlite3

    run_ok(project, results_dir, name="good")
    for n, created in enumerate(['"yesterday"', "1" + "0" * 400, "NaN", "true"]):  # text, an int past floats...
        run_ok(project, results_dir, name=f"odd{n}")
        with sqlite3.connect(results_dir / f"odd{n}" / "experiment.db") as db:
            db.execute("UPDATE experiment SET value = ? WHERE key = 'created'", (created,))
    for args in ((), ("--json",)):
        res = invoke("ls", "--storage-path", str(results_dir), *args)
        assert res.exit_code == 0 and "good" in res.output and all(f"odd{n}" in res.output for n in range(4)), \
            res.output


def test_a_reader_that_closed_the_pipe_ends_the_command_quietly(project: Any, results_dir: Any) -> None:
    # `tunesmith show exp | head -1`: once head has its line, what is left cannot be written; the command stops
    # there without a word (click's way: status 1), instead of printing "error: BrokenPipeError"
    run_ok(project, results_dir)
    env = {**os.environ, "TUNESMITH_RESULTS": str(results_dir)}
    for args in (["show", "exp"], ["show", "exp", "--json"], ["ls"], ["ls", "--json"]):
        read_end, write_end = os.pipe()
        os.close(read_end)  # closed before the command writes anything: its first write fails
        try:
            done = subprocess.run([sys.executable, "-m", "tunesmith.cli", *args], stdout=write_end,
                                  stderr=subprocess.PIPE, env=env, timeout=90)
        finally:
            os.close(write_end)
        assert (done.returncode, done.stderr) == (1, b""), (args, done.returncode, done.stderr)


def test_rm_refuses_a_running_experiment(project: Any, results_dir: Any) -> None:
    from filelock import FileLock

    run_ok(project, results_dir)
    with FileLock(str(results_dir / "exp" / ".driver.lock")):  # a live driver holds the lock
        (results_dir / "exp" / ".driver.pid").write_text(str(os.getpid()))
        res = invoke("rm", "exp", "--storage-path", str(results_dir), "--yes")
    assert res.exit_code == 2 and "running" in res.output and (results_dir / "exp").exists()
    listed = json.loads(invoke("ls", "--storage-path", str(results_dir), "--json").output)
    assert listed[0]["status"] == "finished"  # the stored status wins once the driver recorded the end


def test_every_command_as_a_real_process(project: Any, results_dir: Any) -> None:
    folder, module = project
    env = {**os.environ, "TUNESMITH_RESULTS": str(results_dir)}
    script = os.path.join(os.path.dirname(sys.executable), "tunesmith")
    assert os.access(script, os.X_OK), "the tunesmith console script is installed with the package"
    cmd = [sys.executable, "-m", "tunesmith.cli"]

    def call(*args: str, via: list[str] = cmd) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*via, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=90)

    done = call("run", f"{module}.py:train", "--space", "space.yaml", "--metric", "loss", "--mode", "min", "--name",
                "proc", "--stop", "training_iteration=2", "--verbose", "0", via=[script])
    assert done.returncode == 0, done.stderr
    assert "experiment proc: 2 trials" in done.stdout
    listed = call("ls", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout)[0]["name"] == "proc"
    shown = call("show", "proc")
    assert shown.returncode == 0 and "trial_00001" in shown.stdout and "trial_00002" in shown.stdout
    assert len(json.loads(call("show", "proc", "--json").stdout)["trials"]) == 2
    reported = call("report", "proc", "-o", "r.html")
    assert reported.returncode == 0 and (folder / "r.html").stat().st_size > 1_000_000  # plotly.js inside
    removed = call("rm", "proc", "--yes")
    assert removed.returncode == 0 and not (results_dir / "proc").exists()
    for command in ([], ["run"], ["ls"], ["show"], ["report"], ["resume"], ["rm"]):
        helped = call(*command, "--help", via=[script])
        assert helped.returncode == 0 and helped.stdout.startswith("Usage: tunesmith"), (command, helped.stderr)
    assert "Exit codes" in call("--help").stdout
    # the resume command runs as a real process in test_resume_after_the_driver_was_stopped

    bad = call("show", "nope")
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: no experiment 'nope'") and bad.stderr.count("\n") == 1
    usage = call("show")
    assert usage.returncode == 2 and "Missing argument 'NAME'" in usage.stderr


def test_unexpected_errors_are_one_line_exit_1_and_debug_shows_the_traceback(results_dir: Any) -> None:
    broken = results_dir / "broken"
    broken.mkdir(parents=True)
    (broken / "experiment.db").write_bytes(b"this is not an SQLite file" * 200)
    env = {**os.environ, "TUNESMITH_RESULTS": str(results_dir)}
    cmd = [sys.executable, "-m", "tunesmith.cli"]
    plain = subprocess.run([*cmd, "show", "broken"], env=env, capture_output=True, text=True, timeout=60)
    assert plain.returncode == 1
    db = broken / "experiment.db"
    assert plain.stderr == (f"error: StoreError: cannot open the experiment store {db}: file is not a database (is "
                            f"the file damaged?) (run with --debug for the traceback)\n")
    debug = subprocess.run([*cmd, "--debug", "show", "broken"], env=env, capture_output=True, text=True, timeout=60)
    assert debug.returncode == 1
    assert debug.stderr.startswith("Traceback (most recent call last):")
    assert "sqlite3.DatabaseError: file is not a database" in debug.stderr  # the cause, then tunesmith's error
    assert debug.stderr.rstrip().endswith("(is the file damaged?)")
    listed = json.loads(invoke("ls", "--storage-path", str(results_dir), "--json").output)
    assert [(e["name"], e["status"]) for e in listed] == [("broken", "unreadable")]  # ls still lists it


def test_secrets_are_masked_in_run_and_show(project: Any, results_dir: Any) -> None:
    folder, module = project
    (folder / "secret.yaml").write_text(SPACE + "api_token: tok-XYZ\n")
    res = invoke("run", f"{folder / module}.py:train", "--space", str(folder / "secret.yaml"), "--metric", "loss",
                 "--mode", "min", "--name", "sec", "--storage-path", str(results_dir), "--verbose", "0")
    assert res.exit_code == 0 and "tok-XYZ" not in res.output and '"api_token": "***"' in res.output
    for args in ([], ["--json"]):
        res = invoke("show", "sec", "--storage-path", str(results_dir), *args)
        assert res.exit_code == 0 and "tok-XYZ" not in res.output and "***" in res.output
    shown = json.loads(invoke("show", "sec", "--storage-path", str(results_dir), "--json", "--show-secrets").output)
    assert shown["trials"][0]["config"]["api_token"] == "tok-XYZ"


def test_show_and_ls_of_a_multi_objective_experiment(results_dir: Any) -> None:
    def train(config: dict[str, Any]) -> None:
        ts.report({"loss": config["x"], "latency": 1.0 - config["x"]})

    ts.run(train, space={"x": ts.grid([0.2, 0.9, 0.5])}, metric=["loss", "latency"], mode=["min", "min"],
           name="multi", storage_path=str(results_dir), verbose=0)
    res = invoke("show", "multi", "--storage-path", str(results_dir))
    assert res.exit_code == 0, res.output
    header = next(line for line in res.output.splitlines() if "trial" in line and "status" in line)
    assert "loss" in header and "latency" in header
    rows = [line for line in res.output.splitlines() if "trial_0000" in line]
    names = [next(w for w in r.split() if w.startswith("trial_")) for r in rows]
    assert names == ["trial_00001", "trial_00003", "trial_00002"]  # sorted by the first metric, loss ascending
    res = invoke("show", "multi", "--storage-path", str(results_dir), "--json")
    assert res.exit_code == 0 and json.loads(res.output)["metric"] == ["loss", "latency"]
    assert invoke("ls", "--storage-path", str(results_dir)).exit_code == 0


@pytest.mark.parametrize("searcher, noted", [("tpe", True), ("bohb", True), ("quasirandom", False), ("random", False)])
def test_a_searcher_that_does_not_cross_grids_says_what_num_samples_counts(project: Any, results_dir: Any,
                                                                          searcher: str, noted: bool) -> None:
    """SPACE has seed: {grid: [0, 1]}: Optuna's samplers and BOHB search it as a choice, so --num-samples 2 is not
    'per grid point' (it ran seed 0 twice); the run says so."""
    folder, module = project
    res = invoke("run", f"{folder / module}.py:train", "--space", str(folder / "space.yaml"), "--metric", "loss",
                 "--mode", "min", "--num-samples", "1", "--name", searcher, "--storage-path", str(results_dir),
                 "--stop", "training_iteration=1", "--verbose", "0", "--searcher", searcher)
    assert res.exit_code == 0, res.output
    assert ("searches a grid's values as a choice, not crossing them" in res.output) is noted, res.output


@pytest.mark.parametrize("searcher, make", [("quasirandom", lambda: ts.QuasiRandom(seed=7)),
                                            ("tpe", lambda: ts.OptunaSearch(sampler="tpe", seed=7))])
def test_searcher_option_runs_that_searcher_with_the_seed(project: Any, results_dir: Any, searcher: str,
                                                          make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, module = project
    (folder / "flat.yaml").write_text("lr: {loguniform: [1e-3, 1e-1]}\nseed: 0\n")
    res = invoke("run", f"{folder / module}.py:train", "--space", str(folder / "flat.yaml"), "--metric", "loss",
                 "--mode", "min", "--num-samples", "3", "--max-concurrent", "1", "--name", searcher,
                 "--storage-path", str(results_dir), "--verbose", "0", "--seed", "7", "--searcher", searcher)
    assert res.exit_code == 0, res.output
    from_cli = [t.config["lr"] for t in ts.load(str(results_dir / searcher)).trials]
    # the same searcher and seed from Python proposes the same configs; random search with seed 7 does not
    same = ts.run(load_target(f"{folder / module}.py:train"), space={"lr": ts.loguniform(1e-3, 1e-1), "seed": 0},
                  metric="loss", mode="min", num_samples=3, max_concurrent=1, searcher=make(), verbose=0,
                  storage_path=str(results_dir), name=f"{searcher}-py")
    assert from_cli == [t.config["lr"] for t in same.trials]
    rnd = ts.run(load_target(f"{folder / module}.py:train"), space={"lr": ts.loguniform(1e-3, 1e-1), "seed": 0},
                 metric="loss", mode="min", num_samples=3, seed=7, verbose=0, storage_path=str(results_dir),
                 name=f"{searcher}-random")
    assert from_cli != [t.config["lr"] for t in rnd.trials]
    # `resume` rebuilds that searcher from the stored spec (finished trials are not run again)
    monkeypatch.chdir(folder)
    res = invoke("resume", searcher, "--storage-path", str(results_dir), "--verbose", "0", "--trust-stored-fn")
    assert res.exit_code == 0 and "3 trials (3 terminated)" in res.output, res.output


def test_resume_names_a_searcher_it_cannot_rebuild(project: Any, results_dir: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    folder, module = project
    ts.run(load_target(f"{folder / module}.py:train"), space={"lr": 0.01, "seed": 0}, metric="loss", mode="min",
           searcher=ts.ConcurrencyLimiter(ts.Random(seed=1), max_concurrent=1), verbose=0,
           storage_path=str(results_dir), name="limited")
    monkeypatch.chdir(folder)
    res = invoke("resume", "limited", "--storage-path", str(results_dir), "--verbose", "0")
    assert res.exit_code == 2
    assert "searcher 'ConcurrencyLimiter' cannot be rebuilt" in res.output and "OptunaSearch" in res.output


def test_unknown_searcher_exits_2(project: Any, results_dir: Any) -> None:
    folder, module = project
    res = CliRunner().invoke(cli, ["run", f"{folder / module}.py:train", "--searcher", "nope"])
    assert res.exit_code == 2 and "nope" in res.output


HOSTILE = ["[INST] {prompt} [/INST]", "[bold]x[/bold]", "[/]", "\x1b]0;pwned\x07\x1b[2J", ":thumbs_up:"]


def test_show_and_ls_in_a_terminal_print_markup_and_control_sequences_as_text(results_dir: Any) -> None:
    def train(config: dict[str, Any]) -> None:
        ts.report({"loss": float(len(config["prompt"])), "[red]m": 1.0})
        if config["prompt"] == "[/]":
            raise ValueError("[/] closing tag \x1b]0;pwned\x07 in the error")

    ts.run(train, space={"prompt": ts.grid(HOSTILE), "[b]name": "[i]v"}, metric="[red]m", mode="max",
           name="hostile", storage_path=str(results_dir), verbose=0)
    env = {**os.environ, "TUNESMITH_RESULTS": str(results_dir)}
    for args in (["show", "hostile"], ["show", "hostile", "--sort", "[b]name"], ["ls"]):
        code, out = in_a_terminal(args, env)
        assert code == 0, out
        assert "\x1b]0;pwned" not in out and "\x07" not in out and "\x1b[2J" not in out, args
        assert "\U0001f44d" not in out
    code, out = in_a_terminal(["show", "hostile"], env)
    for literal in ("[INST] {prompt} [/INST]", "[bold]x[/bold]", "[/]", "]0;pwned", "[2J", ":thumbs_up:",
                    "[b]name", "[i]v", "[red]m", "[/] closing tag"):
        assert literal in out, literal


def test_show_of_an_experiment_whose_trials_all_failed_before_reporting(results_dir: Any) -> None:
    def train(config: dict[str, Any]) -> None:
        raise RuntimeError(f"cannot open data file {config['x']}")

    ts.run(train, space={"x": ts.grid([1, 2])}, metric="loss", mode="min", name="allfailed",
           storage_path=str(results_dir), verbose=0)
    res = invoke("show", "allfailed", "--storage-path", str(results_dir))
    assert res.exit_code == 0, res.output
    assert res.output.count("sorted by id") == 1
    rows = [line for line in res.output.splitlines() if line.lstrip().startswith("trial_0000")]
    assert [r.split()[0] for r in rows][:2] == ["trial_00001", "trial_00002"]
    assert "trial_00001 failed: RuntimeError: cannot open data file 1" in res.output
    assert "trial_00002 failed: RuntimeError: cannot open data file 2" in res.output
    assert invoke("show", "allfailed", "--storage-path", str(results_dir), "--sort", "-loss").exit_code == 0
    as_json = invoke("show", "allfailed", "--storage-path", str(results_dir), "--json")
    assert as_json.exit_code == 0 and [t["id"] for t in json.loads(as_json.output)["trials"]] == [1, 2]
    typo = invoke("show", "allfailed", "--storage-path", str(results_dir), "--sort", "nope")
    assert typo.exit_code == 2  # a key that is no metric of the experiment is still a usage error


def test_run_masks_a_secret_quoted_in_the_first_error(tmp_path: Any, results_dir: Any) -> None:
    module = f"train_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text("def train(config):\n    raise ValueError(f'refused: {config}')\n")
    (tmp_path / "space.yaml").write_text("api_key: sk-QUOTED-77\nlr: 0.1\n")
    res = invoke("run", f"{tmp_path / module}.py:train", "--space", str(tmp_path / "space.yaml"), "--name", "q",
                 "--storage-path", str(results_dir), "--verbose", "1")
    assert res.exit_code == 1
    assert "refused: {'api_key': '***', 'lr': 0.1}" in res.output and "sk-QUOTED-77" not in res.output

def _mark_running(folder: Any) -> None:
    """What a driver killed mid-experiment leaves: the store's status still "running"."""
    from tunesmith.store.sqlite import STORE_FILE, Store

    store = Store(str(folder / STORE_FILE))
    with store.transaction() as db:
        store.set_meta(db, "status", "running")
    store.close()


def test_a_stale_pid_file_naming_a_live_process_is_not_a_running_driver(project: Any, results_dir: Any) -> None:
    """The lock is the truth: a .driver.pid whose number now belongs to another live process (here this test's
    own) with no lock held is a crashed experiment for ls and show, and rm removes it, as resume would take it."""
    from filelock import FileLock

    run_ok(project, results_dir)
    folder = results_dir / "exp"
    _mark_running(folder)
    (folder / ".driver.pid").write_text(str(os.getpid()))  # alive, but not a driver of this experiment
    listed = json.loads(invoke("ls", "--storage-path", str(results_dir), "--json").output)
    assert [(r["name"], r["status"]) for r in listed] == [("exp", "crashed")]
    shown = json.loads(invoke("show", "exp", "--storage-path", str(results_dir), "--json").output)
    assert shown["status"] == "crashed"
    with FileLock(str(folder / ".driver.lock")):  # while a driver holds the lock it is running, pid file or not
        (folder / ".driver.pid").unlink()
        listed = json.loads(invoke("ls", "--storage-path", str(results_dir), "--json").output)
        assert listed[0]["status"] == "running"
    (folder / ".driver.pid").write_text(str(os.getpid()))
    res = invoke("rm", "exp", "--storage-path", str(results_dir), "--yes")
    assert res.exit_code == 0 and not folder.exists(), res.output


def test_ls_names_each_experiment_by_its_folder(project: Any, results_dir: Any) -> None:
    """A renamed or copied folder is the experiment of its folder's name: no two rows with one name."""
    import shutil

    run_ok(project, results_dir, name="exp")
    shutil.copytree(results_dir / "exp", results_dir / "exp-copy")
    os.rename(results_dir / "exp", results_dir / "renamed")
    listed = json.loads(invoke("ls", "--storage-path", str(results_dir), "--json").output)
    assert sorted(r["name"] for r in listed) == ["exp-copy", "renamed"]
    assert {r["name"]: os.path.basename(r["path"]) for r in listed} == {"exp-copy": "exp-copy", "renamed": "renamed"}
    table = invoke("ls", "--storage-path", str(results_dir)).output
    assert "renamed" in table and "exp-copy" in table
    shown = json.loads(invoke("show", "renamed", "--storage-path", str(results_dir), "--json").output)
    assert shown["name"] == "renamed" and shown["path"] == str(results_dir / "renamed")


@pytest.mark.parametrize("char", ["#", "?", "%"])
def test_a_storage_path_with_uri_characters_works_for_run_and_every_reader(project: Any, tmp_path: Any,
                                                                          char: str) -> None:
    """The read-only SQLite URI is quoted: a project under C#/ (or a?b, 100%) is read, and no stray file is made."""
    parent = tmp_path / f"C{char}41"  # "%41" would read as "A" in an unquoted URI
    storage = parent / "results"
    run_ok(project, storage)
    before = sorted(os.listdir(tmp_path))
    rs = ts.load(str(storage / "exp"))
    assert len(rs.trials) == 4 and rs.status == "finished"
    listed = json.loads(invoke("ls", "--storage-path", str(storage), "--json").output)
    assert [(r["name"], r["status"], r["trials"]) for r in listed] == [("exp", "finished", 4)]
    res = invoke("show", "exp", "--storage-path", str(storage))
    assert res.exit_code == 0 and "4 trials" in res.output, res.output
    assert sorted(os.listdir(tmp_path)) == before  # nothing made beside the folder (C with a -wal...)
    assert sorted(os.listdir(parent)) == ["results"]

# -- a folder someone else made: resume runs only a function the user names or confirms ----------------------
PAYLOAD = textwrap.dedent("""
    import os
    open(os.path.join(os.path.dirname(__file__), "imported"), "a").close()

    def payload(config):
        open(os.path.join(os.path.dirname(__file__), "called"), "a").close()
""")


def _plant_stored_fn(folder: Any, fn: str, num_samples: int) -> None:
    """What a shared folder's author can do: name any function (and ask for more trials) in the store."""
    from tunesmith.store.sqlite import STORE_FILE, Store

    store = Store(str(folder / STORE_FILE))
    spec = store.meta()["spec"]
    with store.transaction() as db:
        store.set_meta(db, "spec", {**spec, "fn": fn, "num_samples": num_samples})


def test_resume_does_not_run_the_function_a_store_names_until_the_user_confirms(project: Any,
                                                                                results_dir: Any) -> None:
    import pty

    folder, module = project
    ts.run(load_target(f"{folder / module}.py:train"), space={"lr": 0.01, "seed": 0}, verbose=0,
           storage_path=str(results_dir), name="shared")
    evil = f"mod_{uuid.uuid4().hex[:8]}"
    (folder / f"{evil}.py").write_text(PAYLOAD)
    _plant_stored_fn(results_dir / "shared", f"{evil}:payload", 2)
    env = {**os.environ, "TUNESMITH_RESULTS": str(results_dir)}

    def resume(*args: str, stdin: Any = subprocess.DEVNULL) -> Any:
        return subprocess.run([sys.executable, "-m", "tunesmith.cli", "resume", "shared", "--verbose", "0", *args],
                              cwd=folder, env=env, stdin=stdin, capture_output=True, text=True, timeout=60)

    res = resume()  # not a terminal: refused, naming the stored function and both ways forward
    assert res.returncode == 2, res.stderr
    assert f"'{evil}:payload'" in res.stderr and "--fn" in res.stderr and "--trust-stored-fn" in res.stderr
    assert not (folder / "imported").exists() and not (folder / "called").exists()
    assert len(ts.load(str(results_dir / "shared")).trials) == 1

    main, child = pty.openpty()  # on a terminal: asked, and "no" runs nothing
    try:
        os.write(main, b"n\n")
        res = resume(stdin=child)
    finally:
        os.close(child)
        os.close(main)
    assert res.returncode == 1 and "Import and run it?" in res.stdout and "not resumed" in res.stderr, res
    assert not (folder / "imported").exists() and not (folder / "called").exists()

    res = resume("--fn", f"{module}.py:train")  # the function the user names runs, not the stored one
    assert res.returncode == 0, res.stderr
    assert len(ts.load(str(results_dir / "shared")).trials) == 2
    assert not (folder / "imported").exists() and not (folder / "called").exists()

    _plant_stored_fn(results_dir / "shared", f"{evil}:payload", 3)
    res = resume("--trust-stored-fn")  # confirmed: the stored function runs (the refusals above were real)
    assert (folder / "called").exists(), res.stderr


def test_resume_refuses_a_stdlib_callable_named_by_the_store(project: Any, results_dir: Any) -> None:
    folder, module = project
    ts.run(load_target(f"{folder / module}.py:train"), space={"lr": 0.01, "seed": 0}, verbose=0,
           storage_path=str(results_dir), name="shared")
    _plant_stored_fn(results_dir / "shared", "os:system", 2)
    res = subprocess.run([sys.executable, "-m", "tunesmith.cli", "resume", "shared", "--verbose", "0"], cwd=folder,
                         env={**os.environ, "TUNESMITH_RESULTS": str(results_dir)}, stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "'os:system'" in res.stderr, res.stderr
    assert len(ts.load(str(results_dir / "shared")).trials) == 1  # nothing ran


EXTRAS = textwrap.dedent("""
    import os
    import tunesmith as ts

    open(os.path.join(os.path.dirname(__file__), "extras_imported"), "a").close()

    def resources(config):
        return {"cpu": 2}

    def feasible(result):
        return [result["loss"] - 100.0]

    class AtTwo(ts.Stopper):
        def __call__(self, trial_id, result):
            return result["training_iteration"] >= 2

    def mine_resources(config):
        return {"cpu": 1}
""")


def test_resume_imports_the_users_own_resources_constraints_and_stopper_only_once_confirmed(
        project: Any, results_dir: Any) -> None:
    """An experiment run with a resources function, a constraints function and a Stopper of its author's (the
    store names them as module:qualname) resumes from the command line: not on a terminal and unconfirmed it is
    refused, naming each and importing none; with --trust-stored-fn they are imported and used; named by the
    user (--resources...) the user's are used and the stored ones never imported."""
    folder, module = project
    extras = f"resumable_{uuid.uuid4().hex[:8]}"
    (folder / f"{extras}.py").write_text(EXTRAS)
    own = load_target(f"{folder / extras}.py:AtTwo")
    ts.run(load_target(f"{folder / module}.py:train"), space={"lr": 0.01, "seed": 0}, metric="loss", mode="min",
           resources=load_target(f"{folder / extras}.py:resources"),
           constraints=load_target(f"{folder / extras}.py:feasible"), stop=[{"acc": 3}, own()], verbose=0,
           storage_path=str(results_dir), name="own", backend=ts.LocalBackend(total_resources={"cpu": 2}))
    spec = ts.load(str(results_dir / "own")).meta["spec"]
    assert (spec["resources"], spec["constraints"], spec["stop"][1]) == (
        {"callable": f"{extras}:resources"}, f"{extras}:feasible", {"stopper": f"{extras}:AtTwo"})
    os.remove(folder / "extras_imported")
    env = {**os.environ, "TUNESMITH_RESULTS": str(results_dir)}

    def resume(*args: str) -> Any:
        _plant_stored_fn(results_dir / "own", spec["fn"], len(ts.load(str(results_dir / "own")).trials) + 1)
        return subprocess.run([sys.executable, "-m", "tunesmith.cli", "resume", "own", "--verbose", "0", "--fn",
                               f"{module}:train", *args], cwd=folder, env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=60)

    res = resume()
    assert res.returncode == 2, res.stderr
    for named in (f"'{extras}:resources'", f"'{extras}:feasible'", f"'{extras}:AtTwo'", "--resources",
                  "--constraints", "--stop", "--trust-stored-fn"):
        assert named in res.stderr, (named, res.stderr)
    assert not (folder / "extras_imported").exists() and len(ts.load(str(results_dir / "own")).trials) == 1

    res = resume("--resources", f"{module}.py:train", "--stop", f"{module}.py:train")  # the constraints are left
    assert res.returncode == 2 and f"'{extras}:feasible'" in res.stderr and "resources'" not in res.stderr, res.stderr
    assert not (folder / "extras_imported").exists()

    res = resume("--trust-stored-fn")
    assert res.returncode == 0, res.stderr
    new = ts.load(str(results_dir / "own")).trials[-1]
    assert new.resources["cpu"] == 2 and new.iteration == 2 and "constraint/0" in new.metrics  # theirs, used

    # the user's own in place of every stored one: no confirmation, nothing of the store's imported
    os.remove(folder / "extras_imported")
    (folder / "mine.py").write_text(EXTRAS.replace("extras_imported", "mine_imported"))
    res = resume("--resources", "mine.py:mine_resources", "--constraints", "mine.py:feasible", "--stop",
                 "mine.py:AtTwo")
    assert res.returncode == 0, res.stderr
    assert not (folder / "extras_imported").exists() and (folder / "mine_imported").exists()
    assert ts.load(str(results_dir / "own")).trials[-1].resources["cpu"] == 1


# -- tunesmith trust: an experiment written before checkpoints were signed is adopted once -----------------
def crashes_once(config: Any) -> None:
    restored = ts.get_checkpoint()
    start = restored.load()["i"] if restored else 0
    for i in range(start, 4):
        ts.report({"i": i + 1}, checkpoint=ts.Checkpoint.from_state({"i": i + 1}))
        if restored is None and i + 1 == 2:
            raise RuntimeError("crash after iteration 2")


def _unsign_every_manifest(folder: Any) -> int:
    """Make the experiment look as one written before checkpoints were signed."""
    n = 0
    for manifest in folder.glob("trials/*/checkpoints/checkpoint_*/manifest.json"):
        data = json.loads(manifest.read_text())
        del data["signature"]
        manifest.write_text(json.dumps(data))
        n += 1
    return n


def test_trust_adopts_an_experiment_written_before_checkpoints_were_signed(results_dir: Any) -> None:
    first = ts.run(crashes_once, name="old", verbose=0)
    assert first.trials[0].status is ts.TrialStatus.ERROR
    assert _unsign_every_manifest(results_dir / "old") == 2
    refused = ts.run(crashes_once, name="old", resume=True, restart_errored="resume", verbose=0).trials[0]
    assert refused.status is ts.TrialStatus.ERROR
    assert "refusing to unpickle" in refused.error and "tunesmith trust" in refused.error

    env = {**os.environ, "TUNESMITH_RESULTS": str(results_dir)}
    res = subprocess.run([sys.executable, "-m", "tunesmith.cli", "trust", "old"], env=env, stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "--yes" in res.stderr  # not confirmed: nothing signed
    res = subprocess.run([sys.executable, "-m", "tunesmith.cli", "trust", "old", "--yes"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "signed 2 of 2 checkpoints" in res.stdout, res.stderr
    result = ts.run(crashes_once, name="old", resume=True, restart_errored="resume", verbose=0)
    trial = result.trials[0]
    assert trial.status is ts.TrialStatus.TERMINATED, trial.error
    assert [h["i"] for h in result.history(trial.id)] == [1, 2, 3, 4]  # restored from iteration 2
    assert invoke("trust", "old", "--yes", "--storage-path", str(results_dir)).output.startswith(
        "signed 0 of 4 checkpoints")  # all signed by this key now


def test_trust_leaves_a_damaged_checkpoint_unsigned_and_follows_no_link(results_dir: Any, tmp_path: Any) -> None:
    ts.run(crashes_once, name="old", verbose=0)
    _unsign_every_manifest(results_dir / "old")
    ckpts = results_dir / "old" / "trials" / "trial_00001" / "checkpoints"
    with open(ckpts / "checkpoint_000002" / "state.pkl", "ab") as f:
        f.write(b"!")
    elsewhere = tmp_path / "elsewhere"
    (ckpts / "checkpoint_000001").rename(elsewhere)
    os.symlink(elsewhere, ckpts / "checkpoint_000001")  # a checkpoint folder that is a link: not signed
    res = invoke("trust", "old", "--yes", "--storage-path", str(results_dir))
    assert res.exit_code == 1 and "checkpoint_000002" in res.output and "checksum" in res.output
    assert "signature" not in json.loads((elsewhere / "manifest.json").read_text())
    assert "signature" not in json.loads((ckpts / "checkpoint_000002" / "manifest.json").read_text())


# -- writes into a folder someone else made never follow a planted symbolic link ----------------------------
def test_report_does_not_write_through_links_planted_in_the_folder(project: Any, results_dir: Any,
                                                                   tmp_path: Any) -> None:
    run_ok(project, results_dir)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    folder = results_dir / "exp"
    os.symlink(victim, folder / "report.html.tmp")
    os.symlink(victim, folder / "report.html")
    res = invoke("report", "exp", "--storage-path", str(results_dir))
    assert res.exit_code == 0, res.output
    assert victim.read_text() == "precious"
    assert not (folder / "report.html").is_symlink() and "<html" in (folder / "report.html").read_text()[:200]
    assert sorted(n for n in os.listdir(folder) if n.endswith(".tmp")) == ["report.html.tmp"]  # ours: gone


def test_trial_files_are_not_written_through_planted_links(results_dir: Any, tmp_path: Any) -> None:
    first = ts.run(crashes_once, space={"lr": 0.5}, name="shared", verbose=0)
    trial_dir = results_dir / "shared" / "trials" / first.trials[0].name
    victims = {}
    for name in ("params.json", "result.jsonl", "progress.csv", "progress.csv.tmp", "result.jsonl.tmp"):
        victim = tmp_path / f"victim-{name}"
        victim.write_text("precious")
        victims[name] = victim
        if (trial_dir / name).exists():
            os.remove(trial_dir / name)
        os.symlink(victim, trial_dir / name)
    result = ts.run(crashes_once, space={"lr": 0.5}, name="shared", resume=True, restart_errored="restart",
                    verbose=0, file_loggers=True)
    assert result.trials[0].status is ts.TrialStatus.ERROR  # crashed again (restarted from scratch)
    assert all(v.read_text() == "precious" for v in victims.values())
    assert json.loads((trial_dir / "params.json").read_text()) == {"lr": 0.5}  # the link replaced by the file
    assert not (trial_dir / "result.jsonl").is_symlink()


def test_show_tells_apart_values_that_print_alike(results_dir: Any) -> None:
    """Text "1", 1 and 1.0, text "true" and true, text "null" and null: distinct options, each recognisable in
    the table (text quoted where it would read as another value); empty text is ``""``, a key the trial lacks
    (a conditional space's other branch) blank."""
    values = ["1", 1, 1.0, "true", True, "null", None, ""]
    ts.run(lambda c: ts.report({"loss": 1.0}), space={"b": ts.grid(values), "m": ts.grid([{"k": ""}, {"j": 2}])},
           metric="loss", mode="min", name="alike", verbose=0)
    res = invoke("show", "alike", "--storage-path", str(results_dir), "--all", "--sort", "id")
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    header = next(line for line in lines if " trial " in line and " b " in line)
    starts = {name: header.index(f" {name} ") + 1 for name in ("b", "m/k", "m/j")}
    cells = [{name: line[at:].split("  ")[0].strip() for name, at in starts.items()}
             for line in lines if line.strip().startswith("trial_")]
    shown = json.loads(invoke("show", "alike", "--storage-path", str(results_dir), "--json").output)
    by_name = {t["name"]: t["config"] for t in shown["trials"]}
    names = [line.split()[0] for line in lines if line.strip().startswith("trial_")]
    expected = {"1": '"1"', "true": '"true"', "null": '"null"', "": '""'}
    for name, row in zip(names, cells):
        config = by_name[name]
        b = config["b"]
        assert row["b"] == (expected[b] if isinstance(b, str) else json.dumps(b)), (name, row, config)
        assert row["m/k"] == ('""' if "k" in config["m"] else ""), (name, row, config)
        assert row["m/j"] == ("2" if "j" in config["m"] else ""), (name, row, config)
    assert len(names) == 16 and sorted({row["b"] for row in cells}) == sorted(json.dumps(v) for v in values)
