"""Hugging Face Transformers bridge: a ``TrainerCallback`` that reports each evaluation with the Trainer's
checkpoint and stops training when the driver stops the trial, and ``hyperparameter_search``, a drop-in for
``Trainer.hyperparameter_search`` that runs the trials with tunesmith.

    from tunesmith.integrations.transformers import hyperparameter_search

    best = hyperparameter_search(trainer, {"learning_rate": ts.loguniform(1e-5, 1e-3)}, n_trials=8)
    print(best.hyperparameters, best.objective, best.run_summary.best)   # run_summary: the ResultSet

Needs ``transformers`` and ``accelerate`` (``pip install 'tunesmith[transformers]'``).
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import os
import re
import shutil
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tunesmith import session
from tunesmith._errors import ConfigError, TrialError
from tunesmith._optional import require
from tunesmith.checkpoint import Checkpoint
from tunesmith.integrations import _common
from tunesmith.integrations._common import MetricPicker

_hf = require("transformers", "transformers", "tunesmith.integrations.transformers")
_utils = require("transformers.trainer_utils", "transformers", "tunesmith.integrations.transformers")

__all__ = ["ReportCallback", "hyperparameter_search", "resume_path"]

log = logging.getLogger("tunesmith")

OBJECTIVE = "objective"  # the metric hyperparameter_search reports and optimises, as Transformers names it


_Base: Any = _hf.TrainerCallback  # the library's callback class, known only at run time


class ReportCallback(_Base):
    """Reports each evaluation's metrics (one ``training_iteration`` per evaluation) with the checkpoint the
    Trainer saves at the same step, and stops training (``control.should_training_stop``) once the driver
    stopped the trial.

    With an ``eval_dataset`` dict (``{"dev": ..., "test": ...}``), the Trainer evaluates each dataset in turn and
    calls ``on_evaluate`` once for each: their metrics (``eval_dev_loss``, ``eval_test_loss``...) make one result,
    reported once the last dataset is evaluated. The callback learns the datasets' names from the first such
    evaluation, which it reports when the Trainer goes on (saves that step's checkpoint, or trains on: a stop then
    ends training one step later if that step saved no checkpoint).

    Args:
        metrics: None (every scalar metric of the evaluation, named as Transformers names them:
            ``eval_loss``, ``eval_accuracy``, ``epoch``...), a name, a list of names, or a dict
            ``{reported name: metric name}``. A chosen name the evaluation did not give is a ``ConfigError``
            at the first evaluation, naming the ones it gave.
        checkpoint: report the checkpoint folder the Trainer saves (``checkpoint-<step>``) with the evaluation
            of the same step (set ``save_strategy`` like ``eval_strategy``), so :func:`resume_path` resumes
            from it. A checkpoint saved at a step without an evaluation is not reported.
        compute_objective: also report ``objective`` = ``compute_objective(metrics)`` (as
            ``hyperparameter_search`` does), given every dataset's metrics.
    """

    def __init__(self, metrics: str | Sequence[str] | Mapping[str, str] | None = None, checkpoint: bool = True,
                 compute_objective: Callable[[dict[str, float]], float] | None = None) -> None:
        self._picker = MetricPicker(metrics, "transformers.ReportCallback")
        self._checkpoint = bool(checkpoint)
        self._objective = compute_objective
        self._pending: dict[str, Any] | None = None  # an evaluation whose step's checkpoint is being saved
        # an evaluation of an eval_dataset dict whose datasets are still arriving: their metrics, names, step
        self._merging: dict[str, Any] | None = None
        self._merged_sets: list[str] = []
        self._merging_step = -1
        self._eval_sets: frozenset[str] = frozenset()  # the dict's datasets as their metrics name them ("eval_dev")
        # hyperparameter_search's: remove the Trainer's checkpoint folders once saved and reported (tunesmith's
        # copies and keep= are what a trial keeps)
        self._drop_saved = False
        self.reported = 0

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, Any] | None = None,
                    **kwargs: Any) -> Any:
        if session.should_stop():  # e.g. trainer.evaluate() after a stop: nothing more is stored
            control.should_training_stop = True
            return control
        self._flush_pending(control)
        metrics = dict(metrics or {})
        part = _eval_set(metrics)
        if part is None:  # one dataset: the evaluation is complete
            self._flush(control)
            self._evaluated(metrics, state, control)
            return control
        if self._merging is not None and (self._merging_step != state.global_step or part in self._merged_sets):
            self._flush(control)  # a new evaluation began: the one before was complete
        if self._merging is None:
            self._merging, self._merged_sets, self._merging_step = {}, [], state.global_step
        self._merging.update(metrics)
        self._merged_sets.append(part)
        if self._eval_sets and self._eval_sets <= set(self._merged_sets):  # its last dataset
            merged, self._merging = self._merging, None
            self._evaluated(merged, state, control)
        return control

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        self._report_saved(args, state, control)
        if self._drop_saved and args.should_save:  # copied (or not to be reported): tunesmith's copy is what stays
            # other ranks may still be writing their RNG state into this step's folder: it goes at the next save
            _drop_trainer_checkpoints(args, state, spare_latest=args.world_size > 1)
        return control

    def _report_saved(self, args: Any, state: Any, control: Any) -> None:
        merged = self._merged()  # an evaluation of a dict of datasets, complete now that the Trainer saves
        if merged is not None:
            self._flush_pending(control)
            if not (self._checkpoint and state.is_world_process_zero):
                self._report(merged, None, control)
                return
        values = merged if merged is not None else self._pending
        self._pending = None
        if values is not None:
            folder = os.path.join(args.output_dir, f"{_utils.PREFIX_CHECKPOINT_DIR}-{state.global_step}")
            self._report(values, Checkpoint.from_dir(folder) if os.path.isdir(folder) else None, control)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        self._flush(control)  # an evaluation whose step saved nothing after all (save_strategy="best")
        return self._check(control)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        return self._check(control)  # a stop that arrived while training (time limit, asynchronous stop)

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        self._flush(control)  # an evaluation before the epoch (eval_on_start, the epoch before's)
        return self._check(control)

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        self._flush(control)
        return self._check(control)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        self._flush(control)
        return control

    def _evaluated(self, metrics: dict[str, Any], state: Any, control: Any) -> None:
        """A complete evaluation (every dataset's metrics): reported now, or by ``on_save`` with the checkpoint
        the Trainer saves right after it."""
        values = self._values(metrics)
        if self._checkpoint and control.should_save and state.is_world_process_zero:
            self._pending = values  # reported by on_save, with the checkpoint written right after
            return
        self._report(values, None, control)

    def _values(self, metrics: dict[str, Any]) -> dict[str, Any]:
        values = self._picker.pick(metrics)
        if self._objective is not None:
            values[OBJECTIVE] = float(self._objective(dict(metrics)))
        return values

    def _merged(self) -> dict[str, Any] | None:
        """The values of the evaluation of a dict of datasets still open, now complete (the Trainer went on), or
        None; its datasets' names are learnt, so that the next evaluations are reported at their last dataset."""
        if self._merging is None:
            return None
        metrics, self._merging = self._merging, None
        self._eval_sets |= frozenset(self._merged_sets)
        if session.should_stop():  # stopped while its datasets were evaluated: nothing more is stored
            return None
        return self._values(metrics)

    def _flush_pending(self, control: Any) -> None:
        if self._pending is not None:
            values, self._pending = self._pending, None
            self._report(values, None, control)

    def _flush(self, control: Any) -> None:
        """Report what waits: an evaluation whose step saved no checkpoint, then an evaluation of a dict of
        datasets still open."""
        self._flush_pending(control)
        merged = self._merged()
        if merged is not None:
            self._report(merged, None, control)

    def _report(self, values: dict[str, Any], ckpt: Checkpoint | None, control: Any) -> None:
        try:
            session.report(values, checkpoint=ckpt)
            self.reported += 1
        except session.StopTrial:
            self.reported += 1  # stored: the result that ended the trial is its last
        self._check(control)

    @staticmethod
    def _check(control: Any) -> Any:
        if session.should_stop():
            control.should_training_stop = True
        return control


def _warn_if_unschedulable(trainer: Any, space: Mapping[str, Any], scheduler: Any) -> None:
    """A warning when a scheduler is given but the trials evaluate only after training (``eval_strategy="no"``):
    one result a trial, so the scheduler can stop or change none early. Training losses are not reported in
    place of evaluations: those results would have no ``objective`` to compare."""
    from tunesmith.schedulers._base import FIFO

    strategy = getattr(trainer.args, "eval_strategy", None)
    if scheduler is None or isinstance(scheduler, FIFO) or "eval_strategy" in space \
            or getattr(strategy, "value", strategy) != "no":
        return
    log.warning("hyperparameter_search: the Trainer's eval_strategy is 'no': each trial reports once, after "
                "training, so scheduler=%s cannot stop or change a trial early; set eval_strategy='epoch' or "
                "'steps' (and save_strategy like it)", type(scheduler).__name__)


def _eval_set(metrics: Mapping[str, Any]) -> str | None:
    """``"eval_dev"`` for the metrics of the dataset ``"dev"`` of an ``eval_dataset`` dict (the Trainer prefixes them
    ``eval_<name>_``; every evaluation gives ``<prefix>_runtime``), else None (one dataset: ``eval_runtime``)."""
    runtimes = sorted((k for k in metrics if isinstance(k, str) and k.endswith("_runtime")), key=len)
    if not runtimes:
        return None
    prefix = runtimes[0][: -len("_runtime")]
    return prefix if prefix.startswith("eval_") else None


def resume_path() -> str | None:
    """The ``resume_from_checkpoint`` folder for ``trainer.train``: the Trainer checkpoint this trial was
    restored from (a retry, a PBT exploit, a resumed experiment), or None on a fresh start.

    The Trainer restores the checkpoint's optimizer and scheduler as saved, learning rate and weight decay
    included, whatever the trial's ``TrainingArguments`` say: after a PBT exploit, only
    :func:`hyperparameter_search` applies the new config's values over them.

    Raises:
        ConfigError: the trial's checkpoint is not a Trainer checkpoint (no ``trainer_state.json``).
        RuntimeError: called outside a trial.
    """
    ckpt = session.get_checkpoint()
    if ckpt is None:
        return None
    # checksums and this user's signature checked first: the Trainer unpickles its optimizer/scheduler state
    folder = _common.checked_dir(ckpt, "transformers.resume_path")
    if not os.path.isfile(os.path.join(folder, "trainer_state.json")):
        raise ConfigError(f"resume_path(): the trial's checkpoint {folder} is not a Trainer checkpoint (no "
                          f"trainer_state.json): not saved by tunesmith.integrations.transformers.ReportCallback")
    return folder


def hyperparameter_search(trainer: Any, space: dict[str, Any], n_trials: int = 20, direction: str = "minimize",
                          compute_objective: Callable[[dict[str, float]], float] | None = None,
                          **run_kwargs: Any) -> Any:
    """``Trainer.hyperparameter_search`` run by tunesmith: the same contract, so a Transformers user switches
    with one line.

    Each trial gets its own copy of ``trainer`` (pickled once with cloudpickle, without its model), sets the
    ``TrainingArguments`` fields named in its config (the other keys only reach ``model_init``), builds its
    model with ``model_init`` (given the config if it takes one argument), trains with a
    :class:`ReportCallback` that reports ``objective`` at each evaluation (an evaluation at the end if
    training made none), writes its outputs under its trial folder, and resumes from its checkpoint after a
    retry or a PBT exploit. Schedulers need evaluations during training (``eval_strategy="epoch"`` or
    ``"steps"``; with ``"no"`` and a ``scheduler=``, a warning says the scheduler can stop no trial early);
    checkpoints need ``save_strategy`` like ``eval_strategy``. After a resume, the optimizer
    hyperparameters the trial's config changed (``learning_rate``, ``weight_decay``, ``adam_beta1``...) are set
    over the restored ones, so a PBT mutation applies (a scheduled learning rate keeps its progress, scaled by
    the new base rate over the saved one); the optimizer's state stays restored.

    Args:
        trainer: a ``Trainer`` built with ``model_init``.
        space: a tunesmith search space, e.g. ``{"learning_rate": ts.loguniform(1e-5, 1e-3)}``.
        n_trials: trials to run (``num_samples``).
        direction: ``"minimize"`` or ``"maximize"`` the objective.
        compute_objective: metrics -> objective; Transformers' default (``eval_loss``, or the sum of the other
            metrics when there are some).
        run_kwargs: passed on to :func:`tunesmith.run` (``scheduler=``, ``searcher=``, ``resources=``,
            ``max_failures=``, ``name=``...).

    A ``TrainingArguments`` field takes the config's value as given where the field's declared type accepts it
    (``warmup_steps: float`` takes 0.5, a ratio of the steps, though its default is the int 0); a value of another
    type is cast only where the cast changes nothing (3.0 for an ``int`` field, a string for an enum field).
    With an ``eval_dataset`` dict, each evaluation is one result with every dataset's metrics
    (``eval_dev_loss``, ``eval_test_loss``...), all given to ``compute_objective``.

    Each ``checkpoint-<step>`` folder the Trainer saves in the trial's ``trainer_output`` is removed once copied
    into tunesmith's checkpoint (or, saved at a step without an evaluation, at once): ``keep=`` rules what stays, and
    ``save_total_limit`` is set aside in the trial's copy. With ``load_best_model_at_end``, the best one's folder
    stays until training ended (the Trainer loads the best model from it then).

    Returns:
        ``transformers.trainer_utils.BestRun(run_id, objective, hyperparameters, run_summary)``, where
        ``run_summary`` is the experiment's :class:`tunesmith.ResultSet`.

    Raises:
        ConfigError: a bad argument; a config value of a ``TrainingArguments`` field that is not of the field's
            type and that a cast would change (2.5 for ``per_device_train_batch_size``: the trial fails with it).
        TrialError: no trial reported an objective because trials failed (every one, say, by an error in
            ``compute_objective``): the message gives the first failed trial's error.
    """
    from tunesmith._run import run

    if getattr(trainer, "model_init", None) is None:
        raise ConfigError("hyperparameter_search(trainer): the Trainer needs a model_init (each trial builds its own "
                          "model): Trainer(model_init=lambda: ..., ...)")
    if direction not in ("minimize", "maximize"):
        raise ConfigError(f"hyperparameter_search(direction=...): expected 'minimize' or 'maximize', got {direction!r}")
    if not isinstance(space, dict):
        raise ConfigError(f"hyperparameter_search(space=...): expected a tunesmith search space (a dict), got "
                          f"{type(space).__name__}")
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or not (n_trials > 0 or n_trials == -1):
        raise ConfigError(f"hyperparameter_search(n_trials=...): expected a positive number of trials (or -1: as many "
                          f"as the searcher gives), got {n_trials!r}")
    for key in ("hp_space", "hp_name"):  # Trainer.hyperparameter_search's own, for Optuna/Ray trials
        if key in run_kwargs:
            raise ConfigError(f"hyperparameter_search({key}=...): Transformers' {key} (a function of an Optuna or Ray "
                              f"trial) has no use here: pass a tunesmith search space as space= (a dict, e.g. "
                              f"{{'learning_rate': ts.loguniform(1e-5, 1e-3)}}); trials are named by tunesmith")
    backend = run_kwargs.get("backend")
    backend = backend.value if isinstance(backend, enum.Enum) else backend  # HPSearchBackend.OPTUNA, say
    if isinstance(backend, str) and backend in {b.value for b in _utils.HPSearchBackend} - {"ray"}:
        raise ConfigError(f"hyperparameter_search(backend={backend!r}): Transformers' search backends do not apply "
                          f"(tunesmith runs the search); backend= is tunesmith.run's: 'local', 'ray' or a backend "
                          f"such as tunesmith.RayBackend(address='auto')")
    for key in ("metric", "mode", "num_samples", "space"):
        if key in run_kwargs:
            raise ConfigError(f"hyperparameter_search(): {key}= is set from the arguments (objective, direction, "
                              f"n_trials, space); leave it out")
    _warn_if_unschedulable(trainer, space, run_kwargs.get("scheduler"))
    objective_fn = compute_objective or _utils.default_compute_objective
    blob = _pickled(trainer)

    def objective(config: dict[str, Any]) -> None:
        _run_trial(blob, config, objective_fn)

    result = run(objective, space=space, num_samples=n_trials, metric=OBJECTIVE,
                 mode="min" if direction == "minimize" else "max", **run_kwargs)
    try:
        best = result.best
    except ConfigError:  # no trial reported an objective
        failed = result.errors
        if not failed:
            raise
        total = len(result.trials)
        what = (f"every trial failed ({total} of {total})" if len(failed) == total else
                f"no trial reported an objective ({len(failed)} of the {total} trials failed)")
        raise TrialError(f"hyperparameter_search: {what}; the first error ({failed[0].name}):\n"
                         f"{failed[0].error}") from None
    return _utils.BestRun(best.name, best.metrics[OBJECTIVE], best.config, result)


# left out of the copy sent to the trials: the model (each trial builds its own with ``model_init``) and the
# Accelerator with what it made (each trial's ``create_accelerator_and_postprocess`` makes its own; once a Trainer
# trained in this process, Accelerate's shared GradientState holds weak references, which do not pickle)
_NOT_SENT = ("model", "model_wrapped", "accelerator", "gather_function")


def _pickled(trainer: Any) -> bytes:
    """``trainer`` cloudpickled without its model and Accelerator (each trial makes its own)."""
    import cloudpickle

    saved = {name: getattr(trainer, name) for name in _NOT_SENT if hasattr(trainer, name)}
    for name in saved:
        setattr(trainer, name, None)
    try:
        return cloudpickle.dumps(trainer)
    except Exception as e:  # noqa: BLE001 - any failure to pickle is the same problem for the user
        raise ConfigError(f"hyperparameter_search(trainer): the Trainer could not be pickled to send it to the "
                          f"trials ({type(e).__name__}: {e}); remove what holds an open file, lock or process (a "
                          f"callback, a dataset's handle) or build it from picklable parts") from e
    finally:
        for name, value in saved.items():
            setattr(trainer, name, value)


def _run_trial(blob: bytes, config: dict[str, Any], compute_objective: Callable[[dict[str, float]], float]) -> None:
    trainer = _trial_trainer(blob, config, os.path.join(session.get_trial_dir(), "trainer_output"))
    callback = ReportCallback(checkpoint=True, compute_objective=compute_objective)
    callback._drop_saved = True
    # set aside, the user's or the config's: the Trainer's checkpoint folders go once copied, keep= rules what stays
    # (and the Trainer's rotation at the end would compare its folders with a best one removed already)
    trainer.args.save_total_limit = None
    if isinstance(trainer.eval_dataset, dict):  # each evaluation reported at its last dataset's metrics
        callback._eval_sets = frozenset(f"eval_{name}" for name in trainer.eval_dataset)
    trainer.add_callback(callback)
    ended = False
    try:
        trainer.train(resume_from_checkpoint=resume_path(), trial=dict(config))
        ended = True  # (every rank's saves are done: train() ends with a collective, store_flos)
        if callback.reported == 0 and not session.should_stop():
            trainer.evaluate()  # no evaluation during training: one at the end, reported by the callback
            callback._flush(trainer.control)
    finally:
        if trainer.args.should_save:
            # the best model's folder is loaded by now; after an error, a retry's Trainer may still load it
            _drop_trainer_checkpoints(trainer.args, trainer.state, spare_best=not ended)


_TRAINER_CHECKPOINT = re.compile(rf"{re.escape(_utils.PREFIX_CHECKPOINT_DIR)}-\d+")


def _drop_trainer_checkpoints(args: Any, state: Any, *, spare_best: bool = True, spare_latest: bool = False) -> None:
    """Remove the Trainer's ``checkpoint-<step>`` folders in ``args.output_dir``: under ``hyperparameter_search``
    they are scratch, copied into tunesmith's checkpoints as they are saved, and ``keep=`` rules what stays.

    Spared: with ``spare_best``, the folder the Trainer loads its best model from when training ends
    (``load_best_model_at_end``: ``state.best_model_checkpoint``); with ``spare_latest``, the folder of this step
    (in a trial of several ranks, the others may still be writing their RNG state into it)."""
    folder = args.output_dir
    spared = set()
    if spare_best and args.load_best_model_at_end and state.best_model_checkpoint:
        spared.add(os.path.realpath(state.best_model_checkpoint))
    if spare_latest:
        spared.add(os.path.realpath(os.path.join(folder, f"{_utils.PREFIX_CHECKPOINT_DIR}-{state.global_step}")))
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return
    for name in names:
        path = os.path.join(folder, name)
        if (not _TRAINER_CHECKPOINT.fullmatch(name) or os.path.islink(path) or not os.path.isdir(path)
                or os.path.realpath(path) in spared):
            continue
        try:
            shutil.rmtree(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("hyperparameter_search: could not remove the Trainer's checkpoint folder %s (tunesmith "
                        "keeps its own copy): %s", path, e)


def _trial_trainer(blob: bytes, config: dict[str, Any], output_dir: str) -> Any:
    """A fresh copy of the pickled Trainer with the ``TrainingArguments`` fields ``config`` names set."""
    import pickle

    trainer = pickle.loads(blob)  # a fresh copy per trial: a worker runs many trials with the same function
    args = trainer.args
    declared = _field_types(type(args))
    for key, value in config.items():
        if key not in declared if declared is not None else not hasattr(args, key):
            continue  # not a TrainingArguments field: for model_init
        field_type = None if declared is None else declared[key]
        setattr(args, key, _as_field(key, value, field_type, getattr(args, key, None)))
    args.output_dir = output_dir
    # as Transformers does for its own search backends, once TrainingArguments changed
    trainer._train_batch_size = args.train_batch_size
    trainer.create_accelerator_and_postprocess()
    _keep_config_over_restore(trainer)
    return trainer


def _field_types(cls: type) -> dict[str, Any] | None:
    """The ``TrainingArguments`` (sub)class's fields and their declared types (a field whose annotation does not
    resolve here: None); None if it is no dataclass."""
    if not dataclasses.is_dataclass(cls):
        return None
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - an annotation that names what this process cannot import
        hints = {}
    return {f.name: hints.get(f.name) for f in dataclasses.fields(cls)}


def _as_field(key: str, value: Any, declared: Any, old: Any) -> Any:
    """``value`` as the ``TrainingArguments`` field ``key`` takes it: as given where its declared type accepts it
    (``warmup_steps: float`` takes 0.5, although its default is the int 0), else cast where the cast changes
    nothing (3.0 for an ``int`` field is 3; a string for an enum field is the enum, as ``TrainingArguments`` makes
    it); numpy scalars as Python's.

    Raises:
        ConfigError: the value is not of the field's type and a cast would change it (2.5 for an ``int`` field).
    """
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        value = value.item()  # np.int64(8) -> 8: TrainingArguments holds Python values (it writes them as JSON)
    if isinstance(old, enum.Enum) and isinstance(value, str) and not isinstance(value, type(old)):
        try:
            return type(old)(value)
        except ValueError:
            choices = ", ".join(repr(m.value) for m in type(old))
            raise ConfigError(f"hyperparameter_search(): the config sets TrainingArguments.{key} = {value!r}, which "
                              f"is not a {type(old).__name__}: one of {choices}") from None
    if declared is None or isinstance(declared, str):  # an annotation that does not resolve here
        declared = Any if old is None else type(old)
    if _accepts(declared, value):
        return value
    for target in _classes(declared):
        try:
            cast = target(value)
            same = bool(cast == value) and not (isinstance(value, bool) and target is not bool)
        except Exception:  # noqa: BLE001 - not this one of the field's types
            continue
        if same:
            return cast
    raise ConfigError(f"hyperparameter_search(): the config sets TrainingArguments.{key} = {value!r}, which is not "
                      f"of the field's type ({_type_name(declared)}); a cast would change the value, so it is not set")


def _accepts(declared: Any, value: Any) -> bool:
    """Whether ``value`` is of the type ``declared`` (an int is a float, as for type checkers; a bool is no number)."""
    if declared is Any or declared is object:
        return True
    origin = typing.get_origin(declared)
    if origin is typing.Union or origin is types.UnionType:
        return any(_accepts(arg, value) for arg in typing.get_args(declared))
    if origin is typing.Literal:
        return any(type(value) is type(arg) and value == arg for arg in typing.get_args(declared))
    if declared is None or declared is type(None):
        return value is None
    cls = origin if origin is not None else declared
    if not isinstance(cls, type):
        return True  # a typing form not checked here
    if isinstance(value, bool) and cls in (int, float):
        return False
    if cls is float:
        return isinstance(value, (int, float))
    return isinstance(value, cls)


def _classes(declared: Any) -> list[type]:
    """The classes a value of the type ``declared`` may be cast to, in its order (None left out)."""
    origin = typing.get_origin(declared)
    if origin is typing.Union or origin is types.UnionType:
        return [c for arg in typing.get_args(declared) for c in _classes(arg)]
    cls = origin if origin is not None else declared
    return [cls] if isinstance(cls, type) and cls is not type(None) else []


def _type_name(declared: Any) -> str:
    origin = typing.get_origin(declared)
    if origin is typing.Union or origin is types.UnionType:
        return " | ".join(_type_name(arg) for arg in typing.get_args(declared))
    if declared is None or declared is type(None):
        return "None"
    return declared.__name__ if isinstance(declared, type) else str(declared).replace("typing.", "")


def _keep_config_over_restore(trainer: Any) -> None:
    """Make ``trainer.train(resume_from_checkpoint=...)`` keep the optimizer hyperparameters of the trial's config.

    Transformers restores the checkpoint's optimizer and scheduler state as saved, their learning rates and
    weight decay included: after a PBT exploit the source trial's values would go on, the new config's doing
    nothing. Here the values the Trainer configured (from this trial's ``TrainingArguments``) are read just before
    that restore and set back over it where they differ; a learning rate keeps its schedule's progress (the
    restored, scheduled rate scaled by new base / saved base; the scheduler's ``base_lrs`` become the new base).
    The optimizer's state (Adam's moments, step counts) stays restored.
    """
    load = getattr(trainer, "_load_optimizer_and_scheduler", None)
    if load is None:  # a Transformers version without it: the checkpoint's values go on
        log.warning("hyperparameter_search: this Transformers' Trainer has no _load_optimizer_and_scheduler: a trial "
                    "resumed from a checkpoint (a PBT exploit) trains with the checkpoint's learning rate, not its "
                    "config's")
        return

    def load_keeping_config(checkpoint: str | None) -> None:
        optimizer, scheduler = trainer.optimizer, trainer.lr_scheduler
        if checkpoint is None or optimizer is None:
            load(checkpoint)
            return
        configured = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
        bases = list(getattr(scheduler, "base_lrs", None) or [])
        load(checkpoint)
        _apply_config(optimizer, scheduler, configured, bases)

    trainer._load_optimizer_and_scheduler = load_keeping_config


def _apply_config(optimizer: Any, scheduler: Any, configured: list[dict[str, Any]], bases: list[Any]) -> None:
    """Set the configured param-group values over the restored ones where they differ (see
    :func:`_keep_config_over_restore`)."""
    groups = optimizer.param_groups
    if len(groups) != len(configured):
        return  # not the optimizer the checkpoint saved
    restored_bases = list(getattr(scheduler, "base_lrs", None) or [])
    lr_changed = False
    for i, (group, new) in enumerate(zip(groups, configured)):
        for key, value in new.items():
            if key in ("lr", "initial_lr") or key not in group or not _plain(value):
                continue  # the rates below; tensors and other objects as restored
            if group[key] != value:
                group[key] = value  # weight decay, betas, eps...: no scheduler moves them
        new_base = bases[i] if i < len(bases) else new.get("initial_lr", new.get("lr"))
        old_base = restored_bases[i] if i < len(restored_bases) else group.get("initial_lr", group.get("lr"))
        if not all(isinstance(v, (int, float)) for v in (new_base, old_base, group.get("lr"))) or new_base == old_base:
            continue
        group["lr"] = group["lr"] * new_base / old_base if old_base else new_base  # the schedule's progress, scaled
        if "initial_lr" in group:
            group["initial_lr"] = new_base
        if i < len(restored_bases):
            restored_bases[i] = new_base
        lr_changed = True
    if lr_changed and restored_bases:
        scheduler.base_lrs = restored_bases  # LambdaLR (Transformers' schedules): lr = base * factor(step)
    if lr_changed and hasattr(scheduler, "_last_lr"):
        scheduler._last_lr = [group["lr"] for group in groups]


def _plain(value: Any) -> bool:
    if isinstance(value, (tuple, list)):
        return all(isinstance(v, (int, float)) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))
