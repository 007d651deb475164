"""scikit-learn bridge: ``TuneSearchCV``, a drop-in for ``RandomizedSearchCV`` whose candidates are tunesmith
trials (cross-validations run in parallel by ``tunesmith.run``, chosen by any searcher, stopped early by any
scheduler).

    from sklearn.linear_model import SGDClassifier
    from tunesmith.integrations.sklearn import TuneSearchCV

    search = TuneSearchCV(SGDClassifier(), {"alpha": ts.loguniform(1e-6, 1e-1)}, n_trials=20, cv=3,
                          scheduler=ts.ASHA(max_t=10))
    search.fit(X, y)
    search.best_params_, search.best_score_, search.predict(X_test)

Each trial clones the estimator, sets the trial's config with ``set_params`` (keys are parameter names, with
``step__param`` for pipelines) and cross-validates it on the same splits, reporting ``mean_test_score``,
``std_test_score``, ``split<k>_test_score``, the fit/score times and ``failed_fits`` (the folds whose fit raised,
scored ``error_score``); the experiment maximises
``mean_test_score`` (scikit-learn scorers are greater-is-better). The data reaches the trials through
``tunesmith.put`` (shared memory: one copy however many trials run), not inside each trial's function.

Early stopping: with a ``scheduler``, an estimator that has ``partial_fit`` (``SGDClassifier``, ``MLPClassifier``,
``Perceptron``...) is trained in ``max_iters`` increments of one ``partial_fit`` pass over each training fold,
and one that has ``warm_start`` and ``n_estimators`` (random forests, gradient boosting, bagging) grows to its
``n_estimators`` in ``max_iters`` steps; the trial reports after each increment, so the scheduler can stop it
(``ts.ASHA(max_t=max_iters)``). Other estimators are fitted once per fold (one report), naive Bayes ones too
(``MultinomialNB``, ``BernoulliNB``, ``GaussianNB``..., alone or inside a meta-estimator): their ``partial_fit`` adds
the batch's counts to the model, so one pass is their whole fit and more passes over the same fold would count it
again (a different model than ``fit`` gives, as ``GridSearchCV`` scores it). This is decided per
candidate, once its parameters are set: ``MLPClassifier(solver="lbfgs")`` has no ``partial_fit``, so that candidate
is fitted once per fold beside ``solver="adam"`` ones trained in increments. The refit of the best candidate is
its ``fit`` on all the data, as ``GridSearchCV`` refits (the estimator's own ``max_iter``/``tol``), not
``max_iters`` passes of ``partial_fit``.

``error_score="raise"``: as in ``GridSearchCV``, a candidate whose fit (or scoring) raises makes ``fit`` raise. The
failing trial ends the experiment (``fail_fast``), then its candidate is cross-validated again in this process so
that the estimator's own exception is raised (a trial's error comes back as traceback text only), with a note naming
the candidate; where that raises nothing, a :class:`tunesmith.TrialError` names the candidate and holds the trial's
traceback.
"""

from __future__ import annotations

import inspect
import math
import sys
import time
import warnings
from collections.abc import Iterator
from copy import deepcopy
from typing import Any, NoReturn

from tunesmith._optional import require

_sklearn = require("sklearn", "sklearn", "tunesmith.integrations.sklearn")

import numpy as np  # noqa: E402 - after the check that says which extra installs scikit-learn (and numpy)
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone, is_classifier  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.metrics import check_scoring  # noqa: E402
from sklearn.model_selection import check_cv  # noqa: E402
from sklearn.utils import get_tags  # noqa: E402
from sklearn.utils.metaestimators import _safe_split, available_if  # noqa: E402
from sklearn.utils.validation import _check_method_params, check_is_fitted, indexable  # noqa: E402

import tunesmith  # noqa: E402
from tunesmith._errors import ConfigError, TrialError  # noqa: E402

__all__ = ["TuneSearchCV"]

# what TuneSearchCV decides itself; every other keyword of tunesmith.run may be given as **run_kwargs
_OWN = {"fn", "space", "metric", "mode", "num_samples", "scheduler", "searcher"}


def _run_keys() -> frozenset[str]:
    from tunesmith._run import run

    return frozenset(p for p in inspect.signature(run).parameters if p not in _OWN)


_RUN_KEYS = _run_keys()


