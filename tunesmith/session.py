"""What a trial calls from inside its training function: ``report``, ``should_stop``, ``get_checkpoint``,
``get_config``, ``get_trial_dir``, ``get_resources``, ``get_rank`` and ``get_world_size``.

The session is the one piece of global state in a worker process: it is set while a trial runs.
``report`` validates the metrics, writes the checkpoint (atomically) and hands the result to a batching
channel; it waits for the driver only at an iteration where the scheduler must decide, and not even there when
the scheduler's decision plan already promised the decision for that result (an ASHA rung's cutoff). Stop rules shipped
with the trial are evaluated here, on each result as it is made, so a trial ends on exactly the result that
met them. Once a trial was told to stop, every later ``report()`` raises again and stores nothing.
"""

from __future__ import annotations

import errno
import json
import math
import numbers
import os
import sys
import threading
import time
from collections.abc import Callable, Collection
from typing import Any, Protocol

from tunesmith import _layout
from tunesmith import checkpoint as _ckpt
from tunesmith._errors import ConfigError
from tunesmith.checkpoint import Checkpoint
from tunesmith.trial import AUTO_KEYS, FLOAT_LIMIT, ITERATION, TIME_TOTAL, TIMESTAMP

_SCALARS = (int, float, bool, str)


class StopTrial(BaseException):
    """Raised inside ``report()`` when the driver stopped this trial; ends the user's function.

    A BaseException so that a user's ``except Exception`` does not swallow it.
    """


class _Channel(Protocol):
    def send_result(self, row: tuple[int, float, float, str, str | None], wait: bool) -> Any: ...

    def stop_requested(self) -> bool: ...


class _Rules(Protocol):
    def should_stop(self, trial_id: int, iteration: int, metrics: dict[str, Any]) -> bool: ...


