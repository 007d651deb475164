"""TuneSearchCV on make_classification: GridSearchCV's results, scikit-learn's estimator checks, and early
stopping of incrementally trained candidates by ASHA."""

from __future__ import annotations

import os
import sys
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.metrics import get_scorer
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.naive_bayes import BernoulliNB, MultinomialNB
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

import tunesmith as ts
from tunesmith.integrations.sklearn import TuneSearchCV

X, y = make_classification(n_samples=200, n_features=8, random_state=0)


def test_a_grid_search_gives_gridsearchcvs_results(results_dir):
    grid = [0.01, 0.1, 1.0]
    ours = TuneSearchCV(LogisticRegression(), {"C": ts.grid(grid)}, n_trials=1, cv=3).fit(X, y)
    theirs = GridSearchCV(LogisticRegression(), {"C": grid}, cv=3).fit(X, y)
    assert set(ours.cv_results_) == set(theirs.cv_results_)
    order = np.argsort([p["C"] for p in ours.cv_results_["params"]])  # trials in trial order, the grid sorted
    for key, expected in theirs.cv_results_.items():
        got = [ours.cv_results_[key][i] for i in order]
        if key == "params" or key.startswith("param_"):
            assert list(got) == list(expected)
        elif "time" not in key:
            assert np.allclose(got, expected), key
    assert ours.best_params_ == theirs.best_params_ and ours.best_score_ == pytest.approx(theirs.best_score_)
    assert (ours.predict(X) == theirs.predict(X)).all()
    assert ours.score(X, y) == pytest.approx(theirs.score(X, y))
    assert ours.n_splits_ == 3 and ours.refit_time_ > 0
    assert len(ts.load(ours.experiment_path_).trials) == 3


