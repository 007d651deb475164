"""Stop rules beyond thresholds: flags, plateau rules, experiment-level stops, combinations, fail_fast."""

from __future__ import annotations

import logging

import pytest
from algorithm_helpers import InterruptAfter, TotalResults

import tunesmith as ts
from tunesmith._objective import Objective
from tunesmith._stop import StopRules


def count_forever(config):
    i = 0
    while True:
        i += 1
        ts.report({"m": i, "done": i >= 6, "loss": max(10.0 - i, 1.0)})


def _iterations(result):
    return sorted(t.iteration for t in result.trials)


# -- pure rules ----------------------------------------------------------------------------------------
def test_trial_plateau_stops_once_the_last_results_are_flat():
    rule = ts.TrialPlateau("loss", std=0.01, num_results=3, grace_period=5)
    values = [5.0, 4.0, 3.0, 2.0, 2.0, 2.0, 2.0]
    stops = [rule(1, {"loss": v}) for v in values]
    # the window [2, 2, 2] is flat from the 6th result on; the grace period alone would allow the 5th
    assert stops == [False] * 5 + [True, True]
    # per trial: another trial's values do not count
    assert rule(2, {"loss": 2.0}) is False


def test_trial_plateau_with_a_threshold_ignores_a_trial_stuck_at_a_bad_value():
    rules = StopRules(ts.TrialPlateau("loss", std=0.1, num_results=2, grace_period=0, metric_threshold=1.0),
                      Objective.from_args("loss", "min"))
    assert not any(rules.should_stop(1, i, {"loss": 5.0}) for i in range(1, 10))
    assert [rules.should_stop(2, i, {"loss": 0.5}) for i in (1, 2)] == [False, True]


def test_experiment_plateau_ends_the_experiment_after_patience():
    rule = ts.ExperimentPlateau("score", top=3, std=0.01, patience=1, mode="max")
    ends = []
    for v in [0.1, 0.9, 0.2, 0.9, 0.9, 0.3]:
        rule(1, {"score": v})
        ends.append(rule.stop_all())
    # top 3 after each: [.1] [.9 .1] [.9 .2 .1] [.9 .9 .2] [.9 .9 .9] (flat once) [.9 .9 .9] (flat twice)
    assert ends == [False] * 5 + [True]


def test_experiment_plateau_takes_its_mode_from_the_experiment_or_asks_for_one():
    rule = ts.ExperimentPlateau("loss", top=2)
    StopRules(rule, Objective.from_args("loss", "max"))
    assert rule.mode == "max"
    with pytest.raises(ts.ConfigError, match="give mode="):
        StopRules(ts.ExperimentPlateau("other"), Objective.from_args("loss", "min"))


@pytest.mark.parametrize("make, match", [
    (lambda: ts.TrialPlateau("loss", std=-1), "std must be a number >= 0"),
    (lambda: ts.TrialPlateau("loss", num_results=0), "num_results must be an integer >= 1"),
    (lambda: ts.ExperimentPlateau("loss", top=1), "top must be an integer >= 2"),
    (lambda: ts.ExperimentPlateau(3), "metric must be a metric name"),
])
def test_plateau_arguments_are_checked(make, match):
    with pytest.raises(ts.ConfigError, match=match):
        make()


# -- through run -----------------------------------------------------------------------------------------
def test_a_boolean_flag_stops_the_trial_at_the_result_that_raised_it(results_dir):
    result = ts.run(count_forever, stop={"done": True}, num_samples=2, verbose=0)
    assert _iterations(result) == [6, 6]
    assert all(t.status is ts.TrialStatus.TERMINATED for t in result.trials)


