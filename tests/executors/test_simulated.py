"""The simulated executor: events, virtual clock, decision points, stop, errors, checkpoints, resources.

The first tests drive the executor directly, the way the controller does; the later ones go through
``tunesmith.run`` (HyperBand pauses, PBT exploits, ResourceChanging) and check what reached the store. The
last section checks that stop rules and ``trial_time_limit_s`` end simulated trials at the results where
local ones end (one test runs the same rules on both backends).
"""

from __future__ import annotations

import json
import math
import os

import pytest

import tunesmith as ts
from tunesmith.executors._base import CONFIG_ERROR, Done, Launch, Results
from tunesmith.executors.simulated import SimContext, SimulatedBackend, linear_speedup
from tunesmith.trial import TrialStatus


def launch(tid, tmp_path, *, resources=None, restore=None, iteration=0, time_offset=0.0, decision=None,
           config=None):
    return Launch(trial_id=tid, config=dict(config or {"x": tid}), trial_dir=str(tmp_path / f"trial_{tid}"),
                  resources=dict(resources or {"cpu": 1.0}), restore=restore, iteration=iteration,
                  time_offset=time_offset, decision_iteration=decision)


def rows_of(events):
    """{trial: [(iteration, time_total, metrics, ckpt, waiting)]} of the Results events, and the Done ones."""
    rows, done = {}, []
    for ev in events:
        if isinstance(ev, Results):
            for it, total, _ts, text, ckpt in ev.rows:
                rows.setdefault(ev.trial_id, []).append((it, total, json.loads(text), ckpt, ev.waiting))
        else:
            done.append(ev)
    return rows, done


def drain(ex, limit=10_000):
    """Poll until nothing runs; return [(clock, events)] for each non-empty poll."""
    out = []
    for _ in range(limit):
        if not ex.running():
            return out
        events = ex.poll(0.05)
        if events:
            out.append((ex.clock(), events))
    raise AssertionError("the executor did not finish")


def counting(n, seconds=1.0):
    def fn(config, ctx):
        for i in range(ctx.iteration, n):
            yield ({"i": i + 1, "x": config["x"]}, seconds)
    return fn


# -- events and the virtual clock ------------------------------------------------------------------------------


def test_events_and_virtual_clock(tmp_path):
    ex = SimulatedBackend({"cpu": 2})
    ex.setup(counting(3, seconds=2.0), str(tmp_path))
    assert ex.clock() == 0.0
    assert ex.try_start(launch(1, tmp_path))

    def fast(config, ctx):  # a second trial with other iteration times
        yield {"v": 1}  # 1 virtual second by default
        yield ({"v": 2}, 0.5)

    ex2 = SimulatedBackend({"cpu": 2})
    ex2.setup(fast, str(tmp_path))
    assert ex2.try_start(launch(7, tmp_path))
    polls = drain(ex2)
    assert [(t, rows_of(ev)) for t, ev in polls] == [
        (1.0, ({7: [(1, 1.0, {"v": 1}, None, False)]}, [])),
        (1.5, ({7: [(2, 1.5, {"v": 2}, None, False)]}, [])),
        (1.5, ({}, [(7, "ok", None)])),  # the end comes after the last result, at the same instant
    ]

    polls = drain(ex)
    times = [t for t, _ in polls]
    assert times == [2.0, 4.0, 6.0, 6.0]
    rows, done = rows_of([e for _, ev in polls for e in ev])
    assert rows == {1: [(1, 2.0, {"i": 1, "x": 1}, None, False), (2, 4.0, {"i": 2, "x": 1}, None, False),
                        (3, 6.0, {"i": 3, "x": 1}, None, False)]}
    assert done == [(1, "ok", None)]
    assert ex.running() == 0


def test_simultaneous_results_come_in_one_poll_in_start_order(tmp_path):
    ex = SimulatedBackend({"cpu": 3})
    ex.setup(counting(2), str(tmp_path))
    for tid in (3, 1, 2):
        assert ex.try_start(launch(tid, tmp_path))
    events = ex.poll(0.05)
    assert ex.clock() == 1.0
    assert [(type(e), e.trial_id, e.rows[0][0]) for e in events] == [(Results, 3, 1), (Results, 1, 1), (Results, 2, 1)]
    events = ex.poll(0.05)
    assert ex.clock() == 2.0 and [e.trial_id for e in events] == [3, 1, 2]
    events = ex.poll(0.05)
    assert ex.clock() == 2.0 and set(events) == {Done(3, "ok", None), Done(1, "ok", None), Done(2, "ok", None)}


