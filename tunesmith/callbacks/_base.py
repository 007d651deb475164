"""Callbacks observe an experiment; they never decide. Users may write their own by subclassing."""

from __future__ import annotations

from typing import Any

from tunesmith.trial import Result, TrialView


class Callback:
    """Hooks called by the controller, in the driver process, after the events are in the store.

    ``on_trial_results`` gets the results of one trial in order, in batches (one call per batch, not per
    result), so a callback costs little even at tens of thousands of results per second.
    """

    def on_experiment_start(self, experiment: ExperimentInfo) -> None: ...

    def on_trial_start(self, trial: TrialView) -> None: ...

    def on_trial_results(self, trial: TrialView, results: list[Result]) -> None: ...

    def on_trial_complete(self, trial: TrialView) -> None: ...

    def on_trial_error(self, trial: TrialView) -> None: ...

    def on_tick(self, experiment: ExperimentInfo) -> None:
        """Called every turn of the controller's loop (several times a second): keep it cheap."""

    def on_experiment_end(self, experiment: ExperimentInfo) -> None: ...


class ExperimentInfo:
    """A read-only window on the running experiment for callbacks."""

    def __init__(self, controller: Any) -> None:
        self._c = controller

    @property
    def name(self) -> str:
        return self._c.name

    @property
    def path(self) -> str:
        return self._c.exp_dir

    @property
    def metric(self) -> Any:
        return self._c.metric

    @property
    def mode(self) -> Any:
        return self._c.mode

    @property
    def trials(self) -> dict[int, TrialView]:
        return self._c.trials

    @property
    def elapsed(self) -> float:
        return self._c.elapsed()

    @property
    def best(self) -> tuple[int, float] | None:
        """(trial id, value) of the best single result so far for the metric, or None."""
        return self._c.best_so_far

    @property
    def num_results(self) -> int:
        return self._c.num_results

    @property
    def num_samples(self) -> int:
        return self._c.num_samples

    @property
    def time_budget_s(self) -> float | None:
        return self._c.time_budget_s

    @property
    def resources_in_use(self) -> dict[str, float]:
        return self._c.resources_in_use()

    @property
    def total_resources(self) -> dict[str, float]:
        return self._c.total_resources