def test_tuple_parameters_reach_the_estimator_as_tuples(results_dir):
    """``ngram_range`` must be a tuple (sklearn's parameter check refuses a list): a tuple option of the space
    reaches ``set_params`` as that tuple, and ``best_params_``/``cv_results_`` give it as GridSearchCV does (a
    trial's config holds the list that JSON stores)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline

    texts = ["good movie", "bad movie", "great film", "awful film", "nice one", "terrible one"] * 5
    labels = [1, 0, 1, 0, 1, 0] * 5
    search = TuneSearchCV(make_pipeline(TfidfVectorizer(), LogisticRegression()),
                          {"tfidfvectorizer__ngram_range": ts.grid([(1, 1), (1, 2)]), "logisticregression__C": 1.0},
                          n_trials=1, cv=2)
    search.fit(texts, labels)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert [p["tfidfvectorizer__ngram_range"] for p in search.cv_results_["params"]] == [(1, 1), (1, 2)]
    assert list(search.cv_results_["param_tfidfvectorizer__ngram_range"]) == [(1, 1), (1, 2)]
    assert isinstance(search.best_params_["tfidfvectorizer__ngram_range"], tuple)
    assert search.best_estimator_.get_params()["tfidfvectorizer__ngram_range"] in ((1, 1), (1, 2))


def test_run_keywords_survive_clone_and_unknown_ones_are_refused(results_dir):
    search = TuneSearchCV(LogisticRegression(), {"C": ts.loguniform(0.1, 10)}, seed=3, max_concurrent=1)
    copy = clone(search)
    assert copy.get_params()["seed"] == 3 and copy.get_params()["max_concurrent"] == 1
    copy.set_params(seed=4)
    assert copy.get_params()["seed"] == 4
    with pytest.raises(ts.ConfigError, match="unexpected keyword argument.*max_concurent"):
        TuneSearchCV(LogisticRegression(), {"C": 1.0}, max_concurent=1).fit(X, y)
    with pytest.raises(ts.ConfigError, match="space"):
        TuneSearchCV(LogisticRegression()).fit(X, y)


def test_without_a_scheduler_each_candidate_is_one_cross_validation(results_dir):
    search = TuneSearchCV(SGDClassifier(random_state=0), {"alpha": ts.loguniform(1e-5, 1e-1)}, n_trials=2, cv=2,
                          refit=False, seed=0).fit(X, y)
    assert [t.iteration for t in ts.load(search.experiment_path_).trials] == [1, 1]
    assert not hasattr(search, "best_estimator_")
    # as GridSearchCV: without a refit there is nothing to predict with, and hasattr says so
    assert not hasattr(search, "predict") and not hasattr(search, "decision_function")
    with pytest.raises(AttributeError) as err:
        search.predict(X)
    assert "refit=False" in str(err.value.__cause__)  # (available_if says "no attribute", caused by why)


def test_asha_stops_partial_fit_candidates_before_their_last_increment(results_dir):
    search = TuneSearchCV(SGDClassifier(random_state=0), {"alpha": ts.loguniform(1e-6, 1.0)}, n_trials=9, cv=2,
                          max_iters=9, scheduler=ts.ASHA(max_t=9, grace_period=1, reduction_factor=3), seed=0,
                          max_concurrent=2).fit(X, y)
    trials = ts.load(search.experiment_path_).trials
    iterations = [t.iteration for t in trials]
    assert all(t.status is ts.TrialStatus.TERMINATED for t in trials)
    assert max(iterations) == 9 and sum(i < 9 for i in iterations) >= 3  # stopped early, at a rung
    for t in trials:  # one report per increment, each a cross-validation of the model trained so far
        history = ts.load(search.experiment_path_).history(t.id)
        assert [h["training_iteration"] for h in history] == list(range(1, t.iteration + 1))
        assert all(0 <= h["mean_test_score"] <= 1 for h in history)
    assert search.best_params_ == trials[search.best_index_].config


def test_the_refit_after_partial_fit_candidates_is_the_estimators_own_fit_as_in_gridsearchcv(results_dir):
    """The candidates were scored after ``max_iters`` passes of ``partial_fit``; the refit is ``fit`` on all the
    data, as ``GridSearchCV`` refits, so it runs the estimator's own ``max_iter`` epochs (here 20, not 2), and
    gives the same model as fitting ``best_params_`` by hand."""
    estimator = SGDClassifier(random_state=0, max_iter=20, tol=None)
    search = TuneSearchCV(estimator, {"alpha": ts.choice([1e-4])}, n_trials=1, cv=2, max_iters=2,
                          scheduler=ts.FIFO(), seed=0).fit(X, y)
    (t,) = ts.load(search.experiment_path_).trials
    assert t.iteration == 2  # trained in 2 increments in the search
    by_hand = clone(estimator).set_params(**search.best_params_).fit(X, y)
    assert search.best_estimator_.n_iter_ == by_hand.n_iter_ == 20
    np.testing.assert_array_equal(search.best_estimator_.coef_, by_hand.coef_)


def test_warm_start_ensembles_grow_in_increments(results_dir):
    search = TuneSearchCV(RandomForestClassifier(n_estimators=8, random_state=0), {"max_depth": ts.choice([2, 4])},
                          n_trials=1, cv=2, max_iters=4, scheduler=ts.FIFO(), seed=0).fit(X, y)
    (t,) = ts.load(search.experiment_path_).trials
    assert t.iteration == 4
    assert search.best_estimator_.n_estimators == 8 and len(search.best_estimator_.estimators_) == 8


def test_candidates_whose_every_fit_fails_raise_the_fits_own_error(results_dir):
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        TuneSearchCV(LogisticRegression(), {"C": ts.loguniform(0.1, 10)}, n_trials=1, cv=2).fit(bad, y)


def test_a_candidate_without_partial_fit_is_fitted_once_per_fold_under_a_scheduler(results_dir):
    """Incremental or not is decided per candidate, after its set_params: ``MLPClassifier(solver="lbfgs")`` has no
    ``partial_fit`` (an ``available_if`` method, there for adam and sgd only), so under a scheduler it is fitted once
    per fold and reports once, scored as ``cross_val_score`` scores it, while the adam candidate is trained in
    ``max_iters`` ``partial_fit`` increments. (It was scored NaN, its folds' ``partial_fit`` raising, and lost.)"""
    mlp = MLPClassifier(hidden_layer_sizes=(8,), max_iter=50, random_state=0)
    search = TuneSearchCV(mlp, {"solver": ts.grid(["adam", "lbfgs"])}, n_trials=1, cv=2, max_iters=3,
                          scheduler=ts.FIFO(), seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs stops at max_iter before converging (the refit here)
        search.fit(X, y)
        expected = cross_val_score(clone(mlp).set_params(solver="lbfgs"), X, y, cv=2)
    trials = {t.config["solver"]: t for t in ts.load(search.experiment_path_).trials}
    assert all(t.status is ts.TrialStatus.TERMINATED for t in trials.values())
    assert trials["lbfgs"].iteration == 1 and trials["adam"].iteration == 3
    assert trials["lbfgs"].last_result["failed_fits"] == 0
    lbfgs = [p["solver"] for p in search.cv_results_["params"]].index("lbfgs")
    assert [search.cv_results_[f"split{k}_test_score"][lbfgs] for k in range(2)] == pytest.approx(expected)
    # fitted to the end, lbfgs beats three passes of adam: the best candidate is no longer lost
    assert search.best_params_ == {"solver": "lbfgs"} and search.best_score_ == pytest.approx(np.mean(expected))


# word-count-like data: naive Bayes' partial_fit adds these counts up
COUNTS = np.random.default_rng(0).poisson(1.0, size=(60, 6))
LABELS = (COUNTS[:, 0] + COUNTS[:, 1] + np.arange(60) % 3 > COUNTS[:, 2] + COUNTS[:, 3] + 1).astype(int)


@pytest.mark.parametrize("estimator", [MultinomialNB(), BernoulliNB(), OneVsRestClassifier(MultinomialNB())],
                         ids=["MultinomialNB", "BernoulliNB", "OneVsRestClassifier(MultinomialNB)"])
def test_a_naive_bayes_candidate_is_fitted_once_per_fold_under_a_scheduler(estimator, results_dir):
    """Naive Bayes' ``partial_fit`` adds the batch's counts to the model's: one pass over the fold is its whole fit,
    and ``max_iters`` passes counted the fold ``max_iters`` times, a model that no single fit gives (less smoothing:
    log loss differs). Under a scheduler it is fitted once per fold (one report), scored as ``cross_val_score``
    scores it, inside a meta-estimator too."""
    alpha = "estimator__alpha" if isinstance(estimator, OneVsRestClassifier) else "alpha"
    search = TuneSearchCV(estimator, {alpha: ts.grid([0.5, 5.0])}, n_trials=1, cv=2, max_iters=4,
                          scoring="neg_log_loss", scheduler=ts.FIFO(), seed=0).fit(COUNTS, LABELS)
    trials = ts.load(search.experiment_path_).trials
    assert [t.iteration for t in trials] == [1, 1]
    for i, params in enumerate(search.cv_results_["params"]):
        model = clone(estimator).set_params(**params)
        expected = cross_val_score(model, COUNTS, LABELS, cv=2, scoring="neg_log_loss")
        assert [search.cv_results_[f"split{k}_test_score"][i] for k in range(2)] == pytest.approx(expected)
        counted_4_times = []  # what 4 passes over each fold give: not the model above
        for train, test in StratifiedKFold(2).split(COUNTS, LABELS):
            passes = clone(model)
            for _ in range(4):
                passes.partial_fit(COUNTS[train], LABELS[train], classes=[0, 1])
            counted_4_times.append(get_scorer("neg_log_loss")(passes, COUNTS[test], LABELS[test]))
        assert counted_4_times != pytest.approx(expected)


# per-sample weights that matter: a third of the samples count for nothing, the rest unevenly
WEIGHTS = np.where(np.arange(len(y)) % 3 == 0, 0.0, 1.0 + np.arange(len(y)) % 5)
SPLITS = list(StratifiedKFold(3).split(X, y))


def _weighted_fold_scores(make, steps: int) -> list[float]:
    """The folds' accuracies of ``make()`` trained on each training fold with its share of ``WEIGHTS``: ``steps``
    ``partial_fit`` passes, or one ``fit`` when ``steps`` is 0."""
    scores = []
    for train, test in SPLITS:
        model = make()
        for _ in range(steps):
            model.partial_fit(X[train], y[train], classes=np.unique(y), sample_weight=WEIGHTS[train])
        if not steps:
            model.fit(X[train], y[train], sample_weight=WEIGHTS[train])
        scores.append(model.score(X[test], y[test]))
    return scores


@pytest.mark.parametrize("path", ["fit", "partial_fit", "warm_start"])
def test_per_sample_fit_params_are_split_per_fold_on_every_path(path, results_dir):
    if path == "fit":
        make, steps, scheduler = (lambda: LogisticRegression()), 0, None
    elif path == "partial_fit":
        make, steps, scheduler = (lambda: SGDClassifier(alpha=1e-3, random_state=0)), 3, ts.FIFO()
    else:  # a warm-started forest grown in 3 steps is the forest fitted at once (scikit-learn draws the same seeds)
        make, steps, scheduler = (lambda: RandomForestClassifier(n_estimators=6, random_state=0)), 0, ts.FIFO()
    search = TuneSearchCV(make(), {"random_state": ts.choice([0])}, n_trials=1, cv=SPLITS, scheduler=scheduler,
                          max_iters=3, seed=0).fit(X, y, sample_weight=WEIGHTS)
    expected = _weighted_fold_scores(make, steps)
    (t,) = ts.load(search.experiment_path_).trials
    assert t.status is ts.TrialStatus.TERMINATED and t.iteration == (1 if scheduler is None else 3)
    assert [search.cv_results_[f"split{k}_test_score"][0] for k in range(3)] == pytest.approx(expected)
    assert search.best_score_ == pytest.approx(np.mean(expected))


def test_error_score_scores_a_candidate_whose_every_fold_fails_as_gridsearchcv_does(results_dir):
    theirs = GridSearchCV(LogisticRegression(), {"C": [-1.0, 1.0]}, cv=2, error_score=0.0).fit(X, y)
    ours = TuneSearchCV(LogisticRegression(), {"C": ts.grid([-1.0, 1.0])}, n_trials=1, cv=2, error_score=0.0).fit(X, y)
    order = np.argsort([p["C"] for p in ours.cv_results_["params"]])
    for key in ("split0_test_score", "split1_test_score", "mean_test_score", "std_test_score", "rank_test_score"):
        assert np.allclose(ours.cv_results_[key][order], theirs.cv_results_[key]), key
    assert all(t.status is ts.TrialStatus.TERMINATED for t in ts.load(ours.experiment_path_).trials)
    # incrementally trained: the failed candidate is scored error_score at every increment too
    search = TuneSearchCV(SGDClassifier(random_state=0), {"alpha": ts.grid([-1.0, 1e-3])}, n_trials=1, cv=2,
                          max_iters=2, scheduler=ts.FIFO(), error_score=0.0).fit(X, y)
    failed = [i for i, p in enumerate(search.cv_results_["params"]) if p["alpha"] < 0]
    assert list(search.cv_results_["mean_test_score"][failed]) == [0.0] and search.best_params_ == {"alpha": 1e-3}


@pytest.mark.parametrize("error_score", [np.nan, 0.0, "raise"])
@pytest.mark.parametrize("incremental", [False, True])
def test_every_fit_of_every_candidate_failing_raises_the_estimators_own_error(incremental, error_score, results_dir):
    estimator, name = (SGDClassifier(), "alpha") if incremental else (LogisticRegression(), "C")
    search = TuneSearchCV(estimator, {name: ts.grid([-1.0, -2.0])}, n_trials=1, cv=2, max_iters=2,
                          scheduler=ts.FIFO() if incremental else None, error_score=error_score, refit=False)
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter of {type(estimator).__name__}"):
        search.fit(X, y)

@pytest.mark.parametrize("incremental", [False, True])
def test_error_score_raise_makes_fit_raise_a_failing_candidates_own_error_as_gridsearchcv_does(incremental,
                                                                                                  results_dir):
    """One candidate fails, the other fits: with ``error_score="raise"`` GridSearchCV's fit raises the estimator's
    error, and so does ours: the failing trial ends the experiment (one trial at a time, the grid's first candidate
    fails: the second never starts), and its candidate is cross-validated again in this process to raise the error
    itself, with a note naming the candidate."""
    if incremental:
        estimator, name, values, scheduler = SGDClassifier(random_state=0), "alpha", [-1.0, 1e-3], ts.FIFO()
    else:
        estimator, name, values, scheduler = LogisticRegression(), "l1_ratio", [2.0, 0.0], None
    with pytest.raises(InvalidParameterError) as theirs:
        GridSearchCV(estimator, {name: values}, cv=2, error_score="raise").fit(X, y)
    search = TuneSearchCV(estimator, {name: ts.grid(values)}, n_trials=1, cv=2, max_iters=2, scheduler=scheduler,
                          error_score="raise", max_concurrent=1)
    with pytest.raises(InvalidParameterError) as ours:
        search.fit(X, y)
    assert str(ours.value) == str(theirs.value) and f"'{name}' parameter" in str(ours.value)
    if sys.version_info >= (3, 11):  # a note names the candidate
        assert any(f"{{'{name}': {values[0]}}}" in note for note in ours.value.__notes__)
    assert not hasattr(search, "best_params_")
    (failed,) = ts.load(search.experiment_path_).trials
    assert failed.status is ts.TrialStatus.ERROR and failed.config == {name: values[0]}
    assert "InvalidParameterError" in failed.error


class FailsInTrialsOnly(LogisticRegression):
    """A LogisticRegression whose fit raises when ``C > 1`` in a trial's process only (where tunesmith's worker sets
    ``TUNESMITH_ORIG_WORKING_DIR``), as a failure of the worker's own environment would: cross-validated again in
    the driver, the candidate fits."""

    def fit(self, X, y, sample_weight=None):
        if self.C > 1 and "TUNESMITH_ORIG_WORKING_DIR" in os.environ:
            raise ArithmeticError("no luck in this worker")
        return super().fit(X, y, sample_weight=sample_weight)


def test_error_score_raise_names_the_candidate_and_its_error_when_it_cannot_be_raised_again(results_dir):
    search = TuneSearchCV(FailsInTrialsOnly(), {"C": ts.grid([0.5, 2.0])}, n_trials=1, cv=2, error_score="raise",
                          max_concurrent=1)
    with pytest.raises(ts.TrialError, match=r"(?s)\{'C': 2\.0\}.*ArithmeticError: no luck in this worker"):
        search.fit(X, y)



@pytest.mark.parametrize("scoring", [{"acc": "accuracy", "f1": "f1"}, ["accuracy", "f1"], ("accuracy",),
                                     {"accuracy"}])
def test_multi_metric_scoring_is_refused_before_any_trial_runs(scoring, results_dir):
    search = TuneSearchCV(LogisticRegression(), {"C": ts.loguniform(0.1, 10)}, n_trials=2, cv=2, scoring=scoring)
    with pytest.raises(ts.ConfigError, match=r"TuneSearchCV\(scoring=\.\.\.\).*one metric.*"
                                             f"got {type(scoring).__name__}"):
        search.fit(X, y)
    assert not results_dir.exists()  # no experiment was started


def test_a_space_key_that_is_no_parameter_of_the_estimator_is_refused_before_any_trial_runs(results_dir):
    """A typo in a pipeline's step name failed every trial in set_params, and fit then raised 'none of the N
    candidates got a score' with a trial's traceback as its message."""
    pipe = make_pipeline(StandardScaler(), LogisticRegression())
    search = TuneSearchCV(pipe, {"logisticregresion__C": ts.loguniform(0.1, 10)}, n_trials=2, cv=2)
    with pytest.raises(ts.ConfigError, match=r"TuneSearchCV\(space=\.\.\.\): 'logisticregresion__C' is not a "
                                             r"parameter of Pipeline; its parameters: .*'logisticregression__C'"):
        search.fit(X, y)
    assert not results_dir.exists()  # no experiment was started


def test_multi_metric_scoring_with_refit_naming_a_metric_is_refused_for_its_scoring(results_dir):
    """GridSearchCV's multi-metric form (``refit`` naming the metric to refit on) is refused for what is not
    supported, its ``scoring``: the ``refit`` check came first and said only that refit must be True or False."""
    search = TuneSearchCV(LogisticRegression(), {"C": ts.loguniform(0.1, 10)}, n_trials=2, cv=2,
                          scoring={"acc": "accuracy", "f1": "f1"}, refit="acc")
    with pytest.raises(ts.ConfigError, match=r"TuneSearchCV\(scoring=\.\.\.\).*multi-metric scoring is not supported"):
        search.fit(X, y)
    assert not results_dir.exists()


# Checks that do not apply to TuneSearchCV, and why:
SKIPPED = {
    "check_no_attributes_set_in_init": "the keywords of tunesmith.run given as **run_kwargs are kept as attributes of "
                                       "their own names (so that get_params, set_params and clone carry them); the "
                                       "check knows only the named parameters of __init__",
    "check_do_not_raise_errors_in_init_or_set_params": "the check passes a parameter named 'run_kwargs' (the name of "
                                                       "the ** argument), which set_params rightly refuses",
}


# One configured instance (a meta-estimator needs its estimator and space); one worker at a time, so that each fit
# (a whole tunesmith experiment) imports scikit-learn in one process only.
@parametrize_with_checks([TuneSearchCV(LogisticRegression(), {"C": ts.loguniform(0.1, 10)}, n_trials=2, cv=2,
                                       seed=0, max_concurrent=1)], expected_failed_checks=lambda est: SKIPPED)
def test_scikit_learn_estimator_checks(estimator, check, results_dir):
    check(estimator)
