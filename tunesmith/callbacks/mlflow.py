"""MLflow logging: one MLflow run per trial, all under one MLflow experiment."""

from __future__ import annotations

import functools
import json
import logging
import posixpath
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

from tunesmith._display import error_lines
from tunesmith._flat import flat_metrics
from tunesmith._optional import installed
from tunesmith._secrets import mask_string, shown, shown_results
from tunesmith.callbacks._base import Callback, ExperimentInfo
from tunesmith.callbacks._names import experiment_key, hashed
from tunesmith.callbacks._scalars import scalars
from tunesmith.trial import TIMESTAMP, Result, TrialStatus, TrialView

_BATCH = 1000  # MLflow's limit of metrics per log_batch call
_PARAM_CHARS = 6000  # MLflow's limit on a param value
_KEY_CHARS = 250  # ... and on a metric's or param's name
_PART_BYTES = 255  # a file name's limit: MLflow's file store names a file (a folder) after each ``/`` part of a name
# What MLflow refuses in a name (``validate_param_and_metric_name``: ``\w`` is any script's letters and digits)
_BAD_KEY = re.compile(r"[^\w\-. /]")
_DIGITS = 12  # of the hash a changed name gets
_KEY_TAG = "tunesmith.experiment_key"

log = logging.getLogger("tunesmith")
F = TypeVar("F", bound=Callable[..., None])


def _unreachable(error: BaseException) -> bool:
    """Whether ``error`` says the tracking server did not answer: MLflow's client raises an ``MlflowException``
    from (or while handling) the ``requests`` error it got once its HTTP retries were spent (a refused connection, a
    timeout, too many 5xx answers); a name or value the server refused is not that."""
    import requests

    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        if isinstance(e, requests.exceptions.RequestException):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


def _server_call(hook: F) -> F:
    """A hook that calls the tracking server: nothing once the logger has no client (its start failed, or the
    server stopped answering); a call the server does not answer ends the logger's calls for the run, with one
    error, instead of each later hook waiting out MLflow's HTTP retries (minutes by default) in the driver's loop."""

    @functools.wraps(hook)
    def call(self: MLflowLogger, *args: Any) -> None:
        if self._client is None:
            return
        try:
            hook(self, *args)
        except Exception as e:
            if not _unreachable(e):
                raise  # (logged by the callbacks' notifier; the logger goes on)
            self._client = None
            log.error("MLflowLogger: the tracking server did not answer (%s); no more MLflow logging in this run: "
                      "every result is in the experiment's store", mask_string(str(e)))

    return call  # type: ignore[return-value]