def test_resources_are_accounted_and_refused_when_not_free(tmp_path):
    ex = SimulatedBackend({"cpu": 3, "gpu": 1})
    ex.setup(counting(1), str(tmp_path))
    assert ex.total_resources() == {"cpu": 3.0, "gpu": 1.0}
    with pytest.raises(ts.ConfigError, match=r"more than SimulatedBackend\(total_resources=\) gives \(3\)"):
        ex.check_resources({"cpu": 4.0, "gpu": 0.0})
    ex.check_resources({"cpu": 3.0, "gpu": 1.0})
    assert ex.try_start(launch(1, tmp_path, resources={"cpu": 2, "gpu": 0.5}))
    assert not ex.try_start(launch(2, tmp_path, resources={"cpu": 2}))  # 1 CPU left
    assert not ex.try_start(launch(3, tmp_path, resources={"cpu": 1, "gpu": 0.75}))  # 0.5 GPU left
    assert ex.try_start(launch(4, tmp_path, resources={"cpu": 1, "gpu": 0.5}))
    assert ex.running() == 2
    drain(ex)
    assert ex.try_start(launch(2, tmp_path, resources={"cpu": 2}))  # freed at the end of trial 1
    assert SimulatedBackend().total_resources() == {"cpu": 4.0, "gpu": 0.0}


@pytest.mark.parametrize(("total", "match"), [
    ("cpu=4", r"^SimulatedBackend: total_resources must be a dict like \{'cpu': 4, 'gpu': 2\}, got str$"),
    ({3: 4}, r"^SimulatedBackend: total_resources: resource names must be strings, got 3$"),
    ({"cpu": -2}, r"^SimulatedBackend: total_resources\['cpu'\] must be a non-negative number, got -2$"),
    ({"cpu": "four"}, r"^SimulatedBackend: total_resources\['cpu'\] must be a non-negative number, got 'four'$"),
    ({"cpu": math.nan}, r"^SimulatedBackend: total_resources\['cpu'\] must be a non-negative number, got nan$"),
    ({"cpu": True}, r"^SimulatedBackend: total_resources\['cpu'\] must be a non-negative number, got True$"),
    ({"cpu": 4, "gpu": 1.5}, r"^SimulatedBackend: total_resources\['gpu'\] must be a whole number of GPUs, got 1.5"),
    ({"cpu": 0}, r"^SimulatedBackend: total_resources = \{'cpu': 0\} offers none of any resource: no trial could "
                 r"ever start"),
    ({"cpu": 0, "gpu": 0, "tpu": 0.0}, r"offers none of any resource"),
])
def test_total_resources_are_checked_when_the_backend_is_made(tmp_path, total, match):
    """As ``LocalBackend(total_resources=...)``: before, these were taken as they were (a negative or NaN total, a
    fraction of a GPU rounded down, a name that no request can have), or failed later in the run with a message
    about the trial's request, or with a ValueError or AttributeError."""
    with pytest.raises(ts.ConfigError, match=match):
        SimulatedBackend(total_resources=total)


def test_checked_total_resources_are_what_the_run_has(results_dir):
    backend = SimulatedBackend(total_resources={"cpu": 2, "gpu": 1, "tpu": 0.5})
    assert backend.total_resources() == {"cpu": 2.0, "gpu": 1.0, "tpu": 0.5}
    assert SimulatedBackend(total_resources={"gpu": 2}).total_resources() == {"gpu": 2.0, "cpu": 0.0}
    result = ts.run(counting(1), {"x": ts.grid([1, 2, 3])}, backend=backend, verbose=0,
                    resources={"cpu": 0, "tpu": 0.25})
    assert [t.status for t in result.trials] == [TrialStatus.TERMINATED] * 3


def test_idle_poll_lets_virtual_time_pass(tmp_path):
    ex = SimulatedBackend()
    ex.setup(counting(1), str(tmp_path))
    assert ex.poll(0.5) == [] and ex.clock() == 0.5
    assert ex.poll(0.0) == [] and ex.clock() == 0.5


def test_function_signatures_without_context(tmp_path):
    def with_config(config):
        yield {"x": config["x"]}

    def bare():
        yield {"y": 1}

    for fn, expected in ((with_config, {"x": 5}), (bare, {"y": 1})):
        ex = SimulatedBackend()
        ex.setup(fn, str(tmp_path))
        ex.try_start(launch(5, tmp_path))
        rows, done = rows_of([e for _, ev in drain(ex) for e in ev])
        assert rows[5][0][2] == expected and done == [(5, "ok", None)]


# -- decision points and stop ----------------------------------------------------------------------------------