class _Session:
    __slots__ = ("trial_id", "config", "trial_dir", "resources", "channel", "iteration", "decision_iteration",
                 "restore", "start", "time_offset", "latest_checkpoint", "checkpoint_dir", "stop_rules", "stopped",
                 "stopped_at_result", "rank", "world_size", "plan", "held_checkpoints", "pid", "forked", "leftovers",
                 "end_hooks")

    def __init__(self, trial_id: int, config: dict[str, Any], trial_dir: str, resources: dict[str, float],
                 channel: _Channel, iteration: int, decision_iteration: int | None,
                 restore: Checkpoint | None, time_offset: float, checkpoint_dir: str | None = None,
                 stop_rules: _Rules | None = None, rank: int = 0, world_size: int = 1,
                 plan: tuple[str, str, tuple[tuple[int, float | None], ...]] | None = None,
                 held_checkpoints: Collection[str] = ()) -> None:
        self.trial_id = trial_id
        self.config = config
        self.trial_dir = trial_dir
        self.resources = resources
        self.channel = channel
        self.iteration = iteration
        self.decision_iteration = decision_iteration
        self.restore = restore
        self.latest_checkpoint = restore
        self.start = time.monotonic()
        self.time_offset = time_offset
        # where checkpoints are written: the trial's folder, or a staging folder they are sent on from
        self.checkpoint_dir = checkpoint_dir or _layout.checkpoints_dir(trial_dir)
        self.stop_rules = stop_rules  # the experiment's stop rules, where they could end a trial between waits
        self.stopped = False  # a stop was decided: no later report is stored
        # the trial ended at the result it just sent (StopTrial from that report) by a stop on that result: the stop
        # rules judged here, a STOP the scheduler's plan promised for it, the driver's stop answering it at a decision
        # point (``Executor.stop_on_result``); not one from outside the trial's results, not a pause
        self.stopped_at_result = False
        self.rank = rank  # this process's rank in a trial run as several (``run(ranks=N)``); 0 is the trial's
        self.world_size = world_size
        self.held_checkpoints = frozenset(held_checkpoints)  # folder names not to write (Launch.held_checkpoints)
        # the scheduler's decision plan (schedulers._base.DecisionPlan, as sent): where a result may go on unasked
        self.plan = _Plan(plan) if plan else None
        # report() comes from this process only (not from one the trial forked: _forked marks the child's copy of the
        # session, no syscall per report), and not from a thread alive before the trial started (one an earlier
        # trial on this worker left running; tunesmith's own never report, and left out, they leave this empty)
        self.pid = os.getpid()
        self.forked = False
        current = threading.current_thread()
        self.leftovers = {t.ident: t for t in threading.enumerate()
                          if t is not current and not t.name.startswith("tunesmith-")}
        # run when the trial's function is over, in its process, before what it started is ended (at_trial_end)
        self.end_hooks: list[Callable[[], None]] = []

    def report(self, metrics: Any, checkpoint: Checkpoint | None,
               at_end: Callable[[], Checkpoint] | None = None) -> None:
        """``at_end``: makes the checkpoint of a result that carries none when a stop rule evaluated here ends the
        trial with it (a ``Trainable``'s ``checkpoint_at_end``: the rule's verdict is only known here)."""
        if self.forked and os.getpid() != self.pid:
            raise RuntimeError(f"report() from a child process of the trial: only the trial's own process reports "
                               f"(pid {self.pid}); nothing was stored (send the results to it, e.g. through a "
                               f"multiprocessing queue, and report them there)")
        if self.leftovers and threading.get_ident() in self.leftovers:
            self._check_leftover()
        if self.stopped:
            raise StopTrial()  # it caught the stop, or reports in a finally: nothing after a stop is stored
        encoded = encode_metrics(metrics)
        self.iteration += 1
        ckpt_path = None if checkpoint is None else self._write(checkpoint)
        row = (self.iteration, self.time_offset + time.monotonic() - self.start, time.time(), encoded, ckpt_path)
        rules = self.stop_rules
        if rules is not None:
            # the result as the driver will see it: the rules are pure
            if rules.should_stop(self.trial_id, self.iteration, as_stored(encoded, row)):
                self.stopped = self.stopped_at_result = True
                if ckpt_path is None and at_end is not None:
                    row = (*row[:4], self._write(at_end()))
                self.channel.send_result(row, False)  # stored: the result that met the rule is the last
                raise StopTrial()
        wait = self.iteration == self.decision_iteration
        if wait and self.plan is not None:
            promised, after = self.plan.decision(self.iteration, encoded)
            if promised is False:  # the scheduler promised STOP for this result: sent, and the trial ends at it
                self.stopped = self.stopped_at_result = True
                self.channel.send_result(row, False)
                raise StopTrial()
            if promised:  # it promised CONTINUE: sent, and no wait for the answer
                wait, self.decision_iteration = False, after
        decision = self.channel.send_result(row, wait)
        if wait:
            cont, self.decision_iteration, *plan = decision  # a channel without plans answers two items
            self.plan = _Plan(plan[0]) if plan and plan[0] else None
            if not cont:
                # the driver's stop on this result (a STOP answered the wait) ends the trial at it; a pause does not
                self.stopped, self.stopped_at_result = True, self.channel.stop_requested()
                raise StopTrial()
        elif self.channel.stop_requested():
            self.stopped = True
            raise StopTrial()

    def _check_leftover(self) -> None:
        """A report from a thread whose ident was alive when this trial started: refused if it is that thread (one a
        finished trial left running), allowed if the ident is reused by a thread started since."""
        ident = threading.get_ident()
        if threading.current_thread() is not self.leftovers.get(ident):
            self.leftovers.pop(ident, None)
            return
        raise RuntimeError(f"report() from a thread a finished trial left running: it was alive before trial "
                           f"{self.trial_id} started, and nothing it reports is stored in it (join the threads a "
                           f"trial starts before its function returns)")

    def _write(self, checkpoint: Any) -> str:
        """Write the checkpoint of the result being reported; its path."""
        if not isinstance(checkpoint, Checkpoint):
            raise ConfigError(f"report(checkpoint=...) expects a tunesmith.Checkpoint, got {type(checkpoint).__name__}")
        folder = self.checkpoint_dir
        try:
            path = _ckpt.write(checkpoint, folder, self.iteration, self.held_checkpoints)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise OSError(errno.ENOSPC, f"no space left on the device writing the checkpoint of iteration "
                              f"{self.iteration} in {folder}: free space (or keep=N fewer checkpoints), then resume "
                              f"the experiment") from e
            raise
        self.latest_checkpoint = Checkpoint(path, iteration=self.iteration)
        return path


