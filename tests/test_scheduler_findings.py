"""Scheduler findings from testing: PB2's bounds and whole numbers, ResourceChanging requests the executor can never
meet or that ask for nothing, and the schedulers' clock (``view.now``, ``Deadline``) across a resume."""

from __future__ import annotations

import os
import signal
import time

import pytest
from scheduler_harness import Harness

import tunesmith as ts
from tunesmith.executors.simulated import SimulatedBackend
from tunesmith.schedulers._base import Exploit
from tunesmith.schedulers.pb2 import PB2

# ------------------------------------------------------------------------------------ PB2: continuous bounds


def _dropout(config, ctx):
    """Best dropout 0.3: the score grows fastest there."""
    state = ctx.checkpoint or {"w": 0.0}
    for _ in range(ctx.iteration, 12):
        state["w"] += 1 - (config["dropout"] - 0.3) ** 2
        yield ({"score": state["w"]}, 1.0, dict(state))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("bound", [ts.uniform(0, 1), [0, 1], (0, 1), ts.loguniform(1, 100)],
                         ids=["uniform", "list", "tuple", "loguniform"])
def test_pb2_bounds_with_int_literals_still_propose_fractions(tmp_path, bound):
    """``ts.uniform(0, 1)`` (or ``[0, 1]`` over float values, as Ray Tune's PB2 reads its bounds) proposed only 0
    or 1: two int bounds made every proposal a whole number. A ``ts.uniform``/``ts.loguniform`` bound is
    continuous whatever its literals; a list is continuous for a key whose values are floats."""
    low, high = (1.0, 100.0) if type(bound).__name__ == "LogUniform" else (0.0, 1.0)
    space = {"dropout": ts.uniform(low, high)}
    result = ts.run(_dropout, space, metric="score", mode="max", num_samples=8, seed=0,
                    scheduler=PB2(perturbation_interval=3, hyperparam_bounds={"dropout": bound}, seed=0),
                    backend=SimulatedBackend({"cpu": 8}, seed=0), name="pb2", storage_path=str(tmp_path),
                    verbose=0)
    proposed = [e["config"]["dropout"] for e in result.lineage()]
    assert len(proposed) >= 3
    assert all(isinstance(v, float) and low <= v <= high for v in proposed), proposed
    assert sum(v != round(v) for v in proposed) >= len(proposed) - 1, proposed  # not whole numbers


def _population(pb2, first):
    """Four trials, 12 synchronous rounds, the loss falling fastest for trial 0: the bottom ones are exploited.
    ``first(tid)``: a trial's first config. Returns the exploits' new configs."""
    h = Harness(pb2, mode="min")
    for tid in range(4):
        h.add(tid, config=first(tid))
    configs = []
    for iteration in range(1, 13):
        for tid in range(4):
            if h.trial(tid).iteration < iteration:
                decision = h.report(tid, iteration, tid + 1 / iteration, checkpoint=True)
                if isinstance(decision, Exploit):
                    configs.append(decision.config)
    assert configs
    return configs


def test_pb2_list_bounds_give_whole_numbers_for_int_values_as_ray_tune_does():
    """A ``[low, high]`` list over a key whose value is an int (a batch size) keeps proposing ints, as Ray Tune's
    PB2 does (it rounds where the config's value is an int); over a float value, a fraction."""
    pb2 = PB2(perturbation_interval=2, hyperparam_bounds={"batch": [8, 64], "drop": [0, 1]}, seed=0)
    for config in _population(pb2, lambda tid: {"batch": 16 * (tid + 1), "drop": 0.1 * (tid + 1)}):
        assert type(config["batch"]) is int and 8 <= config["batch"] <= 64
        assert type(config["drop"]) is float and 0 <= config["drop"] <= 1


