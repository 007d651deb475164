from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunesmith._errors import ConfigError
from tunesmith.schedulers._base import CONTINUE, STOP
from tunesmith.schedulers.asha import ASHA
from tunesmith.trial import Result, TrialView

NAN = float("nan")


def first_rung(Harness, values, mode="min", rf=3, **kwargs):
    """Decisions of trials 0, 1, ... each reporting ``values[i]`` at iteration 1 (the first rung)."""
    h = Harness(ASHA(max_t=27, grace_period=1, reduction_factor=rf, **kwargs), mode=mode)
    return [h.report(i, 1, v) for i, v in enumerate(values)]


# ------------------------------------------------------------------------------------- rungs and times


@pytest.mark.parametrize(("kwargs", "bracket", "expected"), [
    ({"max_t": 100}, 0, [1, 3, 9, 27, 81]),
    ({"max_t": 81}, 0, [1, 3, 9, 27]),  # max_t itself is not a rung: trials stop there
    ({"max_t": 81, "brackets": 2}, 1, [3, 9, 27]),
    ({"max_t": 20, "grace_period": 2, "reduction_factor": 2}, 0, [2, 4, 8, 16]),
    ({"max_t": 5, "grace_period": 5}, 0, []),
])
def test_rung_milestones(kwargs, bracket, expected):
    asha = ASHA(**kwargs)
    asha.setup("loss", "min")
    assert asha.milestones(bracket) == expected


def test_decision_iteration_is_next_rung_then_max_t(Harness):
    h = Harness(ASHA(max_t=10, grace_period=1, reduction_factor=3))
    trial = h.add(0)
    assert h.scheduler.decision_iteration(trial) == 1
    assert h.report(0, 1, 1.0) == CONTINUE
    assert h.scheduler.decision_iteration(trial) == 3
    h.report(0, 2, 1.0)
    h.report(0, 3, 1.0)
    assert h.scheduler.decision_iteration(trial) == 9
    h.report(0, 9, 1.0)
    assert h.scheduler.decision_iteration(trial) == 10
    assert h.report(0, 10, 1.0) == STOP
    assert h.scheduler.decision_iteration(trial) is None


def test_decision_iteration_is_none_for_other_time_attrs():
    asha = ASHA(time_attr="time_total_s")
    asha.setup("loss", "min")
    assert asha.decision_iteration(TrialView(id=0, config={})) is None


def test_stops_at_max_t(Harness):
    h = Harness(ASHA(max_t=2, grace_period=1, reduction_factor=3))
    assert h.run([(0, 1, 1.0), (0, 2, 1.0)]) == [CONTINUE, STOP]


def test_trial_jumping_past_several_rungs_is_judged_at_each():
    asha = ASHA(max_t=100, grace_period=1, reduction_factor=3, time_attr="time_total_s")
    asha.setup("loss", "min")
    trial = TrialView(id=0, config={})
    result = Result(trial_id=0, iteration=1, metrics={"loss": 1.0, "time_total_s": 10.0})
    assert asha.on_result(trial, result, None) == CONTINUE  # type: ignore[arg-type]
    assert [recorded for _, recorded, _ in asha.rung_counts()] == [1, 1, 1, 0, 0]
    assert asha.rungs_passed(0) == 3


def test_brackets_are_assigned_round_robin(Harness):
    h = Harness(ASHA(max_t=81, brackets=2))
    firsts = [h.scheduler.decision_iteration(h.add(i)) for i in range(4)]
    assert firsts == [1, 3, 1, 3]


# ------------------------------------------------------------------------------------ the promotion rule


def test_top_fraction_rule_including_itself(Harness):
    # n = 1: always continues; then only while reduction_factor * better < n.
    decisions = first_rung(Harness, [5.0, 6.0, 4.0, 4.5, 7.0, 4.6])
    # 5: n=1 b=0 ok | 6: n=2 b=1 stop | 4: n=3 b=0 ok | 4.5: n=4 b=1 (3<4) ok | 7: n=5 b=4 stop
    # 4.6: n=6 b=3 (9 >= 6) stop
    assert decisions == [CONTINUE, STOP, CONTINUE, CONTINUE, STOP, STOP]


