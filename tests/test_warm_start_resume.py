"""Resuming an experiment that was warm-started (``run(warm_start=...)``): its sources are recorded so that the
experiment still resumes after its storage folder moves, a resume reuses them (or is told where they went), a
name is found as ``ts.load`` finds it; and the resume command printed at Ctrl-C names every function of the
user's that the experiment needs, so that it runs as printed."""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import uuid
from typing import Any

import pytest
from algorithm_helpers import CtrlCAfter
from test_cli_edges import invoke

import tunesmith as ts
from tunesmith.cli import load_target

pytest.importorskip("optuna")
pytestmark = pytest.mark.timeout(180)

SPACE = {"x": ts.uniform(0, 1)}
ARGS = {"metric": "loss", "mode": "min", "verbose": 0}
TRAIN = textwrap.dedent("""
    import tunesmith as ts

    def train(config):
        for i in range(1, 3):
            ts.report({"loss": (config["x"] - 0.3) ** 2 + 1.0 / i})
""")


@pytest.fixture
def train_file(tmp_path: Any) -> Any:
    """A training file with a unique module name (its function is stored as ``module:train``)."""
    path = tmp_path / f"train_{uuid.uuid4().hex[:8]}.py"
    path.write_text(TRAIN)
    return path


def _earlier_and_interrupted(fn: Any, storage: Any, warm_start: Any = "A", n_earlier: int = 3) -> None:
    """Experiment A (finished), then B warm-started from ``warm_start`` and interrupted (Ctrl-C) after a result."""
    ts.run(fn, SPACE, num_samples=n_earlier, name="A", storage_path=str(storage), **ARGS)
    with pytest.raises(KeyboardInterrupt):
        ts.run(fn, SPACE, num_samples=4, name="B", storage_path=str(storage), searcher=ts.OptunaSearch(seed=0),
               warm_start=warm_start, max_concurrent=1, callbacks=[CtrlCAfter(1)], **ARGS)


def _spec(folder: Any) -> Any:
    return ts.load(str(folder)).meta["spec"]


def _as_schema_3(folder: Any) -> None:
    """Make the experiment in ``folder`` a store of schema 3, which kept no earlier trials: its resume reads its
    warm_start sources again (what every resume did before schema 4)."""
    import sqlite3

    from tunesmith.store.sqlite import WARM_START_KEY

    db = sqlite3.connect(folder / "experiment.db")
    with db:
        db.execute("DROP TABLE warm_start")
        db.execute("DELETE FROM experiment WHERE key = ?", (WARM_START_KEY,))
    db.execute("PRAGMA user_version = 3")
    db.close()


# -- 1. a moved storage folder: the sources in it are recorded by name ---------------------------------------------
def test_a_warm_started_experiment_resumes_after_its_storage_folder_moves(train_file: Any, tmp_path: Any,
                                                                          caplog: Any) -> None:
    fn = load_target(f"{train_file}:train")
    storage, moved = tmp_path / "store", tmp_path / "moved store"
    _earlier_and_interrupted(fn, storage)
    os.rename(storage, moved)  # A and B move together
    with caplog.at_level(logging.INFO, logger="tunesmith"):
        res = invoke("resume", "B", "--fn", f"{train_file}:train", "--storage-path", str(moved), "--verbose", "0")
    assert res.exit_code == 0, res.output
    assert ts.load(str(moved / "B")).status == "finished"
    assert "OptunaSearch observed 3 of 3 finished earlier trials" in caplog.text  # A's trials, from its new place
    assert _spec(moved / "B")["warm_start"] == ["A"]  # by its name under the storage folder


def test_a_source_outside_the_storage_folder_is_recorded_by_its_absolute_path(train_file: Any,
                                                                             tmp_path: Any) -> None:
    fn = load_target(f"{train_file}:train")
    other = tmp_path / "other"
    ts.run(fn, SPACE, num_samples=2, name="A", storage_path=str(other), **ARGS)
    storage, moved = tmp_path / "store", tmp_path / "moved"
    ts.run(fn, SPACE, num_samples=1, name="B", storage_path=str(storage), searcher=ts.OptunaSearch(seed=0),
           warm_start=str(other / "A"), **ARGS)
    assert _spec(storage / "B")["warm_start"] == [str(other / "A")]
    os.rename(storage, moved)  # B moves, A stays where it was
    res = invoke("resume", "B", "--fn", f"{train_file}:train", "--storage-path", str(moved), "--verbose", "0")
    assert res.exit_code == 0, res.output