def _delegate(method: str) -> Any:
    """``available_if`` check: the refitted estimator (or, before fitting, the estimator) has ``method``; with
    ``refit=False`` there is none to delegate to (as in ``GridSearchCV``)."""
    def check(self: TuneSearchCV) -> bool:
        if self.refit is False:
            raise AttributeError(f"This {type(self).__name__} was made with refit=False: {method} needs the best "
                                 "candidate refitted on all the data (refit=True, or fit best_params_ yourself)")
        return hasattr(self.best_estimator_ if hasattr(self, "best_estimator_") else self.estimator, method)
    return check


class TuneSearchCV(MetaEstimatorMixin, BaseEstimator):
    """Search ``space`` for the estimator's best parameters by cross-validation, one tunesmith trial per
    candidate.

    Args:
        estimator: a scikit-learn estimator (cloned per fold; never fitted itself).
        space: a tunesmith search space: ``{"C": ts.loguniform(1e-3, 1e3), "kernel": ts.choice(["rbf",
            "linear"])}``; keys are ``set_params`` names.
        n_trials: candidates to try (``num_samples`` of ``tunesmith.run``; per grid point with ``ts.grid``).
        cv: folds (an int), a splitter or an iterable of (train, test) index pairs, as in ``GridSearchCV``;
            stratified for classifiers.
        scoring: ``None`` (the estimator's ``score``), a scorer name (``"roc_auc"``) or a callable
            ``scorer(estimator, X, y)``. One metric: a multi-metric ``scoring`` (a dict, list, tuple or set of
            names) is refused.
        searcher: a tunesmith searcher (default: random search).
        scheduler: a tunesmith scheduler; with one, estimators that can be trained in increments are (see the
            module's docstring), so it can stop poor candidates early. It must compare ``mean_test_score``
            (``mode="max"``), which it gets from the experiment when it names no metric of its own.
        refit: refit the best candidate on all of ``X, y`` (``best_estimator_``, ``predict``, ``score``...).
        max_iters: increments of an incrementally trained candidate (its ``training_iteration`` runs to this).
        error_score: the score of a fold whose fit raises (default NaN, as in ``GridSearchCV``), even when every
            fold of the candidate raises, or ``"raise"``: the first candidate whose fit or scoring raises ends the
            search, and ``fit`` raises the estimator's error (see the module's docstring).
        **run_kwargs: any other keyword of :func:`tunesmith.run` (``max_concurrent``, ``resources``,
            ``storage_path``, ``seed``, ``backend``, ``verbose``, which defaults to 0 here...).

    Attributes (after ``fit``): ``cv_results_`` (shaped like ``GridSearchCV``'s: ``params``, ``param_<name>``,
    ``split<k>_test_score``, ``mean_test_score``, ``std_test_score``, ``rank_test_score``, fit and score
    times; one entry per trial, in trial order, with the scores of its last report), ``best_index_``,
    ``best_params_``, ``best_score_``, ``best_estimator_`` and ``refit_time_`` (with ``refit``), ``scorer_``,
    ``n_splits_``, ``experiment_path_`` (the experiment's folder: ``tunesmith.load(search.experiment_path_)``
    gives its :class:`tunesmith.ResultSet`).
    """

    def __init__(self, estimator: Any, space: dict[str, Any] | None = None, n_trials: int = 10, cv: Any = 5,
                 scoring: Any = None, searcher: Any = None, scheduler: Any = None, refit: bool = True,
                 max_iters: int = 10, error_score: Any = np.nan, **run_kwargs: Any) -> None:
        self.estimator = estimator
        self.space = space
        self.n_trials = n_trials
        self.cv = cv
        self.scoring = scoring
        self.searcher = searcher
        self.scheduler = scheduler
        self.refit = refit
        self.max_iters = max_iters
        self.error_score = error_score
        for key, value in run_kwargs.items():  # as attributes, so that get_params/clone carry them (checked in fit)
            setattr(self, key, value)

    # scikit-learn's get_params reads __init__'s named parameters only: add the tunesmith.run keywords given
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        params = super().get_params(deep=deep)
        params.update(self._run_kwargs())
        return params

    def set_params(self, **params: Any) -> TuneSearchCV:
        for key in [k for k in params if k in _RUN_KEYS]:
            setattr(self, key, params.pop(key))
        return super().set_params(**params)

    def _run_kwargs(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k in _RUN_KEYS}

    def _check_params(self) -> None:
        unknown = sorted(k for k in vars(self) if k not in _RUN_KEYS and k not in self._get_param_names()
                         and not k.endswith("_") and not k.startswith("_"))
        if unknown:
            raise ConfigError(f"TuneSearchCV got unexpected keyword argument(s) {', '.join(unknown)}: besides its "
                              f"own, it takes the keywords of tunesmith.run ({', '.join(sorted(_RUN_KEYS))})")
        if not isinstance(self.space, dict) or not self.space:
            raise ConfigError(f"TuneSearchCV(space=...) must be a non-empty dict of parameter name -> tunesmith "
                              f"domain, got {self.space!r}")
        for name in ("n_trials", "max_iters"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"TuneSearchCV({name}=...) must be a positive integer, got {value!r}")
        # scoring first: a GridSearchCV-style multi-metric search (refit naming a metric) is refused for its scoring
        if self.scoring is not None and not isinstance(self.scoring, str) and not callable(self.scoring):
            raise ConfigError(f"TuneSearchCV(scoring=...) must be one metric: None (the estimator's score), a scorer "
                              f"name or a callable scorer(estimator, X, y); got {type(self.scoring).__name__} "
                              f"{self.scoring!r} (multi-metric scoring is not supported)")
        if not isinstance(self.refit, bool):
            raise ConfigError(f"TuneSearchCV(refit=...) must be True or False, got {self.refit!r}")
        # a key set_params would refuse fails every trial alike: refused here, before any trial runs
        params = self.estimator.get_params(deep=True)
        for key in self.space:
            # "step__param" is also settable where the space itself sets "step" (another estimator)
            if key not in params and key.rpartition("__")[0] not in self.space:
                raise ConfigError(f"TuneSearchCV(space=...): {key!r} is not a parameter of "
                                  f"{type(self.estimator).__name__}; its parameters: {sorted(params)}")

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        sub = get_tags(self.estimator)
        tags.estimator_type = sub.estimator_type
        tags.classifier_tags = deepcopy(sub.classifier_tags)
        tags.regressor_tags = deepcopy(sub.regressor_tags)
        tags.input_tags.pairwise = sub.input_tags.pairwise
        tags.input_tags.sparse = sub.input_tags.sparse
        tags.input_tags.allow_nan = sub.input_tags.allow_nan
        return tags

    def fit(self, X: Any, y: Any = None, groups: Any = None, **fit_params: Any) -> TuneSearchCV:
        """Run the search: ``n_trials`` cross-validations as tunesmith trials, then refit the best.

        ``fit_params`` are passed to every fold's ``fit`` (and to the refit); those of one value per sample
        (``sample_weight``...) are split with the folds, as ``cross_validate`` does.

        Raises:
            ConfigError: no ``space``, bad ``n_trials``/``max_iters``/``refit``, a multi-metric ``scoring``.
            Exception: with ``error_score="raise"``, the error of the first candidate whose fit or scoring raised
                (the estimator's own, with a note naming the candidate); whatever ``error_score``, the estimator's
                own error (or its scorer's) when no candidate got a score because its folds raised: every fit of
                every candidate failed, say.
            TrialError: with ``error_score="raise"``, a candidate's trial failed but cross-validating it again here
                raised nothing (the message names the candidate and holds the trial's traceback).
            ValueError: no candidate got a score otherwise (the message gives the first error).
        """
        self._check_params()
        X, y, groups = indexable(X, y, groups)
        cv = check_cv(self.cv, y, classifier=is_classifier(self.estimator))
        splits = [(np.asarray(train), np.asarray(test)) for train, test in cv.split(X, y, groups)]
        self.n_splits_ = len(splits)
        self.scorer_ = check_scoring(self.estimator, self.scoring)
        self.multimetric_ = False
        incremental = self.scheduler is not None  # each candidate trains in increments if it can (_increments)

        run_kwargs = self._run_kwargs()
        run_kwargs.setdefault("verbose", 0)
        if _raises(self.error_score):
            run_kwargs.setdefault("fail_fast", True)  # the first failed candidate ends the search (fit raises)
        data = (X, y, splits, fit_params)
        backend = run_kwargs.get("backend", "local")
        ref = tunesmith.put(data, backend) if _puttable(backend) else None
        trial = _Trial(self.estimator, self.scorer_, self.error_score, self.max_iters, incremental,
                       ref, data if ref is None else None, self.space)
        result = tunesmith.run(trial, self.space, metric="mean_test_score", mode="max", num_samples=self.n_trials,
                               searcher=self.searcher, scheduler=self.scheduler, **run_kwargs)
        del ref  # the shared copy goes with its last reference
        self.experiment_path_ = result.path
        trials = result.trials
        if _raises(self.error_score) and result.errors:
            self._raise_failed(result.errors, incremental, X, y, splits, fit_params)
        self.cv_results_ = _cv_results(trials, self.n_splits_, self.space)
        scores = self.cv_results_["mean_test_score"]
        if not any(_scored(t, self.n_splits_) for t in trials):
            self._raise_unscored(trials, incremental, X, y, splits, fit_params)
        self.best_index_ = int(np.nanargmax(scores))
        self.best_params_ = self.cv_results_["params"][self.best_index_]
        self.best_score_ = float(scores[self.best_index_])
        if self.refit:
            start = time.perf_counter()
            self.best_estimator_ = clone(self.estimator).set_params(**clone(self.best_params_, safe=False))
            self.best_estimator_.fit(X, y, **fit_params)
            self.refit_time_ = time.perf_counter() - start
            if hasattr(self.best_estimator_, "feature_names_in_"):
                self.feature_names_in_ = self.best_estimator_.feature_names_in_
        return self

    def _raise_failed(self, errors: list[Any], incremental: bool, X: Any, y: Any, splits: list[Any],
                      fit_params: dict[str, Any]) -> NoReturn:
        """``error_score="raise"`` and a trial failed: raise its candidate's error as ``GridSearchCV`` would. The
        trial's exception stayed in its worker (the error comes back as traceback text), so the candidate is
        cross-validated again here with ``error_score="raise"``; its error gets a note naming the candidate. If that
        raises nothing (the trial failed for a reason of its worker's, or not every time), a ``TrialError`` names
        the candidate and holds the trial's traceback."""
        first = errors[0]  # (the first in trial order, where trials running beside it failed too)
        params = _as_given(self.space, first.config)
        try:
            self._cross_validate_here(params, incremental, X, y, splits, fit_params)
        except Exception as e:
            if sys.version_info >= (3, 11):  # (notes are new in 3.11)
                e.add_note(f"TuneSearchCV(error_score='raise'): raised by the candidate {params} ({first.name}), "
                           "cross-validated again in this process after its trial failed")
            raise
        raise TrialError(f"TuneSearchCV(error_score='raise'): the candidate {params} failed ({first.name}; "
                         f"cross-validated again in this process, it raised nothing); the trial's error:\n"
                         f"{first.error}")

    def _raise_unscored(self, trials: list[Any], incremental: bool, X: Any, y: Any, splits: list[Any],
                        fit_params: dict[str, Any]) -> NoReturn:
        """No candidate got a score: cross-validate one again here with ``error_score="raise"``, so that the error of
        its first failing fold (the estimator's own, not the text of a trial's traceback) is raised. A trial that
        failed although ``error_score`` scores failed folds failed for another reason: its error is the message."""
        errors = [t.error for t in trials if t.error]
        again = [t for t in trials if _raises(self.error_score) or not t.error]
        if again:
            self._cross_validate_here(_as_given(self.space, again[0].config), incremental, X, y, splits, fit_params)
        if errors:
            raise ValueError(f"TuneSearchCV: none of the {len(trials)} candidates got a score; the first "
                             f"error:\n{errors[0]}")
        raise ValueError(f"TuneSearchCV: none of the {len(trials)} candidates got a score (their scores were NaN; "
                         f"cross-validating {again[0].config} again raised nothing)")

    def _cross_validate_here(self, params: dict[str, Any], incremental: bool, X: Any, y: Any, splits: list[Any],
                             fit_params: dict[str, Any]) -> None:
        """Cross-validate the candidate ``params`` again in this process, with ``error_score="raise"``: the error of its
        first failing fold (the estimator's own exception) propagates."""
        replay = _Trial(self.estimator, self.scorer_, "raise", self.max_iters, incremental, None, None, self.space)
        for _ in replay.cross_validate(replay.configured(params), X, y, splits, fit_params):
            pass

    @property
    def n_features_in_(self) -> int:
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.n_features_in_  # type: ignore[no-any-return]

    @property
    def classes_(self) -> Any:
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.classes_

    def _best(self) -> Any:
        check_is_fitted(self, "best_estimator_", msg="This TuneSearchCV instance was not fitted with refit=True "
                        "(call fit first, with refit=True, to use %(name)s's best_estimator_)")
        return self.best_estimator_

    def score(self, X: Any, y: Any = None, **params: Any) -> float:
        """The best estimator's score on ``X, y`` by the search's scorer."""
        return float(self.scorer_(self._best(), X, y, **params))

    @available_if(_delegate("predict"))
    def predict(self, X: Any) -> Any:
        return self._best().predict(X)

    @available_if(_delegate("predict_proba"))
    def predict_proba(self, X: Any) -> Any:
        return self._best().predict_proba(X)

    @available_if(_delegate("predict_log_proba"))
    def predict_log_proba(self, X: Any) -> Any:
        return self._best().predict_log_proba(X)

    @available_if(_delegate("decision_function"))
    def decision_function(self, X: Any) -> Any:
        return self._best().decision_function(X)

    @available_if(_delegate("score_samples"))
    def score_samples(self, X: Any) -> Any:
        return self._best().score_samples(X)

    @available_if(_delegate("transform"))
    def transform(self, X: Any) -> Any:
        return self._best().transform(X)

    @available_if(_delegate("inverse_transform"))
    def inverse_transform(self, X: Any) -> Any:
        return self._best().inverse_transform(X)


