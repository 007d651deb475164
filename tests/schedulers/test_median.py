from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tunesmith.schedulers._base import CONTINUE, STOP
from tunesmith.schedulers.median import MedianStopping

NAN = float("nan")


def with_others(Harness, curves, mode="min", **kwargs):
    """A harness where trials 0..k-1 have reported ``curves[i]`` (iterations 1, 2, ...)."""
    kwargs.setdefault("grace_period", 1)
    kwargs.setdefault("min_samples", 3)
    h = Harness(MedianStopping(**kwargs), mode=mode)
    for trial_id, curve in enumerate(curves):
        for iteration, value in enumerate(curve, start=1):
            h.report(trial_id, iteration, value)
    return h


def test_stops_a_trial_worse_than_the_median_running_average(Harness):
    # Running averages at step 2: 5.5, 6.0, 6.5 -> median 6.0 (min mode).
    h = with_others(Harness, [[10.0, 1.0], [11.0, 1.0], [12.0, 1.0]])
    assert h.report(3, 1, 7.0) == CONTINUE  # step 1: median of 10, 11, 12 is 11
    assert h.report(3, 2, 6.5) == STOP  # best 6.5 > 6.0
    h = with_others(Harness, [[10.0, 1.0], [11.0, 1.0], [12.0, 1.0]])
    h.report(3, 1, 7.0)
    # Best 5.9 beats the running averages although it is worse than every latest value (1.0).
    assert h.report(3, 2, 5.9) == CONTINUE


def test_best_so_far_is_used_not_the_latest(Harness):
    h = with_others(Harness, [[5.0, 5.0], [5.0, 5.0], [5.0, 5.0]])
    assert h.report(3, 1, 4.0) == CONTINUE
    assert h.report(3, 2, 100.0) == CONTINUE  # best 4.0 < median 5.0


def test_tie_with_the_median_continues(Harness):
    h = with_others(Harness, [[5.0], [5.0], [5.0]])
    assert h.report(3, 1, 5.0) == CONTINUE
    assert h.report(4, 1, 5.0 + 1e-9) == STOP


def test_even_number_of_others_averages_the_middle_two(Harness):
    h = with_others(Harness, [[1.0], [2.0], [4.0], [9.0]])  # median 3.0
    assert h.report(4, 1, 2.9) == CONTINUE
    h = with_others(Harness, [[1.0], [2.0], [4.0], [9.0]])
    assert h.report(4, 1, 3.1) == STOP


def test_mode_max(Harness):
    h = with_others(Harness, [[5.0], [6.0], [7.0]], mode="max")
    assert h.report(3, 1, 5.5) == STOP
    assert h.report(4, 1, 6.5) == CONTINUE


def test_grace_period(Harness):
    h = with_others(Harness, [[1.0] * 3] * 3, grace_period=3)
    assert h.run([(3, 1, 9.0), (3, 2, 9.0), (3, 3, 9.0)]) == [CONTINUE, CONTINUE, STOP]


def test_min_samples_counts_other_trials_at_the_same_step(Harness):
    h = with_others(Harness, [[1.0, 1.0], [1.0, 1.0], [1.0]])
    assert h.report(3, 1, 9.0, apply=False) == STOP  # three others at step 1
    h = with_others(Harness, [[1.0, 1.0], [1.0, 1.0], [1.0]])
    h.report(3, 1, 1.0)
    assert h.report(3, 2, 9.0) == CONTINUE  # only two others reached step 2 (min_samples=3)
    assert h.report(4, 1, 9.0) == STOP  # four others at step 1: 1, 1, 1, 1


def test_ended_trials_keep_counting(Harness):
    h = with_others(Harness, [[1.0], [1.0], [1.0]])
    for trial_id in range(3):
        h.end(trial_id)
    assert h.report(3, 1, 2.0) == STOP


def test_nan_results_are_worst(Harness):
    # A trial with only NaN results has no best: stopped against a real median.
    h = with_others(Harness, [[1.0], [1.0], [1.0]])
    assert h.report(3, 1, NAN) == STOP
    # Others' NaN makes their running averages worst: median of (NaN, NaN, 1) -> worst, stops nobody.
    h = with_others(Harness, [[NAN], [NAN], [1.0]])
    assert h.report(3, 1, 50.0) == CONTINUE
    # NaN earlier in a running average keeps it worst: others (NaN, 1), (NaN, 1), (2, 2): median worst.
    h = with_others(Harness, [[NAN, 1.0], [NAN, 1.0], [2.0, 2.0]])
    h.report(3, 1, 0.0)
    assert h.report(3, 2, 3.0) == CONTINUE
    # A trial whose later results are NaN still has its real best.
    h = with_others(Harness, [[5.0, 5.0], [5.0, 5.0], [5.0, 5.0]])
    h.report(3, 1, 1.0)
    assert h.report(3, 2, NAN) == CONTINUE