def test_a_resume_whose_source_moved_elsewhere_says_how_to_point_at_it(train_file: Any, tmp_path: Any,
                                                                        caplog: Any) -> None:
    """An experiment stored before schema 4 reads its sources again on resume: one moved elsewhere is asked for."""
    fn = load_target(f"{train_file}:train")
    storage = tmp_path / "store"
    _earlier_and_interrupted(fn, storage)
    _as_schema_3(storage / "B")
    elsewhere = tmp_path / "archive 'old'" / "A v1"
    elsewhere.parent.mkdir()
    os.rename(storage / "A", elsewhere)
    cmd = ("resume", "B", "--fn", f"{train_file}:train", "--storage-path", str(storage), "--verbose", "0")
    res = invoke(*cmd)
    assert res.exit_code == 2, res.output
    assert str(storage / "A") in res.output and "--warm-start" in res.output, res.output
    assert _spec(storage / "B")["warm_start"] == ["A"]  # refused: the record is kept

    with caplog.at_level(logging.INFO, logger="tunesmith"):
        res = invoke(*cmd, "--warm-start", str(elsewhere))
    assert res.exit_code == 0, res.output
    assert "OptunaSearch observed 3 of 3 finished earlier trials" in caplog.text
    assert _spec(storage / "B")["warm_start"] == [str(elsewhere)]  # its new place, for the next resume
    assert ts.load(str(storage / "B")).meta["warm_start_taken"] == 3  # kept now: a later resume replays them


def test_a_resume_whose_source_is_gone_goes_on_without_it_only_when_told(train_file: Any, tmp_path: Any,
                                                                          caplog: Any) -> None:
    """An experiment stored before schema 4 (its resume reads its sources again) whose source is gone."""
    fn = load_target(f"{train_file}:train")
    storage = tmp_path / "store"
    _earlier_and_interrupted(fn, storage)
    _as_schema_3(storage / "B")
    shutil.rmtree(storage / "A")
    cmd = ("resume", "B", "--fn", f"{train_file}:train", "--storage-path", str(storage), "--verbose", "0")
    res = invoke(*cmd)
    assert res.exit_code == 2 and "--no-warm-start" in res.output, res.output
    res = invoke(*cmd, "--no-warm-start", "--warm-start", str(storage / "B"))
    assert res.exit_code == 2 and "not both" in res.output, res.output
    with caplog.at_level(logging.WARNING, logger="tunesmith"):
        res = invoke(*cmd, "--no-warm-start")
    assert res.exit_code == 0, res.output
    assert "without the earlier trials of" in caplog.text and str(storage / "A") in caplog.text
    assert _spec(storage / "B")["warm_start"] is None


def test_a_recorded_source_is_data_a_relative_one_never_leaves_the_storage_folder(train_file: Any,
                                                                                  tmp_path: Any) -> None:
    """A folder someone else made is untrusted: a recorded source ``../x`` is refused, not read."""
    import sqlite3

    fn = load_target(f"{train_file}:train")
    storage = tmp_path / "store"
    _earlier_and_interrupted(fn, storage)
    _as_schema_3(storage / "B")  # a store of schema 4 replays the trials it kept and follows no recorded path
    ts.run(fn, SPACE, num_samples=1, name="A", storage_path=str(tmp_path), **ARGS)  # tmp_path/A: ../A from B's root
    with sqlite3.connect(storage / "B" / "experiment.db") as db:
        spec = json.loads(db.execute("SELECT value FROM experiment WHERE key = 'spec'").fetchone()[0])
        spec["warm_start"] = ["../A"]
        db.execute("UPDATE experiment SET value = ? WHERE key = 'spec'", (json.dumps(spec),))
    db.close()
    res = invoke("resume", "B", "--fn", f"{train_file}:train", "--storage-path", str(storage), "--verbose", "0")
    assert res.exit_code == 2 and "'../A'" in res.output and "--warm-start" in res.output, res.output


# -- 2. a name is found as ts.load finds it --------------------------------------------------------------------------
def quadratic(config: Any) -> None:
    ts.report({"loss": (config["x"] - 0.3) ** 2})