def _puttable(backend: Any) -> bool:
    """Whether ``tunesmith.put`` can place the data where this backend's trials read it."""
    if isinstance(backend, str):
        return backend == "local"
    from tunesmith.executors.ray import RayBackend

    return isinstance(backend, RayBackend)


def _scored(trial: Any, n_splits: int) -> bool:
    """Whether the trial's last result is a score: finite, with at least one fold fitted."""
    result = trial.last_result
    return math.isfinite(result.get("mean_test_score", math.nan)) and result.get("failed_fits", 0) < n_splits


def _raises(error_score: Any) -> bool:
    return isinstance(error_score, str) and error_score == "raise"


def _increments(estimator: Any) -> str | None:
    """How the estimator trains in increments: ``"partial_fit"``, ``"n_estimators"`` (warm start), or None. Asked
    of each candidate once its parameters are set: ``partial_fit`` may depend on them (an ``available_if`` method:
    ``MLPClassifier`` has it for ``solver="adam"``/``"sgd"``, not ``"lbfgs"``). Not ``partial_fit`` where it adds
    counts (``_adds_counts``)."""
    if hasattr(estimator, "partial_fit") and not _adds_counts(estimator):
        return "partial_fit"
    params = estimator.get_params(deep=False)
    if "warm_start" in params and "n_estimators" in params:
        return "n_estimators"
    return None


