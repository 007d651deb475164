"""The executor interface: runs trials and streams their events back. It decides nothing."""

from __future__ import annotations

import math
import time
from collections.abc import Set as AbstractSet
from typing import Any, NamedTuple

from tunesmith._errors import ConfigError
from tunesmith._record import Record

# One result as a trial sends it: (iteration, time_total, timestamp, metrics JSON, checkpoint path or None).
# A plain tuple: there is one per result, and they cross process boundaries in batches.
ReportRow = tuple[int, float, float, str, str | None]


class Results(NamedTuple):
    """An event from ``poll``: a batch of a trial's results, in order (one event per batch, not per result)."""

    trial_id: int
    rows: list[ReportRow]
    waiting: bool  # the last row's report() waits for a decision (``Executor.decide``)


class Done(NamedTuple):
    """An event from ``poll``: a trial ended. ``status``: "ok" (it returned), "stopped" (we asked it to),
    "error" (``error`` says why: a traceback, or what the executor saw happen to its worker), or
    ``CONFIG_ERROR`` (its function raised a ``ConfigError``: ``error`` is the traceback)."""

    trial_id: int
    status: str
    error: str | None


# A trial's end when its function raised a ConfigError: a misconfiguration (a bridge's metric that the framework
# never logged, a bad report()) that every retry would meet again, so the driver does not retry it
CONFIG_ERROR = "config_error"


def error_status(error: BaseException) -> str:
    """The ``Done`` status of a trial whose function raised ``error``."""
    return CONFIG_ERROR if isinstance(error, ConfigError) else "error"


Event = Results | Done


class Launch(Record):
    """Everything an executor needs to start (or restart) one trial."""

    trial_id: int
    config: dict[str, Any]
    trial_dir: str
    resources: dict[str, float]
    restore: str | None  # checkpoint folder to resume from
    iteration: int  # iterations already done (the restore checkpoint's)
    time_offset: float
    decision_iteration: int | None
    # the scheduler's DecisionPlan from decision_iteration on, as a plain tuple (only to an executor that takes_plans)
    decision_plan: tuple[Any, ...] | None
    env: dict[str, str]
    # processes the trial runs as, each with the rendezvous environment (``run(ranks=N)``; ``resources`` is
    # their total); None: a plain trial, one process without it
    ranks: int | None
    # names of the trial's checkpoint folders the driver let go but still keeps for another trial (a PBT clone
    # restores from one): a trial that rolled back writes the iterations they hold under other names
    # (``checkpoint.checkpoint_dirname``)
    held_checkpoints: tuple[str, ...]
    # a restarted trial's own stop rules, pickled, their state rebuilt from its stored results
    # (``StopRules.for_restart``); None: the experiment's, as every trial starts with them (``StopRules.for_trials``)
    stop_rules: bytes | None
    _fields = ("trial_id", "config", "trial_dir", "resources", "restore", "iteration", "time_offset",
               "decision_iteration", "decision_plan", "env", "ranks", "held_checkpoints", "stop_rules")

    def __init__(self, trial_id: int, config: dict[str, Any], trial_dir: str, resources: dict[str, float],
                 restore: str | None = None, iteration: int = 0, time_offset: float = 0.0,
                 decision_iteration: int | None = None, decision_plan: tuple[Any, ...] | None = None,
                 env: dict[str, str] | None = None, ranks: int | None = None,
                 held_checkpoints: tuple[str, ...] = (), stop_rules: bytes | None = None) -> None:
        self._set(trial_id=trial_id, config=config, trial_dir=trial_dir, resources=resources, restore=restore,
                  iteration=iteration, time_offset=time_offset, decision_iteration=decision_iteration,
                  decision_plan=decision_plan, env={} if env is None else env, ranks=ranks,
                  held_checkpoints=held_checkpoints, stop_rules=stop_rules)


