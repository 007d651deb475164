from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunesmith._errors import ConfigError
from tunesmith.schedulers._base import CONTINUE, PAUSE, STOP, SchedulerView
from tunesmith.schedulers.hyperband import HyperBand
from tunesmith.trial import Result, TrialStatus, TrialView

NAN = float("nan")


def small(Harness, mode="min"):
    """max_t=9, rf=3: brackets (s=2: 9 trials, rungs 1, 3, 9), (s=1: 5 trials, 3, 9), (s=0: 3, 9)."""
    return Harness(HyperBand(max_t=9, reduction_factor=3), mode=mode)


def test_bracket_plan_follows_li_et_al():
    hb = HyperBand(max_t=81, reduction_factor=3)
    hb.setup("loss", "min")
    assert hb.bracket_plan() == [
        (4, 81, [1, 3, 9, 27, 81]),
        (3, 34, [3, 9, 27, 81]),
        (2, 15, [9, 27, 81]),
        (1, 8, [27, 81]),
        (0, 5, [81]),
    ]
    hb = HyperBand(max_t=9, reduction_factor=3)
    hb.setup("loss", "min")
    assert hb.bracket_plan() == [(2, 9, [1, 3, 9]), (1, 5, [3, 9]), (0, 3, [9])]


def test_brackets_fill_in_order_and_cycle(Harness):
    h = small(Harness)
    firsts = [h.scheduler.decision_iteration(h.add(i)) for i in range(9 + 5 + 3 + 1)]
    assert firsts == [1] * 9 + [3] * 5 + [9] * 3 + [1]


def test_rung_pauses_until_complete_then_keeps_top_third(Harness):
    h = small(Harness)
    values = [5.0, 3.0, 8.0, 1.0, 9.0, 4.0, 7.0, 2.0, 6.0]
    for i in range(9):
        h.add(i)
    decisions = [h.report(i, 1, v) for i, v in enumerate(values)]
    # The first eight wait; the ninth completes the rung and is answered directly (6.0: a loser).
    assert decisions == [PAUSE] * 8 + [STOP]
    assert h.trial(8).status == TrialStatus.TERMINATED
    # Winners: floor(9 / 3) = 3 best (min): trials 3 (1.0), 7 (2.0), 1 (3.0), resumed best first.
    assert h.scheduler.trials_to_stop(h.view) == [0, 2, 4, 5, 6]
    assert h.scheduler.trials_to_stop(h.view) == [0, 2, 4, 5, 6]  # idempotent until on_complete
    assert h.choose_all() == [3, 7, 1]
    for loser in [0, 2, 4, 5, 6]:
        h.end(loser)
    assert h.scheduler.trials_to_stop(h.view) == []
    assert [h.scheduler.decision_iteration(h.trial(t)) for t in (3, 7, 1)] == [3, 3, 3]
    # Next rung: 3 trials -> max(1, floor(3/3)) = 1 continues, to max_t.
    assert h.run([(3, 2, 1.0), (3, 3, 0.9), (7, 2, 1.0), (7, 3, 0.5)]) == [CONTINUE, PAUSE, CONTINUE, PAUSE]
    assert h.run([(1, 2, 1.0), (1, 3, 0.7)]) == [CONTINUE, STOP]
    assert h.scheduler.trials_to_stop(h.view) == [3]
    assert h.choose_all() == [7]
    assert h.scheduler.decision_iteration(h.trial(7)) == 9
    assert h.run([(7, i, 0.1) for i in range(4, 10)]) == [CONTINUE] * 5 + [STOP]


def test_last_arrival_continues_directly_when_it_wins(Harness):
    h = small(Harness)
    for i in range(9):
        h.add(i)
    decisions = [h.report(i, 1, float(9 - i)) for i in range(9)]  # the last one is the best
    assert decisions == [PAUSE] * 8 + [CONTINUE]
    assert h.choose_all() == [7, 6]
    assert h.scheduler.trials_to_stop(h.view) == [0, 1, 2, 3, 4, 5]


def test_mode_max(Harness):
    h = small(Harness, mode="max")
    for i in range(9):
        h.add(i)
    h.run([(i, 1, float(i)) for i in range(9)])
    assert h.choose_all() == [7, 6]  # 8 (best) reported last and continued directly
    assert h.trial(8).status == TrialStatus.RUNNING


def test_ties_go_to_the_lower_trial_id(Harness):
    h = small(Harness)
    for i in range(9):
        h.add(i)
    decisions = h.run([(i, 1, 1.0) for i in (4, 2, 7, 0, 8, 1, 6, 3, 5)])
    assert decisions[-1] == STOP  # trial 5
    assert h.choose_all() == [0, 1, 2]


def test_nan_is_never_promoted_over_real_numbers(Harness):
    h = small(Harness)
    for i in range(9):
        h.add(i)
    h.run([(i, 1, NAN if i < 7 else 5.0 + i) for i in range(9)])
    # Only two real values: both win, although floor(9/3) = 3.
    assert h.trial(8).status == TrialStatus.RUNNING
    assert h.choose_all() == [7]
    assert h.scheduler.trials_to_stop(h.view) == list(range(7))


def test_all_nan_rung_stops_everyone(Harness):
    h = small(Harness)
    for i in range(9):
        h.add(i)
    assert h.run([(i, 1, NAN) for i in range(9)])[-1] == STOP
    assert h.choose_all() == []
    assert h.scheduler.trials_to_stop(h.view) == list(range(8))