def _adds_counts(estimator: Any) -> bool:
    """Whether the estimator is naive Bayes or holds one (``OneVsRestClassifier(MultinomialNB())``): its
    ``partial_fit`` adds the batch's counts (class counts, feature counts, sums) to the model's, so one pass over a
    fold is its whole fit, and passes over the same fold would count it that many times (``MultinomialNB``'s
    smoothing would weigh ``1/max_iters`` as much), a model no ``fit`` gives."""
    import sklearn.naive_bayes

    # _BaseNB is private to scikit-learn: where a release drops it, a class of its naive_bayes module serves
    base = getattr(sklearn.naive_bayes, "_BaseNB", None)

    def counts(value: Any) -> bool:
        if base is not None:
            return isinstance(value, base)
        return type(value).__module__ == "sklearn.naive_bayes"

    return counts(estimator) or any(counts(value) for value in estimator.get_params(deep=True).values())


class _Trial:
    """The training function: cross-validate one candidate (a class, so the trial gets a readable name)."""

    __name__ = "TuneSearchCV"

    def __init__(self, estimator: Any, scorer: Any, error_score: Any, max_iters: int, incremental: bool,
                 ref: Any, data: Any, space: Any) -> None:
        self.estimator = estimator
        self.space = space
        self.scorer = scorer
        self.error_score = error_score
        self.max_iters = max_iters
        self.incremental = incremental  # a scheduler may stop the trial: train in increments where the candidate can
        self.ref = ref
        self.data = data

    def __call__(self, config: dict[str, Any]) -> None:
        X, y, splits, fit_params = tunesmith.get(self.ref) if self.ref is not None else self.data
        estimator = self.configured(_as_given(self.space, config))
        for metrics in self.cross_validate(estimator, X, y, splits, fit_params):
            tunesmith.report(metrics)  # a scheduler may stop the trial here (report then ends this function)

    def configured(self, params: dict[str, Any]) -> Any:
        """The candidate: the estimator cloned, with ``params`` set (each cloned, as ``GridSearchCV`` does)."""
        return clone(self.estimator).set_params(**clone(params, safe=False))

    def cross_validate(self, estimator: Any, X: Any, y: Any, splits: list[Any],
                       fit_params: dict[str, Any]) -> Iterator[dict[str, float]]:
        """The candidate's results: one cross-validation, or, with a scheduler and a candidate that can be trained
        in increments (asked of the configured candidate), one after each increment."""
        increments = _increments(estimator) if self.incremental else None
        if increments is None:
            yield self._once(estimator, X, y, splits, fit_params)
        else:
            yield from self._incremental(estimator, increments, X, y, splits, fit_params)

    def _once(self, estimator: Any, X: Any, y: Any, splits: list[Any], fit_params: dict[str, Any]) -> dict[str, float]:
        """Fit and score each fold once, as ``cross_validate`` does, except that a candidate whose every fold's fit
        raises is scored ``error_score`` (as in ``GridSearchCV``), where ``cross_validate`` raises whatever its
        ``error_score``."""
        scores: list[float] = []
        fit_times: list[float] = []
        score_times: list[float] = []
        failed = 0
        for (Xtr, ytr), (Xte, yte), params in _folds(estimator, X, y, splits, fit_params):
            model = clone(estimator)
            start = time.perf_counter()
            try:
                model.fit(Xtr, ytr, **params)
                fitted = True
            except Exception:
                if self._raises():
                    raise
                fitted = False
                failed += 1
            fit_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            scores.append(self._score(model, Xte, yte) if fitted else float(self.error_score))
            score_times.append(time.perf_counter() - start)
        return _metrics(scores, fit_times, score_times, failed)

    def _incremental(self, estimator: Any, increments: str, X: Any, y: Any, splits: list[Any],
                     fit_params: dict[str, Any]) -> Iterator[dict[str, float]]:
        """Train every fold's model in ``max_iters`` steps, with the results after each."""
        folds = _folds(estimator, X, y, splits, fit_params)
        models = [clone(estimator) for _ in splits]
        total = 0
        if increments == "partial_fit" and is_classifier(estimator):
            classes = np.unique(y)
            for _, _, params in folds:
                params["classes"] = classes
        elif increments == "n_estimators":
            total = estimator.get_params()["n_estimators"]
            for model in models:
                model.set_params(warm_start=True)
        fit_times = [0.0] * len(splits)
        score_times = [0.0] * len(splits)
        failed = [False] * len(splits)
        for step in range(1, self.max_iters + 1):
            scores = []
            for k, ((Xtr, ytr), (Xte, yte), params) in enumerate(folds):
                model = models[k]
                start = time.perf_counter()
                try:
                    if not failed[k]:
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore", ConvergenceWarning)  # one pass is not convergence
                            if increments == "partial_fit":
                                model.partial_fit(Xtr, ytr, **params)
                            else:
                                model.set_params(n_estimators=max(1, math.ceil(total * step / self.max_iters)))
                                model.fit(Xtr, ytr, **params)
                except Exception:
                    if self._raises():
                        raise
                    failed[k] = True
                fit_times[k] += time.perf_counter() - start
                start = time.perf_counter()
                scores.append(float(self.error_score) if failed[k] else self._score(model, Xte, yte))
                score_times[k] += time.perf_counter() - start
            yield _metrics(scores, fit_times, score_times, sum(failed))

    def _score(self, model: Any, X: Any, y: Any) -> float:
        """A fitted fold's score: ``error_score`` if the scorer raises (as in ``cross_validate``)."""
        try:
            return float(self.scorer(model, X, y))
        except Exception:
            if self._raises():
                raise
            return float(self.error_score)

    def _raises(self) -> bool:
        return _raises(self.error_score)


