"""``ts.Trainable``: a class trainable for users coming from Ray Tune (``setup``/``step``/``save_checkpoint``...).

``run`` turns a subclass into a training function (:class:`_TrainableFunction`) that the workers run like any
other: it reports each ``step()``'s metrics, with a checkpoint every ``checkpoint_frequency`` iterations, at
every iteration where a scheduler decides (so a trial the scheduler pauses, or a PBT source, has a checkpoint
there) and at the end (``checkpoint_at_end``). Any other class is refused (a Ray Tune ``Trainable`` subclass
would otherwise be "called" with a config, construct an object and report nothing).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shutil
import tempfile
from typing import TYPE_CHECKING, Any

from tunesmith._errors import ConfigError
from tunesmith.checkpoint import DICT_FILE  # what save_checkpoint's returned dict is stored as in the folder

if TYPE_CHECKING:
    from tunesmith._stop import StopRules

__all__ = ["Trainable"]

log = logging.getLogger("tunesmith")


class Trainable:
    """Subclass it and pass the class to ``tunesmith.run`` (``ts.run(MyTrial, space, ...)``).

    Override ``setup(config)`` (build the model), ``step() -> dict`` (one iteration: its metrics; a result
    whose ``"done"`` is true, ``True`` or a non-zero number as for a ``stop={"done": True}`` rule, ends the trial),
    and, to be checkpointed, ``save_checkpoint(checkpoint_dir)`` (write files into the folder, or return a dict,
    Ray Tune's other form) and ``load_checkpoint(checkpoint)`` (read them back from the folder, or take the dict).
    Optional: ``reset_config(new_config) -> bool``: return True when the object took the new config in place (a
    restart of the trial, a pause's with the same config or PBT's exploit with a new one, then reuses it, loading
    the checkpoint, instead of a new object and ``setup``; only when the restart lands in the same worker process,
    which is the case on the local backend with one trial at a time); ``cleanup()`` when the object is dropped.

    Object lifecycle: a restart after a failure (``max_failures``) always gets a new object (set up, restored
    from the latest checkpoint if any): an object whose ``setup``, ``load_checkpoint``, ``step`` or
    ``save_checkpoint`` raised is cleaned up and never reused. ``cleanup()`` runs when the trial ends at ``done``,
    fails, or is stopped without ``reset_config``; an object kept for a restart (the trial stopped at a decision
    point, which may be a pause) is cleaned up at that restart if ``reset_config`` returns False, before the next
    trial that runs in its process, or when the process exits at the end of the run (a process that is killed,
    such as a Ray actor's, runs none); those later cleanups run in the trial's folder, outside any session. An
    error in ``cleanup()`` is a logged warning naming the trial (in the output.log of the trial running then),
    never a trial's failure.

    Class attributes: ``checkpoint_frequency`` (every so many iterations, 0: none), ``checkpoint_at_end``
    (checkpoint the result that ends the trial: ``done``, a stop rule (``stop={"training_iteration": n}``, a
    metric threshold, a callable or a per-trial ``Stopper``, evaluated in the trial) or a scheduler's stop at a
    decision point; a rule only the driver can evaluate, such as a callable that cannot be pickled, stops the
    trial after its result went without one). A checkpoint is
    also written at every iteration where the scheduler decides (ASHA rungs, PBT perturbation points...),
    so a paused or exploited trial restarts from exactly there.

    Inside the methods, ``setup`` included, ``self.config``, ``self.iteration`` (results reported so far, also
    after a restore, and on every rank of a ``ranks=N`` trial) and ``self.trial_dir`` are set, and the session
    functions (``ts.get_trial_id()``...) work (not in a cleanup that runs after the trial ended).
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

    def save_checkpoint(self, checkpoint_dir: str) -> dict[str, Any] | None:
        """Write this trial's state into ``checkpoint_dir`` (an empty folder in the trial's ``checkpoints``) and
        return None, or return it as a dict (stored with the folder's files, as ``_dict_checkpoint.pkl``, and
        handed back to ``load_checkpoint``)."""
        return None

    def load_checkpoint(self, checkpoint: Any) -> None:
        """Restore the state ``save_checkpoint`` saved (of this trial, or of a PBT source): ``checkpoint`` is the
        folder it wrote, or the dict it returned."""

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        """Take ``new_config`` in place; True if done (no new object), False (default) to rebuild."""
        return False

    def cleanup(self) -> None:
        """Release what ``setup`` took (called once when the object is dropped; see the class for when)."""


# The object of a trial that may start again in this worker process (reset_config), kept from its stop to its next
# start here, to the next trial's start, or to the process's exit, whichever comes first: one at most, as
# (its class, its trial's id and folder, the object, the working folder it ended in).
_kept: list[tuple[type[Trainable], int, str, Trainable, str | None]] = []
_exit_hook: list[int] = []  # the process that registered _cleanup_at_exit (a forked worker registers its own)



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
        keep = False
        try:
            if s.restore is not None:
                obj.load_checkpoint(_restored(s.restore, f"{self.cls.__name__}.load_checkpoint"))
            _return_at_done(s)
            frequency = _frequency(type(obj), getattr(obj, "checkpoint_frequency", 0))  # (setup may have set it)
            at_end = bool(getattr(obj, "checkpoint_at_end", False))
            limit = getattr(s.stop_rules, "max_iteration", None)  # stop={"training_iteration": n}
            # counted here, not read from the session: a rank above 0 stores no result, so its session's count
            # stays at the restored iteration while every rank reports as rank 0 does (and ends at the same done)
            iteration = s.iteration
            while True:
                metrics = obj.step()
                if not isinstance(metrics, dict):  # as report() refuses a non-dict: every retry would meet it
                    raise ConfigError(f"{self.cls.__name__}.step() must return a dict of metrics, got "
                                      f"{type(metrics).__name__}")
                iteration += 1
                done = _done(metrics)
                save = ((frequency > 0 and iteration % frequency == 0)
                        or iteration == s.decision_iteration  # the scheduler may pause it here
                        or (at_end and (done or iteration == limit)))
                obj.iteration = iteration
                try:
                    self._report(s, obj, metrics, save, at_end)
                except session.StopTrial:
                    # stopped by the driver or a rule: a pause or an exploit may start it again in this process
                    keep = not done and iteration != limit and _may_keep(s, obj)
                    raise
                if done:
                    return
        finally:  # an object whose setup/load/step/save raised is never kept: cleaned up here
            if keep:
                _keep(self.cls, s, obj)
            else:
                _cleanup(obj, s.trial_id)

    def _object(self, s: Any, config: dict[str, Any]) -> Trainable:
        """The object that runs this start of the trial (session ``s``): the kept one if it is this trial's and its
        ``reset_config`` takes ``config`` (the same config too: a pause), else a new one, set up; ``trial_dir`` and
        ``iteration`` (the restored one, else 0) set before either. Another trial's kept object is cleaned up."""
        if _kept:
            cls, trial_id, trial_dir, obj, cwd = _kept.pop()
            if cls is self.cls and trial_id == s.trial_id and trial_dir == s.trial_dir:
                obj.trial_dir, obj.iteration = s.trial_dir, s.iteration  # as reset_config restarts it
                try:
                    reused = obj.reset_config(dict(config))
                except BaseException:
                    _cleanup(obj, trial_id)
                    raise
                if reused:
                    obj.config = config
                    return obj  # PBT's new config taken in place: no new object, no setup
                _cleanup(obj, trial_id)
            else:
                _cleanup_outside(obj, trial_id, cwd)
        obj = self.cls()
        obj.config, obj.trial_dir, obj.iteration = config, s.trial_dir, s.iteration
        try:
            obj.setup(config)
        except BaseException:
            _cleanup(obj, s.trial_id)
            raise
        return obj

    @staticmethod
    def _report(s: Any, obj: Trainable, metrics: dict[str, Any], save: bool, at_end: bool) -> None:
        """Report ``metrics``, with a checkpoint when ``save``; with ``at_end``, also when a stop rule evaluated in
        this process ends the trial at this result (only the session knows: the rule sees each result once)."""
        from tunesmith.checkpoint import Checkpoint

        folders: list[str] = []

        def checkpoint() -> Checkpoint:
            # in the trial's checkpoints folder, not the system's temp folder: one a worker killed in save_checkpoint
            # leaves is the experiment's, deleted at the trial's retry or on resume as a cut-short checkpoint write is
            # (_ledger.clean_trial_leftovers, clean_leftovers)
            os.makedirs(s.checkpoint_dir, exist_ok=True)
            folders.append(tempfile.mkdtemp(prefix=".tmp_trainable_", dir=s.checkpoint_dir))
            _save(obj, folders[-1])
            return Checkpoint.from_dir(folders[-1])  # copied when reported

        try:
            if save:
                s.report(metrics, checkpoint())
            else:
                s.report(metrics, None, at_end=checkpoint if at_end else None)
        finally:
            for folder in folders:
                shutil.rmtree(folder, ignore_errors=True)


def _save(obj: Trainable, folder: str) -> None:
    """``obj.save_checkpoint(folder)``; a dict it returns (Ray Tune's other form) is stored in the folder as
    ``DICT_FILE``, beside the files it wrote, for ``load_checkpoint`` to get back. None, or the folder itself (Ray
    Tune's ``return checkpoint_dir``): the files are the checkpoint. Anything else is a ConfigError."""
    out = obj.save_checkpoint(folder)
    if out is None or (isinstance(out, (str, os.PathLike)) and os.path.realpath(out) == os.path.realpath(folder)):
        return
    name = f"{type(obj).__name__}.save_checkpoint()"
    if not isinstance(out, dict):
        raise ConfigError(f"{name} returned {_kind(out)}: return None (the files written into checkpoint_dir are "
                          f"the checkpoint) or a dict (stored with them and handed to load_checkpoint in place of "
                          f"the folder, as Ray Tune does)")
    path = os.path.join(folder, DICT_FILE)
    if os.path.lexists(path):
        raise ConfigError(f"{name} returned a dict and wrote a file named {DICT_FILE}, the name the dict is stored "
                          f"under: rename that file")
    from tunesmith.checkpoint import _pickled

    data = _pickled(out, f"{name} returned a dict that", "dict")
    with open(path, "wb") as f:
        f.write(data)


def _kind(value: Any) -> str:
    if isinstance(value, (str, os.PathLike)):
        return f"the path {os.fspath(value)!r}, not the checkpoint_dir it was given"
    return f"a {type(value).__name__}"


def _restored(restore: Any, what: str) -> Any:
    """What ``load_checkpoint`` gets for the checkpoint ``restore``: its folder, once checked, or the dict
    ``save_checkpoint`` returned, unpickled only when the checked and signed manifest lists it."""
    from tunesmith.checkpoint import MANIFEST, CheckpointError
    from tunesmith.integrations._common import checked_dir

    folder = checked_dir(restore, what)
    path = os.path.join(folder, DICT_FILE)
    if not os.path.lexists(path):
        return folder
    with open(os.path.join(folder, MANIFEST)) as f:
        listed = DICT_FILE in (json.load(f).get("files") or {})
    if not listed:
        raise CheckpointError(f"{what}: refusing to unpickle {DICT_FILE} of the checkpoint {restore.path}: its "
                              f"{MANIFEST} does not list it (a file added after the checkpoint was written)")
    import pickle

    import cloudpickle  # noqa: F401  (what cloudpickle wrote may need it importable)

    with open(path, "rb") as f:
        return pickle.load(f)  # noqa: S301 - checksummed, and signed by this user's key (checked_dir)


def _may_keep(s: Any, obj: Trainable) -> bool:
    """Whether ``obj`` may be kept for its trial's next start in this process: its class overrides ``reset_config``,
    and the process runs further trials (the processes of a trial run as several ranks run that trial only)."""
    return type(obj).reset_config is not Trainable.reset_config and getattr(s, "world_size", 1) == 1


def _keep(cls: type[Trainable], s: Any, obj: Trainable) -> None:
    _kept.append((cls, s.trial_id, s.trial_dir, obj, _cwd()))
    if os.getpid() not in _exit_hook:
        _exit_hook.append(os.getpid())
        atexit.register(_cleanup_at_exit)


def _cleanup_at_exit() -> None:
    """At the worker process's exit (the end of the run; only an exit Python runs, not a kill): the kept object's
    cleanup."""
    while _kept:
        _cls, trial_id, _dir, obj, cwd = _kept.pop()
        _cleanup_outside(obj, trial_id, cwd)


def _cleanup_outside(obj: Trainable, trial_id: int, cwd: str | None) -> None:
    """``obj.cleanup()`` for trial ``trial_id``, which has ended, from outside it (the next trial's start, the
    process's exit): in the working folder the trial ended in, with no trial's session (the session functions
    would answer for another trial)."""
    from tunesmith import session

    current, session._session = session._session, None
    home = _cwd()
    try:
        _chdir(cwd)  # (its folder gone: where we are)
        _cleanup(obj, trial_id)
    finally:
        session._session = current
        _chdir(home)


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # the working folder is gone
        return None


def _chdir(path: str | None) -> None:
    if path is not None:
        with contextlib.suppress(OSError):
            os.chdir(path)


def _cleanup(obj: Trainable, trial_id: int) -> None:
    """``obj.cleanup()``; an error is a warning naming the trial, not a failure: the trial's results and checkpoints
    are stored, and the error of a step that failed stays the trial's error."""
    try:
        obj.cleanup()
    except Exception:  # noqa: BLE001 - the user's code: logged, with its traceback
        from tunesmith.trial import trial_name

        log.warning("%s.cleanup() of %s raised (ignored: it does not change the trial's status)",
                    type(obj).__name__, trial_name(trial_id), exc_info=True)


def as_function(fn: Any) -> Any:
    """What ``run`` runs for ``fn``: a ``Trainable`` subclass becomes its training function; any other class is
    a ConfigError (a Ray Tune ``Trainable`` would be constructed with the config and report nothing)."""
    if not isinstance(fn, type):
        return fn
    if issubclass(fn, Trainable):
        if fn.step is Trainable.step:
            raise ConfigError(f"{fn.__qualname__} subclasses tunesmith.Trainable but does not define step(): "
                              f"define step(self) -> dict of metrics")
        _frequency(fn, getattr(fn, "checkpoint_frequency", 0))
        return _TrainableFunction(fn)
    bases = ", ".join(f"{b.__module__}.{b.__qualname__}" for b in fn.__mro__[1:-1]) or "object"
    raise ConfigError(f"fn {fn.__qualname__!r} is a class (bases: {bases}), not a training function or a "
                      f"tunesmith.Trainable subclass: a Ray Tune Trainable becomes `class {fn.__qualname__}"
                      f"(tunesmith.Trainable)` with setup/step/save_checkpoint/load_checkpoint, or a function "
                      f"fn(config) that calls tunesmith.report")


def _frequency(cls: type, value: Any) -> int:
    """``checkpoint_frequency`` of the Trainable class ``cls`` as an int: a whole number of iterations, 0 or more (a
    numpy integer too).

    Raises:
        ConfigError: anything else (``0.5`` or ``-2`` would checkpoint never, ``"5"`` or ``True`` not as meant).
    """
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ConfigError(f"{cls.__name__}.checkpoint_frequency must be a whole number of iterations (0: none), got "
                          f"{value!r}")
    return int(value)


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


def _done(metrics: dict[str, Any]) -> bool:
    """Whether ``step()``'s result ends the trial: the rule ``end_at_done`` gives the driver (``{"done": True}``, as
    ``StopRules`` judges it: any true bool or number, numpy's too), judged on ``done`` as the driver will see it
    (stored as JSON)."""
    if "done" not in metrics:
        return False
    from tunesmith.session import encode_metrics

    if not _DONE_RULES:
        from tunesmith._objective import Objective
        from tunesmith._stop import StopRules

        _DONE_RULES.append(StopRules(dict([_DONE]), Objective()))
    return _DONE_RULES[0].should_stop(0, 0, json.loads(encode_metrics({"done": metrics["done"]})))


_DONE_RULES: list[StopRules] = []  # made once per process