def test_pb2_integer_domains_propose_whole_numbers_inside_them():
    """``ts.randint``/``ts.lograndint`` bounds give ints, ``high`` excluded as the domains draw them, whatever type
    the trial's value has."""
    pb2 = PB2(perturbation_interval=2, hyperparam_bounds={"layers": ts.randint(1, 4), "width": ts.lograndint(8, 513)},
              seed=0)
    configs = _population(pb2, lambda tid: {"layers": 1.0 + tid % 3, "width": 16.0 * (tid + 1)})
    for config in configs:
        assert type(config["layers"]) is int and 1 <= config["layers"] <= 3
        assert type(config["width"]) is int and 8 <= config["width"] <= 512


@pytest.mark.parametrize("bound", [ts.randint(3, 4), ts.lograndint(5, 6)])
def test_pb2_an_integer_domain_of_one_value_is_refused(bound):
    with pytest.raises(ts.ConfigError, match=r"^hyperparam_bounds\['n'\]: .*one value"):
        PB2(perturbation_interval=2, hyperparam_bounds={"n": bound}).setup("loss", "min")


# ------------------------------------------------------------------ ResourceChanging: what allocate_fn asks for


def _steps(config, ctx):
    for i in range(ctx.iteration, 6):
        yield ({"loss": config["x"] / (i + 1), "cpus": ctx.resources.get("cpu", 0.0)}, 1.0, {"i": i + 1})


@pytest.mark.timeout(30)
@pytest.mark.parametrize("wanted", [{"cpu": 8}, {"cpu": 1, "gpu": 1}], ids=["cpu", "gpu"])
def test_resource_changing_request_that_can_never_fit_ends_the_experiment(tmp_path, wanted):
    """allocate_fn asking for more than the machine has (8 CPUs of 2, a GPU where there is none) left the trial
    PAUSED for ever and the run never returned: now a ConfigError naming allocate_fn, the trial and the request
    ends the experiment, as ``resources(config)`` does."""
    scheduler = ts.ResourceChanging(ts.FIFO(), lambda trial, view: wanted if trial.iteration >= 2 else None)
    with pytest.raises(ts.ConfigError) as error:
        ts.run(_steps, {"x": ts.grid([1, 2])}, metric="loss", mode="min", scheduler=scheduler,
               resources={"cpu": 1}, backend=SimulatedBackend({"cpu": 2}, seed=0), name="big",
               storage_path=str(tmp_path), verbose=0)
    message = str(error.value)
    assert message.startswith("allocate_fn (ResourceChanging)"), message
    asked = repr({k: float(v) for k, v in wanted.items()})
    where = "SimulatedBackend(total_resources=) gives" if "gpu" not in wanted else "this machine has"  # (no gpu given)
    assert "trial_00001" in message and asked in message and where in message, message
    stored = ts.load(str(tmp_path / "big"))
    assert stored.status == "failed"
    assert stored.trials and all(t.status is ts.TrialStatus.PAUSED for t in stored.trials)  # for a resume


@pytest.mark.timeout(30)
@pytest.mark.parametrize("wanted", [{"cpu": 0}, {"cpu": 0, "gpu": 0}])
def test_resource_changing_request_for_nothing_is_refused(tmp_path, wanted):
    """allocate_fn returning ``{"cpu": 0}`` was applied: the trials then held nothing and all ran at once. It is
    refused as ``run(resources={"cpu": 0})`` is, naming allocate_fn."""
    scheduler = ts.ResourceChanging(ts.FIFO(), lambda trial, view: wanted if trial.iteration >= 1 else None)
    with pytest.raises(ts.ConfigError, match=r"^allocate_fn: .*\['cpu'\] must be more than 0"):
        ts.run(_steps, {"x": ts.grid([1, 2, 3, 4])}, metric="loss", mode="min", scheduler=scheduler,
               resources={"cpu": 1}, backend=SimulatedBackend({"cpu": 2}, seed=0), name="zero",
               storage_path=str(tmp_path), verbose=0)
    assert ts.load(str(tmp_path / "zero")).status == "failed"