def test_a_trial_waits_at_its_decision_point_until_decide(tmp_path):
    ex = SimulatedBackend({"cpu": 2})
    ex.setup(counting(10), str(tmp_path))
    ex.try_start(launch(1, tmp_path, decision=2))
    ex.try_start(launch(2, tmp_path, config={"x": 2}))
    seen = []
    while True:
        events = ex.poll(0.05)
        seen.extend(events)
        if any(isinstance(e, Results) and e.trial_id == 1 and e.waiting for e in events):
            break
    assert ex.clock() == 2.0
    assert [(e.trial_id, e.rows[0][0], e.waiting) for e in seen if isinstance(e, Results)] == [
        (1, 1, False), (2, 1, False), (1, 2, True), (2, 2, False)]
    # trial 1 is blocked: time goes on for trial 2 only
    for _ in range(3):
        events = ex.poll(0.05)
        assert [e.trial_id for e in events] == [2]
    assert ex.clock() == 5.0
    ex.decide(1, True, 7)  # it resumes now, at t=5, and waits again at iteration 7
    polls = []
    while not any(isinstance(e, Results) and e.trial_id == 1 and e.waiting for _, evs in polls for e in evs):
        polls.append((ex.clock(), ex.poll(0.05)))
    trial1 = [(e.rows[0][0], e.rows[0][1], e.waiting) for _, evs in polls for e in evs
              if isinstance(e, Results) and e.trial_id == 1]
    assert trial1 == [(3, 6.0, False), (4, 7.0, False), (5, 8.0, False), (6, 9.0, False), (7, 10.0, True)]
    ex.decide(1, False, None)
    events = ex.poll(0.05)
    assert Done(1, "stopped", None) in events and ex.clock() == 10.0
    ex.decide(1, True, None)  # stale answers are ignored
    ex.stop(1)


def test_stop_ends_a_trial_at_its_next_report(tmp_path):
    closed = []

    def fn(config, ctx):
        try:
            for i in range(100):
                yield ({"i": i}, 2.0)
        finally:
            closed.append(ctx.iteration)

    ex = SimulatedBackend()
    ex.setup(fn, str(tmp_path))
    ex.try_start(launch(1, tmp_path))
    assert [e.rows[0][0] for e in ex.poll(1)] == [1]
    ex.stop(1)  # the iteration in flight (2) finishes and is reported, then the trial ends
    events = ex.poll(1)
    assert ex.clock() == 4.0 and [(type(e), e.rows[0][0], e.waiting) for e in events] == [(Results, 2, False)]
    assert ex.poll(1) == [Done(1, "stopped", None)] and ex.clock() == 4.0
    assert closed == [2] and ex.running() == 0
    assert ex.try_start(launch(2, tmp_path, resources={"cpu": 4}))  # its CPU is free again


def test_stop_while_waiting_at_a_decision_point_ends_at_once(tmp_path):
    ex = SimulatedBackend()
    ex.setup(counting(10), str(tmp_path))
    ex.try_start(launch(1, tmp_path, decision=1))
    assert ex.poll(1)[0].waiting is True
    ex.stop(1)
    assert ex.poll(1) == [Done(1, "stopped", None)] and ex.clock() == 1.0


def test_a_generator_that_returns_after_stop_is_stopped(tmp_path):
    ex = SimulatedBackend()
    ex.setup(counting(2), str(tmp_path))
    ex.try_start(launch(1, tmp_path))
    ex.poll(1)
    ex.stop(1)
    rows, done = rows_of([e for _, ev in drain(ex) for e in ev])
    assert [r[0] for r in rows[1]] == [2] and done == [(1, "stopped", None)]


# -- errors -----------------------------------------------------------------------------------------------------


def test_an_exception_in_the_generator_is_an_error_with_traceback(tmp_path):
    def fn(config, ctx):
        yield {"a": 1}
        raise ValueError("boom at iteration two")

    ex = SimulatedBackend()
    ex.setup(fn, str(tmp_path))
    ex.try_start(launch(1, tmp_path))
    rows, done = rows_of([e for _, ev in drain(ex) for e in ev])
    assert [r[0] for r in rows[1]] == [1]
    (tid, status, tb), = done
    assert (tid, status) == (1, "error")
    assert "Traceback" in tb and "ValueError: boom at iteration two" in tb
    assert ex.clock() == 1.0 and ex.running() == 0


