"""The simulated executor: trials as Python generators in virtual time, for scheduler tests and benchmarks.

No processes and no sleeping: ``clock()`` is a virtual clock that ``poll()`` moves forward to the next
event, so an experiment of thousands of virtual seconds runs in a fraction of a real one, and the same
inputs always give the same events in the same order.

A simulated trial is a generator function. Each ``yield`` is one iteration (one ``report()``)::

    def train(config, ctx):
        state = ctx.checkpoint or {"w": 0.0}          # the state to resume from, or None on a fresh start
        for step in range(ctx.iteration, 100):        # ctx.iteration: iterations already done
            state["w"] += config["lr"]
            yield {"loss": 1 / (1 + state["w"])}                  # takes 1 virtual second
            yield ({"loss": ...}, 2.5)                            # takes 2.5 virtual seconds
            yield ({"loss": ...}, 2.5, state)                     # ... and saves ``state`` as a checkpoint

``fn(config)`` (no context) and ``fn()`` work too. A yielded state is written as a real tunesmith
checkpoint (``Checkpoint.from_state(state)`` under ``<trial_dir>/checkpoints``), so the controller's
restore path (pause and resume, PBT exploit, retry after a failure) works unchanged: a restarted trial
gets a new generator whose ``ctx.checkpoint`` is that state, loaded back from disk.

Speed model: an iteration's seconds are what it takes with the resources the trial was *first* started
with on this executor. Restarted with more, it runs ``speedup(resources, base)`` times faster; the
default is linear in the CPUs (in the GPUs if the trial asks for GPUs): a trial given twice its CPUs
takes ``seconds / 2`` per iteration. Pass ``speedup=`` for another model (e.g. Amdahl's law).

Semantics, the same as the local executor's:

* an iteration starts when the previous one was reported (or at the start) and its result is reported
  ``seconds / speedup`` later;
* at ``launch.decision_iteration`` the result is sent with ``waiting=True`` and the trial does not go on
  until ``decide()``; ``decide(cont=False)`` ends it ("stopped");
* ``stop()`` is cooperative: the iteration in flight finishes and is reported, then the trial ends
  ("stopped"); a trial waiting at a decision point ends at once;
* a generator that returns ends "ok"; one that raises ends "error" with its traceback (so does a bad
  yield), ``CONFIG_ERROR`` for a ``ConfigError`` (a metric that ``report()`` would refuse too);
* the experiment's stop rules (``run(stop=...)``: thresholds, flags, callables, ``TrialPlateau``) are
  evaluated on each result as it is made, by the trial's own copy of them (``StopRules.for_trials``, loaded
  at each start, as a worker loads it), as ``session.report`` evaluates them: the result that met them is
  the trial's last (sent without waiting, also at a decision point) and the trial ends "stopped"; a rule
  that raises ends the trial "error" and that result is not sent. Rules that cannot be pickled, and
  experiment-level ones, are the driver's alone, as on the local executor;
* ``trial_time_limit_s`` counts virtual seconds from each start: at the limit the trial is stopped as
  ``stop()`` stops it (the iteration in flight is reported; one waiting at a decision point ends at once)
  and it ends "error" with the local executor's message, unless it was already being stopped.

Events that happen at the same virtual instant are returned by one ``poll()``; a trial's end comes in a
later ``poll()`` than its last result (at the same instant), as it would from a real worker.

What differs from the local executor:

* ``run(time_budget_s=...)``: the driver checks the budget between polls, and the virtual clock jumps from
  one instant with events to the next, so the driver sees the budget run out at the first instant at or
  after it at which ``poll()`` returns events, not within a poll interval (0.05 s) of it. Iterations in
  flight then finish and are reported, as on the local executor; but a trial whose result came at that
  very instant starts its next iteration before the stop reaches it, and reports one result more than on
  the local executor (where the stop reached it during the iteration that ended with that result, for
  iterations longer than the worker's 0.05 s stop check). So at most one extra result per trial, past the
  budget, and none when the budget falls on that instant. The executor is not told the budget: matching it
  would need the controller to hand its deadline to ``poll()``.
* A stop that answers a result (a scheduler's stop outside a decision point) reaches the trial as it starts
  its next iteration: that iteration's result is reported, exactly one. On the local executor it is at least
  that one, and more for a trial reporting faster than its worker looks for a stop (every 0.05 s).
* No grace period: a stopped trial's iteration in flight is reported however long it takes; the local
  executor kills a worker that does not end within ``grace_period_s`` of a stop, and that result is lost.
  Nothing hangs, so ``trial_timeout_s`` (the heartbeat) has nothing to catch.
"""