def test_mode_max_reverses_the_order(Harness):
    assert first_rung(Harness, [5.0, 6.0, 4.0], mode="max") == [CONTINUE, CONTINUE, STOP]
    assert first_rung(Harness, [5.0, 6.0, 4.0], mode="min") == [CONTINUE, STOP, CONTINUE]


def test_ties_never_count_against_a_trial(Harness):
    assert first_rung(Harness, [1.0] * 6) == [CONTINUE] * 6
    # Equal to the best is not worse than it: continues; deterministic on repeat.
    assert first_rung(Harness, [2.0, 1.0, 1.0]) == [CONTINUE, CONTINUE, CONTINUE]
    assert first_rung(Harness, [2.0, 1.0, 1.0]) == [CONTINUE, CONTINUE, CONTINUE]


def test_nan_is_never_promoted_but_counts_as_a_recorded_result(Harness):
    assert first_rung(Harness, [NAN]) == [STOP]  # not even alone
    assert first_rung(Harness, [1.0, NAN]) == [CONTINUE, STOP]
    # Two NaNs recorded: 6 is second of n=4 (3*1 < 4) and continues; without them it would stop.
    assert first_rung(Harness, [NAN, NAN, 5.0, 6.0]) == [STOP, STOP, CONTINUE, CONTINUE]
    assert first_rung(Harness, [5.0, 6.0]) == [CONTINUE, STOP]


def test_nan_with_mode_max_is_still_worst(Harness):
    assert first_rung(Harness, [1.0, NAN, 0.5], mode="max") == [CONTINUE, STOP, STOP]


def test_brackets_have_separate_rungs(Harness):
    h = Harness(ASHA(max_t=27, brackets=2))
    h.add(0), h.add(1), h.add(2), h.add(3)  # brackets 0, 1, 0, 1
    assert h.report(0, 1, 1.0) == CONTINUE
    assert h.report(2, 1, 5.0) == STOP  # judged against trial 0 only
    assert h.report(1, 3, 9.0) == CONTINUE  # first at bracket 1's first rung
    assert h.report(3, 3, 10.0) == STOP


def test_trial_ending_before_a_rung_records_nothing(Harness):
    h = Harness(ASHA(max_t=27))
    h.run([(0, 1, 1.0), (0, 2, 1.0)])
    h.end(0)  # returned on its own before rung 3
    assert [recorded for _, recorded, _ in h.scheduler.rung_counts()] == [1, 0, 0]
    assert h.run([(1, 1, 0.5), (1, 2, 0.5), (1, 3, 9.0)]) == [CONTINUE, CONTINUE, CONTINUE]


def test_result_after_stop_is_answered_stop_and_not_recorded(Harness):
    h = Harness(ASHA(max_t=27))
    h.run([(0, 1, 1.0)])
    assert h.report(1, 1, 2.0, apply=False) == STOP
    before = h.scheduler.rung_counts()
    assert h.report(1, 2, 0.0, apply=False) == STOP  # still running when the stop lands
    assert h.report(1, 3, -1.0, apply=False) == STOP
    assert h.scheduler.rung_counts() == before
    h.end(1)
    assert h.report(1, 4, -1.0) == STOP  # even after on_complete
    assert h.scheduler.decision_iteration(h.trial(1)) is None


def test_unknown_trial_is_registered_on_first_result():
    asha = ASHA(max_t=27)
    asha.setup("loss", "min")
    trial = TrialView(id=7, config={})
    assert asha.on_result(trial, Result(7, 1, {"loss": 1.0}), None) == CONTINUE  # type: ignore[arg-type]
    assert asha.rungs_passed(7) == 1


def test_a_result_without_the_metric_is_recorded_at_no_rung(Harness):
    """Nothing to decide on (a trial that validates every few steps): it continues, the rung waits for the trial's
    next result with the metric (tests/test_scheduler_edges.py has the rest)."""
    h = Harness(ASHA(max_t=27))
    assert h.scheduler.on_result(h.add(0), Result(0, 1, {"acc": 1.0}), h.view) is CONTINUE
    assert h.scheduler.rung_counts()[0][1] == 0 and h.scheduler.rungs_passed(0) == 0


