"""PBT with a population larger than the free slots: the population evolves together (time-sharing).

The toy is a port of Ray Tune's ``pbt_example.py`` (``PBTBenchmarkExample``): accuracy grows fastest at an
optimal learning rate that rises then falls with the accuracy (a triangle wave), and every trial starts at
lr = 0.0001, where it cannot learn at all. The goal (accuracy > 200) is reachable only by evolving the lr
schedule through the population. On the simulated executor (virtual time) the run is deterministic.
"""

from __future__ import annotations

import pytest

import tunesmith as ts
from tunesmith.executors.simulated import SimulatedBackend

INTERVAL = 20
GOAL = 200.0


def pbt_benchmark(config, ctx):
    """``PBTBenchmarkExample.step`` as a generator: one virtual second per iteration, a checkpoint at every
    perturbation point (checkpoint frequency = perturbation interval)."""
    accuracy = ctx.checkpoint["accuracy"] if ctx.checkpoint else 0.0
    lr, rng = config["lr"], ctx.rng
    midpoint, q_tolerance, noise_level = 100, 3, 2
    for iteration in range(ctx.iteration + 1, 1001):
        if accuracy < midpoint:
            optimal_lr = 0.01 * accuracy / midpoint
        else:
            optimal_lr = 0.01 - 0.01 * (accuracy - midpoint) / midpoint
        optimal_lr = min(0.01, max(0.001, optimal_lr))
        q_err = max(lr, optimal_lr) / min(lr, optimal_lr)
        if q_err < q_tolerance:
            accuracy += (1.0 / q_err) * rng.random()
        elif lr > optimal_lr:
            accuracy -= (q_err - q_tolerance) * rng.random()
        accuracy = max(0.0, accuracy + noise_level * rng.gauss(0.0, 1.0))
        done = accuracy > midpoint * 2
        metrics = {"mean_accuracy": accuracy, "cur_lr": lr, "done": done}
        yield (metrics, 1.0, {"accuracy": accuracy}) if iteration % INTERVAL == 0 else (metrics, 1.0)
        if done:
            return


def run_population(path, *, seed=0, **slots):
    pbt = ts.PBT(perturbation_interval=INTERVAL, seed=seed,
                 hyperparam_mutations={"lr": ts.uniform(0.0001, 0.02), "some_other_factor": [1, 2]})
    return ts.run(pbt_benchmark, space={"lr": 0.0001, "some_other_factor": 1}, num_samples=8,
                  metric="mean_accuracy", mode="max", scheduler=pbt, storage_path=str(path), name="pbt",
                  verbose=0, file_loggers=False, **slots)


def exploit_gaps(result):
    """For each exploit: how far the source's checkpoint was ahead of (or behind) the exploiting trial."""
    events = result._store.events()
    return [data["iteration"] - data["from_iteration"] for _s, _t, kind, _tid, data in events if kind == "exploit"]


@pytest.mark.parametrize("slots", [{"backend": "cpu2"}, {"max_concurrent": 2}], ids=["2-cpus", "max_concurrent-2"])
def test_eight_trials_on_two_slots_evolve_together_and_all_reach_the_goal(tmp_path, slots):
    if slots.get("backend") == "cpu2":
        slots = {"backend": SimulatedBackend({"cpu": 2})}
    else:
        slots = {"backend": SimulatedBackend({"cpu": 8}), **slots}
    result = run_population(tmp_path, **slots)
    finals = {t.id: t.last_result["mean_accuracy"] for t in result.trials}
    assert len(finals) == 8 and all(acc > GOAL for acc in finals.values()), finals
    gaps = exploit_gaps(result)
    assert gaps, "the population never exploited"
    # the population moves together: nobody clones a checkpoint far ahead of (or behind) itself
    assert max(abs(g) for g in gaps) <= 2 * INTERVAL, gaps
    # and the trials did share the slots: paused at perturbation points, resumed later
    assert sum(1 for e in result._store.events() if e[2] == "pause") >= 8