def _folds(estimator: Any, X: Any, y: Any, splits: list[Any], fit_params: dict[str, Any]) -> list[Any]:
    """Each split's training data, test data and fit parameters, cut as ``cross_validate`` cuts them: the fit
    parameters of one value per sample (``sample_weight``...) are split with the training fold."""
    return [(_safe_split(estimator, X, y, train), _safe_split(estimator, X, y, test, train),
             _check_method_params(X, params=fit_params, indices=train)) for train, test in splits]

def _metrics(scores: list[float], fit_times: list[float], score_times: list[float], failed: int) -> dict[str, float]:
    out = {f"split{k}_test_score": float(s) for k, s in enumerate(scores)}
    out["failed_fits"] = failed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NaN scores (failed fits) give NaN means
        out["mean_test_score"] = float(np.mean(scores))
        out["std_test_score"] = float(np.std(scores))
    out["mean_fit_time"], out["std_fit_time"] = float(np.mean(fit_times)), float(np.std(fit_times))
    out["mean_score_time"], out["std_score_time"] = float(np.mean(score_times)), float(np.std(score_times))
    return out


def _as_given(space: Any, config: dict[str, Any]) -> dict[str, Any]:
    """A trial's ``config`` as ``set_params`` takes it: where the space gave a tuple (a constant, or an option of a
    ``choice``/``grid``), the config holds the list JSON stores (what a resume reads back too); the tuple is given
    back (``TfidfVectorizer(ngram_range=...)`` takes only a tuple, as GridSearchCV would pass it)."""
    if not isinstance(space, dict):
        return dict(config)
    return {key: _like(space.get(key), value) for key, value in config.items()}


