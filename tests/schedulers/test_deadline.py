from __future__ import annotations

import pytest

from tunesmith._errors import ConfigError
from tunesmith.schedulers._base import CONTINUE, PAUSE, STOP, Pause, Scheduler
from tunesmith.schedulers.asha import ASHA
from tunesmith.schedulers.deadline import Deadline
from tunesmith.schedulers.hyperband import HyperBand
from tunesmith.schedulers.resource_changing import ResourceChanging
from tunesmith.trial import TrialStatus

NAN = float("nan")


class Scripted(Scheduler):
    """Answers each result with the next scripted decision (CONTINUE when the script runs out)."""

    def __init__(self, *decisions):
        self.decisions = list(decisions)
        self.completed = []
        self.chosen = None

    def on_result(self, trial, result, view):
        return self.decisions.pop(0) if self.decisions else CONTINUE

    def on_complete(self, trial, result, view):
        self.completed.append(trial.id)

    def choose_trial_to_run(self, view):
        return self.chosen


# ---------------------------------------------------------------------------------- ResourceChanging


def test_new_share_pauses_the_trial_with_those_resources(Harness):
    h = Harness(ResourceChanging(Scripted(), lambda trial, view: {"cpu": 2}))
    h.add(0, resources={"cpu": 1})
    assert h.report(0, 1, 1.0) == Pause(resources={"cpu": 2})
    assert h.choose_all() == [0]
    assert h.trial(0).resources == {"cpu": 2}
    assert h.report(0, 2, 1.0) == CONTINUE  # now equal: no further pause


def test_same_or_no_share_continues_and_zero_entries_do_not_count(Harness):
    shares = iter([None, {"cpu": 1, "gpu": 0}, {"cpu": 1.0}])
    h = Harness(ResourceChanging(Scripted(), lambda trial, view: next(shares)))
    h.add(0, resources={"cpu": 1})
    assert h.run([(0, 1, 1.0), (0, 2, 1.0), (0, 3, 1.0)]) == [CONTINUE] * 3


def test_only_continue_decisions_are_reallocated(Harness):
    calls = []

    def allocate(trial, view):
        calls.append(trial.id)
        return {"cpu": 4}

    inner = Scripted(STOP)
    h = Harness(ResourceChanging(inner, allocate))
    h.add(0, resources={"cpu": 1})
    assert h.report(0, 1, 1.0) == STOP
    assert calls == []
    assert inner.completed == [0]  # on_complete is forwarded


def test_wrapped_choice_comes_after_resized_trials(Harness):
    inner = Scripted()
    inner.chosen = 42
    h = Harness(ResourceChanging(inner, lambda trial, view: {"cpu": 2}))
    h.add(0, resources={"cpu": 1})
    h.report(0, 1, 1.0, apply=False)
    assert h.scheduler.choose_trial_to_run(h.view) == 42  # 0 is not paused yet
    h.trial(0).status = TrialStatus.PAUSED
    assert h.scheduler.choose_trial_to_run(h.view) == 0
    assert h.scheduler.choose_trial_to_run(h.view) == 42


def test_forwards_extra_hooks_and_decision_iteration(Harness):
    h = Harness(ResourceChanging(HyperBand(max_t=9), lambda trial, view: None))
    for i in range(4):
        h.add(i)
    assert h.scheduler.decision_iteration(h.trial(0)) == 1
    assert h.run([(i, 1, float(i)) for i in range(4)]) == [PAUSE] * 4
    assert h.scheduler.accepting_new_trials(h.view) is True
    h.scheduler.on_no_more_trials(h.view)
    assert h.scheduler.trials_to_stop(h.view) == [1, 2, 3]
    assert h.choose_all() == [0]


@pytest.mark.parametrize("wrap", [
    lambda asha: ResourceChanging(asha, lambda trial, view: None),
    lambda asha: Deadline(1000.0, scheduler=asha),
], ids=["ResourceChanging", "Deadline"])
def test_a_wrapped_asha_gives_the_plan_the_bare_one_gives(Harness, wrap):
    """The plan, its promises included: the wrapped ASHA decides the new trial's rung-1 result as it promised."""
    bare, wrapped = Harness(ASHA(max_t=9, grace_period=1)), Harness(wrap(ASHA(max_t=9, grace_period=1)))
    for h in (bare, wrapped):
        h.run([(i, 1, float(i)) for i in range(3)], now=1.0)
    plan = bare.scheduler.decision_plan(bare.add(3))
    assert plan is not None and plan.points[0] == (1, -1.0)
    assert wrapped.scheduler.decision_plan(wrapped.add(3)) == plan
    assert wrapped.report(3, 1, 1.0, now=2.0) == CONTINUE