def test_warm_start_finds_a_folder_by_name_as_load_does(tmp_path: Any, results_dir: Any, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    ts.run(quadratic, SPACE, num_samples=3, name="A", storage_path=".", **ARGS)  # ./A, not in the results folder
    assert ts.load("A").path == str(tmp_path / "A")
    searcher = ts.OptunaSearch(seed=0)
    ts.run(quadratic, SPACE, num_samples=1, name="B", searcher=searcher, warm_start="A", **ARGS)
    assert len(searcher.study.trials) == 3 + 1
    with pytest.raises(ts.ConfigError) as e:
        ts.run(quadratic, SPACE, name="C", searcher=ts.OptunaSearch(seed=0), warm_start="nope", **ARGS)
    assert str(results_dir / "nope") in str(e.value) and str(tmp_path / "nope") in str(e.value)  # both places


# -- 3. a resume from Python without warm_start reuses the earlier trials it kept --------------------------------
def test_a_python_resume_without_warm_start_reuses_the_earlier_trials_it_kept(results_dir: Any, caplog: Any) -> None:
    _earlier_and_interrupted(quadratic, results_dir)
    searcher = ts.OptunaSearch(seed=0)
    with caplog.at_level(logging.INFO, logger="tunesmith"):
        result = ts.run(quadratic, SPACE, num_samples=4, name="B", searcher=searcher, max_concurrent=1, resume=True,
                        **ARGS)
    assert result.meta["spec"]["warm_start"] == ["A"]  # kept for the next resume
    assert "resume: warm start from the 3 earlier trials experiment 'B' took in when it began" in caplog.text
    assert len(searcher.study.trials) == 3 + 4  # A's 3 observed, then B's 4


def test_an_unseeded_searcher_resumed_keeps_the_warm_start(results_dir: Any) -> None:
    """A resume gives an unseeded searcher the seed it drew first and sets it up again: the warm start comes after
    that setup (a setup starts the searcher afresh)."""
    ts.run(quadratic, SPACE, num_samples=3, name="A", **ARGS)
    with pytest.raises(KeyboardInterrupt):
        ts.run(quadratic, SPACE, num_samples=4, name="B", searcher=ts.OptunaSearch(), warm_start="A",
               max_concurrent=1, callbacks=[CtrlCAfter(1)], **ARGS)
    searcher = ts.OptunaSearch()
    ts.run(quadratic, SPACE, num_samples=4, name="B", searcher=searcher, warm_start="A", max_concurrent=1,
           resume=True, **ARGS)
    assert searcher._seed == ts.load("B").meta["spec"]["searcher"]["seed"]
    assert len(searcher.study.trials) == 3 + 4


def test_a_resume_with_other_warm_start_sources_is_refused(results_dir: Any) -> None:
    ts.run(quadratic, SPACE, num_samples=2, name="C", **ARGS)
    _earlier_and_interrupted(quadratic, results_dir)
    for other in ("C", ["A", "C"], []):
        with pytest.raises(ts.ConfigError, match=r"was run with warm_start=\['A'\].*pass the same"):
            ts.run(quadratic, SPACE, num_samples=4, name="B", searcher=ts.OptunaSearch(seed=0), resume=True,
                   warm_start=other, **ARGS)
    assert ts.load("B").meta["spec"]["warm_start"] == ["A"] and ts.load("B").status == "interrupted"
    # the same source named another way (its folder) is the same source
    result = ts.run(quadratic, SPACE, num_samples=4, name="B", searcher=ts.OptunaSearch(seed=0), resume=True,
                    warm_start=str(results_dir / "A"), **ARGS)
    assert result.status == "finished" and result.meta["spec"]["warm_start"] == ["A"]


# -- 3b. a resume replays the earlier trials taken in at the start, stored with the experiment ---------------------
def _seeded() -> Any:
    return ts.OptunaSearch(seed=0, n_startup_trials=2)  # a model from the start: earlier trials change its suggestions


def _configs(folder: Any) -> list[Any]:
    return [t.config for t in ts.load(str(folder)).trials]


def _reference_and_interrupted(results_dir: Any, tmp_path: Any) -> Any:
    """A (3 finished trials); ``ref``: 4 trials warm-started from a copy of A as it is now, run through; B: the same
    warm-started from A, interrupted after its first result. Returns ref's configs."""
    ts.run(quadratic, SPACE, num_samples=3, name="A", **ARGS)
    shutil.copytree(results_dir / "A", tmp_path / "A then")
    ts.run(quadratic, SPACE, num_samples=4, name="ref", searcher=_seeded(), warm_start=str(tmp_path / "A then"),
           max_concurrent=1, **ARGS)
    with pytest.raises(KeyboardInterrupt):
        ts.run(quadratic, SPACE, num_samples=4, name="B", searcher=_seeded(), warm_start="A", max_concurrent=1,
               callbacks=[CtrlCAfter(1)], **ARGS)
    return _configs(results_dir / "ref")


def test_a_resume_replays_the_earlier_trials_it_took_not_its_source_grown_since(results_dir: Any, tmp_path: Any,
                                                                              caplog: Any) -> None:
    reference = _reference_and_interrupted(results_dir, tmp_path)
    ts.run(quadratic, SPACE, num_samples=8, name="A", resume=True, **ARGS)  # A grows after B began
    assert len(ts.load(str(results_dir / "A")).trials) == 8
    searcher = _seeded()
    with caplog.at_level(logging.INFO, logger="tunesmith"):
        result = ts.run(quadratic, SPACE, num_samples=4, name="B", searcher=searcher, max_concurrent=1, resume=True,
                        **ARGS)
    assert "OptunaSearch observed 3 of 3 finished earlier trials" in caplog.text, caplog.text
    assert len(searcher.study.trials) == 3 + 4  # A's 3 as B first took them in, then B's 4
    assert _configs(result.path) == reference  # the searcher saw the same history: the same suggestions


def test_a_resume_whose_source_was_deleted_replays_what_it_took(results_dir: Any, tmp_path: Any) -> None:
    reference = _reference_and_interrupted(results_dir, tmp_path)
    shutil.rmtree(results_dir / "A")
    searcher = _seeded()
    result = ts.run(quadratic, SPACE, num_samples=4, name="B", searcher=searcher, max_concurrent=1, resume=True,
                    **ARGS)
    assert result.status == "finished" and result.meta["spec"]["warm_start"] == ["A"]
    assert len(searcher.study.trials) == 3 + 4
    assert _configs(result.path) == reference


def test_a_resume_that_leaves_a_lost_source_out_drops_its_trials_and_a_failed_one_keeps_them(
        results_dir: Any, tmp_path: Any, caplog: Any) -> None:
    import sqlite3

    _reference_and_interrupted(results_dir, tmp_path)
    shutil.rmtree(results_dir / "A")
    db = sqlite3.connect(results_dir / "B" / "experiment.db")
    with db:
        config = db.execute("SELECT config FROM trials WHERE id = 1").fetchone()[0]
        db.execute("UPDATE trials SET config = '[1' WHERE id = 1")  # its replay fails after the spec is written
    with pytest.raises(ts.StoreError, match="trial 1's config is not valid JSON"):
        ts.run(quadratic, SPACE, num_samples=4, name="B", searcher=_seeded(), max_concurrent=1, resume=True,
               warm_start=[], **ARGS)
    kept = ts.load(str(results_dir / "B"))
    assert kept.meta["spec"]["warm_start"] == ["A"] and kept.meta["warm_start_taken"] == 3
    assert len(kept._store.warm_start_trials()) == 3  # the failed resume put them back
    kept._store.close()
    with db:
        db.execute("UPDATE trials SET config = ? WHERE id = 1", (config,))
    db.close()

    searcher = _seeded()
    with caplog.at_level(logging.WARNING, logger="tunesmith"):
        result = ts.run(quadratic, SPACE, num_samples=4, name="B", searcher=searcher, max_concurrent=1, resume=True,
                        warm_start=[], **ARGS)
    assert "goes on without the earlier trials of its warm_start source" in caplog.text
    assert len(searcher.study.trials) == 4  # none of A's
    assert result.meta["spec"]["warm_start"] is None and result.meta["warm_start_taken"] == 0


# -- 4. the resume command printed at Ctrl-C names every function of the user's --------------------------------------
SCRIPT = textwrap.dedent("""
    import os
    import signal
    import sys

    import tunesmith as ts

    def train(config):
        for i in range(1, 4):
            ts.report({"loss": config["x"] + 1.0 / i, "mem": config["x"] * 10})

    def cons(result):
        return [result["mem"] - 7]

    def per_trial(config):
        return {"cpu": 1}

    def long_enough(trial_id, result):
        return result["training_iteration"] >= 3

    class Never(ts.Stopper):
        pass

    class CtrlC(ts.Callback):  # the user's Ctrl-C, once the first result is in
        sent = False

        def on_trial_results(self, trial, results):
            if not self.sent:
                self.sent = True
                os.kill(os.getpid(), signal.SIGINT)

    if __name__ == "__main__":
        ts.run(train, {"x": ts.uniform(0, 1)}, metric="loss", mode="min", num_samples=3, name=sys.argv[2],
               storage_path=sys.argv[1], constraints=cons, resources=per_trial, stop=[long_enough, Never()],
               max_concurrent=1, verbose=0, callbacks=[CtrlC()])
""")


def test_the_resume_command_printed_at_ctrl_c_names_the_constraints_and_runs_as_printed(tmp_path: Any) -> None:
    folder = tmp_path / "my scripts"
    folder.mkdir()
    script = folder / "mo train's.py"
    script.write_text(SCRIPT)
    storage = tmp_path / "store #1 'x'"
    run = subprocess.run([sys.executable, str(script), str(storage), "E-1"], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert run.returncode != 0, run.stderr  # interrupted
    found = re.search(r"Resume with: (tunesmith resume .*?)  \(or ", run.stderr)
    assert found, run.stderr
    printed = found.group(1)
    assert f"--constraints {shlex.quote(f'{script}:cons')}" in printed, printed
    assert ts.load(str(storage / "E-1")).status == "interrupted"

    argv = shlex.split(printed)
    assert argv[0] == "tunesmith"
    again = subprocess.run([sys.executable, "-m", "tunesmith.cli", *argv[1:], "--verbose", "0"], capture_output=True,
                           text=True, timeout=120, cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert again.returncode == 0, (printed, again.stdout, again.stderr)
    done = ts.load(str(storage / "E-1"))
    assert done.status == "finished" and len(done.trials) == 3


def test_a_function_the_command_line_cannot_import_gets_the_python_hint_only(results_dir: Any,
                                                                             caplog: Any) -> None:
    with caplog.at_level(logging.WARNING, logger="tunesmith"), pytest.raises(KeyboardInterrupt):
        ts.run(quadratic, SPACE, num_samples=3, name="L", constraints=lambda r: [r["loss"] - 1], max_concurrent=1,
               callbacks=[CtrlCAfter(1)], **ARGS)
    message = next(r.getMessage() for r in caplog.records if "interrupted; its results are stored" in r.getMessage())
    assert "tunesmith resume" not in message and "tunesmith.run(..., name='L', resume=True)" in message, message
    assert "the constraints function" in message and "<lambda>" in message, message


# -- the dashboard's add_samples sets the searcher up again with the recorded sources --------------------------------
def held_until(release: str) -> Any:
    """A training function that reports until the file ``release`` exists (bounded: 30 s; the sleep only paces
    it)."""

    def held(config: Any) -> None:
        import time

        for i in range(3000):
            ts.report({"loss": (config["x"] - 0.3) ** 2 + 1.0 / (i + 1)})
            if os.path.exists(release):
                return
            time.sleep(0.01)

    return held


class AddOneThenRelease(ts.Callback):
    """add_samples(1) from the dashboard's command folder at the first result; the release file once the trial it
    added starts."""

    def __init__(self, exp_dir: str, release: str) -> None:
        self.exp_dir, self.release, self.sent = exp_dir, release, False

    def on_trial_results(self, trial: Any, results: Any) -> None:
        from tunesmith.dashboard._commands import write_command

        if not self.sent:
            self.sent = True
            write_command(self.exp_dir, {"action": "add_samples", "n": 1})

    def on_trial_start(self, trial: Any) -> None:
        if trial.id == 2:
            open(self.release, "w").close()


def test_add_samples_sets_the_searcher_up_again_with_the_recorded_sources(results_dir: Any, tmp_path: Any,
                                                                          caplog: Any) -> None:
    ts.run(quadratic, SPACE, num_samples=3, name="A", **ARGS)
    release = str(tmp_path / "release")
    callback = AddOneThenRelease(str(results_dir / "B"), release)
    with caplog.at_level(logging.INFO, logger="tunesmith"):
        result = ts.run(held_until(release), SPACE, num_samples=1, name="B", max_concurrent=2,
                        searcher=ts.OptunaSearch(seed=0), warm_start="A", callbacks=[callback], **ARGS)
    assert len(result.trials) == 2
    [event] = [data for _s, _t, kind, _tid, data in result._store.events() if kind == "command"]
    assert event["applied"] is True, event
    assert caplog.text.count("OptunaSearch observed 3 of 3 finished earlier trials") == 2  # at the start, and again


@pytest.mark.parametrize("backend", [{"kind": "ray", "address": None, "not_recorded": ["init_kwargs"]},
                                     {"kind": "SimulatedBackend"}])
def test_the_interrupt_hint_for_a_backend_the_command_line_cannot_build_is_the_python_call(results_dir: Any,
                                                                                          backend: Any) -> None:
    """`tunesmith resume` refuses an experiment whose backend it cannot build (a RayBackend with init_kwargs, a
    backend of the user's own): the hint printed at Ctrl-C named that command anyway."""
    from tunesmith._run import resume_hint

    hint = resume_hint("E", quadratic, str(results_dir), {"backend": backend})
    assert "tunesmith resume" not in hint and "tunesmith.run(..., name='E', resume=True)" in hint, hint
    assert "backend" in hint
    assert resume_hint("E", quadratic, str(results_dir), {"backend": {"kind": "local"}}).startswith("tunesmith resume")