@pytest.mark.timeout(30)
def test_resource_changing_empty_request_is_the_default_request(tmp_path):
    """``{}`` from allocate_fn is what ``run(resources={})`` makes of it, one CPU, not a trial that holds nothing
    (which ran beside every other trial)."""
    scheduler = ts.ResourceChanging(ts.FIFO(), lambda trial, view: {"cpu": 2} if trial.iteration < 3 else {})
    result = ts.run(_steps, {"x": ts.grid([1, 2])}, metric="loss", mode="min", scheduler=scheduler,
                    resources={"cpu": 1}, backend=SimulatedBackend({"cpu": 2}, seed=0), name="empty",
                    storage_path=str(tmp_path), verbose=0)
    for trial in result.trials:
        cpus = [h["cpus"] for h in result.history(trial.id)]
        assert len(cpus) == 6 and cpus[0] == 1.0 and 2.0 in cpus and cpus[-1] == 1.0, cpus
        assert all(c in (1.0, 2.0) for c in cpus), cpus


# --------------------------------------------------------------------------- the schedulers' clock on resume
# On the local backend: a resume counts the earlier drivers' time from the store's start events and the timestamps
# of what they stored (``Store.time_spent``), wall-clock times (the simulated backend's are virtual).


class _Clock(ts.FIFO):
    """FIFO that notes the clock and the deadline it is shown at each result."""

    def __init__(self):
        self.seen = []

    def on_result(self, trial, result, view):
        self.seen.append((view.now, view.deadline_s))
        return super().on_result(trial, result, view)


class _CtrlCAt(ts.Callback):
    """SIGINT to the driver (a user's Ctrl-C) once a trial has trained ``seconds``."""

    def __init__(self, seconds):
        self.seconds = seconds

    def on_trial_results(self, trial, results):
        if self.seconds is not None and results[-1].metrics["time_total_s"] >= self.seconds:
            self.seconds = None
            os.kill(os.getpid(), signal.SIGINT)


def _sleepy(config):
    checkpoint = ts.get_checkpoint()
    for i in range(checkpoint.load() if checkpoint else 0, 10_000):
        time.sleep(0.02)
        ts.report({"loss": config["x"] / (i + 1)}, checkpoint=ts.Checkpoint.from_state(i + 1))


@pytest.mark.timeout(120)
def test_deadline_and_view_now_count_the_time_earlier_drivers_ran(tmp_path):
    """``view.now`` is the seconds since the experiment started, but a resume set it back to 0 (while
    ``time_budget_s`` counted the earlier drivers' time): ``Deadline(deadline_s=4)`` interrupted after 2.5 s trained
    another 4 s. The clock goes on from where the interrupted run stopped, in the replay too; ``view.deadline_s``
    stays the experiment's budget (``deadline_s - now`` is what is left, as before)."""
    def run(inner, **kw):
        return ts.run(_sleepy, {"x": ts.grid([1.0, 2.0])}, metric="loss", mode="min", time_budget_s=60,
                      scheduler=ts.Deadline(deadline_s=4, scheduler=inner, exploit_fraction=0.0),
                      backend=ts.LocalBackend(total_resources={"cpu": 2}), name="dl", storage_path=str(tmp_path),
                      verbose=0, **kw)

    first = _Clock()
    with pytest.raises(KeyboardInterrupt):
        run(first, callbacks=[_CtrlCAt(2.5)])
    before = max(now for now, _d in first.seen)
    assert before >= 2.5
    again = _Clock()
    resumed = run(again, resume=True)
    assert resumed.status == "finished"
    nows = [now for now, _d in again.seen]
    replayed = nows[:len(first.seen)]
    assert len(set(replayed)) == 1 and replayed[0] >= before - 0.2, (before, replayed[:3])  # where it stopped
    assert all(b >= a for a, b in zip(nows, nows[1:]))  # never back
    assert {d for _n, d in first.seen + again.seen} == {60}
    # the deadline is the experiment's 4 s: a trial trains less than that in all (it was 2.5 + almost 4)
    trained = [resumed.history(t.id)[-1]["time_total_s"] for t in resumed.trials]
    assert all(2.5 <= t <= 4.5 for t in trained), trained
