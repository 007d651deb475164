"""LightGBM bridge: report each boosting round's evaluation metrics, stop boosting when the trial is stopped,
checkpoint the booster every N rounds and continue from it when the trial is restored.

    import lightgbm as lgb
    from tunesmith.integrations.lightgbm import ReportCallback, resume

    def train(config):
        params = {"objective": "binary", "learning_rate": config["lr"], "verbose": -1}
        model, rounds = resume(100)   # (None, 100) on a fresh start; after a restore the saved booster and the
                                      # rounds it still needs to reach 100
        if rounds:
            lgb.train(params, dtrain, num_boost_round=rounds, init_model=model, valid_sets=[dvalid],
                      valid_names=["valid"], callbacks=[ReportCallback(checkpoint_every=10)])

    ts.run(train, space, metric="valid-binary_logloss", mode="min", scheduler=ts.ASHA(max_t=100))

Metrics are named ``<data>-<metric>``: the name in ``valid_names`` (lightgbm's default is ``valid_0``,
``valid_1``...; ``training`` for the training set) and lightgbm's name of the metric (``binary_logloss``,
``auc``, ``l2``...), e.g. ``valid-binary_logloss``; lightgbm prints the same pair as ``valid's
binary_logloss``. One ``report()`` per round, so ``training_iteration`` is the number of rounds the booster
holds. When the driver stops the trial (a scheduler, a stop rule, a time limit), the callback raises
``lightgbm.callback.EarlyStopException`` at the round just reported: ``lgb.train`` returns the booster
normally (its ``best_iteration`` is that round). Works with ``lgb.train`` and the scikit-learn wrappers
(``LGBMClassifier().fit(..., callbacks=[...])``); with ``lgb.cv`` each round reports the mean over the
folds (``valid-binary_logloss``), without checkpoints.
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

lgb = require("lightgbm", "lightgbm", "tunesmith.integrations.lightgbm")

__all__ = ["MODEL_FILE", "ReportCallback", "resume"]

MODEL_FILE = "model.txt"  # lightgbm's own text format
_WHO = "tunesmith.integrations.lightgbm.ReportCallback"
_HINT = ("names are '<data>-<metric>': the name in valid_names (default 'valid_0') and lightgbm's metric name, "
         "e.g. 'valid_0-binary_logloss'")


def _save(booster: Any, folder: str) -> None:
    if not isinstance(booster, lgb.Booster):  # lgb.cv's callbacks get a CVBooster: every fold's booster
        raise no_booster_in_cv(_WHO, booster, "lgb.cv", "lgb.train")
    booster.save_model(f"{folder}/{MODEL_FILE}", num_iteration=-1)  # every round, not only a best_iteration


class ReportCallback:
    """Report each round's evaluation metrics to tunesmith, stop boosting when told, checkpoint the booster.

    Args:
        metrics: None (default) for every metric lightgbm evaluated this round, named ``<data>-<metric>``; a
            name or list of those names to report only them; or a dict ``{reported name: logged name}`` to
            rename (``{"loss": "valid-binary_logloss"}``). A name lightgbm did not log is a ``ConfigError``
            after the first round, naming the ones it logged.
        checkpoint_every: save the booster (``model.txt`` in a ``Checkpoint.from_dir`` folder) with the result
            of every round whose number (counted over the booster's life) is a multiple of this; None (default)
            for no checkpoints. :func:`resume` gives the booster back after a restore.
    """

    order = 40  # after lightgbm's own callbacks (early_stopping is 30): a round they end is not reported
    before_iteration = False

    def __init__(self, metrics: str | Sequence[str] | Mapping[str, str] | None = None,
                 checkpoint_every: int | None = None) -> None:
        # on the instance: lgb.train gives every callback without an ``order`` in its __dict__ one of its own
        # (``cb.__dict__.setdefault("order", ...)``), which would hide the class's and run this one first
        self.order = type(self).order
        self._report = RoundReporter(_WHO, _HINT, metrics,
                                     positive_or_none(checkpoint_every, "checkpoint_every", _WHO), _save)

    def __call__(self, env: Any) -> None:
        """Report the round just boosted; raise ``EarlyStopException`` when the trial was stopped."""
        results = env.evaluation_result_list or []
        # (data, metric, value, higher_is_better[, stdv]): a tuple before lightgbm 4.7, an EvalResult since
        logged = {f"{r[0]}-{r[1]}": float(r[2]) for r in results}
        if self._report(logged, env.model, env.iteration + 1):
            raise lgb.callback.EarlyStopException(env.iteration, results)


def resume(num_boost_round: int) -> tuple[Any, int]:
    """Where boosting starts: ``(booster, rounds)`` to pass as ``lgb.train(init_model=booster,
    num_boost_round=rounds)``.

    On a fresh start, ``(None, num_boost_round)``. When the trial was restored (a retry after an error, a PBT
    exploit, a resumed experiment) from a checkpoint that :class:`ReportCallback` saved, the booster loaded
    from it and the rounds still needed to reach ``num_boost_round`` in all. ``lgb.train`` adds
    ``num_boost_round`` rounds to ``init_model``, hence the subtraction; it refuses 0 rounds, so skip the call
    when the restored booster has them all already (``rounds == 0``).

    Raises:
        ConfigError: ``num_boost_round`` is not a positive integer, or the trial's checkpoint has no
            ``model.txt`` (it was not saved by this callback).
    """
    path = restored_model_file(MODEL_FILE, "tunesmith.integrations.lightgbm.resume")
    if path is None:
        return None, rounds_left(num_boost_round, 0, "resume")
    booster = lgb.Booster(model_file=path)
    return booster, rounds_left(num_boost_round, booster.current_iteration(), "resume")