@pytest.mark.parametrize("body, status, message", [
    ("yield 3", "error", "must yield a metrics dict"),
    ("yield ({'a': 1}, -1.0)", "error", "seconds must be a finite number"),
    # what report() refuses is a ConfigError: CONFIG_ERROR, which the driver does not retry
    ("yield {'a': [1, 2]}", CONFIG_ERROR, "metric 'a' must be a number"),
    ("yield {'training_iteration': 3}", CONFIG_ERROR, "is set by tunesmith"),
    ("return 5", "error", "must be a generator"),
    ("yield ({'a': 1}, 1.0, (i for i in range(3)))", "error", "cannot pickle"),  # a state that cannot be saved
    ("yield ({'a': 1}, 1.0, None)", "ok", ""),  # None: no checkpoint, no error
])
def test_bad_yields_and_non_generators_are_errors(tmp_path, body, status, message):
    ns = {}
    exec(f"def fn(config, ctx):\n    {body}\n", ns)
    ex = SimulatedBackend()
    ex.setup(ns["fn"], str(tmp_path))
    ex.try_start(launch(1, tmp_path))
    _rows, done = rows_of([e for _, ev in drain(ex) for e in ev])
    assert done[0].status == status and message in (done[0].error or "")


def test_setup_refuses_a_non_callable(tmp_path):
    with pytest.raises(ts.ConfigError, match="generator function"):
        SimulatedBackend().setup(42, str(tmp_path))


# -- checkpoints and restore ------------------------------------------------------------------------------------


def stateful(n, every=1):
    def fn(config, ctx):
        state = ctx.checkpoint or {"step": 0, "trace": []}
        assert state["step"] == ctx.iteration  # the state matches the iteration it was saved at
        while state["step"] < n:
            state["step"] += 1
            state["trace"].append(config["x"])
            save = state if state["step"] % every == 0 else None
            yield ({"step": state["step"], "restored": ctx.checkpoint_path is not None}, 1.0, save)
    return fn


def test_yielded_state_is_a_real_checkpoint_and_restores(tmp_path):
    ex = SimulatedBackend()
    ex.setup(stateful(6, every=2), str(tmp_path))
    ex.try_start(launch(1, tmp_path))
    rows, _ = rows_of([e for _, ev in drain(ex) for e in ev])
    ckpts = {it: path for it, _t, _m, path, _w in rows[1] if path}
    assert sorted(ckpts) == [2, 4, 6]
    assert ckpts[4] == os.path.join(str(tmp_path / "trial_1"), "checkpoints", "checkpoint_000004")
    assert ts.Checkpoint(ckpts[4]).load() == {"step": 4, "trace": [1, 1, 1, 1]}

    # restart from iteration 4, as the controller does after a pause: the clock and iterations continue
    seen = []

    def spy(config, ctx):
        seen.append((json.loads(json.dumps(ctx.checkpoint)), ctx.iteration, ctx.checkpoint_path))
        yield from stateful(6, every=2)(config, ctx)

    ex.setup(spy, str(tmp_path))
    start = ex.clock()
    ex.try_start(launch(1, tmp_path, restore=ckpts[4], iteration=4, time_offset=4.0, config={"x": 9}))
    rows, done = rows_of([e for _, ev in drain(ex) for e in ev])
    assert seen == [({"step": 4, "trace": [1, 1, 1, 1]}, 4, ckpts[4])]
    assert [(r[0], r[1], r[2]["restored"]) for r in rows[1]] == [(5, 5.0, True), (6, 6.0, True)]
    assert ex.clock() == start + 2
    assert ts.Checkpoint(rows[1][-1][3]).load()["trace"] == [1, 1, 1, 1, 9, 9]
    assert done == [(1, "ok", None)]


def test_a_damaged_restore_checkpoint_fails_the_trial(tmp_path):
    ex = SimulatedBackend()
    ex.setup(stateful(3), str(tmp_path))
    ex.try_start(launch(1, tmp_path, restore=str(tmp_path / "nowhere"), iteration=2))
    (_, events), = drain(ex)
    assert events[0][:2] == (1, "error") and "CheckpointError" in events[0].error


# -- resources and speed ----------------------------------------------------------------------------------------


def test_more_cpus_after_a_restart_make_iterations_faster(tmp_path):
    contexts: list[SimContext] = []

    def fn(config, ctx):
        contexts.append(ctx)
        for _ in range(2):
            yield ({"cpu": ctx.resources["cpu"]}, 3.0)

    ex = SimulatedBackend({"cpu": 4})
    ex.setup(fn, str(tmp_path))
    ex.try_start(launch(1, tmp_path, resources={"cpu": 1}))
    drain(ex)
    assert ex.clock() == 6.0  # 2 x 3 s at its first resources
    ex.try_start(launch(1, tmp_path, resources={"cpu": 3}, iteration=2, time_offset=6.0))
    rows, _ = rows_of([e for _, ev in drain(ex) for e in ev])
    assert [(r[0], r[1]) for r in rows[1]] == [(3, 7.0), (4, 8.0)]  # 3 CPUs: 3 s / 3 per iteration
    assert ex.clock() == 8.0
    assert [(c.resources["cpu"], c.speedup) for c in contexts] == [(1.0, 1.0), (3.0, 3.0)]

    gpu = SimulatedBackend({"cpu": 4, "gpu": 2}, speedup=lambda r, b: 1 + r["cpu"] / b["cpu"])
    gpu.setup(fn, str(tmp_path))
    gpu.try_start(launch(2, tmp_path, resources={"cpu": 2}))
    drain(gpu)
    assert gpu.clock() == 3.0  # the custom model: 2x at the same resources
    assert linear_speedup({"cpu": 8, "gpu": 2}, {"cpu": 1, "gpu": 0.5}) == 4.0  # GPU trials scale with GPUs
    assert linear_speedup({"cpu": 0}, {"cpu": 1}) == 1.0


