"""Every scheduler end to end through ``tunesmith.run``: controller, store, executor and scheduler together.

On the simulated executor (virtual time: fast and deterministic) the expectations are exact. On the real
local executor (worker processes, wall time) each scheduler gets one short run whose checks hold whatever
the timing.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import tempfile
import time

import pytest

import tunesmith as ts
from tunesmith.executors.local import LocalBackend
from tunesmith.executors.simulated import SimulatedBackend
from tunesmith.trial import TrialStatus

Q81 = [round(0.01 + 0.98 * i / 80, 6) for i in range(81)]  # 81 configs in (0, 1)
ORDER = random.Random(0).sample(Q81, len(Q81))  # a fixed, scrambled arrival order


def loss_at(q: float, t: int) -> float:
    """A learning curve with crossings: configs with large q start fast but end worse; q = 0.3 is best."""
    return (q - 0.3) ** 2 + 0.3 * (1 - q) / t


@pytest.fixture
def fast_dir():
    """Experiment folders on tmpfs when there is one: checkpoints fsync, and tmpfs makes that free."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    path = tempfile.mkdtemp(prefix="tunesmith_e2e_", dir=base)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def histories_are_contiguous(result):
    for t in result.trials:
        its = [h["training_iteration"] for h in result.history(t.id)]
        assert its == list(range(1, t.iteration + 1)), (t.id, its)


# ------------------------------------------------------------------------------------------ simulated: ASHA


def sim_curve(config, ctx):
    """The learning curve, 1 virtual second per iteration; checkpoints its step every iteration."""
    state = ctx.checkpoint or {"step": 0}
    assert state["step"] == ctx.iteration  # a restore continues where the checkpoint was taken
    while True:
        state["step"] += 1
        yield ({"loss": loss_at(config["q"], state["step"]), "step": state["step"],
                "restored": ctx.checkpoint is not None}, 1.0, dict(state) if config.get("ckpt") else None)


def asha_reference(order, milestones, rf, max_t):
    """Sequential ASHA by its documented rule (continue iff rf * better < n at each rung): final iterations."""
    rungs = [[] for _ in milestones]
    finals = []
    for q in order:
        final = max_t
        for recorded, m in zip(rungs, milestones):
            score = loss_at(q, m)
            better = sum(1 for other in recorded if other < score)
            recorded.append(score)
            if not rf * better < len(recorded):
                final = m
                break
        finals.append(final)
    return finals


def test_asha_sequential_matches_the_reference_exactly(results_dir):
    asha = ts.ASHA(max_t=81, grace_period=1, reduction_factor=3)
    result = ts.run(sim_curve, space={"q": ts.grid(ORDER)}, metric="loss", mode="min", scheduler=asha,
                    backend=SimulatedBackend({"cpu": 4}), max_concurrent=1, verbose=0)
    expected = asha_reference(ORDER, [1, 3, 9, 27], 3, 81)
    assert [t.config["q"] for t in result.trials] == ORDER
    assert [t.iteration for t in result.trials] == expected
    assert all(t.status is TrialStatus.TERMINATED for t in result.trials)
    histories_are_contiguous(result)


