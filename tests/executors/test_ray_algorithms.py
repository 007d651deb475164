"""Issue 18's algorithm features on the Ray backend (``tunesmith.run(..., backend=RayBackend())``), on one real
single-node local Ray with 2 CPUs started once for this module: a class trainable paused and resumed from its
own checkpoint, resources that depend on the config, stop rules with state (per trial, shipped to the trial's
actor; experiment-level, kept in the driver), PBT time-sharing a population larger than the slots, and PB2.
The same features on the local backend: tests/test_trainable.py, tests/test_run_algorithms.py,
tests/test_stop_rules.py, tests/schedulers/test_schedulers_e2e.py, test_pbt_timesharing.py and test_pb2.py.
"""

from __future__ import annotations

import json
import logging
import math
import os

import pytest
from algorithm_helpers import PauseOnce, TotalResults

import tunesmith as ts

ray = pytest.importorskip("ray")
from tunesmith.executors.ray import RayBackend  # noqa: E402

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def ray_2cpus():
    ray.init(address="local", num_cpus=2, object_store_memory=200 * 2**20, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def stops(result):
    """Why each trial was stopped, as the store recorded it (trial id -> reason)."""
    return {tid: data["reason"] for _s, _t, kind, tid, data in result._store.events() if kind == "stop"}


def pauses(result):
    """Each pause as (trial id, the iteration it paused at)."""
    return [(tid, data["iteration"]) for _s, _t, kind, tid, data in result._store.events() if kind == "pause"]


# -- a class trainable --------------------------------------------------------------------------------------
class Counter(ts.Trainable):
    checkpoint_frequency = 3
    checkpoint_at_end = True

    def setup(self, config):
        self.value = 0.0
        self.own_steps = 0  # steps this object made

    def step(self):
        self.value += self.config["lr"]
        self.own_steps += 1
        return {"value": self.value, "own_steps": self.own_steps, "pid": os.getpid(),
                "done": self.iteration + 1 >= self.config["steps"]}

    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "state.json"), "w") as f:
            json.dump({"value": self.value}, f)

    def load_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "state.json")) as f:
            self.value = json.load(f)["value"]


def test_a_trainable_class_is_checkpointed_where_it_paused_and_resumes_there_on_ray(ray_2cpus, results_dir):
    result = ts.run(Counter, {"lr": ts.grid([1.0, 2.0]), "steps": 5}, metric="value", mode="max",
                    scheduler=PauseOnce(), backend=RayBackend(), resources={"cpu": 1}, verbose=0)
    assert [t.status for t in result.trials] == [ts.TrialStatus.TERMINATED] * 2, [t.error for t in result.trials]
    assert sorted(pauses(result)) == [(1, 2), (2, 2)]  # the scheduler's decision reached the actors
    for t in result.trials:
        lr = t.config["lr"]
        history = result.history(t.id)
        assert [h["training_iteration"] for h in history] == [1, 2, 3, 4, 5]
        assert [h["value"] for h in history] == [lr * i for i in range(1, 6)]  # resumed at 2, not from scratch
        # a new object after the pause, restored by load_checkpoint from the checkpoint saved at iteration 2
        assert [h["own_steps"] for h in history] == [1, 2, 1, 2, 3]
        assert os.getpid() not in {h["pid"] for h in history}  # in Ray's workers, not in the driver
        # checkpoint_frequency=3 and checkpoint_at_end: the last one is iteration 5's, with its state
        assert t.checkpoint.iteration == 5
        with open(os.path.join(t.checkpoint.path, "state.json")) as f:
            assert json.load(f) == {"value": lr * 5}
    assert result.best.config["lr"] == 2.0 and result.best.metrics["value"] == 10.0


# -- resources that depend on the config --------------------------------------------------------------------
def what_ray_gave(config):
    import ray as _ray

    given = _ray.get_runtime_context().get_assigned_resources()
    ts.report({"loss": (config["x"] - 0.3) ** 2, "cpus": ts.get_resources()["cpu"], "ray_cpus": given.get("CPU", 0.0)})