def test_context_rng_is_deterministic_per_seed_trial_and_start(tmp_path):
    def fn(config, ctx):
        yield {"r": ctx.rng.random()}

    def draw(seed, tid, iteration=0):
        ex = SimulatedBackend(seed=seed)
        ex.setup(fn, str(tmp_path))
        ex.try_start(launch(tid, tmp_path, iteration=iteration))
        rows, _ = rows_of([e for _, ev in drain(ex) for e in ev])
        return rows[tid][0][2]["r"]

    assert draw(0, 1) == draw(0, 1)
    assert len({draw(0, 1), draw(1, 1), draw(0, 2), draw(0, 1, iteration=3)}) == 4


# -- through tunesmith.run --------------------------------------------------------------------------------------


def curve(config, ctx):
    """loss falls towards config['x']; the state counts steps so a restore can be checked."""
    state = ctx.checkpoint or {"step": 0, "born": config["x"]}
    assert state["step"] == ctx.iteration
    while True:
        state["step"] += 1
        loss = config["x"] + 1.0 / state["step"]
        yield ({"loss": loss, "step": state["step"], "born": state["born"], "x": config["x"],
                "cpu": ctx.resources["cpu"]}, 1.0, dict(state))


def test_hyperband_pauses_and_resumes_from_checkpoints(results_dir):
    ex = SimulatedBackend({"cpu": 3})
    result = ts.run(curve, space={"x": ts.grid([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6])}, metric="loss",
                    mode="min", scheduler=ts.HyperBand(max_t=9), backend=ex, verbose=0, name="hb")
    # one bracket (s=2) of 9 trials: rungs 1, 3, 9 -> 9 x 1 + 3 x 2 + 1 x 6 iterations
    finals = sorted(t.iteration for t in result.trials)
    assert finals == [1] * 6 + [3] * 2 + [9]
    assert sum(finals) == 21
    assert result.best.config["x"] == 0.1 and result.best.iteration == 9
    events = ts.load(str(results_dir / "hb"))._store.events()
    assert len([e for e in events if e[2] == "pause"]) == 9 + 3 - 1 - 1  # all wait at a rung but its last
    for t in result.trials:
        history = result.history(t.id)
        assert [h["training_iteration"] for h in history] == list(range(1, t.iteration + 1))
        assert [h["step"] for h in history] == list(range(1, t.iteration + 1))  # state restored, not redone
        assert t.status is TrialStatus.TERMINATED


def test_pbt_exploit_restores_the_source_checkpoint_with_the_new_config(results_dir):
    def train(config, ctx):
        state = ctx.checkpoint or {"step": 0, "loss": 1.0, "family": config["family"]}
        assert state["step"] == ctx.iteration
        while state["step"] < 12:
            state["step"] += 1
            state["loss"] *= 1 - 0.1 * math.exp(-math.log(config["lr"] / 0.1) ** 2)
            yield ({"loss": state["loss"], "lr": config["lr"], "family": state["family"],
                    "step": state["step"]}, 1.0, dict(state) if state["step"] % 3 == 0 else None)

    space = {"lr": ts.grid([0.001, 0.1, 0.01, 1.0]), "family": ts.sample_from(lambda c: f"f{c['lr']}")}
    pbt = ts.PBT(perturbation_interval=3, hyperparam_mutations={"lr": ts.loguniform(1e-4, 10.0)},
                 resample_probability=0.0, seed=0)
    result = ts.run(train, space=space, metric="loss", mode="min", scheduler=pbt,
                    backend=SimulatedBackend({"cpu": 4}), verbose=0, name="pbt")
    exploited = [t for t in result.trials if t.parent_id is not None and t.parent_iteration < 12]
    assert exploited
    for t in exploited:
        history = result.history(t.id)
        assert [h["training_iteration"] for h in history] == list(range(1, 13))
        assert [h["step"] for h in history] == list(range(1, 13))
        assert history[-1]["lr"] == t.config["lr"]  # ran with its new config
        assert t.parent_iteration % 3 == 0
        # what it continued from: the source family's checkpointed state
        assert history[t.parent_iteration]["family"] == t.config["family"]