def _like(spec: Any, value: Any) -> Any:
    from tunesmith.space import plain
    from tunesmith.space._domains import Choice, Grid

    if isinstance(spec, (Choice, Grid)) and isinstance(value, list):
        options = spec.options if isinstance(spec, Choice) else spec.values
        return next((o for o in options if isinstance(o, tuple) and plain(o) == value), value)
    if isinstance(spec, tuple) and isinstance(value, list) and len(spec) == len(value):
        return tuple(_like(s, v) for s, v in zip(spec, value))
    if isinstance(spec, dict) and isinstance(value, dict):
        return {k: _like(spec.get(k), v) for k, v in value.items()}
    return value


def _cv_results(trials: list[Any], n_splits: int, space: Any = None) -> dict[str, Any]:
    """``GridSearchCV.cv_results_`` from the trials' last results (NaN for a trial that reported nothing)."""
    n = len(trials)
    results: dict[str, Any] = {}
    for key in ("mean_fit_time", "std_fit_time", "mean_score_time", "std_score_time"):
        results[key] = np.array([t.last_result.get(key, np.nan) for t in trials], dtype=float)
    params = [_as_given(space, t.config) for t in trials]
    names = sorted({name for config in params for name in config})
    for name in names:
        column = np.ma.MaskedArray(np.empty(n, dtype=object), mask=True)
        for i, config in enumerate(params):
            if name in config:
                column[i] = config[name]
        results[f"param_{name}"] = column
    results["params"] = params
    for k in range(n_splits):
        results[f"split{k}_test_score"] = np.array([t.last_result.get(f"split{k}_test_score", np.nan)
                                                   for t in trials], dtype=float)
    mean = np.array([t.last_result.get("mean_test_score", np.nan) for t in trials], dtype=float)
    results["mean_test_score"] = mean
    results["std_test_score"] = np.array([t.last_result.get("std_test_score", np.nan) for t in trials], dtype=float)
    # rank 1 is best; ties share the lower rank; NaN scores rank last (as GridSearchCV does)
    filled = np.where(np.isnan(mean), -np.inf, mean)
    order = np.sort(filled)[::-1]
    results["rank_test_score"] = np.array([int(np.searchsorted(-order, -v, side="left")) + 1 for v in filled],
                                          dtype=np.int32)
    return results
