"""PBT history and lineage are data: an exploit starts a new generation of the trial's results and keeps the
old lineage's; a restart from the trial's own checkpoint still replaces what came after it."""

from __future__ import annotations

import gc
import math
import os
import sqlite3

import pytest
from algorithm_helpers import TotalResults

import tunesmith as ts
from tunesmith.executors.simulated import SimulatedBackend
from tunesmith.store.sqlite import SCHEMA_VERSION, STORE_FILE, Store


def two_speeds(config, ctx):
    """Trial 1 is bad and fast (0.5 s an iteration), trial 2 good and slow (1 s): at trial 1's perturbation
    points trial 2's latest checkpoint is behind it, so trial 1 clones an *earlier* iteration."""
    state = ctx.checkpoint or {"level": config["q"], "step": 0}
    assert state["step"] == ctx.iteration
    seconds = 0.5 if config["q"] > 0.5 else 1.0
    while state["step"] < 30:
        state["step"] += 1
        yield ({"loss": state["level"] + 1.0 / state["step"], "lr": config["lr"]}, seconds,
               dict(state) if state["step"] % 5 == 0 else None)


def run_two(path, **kw):
    pbt = ts.PBT(perturbation_interval=5, hyperparam_mutations={"lr": ts.uniform(0.0, 1.0)}, quantile_fraction=0.5,
                 seed=1)
    return ts.run(two_speeds, space={"q": ts.grid([1.0, 0.0]), "lr": 0.5}, metric="loss", mode="min",
                  scheduler=pbt, backend=SimulatedBackend({"cpu": 2}), storage_path=str(path), name="two",
                  verbose=0, file_loggers=False, **kw)


def test_an_exploit_keeps_the_old_lineages_results_as_an_earlier_generation(tmp_path):
    result = run_two(tmp_path)
    lineage = result.lineage(1)
    back = [e for e in lineage if e["source_iteration"] < e["iteration"]]
    assert back, lineage  # the scenario makes trial 1 clone an earlier checkpoint
    t1 = result.trial(1)
    assert t1.generation == len(lineage) and (t1.parent_id, t1.parent_iteration) == (2, lineage[-1]["source_iteration"])
    every = result.history(1, all_generations=True)
    for e in back:
        superseded = [h["training_iteration"] for h in every if h["generation"] == e["generation"] - 1
                      and e["source_iteration"] < h["training_iteration"] <= e["iteration"]]
        # the results its old lineage reported after the cloned checkpoint are all still there
        assert superseded == list(range(e["source_iteration"] + 1, e["iteration"] + 1)), (e, superseded)
    # the default history is the current generation: each iteration once, in order, ending where it ended
    current = [h["training_iteration"] for h in result.history(1)]
    assert current == list(range(1, 31)), current
    assert [h for h in every if h["generation"] == t1.generation] == [
        {**h, "generation": t1.generation} for h in result.history(1)]
    # lineage: source, iterations, and the configs before and after
    first = lineage[0]
    assert first["trial_id"] == 1 and first["source"] == 2 and first["generation"] == 1
    assert first["old_config"] == {"q": 1.0, "lr": 0.5} and first["config"]["q"] == 0.0
    assert first["config"]["lr"] != 0.5
    everyone = result.lineage()
    assert everyone == sorted(everyone, key=lambda e: e["time"]) and len(everyone) >= len(lineage)