def test_pbt_borrowed_checkpoint_survives_the_sources_retention(results_dir):
    # keep=1 deletes a trial's older checkpoints, but never one another trial borrowed and has not yet
    # restarted from. Three trials on two CPUs: at iteration 5 (the only perturbation point) trial 2
    # exploits trial 1's checkpoint and then waits for a CPU (trial 3, queued earlier, takes the free one)
    # while trial 1 trains on and checkpoints again at 6, 7, 8, 9. Trial 2 must still restore iteration 5's
    # state when it gets a CPU.
    def train(config, ctx):
        state = ctx.checkpoint or {"step": 0, "family": config["family"]}
        assert state["step"] == ctx.iteration
        while state["step"] < 9:
            state["step"] += 1
            yield ({"loss": config["q"] + 1.0 / state["step"], "family": state["family"], "step": state["step"]},
                   1.0, dict(state))

    space = {"q": ts.grid([0.1, 0.9, 0.5]), "family": ts.sample_from(lambda c: f"f{c['q']}")}
    pbt = ts.PBT(perturbation_interval=5, hyperparam_mutations={"q": [0.1, 0.5, 0.9]}, resample_probability=0.0,
                 quantile_fraction=0.5, seed=0)
    result = ts.run(train, space=space, metric="loss", mode="min", scheduler=pbt, keep=1,
                    backend=SimulatedBackend({"cpu": 2}), verbose=0, name="pbt-keep")
    events = ts.load(str(results_dir / "pbt-keep"))._store.events()
    assert [e for e in events if e[2] == "error"] == []
    exploit = next(e for e in events if e[2] == "exploit")
    assert exploit[3] == 2 and (exploit[4]["source"], exploit[4]["iteration"]) == (1, 5)
    assert all(t.status is TrialStatus.TERMINATED for t in result.trials)
    history = result.history(2)
    assert [h["step"] for h in history] == list(range(1, 10))
    assert [h["family"] for h in history] == ["f0.9"] * 5 + ["f0.1"] * 4  # continued from trial 1's state
    # it did wait: restarted at t=9 on trial 1's CPU, so its 6th result came 5 virtual seconds after its 5th
    assert history[5]["timestamp"] - history[4]["timestamp"] == pytest.approx(5.0)
    # once trial 2 has checkpoints of its own, trial 1's old one is deleted after all
    assert not os.path.exists(os.path.join(str(results_dir), "pbt-keep", "trials", "trial_00001", "checkpoints",
                                           "checkpoint_000005"))


class _StartsLate(ts.FIFO):
    """Takes no new trial before virtual second 5, but the first: after it, nothing runs for a while."""

    def accepting_new_trials(self, view):
        return view.now >= 5.0 or not view.trials


@pytest.mark.timeout(60)
def test_a_scheduler_that_refuses_new_trials_while_nothing_runs_ends_the_experiment(results_dir):
    """Scheduler.accepting_new_trials: False while nothing runs and nothing paused is chosen to resume ends
    the experiment (nothing could change it: a Deadline past its deadline, a limiter waiting on paused
    trials), instead of waiting forever; the trials it had are kept."""
    def train(config, ctx):
        yield {"loss": config["x"], "started": ctx.now}

    ex = SimulatedBackend({"cpu": 2})
    result = ts.run(train, space={"x": ts.grid([1.0, 2.0, 3.0])}, metric="loss", mode="min",
                    scheduler=_StartsLate(), backend=ex, verbose=0)
    assert [t.status for t in result.trials] == [TrialStatus.TERMINATED]
    assert result.meta["status"] == "finished" and ex.clock() < 5.0


def test_resource_changing_speeds_a_trial_up(results_dir):
    def allocate(trial, view):
        return {"cpu": 4.0} if trial.iteration >= 3 else None

    def train(config, ctx):
        state = ctx.checkpoint or {"step": 0}
        while state["step"] < 7:
            state["step"] += 1
            yield ({"loss": 1.0 / state["step"], "cpu": ctx.resources["cpu"]}, 2.0, dict(state))

    ex = SimulatedBackend({"cpu": 4})
    result = ts.run(train, metric="loss", mode="min", scheduler=ts.ResourceChanging(ts.FIFO(), allocate),
                    backend=ex, verbose=0)
    history = result.history(1)
    # paused after its 3rd result; the 4th was in flight (a cooperative stop), then 4 CPUs: 4x faster
    assert [h["cpu"] for h in history] == [1.0] * 4 + [4.0] * 3
    assert [h["time_total_s"] for h in history] == [2.0, 4.0, 6.0, 8.0, 8.5, 9.0, 9.5]
    assert ex.clock() == 9.5
    assert result.trial(1).resources["cpu"] == 4.0


