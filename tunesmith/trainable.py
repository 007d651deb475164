"""``ts.Trainable``: a class trainable for users coming from Ray Tune (``setup``/``step``/``save_checkpoint``...).

``run`` turns a subclass into a training function (:class:`_TrainableFunction`) that the workers run like any
other: it reports each ``step()``'s metrics, with a checkpoint every ``checkpoint_frequency`` iterations, at
every iteration where a scheduler decides (so a trial the scheduler pauses, or a PBT source, has a checkpoint
there) and at the end (``checkpoint_at_end``). Any other class is refused (a Ray Tune ``Trainable`` subclass
would otherwise be "called" with a config, construct an object and report nothing).
"""

from __future__ import annotations

import shutil
import tempfile
from typing import TYPE_CHECKING, Any

from tunesmith._errors import ConfigError

if TYPE_CHECKING:
    from tunesmith._stop import StopRules

__all__ = ["Trainable"]


class Trainable:
    """Subclass it and pass the class to ``tunesmith.run`` (``ts.run(MyTrial, space, ...)``).

    Override ``setup(config)`` (build the model), ``step() -> dict`` (one iteration: its metrics; a result
    with ``"done": True`` ends the trial), and, to be checkpointed, ``save_checkpoint(checkpoint_dir)``
    (write files into the folder) and ``load_checkpoint(checkpoint_dir)`` (read them back). Optional:
    ``reset_config(new_config) -> bool``: return True when the object took the new config in place (PBT's
    exploit then reuses it, loading the source's checkpoint, instead of a new object and ``setup``; only when
    the trial's next run lands in the same worker process, which is the case on the local backend with one
    trial at a time); ``cleanup()`` when the object is dropped.

    Class attributes: ``checkpoint_frequency`` (every so many iterations, 0: none), ``checkpoint_at_end``
    (checkpoint the result that ends the trial: ``done``, a stop rule (``stop={"training_iteration": n}``, a
    metric threshold, a callable or a per-trial ``Stopper``, evaluated in the trial) or a scheduler's stop at a
    decision point; a rule only the driver can evaluate, such as a callable that cannot be pickled, stops the
    trial after its result went without one). A checkpoint is
    also written at every iteration where the scheduler decides (ASHA rungs, PBT perturbation points...),
    so a paused or exploited trial restarts from exactly there.

    Inside the methods, ``setup`` included, ``self.config``, ``self.iteration`` (results reported so far, also
    after a restore, and on every rank of a ``ranks=N`` trial) and ``self.trial_dir`` are set, and the session
    functions (``ts.get_trial_id()``...) work.
    """

    checkpoint_frequency: int = 0
    checkpoint_at_end: bool = False

    config: dict[str, Any]
    iteration: int
    trial_dir: str

    def setup(self, config: dict[str, Any]) -> None:
        """Build what the trial needs from ``config`` (called once per object)."""

    def step(self) -> dict[str, Any]:
        """One training iteration; returns its metrics (``{"done": True, ...}`` ends the trial)."""
        raise NotImplementedError(f"{type(self).__name__}.step() must return a dict of metrics")

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        """Write this trial's state into ``checkpoint_dir`` (an empty folder)."""

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        """Restore the state written by ``save_checkpoint`` (of this trial, or of a PBT source)."""

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        """Take ``new_config`` in place; True if done (no new object), False (default) to rebuild."""
        return False

    def cleanup(self) -> None:
        """Release what ``setup`` took (called when the object is dropped)."""


# The last object a worker process ran, kept for a restart of the same trial there (reset_config): one at most.
_kept: dict[str, Any] = {}