def test_trial_plateau_and_a_list_of_rules_stop_trials_in_the_worker(results_dir):
    # loss: 9, 8, ..., 1, 1, 1...: flat over 3 results from iteration 11 on
    result = ts.run(count_forever, metric="loss", mode="min", num_samples=2, verbose=0,
                    stop=ts.TrialPlateau("loss", std=1e-9, num_results=3, grace_period=1))
    assert _iterations(result) == [11, 11]
    # combined with a threshold: the first rule met stops the trial
    result = ts.run(count_forever, metric="loss", mode="min", num_samples=1, verbose=0,
                    stop=[{"m": 4}, ts.TrialPlateau("loss", std=1e-9, num_results=3, grace_period=1)])
    assert _iterations(result) == [4]
    assert result.meta["spec"]["stop"] == [{"m": 4}, {"TrialPlateau": {
        "metric": "loss", "std": 1e-9, "num_results": 3, "grace_period": 1, "metric_threshold": None,
        "mode": None}}]


def constant(config):
    for _ in range(10**6):
        ts.report({"loss": 1.0})
        if ts.should_stop():
            return


def test_experiment_plateau_ends_the_whole_experiment(results_dir):
    result = ts.run(constant, metric="loss", mode="min", num_samples=50, max_concurrent=2, verbose=0,
                    stop=[{"training_iteration": 3}, ts.ExperimentPlateau("loss", top=4, std=1e-9)])
    # 4 equal values are reached in the second trial: no more trials start, those running stop
    assert 2 <= len(result.trials) < 10
    assert result.status == "finished"
    assert all(t.status is ts.TrialStatus.TERMINATED for t in result.trials)


def test_a_stopper_with_stop_all_stays_in_the_driver_and_ends_the_experiment(results_dir):
    result = ts.run(constant, num_samples=30, max_concurrent=1, verbose=0, stop=TotalResults(12))
    # the first trial would run for 10**6 results: the experiment ends it, and no other trial starts
    assert len(result.trials) == 1
    assert 12 <= result.trials[0].iteration < 10**6
    assert result.trials[0].status is ts.TrialStatus.TERMINATED


def three_results(config):
    for _ in range(3):
        ts.report({"loss": 1.0})


@pytest.mark.parametrize("make", [lambda: ts.ExperimentPlateau("loss", top=2, std=1e-9, patience=10),
                                  lambda: TotalResults(12)], ids=["plateau", "custom"])
def test_an_experiment_level_stopper_resumes_with_the_state_of_the_stored_results(results_dir, make):
    """Both stoppers end the experiment at its 12th result (the fourth trial, one at a time). Interrupted after
    the second trial, the resumed experiment replays the 6 stored results to its stopper, so it still ends at
    the 12th result overall (without them it would need 12 more: 6 trials)."""
    kw = dict(metric="loss", mode="min", num_samples=8, max_concurrent=1, verbose=0)
    whole = ts.run(three_results, name="whole", stop=make(), **kw)
    assert len(whole.trials) == 4
    with pytest.raises(KeyboardInterrupt):
        ts.run(three_results, name="cut", stop=make(), callbacks=[InterruptAfter(2)], **kw)
    assert len(ts.load("cut").trials) == 2
    resumed = ts.run(three_results, name="cut", stop=make(), resume=True, **kw)
    assert len(resumed.trials) == 4 and sum(t.iteration for t in resumed.trials) == 12
    assert resumed.status == "finished"


def test_a_resume_after_the_experiment_was_ended_by_a_stopper_starts_nothing(results_dir):
    kw = dict(metric="loss", mode="min", num_samples=8, max_concurrent=1, verbose=0)
    ts.run(three_results, name="ended", stop=TotalResults(6), **kw)
    again = ts.run(three_results, name="ended", stop=TotalResults(6), resume=True, **kw)
    assert len(again.trials) == 2


def fails_or_waits(config):
    if config["i"] == 0:
        raise RuntimeError("boom")
    for _ in range(100000):
        ts.report({"v": 1})
        if ts.should_stop():
            return
        import time
        time.sleep(0.01)