def test_trials_ending_before_the_rung_do_not_block_it(Harness):
    h = small(Harness)
    for i in range(9):
        h.add(i)
    assert h.run([(i, 1, float(i)) for i in range(7)]) == [PAUSE] * 7
    h.end(7, TrialStatus.ERROR)  # failed before reporting
    assert h.choose_all() == []
    h.end(8)  # returned on its own before the rung: completes it, 7 reached -> keep 2
    assert h.choose_all() == [0, 1]
    assert h.scheduler.trials_to_stop(h.view) == [2, 3, 4, 5, 6]


def test_trial_jumping_to_max_t_completes_the_rung_it_leaves():
    hb = HyperBand(max_t=9, reduction_factor=3, time_attr="time_total_s")
    hb.setup("loss", "min")
    view = SchedulerView(trials={i: TrialView(id=i, config={}) for i in range(9)})
    for i in range(9):
        hb.on_trial_add(view.trials[i], view)
    for i in range(8):
        assert hb.on_result(view.trials[i], Result(i, 1, {"loss": float(i), "time_total_s": 1.5}), view) == PAUSE
        view.trials[i].status = TrialStatus.PAUSED
    # The last one reports once, already past max_t: stopped, and the rung it left is decided.
    assert hb.on_result(view.trials[8], Result(8, 1, {"loss": 0.0, "time_total_s": 9.5}), view) == STOP
    assert hb.choose_trial_to_run(view) == 0
    assert hb.choose_trial_to_run(view) == 1
    assert hb.trials_to_stop(view) == [2, 3, 4, 5, 6, 7]


def test_searcher_running_dry_closes_partial_brackets(Harness):
    h = small(Harness)
    for i in range(4):
        h.add(i)
    assert h.run([(i, 1, float(i)) for i in range(4)]) == [PAUSE] * 4
    assert h.choose_all() == []  # the 9-trial bracket is not full: more trials may still join
    h.scheduler.on_no_more_trials(h.view)
    assert h.choose_all() == [0]
    assert h.scheduler.trials_to_stop(h.view) == [1, 2, 3]


def test_a_winner_is_offered_only_once_it_is_paused(Harness):
    h = small(Harness)
    for i in range(9):
        h.add(i)
    h.report(0, 1, 0.0, apply=False)  # paused, but the controller has not applied it yet
    h.run([(i, 1, float(i)) for i in range(1, 9)])
    assert h.choose_all() == [1, 2]  # 0 (the best) is skipped while it still runs
    h.trial(0).status = TrialStatus.PAUSED
    assert h.scheduler.choose_trial_to_run(h.view) == 0
    assert h.scheduler.choose_trial_to_run(h.view) is None


def test_results_for_stopped_or_waiting_trials_are_harmless(Harness):
    h = small(Harness)
    for i in range(9):
        h.add(i)
    assert h.report(0, 1, 1.0, apply=False) == PAUSE
    assert h.report(0, 2, 1.0, apply=False) == PAUSE  # overtook its own pause
    h.run([(i, 1, 0.5) for i in range(1, 9)])
    assert 0 in h.scheduler.trials_to_stop(h.view)
    assert h.report(0, 3, 0.0, apply=False) == STOP
    h.end(0)
    assert h.report(0, 4, 0.0) == STOP
    assert h.scheduler.trials_to_stop(h.view) == [4, 5, 6, 7]


def test_missing_metric_raises_at_setup():
    with pytest.raises(ConfigError, match="^metric:"):
        HyperBand().setup(None, "min")


# ---------------------------------------------------------------- a whole experiment, through the controller

@settings(max_examples=10, deadline=None)  # each example is a whole experiment (~0.5 s)
@given(n_trials=st.integers(1, 30), capacity=st.integers(1, 5), seed=st.integers(0, 10**6),
       fail_rate=st.sampled_from([0.0, 0.05]))
def test_controller_loop_never_deadlocks_and_never_overruns(n_trials, capacity, seed, fail_rate):
    """The real controller drives HyperBand over the simulated executor (pauses at rungs, resumes from
    checkpoints, failures): every experiment ends by itself, every trial ends TERMINATED at a rung or in
    ERROR, and none reports past a decision point."""
    import tempfile

    import tunesmith as ts
    from tunesmith.executors.simulated import SimulatedBackend

    rng = random.Random(seed)
    quality = [rng.random() for _ in range(n_trials)]

    def train(config, ctx):
        state = ctx.checkpoint or {"step": 0}
        assert state["step"] == ctx.iteration  # a resumed trial continues from its checkpoint
        while True:
            if ctx.rng.random() < fail_rate:
                raise RuntimeError("simulated failure")
            state["step"] += 1
            yield {"loss": quality[config["i"]] / state["step"]}, 1.0, dict(state)

    hb = HyperBand(max_t=9, reduction_factor=3)
    budget = 10_000.0  # virtual seconds; a deadlocked loop would idle until it runs out
    ex = SimulatedBackend({"cpu": capacity}, seed=seed)
    with tempfile.TemporaryDirectory() as folder:
        result = ts.run(train, space={"i": ts.grid(list(range(n_trials)))}, metric="loss", mode="min",
                        scheduler=hb, backend=ex, time_budget_s=budget, storage_path=folder, name="hb",
                        verbose=0)
        assert ex.clock() < budget  # it ended because the work was done, not because time ran out
        assert len(result.trials) == n_trials
        for t in result.trials:
            assert t.status in (TrialStatus.TERMINATED, TrialStatus.ERROR), (t.id, t.status)
            if t.status is TrialStatus.TERMINATED:
                assert t.iteration in (1, 3, 9), (t.id, t.iteration)  # stopped at a rung, never past one
            its = [h["training_iteration"] for h in result.history(t.id)]
            assert its == list(range(1, t.iteration + 1)) and t.iteration <= 9, (t.id, its)