def test_bad_allocation_names_allocate_fn(Harness):
    h = Harness(ResourceChanging(Scripted(), lambda trial, view: {"cpu": -1}))
    with pytest.raises(ConfigError, match="^allocate_fn:"):
        h.report(0, 1, 1.0)


# ------------------------------------------------------------------------------------------ Deadline


def deadline_run(Harness, n=4, deadline=100.0, mode="min", inner=None, **kwargs):
    h = Harness(Deadline(deadline, scheduler=inner, **kwargs), mode=mode, total_resources={"cpu": 4})
    for i in range(n):
        h.add(i, resources={"cpu": 1})
    return h


def test_before_the_exploit_phase_the_wrapped_asha_decides(Harness):
    h = deadline_run(Harness)
    assert h.scheduler.accepting_new_trials(h.view)
    assert h.scheduler.decision_iteration(h.trial(0)) == 1  # the default ASHA's first rung
    # Default ASHA (rf 3) at rung 1: 2.0 after 1.0 stops.
    assert h.run([(0, 1, 1.0), (1, 1, 2.0)], now=10.0) == [CONTINUE, STOP]


def test_the_exploit_phase_gives_no_plan(Harness):
    """From the exploit phase on any result may pause its trial: the trial waits at its decision points again."""
    h = deadline_run(Harness, n=2, inner=ASHA(max_t=9, grace_period=1))
    h.run([(0, 1, 1.0)], now=10.0)
    assert h.scheduler.decision_plan(h.trial(1)) is not None  # exploring: the wrapped ASHA's plan
    h.run([(0, 2, 1.0)], now=60.0)  # past deadline * (1 - 0.5)
    assert h.scheduler.decision_plan(h.trial(1)) is None


def test_exploit_phase_focuses_resources(Harness):
    h = deadline_run(Harness, n=4, keep=1, inner=Scripted())
    h.run([(i, 1, 4.0 - i) for i in range(4)], now=10.0)  # trial 3 is the best
    assert h.scheduler.accepting_new_trials(h.view)
    h.view.now = 60.0  # past deadline * (1 - 0.5)
    assert not h.scheduler.accepting_new_trials(h.view)
    # The best trial cannot grow yet: the three others still hold 3 of the 4 CPUs.
    assert h.report(3, 2, 0.5) == CONTINUE
    # The others are paused as they report; their Pause carries the share they would get back.
    assert h.report(0, 2, 3.0) == Pause(resources={"cpu": 4.0})
    assert h.report(1, 2, 2.0) == Pause(resources={"cpu": 4.0})
    assert h.report(2, 2, 1.0) == Pause(resources={"cpu": 4.0})
    assert h.scheduler.choose_trial_to_run(h.view) is None  # the best still runs: none resumed
    # Now the best has room: it is paused to get the whole machine, and offered back first.
    assert h.report(3, 3, 0.4) == Pause(resources={"cpu": 4.0})
    assert h.choose_all() == [3]
    assert h.trial(3).resources == {"cpu": 4.0}
    assert h.report(3, 4, 0.3) == CONTINUE
    # When it ends, the best paused trial takes its place.
    h.end(3)
    assert h.choose_all() == [2]
    assert h.trial(2).resources == {"cpu": 4.0}
    # At the deadline everything stops and nothing is resumed.
    assert h.report(2, 3, 0.1, now=100.0) == STOP
    assert h.scheduler.choose_trial_to_run(h.view) is None


def test_weak_ranks_use_asha_rungs_then_metric_and_nan_is_worst(Harness):
    h = deadline_run(Harness, n=3, keep=1)
    h.run([(0, 1, 5.0), (0, 2, 5.0), (0, 3, 5.0)], now=1.0)  # trial 0 passed rungs 1 and 3
    h.run([(1, 1, 1.0), (2, 1, NAN)], now=2.0)  # 1 passes rung 1 only; 2 (NaN) is stopped by ASHA
    assert h.trial(2).status == TrialStatus.TERMINATED
    h.view.now = 80.0
    # Trial 1 has the better metric but trial 0 has passed more rungs: 1 is the weak one.
    assert h.report(1, 2, 0.1) == Pause(resources={"cpu": 4.0})
    assert h.report(0, 4, 5.0) == Pause(resources={"cpu": 4.0})  # grows now that 1 is paused


