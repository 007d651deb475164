"""The lightgbm bridge on a real 100-round booster (make_classification, CPU): metrics in the store under
'<data>-<metric>', a stop ends boosting at the round it was decided, a retry continues from the checkpoint."""

from __future__ import annotations

import importlib
import json
import os
import sys

import lightgbm as lgb
import pytest
from sklearn.datasets import make_classification

import tunesmith as ts
from tunesmith._optional import MissingDependency
from tunesmith.integrations.lightgbm import ReportCallback, resume

X, y = make_classification(n_samples=300, n_features=8, random_state=0)
PARAMS = {"objective": "binary", "metric": ["binary_logloss", "binary_error"], "num_leaves": 4, "num_threads": 1,
          "min_data_in_leaf": 5, "deterministic": True, "seed": 0, "verbose": -1}


def boost(lr, model=None, rounds=100, callbacks=()):
    dtrain = lgb.Dataset(X[:200], y[:200], free_raw_data=False)
    dvalid = lgb.Dataset(X[200:], y[200:], reference=dtrain, free_raw_data=False)
    log = {}
    bst = lgb.train({**PARAMS, "learning_rate": lr}, dtrain, num_boost_round=rounds, init_model=model,
                    valid_sets=[dtrain, dvalid], valid_names=["train", "valid"],
                    callbacks=[lgb.record_evaluation(log), *callbacks])
    return bst, log


def note(**facts):
    """What happened inside the trial, written where the test can read it (a trial cannot return values)."""
    with open(os.path.join(ts.get_trial_dir(), f"attempt_{facts['attempt']}.json"), "w") as f:
        json.dump(facts, f)


def notes(trial):
    out = []
    for name in sorted(os.listdir(trial.path)):
        if name.startswith("attempt_"):
            with open(os.path.join(trial.path, name)) as f:
                out.append(json.load(f))
    return out


def train_plain(config):
    bst, _ = boost(config.get("lr", 0.1), callbacks=[ReportCallback(metrics=config.get("metrics"))])
    note(attempt=0, rounds=bst.current_iteration())


def test_each_round_is_reported_under_lightgbms_names(results_dir):
    result = ts.run(train_plain, verbose=0)
    (t,) = result.trials
    assert t.status is ts.TrialStatus.TERMINATED
    history = result.history(t.id)
    _, log = boost(0.1)  # the same booster outside tunesmith: what lightgbm itself logged
    assert [h["training_iteration"] for h in history] == list(range(1, 101))
    for name in ("train-binary_logloss", "train-binary_error", "valid-binary_logloss", "valid-binary_error"):
        data, metric = name.split("-")
        assert [h[name] for h in history] == pytest.approx(log[data][metric], rel=1e-6)


def test_metrics_can_be_chosen_and_renamed(results_dir):
    result = ts.run(train_plain, {"metrics": {"loss": "valid-binary_logloss"}}, metric="loss", mode="min", verbose=0)
    (t,) = result.trials
    assert t.status is ts.TrialStatus.TERMINATED
    assert set(t.last_result) - {"training_iteration", "time_total_s", "timestamp"} == {"loss"}


def test_a_metric_lightgbm_never_logged_is_one_error_naming_the_logged_ones(results_dir):
    result = ts.run(train_plain, {"metrics": ["valid_0-binary_logloss"]}, verbose=0)
    (t,) = result.trials
    assert t.status is ts.TrialStatus.ERROR
    assert result.history(t.id) == []
    assert "'valid_0-binary_logloss' was not logged" in t.error
    assert "train-binary_error, train-binary_logloss, valid-binary_error, valid-binary_logloss" in t.error


def test_a_stop_rule_ends_boosting_at_the_round_it_met(results_dir):
    result = ts.run(train_plain, verbose=0, stop={"training_iteration": 5})
    (t,) = result.trials
    assert t.status is ts.TrialStatus.TERMINATED
    assert [h["training_iteration"] for h in result.history(t.id)] == [1, 2, 3, 4, 5]
    (facts,) = notes(t)
    assert facts["rounds"] == 5  # lgb.train returned after round 5 (and the function went on normally)


def test_asha_stops_boosting_within_one_round(results_dir):
    scheduler = ts.ASHA(metric="valid-binary_logloss", mode="min", max_t=100, grace_period=4, reduction_factor=4)
    result = ts.run(train_plain, {"lr": ts.grid([0.3, 0.03, 0.003, 0.0003])}, scheduler=scheduler,
                    max_concurrent=2, verbose=0)
    stopped = 0
    for t in result.trials:
        assert t.status is ts.TrialStatus.TERMINATED
        (facts,) = notes(t)
        assert facts["rounds"] == t.iteration == len(result.history(t.id))  # no round boosted past the last result
        stopped += t.iteration < 100
    assert stopped >= 2