class MLflowLogger(Callback):
    """Logs each trial as an MLflow run: config as params, every numeric result as metrics (bools as 0/1).

    Runs are named after the trial (``trial_00001``) and tagged ``tunesmith.experiment`` and
    ``tunesmith.trial_id``. Metrics use ``step=training_iteration`` and the result's timestamp. A run ends
    FINISHED when its trial terminates, FAILED when it errors, KILLED if the experiment ends first. MLflow
    params cannot change, so a config changed later (a PBT exploit) is recorded in the run's
    ``tunesmith.config`` tag (JSON) instead. A trial restarted from a checkpoint logs the re-run
    iterations again (MLflow keeps both values at that step). A resumed experiment continues each trial's run
    (found by its ``tunesmith.trial_id`` and ``tunesmith.experiment_key`` tags) instead of starting another. A
    name MLflow takes is logged as it is; another is changed with a hash of it at its end (``_key``).

    A tracking server that does not answer (at the start, or later: once MLflow's HTTP retries are spent) is one
    error logged, and the logger calls it no more in that run (the store holds every result).

    Uses an ``MlflowClient`` of its own: MLflow's global tracking URI and active run are left alone.
    Needs ``pip install 'tunesmith[mlflow]'``.

    Args:
        tracking_uri: where to log, e.g. ``"sqlite:///mlflow.db"`` or ``"http://127.0.0.1:5000"``;
            default: MLflow's own default (``MLFLOW_TRACKING_URI``).
        experiment_name: the MLflow experiment (created if missing); default: the tunesmith experiment's
            name.
    """

    def __init__(self, tracking_uri: str | None = None, experiment_name: str | None = None) -> None:
        installed("mlflow", "mlflow", "MLflowLogger")  # said now, not logged once the run goes on
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self._client: Any = None
        self._experiment_id: str | None = None
        self._tunesmith_name = ""
        self._runs: dict[int, str] = {}
        self._open: set[int] = set()
        self._configs: dict[int, dict[str, Any]] = {}
        self._key = ""  # tags each run: a resume finds the trial's run by it (``_names.experiment_key``)
        self._resumed = False

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
        client = tracking.MlflowClient(tracking_uri=self.tracking_uri)
        self._tunesmith_name = experiment.name
        name = self.experiment_name or experiment.name
        found = client.get_experiment_by_name(name)
        self._experiment_id = found.experiment_id if found is not None else client.create_experiment(name)
        # Kept only now: a server that does not answer fails the start once (its error logged), and the later hooks
        # do not call it again, each waiting out MLflow's retries in the driver's loop.
        self._client = client
        self._key = experiment_key(experiment.path, getattr(experiment, "created", None))
        self._resumed = getattr(experiment, "num_trials", 0) > 0  # the store had trials: a resume

    def _earlier_run(self, trial: TrialView) -> Any:
        """The run an earlier driver of this experiment made for ``trial`` (a resume), or None."""
        found = self._client.search_runs(
            [self._experiment_id], max_results=1, order_by=["attributes.start_time DESC"],
            filter_string=f"tags.`{_KEY_TAG}` = '{self._key}' and tags.`tunesmith.trial_id` = '{int(trial.id)}'")
        return found[0] if found else None

    @_server_call  # (nothing when on_experiment_start failed, its error logged: no run to log into)
    def on_trial_start(self, trial: TrialView) -> None:
        run_id = self._runs.get(trial.id)
        earlier = self._earlier_run(trial) if run_id is None and self._resumed else None
        if earlier is not None:  # a resumed experiment: the trial's run goes on (one run per trial)
            run_id = self._runs[trial.id] = earlier.info.run_id
            self._open.add(trial.id)
            if earlier.info.status != "RUNNING":
                self._client.update_run(run_id, status="RUNNING")
            if earlier.data.params != self._params(trial):
                self._client.set_tag(run_id, "tunesmith.config", json.dumps(shown(trial).config, default=str))
        elif run_id is None:
            from mlflow.entities import Param

            run = self._client.create_run(
                self._experiment_id, run_name=trial.name,
                tags={"tunesmith.experiment": self._tunesmith_name, "tunesmith.trial_id": str(trial.id),
                      _KEY_TAG: self._key})
            run_id = self._runs[trial.id] = run.info.run_id
            self._open.add(trial.id)
            params = [Param(k, v) for k, v in self._params(trial).items()]
            for i in range(0, len(params), 100):  # MLflow's limit of params per batch
                self._client.log_batch(run_id, params=params[i:i + 100])
        elif self._configs.get(trial.id) != trial.config:
            self._client.set_tag(run_id, "tunesmith.config", json.dumps(shown(trial).config, default=str))
        self._configs[trial.id] = dict(trial.config)

    @staticmethod
    def _params(trial: TrialView) -> dict[str, str]:
        # secret-looking values masked, as everywhere tunesmith shows a config (the tracking server is shared more
        # widely than the experiment folder)
        return {_key(k): str(v)[:_PARAM_CHARS] for k, v in flat_metrics(shown(trial).config).items()}

    @_server_call
    def on_trial_results(self, trial: TrialView, results: list[Result]) -> None:
        run_id = self._runs.get(trial.id)
        if run_id is None or not results:
            return
        from mlflow.entities import Metric

        metrics = []
        for result in shown_results(trial.config, results):  # a name may quote a secret of the config
            stamp = result.metrics.get(TIMESTAMP)
            millis = int((stamp if isinstance(stamp, (int, float)) else time.time()) * 1000)
            for key, value in scalars(result.metrics):  # bools as 0/1, as TensorBoard plots them
                metrics.append(Metric(_key(key), value, millis, result.iteration))
        for i in range(0, len(metrics), _BATCH):
            self._client.log_batch(run_id, metrics=metrics[i:i + _BATCH])

    @_server_call
    def on_trial_complete(self, trial: TrialView) -> None:
        run_id = self._runs.get(trial.id)
        if run_id is not None and trial.id in self._open and self._configs.get(trial.id) != trial.config:
            # a PBT exploit undone at the trial's end (its new config reported nothing): the config it ends with
            self._client.set_tag(run_id, "tunesmith.config", json.dumps(shown(trial).config, default=str))
        self._configs.pop(trial.id, None)
        self._end(trial.id, "FINISHED")

    @_server_call
    def on_trial_error(self, trial: TrialView) -> None:
        run_id = self._runs.get(trial.id)
        error = shown(trial).error if trial.error else None  # an error message may quote the config
        if run_id is not None and error:
            last = error_lines(error)
            self._client.set_tag(run_id, "tunesmith.error", (last[-1] if last else "")[:_PARAM_CHARS])
        self._end(trial.id, "FAILED")

    @_server_call
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