class _TrainableFunction:
    """The training function ``run`` makes of a ``Trainable`` subclass (cloudpickled to the workers)."""

    def __init__(self, cls: type[Trainable]) -> None:
        self.cls = cls
        self.__name__ = cls.__name__
        self.__qualname__ = cls.__qualname__
        self.__module__ = cls.__module__

    def __call__(self, config: dict[str, Any]) -> None:
        from tunesmith import session

        s = session._current("Trainable")
        obj = self._object(s, config)
        restore = s.restore
        if restore is not None:
            from tunesmith.integrations._common import checked_dir

            obj.load_checkpoint(checked_dir(restore, f"{self.cls.__name__}.load_checkpoint"))
        _return_at_done(s)
        frequency = int(getattr(obj, "checkpoint_frequency", 0) or 0)
        at_end = bool(getattr(obj, "checkpoint_at_end", False))
        limit = getattr(s.stop_rules, "max_iteration", None)  # stop={"training_iteration": n}
        # counted here, not read from the session: a rank above 0 stores no result, so its session's count stays
        # at the restored iteration while every rank reports as rank 0 does (and ends at the same ``done``)
        iteration = s.iteration
        try:
            while True:
                metrics = obj.step()
                if not isinstance(metrics, dict):
                    raise TypeError(f"{self.cls.__name__}.step() must return a dict of metrics, got "
                                    f"{type(metrics).__name__}")
                iteration += 1
                done = _true(metrics.get("done"))
                save = ((frequency > 0 and iteration % frequency == 0)
                        or iteration == s.decision_iteration  # the scheduler may pause it here
                        or (at_end and (done or iteration == limit)))
                obj.iteration = iteration
                self._report(s, obj, metrics, save, at_end)
                if done:
                    return
        finally:
            self._keep(s.trial_id, obj)

    def _object(self, s: Any, config: dict[str, Any]) -> Trainable:
        """The object that runs this start of the trial (session ``s``): the kept one if it takes ``config``,
        else a new one, set up; ``trial_dir`` and ``iteration`` (the restored one, else 0) set before either."""
        kept = _kept.pop(self.__qualname__, None)
        if kept is not None:
            tid, obj = kept
            if tid == s.trial_id:
                obj.trial_dir, obj.iteration = s.trial_dir, s.iteration  # as reset_config restarts it
                if obj.config == config or obj.reset_config(dict(config)):
                    obj.config = config
                    return obj  # PBT's new config taken in place: no new object, no setup
            obj.cleanup()
        obj = self.cls()
        obj.config, obj.trial_dir, obj.iteration = config, s.trial_dir, s.iteration
        obj.setup(config)
        return obj

    def _keep(self, trial_id: int, obj: Trainable) -> None:
        if type(obj).reset_config is not Trainable.reset_config:
            _kept[self.__qualname__] = (trial_id, obj)
        else:
            obj.cleanup()

    @staticmethod
    def _report(s: Any, obj: Trainable, metrics: dict[str, Any], save: bool, at_end: bool) -> None:
        """Report ``metrics``, with a checkpoint when ``save``; with ``at_end``, also when a stop rule evaluated in
        this process ends the trial at this result (only the session knows: the rule sees each result once)."""
        from tunesmith.checkpoint import Checkpoint

        folders: list[str] = []

        def checkpoint() -> Checkpoint:
            folders.append(tempfile.mkdtemp(prefix="tunesmith_trainable_"))
            obj.save_checkpoint(folders[-1])
            return Checkpoint.from_dir(folders[-1])  # copied when reported

        try:
            if save:
                s.report(metrics, checkpoint())
            else:
                s.report(metrics, None, at_end=checkpoint if at_end else None)
        finally:
            for folder in folders:
                shutil.rmtree(folder, ignore_errors=True)


def as_function(fn: Any) -> Any:
    """What ``run`` runs for ``fn``: a ``Trainable`` subclass becomes its training function; any other class is
    a ConfigError (a Ray Tune ``Trainable`` would be constructed with the config and report nothing)."""
    if not isinstance(fn, type):
        return fn
    if issubclass(fn, Trainable):
        if fn.step is Trainable.step:
            raise ConfigError(f"{fn.__qualname__} subclasses tunesmith.Trainable but does not define step(): "
                              f"define step(self) -> dict of metrics")
        return _TrainableFunction(fn)
    bases = ", ".join(f"{b.__module__}.{b.__qualname__}" for b in fn.__mro__[1:-1]) or "object"
    raise ConfigError(f"fn {fn.__qualname__!r} is a class (bases: {bases}), not a training function or a "
                      f"tunesmith.Trainable subclass: a Ray Tune Trainable becomes `class {fn.__qualname__}"
                      f"(tunesmith.Trainable)` with setup/step/save_checkpoint/load_checkpoint, or a function "
                      f"fn(config) that calls tunesmith.report")


_DONE = ("done", True)  # the stop rule {"done": True}, as StopRules keeps it


def end_at_done(fn: Any, stop_rules: StopRules) -> None:
    """Have ``run``'s stop ``rules`` end the trial of a Trainable (``fn`` as :func:`as_function` made it) at the result
    whose ``done`` is true, as a ``stop={"done": True}`` rule does: the driver checks it before the scheduler decides,
    so a scheduler that would pause the trial there (PBT's time-sharing, a HyperBand rung) cannot resume it to step
    on. Implicit: added after the rules were checked and stored (the spec keeps the user's stop), so results without
    ``done`` are not warned about. Any other ``fn``: nothing."""
    if isinstance(fn, _TrainableFunction) and _DONE not in stop_rules.flags:
        stop_rules.flags.append(_DONE)


def _return_at_done(s: Any) -> None:
    """In the trial: the trial's own copy of the rules leaves ``done`` to the loop, which returns there on every rank
    (a rule met in the trial would stop rank 0 and have the others ended); the driver's copy still ends the trial
    at that result."""
    rules = getattr(s, "stop_rules", None)
    if rules is not None and _DONE in rules.flags:
        rules.flags = [flag for flag in rules.flags if flag != _DONE]


def _true(value: Any) -> bool:
    """Whether ``step()``'s ``done`` is True: Python's, or numpy's (a flag computed from arrays)."""
    return value is True or (type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_")
                             and bool(value))