def train_early_stopped(config):
    _bst, log = boost(0.5, callbacks=[lgb.early_stopping(3, verbose=False), ReportCallback()])
    note(attempt=0, rounds=len(log["valid"]["binary_logloss"]))  # record_evaluation (order 20): every round boosted


def test_the_round_lightgbms_early_stopping_ends_is_not_reported(results_dir):
    """ReportCallback runs after lightgbm's own callbacks (order 40; early_stopping is 30), also when lgb.train
    numbers the callbacks it is given (it sets an ``order`` on each that has none of its own)."""
    result = ts.run(train_early_stopped, verbose=0)
    (t,) = result.trials
    (facts,) = notes(t)
    assert facts["rounds"] < 100  # early stopping ended boosting
    assert t.iteration == len(result.history(t.id)) == facts["rounds"] - 1  # the round it ended: not reported


def crash_at(rounds):
    def callback(env):
        if env.iteration + 1 == rounds:
            raise RuntimeError(f"crash after round {rounds}")
    callback.order = 50  # after ReportCallback (40): round `rounds` is reported, then the trial crashes
    return callback


def train_crashing(config):
    model, rounds = resume(100)
    attempt = 0 if model is None else 1
    callbacks = [ReportCallback(checkpoint_every=10)] + ([crash_at(23)] if attempt == 0 else [])
    restored = 0 if model is None else model.current_iteration()
    bst, _ = boost(0.1, model=model, rounds=rounds, callbacks=callbacks)
    note(attempt=attempt, restored=restored, rounds_asked=rounds, rounds=bst.current_iteration())


def test_a_retry_continues_boosting_from_the_checkpoint(results_dir):
    result = ts.run(train_crashing, max_failures=1, verbose=0)
    (t,) = result.trials
    assert t.status is ts.TrialStatus.TERMINATED and t.num_failures == 1
    (facts,) = notes(t)  # the first attempt crashed before it could write its note
    assert facts == {"attempt": 1, "restored": 20, "rounds_asked": 80, "rounds": 100}
    history = result.history(t.id)
    assert [h["training_iteration"] for h in history] == list(range(1, 101))  # rounds 21-23 not duplicated
    _, log = boost(0.1)  # an uninterrupted booster: continuing from the checkpoint lost nothing
    assert [h["valid-binary_logloss"] for h in history] == pytest.approx(log["valid"]["binary_logloss"], rel=1e-6)


def train_cv(config):
    lgb.cv(PARAMS, lgb.Dataset(X, y), num_boost_round=6, nfold=2, stratified=False, shuffle=False,
           callbacks=[ReportCallback(checkpoint_every=config["checkpoint_every"])])


def test_lgb_cv_reports_the_fold_mean_and_a_checkpoint_asked_of_it_is_one_error_saying_why(results_dir):
    """lgb.cv hands its callbacks a CVBooster (every fold's booster): each round reports the mean over the
    folds; checkpoint_every fails the trial with a ConfigError at the first checkpoint, where it used to save
    the CVBooster's JSON as model.txt, which resume() then could not load (a retry failed with lightgbm's
    'Unknown model format or submodel type')."""
    result = ts.run(train_cv, {"checkpoint_every": ts.grid([None, 2])}, max_failures=1, verbose=0)
    plain, checkpointed = sorted(result.trials, key=lambda t: t.config["checkpoint_every"] is not None)
    assert plain.status is ts.TrialStatus.TERMINATED
    folds = lgb.cv(PARAMS, lgb.Dataset(X, y), num_boost_round=6, nfold=2, stratified=False, shuffle=False)
    assert [h["valid-binary_logloss"] for h in result.history(plain.id)] == pytest.approx(
        folds["valid binary_logloss-mean"], rel=1e-6)
    assert checkpointed.status is ts.TrialStatus.ERROR
    assert checkpointed.num_failures == 1  # a ConfigError: no retry
    assert checkpointed.checkpoint is None
    assert "ConfigError" in checkpointed.error and "lgb.cv" in checkpointed.error, checkpointed.error[-500:]
    assert "checkpoint_every" in checkpointed.error


def test_bad_arguments_are_refused():
    with pytest.raises(ts.ConfigError, match="checkpoint_every"):
        ReportCallback(checkpoint_every=0)
    with pytest.raises(ts.ConfigError, match="metrics"):
        ReportCallback(metrics=[])


def test_without_lightgbm_the_import_says_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "lightgbm", None)
    monkeypatch.delitem(sys.modules, "tunesmith.integrations.lightgbm")
    with pytest.raises(MissingDependency, match=r"pip install 'tunesmith\[lightgbm\]'"):
        importlib.import_module("tunesmith.integrations.lightgbm")
    monkeypatch.undo()