@functools.lru_cache(maxsize=4096)  # the same few names in every result
def _key(name: str) -> str:
    """A metric or param name as MLflow takes it, the same name each time, never another name's.

    A name MLflow takes is kept as it is: letters (any script: ``学习率``, ``été``), digits, ``_ - . /`` and spaces
    (``mlflow.utils.validation``; MLflow also takes ``:`` except on Windows, so it is changed like the others), at
    most 250 characters, not a path that resolves to another name, each ``/`` part at most 255 bytes in UTF-8 (the
    file store names a file after each part: 100 Chinese characters are 300 bytes). Any other name is changed so
    that MLflow takes it and gets a hash of the whole name at its end (``acc,top1`` -> ``acc_top1-`` and 12 hex
    digits), so two names are never merged into one (``acc,top1`` and ``acc_top1``; MLflow refuses a whole param
    batch that holds a name twice): other characters become ``_``; an empty, ``.`` or ``..`` part (``../x``,
    ``a//b``, ``/x``, ``./x``) and a first part starting with ``..`` get a ``_`` in front; a name over 250
    characters, and a part over 255 bytes, is cut. MLflow refuses a whole batch for one name it does not take (or
    its file store cannot hold), and with it every other metric of the result."""
    key = _BAD_KEY.sub("_", name)
    if posixpath.normpath(key) != key or key == "." or key.startswith(("..", "/")):
        key = "/".join("_" + part if part in ("", ".", "..") or (i == 0 and part.startswith(".."))
                       else part for i, part in enumerate(key.split("/")))
    if key == name and len(key) <= _KEY_CHARS and all(_fits(part, _PART_BYTES) for part in key.split("/")):
        return name
    parts = key[:_KEY_CHARS - _DIGITS - 1].rstrip("/").split("/")
    last = len(parts) - 1  # the hash goes at its end
    return hashed(name, "/".join(_cut(part, _PART_BYTES - (_DIGITS + 1 if i == last else 0))
                                 for i, part in enumerate(parts)), _DIGITS)


def _fits(part: str, limit: int) -> bool:
    return len(part) * 4 <= limit or len(part.encode("utf-8")) <= limit  # (``_BAD_KEY`` left no lone surrogate)


def _cut(part: str, limit: int) -> str:
    """``part`` cut to at most ``limit`` bytes in UTF-8, at a character's end."""
    return part if _fits(part, limit) else part.encode("utf-8")[:limit].decode("utf-8", "ignore")