def test_result_after_stop_is_answered_stop(Harness):
    h = with_others(Harness, [[1.0], [1.0], [1.0]])
    assert h.report(3, 1, 9.0, apply=False) == STOP
    assert h.report(3, 2, 0.0, apply=False) == STOP
    h.end(3)
    assert h.report(3, 3, 0.0) == STOP


def test_restored_trial_replaces_results_after_the_checkpoint(Harness):
    h = with_others(Harness, [[1.0, 100.0, 100.0], [1.0, 100.0, 100.0]], min_samples=2, grace_period=2)
    # Trial 0 is restored from its checkpoint at iteration 1 and reports a different step 2.
    h.report(0, 2, 1.0)
    # Step 2 running averages of the others: trial 0 -> 1.0 (not also 50.5), trial 1 -> 50.5.
    assert h.report(2, 1, 30.0) == CONTINUE  # grace period
    assert h.report(2, 2, 30.0) == STOP  # 30 > median 25.75
    h = with_others(Harness, [[1.0, 100.0, 100.0], [1.0, 100.0, 100.0]], min_samples=2, grace_period=2)
    h.report(0, 2, 1.0)
    h.report(2, 1, 20.0)
    assert h.report(2, 2, 20.0) == CONTINUE  # 20 < median 25.75
    # Step 3: only trial 1 now (trial 0's step 3 was replaced), too few samples.
    h = with_others(Harness, [[1.0, 100.0, 100.0], [1.0, 100.0, 100.0]], min_samples=2)
    h.report(0, 2, 1.0)
    h.report(2, 1, 1.0), h.report(2, 2, 1.0)
    assert h.report(2, 3, 1000.0) == CONTINUE


# The sorted-per-step fast path (training_iteration) and the general scan (any other time_attr) must
# agree wherever steps line up.

@st.composite
def streams(draw):
    n_trials = draw(st.integers(1, 7))
    return draw(st.lists(st.tuples(
        st.integers(0, n_trials - 1),
        st.one_of(st.sampled_from([0.0, 1.0, 2.0, NAN]), st.floats(-5, 5)),
        st.integers(0, 12),  # 0: restore this trial from a random earlier iteration
    ), max_size=60))


@settings(max_examples=200, deadline=None)
@given(events=streams(), mode=st.sampled_from(["min", "max"]), min_samples=st.integers(1, 3),
       grace=st.integers(0, 3))
def test_fast_path_matches_the_general_scan(Harness, events, mode, min_samples, grace):
    fast = Harness(MedianStopping(grace_period=grace, min_samples=min_samples), mode=mode)
    scan = Harness(MedianStopping(grace_period=grace, min_samples=min_samples, time_attr="step"), mode=mode)
    iteration: dict[int, int] = {}
    for trial_id, value, action in events:
        current = iteration.get(trial_id, 0)
        if action == 0 and current > 1:
            current = action = current // 2  # resumed from an earlier checkpoint
        iteration[trial_id] = current + 1
        t = iteration[trial_id]
        a = fast.report(trial_id, t, value, apply=False)
        b = scan.report(trial_id, t, value, apply=False, extra={"step": t})
        assert a == b, (trial_id, t)


def test_running_averages_start_at_step_1_as_in_golovin_et_al_not_at_the_grace_period(Harness):
    # Vizier (Golovin et al., KDD 2017, sec. 3.2.2): the median of the running averages o_{1:s} of the other
    # trials' objectives reported up to step s; the grace period only delays judging. Ray Tune's
    # MedianStoppingRule averages only results at or after grace_period (it would take 0 here and stop).
    h = with_others(Harness, [[10.0, 10.0, 0.0]], grace_period=3, min_samples=1)
    assert h.run([(1, 1, 5.0), (1, 2, 5.0), (1, 3, 5.0)]) == [CONTINUE, CONTINUE, CONTINUE]  # 5 < 20/3
    assert h.run([(2, 1, 9.0), (2, 2, 9.0), (2, 3, 9.0)]) == [CONTINUE, CONTINUE, STOP]  # 9 > (20/3 + 5) / 2
