"""The xgboost bridge on a real 100-round booster (make_classification, CPU): metrics in the store under
'<data>-<metric>', a stop ends boosting at the round it was decided, a retry continues from the checkpoint."""

from __future__ import annotations

import importlib
import json
import os
import sys

import pytest
import xgboost as xgb
from sklearn.datasets import make_classification

import tunesmith as ts
from tunesmith._optional import MissingDependency
from tunesmith.integrations.xgboost import ReportCallback, resume

X, y = make_classification(n_samples=300, n_features=8, random_state=0)
PARAMS = {"objective": "binary:logistic", "eval_metric": ["logloss", "error"], "max_depth": 2, "nthread": 1,
          "tree_method": "hist", "seed": 0}


def boost(eta, model=None, rounds=100, callbacks=()):
    dtrain, dvalid = xgb.DMatrix(X[:200], y[:200]), xgb.DMatrix(X[200:], y[200:])
    log = {}
    bst = xgb.train({**PARAMS, "eta": eta}, dtrain, num_boost_round=rounds, xgb_model=model,
                    evals=[(dtrain, "train"), (dvalid, "valid")], evals_result=log, callbacks=list(callbacks),
                    verbose_eval=False)
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
    bst, _ = boost(config.get("eta", 0.3), callbacks=[ReportCallback(metrics=config.get("metrics"))])
    note(attempt=0, rounds=bst.num_boosted_rounds())


def test_each_round_is_reported_under_xgboosts_names(results_dir):
    result = ts.run(train_plain, verbose=0)
    (t,) = result.trials
    assert t.status is ts.TrialStatus.TERMINATED
    history = result.history(t.id)
    _, log = boost(0.3)  # the same booster outside tunesmith: what xgboost itself logged
    assert [h["training_iteration"] for h in history] == list(range(1, 101))
    for name in ("train-logloss", "train-error", "valid-logloss", "valid-error"):
        data, metric = name.split("-")
        assert [h[name] for h in history] == pytest.approx(log[data][metric], rel=1e-6)


def test_metrics_can_be_chosen_and_renamed(results_dir):
    result = ts.run(train_plain, {"metrics": {"loss": "valid-logloss"}}, metric="loss", mode="min", verbose=0)
    (t,) = result.trials
    assert t.status is ts.TrialStatus.TERMINATED
    assert set(t.last_result) - {"training_iteration", "time_total_s", "timestamp"} == {"loss"}


def test_a_metric_xgboost_never_logged_is_one_error_naming_the_logged_ones(results_dir):
    result = ts.run(train_plain, {"metrics": ["valid-auc"]}, max_failures=2, verbose=0)
    (t,) = result.trials
    assert t.status is ts.TrialStatus.ERROR
    assert t.num_failures == 1  # a ConfigError: a retry would boost again only to fail the same way
    assert result.history(t.id) == []
    assert "'valid-auc' was not logged" in t.error
    assert "train-error, train-logloss, valid-error, valid-logloss" in t.error


def checkpoints_in_cv(config):
    xgb.cv(PARAMS, xgb.DMatrix(X, y), num_boost_round=10, nfold=2, callbacks=[ReportCallback(checkpoint_every=2)])


def test_checkpoints_asked_of_xgb_cv_are_one_error_saying_why_and_leave_no_folder(results_dir):
    """xgb.cv hands its callbacks every fold's booster packed together, which has nothing to save: the trial
    fails with a ConfigError saying so (it was an AttributeError about '_PackedBooster'), and the temporary
    folder the checkpoint was to be written in is gone."""
    import glob
    import tempfile

    pattern = os.path.join(tempfile.gettempdir(), "tunesmith_booster_*")
    before = set(glob.glob(pattern))
    result = ts.run(checkpoints_in_cv, verbose=0)
    (t,) = result.trials
    assert t.status is ts.TrialStatus.ERROR
    assert "ConfigError" in t.error and "xgb.cv" in t.error and "checkpoint_every" in t.error, t.error[-500:]
    assert set(glob.glob(pattern)) <= before