def test_asha_concurrent_accounting_and_the_best_survives():
    def run():
        asha = ts.ASHA(max_t=81, grace_period=1, reduction_factor=3)
        ex = SimulatedBackend({"cpu": 8})
        result = ts.run(sim_curve, space={"q": ts.grid(ORDER)}, metric="loss", mode="min", scheduler=asha,
                        backend=ex, verbose=0)
        return asha, ex, result

    asha, ex, result = run()
    finals = {t.config["q"]: t.iteration for t in result.trials}
    total = sum(finals.values())
    # every trial stops exactly at a rung (it waits there for the decision) or at max_t
    assert set(finals.values()) <= {1, 3, 9, 27, 81}
    counts = asha.rung_counts()
    assert counts[0][1] == 81  # every trial recorded at the first rung
    stopped_at_rungs = sum((recorded - promoted) * m for m, recorded, promoted in counts)
    assert total == stopped_at_rungs + counts[-1][2] * 81
    for (_m, _recorded, promoted), nxt in zip(counts, counts[1:] + [(81, counts[-1][2], 0)]):
        assert nxt[1] == promoted  # every promoted trial reached the next rung
    # the truly best config (lowest loss at max_t) trains to max_t, and the budget is a fraction of FIFO's
    assert finals[min(Q81, key=lambda q: loss_at(q, 81))] == 81
    assert result.best.config["q"] == min(Q81, key=lambda q: loss_at(q, 81))
    assert total <= 0.25 * 81 * 81
    # virtual time: ceil-free lower bound from the budget, and the run is deterministic
    assert ex.clock() >= total / 8
    asha2, ex2, result2 = run()
    assert {t.config["q"]: t.iteration for t in result2.trials} == finals and ex2.clock() == ex.clock()


# ------------------------------------------------------------------------------------- simulated: HyperBand


def test_hyperband_brackets_exact_with_pauses_and_resumes(fast_dir):
    hb = ts.HyperBand(max_t=9, reduction_factor=3)
    result = ts.run(sim_curve, space={"q": ts.grid(ORDER[:17]), "ckpt": True}, metric="loss", mode="min",
                    scheduler=hb, backend=SimulatedBackend({"cpu": 4}), verbose=0, storage_path=fast_dir,
                    name="hb17")
    # brackets in fill order: s=2 (9 trials, rungs 1,3,9), s=1 (5 trials, rungs 3,9), s=0 (3 trials, 9)
    assert [(s, n) for s, n, _m in hb.bracket_plan()] == [(2, 9), (1, 5), (0, 3)]
    finals = [t.iteration for t in result.trials]
    assert sorted(finals[:9]) == [1] * 6 + [3] * 2 + [9]
    assert sorted(finals[9:14]) == [3] * 4 + [9]
    assert finals[14:] == [9, 9, 9]
    assert sum(finals) == 21 + 21 + 27
    # each bracket's survivor is its best at the rung it was judged on
    first = result.trials[:9]
    at3 = [t for t in first if t.iteration >= 3]
    assert {t.config["q"] for t in at3} == set(sorted((t.config["q"] for t in first),
                                                      key=lambda q: loss_at(q, 1))[:3])
    histories_are_contiguous(result)
    for t in result.trials:
        history = result.history(t.id)
        assert [h["step"] for h in history] == [h["training_iteration"] for h in history]
        assert t.status is TrialStatus.TERMINATED


def test_hyperband_81_pauses_resume_from_checkpoints_never_duplicating(fast_dir):
    result = ts.run(sim_curve, space={"q": ts.grid(ORDER), "ckpt": True}, metric="loss", mode="min",
                    scheduler=ts.HyperBand(max_t=81), backend=SimulatedBackend({"cpu": 8}), verbose=0,
                    storage_path=fast_dir, name="hb81")
    finals = sorted(t.iteration for t in result.trials)
    # one bracket (s=4): 81 -> 27 -> 9 -> 3 -> 1 trials at rungs 1, 3, 9, 27, 81
    assert finals == [1] * 54 + [3] * 18 + [9] * 6 + [27] * 2 + [81]
    assert sum(finals) == 81 + 27 * 2 + 9 * 6 + 3 * 18 + 1 * 54 == 297
    histories_are_contiguous(result)
    events = ts.load(os.path.join(fast_dir, "hb81"))._store.events()
    pauses = [e for e in events if e[2] == "pause"]
    assert len(pauses) == 80 + 26 + 8 + 2  # everyone waits at a rung except the one completing it
    promoted = direct = 0
    for t in result.trials:
        history = result.history(t.id)
        assert [h["step"] for h in history] == list(range(1, t.iteration + 1))
        for rung in (1, 3, 9, 27):
            if t.iteration > rung:
                promoted += 1
                direct += not history[rung]["restored"]
    # a promoted trial restarted from its checkpoint right after the rung, except the one whose result
    # completed the rung (answered directly, never paused): at most one per rung, and only while that
    # trial had never been restored before
    assert promoted == 27 + 9 + 3 + 1
    assert direct <= 4
    winner = result.trials[[t.iteration for t in result.trials].index(81)]
    assert winner.id == result.best.id


