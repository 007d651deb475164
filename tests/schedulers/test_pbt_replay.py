"""PBTReplay: a PBT trial's lineage (read from the store's exploit events) replayed in one trial."""

from __future__ import annotations

import math
import os
import shutil
import tempfile

import pytest

import tunesmith as ts
from tunesmith.executors.simulated import SimulatedBackend
from tunesmith.schedulers.replay import lineage_schedule

LRS = [0.001, 0.3, 0.01, 3.0, 0.03, 1.0]
ITERS = 24


def train(config, ctx):
    """The learning rates used so far travel in the checkpoint: its final state is the ground truth of the config
    schedule a trial's lineage trained with (the state of a clone is its source's)."""
    state = ctx.checkpoint or {"step": 0, "loss": 1.0, "lrs": []}
    while state["step"] < ITERS:
        state["step"] += 1
        state["lrs"] = [*state["lrs"], config["lr"]]
        best = 0.3 * 0.85 ** state["step"]  # the best learning rate decays: the lineage must follow it
        state["loss"] *= 1 - 0.2 * math.exp(-math.log(config["lr"] / best) ** 2)
        yield ({"loss": state["loss"], "lr": config["lr"]}, 1.0, dict(state))


@pytest.fixture
def fast_dir():
    """Experiment folders on tmpfs when there is one: checkpoints fsync, and tmpfs makes that free."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    path = tempfile.mkdtemp(prefix="tunesmith_replay_", dir=base)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def pbt_experiment(fast_dir):
    pbt = ts.PBT(perturbation_interval=4, hyperparam_mutations={"lr": ts.loguniform(1e-4, 10.0)},
                 quantile_fraction=0.34, seed=5)
    result = ts.run(train, space={"lr": ts.grid(LRS)}, metric="loss", mode="min", scheduler=pbt,
                    backend=SimulatedBackend({"cpu": 6}), verbose=0, storage_path=fast_dir, name="pbt", keep=None)
    return result


def test_replay_of_the_best_trial_trains_with_its_config_schedule(pbt_experiment, fast_dir):
    best = pbt_experiment.best
    lineage_lrs = best.checkpoint.load()["lrs"]  # what the best trial's lineage trained with, per iteration
    assert len(lineage_lrs) == ITERS
    assert len(set(lineage_lrs)) >= 3  # the lineage changed its config at least twice

    replay = ts.PBTReplay(os.path.join(fast_dir, "pbt"), best.id)
    # the schedule: from each change's iteration on, that config; it matches the lineage's per-iteration lrs
    assert replay.schedule[0][0] == 0
    for (start, config), nxt in zip(replay.schedule, [*replay.schedule[1:], (ITERS, None)]):
        assert lineage_lrs[start:nxt[0]] == [config["lr"]] * (nxt[0] - start), (start, replay.schedule)

    again = ts.run(train, space=replay.config, metric="loss", mode="min", scheduler=replay, num_samples=1,
                   backend=SimulatedBackend({"cpu": 1}), verbose=0, storage_path=fast_dir, name="replay")
    (trial,) = again.trials
    assert trial.checkpoint.load()["lrs"] == lineage_lrs  # every segment with its config
    assert trial.iteration == best.iteration
    assert math.isclose(trial.last_result["loss"], best.last_result["loss"])  # the same training, to the bit
    assert [r["lr"] for r in again.history(trial.id)][-1] == lineage_lrs[-1]


def test_a_trial_never_exploited_replays_its_one_config(fast_dir):
    ts.run(train, space={"lr": ts.grid([0.1, 0.2])}, metric="loss", mode="min", backend=SimulatedBackend({"cpu": 2}),
           verbose=0, storage_path=fast_dir, name="fifo")
    replay = ts.PBTReplay(os.path.join(fast_dir, "fifo"), "trial_00002")
    assert replay.schedule == [(0, {"lr": 0.2})] and replay.config == {"lr": 0.2}
    assert replay.last_iteration == ITERS


def test_lineage_through_a_source_that_was_exploited_later():
    # trial 2 cloned trial 1 at iteration 4 (seq 1); trial 1 was itself exploited later (seq 2, from trial 3):
    # trial 2's lineage has trial 1's config of *then*, which the later exploit's old_config keeps
    events = [(1, 0.0, "exploit", 2, {"source": 1, "iteration": 4, "config": {"lr": 0.2}, "old_config": {"lr": 9}}),
              (2, 0.0, "exploit", 1, {"source": 3, "iteration": 8, "config": {"lr": 0.5}, "old_config": {"lr": 0.1}}),
              (3, 0.0, "exploit", 4, {"source": 2, "iteration": 12, "config": {"lr": 0.3}, "old_config": {"lr": 7}})]
    configs = {1: {"lr": 0.5}, 2: {"lr": 0.2}, 3: {"lr": 0.05}, 4: {"lr": 0.3}}
    assert lineage_schedule(events, configs, 4) == [(0, {"lr": 0.1}), (4, {"lr": 0.2}), (12, {"lr": 0.3})]
    assert lineage_schedule(events, configs, 1) == [(0, {"lr": 0.05}), (8, {"lr": 0.5})]
    without = [(s, t, k, tid, {key: v for key, v in d.items() if key != "old_config"}) for s, t, k, tid, d in events]
    with pytest.raises(ts.ConfigError, match="^trial_id=4: the config trial_00001 started with"):
        lineage_schedule(without, configs, 4)


def test_bad_experiment_or_trial(pbt_experiment, fast_dir):
    with pytest.raises(ts.ConfigError, match="no experiment"):
        ts.PBTReplay(os.path.join(fast_dir, "nope"), 1)
    with pytest.raises(ts.ConfigError, match="^trial_id: 99 is not in the experiment"):
        ts.PBTReplay(os.path.join(fast_dir, "pbt"), 99)
    with pytest.raises(ts.ConfigError, match="^trial_id"):
        ts.PBTReplay(os.path.join(fast_dir, "pbt"), "best")