def test_own_metric_and_mode_override_the_experiment(Harness):
    h = Harness(ASHA(max_t=27, metric="acc", mode="max"), mode="min")
    decisions = [h.report(i, 1, 0.0, extra={"acc": acc}) for i, acc in enumerate([0.5, 0.9, 0.1])]
    assert decisions == [CONTINUE, CONTINUE, STOP]


def test_to_spec_lists_every_argument():
    assert ASHA(max_t=50, brackets=2).to_spec() == {
        "type": "ASHA", "max_t": 50, "grace_period": 1, "reduction_factor": 3, "brackets": 2,
        "time_attr": "training_iteration", "metric": None, "mode": None}


def test_constructor_only_stores():
    ASHA(reduction_factor=1, max_t=-3)  # no error until setup


def test_missing_metric_raises_at_setup():
    with pytest.raises(ConfigError, match="^metric:"):
        ASHA().setup(None, "min")


# ------------------------------------------------------------------------------- the rung invariant
#
# What asynchronous (stopping) ASHA can honestly promise at a rung with n recorded results:
#  1. every promotion is justified when made: rf * (# recorded results strictly better) < n, the new
#     result included; NaN is never promoted;
#  2. the best result recorded so far always belongs to a promoted trial;
#  3. NOT "promoted <= n // rf + constant": decisions are final, so a stream where each new trial is
#     the best promotes all of them (test below). The slack is logarithmic only on average: over a
#     uniformly random arrival order of n distinct values, E[promoted] = sum(ceil(i/rf)/i, i=1..n)
#     <= n/rf + (1 - 1/rf) * H(n) (checked exactly over all orders below).

VALUES = st.one_of(st.sampled_from([0.0, 1.0, 2.0, 3.0, NAN]), st.floats(-10, 10, allow_nan=False))


@st.composite
def streams(draw):
    """Interleaved reports of up to 8 trials: (trial, value) in order, each trial's next iteration;
    an action of None ends that trial (as if it returned or failed)."""
    n_trials = draw(st.integers(1, 8))
    events = draw(st.lists(st.tuples(st.integers(0, n_trials - 1),
                                     st.one_of(st.none(), VALUES)), max_size=80))
    return events


@settings(max_examples=200, deadline=None)
@given(events=streams(), rf=st.sampled_from([2, 3, 4]), mode=st.sampled_from(["min", "max"]))
def test_every_promotion_is_justified_when_made(Harness, events, rf, mode):
    h = Harness(ASHA(max_t=20, grace_period=1, reduction_factor=rf), mode=mode)
    milestones = h.scheduler.milestones()
    recorded: dict[float, list[tuple[int, float]]] = {m: [] for m in milestones}  # (trial, signed)
    promoted: dict[float, set[int]] = {m: set() for m in milestones}
    iteration: dict[int, int] = {}
    alive: set[int] = set()
    for trial_id, value in events:
        if trial_id not in iteration:
            iteration[trial_id] = 0
            alive.add(trial_id)
            h.add(trial_id)
        if trial_id not in alive:
            continue
        if value is None:
            h.end(trial_id)
            alive.discard(trial_id)
            continue
        iteration[trial_id] += 1
        t = iteration[trial_id]
        decision = h.report(trial_id, t, value)
        signed = value if mode == "max" else -value
        if t in recorded:
            others = recorded[t]
            others.append((trial_id, signed))
            better = sum(1 for _, s in others if not math.isnan(s) and not math.isnan(signed) and s > signed)
            expect = not math.isnan(signed) and rf * better < len(others)
            assert (decision == CONTINUE) == (expect and t < 20), (t, others, decision)
            if expect:
                promoted[t].add(trial_id)
        elif t >= 20:
            assert decision == STOP
        else:
            assert decision == CONTINUE
        if decision == STOP:
            alive.discard(trial_id)
        # Invariant 2: the best recorded result at every rung belongs to a promoted trial.
        for m, entries in recorded.items():
            real = [(s, tid) for tid, s in entries if not math.isnan(s)]
            if real:
                best = max(s for s, _ in real)
                assert any(tid in promoted[m] for s, tid in real if s == best)
    counts = h.scheduler.rung_counts()
    assert [(m, len(recorded[m]), len(promoted[m])) for m in milestones] == counts