def trial_spec(launch: Launch, *, env: dict[str, str], fn_key: str, takes_config: bool, sys_path: list[str],
               stop: bytes | None, chdir: bool, **own: Any) -> dict[str, Any]:
    """What a worker runs one trial from (``_worker._run_trial`` reads it): the launch's fields, then what
    every executor sends (the trial's environment, which function and how to call it, where to import from,
    the stop rules (``stop``: the experiment's, unless the launch brings the trial's own), whether to change into
    the trial's folder), then the executor's ``own`` keys."""
    return {
        "trial_id": launch.trial_id, "config": launch.config, "trial_dir": launch.trial_dir,
        "resources": launch.resources, "restore": launch.restore, "iteration": launch.iteration,
        "time_offset": launch.time_offset, "decision_iteration": launch.decision_iteration,
        "decision_plan": launch.decision_plan,
        "env": env, "fn_key": fn_key, "takes_config": takes_config, "sys_path": sys_path,
        "stop": stop if launch.stop_rules is None else launch.stop_rules,
        "chdir": chdir, "ranks": launch.ranks, "held_checkpoints": launch.held_checkpoints, **own,
    }


def stop_changes(deadline: float | None, pending_on_result: bool, on_result: bool) -> bool:
    """Whether a stop (``on_result``: decided on one of the trial's results, ``Executor.stop_on_result``) is news to
    a trial whose backend has its stop so far with kill ``deadline`` (None: not being stopped), decided on a result or
    not (``pending_on_result``): the first stop is; one from outside the trial's results (the time limit, the
    experiment's end) after one on a result is too: a trial run as several ranks is then ended at once, not after the
    others' time to return; any other stop changes nothing."""
    return deadline is None or (pending_on_result and not on_result)


