"""The searcher interface: what to try next. Pure: no I/O, no wall clock, its own RNG."""

from __future__ import annotations

import numbers
from typing import Any, ClassVar

from tunesmith._errors import ConfigError
from tunesmith._spec import constructor_spec


class _Finished:
    """Sentinel returned by ``Searcher.suggest`` when no more configs will ever come."""

    _instance: _Finished | None = None

    def __new__(cls) -> _Finished:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "FINISHED"


FINISHED = _Finished()

UNLIMITED = -1  # num_samples: suggest configs until the experiment is stopped


def _check_num_samples(num_samples: Any) -> None:
    if (isinstance(num_samples, bool) or not isinstance(num_samples, numbers.Integral)
            or not (int(num_samples) >= 1 or num_samples == UNLIMITED)):
        raise ConfigError(f"num_samples: expected an int >= 1, or -1 for unlimited; got {num_samples!r}")


class Searcher:
    """Base class for searchers.

    The controller calls ``setup`` once before any trial starts (validation lives there and raises
    ``ConfigError``), then ``suggest`` whenever it has capacity, and ``observe`` for each stored result.

    ``suggest`` returns a config dict, ``None`` ("nothing right now, ask again later", e.g. waiting for
    results) or ``FINISHED`` (never ask again; ``self.FINISHED`` in a searcher of your own).
    """

    FINISHED: ClassVar[_Finished] = FINISHED

    def setup(self, space: dict[str, Any], metric: str | list[str] | None, mode: str | list[str] | None,
              num_samples: int) -> None:
        """``metric``/``mode`` are the experiment's objective as ``run`` takes them (a name and ``"min"``/``"max"``,
        lists of them, or ``None``), already checked by ``run``. A searcher that learns from results turns them
        into an :class:`~tunesmith._objective.Objective` with ``Objective.for_searcher`` (its checks, for direct
        calls, name this searcher)."""
        self.space = space
        self.metric = metric
        self.mode = mode
        self.num_samples = num_samples

    # Whether what it suggests depends on the results it observed. One that does not (random, grid, Sobol) may be
    # asked for a trial before the one before it ends: the local backend then hands a busy worker its next trial
    # early (``LocalBackend(queue_ahead=True)``). Unknown searchers are assumed to learn.
    learns_from_results: bool = True

    def suggest(self, trial_id: int) -> dict[str, Any] | None | _Finished:
        raise NotImplementedError

    def observe(self, trial_id: int, result: dict[str, Any], final: bool) -> None:
        """Called with each stored result (``final=True`` once, when the trial ended; ``result`` is then
        its last result, or ``{}`` if it reported nothing)."""

    def restore_suggestion(self, trial_id: int, config: dict[str, Any]) -> None:
        """Replay one stored suggestion when an experiment resumes.

        On resume the controller calls ``setup(...)`` again, then for each stored trial in id order
        ``restore_suggestion(trial_id, config)`` followed by that trial's stored ``observe`` calls. After
        the replay the next ``suggest`` should return what an uninterrupted run would have returned.

        The default calls ``suggest(trial_id)`` and ignores what it returns: right for searchers whose
        configs depend only on their seed and how many came before (``Random``). Searchers that build a
        model from the configs they suggested override it to take ``config`` as given.

        Args:
            trial_id: the stored trial's id.
            config: the config the trial ran with (as stored).
        """
        self.suggest(trial_id)

    def warm_start(self, trials: list[tuple[dict[str, Any], dict[str, Any]]]) -> int:
        """Observe finished trials of earlier experiments before the first suggestion (``run(warm_start=...)``).

        Called after ``setup`` (and before a resume's replay), with ``(config, last result)`` pairs read by
        ``run`` from the earlier stores: the searcher does no I/O. A config outside this searcher's space is
        skipped. The default learns nothing from them (``Random`` and ``QuasiRandom`` draw as before).

        Returns:
            How many of ``trials`` the searcher took in.
        """
        return 0

    def use_constraints(self) -> bool:
        """``run(constraints=...)`` is set: results carry ``constraint/<i>`` values (<= 0 feasible). Called before
        ``setup``. Returns whether this searcher uses them (the default does not; they still rank ``best``)."""
        return False

    def to_spec(self) -> dict[str, Any]:
        """Constructor arguments as JSON (for the store's experiment spec)."""
        return constructor_spec(self)