from __future__ import annotations

import heapq
import inspect
import pickle
import random
import time
import traceback
from collections.abc import Callable, Generator
from typing import Any

from tunesmith._errors import ConfigError
from tunesmith._layout import checkpoints_dir
from tunesmith.checkpoint import Checkpoint
from tunesmith.checkpoint import write as write_checkpoint
from tunesmith.executors._base import Done, Event, Executor, Launch, Results, error_status
from tunesmith.executors.resources import ResourcePool, total_amounts
from tunesmith.session import as_stored, encode_metrics

SpeedupFn = Callable[[dict[str, float], dict[str, float]], float]

_STEP = 0  # heap entry kinds: start the next iteration / report the one in flight / end the trial
_REPORT = 1
_END = 2
_LIMIT = 3  # the trial's ``trial_time_limit_s`` runs out


def linear_speedup(resources: dict[str, float], base: dict[str, float]) -> float:
    """The default speed model: ``resources[k] / base[k]`` with ``k`` = "gpu" if the trial's first request
    had GPUs, else "cpu" (1.0 when either is zero)."""
    key = "gpu" if base.get("gpu", 0.0) > 0 else "cpu"
    have, was = float(resources.get(key, 0.0)), float(base.get(key, 0.0))
    return have / was if have > 0 and was > 0 else 1.0


class SimContext:
    """What a simulated trial can read about itself (the second argument of ``fn(config, ctx)``).

    Attributes:
        trial_id: the trial's id.
        config: its configuration (after a PBT exploit, the new one).
        checkpoint: the state to resume from (the object last yielded as a checkpoint, loaded back from
            its checkpoint folder), or None on a fresh start.
        checkpoint_path: that checkpoint's folder, or None.
        iteration: iterations done so far (the restored checkpoint's iteration at the start; it grows by
            one with each reported result).
        resources: the resources this run of the trial holds, e.g. ``{"cpu": 2.0, "gpu": 0.0}``.
        speedup: how much faster than at its first start an iteration runs now (see the module docstring).
        trial_dir: the trial's folder.
        rng: a ``random.Random`` seeded from the executor's seed, the trial id and the start iteration, for
            deterministic noise.
    """

    __slots__ = ("trial_id", "config", "checkpoint", "checkpoint_path", "iteration", "resources", "speedup",
                 "trial_dir", "rng", "_executor")

    def __init__(self, executor: SimulatedBackend, launch: Launch, checkpoint: Any, speedup: float,
                 rng: random.Random) -> None:
        self.trial_id = launch.trial_id
        self.config = launch.config
        self.checkpoint = checkpoint
        self.checkpoint_path = launch.restore
        self.iteration = launch.iteration
        self.resources = dict(launch.resources)
        self.speedup = speedup
        self.trial_dir = launch.trial_dir
        self.rng = rng
        self._executor = executor

    @property
    def now(self) -> float:
        """The executor's virtual clock, in seconds."""
        return self._executor.clock()

    def __repr__(self) -> str:
        return (f"SimContext(trial_id={self.trial_id}, iteration={self.iteration}, resources={self.resources}, "
                f"restored={self.checkpoint_path is not None})")


class _SimTrial:
    __slots__ = ("launch", "gen", "ctx", "speedup", "started", "iteration", "decision_iteration", "stopped",
                 "waiting", "pending", "outcome", "token", "rules", "over_limit")

    def __init__(self, launch: Launch, ctx: SimContext, speedup: float, started: float, token: int) -> None:
        self.launch = launch
        self.gen: Generator[Any, Any, Any] | None = None
        self.ctx = ctx
        self.speedup = speedup
        self.started = started
        self.iteration = launch.iteration
        self.decision_iteration = launch.decision_iteration
        self.stopped = False
        self.waiting = False
        self.pending: tuple[str, Any] | None = None  # the iteration in flight: (metrics json, state)
        self.outcome: tuple[str, str | None] = ("stopped", None)  # (status, traceback) for an _END entry
        self.token = token  # heap entries of an earlier run of the same trial id are ignored
        self.rules: Any = None  # this run's own copy of the stop rules (StopRules.for_trials), as a worker's
        self.over_limit: str | None = None  # stopped by trial_time_limit_s: why it ends in error