def promotions(order, rf):
    asha = ASHA(max_t=2, grace_period=1, reduction_factor=rf)
    asha.setup("score", "max")
    decisions = [asha.on_result(TrialView(id=i, config={}), Result(i, 1, {"score": v}), None)  # type: ignore[arg-type]
                 for i, v in enumerate(order)]
    return sum(d == CONTINUE for d in decisions)


@pytest.mark.parametrize("rf", [2, 3, 4])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7])
def test_expected_promotions_over_random_orders_is_exact(n, rf):
    orders = list(itertools.permutations(range(n)))
    mean = Fraction(sum(promotions(order, rf) for order in orders), len(orders))
    assert mean == sum(Fraction(math.ceil(i / rf), i) for i in range(1, n + 1))
    harmonic = sum(Fraction(1, i) for i in range(1, n + 1))
    assert mean <= Fraction(n, rf) + (1 - Fraction(1, rf)) * harmonic
    # The first arrival is always promoted.
    assert min(promotions(order, rf) for order in orders) >= 1


def test_no_constant_slack_exists_for_an_increasing_stream():
    # Each newcomer is the best so far, so each is promoted: n promotions, not n // rf + c.
    assert promotions(list(range(30)), 3) == 30
    # A decreasing stream promotes only the first.
    assert promotions(list(range(30, 0, -1)), 3) == 1


# ------------------------------------------------------------------------------------- decision plans


def _scores_at_rung_1(asha: ASHA) -> list[float]:
    return list(asha._rungs[0][0].scores)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.integers(-5, 5).map(float), st.just(NAN)), max_size=12),
       st.sampled_from([2, 3, 4, 2.5]))
def test_plan_cutoff_is_the_rule_at_the_rung_now(Harness, earlier, rf):
    """The cutoff promised at a rung is exactly where record's rule splits CONTINUE from STOP for the next
    result: a score at the cutoff continues, any lower one stops (and with no cutoff, every number continues)."""
    def decision(score: float) -> object:
        h = Harness(ASHA(max_t=27, grace_period=1, reduction_factor=rf), mode="max")
        for i, v in enumerate(earlier):
            h.report(i, 1, v)
        return h.report(len(earlier), 1, score)

    h = Harness(ASHA(max_t=27, grace_period=1, reduction_factor=rf), mode="max")
    for i, v in enumerate(earlier):
        h.report(i, 1, v)
    plan = h.scheduler.decision_plan(h.add(len(earlier)))
    assert plan is not None and plan.points[0][0] == 1 and (plan.metric, plan.mode) == ("loss", "max")
    cutoff = plan.points[0][1]
    lowest = -1e9
    if cutoff is None:
        assert decision(lowest) == CONTINUE
    else:
        assert decision(cutoff) == CONTINUE
        assert decision(math.nextafter(cutoff, -math.inf)) == STOP
        assert cutoff in _scores_at_rung_1(h.scheduler)


def test_plan_lists_rungs_then_max_t(Harness):
    h = Harness(ASHA(max_t=10, grace_period=1, reduction_factor=3))
    for i, v in enumerate([1.0, 2.0, 3.0]):  # min: 1.0 best
        h.report(i, 1, v)
    plan = h.scheduler.decision_plan(h.add(9))
    # rung 1 holds 1, 2, 3 (scores -1, -2, -3): the fourth continues if at most one is better -> loss <= 2;
    # rung 3 and 9 are empty (the rule decides there), and max_t always stops
    assert plan.points == ((1, -2.0), (3, None), (9, None), (10, math.inf))
    assert plan.points[0][0] == h.scheduler.decision_iteration(h.trial(9))
    assert h.scheduler.decision_plan(h.trial(0)).points[0][0] == 3  # trial 0 passed rung 1