def test_show_has_a_parent_column(tmp_path):
    from click.testing import CliRunner

    from tunesmith.cli import cli

    run_two(tmp_path)
    out = CliRunner().invoke(cli, ["show", os.path.join(str(tmp_path), "two")], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "parent" in out.output and "2@" in out.output


def _downgrade_to_schema_1(db_path: str) -> None:
    """What a tunesmith of schema 1 wrote: results keyed by (trial, iteration), no generation anywhere, no kept
    warm-start trials (schema 4)."""
    db = sqlite3.connect(db_path)
    db.executescript("""
        CREATE TABLE results_v1 (trial_id INTEGER NOT NULL, iteration INTEGER NOT NULL, time_total REAL NOT NULL,
            timestamp REAL NOT NULL, metrics TEXT NOT NULL, PRIMARY KEY (trial_id, iteration)) WITHOUT ROWID;
        INSERT INTO results_v1 SELECT trial_id, iteration, time_total, timestamp, metrics FROM results
            WHERE generation = 0;
        DROP TABLE results;
        ALTER TABLE results_v1 RENAME TO results;
        ALTER TABLE trials DROP COLUMN generation;
        DROP TABLE IF EXISTS warm_start;
        DELETE FROM experiment WHERE key = 'warm_start_taken';
        PRAGMA user_version = 1;
    """)
    db.commit()
    db.close()


def test_a_schema_1_store_loads_and_resumes(tmp_path):
    def steady(config, ctx):
        state = ctx.checkpoint or {"step": 0}
        while state["step"] < 6:
            state["step"] += 1
            yield {"loss": config["x"] / state["step"]}, 1.0, dict(state)

    def run(**kw):
        return ts.run(steady, space={"x": ts.grid([1.0, 2.0])}, metric="loss", mode="min", name="old",
                      storage_path=str(tmp_path), backend=SimulatedBackend({"cpu": 2}), verbose=0,
                      file_loggers=False, **kw)

    run()
    db_path = os.path.join(str(tmp_path), "old", "experiment.db")
    _downgrade_to_schema_1(db_path)
    db = sqlite3.connect(db_path)  # as if the driver had died with trial 2 at iteration 3
    db.execute("UPDATE trials SET status = 'RUNNING', iteration = 3, end_time = NULL WHERE id = 2")
    db.execute("DELETE FROM results WHERE trial_id = 2 AND iteration > 3")
    db.execute("DELETE FROM checkpoints WHERE trial_id = 2 AND iteration > 3")
    db.execute("UPDATE trials SET checkpoint_iteration = 3, checkpoint = "
               "(SELECT path FROM checkpoints WHERE trial_id = 2 AND iteration = 3) WHERE id = 2")
    db.commit()
    db.close()
    loaded = ts.load(os.path.join(str(tmp_path), "old"))  # a reader of the old file (no migration: read-only)
    assert [h["training_iteration"] for h in loaded.history(2)] == [1, 2, 3]
    assert loaded.lineage() == [] and loaded.trial(2).generation == 0
    resumed = run(resume=True)
    assert [h["training_iteration"] for h in resumed.history(1)] == list(range(1, 7))
    assert [h["training_iteration"] for h in resumed.history(2)] == list(range(1, 7))
    reader = Store(db_path, readonly=True)  # held: a Store let go closes its connection
    assert reader._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    reader.close()


def _assert_left_as_it_was(db_path: str, before: bytes) -> None:
    """The schema-1 store at ``db_path`` is not migrated (its write-ahead log read too) and, once any connection
    left open is collected (it folds its log into the file then), is ``before`` byte for byte."""
    db = sqlite3.connect(db_path)  # reads the write-ahead log too: what a connection left open wrote is seen
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    db.close()
    gc.collect()  # a connection left open folds its log into the file when it is collected
    with open(db_path, "rb") as f:
        assert f.read() == before


def test_a_refused_resume_leaves_a_schema_1_store_as_it_was(tmp_path):
    """The resume is checked before the store is migrated: one refused (another metric) leaves the old file, byte for
    byte, for the tunesmith that wrote it."""
    def steady(config, ctx):
        yield {"loss": config["x"]}, 1.0, None

    def run(**kw):
        return ts.run(steady, space={"x": ts.grid([1.0, 2.0])}, mode="min", name="old", storage_path=str(tmp_path),
                      backend=SimulatedBackend({"cpu": 2}), verbose=0, file_loggers=False, **kw)

    run(metric="loss")
    db_path = os.path.join(str(tmp_path), "old", "experiment.db")
    _downgrade_to_schema_1(db_path)
    with open(db_path, "rb") as f:
        before = f.read()
    with pytest.raises(ts.ConfigError, match="was run with metric='loss', not 'acc'"):
        run(metric="acc", resume=True)
    _assert_left_as_it_was(db_path, before)


def test_a_resume_refused_after_its_checks_leaves_a_schema_1_store_as_it_was(tmp_path):
    """A resume its checks accept can still be refused before it runs anything: here the warm-start source it
    recorded was since written by a newer tunesmith, and cannot be read. The store is opened for writing (and
    migrated) only once nothing is left that could refuse it, so the old file is left byte for byte."""
    def steady(config, ctx):
        yield {"loss": config["x"]}, 1.0, None

    def run(name, **kw):
        return ts.run(steady, space={"x": ts.grid([1.0, 2.0])}, metric="loss", mode="min", name=name,
                      storage_path=str(tmp_path), backend=SimulatedBackend({"cpu": 2}), verbose=0, file_loggers=False,
                      **kw)

    run("src")
    run("old", warm_start=[os.path.join(str(tmp_path), "src")])
    db_path = os.path.join(str(tmp_path), "old", "experiment.db")
    _downgrade_to_schema_1(db_path)
    src = sqlite3.connect(os.path.join(str(tmp_path), "src", "experiment.db"))
    src.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    src.close()
    with open(db_path, "rb") as f:
        before = f.read()
    with pytest.raises(ts.StoreError, match="newer tunesmith"):
        run("old", resume=True)
    _assert_left_as_it_was(db_path, before)


def uneven(config, ctx):
    """The e2e PBT experiment in virtual time: 12 iterations of uneven length, a checkpoint every 3."""
    state = dict(ctx.checkpoint) if ctx.checkpoint is not None else {"step": 0, "loss": 1.0}
    while state["step"] < 12:
        state["step"] += 1
        state["loss"] *= 1 - 0.1 * math.exp(-math.log(config["lr"] / 0.1) ** 2)
        seconds = ctx.rng.choice([0.5, 1.0, 1.0, 1.5, 2.0])
        yield ({"loss": state["loss"], "step": state["step"]}, seconds,
               dict(state) if state["step"] % 3 == 0 else None)


class _SeenPBT(ts.PBT):
    """PBT recording the last result it is told each trial ended with."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.ended_with = {}

    def on_complete(self, trial, result, view):
        self.ended_with[trial.id] = result and (result.iteration, result.metrics["loss"])
        super().on_complete(trial, result, view)


def run_uneven(path, **kw):
    pbt = _SeenPBT(perturbation_interval=3, hyperparam_mutations={"lr": ts.loguniform(1e-4, 10.0)},
                   resample_probability=0.0, seed=39)
    result = ts.run(uneven, space={"lr": ts.grid([0.001, 0.1, 0.01, 1.0])}, metric="loss", mode="min",
                    scheduler=pbt, backend=SimulatedBackend({"cpu": 4}, seed=39), storage_path=str(path),
                    name="uneven", verbose=0, file_loggers=False, **kw)
    return result, pbt


def test_an_exploit_onto_a_final_checkpoint_is_undone_when_the_clone_trains_nothing(tmp_path):
    """Trial 3, at its perturbation point 9, clones trial 2's checkpoint of iteration 12: trial 2 reported its
    last result but its end is not in yet, so it is still in the population. Cloned ahead, trial 3 has nothing
    left to train, so its new config produced nothing: the exploit is undone, and trial 3 ends as it was at 9 (its
    own config, result, checkpoint and generation), never without a result. The event stays, as
    ``exploit_undone``."""
    result, pbt = run_uneven(tmp_path)
    events = Store(str(tmp_path / "uneven" / STORE_FILE), readonly=True).events()
    undone = [(tid, data) for _s, _t, kind, tid, data in events if kind == "exploit_undone"]
    assert [(tid, d["source"], d["iteration"], d["from_iteration"]) for tid, d in undone] == [(3, 2, 12, 9)]
    before = undone[0][1]
    lineage = result.lineage(3)
    assert all(e["generation"] != before["generation"] for e in lineage), lineage  # not in the lineage
    t3 = result.trial(3)
    assert t3.status is ts.TrialStatus.TERMINATED
    assert t3.config == before["old_config"] and t3.generation == before["generation"] - 1 == len(lineage)
    assert (t3.parent_id, t3.parent_iteration) == ((lineage[-1]["source"], lineage[-1]["source_iteration"])
                                                   if lineage else (None, None))
    assert t3.iteration == 9 and t3.last_result["training_iteration"] == 9
    assert t3.last_result["loss"] == result.history(3)[-1]["loss"]
    assert [h["training_iteration"] for h in result.history(3)] == list(range(1, 10))
    assert t3.checkpoint.iteration == 9 and t3.checkpoint.load()["step"] == 9  # its own, not trial 2's
    assert all(t.last_result for t in result.trials)  # no trial without a result
    assert pbt.ended_with[3] == (9, t3.last_result["loss"])  # the scheduler was told it ended with it
    # its rows since its last applied exploit were produced by the config it shows
    frame = result.dataframe(all_results=True)
    cloned = lineage[-1]["source_iteration"] if lineage else 0
    since = frame[(frame["trial_id"] == 3) & (frame["training_iteration"] > cloned)]
    assert list(since["training_iteration"])[-1] == 9 and set(since["config/lr"]) == {t3.config["lr"]}


def test_a_resume_replays_an_undone_exploit_as_it_was(tmp_path):
    """A resume after the undo (adding trials) replays trial 3 to where it ended (the replay leaves the undone
    exploit out, as every reader of exploits does): the scheduler is told again that it ended with its own result
    of iteration 9, and the trial is what the store says, unchanged."""
    first, seen = run_uneven(tmp_path)
    t3 = first.trial(3)
    again, replayed = run_uneven(tmp_path, resume=True, num_samples=2)
    assert replayed.ended_with[3] == seen.ended_with[3] == (9, t3.last_result["loss"])
    r3 = again.trial(3)
    assert (r3.config, r3.last_result, r3.generation, r3.iteration, r3.checkpoint.iteration) == (
        t3.config, t3.last_result, t3.generation, t3.iteration, t3.checkpoint.iteration)


def test_the_replay_knows_each_results_config_and_checkpoint_of_then():
    """Controller.replay's reading of a twice-exploited trial's rows: which stretch between exploits each was
    reported in (so its config then), whether it came with a checkpoint (one the index still has, one an
    exploit dropped, or one its row says it came with: keep= deleted it), and the result each exploit was decided
    at."""
    from tunesmith._replay import _epochs, _steps
    from tunesmith.store.sqlite import ResultRow
    from tunesmith.trial import TrialView

    a, b, c = {"lr": 1}, {"lr": 2}, {"lr": 3}
    exploits = [  # at 6 it cloned a checkpoint of 3, at 8 one of 8
        {"iteration": 3, "from_iteration": 6, "old_config": a, "config": b, "generation": 1,
         "dropped_checkpoints": [4, 5, 6]},
        {"iteration": 8, "from_iteration": 8, "old_config": b, "config": c, "generation": 2,
         "dropped_checkpoints": []},
    ]
    stored = [(1, 2, 1), (2, 2, 2), (3, 2, 3), (4, 0, 4), (5, 0, 5), (6, 0, 6),  # (iteration, generation, time)
              (4, 2, 7), (5, 2, 8), (6, 2, 9), (7, 2, 10), (8, 2, 11), (9, 2, 12), (10, 2, 13)]
    rows = [ResultRow(1, it, float(t), float(t), "{}", gen) for it, gen, t in stored]
    own = {it: f"ckpt{it}" for it in (1, 2, 3, 4, 5, 6, 7, 8, 10)}  # none at 9; 4..6 of generation 2
    trial = TrialView(id=1, config=c, generation=2)
    # rows that do not say whether they came with a checkpoint (a store written before schema 3): the index says
    steps = _steps(trial, sorted(rows, key=lambda r: (r.generation, r.iteration)), _epochs(c, exploits), own, set())
    got = [(s.iteration, s.epoch, s.config["lr"], s.checkpoint, s.then and s.then.config["lr"]) for s in steps]
    assert got == [
        (1, 0, 1, (1, "ckpt1"), None), (2, 0, 1, (2, "ckpt2"), None), (3, 0, 1, (3, "ckpt3"), None),
        (4, 0, 1, (4, "<replayed checkpoint>"), None), (5, 0, 1, (5, "<replayed checkpoint>"), None),
        (6, 0, 1, (6, "<replayed checkpoint>"), 2),  # exploited here: config b from the next result on
        (4, 1, 2, (4, "ckpt4"), None), (5, 1, 2, (5, "ckpt5"), None), (6, 1, 2, (6, "ckpt6"), None),
        (7, 1, 2, (7, "ckpt7"), None), (8, 1, 2, (8, "ckpt8"), 3),
        (9, 2, 3, None, None), (10, 2, 3, (10, "ckpt10"), None)]
    # a store that did not record the configs (schema 1) replays the latest config throughout
    assert {s.config["lr"] for s in _steps(trial, rows, _epochs(c, [{"iteration": 3, "config": b}]), own,
                                          set())} == {3}
    # keep= deleted the checkpoint of 7 and its index row: the row says it came with one (9's did not)
    ordered = sorted(rows, key=lambda r: (r.generation, r.iteration))
    kept = {it: path for it, path in own.items() if it != 7}
    by_row = {s.iteration: s.checkpoint for s in _steps(trial, ordered, _epochs(c, exploits), kept, {(2, 7)})
              if s.epoch > 0}
    assert (by_row[7], by_row[9]) == ((7, "<replayed checkpoint>"), None)
    by_index = {s.iteration: s.checkpoint for s in _steps(trial, ordered, _epochs(c, exploits), kept, set())
                if s.epoch > 0}
    assert by_index[7] is None


@pytest.mark.parametrize("n", [25, 26, 32, 33, 34, 40])
def test_an_experiment_ended_before_a_clone_reported_ends_it_with_its_own_result(tmp_path, n):
    """The experiment ends (a stopper's stop_all) while a clone waits to restart or has not reported yet: the clone
    ends with the exploit undone, like one with nothing left to train, never without a result."""
    result, _pbt = run_uneven(tmp_path, stop=TotalResults(n))
    for t in result.trials:
        assert t.last_result, (t.id, t.status, t.config, result.lineage(t.id))
        produced = [e for e in result.lineage(t.id) if e["generation"] == t.generation]
        assert t.config == (produced[-1]["config"] if produced else t.config)