def test_fail_fast_stops_every_trial_at_the_first_error(results_dir):
    space = {"i": ts.grid([1, 0, 2, 3, 4, 5])}
    result = ts.run(fails_or_waits, space, fail_fast=True, max_concurrent=2, verbose=0)
    statuses = {t.config["i"]: t.status for t in result.trials}
    assert statuses[0] is ts.TrialStatus.ERROR
    # cut short, not ended: paused for a resume (tests/test_resume_edges.py)
    assert statuses[1] is ts.TrialStatus.PAUSED and result.trials[0].iteration < 100000
    assert len(result.trials) == 2  # nothing started after the error
    assert result.status == "failed"
    with pytest.raises(ts.TrialError, match="fail_fast: .* failed"):
        ts.run(fails_or_waits, space, fail_fast="raise", max_concurrent=2, verbose=0)


class _Raises(ts.Stopper):
    """An experiment-level stopper whose ``__call__`` (``where="call"``) or ``stop_all`` raises from the
    ``at``-th result on, over all trials."""

    def __init__(self, where, at=5):
        self.where, self.at, self.seen = where, at, 0

    def __call__(self, trial_id, result):
        self.seen += 1
        if self.where == "call" and self.seen >= self.at:
            raise ValueError("boom")
        return False

    def stop_all(self):
        if self.where == "stop_all" and self.seen >= self.at:
            raise ValueError("boom")
        return False


@pytest.mark.parametrize("where, method", [("call", "__call__"), ("stop_all", r"stop_all\(\)")])
def test_an_experiment_level_stopper_that_raises_is_a_config_error_and_the_experiment_ends_cleanly(
        results_dir, where, method):
    with pytest.raises(ts.ConfigError, match=rf"stop rule \S*_Raises: {method} raised ValueError: boom at "
                                             rf"trial_\d+'s result \d+"):
        ts.run(constant, metric="loss", mode="min", num_samples=4, max_concurrent=2, verbose=0, name="raises",
               stop=_Raises(where))
    stored = ts.load("raises")
    assert stored.status == "failed"
    # the trials it cut short are paused, for a resume
    assert stored.trials and all(t.status is ts.TrialStatus.PAUSED for t in stored.trials)
    # nothing lost: every result the trials made is stored, the fifth (the stopper raised at) included
    assert sum(t.iteration for t in stored.trials) >= 5
    assert all(len(stored.history(t.id)) == t.iteration for t in stored.trials)


class _AskedTwice(ts.Stopper):
    """An experiment-level stopper whose ``stop_all`` raises when asked again before a new result came: what
    a resume's last question (after its replay) does to it."""

    def __init__(self):
        self.fresh = False

    def __call__(self, trial_id, result):
        self.fresh = True
        return False

    def stop_all(self):
        if not self.fresh:
            raise ValueError("asked twice")
        self.fresh = False
        return False


def test_an_experiment_level_stopper_that_raises_at_a_resumes_end_is_a_config_error(results_dir):
    with pytest.raises(KeyboardInterrupt):
        ts.run(three_results, metric="loss", mode="min", num_samples=4, max_concurrent=1, verbose=0, name="asked",
               stop=_AskedTwice(), callbacks=[InterruptAfter(2)])
    with pytest.raises(ts.ConfigError, match=r"stop rule \S*_AskedTwice: stop_all\(\) raised ValueError: asked twice "
                                             r"at the end of the stored results"):
        ts.run(three_results, metric="loss", mode="min", num_samples=4, max_concurrent=1, verbose=0, name="asked",
               stop=_AskedTwice(), resume=True)


def silent(config):
    pass


def test_a_trial_without_results_while_a_metric_is_set_is_a_warning(results_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="tunesmith"):
        ts.run(silent, metric="loss", mode="min", verbose=0, strict_metric_checking=False)
    assert "ended without reporting a result" in caplog.text


