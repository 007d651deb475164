"""MLflow logging: one MLflow run per trial, all under one MLflow experiment."""

from __future__ import annotations

import hashlib
import json
import numbers
import posixpath
import re
import time
from typing import Any

from tunesmith._flat import flat_metrics
from tunesmith._secrets import shown
from tunesmith.callbacks._base import Callback, ExperimentInfo
from tunesmith.trial import ITERATION, TIMESTAMP, Result, TrialStatus, TrialView

_SKIP = (ITERATION, TIMESTAMP)
_BATCH = 1000  # MLflow's limit of metrics per log_batch call
_PARAM_CHARS = 6000  # MLflow's limit on a param value
_KEY_CHARS = 250  # ... and on a metric's or param's name
_BAD_KEY = re.compile(r"[^A-Za-z0-9_\-. /]")


class MLflowLogger(Callback):
    """Logs each trial as an MLflow run: config as params, every numeric result as metrics.

    Runs are named after the trial (``trial_00001``) and tagged ``tunesmith.experiment`` and
    ``tunesmith.trial_id``. Metrics use ``step=training_iteration`` and the result's timestamp. A run ends
    FINISHED when its trial terminates, FAILED when it errors, KILLED if the experiment ends first. MLflow
    params cannot change, so a config changed later (a PBT exploit) is recorded in the run's
    ``tunesmith.config`` tag (JSON) instead. A trial restarted from a checkpoint logs the re-run
    iterations again (MLflow keeps both values at that step).

    Uses an ``MlflowClient`` of its own: MLflow's global tracking URI and active run are left alone.
    Needs ``pip install 'tunesmith[mlflow]'``.

    Args:
        tracking_uri: where to log, e.g. ``"sqlite:///mlflow.db"`` or ``"http://127.0.0.1:5000"``;
            default: MLflow's own default (``MLFLOW_TRACKING_URI``).
        experiment_name: the MLflow experiment (created if missing); default: the tunesmith experiment's
            name.
    """

    def __init__(self, tracking_uri: str | None = None, experiment_name: str | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self._client: Any = None
        self._experiment_id: str | None = None
        self._tunesmith_name = ""
        self._runs: dict[int, str] = {}
        self._open: set[int] = set()
        self._configs: dict[int, dict[str, Any]] = {}

    @property
    def experiment_id(self) -> str | None:
        """The MLflow experiment id (set at experiment start)."""
        return self._experiment_id

    def run_id(self, trial_id: int) -> str | None:
        """The MLflow run id of a trial, once it started."""
        return self._runs.get(trial_id)

    def on_experiment_start(self, experiment: ExperimentInfo) -> None:
        from tunesmith._optional import require

        tracking = require("mlflow.tracking", "mlflow")
        self._client = tracking.MlflowClient(tracking_uri=self.tracking_uri)
        self._tunesmith_name = experiment.name
        name = self.experiment_name or experiment.name
        found = self._client.get_experiment_by_name(name)
        self._experiment_id = found.experiment_id if found is not None else self._client.create_experiment(name)

    def on_trial_start(self, trial: TrialView) -> None:
        if self._client is None:
            return  # on_experiment_start failed (its error logged): no run to log into
        run_id = self._runs.get(trial.id)
        if run_id is None:
            from mlflow.entities import Param

            run = self._client.create_run(
                self._experiment_id, run_name=trial.name,
                tags={"tunesmith.experiment": self._tunesmith_name, "tunesmith.trial_id": str(trial.id)})
            run_id = self._runs[trial.id] = run.info.run_id
            self._open.add(trial.id)
            # secret-looking values masked, as everywhere tunesmith shows a config (the tracking server is
            # shared more widely than the experiment folder)
            config = shown(trial).config
            params = [Param(_key(k), str(v)[:_PARAM_CHARS]) for k, v in flat_metrics(config).items()]
            for i in range(0, len(params), 100):  # MLflow's limit of params per batch
                self._client.log_batch(run_id, params=params[i:i + 100])
        elif self._configs.get(trial.id) != trial.config:
            self._client.set_tag(run_id, "tunesmith.config", json.dumps(shown(trial).config, default=str))
        self._configs[trial.id] = dict(trial.config)

    def on_trial_results(self, trial: TrialView, results: list[Result]) -> None:
        run_id = self._runs.get(trial.id)
        if run_id is None or not results:
            return
        from mlflow.entities import Metric

        metrics = []
        for result in results:
            stamp = result.metrics.get(TIMESTAMP)
            millis = int((stamp if isinstance(stamp, (int, float)) else time.time()) * 1000)
            for key, value in flat_metrics(result.metrics).items():
                if key in _SKIP or isinstance(value, bool) or not isinstance(value, numbers.Real):
                    continue
                metrics.append(Metric(_key(key), float(value), millis, result.iteration))
        for i in range(0, len(metrics), _BATCH):
            self._client.log_batch(run_id, metrics=metrics[i:i + _BATCH])

    def on_trial_complete(self, trial: TrialView) -> None:
        self._end(trial.id, "FINISHED")

    def on_trial_error(self, trial: TrialView) -> None:
        run_id = self._runs.get(trial.id)
        error = shown(trial).error if trial.error else None  # an error message may quote the config
        if run_id is not None and error:
            last = error.strip().splitlines()
            self._client.set_tag(run_id, "tunesmith.error", (last[-1] if last else "")[:_PARAM_CHARS])
        self._end(trial.id, "FAILED")

    def on_experiment_end(self, experiment: ExperimentInfo) -> None:
        for trial_id in sorted(self._open):
            trial = experiment.trials.get(trial_id)
            status = "KILLED"
            if trial is not None and trial.status is TrialStatus.TERMINATED:
                status = "FINISHED"
            elif trial is not None and trial.status is TrialStatus.ERROR:
                status = "FAILED"
            self._end(trial_id, status)

    def _end(self, trial_id: int, status: str) -> None:
        if trial_id in self._open:
            self._open.discard(trial_id)
            self._client.set_terminated(self._runs[trial_id], status=status)


def _key(name: str) -> str:
    """A metric or param name as MLflow takes it, the same name each time: letters, digits, ``_ - . /`` and
    spaces kept, anything else ``_``; a path that would resolve to another name (``../x``, ``a//b``, ``/x``,
    ``./x``) has its empty, ``.`` and ``..`` parts replaced by ``_``, ``_.`` and ``_..``; a name over MLflow's 250
    characters is cut, with a hash of the whole name so that two long names stay two. MLflow refuses a whole batch
    for one name it does not take, and with it every other metric of the result."""
    key = _BAD_KEY.sub("_", name)
    if posixpath.normpath(key) != key or key in (".", "..") or key.startswith(("..", "/")):
        key = "/".join("_" + part if part in ("", ".", "..") else part for part in key.split("/"))
    if len(key) > _KEY_CHARS:
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        key = key[:_KEY_CHARS - 13].rstrip("/") + "-" + digest
    return key