# -- stop rules and time limits, as on the local executor --------------------------------------------------------
# The local worker evaluates the experiment's stop rules on each result as it makes it (session.report), so a trial
# ends on exactly the result that met them; a trial past trial_time_limit_s is stopped (its iteration in flight is
# reported) and fails. The simulated trials must end at the same results.


def _ruled(k, i):
    """Trial ``k``'s metrics at iteration ``i`` (1-based), made so that one stop rule below fires for each k:
    k=0 the loss threshold at 3, k=1 the flag at 4, k=2 the plateau of "flat" at 7, k=3 the callable at 5, k=4
    none (it returns after 8)."""
    return {"loss": (5 - i) if k == 0 else (20 - i), "done": k == 1 and i >= 4,
            "flat": min(i, 5) if k == 2 else i, "k": k}


_RULED = {0: 3, 1: 4, 2: 7, 3: 5, 4: 8}  # trial k's last iteration


def _ruled_stop():
    return [{"loss": 2}, {"done": True}, ts.TrialPlateau("flat", std=0.01, num_results=3, grace_period=1),
            lambda tid, r: r["k"] == 3 and r["training_iteration"] >= 5]


def _ruled_local(config):
    for i in range(1, 9):
        ts.report(_ruled(config["k"], i))


def _ruled_sim(config, ctx):
    for i in range(ctx.iteration + 1, 9):
        yield _ruled(config["k"], i)


def _ends(result):
    return {t.config["k"]: ([h["training_iteration"] for h in result.history(t.id)], t.status.value)
            for t in result.trials}


@pytest.mark.parametrize("stop, last", [
    ({"loss": 2}, {0: 3}),  # the experiment's metric, in its mode (<= for min)
    ({"flat": 4}, {1: 4}),  # another key: >=
    ({"done": True}, {1: 4}),  # a flag
    (lambda tid, r: r["training_iteration"] >= 5, {2: 5}),  # a callable
    (ts.TrialPlateau("flat", std=0.01, num_results=3, grace_period=1), {2: 7}),  # a Stopper with per-trial state
], ids=["metric", "other-key", "flag", "callable", "plateau"])
def test_a_stop_rule_ends_a_simulated_trial_at_the_result_that_met_it(results_dir, stop, last):
    (k, n), = last.items()
    result = ts.run(_ruled_sim, space={"k": k}, metric="loss", mode="min", stop=stop,
                    backend=SimulatedBackend({"cpu": 1}), verbose=0, name="rule")
    assert _ends(result) == {k: (list(range(1, n + 1)), "TERMINATED")}
    events = ts.load(str(results_dir / "rule"))._store.events()
    assert [e[4] for e in events if e[2] == "stop"] == [{"reason": "stop_rule", "iteration": n}]


def test_stop_rules_end_trials_at_the_same_results_on_the_simulated_and_the_local_backend(results_dir):
    space = {"k": ts.grid(list(_RULED))}
    sim = ts.run(_ruled_sim, space=space, metric="loss", mode="min", stop=_ruled_stop(),
                 backend=SimulatedBackend({"cpu": 2}), verbose=0, name="sim")
    local = ts.run(_ruled_local, space=space, metric="loss", mode="min", stop=_ruled_stop(),
                   resources={"cpu": 1}, verbose=0, name="local")
    expected = {k: (list(range(1, n + 1)), "TERMINATED") for k, n in _RULED.items()}
    assert _ends(local) == expected
    assert _ends(sim) == expected


def test_a_stop_rule_that_raises_fails_the_simulated_trial_and_its_result_is_not_stored(results_dir):
    def rule(tid, result):
        if result["flat"] == 2:
            raise ValueError("the rule broke at 2")
        return False

    # as in a worker, where the rule raises inside report(): the trial fails with its traceback
    result = ts.run(_ruled_sim, space={"k": 4}, metric="loss", mode="min", stop=rule,
                    backend=SimulatedBackend({"cpu": 1}), verbose=0)
    assert _ends(result) == {4: ([1], "ERROR")}
    assert "ValueError: the rule broke at 2" in result.trials[0].error


