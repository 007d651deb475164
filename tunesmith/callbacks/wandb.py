"""Weights & Biases logging: one W&B run per trial, grouped by experiment, logged from the driver."""

from __future__ import annotations

import numbers
from typing import Any

from tunesmith._display import error_lines
from tunesmith._flat import flat_metrics
from tunesmith._optional import installed
from tunesmith._secrets import shown, shown_results
from tunesmith.callbacks._base import Callback, ExperimentInfo
from tunesmith.callbacks._names import experiment_key, hashed
from tunesmith.trial import Result, TrialStatus, TrialView

# wandb.init arguments the logger sets; ``resume_from`` and ``fork_from`` W&B refuses beside ``resume``
_SET_BY_LOGGER = frozenset({"name", "group", "config", "reinit", "id", "resume", "resume_from", "fork_from"})
_TAG_CHARS = 64  # W&B's limit on a tag (``Settings.run_tags``)


class WandbLogger(Callback):
    """Logs each trial as a W&B run: its config, every result, and its end in the summary.

    Runs are named after the trial (``trial_00001``), grouped under the experiment's name (``group``) and tagged
    with it (a name over 64 characters, W&B's limit on a tag, cut and with a hash of it at its end). Every numeric
    result is logged with its ``training_iteration`` as a metric (W&B's own step counts the rows: a trial restarted
    from a checkpoint logs its re-run iterations again instead of W&B dropping them). The summary gets
    ``tunesmith/status`` (``TERMINATED``, ``ERROR``, or the status the trial had when the experiment ended) and, for
    a failed trial, the last line of its error. A config changed later (a PBT exploit) updates the run's config.
    Secret-looking config values are masked (``***``), as everywhere tunesmith shows a config.

    W&B reserves the names that start with ``_`` (its own ``_step``, ``_runtime``, ``_timestamp``; its charts
    hide the others): a metric so named is logged without its leading ``_`` and with a hash of its whole name at
    its end (``_step`` -> ``step-`` and 8 hex digits, ``_name``), the same name in every trial and run, never
    another metric's (``step`` stays ``step``). A metric named ``""`` (W&B drops it) is logged as ``e3b0c442``.

    A run's id is made from the experiment (``_names.experiment_key``: the same for a resume of it, also after the
    folder was moved, another for an experiment made again under the same name) and the trial's id, and the run is
    opened with ``resume="allow"``: a resumed experiment (``resume=True``) continues each trial's run instead of
    starting another, the re-run iterations after the checkpoint logged again. Offline, each driver writes a folder
    of its own under the trial's run id (``wandb sync`` uploads the folders of one run id in the order they began).

    Logged from the driver, so trials need no W&B setup; to log from inside a trial (gradients, media) use
    ``tunesmith.integrations.wandb.setup()`` instead. Needs ``pip install 'tunesmith[wandb]'`` and a W&B login
    (or ``WANDB_MODE=offline``).

    Args:
        project: the W&B project.
        **init_kwargs: passed to every ``wandb.init`` (``entity``, ``tags``, ``mode``, ``settings``...);
            ``name``, ``group``, ``config``, ``reinit``, ``id`` and ``resume`` are set by the logger (and
            ``resume_from`` and ``fork_from``, which W&B refuses beside ``resume``, are refused). Without
            ``settings``, console capture and system metrics are off (the driver logs many runs at once).
    """

    def __init__(self, project: str | None = None, **init_kwargs: Any) -> None:
        taken = sorted(_SET_BY_LOGGER & set(init_kwargs))
        if taken:
            from tunesmith._errors import ConfigError

            raise ConfigError(f"WandbLogger: {taken} are set by the logger (one run per trial, named after it, "
                              f"grouped by experiment, continued by a resume); remove them from its arguments")
        installed("wandb", "wandb", "WandbLogger")  # said now, not logged once the run goes on
        self.project = project
        self.init_kwargs = init_kwargs
        self._wandb: Any = None
        self._group = ""
        self._key = ""  # the experiment's part of each run id (``_run_id``)
        self._runs: dict[int, Any] = {}
        self._configs: dict[int, dict[str, Any]] = {}
        self._names: dict[str, str] = {}  # metric name -> the name it is logged under, made once per name

    def run(self, trial_id: int) -> Any:
        """The W&B run of a trial while it is open (None before it started and after it ended)."""
        return self._runs.get(trial_id)

    def on_experiment_start(self, experiment: ExperimentInfo) -> None:
        from tunesmith._optional import require

        self._wandb = require("wandb", "wandb", "WandbLogger")
        self._group = experiment.name
        self._key = experiment_key(experiment.path, getattr(experiment, "created", None))

    def on_trial_start(self, trial: TrialView) -> None:
        run = self._runs.get(trial.id)
        config = shown(trial).config  # secret-looking values masked: a W&B project is shared more widely
        if run is None:
            kwargs = dict(self.init_kwargs)
            tags = list(kwargs.pop("tags", None) or [])
            if "settings" not in kwargs:
                kwargs["settings"] = self._wandb.Settings(console="off", x_disable_stats=True, save_code=False)
            self._runs[trial.id] = self._wandb.init(
                project=self.project, name=trial.name, group=self._group, config=config,
                tags=[*tags, _tag(self._group)][:64], reinit="create_new", id=_run_id(self._key, trial.id),
                resume="allow", **kwargs)
        elif self._configs.get(trial.id) != trial.config:
            run.config.update(config, allow_val_change=True)
        self._configs[trial.id] = dict(trial.config)

    def on_trial_results(self, trial: TrialView, results: list[Result]) -> None:
        run = self._runs.get(trial.id)
        if run is None:
            return
        names = self._names
        for result in shown_results(trial.config, results):  # a name may quote a secret of the config
            row = {}
            for key, value in flat_metrics(result.metrics).items():
                if isinstance(value, numbers.Real):
                    name = names.get(key)
                    if name is None:
                        name = names[key] = _name(key)
                    row[name] = int(value) if isinstance(value, bool) else value  # bools as 0/1, as elsewhere
            run.log(row)

    def on_trial_complete(self, trial: TrialView) -> None:
        run = self._runs.get(trial.id)
        if run is not None and self._configs.get(trial.id) != trial.config:
            # a PBT exploit undone at the trial's end (its new config reported nothing): the config it ends with
            run.config.update(shown(trial).config, allow_val_change=True)
        self._configs.pop(trial.id, None)
        self._end(trial.id, TrialStatus.TERMINATED.name, None)

    def on_trial_error(self, trial: TrialView) -> None:
        error = shown(trial).error if trial.error else None  # an error message may quote the config
        last = error_lines(error)
        self._end(trial.id, TrialStatus.ERROR.name, last[-1] if last else "")

    def on_experiment_end(self, experiment: ExperimentInfo) -> None:
        for trial_id in sorted(self._runs):
            trial = experiment.trials.get(trial_id)
            self._end(trial_id, trial.status.name if trial is not None else "UNKNOWN", None)

    def _end(self, trial_id: int, status: str, error: str | None) -> None:
        run = self._runs.pop(trial_id, None)
        if run is None:
            return
        run.summary["tunesmith/status"] = status
        if error is not None:
            run.summary["tunesmith/error"] = error
        run.finish(exit_code=1 if error is not None else 0)