def plain_cv(config):
    xgb.cv(PARAMS, xgb.DMatrix(X, y), num_boost_round=6, nfold=2, shuffle=False, callbacks=[ReportCallback()])


def test_xgb_cv_reports_the_mean_over_the_folds(results_dir):
    result = ts.run(plain_cv, verbose=0)
    (t,) = result.trials
    assert t.status is ts.TrialStatus.TERMINATED
    folds = xgb.cv(PARAMS, xgb.DMatrix(X, y), num_boost_round=6, nfold=2, shuffle=False)
    assert [h["test-logloss"] for h in result.history(t.id)] == pytest.approx(list(folds["test-logloss-mean"]))


def test_a_stop_rule_ends_boosting_at_the_round_it_met(results_dir):
    result = ts.run(train_plain, verbose=0, stop={"training_iteration": 5})
    (t,) = result.trials
    assert t.status is ts.TrialStatus.TERMINATED
    assert [h["training_iteration"] for h in result.history(t.id)] == [1, 2, 3, 4, 5]
    (facts,) = notes(t)
    assert facts["rounds"] == 5  # xgb.train returned after round 5 (and the function went on normally)


def test_asha_stops_boosting_within_one_round(results_dir):
    scheduler = ts.ASHA(metric="valid-logloss", mode="min", max_t=100, grace_period=4, reduction_factor=4)
    result = ts.run(train_plain, {"eta": ts.grid([0.3, 0.03, 0.003, 0.0003])}, scheduler=scheduler,
                    max_concurrent=2, verbose=0)
    stopped = 0
    for t in result.trials:
        assert t.status is ts.TrialStatus.TERMINATED
        (facts,) = notes(t)
        assert facts["rounds"] == t.iteration == len(result.history(t.id))  # no round boosted past the last result
        stopped += t.iteration < 100
    assert stopped >= 2


class CrashAt(xgb.callback.TrainingCallback):
    def __init__(self, rounds):
        super().__init__()
        self.rounds = rounds

    def after_iteration(self, model, epoch, evals_log):
        if model.num_boosted_rounds() == self.rounds:
            raise RuntimeError(f"crash after round {self.rounds}")
        return False


def train_crashing(config):
    model, rounds = resume(100)
    attempt = 0 if model is None else 1
    callbacks = [ReportCallback(checkpoint_every=10)] + ([CrashAt(23)] if attempt == 0 else [])
    restored = 0 if model is None else model.num_boosted_rounds()
    bst, _ = boost(0.3, model=model, rounds=rounds, callbacks=callbacks)
    note(attempt=attempt, restored=restored, rounds_asked=rounds, rounds=bst.num_boosted_rounds())


def test_a_retry_continues_boosting_from_the_checkpoint(results_dir):
    result = ts.run(train_crashing, max_failures=1, verbose=0)
    (t,) = result.trials
    assert t.status is ts.TrialStatus.TERMINATED and t.num_failures == 1
    (facts,) = notes(t)  # the first attempt crashed before it could write its note
    assert facts == {"attempt": 1, "restored": 20, "rounds_asked": 80, "rounds": 100}
    history = result.history(t.id)
    assert [h["training_iteration"] for h in history] == list(range(1, 101))  # rounds 21-23 not duplicated
    _, log = boost(0.3)  # an uninterrupted booster: continuing from the checkpoint lost nothing
    assert [h["valid-logloss"] for h in history] == pytest.approx(log["valid"]["logloss"], rel=1e-6)


def test_bad_arguments_are_refused():
    with pytest.raises(ts.ConfigError, match="checkpoint_every"):
        ReportCallback(checkpoint_every=0)
    with pytest.raises(ts.ConfigError, match="metrics"):
        ReportCallback(metrics=[])


def test_without_xgboost_the_import_says_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "xgboost", None)
    monkeypatch.delitem(sys.modules, "tunesmith.integrations.xgboost")
    with pytest.raises(MissingDependency, match=r"pip install 'tunesmith\[xgboost\]'"):
        importlib.import_module("tunesmith.integrations.xgboost")
    monkeypatch.undo()