def test_a_retried_simulated_trial_stops_on_its_stop_rule_where_the_uninterrupted_one_does(results_dir):
    """A trial that fails once after iteration 2 and restarts from its checkpoint there: its rule's window goes on
    from the stored results (``StopRules.for_restart``), so it stops at 4 as without the failure (it went on to 5,
    its rule counting from an empty window)."""
    def flat(config, ctx):
        start = ctx.checkpoint or 0
        for it in range(start + 1, 13):
            if it == 3 and config["fail"] and ctx.checkpoint is None:
                raise RuntimeError("fails once, before iteration 3")
            yield ({"loss": 1.0}, 1.0, it)

    def run(fail):
        return ts.run(flat, space={"fail": fail}, metric="loss", mode="min", max_failures=1, verbose=0,
                      stop=ts.TrialPlateau("loss", std=0.01, num_results=3, grace_period=4),
                      backend=SimulatedBackend({"cpu": 1}))

    assert [h["training_iteration"] for h in run(False).history(1)] == [1, 2, 3, 4]
    retried = run(True)
    assert retried.trials[0].num_failures == 1
    assert [h["training_iteration"] for h in retried.history(1)] == [1, 2, 3, 4]


def test_a_stop_rule_met_at_a_decision_point_ends_the_trial_without_waiting(tmp_path):
    from tunesmith._objective import Objective
    from tunesmith._stop import StopRules

    ex = SimulatedBackend()
    ex.stop_rules = StopRules({"i": 2}, Objective.from_args("loss", "min"))  # set by run() before setup()
    ex.setup(counting(10), str(tmp_path))
    ex.try_start(launch(1, tmp_path, decision=2))
    rows, done = rows_of([e for _, ev in drain(ex) for e in ev])
    # as session.report does: the rule is checked before the wait, the result goes without one, the trial ends
    assert [(r[0], r[4]) for r in rows[1]] == [(1, False), (2, False)]
    assert done == [(1, "stopped", None)]


def test_trial_time_limit_stops_a_simulated_trial_and_fails_it(results_dir):
    def train(config, ctx):
        state = ctx.checkpoint or {"step": 0}
        while state["step"] < 10:
            state["step"] += 1
            yield ({"loss": 1.0 / state["step"], "step": state["step"]}, 1.0, dict(state))

    ex = SimulatedBackend({"cpu": 1})
    result = ts.run(train, metric="loss", mode="min", trial_time_limit_s=2.5, max_failures=1, backend=ex,
                    verbose=0)
    trial = result.trials[0]
    # stopped at 2.5 virtual seconds: iteration 3, in flight then, is reported, and the trial fails; the retry
    # restarts from that checkpoint with a new limit (counted from each start): 4, 5 and 6 (in flight at 5.5)
    assert [h["training_iteration"] for h in result.history(trial.id)] == [1, 2, 3, 4, 5, 6]
    assert [h["step"] for h in result.history(trial.id)] == [1, 2, 3, 4, 5, 6]
    assert trial.status is TrialStatus.ERROR and trial.num_failures == 2
    assert trial.error == "the trial ran longer than its limit (trial_time_limit_s=2.5); stopped"
    assert ex.clock() == 6.0


def test_trial_time_limit_ends_a_trial_waiting_at_a_decision_point(tmp_path):
    ex = SimulatedBackend({"cpu": 2})
    ex.trial_time_limit_s = 5.0  # set by run()
    ex.setup(counting(10), str(tmp_path))
    ex.try_start(launch(1, tmp_path, decision=2))
    assert [(e.rows[0][0], e.waiting) for e in ex.poll(10)] == [(1, False)]
    assert [(e.rows[0][0], e.waiting) for e in ex.poll(10)] == [(2, True)] and ex.clock() == 2.0
    # never decided: at its limit it ends at once, and fails
    assert ex.poll(10) == [Done(1, "error", "the trial ran longer than its limit (trial_time_limit_s=5); stopped")]
    assert ex.clock() == 5.0 and ex.running() == 0
    # a trial that ends before its limit (10.0) leaves nothing behind: idle time passes as without a limit
    ex.try_start(launch(2, tmp_path, config={"x": 2}, iteration=7))
    rows, done = rows_of([e for _, ev in drain(ex) for e in ev])
    assert [r[0] for r in rows[2]] == [8, 9, 10] and done == [(2, "ok", None)] and ex.clock() == 8.0
    assert ex.poll(0.5) == [] and ex.clock() == 8.5


@pytest.mark.xfail(strict=True, reason="documented difference (simulated.py docstring): the driver checks "
                   "time_budget_s only when poll() returns, and the simulated clock jumps from event to event, so "
                   "the budget is seen at the first result at or after it; the trials that reported then run one "
                   "more iteration. The local driver sees it within 0.05 s and stores only the iterations in flight")
def test_a_time_budget_stores_only_the_iteration_in_flight(results_dir):
    result = ts.run(_ruled_sim, space={"k": 4}, metric="loss", mode="min", time_budget_s=2.5,
                    backend=SimulatedBackend({"cpu": 1}), verbose=0)
    assert _ends(result) == {4: ([1, 2, 3], "TERMINATED")}  # 3 was in flight at 2.5