class _Plan:
    """A decision plan (``schedulers._base.DecisionPlan``) as the trial's session uses it: at one of its points,
    whether the result is sure to continue, and the decision point after it."""

    __slots__ = ("metric", "maximise", "cutoffs", "after")

    def __init__(self, plan: tuple[str, str, tuple[tuple[int, float | None], ...]]) -> None:
        metric, mode, points = plan
        self.metric = metric
        self.maximise = mode == "max"
        self.cutoffs = dict(points)
        iterations = [point[0] for point in points]
        self.after: dict[int, int | None] = dict(zip(iterations, [*iterations[1:], None]))

    def decision(self, iteration: int, result: str | dict[str, Any]) -> tuple[bool | None, int | None]:
        """(the decision promised for ``result`` (its JSON text, or its metrics) at decision point ``iteration``:
        True to continue, False to stop, None to wait for the driver's; the next decision point). Scored as
        ``Objective.score`` scores the same JSON in the driver: a real number, negated for "min"."""
        cutoff = self.cutoffs.get(iteration)
        if cutoff is None:
            return None, None
        if cutoff == math.inf:
            return False, None  # stops whatever the result
        value = (json.loads(result) if isinstance(result, str) else result).get(self.metric)
        if not isinstance(value, numbers.Real) or math.isnan(value):
            return None, None  # missing, not a number, NaN: the driver decides (and says why)
        score = float(value) if self.maximise else -float(value)
        return score >= cutoff, self.after[iteration]


class _OtherRank(_Session):
    """The session of a rank other than 0 (``tunesmith._ranks.run_rank``): the trial's config, folder and
    restore point, its own share of the resources; ``report()`` is ignored (rank 0's results and checkpoints
    are the trial's), ``should_stop()`` is False (a stop reaches rank 0; the backend ends every rank with it)."""

    __slots__ = ()

    def report(self, metrics: Any, checkpoint: Checkpoint | None,
               at_end: Callable[[], Checkpoint] | None = None) -> None:
        return None


class _NoChannel:
    def send_result(self, row: tuple[int, float, float, str, str | None], wait: bool) -> Any:
        return (True, None, None)

    def stop_requested(self) -> bool:
        return False


_NO_CHANNEL = _NoChannel()


def as_stored(encoded: str, row: tuple[Any, ...]) -> dict[str, Any]:
    """A result as the driver will see it, from its metrics' JSON ``encoded`` and its row (iteration, time total,
    timestamp, ...): the same JSON, the same automatic keys (what a trial's own stop rules judge)."""
    result = json.loads(encoded)
    result[ITERATION], result[TIME_TOTAL], result[TIMESTAMP] = row[0], row[1], row[2]
    return result


def encode_metrics(metrics: Any) -> str:
    """Check ``metrics`` and return its JSON text: a flat dict of JSON scalars.

    Nested dicts are flattened, their keys joined with ``/`` (``{"opt": {"lr": 0.1}}`` is stored as
    ``{"opt/lr": 0.1}``, as RLlib-style results need). numpy and torch scalars (``np.float32``, ``np.int64``,
    ``np.bool_``, 0-d arrays, ``torch.tensor(1.0)``) are stored as numbers. NaN and infinities are allowed and
    stored faithfully.

    Raises:
        ConfigError: naming the first bad key and the type it had.
    """
    if not isinstance(metrics, dict):
        raise ConfigError(f"report() expects a dict of metrics, got {type(metrics).__name__}")
    for key, value in metrics.items():  # the fast path: a flat dict of str -> JSON scalar, encoded as it is
        if type(value) in _SCALARS and type(key) is str and key not in _RESERVED and not key.startswith("config/") \
                and (type(value) is not int or -FLOAT_LIMIT < value < FLOAT_LIMIT) and "\0" not in key:
            continue
        return _dumps(_flat_metrics(metrics, "", {}))
    return _dumps(metrics)


_FRAME_KEYS = ("trial_id", "status")  # dataframe()'s columns beside the results' and "config/..."
_RESERVED = frozenset((*AUTO_KEYS, *_FRAME_KEYS))


