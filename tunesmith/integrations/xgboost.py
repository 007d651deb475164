"""XGBoost bridge: report each boosting round's evaluation metrics, stop boosting when the trial is stopped,
checkpoint the booster every N rounds and continue from it when the trial is restored.

    import xgboost as xgb
    from tunesmith.integrations.xgboost import ReportCallback, resume

    def train(config):
        params = {"objective": "binary:logistic", "eta": config["eta"], "eval_metric": "logloss"}
        model, rounds = resume(100)   # (None, 100) on a fresh start; after a restore the saved booster and the
                                      # rounds it still needs to reach 100
        xgb.train(params, dtrain, num_boost_round=rounds, xgb_model=model, evals=[(dvalid, "valid")],
                  callbacks=[ReportCallback(checkpoint_every=10)])

    ts.run(train, space, metric="valid-logloss", mode="min", scheduler=ts.ASHA(max_t=100))

Metrics are named ``<data>-<metric>`` as xgboost prints them: the name given in ``evals=[(dmatrix, name)]``
and the ``eval_metric`` (``valid-logloss``, ``train-auc``, ``valid-ndcg@5``). One ``report()`` per round, so
``training_iteration`` is the number of rounds the booster holds. When the driver stops the trial (a
scheduler, a stop rule, a time limit), ``after_iteration`` returns True: xgboost ends boosting after the round
just reported and ``xgb.train`` returns normally. Works with ``xgb.train`` and the scikit-learn wrappers
(``XGBClassifier(callbacks=[...])``, whose evaluation sets are named ``validation_0``...); with ``xgb.cv``
each round reports the mean over the folds (``test-logloss``), without checkpoints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tunesmith._optional import require
from tunesmith.integrations._boosting import (
    RoundReporter,
    no_booster_in_cv,
    positive_or_none,
    restored_model_file,
    rounds_left,
)

xgb = require("xgboost", "xgboost", "tunesmith.integrations.xgboost")

__all__ = ["MODEL_FILE", "ReportCallback", "resume"]

MODEL_FILE = "model.ubj"  # xgboost's own binary format (UBJSON): exact, and loads into any xgboost >= 1.6
_WHO = "tunesmith.integrations.xgboost.ReportCallback"
_HINT = ("names are '<data>-<metric>': the name in evals=[(dmatrix, name)] and the eval_metric, e.g. "
         "'valid-logloss'")


def _save(booster: Any, folder: str) -> None:
    if not hasattr(booster, "save_model"):  # xgb.cv's callbacks get every fold's booster packed together
        raise no_booster_in_cv(_WHO, booster, "xgb.cv", "xgb.train")
    booster.save_model(f"{folder}/{MODEL_FILE}")


class ReportCallback(xgb.callback.TrainingCallback):  # type: ignore[misc,name-defined]
    """Report each round's evaluation metrics to tunesmith, stop boosting when told, checkpoint the booster.

    Args:
        metrics: None (default) for every metric xgboost logged this round, named ``<data>-<metric>``; a name
            or list of those names to report only them; or a dict ``{reported name: logged name}`` to rename
            (``{"loss": "valid-logloss"}``). A name xgboost did not log is a ``ConfigError`` after the first
            round, naming the ones it logged.
        checkpoint_every: save the booster (``model.ubj`` in a ``Checkpoint.from_dir`` folder) with the result
            of every round whose number (counted over the booster's life) is a multiple of this; None (default)
            for no checkpoints. :func:`resume` gives the booster back after a restore.
    """

    def __init__(self, metrics: str | Sequence[str] | Mapping[str, str] | None = None,
                 checkpoint_every: int | None = None) -> None:
        super().__init__()
        self._report = RoundReporter(_WHO, _HINT, metrics,
                                     positive_or_none(checkpoint_every, "checkpoint_every", _WHO), _save)

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        """Report the round just boosted; True (stop boosting) when the trial was stopped."""
        logged = {}
        for data, by_metric in evals_log.items():
            for metric, history in by_metric.items():
                value = history[-1]
                logged[f"{data}-{metric}"] = float(value[0] if isinstance(value, tuple) else value)
        return self._report(logged, model, model.num_boosted_rounds())


def resume(num_boost_round: int) -> tuple[Any, int]:
    """Where boosting starts: ``(booster, rounds)`` to pass as ``xgb.train(xgb_model=booster,
    num_boost_round=rounds)``.

    On a fresh start, ``(None, num_boost_round)``. When the trial was restored (a retry after an error, a PBT
    exploit, a resumed experiment) from a checkpoint that :class:`ReportCallback` saved, the booster loaded
    from it and the rounds still needed to reach ``num_boost_round`` in all (0 when it has them already).
    ``xgb.train`` adds ``num_boost_round`` rounds to ``xgb_model``, hence the subtraction.

    Raises:
        ConfigError: ``num_boost_round`` is not a positive integer, or the trial's checkpoint has no
            ``model.ubj`` (it was not saved by this callback).
    """
    path = restored_model_file(MODEL_FILE, "tunesmith.integrations.xgboost.resume")
    if path is None:
        return None, rounds_left(num_boost_round, 0, "resume")
    booster = xgb.Booster()
    booster.load_model(path)
    return booster, rounds_left(num_boost_round, booster.num_boosted_rounds(), "resume")