def test_tunesmith_resume_rebuilds_plateau_rules_and_leaves_the_users_own_as_stored_names():
    from tunesmith.cli import resume_arguments

    spec = {"stop": [{"m": 4}, {"TrialPlateau": {"metric": "loss", "std": 0.1, "num_results": 3,
                                                  "grace_period": 1, "metric_threshold": None, "mode": None}}],
            "fail_fast": True}
    args = resume_arguments(spec)
    assert args["stop"][0] == {"m": 4} and isinstance(args["stop"][1], ts.TrialPlateau)
    assert args["stop"][1].num_results == 3 and args["fail_fast"] is True
    # a function or Stopper of the user's is left as the name the store gives (imported only once confirmed)
    args = resume_arguments({"stop": [{"m": 4}, {"stopper": "train:TotalResults"}],
                             "resources": {"callable": "train:gpus"}, "constraints": "train:feasible"})
    assert [repr(args["stop"][1]), repr(args["resources"]), repr(args["constraints"])] == [
        "the Stopper 'train:TotalResults'", "the resources function 'train:gpus'",
        "the constraints function 'train:feasible'"]
    with pytest.raises(ts.ConfigError, match=r"the resources function '<lambda>' of your own, which cannot be "):
        resume_arguments({"resources": {"callable": "<lambda>"}})["resources"].check()


class _StopsTrial1At5(ts.Stopper):
    """Experiment-level (it defines stop_all), so asked in the driver; its __call__ stops trial 1 at iteration 5."""

    def __call__(self, trial_id, result):
        return trial_id == 1 and result["training_iteration"] >= 5

    def stop_all(self):
        return False


def _thirty_fast_results(config):
    for i in range(30):
        ts.report({"loss": config["x"] / (i + 1)})


def test_a_trial_stopped_by_an_experiment_level_stopper_stores_nothing_after_the_result_that_met_it(results_dir):
    """README: a trial stops at the result that met its stop rule (that result is its last stored one). A Stopper
    asked in the driver stopped trial 1 at 5, and its iteration 6 (or more) was stored: the trial did not wait for
    the driver's answer. It now waits at each result when such a stopper may stop trials."""
    result = ts.run(_thirty_fast_results, {"x": ts.grid([1.0, 2.0])}, metric="loss", mode="min",
                    stop=_StopsTrial1At5(), verbose=0)
    assert [r["training_iteration"] for r in result.history(1)] == [1, 2, 3, 4, 5]
    assert result.trial(2).iteration == 30


def test_a_stopper_that_only_observes_trials_lets_them_run_without_waiting():
    """ExperimentPlateau's __call__ only observes (stops_trials = False): no wait for the driver at each result."""
    from tunesmith._objective import Objective
    from tunesmith._stop import StopRules

    assert not StopRules(ts.ExperimentPlateau("loss"), Objective.from_args("loss", "min")).stops_trials_from_driver
    assert StopRules(_StopsTrial1At5(), Objective.from_args("loss", "min")).stops_trials_from_driver


class _PerTrialOneArgument(ts.Stopper):
    def __call__(self, result):  # forgot trial_id
        return False


class _StopAllWithArgument(ts.Stopper):
    def stop_all(self, results):
        return False


@pytest.mark.parametrize("stop, match", [
    (lambda result: result["loss"] < 1, r"stop: <lambda>\(result\) cannot be called as fn\(trial_id, result\)"),
    ([{"m": 3}, lambda: True], r"stop\[1\]: <lambda>\(\) cannot be called as fn\(trial_id, result\)"),
    (_PerTrialOneArgument(), r"stop: _PerTrialOneArgument\.__call__\(result\) cannot be called as "
                             r"fn\(trial_id, result\)"),
    (_StopAllWithArgument(), r"stop: _StopAllWithArgument\.stop_all\(results\) cannot be called as stop_all\(\)"),
    (ts.TrialPlateau, r"stop is the class TrialPlateau: pass an instance, TrialPlateau\(\.\.\.\)"),
    ([_PerTrialOneArgument], r"stop\[0\] is the class _PerTrialOneArgument: pass an instance"),
], ids=["lambda-one-argument", "in-a-list", "stopper-call", "stopper-stop-all", "class", "class-in-a-list"])
def test_a_stop_rule_that_cannot_be_called_as_the_trials_call_it_is_refused_before_anything_starts(
        results_dir, stop, match):
    """Before: each trial ERRORed at its first result with ``TypeError: <lambda>() takes 1 positional argument but
    2 were given`` (a class was constructed with (trial_id, result) at each result), the run returning normally."""
    with pytest.raises(ts.ConfigError, match=match):
        ts.run(count_forever, metric="loss", mode="min", name="badstop", stop=stop, verbose=0)
    assert not (results_dir / "badstop").exists()