def test_a_promise_is_kept_whatever_came_since(Harness):
    """Promoted on its promise: the result reaching the cutoff continues though others recorded since would
    have made the rule stop it; it is still recorded at the rung (later trials are ranked against it)."""
    h = Harness(ASHA(max_t=27, grace_period=1, reduction_factor=3))
    h.run([(0, 1, 5.0), (1, 1, 6.0), (2, 1, 7.0)])
    plan = h.scheduler.decision_plan(h.add(3))
    assert plan.points[0] == (1, -6.0)  # loss <= 6 continues now
    h.run([(4, 1, 1.0), (5, 1, 2.0), (6, 1, 3.0)])  # better ones come first: 6.0 alone would now stop
    assert h.report(7, 1, 6.0) == STOP
    assert h.report(3, 1, 6.0) == CONTINUE
    assert h.scheduler.rung_counts()[0][1] == 8
    assert h.report(8, 1, 5.5) == STOP  # and its 6.0 counts against later ones


def test_a_result_below_its_cutoff_stops_whatever_came_since(Harness):
    """The other side of the promise: the trial ended itself there, so it stays stopped though worse results
    recorded since would have let the rule promote it; a NaN stops too."""
    h = Harness(ASHA(max_t=27, grace_period=1, reduction_factor=3))
    h.run([(0, 1, 5.0), (1, 1, 6.0), (2, 1, 7.0)])
    assert h.scheduler.decision_plan(h.add(3)).points[0] == (1, -6.0)
    h.run([(4, 1, 8.0), (5, 1, 9.0), (6, 1, 10.0)])  # worse ones: 6.5 alone would now continue
    assert h.report(7, 1, 6.5) == CONTINUE
    assert h.report(3, 1, 6.5) == STOP
    promoted = h.scheduler.rung_counts()[0][2]
    h2 = Harness(ASHA(max_t=27, grace_period=1, reduction_factor=3))
    h2.run([(0, 1, 5.0), (1, 1, 6.0), (2, 1, 7.0)])
    h2.scheduler.decision_plan(h2.add(3))
    assert h2.report(3, 1, NAN) == STOP
    assert promoted == sum(d == CONTINUE for _t, _i, d in h.log)


def test_a_new_plan_replaces_the_promises(Harness):
    h = Harness(ASHA(max_t=27, grace_period=1, reduction_factor=3))
    h.run([(0, 1, 5.0), (1, 1, 6.0), (2, 1, 7.0)])
    h.scheduler.decision_plan(h.add(3))  # loss <= 6
    h.run([(4, 1, 1.0), (5, 1, 2.0), (6, 1, 3.0)])
    assert h.scheduler.decision_plan(h.trial(3)).points[0] == (1, -3.0)  # started again: what holds now
    assert h.report(3, 1, 6.0) == STOP


def test_no_plan_for_other_time_attrs_or_stopped_trials(Harness):
    asha = ASHA(time_attr="time_total_s")
    asha.setup("loss", "min")
    assert asha.decision_plan(TrialView(id=0, config={})) is None
    h = Harness(ASHA(max_t=2, grace_period=1, reduction_factor=3))
    h.run([(0, 1, 1.0), (0, 2, 1.0)])
    assert h.scheduler.decision_plan(h.trial(0)) is None


@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(-3, 3), max_size=10), st.sampled_from(["min", "max"]),
       st.one_of(st.floats(-4, 4), st.just(NAN), st.just(math.inf), st.just(-math.inf), st.booleans(),
                 st.just("text"), st.none()),
       st.lists(st.floats(-3, 3), max_size=4))
def test_the_trials_own_decision_on_its_plan_is_the_schedulers(Harness, earlier, mode, value, between):
    """What the trial's session decides from its plan (on the result's JSON, as sent) is what ASHA decides when
    the result comes, whatever others recorded at the rung in between; where the session cannot decide, it waits."""
    import json

    from tunesmith.session import _Plan

    h = Harness(ASHA(max_t=9, grace_period=1, reduction_factor=3), mode=mode)
    for i, v in enumerate(earlier):
        h.report(i, 1, v)
    plan = h.scheduler.decision_plan(h.add(100))
    local, after = _Plan(plan).decision(1, json.dumps({} if value is None else {"loss": value}))
    for i, v in enumerate(between):
        h.report(200 + i, 1, v)
    if local is None:
        return  # it waits: the driver decides (and a missing or non-number metric is the driver's error)
    assert h.report(100, 1, value) == (CONTINUE if local else STOP)
    if local:
        assert after == 3  # the next rung is its next decision point