def _name(key: str) -> str:
    """The name a metric is logged under: ``key`` itself, unless it starts with ``_``, which W&B reserves (its own
    ``_step``, ``_runtime`` and ``_timestamp`` replace or drop a metric so named): then ``key`` without its leading
    ``_`` with a hash of the whole name at its end (``_step`` -> ``step-1a2b3c4d``), so that it is no other metric's
    name (``step`` stays ``step``, ``_step`` and ``__step`` two names). The empty name, which W&B drops without a
    word, is the hash alone (``e3b0c442``)."""
    return hashed(key, key.lstrip("_")) if key.startswith("_") or not key else key


def _tag(name: str) -> str:
    """The experiment's name as a run's tag: W&B refuses a tag over ``_TAG_CHARS`` characters (and with it the run),
    so a longer name is cut and gets a hash of the whole name at its end, two names never one tag."""
    return name if len(name) <= _TAG_CHARS else hashed(name, name, limit=_TAG_CHARS)


def _run_id(key: str, trial_id: int) -> str:
    """The W&B run id of a trial: the experiment's key (16 hex digits) and the trial's number, ``<key>-<n>``. No
    user text goes into it: W&B names the run's local folder after it and refuses ``/``, ``:`` and the like."""
    return f"{key}-{int(trial_id):d}"