def check_trial_timeout(value: Any, name: str = "trial_timeout_s") -> None:
    """``trial_timeout_s`` (``run()``'s, a backend's: ``name`` says which): None, or a number of seconds of at least
    2 (workers send a heartbeat every 0.5 s)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")
    if value < 2:
        raise ConfigError(f"{name} must be at least 2 seconds (workers send a heartbeat every 0.5 s), got {value!r}")


class Executor:
    """Runs trials. The controller is its only caller, from one thread.

    Users call an implementation a *backend* (``run(backend=...)``: ``LocalBackend``, ``RayBackend``,
    ``SimulatedBackend``); this is the interface the controller drives, named for what it does."""

    # How trials run, set by ``run()`` before ``setup()`` (an executor that runs no user code may ignore them):
    # the experiment's StopRules (a trial evaluates them on each result it makes, to stop on exactly the one
    # that met them), a wall-clock limit per trial start, and whether a trial runs in its own folder.
    stop_rules: Any = None
    trial_time_limit_s: float | None = None
    chdir_to_trial_dir: bool = True
    # Whether the run left ``resources`` at its default (every trial asks for one CPU, no GPU): an executor that
    # hides the machine's GPUs from a trial that asks for none may say so, once
    default_resources: bool = False
    # Whether a trial here follows a scheduler's decision plan (``Scheduler.decision_plan``): it goes on without
    # waiting at a decision point where the plan promised CONTINUE. Then ``Launch.decision_plan`` and ``decide``'s
    # ``plan`` carry it; an executor without (the default) is never sent one, and its trials wait at every point.
    takes_plans: bool = False
    # Whether the run lets this executor hand a worker its next trial while the worker's current trial still runs
    # (set by ``run()``: with the FIFO scheduler and a searcher that does not learn from results, where suggesting a
    # trial early changes nothing). An executor that does may start such a trial later than ``try_start``
    # returned: ``late_start`` says when. An executor without the ability ignores it.
    ahead_ok: bool = False

    def setup(self, fn: Any, experiment_dir: str) -> None:
        """Called once before any trial starts with the user's training function."""

    def over_limit(self) -> str:
        """The error of a trial stopped by ``trial_time_limit_s`` (every executor ends it with this)."""
        return f"the trial ran longer than its limit (trial_time_limit_s={self.trial_time_limit_s:g}); stopped"

    def clock(self) -> float:
        """Seconds on this executor's clock: wall time here, virtual time in the simulated executor. The
        controller measures elapsed time, budgets and what schedulers see as ``view.now`` with it."""
        return time.monotonic()

    def timestamp(self) -> float:
        """Now, on the clock this executor's results are stamped with (``Results`` rows' timestamp: seconds since the
        epoch): the wall clock here, as a worker stamps them; the simulated executor's virtual clock from its epoch.
        The controller stamps a trial's end with it, so that a resume replays results and ends in the order they
        happened, sorted by time on one clock (``_replay``)."""
        return time.time()

    def resumed_after(self, timestamp: float) -> None:
        """A resume: what the experiment stored (results, trials' ends) was stamped at ``timestamp`` at the latest,
        on ``timestamp()``'s clock. An executor whose clock is its own (the simulated one) goes on after it, so that
        what it stamps now comes after everything stored. Nothing by default: the wall clock goes on by itself."""

    def total_resources(self) -> dict[str, float]:
        raise NotImplementedError

    def check_resources(self, resources: dict[str, float]) -> None:
        """Raise ConfigError if a trial with ``resources`` could never run here."""

    def check_ranks(self, ranks: int | None) -> None:
        """Raise ConfigError if this executor cannot run a trial as ``ranks`` processes (``run(ranks=N)``)."""
        if ranks is not None:
            raise ConfigError(f"ranks={ranks}: {type(self).__name__} does not run a trial as several ranks")

    def try_start(self, launch: Launch) -> bool:
        """Start the trial if its resources are free now; False (nothing started) if not."""
        raise NotImplementedError

    def decide(self, trial_id: int, cont: bool, next_decision: int | None, plan: tuple[Any, ...] | None = None) -> None:
        """Answer a trial waiting at a decision point (``plan``: from ``next_decision`` on, if ``takes_plans``)."""
        raise NotImplementedError

    def stop(self, trial_id: int) -> None:
        """Ask a trial to end at its next report(); kill it after the grace period."""
        raise NotImplementedError

    # True while :meth:`stop` runs for :meth:`stop_on_result`: an executor that ends such a stop differently reads it
    # in its ``stop``
    stopping_on_result: bool = False

    def stop_on_result(self, trial_id: int) -> None:
        """:meth:`stop`, decided on one of the trial's results (``done``, a stop rule, the scheduler's decision on
        it): where rank 0 of a trial run as several ranks returned after that result, the others are left their time
        to return (``_ranks.END_GRACE_S``), as after any return of rank 0's, and the trial is killed only after that
        time and the grace period (``_ranks.ends_by``); any other stop ends them at once. The controller calls it also
        for a stop decided on the result a trial waits at a decision point with (instead of ``decide(..., False, ...)``,
        which is a pause's or an exploit's): the executor's stop ends that wait, and the trial ends at that result.

        Always through :meth:`stop`, with ``stopping_on_result`` True while it runs: a subclass that overrides
        ``stop`` alone sees every stop (and calls its parent's ``stop`` from within it, so that the parent reads the
        flag); an executor overrides this method only to add to it, not to stop another way."""
        self.stopping_on_result = True
        try:
            self.stop(trial_id)
        finally:
            self.stopping_on_result = False

    def poll(self, timeout: float) -> list[Event]:
        """Events since the last call; waits up to ``timeout`` seconds for the first."""
        raise NotImplementedError

    def running(self) -> int:
        raise NotImplementedError

    def queued(self) -> AbstractSet[int]:
        """Trials ``try_start`` accepted that wait on a busy worker and have not started (see ``ahead_ok``): they
        hold no resources yet. None by default."""
        return frozenset()

    def late_start(self, trial_id: int) -> float | None:
        """Once, the wall-clock time a trial handed to a busy worker ahead really started (the controller asks at
        the trial's end); None for a trial started when ``try_start`` returned, and by default."""
        return None

    def prestart(self) -> None:
        """Start what the first trial will need now, while the driver makes the store (``run`` calls it once,
        before ``setup``, and ``shutdown`` whatever follows). Nothing by default."""

    def shutdown(self) -> None:
        """End every worker. Safe to call twice."""