def _flat_metrics(metrics: dict[Any, Any], prefix: str, out: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` checked, with nested dicts flattened into ``out`` under ``prefix``-joined names."""
    for key, value in metrics.items():
        if not isinstance(key, str):
            where = f" (in {prefix[:-1]!r})" if prefix else ""
            raise ConfigError(f"report(): metric names must be strings, got {key!r}{where}")
        name = prefix + key
        if "\0" in key:  # progress.csv would hold it raw (csv writes it as it is; many readers stop there)
            raise ConfigError(f"report(): metric {name!r} has a NUL character ('\\x00') in its name; expected text "
                              f"without one")
        if not prefix and key in AUTO_KEYS:
            raise ConfigError(f"report(): {key!r} is set by tunesmith; report it under another name")
        if (not prefix and key in _FRAME_KEYS) or name.startswith("config/"):
            # ResultSet.dataframe() would show it in place of the trial's id, status or config value
            raise ConfigError(f"report(): {name!r} names a column of ResultSet.dataframe() (the trial's id, status "
                              f"and its config/... values); report it under another name")
        if isinstance(value, dict):
            _flat_metrics(value, name + "/", out)
            continue
        if not isinstance(value, _SCALARS):
            value = _number(value, name)
        if isinstance(value, int) and not -FLOAT_LIMIT < value < FLOAT_LIMIT:
            raise ConfigError(f"report(): metric {name!r} is an integer of {value.bit_length()} bits, beyond the range "
                              f"of a float (about 1.8e308), which no scheduler, searcher or keep_by can rank: report "
                              f"float('inf'), a smaller number or a string")
        if name in out:
            raise ConfigError(f"report(): metric {name!r} is given twice (nested dicts are stored under their keys "
                              f"joined with '/'): rename one")
        out[name] = value
    return out


def _number(value: Any, name: str) -> Any:
    """A numpy / torch scalar (or an array of one element) as a Python number or bool; any other real number
    (``Fraction``, ``Decimal``, ``np.longdouble``) as a float, an integral one as an int."""
    number = value
    item = getattr(value, "item", None)
    shape = getattr(value, "shape", None)
    if item is not None and (shape is None or shape == () or _size(value) == 1):
        number = item()
        if isinstance(number, _SCALARS):
            return number
    decimal = sys.modules.get("decimal")  # a Decimal means the module is loaded: not imported for every report
    if isinstance(number, numbers.Real) or (decimal is not None and isinstance(number, decimal.Decimal)):
        try:
            return int(number) if isinstance(number, numbers.Integral) else float(number)
        except (ValueError, OverflowError, TypeError):  # Decimal('sNaN'); a Fraction too large for a float
            pass
    raise ConfigError(f"report(): metric {name!r} must be a number, string or bool, got {type(value).__name__} (a "
                      f"dict of them is stored flattened, as '{name}/<key>')")


def _scalar_dict_encoder() -> Any:
    """``json.dumps`` for a flat dict of JSON scalars, the same text, at a third of the cost: json's C
    encoder made once, instead of ``dumps`` making one per call (which is most of its time for a small
    dict). Without a circular-reference check: a checked dict of scalars cannot hold itself. Falls back to
    ``json.dumps`` where the C encoder is missing or takes other arguments (it is not a public API)."""
    try:
        from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]

        def no_default(obj: Any) -> Any:
            raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")

        encoder = c_make_encoder(None, no_default, encode_basestring_ascii, None, ": ", ", ", False, False, True)
        join = "".join
        probe = {"a": 1, "b": 0.5, "c": float("nan"), "d": "\u00e9\"", "e": True, "f": float("-inf")}
        if join(encoder(probe, 0)) != json.dumps(probe):
            return json.dumps
    except Exception:  # noqa: BLE001 - any surprise: the public function
        return json.dumps
    return lambda obj: join(encoder(obj, 0))


_dumps = _scalar_dict_encoder()


def _size(value: Any) -> int:
    try:
        return int(value.size if not callable(value.size) else value.numel())
    except Exception:
        return 0


_session: _Session | None = None


def _forked() -> None:
    """In a process forked while a trial runs: its copy of the session no longer speaks for the trial."""
    if _session is not None:
        _session.forked = True


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_forked)


def _current(fn: str) -> _Session:
    if _session is None:
        raise RuntimeError(f"tunesmith.{fn}() was called outside a trial: call it inside the training "
                           f"function passed to tunesmith.run()")
    return _session


def report(metrics: dict[str, Any], checkpoint: Checkpoint | None = None) -> None:
    """Report one iteration's metrics (and optionally a checkpoint) from inside a trial.

    In a trial run as several ranks (``run(..., ranks=N)``), rank 0's reports are the trial's; the other
    ranks' calls return at once and store nothing (their checkpoint is not written).

    Each call is one ``training_iteration``. Results stream to the driver in batches; the call waits for
    the driver only at iterations where the scheduler must decide (e.g. an ASHA rung). If the trial was
    stopped, the call ends the training function (it raises an exception that tunesmith handles).

    Args:
        metrics: dict of str -> int | float | bool | str (NaN and inf allowed; numpy and torch scalars are
            stored as numbers), or a nested dict of them: ``{"opt": {"lr": 0.1}}`` is stored as ``opt/lr``.
        checkpoint: a :class:`Checkpoint` to save with this result, written atomically under the trial's
            folder.

    Raises:
        ConfigError: a metric is not a JSON scalar (or is an integer beyond a float's range), a name holds a
            NUL character, or a name is reserved: tunesmith's own ``training_iteration``, ``time_total_s`` and
            ``timestamp``, and the names ``dataframe()`` gives its own columns, ``trial_id``, ``status`` and any
            ``config/...``.
        RuntimeError: called outside a trial.
    """
    _current("report").report(metrics, checkpoint)


def should_stop() -> bool:
    """Whether the driver decided that this trial must stop (a scheduler's stop, pause or exploit, a stop rule,
    the trial time limit): a framework's callback sets its loop's stop flag (``trainer.should_stop = True``)
    when this is True, so the loop ends gracefully.

    Once True it stays True, and every later ``report()`` raises and stores nothing. True at once where
    ``report()`` waited for the decision; otherwise within 0.05 s of the stop's arrival, at a ``report()`` or
    a ``should_stop()`` call, also while the trial trains without reporting. Cheap (at most one syscall in
    0.05 s, which keeps the GIL free for the thread that sends the results); never raises: outside a trial (a
    function run by hand) nothing can stop it, so False. In a thread an earlier trial on the same worker left
    running, True once the next trial has started (its own trial is over; its ``report()`` raises).
    """
    s = _session
    if s is None:
        return False
    if s.leftovers and threading.current_thread() is s.leftovers.get(threading.get_ident()):
        return True  # a thread an earlier trial left running: that trial is over
    if not s.stopped and s.channel.stop_requested():
        s.stopped = True  # as report() would: nothing reported after a stop is stored
    return s.stopped


def at_trial_end(hook: Callable[[], None]) -> None:
    """Run ``hook()`` once the current trial's function is over (returned, raised or stopped), in the trial's
    process, before the processes it started are ended: for a library's own shutdown (W&B's service process,
    which the next trial on the worker would otherwise find dead). A hook that raises is written to the trial's
    ``output.log``; the trial's status stays what it was. A hook given twice runs once."""
    s = _current("at_trial_end")
    if hook not in s.end_hooks:
        s.end_hooks.append(hook)


def run_end_hooks(s: _Session) -> None:
    """The trial's ``at_trial_end`` hooks, in the order given (the worker calls this)."""
    for hook in s.end_hooks:
        try:
            hook()
        except (Exception, SystemExit):  # noqa: BLE001 - the trial is over: its status is not a shutdown's to
            # change (wandb.teardown() calls sys.exit when its service ended badly)
            import traceback

            print(f"tunesmith: a trial-end hook ({getattr(hook, '__qualname__', hook)!r}) raised:\n"
                  f"{traceback.format_exc()}", file=sys.stderr)
    s.end_hooks.clear()


def get_checkpoint() -> Checkpoint | None:
    """The checkpoint to resume from: the trial's latest (after a restart, PBT exploit or pause), or None
    on a fresh start."""
    return _current("get_checkpoint").latest_checkpoint


def get_config() -> dict[str, Any]:
    """The trial's configuration (after a PBT exploit, the new one)."""
    return _current("get_config").config


def get_trial_dir() -> str:
    """The trial's own folder inside the experiment folder (created on first use)."""
    s = _current("get_trial_dir")
    os.makedirs(s.trial_dir, exist_ok=True)
    return s.trial_dir


def get_resources() -> dict[str, float]:
    """The resources this trial runs with now, e.g. ``{"cpu": 2, "gpu": 0.5}``; in a trial run as several
    ranks, this rank's share (the trial's resources split evenly over its ranks)."""
    return dict(_current("get_resources").resources)


def get_rank() -> int:
    """This process's rank in its trial: 0 for rank 0, the one whose reports count (and for every trial
    run as one process), 1..N-1 for the others of a trial run with ``ranks=N``."""
    return _current("get_rank").rank


def get_world_size() -> int:
    """How many ranks this trial runs as now (1 unless ``run(..., ranks=N)``; a resize can change it)."""
    return _current("get_world_size").world_size


def get_trial_id() -> int:
    """The trial's integer id within its experiment."""
    return _current("get_trial_id").trial_id
