"""PB2: PBT's exploit with a GP-UCB explore step (tunesmith/schedulers/pb2.py)."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

import tunesmith as ts
from tunesmith.schedulers._base import Exploit
from tunesmith.schedulers.pb2 import PB2

BEST_U = 0.75  # the lr (in the unit cube of its bound) at which a trial improves fastest


def rate(lr: float) -> float:
    """Reward gained per iteration: highest at lr = 10 ** (-4 + 4 * BEST_U) = 0.1 on loguniform(1e-4, 1)."""
    u = (math.log10(lr) + 4) / 4
    return 1.0 - 4 * (u - BEST_U) ** 2


def train_population(Harness, scheduler, *, trials=8, iterations=40, mode="max", config=None, lr=None):
    """Synchronous rounds: each trial's reward grows by ``rate(lr)`` per iteration; an exploit restarts a trial
    from its source's reward at the cloned iteration. ``config(tid, trials)``: a trial's first config (default
    ``{"lr", "width"}``), ``lr(config)``: its lr. Returns (harness, exploits as (iteration, trial, decision,
    the source's config))."""
    config = config or (lambda tid, n: {"lr": 10 ** (-4 + 4 * (tid + 0.5) / n), "width": 32 + tid})
    lr = lr or (lambda c: c["lr"])
    sign = 1.0 if mode == "max" else -1.0
    h = Harness(scheduler, mode=mode, metric="reward")
    rewards: dict[int, list[float]] = {}
    for tid in range(trials):
        h.add(tid, config=config(tid, trials))
        rewards[tid] = [0.0]
    exploits = []
    for _ in range(iterations):
        for tid in range(trials):
            trial = h.trial(tid)
            rewards[tid] = rewards[tid][:trial.iteration + 1]
            rewards[tid].append(rewards[tid][-1] + rate(lr(trial.config)))
            decision = h.report(tid, trial.iteration + 1, sign * rewards[tid][-1], checkpoint=True)
            if isinstance(decision, Exploit):
                exploits.append((trial.iteration, tid, decision, dict(h.trial(decision.source_trial).config)))
                rewards[tid] = rewards[decision.source_trial][:decision.source_iteration + 1]
    return h, exploits


def make(seed=0, **kw):
    kw.setdefault("hyperparam_bounds", {"lr": ts.loguniform(1e-4, 1.0)})
    return PB2(perturbation_interval=4, quantile_fraction=0.25, seed=seed, **kw)


def unit(lr: float) -> float:
    return (math.log10(lr) + 4) / 4


@pytest.mark.parametrize("seed", range(5))
def test_the_bandit_moves_the_explored_values_to_where_the_reward_grows_fastest(Harness, seed):
    _, exploits = train_population(Harness, make(seed))
    late = [abs(unit(d.config["lr"]) - BEST_U) for iteration, _t, d, _s in exploits if iteration >= 10]
    assert len(late) >= 3
    # uniform draws would be 0.31 from BEST_U on average; PBT's x0.8/x1.2 steps stay near their sources
    assert statistics.median(late) < 0.12, late


def test_exploit_is_pbts_and_only_the_bounded_keys_change(Harness):
    _, exploits = train_population(Harness, make(1), iterations=12)
    assert exploits
    for _iteration, tid, d, source_config in exploits:
        assert d.source_trial != tid
        assert d.config["width"] == source_config["width"]  # every other key is the source's
        assert 1e-4 <= d.config["lr"] <= 1.0
        assert d.source_checkpoint == f"ckpt/{d.source_trial}/{d.source_iteration}"


def test_a_pending_choice_shrinks_the_uncertainty_around_it_but_not_the_mean():
    # GP-BUCB: a trial explored at this time step and not yet measured counts in sigma, not in mu, so the next
    # simultaneous exploit sees less to gain there
    from tunesmith.schedulers.pb2 import _Posterior

    theta = np.array([0.2, 1.0, 0.01, 0.1])
    taus, xs, ys = np.array([0.0, 1.0, 1.0]), np.array([[0.1], [0.5], [0.9]]), np.array([-1.0, 1.0, 0.0])
    alone = _Posterior(theta, taus, xs, ys, taus, xs)
    pending = _Posterior(theta, taus, xs, ys, np.append(taus, 2.0), np.vstack([xs, [[0.3]]]))
    at = np.array([[0.3], [0.9]])
    (mu_a, sd_a), (mu_p, sd_p) = alone.predict(2.0, at), pending.predict(2.0, at)
    assert np.allclose(mu_a, mu_p)
    assert sd_p[0] < 0.5 * sd_a[0]  # at the pending point
    assert sd_p[1] > 0.9 * sd_a[1]  # far from it, barely changed


def test_simultaneous_exploits_register_pending_points(Harness):
    pb2 = make(2)
    _, exploits = train_population(Harness, pb2, trials=16, iterations=4)
    assert len(exploits) == 4  # one perturbation point, four bottom trials, none measured since
    assert sorted(pb2._pending) == sorted(tid for _i, tid, _d, _s in exploits)


def test_integer_and_linear_bounds_and_nested_paths(Harness):
    pb2 = PB2(perturbation_interval=2, hyperparam_bounds={"opt/lr": [0.0, 1.0], "batch": [8, 64]}, seed=0)
    h = Harness(pb2, mode="min")
    for tid in range(4):
        h.add(tid, config={"opt": {"lr": 0.1 * (tid + 1)}, "batch": 16})
    decisions = []
    for iteration in range(1, 13):
        for tid in range(4):
            if h.trial(tid).iteration < iteration:
                decisions.append(h.report(tid, iteration, tid + 1 / iteration, checkpoint=True))
    new = [d.config for d in decisions if isinstance(d, Exploit)]
    assert new
    for config in new:
        assert 0.0 <= config["opt"]["lr"] <= 1.0
        assert isinstance(config["batch"], int) and 8 <= config["batch"] <= 64


@pytest.mark.parametrize(("bounds", "match"), [
    ({}, "hyperparam_bounds:"), (["lr"], "hyperparam_bounds:"), ({"lr": (1.0, 0.1)}, r"hyperparam_bounds\['lr'\]"),
    ({"lr": [0.1]}, r"hyperparam_bounds\['lr'\]"), ({"lr": ts.choice([1, 2])}, r"hyperparam_bounds\['lr'\]"),
    ({"lr": [0.0, float("inf")]}, r"hyperparam_bounds\['lr'\]"), ({"": [0, 1]}, "hyperparam_bounds:")])
def test_bad_bounds_are_named_at_setup(bounds, match):
    pb2 = PB2(perturbation_interval=2, hyperparam_bounds=bounds)
    with pytest.raises(ts.ConfigError, match=f"^{match}"):
        pb2.setup("loss", "min")


def test_errors_of_the_shared_setup_name_pb2():
    with pytest.raises(ts.ConfigError, match="^metric: PB2"):
        make().setup(None, None)
    with pytest.raises(ts.ConfigError, match="^seed: PB2"):
        make(seed="x").setup("loss", "min")


def climbing(config, ctx):
    """Virtual-time trial: the reward grows by ``rate(lr)`` per iteration; a checkpoint at every iteration."""
    state = dict(ctx.checkpoint) if ctx.checkpoint is not None else {"reward": 0.0}
    for _ in range(ctx.iteration, 16):
        state["reward"] += rate(config["lr"])
        yield {"reward": state["reward"]}, ctx.rng.uniform(0.5, 1.5), dict(state)  # no two at one instant


class _Snapshot(ts.Callback):
    """What the scheduler knows when the loop starts (on a resume: right after the replay)."""

    def __init__(self, scheduler):
        self.scheduler, self.state = scheduler, None

    def on_experiment_start(self, info):
        self.state = pb2_state(self.scheduler)


def pb2_state(s):
    return {"data": list(s._data), "pending": dict(s._pending), "tracks": dict(s._tracks),
            "rng": s._rng.getstate(), "np_rng": s._np_rng.bit_generator.state}


def test_a_replay_rebuilds_what_pb2_saw_live_each_result_with_its_config_of_then(tmp_path):
    """A resume replays every stored result to PB2 with the config the trial had when it reported it (the
    exploit events' old and new configs), the results a later exploit superseded included: the rebuilt
    scheduler's data, pending points and random streams are the live ones, so it decides the same."""
    from tunesmith.executors.simulated import SimulatedBackend

    space = {"lr": ts.grid([1e-4, 1e-3, 1e-2, 0.3, 1.0])}
    live = make(2)
    ts.run(climbing, space=space, metric="reward", mode="max", scheduler=live, name="pb2",
           backend=SimulatedBackend({"cpu": 5}, seed=2), storage_path=str(tmp_path), verbose=0, file_loggers=False)
    stored = ts.load(str(tmp_path / "pb2"))
    lineage = stored.lineage()
    assert any(e["old_config"] != e["config"] for e in lineage)  # configs changed: the case at stake
    assert any(e["source_iteration"] < e["iteration"] for e in lineage)  # some results were superseded
    # each exploit names its own checkpoints the new generation drops from the index (one at every iteration
    # here): the replay knows the superseded results came with one
    from tunesmith.store.sqlite import Store

    events = [data for _s, _t, kind, _tid, data in Store(str(tmp_path / "pb2" / "experiment.db"),
                                                          readonly=True).events() if kind == "exploit"]
    assert [e["dropped_checkpoints"] for e in events] == [
        list(range(e["iteration"] + 1, e["from_iteration"] + 1)) for e in events]
    again = make(2)
    snapshot = _Snapshot(again)
    ts.run(climbing, space=space, metric="reward", mode="max", scheduler=again, name="pb2", resume=True,
           backend=SimulatedBackend({"cpu": 5}, seed=2), storage_path=str(tmp_path), verbose=0,
           file_loggers=False, callbacks=[snapshot])
    expected = pb2_state(live)
    assert len(expected["data"]) > 10
    assert snapshot.state == expected


def nested_population(Harness, bounds, *, trials=6, iterations=16):
    """Synchronous rounds over nested configs ({"optim": {"name", "lr", "momentum"}, "batch"}): the reward grows by
    ``rate(optim.lr)`` per iteration. Returns (scheduler, exploits as (trial, decision, the source's config))."""
    pb2 = PB2(perturbation_interval=4, hyperparam_bounds=bounds, quantile_fraction=0.25, seed=3)
    _h, exploits = train_population(
        Harness, pb2, trials=trials, iterations=iterations, lr=lambda c: c["optim"]["lr"],
        config=lambda tid, n: {"optim": {"name": "sgd", "lr": 10 ** (-4 + 4 * (tid + 0.5) / n), "momentum": 0.9},
                               "batch": 16})
    return pb2, [(tid, decision, source) for _it, tid, decision, source in exploits]


def test_nested_bounds_are_the_keys_their_paths_name(Harness):
    """``{"optim": {"lr": ...}}`` bounds ``config["optim"]["lr"]``, as PBT's nested ``hyperparam_mutations`` do:
    the same scheduler as the ``"optim/lr"`` path form (same data, same decisions), and it reads and writes the
    nested values (the GP sees each trial's own lr; the explored lr lands in the nested dict, within its bound;
    the unbounded nested key is the source's)."""
    nested = {"optim": {"lr": ts.loguniform(1e-4, 1.0), "momentum": [0.5, 0.99]}, "batch": [8, 64]}
    paths = {"optim/lr": ts.loguniform(1e-4, 1.0), "optim/momentum": [0.5, 0.99], "batch": [8, 64]}
    pb2, exploits = nested_population(Harness, nested)
    same, same_exploits = nested_population(Harness, paths)
    assert len(exploits) >= 4
    assert [(t, d) for t, d, _s in exploits] == [(t, d) for t, d, _s in same_exploits]
    assert pb2._data == same._data
    assert len({x[0] for _tau, x, _y in pb2._data}) > 3  # each trial's own optim.lr, not a constant
    for _tid, d, source in exploits:
        assert set(d.config) == {"optim", "batch"} and set(d.config["optim"]) == {"name", "lr", "momentum"}
        assert d.config["optim"]["name"] == source["optim"]["name"] == "sgd"
        assert 1e-4 <= d.config["optim"]["lr"] <= 1.0 and 0.5 <= d.config["optim"]["momentum"] <= 0.99
        assert isinstance(d.config["batch"], int) and 8 <= d.config["batch"] <= 64


@pytest.mark.parametrize(("bounds", "match"), [
    ({"optim": {"lr": [1.0, 0.1]}}, r"hyperparam_bounds\['optim/lr'\]: expected low < high"),
    ({"optim": {"lr": ts.choice([1, 2])}}, r"hyperparam_bounds\['optim/lr'\]: expected \[low, high\]"),
    ({"optim": {"sched": {"gamma": [0, "x"]}}}, r"hyperparam_bounds\['optim/sched/gamma'\]: the bounds must be"),
    ({"optim": {}}, r"hyperparam_bounds\['optim'\]: an empty dict bounds nothing"),
    ({"optim": {3: [0, 1]}}, r"hyperparam_bounds: keys must be non-empty strings; got 3"),
    ({"optim/lr": [0, 1], "optim": {"lr": [0, 2]}}, r"hyperparam_bounds\['optim/lr'\]: given twice"),
    ({"optim": [0, 1], "optim/lr": [0, 1]}, r"hyperparam_bounds\['optim/lr'\]: inside 'optim', which is bounded"),
])
def test_bad_nested_bounds_are_named_by_their_path(bounds, match):
    pb2 = PB2(perturbation_interval=2, hyperparam_bounds=bounds)
    with pytest.raises(ts.ConfigError, match=f"^{match}"):
        pb2.setup("loss", "min")


def nested_climbing(config, ctx):
    """``climbing`` with the learning rate at ``config["optim"]["lr"]``."""
    state = dict(ctx.checkpoint) if ctx.checkpoint is not None else {"reward": 0.0}
    for _ in range(ctx.iteration, 12):
        state["reward"] += rate(config["optim"]["lr"])
        yield {"reward": state["reward"], "lr": config["optim"]["lr"]}, ctx.rng.uniform(0.5, 1.5), dict(state)


def test_a_run_with_nested_bounds_explores_the_nested_key(tmp_path):
    from tunesmith.executors.simulated import SimulatedBackend

    space = {"optim": {"lr": ts.grid([1e-4, 1e-3, 1e-2, 0.3]), "name": "adam"}}
    pb2 = PB2(perturbation_interval=3, hyperparam_bounds={"optim": {"lr": ts.loguniform(1e-4, 1.0)}}, seed=1)
    result = ts.run(nested_climbing, space=space, metric="reward", mode="max", scheduler=pb2,
                    backend=SimulatedBackend({"cpu": 4}, seed=1), storage_path=str(tmp_path), verbose=0,
                    file_loggers=False)
    lineage = result.lineage()
    assert lineage
    for e in lineage:
        assert e["config"]["optim"]["name"] == "adam" and 1e-4 <= e["config"]["optim"]["lr"] <= 1.0
        assert e["config"]["optim"]["lr"] != e["old_config"]["optim"]["lr"]
    for t in result.trials:
        assert t.iteration == 12 and t.status is ts.TrialStatus.TERMINATED
        after = [h["lr"] for h in result.history(t.id) if h["training_iteration"] > (t.parent_iteration or 0)]
        assert set(after) == {t.config["optim"]["lr"]}  # the function trained with the explored nested value