# -------------------------------------------------------------------------------- simulated: MedianStopping


def test_median_stopping_lockstep_exact():
    def constant(config, ctx):
        for _ in range(20):
            yield {"loss": config["x"]}

    # all 8 run at once in lockstep; results at one instant are handled in trial order
    result = ts.run(constant, space={"x": ts.grid([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])}, metric="loss",
                    mode="min", scheduler=ts.MedianStopping(grace_period=1, min_samples=3),
                    backend=SimulatedBackend({"cpu": 8}), verbose=0)
    # at t=1 trials 1-3 have fewer than 3 others before them; 4-8 are worse than the median and stopped.
    # A stop is cooperative (no decision point): the iteration in flight is still reported.
    assert [t.iteration for t in result.trials] == [20, 20, 20, 2, 2, 2, 2, 2]
    assert sum(t.iteration for t in result.trials) == 70
    histories_are_contiguous(result)


# ------------------------------------------------------------------------------------------- simulated: PBT


PBT_LRS = [0.001, 0.3, 0.01, 3.0, 0.03, 1.0]


def pbt_sim(config, ctx):
    state = ctx.checkpoint or {"step": 0, "loss": 1.0, "family": config["family"]}
    assert state["step"] == ctx.iteration
    while state["step"] < 30:
        state["step"] += 1
        best = 0.3 if state["step"] <= 10 else 0.03  # the best learning rate changes over time
        state["loss"] *= 1 - 0.2 * math.exp(-math.log(config["lr"] / best) ** 2)
        yield ({"loss": state["loss"], "lr": config["lr"], "family": state["family"], "step": state["step"]},
               1.0, dict(state) if state["step"] % 5 == 0 else None)


def test_pbt_lineage_and_exploited_configs(fast_dir):
    pbt = ts.PBT(perturbation_interval=5, hyperparam_mutations={"lr": ts.loguniform(1e-4, 10.0)},
                 quantile_fraction=0.34, resample_probability=0.0, seed=3)
    space = {"lr": ts.grid(PBT_LRS), "family": ts.sample_from(lambda c: f"f{c['lr']}")}
    result = ts.run(pbt_sim, space=space, metric="loss", mode="min", scheduler=pbt,
                    backend=SimulatedBackend({"cpu": 6}), verbose=0, storage_path=fast_dir, name="pbt")
    events = ts.load(os.path.join(fast_dir, "pbt"))._store.events()
    exploits = [e for e in events if e[2] == "exploit"]
    assert len(exploits) >= 3
    # replay the lineage: each exploit's config is its source's config at that moment, lr perturbed
    configs = {i + 1: {"lr": lr, "family": f"f{lr}"} for i, lr in enumerate(PBT_LRS)}
    for _id, _t, _kind, tid, data in exploits:
        source = configs[data["source"]]
        new = data["config"]
        assert new["family"] == source["family"]
        assert any(math.isclose(new["lr"], min(max(source["lr"] * f, 1e-4), 10.0)) for f in (0.8, 1.2))
        assert data["iteration"] % 5 == 0
        configs[tid] = new
    for t in result.trials:
        assert t.config == configs[t.id]
        history = result.history(t.id)
        its = [h["training_iteration"] for h in history]
        assert [h["step"] for h in history] == its  # each run continued from the state it restored
        assert its[0] == 1 and its[-1] == 30 and its == sorted(set(its))  # never a repeat
        # a gap only where the trial jumped ahead to a source's later checkpoint (those results are the
        # source's; lineage via parent_id / parent_iteration)
        jumps = {e[4]["iteration"] for e in exploits if e[3] == t.id}
        for a, b in zip(its, its[1:]):
            assert b == a + 1 or b - 1 in jumps, (t.id, a, b, jumps)
        if t.parent_id is not None:
            last = [e for e in exploits if e[3] == t.id][-1][4]
            assert (t.parent_id, t.parent_iteration) == (last["source"], last["iteration"])
            if t.parent_iteration < 30:
                after = [h for h in history if h["training_iteration"] > t.parent_iteration]
                assert {h["lr"] for h in after} == {t.config["lr"]}  # ran with the exploited config
                assert {h["family"] for h in after} == {t.config["family"]}  # from the source's state
    # every trial ended in the family that was best early on (the population converged on it)
    assert {t.config["family"] for t in result.trials} == {"f0.3"}