def test_resources_can_depend_on_the_config_on_ray(ray_2cpus, results_dir):
    result = ts.run(what_ray_gave, {"x": ts.grid([0.1, 0.2, 0.3])}, verbose=0, backend=RayBackend(),
                    resources=lambda config: {"cpu": 1 if config["x"] < 0.25 else 2})
    by_x = {t.config["x"]: t for t in result.trials}
    assert [by_x[x].status for x in (0.1, 0.2, 0.3)] == [ts.TrialStatus.TERMINATED] * 3
    assert [by_x[x].resources["cpu"] for x in (0.1, 0.2, 0.3)] == [1.0, 1.0, 2.0]
    assert [by_x[x].metrics["cpus"] for x in (0.1, 0.2, 0.3)] == [1.0, 1.0, 2.0]  # what the trial was told
    assert [by_x[x].metrics["ray_cpus"] for x in (0.1, 0.2, 0.3)] == [1.0, 1.0, 2.0]  # what Ray's actor holds
    assert result.meta["spec"]["resources"]["callable"].endswith("<lambda>")
    # a config asking for more than any node has ends the experiment with an error naming it
    with pytest.raises(ts.ConfigError, match=r"resources\(config\) for trial 2 \(config \{'x': 0.9\}\).*"
                                             r"more than any node of the Ray cluster has"):
        ts.run(what_ray_gave, {"x": ts.grid([0.1, 0.9])}, verbose=0, max_concurrent=1, backend=RayBackend(),
               resources=lambda config: {"cpu": 1 if config["x"] < 0.5 else 8}, name="too-big")


# -- stop rules with state ----------------------------------------------------------------------------------
def flat_or_moving(config):
    i = 0
    while True:
        i += 1
        # flat: 5, 4, 3, 2, 1, 1, 1, ... (a window of 3 equal values from iteration 7 on); moving: never flat
        ts.report({"m": i, "loss": max(6.0 - i, 1.0) if config["flat"] else -float(i)})


def constant(config):
    for _ in range(10**6):
        ts.report({"loss": 1.0})
        if ts.should_stop():
            return


def test_stop_rules_with_state_in_the_trial_and_in_the_driver_on_ray(ray_2cpus, results_dir, caplog):
    # TrialPlateau travels to each trial's actor and keeps its window there: the flat trial stops exactly at its
    # 7th result (a rule left to the driver would hear of it late: the loop does not wait), the moving one runs on
    # to the iteration limit
    result = ts.run(flat_or_moving, {"flat": ts.grid([True, False])}, metric="loss", mode="min", verbose=0,
                    backend=RayBackend(), name="plateau",
                    stop=[{"training_iteration": 12}, ts.TrialPlateau("loss", std=1e-9, num_results=3,
                                                                      grace_period=1)])
    by_flat = {t.config["flat"]: t for t in result.trials}
    assert (by_flat[True].iteration, by_flat[False].iteration) == (7, 12)
    assert [h["m"] for h in result.history(by_flat[True].id)] == list(range(1, 8))
    assert all(t.status is ts.TrialStatus.TERMINATED for t in result.trials)
    assert stops(result) == {by_flat[True].id: "stop_rule", by_flat[False].id: "stop_rule"}

    # ExperimentPlateau stays in the driver: 4 equal values are reached in the second trial, no more trials start
    with caplog.at_level(logging.INFO, logger="tunesmith"):
        result = ts.run(constant, metric="loss", mode="min", num_samples=50, max_concurrent=2, verbose=0,
                        backend=RayBackend(), name="experiment-plateau",
                        stop=[{"training_iteration": 3}, ts.ExperimentPlateau("loss", top=4, std=1e-9)])
    assert 2 <= len(result.trials) < 10
    assert result.status == "finished"
    assert all(t.status is ts.TrialStatus.TERMINATED for t in result.trials)
    assert "a stop rule ended the experiment at trial_0000" in caplog.text

    # a Stopper with stop_all: the first trial would run for 10**6 results; the experiment ends it
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="tunesmith"):
        result = ts.run(constant, num_samples=30, max_concurrent=1, verbose=0, backend=RayBackend(),
                        stop=TotalResults(12), name="stop-all")
    assert len(result.trials) == 1
    (trial,) = result.trials
    assert 12 <= trial.iteration < 10**6 and trial.status is ts.TrialStatus.TERMINATED
    assert stops(result) == {trial.id: "experiment"}
    assert "a stop rule ended the experiment at trial_00001's result 12: stopping every trial" in caplog.text


# -- PBT and PB2: a population of 4 on 2 CPUs ---------------------------------------------------------------
LRS = [0.001, 0.1, 0.01, 1.0]
LAST = 10  # perturbation points (checkpoints) at 3, 6, 9: an exploit or a pause always has a step left


def population_member(config):
    ckpt = ts.get_checkpoint()
    state = ckpt.load() if ckpt is not None else {"step": 0, "loss": 1.0, "family": config["family"]}
    resumed_at = state["step"]  # 0 for a fresh start
    while state["step"] < LAST:
        state["step"] += 1
        state["loss"] *= 1 - 0.1 * math.exp(-math.log(config["lr"] / 0.1) ** 2)
        ts.report({"loss": state["loss"], "lr": ts.get_config()["lr"], "family": state["family"],
                   "step": state["step"], "resumed_at": resumed_at},
                  checkpoint=ts.Checkpoint.from_state(dict(state)) if state["step"] % 3 == 0 else None)


