"""Results read back from the store: the object ``run`` returns and ``load`` rebuilds."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from tunesmith._errors import ConfigError
from tunesmith.checkpoint import Checkpoint
from tunesmith.store.sqlite import STORE_FILE, Store, result_dict
from tunesmith.trial import TrialStatus, trial_name


@dataclass(frozen=True)
class TrialResult:
    """One trial as stored.

    Attributes:
        id: integer id within the experiment; ``name`` is ``trial_00001`` style.
        config: the configuration it ran with (after a PBT exploit, its latest).
        status: ``TrialStatus`` (TERMINATED, ERROR, PAUSED, RUNNING, PENDING).
        metrics: for ``result.best``, the result that made it best; otherwise its last result ({} if none).
        last_result: its last result ({} if none).
        checkpoint: its latest checkpoint, or None.
        error: the traceback of its last failure, or None.
    """

    id: int
    config: dict[str, Any]
    status: TrialStatus
    metrics: dict[str, Any]
    last_result: dict[str, Any]
    checkpoint: Checkpoint | None
    error: str | None
    num_failures: int
    iteration: int
    path: str
    parent_id: int | None = None
    parent_iteration: int | None = None
    resources: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return trial_name(self.id)


class ResultSet:
    """An experiment's trials and results, read from its store (read-only; safe while a driver writes).

    Args:
        path: the experiment folder.
        metric, mode: what "best" means; default: the experiment's own.
    """

    def __init__(self, path: str, metric: str | None = None, mode: str | None = None) -> None:
        self.path = os.path.abspath(path)
        db_path = os.path.join(self.path, STORE_FILE)
        if not os.path.exists(db_path):
            raise ConfigError(f"no tunesmith experiment at {self.path} (no {STORE_FILE})")
        self._store = Store(db_path, readonly=True)
        self.meta = self._store.meta()
        spec = self.meta.get("spec", {})
        self.name: str = spec.get("name", os.path.basename(self.path))
        self.metric: str | None = metric if metric is not None else spec.get("metric")
        self.mode: str | None = mode if mode is not None else spec.get("mode")
        self._trials: list[TrialResult] | None = None

    @property
    def status(self) -> str:
        """"running", "finished", "failed" or "interrupted" (as the driver last recorded it)."""
        return self._store.meta().get("status", "running")

    @property
    def trials(self) -> list[TrialResult]:
        """Every trial, by id."""
        if self._trials is None:
            self._trials = [self._trial(rec) for rec in self._store.trials()]
        return self._trials

    def refresh(self) -> ResultSet:
        """Re-read the store (for an experiment still running)."""
        self._trials = None
        self.meta = self._store.meta()
        return self

    def _trial(self, rec: dict[str, Any], metrics: dict[str, Any] | None = None) -> TrialResult:
        last = rec["last_result"] or {}
        ckpt = None
        if rec["checkpoint"]:
            ckpt = Checkpoint(rec["checkpoint"], iteration=rec["checkpoint_iteration"])
        return TrialResult(
            id=rec["id"], config=rec["config"], status=TrialStatus(rec["status"]),
            metrics=last if metrics is None else metrics, last_result=last, checkpoint=ckpt,
            error=rec["error"], num_failures=rec["num_failures"], iteration=rec["iteration"],
            path=os.path.join(self.path, "trials", trial_name(rec["id"])), parent_id=rec["parent_id"],
            parent_iteration=rec["parent_iteration"], resources=rec["resources"])

    @property
    def errors(self) -> list[TrialResult]:
        """Trials that ended in ERROR (``.error`` holds the traceback)."""
        return [t for t in self.trials if t.status is TrialStatus.ERROR]

    def trial(self, trial: int | str) -> TrialResult:
        tid = _trial_id(trial)
        for t in self.trials:
            if t.id == tid:
                return t
        raise KeyError(f"no trial {trial!r} in experiment {self.name}")

    def history(self, trial: int | str) -> list[dict[str, Any]]:
        """The stored results of one trial, in iteration order."""
        return [result_dict(row) for row in self._store.results(_trial_id(trial))]

    @property
    def best(self) -> TrialResult:
        """The best trial by its last result (``get_best`` for other scopes)."""
        return self.get_best()

    def get_best(self, metric: str | None = None, mode: str | None = None, scope: str = "last") -> TrialResult:
        """The best trial.

        Args:
            metric, mode: default the experiment's.
            scope: "last" compares each trial's last result; "all" its best result at any iteration
                (``.metrics`` is then that result).

        Raises:
            ConfigError: no metric/mode known, a bad scope, or no trial reported the metric.
        """
        ranked = self.top(1, metric=metric, mode=mode, scope=scope)
        if not ranked:
            raise ConfigError(f"no trial of {self.name} reported a numeric {metric or self.metric!r}")
        return ranked[0]

    def top(self, k: int, metric: str | None = None, mode: str | None = None, scope: str = "last") -> list[TrialResult]:
        """The ``k`` best trials, best first (trials that never reported the metric are left out)."""
        metric = metric or self.metric
        mode = mode or self.mode
        if not metric or mode not in ("min", "max"):
            raise ConfigError("best needs a metric and mode ('min' or 'max'): pass them to run() or get_best()")
        if scope not in ("last", "all"):
            raise ConfigError(f"scope must be 'last' or 'all', got {scope!r}")
        sign = 1.0 if mode == "min" else -1.0
        scored: list[tuple[float, int, TrialResult]] = []
        for t in self.trials:
            if scope == "last":
                value, result = _number(t.last_result.get(metric)), t.last_result
            else:
                value, result = None, None
                for res in self.history(t.id):
                    v = _number(res.get(metric))
                    if v is not None and (value is None or sign * v < sign * value):
                        value, result = v, res
            if value is None or result is None:
                continue
            chosen = t if scope == "last" else TrialResult(**{**t.__dict__, "metrics": result})
            scored.append((sign * value, t.id, chosen))
        scored.sort(key=lambda x: (x[0], x[1]))
        return [t for _, _, t in scored[:k]]

    def dataframe(self, all_results: bool = False, show_secrets: bool = False) -> Any:
        """A pandas DataFrame: one row per trial (config as ``config/<key>``, last result's metrics), or one
        row per stored result with ``all_results=True``. Config values that look like secrets (keys with
        key/token/secret/password, passwords in URLs) show as ``***`` unless ``show_secrets=True``.

        Raises:
            ImportError: pandas is not installed (``pip install tunesmith[pandas]``).
        """
        try:
            import pandas as pd
        except ImportError as e:
            raise ImportError("dataframe() needs pandas: pip install 'tunesmith[pandas]'") from e
        from tunesmith._secrets import mask
        from tunesmith.space import flatten

        def shown(config: dict[str, Any]) -> dict[str, Any]:
            return {f"config/{k}": v for k, v in flatten(config if show_secrets else mask(config)).items()}

        rows = []
        by_id = {t.id: t for t in self.trials}
        if all_results:
            for row in self._store.results():
                t = by_id.get(row[0])
                rec = {"trial_id": row[0], **result_dict(row)}
                if t is not None:
                    rec.update(shown(t.config))
                rows.append(rec)
        else:
            for t in self.trials:
                rec = {"trial_id": t.id, "status": t.status.value, **t.last_result}
                rec.update(shown(t.config))
                if t.error:
                    rec["error"] = t.error.strip().splitlines()[-1]
                rows.append(rec)
        return pd.DataFrame(rows)

    def __len__(self) -> int:
        return len(self.trials)

    def __repr__(self) -> str:
        return f"ResultSet({self.name!r}, trials={len(self.trials)}, status={self.status!r})"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def _trial_id(trial: int | str) -> int:
    if isinstance(trial, int):
        return trial
    if isinstance(trial, str) and trial.startswith("trial_") and trial[6:].isdigit():
        return int(trial[6:])
    if isinstance(trial, str) and trial.isdigit():
        return int(trial)
    raise KeyError(f"not a trial id or name: {trial!r}")


def default_storage() -> str:
    return os.environ.get("TUNESMITH_RESULTS", os.path.join(os.getcwd(), "tunesmith_results"))


def load(name_or_path: str, metric: str | None = None, mode: str | None = None) -> ResultSet:
    """Read an experiment back: a folder path, or a name under ``./tunesmith_results`` (or
    ``$TUNESMITH_RESULTS``). Returns the same object as ``run``. Safe while the experiment runs."""
    path = name_or_path
    if not os.path.isdir(path):
        path = os.path.join(default_storage(), name_or_path)
    if not os.path.isdir(path):
        raise ConfigError(f"no experiment {name_or_path!r}: not a folder, and not in {default_storage()}")
    return ResultSet(path, metric=metric, mode=mode)