# -------------------------------------------------------------------------------------- simulated: Deadline


def deadline_sim(config, ctx):
    state = ctx.checkpoint or {"step": 0}
    while True:
        state["step"] += 1
        yield ({"loss": config["q"] + 1.0 / state["step"], "cpu": ctx.resources["cpu"]}, 1.0, dict(state))


def test_deadline_ends_by_the_deadline_and_gives_the_best_the_resources(fast_dir):
    ex = SimulatedBackend({"cpu": 4})
    qs = [0.5, 0.3, 0.8, 0.1, 0.6, 0.4, 0.7, 0.2]
    result = ts.run(deadline_sim, space={"q": ts.grid(qs)}, metric="loss", mode="min",
                    scheduler=ts.Deadline(deadline_s=60), time_budget_s=60,
                    backend=ex, verbose=0, storage_path=fast_dir)
    assert 60 <= ex.clock() <= 61  # the last result in flight at the deadline is the only overshoot
    assert all(t.status is TrialStatus.TERMINATED for t in result.trials)
    histories_are_contiguous(result)
    best = min(result.trials, key=lambda t: t.config["q"])
    assert best.config["q"] == 0.1 and result.best.id == best.id
    assert best.iteration == max(t.iteration for t in result.trials)
    cpus = [h["cpu"] for h in result.history(best.id)]
    assert cpus[0] == 1.0 and cpus[-1] == 4.0 and cpus == sorted(cpus)  # its resources only grew
    # with 4 CPUs from the exploit phase on, it trained more than a 1-CPU trial could in 60 s
    assert best.iteration > 60
    assert result.history(best.id)[-1]["time_total_s"] <= 61


def test_a_deadline_metric_no_trial_reports_is_refused_beside_its_wrapped_schedulers(fast_dir):
    """``Deadline(metric="acc")`` ranks the trials by acc, the ASHA it wraps by loss: a trial's first result must
    hold both, as it must the metric of an unwrapped ASHA of its own. Only the wrapped one's was checked, so a
    metric no trial reports ranked nothing, silently."""
    deadline = ts.Deadline(deadline_s=60, metric="acc", mode="max", scheduler=ts.ASHA(metric="loss", mode="min"))
    with pytest.raises(ts.ConfigError, match=r"metric 'acc' \(Deadline's metric=\) is not in the results"):
        ts.run(deadline_sim, space={"q": ts.grid([0.1])}, metric="loss", mode="min", scheduler=deadline,
               backend=SimulatedBackend({"cpu": 4}), time_budget_s=60, verbose=0, storage_path=fast_dir)