def run_population(scheduler, name):
    space = {"lr": ts.grid(LRS), "family": ts.sample_from(lambda c: f"f{c['lr']}")}
    return ts.run(population_member, space=space, metric="loss", mode="min", scheduler=scheduler,
                  resources={"cpu": 1}, backend=RayBackend(), verbose=0, name=name)


def check_population(result):
    """Every trial reached the last iteration, each run continuing from the state it restored; returns the
    exploits (``result.lineage()``)."""
    lineage = result.lineage()
    for t in result.trials:
        assert t.status is ts.TrialStatus.TERMINATED, t.error
        assert t.iteration == LAST
        history = result.history(t.id)
        its = [h["training_iteration"] for h in history]
        assert [h["step"] for h in history] == its  # ts.get_checkpoint() gave the state of that iteration
        assert its[0] == 1 and its == sorted(set(its)), its  # never a repeat
        # a gap only where the trial jumped ahead to a source's later checkpoint (the source's results)
        jumps = {e["source_iteration"] for e in lineage if e["trial_id"] == t.id}
        for a, b in zip(its, its[1:]):
            assert b == a + 1 or b - 1 in jumps, (t.id, its, jumps)
        if t.parent_id is not None:
            last = [e for e in lineage if e["trial_id"] == t.id][-1]
            assert (t.parent_id, t.parent_iteration) == (last["source"], last["source_iteration"])
            assert t.parent_iteration % 3 == 0
            after = [h for h in history if h["training_iteration"] > t.parent_iteration]
            assert {h["lr"] for h in after} == {t.config["lr"]}  # ran with the exploited config
            assert {h["family"] for h in after} == {t.config["family"]}  # from the source's state
    return lineage


def source_configs(result, lineage):
    """For each exploit in ``lineage``: the config its source had then (replaying the exploits in order)."""
    configs = {t.id: t.config for t in result.trials}
    for e in reversed(lineage):  # back to each trial's first config
        configs[e["trial_id"]] = e["old_config"]
    assert sorted(c["lr"] for c in configs.values()) == sorted(LRS)
    out = []
    for e in lineage:
        out.append(configs[e["source"]])
        configs[e["trial_id"]] = e["config"]
    assert configs == {t.id: t.config for t in result.trials}
    return out


@pytest.mark.timeout(90)
def test_pbt_time_shares_a_population_of_four_on_two_cpus_on_ray(ray_2cpus, results_dir):
    pbt = ts.PBT(perturbation_interval=3, hyperparam_mutations={"lr": ts.loguniform(1e-4, 10.0)},
                 resample_probability=0.0, seed=0)
    result = run_population(pbt, "pbt")
    lineage = check_population(result)
    assert lineage and any(t.parent_id is not None for t in result.trials)  # some trial exploited
    for e, source in zip(lineage, source_configs(result, lineage)):
        # PBT's explore: the source's lr times 0.8 or 1.2 (clipped to the domain), every other key the source's
        assert e["config"]["family"] == source["family"]
        assert any(math.isclose(e["config"]["lr"], min(max(source["lr"] * f, 1e-4), 10.0)) for f in (0.8, 1.2))
    # 4 trials on 2 CPUs: trials paused at perturbation points and later resumed from their checkpoints
    paused = pauses(result)
    assert paused, "nothing paused: the population did not share the slots"
    for tid, iteration in paused:
        assert iteration % 3 == 0
        history = result.history(tid, all_generations=True)
        later = [h for h in history if h["training_iteration"] > iteration]
        assert later and all(h["resumed_at"] > 0 for h in later), (tid, iteration, history)


@pytest.mark.timeout(90)
def test_pb2_exploits_within_its_bounds_on_ray(ray_2cpus, results_dir):
    pytest.importorskip("scipy")
    pb2 = ts.PB2(perturbation_interval=3, hyperparam_bounds={"lr": ts.loguniform(1e-4, 1.0)}, seed=0)
    result = run_population(pb2, "pb2")
    lineage = check_population(result)
    assert lineage, "PB2 never exploited"
    for e, source in zip(lineage, source_configs(result, lineage)):
        assert e["source"] != e["trial_id"]
        assert 1e-4 <= e["config"]["lr"] <= 1.0  # explored within the bound
        assert e["config"]["family"] == source["family"]  # only the bounded key changes