def test_wrapped_stop_passes_through_in_the_exploit_phase(Harness):
    h = deadline_run(Harness, n=2, inner=Scripted(CONTINUE, CONTINUE, STOP))
    h.run([(0, 1, 1.0), (1, 1, 2.0)], now=1.0)
    assert h.report(0, 2, 1.0, now=90.0) == STOP


def test_mode_max_keeps_the_highest(Harness):
    h = deadline_run(Harness, n=2, mode="max", inner=Scripted())
    h.run([(0, 1, 1.0), (1, 1, 2.0)], now=10.0)
    assert h.report(0, 2, 1.0, now=60.0) == Pause(resources={"cpu": 4.0})
    assert h.trial(0).status == TrialStatus.PAUSED
    assert h.report(1, 2, 2.0) == Pause(resources={"cpu": 4.0})
    assert h.choose_all() == [1]


def test_keep_two_splits_the_machine(Harness):
    h = deadline_run(Harness, n=3, keep=2, inner=Scripted())
    h.run([(0, 1, 1.0), (1, 1, 2.0), (2, 1, 3.0)], now=10.0)
    assert h.report(2, 2, 3.0, now=60.0) == Pause(resources={"cpu": 2.0})
    assert h.report(0, 2, 1.0) == Pause(resources={"cpu": 2.0})
    assert h.report(1, 2, 2.0) == Pause(resources={"cpu": 2.0})
    assert h.choose_all() == [0, 1]


def test_running_out_of_time_for_a_new_trial(Harness):
    # 1 s per iteration (time_total_s = iteration); grace period 1 -> a new trial needs ~1 s.
    h = deadline_run(Harness, n=1, deadline=100.0, exploit_fraction=0.0)
    h.report(0, 1, 1.0, now=97.0)  # rung 3 is reachable: 97 + 2 s <= 100
    assert h.scheduler.accepting_new_trials(h.view)
    h.view.now = 99.5
    assert not h.scheduler.accepting_new_trials(h.view)


def test_a_trial_that_cannot_reach_its_next_rung_starts_the_exploit_phase(Harness):
    h = Harness(Deadline(100.0, exploit_fraction=0.0), total_resources={"cpu": 2}, seconds_per_iter=10.0)
    h.add(0), h.add(1)
    h.run([(0, 1, 1.0), (1, 1, 1.0)], now=20.0)  # next rung 3: 20 s more, fine
    assert h.scheduler.accepting_new_trials(h.view)
    h.run([(0, 2, 1.0), (0, 3, 1.0)], now=80.0)  # next rung 9: 60 s more, past the deadline
    assert not h.scheduler.accepting_new_trials(h.view)
    assert h.report(1, 2, 2.0) == Pause(resources={"cpu": 2.0})  # weaker: paused


@pytest.mark.parametrize(("total", "base", "expected"), [
    ({"cpu": 8, "gpu": 2}, {"cpu": 1, "gpu": 0.25}, {"cpu": 8.0, "gpu": 2.0}),
    ({"cpu": 8, "gpu": 3}, {"cpu": 1, "gpu": 0.5}, {"cpu": 6.0, "gpu": 3.0}),
    ({"cpu": 8, "gpu": 2.5}, {"cpu": 1, "gpu": 0.5}, {"cpu": 4.0, "gpu": 2.0}),  # 2.5 GPUs is no share
    ({"cpu": 8}, {"cpu": 3}, {"cpu": 6.0}),
])
def test_share_is_a_whole_multiple_of_the_request(Harness, total, base, expected):
    h = Harness(Deadline(100.0, scheduler=Scripted()), total_resources=total)
    h.add(0, resources=base)
    assert h.report(0, 1, 1.0, now=60.0) == Pause(resources=expected)


def test_results_of_ended_trials_are_stopped(Harness):
    h = deadline_run(Harness, n=1)
    h.end(0)
    assert h.report(0, 1, 1.0) == STOP