def test_deadline_beats_asha_alone_at_the_same_deadline(fast_dir):
    qs = [0.5, 0.3, 0.8, 0.1, 0.6, 0.4, 0.7, 0.2]

    def slow(config, ctx):  # loss keeps falling: more iterations for the best is what pays
        state = ctx.checkpoint or {"step": 0}
        while True:
            state["step"] += 1
            yield ({"loss": config["q"] + 10.0 / state["step"]}, 1.0, dict(state))

    common = dict(space={"q": ts.grid(qs)}, metric="loss", mode="min", time_budget_s=40, verbose=0,
                  storage_path=fast_dir)
    deadline = ts.run(slow, scheduler=ts.Deadline(deadline_s=40), backend=SimulatedBackend({"cpu": 4}),
                      name="deadline", **common)
    asha = ts.run(slow, scheduler=ts.ASHA(max_t=10**9), backend=SimulatedBackend({"cpu": 4}), name="asha",
                  **common)
    assert deadline.best.metrics["loss"] < asha.best.metrics["loss"]


# ------------------------------------------------------------------------------------- simulated: FIFO too


def test_fifo_runs_everything_to_the_end_in_the_expected_virtual_time():
    ex = SimulatedBackend({"cpu": 4})
    result = ts.run(sim_curve, space={"q": ts.grid(ORDER[:9])}, metric="loss", mode="min",
                    stop={"training_iteration": 9}, backend=ex, verbose=0)
    assert [t.iteration for t in result.trials] == [9] * 9
    assert ex.clock() == 27.0  # 9 trials of 9 s on 4 CPUs: three waves
    histories_are_contiguous(result)


# ====================================================================== the real local executor (processes)


def local_curve(config):
    ckpt = ts.get_checkpoint()
    state = ckpt.load() if ckpt is not None else {"step": 0}
    while True:
        time.sleep(0.01)
        state["step"] += 1
        ts.report({"loss": loss_at(config["q"], state["step"]), "step": state["step"]},
                  checkpoint=ts.Checkpoint.from_state(dict(state)) if config.get("ckpt") else None)


Q9 = [0.9, 0.3, 0.6, 0.1, 0.8, 0.5, 0.2, 0.7, 0.4]


@pytest.mark.timeout(120)
def test_local_asha(fast_dir):
    asha = ts.ASHA(max_t=9, grace_period=1, reduction_factor=3)
    result = ts.run(local_curve, space={"q": ts.grid(Q9)}, metric="loss", mode="min", scheduler=asha,
                    verbose=0, storage_path=fast_dir)
    finals = {t.config["q"]: t.iteration for t in result.trials}
    assert set(finals.values()) <= {1, 3, 9}
    counts = asha.rung_counts()
    assert sum(finals.values()) == sum((r - p) * m for m, r, p in counts) + counts[-1][2] * 9
    assert finals[min(Q9, key=lambda q: loss_at(q, 9))] == 9 or finals[0.3] >= 3
    assert all(t.status is TrialStatus.TERMINATED for t in result.trials)
    histories_are_contiguous(result)


@pytest.mark.timeout(120)
def test_local_hyperband_pauses_and_resumes(fast_dir):
    result = ts.run(local_curve, space={"q": ts.grid(Q9), "ckpt": True}, metric="loss", mode="min",
                    scheduler=ts.HyperBand(max_t=9), verbose=0, storage_path=fast_dir)
    finals = sorted(t.iteration for t in result.trials)
    assert finals == [1] * 6 + [3] * 2 + [9]  # one bracket, s=2: exact whatever the timing
    histories_are_contiguous(result)
    for t in result.trials:
        history = result.history(t.id)
        assert [h["step"] for h in history] == list(range(1, t.iteration + 1))  # resumed from checkpoints
        assert t.status is TrialStatus.TERMINATED
    best = min(result.trials, key=lambda t: t.metrics["loss"])
    assert best.iteration == 9


def local_constant(config):
    for _ in range(10):
        time.sleep(0.01)
        ts.report({"loss": config["x"]})