def _needs_accuracy(trial_id, result):
    return result["acc"] > 0.9  # a careless rule: the trials report no "acc"


def test_a_per_trial_stop_rule_that_raises_fails_the_trial_with_an_error_naming_the_rule(results_dir):
    """Before: the trial's error was the bare ``KeyError: 'acc'`` from inside tunesmith's own frames."""
    result = ts.run(count_forever, metric="loss", mode="min", num_samples=2, verbose=0, stop=_needs_accuracy)
    assert [t.status for t in result.trials] == [ts.TrialStatus.ERROR] * 2
    for t in result.trials:
        assert (f"ConfigError: stop rule {__name__}:_needs_accuracy raised KeyError: 'acc' at {t.name}'s result 1"
                in t.error)


def test_a_stop_rule_judged_in_the_driver_that_raises_is_a_config_error_naming_it(results_dir):
    """A callable that cannot be pickled is judged in the driver alone. Before: its exception itself (a bare
    ``KeyError``) came out of ``run``."""
    import threading

    lock = threading.Lock()

    def needs_accuracy(trial_id, result):
        with lock:
            return result["acc"] > 0.9

    with pytest.raises(ts.ConfigError, match=r"stop rule .*needs_accuracy raised KeyError: 'acc' at "
                                             r"trial_00001's result 1"):
        ts.run(three_results, metric="loss", mode="min", name="driver", verbose=0, stop=needs_accuracy)
    stored = ts.load("driver")
    assert stored.status == "failed"
    assert all(len(stored.history(t.id)) == t.iteration for t in stored.trials)


def reports_text(config):
    for i in range(3):
        ts.report({"loss": str(5 - i), "state": "done" if i == 2 else "running", "n": i})


def test_a_stop_key_reported_as_text_is_warned_about_once_naming_its_type(results_dir, caplog):
    """A threshold rule (or a flag) on a key the trials report as text never fires, as one on a key they never
    report: the driver says so once per key, naming the key and the type reported (not its value, which may quote a
    secret), and the trials run on."""
    with caplog.at_level(logging.WARNING, logger="tunesmith"):
        result = ts.run(reports_text, {"k": ts.grid([1, 2, 3])}, stop={"loss": 1, "state": True, "n": 100},
                        verbose=0)
    assert [t.iteration for t in result.trials] == [3, 3, 3]
    warnings = sorted(r.getMessage() for r in caplog.records if "stop[" in r.getMessage())
    assert len(warnings) == 2, warnings
    assert "stop['loss']" in warnings[0] and "reported 'loss' as str, not a number" in warnings[0], warnings
    assert "stop['state']" in warnings[1] and "reported 'state' as str, not a number" in warnings[1], warnings
    assert not any("'5'" in w or "running" in w for w in warnings)


def reports_nan_done(config):
    for i in range(5):
        ts.report({"loss": 1.0, "done": float("nan") if i == config["at"] else False})


def test_a_nan_done_is_a_non_zero_number_and_stops_the_trial(results_dir):
    """``done`` is judged as a number may be (Ray Tune's ``"done": 1``): NaN is not zero, so it stops the trial on
    that result, as bool(nan) says, in the trial and the driver alike."""
    result = ts.run(reports_nan_done, {"at": ts.grid([1, 3])}, stop={"done": True}, verbose=0)
    assert [t.iteration for t in result.trials] == [2, 4]
    assert StopRules({"done": True}, Objective()).should_stop(1, 1, {"done": float("nan")})