class SimulatedBackend(Executor):
    """Runs generator trials in virtual time (see the module docstring for the trial API).

    Args:
        total_resources: what the simulated machine offers, e.g. ``{"cpu": 8, "gpu": 2}`` (GPU ids
            ``"0"..``): checked as ``LocalBackend``'s (names and non-negative numbers, a whole number of GPUs),
            and some of at least one resource. Default ``{"cpu": 4}``.
        seed: seeds each trial's ``ctx.rng``.
        speedup: ``(resources, first_resources) -> factor`` by which an iteration runs faster; default
            :func:`linear_speedup`.
    """

    takes_generator_functions = True  # its trials are generator functions (run() refuses them for other backends)

    def __init__(self, total_resources: dict[str, float] | None = None, seed: int = 0,
                 speedup: SpeedupFn | None = None) -> None:
        self.total_resources_arg = _checked_total(total_resources)
        self.seed = seed
        self.speedup = speedup
        self.trial_timeout_s: float | None = None  # accepted for symmetry with local; nothing hangs here
        self._now = 0.0
        self._epoch = time.time()  # timestamps: wall time at construction (or after a resume's) + virtual time
        self._fn: Any = None
        self._nargs = 2
        self._pool: ResourcePool | None = None
        self._trials: dict[int, _SimTrial] = {}
        self._base: dict[int, dict[str, float]] = {}  # each trial's first resources (speed model)
        self._heap: list[tuple[float, int, int, int, int]] = []  # (time, seq, kind, trial id, token)
        self._seq = 0
        self._tokens = 0
        self._stop_bytes: bytes | None = None  # the stop rules as shipped to a trial (StopRules.for_trials)

    # -- setup ----------------------------------------------------------------------------------------
    def setup(self, fn: Any, experiment_dir: str) -> None:
        if not callable(fn):
            raise ConfigError(f"SimulatedBackend: the trial must be a generator function, got {fn!r}")
        self._fn = fn
        # run() sets stop_rules before setup(), as for the local executor, which ships the same bytes to its workers
        self._stop_bytes = self.stop_rules.for_trials() if self.stop_rules is not None else None
        try:
            params = [p for p in inspect.signature(fn).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
            varargs = any(p.kind is p.VAR_POSITIONAL for p in params)
            self._nargs = 2 if varargs else min(len(params), 2)
        except (TypeError, ValueError):
            self._nargs = 2

    def clock(self) -> float:
        """The virtual time in seconds (0 at construction)."""
        return self._now

    def timestamp(self) -> float:
        """Now, as results are stamped: the epoch (the wall time at construction, or after what a resumed experiment
        stored: ``resumed_after``) plus the virtual time."""
        return self._epoch + self._now

    def resumed_after(self, timestamp: float) -> None:
        """A resumed experiment stored results and ends stamped up to ``timestamp`` (an earlier run's virtual time,
        ahead of the wall clock): this run's are stamped from a second after it, so they come after them."""
        self._epoch = max(self._epoch, timestamp + 1.0 - self._now)

    def _ensure_pool(self) -> ResourcePool:
        if self._pool is None:
            total = dict(self.total_resources_arg or {"cpu": 4.0})
            total.setdefault("cpu", 0.0)
            gpus = int(total.get("gpu", 0.0))
            total["gpu"] = float(gpus)
            self._pool = ResourcePool(total, [str(i) for i in range(gpus)],
                                      ("SimulatedBackend(total_resources=)", self.total_resources_arg or {"cpu": 4.0}))
        return self._pool

    def total_resources(self) -> dict[str, float]:
        return dict(self._ensure_pool().total)

    def check_ranks(self, ranks: int | None) -> None:
        """Any: a simulated trial runs no code; it holds its total resources whatever its ranks."""

    def check_resources(self, resources: dict[str, float]) -> None:
        self._ensure_pool().check(resources)

    # -- trials ---------------------------------------------------------------------------------------
    def try_start(self, launch: Launch) -> bool:
        pool = self._ensure_pool()
        if launch.trial_id in self._trials:
            raise RuntimeError(f"trial {launch.trial_id} started twice")
        if pool.acquire(launch.trial_id, launch.resources) is None:
            return False
        base = self._base.setdefault(launch.trial_id, dict(launch.resources))
        factor = float((self.speedup or linear_speedup)(dict(launch.resources), base))
        rng = random.Random(f"{self.seed}:{launch.trial_id}:{launch.iteration}")
        self._tokens += 1
        ctx = SimContext(self, launch, None, factor, rng)
        trial = _SimTrial(launch, ctx, factor, self._now, self._tokens)
        self._trials[launch.trial_id] = trial
        try:
            if not factor > 0:
                raise ValueError(f"speedup must be > 0, got {factor!r} for resources {launch.resources}")
            shipped = self._stop_bytes if launch.stop_rules is None else launch.stop_rules  # a restart's own
            if shipped is not None:  # a copy per start, as a worker loads one per trial it runs
                trial.rules = pickle.loads(shipped)  # noqa: S301 - pickled by this process just now
            if launch.restore is not None:
                ctx.checkpoint = Checkpoint(launch.restore, iteration=launch.iteration).load()
            gen = self._call(launch.config, ctx)
            if not hasattr(gen, "__next__"):
                raise TypeError(f"SimulatedBackend: the trial function must be a generator (yield one result "
                                f"per iteration); {getattr(self._fn, '__name__', self._fn)!r} returned "
                                f"{type(gen).__name__}")
            trial.gen = gen
        except Exception as e:  # noqa: BLE001 - the trial fails, like a worker whose function raised
            self._push(self._now, _END, trial, error_status(e), traceback.format_exc())
            return True
        self._push(self._now, _STEP, trial)
        if self.trial_time_limit_s is not None:  # counted from each start, as on the local executor
            self._push(self._now + self.trial_time_limit_s, _LIMIT, trial)
        return True

    def _call(self, config: dict[str, Any], ctx: SimContext) -> Any:
        if self._nargs >= 2:
            return self._fn(config, ctx)
        if self._nargs == 1:
            return self._fn(config)
        return self._fn()

    def decide(self, trial_id: int, cont: bool, next_decision: int | None, plan: Any = None) -> None:
        # plan: ignored: simulated trials take no plan (takes_plans is False)
        trial = self._trials.get(trial_id)
        if trial is None or not trial.waiting:
            return
        trial.waiting = False
        if cont and not trial.stopped:
            trial.decision_iteration = next_decision
            self._push(self._now, _STEP, trial)
        else:
            self._push(self._now, _END, trial, "stopped")

    def stop(self, trial_id: int) -> None:
        trial = self._trials.get(trial_id)
        if trial is None or trial.stopped:
            return
        trial.stopped = True
        if trial.waiting:  # its report() is blocked waiting for us: it ends now
            trial.waiting = False
            self._push(self._now, _END, trial, "stopped")

    def running(self) -> int:
        return len(self._trials)

    # -- events ---------------------------------------------------------------------------------------
    def poll(self, timeout: float) -> list[Event]:
        """Move the clock to the next instant with events and return them.

        Waiting costs nothing in virtual time, so the clock jumps straight to the next event however far
        it is; ``timeout`` only matters when nothing is scheduled at all: the clock then moves on by
        ``timeout`` (idle time passes, as it would for a real driver waiting on an idle pool). Entries
        scheduled while an instant is processed (the next iteration's start, a trial's end after its last
        result) go to a later call.
        """
        events: list[Event] = []
        self._drop_stale()
        if not self._heap:
            self._now += max(0.0, float(timeout))
            return events
        while self._heap and not events:
            at = self._heap[0][0]
            horizon = self._seq  # entries pushed from here on wait for the next round
            self._now = max(self._now, at)
            while self._heap and self._heap[0][0] == at and self._heap[0][1] < horizon:
                _, _, kind, tid, token = heapq.heappop(self._heap)
                trial = self._trials.get(tid)
                if trial is None or trial.token != token:
                    continue
                if kind == _STEP:
                    self._step(trial, events)
                elif kind == _REPORT:
                    self._report(trial, events)
                elif kind == _LIMIT:
                    self._over_limit(trial)
                else:
                    self._end(trial, events)
            self._drop_stale()
        return events

    def _drop_stale(self) -> None:
        """Pop the entries of trials that ended (or were started again) off the top of the heap: a time limit of
        a trial that ended before it must not move the clock."""
        heap = self._heap
        while heap:
            trial = self._trials.get(heap[0][3])
            if trial is not None and trial.token == heap[0][4]:
                return
            heapq.heappop(heap)

    def _over_limit(self, trial: _SimTrial) -> None:
        """Its ``trial_time_limit_s`` ran out: stopped as ``stop()`` stops it, and it ends in error (as
        ``LocalBackend._enforce_time_limit``); a trial already asked to stop ends as it was asked to."""
        if trial.stopped:
            return
        trial.over_limit = self.over_limit()
        self.stop(trial.launch.trial_id)

    def _push(self, at: float, kind: int, trial: _SimTrial, status: str | None = None,
              tb: str | None = None) -> None:
        if kind == _END:
            trial.outcome = (status or "ok", tb)
        heapq.heappush(self._heap, (at, self._seq, kind, trial.launch.trial_id, trial.token))
        self._seq += 1

    def _step(self, trial: _SimTrial, events: list[Event]) -> None:
        """Start the next iteration: run the generator to its next yield."""
        assert trial.gen is not None
        try:
            item = next(trial.gen)
            metrics, seconds, state = _parse(item)
            text = encode_metrics(metrics)
        except StopIteration:
            self._finish(trial, events, "stopped" if trial.stopped else "ok", None)
            return
        except Exception as e:  # noqa: BLE001 - the trial's failure is reported; the executor goes on
            self._finish(trial, events, error_status(e), traceback.format_exc())
            return
        trial.pending = (text, state)
        heapq.heappush(self._heap, (self._now + seconds / trial.speedup, self._seq, _REPORT,
                                    trial.launch.trial_id, trial.token))
        self._seq += 1

    def _report(self, trial: _SimTrial, events: list[Event]) -> None:
        assert trial.pending is not None
        text, state = trial.pending
        trial.pending = None
        trial.iteration += 1
        trial.ctx.iteration = trial.iteration
        ckpt = None
        if state is not None:
            try:
                ckpt = write_checkpoint(Checkpoint.from_state(state), checkpoints_dir(trial.launch.trial_dir),
                                        trial.iteration, trial.launch.held_checkpoints)
            except Exception:  # noqa: BLE001 - e.g. a state cloudpickle cannot serialise
                trial.iteration -= 1
                self._finish(trial, events, "error", traceback.format_exc())
                return
        time_total = trial.launch.time_offset + (self._now - trial.started)
        row = (trial.iteration, time_total, self.timestamp(), text, ckpt)
        if trial.rules is not None:
            # the trial's own copy of the stop rules, on the result as the driver will see it, as session.report
            # evaluates them: the result that met them is the trial's last, sent without waiting for a decision
            try:
                if trial.rules.should_stop(trial.launch.trial_id, trial.iteration, as_stored(text, row)):
                    trial.stopped = True
            except Exception:  # noqa: BLE001 - a user's rule raised: the trial fails, its result unsent
                trial.iteration -= 1
                self._finish(trial, events, "error", traceback.format_exc())
                return
        waiting = trial.iteration == trial.decision_iteration and not trial.stopped
        events.append(Results(trial.launch.trial_id, [row], waiting))
        if waiting:
            trial.waiting = True
        elif trial.stopped:
            self._push(self._now, _END, trial, "stopped")
        else:
            self._push(self._now, _STEP, trial)

    def _end(self, trial: _SimTrial, events: list[Event]) -> None:
        self._finish(trial, events, *trial.outcome)

    def _finish(self, trial: _SimTrial, events: list[Event], status: str, tb: str | None) -> None:
        tid = trial.launch.trial_id
        if trial.over_limit is not None and status in ("ok", "stopped"):
            status, tb = "error", trial.over_limit
        self._trials.pop(tid, None)
        if self._pool is not None:
            self._pool.release(tid)
        if trial.gen is not None:
            try:
                trial.gen.close()  # runs the generator's finally blocks, as a stopped real trial would
            except Exception:  # noqa: BLE001
                pass
        events.append(Done(tid, status, tb))

    def shutdown(self) -> None:
        """End every trial (without events). Safe to call twice."""
        for trial in list(self._trials.values()):
            if trial.gen is not None:
                try:
                    trial.gen.close()
                except Exception:  # noqa: BLE001
                    pass
            if self._pool is not None:
                self._pool.release(trial.launch.trial_id)
        self._trials.clear()
        self._heap.clear()


def _checked_total(total: Any) -> dict[str, float] | None:
    """``SimulatedBackend(total_resources=...)``: checked as ``LocalBackend``'s (``resources.total_amounts``), and
    some of at least one resource: a trial asks for some of one, so no trial would fit in a total of zeros."""
    out = total_amounts(total, "SimulatedBackend")
    if out and not any(value > 0 for value in out.values()):
        raise ConfigError(f"SimulatedBackend: total_resources = {total!r} offers none of any resource: no trial could "
                          f"ever start; expected some of at least one, e.g. {{'cpu': 4}}")
    return out


def _parse(item: Any) -> tuple[Any, float, Any]:
    """``metrics`` | ``(metrics, seconds)`` | ``(metrics, seconds, state)`` -> (metrics, seconds, state)."""
    if isinstance(item, dict):
        return item, 1.0, None
    if isinstance(item, tuple) and len(item) in (2, 3):
        metrics, seconds = item[0], item[1]
        state = item[2] if len(item) == 3 else None
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0 \
                or seconds == float("inf"):
            raise ValueError(f"a simulated iteration's seconds must be a finite number >= 0, got {seconds!r}")
        return metrics, float(seconds), state
    raise TypeError(f"a simulated trial must yield a metrics dict, (metrics, seconds) or (metrics, seconds, "
                    f"state); got {type(item).__name__}: {item!r}")