@pytest.mark.timeout(120)
def test_local_median_stopping(fast_dir):
    result = ts.run(local_constant, space={"x": ts.grid([0.1, 0.9, 0.5, 0.8, 0.2, 0.7])}, metric="loss",
                    mode="min", scheduler=ts.MedianStopping(grace_period=2, min_samples=1), verbose=0,
                    storage_path=fast_dir, max_concurrent=1)  # one at a time: who has reached a step is known
    by_x = {t.config["x"]: t.iteration for t in result.trials}
    # 0.1 is never below a median; 0.9, 0.8 and 0.7 are above the median of the others at step 2 (0.1, or
    # 0.5 of {0.1, 0.9, 0.5, ...}), so each is told to stop there; the stop reaches the trial asynchronously
    # (median stopping sets no decision points), so it ends at one of its next reports.
    assert by_x[0.1] == 10, by_x
    assert all(2 <= by_x[x] < 10 for x in (0.9, 0.8, 0.7)), by_x
    assert sum(by_x.values()) < 60
    histories_are_contiguous(result)


def local_pbt(config):
    ckpt = ts.get_checkpoint()
    cfg = ts.get_config()
    assert cfg == config
    state = ckpt.load() if ckpt is not None else {"step": 0, "loss": 1.0, "family": cfg["family"]}
    while state["step"] < 12:
        time.sleep(0.01)
        state["step"] += 1
        state["loss"] *= 1 - 0.1 * math.exp(-math.log(cfg["lr"] / 0.1) ** 2)
        ts.report({"loss": state["loss"], "lr": ts.get_config()["lr"], "family": state["family"],
                   "step": state["step"]},
                  checkpoint=ts.Checkpoint.from_state(dict(state)) if state["step"] % 3 == 0 else None)


@pytest.mark.timeout(120)
def test_local_pbt_exploits_with_get_checkpoint_and_get_config(fast_dir):
    space = {"lr": ts.grid([0.001, 0.1, 0.01, 1.0]), "family": ts.sample_from(lambda c: f"f{c['lr']}")}
    pbt = ts.PBT(perturbation_interval=3, hyperparam_mutations={"lr": ts.loguniform(1e-4, 10.0)},
                 resample_probability=0.0, seed=0)
    result = ts.run(local_pbt, space=space, metric="loss", mode="min", scheduler=pbt, resources={"cpu": 1},
                    backend=LocalBackend(total_resources={"cpu": 4}), verbose=0, storage_path=fast_dir)
    exploited = [t for t in result.trials if t.parent_id is not None]
    assert exploited
    for t in result.trials:
        its = [h["training_iteration"] for h in result.history(t.id)]
        assert [h["step"] for h in result.history(t.id)] == its  # ts.get_checkpoint() gave the right state
        assert its[0] == 1 and its == sorted(set(its)) and t.iteration == its[-1]  # never a repeat
        if its[-1] != 12:
            # its last exploit cloned a checkpoint of iteration 12 (a source that had reported its last result,
            # its end not in yet): nothing was left to train, so the exploit was undone and it ends at its own last
            # result (test_pbt_lineage.py, deterministic there)
            undone = [d for _s, _t, kind, tid, d in result._store.events() if tid == t.id and kind == "exploit_undone"]
            assert [(d["iteration"], d["from_iteration"]) for d in undone] == [(12, its[-1])], (its, undone)
            assert t.last_result["training_iteration"] == its[-1]
    for t in exploited:
        assert t.parent_iteration % 3 == 0 and t.parent_iteration >= 3
        if t.parent_iteration < 12:
            after = [h for h in result.history(t.id) if h["training_iteration"] > t.parent_iteration]
            assert {h["lr"] for h in after} == {t.config["lr"]}  # ts.get_config() gave the new config
            assert {h["family"] for h in after} == {t.config["family"]}  # ts.get_checkpoint(): source state


def local_deadline(config):
    ckpt = ts.get_checkpoint()
    state = ckpt.load() if ckpt is not None else {"step": 0}
    while True:
        cpu = ts.get_resources()["cpu"]
        time.sleep(0.02 / cpu)  # more CPUs, faster iterations (as the simulator's speed model)
        state["step"] += 1
        ts.report({"loss": config["q"] + 1.0 / state["step"], "cpu": cpu, "step": state["step"]},
                  checkpoint=ts.Checkpoint.from_state(dict(state)))


@pytest.mark.timeout(120)
def test_local_deadline_gives_the_best_more_cpus_after_a_restart(fast_dir):
    start = time.monotonic()
    result = ts.run(local_deadline, space={"q": ts.grid([0.4, 0.1, 0.3, 0.2])}, metric="loss", mode="min",
                    scheduler=ts.Deadline(deadline_s=3.0), time_budget_s=3.0, resources={"cpu": 1},
                    backend=LocalBackend(total_resources={"cpu": 4}), verbose=0, storage_path=fast_dir)
    assert time.monotonic() - start < 20
    best = min(result.trials, key=lambda t: t.config["q"])
    cpus = [h["cpu"] for h in result.history(best.id)]
    assert cpus[0] == 1.0 and max(cpus) == 4.0 and cpus == sorted(cpus)
    assert [h["step"] for h in result.history(best.id)] == list(range(1, best.iteration + 1))
    assert best.iteration == max(t.iteration for t in result.trials)
    histories_are_contiguous(result)


class CountingBackend(LocalBackend):
    """The local backend, counting the decisions it sends (each answers a trial waiting at a decision point)."""

    def __init__(self) -> None:
        super().__init__()
        self.decisions: list[tuple[int, bool]] = []

    def decide(self, trial_id, cont, next_decision, plan=None):
        self.decisions.append((trial_id, cont))
        super().decide(trial_id, cont, next_decision, plan)


def flat_curve(config):
    for _ in range(9):
        ts.report({"loss": config["v"]})


@pytest.mark.timeout(120)
@pytest.mark.parametrize("wrap", [
    lambda asha: asha,
    lambda asha: ts.ResourceChanging(asha, lambda trial, view: None),
    lambda asha: ts.Deadline(deadline_s=1e6, scheduler=asha),
], ids=["ASHA", "ResourceChanging(ASHA)", "Deadline(ASHA)"])
def test_local_asha_decides_at_a_rung_in_the_worker_when_the_cutoff_was_known(fast_dir, wrap):
    """One trial at a time, each better than all before, then a bad one. The first trial finds its rungs empty:
    it waits at rungs 1 and 3 for the driver's decisions. Each later one was given the rungs' cutoffs at its start:
    its result at a rung beats the cutoff and it goes on without a round trip; the last one's is below rung 1's and
    it ends there without one; max_t ends every trial the same way. The rungs record what the rule alone decides.
    Wrapped (a ResourceChanging that changes nothing, a Deadline still exploring) it runs on the same plans."""
    backend = CountingBackend()
    asha = ts.ASHA(max_t=9, grace_period=1, reduction_factor=3)
    values = [6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 9.0]
    result = ts.run(flat_curve, space={"v": ts.grid(values)}, metric="loss", mode="min", scheduler=wrap(asha),
                    backend=backend, max_concurrent=1, verbose=0, storage_path=fast_dir)
    assert [t.config["v"] for t in result.trials] == values
    assert [t.iteration for t in result.trials] == [9, 9, 9, 9, 9, 9, 1]
    first = result.trials[0].id
    assert backend.decisions == [(first, True), (first, True)]  # without plans: 3 per trial at max_t, 19 in all
    assert [(r, p) for _m, r, p in asha.rung_counts()] == [(7, 6), (6, 6)]
    assert all(t.status is TrialStatus.TERMINATED for t in result.trials)
    stops = {tid: data for _s, _t, kind, tid, data in result._store.events() if kind == "stop"}
    assert stops[result.trials[-1].id] == {"reason": "scheduler", "iteration": 1}
    assert stops[first] == {"reason": "scheduler", "iteration": 9}
    histories_are_contiguous(result)
